//! [`Cache`], its builder, and the public read and write calls.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::BytesMut;
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::error::{BoxError, Error, Result};
use crate::fill::{self, Mode};
use crate::layout::{KeyPaths, Layout, ShardedLayout};
use crate::lock::{self, Locking};
use crate::meta;
use crate::origin::{FetchOptions, Fetched, Origin, origin_fn};
use crate::progress::{Fill, FillState, Role, Source, blocking};
use crate::reader::{ReadKind, Reader, Tail, stored_body};
use crate::stats::{Counters, Stats, add};
use crate::sys;

/// The folder, under the cache directory, that holds this on-disk format.
const FORMAT_DIR: &str = "v1";

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
    pub(crate) inner: Arc<Inner>,
}

/// What every clone of a [`Cache`] shares.
pub(crate) struct Inner {
    pub(crate) root: PathBuf,
    pub(crate) base: PathBuf,
    layout: Box<dyn Layout>,
    origin: Option<Arc<dyn Origin>>,
    pub(crate) stale_after: Duration,
    pub(crate) durable: bool,
    pub(crate) locking: Locking,
    pub(crate) counters: Counters,
    /// The fills running in this process, by key.
    fills: Mutex<HashMap<String, Weak<Fill>>>,
}

impl Inner {
    /// The lock that breakers of stale fill locks take turns through.
    pub(crate) fn break_guard(&self) -> PathBuf {
        self.base.join("tmp").join(crate::lock::BREAK_GUARD)
    }

    /// Removes a fill from the map of running fills, if it is still the one there.
    pub(crate) fn forget(&self, fill: &Arc<Fill>) {
        let mut fills = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        if fills
            .get(&fill.key)
            .is_some_and(|weak| Weak::as_ptr(weak) == Arc::as_ptr(fill))
        {
            fills.remove(&fill.key);
        }
    }
}

/// Builds a [`Cache`]. Made by [`Cache::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// let cache = readthrough::Cache::builder(dir.path())
///     .stale_after(Duration::from_secs(10))
///     .durable(false)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct CacheBuilder {
    root: PathBuf,
    origin: Option<Arc<dyn Origin>>,
    layout: Box<dyn Layout>,
    stale_after: Duration,
    durable: bool,
    file_locks: bool,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("root", &self.root)
            .field("stale_after", &self.stale_after)
            .field("durable", &self.durable)
            .field("file_locks", &self.file_locks)
            .finish_non_exhaustive()
    }
}

impl CacheBuilder {
    /// The origin that [`Cache::get`] and [`Cache::path`] fetch from on a miss.
    /// Without one, only [`Cache::get_with`] and explicit writes fill the cache.
    pub fn origin(mut self, origin: impl Origin) -> Self {
        self.origin = Some(Arc::new(origin));
        self
    }

    /// How long a fill led by another process may go without refreshing its files
    /// before a waiter takes it over (default 30 s). A live leader refreshes them every
    /// half of this, even while its origin is slow; a stopped or hung process does not.
    pub fn stale_after(mut self, timeout: Duration) -> Self {
        self.stale_after = timeout;
        self
    }

    /// Whether a blob is flushed to stable storage (`fsync` of the file and of its
    /// directory) before it is published (default on). Off, a power loss may lose
    /// recently published blobs, but never exposes a partial one under its key.
    pub fn durable(mut self, durable: bool) -> Self {
        self.durable = durable;
        self
    }

    /// Where each key's files live (default [`ShardedLayout`]).
    pub fn layout(mut self, layout: impl Layout) -> Self {
        self.layout = Box::new(layout);
        self
    }

    /// Whether to coordinate processes with file locks (default on). Turn off only
    /// where the file system accepts locks but enforces nothing: every process then
    /// fetches for itself (tasks in one process still share fetches), and every other
    /// guarantee holds. [`build`](Self::build) turns locks off by itself, with a
    /// warning, when it finds they do not exclude.
    pub fn file_locks(mut self, on: bool) -> Self {
        self.file_locks = on;
        self
    }

    /// Opens the cache: creates its directories, checks it can write there, and checks
    /// that file locks exclude each other.
    ///
    /// # Errors
    /// [`Error::BadDirectory`] naming the path when the directory is a file, cannot be
    /// created, or cannot be written.
    ///
    /// # Cancellation
    /// Safe to drop; at worst the directories exist.
    pub async fn build(self) -> Result<Cache> {
        let root = self.root.clone();
        let probe_dir = root.join(FORMAT_DIR).join("tmp");
        let want_locks = self.file_locks;
        let locking = blocking(move || Ok(open_dirs(&root, &probe_dir, want_locks)))
            .await
            .map_err(|e| bad_dir(&self.root, "reach", e))??;
        Ok(Cache {
            inner: Arc::new(Inner {
                base: self.root.join(FORMAT_DIR),
                root: self.root,
                layout: self.layout,
                origin: self.origin,
                stale_after: self.stale_after,
                durable: self.durable,
                locking,
                counters: Counters::default(),
                fills: Mutex::default(),
            }),
        })
    }
}

fn bad_dir(path: &Path, what: &'static str, source: io::Error) -> Error {
    Error::BadDirectory {
        path: path.to_owned(),
        what,
        source: crate::error::Cause::new(source),
    }
}

/// Creates the cache's folders and finds out how to lock there.
fn open_dirs(root: &Path, probe_dir: &Path, want_locks: bool) -> Result<Locking> {
    if root.exists() && !root.is_dir() {
        return Err(bad_dir(
            root,
            "use as a directory",
            io::Error::new(io::ErrorKind::NotADirectory, "it is not a directory"),
        ));
    }
    sys::make_dirs(probe_dir).map_err(|e| bad_dir(probe_dir, "create", e))?;
    let store = probe_dir.with_file_name("store");
    sys::make_dirs(&store).map_err(|e| bad_dir(&store, "create", e))?;
    let excludes = lock::locks_exclude(probe_dir)
        .map_err(|e| bad_dir(probe_dir, "write and lock a file in", e))?;
    if !want_locks {
        return Ok(Locking::Disabled);
    }
    if !excludes {
        tracing::warn!(
            dir = %root.display(),
            "file locks do not exclude each other here; processes will not share fetches"
        );
        return Ok(Locking::Disabled);
    }
    Ok(Locking::Flock)
}

impl Cache {
    /// Starts building a cache in `dir` (created if missing).
    pub fn builder(dir: impl Into<PathBuf>) -> CacheBuilder {
        CacheBuilder {
            root: dir.into(),
            origin: None,
            layout: Box::new(ShardedLayout),
            stale_after: Duration::from_secs(30),
            durable: true,
            file_locks: true,
        }
    }

    /// The cache directory.
    pub fn dir(&self) -> &Path {
        &self.inner.root
    }

    /// Reads `key` through the cache's origin.
    ///
    /// A hit streams from the store. On a miss exactly one fetch runs, however many
    /// tasks and processes ask at once; this reader streams its bytes as they land.
    /// Returns once the origin has answered (or the blob is found), so an origin that
    /// refuses fails here.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty key, [`Error::NoOrigin`] when the cache has no
    /// origin, the origin's error ([`Error::Origin`]) when it refuses, and local I/O
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
        self.get_from(key, None).await
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
        self.get_from(key, Some(Arc::new(origin_fn(fetch)))).await
    }

    async fn get_from(&self, key: &str, origin: Option<Arc<dyn Origin>>) -> Result<Reader> {
        let paths = self.paths(key)?;
        if let Some(reader) = self.open_hit(&paths).await? {
            return Ok(reader);
        }
        add(&self.inner.counters.misses, 1);
        let origin = origin
            .or_else(|| self.inner.origin.clone())
            .ok_or_else(|| Error::NoOrigin {
                key: key.to_owned(),
            })?;
        let (state, origin, started) = self.join_or_start(key, &paths, origin);
        self.fill_reader(key, state, origin, started).await
    }

    /// Reads `key` only if it is stored: `None` on a miss, and no fetch.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and local I/O errors other than the blob's absence.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// assert!(cache.read("absent").await?.is_none());
    /// # Ok(()) }
    /// ```
    pub async fn read(&self, key: &str) -> Result<Option<Reader>> {
        let paths = self.paths(key)?;
        self.open_hit(&paths).await
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
        let paths = self.paths(key)?;
        let origin: Arc<dyn Origin> = Arc::new(OneBody(Mutex::new(Some(body.into()))));
        let state = loop {
            let running = {
                let mut fills = self.inner.fills.lock().unwrap_or_else(|e| e.into_inner());
                match fills.get(key).and_then(Weak::upgrade) {
                    Some(fill) => fill.state.subscribe(),
                    None => {
                        break self.start(
                            &mut fills,
                            key,
                            &paths,
                            Arc::clone(&origin),
                            Mode::Replace,
                        );
                    }
                }
            };
            wait_final(running, key).await?;
        };
        match wait_final(state, key).await? {
            FillState::Complete {
                len,
                stored: Ok(()),
                ..
            } => Ok(len),
            FillState::Complete { stored: Err(e), .. } | FillState::Failed(e) => Err(e),
            _ => unreachable!("wait_final returns a final state"),
        }
    }

    /// Removes the stored blob of `key`; returns whether there was one. Readers already
    /// streaming it finish undisturbed.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and local I/O errors.
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
        let paths = self.paths(key)?;
        let store = paths.store.clone();
        blocking(move || {
            let existed = remove_file(&paths.store)?;
            remove_file(&paths.meta)?;
            Ok(existed)
        })
        .await
        .map_err(|e| Error::io("remove", store, e))
    }

    /// Whether a complete blob of `key` is stored.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and local I/O errors other than the blob's absence.
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
        let paths = self.paths(key)?;
        let store = paths.store.clone();
        blocking(move || match std::fs::symlink_metadata(&store) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        })
        .await
        .map_err(|e| Error::io("look up", paths.store, e))
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
        if self.contains(key).await? {
            add(&self.inner.counters.hits, 1);
            let paths = self.paths(key)?;
            meta::note_read(&paths.meta);
            return Ok(paths.store);
        }
        add(&self.inner.counters.misses, 1);
        let paths = self.paths(key)?;
        let origin = self.inner.origin.clone().ok_or_else(|| Error::NoOrigin {
            key: key.to_owned(),
        })?;
        let (state, _, _) = self.join_or_start(key, &paths, origin);
        match wait_final(state, key).await? {
            FillState::Complete { stored: Ok(()), .. } => Ok(paths.store),
            FillState::Complete { stored: Err(e), .. } | FillState::Failed(e) => Err(e),
            _ => unreachable!("wait_final returns a final state"),
        }
    }

    /// A snapshot of this cache's counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    fn paths(&self, key: &str) -> Result<KeyPaths> {
        if key.is_empty() {
            return Err(Error::InvalidKey {
                reason: "a key must not be empty",
            });
        }
        KeyPaths::resolve(self.inner.layout.as_ref(), &self.inner.base, key)
    }

    /// Opens the stored blob of a key, if any, as a hit. The open runs on this
    /// thread: a path lookup the kernel answers from its caches for a live cache
    /// directory, where a trip to a blocking thread would cost more than the read.
    async fn open_hit(&self, paths: &KeyPaths) -> Result<Option<Reader>> {
        let file = match sys::open_read(&paths.store) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io("open", &paths.store, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| Error::io("stat", &paths.store, e))?
            .len();
        add(&self.inner.counters.hits, 1);
        meta::note_read(&paths.meta);
        let source = Arc::new(Source {
            file,
            generation: 0,
            len: Some(len),
            validator: None,
        });
        let body = stored_body(Arc::clone(&self.inner), source, len);
        Ok(Some(Reader::new(body, Some(len), ReadKind::Hit)))
    }

    /// Joins the fill of `key` running in this process, or starts one. Returns its
    /// state, its origin, and whether this call started it.
    fn join_or_start(
        &self,
        key: &str,
        paths: &KeyPaths,
        origin: Arc<dyn Origin>,
    ) -> (watch::Receiver<FillState>, Arc<dyn Origin>, bool) {
        let mut fills = self.inner.fills.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fill) = fills.get(key).and_then(Weak::upgrade) {
            add(&self.inner.counters.fills_joined, 1);
            return (fill.state.subscribe(), Arc::clone(&fill.origin), false);
        }
        let state = self.start(&mut fills, key, paths, Arc::clone(&origin), Mode::Fetch);
        (state, origin, true)
    }

    fn start(
        &self,
        fills: &mut HashMap<String, Weak<Fill>>,
        key: &str,
        paths: &KeyPaths,
        origin: Arc<dyn Origin>,
        mode: Mode,
    ) -> watch::Receiver<FillState> {
        let fill = Fill::new(key, origin);
        fills.insert(key.to_owned(), Arc::downgrade(&fill));
        let state = fill.state.subscribe();
        tokio::spawn(fill::drive(
            Arc::clone(&self.inner),
            fill,
            paths.clone(),
            mode,
        ));
        state
    }

    /// A reader of a fill, once the fill has something to say.
    async fn fill_reader(
        &self,
        key: &str,
        mut state: watch::Receiver<FillState>,
        origin: Arc<dyn Origin>,
        started: bool,
    ) -> Result<Reader> {
        let first = state
            .wait_for(|s| !matches!(s, FillState::Starting))
            .await
            .map_err(|_| Error::FillVanished {
                key: key.to_owned(),
            })?
            .clone();
        let (len, role) = match &first {
            FillState::Failed(e) if !e.is_local_disk() => {
                add(&self.inner.counters.errors, 1);
                return Err(e.clone());
            }
            FillState::Failed(_) => (None, Role::Leader),
            FillState::Streaming { source, role, .. } => (source.len, *role),
            FillState::Complete { len, role, .. } => (Some(*len), *role),
            FillState::Starting => unreachable!("waited for a later state"),
        };
        let kind = match (started, role) {
            (false, _) => ReadKind::Joined,
            (true, Role::Leader) => ReadKind::Led,
            (true, Role::Follower) => ReadKind::Followed,
            (true, Role::Found) => ReadKind::Hit,
        };
        let tail = Tail {
            inner: Arc::clone(&self.inner),
            key: key.to_owned(),
            origin,
            state,
            pos: 0,
            current: None,
            previous: None,
            checked: 0,
            buf: BytesMut::new(),
        };
        Ok(Reader::new(tail.into_body(), len, kind))
    }
}

impl fmt::Debug for Cache {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.inner.root)
            .field("stale_after", &self.inner.stale_after)
            .field("durable", &self.inner.durable)
            .field("locking", &self.inner.locking)
            .finish_non_exhaustive()
    }
}

/// Waits until a fill has ended and returns how.
async fn wait_final(mut state: watch::Receiver<FillState>, key: &str) -> Result<FillState> {
    let end = state
        .wait_for(FillState::is_final)
        .await
        .map_err(|_| Error::FillVanished {
            key: key.to_owned(),
        })?;
    Ok(end.clone())
}

fn remove_file(path: &Path) -> io::Result<bool> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e),
    }
}

/// The origin of a [`Cache::put`]: the one body it was given.
struct OneBody(Mutex<Option<Fetched>>);

impl Origin for OneBody {
    fn fetch(&self, _: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let body = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        Box::pin(
            async move { body.ok_or_else(|| "the body of this put was already consumed".into()) },
        )
    }
}
