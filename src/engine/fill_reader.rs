//! Readers of a fill in progress: the fill's file up to what has landed, checked after
//! every takeover against the bytes already returned, and, when the local disk fails,
//! the rest straight from the origin.

use std::io;
use std::sync::Arc;

use bytes::{Buf, Bytes, BytesMut};
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};
use tokio::sync::watch;

use crate::engine::progress::{FillState, Role, Source};
use crate::engine::reader::{CHUNK, LaterLen, ReadKind, Reader, Restart};
use crate::engine::state::{Engine, wait_final};
use crate::error::{BoxError, Error, Result};
use crate::origin::{FetchOptions, Origin, guarded_fetch, guarded_next};
use crate::stats::add;

impl Reader {
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
        let (engine, key) = (Arc::clone(engine), key.to_owned());
        let whole = (0, None);
        let body = FillReader::new(&engine, &key, &origin, &state, len, whole).into_body();
        let later = later_len(state.clone(), key.clone());
        let restart: Restart = Box::new(move |start, end| {
            FillReader::new(&engine, &key, &origin, &state, len, (start, end)).into_body()
        });
        let reader = Reader::new(body, len, kind).with_restart(restart);
        Ok(match len {
            Some(_) => reader,
            None => reader.with_later_len(later),
        })
    }
}

/// The length of the fill `state` watches, once it has ended: its error when it
/// failed (a fill that failed on the local disk has no length to give).
fn later_len(state: watch::Receiver<FillState>, key: String) -> LaterLen {
    Box::pin(async move {
        match wait_final(state, &key).await? {
            FillState::Complete { len, .. } => Ok(len),
            FillState::Failed(e) => Err(e),
            FillState::Starting | FillState::Streaming { .. } => {
                unreachable!("wait_final returns a final state")
            }
        }
    })
}

/// A reader of a fill in progress in this process (led here, or followed from another
/// process). It reads the fill's file up to what has landed and waits for more.
struct FillReader {
    inner: Arc<Engine>,
    key: String,
    origin: Arc<dyn Origin>,
    state: watch::Receiver<FillState>,
    /// The blob offset this reader started at ([`Reader::starting_at`]): the bytes
    /// before it are never read, returned or checked.
    start: u64,
    /// The blob offset of the next byte to return.
    pos: u64,
    /// The blob offset this reader stops at, if not the blob's end.
    end: Option<u64>,
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

/// How far the bytes a reader already returned are checked against a new fill.
enum Checked {
    /// All of them (or there was no takeover): read on.
    All,
    /// One more step: look again.
    Step,
    /// As far as the new fill has landed: wait for more of it.
    Wait,
}

/// Where a fill reader's bytes come from now.
enum Phase {
    Fill(FillReader),
    Direct(Direct),
}

impl FillReader {
    /// A reader of the fill that `state` watches, of the blob bytes from `start` to
    /// `end` (the blob's end when `None`).
    fn new(
        engine: &Arc<Engine>,
        key: &str,
        origin: &Arc<dyn Origin>,
        state: &watch::Receiver<FillState>,
        promised: Option<u64>,
        (start, end): (u64, Option<u64>),
    ) -> Self {
        FillReader {
            inner: Arc::clone(engine),
            key: key.to_owned(),
            origin: Arc::clone(origin),
            state: state.clone(),
            start,
            pos: start,
            end,
            current: None,
            previous: None,
            checked: start,
            buf: BytesMut::new(),
            promised,
        }
    }

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
            self.follow_generation(&source);
            match self.check_returned(&source, available, end).await? {
                Checked::All => {}
                Checked::Step => continue,
                Checked::Wait => {
                    self.changed().await?;
                    continue;
                }
            }
            let available = self.end.map_or(available, |e| e.min(available));
            if self.end.is_some_and(|e| self.pos >= e) {
                return Ok(Next::End);
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

    /// Notes a change of fill (a takeover): the bytes already returned must be
    /// checked against the new fill from its first byte.
    fn follow_generation(&mut self, source: &Arc<Source>) {
        if self.current.as_ref().map(|c| c.generation) == Some(source.generation) {
            return;
        }
        if self.pos > self.start {
            // The file the returned bytes came from stays the reference until a new
            // fill has matched all of them; every new fill is checked from the first
            // byte returned, however far a fill before it had got.
            if self.previous.is_none() {
                self.previous = self.current.take();
            }
            self.checked = self.start;
        }
        self.current = Some(Arc::clone(source));
    }

    /// Compares one more step of `source` (of which `available` bytes have landed;
    /// all of them when `end`) with the bytes already returned, if any are unchecked.
    async fn check_returned(
        &mut self,
        source: &Arc<Source>,
        available: u64,
        end: bool,
    ) -> Result<Checked> {
        let Some(previous) = &self.previous else {
            return Ok(Checked::All);
        };
        if self.checked >= self.pos {
            self.previous = None;
            return Ok(Checked::All);
        }
        let upto = self.pos.min(available);
        if upto <= self.checked {
            if end {
                return Err(Error::Changed {
                    key: self.key.clone(),
                    offset: available,
                });
            }
            return Ok(Checked::Wait);
        }
        let want = ((upto - self.checked) as usize).min(CHUNK);
        let theirs = source
            .read_at(&mut self.buf, self.checked, want)
            .await
            .map_err(|e| self.io(e))?;
        let differs = previous
            .first_difference(self.checked, &theirs)
            .await
            .map_err(|e| self.io(e))?;
        if let Some(offset) = differs.or(theirs.is_empty().then_some(self.checked)) {
            return Err(Error::Changed {
                key: self.key.clone(),
                offset,
            });
        }
        self.checked += theirs.len() as u64;
        crate::failpoint::failpoint!("reader::checked");
        Ok(Checked::Step)
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
                from: self.start,
                end: self.end,
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
            end: self
                .end
                .filter(|_| offset > 0 && self.origin.serves_ranges()),
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
            from: self.start,
            end: self.end,
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
    /// The blob offset the reader started at: bytes before it are skipped unchecked.
    from: u64,
    /// The blob offset the reader stops at, if not the blob's end.
    end: Option<u64>,
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
            if self.end.is_some_and(|end| self.pos >= end) {
                return Ok(None);
            }
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
                let unsent = (self.from.saturating_sub(start) as usize).min(overlap);
                if let Some(sent) = self.sent_from.as_ref().filter(|_| unsent < overlap) {
                    let differs = sent
                        .first_difference(start + unsent as u64, &chunk[unsent..overlap])
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
            if let Some(end) = self.end {
                chunk.truncate((end - self.pos).min(chunk.len() as u64) as usize);
            }
            if !chunk.is_empty() {
                self.pos += chunk.len() as u64;
                return Ok(Some(chunk));
            }
        }
    }
}
