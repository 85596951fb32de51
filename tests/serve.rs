//! `readthrough serve` end to end: the built binary as real server processes, a
//! loopback upstream (tests/common/http_server.rs) and real clients: `curl`, Python's
//! `urllib`, and raw sockets where a test must see the bytes on the wire.
//!
//! Tests wait on events (an upstream response held at a gate, a line on a server's
//! stderr, a file that has grown), never on sleeps, and assert no timings.

mod common;

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::eventually;
use common::http_server::{Behaviour, Gate, Server};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

const BIN: &str = env!("CARGO_BIN_EXE_readthrough");

/// Why the clients these tests need are missing, if they are.
fn clients_missing() -> Option<String> {
    for tool in ["curl", "python3"] {
        let found = std::process::Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        if !found {
            return Some(format!("{tool} is not installed"));
        }
    }
    None
}

macro_rules! need_clients {
    () => {
        if let Some(why) = clients_missing() {
            eprintln!("skipped: {why}");
            return;
        }
    };
}

/// A running `readthrough serve` and the lines of its stderr so far.
struct Serving {
    child: Child,
    base: String,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Serving {
    /// Starts `readthrough --cache-dir CACHE serve --listen 127.0.0.1:0 ARGS...` and
    /// waits for the address it prints.
    async fn start(cache: &Path, args: &[&str]) -> Serving {
        let mut child = readthrough(cache)
            .args(["serve", "--listen", "127.0.0.1:0"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .expect("start readthrough serve");
        let lines = Arc::new(Mutex::new(Vec::new()));
        let stderr = child.stderr.take().unwrap();
        let sink = Arc::clone(&lines);
        tokio::spawn(async move {
            let mut stderr = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = stderr.next_line().await {
                sink.lock().unwrap().push(line);
            }
        });
        let mut serving = Serving {
            child,
            base: String::new(),
            lines,
        };
        let line = serving.line("serving on ").await;
        serving.base = line.split("serving on ").nth(1).unwrap().trim().to_owned();
        serving
    }

    /// A server of everything on `upstream`, with its cache in `dir`.
    async fn of(dir: &Path, upstream: &Server) -> Serving {
        Serving::start(&dir.join("cache"), &["--upstream", &upstream.url("")]).await
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn port(&self) -> u16 {
        self.base.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// The first stderr line containing `needle`, once there is one.
    async fn line(&self, needle: &str) -> String {
        let found = || {
            let lines = self.lines.lock().unwrap();
            lines.iter().find(|l| l.contains(needle)).cloned()
        };
        let seen = eventually(async || found().is_some()).await;
        assert!(
            seen,
            "no line with {needle:?} in {:?}",
            self.lines.lock().unwrap()
        );
        found().unwrap()
    }

    fn signal(&self, signal: i32) {
        let pid = self.child.id().expect("the server runs") as i32;
        // SAFETY: kill(2) with a pid of a child this test started.
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }
}

/// The binary on cache directory `cache`, with an environment of its own.
fn readthrough(cache: &Path) -> Command {
    let mut cmd = Command::new(BIN);
    cmd.arg("--cache-dir")
        .arg(cache)
        .env_remove("AWS_ENDPOINT_URL")
        .env("RUST_BACKTRACE", "1")
        .stdin(Stdio::null())
        .kill_on_drop(true);
    cmd
}

/// `curl -sS ARGS...` to the end, capturing its output.
async fn curl(args: &[&str]) -> Output {
    curl_cmd(args).output().await.expect("run curl")
}

fn curl_cmd(args: &[&str]) -> Command {
    let mut cmd = Command::new("curl");
    // -N: write each piece to the output as it arrives, unbuffered.
    cmd.arg("-sSN")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

/// The status code `curl` got for `args`.
async fn status(args: &[&str]) -> u16 {
    let mut all = vec!["-o", "/dev/null", "-w", "%{http_code}"];
    all.extend_from_slice(args);
    let out = curl(&all).await;
    String::from_utf8_lossy(&out.stdout).parse().unwrap_or(0)
}

/// The body `curl` got for `args`, and its headers (lower-cased names).
async fn fetch(args: &[&str]) -> (Vec<u8>, String) {
    let headers = tempfile::NamedTempFile::new().unwrap();
    let mut all = vec!["-D", headers.path().to_str().unwrap()];
    all.extend_from_slice(args);
    let out = curl(&all).await;
    let text = std::fs::read_to_string(headers.path()).unwrap();
    (out.stdout, text.to_ascii_lowercase())
}

/// An upstream with `len` bytes (seeded `seed`) at `path`, holding the rest of
/// each response after `at` bytes until its gate opens; and those bytes.
async fn held_upstream(seed: u64, len: usize, path: &str, at: usize) -> (Server, Gate, Vec<u8>) {
    let upstream = Server::start().await;
    let gate = Gate::new();
    let data = common::body(seed, len);
    upstream.route(path, Behaviour::body(data.clone()).hold_at(at, &gate));
    (upstream, gate, data)
}

fn size(path: &Path) -> u64 {
    std::fs::metadata(path).map_or(0, |m| m.len())
}

fn outputs(dir: &Path, n: usize) -> Vec<PathBuf> {
    (0..n).map(|i| dir.join(format!("out{i}"))).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_clients_of_a_cold_object_share_one_upstream_request_and_stream() {
    need_clients!();
    let part = 1 << 20;
    let (upstream, gate, data) = held_upstream(1, 4 << 20, "/big.bin", part).await;
    let dir = tempfile::tempdir().unwrap();
    let serving = Serving::of(dir.path(), &upstream).await;
    let url = serving.url("/big.bin");
    let files = outputs(dir.path(), 50);
    let clients: Vec<Child> = files
        .iter()
        .map(|file| {
            curl_cmd(&["--fail", "-o", file.to_str().unwrap(), &url])
                .spawn()
                .unwrap()
        })
        .collect();
    gate.reached(1).await;
    let streamed = eventually(async || files.iter().all(|f| size(f) >= part as u64)).await;
    assert!(
        streamed,
        "every client has the first part while the upstream holds the rest"
    );
    gate.open();
    for client in clients {
        let out = client.wait_with_output().await.unwrap();
        let lines = serving.lines.lock().unwrap().clone();
        assert!(
            out.status.success(),
            "{} {lines:#?}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    for file in &files {
        assert!(
            std::fs::read(file).unwrap() == data,
            "{} has the wrong bytes",
            file.display()
        );
    }
    assert_eq!(upstream.count("/big.bin"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_serve_killed_mid_fill_is_taken_over_by_another_on_the_same_directory() {
    need_clients!();
    let (upstream, gate, data) = held_upstream(2, 2 << 20, "/obj", 512 << 10).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let args = ["--upstream", &upstream.url("")];
    let mut first = Serving::start(&cache, &args).await;
    let second = Serving::start(&cache, &args).await;
    let (cut, whole) = (dir.path().join("cut"), dir.path().join("whole"));
    let client = curl_cmd(&["-o", cut.to_str().unwrap(), &first.url("/obj")])
        .spawn()
        .unwrap();
    gate.reached(1).await;
    assert!(eventually(async || size(&cut) > 0).await);
    first.child.start_kill().unwrap();
    first.child.wait().await.unwrap();
    gate.open();
    let out = curl(&["--fail", "-o", whole.to_str().unwrap(), &second.url("/obj")]).await;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(std::fs::read(&whole).unwrap() == data);
    assert_eq!(upstream.count("/obj"), 2, "the second server fetched again");
    let cut_off = client.wait_with_output().await.unwrap();
    assert!(
        !cut_off.status.success(),
        "the first server's client saw its body end short"
    );
    assert!(size(&cut) < data.len() as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_failures_map_to_404_502_and_504_and_nothing_is_cached() {
    need_clients!();
    let upstream = Server::start().await;
    upstream.route("/broken", Behaviour::body("x").status(500));
    upstream.route(
        "/cut",
        Behaviour::body(common::body(3, 1 << 20)).stall_after(100_000),
    );
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("/silent/=http://{}", silent.local_addr().unwrap());
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            open.push(socket);
        }
    });
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--upstream",
        &upstream.url(""),
        "--route",
        &silent_url,
        "--idle-timeout",
        "1s",
    ];
    let serving = Serving::start(&dir.path().join("cache"), &args).await;
    assert_eq!(status(&[&serving.url("/missing")]).await, 404);
    assert_eq!(status(&[&serving.url("/missing")]).await, 404);
    assert_eq!(upstream.count("/missing"), 2, "a 404 is not cached");
    assert_eq!(status(&[&serving.url("/broken")]).await, 502);
    assert_eq!(status(&[&serving.url("/silent/x")]).await, 504);
    let out = curl(&["-o", "/dev/null", &serving.url("/cut")]).await;
    assert!(
        !out.status.success(),
        "a body that broke off must not look whole"
    );
    held.abort();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_leaves_mid_body_does_not_stop_the_fill() {
    need_clients!();
    let (upstream, gate, data) = held_upstream(4, 1 << 20, "/obj", 256 << 10).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let serving = Serving::start(&cache, &["--upstream", &upstream.url("")]).await;
    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", serving.port()))
        .await
        .unwrap();
    socket
        .write_all(b"GET /obj HTTP/1.1\r\nHost: t\r\n\r\n")
        .await
        .unwrap();
    let mut got = vec![0; 64 << 10];
    let mut read = 0;
    while read < got.len() {
        read += socket.read(&mut got[read..]).await.unwrap();
    }
    drop(socket);
    gate.open();
    let stored = eventually(async || {
        let out = readthrough(&cache)
            .args(["ls", "--json"])
            .output()
            .await
            .unwrap();
        String::from_utf8_lossy(&out.stdout).contains("/obj")
    })
    .await;
    assert!(
        stored,
        "the fill went on after its client left, and was stored"
    );
    let (body, _) = fetch(&["--fail", &serving.url("/obj")]).await;
    assert!(body == data);
    assert_eq!(upstream.count("/obj"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn conditional_range_head_http2_and_urllib_requests() {
    need_clients!();
    let upstream = Server::start().await;
    let data = common::body(5, 300_000);
    let etag = "\"v1\"";
    let file = Behaviour::body(data.clone())
        .etag(etag)
        .content_type("application/x-test");
    upstream.route("/file", file);
    let dir = tempfile::tempdir().unwrap();
    let serving = Serving::of(dir.path(), &upstream).await;
    let url = serving.url("/file");

    let (body, headers) = fetch(&["--fail", &url]).await;
    assert!(body == data);
    for header in [
        "etag: \"v1\"",
        "content-type: application/x-test",
        "content-length: 300000",
        "accept-ranges: bytes",
    ] {
        assert!(headers.contains(header), "{header} in {headers}");
    }
    let (body, headers) = fetch(&["--fail", &url]).await;
    assert!(
        body == data && headers.contains("etag: \"v1\""),
        "a hit keeps the headers: {headers}"
    );
    assert_eq!(status(&["-H", "If-None-Match: \"v1\"", &url]).await, 304);
    assert_eq!(status(&["-H", "If-None-Match: \"v0\"", &url]).await, 200);

    let (body, headers) = fetch(&["--range", "1000-1999", &url]).await;
    assert!(headers.starts_with("http/1.1 206"), "{headers}");
    assert!(
        headers.contains("content-range: bytes 1000-1999/300000"),
        "{headers}"
    );
    assert!(body == data[1000..2000]);
    let (_, headers) = fetch(&["--range", "400000-", &url]).await;
    assert!(
        headers.starts_with("http/1.1 416") && headers.contains("content-range: bytes */300000"),
        "{headers}"
    );

    let mut socket = tokio::net::TcpStream::connect(("127.0.0.1", serving.port()))
        .await
        .unwrap();
    socket
        .write_all(b"HEAD /file HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut reply = Vec::new();
    socket.read_to_end(&mut reply).await.unwrap();
    let reply = String::from_utf8(reply).expect("a HEAD answer is headers only");
    assert!(
        reply.starts_with("HTTP/1.1 200") && reply.ends_with("\r\n\r\n"),
        "{reply}"
    );
    assert!(
        reply
            .to_ascii_lowercase()
            .contains("content-length: 300000"),
        "{reply}"
    );

    let out = curl(&[
        "--http2-prior-knowledge",
        "-o",
        "/dev/null",
        "-w",
        "%{http_version} %{size_download}",
        &url,
    ])
    .await;
    assert_eq!(String::from_utf8_lossy(&out.stdout), "2 300000");

    let script = "import sys, urllib.request\n\
        r = urllib.request.urlopen(urllib.request.Request(sys.argv[1], headers={'Range': 'bytes=-100'}))\n\
        sys.stdout.buffer.write(b'%d ' % r.status + r.read())";
    let out = Command::new("python3")
        .args(["-c", script, &url])
        .output()
        .await
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.stdout == [b"206 ".as_slice(), &data[data.len() - 100..]].concat());
    assert_eq!(upstream.count("/file"), 1);

    let (health, _) = fetch(&[&serving.url("/-/health")]).await;
    assert_eq!(health, b"ok\n");
    let (metrics, _) = fetch(&[&serving.url("/-/metrics")]).await;
    let metrics = String::from_utf8(metrics).unwrap();
    for line in [
        "readthrough_http_responses_total{status=\"206\"} 2",
        "readthrough_http_responses_total{status=\"304\"} 1",
        "readthrough_cache_fills_led_total 1",
        "readthrough_cache_tier_hits_total 0",
        "readthrough_fills_in_flight ",
    ] {
        assert!(metrics.contains(line), "{line} in {metrics}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_is_served_from_a_fill_in_progress() {
    need_clients!();
    let (upstream, gate, data) = held_upstream(6, 1 << 20, "/obj", 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let serving = Serving::of(dir.path(), &upstream).await;
    let url = serving.url("/obj");
    let later = curl_cmd(&["--range", "500000-500099", &url])
        .spawn()
        .unwrap();
    gate.reached(1).await;
    let (early, headers) = fetch(&["--range", "10-19", &url]).await;
    assert!(headers.starts_with("http/1.1 206"), "{headers}");
    assert!(
        early == data[10..20],
        "bytes that landed are served while the fill runs"
    );
    gate.open();
    let later = later.wait_with_output().await.unwrap();
    assert!(later.stdout == data[500_000..500_100]);
    assert_eq!(upstream.count("/obj"), 1);
}

/// The body of `path` from `serving`, requested with the curl arguments `with`.
async fn get(serving: &Serving, path: &str, with: &[&str]) -> Vec<u8> {
    let url = serving.url(path);
    let mut args = vec!["--fail"];
    args.extend_from_slice(with);
    args.push(&url);
    fetch(&args).await.0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_with_credentials_never_share_a_cached_response() {
    need_clients!();
    let upstream = Server::start().await;
    upstream.route("/open", Behaviour::body("public"));
    upstream.route("/private/doc", Behaviour::body("private"));
    let dir = tempfile::tempdir().unwrap();
    let private = format!("/private/={}", upstream.url("/private"));
    let args = [
        "--upstream",
        &upstream.url(""),
        "--route",
        &private,
        "--cache-credentials",
        "/private/",
    ];
    let serving = Serving::start(&dir.path().join("cache"), &args).await;
    let alice = ["-H", "Authorization: Bearer alice"];
    let bob = ["-H", "Authorization: Bearer bob"];
    // Off by default: passed through with the credentials, never cached or served cached.
    assert_eq!(get(&serving, "/open", &alice).await, b"public");
    let sent = upstream.requests("/open");
    assert_eq!(sent[0].header("authorization"), Some("Bearer alice"));
    assert_eq!(get(&serving, "/open", &[]).await, b"public");
    assert_eq!(get(&serving, "/open", &[]).await, b"public");
    assert_eq!(
        upstream.count("/open"),
        2,
        "the anonymous copy is fetched once, without credentials"
    );
    assert_eq!(upstream.requests("/open")[1].header("authorization"), None);
    assert_eq!(
        get(&serving, "/open", &["-H", "Cookie: s=1"]).await,
        b"public"
    );
    assert_eq!(
        upstream.count("/open"),
        3,
        "a request with credentials is not served the shared copy"
    );

    // Opted in: one copy per credentials.
    assert_eq!(get(&serving, "/private/doc", &alice).await, b"private");
    assert_eq!(get(&serving, "/private/doc", &alice).await, b"private");
    assert_eq!(upstream.count("/private/doc"), 1);
    assert_eq!(get(&serving, "/private/doc", &bob).await, b"private");
    assert_eq!(
        upstream.count("/private/doc"),
        2,
        "bob is not served alice's copy"
    );
    assert_eq!(get(&serving, "/private/doc", &[]).await, b"private");
    assert_eq!(
        upstream.count("/private/doc"),
        3,
        "nor is a request without credentials"
    );
    let sent = upstream.requests("/private/doc");
    let auth: Vec<_> = sent.iter().map(|r| r.header("authorization")).collect();
    assert_eq!(auth, [Some("Bearer alice"), Some("Bearer bob"), None]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_responses_in_flight() {
    need_clients!();
    let (upstream, gate, data) = held_upstream(7, 1 << 20, "/obj", 100_000).await;
    let dir = tempfile::tempdir().unwrap();
    let mut serving = Serving::of(dir.path(), &upstream).await;
    let out = dir.path().join("out");
    let client = curl_cmd(&["--fail", "-o", out.to_str().unwrap(), &serving.url("/obj")])
        .spawn()
        .unwrap();
    gate.reached(1).await;
    assert!(eventually(async || size(&out) > 0).await);
    serving.signal(libc::SIGTERM);
    serving.line("stopping").await;
    let port = serving.port();
    let refused = eventually(async || {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_err()
    })
    .await;
    assert!(refused, "no new connection is accepted once stopping");
    gate.open();
    let finished = client.wait_with_output().await.unwrap();
    assert!(
        finished.status.success(),
        "{}",
        String::from_utf8_lossy(&finished.stderr)
    );
    assert!(std::fs::read(&out).unwrap() == data);
    let exit = tokio::time::timeout(Duration::from_secs(60), serving.child.wait()).await;
    assert!(
        exit.expect("serve exits once the response is sent")
            .unwrap()
            .success()
    );
}

#[tokio::test]
async fn bad_addresses_and_routes_are_one_line_errors_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = taken.local_addr().unwrap().to_string();
    let cases: [(&[&str], i32, &str); 7] = [
        (
            &["--listen", "nowhere:x", "--upstream", "http://a"],
            2,
            "--listen",
        ),
        (
            &["--listen", &taken, "--upstream", "http://a"],
            1,
            "cannot listen on",
        ),
        (&["--route", "pypi=https://pypi.org"], 2, "PREFIX=URL"),
        (&["--route", "/=ftp://a"], 2, "http://"),
        (&[], 1, "--upstream"),
        (
            &["--upstream", "http://a", "--cache-credentials", "/x/"],
            1,
            "no route",
        ),
        (
            &["--upstream", "http://a", "--max-header-size", "1KiB"],
            1,
            "at least 8KiB",
        ),
    ];
    for (args, code, says) in cases {
        let out = readthrough(&cache)
            .arg("serve")
            .args(args)
            .output()
            .await
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(
            stderr.contains(says) && !stderr.contains("panicked"),
            "{args:?}: {stderr}"
        );
    }
}

/// Builds a tiny wheel and a PEP 503 index of it under `root`; returns the wheel.
const MAKE_INDEX: &str = r#"
import base64, hashlib, os, sys, zipfile
root = sys.argv[1]
name = "tinypkg-1.0-py3-none-any.whl"
files = {
    "tinypkg/__init__.py": "VALUE = 42\n",
    "tinypkg-1.0.dist-info/METADATA": "Metadata-Version: 2.1\nName: tinypkg\nVersion: 1.0\n",
    "tinypkg-1.0.dist-info/WHEEL": "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\nTag: py3-none-any\n",
}
def digest(data):
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
record = "".join(f"{p},sha256={digest(d.encode())},{len(d)}\n" for p, d in files.items())
files["tinypkg-1.0.dist-info/RECORD"] = record + "tinypkg-1.0.dist-info/RECORD,,\n"
os.makedirs(f"{root}/packages")
os.makedirs(f"{root}/simple/tinypkg")
with zipfile.ZipFile(f"{root}/packages/{name}", "w") as wheel:
    for path, data in files.items():
        wheel.writestr(path, data)
sha = hashlib.sha256(open(f"{root}/packages/{name}", "rb").read()).hexdigest()
with open(f"{root}/simple/index.html", "w") as page:
    page.write('<html><body><a href="tinypkg/">tinypkg</a></body></html>\n')
with open(f"{root}/simple/tinypkg/index.html", "w") as page:
    page.write(f'<html><body><a href="../../packages/{name}#sha256={sha}">{name}</a></body></html>\n')
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pip_downloads_a_wheel_through_serve_from_a_pep_503_index() {
    need_clients!();
    let pip = std::process::Command::new("python3")
        .args(["-m", "pip", "--version"])
        .output();
    if !pip.is_ok_and(|out| out.status.success()) {
        eprintln!("skipped: python3 has no pip");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let index = dir.path().join("index");
    let made = Command::new("python3")
        .args(["-c", MAKE_INDEX])
        .arg(&index)
        .output()
        .await
        .unwrap();
    assert!(
        made.status.success(),
        "{}",
        String::from_utf8_lossy(&made.stderr)
    );
    let mut http = Command::new("python3")
        .args([
            "-u",
            "-m",
            "http.server",
            "--bind",
            "127.0.0.1",
            "0",
            "--directory",
        ])
        .arg(&index)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut banner = BufReader::new(http.stdout.take().unwrap()).lines();
    let line = banner
        .next_line()
        .await
        .unwrap()
        .expect("http.server says its port");
    let port = line
        .split(" port ")
        .nth(1)
        .unwrap()
        .split(' ')
        .next()
        .unwrap();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&requests);
    let log = http.stderr.take().unwrap();
    tokio::spawn(async move {
        let mut log = BufReader::new(log).lines();
        while let Ok(Some(line)) = log.next_line().await {
            sink.lock().unwrap().push(line);
        }
    });
    let upstream = format!("http://127.0.0.1:{port}");
    let serving = Serving::start(&dir.path().join("cache"), &["--upstream", &upstream]).await;
    let wheel = "tinypkg-1.0-py3-none-any.whl";
    for round in ["first", "second"] {
        let out_dir = dir.path().join(round);
        let out = Command::new("python3")
            .args([
                "-m",
                "pip",
                "download",
                "--no-cache-dir",
                "--no-deps",
                "--index-url",
            ])
            .arg(serving.url("/simple"))
            .arg("-d")
            .arg(&out_dir)
            .arg("tinypkg")
            .env("PIP_CONFIG_FILE", "/dev/null")
            .env("PIP_DISABLE_PIP_VERSION_CHECK", "1")
            .env("PIP_NO_INPUT", "1")
            .output()
            .await
            .unwrap();
        assert!(
            out.status.success(),
            "pip: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got = std::fs::read(out_dir.join(wheel)).unwrap();
        assert!(got == std::fs::read(index.join("packages").join(wheel)).unwrap());
    }
    let fetched = |path: &str| {
        let lines = requests.lock().unwrap();
        lines
            .iter()
            .filter(|l| l.contains(&format!("GET {path} ")))
            .count()
    };
    assert_eq!(
        fetched(&format!("/packages/{wheel}")),
        1,
        "the wheel came from upstream once"
    );
    assert_eq!(fetched("/simple/tinypkg/"), 1, "and so did its index page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_headers_over_the_limit_get_431() {
    need_clients!();
    let upstream = Server::start().await;
    upstream.route("/a", Behaviour::body("a"));
    let dir = tempfile::tempdir().unwrap();
    let args = ["--upstream", &upstream.url(""), "--max-header-size", "8KiB"];
    let serving = Serving::start(&dir.path().join("cache"), &args).await;
    let big = format!("X-Big: {}", "x".repeat(16 * 1024));
    assert_eq!(status(&["-H", &big, &serving.url("/a")]).await, 431);
    assert_eq!(upstream.count("/a"), 0);
    assert_eq!(status(&["-H", "X-Small: y", &serving.url("/a")]).await, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ranges_followed_from_a_killed_serve_go_on_with_the_new_fill() {
    need_clients!();
    let held = 512 << 10;
    let (upstream, gate, data) = held_upstream(8, 2 << 20, "/obj", held).await;
    let dir = tempfile::tempdir().unwrap();
    let cache = dir.path().join("cache");
    let args = ["--upstream", &upstream.url("")];
    let mut leader = Serving::start(&cache, &args).await;
    let follower = Serving::start(&cache, &args).await;
    let lead = curl_cmd(&["-o", "/dev/null", &leader.url("/obj")])
        .spawn()
        .unwrap();
    gate.reached(1).await;
    let url = follower.url("/obj");
    let (landed, _) = fetch(&["--fail", "--range", "100000-199999", &url]).await;
    assert!(
        landed == data[100_000..200_000],
        "a range that landed comes at once"
    );
    let (across, beyond) = (dir.path().join("across"), dir.path().join("beyond"));
    let ranges = [(&across, "400000-"), (&beyond, "1000000-1000999")];
    let clients: Vec<Child> = ranges
        .iter()
        .map(|(file, range)| {
            curl_cmd(&[
                "--fail",
                "--range",
                range,
                "-o",
                file.to_str().unwrap(),
                &url,
            ])
            .spawn()
            .unwrap()
        })
        .collect();
    assert!(eventually(async || size(&across) > 0).await);
    leader.child.start_kill().unwrap();
    leader.child.wait().await.unwrap();
    let _ = lead.wait_with_output().await;
    gate.open();
    for client in clients {
        let out = client.wait_with_output().await.unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert!(std::fs::read(&across).unwrap() == data[400_000..]);
    assert!(std::fs::read(&beyond).unwrap() == data[1_000_000..1_001_000]);
    assert_eq!(
        upstream.count("/obj"),
        2,
        "the follower took over and fetched again"
    );
}
