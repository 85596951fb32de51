//! Interleavings of the fill protocol that once broke a guarantee (issue 19) and need
//! real processes and real signals: each is driven to its window with SIGSTOP and
//! SIGKILL at known points, and pinned by a test named after its finding. The ones a
//! single process can drive are in `protocol.rs`. Build with `--features failpoints`.
//!
//! Child roles: every child is this test executable re-run as the ignored test
//! `protocol_child`, given its role in `RT_*` environment variables (see [`Role`]): the
//! body its origin serves and how (paced, stalled at a byte until a release file
//! appears, answering a revalidation with 304), its staleness timeout, what to do (read
//! the key, or put a body over it), where to stop reading, and which of the library's
//! failpoints to hook (print a line `RT AT <name> <hits>`, or also block there). A child
//! opens its cache, prints `RT READY` and waits for a line on stdin; then it reads and
//! prints `RT KIND <kind>`, `RT FIRST` after its first chunk, `RT PAUSED <bytes>` (and
//! waits for a line) where told to pause, and ends with `RT DONE <kind> <sha256>` or
//! `RT ERROR <text>`. Its origin appends a line to `fetches.log` per fetch.
//!
//! The tests synchronise only on those lines, on files appearing with a given size, and
//! on the kernel's report that a stopped child has stopped; every wait is bounded.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock, mpsc};
use std::time::{Duration, Instant, SystemTime};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use readthrough::{BoxError, Cache, FetchOptions, Fetched, Origin};
use sha2::{Digest, Sha256};

const KEY: &str = "protocol-key";
/// The longest any one wait of a test may take.
const WAIT: Duration = Duration::from_secs(60);
/// The size of the chunks the children's origins send.
const CHUNK: usize = 64 * 1024;
const MIB: usize = 1 << 20;

/// Finding 1: the body's length, the bytes the follower has returned when its first
/// leader dies, the bytes of the second leader's fill it has compared when that one
/// dies too, and how far the last version differs from the first at its start.
const F1_LEN: usize = 4 * MIB;
const F1_POS: usize = 2 * MIB;
const F1_CHECKED: usize = MIB;
const F1_DIFF: usize = 64 * 1024;
/// The most bytes a reader compares in one step (the library's reader buffer).
const STEP: usize = 256 * 1024;

/// Version `name` of the key's blob, `len` bytes. `v0` and `v1` are unrelated; `v2`
/// (finding 1) agrees with `v0` only in `[F1_DIFF, F1_POS)`.
fn body(name: &str, len: usize) -> Vec<u8> {
    match name {
        "v0" => common::body(0xB0, len),
        "v1" => common::body(0xB1, len),
        "v2" => {
            let mut v2 = common::body(0xB0, len);
            let other = common::body(0xB2, len);
            v2[..F1_DIFF].copy_from_slice(&other[..F1_DIFF]);
            v2[F1_POS..].copy_from_slice(&other[F1_POS..]);
            v2
        }
        _ => panic!("no body named {name:?}"),
    }
}

fn sha(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// What a child does and how its origin behaves; passed as `RT_*` variables.
#[derive(Clone)]
struct Role {
    /// `get` (read the key through the cache) or `put` (store the body over it).
    action: &'static str,
    /// The body the origin serves (or the put stores), by [`body`]'s names.
    body: &'static str,
    len: usize,
    /// The origin sends this many bytes, then waits for `release`, or for ever.
    stall_at: Option<usize>,
    /// A file in the test's directory whose appearance lets the origin go on.
    release: Option<&'static str>,
    validator: Option<&'static str>,
    /// Asked to revalidate, the origin prints `RT REVALIDATING <validator>`, waits for
    /// `release` and answers not-modified. Otherwise it sends its body.
    revalidate_304: bool,
    stale_ms: u64,
    /// After returning at least this many bytes the reader prints `RT PAUSED <n>` and
    /// stops polling until it reads a line.
    pause_at: Option<usize>,
    /// Failpoints to hook, `name=mode` separated by `;`. Modes: `print` (a line per
    /// hit), `block` (print, then wait for a line on stdin), `after:<file>` (print,
    /// only once `<file>` exists in the test's directory).
    failpoints: &'static str,
}

impl Role {
    /// A reader of `body`, `len` bytes, with the default staleness timeout.
    fn get(body: &'static str, len: usize) -> Self {
        Role {
            action: "get",
            body,
            len,
            stall_at: None,
            release: None,
            validator: None,
            revalidate_304: false,
            stale_ms: 30_000,
            pause_at: None,
            failpoints: "",
        }
    }
}

/// The on-disk names of [`KEY`] in the cache under `root` (the default layout).
struct Paths {
    root: PathBuf,
    lock: PathBuf,
    store: PathBuf,
    meta: PathBuf,
}

impl Paths {
    fn new(root: &Path) -> Self {
        let name = sha(KEY.as_bytes());
        let base = root.join("cache").join("v1");
        let store = base.join("store").join(&name[..2]).join(&name);
        Paths {
            root: root.to_owned(),
            lock: base
                .join("tmp")
                .join(&name[..2])
                .join(format!("{name}.lock")),
            meta: store.with_file_name(format!("{name}.meta")),
            store,
        }
    }

    /// The tmp file the lock file names now, if it names one.
    fn named_part(&self) -> Option<PathBuf> {
        let text = std::fs::read_to_string(&self.lock).ok()?;
        let unique = text.lines().find_map(|line| line.strip_prefix("tmp "))?;
        let name = sha(KEY.as_bytes());
        Some(self.lock.with_file_name(format!("{name}.{unique}.part")))
    }

    fn fetches(&self) -> usize {
        std::fs::read_to_string(self.root.join("fetches.log")).map_or(0, |s| s.lines().count())
    }

    fn stored_sha(&self) -> String {
        sha(&std::fs::read(&self.store).expect("a blob is stored"))
    }
}

fn size(path: &Path) -> usize {
    std::fs::metadata(path).map_or(0, |m| m.len() as usize)
}

fn mtime(path: &Path) -> SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// Sets `path`'s modification time, as a step of the wall clock makes it look.
fn set_mtime(path: &Path, at: SystemTime) {
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.set_modified(at).unwrap();
}

/// Waits until `done` holds of the files on disk, at most [`WAIT`].
fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// A runtime for the test process's own cache.
fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// A cache on the test's directory in this process.
async fn open(root: &Path, origin: impl Origin) -> Cache {
    Cache::builder(root.join("cache"))
        .origin(origin)
        .durable(false)
        .build()
        .await
        .expect("open the cache")
}

/// A running child and the lines it prints.
struct Proc {
    name: &'static str,
    child: Child,
    stdin: ChildStdin,
    lines: mpsc::Receiver<String>,
}

impl Proc {
    /// Starts a child in `role` on the test's directory and waits until its cache is
    /// open.
    fn start(name: &'static str, root: &Path, role: &Role) -> Proc {
        let mut command = common::child_test("protocol_child");
        command
            .env("RT_DIR", root)
            .env("RT_ACTION", role.action)
            .env("RT_BODY", role.body)
            .env("RT_LEN", role.len.to_string())
            .env("RT_STALE_MS", role.stale_ms.to_string())
            .env("RT_FAILPOINTS", role.failpoints)
            .env(
                "RT_REVALIDATE_304",
                if role.revalidate_304 { "1" } else { "0" },
            );
        let optional = [
            ("RT_STALL_AT", role.stall_at.map(|n| n.to_string())),
            ("RT_RELEASE", role.release.map(str::to_owned)),
            ("RT_VALIDATOR", role.validator.map(str::to_owned)),
            ("RT_PAUSE_AT", role.pause_at.map(|n| n.to_string())),
        ];
        for (var, value) in optional {
            match value {
                Some(value) => command.env(var, value),
                None => command.env_remove(var),
            };
        }
        let mut child = command
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                // libtest may print its "test protocol_child ... " before our line.
                if let Some(at) = line.find("RT ") {
                    let _ = tx.send(line[at + 3..].to_owned());
                }
            }
        });
        let stdin = child.stdin.take().unwrap();
        let proc = Proc {
            name,
            child,
            stdin,
            lines,
        };
        proc.expect("READY");
        proc
    }

    /// Waits for the next line of the child that starts with `prefix` and returns it,
    /// passing over others.
    fn expect(&self, prefix: &str) -> String {
        self.expect_any(&[prefix])
    }

    /// Waits for the next line of the child that starts with one of `prefixes`.
    fn expect_any(&self, prefixes: &[&str]) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = match self.lines.recv_timeout(left) {
                Ok(line) => line,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!(
                    "{} did not say {prefixes:?} within {} s",
                    self.name,
                    WAIT.as_secs()
                ),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    panic!("{} exited without saying {prefixes:?}", self.name)
                }
            };
            if prefixes.iter().any(|prefix| line.starts_with(prefix)) {
                return line;
            }
        }
    }

    /// Lets the child go on: its first read, or past a pause or a blocking failpoint.
    fn go(&mut self) {
        self.stdin.write_all(b"go\n").unwrap();
        self.stdin.flush().unwrap();
    }

    fn signal(&self, signal: i32) {
        // SAFETY: kill(2) on our own child's pid has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(self.child.id() as i32, signal) }, 0);
    }

    /// Stops the child and returns once the kernel reports every thread of it stopped.
    fn stop(&self) {
        self.signal(libc::SIGSTOP);
        let pid = self.child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: waitpid(2) on our own child, with a valid pointer to an int. It
        // returns when the child stops (a SIGSTOP cannot be ignored) or exits.
        let got = unsafe { libc::waitpid(pid, &mut status, libc::WUNTRACED) };
        assert!(
            got == pid && libc::WIFSTOPPED(status),
            "{} did not stop: waitpid gave {got}, status {status:#x}",
            self.name
        );
    }

    fn resume(&self) {
        self.signal(libc::SIGCONT);
    }

    /// Kills the child and returns once it is gone (so its locks are released).
    fn kill(&mut self) {
        self.signal(libc::SIGKILL);
        self.child.wait().unwrap();
    }

    /// Waits for the child's final report, `DONE <kind> <sha256>` or `ERROR <text>`,
    /// and for it to exit cleanly.
    fn result(mut self) -> String {
        let line = self.expect_any(&["DONE", "ERROR"]);
        let status = self.child.wait().unwrap();
        assert!(status.success(), "{} exited with {status}", self.name);
        line
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Finding 1: a follower that has returned `pos` bytes sees two takeovers in a row.
/// It had compared the second leader's first `checked` bytes when that one died too;
/// the third fill differs from the first in `[0, checked)` (its first 64 KiB) and
/// after `pos`. The follower must compare the third fill from its first byte.
///
/// Before the fix `checked` was reset only when the reader had no previous file, so
/// the third fill was compared only in `[checked, pos)`, where it agrees, and the
/// follower returned `v0[..pos]` followed by `v2[pos..]` with no error.
#[test]
fn finding_1_a_follower_checks_every_new_fill_from_its_first_byte_after_two_takeovers() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let paths = Paths::new(root);
    let (v0, v2) = (body("v0", F1_LEN), body("v2", F1_LEN));
    let (sha_v0, sha_v2) = (sha(&v0), sha(&v2));

    // L1 leads and sends v0's first `pos` bytes; then its origin hangs (L1 lives on,
    // its heartbeat running).
    let l1_role = Role {
        stall_at: Some(F1_POS),
        ..Role::get("v0", F1_LEN)
    };
    let mut l1 = Proc::start("L1", root, &l1_role);
    l1.go();
    assert_eq!(l1.expect("KIND"), "KIND Led");
    l1.expect("FIRST");
    let l1_part = paths
        .named_part()
        .expect("L1's lock file names its tmp file");

    // F follows, returns all `pos` bytes L1 wrote, and stops polling its reader.
    let f_role = Role {
        pause_at: Some(F1_POS),
        failpoints: "reader::checked=print",
        ..Role::get("v0", F1_LEN)
    };
    let mut f = Proc::start("F", root, &f_role);
    f.go();
    assert_eq!(f.expect("KIND"), "KIND Followed");
    assert_eq!(f.expect("PAUSED"), format!("PAUSED {F1_POS}"));

    // L2 follows too; its origin will send v0's first `checked` bytes and hang.
    let l2_role = Role {
        stall_at: Some(F1_CHECKED),
        ..Role::get("v0", F1_LEN)
    };
    let mut l2 = Proc::start("L2", root, &l2_role);
    l2.go();
    assert_eq!(l2.expect("KIND"), "KIND Followed");
    l2.expect("FIRST");

    // With F stopped, L1 dies and L2 takes over.
    f.stop();
    l1.kill();
    wait_until("L2 has taken over and written its first MiB", || {
        paths
            .named_part()
            .is_some_and(|part| part != l1_part && size(&part) >= F1_CHECKED)
    });

    // F wakes, sees the new fill, and compares all of it that there is (`checked`
    // bytes, fewer than `pos`), 256 KiB a step: L2's file was complete up to its stall
    // before F woke. (Were a read shorter, F would have checked less when stopped; v2
    // differs below `pos` only in its first 64 KiB, so the old bug would still show.)
    f.resume();
    f.go();
    f.expect(&format!("AT reader::checked {}", F1_CHECKED / STEP));

    // With F stopped again, L2 dies too, and L3 fills the key with v2 and publishes.
    f.stop();
    l2.kill();
    let mut l3 = Proc::start("L3", root, &Role::get("v2", F1_LEN));
    l3.go();
    assert_eq!(l3.result(), format!("DONE Led {sha_v2}"));

    f.resume();
    let result = f.result();
    let one_version = [&sha_v0, &sha_v2]
        .iter()
        .any(|v| result == format!("DONE Followed {v}"));
    assert!(
        (result.starts_with("ERROR") && result.contains("changed")) || one_version,
        "the follower must end with a change error or exactly one version, not a mix: \
         {result} (v0[..pos] + v2[pos..] has sha256 {})",
        sha(&[&v0[..F1_POS], &v2[F1_POS..]].concat())
    );
    assert_eq!(paths.stored_sha(), sha_v2, "the store holds L3's blob");
}

/// Finding 4: a leader that revalidates an expired entry and is reclaimed as stale
/// while it waits for the origin's 304 must not write its metadata over the entry the
/// leader that reclaimed it published.
///
/// Before the fix the revalidation's write did not check that the leader's lock was
/// still its own: A's 304 rewrote the metadata with v0's digest and validator over
/// B's v1 blob.
#[test]
fn finding_4_a_reclaimed_leaders_304_does_not_rewrite_the_metadata() {
    const LEN: usize = MIB;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let paths = Paths::new(root);
    let (v0, v1) = (body("v0", LEN), body("v1", LEN));

    // An entry of v0 with a validator that expires at once.
    runtime().block_on(async {
        let cache = open(root, common::Counting::new(1)).await;
        let fetched = Fetched::from(v0.clone())
            .with_validator("\"v0\"")
            .with_ttl(Duration::from_millis(1));
        cache.put(KEY, fetched).await.unwrap();
        let expires = cache.metadata(KEY).await.unwrap().unwrap().expires.unwrap();
        wait_until("the entry has expired", || SystemTime::now() > expires);
    });

    // A revalidates; its origin holds the 304 until `release` appears. A is stopped
    // while it waits.
    let a_role = Role {
        revalidate_304: true,
        release: Some("release"),
        ..Role::get("v0", LEN)
    };
    let mut a = Proc::start("A", root, &a_role);
    a.go();
    assert_eq!(a.expect("REVALIDATING"), "REVALIDATING \"v0\"");
    a.stop();

    // B reclaims A's fill once A's files have stood still for B's timeout; its origin
    // answers with a new body and validator, which B publishes.
    let b_role = Role {
        validator: Some("\"v1\""),
        stale_ms: 300,
        ..Role::get("v1", LEN)
    };
    let mut b = Proc::start("B", root, &b_role);
    b.go();
    let b_result = b.result();
    assert!(
        b_result.starts_with("DONE") && b_result.ends_with(&sha(&v1)),
        "{b_result}"
    );
    assert_eq!(paths.fetches(), 2, "A's revalidation and B's fetch");

    // A wakes and gets its 304.
    a.resume();
    std::fs::write(root.join("release"), b"").unwrap();
    let a_result = a.result();
    assert!(
        a_result.starts_with("ERROR")
            || [sha(&v0), sha(&v1)]
                .iter()
                .any(|v| a_result.starts_with("DONE") && a_result.ends_with(v.as_str())),
        "{a_result}"
    );

    assert_eq!(paths.stored_sha(), sha(&v1), "the store holds B's blob");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&paths.meta).unwrap()).unwrap();
    assert_eq!(
        (meta["sha256"].as_str(), meta["validator"].as_str()),
        (Some(sha(&v1).as_str()), Some("\"v1\"")),
        "the metadata file is B's, not A's refresh of v0's: {meta}"
    );
    runtime().block_on(async {
        let cache = open(root, common::Counting::new(1)).await;
        let entry = cache.metadata(KEY).await.unwrap().expect("B's entry");
        assert_eq!(entry.sha256, Some(sha(&v1)));
        assert_eq!(entry.validator.as_deref(), Some("\"v1\""));
        assert_eq!(common::stored(&cache, KEY).await.unwrap(), v1);
    });
}

/// Finding 10, the clock stepped back: a hung leader whose files' times lie an hour in
/// the future is still reclaimed once they have stood still for the waiter's staleness
/// timeout, measured on the waiter's monotonic clock.
///
/// Before the fix staleness was "now minus the file's time", a negative age counted as
/// none, and the follower would have waited an hour (here: it does not finish within
/// the test's bound).
#[test]
fn finding_10_a_hung_leader_is_reclaimed_after_the_clock_steps_back() {
    const LEN: usize = 2 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let paths = Paths::new(root);
    let role = Role {
        stale_ms: 300,
        ..Role::get("v0", LEN)
    };

    let mut leader = Proc::start(
        "L",
        root,
        &Role {
            stall_at: Some(MIB),
            ..role.clone()
        },
    );
    leader.go();
    assert_eq!(leader.expect("KIND"), "KIND Led");
    leader.expect("FIRST");
    leader.stop();
    let part = paths
        .named_part()
        .expect("L's lock file names its tmp file");
    let future = SystemTime::now() + Duration::from_secs(3600);
    set_mtime(&paths.lock, future);
    set_mtime(&part, future);

    let mut follower = Proc::start("F", root, &role);
    follower.go();
    assert_eq!(follower.expect("KIND"), "KIND Followed");
    let result = follower.result();
    assert_eq!(result, format!("DONE Followed {}", sha(&body("v0", LEN))));
    assert_eq!(
        paths.fetches(),
        2,
        "the hung leader's fetch and the reclaim"
    );
    assert_eq!(paths.stored_sha(), sha(&body("v0", LEN)));
}

/// Finding 10, the clock stepped forward: a live leader whose files' times are put an
/// hour in the past is not reclaimed, since its heartbeat keeps changing them.
///
/// Before the fix the follower judged the files an hour old and reclaimed the live
/// leader at its next look: two fetches.
#[test]
fn finding_10_a_live_leader_is_not_reclaimed_when_the_clock_steps_forward() {
    const LEN: usize = 2 * MIB;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let paths = Paths::new(root);
    // A staleness timeout of 2 s: the leader's heartbeat beats every second.
    let role = Role {
        stale_ms: 2000,
        ..Role::get("v0", LEN)
    };

    // The leader sends its first MiB, then waits for `release`, alive.
    let leader_role = Role {
        stall_at: Some(MIB),
        release: Some("release"),
        ..role.clone()
    };
    let mut leader = Proc::start("L", root, &leader_role);
    leader.go();
    assert_eq!(leader.expect("KIND"), "KIND Led");
    leader.expect("FIRST");
    // The follower reports each of its looks at the fill once `stepped` exists.
    let follower_role = Role {
        failpoints: "follow::look=after:stepped",
        ..role
    };
    let mut follower = Proc::start("F", root, &follower_role);
    follower.go();
    assert_eq!(follower.expect("KIND"), "KIND Followed");
    follower.expect("FIRST");

    // Step just after a heartbeat, so the step stands for about a second.
    let part = paths
        .named_part()
        .expect("L's lock file names its tmp file");
    let beat = mtime(&paths.lock);
    wait_until("the leader's heartbeat refreshes its lock file", || {
        mtime(&paths.lock) != beat
    });
    let past = SystemTime::now() - Duration::from_secs(3600);
    set_mtime(&paths.lock, past);
    set_mtime(&part, past);
    std::fs::write(root.join("stepped"), b"").unwrap();
    // Looks that began after the step (before the fix, the first reclaimed)...
    let still_following = |looks: usize| {
        for _ in 0..looks {
            let line = follower.expect_any(&["AT follow::look", "DONE", "ERROR"]);
            assert!(
                line.starts_with("AT"),
                "the follower stopped following the live leader ({line}); origin fetches: {}",
                paths.fetches()
            );
        }
    };
    still_following(5);
    // ...and after the leader's next heartbeat.
    wait_until("the leader's heartbeat refreshes its lock file", || {
        mtime(&paths.lock) != past
    });
    still_following(3);

    std::fs::write(root.join("release"), b"").unwrap();
    let want = sha(&body("v0", LEN));
    assert_eq!(leader.result(), format!("DONE Led {want}"));
    assert_eq!(follower.result(), format!("DONE Followed {want}"));
    assert_eq!(paths.fetches(), 1, "the live leader was not reclaimed");
    assert_eq!(paths.stored_sha(), want);
}

/// Finding 2: a put of a new body of the same length is killed between renaming the
/// blob into the store and renaming its metadata. A reader afterwards must never be
/// given one body under metadata that describes another.
///
/// Before the fix the metadata was renamed in first and was not bound to its blob: the
/// crash left v0's body under v1's metadata (digest and validator), served as a hit.
#[test]
fn finding_2_a_crash_between_the_renames_never_pairs_a_body_with_another_bodys_metadata() {
    const LEN: usize = MIB;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let (v0, v1) = (body("v0", LEN), body("v1", LEN));

    runtime().block_on(async {
        let cache = open(root, common::Counting::new(1)).await;
        let fetched = Fetched::from(v0.clone()).with_validator("\"v0\"");
        cache.put(KEY, fetched).await.unwrap();
    });

    let put_role = Role {
        action: "put",
        validator: Some("\"v1\""),
        failpoints: "fill::renamed=block",
        ..Role::get("v1", LEN)
    };
    let mut put = Proc::start("P", root, &put_role);
    put.go();
    put.expect("AT fill::renamed");
    put.kill();

    let validator_of = |digest: &str| {
        if digest == sha(&v0) {
            Some("\"v0\"")
        } else if digest == sha(&v1) {
            Some("\"v1\"")
        } else {
            None
        }
    };
    let check_pair = |entry: &readthrough::Entry, what: &str| {
        let on_disk = sha(&std::fs::read(entry.path.as_ref().unwrap()).unwrap());
        assert_eq!(
            entry.sha256,
            Some(on_disk),
            "{what}: the metadata describes another body than the one stored"
        );
        assert_eq!(
            entry.validator.as_deref(),
            validator_of(entry.sha256.as_deref().unwrap()),
            "{what}: the validator is another body's"
        );
    };
    runtime().block_on(async {
        let fetches = Arc::new(AtomicUsize::new(0));
        let cache = open(root, Served(Arc::clone(&fetches), v1.clone())).await;

        let before = cache.metadata(KEY).await.unwrap();
        if let Some(entry) = &before {
            check_pair(entry, "metadata after the crash");
        }
        for entry in cache.entries().await.unwrap() {
            check_pair(&entry, "an entry listed after the crash");
        }

        let got = cache.get(KEY).await.unwrap().bytes().await.unwrap();
        assert!(
            got == v0 || got == v1,
            "a read gets one whole version of the body"
        );
        let after = cache
            .metadata(KEY)
            .await
            .unwrap()
            .expect("an entry after a read");
        check_pair(&after, "metadata after a read");
        assert_eq!(
            after.sha256,
            Some(sha(&got)),
            "the read's body is the one described"
        );
        if fetches.load(Ordering::SeqCst) == 0 {
            let before = before.expect("a body served from the store had metadata");
            assert_eq!(
                before.sha256,
                Some(sha(&got)),
                "the body served is the one described"
            );
        }
        for entry in cache.entries().await.unwrap() {
            check_pair(&entry, "an entry listed after a read");
        }
    });
}

/// An origin that serves its body with validator `"v1"` (what the origin holds after
/// the put of v1) and counts its fetches.
struct Served(Arc<AtomicUsize>, Vec<u8>);

impl Origin for Served {
    fn fetch(&self, _: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        let fetched = Fetched::from(self.1.clone()).with_validator("\"v1\"");
        Box::pin(async move { Ok(fetched) })
    }
}

// ---- The child's side ----

/// The lines this child reads from stdin, shared by its main task and the callbacks
/// of its failpoints (which run on the library's threads).
fn next_line() {
    static LINES: OnceLock<Mutex<mpsc::Receiver<String>>> = OnceLock::new();
    let lines = LINES.get_or_init(|| {
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Mutex::new(rx)
    });
    if lines.lock().unwrap().recv().is_err() {
        // The test is gone.
        std::process::exit(2);
    }
}

/// The child's origin: its role's body, sent in chunks, stalled where its role says.
struct ChildOrigin {
    dir: PathBuf,
    body: Bytes,
    stall_at: Option<usize>,
    release: Option<PathBuf>,
    validator: Option<String>,
    revalidate_304: bool,
}

/// Waits until `release` exists (the origin's own slowness), or for ever without one.
async fn released(release: Option<PathBuf>) {
    match release {
        Some(path) => {
            while !path.exists() {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
        None => futures::future::pending().await,
    }
}

impl Origin for ChildOrigin {
    fn fetch(
        &self,
        _: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let log = self.dir.join("fetches.log");
        let (body, stall_at, release) = (self.body.clone(), self.stall_at, self.release.clone());
        let validator = self.validator.clone();
        let revalidate_304 = self.revalidate_304;
        Box::pin(async move {
            let mut file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(&log)?;
            // One write(2) per line, so lines of processes that fetch at once never mix.
            file.write_all(format!("{}\n", std::process::id()).as_bytes())?;
            if let Some(asked) = options.revalidate.filter(|_| revalidate_304) {
                println!("RT REVALIDATING {asked}");
                released(release).await;
                return Ok(Fetched::not_modified());
            }
            let len = body.len();
            let chunks = (0..len).step_by(CHUNK).map(move |at| {
                let chunk = body.slice(at..(at + CHUNK).min(len));
                (at, chunk)
            });
            let stream = futures::stream::iter(chunks).then(move |(at, chunk)| {
                let release = release.clone();
                async move {
                    if stall_at.is_some_and(|stall| at >= stall) {
                        released(release).await;
                    }
                    Ok::<_, BoxError>(chunk)
                }
            });
            let mut fetched = Fetched::from_stream(stream).with_len(len as u64);
            if let Some(validator) = validator {
                fetched = fetched.with_validator(validator);
            }
            Ok(fetched)
        })
    }
}

/// Hooks the failpoints `spec` names (see [`Role::failpoints`]).
fn hook_failpoints(spec: &str, dir: &Path) {
    for item in spec.split(';').filter(|item| !item.is_empty()) {
        let (name, mode) = item.split_once('=').expect("failpoint=mode");
        let label = name.to_owned();
        let block = mode == "block";
        let marker = mode.strip_prefix("after:").map(|file| dir.join(file));
        assert!(
            block || mode == "print" || marker.is_some(),
            "unknown mode {mode:?}"
        );
        let hits = AtomicUsize::new(0);
        fail::cfg_callback(name, move || {
            if marker.as_ref().is_some_and(|marker| !marker.exists()) {
                return;
            }
            let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
            println!("RT AT {label} {n}");
            if block {
                next_line();
            }
        })
        .unwrap();
    }
}

/// The child process's side. Not a test of its own: the tests above run it.
#[test]
#[ignore = "run by the tests above as a child process"]
fn protocol_child() {
    let env = |name: &str| std::env::var(name).ok();
    let need = |name: &str| env(name).unwrap_or_else(|| panic!("{name} is set"));
    let dir = PathBuf::from(need("RT_DIR"));
    let len: usize = need("RT_LEN").parse().unwrap();
    let data = Bytes::from(body(&need("RT_BODY"), len));
    let validator = env("RT_VALIDATOR");
    let origin = ChildOrigin {
        dir: dir.clone(),
        body: data.clone(),
        stall_at: env("RT_STALL_AT").map(|n| n.parse().unwrap()),
        release: env("RT_RELEASE").map(|file| dir.join(file)),
        validator: validator.clone(),
        revalidate_304: need("RT_REVALIDATE_304") == "1",
    };
    let stale = Duration::from_millis(need("RT_STALE_MS").parse().unwrap());
    let pause_at: Option<usize> = env("RT_PAUSE_AT").map(|n| n.parse().unwrap());
    hook_failpoints(&need("RT_FAILPOINTS"), &dir);
    let action = need("RT_ACTION");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let cache = Cache::builder(dir.join("cache"))
            .origin(origin)
            .stale_after(stale)
            .durable(false)
            .build()
            .await
            .unwrap();
        println!("RT READY");
        next_line();
        if action == "put" {
            let mut fetched = Fetched::from(data.clone());
            if let Some(validator) = validator {
                fetched = fetched.with_validator(validator);
            }
            return match cache.put(KEY, fetched).await {
                Ok(_) => println!("RT DONE put {}", sha(&data)),
                Err(e) => println!("RT ERROR {e}"),
            };
        }
        let mut reader = match cache.get(KEY).await {
            Ok(reader) => reader,
            Err(e) => return println!("RT ERROR {e}"),
        };
        let kind = format!("{:?}", reader.kind());
        println!("RT KIND {kind}");
        let mut hasher = Sha256::new();
        let mut total = 0;
        let mut paused = false;
        while let Some(chunk) = reader.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => return println!("RT ERROR {e}"),
            };
            hasher.update(&chunk);
            if total == 0 {
                println!("RT FIRST");
            }
            total += chunk.len();
            if let Some(at) = pause_at
                && !paused
                && total >= at
            {
                println!("RT PAUSED {total}");
                paused = true;
                next_line();
            }
        }
        println!("RT DONE {kind} {}", hex::encode(hasher.finalize()));
    });
}
