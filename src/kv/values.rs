//! A key-value view of a cache: values saved and loaded by key, with expiry and
//! named locks, for programs used to an application cache rather than a read-through
//! one.

use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::cache::Reader;
use crate::cache::{Cache, GetOptions};
use crate::error::{Cause, Error, Result};
use crate::kv::named_lock::Locks;
use crate::origin::Fetched;
use crate::store::meta::from_unix_millis;
use crate::sys::blocking;

mod locking;

/// A key-value view of a [`Cache`]: save, load, destroy and list values by key, with
/// expiry and named locks shared by every process on the cache directory.
///
/// Values are blobs in the cache's store: any size, saved from bytes, a stream or a
/// serde value, and loaded back with when they were created, last read and expire.
/// Each `Values` is one lock *holder*: a lock it takes is its own, and its clones
/// share it. While a key is locked by another holder, [`save`](Self::save),
/// [`destroy`](Self::destroy) and [`clear`](Self::clear) refuse to touch it. Locks
/// bind only calls through `Values`: [`Cache::put`], [`Cache::remove`], pruning and
/// the size bound's eviction do not look at them.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// use readthrough::{Cache, Values};
///
/// let values = Values::new(&Cache::builder(dir.path()).build().await?);
/// assert!(values.save("greeting", "hello", Some(Duration::from_secs(60))).await?);
/// let loaded = values.load("greeting").await?.unwrap().bytes().await?;
/// assert_eq!(loaded.value, "hello");
/// assert!(loaded.expires.is_some());
/// assert!(values.destroy("greeting").await?);
/// assert!(values.load("greeting").await?.is_none());
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Values {
    cache: Cache,
    locks: Locks,
    /// How long a lock taken with no TTL of its own lasts.
    lock_ttl: Duration,
}

/// A value [loaded](Values::load) with what the cache knows of it: `T` is a
/// [`Reader`] as loaded, [`Bytes`] after [`bytes`](Loaded::bytes), or a serde type after
/// [`json`](Loaded::json).
#[derive(Debug)]
#[non_exhaustive]
pub struct Loaded<T> {
    /// The key it was loaded from.
    pub key: String,
    /// The value.
    pub value: T,
    /// When it was saved.
    pub created: SystemTime,
    /// When it was last read before this load, to within the cache's last-read
    /// granularity; when it was saved if never.
    pub last_read: SystemTime,
    /// When it expires; never when `None`.
    pub expires: Option<SystemTime>,
}

impl<T> Loaded<T> {
    fn with<U>(self, value: U) -> Loaded<U> {
        Loaded {
            value,
            key: self.key,
            created: self.created,
            last_read: self.last_read,
            expires: self.expires,
        }
    }
}

impl Loaded<Reader> {
    /// Reads the whole value into memory.
    ///
    /// # Errors
    /// A read error of the stored blob.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// values.save("k", vec![1u8, 2, 3], None).await?;
    /// assert_eq!(values.load("k").await?.unwrap().bytes().await?.value, [1u8, 2, 3][..]);
    /// # Ok(()) }
    /// ```
    pub async fn bytes(self) -> Result<Loaded<Bytes>> {
        let (reader, loaded) = self.take();
        Ok(loaded.with(reader.bytes().await?))
    }

    /// Splits off the reader, leaving the rest to go with what it reads.
    fn take(self) -> (Reader, Loaded<()>) {
        let Loaded {
            value,
            key,
            created,
            last_read,
            expires,
        } = self;
        let rest = Loaded {
            value: (),
            key,
            created,
            last_read,
            expires,
        };
        (value, rest)
    }

    /// Reads the whole value and parses it as the JSON of a `T`.
    ///
    /// # Errors
    /// A read error, or [`Error::Json`] when the value is not the JSON of a `T`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// values.save_json("scores", &vec![3, 1, 2], None).await?;
    /// let scores: Vec<u32> = values.load("scores").await?.unwrap().json().await?.value;
    /// assert_eq!(scores, [3, 1, 2]);
    /// # Ok(()) }
    /// ```
    pub async fn json<T: DeserializeOwned>(self) -> Result<Loaded<T>> {
        let loaded = self.bytes().await?;
        let value = serde_json::from_slice(&loaded.value).map_err(|e| Error::Json {
            key: loaded.key.clone(),
            op: "decoded",
            source: Cause::new(e),
        })?;
        Ok(loaded.with(value))
    }
}

impl Values {
    /// A key-value view of `cache`, holding locks as a new holder.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// let values = readthrough::Values::new(&cache);
    /// assert_eq!(values.cache().dir(), dir.path());
    /// # Ok(()) }
    /// ```
    pub fn new(cache: &Cache) -> Values {
        Values {
            cache: cache.clone(),
            locks: Locks::new(cache.folder(), new_holder()),
            lock_ttl: Values::DEFAULT_LOCK_TTL,
        }
    }

    /// The cache underneath.
    pub fn cache(&self) -> &Cache {
        &self.cache
    }

    /// Saves `value` under `key`, replacing what is there, to expire after `ttl`
    /// (never when `None`, whatever the cache's default TTL). Returns whether the key
    /// was new: it held no unexpired value. Loads that start while the save runs get
    /// the old value; the new one appears whole.
    ///
    /// A zero `ttl` (one that has already passed) is accepted, as application caches
    /// accept it: the value has expired as soon as it is saved, so it never loads. The
    /// old value is removed and nothing is written (a stream is not read).
    ///
    /// `value` is anything a cache body is made from: bytes, a string, or a stream
    /// through [`Fetched::from_stream`].
    ///
    /// Two processes saving a new key at once may both be told it was new; the
    /// value stored is one of theirs, whole.
    ///
    /// # Errors
    /// [`Error::Locked`] while another holder locks `key`; [`Error::InvalidKey`]; the
    /// body stream's error or a local I/O error, and then the old value stays.
    ///
    /// # Cancellation
    /// Once the write has started it completes in the background.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// assert!(values.save("k", "one", None).await?);
    /// assert!(!values.save("k", "two", None).await?);
    /// assert_eq!(values.load("k").await?.unwrap().bytes().await?.value, "two");
    /// # Ok(()) }
    /// ```
    pub async fn save(
        &self,
        key: &str,
        value: impl Into<Fetched>,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        self.save_body(key, value.into(), ttl).await
    }

    /// Saves the JSON of `value` under `key`, as [`save`](Self::save) does.
    ///
    /// # Errors
    /// As [`save`](Self::save), and [`Error::Json`] when `value` cannot be encoded.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// values.save_json("user:7", &("ada", 36), None).await?;
    /// let loaded = values.load("user:7").await?.unwrap().json::<(String, u8)>().await?;
    /// assert_eq!(loaded.value, ("ada".to_owned(), 36));
    /// # Ok(()) }
    /// ```
    pub async fn save_json<T: Serialize + ?Sized>(
        &self,
        key: &str,
        value: &T,
        ttl: Option<Duration>,
    ) -> Result<bool> {
        let json = serde_json::to_vec(value).map_err(|e| Error::Json {
            key: key.to_owned(),
            op: "encoded",
            source: Cause::new(e),
        })?;
        self.save_body(key, Fetched::from(json), ttl).await
    }

    async fn save_body(&self, key: &str, body: Fetched, ttl: Option<Duration>) -> Result<bool> {
        // A TTL that has already passed saves a value that never loads: the old one
        // goes, and nothing is written in its place.
        let body = match ttl {
            Some(Duration::ZERO) => None,
            Some(ttl) => Some(body.with_ttl(ttl)),
            None => Some(body.never_expires()),
        };
        self.cache.check_key(key)?;
        let (cache, owned) = (self.cache.clone(), key.to_owned());
        self.guarded(key, async move {
            let now = cache.folder().clock.now();
            let new = cache
                .metadata(&owned)
                .await?
                .is_none_or(|entry| entry.expires.is_some_and(|at| at <= now));
            if let Some(body) = body {
                cache.put(&owned, body).await?;
            } else {
                cache.remove(&owned).await?;
            }
            Ok(new)
        })
        .await
    }

    /// Loads the value of `key`: `None` when there is none or it has expired. The
    /// value streams from disk; [`Loaded::bytes`] and [`Loaded::json`] read it whole.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and local I/O errors other than the value's absence.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// assert!(values.load("nothing here").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn load(&self, key: &str) -> Result<Option<Loaded<Reader>>> {
        self.load_opts(key, &GetOptions::default()).await
    }

    /// Loads the value of `key` with options: with
    /// [`extend_expiry`](GetOptions::extend_expiry) the load pushes the value's expiry
    /// to its TTL from now, and the returned `expires` says so.
    ///
    /// # Errors
    /// As [`load`](Self::load).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// use std::time::Duration;
    /// use readthrough::GetOptions;
    /// values.save("session", "alice", Some(Duration::from_secs(1800))).await?;
    /// let loaded = values.load_opts("session", &GetOptions::default().extend_expiry()).await?;
    /// assert!(loaded.unwrap().expires.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn load_opts(
        &self,
        key: &str,
        options: &GetOptions,
    ) -> Result<Option<Loaded<Reader>>> {
        let Some(found) = self.cache.load_stored(key, options.extend_expiry)? else {
            return Ok(None);
        };
        let created = from_unix_millis(found.meta.created_ms).unwrap_or(UNIX_EPOCH);
        Ok(Some(Loaded {
            value: found.reader,
            key: key.to_owned(),
            created,
            last_read: found.last_read.max(created),
            expires: crate::store::entry::expiry_time(&found.meta),
        }))
    }

    /// Removes the value of `key`; returns whether there was one (expired or not).
    ///
    /// # Errors
    /// [`Error::Locked`] while another holder locks `key`; [`Error::InvalidKey`]; local
    /// I/O errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// values.save("k", "v", None).await?;
    /// assert!(values.destroy("k").await?);
    /// assert!(!values.destroy("k").await?);
    /// # Ok(()) }
    /// ```
    pub async fn destroy(&self, key: &str) -> Result<bool> {
        self.cache.check_key(key)?;
        let (cache, owned) = (self.cache.clone(), key.to_owned());
        self.guarded(key, async move { cache.remove(&owned).await })
            .await
    }

    /// The keys of the unexpired values whose key starts with `prefix` (all of them
    /// for `""`), sorted. This reads every entry's metadata: it is for tools and
    /// housekeeping, not for a request path.
    ///
    /// # Errors
    /// Local I/O errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// for key in ["user:2", "user:1", "order:1"] {
    ///     values.save(key, "x", None).await?;
    /// }
    /// assert_eq!(values.keys("user:").await?, ["user:1", "user:2"]);
    /// assert_eq!(values.count().await?, 3);
    /// # Ok(()) }
    /// ```
    pub async fn keys(&self, prefix: &str) -> Result<Vec<String>> {
        let now = self.cache.folder().clock.now();
        let mut keys: Vec<String> = self
            .cache
            .entries()
            .await?
            .into_iter()
            .filter(|entry| entry.key.starts_with(prefix))
            .filter(|entry| entry.expires.is_none_or(|at| at > now))
            .map(|entry| entry.key)
            .collect();
        keys.sort();
        Ok(keys)
    }

    /// How many unexpired values there are. Reads every entry's metadata, as
    /// [`keys`](Self::keys) does.
    ///
    /// # Errors
    /// Local I/O errors.
    pub async fn count(&self) -> Result<usize> {
        Ok(self.keys("").await?.len())
    }

    /// Removes every value, expired or not, except those another holder locks; returns
    /// how many it removed.
    ///
    /// # Errors
    /// Local I/O errors; values removed before one stay removed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// values.save("a", "1", None).await?;
    /// values.save("b", "2", None).await?;
    /// assert_eq!(values.clear().await?, 2);
    /// assert_eq!(values.count().await?, 0);
    /// # Ok(()) }
    /// ```
    pub async fn clear(&self) -> Result<usize> {
        let mut removed = 0;
        for entry in self.cache.entries().await? {
            match self.destroy(&entry.key).await {
                Ok(true) => removed += 1,
                Ok(false) | Err(Error::Locked { .. }) => {}
                Err(e) => return Err(e),
            }
        }
        Ok(removed)
    }

    /// Runs `write` of `key` holding the shared lock guard, refused when another
    /// holder locks `key`. The write runs in a task of its own that keeps the guard
    /// until it ends, so dropping the caller's future cannot let a lock be taken while
    /// the write is still landing.
    async fn guarded<T, F>(&self, key: &str, write: F) -> Result<T>
    where
        T: Send + 'static,
        F: Future<Output = Result<T>> + Send + 'static,
    {
        let (locks, owned) = (self.locks.clone(), key.to_owned());
        let guard = blocking(move || locks.write_guard(&owned))
            .await
            .map_err(|e| Error::io("check the lock of a key in", self.locks.dir(), e))?
            .ok_or_else(|| Error::Locked {
                key: key.to_owned(),
            })?;
        tokio::spawn(async move {
            let result = write.await;
            drop(guard);
            result
        })
        .await
        .map_err(|_| Error::WriteVanished {
            key: key.to_owned(),
        })?
    }
}

impl std::fmt::Debug for Values {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Values")
            .field("dir", &self.cache.dir())
            .finish_non_exhaustive()
    }
}

/// A name for a new lock holder, unique on this machine: this process's id, the time
/// and a count of the holders it made.
fn new_holder() -> String {
    static MADE: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let n = MADE.fetch_add(1, Ordering::Relaxed);
    format!("{}.{nanos}.{n}", std::process::id())
}
