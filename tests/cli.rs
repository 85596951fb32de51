//! The `readthrough` command-line tool end to end: the built binary against a loopback
//! HTTP server, each test on its own temporary cache directory.
//!
//! The server runs on the test's tokio runtime; the binary runs as child processes
//! through `tokio::process`, so the server keeps serving while they run.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::time::Duration;

use common::http_server::{Behaviour, Server};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_readthrough");

/// A sandbox: a temporary directory holding the cache directory and a fake home, so
/// no run can touch the real platform cache directory.
struct Sandbox {
    tmp: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        let tmp = tempfile::tempdir().expect("a temporary directory");
        std::fs::create_dir(tmp.path().join("home")).unwrap();
        Sandbox { tmp }
    }

    fn root(&self) -> &Path {
        self.tmp.path()
    }

    /// The cache directory every command gets with `--cache-dir`.
    fn cache(&self) -> PathBuf {
        self.root().join("cache")
    }

    /// The binary with a clean environment for the cache directory, but no
    /// `--cache-dir`.
    fn bare(&self) -> Command {
        let home = self.root().join("home");
        let mut cmd = Command::new(BIN);
        cmd.env_remove("READTHROUGH_DIR")
            .env_remove("AWS_ENDPOINT_URL")
            .env("HOME", &home)
            .env("XDG_CACHE_HOME", home.join(".cache"))
            .env("RUST_BACKTRACE", "1")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        cmd
    }

    /// The binary with `--cache-dir` and `args`.
    fn cmd(&self, args: &[&str]) -> Command {
        let mut cmd = self.bare();
        cmd.arg("--cache-dir").arg(self.cache()).args(args);
        cmd
    }

    /// Runs `readthrough --cache-dir CACHE args...` to the end.
    async fn run(&self, args: &[&str]) -> Out {
        output(self.cmd(args)).await
    }

    /// Runs it with `stdin` as its standard input.
    async fn run_with_stdin(&self, args: &[&str], stdin: &[u8]) -> Out {
        let mut cmd = self.cmd(args);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("start readthrough");
        let mut pipe = child.stdin.take().unwrap();
        pipe.write_all(stdin).await.unwrap();
        drop(pipe);
        let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
            .await
            .expect("readthrough finishes within a minute")
            .unwrap();
        Out::from(out)
    }

    /// `ls --json`, parsed.
    async fn ls(&self) -> Vec<Value> {
        let out = self.run(&["ls", "--json"]).await;
        out.ok();
        out.json()
            .as_array()
            .expect("ls --json prints an array")
            .clone()
    }
}

/// Runs `cmd` to the end (within a minute), capturing stdout and stderr.
async fn output(mut cmd: Command) -> Out {
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .expect("readthrough finishes within a minute")
        .expect("start readthrough");
    Out::from(out)
}

/// How a run went.
#[derive(Debug)]
struct Out {
    code: Option<i32>,
    stdout: Vec<u8>,
    stderr: String,
}

impl From<Output> for Out {
    fn from(out: Output) -> Self {
        Out {
            code: out.status.code(),
            stdout: out.stdout,
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Out {
    fn stdout_text(&self) -> String {
        String::from_utf8_lossy(&self.stdout).into_owned()
    }

    fn json(&self) -> Value {
        serde_json::from_slice(&self.stdout).unwrap_or_else(|e| {
            panic!(
                "stdout is not one JSON document ({e}): {:?}\nstderr: {}",
                self.stdout_text(),
                self.stderr
            )
        })
    }

    fn stderr_lines(&self) -> Vec<&str> {
        self.stderr.lines().collect()
    }

    /// Asserts exit code `code`, showing the output when not.
    #[track_caller]
    fn code(&self, code: i32) -> &Self {
        assert_eq!(
            self.code,
            Some(code),
            "exit code; stdout: {:?}\nstderr: {}",
            String::from_utf8_lossy(&self.stdout[..self.stdout.len().min(2000)]),
            self.stderr
        );
        self
    }

    #[track_caller]
    fn ok(&self) -> &Self {
        self.code(0)
    }

    /// Asserts that stderr is exactly one line starting `readthrough: `, with no sign
    /// of a panic, and returns it.
    #[track_caller]
    fn one_error_line(&self) -> &str {
        no_panic(&self.stderr);
        let lines = self.stderr_lines();
        assert_eq!(lines.len(), 1, "one line on stderr: {:?}", self.stderr);
        assert!(
            lines[0].starts_with("readthrough: "),
            "error line names the program: {:?}",
            lines[0]
        );
        lines[0]
    }
}

#[track_caller]
fn no_panic(stderr: &str) {
    let lower = stderr.to_lowercase();
    assert!(
        !lower.contains("panicked") && !lower.contains("backtrace"),
        "no panic or backtrace: {stderr}"
    );
}

/// `text` quoted for a POSIX shell.
fn shell_quote(text: &str) -> String {
    format!("'{}'", text.replace('\'', r"'\''"))
}

/// A port on 127.0.0.1 that nothing listens on (it was bound and let go).
fn dead_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// The `key` entry in an `ls --json` list.
fn entry<'a>(list: &'a [Value], key: &str) -> Option<&'a Value> {
    list.iter().find(|e| e["key"] == key)
}

// 1. get ----------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_prints_the_body_writes_files_and_reads_hits_from_disk() {
    let server = Server::start().await;
    let body = common::body(1, (2 << 20) + 123);
    server.route("/a.bin", Behaviour::body(body.clone()));
    let url = server.url("/a.bin");
    let sb = Sandbox::new();

    let cold = sb.run(&["get", &url]).await;
    cold.ok();
    assert_eq!(
        cold.stdout.len(),
        body.len(),
        "stdout has the body's length"
    );
    assert!(cold.stdout == body, "stdout is exactly the body");
    assert_eq!(cold.stderr, "", "nothing on stderr");
    assert_eq!(server.count("/a.bin"), 1);

    // A hit, to a file: nothing on stdout, the file holds the body, no request.
    let file = sb.root().join("out.bin");
    let hit = sb.run(&["get", &url, "-o", file.to_str().unwrap()]).await;
    hit.ok();
    assert!(hit.stdout.is_empty(), "nothing on stdout with -o");
    assert!(
        std::fs::read(&file).unwrap() == body,
        "the file is the body"
    );
    assert_eq!(server.count("/a.bin"), 1, "a hit does not go to the origin");

    let again = sb.run(&["get", &url]).await;
    again.ok();
    assert!(again.stdout == body);
    assert_eq!(server.count("/a.bin"), 1, "a hit does not go to the origin");

    // Logging and a staleness timeout change nothing on stdout.
    let out = sb.run(&["-v", "--stale-after", "2s", "get", &url]).await;
    out.ok();
    assert!(out.stdout == body, "-v logs go to stderr only");
    assert_eq!(server.count("/a.bin"), 1);

    // A cold read straight to a file with the long flag, over a new name.
    let other = common::body(2, 1 << 20);
    server.route("/b.bin", Behaviour::body(other.clone()).chunk(64 * 1024));
    let file = sb.root().join("b.out");
    std::fs::write(&file, b"old contents that are longer than nothing").unwrap();
    let out = sb
        .run(&[
            "get",
            &server.url("/b.bin"),
            "--output",
            file.to_str().unwrap(),
        ])
        .await;
    out.ok();
    assert!(
        std::fs::read(&file).unwrap() == other,
        "-o replaces the file"
    );
    assert_eq!(server.count("/b.bin"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hit_is_copied_whole_to_a_file_as_stdout_over_longer_contents_and_to_a_pipe_closed_early()
{
    let server = Server::start().await;
    let body = common::body(9, (3 << 20) + 17);
    server.route("/hit.bin", Behaviour::body(body.clone()));
    let url = server.url("/hit.bin");
    let sb = Sandbox::new();
    sb.run(&["get", &url, "-o", sb.root().join("first").to_str().unwrap()])
        .await
        .ok();

    // stdout is a regular file: the copy goes file to file.
    let as_stdout = sb.root().join("stdout.bin");
    let mut cmd = sb.cmd(&["get", &url]);
    cmd.stdout(std::fs::File::create(&as_stdout).unwrap())
        .stderr(Stdio::piped());
    let out = cmd.spawn().unwrap().wait_with_output().await.unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        std::fs::read(&as_stdout).unwrap() == body,
        "stdout's file is the body"
    );

    // -o over a longer file leaves exactly the body.
    let longer = sb.root().join("longer.bin");
    std::fs::write(&longer, vec![7u8; body.len() + 4096]).unwrap();
    sb.run(&["get", &url, "-o", longer.to_str().unwrap()])
        .await
        .ok();
    assert!(
        std::fs::read(&longer).unwrap() == body,
        "the file is the body, no more"
    );

    // A reader that takes a few bytes and closes the pipe ends the copy quietly.
    let mut cmd = sb.cmd(&["get", &url]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let got = read_at_least(&mut stdout, 10, Duration::from_secs(20)).await;
    assert!(got[..10] == body[..10]);
    drop(stdout);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("get ends once its reader has gone")
        .unwrap();
    assert!(out.status.success(), "a closed pipe is no failure: {out:?}");
    assert_eq!(server.count("/hit.bin"), 1, "every copy was a hit");
}

// 2. one origin request for many processes ------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eight_gets_of_one_cold_url_make_one_request() {
    let server = Server::start().await;
    let body = common::body(3, 2 << 20);
    server.route(
        "/shared.bin",
        Behaviour::body(body.clone())
            .chunk(64 * 1024)
            .delay(Duration::from_millis(10)),
    );
    let url = server.url("/shared.bin");
    let sb = Sandbox::new();

    let mut children = Vec::new();
    for _ in 0..8 {
        let mut cmd = sb.cmd(&["get", &url]);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        children.push(cmd.spawn().expect("start readthrough"));
    }
    // Collect every child's output at once, so none blocks on a full pipe.
    let waits: Vec<_> = children
        .into_iter()
        .map(|child| tokio::spawn(child.wait_with_output()))
        .collect();
    for (i, wait) in waits.into_iter().enumerate() {
        let out = tokio::time::timeout(Duration::from_secs(60), wait)
            .await
            .expect("each get finishes within a minute")
            .unwrap()
            .unwrap();
        let out = Out::from(out);
        out.ok();
        assert!(out.stdout == body, "child {i} printed the body");
        no_panic(&out.stderr);
    }
    assert_eq!(server.count("/shared.bin"), 1, "one origin request in all");
    assert_eq!(sb.ls().await.len(), 1);
}

// 3. get streams ------------------------------------------------------------------

/// Reads from `stdout` until it has `want` bytes or `limit` passes.
async fn read_at_least(
    stdout: &mut tokio::process::ChildStdout,
    want: usize,
    limit: Duration,
) -> Vec<u8> {
    let mut got = Vec::new();
    let mut buf = vec![0; 64 * 1024];
    let _ = tokio::time::timeout(limit, async {
        while got.len() < want {
            match stdout.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    got
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_writes_bytes_to_stdout_as_they_arrive() {
    let server = Server::start().await;
    const FIRST: usize = 64 * 1024;
    let body = common::body(4, 4 * FIRST);
    // The first 64 KiB, then nothing more on that connection until the test ends.
    server.route(
        "/slow.bin",
        Behaviour::body(body.clone())
            .chunk(FIRST)
            .stall_after(FIRST),
    );
    let url = server.url("/slow.bin");
    let sb = Sandbox::new();

    let mut cmd = sb.cmd(&["get", &url]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut leader = cmd.spawn().unwrap();
    let mut stdout = leader.stdout.take().unwrap();
    let got = read_at_least(&mut stdout, FIRST, Duration::from_secs(20)).await;
    assert_eq!(
        got.len(),
        FIRST,
        "the first chunk reaches stdout before the body ends"
    );
    assert!(got == body[..FIRST], "and they are the body's first bytes");
    assert!(
        leader.try_wait().unwrap().is_none(),
        "the process is still waiting for the rest"
    );

    // A second process follows the first one's fill and streams what is there too.
    let mut cmd = sb.cmd(&["get", &url]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut follower = cmd.spawn().unwrap();
    let mut follower_out = follower.stdout.take().unwrap();
    let got = read_at_least(&mut follower_out, FIRST, Duration::from_secs(20)).await;
    assert_eq!(
        got.len(),
        FIRST,
        "a follower streams the bytes already fetched"
    );
    assert!(got == body[..FIRST]);
    assert!(follower.try_wait().unwrap().is_none());
    assert!(leader.try_wait().unwrap().is_none());
    assert_eq!(server.count("/slow.bin"), 1, "the follower did not fetch");

    leader.kill().await.unwrap();
    follower.kill().await.unwrap();
}

// 4. warm -------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_fetches_each_url_once_and_then_reports_them_cached() {
    let server = Server::start().await;
    let sizes = [("/w1", 300_000), ("/w2", 1 << 20), ("/w3", 5), ("/w4", 0)];
    for (i, (path, len)) in sizes.iter().enumerate() {
        server.route(path, Behaviour::body(common::body(10 + i as u64, *len)));
    }
    let total: u64 = sizes.iter().map(|(_, len)| *len as u64).sum();
    let [u1, u2, u3, u4] = sizes.map(|(path, _)| server.url(path));
    let sb = Sandbox::new();

    let list = sb.root().join("urls.txt");
    std::fs::write(
        &list,
        format!("# the list\n\n{u3}\n   \n  {u1}  \n# {u4}\n{u4}\n{u3}\n"),
    )
    .unwrap();
    let out = sb
        .run(&[
            "warm",
            &u1,
            &u2,
            &u1,
            "--from",
            list.to_str().unwrap(),
            "--jobs",
            "2",
            "--json",
        ])
        .await;
    out.ok();
    let json = out.json();
    assert_eq!(json["fetched"], 4, "{json}");
    assert_eq!(json["cached"], 0, "{json}");
    assert_eq!(json["failed"], 0, "{json}");
    assert_eq!(json["bytes"], total, "{json}");
    assert!(json["seconds"].as_f64().is_some_and(|s| s >= 0.0), "{json}");
    assert_eq!(json["failures"], serde_json::json!([]), "{json}");
    for (path, _) in sizes {
        assert_eq!(server.count(path), 1, "{path} fetched once");
    }
    // The summary line on stderr, and nothing else.
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{:?}", out.stderr);
    assert!(lines[0].starts_with("warmed 4 URLs"), "{:?}", lines[0]);
    assert!(lines[0].contains("4 fetched"), "{:?}", lines[0]);

    let listed = sb.ls().await;
    assert_eq!(listed.len(), 4);
    for (url, (_, len)) in [&u1, &u2, &u3, &u4].into_iter().zip(sizes) {
        let e = entry(&listed, url).unwrap_or_else(|| panic!("{url} listed"));
        assert_eq!(e["size"], len);
    }

    // Again, from stdin this time, one at a time: all cached, no requests.
    let stdin = format!("{u1}\n{u2}\n\n# comment\n{u3}\n{u4}\n{u1}\n");
    let out = sb
        .run_with_stdin(
            &["warm", "--from", "-", "-j", "1", "--json"],
            stdin.as_bytes(),
        )
        .await;
    out.ok();
    let json = out.json();
    assert_eq!(json["fetched"], 0, "{json}");
    assert_eq!(json["cached"], 4, "{json}");
    assert_eq!(json["failed"], 0, "{json}");
    assert_eq!(json["bytes"], 0, "{json}");
    for (path, _) in sizes {
        assert_eq!(server.count(path), 1, "{path} not fetched again");
    }

    // Without --json: nothing on stdout, the summary on stderr.
    let out = sb.run(&["warm", &u2, &u3]).await;
    out.ok();
    assert!(out.stdout.is_empty(), "{:?}", out.stdout_text());
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "{:?}", out.stderr);
    assert!(lines[0].contains("2 already cached"), "{:?}", lines[0]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_with_more_urls_than_jobs_fetches_them_all() {
    let server = Server::start().await;
    let mut urls = Vec::new();
    for i in 0..6 {
        let path = format!("/j{i}");
        server.route(
            &path,
            Behaviour::body(common::body(20 + i, 100_000))
                .chunk(32 * 1024)
                .delay(Duration::from_millis(5)),
        );
        urls.push(server.url(&path));
    }
    let sb = Sandbox::new();
    let mut args = vec!["warm", "--jobs", "2", "--json"];
    args.extend(urls.iter().map(String::as_str));
    let out = sb.run(&args).await;
    out.ok();
    let json = out.json();
    assert_eq!(json["fetched"], 6, "{json}");
    assert_eq!(json["bytes"], 600_000, "{json}");
    for i in 0..6 {
        assert_eq!(server.count(&format!("/j{i}")), 1);
    }
    assert_eq!(sb.ls().await.len(), 6);
}

// 5. failures ---------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_goes_on_past_failures_and_reports_each_on_one_line() {
    let server = Server::start().await;
    let good = common::body(30, 200_000);
    server.route("/good", Behaviour::body(good.clone()));
    let good_url = server.url("/good");
    let missing = server.url("/missing");
    let dead = format!("http://127.0.0.1:{}/x.bin", dead_port());
    let bad = [
        "not a url",
        "ftp://127.0.0.1/x.bin",
        missing.as_str(),
        &dead,
    ];
    let sb = Sandbox::new();

    let mut args = vec!["warm", "--json", bad[0], bad[1], &good_url, bad[2], bad[3]];
    args.push(bad[0]); // a repeated failing URL fails once
    let out = sb.run(&args).await;
    out.code(1);
    no_panic(&out.stderr);

    let json = out.json();
    assert_eq!(json["fetched"], 1, "{json}");
    assert_eq!(json["cached"], 0, "{json}");
    assert_eq!(json["failed"], 4, "{json}");
    assert_eq!(json["bytes"], good.len(), "{json}");
    let failures = json["failures"].as_array().unwrap();
    assert_eq!(failures.len(), 4, "{json}");
    for url in bad {
        let f = failures
            .iter()
            .find(|f| f["url"] == url)
            .unwrap_or_else(|| panic!("{url} in failures: {json}"));
        assert!(f["error"].as_str().is_some_and(|e| !e.is_empty()), "{json}");
    }

    // One line per failure, naming its URL, and the summary.
    let lines = out.stderr_lines();
    for url in bad {
        let prefix = format!("readthrough: {url}: ");
        let naming: Vec<_> = lines.iter().filter(|l| l.starts_with(&prefix)).collect();
        assert_eq!(naming.len(), 1, "one line for {url}: {:?}", out.stderr);
    }
    let line_404 = lines.iter().find(|l| l.contains(&missing)).unwrap();
    assert!(line_404.contains("404"), "{line_404}");
    assert_eq!(
        lines.len(),
        5,
        "four failures and a summary: {:?}",
        out.stderr
    );
    let summary = lines.last().unwrap();
    assert!(summary.starts_with("warmed 5 URLs"), "{summary}");
    assert!(summary.contains("4 failed"), "{summary}");

    // The good one was cached; the 404 was asked once (not retried).
    assert_eq!(server.count("/good"), 1);
    assert_eq!(server.count("/missing"), 1);
    let listed = sb.ls().await;
    assert_eq!(listed.len(), 1, "only the good URL is cached: {listed:?}");
    assert_eq!(listed[0]["key"], good_url.as_str());

    // Quiet: the failure line still, nothing else.
    let out = sb.run(&["-q", "warm", &good_url, &missing]).await;
    out.code(1);
    let line = out.one_error_line();
    assert!(line.contains(&missing) && line.contains("404"), "{line}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_failures_exit_1_with_one_line() {
    let server = Server::start().await;
    let missing = server.url("/missing");
    let sb = Sandbox::new();

    let out = sb.run(&["get", &missing]).await;
    out.code(1);
    let line = out.one_error_line();
    assert!(line.contains("404") && line.contains(&missing), "{line}");
    assert!(out.stdout.is_empty());

    // To a file: no file is left behind.
    let file = sb.root().join("never.bin");
    let out = sb
        .run(&["get", &missing, "-o", file.to_str().unwrap()])
        .await;
    out.code(1);
    out.one_error_line();
    assert!(!file.exists(), "no output file after a failure");

    for url in ["not a url", "ftp://127.0.0.1/x.bin"] {
        for command in ["get", "path"] {
            let out = sb.run(&[command, url]).await;
            out.code(1);
            let line = out.one_error_line();
            assert!(line.contains(url), "{command} {url}: {line}");
        }
    }

    let dead = format!("http://127.0.0.1:{}/x.bin", dead_port());
    let out = sb.run(&["get", &dead]).await;
    out.code(1);
    let line = out.one_error_line();
    assert!(line.contains(&dead), "{line}");

    // A body cut short: an error, nothing on disk, no partial file.
    let body = common::body(31, 500_000);
    server.route("/short", Behaviour::body(body).short_by(1000).ranges(false));
    let file = sb.root().join("short.bin");
    let out = sb
        .run(&["get", &server.url("/short"), "-o", file.to_str().unwrap()])
        .await;
    out.code(1);
    let line = out.one_error_line();
    assert!(line.contains(&server.url("/short")), "{line}");
    assert!(!file.exists(), "the partial output file is removed");
    assert!(sb.ls().await.is_empty(), "nothing cached");

    // Nothing was cached by the failures.
    assert!(sb.ls().await.is_empty());
    assert_eq!(server.count("/missing"), 2, "a 404 is not retried");
}

/// Asserts the error line of a run that failed on `url`: exit status 1, exactly one
/// line on stderr, naming `url` exactly as given exactly once, and saying each of
/// `causes`. Returns the line.
#[track_caller]
fn assert_error_line<'a>(out: &'a Out, url: &str, causes: &[&str]) -> &'a str {
    out.code(1);
    let line = out.one_error_line();
    assert_eq!(line.matches(url).count(), 1, "names {url} once: {line}");
    assert!(
        line.starts_with(&format!("readthrough: {url}: ")),
        "the URL first: {line}"
    );
    for cause in causes {
        assert!(line.contains(cause), "says {cause:?}: {line}");
    }
    line
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn error_lines_name_the_url_once_with_the_cause() {
    let server = Server::start().await;
    server.route("/broken", Behaviour::body(&b"x"[..]).status(500));
    // The object changes while the first answer is being sent: the answer breaks
    // off half-way, and the resume finds a new ETag. Set again before each run.
    let changing = || {
        server.route(
            "/changing",
            Behaviour::body(common::body(32, 1 << 20))
                .etag("\"old\"")
                .chunk(64 * 1024)
                .drop_after(1 << 19)
                .then(Behaviour::body(common::body(33, 1 << 20)).etag("\"new\"")),
        );
    };
    let dead = format!("http://127.0.0.1:{}/x.bin", dead_port());
    let cases = [
        (server.url("/missing"), vec!["HTTP 404"]),
        (server.url("/broken"), vec!["HTTP 500"]),
        (
            server.url("/changing"),
            vec!["changed while resuming", "\"old\"", "\"new\""],
        ),
        (dead, vec!["connection refused"]),
    ];
    let sb = Sandbox::new();
    for (url, causes) in &cases {
        changing();
        let out = sb.run(&["get", url]).await;
        let line = assert_error_line(&out, url, causes);
        eprintln!("{line}");
        changing();
        let out = sb.run(&["warm", "-q", url]).await;
        assert_error_line(&out, url, causes);
    }
    assert_eq!(
        server.count("/changing"),
        4,
        "two runs of one answer and one resume"
    );
    assert!(sb.ls().await.is_empty(), "nothing cached");
}

// 6. usage errors -----------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn usage_errors_exit_2_with_one_line() {
    let sb = Sandbox::new();
    let cases: &[(&[&str], &str)] = &[
        (&["frobnicate"], "frobnicate"),
        (&["--stale-after", "5zz", "ls"], "5zz"),
        (&["--durability", "sometimes", "ls"], "sometimes"),
        (&["prune", "--max-size", "12Q"], "12Q"),
        (&["prune", "--older-than", "soon"], "soon"),
        (&["warm", "--jobs", "0", "http://127.0.0.1/x"], "0"),
        (&["ls", "--bogus"], "--bogus"),
        (&["get"], "<URL>"),
        (&["path"], "<URL>"),
        (&["rm"], "<KEYS>"),
        (&["get", "-o"], "-o"),
        (&[], "subcommand"),
    ];
    for (args, mentions) in cases {
        let out = sb.run(args).await;
        out.code(2);
        let line = out.one_error_line();
        assert!(
            line.contains(mentions),
            "{args:?}: {line:?} mentions {mentions}"
        );
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert!(!sb.cache().exists(), "usage errors do not create the cache");

    // Nothing to warm: a usage error on one line that says how to name URLs.
    for args in [&["warm"][..], &["warm", "--from", "-"]] {
        let out = sb.run_with_stdin(args, b"# only a comment\n\n").await;
        out.code(2);
        let line = out.one_error_line();
        assert!(line.contains("--from"), "{args:?}: {line}");
    }

    // --help and --version are not errors.
    let out = sb.run(&["--help"]).await;
    out.ok();
    assert!(out.stdout_text().contains("warm"));
    let out = sb.run(&["--version"]).await;
    out.ok();
    assert!(out.stdout_text().contains(env!("CARGO_PKG_VERSION")));
}

// 7. bad directories and files ------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cache_dir_that_is_a_file_and_an_unreadable_list_exit_1() {
    let server = Server::start().await;
    server.route("/f", Behaviour::body(&b"hello"[..]));
    let sb = Sandbox::new();
    let file = sb.root().join("plain-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let file_text = file.to_str().unwrap();

    for args in [
        vec!["get", &server.url("/f")],
        vec!["ls"],
        vec!["stat", "--json"],
        vec!["warm", &server.url("/f")],
    ] {
        let mut cmd = sb.bare();
        cmd.arg("--cache-dir").arg(&file).args(&args);
        let out = output(cmd).await;
        out.code(1);
        let line = out.one_error_line();
        assert!(line.contains(file_text), "{args:?}: {line}");
        assert!(out.stdout.is_empty(), "{args:?}");
    }
    assert_eq!(server.count("/f"), 0);
    assert_eq!(std::fs::read(&file).unwrap(), b"not a directory");

    // --from a file that does not exist, and one that is a directory.
    let nowhere = sb.root().join("no-such-list.txt");
    let dir = sb.root().join("home");
    for from in [&nowhere, &dir] {
        let from = from.to_str().unwrap();
        let out = sb.run(&["warm", &server.url("/f"), "--from", from]).await;
        out.code(1);
        let line = out.one_error_line();
        assert!(line.contains(from), "{line}");
    }
    assert_eq!(
        server.count("/f"),
        0,
        "nothing is fetched when the list fails"
    );
}

// 8. path, ls, stat, rm, prune, verify ----------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn path_ls_stat_rm_prune_and_verify() {
    let server = Server::start().await;
    let a = common::body(40, 300_000);
    let b = common::body(41, 70_000);
    server.route("/a", Behaviour::body(a.clone()));
    server.route("/b", Behaviour::body(b.clone()));
    let (ua, ub) = (server.url("/a"), server.url("/b"));
    let sb = Sandbox::new();

    // path: fetches once, prints the complete file's path.
    let out = sb.run(&["path", &ua]).await;
    out.ok();
    let text = out.stdout_text();
    assert!(
        text.ends_with('\n') && text.lines().count() == 1,
        "{text:?}"
    );
    let path_a = PathBuf::from(text.trim_end());
    assert!(
        path_a.starts_with(sb.cache()),
        "{path_a:?} inside the cache"
    );
    assert!(std::fs::read(&path_a).unwrap() == a, "the file is the body");
    let out = sb.run(&["path", &ua]).await;
    out.ok();
    assert_eq!(PathBuf::from(out.stdout_text().trim_end()), path_a);
    assert_eq!(server.count("/a"), 1, "path of a cached URL does not fetch");
    sb.run(&["-q", "warm", &ub]).await.ok();

    // ls
    let listed = sb.ls().await;
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert_eq!(entry(&listed, &ua).unwrap()["size"], a.len());
    assert_eq!(entry(&listed, &ub).unwrap()["size"], b.len());
    for url in [&ua, &ub] {
        let e = entry(&listed, url).unwrap();
        let (created, read) = (
            e["created"].as_u64().unwrap(),
            e["last_read"].as_u64().unwrap(),
        );
        assert!(created > 0 && read >= created, "{e}");
        assert!(e["expires"].is_null(), "no TTL was set: {e}");
    }
    let out = sb.run(&["ls"]).await;
    out.ok();
    let text = out.stdout_text();
    for url in [&ua, &ub] {
        assert!(
            text.lines().any(|l| l.trim_end().ends_with(url.as_str())),
            "ls shows {url}: {text}"
        );
    }

    // stat
    let out = sb.run(&["stat", "--json"]).await;
    out.ok();
    let json = out.json();
    assert_eq!(json["entries"], 2, "{json}");
    assert_eq!(json["bytes"], a.len() + b.len(), "{json}");
    assert_eq!(json["fills_in_progress"], 0, "{json}");
    assert_eq!(json["abandoned_tmp_files"], 0, "{json}");
    let out = sb.run(&["stat"]).await;
    out.ok();
    assert!(
        out.stdout_text().contains("entries"),
        "{}",
        out.stdout_text()
    );

    // verify, clean
    let out = sb.run(&["verify", "--json"]).await;
    out.ok();
    let json = out.json();
    assert_eq!(json["checked"], 2, "{json}");
    assert_eq!(json["corrupt"], serde_json::json!([]), "{json}");

    // verify, after flipping a byte of a's stored file
    let mut stored = std::fs::read(&path_a).unwrap();
    stored[1234] ^= 0x40;
    std::fs::write(&path_a, &stored).unwrap();
    let out = sb.run(&["verify", "--json"]).await;
    out.code(1);
    let json = out.json();
    let corrupt = json["corrupt"].as_array().unwrap();
    assert_eq!(corrupt.len(), 1, "{json}");
    assert_eq!(corrupt[0]["key"], ua.as_str(), "{json}");
    assert!(!path_a.exists(), "the corrupt file is removed");
    let listed = sb.ls().await;
    assert!(entry(&listed, &ua).is_none(), "{listed:?}");
    assert!(entry(&listed, &ub).is_some(), "{listed:?}");
    sb.run(&["verify"]).await.ok();
    // Read through again: fetched afresh, right bytes.
    let out = sb.run(&["get", &ua]).await;
    out.ok();
    assert!(out.stdout == a);
    assert_eq!(server.count("/a"), 2);

    // verify, text: the corrupt one is named on stderr.
    let path_b = PathBuf::from(sb.run(&["path", &ub]).await.stdout_text().trim_end());
    std::fs::write(&path_b, &b[..b.len() - 1]).unwrap(); // truncated
    let out = sb.run(&["verify"]).await;
    out.code(1);
    assert!(
        out.stderr_lines().iter().any(|l| l.contains(ub.as_str())),
        "{}",
        out.stderr
    );
    assert!(!path_b.exists());
    sb.run(&["-q", "warm", &ub]).await.ok();
    assert_eq!(server.count("/b"), 2);

    // rm
    let out = sb.run(&["rm", &ub]).await;
    out.ok();
    let listed = sb.ls().await;
    assert!(entry(&listed, &ub).is_none(), "{listed:?}");
    assert!(entry(&listed, &ua).is_some(), "{listed:?}");
    let out = sb.run(&["ls"]).await;
    assert!(!out.stdout_text().contains(ub.as_str()));
    let out = sb.run(&["rm", &ub]).await;
    out.code(1);
    let line = out.one_error_line();
    assert!(line.contains(ub.as_str()), "{line}");
    // One missing among present ones: the present one is still removed.
    sb.run(&["-q", "warm", &ub]).await.ok();
    let out = sb.run(&["rm", "no-such-key", &ub]).await;
    out.code(1);
    assert!(out.stderr.contains("no-such-key"), "{}", out.stderr);
    assert!(entry(&sb.ls().await, &ub).is_none());

    // prune: a generous budget and age keep everything, 1B empties.
    sb.run(&["-q", "warm", &ub]).await.ok();
    sb.run(&["prune", "--older-than", "1h", "--max-size", "1GiB"])
        .await
        .ok();
    assert_eq!(sb.ls().await.len(), 2);
    let out = sb.run(&["prune", "--max-size", "1B"]).await;
    out.ok();
    assert!(sb.ls().await.is_empty(), "prune to 1B empties the cache");
    let json = sb.run(&["stat", "--json"]).await.json();
    assert_eq!(json["entries"], 0, "{json}");
    assert_eq!(json["bytes"], 0, "{json}");
}

// 9. READTHROUGH_DIR ---------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readthrough_dir_is_used_without_cache_dir() {
    let server = Server::start().await;
    let body = common::body(50, 100_000);
    server.route("/e", Behaviour::body(body.clone()));
    let url = server.url("/e");
    let sb = Sandbox::new();
    let env_dir = sb.root().join("from-env");

    let mut cmd = sb.bare();
    cmd.env("READTHROUGH_DIR", &env_dir).args(["get", &url]);
    let out = output(cmd).await;
    out.ok();
    assert!(out.stdout == body);
    assert!(env_dir.is_dir(), "the cache is in $READTHROUGH_DIR");
    assert!(
        !sb.root().join("home").join(".cache").exists(),
        "not in the platform cache directory"
    );

    let mut cmd = sb.bare();
    cmd.env("READTHROUGH_DIR", &env_dir)
        .args(["stat", "--json"]);
    let json = output(cmd).await.json();
    assert_eq!(json["entries"], 1, "{json}");
    assert_eq!(json["dir"], env_dir.to_str().unwrap(), "{json}");

    // The flag wins over the variable.
    let mut cmd = sb.bare();
    cmd.env("READTHROUGH_DIR", &env_dir)
        .arg("--cache-dir")
        .arg(sb.cache())
        .args(["ls", "--json"]);
    let out = output(cmd).await;
    out.ok();
    assert_eq!(out.json(), serde_json::json!([]));

    // Neither: the platform cache directory (here, under the fake home).
    let mut cmd = sb.bare();
    cmd.args(["stat", "--json"]);
    let json = output(cmd).await.json();
    let expected = sb.root().join("home").join(".cache").join("readthrough");
    assert_eq!(json["dir"], expected.to_str().unwrap(), "{json}");
    assert_eq!(server.count("/e"), 1);
}

// 10. progress --------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_draws_no_bars_into_a_pipe_and_nothing_when_quiet() {
    let server = Server::start().await;
    server.route(
        "/p",
        Behaviour::body(common::body(60, 512 * 1024))
            .chunk(32 * 1024)
            .delay(Duration::from_millis(30)),
    );
    let sb = Sandbox::new();
    let out = sb.run(&["warm", &server.url("/p")]).await;
    out.ok();
    assert!(!out.stderr.contains('\r'), "{:?}", out.stderr);
    assert!(!out.stderr.contains('\x1b'), "{:?}", out.stderr);
    assert!(!out.stderr.contains("ETA"), "{:?}", out.stderr);
    assert!(!out.stderr.contains("/1 URLs"), "{:?}", out.stderr);
    let lines = out.stderr_lines();
    assert_eq!(lines.len(), 1, "only the summary: {:?}", out.stderr);
    assert!(lines[0].starts_with("warmed 1 URL in"), "{:?}", lines[0]);
    assert!(lines[0].contains("1 fetched"), "{:?}", lines[0]);

    server.route("/q", Behaviour::body(common::body(61, 1000)));
    for quiet in ["-q", "--quiet"] {
        let out = sb
            .run(&[quiet, "warm", &server.url("/p"), &server.url("/q")])
            .await;
        out.ok();
        assert_eq!(out.stderr, "", "{quiet}: nothing on stderr");
        assert!(out.stdout.is_empty());
    }
    // --json with --quiet: the document only.
    let out = sb
        .run(&["--quiet", "warm", "--json", &server.url("/q")])
        .await;
    out.ok();
    assert_eq!(out.stderr, "");
    assert_eq!(out.json()["cached"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_draws_bars_on_a_terminal() {
    if !std::process::Command::new("which")
        .arg("script")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
    {
        println!("skipped: no `script` (util-linux) to give the CLI a pseudo-terminal");
        return;
    }
    let server = Server::start().await;
    // About a second of transfer, so the bars draw several times.
    let body = common::body(70, 1 << 20);
    server.route(
        "/tty.bin",
        Behaviour::body(body)
            .chunk(64 * 1024)
            .delay(Duration::from_millis(60)),
    );
    let url = server.url("/tty.bin");
    let sb = Sandbox::new();
    // A directory name the shell would split or choke on, to check the quoting.
    let cache = sb.root().join("cache dir's $HOME");
    let run = |quiet: bool| {
        let mut words = vec![BIN.to_owned(), "--cache-dir".to_owned()];
        words.push(cache.to_str().unwrap().to_owned());
        if quiet {
            words.push("-q".to_owned());
        }
        words.extend(["warm".to_owned(), url.clone()]);
        let line: Vec<_> = words.iter().map(|w| shell_quote(w)).collect();
        let mut cmd = Command::new("script");
        cmd.args(["-qec", &line.join(" "), "/dev/null"])
            .env_remove("READTHROUGH_DIR")
            .env("TERM", "xterm")
            .env("HOME", sb.root().join("home"))
            .stdin(Stdio::null())
            .kill_on_drop(true);
        output(cmd)
    };

    let out = run(false).await;
    out.ok();
    let screen = String::from_utf8_lossy(&out.stdout).into_owned() + &out.stderr;
    assert!(screen.contains("0/1 URLs"), "the overall bar: {screen:?}");
    assert!(screen.contains("ETA"), "the overall bar: {screen:?}");
    assert!(
        screen.contains("warmed 1 URL in"),
        "the summary: {screen:?}"
    );
    assert_eq!(server.count("/tty.bin"), 1);
    assert!(
        cache.join("v1").is_dir(),
        "the cache is where the quoted name says"
    );

    // Quiet on a terminal: no bars, no summary.
    std::fs::remove_dir_all(&cache).unwrap();
    let out = run(true).await;
    out.ok();
    let screen = String::from_utf8_lossy(&out.stdout).into_owned() + &out.stderr;
    assert!(!screen.contains("URLs"), "{screen:?}");
    assert!(!screen.contains("ETA"), "{screen:?}");
    assert_eq!(server.count("/tty.bin"), 2);
}

/// `stat` while a `get` is stuck half-way, and `prune` after it is killed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stat_counts_a_fill_in_progress() {
    let server = Server::start().await;
    server.route(
        "/stall",
        Behaviour::body(common::body(80, 256 * 1024)).stall_after(64 * 1024),
    );
    let sb = Sandbox::new();
    let mut cmd = sb.cmd(&["get", &server.url("/stall")]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::null());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let got = read_at_least(&mut stdout, 64 * 1024, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 64 * 1024);
    let json = sb.run(&["stat", "--json"]).await.json();
    assert_eq!(json["fills_in_progress"], 1, "{json}");
    assert_eq!(json["entries"], 0, "{json}");
    child.kill().await.unwrap();
    let _ = child.wait().await;
    // The killed leader left its files; prune takes them away (its lock is free).
    sb.run(&["-q", "prune"]).await.ok();
    let json = sb.run(&["stat", "--json"]).await.json();
    assert_eq!(json["fills_in_progress"], 0, "{json}");
    assert_eq!(json["abandoned_tmp_files"], 0, "{json}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn get_into_a_closed_pipe_ends_quietly() {
    let server = Server::start().await;
    let body = common::body(71, 4 << 20);
    server.route(
        "/long",
        Behaviour::body(body)
            .chunk(64 * 1024)
            .delay(Duration::from_millis(2)),
    );
    let sb = Sandbox::new();
    let mut cmd = sb.cmd(&["get", &server.url("/long")]);
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().expect("start readthrough");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1024];
    tokio::io::AsyncReadExt::read_exact(&mut stdout, &mut first)
        .await
        .unwrap();
    drop(stdout);
    let out = tokio::time::timeout(Duration::from_secs(60), child.wait_with_output())
        .await
        .expect("readthrough ends once its reader is gone")
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.is_empty(), "{stderr}");
}

#[tokio::test]
async fn get_range_prints_only_the_range_and_refuses_bad_specs() {
    let server = Server::start().await;
    let body = common::body(41, 300_000);
    server.route("/r.bin", Behaviour::body(body.clone()));
    let url = server.url("/r.bin");
    let sb = Sandbox::new();

    let footer = sb.run(&["get", &url, "--range", "-65536"]).await;
    footer.ok();
    assert!(
        footer.stdout == body[body.len() - 65536..],
        "the last 64 KiB"
    );
    for (spec, want) in [("0-1023", &body[..1024]), ("299990-", &body[299_990..])] {
        let out = sb.run(&["get", &url, "--range", spec]).await;
        out.ok();
        assert!(out.stdout == want, "{spec}");
    }
    assert_eq!(server.count("/r.bin"), 1, "one fetch, then hits");

    let past = sb.run(&["get", &url, "--range", "300000-"]).await;
    past.code(1);
    let line = past.one_error_line();
    assert!(
        line.contains("300000-") && line.contains("300000 bytes"),
        "{line}"
    );
    assert!(past.stdout.is_empty());

    let bad = sb.run(&["get", &url, "--range", "9-1"]).await;
    bad.code(2);
    assert!(bad.stderr.contains("9-1"), "{}", bad.stderr);
}

#[tokio::test]
async fn get_range_with_slices_fetches_one_slice_and_stores_it() {
    let server = Server::start().await;
    let body = common::body(42, 1_000_000);
    server.route("/s.bin", Behaviour::body(body.clone()).etag("\"s\""));
    let url = server.url("/s.bin");
    let sb = Sandbox::new();
    let args = ["--slice-size", "64KiB", "get", &url, "--range", "-1000"];
    for _ in 0..2 {
        let out = sb.run(&args).await;
        out.ok();
        assert!(out.stdout == body[body.len() - 1000..]);
    }
    let ranges: Vec<_> = server
        .requests("/s.bin")
        .iter()
        .map(|r| r.header("range").map(str::to_owned))
        .collect();
    let slice = format!("bytes={}-999999", 15 * 65536);
    assert_eq!(
        ranges,
        [Some("bytes=0-0".to_owned()), Some(slice)],
        "the probe and the last slice, once: the second run reads them stored"
    );
    // One entry for the blob: its whole length, and the one slice of 16 present.
    let listed = sb.run(&["ls", "--json"]).await;
    listed.ok();
    let entries: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    let entries = entries.as_array().unwrap();
    assert_eq!(entries.len(), 1, "{entries:?}");
    let entry = &entries[0];
    assert_eq!(entry["key"], url.as_str());
    assert_eq!(
        (entry["size"].as_u64(), entry["present"].as_u64()),
        (Some(1_000_000), Some(1_000_000 - 15 * 65536))
    );
    assert_eq!(
        entry["slices"],
        serde_json::json!({"size": 65536, "present": 1, "count": 16})
    );
    assert!(entry["path"].is_null() && entry["sha256"].is_null());
    let table = sb.run(&["ls"]).await;
    table.ok();
    let rows: Vec<&str> = std::str::from_utf8(&table.stdout)
        .unwrap()
        .lines()
        .collect();
    assert_eq!(rows.len(), 2, "a header and one row: {rows:?}");
    assert!(rows[1].ends_with(&url), "{}", rows[1]);
}
