//! [`Reader`]: the stream a read returns, from the store, a fill in progress, or (when
//! the local disk fails) straight from the origin.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt};
use tokio::io::{AsyncRead, ReadBuf};

use crate::engine::progress::Source;
use crate::engine::state::Engine;
use crate::error::{Error, Result};
use crate::stats::add;
use crate::store::entry::Stored;
use crate::store::layout::KeyPaths;
use crate::store::meta::EntryMeta;
use crate::store::scan;

/// The most bytes a reader reads from disk at a time: its whole buffer.
pub(crate) const CHUNK: usize = 256 * 1024;

/// Builds a reader's body of the blob's bytes from a start offset to an end offset
/// (the blob's end when `None`), for [`Reader::starting_at`] and ranges.
pub(crate) type Restart =
    Box<dyn FnOnce(u64, Option<u64>) -> BoxStream<'static, Result<Bytes>> + Send>;

/// Waits for the length of a blob whose fill did not announce one: the fill's end.
pub(crate) type LaterLen = BoxFuture<'static, Result<u64>>;

/// How a read was served.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use readthrough::{Cache, ReadKind, origin_fn};
/// let cache = Cache::builder(dir.path())
///     .origin(origin_fn(|_key: String| async { Ok::<_, std::io::Error>(b"x".to_vec()) }))
///     .build()
///     .await?;
/// let first = cache.get("k").await?;
/// assert_eq!(first.kind(), ReadKind::Led);
/// first.bytes().await?; // the fill has ended once its body is read
/// assert_eq!(cache.get("k").await?.kind(), ReadKind::Hit);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ReadKind {
    /// The blob was already stored.
    Hit,
    /// This read started the fill and this process fetches from the origin.
    Led,
    /// This read joined a fill another read in this process had started.
    Joined,
    /// Another process fetches; this read tails its fill.
    Followed,
}

impl fmt::Display for ReadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ReadKind::Hit => "hit",
            ReadKind::Led => "led",
            ReadKind::Joined => "joined",
            ReadKind::Followed => "followed",
        })
    }
}

/// The body of one read: a [`Stream`] of byte chunks and an [`AsyncRead`].
///
/// A reader yields exactly the bytes of one complete origin response, or ends with an
/// error. It holds one buffer of at most 256 KiB, whatever the blob's size.
///
/// # Cancellation
/// Dropping a reader stops only that reader. A fill it started goes on in the
/// background, so the blob is still stored and the next read is a hit.
pub struct Reader {
    /// `None` until the first read builds it through `restart` over `window`.
    body: Option<BoxStream<'static, Result<Bytes>>>,
    len: Option<u64>,
    kind: ReadKind,
    /// What the last chunk has left for `AsyncRead`.
    pending: Bytes,
    /// Builds the body over a window of the blob instead; dropped at the first read.
    restart: Option<Restart>,
    /// The blob bytes the body is to hold, when built through `restart`.
    window: (u64, Option<u64>),
    /// The blob's length, for a fill that did not announce it.
    later_len: Option<LaterLen>,
    /// The stored metadata of a hit.
    meta: Option<Arc<EntryMeta>>,
    /// A hit's blob, while the reader is still its whole, unchecked, unread body.
    whole_file: Option<Arc<Source>>,
}

impl Reader {
    pub(super) fn new(
        body: BoxStream<'static, Result<Bytes>>,
        len: Option<u64>,
        kind: ReadKind,
    ) -> Self {
        Reader {
            body: Some(body),
            len,
            kind,
            pending: Bytes::new(),
            restart: None,
            window: (0, None),
            later_len: None,
            meta: None,
            whole_file: None,
        }
    }

    /// This reader, able to learn the blob's length, when unknown, through `later`.
    pub(super) fn with_later_len(mut self, later: LaterLen) -> Self {
        self.later_len = Some(later);
        self
    }

    /// This reader, able to start at an offset through `restart`.
    pub(super) fn with_restart(mut self, restart: Restart) -> Self {
        self.restart = Some(restart);
        self
    }

    /// A reader of `value`, held in memory, read as `kind`.
    pub(crate) fn of_bytes(value: Bytes, kind: ReadKind) -> Self {
        let len = value.len() as u64;
        let whole = value.clone();
        Reader::new(
            stream::once(async move { Ok(whole) }).boxed(),
            Some(len),
            kind,
        )
        .with_restart(Box::new(move |start, end| {
            let end = end.map_or(value.len(), |end| end as usize);
            let rest = value.slice(start as usize..end);
            stream::once(async move { Ok(rest) }).boxed()
        }))
    }

    /// A hit: the blob `stored` found for `key`, checked against the SHA-256 `digest`
    /// as it streams when one is given.
    pub(crate) fn stored(
        engine: &Arc<Engine>,
        key: &str,
        paths: &KeyPaths,
        stored: Stored,
        digest: Option<String>,
    ) -> Self {
        let len = stored.len;
        let meta = stored.meta.clone();
        let source = Arc::new(Source {
            file: stored.file,
            generation: 0,
            len: Some(len),
            validator: None,
            recent: None,
        });
        let body = stored_body(Arc::clone(engine), Arc::clone(&source), 0, len);
        let whole_file = digest.is_none().then(|| Arc::clone(&source));
        let restart_engine = Arc::clone(engine);
        let restart: Restart = Box::new(move |start, end| {
            stored_body(restart_engine, source, start, end.unwrap_or(len))
        });
        let body = match digest {
            Some(digest) => checked_body(
                body,
                digest,
                key.to_owned(),
                engine.base().to_owned(),
                (paths.store.clone(), stored.blob),
            ),
            None => body,
        };
        let mut reader = Reader::new(body, Some(len), ReadKind::Hit).with_restart(restart);
        reader.meta = meta;
        reader.whole_file = whole_file;
        reader
    }

    /// This reader, yielding the blob's bytes from `offset` on (of a range reader: the
    /// range's bytes from `offset` into it on): the bytes before it are not read at all. A hit reads its file from `offset`; a reader of a fill in
    /// progress waits until the fill has written past `offset`, then streams from
    /// there as the bytes land. [`len`](Self::len) still gives the whole blob's
    /// length. A hit read this way is not checked against its digest (only a whole
    /// body can be), whatever [`verify_on_read`](crate::CacheBuilder::verify_on_read)
    /// says. The other guarantees hold: the bytes are those of one complete origin
    /// response, checked after a takeover against any already returned.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] when `offset` is past the blob's known length, or the
    /// reader has already been read from.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.put("k", readthrough::Fetched::from(b"0123456789".to_vec())).await?;
    /// let reader = cache.get("k").await?.starting_at(6)?;
    /// assert_eq!(reader.len(), Some(10));
    /// assert_eq!(reader.bytes().await?, "6789");
    /// # Ok(()) }
    /// ```
    pub fn starting_at(mut self, offset: u64) -> Result<Reader> {
        if self.len.is_some_and(|len| offset > len) {
            return Err(Error::InvalidSetting(
                "a reader cannot start past the end of its blob",
            ));
        }
        if self.restart.is_none() {
            return Err(Error::InvalidSetting(
                "a reader can start at an offset only before its first read",
            ));
        }
        self.body = None;
        self.whole_file = None;
        self.window.0 += offset;
        Ok(self)
    }

    /// This reader, yielding only the bytes `window` of its blob, of which there are
    /// `len`; it must not have been read from.
    pub(super) fn windowed(mut self, window: std::ops::Range<u64>) -> Result<Reader> {
        if self.restart.is_none() {
            return Err(Error::InvalidSetting(
                "a reader can be cut to a range only before its first read",
            ));
        }
        self.body = None;
        self.whole_file = None;
        self.len = Some(window.end - window.start);
        self.window = (window.start, Some(window.end));
        Ok(self)
    }

    /// The blob's length: known at once for a hit and for a fill that announced it,
    /// else once the fill has ended.
    pub(super) async fn blob_len(&mut self) -> Result<u64> {
        if let Some(len) = self.len {
            return Ok(len);
        }
        let later = self.later_len.take().ok_or(Error::InvalidSetting(
            "the length of this reader's blob cannot be learnt",
        ))?;
        let len = later.await?;
        self.len = Some(len);
        Ok(len)
    }

    /// The body, built over the window at the first read when it was moved; the
    /// reader can no longer be moved.
    fn body(&mut self) -> &mut BoxStream<'static, Result<Bytes>> {
        self.whole_file = None;
        let restart = self.restart.take();
        let (start, end) = self.window;
        self.body.get_or_insert_with(|| match restart {
            Some(restart) => restart(start, end),
            None => stream::empty().boxed(),
        })
    }

    /// The blob's length, when known: always for a hit, and for a fill when the origin
    /// announced it. For a reader of a range ([`Cache::get_range`](crate::Cache::get_range)),
    /// the range's length, always known.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.put("k", readthrough::Fetched::from(b"four".to_vec())).await?;
    /// assert_eq!(cache.get("k").await?.len(), Some(4));
    /// # Ok(()) }
    /// ```
    #[allow(clippy::len_without_is_empty)]
    pub fn len(&self) -> Option<u64> {
        self.len
    }

    /// The origin's validator of the blob (its `ETag`, or else its `Last-Modified`),
    /// for a hit whose origin gave one. `None` for a read of a fill: a fill's metadata
    /// is written when it is published ([`Cache::metadata`](crate::Cache::metadata)
    /// reads it then).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// let body = readthrough::Fetched::from(b"{}".to_vec())
    ///     .with_validator("\"v7\"")
    ///     .with_content_type("application/json");
    /// cache.put("k", body).await?;
    /// let hit = cache.get("k").await?;
    /// assert_eq!(hit.validator(), Some("\"v7\""));
    /// assert_eq!(hit.content_type(), Some("application/json"));
    /// # Ok(()) }
    /// ```
    pub fn validator(&self) -> Option<&str> {
        self.meta.as_ref()?.validator.as_deref()
    }

    /// The origin's `Content-Type` of the blob, for a hit whose origin gave one; `None`
    /// for a read of a fill, as for [`validator`](Self::validator).
    pub fn content_type(&self) -> Option<&str> {
        self.meta.as_ref()?.content_type.as_deref()
    }

    /// The open file of a stored blob, for a hit that is to be read whole, is not
    /// checked on read ([`verify_on_read`](crate::CacheBuilder::verify_on_read)) and
    /// has not been read from: the reader's very bytes, for a caller that copies them
    /// with the kernel's help (`sendfile`, `splice` or `copy_file_range`, as
    /// `std::io::copy` does between files, pipes and sockets). `None` for any other
    /// reader. The file is the blob this read opened, whatever the store holds since;
    /// its offset is this reader's own, at 0.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.put("k", readthrough::Fetched::from(b"on disk".to_vec())).await?;
    /// let hit = cache.get("k").await?;
    /// let mut copy = Vec::new();
    /// std::io::copy(&mut hit.stored_file().expect("a whole hit"), &mut copy).unwrap();
    /// assert_eq!(copy, b"on disk");
    /// assert!(cache.get("k").await?.starting_at(3)?.stored_file().is_none());
    /// # Ok(()) }
    /// ```
    pub fn stored_file(&self) -> Option<&std::fs::File> {
        self.whole_file.as_ref().map(|source| &source.file)
    }

    /// The stored file this hit reads, as [`stored_file`](Self::stored_file) has it.
    pub(super) fn stored_source(&self) -> Option<Arc<Source>> {
        self.whole_file.clone()
    }

    /// Whether this read was a hit, led a fill, or joined or followed one.
    pub fn kind(&self) -> ReadKind {
        self.kind
    }

    /// Reads the whole body into memory.
    ///
    /// # Errors
    /// The first error the stream yields: an origin failure, a length or digest
    /// mismatch, a changed body after a takeover, or a local I/O error.
    ///
    /// # Cancellation
    /// Dropping the future drops the reader (see [`Reader`]).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.put("k", readthrough::Fetched::from(b"body".to_vec())).await?;
    /// assert_eq!(cache.get("k").await?.bytes().await?, "body");
    /// # Ok(()) }
    /// ```
    pub async fn bytes(mut self) -> Result<Bytes> {
        let first = match std::mem::take(&mut self.pending) {
            pending if !pending.is_empty() => pending,
            _ => match self.body().next().await {
                Some(chunk) => chunk?,
                None => return Ok(Bytes::new()),
            },
        };
        // A body of one chunk (a small hit) is that chunk, not a copy of it.
        let Some(second) = self.body().next().await else {
            return Ok(first);
        };
        let mut all = BytesMut::with_capacity(self.len.unwrap_or(0).min(1 << 30) as usize);
        all.extend_from_slice(&first);
        all.extend_from_slice(&second?);
        while let Some(chunk) = self.body().next().await {
            all.extend_from_slice(&chunk?);
        }
        Ok(all.freeze())
    }
}

impl fmt::Debug for Reader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Reader")
            .field("len", &self.len)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl Stream for Reader {
    type Item = Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if !self.pending.is_empty() {
            return Poll::Ready(Some(Ok(std::mem::take(&mut self.pending))));
        }
        self.body().poll_next_unpin(cx)
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.body().poll_next_unpin(cx)) {
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) => return Poll::Ready(Err(e.into())),
                None => return Poll::Ready(Ok(())),
            }
        }
        let n = self.pending.len().min(buf.remaining());
        buf.put_slice(&self.pending[..n]);
        self.pending.advance(n);
        Poll::Ready(Ok(()))
    }
}

/// The body of a stored blob: the bytes of `source` from `start` to `len`.
fn stored_body(
    inner: Arc<Engine>,
    source: Arc<Source>,
    start: u64,
    len: u64,
) -> BoxStream<'static, Result<Bytes>> {
    stream::try_unfold((start, BytesMut::new()), move |(pos, mut buf)| {
        let source = Arc::clone(&source);
        let inner = Arc::clone(&inner);
        async move {
            if pos >= len {
                return Ok(None);
            }
            let want = (len - pos).min(CHUNK as u64) as usize;
            let chunk = source
                .read_at(&mut buf, pos, want)
                .await
                .map_err(|e| Error::io("read", "a stored blob", e))?;
            if chunk.is_empty() {
                let truncated = io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the blob was truncated while being read",
                );
                return Err(Error::io("read", "a stored blob", truncated));
            }
            add(&inner.counters.bytes_served, chunk.len() as u64);
            let next = pos + chunk.len() as u64;
            Ok(Some((chunk, (next, buf))))
        }
    })
    .boxed()
}

/// `body`, hashed as it streams: if the whole does not have the SHA-256 `digest`,
/// its last item is [`Error::Corrupt`] and the entry at `blob` is removed, if the blob
/// there is still the file `id` that was read.
fn checked_body(
    body: BoxStream<'static, Result<Bytes>>,
    digest: String,
    key: String,
    base: crate::sys::RootedPath,
    (blob, id): (crate::sys::RootedPath, crate::store::meta::BlobId),
) -> BoxStream<'static, Result<Bytes>> {
    use sha2::Digest;
    let state = (body, sha2::Sha256::new(), false);
    stream::unfold(state, move |(mut body, mut hasher, done)| {
        let (digest, key, base, blob) = (digest.clone(), key.clone(), base.clone(), blob.clone());
        async move {
            if done {
                return None;
            }
            match body.next().await {
                Some(Ok(chunk)) => {
                    hasher.update(&chunk);
                    Some((Ok(chunk), (body, hasher, false)))
                }
                Some(Err(e)) => Some((Err(e), (body, hasher, true))),
                None => {
                    let actual = hex::encode(hasher.finalize_reset());
                    if actual == digest {
                        return None;
                    }
                    tracing::warn!(%key, "removing a corrupt entry found while reading it");
                    let _ = scan::remove_blob(&base, &blob, id);
                    let reason = format!("sha256 {actual} where {digest} was stored");
                    Some((Err(Error::Corrupt { key, reason }), (body, hasher, true)))
                }
            }
        }
    })
    .boxed()
}
