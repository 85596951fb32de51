//! The key-value view ([`Values`]): the plugin-style blob cache (get, put, init, short
//! TTLs) and the application cache with expiry and named locks, across tasks and
//! processes.
//!
//! Children are this test executable re-run with `--ignored --exact child_process`;
//! they take a lock and report on stdout, and wait on stdin for the parent.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::ManualClock;
use readthrough::{Cache, Clock, Error, GetOptions, LockHolder, PrunePolicy, Values};

const MINUTE: Duration = Duration::from_secs(60);

async fn values_with(dir: &Path, clock: &ManualClock) -> Values {
    Values::new(
        &Cache::builder(dir)
            .clock(clock.clone())
            .build()
            .await
            .unwrap(),
    )
}

async fn text(values: &Values, key: &str) -> Option<String> {
    let loaded = values.load(key).await.unwrap()?;
    let bytes = loaded.bytes().await.unwrap().value;
    Some(String::from_utf8(bytes.to_vec()).unwrap())
}

/// Times are kept to the millisecond.
fn to_millis(time: SystemTime) -> SystemTime {
    let ms = time.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    UNIX_EPOCH + Duration::from_millis(ms)
}

// The plugin-style blob cache.

#[tokio::test]
async fn a_missing_key_is_none_and_put_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let values = Values::new(&Cache::builder(dir.path()).build().await.unwrap());
    assert!(values.load("absent").await.unwrap().is_none());
    assert!(values.cache().read("absent").await.unwrap().is_none());
    values.save("k", "first", None).await.unwrap();
    values.save("k", b"second".to_vec(), None).await.unwrap();
    assert_eq!(text(&values, "k").await.as_deref(), Some("second"));
    let stream = futures::stream::iter(
        ["str", "eam"].map(|s| Ok::<_, std::io::Error>(bytes::Bytes::from(s))),
    );
    values
        .save("k", readthrough::Fetched::from_stream(stream), None)
        .await
        .unwrap();
    assert_eq!(text(&values, "k").await.as_deref(), Some("stream"));
}

#[tokio::test]
async fn a_broken_store_is_an_error_not_a_miss() {
    let dir = tempfile::tempdir().unwrap();
    let values = Values::new(&Cache::builder(dir.path()).build().await.unwrap());
    values.save("k", "v", None).await.unwrap();
    let blob = values
        .cache()
        .metadata("k")
        .await
        .unwrap()
        .unwrap()
        .path
        .unwrap();
    // The blob's shard folder becomes a plain file: the store cannot be read.
    let shard = blob.parent().unwrap();
    std::fs::remove_dir_all(shard).unwrap();
    std::fs::write(shard, b"not a folder").unwrap();
    let err = values.load("k").await.unwrap_err();
    assert!(matches!(err, Error::Io { .. }), "{err}");
    assert!(
        err.to_string().contains(&shard.display().to_string()),
        "{err}"
    );
}

#[tokio::test]
async fn init_says_whether_the_directory_can_work() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a file");
    std::fs::write(&file, b"x").unwrap();
    let err = Cache::builder(&file).build().await.unwrap_err();
    assert!(matches!(err, Error::BadDirectory { .. }), "{err}");
    assert!(err.to_string().contains("not usable"), "{err}");

    let root = dir.path().join("cache");
    let cache = Cache::builder(&root).build().await.unwrap();
    cache.check().await.unwrap();
    // The store folder is replaced by a file: the next check says so.
    let store = root.join("v1").join("store");
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::write(&store, b"x").unwrap();
    let err = cache.check().await.unwrap_err();
    assert!(matches!(err, Error::BadDirectory { .. }), "{err}");
    assert!(err.to_string().contains("store"), "{err}");
    // Removed folders are made again.
    std::fs::remove_file(&store).unwrap();
    std::fs::remove_dir_all(root.join("v1").join("tmp")).unwrap();
    cache.check().await.unwrap();
}

#[tokio::test]
async fn short_ttl_entries_are_gone_after_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let values = values_with(dir.path(), &clock).await;
    values
        .save("brief", "v", Some(Duration::from_millis(1500)))
        .await
        .unwrap();
    values.save("lasting", "v", None).await.unwrap();
    clock.advance(Duration::from_millis(1400));
    assert_eq!(text(&values, "brief").await.as_deref(), Some("v"));
    clock.advance(Duration::from_millis(101));
    assert!(values.load("brief").await.unwrap().is_none());
    assert!(values.cache().read("brief").await.unwrap().is_none());
    assert_eq!(values.keys("").await.unwrap(), ["lasting"]);
    // Saving it again makes it new.
    assert!(values.save("brief", "w", None).await.unwrap());
}

// The application cache.

#[tokio::test]
async fn save_says_whether_the_key_was_new_and_no_ttl_never_expires() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let cache = Cache::builder(dir.path())
        .clock(clock.clone())
        .default_ttl(MINUTE)
        .build()
        .await
        .unwrap();
    let values = Values::new(&cache);
    assert!(values.save("k", "1", None).await.unwrap());
    assert!(!values.save("k", "2", None).await.unwrap());
    clock.advance(Duration::from_secs(10 * 365 * 24 * 3600));
    let loaded = values.load("k").await.unwrap().unwrap();
    assert_eq!(loaded.expires, None);
}

#[tokio::test]
async fn a_save_whose_ttl_has_passed_is_accepted_and_never_loads() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let values = values_with(dir.path(), &clock).await;
    values.save("k", "old", None).await.unwrap();
    let saved = values.save("k", "new", Some(Duration::ZERO)).await.unwrap();
    assert!(!saved, "k held a live value");
    assert!(values.load("k").await.unwrap().is_none());
    assert!(values.keys("").await.unwrap().is_empty());
    assert!(
        values
            .save("k", "again", Some(Duration::ZERO))
            .await
            .unwrap()
    );
    assert!(values.load("k").await.unwrap().is_none());
    // It is a write like any other: refused while another holder locks the key.
    values.save("k", "kept", None).await.unwrap();
    let other = Values::new(values.cache());
    assert!(other.lock("k", None).await.unwrap());
    let refused = values.save("k", "x", Some(Duration::ZERO)).await;
    assert!(matches!(refused, Err(Error::Locked { .. })), "{refused:?}");
    assert_eq!(text(&values, "k").await.as_deref(), Some("kept"));
}

#[tokio::test]
async fn load_gives_the_times_and_can_extend_the_ttl() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let values = values_with(dir.path(), &clock).await;
    let saved_at = to_millis(clock.now());
    values
        .save_json("session", &("ada", 7), Some(10 * MINUTE))
        .await
        .unwrap();

    clock.advance(2 * MINUTE);
    let first = values.load("session").await.unwrap().unwrap();
    assert_eq!(first.key, "session");
    assert_eq!(first.created, saved_at);
    // Never read before: its last read is its save, to the file system's precision.
    let since_save = first.last_read.duration_since(saved_at).unwrap();
    assert!(since_save < Duration::from_secs(1), "{since_save:?}");
    assert_eq!(first.expires, Some(saved_at + 10 * MINUTE));
    let first = first.json::<(String, u32)>().await.unwrap();
    assert_eq!(first.value, ("ada".to_owned(), 7));

    clock.advance(2 * MINUTE);
    let read_at = to_millis(clock.now());
    let extended = values
        .load_opts("session", &GetOptions::default().extend_expiry())
        .await
        .unwrap()
        .unwrap();
    assert!(
        extended.last_read > saved_at,
        "the first load was recorded: {:?}",
        extended.last_read
    );
    assert_eq!(extended.expires, Some(read_at + 10 * MINUTE));
    // It lives past its first expiry, and only until the extended one.
    clock.advance(9 * MINUTE);
    assert!(values.load("session").await.unwrap().is_some());
    clock.advance(MINUTE);
    assert!(values.load("session").await.unwrap().is_none());
}

#[tokio::test]
async fn a_value_of_the_wrong_type_is_a_json_error() {
    let dir = tempfile::tempdir().unwrap();
    let values = Values::new(&Cache::builder(dir.path()).build().await.unwrap());
    values.save("n", "not json", None).await.unwrap();
    let err = values
        .load("n")
        .await
        .unwrap()
        .unwrap()
        .json::<u32>()
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::Json { ref key, .. } if key == "n"),
        "{err}"
    );
}

#[tokio::test]
async fn destroy_list_count_and_clear() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let values = values_with(dir.path(), &clock).await;
    for key in ["user:1", "user:2", "order:9"] {
        values.save(key, key.to_owned(), None).await.unwrap();
    }
    values.save("user:old", "x", Some(MINUTE)).await.unwrap();
    clock.advance(2 * MINUTE);
    assert_eq!(values.keys("user:").await.unwrap(), ["user:1", "user:2"]);
    assert_eq!(
        values.keys("").await.unwrap(),
        ["order:9", "user:1", "user:2"]
    );
    assert_eq!(values.count().await.unwrap(), 3);

    assert!(values.destroy("user:1").await.unwrap());
    assert!(!values.destroy("user:1").await.unwrap());
    assert_eq!(values.count().await.unwrap(), 2);

    // Another holder's lock keeps its key through a clear.
    let other = values_with(dir.path(), &clock).await;
    assert!(other.lock("order:9", 10 * MINUTE).await.unwrap());
    assert_eq!(
        values.clear().await.unwrap(),
        2,
        "user:2 and the expired user:old"
    );
    assert_eq!(values.keys("").await.unwrap(), ["order:9"]);
    assert!(other.unlock("order:9").await.unwrap());
    assert_eq!(values.clear().await.unwrap(), 1);
    assert_eq!(values.count().await.unwrap(), 0);
}

#[tokio::test]
async fn locks_are_exclusive_not_reentrant_and_guard_their_key() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let a = values_with(dir.path(), &clock).await;
    let b = Values::new(a.cache());
    a.save("doc", "v1", None).await.unwrap();

    clock.advance(Duration::from_nanos(123_457)); // off the millisecond
    let taken_at = clock.now();
    assert!(a.lock("doc", MINUTE).await.unwrap());
    assert!(!a.lock("doc", MINUTE).await.unwrap(), "not re-entrant");
    assert!(!b.lock("doc", MINUTE).await.unwrap());
    assert!(!b.unlock("doc").await.unwrap(), "b does not hold it");
    assert_eq!(a.lock_holder("doc").await.unwrap(), LockHolder::Me);
    assert_eq!(b.lock_holder("doc").await.unwrap(), LockHolder::Other);
    assert!(
        a.check_lock("doc", Duration::ZERO).await.unwrap(),
        "a has it"
    );
    assert!(!b.check_lock("doc", Duration::ZERO).await.unwrap());

    // Only the holder may write or remove the key.
    let refused = b.save("doc", "v2", None).await.unwrap_err();
    assert!(
        matches!(refused, Error::Locked { ref key } if key == "doc"),
        "{refused}"
    );
    assert!(matches!(b.destroy("doc").await, Err(Error::Locked { .. })));
    assert_eq!(
        text(&b, "doc").await.as_deref(),
        Some("v1"),
        "reads are not refused"
    );
    assert!(!a.save("doc", "v3", None).await.unwrap());
    assert_eq!(text(&b, "doc").await.as_deref(), Some("v3"));

    let held = b.locks().await.unwrap();
    assert_eq!(held.len(), 1);
    assert_eq!((held[0].name.as_str(), held[0].mine), ("doc", false));
    assert_eq!(held[0].expires, taken_at + MINUTE, "to the nanosecond");
    assert!(a.locks().await.unwrap()[0].mine);
    // Lock files are not the store's: maintenance does not see them.
    let report = a.cache().verify().await.unwrap();
    assert!(report.unverifiable.is_empty(), "{report:?}");
    assert_eq!(a.cache().status().await.unwrap().entries, 1);

    assert!(a.unlock("doc").await.unwrap());
    assert!(!a.unlock("doc").await.unwrap());
    assert!(b.locks().await.unwrap().is_empty());
    assert!(b.destroy("doc").await.unwrap());
    assert!(b.lock("doc", MINUTE).await.unwrap());

    // A lock ends with its TTL, whoever held it.
    clock.advance(MINUTE);
    assert!(a.check_lock("doc", Duration::ZERO).await.unwrap(), "free");
    assert_eq!(b.lock_holder("doc").await.unwrap(), LockHolder::Nobody);
    assert!(a.locks().await.unwrap().is_empty());
    assert!(a.lock("doc", MINUTE).await.unwrap());
    assert!(!b.unlock("doc").await.unwrap(), "b's lock had expired");
    assert!(matches!(
        b.save("doc", "x", None).await,
        Err(Error::Locked { .. })
    ));
}

#[tokio::test]
async fn bad_lock_arguments_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    let values = Values::new(&Cache::builder(dir.path()).build().await.unwrap());
    let err = values.lock("", MINUTE).await.unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err}");
    let err = values.lock("x", Duration::ZERO).await.unwrap_err();
    assert!(err.to_string().contains("TTL"), "{err}");
    assert!(
        values.lock("x", Duration::MAX).await.unwrap(),
        "a huge TTL saturates"
    );
    let held = values.locks().await.unwrap();
    assert!(held[0].expires > SystemTime::now() + Duration::from_secs(100 * 365 * 24 * 3600));
}

#[tokio::test]
async fn a_lock_without_a_ttl_lasts_its_holders_default() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let a = values_with(dir.path(), &clock).await;
    assert_eq!(a.default_lock_ttl(), Values::DEFAULT_LOCK_TTL);
    let b = Values::new(a.cache())
        .with_default_lock_ttl(Duration::from_secs(5))
        .unwrap();
    assert_eq!(b.default_lock_ttl(), Duration::from_secs(5));
    let now = clock.now();
    assert!(a.lock("a", None).await.unwrap());
    assert!(b.lock("b", None).await.unwrap());
    assert!(b.lock("given", Some(MINUTE)).await.unwrap());
    let held = a.locks().await.unwrap();
    let expiries: Vec<_> = held.iter().map(|l| (l.name.as_str(), l.expires)).collect();
    assert_eq!(
        expiries,
        [
            ("a", now + Values::DEFAULT_LOCK_TTL),
            ("b", now + Duration::from_secs(5)),
            ("given", now + MINUTE)
        ]
    );
    clock.advance(Duration::from_secs(5));
    assert_eq!(a.lock_holder("b").await.unwrap(), LockHolder::Nobody);
    assert_eq!(b.lock_holder("a").await.unwrap(), LockHolder::Other);
    let zero = Values::new(a.cache()).with_default_lock_ttl(Duration::ZERO);
    assert!(matches!(zero, Err(Error::InvalidSetting(_))));
    assert!(matches!(
        a.lock("", None).await,
        Err(Error::InvalidKey { .. })
    ));
}

/// The named-lock files on disk (the guard is not one).
fn lock_files(dir: &Path) -> usize {
    let files = common::files_under(&dir.join("v1/named-locks"));
    files.iter().filter(|f| !f.ends_with("/guard")).count()
}

#[tokio::test]
async fn prune_removes_expired_lock_files_taking_turns_with_the_takers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let values = values_with(dir.path(), &clock).await;
    let prune = || async {
        let report = values.cache().prune(&PrunePolicy::default()).await;
        report.unwrap().named_locks_removed
    };
    assert_eq!(prune().await, 0, "no locks yet");
    assert!(values.lock("old", MINUTE).await.unwrap());
    assert!(values.lock("live", 10 * MINUTE).await.unwrap());
    assert!(values.lock("released", 10 * MINUTE).await.unwrap());
    assert!(values.unlock("released").await.unwrap());
    values.save("old", "a value", None).await.unwrap();
    clock.advance(MINUTE);
    assert_eq!(lock_files(dir.path()), 2);

    // While the guard is held (as a lock is being taken), nothing is removed.
    let guard = std::fs::File::open(dir.path().join("v1/named-locks/guard")).unwrap();
    guard.lock().unwrap();
    assert_eq!(prune().await, 0);
    assert_eq!(lock_files(dir.path()), 2);
    drop(guard);

    assert_eq!(prune().await, 1);
    assert_eq!(lock_files(dir.path()), 1);
    assert_eq!(values.lock_holder("live").await.unwrap(), LockHolder::Me);
    assert_eq!(text(&values, "old").await.as_deref(), Some("a value"));
    assert_eq!(prune().await, 0);
    clock.advance(10 * MINUTE);
    assert_eq!(prune().await, 1);
    assert_eq!(lock_files(dir.path()), 0);
    assert!(values.lock("live", MINUTE).await.unwrap(), "taken again");
}

/// Starts `b.check_lock(name, 600 s)` and returns it once it is seen waiting: it
/// cannot end while the lock is held, so it must still be running after it has had
/// the runtime's threads for a while.
async fn waiting_check(
    b: Values,
    name: &'static str,
) -> tokio::task::JoinHandle<readthrough::Result<bool>> {
    let waiter = tokio::spawn(async move { b.check_lock(name, Duration::from_secs(600)).await });
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(
        !waiter.is_finished(),
        "check_lock waits while the lock is held"
    );
    waiter
}

async fn outcome(waiter: tokio::task::JoinHandle<readthrough::Result<bool>>) -> bool {
    tokio::time::timeout(Duration::from_secs(60), waiter)
        .await
        .expect("the waiter sees the lock freed")
        .unwrap()
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lock_waits_for_the_lock_to_be_released() {
    let dir = tempfile::tempdir().unwrap();
    let a = Values::new(&Cache::builder(dir.path()).build().await.unwrap());
    let b = Values::new(a.cache());
    assert!(b.check_lock("job", Duration::ZERO).await.unwrap(), "free");
    assert!(a.lock("job", Duration::from_secs(600)).await.unwrap());
    assert!(!b.check_lock("job", Duration::ZERO).await.unwrap());
    assert!(
        !b.check_lock("job", Duration::from_millis(30))
            .await
            .unwrap()
    );
    assert!(
        a.check_lock("job", Duration::ZERO).await.unwrap(),
        "a's own"
    );

    let waiter = waiting_check(b, "job").await;
    assert!(a.unlock("job").await.unwrap());
    assert!(outcome(waiter).await, "obtainable once released");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_lock_sees_a_lock_expire_while_it_waits() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let a = values_with(dir.path(), &clock).await;
    let b = Values::new(a.cache());
    assert!(a.lock("job", MINUTE).await.unwrap());
    let waiter = waiting_check(b, "job").await;
    clock.advance(MINUTE);
    assert!(outcome(waiter).await, "obtainable once expired");
}

#[tokio::test]
async fn many_tasks_race_for_one_lock_and_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path()).build().await.unwrap();
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(32));
    let tasks: Vec<_> = (0..32)
        .map(|_| {
            let (values, barrier) = (Values::new(&cache), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                values.lock("one", MINUTE).await.unwrap()
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        won += usize::from(task.await.unwrap());
    }
    assert_eq!(won, 1);
}

// Across processes.

struct Proc {
    child: Child,
    lines: std::io::Lines<BufReader<std::process::ChildStdout>>,
}

impl Proc {
    fn spawn(dir: &Path, role: &str) -> Proc {
        let mut child = common::child_test("child_process")
            .env("RT_DIR", dir)
            .env("RT_ROLE", role)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Proc { child, lines }
    }

    /// The next line the child reports.
    fn report(&mut self) -> String {
        for line in self.lines.by_ref() {
            let line = line.unwrap();
            if let Some(at) = line.find("RT ") {
                return line[at + 3..].to_owned();
            }
        }
        panic!("the child ended without reporting");
    }

    fn go(&mut self) {
        writeln!(self.child.stdin.as_mut().unwrap(), "go").unwrap();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn a_lock_is_shared_by_processes_and_outlives_a_dead_holder_until_its_ttl() {
    let dir = tempfile::tempdir().unwrap();
    Cache::builder(dir.path()).build().await.unwrap();
    let mut holder = Proc::spawn(dir.path(), "hold");
    assert_eq!(holder.report(), "locked");

    let clock = ManualClock::new();
    let values = values_with(dir.path(), &clock).await;
    assert!(!values.lock("shared", MINUTE).await.unwrap());
    assert!(!values.check_lock("shared", Duration::ZERO).await.unwrap());
    assert_eq!(
        values.lock_holder("shared").await.unwrap(),
        LockHolder::Other
    );
    let held = values.locks().await.unwrap();
    assert_eq!((held[0].name.as_str(), held[0].mine), ("shared", false));
    assert!(matches!(
        values.save("shared", "x", None).await,
        Err(Error::Locked { .. })
    ));

    // SIGKILL: the holder cannot release it; the lock stays until its TTL ends.
    holder.child.kill().unwrap();
    holder.child.wait().unwrap();
    assert!(!values.lock("shared", MINUTE).await.unwrap());
    clock.advance(MINUTE + Duration::from_secs(1));
    assert!(values.lock("shared", MINUTE).await.unwrap());
    values.save("shared", "mine now", None).await.unwrap();
}

#[tokio::test]
async fn processes_race_for_one_lock_and_one_wins() {
    let dir = tempfile::tempdir().unwrap();
    Cache::builder(dir.path()).build().await.unwrap();
    let mut procs: Vec<Proc> = (0..6).map(|_| Proc::spawn(dir.path(), "race")).collect();
    for proc in &mut procs {
        assert_eq!(proc.report(), "ready");
    }
    for proc in &mut procs {
        proc.go();
    }
    let results: Vec<String> = procs.iter_mut().map(Proc::report).collect();
    assert_eq!(
        results.iter().filter(|r| *r == "won").count(),
        1,
        "{results:?}"
    );
    assert_eq!(results.iter().filter(|r| *r == "lost").count(), 5);
}

/// The child process's side. Not a test of its own: the tests above run it.
#[test]
#[ignore = "run by the cross-process tests as a child"]
fn child_process() {
    let dir = PathBuf::from(std::env::var("RT_DIR").unwrap());
    let role = std::env::var("RT_ROLE").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let values = Values::new(&Cache::builder(&dir).build().await.unwrap());
        let mut stdin = std::io::stdin().lock();
        let mut line = String::new();
        match role.as_str() {
            "hold" => {
                assert!(values.lock("shared", MINUTE).await.unwrap());
                println!("RT locked");
                // Holds on until killed.
                let _ = stdin.read_line(&mut line);
            }
            "race" => {
                println!("RT ready");
                stdin.read_line(&mut line).unwrap();
                let won = values.lock("race", MINUTE).await.unwrap();
                println!("RT {}", if won { "won" } else { "lost" });
            }
            other => panic!("unknown role {other}"),
        }
    });
}
