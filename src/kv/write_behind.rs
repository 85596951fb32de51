//! [`WriteBehind`]: the cache in front of a slower durable [`Storage`]. Writes land in
//! the cache at once and reach storage in the background; reads try the cache first.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{Notify, broadcast, watch};

use crate::cache::Cache;
use crate::cache::{ReadKind, Reader};
use crate::error::{Cause, Error, Result};
use crate::origin::Fetched;
use crate::storage::{Storage, StorageOrigin};

/// How many events a subscriber may fall behind by before it misses some.
const EVENTS_KEPT: usize = 256;

/// A cache in front of a slower durable [`Storage`] (write-behind, read-through).
///
/// - [`set`](Self::set) stores the value in the cache and returns; a background task
///   writes it to storage. [`delete`](Self::delete) does the same for removals.
/// - [`get`](Self::get) answers from the writes still on their way to storage, then
///   from the cache, then from storage, copying what storage had into the cache.
///   Reads of one key from storage are shared across tasks and processes like any
///   cache fill.
/// - A background write that fails is retried with backoff until it succeeds, never
///   dropped; each failure is logged and sent to [`subscribe`](Self::subscribe)rs.
///   Only the latest write of a key is kept: a newer `set` or `delete` replaces an
///   older one that has not reached storage yet.
/// - [`ready`](Self::ready) checks that both the cache directory and storage work;
///   [`flush`](Self::flush) waits until every write has reached storage.
///
/// Pending writes are held in memory: if the process dies or its runtime shuts down
/// first, the values stay in the cache but storage misses them (the drop logs an
/// error naming how many). Call [`flush`](Self::flush) before a planned exit.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::sync::Arc;
/// use object_store::{ObjectStoreExt, memory::InMemory, path::Path};
/// use readthrough::{Cache, ObjectStoreStorage, WriteBehind};
///
/// let bucket = Arc::new(InMemory::new());
/// let cache = Cache::builder(dir.path()).build().await?;
/// let values = WriteBehind::new(&cache, ObjectStoreStorage::new(bucket.clone()));
/// values.ready().await?;
///
/// values.set("reports/7.json", r#"{"total":3}"#).await?;
/// let read = values.get("reports/7.json").await?.unwrap();
/// assert_eq!(read.bytes().await?, r#"{"total":3}"#);
///
/// values.flush().await;
/// assert!(bucket.head(&Path::from("reports/7.json")).await.is_ok());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct WriteBehind {
    handle: Arc<Handle>,
}

/// Something [`WriteBehind`] reports that no single call returns.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum StorageEvent {
    /// A background write to storage failed; it will be tried again.
    WriteFailed {
        /// The key written.
        key: String,
        /// "set" or "delete".
        op: &'static str,
        /// How many times this write has failed so far.
        attempt: u32,
        /// What storage reported ([`Error::Storage`]).
        error: Error,
    },
    /// A background write that had failed reached storage.
    Recovered {
        /// The key written.
        key: String,
        /// "set" or "delete".
        op: &'static str,
        /// How many attempts failed before it succeeded.
        failures: u32,
    },
}

/// The last handle going away lets the writer stop once its queue is empty.
struct Handle(Arc<Shared>);

impl Drop for Handle {
    fn drop(&mut self) {
        self.0.closed.store(true, Ordering::SeqCst);
        self.0.wake.notify_one();
    }
}

struct Shared {
    cache: Cache,
    storage: Arc<dyn Storage>,
    queue: Mutex<Queue>,
    /// Wakes the writer when there is work or the last handle went away.
    wake: Notify,
    closed: AtomicBool,
    /// How many writes have not reached storage.
    backlog: watch::Sender<usize>,
    events: broadcast::Sender<StorageEvent>,
    retry: Retry,
}

/// Writes on their way to storage: at most one per key, the latest.
#[derive(Default)]
struct Queue {
    writes: HashMap<String, Write>,
    /// Keys in the order they are to be written.
    order: VecDeque<String>,
    /// Numbers writes, so the writer knows whether a key changed while it wrote it.
    next: u64,
}

#[derive(Clone)]
struct Write {
    id: u64,
    op: Op,
    failures: u32,
}

#[derive(Clone)]
enum Op {
    Set(Bytes),
    Delete,
}

impl Op {
    fn name(&self) -> &'static str {
        match self {
            Op::Set(_) => "set",
            Op::Delete => "delete",
        }
    }
}

/// How failed background writes wait before they are tried again: `first`, doubling
/// with each failure in a row, up to `most`.
#[derive(Debug, Clone, Copy)]
struct Retry {
    first: Duration,
    most: Duration,
}

impl WriteBehind {
    /// A write-behind cache of `storage` in `cache`, retrying failed writes after
    /// 100 ms, doubling up to 30 s. Starts the background writer on the current
    /// Tokio runtime.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    pub fn new(cache: &Cache, storage: impl Storage) -> WriteBehind {
        Self::with_retry(
            cache,
            storage,
            Duration::from_millis(100),
            Duration::from_secs(30),
        )
    }

    /// As [`new`](Self::new), with the backoff of failed writes: `first` after the
    /// first failure, doubling with each failure in a row, up to `most`.
    ///
    /// # Panics
    /// Outside a Tokio runtime.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::time::Duration;
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// # let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    /// let values = readthrough::WriteBehind::with_retry(
    ///     &cache,
    ///     readthrough::ObjectStoreStorage::new(store),
    ///     Duration::from_millis(10),
    ///     Duration::from_secs(5),
    /// );
    /// # Ok(()) }
    /// ```
    pub fn with_retry(
        cache: &Cache,
        storage: impl Storage,
        first: Duration,
        most: Duration,
    ) -> WriteBehind {
        let shared = Arc::new(Shared {
            cache: cache.clone(),
            storage: Arc::new(storage),
            queue: Mutex::default(),
            wake: Notify::new(),
            closed: AtomicBool::new(false),
            backlog: watch::Sender::new(0),
            events: broadcast::Sender::new(EVENTS_KEPT),
            retry: Retry {
                first,
                most: most.max(first),
            },
        });
        tokio::spawn(write_back(Arc::clone(&shared)));
        WriteBehind {
            handle: Arc::new(Handle(shared)),
        }
    }

    /// Queues `value` for storage under `key`, stores it in the cache, and returns.
    /// Reads see it at once, in every process on the cache directory.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], or [`Error::Storage`] (op "accept") for a key storage
    /// refuses ([`Storage::accepts`]); then nothing is written. A local I/O error
    /// storing it in the cache; the value is still queued for storage and read from
    /// the queue until storage has it.
    ///
    /// # Cancellation
    /// The value is queued before the first await, so once called it reaches storage
    /// even if the future is dropped.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// # let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    /// let values = readthrough::WriteBehind::new(&cache, readthrough::ObjectStoreStorage::new(store));
    /// values.set("a/b", "v").await?;
    /// assert!(values.set("a//b", "v").await.is_err(), "not an object path");
    /// # Ok(()) }
    /// ```
    pub async fn set(&self, key: &str, value: impl Into<Bytes>) -> Result<()> {
        let value = value.into();
        let shared = &self.handle.0;
        shared.admit(key)?;
        shared.enqueue(key, Op::Set(value.clone()));
        shared.cache.put(key, Fetched::from(value)).await?;
        Ok(())
    }

    /// Queues the removal of `key` from storage and removes it from the cache. Reads
    /// in this process see it gone at once. A read in another process before storage
    /// has removed it may copy the old value from storage into the cache again; the
    /// background writer removes it from the cache once more when storage confirms.
    ///
    /// # Errors
    /// As [`set`](Self::set).
    ///
    /// # Cancellation
    /// As [`set`](Self::set): once called, the removal reaches storage.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// # let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    /// let values = readthrough::WriteBehind::new(&cache, readthrough::ObjectStoreStorage::new(store));
    /// values.set("k", "v").await?;
    /// values.delete("k").await?;
    /// assert!(values.get("k").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn delete(&self, key: &str) -> Result<()> {
        let shared = &self.handle.0;
        shared.admit(key)?;
        shared.enqueue(key, Op::Delete);
        shared.cache.remove(key).await?;
        Ok(())
    }

    /// The value of `key`: a write of this process still on its way to storage, else
    /// the cache, else storage (stored in the cache as it streams); `None` when none
    /// of them has it.
    ///
    /// # Errors
    /// [`Error::Storage`] when storage fails, [`Error::InvalidKey`], local I/O errors.
    ///
    /// # Cancellation
    /// Dropping the future or the reader does not stop a copy from storage into the
    /// cache.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::sync::Arc;
    /// use object_store::{ObjectStoreExt, PutPayload, memory::InMemory, path::Path};
    /// let bucket = Arc::new(InMemory::new());
    /// bucket.put(&Path::from("old"), PutPayload::from_static(b"from storage")).await.unwrap();
    /// let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// let values = readthrough::WriteBehind::new(&cache, readthrough::ObjectStoreStorage::new(bucket));
    /// assert_eq!(values.get("old").await?.unwrap().bytes().await?, "from storage");
    /// assert!(cache.read("old").await?.is_some(), "copied into the cache");
    /// assert!(values.get("never").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: &str) -> Result<Option<Reader>> {
        let shared = &self.handle.0;
        let pending = shared.lock_queue().writes.get(key).map(|w| w.op.clone());
        match pending {
            Some(Op::Set(value)) => return Ok(Some(bytes_reader(value))),
            Some(Op::Delete) => return Ok(None),
            None => {}
        }
        let origin = Arc::new(StorageOrigin(Arc::clone(&shared.storage)));
        match shared.cache.get_through(key, origin, false).await {
            Ok(reader) => Ok(Some(reader)),
            Err(e) if e.is_not_found() => Ok(None),
            // Storage failed, possibly for a fill another process led; ask it directly.
            Err(Error::Origin { .. }) => shared.get_direct(key).await,
            Err(e) => Err(e),
        }
    }

    /// Checks that the cache directory and storage both work now.
    ///
    /// # Errors
    /// [`Error::BadDirectory`] for the cache, [`Error::Storage`] (op "check") for
    /// storage.
    pub async fn ready(&self) -> Result<()> {
        let shared = &self.handle.0;
        shared.cache.check().await?;
        shared
            .storage
            .check()
            .await
            .map_err(|e| storage_error("check", "", e))
    }

    /// Events no single call returns: background writes that failed and recovered.
    /// Each subscriber gets every event sent after it subscribed (one that falls more
    /// than 256 behind misses the oldest). Failures are also logged.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// # let store = std::sync::Arc::new(object_store::memory::InMemory::new());
    /// # let values = readthrough::WriteBehind::new(&cache, readthrough::ObjectStoreStorage::new(store));
    /// let mut events = values.subscribe();
    /// tokio::spawn(async move {
    ///     while let Ok(event) = events.recv().await {
    ///         eprintln!("storage: {event:?}");
    ///     }
    /// });
    /// # Ok(()) }
    /// ```
    pub fn subscribe(&self) -> broadcast::Receiver<StorageEvent> {
        self.handle.0.events.subscribe()
    }

    /// How many writes have not reached storage yet.
    pub fn backlog(&self) -> usize {
        *self.handle.0.backlog.borrow()
    }

    /// Waits until every write queued so far, and any queued meanwhile, has reached
    /// storage; the [`StorageEvent::Recovered`] of each of them is sent before it
    /// returns. While storage is down this waits for it to come back; bound it with
    /// [`tokio::time::timeout`] if need be.
    pub async fn flush(&self) {
        let mut backlog = self.handle.0.backlog.subscribe();
        let _ = backlog.wait_for(|n| *n == 0).await;
    }
}

impl fmt::Debug for WriteBehind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WriteBehind")
            .field("cache", &self.handle.0.cache)
            .field("backlog", &self.backlog())
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn lock_queue(&self) -> std::sync::MutexGuard<'_, Queue> {
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Checks that both the cache and storage take `key`.
    fn admit(&self, key: &str) -> Result<()> {
        self.cache.check_key(key)?;
        self.storage
            .accepts(key)
            .map_err(|e| storage_error("accept", key, e))
    }

    fn enqueue(&self, key: &str, op: Op) {
        let mut queue = self.lock_queue();
        queue.next += 1;
        let write = Write {
            id: queue.next,
            op,
            failures: 0,
        };
        if queue.writes.insert(key.to_owned(), write).is_none() {
            queue.order.push_back(key.to_owned());
        }
        self.backlog.send_replace(queue.writes.len());
        drop(queue);
        self.wake.notify_one();
    }

    /// Whether `write` is still the latest of `key`.
    fn is_latest(&self, key: &str, write: &Write) -> bool {
        self.lock_queue()
            .writes
            .get(key)
            .is_some_and(|current| current.id == write.id)
    }

    /// Records that `write` of `key` reached storage: it leaves the queue unless a
    /// newer write of the key replaced it meanwhile. Returns how often it had failed,
    /// when it had. The backlog is not told yet: see [`Shared::tell_backlog`].
    fn written(&self, key: &str, write: &Write) -> Option<u32> {
        let mut queue = self.lock_queue();
        let current = queue.writes.get(key);
        let failures = current.map_or(0, |current| current.failures);
        if current.is_some_and(|current| current.id == write.id) {
            queue.writes.remove(key);
            queue.order.pop_front();
        }
        (failures > 0).then_some(failures)
    }

    /// Publishes the number of pending writes, which wakes `flush`. Called after a
    /// written key's event is sent, so a caller of `flush` finds that event already
    /// waiting on its subscription.
    fn tell_backlog(&self) {
        let pending = self.lock_queue().writes.len();
        self.backlog.send_replace(pending);
    }

    /// Records a failed write of `key` and moves the key to the back of the queue, so
    /// one key that storage refuses does not hold up the others. Returns how many
    /// times it has failed.
    fn failed(&self, key: &str) -> u32 {
        let mut queue = self.lock_queue();
        queue.order.rotate_left(1);
        queue.writes.get_mut(key).map_or(0, |current| {
            current.failures += 1;
            current.failures
        })
    }

    /// Reads `key` from storage without the cache's shared fill, storing what it finds.
    async fn get_direct(&self, key: &str) -> Result<Option<Reader>> {
        let found = self
            .storage
            .get(key)
            .await
            .map_err(|e| storage_error("get", key, e))?;
        let Some(fetched) = found else {
            return Ok(None);
        };
        self.cache.put(key, fetched).await?;
        self.cache.read(key).await
    }
}

/// The background writer: writes the queue to storage, oldest key first, until the
/// last handle is gone and the queue is empty.
async fn write_back(shared: Arc<Shared>) {
    let mut failures_in_a_row = 0u32;
    loop {
        let next = {
            let queue = shared.lock_queue();
            queue
                .order
                .front()
                .map(|key| (key.clone(), queue.writes[key].clone()))
        };
        let Some((key, write)) = next else {
            if shared.closed.load(Ordering::SeqCst) {
                return;
            }
            shared.wake.notified().await;
            continue;
        };
        let result = match &write.op {
            Op::Set(value) => shared.storage.set(&key, value.clone()).await,
            Op::Delete => shared.storage.delete(&key).await,
        };
        let op = write.op.name();
        match result {
            Ok(()) => {
                failures_in_a_row = 0;
                if matches!(write.op, Op::Delete) && shared.is_latest(&key, &write) {
                    // A read elsewhere may have copied the old value back meanwhile.
                    if let Err(error) = shared.cache.remove(&key).await {
                        tracing::warn!(%key, %error, "could not remove a deleted key from the cache");
                    }
                }
                if let Some(failures) = shared.written(&key, &write) {
                    tracing::info!(%key, op, failures, "a background write reached storage");
                    let _ = shared
                        .events
                        .send(StorageEvent::Recovered { key, op, failures });
                }
                shared.tell_backlog();
            }
            Err(e) => {
                let attempt = shared.failed(&key);
                let error = storage_error(op, &key, e);
                tracing::warn!(%key, op, attempt, %error, "a background write to storage failed; retrying");
                let _ = shared.events.send(StorageEvent::WriteFailed {
                    key,
                    op,
                    attempt,
                    error,
                });
                let wait = shared.retry.after(failures_in_a_row);
                failures_in_a_row = failures_in_a_row.saturating_add(1);
                tokio::time::sleep(wait).await;
            }
        }
    }
}

impl Retry {
    /// The wait after `failures` earlier failures in a row.
    fn after(self, failures: u32) -> Duration {
        self.first
            .saturating_mul(1u32 << failures.min(20))
            .min(self.most)
    }
}

impl Drop for Shared {
    fn drop(&mut self) {
        let left = self.lock_queue().writes.len();
        if left > 0 {
            tracing::error!(
                writes = left,
                "the runtime stopped before these background writes reached storage; their values are only in the cache"
            );
        }
    }
}

fn storage_error(op: &'static str, key: &str, source: crate::error::BoxError) -> Error {
    Error::Storage {
        op,
        key: key.to_owned(),
        source: Cause(Arc::from(source)),
    }
}

fn bytes_reader(value: Bytes) -> Reader {
    Reader::of_bytes(value, ReadKind::Hit)
}
