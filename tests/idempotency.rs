//! Idempotency records on real files: insert once, look up, update, expiry by a manual
//! clock, pruning, damaged files, and one winner among concurrent inserts, in one
//! process and across processes.
//!
//! The cross-process children are this test executable re-run with
//! `--ignored --exact child_insert`; each opens the cache, says `READY`, waits for a
//! line on stdin, inserts, and says `INSERTED` or `EXISTS`.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::ManualClock;
use readthrough::{Cache, Error, IdempotencyRecord, IdempotencyStore};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

const HOUR: Duration = Duration::from_secs(3600);

/// A new directory, a manual clock, a cache there timed by it, and its records.
async fn setup(durable: bool) -> (TempDir, ManualClock, Cache, IdempotencyStore) {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let (cache, records) = open_with(dir.path(), &clock, durable).await;
    (dir, clock, cache, records)
}

async fn open(dir: &Path, clock: &ManualClock) -> (Cache, IdempotencyStore) {
    open_with(dir, clock, false).await
}

async fn open_with(dir: &Path, clock: &ManualClock, durable: bool) -> (Cache, IdempotencyStore) {
    let cache = Cache::builder(dir)
        .durable(durable)
        .clock(clock.clone())
        .build()
        .await
        .unwrap();
    let records = IdempotencyStore::new(&cache);
    (cache, records)
}

/// A time `ahead` of the clock, in whole milliseconds (as the tests of other things
/// than the times' precision were written).
fn millis_from(clock: &ManualClock, ahead: Duration) -> SystemTime {
    let at = readthrough::Clock::now(clock) + ahead;
    let ms = at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64;
    UNIX_EPOCH + Duration::from_millis(ms)
}

fn record_path(dir: &Path, id: &str) -> PathBuf {
    let name = hex::encode(Sha256::digest(id));
    dir.join("v1/records").join(&name[..2]).join(name)
}

/// The record files on disk (the guard is not one).
fn record_files(dir: &Path) -> Vec<String> {
    let mut files = common::files_under(&dir.join("v1/records"));
    files.retain(|f| !f.ends_with("/guard"));
    files
}

fn path_names(dir: &Path, ids: &[&str]) -> Vec<String> {
    let mut names: Vec<String> = ids
        .iter()
        .map(|id| record_path(dir, id).display().to_string())
        .collect();
    names.sort();
    names
}

#[tokio::test]
async fn insert_then_lookup_and_a_second_insert_fails() {
    let (dir, clock, _cache, records) = setup(false).await;
    let expires_at = millis_from(&clock, HOUR);
    records
        .insert("req-1", "first", "fp-1", expires_at)
        .await
        .unwrap();

    let record = records.lookup("req-1").await.unwrap().unwrap();
    let IdempotencyRecord {
        id,
        data,
        fingerprint,
        expires_at: stored_expiry,
        ..
    } = record.clone();
    assert_eq!(
        (id.as_str(), data.as_ref(), fingerprint.as_str()),
        ("req-1", &b"first"[..], "fp-1")
    );
    assert_eq!(stored_expiry, expires_at);

    let err = records
        .insert("req-1", "second", "fp-2", expires_at + HOUR)
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RecordExists { id } if id == "req-1"),
        "{err:?}"
    );
    assert_eq!(records.lookup("req-1").await.unwrap(), Some(record));
    assert_eq!(record_files(dir.path()), path_names(dir.path(), &["req-1"]));
}

#[tokio::test]
async fn unknown_ids_are_absent_and_update_keeps_the_fingerprint() {
    let (dir, clock, _cache, records) = setup(false).await;
    assert_eq!(records.lookup("nobody").await.unwrap(), None);
    let err = records
        .update("nobody", "data", millis_from(&clock, HOUR))
        .await
        .unwrap_err();
    assert!(
        matches!(&err, Error::RecordMissing { id } if id == "nobody"),
        "{err:?}"
    );
    assert!(!records.remove("nobody").await.unwrap());
    assert!(record_files(dir.path()).is_empty());

    records
        .insert("req", "pending", "fp", millis_from(&clock, HOUR))
        .await
        .unwrap();
    let later = millis_from(&clock, 2 * HOUR);
    records.update("req", "done", later).await.unwrap();
    let record = records.lookup("req").await.unwrap().unwrap();
    assert_eq!(
        (
            record.data.as_ref(),
            record.fingerprint.as_str(),
            record.expires_at
        ),
        (&b"done"[..], "fp", later)
    );

    assert!(records.remove("req").await.unwrap());
    assert_eq!(records.lookup("req").await.unwrap(), None);
    assert!(record_files(dir.path()).is_empty());
}

#[tokio::test]
async fn bad_ids_and_sizes_are_refused() {
    let (dir, clock, _cache, records) = setup(false).await;
    let at = millis_from(&clock, HOUR);
    let err = records.insert("", "x", "fp", at).await.unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    let err = records.lookup("").await.unwrap_err();
    assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    let big = vec![0; IdempotencyStore::MAX_DATA + 1];
    let err = records.insert("big", big, "fp", at).await.unwrap_err();
    assert!(matches!(err, Error::InvalidSetting(_)), "{err:?}");
    assert!(record_files(dir.path()).is_empty());

    // Times before the epoch and far ahead saturate instead of panicking.
    records
        .insert("past", "x", "fp", UNIX_EPOCH - HOUR)
        .await
        .unwrap();
    assert_eq!(records.lookup("past").await.unwrap(), None);
    let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
    records.insert("far", "x", "fp", far).await.unwrap();
    let kept = records.lookup("far").await.unwrap().unwrap().expires_at;
    assert_eq!(kept, UNIX_EPOCH + Duration::from_millis(u64::MAX));
}

#[tokio::test]
async fn expired_records_are_absent_reinsertable_and_pruned() {
    let (dir, clock, cache, records) = setup(false).await;
    let soon = millis_from(&clock, Duration::from_secs(10));
    for (id, expires_at) in [
        ("short", soon),
        ("gone", soon),
        ("long", millis_from(&clock, HOUR)),
    ] {
        let (data, fingerprint) = (format!("{id} 1"), format!("fp-{id}"));
        records
            .insert(id, data, &fingerprint, expires_at)
            .await
            .unwrap();
    }
    // The blob store does not see the records.
    assert_eq!(cache.status().await.unwrap().entries, 0);
    assert!(cache.verify().await.unwrap().unverifiable.is_empty());

    clock.advance(Duration::from_secs(10));
    assert_eq!(records.lookup("short").await.unwrap(), None);
    assert_eq!(records.lookup("gone").await.unwrap(), None);
    let err = records
        .update("gone", "g2", millis_from(&clock, HOUR))
        .await
        .unwrap_err();
    assert!(matches!(err, Error::RecordMissing { .. }), "{err:?}");
    assert!(records.lookup("long").await.unwrap().is_some());

    let again = millis_from(&clock, HOUR);
    records.insert("short", "s2", "fp-s2", again).await.unwrap();
    let record = records.lookup("short").await.unwrap().unwrap();
    assert_eq!(
        (
            record.data.as_ref(),
            record.fingerprint.as_str(),
            record.expires_at
        ),
        (&b"s2"[..], "fp-s2", again)
    );

    assert_eq!(
        record_files(dir.path()),
        path_names(dir.path(), &["short", "gone", "long"])
    );
    assert_eq!(records.prune().await.unwrap(), 1);
    assert_eq!(
        record_files(dir.path()),
        path_names(dir.path(), &["short", "long"])
    );
    assert_eq!(records.prune().await.unwrap(), 0);

    clock.advance(2 * HOUR);
    assert_eq!(records.prune().await.unwrap(), 2);
    assert!(record_files(dir.path()).is_empty());
}

#[tokio::test]
async fn expiry_times_round_trip_exactly_and_are_judged_to_the_nanosecond() {
    let (dir, clock, _cache, records) = setup(false).await;
    // The peers' case: 100,123,000 ns past the second came back as 100,000,000.
    let at = UNIX_EPOCH + Duration::new(4_102_444_800, 100_123_000);
    records.insert("a", "x", "f", at).await.unwrap();
    assert_eq!(records.lookup("a").await.unwrap().unwrap().expires_at, at);
    let later = at + Duration::from_nanos(7);
    records.update("a", "y", later).await.unwrap();
    assert_eq!(
        records.lookup("a").await.unwrap().unwrap().expires_at,
        later
    );
    // The store reopened reads the same time.
    let (_, reopened) = open(dir.path(), &clock).await;
    assert_eq!(
        reopened.lookup("a").await.unwrap().unwrap().expires_at,
        later
    );

    // Expiry is judged on the whole time, not its millisecond.
    let now = readthrough::Clock::now(&clock);
    let soon = now + Duration::from_nanos(1_500);
    records.insert("b", "x", "f", soon).await.unwrap();
    clock.advance(Duration::from_nanos(1_499));
    assert!(records.lookup("b").await.unwrap().is_some());
    clock.advance(Duration::from_nanos(1));
    assert_eq!(records.lookup("b").await.unwrap(), None);
    assert_eq!(records.prune().await.unwrap(), 1);
}

#[tokio::test]
async fn garbage_is_not_served_and_is_pruned() {
    let (dir, clock, _cache, records) = setup(false).await;
    let at = millis_from(&clock, HOUR);
    for id in ["junk", "short", "swapped", "live"] {
        records.insert(id, "data", "fp", at).await.unwrap();
    }
    std::fs::write(record_path(dir.path(), "junk"), b"\x00junk, not a record").unwrap();
    let short = record_path(dir.path(), "short");
    let mut bytes = std::fs::read(&short).unwrap();
    bytes.pop();
    std::fs::write(&short, bytes).unwrap();
    // A well-formed record of another id, put where "swapped" belongs.
    std::fs::copy(
        record_path(dir.path(), "live"),
        record_path(dir.path(), "swapped"),
    )
    .unwrap();

    for id in ["junk", "short", "swapped"] {
        assert_eq!(records.lookup(id).await.unwrap(), None, "{id}");
    }
    assert!(records.lookup("live").await.unwrap().is_some());
    assert_eq!(records.prune().await.unwrap(), 3);
    assert_eq!(record_files(dir.path()), path_names(dir.path(), &["live"]));

    // A damaged record counts as absent to insert too.
    std::fs::write(record_path(dir.path(), "live"), b"{}\n").unwrap();
    records.insert("live", "new", "fp2", at).await.unwrap();
    assert_eq!(records.lookup("live").await.unwrap().unwrap().data, "new");
}

#[tokio::test]
async fn a_symlink_at_a_record_path_is_not_followed() {
    let (dir, clock, _cache, records) = setup(false).await;
    let at = millis_from(&clock, HOUR);
    records.insert("target", "secret", "fp", at).await.unwrap();
    records.insert("link", "x", "fp", at).await.unwrap();
    let link = record_path(dir.path(), "link");
    std::fs::remove_file(&link).unwrap();
    std::os::unix::fs::symlink(record_path(dir.path(), "target"), &link).unwrap();

    assert_eq!(records.lookup("link").await.unwrap(), None);
    records.insert("link", "mine", "fp", at).await.unwrap();
    assert!(!std::fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(records.lookup("link").await.unwrap().unwrap().data, "mine");
    assert_eq!(
        records.lookup("target").await.unwrap().unwrap().data,
        "secret"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_of_many_tasks_inserting_one_id_wins() {
    const TASKS: usize = 32;
    // Durable writes are slower, which widens the window a missing lock would leave.
    let (_dir, clock, _cache, records) = setup(true).await;
    let at = millis_from(&clock, HOUR);
    let barrier = std::sync::Arc::new(tokio::sync::Barrier::new(TASKS));
    let tasks: Vec<_> = (0..TASKS)
        .map(|n| {
            let (records, barrier) = (records.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                let result = records
                    .insert("shared", format!("task {n}"), &format!("fp {n}"), at)
                    .await;
                (n, result)
            })
        })
        .collect();
    let mut winners = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            (n, Ok(())) => winners.push(n),
            (_, Err(Error::RecordExists { .. })) => {}
            (_, Err(e)) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!(winners.len(), 1, "{winners:?}");
    let record = records.lookup("shared").await.unwrap().unwrap();
    assert_eq!(record.data, format!("task {}", winners[0]));
    assert_eq!(record.fingerprint, format!("fp {}", winners[0]));
}

#[test]
fn one_of_many_processes_inserting_one_id_wins() {
    const CHILDREN: usize = 8;
    let dir = tempfile::tempdir().unwrap();
    let mut children: Vec<_> = (0..CHILDREN)
        .map(|n| {
            common::child_test("child_insert")
                .env("RT_DIR", dir.path())
                .env("RT_CHILD", n.to_string())
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let mut outputs: Vec<_> = children
        .iter_mut()
        .map(|child| BufReader::new(child.stdout.take().unwrap()).lines())
        .collect();
    let mut said = |n: usize| -> String {
        outputs[n]
            .by_ref()
            .map_while(Result::ok)
            .find_map(|line| line.find("RT ").map(|at| line[at + 3..].to_owned()))
            .unwrap_or_else(|| panic!("child {n} ended without a report"))
    };
    // The barrier: every child has its cache open before any inserts.
    for n in 0..CHILDREN {
        assert_eq!(said(n), "READY");
    }
    for child in &mut children {
        child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    }
    let reports: Vec<String> = (0..CHILDREN).map(&mut said).collect();
    for child in &mut children {
        assert!(child.wait().unwrap().success());
    }
    let winners: Vec<usize> = (0..CHILDREN)
        .filter(|n| reports[*n] == "INSERTED")
        .collect();
    assert_eq!(winners.len(), 1, "{reports:?}");
    assert_eq!(
        reports.iter().filter(|r| *r == "EXISTS").count(),
        CHILDREN - 1,
        "{reports:?}"
    );

    let runtime = tokio::runtime::Runtime::new().unwrap();
    let record = runtime.block_on(async {
        let (_cache, records) = open(dir.path(), &ManualClock::new()).await;
        records.lookup("shared-id").await.unwrap().unwrap()
    });
    assert_eq!(record.data, format!("child {}", winners[0]));
    assert_eq!(record.fingerprint, format!("fp {}", winners[0]));
}

/// The child process's side of the test above. Not a test of its own.
#[test]
#[ignore = "run by one_of_many_processes_inserting_one_id_wins as a child"]
fn child_insert() {
    let dir = PathBuf::from(std::env::var("RT_DIR").expect("RT_DIR is set"));
    let n = std::env::var("RT_CHILD").expect("RT_CHILD is set");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let (_cache, records) = open_with(&dir, &ManualClock::new(), true).await;
        println!("RT READY");
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        let at = SystemTime::now() + HOUR;
        match records
            .insert("shared-id", format!("child {n}"), &format!("fp {n}"), at)
            .await
        {
            Ok(()) => println!("RT INSERTED"),
            Err(Error::RecordExists { .. }) => println!("RT EXISTS"),
            Err(e) => println!("RT ERROR {e}"),
        }
    });
}
