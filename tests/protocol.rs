//! Interleavings of the fill protocol that once broke a guarantee (issue 19), each
//! driven to its window by the library's test-only failpoints (`--features
//! failpoints`) and pinned by a test named after it.
//!
//! Two caches built separately on one directory coordinate only through the files, as
//! two processes do, so these run in one process: a failpoint's callback stops one
//! cache at a known step (or runs the other cache's step in the window) while the
//! test watches the other. Failpoints are global to the process; every test holds a
//! `FailScenario` for its whole run, so they take turns.
//!
//! The tests that need real processes and signals are in `protocol_processes.rs`.

mod common;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant, SystemTime};

use common::{Counting, Failing, ManualClock, body_of};
use readthrough::{Cache, Fetched, GetOptions};
use sha2::{Digest, Sha256};

const KEY: &str = "the-key";

/// Counts of named events, and a way to wait for them, shared by the test and the
/// callbacks it gives the failpoints (which run on the library's threads).
#[derive(Clone, Default)]
struct Events(Arc<(Mutex<HashMap<&'static str, usize>>, Condvar)>);

impl Events {
    fn hit(&self, name: &'static str) {
        let (counts, changed) = &*self.0;
        *counts.lock().unwrap().entry(name).or_default() += 1;
        changed.notify_all();
    }

    /// Waits (on a blocking thread's terms) until `done` holds of the counts.
    fn wait(&self, what: &str, done: impl Fn(&HashMap<&'static str, usize>) -> bool) {
        let (counts, changed) = &*self.0;
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut counts = counts.lock().unwrap();
        while !done(&counts) {
            let left = deadline
                .checked_duration_since(Instant::now())
                .unwrap_or_else(|| panic!("timed out waiting for {what}: {counts:?}"));
            counts = changed.wait_timeout(counts, left).unwrap().0;
        }
    }

    async fn wait_async(
        &self,
        what: &'static str,
        done: impl Fn(&HashMap<&'static str, usize>) -> bool + Send + 'static,
    ) {
        let this = self.clone();
        tokio::task::spawn_blocking(move || this.wait(what, done))
            .await
            .unwrap();
    }
}

/// A callback that stops the first thread to reach it until the test opens the gate;
/// later arrivals pass. It counts `"<name> reached"` when one is stopped.
fn stop_once(
    events: &Events,
    name: &'static str,
    gate: &Events,
) -> impl Fn() + Send + Sync + use<> {
    let (events, gate) = (events.clone(), gate.clone());
    let first = AtomicBool::new(true);
    move || {
        if first.swap(false, Ordering::SeqCst) {
            events.hit(name);
            gate.wait("the gate", |c| c.get("open").is_some());
        }
    }
}

fn open(gate: &Events) {
    gate.hit("open");
}

fn sha_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// The lock file of `key` in the cache at `dir`, in the default layout.
fn lock_path(dir: &Path, key: &str) -> PathBuf {
    let name = sha_hex(key.as_bytes());
    dir.join("v1/tmp")
        .join(&name[..2])
        .join(format!("{name}.lock"))
}

fn meta_path(dir: &Path, key: &str) -> PathBuf {
    let name = sha_hex(key.as_bytes());
    dir.join("v1/store")
        .join(&name[..2])
        .join(format!("{name}.meta"))
}

/// A cache with no origin of its own on `dir`.
async fn bare(dir: &Path) -> Cache {
    Cache::builder(dir).durable(false).build().await.unwrap()
}

async fn build(dir: &Path, origin: impl readthrough::Origin, stale: Duration) -> Cache {
    Cache::builder(dir)
        .origin(origin)
        .stale_after(stale)
        .durable(false)
        .build()
        .await
        .unwrap()
}

/// Runs `f` with a cache of its own on `dir`, on a runtime of its own, to its end:
/// what another process would do in a window the test holds open.
fn elsewhere<T: Send + 'static>(
    dir: &Path,
    f: impl FnOnce(Cache) -> futures::future::BoxFuture<'static, T> + Send + 'static,
) -> T {
    let dir = dir.to_owned();
    std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let cache = Cache::builder(&dir).durable(false).build().await.unwrap();
            f(cache).await
        })
    })
    .join()
    .unwrap()
}

/// Finding 5: a waiter that takes the flock of a long-dead leader's lock file must
/// refresh the file in the same step, or a second waiter sees the lock held with an
/// hour-old time, breaks it and leads too. Before the fix the second cache led (two
/// origin fetches, and the first one's publish failed as reclaimed).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_5_a_waiter_that_takes_an_old_crashed_lock_is_not_also_broken() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let origin = Counting::new(100_000);
    let first = build(dir.path(), origin.clone(), Duration::from_secs(30)).await;
    let second = build(dir.path(), origin.clone(), Duration::from_secs(30)).await;
    let lock = lock_path(dir.path(), KEY);
    std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
    std::fs::write(&lock, "readthrough-lock 1\ntmp deadbeef\nlen 100000\n").unwrap();
    let file = std::fs::File::options().write(true).open(&lock).unwrap();
    file.set_modified(SystemTime::now() - Duration::from_secs(3600))
        .unwrap();
    drop(file);

    let (events, gate) = (Events::default(), Events::default());
    fail::cfg_callback("fill::lead", stop_once(&events, "first leads", &gate)).unwrap();
    let looks = events.clone();
    fail::cfg_callback("follow::look", move || looks.hit("look")).unwrap();
    let a = tokio::spawn(async move { common::fetch_all(&first, KEY).await });
    events
        .wait_async("the first cache to lead", |c| c.contains_key("first leads"))
        .await;
    let b = tokio::spawn(async move { common::fetch_all(&second, KEY).await });
    // The second cache either follows (and looks again and again) or breaks the lock
    // and leads, which fetches.
    let fetches = Arc::clone(&origin.fetches);
    events
        .wait_async("the second cache to follow or lead", move |c| {
            c.get("look").copied().unwrap_or(0) >= 5 || fetches.load(Ordering::SeqCst) > 0
        })
        .await;
    open(&gate);
    let want = body_of(KEY, 0, 100_000);
    assert_eq!(a.await.unwrap(), want);
    assert_eq!(b.await.unwrap(), want);
    assert_eq!(origin.fetches(), 1, "one leader, one origin fetch");
    scenario.teardown();
}

/// Finding 6: a leader whose final flush outlasts the staleness timeout must still
/// beat. Before the fix the heartbeat ran only between the origin's chunks, so a
/// waiter reclaimed the flushing leader and fetched the body again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_6_a_leader_keeps_beating_through_a_long_flush() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let origin = Counting::new(100_000);
    // Long enough that a loaded machine, which may hold up the heartbeat's task for
    // a few hundred milliseconds, does not make the live leader look hung.
    let stale = Duration::from_secs(1);
    let leader = Cache::builder(dir.path())
        .origin(origin.clone())
        .stale_after(stale)
        .durable(true)
        .build()
        .await
        .unwrap();
    let waiter = build(dir.path(), origin.clone(), stale).await;

    let (events, gate) = (Events::default(), Events::default());
    fail::cfg_callback("fill::sync", stop_once(&events, "flushing", &gate)).unwrap();
    let a = tokio::spawn(async move { common::fetch_all(&leader, KEY).await });
    events
        .wait_async("the leader's flush", |c| c.contains_key("flushing"))
        .await;
    // The waiter looks for three staleness timeouts of the leader's flush.
    let looked = Arc::new(Mutex::new(None::<Instant>));
    let (seen, looks) = (Arc::clone(&looked), events.clone());
    fail::cfg_callback("follow::look", move || {
        let mut first = seen.lock().unwrap();
        let since = *first.get_or_insert_with(Instant::now);
        if since.elapsed() > stale * 3 {
            looks.hit("watched long enough");
        }
    })
    .unwrap();
    let counted = waiter.clone();
    let b = tokio::spawn(async move { common::fetch_all(&counted, KEY).await });
    let fetches = Arc::clone(&origin.fetches);
    events
        .wait_async("the waiter to watch the flush", move |c| {
            c.contains_key("watched long enough") || fetches.load(Ordering::SeqCst) > 1
        })
        .await;
    open(&gate);
    let want = body_of(KEY, 0, 100_000);
    assert_eq!(a.await.unwrap(), want);
    assert_eq!(b.await.unwrap(), want);
    assert_eq!(
        waiter.stats().stale_reclaims,
        0,
        "a flushing leader is alive"
    );
    assert_eq!(origin.fetches(), 1);
    scenario.teardown();
}

/// Finding 7: a follower that looks after the failing leader removed its lock file,
/// but before it closed it, must report the recorded failure. Before the fix it took
/// "held but removed" for a vanished fill, led, and fetched again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_7_a_follower_reports_a_failure_recorded_in_a_removed_lock() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let origin = Failing::new(100_000, 50_000, false);
    let leader = build(dir.path(), origin.clone(), Duration::from_secs(30)).await;
    let follower = build(dir.path(), origin.clone(), Duration::from_secs(30)).await;

    let (events, gate) = (Events::default(), Events::default());
    fail::cfg_callback("lock::unlinked", stop_once(&events, "unlinked", &gate)).unwrap();
    let a = leader.get(KEY).await.unwrap();
    let b = follower.get(KEY).await.unwrap();
    assert_eq!(b.kind(), readthrough::ReadKind::Followed);
    let a = tokio::spawn(a.bytes());
    let done = events.clone();
    let b = tokio::spawn(async move {
        let body = b.bytes().await;
        done.hit("follower done");
        body
    });
    // A look that starts once the leader is held in the window decides; so does one
    // that started just before it and ends the follower's read.
    let looks = events.clone();
    fail::cfg_callback("follow::look", move || {
        if looks.0.0.lock().unwrap().contains_key("unlinked") {
            looks.hit("look in the window");
        }
    })
    .unwrap();
    origin.release.add_permits(10);
    events
        .wait_async("the follower to look in the window", |c| {
            c.contains_key("look in the window") || c.contains_key("follower done")
        })
        .await;
    open(&gate);
    let a = a.await.unwrap().unwrap_err();
    let b = b.await.unwrap().unwrap_err();
    for err in [a, b] {
        assert!(err.to_string().contains("broke mid-body"), "{err}");
    }
    assert_eq!(
        origin.fetches.load(Ordering::SeqCst),
        1,
        "the follower reports the leader's error instead of fetching"
    );
    scenario.teardown();
}

/// Finding 2: a read that opens the old blob and then meets the new blob's metadata
/// (a same-length put in between) must not pair them. Before the fix it paired them
/// by length, and with `verify_on_read` reported `Corrupt` and removed the new blob
/// that the put had just stored.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_a_read_never_pairs_an_old_blob_with_new_metadata() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .verify_on_read(true)
        .durable(false)
        .build()
        .await
        .unwrap();
    let (old, new) = (body_of(KEY, 0, 64 * 1024), body_of(KEY, 1, 64 * 1024));
    cache.put(KEY, Fetched::from(old.clone())).await.unwrap();
    let armed = AtomicBool::new(true);
    let (root, replacement) = (dir.path().to_owned(), new.clone());
    fail::cfg_callback("entry::blob_opened", move || {
        if armed.swap(false, Ordering::SeqCst) {
            let body = replacement.clone();
            elsewhere(&root, move |other| {
                Box::pin(async move { other.put(KEY, Fetched::from(body)).await.unwrap() })
            });
        }
    })
    .unwrap();
    let got = cache.read(KEY).await.unwrap().unwrap().bytes().await;
    let got = got.expect("no spurious corruption");
    assert!(got == old || got == new, "one whole version");
    assert_eq!(
        common::stored(&cache, KEY).await.as_deref(),
        Some(&new[..]),
        "the new blob is kept"
    );
    scenario.teardown();
}

/// Finding 2: a removal between a publish's two renames must leave nothing that
/// `prune` cannot clear. Before the fix the metadata went first, so the removal took
/// both files and the blob renamed in after it stayed, with no metadata, for good.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_2_a_removal_during_a_publish_leaves_nothing_behind_a_prune() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let cache = bare(dir.path()).await;
    let armed = AtomicBool::new(true);
    let root = dir.path().to_owned();
    fail::cfg_callback("fill::renamed", move || {
        if armed.swap(false, Ordering::SeqCst) {
            elsewhere(&root, |other| {
                Box::pin(async move { other.remove(KEY).await.unwrap() })
            });
        }
    })
    .unwrap();
    cache
        .put(KEY, Fetched::from(body_of(KEY, 0, 10_000)))
        .await
        .unwrap();
    // Whatever the publish left is older than the staleness timeout by the time of a
    // later prune.
    let long_ago = SystemTime::now() - Duration::from_secs(3600);
    for file in common::files_under(&dir.path().join("v1/store")) {
        let file = std::fs::File::options().write(true).open(file).unwrap();
        file.set_modified(long_ago).unwrap();
    }
    cache.prune(&Default::default()).await.unwrap();
    assert_eq!(
        common::files_under(&dir.path().join("v1/store")),
        Vec::<String>::new()
    );
    scenario.teardown();
}

/// Finding 3: a hit that slides the expiry must not write back the metadata it read
/// over a publish that landed in between. Before the fix it did, with no lock, and
/// the new blob was left under the old blob's digest.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_3_a_sliding_expiry_never_overwrites_a_newer_publish() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let cache = Cache::builder(dir.path())
        .clock(clock.clone())
        .durable(false)
        .build()
        .await
        .unwrap();
    let ttl = Duration::from_secs(100);
    let (old, new) = (body_of(KEY, 0, 10_000), body_of(KEY, 1, 10_000));
    cache
        .put(KEY, Fetched::from(old).with_ttl(ttl))
        .await
        .unwrap();
    clock.advance(ttl / 2);
    let armed = AtomicBool::new(true);
    let (root, replacement) = (dir.path().to_owned(), new.clone());
    fail::cfg_callback("entry::extend", move || {
        if armed.swap(false, Ordering::SeqCst) {
            let body = replacement.clone();
            elsewhere(&root, move |other| {
                Box::pin(async move {
                    other
                        .put(KEY, Fetched::from(body).with_ttl(ttl))
                        .await
                        .unwrap()
                })
            });
        }
    })
    .unwrap();
    let extend = GetOptions::default().extend_expiry();
    cache
        .get_opts(KEY, &extend)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    let meta = cache.metadata(KEY).await.unwrap().expect("an entry");
    assert_eq!(
        meta.sha256,
        Some(sha_hex(&new)),
        "the newer publish's metadata stays"
    );
    assert_eq!(common::stored(&cache, KEY).await.as_deref(), Some(&new[..]));
    scenario.teardown();
}

/// Finding 8: the per-process cache of parsed metadata must tell apart two metadata
/// files with the same inode, length and modification time (ext4 gives a replaced
/// file's inode to a later one, and the cache's own clock sets the time). Here the
/// file is rewritten in place and its time put back, which is what such a reuse looks
/// like to a `stat`. Before the fix the remembered, unexpired metadata was served.
#[tokio::test]
async fn finding_8_remembered_metadata_is_not_fooled_by_a_reused_inode() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let cache = Cache::builder(dir.path())
        .clock(clock.clone())
        .durable(false)
        .build()
        .await
        .unwrap();
    cache
        .put(
            KEY,
            Fetched::from(body_of(KEY, 0, 1000)).with_ttl(Duration::from_secs(3600)),
        )
        .await
        .unwrap();
    assert!(
        cache.read(KEY).await.unwrap().is_some(),
        "fresh, and remembered"
    );
    let path = meta_path(dir.path(), KEY);
    let before = std::fs::metadata(&path).unwrap();
    let text = std::fs::read_to_string(&path).unwrap();
    let json: serde_json::Value = serde_json::from_str(&text).unwrap();
    let (created, expires) = (
        json["created_ms"].as_u64().unwrap().to_string(),
        json["expires_ms"].as_u64().unwrap().to_string(),
    );
    assert_eq!(created.len(), expires.len());
    let expired = text.replace(
        &format!("\"expires_ms\":{expires}"),
        &format!("\"expires_ms\":{created}"),
    );
    assert_eq!(expired.len(), text.len());
    use std::os::unix::fs::FileExt;
    let file = std::fs::File::options().write(true).open(&path).unwrap();
    file.write_all_at(expired.as_bytes(), 0).unwrap();
    file.set_modified(before.modified().unwrap()).unwrap();
    drop(file);
    assert!(
        cache.read(KEY).await.unwrap().is_none(),
        "the rewritten metadata says the entry expired"
    );
    scenario.teardown();
}

/// Finding 9: a metadata file replaced between a hit's `stat` and its open is looked
/// at again. Before the fix the hit took the change for damage, and `read` answered
/// `None` for a fresh entry.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finding_9_metadata_replaced_during_a_hit_is_read_again() {
    let scenario = fail::FailScenario::setup();
    let dir = tempfile::tempdir().unwrap();
    let writer = bare(dir.path()).await;
    let body = body_of(KEY, 0, 5000);
    writer.put(KEY, Fetched::from(body.clone())).await.unwrap();
    let armed = AtomicBool::new(true);
    let path = meta_path(dir.path(), KEY);
    fail::cfg_callback("entry::meta_stat", move || {
        if armed.swap(false, Ordering::SeqCst) {
            // Another version of the same metadata, renamed over it: a new inode.
            let copy = path.with_extension("copy");
            std::fs::copy(&path, &copy).unwrap();
            std::fs::rename(&copy, &path).unwrap();
        }
    })
    .unwrap();
    // A cache that has not remembered the metadata yet, so it stats and parses it.
    let reader = bare(dir.path()).await;
    let got = reader
        .read(KEY)
        .await
        .unwrap()
        .expect("a fresh entry is a hit");
    assert_eq!(got.bytes().await.unwrap(), body);
    scenario.teardown();
}
