//! The cache in front of durable storage ([`WriteBehind`]): writes reach the cache at
//! once and storage in the background, reads fall back to storage and are copied in,
//! and failed background writes are retried and reported, never dropped.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use readthrough::{
    BoxError, Cache, Error, Fetched, ObjectStoreStorage, Storage, StorageEvent, WriteBehind,
};
use tokio::sync::broadcast;

/// Object storage in memory that can be taken down, and counts what it is asked.
#[derive(Clone)]
struct Switchable {
    inner: ObjectStoreStorage,
    down: Arc<AtomicBool>,
    gets: Arc<AtomicUsize>,
    writes: Arc<AtomicUsize>,
}

impl Switchable {
    fn new(store: Arc<dyn ObjectStore>) -> Self {
        Switchable {
            inner: ObjectStoreStorage::new(store),
            down: Arc::default(),
            gets: Arc::default(),
            writes: Arc::default(),
        }
    }

    fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
    }

    fn refuse<T: Send + 'static>(&self) -> Option<BoxFuture<'static, Result<T, BoxError>>> {
        self.down
            .load(Ordering::SeqCst)
            .then(|| Box::pin(async { Err("storage is unreachable".into()) }) as BoxFuture<_>)
    }
}

impl Storage for Switchable {
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Fetched>, BoxError>> {
        self.gets.fetch_add(1, Ordering::SeqCst);
        self.refuse().unwrap_or_else(|| self.inner.get(key))
    }
    fn set(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<(), BoxError>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        if key.starts_with("poison/") {
            return Box::pin(async { Err("storage refuses this one".into()) });
        }
        self.refuse().unwrap_or_else(|| self.inner.set(key, value))
    }
    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), BoxError>> {
        self.writes.fetch_add(1, Ordering::SeqCst);
        self.refuse().unwrap_or_else(|| self.inner.delete(key))
    }
    fn accepts(&self, key: &str) -> Result<(), BoxError> {
        self.inner.accepts(key)
    }
    fn check(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        self.refuse().unwrap_or_else(|| self.inner.check())
    }
}

struct Setup {
    _dir: tempfile::TempDir,
    cache: Cache,
    bucket: Arc<InMemory>,
    storage: Switchable,
    values: WriteBehind,
}

async fn setup() -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path()).build().await.unwrap();
    let bucket = Arc::new(InMemory::new());
    let storage = Switchable::new(bucket.clone());
    let values = WriteBehind::with_retry(
        &cache,
        storage.clone(),
        Duration::from_millis(1),
        Duration::from_millis(20),
    );
    Setup {
        _dir: dir,
        cache,
        bucket,
        storage,
        values,
    }
}

async fn in_bucket(bucket: &InMemory, key: &str) -> Option<Bytes> {
    match bucket.get(&Path::from(key)).await {
        Ok(got) => Some(got.bytes().await.unwrap()),
        Err(object_store::Error::NotFound { .. }) => None,
        Err(e) => panic!("{e}"),
    }
}

async fn value(values: &WriteBehind, key: &str) -> Option<Bytes> {
    Some(values.get(key).await.unwrap()?.bytes().await.unwrap())
}

/// The next event, within a minute.
async fn next_event(events: &mut broadcast::Receiver<StorageEvent>) -> StorageEvent {
    tokio::time::timeout(Duration::from_secs(60), events.recv())
        .await
        .expect("an event arrives")
        .unwrap()
}

#[tokio::test]
async fn a_write_reaches_the_cache_at_once_and_storage_in_the_background() {
    let s = setup().await;
    s.storage.set_down(true);
    let mut events = s.values.subscribe();
    s.values.set("a/1", "one").await.unwrap();
    // In the cache already, for every reader of the directory, before storage has it.
    let cached = s.cache.read("a/1").await.unwrap().unwrap();
    assert_eq!(cached.bytes().await.unwrap(), "one");
    assert!(matches!(
        next_event(&mut events).await,
        StorageEvent::WriteFailed { .. }
    ));
    assert_eq!(in_bucket(&s.bucket, "a/1").await, None);
    assert_eq!(s.values.backlog(), 1);

    s.storage.set_down(false);
    s.values.flush().await;
    assert_eq!(in_bucket(&s.bucket, "a/1").await.unwrap(), "one");
    assert_eq!(s.values.backlog(), 0);
}

#[tokio::test]
async fn reads_fall_back_to_storage_once_and_copy_into_the_cache() {
    let s = setup().await;
    s.bucket
        .put(
            &Path::from("old/report"),
            PutPayload::from_static(b"kept in storage"),
        )
        .await
        .unwrap();
    let barrier = Arc::new(tokio::sync::Barrier::new(20));
    let readers: Vec<_> = (0..20)
        .map(|_| {
            let (values, barrier) = (s.values.clone(), barrier.clone());
            tokio::spawn(async move {
                barrier.wait().await;
                value(&values, "old/report").await
            })
        })
        .collect();
    for reader in readers {
        assert_eq!(reader.await.unwrap().unwrap(), "kept in storage");
    }
    assert_eq!(
        s.storage.gets.load(Ordering::SeqCst),
        1,
        "one read of storage"
    );
    assert!(s.cache.read("old/report").await.unwrap().is_some());
    assert_eq!(value(&s.values, "nowhere").await, None);
    assert_eq!(s.storage.gets.load(Ordering::SeqCst), 2);
    // Now a hit: storage is not asked again, even when it is down.
    s.storage.set_down(true);
    assert_eq!(
        value(&s.values, "old/report").await.unwrap(),
        "kept in storage"
    );
    assert_eq!(s.storage.gets.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn a_storage_failure_on_read_is_an_error_naming_it() {
    let s = setup().await;
    s.storage.set_down(true);
    let err = s.values.get("k").await.unwrap_err();
    assert!(matches!(err, Error::Storage { op: "get", .. }), "{err}");
    assert!(err.to_string().contains("unreachable"), "{err}");
}

#[tokio::test]
async fn failed_background_writes_are_retried_reported_and_never_dropped() {
    let s = setup().await;
    let mut events = s.values.subscribe();
    s.storage.set_down(true);
    for i in 0..5 {
        s.values
            .set(&format!("k{i}"), format!("v{i}"))
            .await
            .unwrap();
    }
    // Keep failing a while: every failure is reported, with its attempt number.
    let mut seen = 0;
    while seen < 12 {
        match next_event(&mut events).await {
            StorageEvent::WriteFailed {
                op: "set", error, ..
            } => {
                assert!(matches!(error, Error::Storage { .. }), "{error}");
                seen += 1;
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    // The last of two writes to one key wins.
    s.values.set("k0", "newer").await.unwrap();
    assert_eq!(value(&s.values, "k0").await.unwrap(), "newer");
    s.storage.set_down(false);
    s.values.flush().await;
    for i in 1..5 {
        assert_eq!(
            in_bucket(&s.bucket, &format!("k{i}")).await.unwrap(),
            format!("v{i}")
        );
    }
    assert_eq!(in_bucket(&s.bucket, "k0").await.unwrap(), "newer");
    // Failures retried while storage was down can outnumber the channel's room; the
    // oldest are dropped (`Lagged`) and the recoveries, sent last, are kept.
    let mut recovered = 0;
    loop {
        match events.try_recv() {
            Ok(event) => recovered += usize::from(matches!(event, StorageEvent::Recovered { .. })),
            Err(broadcast::error::TryRecvError::Lagged(_)) => continue,
            Err(_) => break,
        }
    }
    assert!(recovered >= 4, "{recovered} recoveries reported");
}

#[tokio::test]
async fn writes_pending_when_the_last_handle_goes_still_reach_storage() {
    let s = setup().await;
    let mut events = s.values.subscribe();
    s.storage.set_down(true);
    s.values.set("late", "still written").await.unwrap();
    assert!(matches!(
        next_event(&mut events).await,
        StorageEvent::WriteFailed { .. }
    ));
    drop(s.values);
    s.storage.set_down(false);
    loop {
        if let StorageEvent::Recovered { key, .. } = next_event(&mut events).await {
            assert_eq!(key, "late");
            break;
        }
    }
    assert_eq!(in_bucket(&s.bucket, "late").await.unwrap(), "still written");
}

#[tokio::test]
async fn a_delete_hides_the_value_at_once_and_reaches_storage_later() {
    let s = setup().await;
    s.values.set("gone", "soon").await.unwrap();
    s.values.flush().await;
    assert!(in_bucket(&s.bucket, "gone").await.is_some());

    s.storage.set_down(true);
    s.values.delete("gone").await.unwrap();
    assert_eq!(value(&s.values, "gone").await, None, "storage still has it");
    assert!(s.cache.read("gone").await.unwrap().is_none());
    s.storage.set_down(false);
    s.values.flush().await;
    assert_eq!(in_bucket(&s.bucket, "gone").await, None);
    assert_eq!(value(&s.values, "gone").await, None);
}

#[tokio::test]
async fn a_pending_write_is_read_even_when_the_cache_lost_it() {
    let s = setup().await;
    s.storage.set_down(true);
    s.values.set("k", "pending").await.unwrap();
    assert!(s.cache.remove("k").await.unwrap(), "evicted, say");
    assert_eq!(value(&s.values, "k").await.unwrap(), "pending");
    assert_eq!(s.storage.gets.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn ready_says_whether_cache_and_storage_both_work() {
    let s = setup().await;
    s.values.ready().await.unwrap();
    s.storage.set_down(true);
    let err = s.values.ready().await.unwrap_err();
    assert!(matches!(err, Error::Storage { op: "check", .. }), "{err}");
    s.storage.set_down(false);
    s.values.ready().await.unwrap();

    let store = s.cache.dir().join("v1").join("store");
    std::fs::remove_dir_all(&store).unwrap();
    std::fs::write(&store, b"not a folder").unwrap();
    let err = s.values.ready().await.unwrap_err();
    assert!(matches!(err, Error::BadDirectory { .. }), "{err}");
}

#[tokio::test]
async fn object_store_storage_on_local_files() {
    let dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    let store =
        Arc::new(object_store::local::LocalFileSystem::new_with_prefix(root.path()).unwrap());
    let cache = Cache::builder(dir.path()).build().await.unwrap();
    let values = WriteBehind::with_retry(
        &cache,
        ObjectStoreStorage::new(store),
        Duration::from_millis(1),
        Duration::from_millis(20),
    );
    values.ready().await.unwrap();
    values
        .set("dir/file.bin", vec![7u8; 100_000])
        .await
        .unwrap();
    values.flush().await;
    assert_eq!(
        std::fs::read(root.path().join("dir/file.bin")).unwrap(),
        vec![7u8; 100_000]
    );
    values.delete("dir/file.bin").await.unwrap();
    values.flush().await;
    assert!(!root.path().join("dir/file.bin").exists());

    // A key that is not an object path is refused at once, and nothing is written.
    let err = values.set("bad//key", "x").await.unwrap_err();
    assert!(matches!(err, Error::Storage { op: "accept", .. }), "{err}");
    assert!(err.to_string().contains("bad//key"), "{err}");
    assert!(cache.read("bad//key").await.unwrap().is_none());
    assert_eq!(values.backlog(), 0);
}

#[tokio::test]
async fn a_key_storage_keeps_refusing_does_not_hold_up_the_others() {
    let s = setup().await;
    let mut events = s.values.subscribe();
    s.values.set("poison/1", "x").await.unwrap();
    s.values.set("fine/1", "y").await.unwrap();
    s.values.set("fine/2", "z").await.unwrap();
    // Wait for both: a refusal of the poisoned key, and the later key landing. The
    // refused write is retried (and refused) every 20 ms at most, so events keep
    // coming until both are seen, in whichever order they happen.
    let mut refused = 0;
    while refused == 0 || in_bucket(&s.bucket, "fine/2").await.is_none() {
        if let StorageEvent::WriteFailed { key, .. } = next_event(&mut events).await {
            assert_eq!(key, "poison/1");
            refused += 1;
        }
    }
    assert_eq!(in_bucket(&s.bucket, "fine/1").await.unwrap(), "y");
    assert_eq!(s.values.backlog(), 1, "the refused write is kept");
    assert_eq!(value(&s.values, "poison/1").await.unwrap(), "x");
}

#[tokio::test]
async fn a_value_copied_back_before_a_delete_landed_is_removed_when_it_lands() {
    let s = setup().await;
    s.values.set("k", "old").await.unwrap();
    s.values.flush().await;
    s.storage.set_down(true);
    s.values.delete("k").await.unwrap();
    // Another process reads k from storage before the delete lands and caches it.
    s.cache.put("k", Fetched::from("old")).await.unwrap();
    s.storage.set_down(false);
    s.values.flush().await;
    assert_eq!(in_bucket(&s.bucket, "k").await, None);
    assert!(s.cache.read("k").await.unwrap().is_none());
}

#[tokio::test]
async fn a_dropped_set_still_reaches_storage() {
    let s = setup().await;
    // Polled once and dropped: the value was queued before the first await.
    {
        let set = s.values.set("k", "v");
        futures::pin_mut!(set);
        let _ = futures::poll!(&mut set);
    }
    s.values.flush().await;
    assert_eq!(in_bucket(&s.bucket, "k").await.unwrap(), "v");
}
