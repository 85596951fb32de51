//! [`Blob`]: a blob opened once for many reads of its parts (`Cache::open`), as a
//! Parquet or safetensors reader reads a footer, then a header, then the chunks it
//! picked.

use std::sync::Arc;

use bytes::Bytes;

use crate::engine::progress::Source;
use crate::engine::state::Engine;
use crate::error::{Error, Result};
use crate::origin::Origin;
use crate::range::ByteRange;
use crate::stats::add;

/// A blob opened for reads of any of its parts, as many as wanted. Made by
/// [`Cache::open`](crate::Cache::open).
///
/// - **Stored** (a hit when it was opened): the blob's file is held open, and each
///   [`read_at`](Self::read_at) is one positioned read of it, with no lookup, so
///   random small reads cost about what `pread` costs. The bytes are those of the
///   version stored when it was opened, to the end, even if the entry is replaced or
///   removed meanwhile (the open file keeps them). They are not checked against the
///   blob's digest ([`verify_on_read`](crate::CacheBuilder::verify_on_read) opens
///   no blob as stored: each read then goes through `get_range`).
/// - **Not stored:** each read is a [`Cache::get_range`](crate::Cache::get_range),
///   coalesced, streamed and stored as that call says (by slices, with a slice size).
///
/// Cheap to keep; it holds one file descriptor while stored.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
/// cache.put("k", readthrough::Fetched::from(b"0123456789".to_vec())).await?;
/// let blob = cache.open("k").await?;
/// assert_eq!(blob.len(), Some(10));
/// assert_eq!(blob.read_at(readthrough::ByteRange::last(2)).await?, "89");
/// assert_eq!(blob.read_at(3..5).await?, "34");
/// # Ok(()) }
/// ```
pub struct Blob {
    engine: Arc<Engine>,
    key: String,
    origin: Option<Arc<dyn Origin>>,
    /// The stored file and its length, for a blob stored when it was opened.
    stored: Option<(Arc<Source>, u64)>,
}

impl std::fmt::Debug for Blob {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Blob")
            .field("key", &self.key)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Opens `key` for reads of its parts through `origin` (or the cache's): its
    /// stored file when it is a hit whose bytes need no digest check.
    pub(crate) fn open(
        self: &Arc<Self>,
        key: &str,
        origin: Option<Arc<dyn Origin>>,
    ) -> Result<Blob> {
        let origin = origin.or_else(|| self.settings.origin.clone());
        let paths = self.paths(key)?;
        let reader = self.hit(key, &paths, origin.as_ref(), false)?;
        let stored = reader.and_then(|reader| {
            let source = reader.stored_source()?;
            Some((source, reader.len()?))
        });
        Ok(Blob {
            engine: Arc::clone(self),
            key: key.to_owned(),
            origin,
            stored,
        })
    }
}

impl Blob {
    /// The blob's length, when it was stored at open (`None` says unknown, not
    /// empty, hence no `is_empty`).
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Option<u64> {
        self.stored.as_ref().map(|(_, len)| *len)
    }

    /// Whether it was stored at open, so that reads are positioned reads of its file.
    pub fn is_stored(&self) -> bool {
        self.stored.is_some()
    }

    /// The key it was opened for.
    pub fn key(&self) -> &str {
        &self.key
    }

    /// Reads the bytes `range` of the blob into memory.
    ///
    /// # Errors
    /// [`Error::InvalidRange`] for a range that ends before it starts,
    /// [`Error::RangeNotSatisfiable`] (with the blob's length) for one that starts at
    /// or past its end; a local I/O error, or a stored file cut short while it was
    /// held open. A blob not stored: as [`Cache::get_range`](crate::Cache::get_range).
    ///
    /// # Cancellation
    /// Safe to drop: a positioned read has no effect to undo; a `get_range` behaves as
    /// that call says.
    pub async fn read_at(&self, range: impl Into<ByteRange>) -> Result<Bytes> {
        let range = range.into();
        let Some((source, len)) = &self.stored else {
            let reader = self.engine.get_range(&self.key, self.origin.clone(), range);
            return reader.await?.bytes().await;
        };
        range.check()?;
        let window = range.window(&self.key, *len)?;
        let want = window.end - window.start;
        let bytes = source
            .read_full(window.start, want as usize)
            .await
            .map_err(|e| Error::io("read", "a stored blob", e))?;
        if (bytes.len() as u64) < want {
            let cut = std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the blob was truncated while it was open",
            );
            return Err(Error::io("read", "a stored blob", cut));
        }
        add(&self.engine.counters.bytes_served, want);
        Ok(bytes)
    }
}
