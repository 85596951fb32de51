//! The engine's answers to a cache's calls: a read (a hit, or a reader of the fill it
//! joins or starts), a stored-only read, a load for the key-value view, a path, and a
//! put. Hits open their files on the calling thread: path lookups the kernel answers
//! from its caches for a live cache directory, where a trip to a blocking thread would
//! cost more than a small read.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use futures::future::BoxFuture;

use crate::engine::progress::FillState;
use crate::engine::reader::Reader;
use crate::engine::state::{Engine, wait_final};
use crate::error::{BoxError, Error, Result};
use crate::origin::{FetchOptions, Fetched, Origin};
use crate::range::ByteRange;
use crate::stats::add;
use crate::store::entry::{self, Serving, Stored};
use crate::store::layout::KeyPaths;
use crate::store::meta::EntryMeta;

/// A stored entry as [`Engine::load`] found it.
pub(crate) struct LoadedEntry {
    pub(crate) reader: Reader,
    pub(crate) meta: Arc<EntryMeta>,
    /// When it was last read before this load.
    pub(crate) last_read: SystemTime,
}

impl Engine {
    /// Reads `key`: a hit streams from the store (an expired entry, when stale entries
    /// are served, while one fill refreshes it); a miss joins or starts the key's fill
    /// through `origin` (else the cache's), and returns once the fill has something to
    /// say. `extend` slides a hit's expiry.
    pub(crate) async fn get(
        self: &Arc<Self>,
        key: &str,
        origin: Option<Arc<dyn Origin>>,
        extend: bool,
    ) -> Result<Reader> {
        let paths = self.paths(key)?;
        let origin = origin.or_else(|| self.settings.origin.clone());
        if let Some(reader) = self.hit(key, &paths, origin.as_ref(), extend)? {
            return Ok(reader);
        }
        add(&self.counters.misses, 1);
        let origin = origin.ok_or_else(|| Error::NoOrigin {
            key: key.to_owned(),
        })?;
        if let Some(reader) = self.whole_by_slices(key, &origin).await? {
            return Ok(reader);
        }
        let (state, origin, started) = self.join_or_start(key, &paths, origin);
        Reader::of_fill(self, key, state, origin, started).await
    }

    /// The stored blob of `key`, if it may be served: an expired one served while
    /// stale entries are is read at once while one fill through `origin` refreshes it
    /// in the background. `extend` slides its expiry.
    pub(super) fn hit(
        self: &Arc<Self>,
        key: &str,
        paths: &KeyPaths,
        origin: Option<&Arc<dyn Origin>>,
        extend: bool,
    ) -> Result<Option<Reader>> {
        let Some((stored, stale)) = self.servable(key, paths, extend)? else {
            return Ok(None);
        };
        if stale && let Some(origin) = origin {
            self.join_or_start(key, paths, Arc::clone(origin));
        }
        Ok(Some(self.stored_reader(key, paths, stored)))
    }

    /// Reads the bytes `range` of `key`, as [`get`](Self::get) reads the whole: a hit
    /// reads only those bytes of the stored file; a fill (joined or started) is read
    /// from the range's start as its bytes land, and the reader stops at the range's
    /// end without waiting for the rest. A fill whose origin announced no length is
    /// waited for to its end, since only then is the range known.
    pub(crate) async fn get_range(
        self: &Arc<Self>,
        key: &str,
        origin: Option<Arc<dyn Origin>>,
        range: ByteRange,
    ) -> Result<Reader> {
        range.check()?;
        let origin = origin.or_else(|| self.settings.origin.clone());
        let mut reader = match self.try_sliced(key, origin.clone(), range).await? {
            Slicing::Sliced(reader) => return Ok(reader),
            Slicing::Stored(reader) => reader,
            Slicing::Whole => self.get(key, origin, false).await?,
        };
        let length = reader.blob_len().await?;
        reader.windowed(range.window(key, length)?)
    }

    /// Reads `range` of `key` by slices when the cache slices, the origin serves
    /// ranges, and the blob is neither stored whole (then the hit, refreshed as
    /// [`get`](Self::get) refreshes it) nor being filled whole in this process.
    async fn try_sliced(
        self: &Arc<Self>,
        key: &str,
        origin: Option<Arc<dyn Origin>>,
        range: ByteRange,
    ) -> Result<Slicing> {
        let (Some(size), Some(origin)) = (self.settings.slice_size, origin) else {
            return Ok(Slicing::Whole);
        };
        if !origin.serves_ranges() || self.is_filling(key) {
            return Ok(Slicing::Whole);
        }
        let paths = self.paths(key)?;
        if let Some(reader) = self.hit(key, &paths, Some(&origin), false)? {
            return Ok(Slicing::Stored(reader));
        }
        Ok(match self.get_sliced(key, origin, range, size).await? {
            Some(reader) => Slicing::Sliced(reader),
            None => Slicing::Whole,
        })
    }

    /// Reads `key` only if it is stored: `None` on a miss.
    pub(crate) fn read(self: &Arc<Self>, key: &str) -> Result<Option<Reader>> {
        let paths = self.paths(key)?;
        Ok(self
            .servable(key, &paths, false)?
            .map(|(stored, _)| self.stored_reader(key, &paths, stored)))
    }

    /// The unexpired stored entry of `key`, as a reader and what its metadata says
    /// (after any extension of its expiry), both from one open; records a hit. For the
    /// key-value view, where an expired entry is absent even when stale entries are
    /// served.
    pub(crate) fn load(self: &Arc<Self>, key: &str, extend: bool) -> Result<Option<LoadedEntry>> {
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

    /// Makes sure `key` is stored, fetching it if need be; the path of its file.
    pub(crate) async fn path(self: &Arc<Self>, key: &str) -> Result<PathBuf> {
        let paths = self.paths(key)?;
        if self.servable(key, &paths, false)?.is_some() {
            return Ok(paths.store.path());
        }
        add(&self.counters.misses, 1);
        let origin = self
            .settings
            .origin
            .clone()
            .ok_or_else(|| Error::NoOrigin {
                key: key.to_owned(),
            })?;
        let (state, _, _) = self.join_or_start(key, &paths, origin);
        stored_end(wait_final(state, key).await?).map(|_| paths.store.path())
    }

    /// Stores `body` under `key` whatever is there; its length.
    pub(crate) async fn put(self: &Arc<Self>, key: &str, body: Fetched) -> Result<u64> {
        let paths = self.paths(key)?;
        let origin: Arc<dyn Origin> = Arc::new(OneBody(Mutex::new(Some(body))));
        let state = self.start_replace(key, &paths, origin).await?;
        stored_end(wait_final(state, key).await?)
    }

    /// The stored entry of `key` if it may be served, and whether it is stale; records
    /// the read as a hit.
    fn servable(
        &self,
        key: &str,
        paths: &KeyPaths,
        extend: bool,
    ) -> Result<Option<(Stored, bool)>> {
        let serving = Serving {
            now: self.settings.folder.clock.now(),
            serve_stale: self.settings.serve_stale,
            extend,
        };
        let found = entry::servable(key, paths, &self.metas, &self.settings.locks, &serving)
            .map_err(|e| Error::io("open", &paths.store, e))?;
        if found.is_some() {
            add(&self.counters.hits, 1);
        }
        Ok(found)
    }

    /// A reader of a stored blob, checked against its digest when the cache verifies
    /// on read.
    fn stored_reader(self: &Arc<Self>, key: &str, paths: &KeyPaths, stored: Stored) -> Reader {
        let digest = stored
            .meta
            .as_ref()
            .map(|m| m.sha256.clone())
            .filter(|_| self.settings.verify_on_read);
        Reader::stored(self, key, paths, stored, digest)
    }
}

/// How a range read goes on: by slices, from the stored blob, or as a whole read.
enum Slicing {
    Sliced(Reader),
    Stored(Reader),
    Whole,
}

/// The length of a fill that ended with its body stored, or why it is not.
fn stored_end(end: FillState) -> Result<u64> {
    match end {
        FillState::Complete {
            len,
            stored: Ok(()),
            ..
        } => Ok(len),
        FillState::Complete { stored: Err(e), .. } | FillState::Failed(e) => Err(e),
        FillState::Starting | FillState::Streaming { .. } => {
            unreachable!("wait_final returns a final state")
        }
    }
}

/// The origin of a put: the one body it was given.
struct OneBody(Mutex<Option<Fetched>>);

impl Origin for OneBody {
    fn fetch(&self, _: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let body = self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        Box::pin(
            async move { body.ok_or_else(|| "the body of this put was already consumed".into()) },
        )
    }
}
