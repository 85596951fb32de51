//! Several real processes on one cache directory: one origin fetch between them,
//! takeover when the leader is killed, reclaim when it is stopped, and no mixed
//! bodies when the origin changes under a takeover.
//!
//! Each child is this test executable re-run with `--ignored --exact child_process`;
//! it reads its job from the environment, says `READY` once its cache is open, waits
//! for a line on stdin, reads the key, and reports on stdout.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use futures::StreamExt;
use sha2::{Digest, Sha256};

const LEN: usize = 4 << 20;
const CHUNK: usize = 64 * 1024;

/// A child's job.
#[derive(Clone)]
struct Job {
    dir: PathBuf,
    key: &'static str,
    /// Pause between origin chunks.
    delay_ms: u64,
    stale_ms: u64,
    /// Serve a different body on each fetch after the first.
    changing: bool,
    /// Fail the body half-way, once the file `release` exists in `dir`.
    fail: bool,
    file_locks: bool,
    /// Serve a validator and honour ranges under it, so a takeover can resume.
    resumable: bool,
}

impl Job {
    fn new(dir: &Path) -> Self {
        Job {
            dir: dir.to_owned(),
            key: "shared-key",
            delay_ms: 5,
            stale_ms: 30_000,
            changing: false,
            fail: false,
            file_locks: true,
            resumable: false,
        }
    }
    fn cache_dir(&self) -> PathBuf {
        self.dir.join("cache")
    }
    fn fetch_log(&self) -> PathBuf {
        self.dir.join("fetches.log")
    }
    fn fetches(&self) -> usize {
        self.fetched_from().len()
    }
    /// The offset each origin fetch started at, in order.
    fn fetched_from(&self) -> Vec<u64> {
        std::fs::read_to_string(self.fetch_log())
            .unwrap_or_default()
            .lines()
            .map(|line| line.split(' ').nth(1).unwrap().parse().unwrap())
            .collect()
    }
}

/// A running child and the lines it prints.
struct Proc {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    fn spawn(job: &Job) -> Proc {
        let mut child = common::child_test("child_process")
            .env("RT_DIR", &job.dir)
            .env("RT_KEY", job.key)
            .env("RT_DELAY_MS", job.delay_ms.to_string())
            .env("RT_STALE_MS", job.stale_ms.to_string())
            .env("RT_CHANGING", if job.changing { "1" } else { "0" })
            .env("RT_FAIL", if job.fail { "1" } else { "0" })
            .env("RT_LOCKS", if job.file_locks { "1" } else { "0" })
            .env("RT_RESUMABLE", if job.resumable { "1" } else { "0" })
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print its "test child_process ... " before our line.
                if let Some(at) = line.find("RT ") {
                    let _ = tx.send(line[at + 3..].to_owned());
                }
            }
        });
        let stdin = child.stdin.take();
        Proc {
            child,
            stdin,
            lines,
        }
    }

    /// Waits for the next line of the child that starts with `prefix` and returns it.
    fn expect(&self, prefix: &str) -> String {
        loop {
            let line = self
                .lines
                .recv_timeout(Duration::from_secs(60))
                .unwrap_or_else(|_| {
                    panic!("child {} did not say {prefix:?} in time", self.child.id())
                });
            if line.starts_with(prefix) {
                return line;
            }
        }
    }

    fn go(&mut self) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Waits for the child's final report: `DONE <kind> <sha256>` or `ERROR <text>`.
    fn result(mut self) -> String {
        let line = self.expect_any(&["DONE", "ERROR"]);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "child exited with {status}");
        line
    }

    fn expect_any(&self, prefixes: &[&str]) -> String {
        loop {
            let line = self.expect("");
            if prefixes.iter().any(|p| line.starts_with(p)) {
                return line;
            }
        }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

fn expected(job: &Job, version: u64) -> String {
    sha_hex(&common::body_of(job.key, version, LEN))
}

/// Starts a child and waits until its cache is open.
fn ready(job: &Job) -> Proc {
    let proc = Proc::spawn(job);
    proc.expect("READY");
    proc
}

/// Starts the leader: a child that reads first and has received its first bytes.
fn leader(job: &Job) -> Proc {
    let mut proc = ready(job);
    proc.go();
    assert_eq!(proc.expect("KIND"), "KIND Led");
    proc.expect("FIRST");
    proc
}

/// Starts `n` followers that have each received bytes of the leader's fill.
fn followers(job: &Job, n: usize) -> Vec<Proc> {
    let mut procs: Vec<Proc> = (0..n).map(|_| Proc::spawn(job)).collect();
    for proc in &mut procs {
        proc.expect("READY");
        proc.go();
    }
    for proc in &procs {
        assert_eq!(proc.expect("KIND"), "KIND Followed");
        proc.expect("FIRST");
    }
    procs
}

fn store_files(job: &Job) -> Vec<String> {
    common::files_under(&job.cache_dir().join("v1/store"))
        .into_iter()
        .filter(|f| !f.ends_with(".meta"))
        .collect()
}

fn assert_store_holds(job: &Job, version: u64) {
    let files = store_files(job);
    assert_eq!(files.len(), 1, "one stored blob: {files:?}");
    assert_eq!(
        sha_hex(&std::fs::read(&files[0]).unwrap()),
        expected(job, version)
    );
}

fn tmp_parts(job: &Job) -> Vec<String> {
    common::files_under(&job.cache_dir().join("v1/tmp"))
        .into_iter()
        .filter(|f| f.ends_with(".part"))
        .collect()
}

#[test]
fn eight_processes_on_one_cold_key_make_one_fetch() {
    let dir = tempfile::tempdir().unwrap();
    let job = Job::new(dir.path());
    let mut procs: Vec<Proc> = (0..8).map(|_| Proc::spawn(&job)).collect();
    for proc in &procs {
        proc.expect("READY");
    }
    for proc in &mut procs {
        proc.go();
    }
    let results: Vec<String> = procs.into_iter().map(Proc::result).collect();
    let want = expected(&job, 0);
    for result in &results {
        assert!(
            result.starts_with("DONE") && result.ends_with(&want),
            "{result}"
        );
    }
    let led = results.iter().filter(|r| r.starts_with("DONE Led")).count();
    assert_eq!(led, 1, "{results:?}");
    assert_eq!(job.fetches(), 1, "one origin fetch across 8 processes");
    assert_store_holds(&job, 0);
    assert!(tmp_parts(&job).is_empty());
}

#[test]
fn a_killed_leader_is_taken_over_and_every_follower_completes() {
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        delay_ms: 20,
        ..Job::new(dir.path())
    };
    let leader = leader(&job);
    let followers = followers(&job, 4);
    leader.signal(libc::SIGKILL);
    drop(leader);
    let want = expected(&job, 0);
    for follower in followers {
        let result = follower.result();
        assert!(
            result.starts_with("DONE") && result.ends_with(&want),
            "{result}"
        );
    }
    assert_eq!(job.fetches(), 2, "the dead leader's fetch and one takeover");
    assert_store_holds(&job, 0);
    assert!(
        tmp_parts(&job).is_empty(),
        "the dead leader's tmp file is removed: {:?}",
        tmp_parts(&job)
    );
    let next = ready(&job);
    let mut next = next;
    next.go();
    assert_eq!(next.result(), format!("DONE Hit {want}"));
}

/// Issue 17: a process that takes over a killed leader's fill keeps the prefix the
/// dead leader wrote and asks the origin only for the rest (a range under the same
/// validator), so the origin sends about half the blob again, not all of it; the
/// followers carry on and every one of them gets the whole body.
#[test]
fn a_leader_killed_half_way_is_resumed_not_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        delay_ms: 10,
        resumable: true,
        ..Job::new(dir.path())
    };
    let leader = leader(&job);
    let followers = followers(&job, 2);
    let half = (LEN / 2) as u64;
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !tmp_parts(&job)
        .iter()
        .any(|part| std::fs::metadata(part).is_ok_and(|meta| meta.len() >= half))
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the leader got half-way"
        );
        std::thread::sleep(Duration::from_millis(2));
    }
    leader.signal(libc::SIGKILL);
    drop(leader);
    let want = expected(&job, 0);
    for follower in followers {
        let result = follower.result();
        assert!(
            result.starts_with("DONE") && result.ends_with(&want),
            "{result}"
        );
    }
    let from = job.fetched_from();
    assert_eq!(
        from.len(),
        2,
        "the dead leader's fetch and one takeover: {from:?}"
    );
    assert!(
        from[1] >= half,
        "the takeover asked only for the rest, from {} of {LEN}",
        from[1]
    );
    assert_store_holds(&job, 0);
    assert!(tmp_parts(&job).is_empty(), "{:?}", tmp_parts(&job));
}

#[test]
fn a_stopped_leader_is_reclaimed_after_the_staleness_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        delay_ms: 20,
        stale_ms: 2000,
        ..Job::new(dir.path())
    };
    let leader = leader(&job);
    let followers = followers(&job, 3);
    leader.signal(libc::SIGSTOP);
    let want = expected(&job, 0);
    let results: Vec<String> = followers.into_iter().map(Proc::result).collect();
    for result in &results {
        assert!(
            result.starts_with("DONE") && result.ends_with(&want),
            "{result}"
        );
    }
    assert_eq!(
        job.fetches(),
        2,
        "the stopped leader's fetch and one reclaim"
    );
    assert_store_holds(&job, 0);
    leader.signal(libc::SIGCONT);
    let result = leader.result();
    assert!(
        result.ends_with(&want),
        "the woken leader still serves its own complete body: {result}"
    );
    assert_store_holds(&job, 0);
    assert!(tmp_parts(&job).is_empty(), "{:?}", tmp_parts(&job));
}

#[test]
fn a_takeover_with_a_changed_body_ends_followers_with_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        delay_ms: 20,
        changing: true,
        ..Job::new(dir.path())
    };
    let leader = leader(&job);
    let followers = followers(&job, 3);
    leader.signal(libc::SIGKILL);
    drop(leader);
    for follower in followers {
        let result = follower.result();
        assert!(
            result.starts_with("ERROR") && result.contains("changed"),
            "{result}"
        );
    }
    // The process that took over may exit (its reader failed) before its fill is
    // stored; then the next read fetches again. Either way it gets one whole version.
    let mut next = ready(&job);
    next.go();
    let result = next.result();
    let versions: Vec<String> = (1..job.fetches() as u64)
        .map(|v| expected(&job, v))
        .collect();
    assert!(
        result.starts_with("DONE") && versions.iter().any(|v| result.ends_with(v.as_str())),
        "{result}"
    );
    let stored = sha_hex(&std::fs::read(&store_files(&job)[0]).unwrap());
    assert!(
        result.ends_with(&stored),
        "the store holds what the last read got"
    );
}

#[test]
fn an_origin_error_reaches_followers_in_other_processes() {
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        fail: true,
        ..Job::new(dir.path())
    };
    let leader = leader(&job);
    // Every follower has said FIRST: each follows the leader's fill (it has its bytes)
    // before the origin's failure is let go, and none of them fetched.
    let followers = followers(&job, 3);
    assert_eq!(job.fetches(), 1, "the followers follow");
    std::fs::write(dir.path().join("release"), b"").unwrap();
    let mut results = Vec::new();
    for proc in followers.into_iter().chain([leader]) {
        let result = proc.result();
        assert!(
            result.starts_with("ERROR") && result.contains("broke mid-body"),
            "{result}"
        );
        results.push(result);
    }
    assert_eq!(
        job.fetches(),
        1,
        "followers report the leader's error instead of fetching: {results:#?}"
    );
    assert!(store_files(&job).is_empty(), "nothing is cached");
    assert!(tmp_parts(&job).is_empty());
    let mut next = ready(&job);
    next.go();
    assert!(next.result().starts_with("ERROR"));
    assert_eq!(job.fetches(), 2, "the next read tries again");
}

#[test]
fn without_file_locks_processes_fetch_for_themselves_but_never_mix_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let job = Job {
        file_locks: false,
        ..Job::new(dir.path())
    };
    let mut procs: Vec<Proc> = (0..4).map(|_| Proc::spawn(&job)).collect();
    for proc in &procs {
        proc.expect("READY");
    }
    for proc in &mut procs {
        proc.go();
    }
    let want = expected(&job, 0);
    for proc in procs {
        let result = proc.result();
        assert!(
            result.starts_with("DONE") && result.ends_with(&want),
            "{result}"
        );
    }
    assert!((1..=4).contains(&job.fetches()));
    assert_store_holds(&job, 0);
    assert!(tmp_parts(&job).is_empty());
}

/// A child's origin: version 0 of each key's body (or a new version on each fetch),
/// in paced chunks, logging `<pid> <offset>` for each fetch. When `resumable`, it
/// gives a validator and answers a ranged fetch under it with the rest of the body.
struct ChildOrigin {
    dir: PathBuf,
    delay: Duration,
    changing: bool,
    fail: bool,
    resumable: bool,
}

impl readthrough::Origin for ChildOrigin {
    fn fetch(
        &self,
        key: &str,
        options: readthrough::FetchOptions,
    ) -> futures::future::BoxFuture<'static, Result<readthrough::Fetched, readthrough::BoxError>>
    {
        let (log, release) = (self.dir.join("fetches.log"), self.dir.join("release"));
        let (delay, changing, fail, resumable) =
            (self.delay, self.changing, self.fail, self.resumable);
        let key = key.to_owned();
        Box::pin(async move {
            let before = std::fs::read_to_string(&log).map_or(0, |s| s.lines().count());
            let version = if changing { before as u64 } else { 0 };
            let etag = format!("\"v{version}\"");
            let resume =
                resumable && options.offset > 0 && options.if_validator == Some(etag.clone());
            let offset = if resume { options.offset } else { 0 };
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            // One write(2) per line: with O_APPEND, the lines of processes that fetch
            // at once then never interleave (`writeln!` writes each piece apart).
            file.write_all(format!("{} {offset}\n", std::process::id()).as_bytes())?;
            let body = common::body_of(&key, version, LEN);
            let mut chunks = common::chunked(body[offset as usize..].to_vec(), CHUNK);
            if fail {
                chunks.truncate(chunks.len() / 2);
                chunks.push(Err("the origin broke mid-body".into()));
            }
            let body = futures::stream::iter(chunks).then(move |chunk| {
                let release = release.clone();
                async move {
                    tokio::time::sleep(delay).await;
                    while chunk.is_err() && !release.exists() {
                        tokio::time::sleep(Duration::from_millis(5)).await;
                    }
                    chunk
                }
            });
            let mut fetched = readthrough::Fetched::from_stream(body)
                .with_len(LEN as u64)
                .with_offset(offset);
            if resumable {
                fetched = fetched.with_validator(etag);
            }
            Ok(fetched)
        })
    }
}

/// The child process's side. Not a test of its own: the tests above run it.
#[test]
#[ignore = "run by the multi-process tests as a child"]
fn child_process() {
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let dir = PathBuf::from(env("RT_DIR"));
    let key = env("RT_KEY");
    let delay = Duration::from_millis(env("RT_DELAY_MS").parse().unwrap());
    let stale = Duration::from_millis(env("RT_STALE_MS").parse().unwrap());
    let changing = env("RT_CHANGING") == "1";
    let fail = env("RT_FAIL") == "1";
    let locks = env("RT_LOCKS") == "1";
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let origin = ChildOrigin {
            dir: dir.clone(),
            delay,
            changing,
            fail,
            resumable: env("RT_RESUMABLE") == "1",
        };
        let cache = readthrough::Cache::builder(dir.join("cache"))
            .origin(origin)
            .stale_after(stale)
            .durable(false)
            .file_locks(locks)
            .build()
            .await
            .unwrap();
        println!("RT READY");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        let mut reader = match cache.get(&key).await {
            Ok(reader) => reader,
            Err(e) => return println!("RT ERROR {e}"),
        };
        let kind = format!("{:?}", reader.kind());
        println!("RT KIND {kind}");
        let mut hasher = Sha256::new();
        let mut first = true;
        while let Some(chunk) = reader.next().await {
            match chunk {
                Ok(chunk) => hasher.update(&chunk),
                Err(e) => return println!("RT ERROR {e}"),
            }
            if first {
                println!("RT FIRST");
                first = false;
            }
        }
        println!("RT DONE {kind} {}", hex::encode(hasher.finalize()));
    });
}
