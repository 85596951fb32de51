//! [`Cache`] and its public read and write calls.

use std::collections::HashMap;
use std::fmt;
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use bytes::BytesMut;
use futures::future::BoxFuture;
use tokio::sync::watch;

use crate::builder::CacheBuilder;
use crate::clock::Clock;
use crate::entry::{self, Standing, Stored};
use crate::error::{BoxError, Error, Result};
use crate::fill::{self, Mode};
use crate::layout::{KeyPaths, Layout};
use crate::lock::{self, Attempt, LockSite};
use crate::maintenance::{self, Entry};
use crate::meta::{self, EntryMeta};
use crate::origin::{FetchOptions, Fetched, Origin, origin_fn};
use crate::progress::{Fill, FillState, Role, Source, blocking};
use crate::reader::{ReadKind, Reader, Tail, checked_body, stored_body};
use crate::stats::{Counters, Stats, add};

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
    pub(crate) layout: Box<dyn Layout>,
    pub(crate) origin: Option<Arc<dyn Origin>>,
    pub(crate) stale_after: Duration,
    pub(crate) durable: bool,
    pub(crate) locks: LockSite,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) verify_on_read: bool,
    pub(crate) serve_stale: bool,
    pub(crate) perms: crate::sys::Perms,
    /// Parsed metadata, so a hit reads its metadata file only when it changed.
    pub(crate) metas: entry::MetaCache,
    pub(crate) counters: Counters,
    /// The fills running in this process, by key.
    pub(crate) fills: Mutex<HashMap<String, Weak<Fill>>>,
    /// Whether this process is evicting now.
    pub(crate) evicting: AtomicBool,
}

impl Inner {
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

impl Cache {
    /// Starts building a cache in `dir` (created if missing).
    pub fn builder(dir: impl Into<PathBuf>) -> CacheBuilder {
        CacheBuilder::new(dir.into())
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
        self.get_from(key, None, &GetOptions::default()).await
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
        self.get_from(key, None, options).await
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
        self.get_from(key, Some(fetch), &GetOptions::default())
            .await
    }

    pub(crate) async fn get_from(
        &self,
        key: &str,
        origin: Option<Arc<dyn Origin>>,
        options: &GetOptions,
    ) -> Result<Reader> {
        let paths = self.paths(key)?;
        let origin = origin.or_else(|| self.inner.origin.clone());
        match self.open_stored(key, &paths, options.extend_expiry)? {
            Found::Fresh(reader) => return Ok(reader),
            Found::Stale(reader) => {
                // Served at once; one fill refreshes it in the background.
                if let Some(origin) = origin {
                    self.join_or_start(key, &paths, origin);
                }
                return Ok(reader);
            }
            Found::Nothing => {}
        }
        add(&self.inner.counters.misses, 1);
        let origin = origin.ok_or_else(|| Error::NoOrigin {
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
        Ok(match self.open_stored(key, &paths, false)? {
            Found::Fresh(reader) | Found::Stale(reader) => Some(reader),
            Found::Nothing => None,
        })
    }

    /// What the cache knows of the stored entry of `key`, without reading its body:
    /// `None` when nothing is stored.
    ///
    /// # Errors
    /// [`Error::InvalidKey`], and local I/O errors.
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
        let paths = self.paths(key)?;
        let meta_path = paths.meta.clone();
        blocking(move || Ok(maintenance::entry_of(&meta_path)))
            .await
            .map_err(|e| Error::io("read", paths.meta, e))
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
        let (base, store) = (self.inner.base.clone(), paths.store.clone());
        blocking(move || maintenance::remove_entry(&base, &store))
            .await
            .map_err(|e| Error::io("remove", paths.store, e))
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
        let paths = self.paths(key)?;
        if self.servable(key, &paths, false)?.is_some() {
            return Ok(paths.store);
        }
        add(&self.inner.counters.misses, 1);
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

    /// Checks that the cache directory can be used now: that its folders exist (they
    /// are created again if someone removed them) and that files can be written,
    /// locked and renamed into them. [`CacheBuilder::build`] runs the same check; this
    /// is for readiness probes and for programs that want to know before a request.
    ///
    /// # Errors
    /// [`Error::BadDirectory`], naming the folder and what could not be done there.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.check().await?;
    /// # Ok(()) }
    /// ```
    pub async fn check(&self) -> Result<()> {
        let (root, base, perms) = (
            self.inner.root.clone(),
            self.inner.base.clone(),
            self.inner.perms,
        );
        blocking(move || Ok(crate::builder::check_dirs(&root, &base, perms)))
            .await
            .map_err(|e| Error::io("check", &self.inner.root, e))??;
        Ok(())
    }

    /// A snapshot of this cache's counters.
    pub fn stats(&self) -> Stats {
        self.inner.counters.snapshot()
    }

    pub(crate) fn paths(&self, key: &str) -> Result<KeyPaths> {
        if key.is_empty() {
            return Err(Error::InvalidKey {
                reason: "a key must not be empty",
            });
        }
        KeyPaths::resolve(self.inner.layout.as_ref(), &self.inner.base, key)
    }

    /// Opens what the store holds for `key`, as a reader.
    fn open_stored(&self, key: &str, paths: &KeyPaths, extend: bool) -> Result<Found> {
        Ok(match self.servable(key, paths, extend)? {
            Some((stored, false)) => Found::Fresh(self.stored_reader(key, paths, stored)),
            Some((stored, true)) => Found::Stale(self.stored_reader(key, paths, stored)),
            None => Found::Nothing,
        })
    }

    /// The stored entry of `key` if it may be served, and whether it is stale (served
    /// while a fill refreshes it); records the read as a hit. The opens run on this
    /// thread: path lookups the kernel answers from its caches for a live cache
    /// directory, where a trip to a blocking thread would cost more than a small read.
    fn servable(
        &self,
        key: &str,
        paths: &KeyPaths,
        extend: bool,
    ) -> Result<Option<(Stored, bool)>> {
        let Some(stored) = entry::open(paths, &self.inner.metas)
            .map_err(|e| Error::io("open", &paths.store, e))?
        else {
            return Ok(None);
        };
        let now = self.inner.clock.now();
        let stale = match stored.standing(now) {
            Standing::Fresh => false,
            Standing::Expired { .. } if self.inner.serve_stale => true,
            Standing::Expired { .. } => return Ok(None),
            Standing::Damaged(reason) => {
                tracing::warn!(%key, %reason, "not serving a damaged entry; fetching it again");
                return Ok(None);
            }
        };
        let mut stored = stored;
        // An expired entry served while it is refreshed keeps its expiry.
        if extend
            && !stale
            && let Some(expires) = stored.extended_expiry(now)
        {
            crate::failpoint::failpoint!("cache::extend");
            match self.extend_expiry(paths, &stored, expires, now) {
                Ok(Some(extended)) => stored.meta = Some(extended),
                Ok(None) => {}
                Err(e) => tracing::debug!(%key, error = %e, "could not extend an expiry"),
            }
        }
        meta::note_read(&paths.meta, stored.last_read, now);
        add(&self.inner.counters.hits, 1);
        Ok(Some((stored, stale)))
    }

    /// Moves the expiry of the entry `stored`, read at `now`, to `expires` (in Unix
    /// milliseconds) and returns its new metadata. The rewrite holds the key's lock
    /// and happens only while the entry is still the one read, so a publish or a
    /// revalidation that lands meanwhile is never overwritten with older metadata.
    /// While a fill holds the lock the expiry is left alone (`None`): a later read
    /// extends it.
    fn extend_expiry(
        &self,
        paths: &KeyPaths,
        stored: &Stored,
        expires: u64,
        now: std::time::SystemTime,
    ) -> io::Result<Option<Arc<EntryMeta>>> {
        let Some(meta) = &stored.meta else {
            return Ok(None);
        };
        let perms = self.inner.perms;
        let attempt = crate::sys::in_dir(&paths.tmp_dir, perms, || {
            lock::try_lead(&paths.lock, &self.inner.locks)
        })?;
        let Attempt::Led(held) = attempt else {
            return Ok(None);
        };
        let Some(current) = entry::open(paths, &self.inner.metas)? else {
            return Ok(None);
        };
        if current.blob != stored.blob || current.meta.as_ref() != Some(meta) {
            return Ok(None);
        }
        let mut extended = EntryMeta::clone(meta).bound_to(current.blob);
        extended.expires_ms = Some(expires);
        extended
            .prepare(&paths.tmp_dir, false, now, perms)?
            .persist(&paths.meta)
            .map_err(|e| e.error)?;
        drop(held);
        Ok(Some(Arc::new(extended)))
    }

    /// The unexpired stored entry of `key`, as a reader and what its metadata says
    /// (after any extension of its expiry), both from one open; records a hit. For the
    /// key-value view, where an expired entry is absent even when stale entries are
    /// served.
    pub(crate) fn load_stored(&self, key: &str, extend: bool) -> Result<Option<LoadedEntry>> {
        let paths = self.paths(key)?;
        let Some((stored, false)) = self.servable(key, &paths, extend)? else {
            return Ok(None);
        };
        let Some(meta) = stored.meta.clone() else {
            return Ok(None);
        };
        let last_read = stored.last_read;
        let reader = self.stored_reader(key, &paths, stored);
        Ok(Some(LoadedEntry {
            reader,
            meta,
            last_read,
        }))
    }

    /// A reader of a stored blob, checked against its digest when the cache verifies
    /// on read.
    fn stored_reader(&self, key: &str, paths: &KeyPaths, stored: Stored) -> Reader {
        let len = stored.len;
        let digest = stored
            .meta
            .as_ref()
            .map(|m| m.sha256.clone())
            .filter(|_| self.inner.verify_on_read);
        let source = Arc::new(Source {
            file: stored.file,
            generation: 0,
            len: Some(len),
            validator: None,
        });
        let body = stored_body(Arc::clone(&self.inner), source, len);
        let body = match digest {
            Some(digest) => checked_body(
                body,
                digest,
                key.to_owned(),
                self.inner.base.clone(),
                (paths.store.clone(), stored.blob),
            ),
            None => body,
        };
        Reader::new(body, Some(len), ReadKind::Hit)
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
            promised: len,
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
            .field("locking", &self.inner.locks.locking)
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

/// A stored entry as [`Cache::load_stored`] found it.
pub(crate) struct LoadedEntry {
    pub(crate) reader: Reader,
    pub(crate) meta: Arc<EntryMeta>,
    /// When it was last read before this load.
    pub(crate) last_read: std::time::SystemTime,
}

/// What the store holds for a read.
enum Found {
    Fresh(Reader),
    /// Expired, served while a fill refreshes it.
    Stale(Reader),
    /// Nothing servable.
    Nothing,
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
