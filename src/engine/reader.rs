//! [`Reader`]: the stream a read returns, from the store, a fill in progress, or (when
//! the local disk fails) straight from the origin.

use std::fmt;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{self, BoxStream};
use futures::{Stream, StreamExt, TryStreamExt};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::watch;

use crate::engine::progress::{FillState, Role, Source};
use crate::engine::state::Engine;
use crate::error::{BoxError, Error, Result};
use crate::origin::{FetchOptions, Origin, guarded_fetch, guarded_next};
use crate::stats::add;
use crate::store::entry::Stored;
use crate::store::layout::KeyPaths;
use crate::store::scan;

/// The most bytes a reader reads from disk at a time: its whole buffer.
pub(crate) const CHUNK: usize = 256 * 1024;

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
    body: BoxStream<'static, Result<Bytes>>,
    len: Option<u64>,
    kind: ReadKind,
    /// What the last chunk has left for `AsyncRead`.
    pending: Bytes,
}

impl Reader {
    fn new(body: BoxStream<'static, Result<Bytes>>, len: Option<u64>, kind: ReadKind) -> Self {
        Reader {
            body,
            len,
            kind,
            pending: Bytes::new(),
        }
    }

    /// A reader of `value`, held in memory, read as `kind`.
    pub(crate) fn of_bytes(value: Bytes, kind: ReadKind) -> Self {
        let len = value.len() as u64;
        Reader::new(
            stream::once(async move { Ok(value) }).boxed(),
            Some(len),
            kind,
        )
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
        let source = Arc::new(Source {
            file: stored.file,
            generation: 0,
            len: Some(len),
            validator: None,
        });
        let body = stored_body(Arc::clone(engine), source, len);
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
        Reader::new(body, Some(len), ReadKind::Hit)
    }

    /// A reader of the fill whose state is `state`, once the fill has something to
    /// say; `started` tells whether this read started it.
    pub(crate) async fn of_fill(
        engine: &Arc<Engine>,
        key: &str,
        mut state: watch::Receiver<FillState>,
        origin: Arc<dyn Origin>,
        started: bool,
    ) -> Result<Self> {
        let first = state
            .wait_for(|s| !matches!(s, FillState::Starting))
            .await
            .map_err(|_| Error::FillVanished {
                key: key.to_owned(),
            })?
            .clone();
        let (len, role) = match &first {
            FillState::Failed(e) if !e.is_local_disk() => {
                add(&engine.counters.errors, 1);
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
        let reader = FillReader {
            inner: Arc::clone(engine),
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
        Ok(Reader::new(reader.into_body(), len, kind))
    }

    /// The blob's length, when known: always for a hit, and for a fill when the origin
    /// announced it.
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
        let mut all = BytesMut::with_capacity(self.len.unwrap_or(0).min(1 << 30) as usize);
        if !self.pending.is_empty() {
            all.extend_from_slice(&std::mem::take(&mut self.pending));
        }
        while let Some(chunk) = self.body.next().await {
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
        self.body.poll_next_unpin(cx)
    }
}

impl AsyncRead for Reader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        while self.pending.is_empty() {
            match ready!(self.body.poll_next_unpin(cx)) {
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

/// The body of a stored blob: `len` bytes of `source`.
fn stored_body(
    inner: Arc<Engine>,
    source: Arc<Source>,
    len: u64,
) -> BoxStream<'static, Result<Bytes>> {
    stream::try_unfold((0, BytesMut::new()), move |(pos, mut buf)| {
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
    base: std::path::PathBuf,
    (blob, id): (std::path::PathBuf, crate::store::meta::BlobId),
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

/// A reader of a fill in progress in this process (led here, or followed from another
/// process). It reads the fill's file up to what has landed and waits for more.
struct FillReader {
    inner: Arc<Engine>,
    key: String,
    origin: Arc<dyn Origin>,
    state: watch::Receiver<FillState>,
    /// Bytes returned to the caller so far.
    pos: u64,
    /// The file this reader reads.
    current: Option<Arc<Source>>,
    /// After a takeover: the file the first `pos` bytes came from, kept until the new
    /// file's first `pos` bytes are checked against it (`checked` of them so far).
    previous: Option<Arc<Source>>,
    checked: u64,
    /// The reader's buffer, reused once the caller drops a chunk.
    buf: BytesMut,
    /// The length [`Reader::len`] told the caller: a fill that turns out to have
    /// another is another body.
    promised: Option<u64>,
}

/// What [`FillReader::next`] found.
enum Next {
    Chunk(Bytes),
    End,
    /// The fill failed on the local disk: read the rest from the origin.
    Direct,
}

/// Where a fill reader's bytes come from now.
enum Phase {
    Fill(FillReader),
    Direct(Direct),
}

impl FillReader {
    /// The reader's body as a stream.
    fn into_body(self) -> BoxStream<'static, Result<Bytes>> {
        let inner = Arc::clone(&self.inner);
        let counters = Arc::clone(&self.inner);
        stream::try_unfold(Phase::Fill(self), |mut phase| async move {
            loop {
                phase = match phase {
                    Phase::Fill(mut fill) => match fill.next().await? {
                        Next::Chunk(chunk) => return Ok(Some((chunk, Phase::Fill(fill)))),
                        Next::End => return Ok(None),
                        Next::Direct => Phase::Direct(fill.into_direct().await?),
                    },
                    Phase::Direct(mut direct) => match direct.next().await? {
                        Some(chunk) => return Ok(Some((chunk, Phase::Direct(direct)))),
                        None => return Ok(None),
                    },
                }
            }
        })
        .inspect_ok(move |chunk| add(&inner.counters.bytes_served, chunk.len() as u64))
        .inspect_err(move |_| add(&counters.counters.errors, 1))
        .boxed()
    }

    async fn next(&mut self) -> Result<Next> {
        loop {
            let state = self.state.borrow_and_update().clone();
            let (source, available, end) = match state {
                FillState::Starting => {
                    self.changed().await?;
                    continue;
                }
                FillState::Failed(error) if error.is_local_disk() => {
                    tracing::warn!(key = %self.key, %error, "the local disk failed during a fill; reading from the origin, uncached");
                    return Ok(Next::Direct);
                }
                FillState::Failed(error) => return Err(error),
                FillState::Streaming {
                    source, written, ..
                } => (source, written, false),
                FillState::Complete { source, len, .. } => (source, len, true),
            };
            let len = if end { Some(available) } else { source.len };
            if let (Some(promised), Some(len)) = (self.promised, len)
                && promised != len
            {
                return Err(Error::Changed {
                    key: self.key.clone(),
                    offset: promised.min(len),
                });
            }
            if self.current.as_ref().map(|c| c.generation) != Some(source.generation) {
                if self.pos > 0 {
                    // The file the returned bytes came from stays the reference until a
                    // new fill has matched all of them; every new fill is checked from
                    // its first byte, however far a fill before it had got.
                    if self.previous.is_none() {
                        self.previous = self.current.take();
                    }
                    self.checked = 0;
                }
                self.current = Some(Arc::clone(&source));
            }
            if let Some(previous) = &self.previous {
                if self.checked < self.pos {
                    let upto = self.pos.min(available);
                    if upto > self.checked {
                        let want = ((upto - self.checked) as usize).min(CHUNK);
                        let theirs = source
                            .read_at(&mut self.buf, self.checked, want)
                            .await
                            .map_err(|e| self.io(e))?;
                        let differs = previous
                            .first_difference(self.checked, &theirs)
                            .await
                            .map_err(|e| self.io(e))?;
                        if let Some(offset) = differs.or(theirs.is_empty().then_some(self.checked))
                        {
                            return Err(Error::Changed {
                                key: self.key.clone(),
                                offset,
                            });
                        }
                        self.checked += theirs.len() as u64;
                        crate::failpoint::failpoint!("reader::checked");
                        continue;
                    }
                    if end {
                        return Err(Error::Changed {
                            key: self.key.clone(),
                            offset: available,
                        });
                    }
                    self.changed().await?;
                    continue;
                }
                self.previous = None;
            }
            if self.pos < available {
                let want = ((available - self.pos) as usize).min(CHUNK);
                let chunk = source
                    .read_at(&mut self.buf, self.pos, want)
                    .await
                    .map_err(|e| self.io(e))?;
                if chunk.is_empty() {
                    return Err(self.io(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the fill's file is shorter than reported",
                    )));
                }
                self.pos += chunk.len() as u64;
                return Ok(Next::Chunk(chunk));
            }
            if end {
                return Ok(Next::End);
            }
            self.changed().await?;
        }
    }

    async fn changed(&mut self) -> Result<()> {
        self.state.changed().await.map_err(|_| Error::FillVanished {
            key: self.key.clone(),
        })
    }

    fn io(&self, e: io::Error) -> Error {
        Error::io("read the fill of", self.key.clone(), e)
    }

    /// Fetches the rest of the body from the origin, resuming by range when the
    /// origin keeps the same validator, else checking the bytes already returned.
    async fn into_direct(self) -> Result<Direct> {
        let sent_from = self.previous.or(self.current);
        if sent_from.as_ref().is_some_and(|s| s.len == Some(self.pos)) {
            // Every byte was already returned: nothing to fetch.
            return Ok(Direct {
                inner: self.inner,
                key: self.key,
                body: stream::empty().boxed(),
                at: self.pos,
                len: Some(self.pos),
                pos: self.pos,
                sent_from,
            });
        }
        let validator = sent_from.as_ref().and_then(|s| s.validator.clone());
        let offset = if validator.is_some() { self.pos } else { 0 };
        let options = FetchOptions {
            offset,
            if_validator: validator.clone(),
            ..FetchOptions::default()
        };
        let fetched = guarded_fetch(self.origin.as_ref(), &self.key, options).await?;
        if let (Some(promised), Some(len)) = (self.promised, fetched.len)
            && promised != len
        {
            return Err(Error::Changed {
                key: self.key,
                offset: promised.min(len),
            });
        }
        let resumed = offset > 0 && fetched.offset == offset && fetched.validator == validator;
        if fetched.offset != 0 && !resumed {
            return Err(Error::origin(
                &self.key,
                "origin answered with a range that was not asked for".into(),
            ));
        }
        Ok(Direct {
            inner: self.inner,
            key: self.key,
            body: fetched.body,
            at: fetched.offset,
            len: fetched.len,
            pos: self.pos,
            sent_from,
        })
    }
}

/// Reads a body straight from the origin, uncached, after the local disk failed.
struct Direct {
    inner: Arc<Engine>,
    key: String,
    body: BoxStream<'static, Result<Bytes, BoxError>>,
    /// The blob offset of the body's next byte.
    at: u64,
    len: Option<u64>,
    /// Bytes already returned to the caller, which the body must repeat exactly.
    pos: u64,
    /// Where those bytes came from.
    sent_from: Option<Arc<Source>>,
}

impl Direct {
    async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            let Some(mut chunk) = guarded_next(&mut self.body, &self.key).await? else {
                return match self.len {
                    Some(len) if len != self.at => Err(Error::LengthMismatch {
                        key: self.key.clone(),
                        expected: len,
                        actual: self.at,
                    }),
                    _ if self.at < self.pos => Err(Error::Changed {
                        key: self.key.clone(),
                        offset: self.at,
                    }),
                    _ => Ok(None),
                };
            };
            add(&self.inner.counters.origin_bytes, chunk.len() as u64);
            let start = self.at;
            self.at += chunk.len() as u64;
            if let Some(len) = self.len.filter(|&len| self.at > len) {
                return Err(Error::LengthMismatch {
                    key: self.key.clone(),
                    expected: len,
                    actual: self.at,
                });
            }
            if start < self.pos {
                let overlap = (self.pos - start).min(chunk.len() as u64) as usize;
                if let Some(sent) = &self.sent_from {
                    let differs = sent
                        .first_difference(start, &chunk[..overlap])
                        .await
                        .map_err(|e| Error::io("read the fill of", self.key.clone(), e))?;
                    if let Some(offset) = differs {
                        return Err(Error::Changed {
                            key: self.key.clone(),
                            offset,
                        });
                    }
                }
                chunk.advance(overlap);
            }
            if !chunk.is_empty() {
                self.pos += chunk.len() as u64;
                return Ok(Some(chunk));
            }
        }
    }
}
