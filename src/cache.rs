//! [`Cache`]: the handle, and its public read and write calls, each a thin wrapper
//! over the engine (reads, fills) or the store (removal, lookups).

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::builder::CacheBuilder;
use crate::engine::{Engine, LoadedEntry};
use crate::error::{BoxError, Result};
use crate::origin::{Fetched, Origin, origin_fn};
use crate::range::ByteRange;
use crate::stats::Stats;
use crate::store::dir::{self, Folder};
use crate::store::entry::Entry;
use crate::sys::blocking_io;
#[cfg(feature = "object-store")]
use crate::tier::Tier;

pub use crate::engine::{Blob, ReadKind, Reader};

/// A shared on-disk read-through cache of blobs.
///
/// Cheap to clone: clones share one set of in-process fills and counters. Caches in
/// other processes (or built separately in this one) on the same directory coordinate
/// through lock files, so one origin fetch serves them all.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use readthrough::{Cache, origin_fn};
///
/// let cache = Cache::builder(dir.path())
///     .origin(origin_fn(|key: String| async move {
///         Ok::<_, std::io::Error>(format!("the body of {key}").into_bytes())
///     }))
///     .build()
///     .await?;
/// let body = cache.get("a").await?.bytes().await?;
/// assert_eq!(body, "the body of a");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct Cache {
    engine: Arc<Engine>,
    #[cfg(feature = "object-store")]
    tier: Option<Arc<Tier>>,
}

impl Cache {
    /// Starts building a cache in `dir` (created if missing).
    pub fn builder(dir: impl Into<PathBuf>) -> CacheBuilder {
        CacheBuilder::new(dir.into())
    }

    pub(crate) fn new(engine: Engine) -> Self {
        Cache {
            engine: Arc::new(engine),
            #[cfg(feature = "object-store")]
            tier: None,
        }
    }

    /// This cache with a shared tier below it.
    #[cfg(feature = "object-store")]
    pub(crate) fn with_tier(mut self, tier: Option<Arc<Tier>>) -> Self {
        self.tier = tier;
        self
    }

    /// The shared tier, when the cache has one.
    #[cfg(feature = "object-store")]
    pub(crate) fn tier(&self) -> Option<&Arc<Tier>> {
        self.tier.as_ref()
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        self.engine.folder().root.root_dir()
    }

    /// Reads `key` through the cache's origin.
    ///
    /// A hit streams from the store. On a miss exactly one fetch runs, however many
    /// tasks and processes ask at once; this reader streams its bytes as they land.
    /// Returns once the origin has answered (or the blob is found), so an origin that
    /// refuses fails here.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey) for an empty key, [`Error::NoOrigin`](crate::Error::NoOrigin) when the cache has no
    /// origin, the origin's error ([`Error::Origin`](crate::Error::Origin)) when it refuses, and local I/O
    /// errors. Errors later in the body come through the reader.
    ///
    /// # Cancellation
    /// Dropping the future (or the reader) never cancels the fill: it runs on and
    /// stores the blob.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use futures::TryStreamExt;
    /// let cache = readthrough::Cache::builder(dir.path())
    ///     .origin(readthrough::origin_fn(|_key: String| async { Ok::<_, std::io::Error>(vec![7u8; 1000]) }))
    ///     .build()
    ///     .await?;
    /// let reader = cache.get("k").await?;
    /// assert_eq!(reader.len(), Some(1000));
    /// let chunks: Vec<bytes::Bytes> = reader.try_collect().await?;
    /// assert_eq!(chunks.concat(), vec![7u8; 1000]);
    /// # Ok(()) }
    /// ```
    pub async fn get(&self, key: &str) -> Result<Reader> {
        self.engine.get(key, None, false).await
    }

    /// Reads the bytes `range` of `key` (`a..b`, `a..`, or [`ByteRange::last`]`(n)`),
    /// as [`get`](Self::get) reads the whole blob.
    ///
    /// The reader yields exactly those bytes, and its [`len`](Reader::len) is their
    /// number. A hit reads only them from the stored file. On a miss the whole blob's
    /// one fill starts (or is joined, in this process or another) and the reader
    /// streams the range as soon as its bytes land, stopping at its end without
    /// waiting for the rest of the fill. With a
    /// [slice size](crate::CacheBuilder::slice_size), a miss fetches only the slices
    /// the range covers instead, all of one version of the object. When the origin announces no length, the
    /// read waits for the fill to end, since only then is the range known. Ranges
    /// are resolved as HTTP resolves them: an end past the blob's end is cut to it,
    /// and a suffix longer than the blob is the whole blob (on an empty blob, an
    /// empty body). The bytes are not checked against the blob's digest (only a
    /// whole body can be), whatever [`verify_on_read`](crate::CacheBuilder::verify_on_read)
    /// says.
    ///
    /// # Errors
    /// As [`get`](Self::get); [`Error::InvalidRange`](crate::Error::InvalidRange) for a
    /// range that ends before it starts, and
    /// [`Error::RangeNotSatisfiable`](crate::Error::RangeNotSatisfiable), with the
    /// blob's length, for one that starts at or past the blob's end (or a suffix of
    /// zero bytes); with slices, [`Error::Changed`](crate::Error::Changed) when the
    /// object changed between the fetches of two of its slices (the next read starts
    /// over with the new version).
    ///
    /// # Cancellation
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use readthrough::{ByteRange, Error};
    /// let cache = readthrough::Cache::builder(dir.path())
    ///     .origin(readthrough::origin_fn(|_key: String| async { Ok::<_, std::io::Error>(b"0123456789".to_vec()) }))
    ///     .build()
    ///     .await?;
    /// assert_eq!(cache.get_range("k", 2..5).await?.bytes().await?, "234");
    /// assert_eq!(cache.get_range("k", ByteRange::last(3)).await?.bytes().await?, "789");
    /// let past = cache.get_range("k", 10..).await.unwrap_err();
    /// assert!(matches!(past, Error::RangeNotSatisfiable { length: 10, .. }));
    /// # Ok(()) }
    /// ```
    pub async fn get_range(&self, key: &str, range: impl Into<ByteRange>) -> Result<Reader> {
        self.engine.get_range(key, None, range.into()).await
    }

    /// Waits until every blob this cache published so far has been flushed to stable
    /// storage by the background flush ([`Durability::Background`](crate::Durability::Background),
    /// the default), and recorded as flushed. Returns at once in the other modes.
    /// A flush that fails is logged, and its blob stays marked unflushed: it is
    /// checked against its SHA-256 at its next read after a restart.
    ///
    /// # Cancellation
    /// Safe to drop: the flushing goes on in the background.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.put("k", readthrough::Fetched::from(b"kept".to_vec())).await?;
    /// cache.sync().await; // "k" survives a power loss from here on
    /// # Ok(()) }
    /// ```
    pub async fn sync(&self) {
        self.engine.flushed().await;
    }

    /// Opens `key` for reads of any of its parts, as many as wanted: for a blob stored
    /// now, its file is held open and each [`Blob::read_at`] is one positioned read
    /// of it (random 4 KiB reads cost about what `pread` costs, where
    /// [`get_range`](Self::get_range) looks the entry up each time); a blob not stored
    /// is read by `get_range` calls. Counts one hit for a stored blob.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey), and local I/O errors.
    ///
    /// # Cancellation
    /// Nothing to cancel: it opens the stored file or not.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path())
    ///     .origin(readthrough::origin_fn(|_key: String| async { Ok::<_, std::io::Error>(b"0123456789".to_vec()) }))
    ///     .build()
    ///     .await?;
    /// let cold = cache.open("k").await?;
    /// assert!(!cold.is_stored());
    /// assert_eq!(cold.read_at(0..4).await?, "0123");
    /// cache.fills_ended().await;
    /// let stored = cache.open("k").await?;
    /// assert_eq!((stored.is_stored(), stored.len()), (true, Some(10)));
    /// assert_eq!(stored.read_at(8..).await?, "89");
    /// # Ok(()) }
    /// ```
    pub async fn open(&self, key: &str) -> Result<Blob> {
        self.engine.open(key, None)
    }

    /// Reads `key` as [`get`](Self::get) does, with `options`.
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// # Cancellation
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use std::time::Duration;
    /// use readthrough::{Fetched, GetOptions};
    /// cache.put("session", Fetched::from(b"token".to_vec()).with_ttl(Duration::from_secs(900))).await?;
    /// // Each read pushes the expiry to 15 minutes from now, as a login session does.
    /// let reader = cache.get_opts("session", &GetOptions::default().extend_expiry()).await?;
    /// # Ok(()) }
    /// ```
    pub async fn get_opts(&self, key: &str, options: &GetOptions) -> Result<Reader> {
        self.engine.get(key, None, options.extend_expiry).await
    }

    /// Reads `key` through a one-off origin: `fetch` is called with the key on a miss,
    /// unless a fill of the key is already running in this process (its reader joins
    /// that fill and `fetch` is not called).
    ///
    /// # Errors
    /// As [`get`](Self::get).
    ///
    /// # Cancellation
    /// As [`get`](Self::get).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// let version = 3;
    /// let reader = cache
    ///     .get_with("model.bin", move |key| async move {
    ///         Ok::<_, std::io::Error>(format!("{key} v{version}").into_bytes())
    ///     })
    ///     .await?;
    /// assert_eq!(reader.bytes().await?, "model.bin v3");
    /// # Ok(()) }
    /// ```
    pub async fn get_with<F, Fut, T, E>(&self, key: &str, fetch: F) -> Result<Reader>
    where
        F: Fn(String) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<T, E>> + Send + 'static,
        T: Into<Fetched>,
        E: Into<BoxError>,
    {
        let fetch: Arc<dyn Origin> = Arc::new(origin_fn(fetch));
        self.get_through(key, fetch, false).await
    }

    /// Reads `key` through `origin` instead of the cache's.
    pub(crate) async fn get_through(
        &self,
        key: &str,
        origin: Arc<dyn Origin>,
        extend: bool,
    ) -> Result<Reader> {
        self.engine.get(key, Some(origin), extend).await
    }

    /// Reads `key` only if it is stored: `None` on a miss, and no fetch.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey), and local I/O errors other than the blob's absence.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// assert!(cache.read("absent").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn read(&self, key: &str) -> Result<Option<Reader>> {
        self.engine.read(key)
    }

    /// What the cache knows of the stored entry of `key`, without reading its body:
    /// `None` when nothing is stored. A blob read by [slices](CacheBuilder::slice_size)
    /// of this cache's slice size is one entry too: its [`present`](Entry::present)
    /// bytes and its [`slices`](Entry::slices) say how much of it is stored.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey), and local I/O errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use readthrough::Fetched;
    /// cache.put("k", Fetched::from(b"abc".to_vec()).with_validator("\"v1\"")).await?;
    /// let entry = cache.metadata("k").await?.unwrap();
    /// assert_eq!((entry.size, entry.validator.as_deref()), (3, Some("\"v1\"")));
    /// assert!(cache.metadata("other").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn metadata(&self, key: &str) -> Result<Option<Entry>> {
        self.engine.entry(key).await
    }

    /// Stores `body` under `key`, replacing what is there, and returns its length.
    /// Readers of the old blob finish reading it undisturbed; reads that start while
    /// the put runs receive the new body.
    ///
    /// # Errors
    /// The body stream's error, a length or digest mismatch with what `body` announced,
    /// or a local I/O error. Nothing is stored then.
    ///
    /// # Cancellation
    /// The write runs in the background: dropping the future does not stop it.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use readthrough::Fetched;
    /// let chunks = futures::stream::iter([Ok::<_, std::io::Error>(bytes::Bytes::from("ab")), Ok("cd".into())]);
    /// assert_eq!(cache.put("k", Fetched::from_stream(chunks)).await?, 4);
    /// assert_eq!(cache.put("k", Fetched::from(b"new".to_vec())).await?, 3);
    /// assert_eq!(cache.read("k").await?.unwrap().bytes().await?, "new");
    /// # Ok(()) }
    /// ```
    pub async fn put(&self, key: &str, body: impl Into<Fetched>) -> Result<u64> {
        self.engine.put(key, body.into()).await
    }

    /// Removes the stored blob of `key`, and the slices of it stored in this cache's
    /// slice size with their manifest; returns whether there was any of them. Readers
    /// already streaming it finish undisturbed.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey), and local I/O errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.put("k", readthrough::Fetched::from(b"x".to_vec())).await?;
    /// assert!(cache.remove("k").await?);
    /// assert!(!cache.remove("k").await?);
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, key: &str) -> Result<bool> {
        self.engine.remove(key).await
    }

    /// Whether a complete blob of `key` is stored.
    ///
    /// # Errors
    /// [`Error::InvalidKey`](crate::Error::InvalidKey), and local I/O errors other than the blob's absence.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// assert!(!cache.contains("k").await?);
    /// cache.put("k", readthrough::Fetched::from(b"x".to_vec())).await?;
    /// assert!(cache.contains("k").await?);
    /// # Ok(()) }
    /// ```
    pub async fn contains(&self, key: &str) -> Result<bool> {
        let paths = self.engine.paths(key)?;
        let shown = paths.store.clone();
        blocking_io("look up", shown, move || {
            Ok(paths.store.stat()?.is_some_and(|meta| meta.is_file()))
        })
        .await
    }

    /// Makes sure `key` is stored, fetching it through the cache's origin if needed,
    /// and returns the path of its complete file, for programs that want a plain file.
    ///
    /// The file is never written in place: a later replacement is a new file renamed
    /// over this path, so a handle opened on it keeps the bytes it had.
    ///
    /// # Errors
    /// As [`get`](Self::get), plus any error of the fill, and a local I/O error when
    /// the blob could be fetched but not stored.
    ///
    /// # Cancellation
    /// Dropping the future does not cancel the fill.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path())
    ///     .origin(readthrough::origin_fn(|_key: String| async { Ok::<_, std::io::Error>(b"data".to_vec()) }))
    ///     .build()
    ///     .await?;
    /// let path = cache.path("k").await?;
    /// assert_eq!(std::fs::read(path).unwrap(), b"data");
    /// # Ok(()) }
    /// ```
    pub async fn path(&self, key: &str) -> Result<PathBuf> {
        self.engine.path(key).await
    }

    /// Checks that the cache directory can be used now: that its folders exist (they
    /// are created again if someone removed them) and that files can be written,
    /// locked and renamed into them. [`CacheBuilder::build`] runs the same check; this
    /// is for readiness probes and for programs that want to know before a request.
    ///
    /// # Errors
    /// [`Error::BadDirectory`](crate::Error::BadDirectory), naming the folder and what could not be done there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.check().await?;
    /// # Ok(()) }
    /// ```
    pub async fn check(&self) -> Result<()> {
        let folder = self.engine.folder().clone();
        blocking_io("check", self.dir(), move || {
            Ok(dir::check(&folder.root, &folder.base, folder.perms))
        })
        .await??;
        Ok(())
    }

    /// Waits until every fill running in this process when it is called has ended:
    /// stored its blob (or slice) or failed. Reads return as soon as their bytes are
    /// out, and a range read's fill (of the whole blob, or of a slice) goes on in the
    /// background; a program about to exit calls this so that what it fetched is
    /// stored for the next one. Errors of the fills are their readers' to report.
    ///
    /// # Cancellation
    /// Dropping the future stops the waiting only; the fills go on.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path())
    ///     .origin(readthrough::origin_fn(|_key: String| async { Ok::<_, std::io::Error>(vec![0u8; 1 << 20]) }))
    ///     .build()
    ///     .await?;
    /// cache.get_range("k", 0..10).await?.bytes().await?;
    /// cache.fills_ended().await;
    /// assert!(cache.contains("k").await?);
    /// # Ok(()) }
    /// ```
    pub async fn fills_ended(&self) {
        self.engine.fills_ended().await
    }

    /// A snapshot of this cache's counters.
    pub fn stats(&self) -> Stats {
        let stats = self.engine.stats();
        #[cfg(feature = "object-store")]
        if let Some(tier) = &self.tier {
            return tier.counters().add_to(stats);
        }
        stats
    }

    /// Checks that the cache takes `key` (see [`Cache::get`]'s errors).
    pub(crate) fn check_key(&self, key: &str) -> Result<()> {
        self.engine.paths(key).map(drop)
    }

    /// The engine, for the façade's other calls (maintenance).
    pub(crate) fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// The directory's folder and how files are written there, for the key-value
    /// front-ends on the same directory.
    pub(crate) fn folder(&self) -> &Folder {
        self.engine.folder()
    }

    /// The unexpired stored entry of `key` and its metadata, for the key-value view
    /// (see [`Engine::load`]).
    pub(crate) fn load_stored(&self, key: &str, extend: bool) -> Result<Option<LoadedEntry>> {
        self.engine.load(key, extend)
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.engine.fmt(f)
    }
}

/// Options of a read ([`Cache::get_opts`]). It grows with new fields, so build it
/// from [`GetOptions::default`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct GetOptions {
    /// A hit pushes the entry's expiry to its time to live from now (a sliding
    /// expiry). To keep hits cheap the metadata is rewritten only when that moves the
    /// expiry by more than a tenth of the time to live, or a minute if that is less.
    pub extend_expiry: bool,
}

impl GetOptions {
    /// Sets [`extend_expiry`](Self::extend_expiry).
    #[must_use]
    pub fn extend_expiry(mut self) -> Self {
        self.extend_expiry = true;
        self
    }
}
