//! The leader's body: the origin's stream passed on as it arrives, and cut into parts
//! for the upload on the way ([`tee`]); and the rest of a body after the parts a
//! reader already returned ([`rest_of`]).

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::stream::{self, BoxStream, StreamExt};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use crate::error::{BoxError, Error};
use crate::tier::Tier;
use crate::tier::records;
use crate::tier::upload::{Piece, Upload};

type Body = BoxStream<'static, Result<Bytes, BoxError>>;

/// What the origin promised about the body: the upload publishes only a body that
/// keeps it.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Promise {
    pub(crate) len: Option<u64>,
    pub(crate) sha256: Option<[u8; 32]>,
}

struct Tee {
    tier: Arc<Tier>,
    body: Body,
    /// Where parts go, until the upload stops or falls behind.
    pieces: Option<mpsc::Sender<Piece>>,
    /// The upload's end, awaited when the body ends (a process may exit after it).
    finished: oneshot::Receiver<()>,
    promise: Promise,
    buffer: BytesMut,
    hasher: Sha256,
    len: u64,
    ended: bool,
}

/// `body`, unchanged, with every byte also sent to `upload` in parts.
pub(crate) fn tee(tier: Arc<Tier>, body: Body, upload: Upload, promise: Promise) -> Body {
    let tee = Tee {
        tier,
        body,
        pieces: Some(upload.pieces),
        finished: upload.finished,
        promise,
        buffer: BytesMut::new(),
        hasher: Sha256::new(),
        len: 0,
        ended: false,
    };
    stream::unfold(tee, |mut tee| async move {
        let item = tee.next().await?;
        Some((item, tee))
    })
    .boxed()
}

impl Tee {
    async fn next(&mut self) -> Option<Result<Bytes, BoxError>> {
        if self.ended {
            return None;
        }
        match self.body.next().await {
            Some(Ok(chunk)) => {
                self.feed(&chunk).await;
                Some(Ok(chunk))
            }
            Some(Err(e)) => {
                // An upload left unfinished abandons the lease.
                self.pieces = None;
                Some(Err(e))
            }
            None => {
                self.ended = true;
                self.finish().await;
                None
            }
        }
    }

    async fn feed(&mut self, chunk: &Bytes) {
        self.hasher.update(chunk);
        self.len += chunk.len() as u64;
        if self.pieces.is_none() {
            return;
        }
        self.buffer.extend_from_slice(chunk);
        let part_size = usize::try_from(self.tier.part_size).unwrap_or(usize::MAX);
        while self.buffer.len() >= part_size {
            let part = self.buffer.split_to(part_size).freeze();
            self.send(Piece::Part(part)).await;
        }
    }

    /// Hands `piece` to the upload; an upload that stopped or fell a timeout behind is
    /// dropped, and the body goes on without it.
    async fn send(&mut self, piece: Piece) {
        let Some(pieces) = &self.pieces else { return };
        match tokio::time::timeout(self.tier.bucket.timeout, pieces.send(piece)).await {
            Ok(Ok(())) => {}
            // The upload ended itself and said why.
            Ok(Err(_)) => self.pieces = None,
            Err(_) => {
                self.tier.trouble(
                    "uploading to the tier",
                    &"the upload fell behind the origin",
                );
                self.pieces = None;
            }
        }
    }

    async fn finish(&mut self) {
        if !self.buffer.is_empty() {
            let last = self.buffer.split().freeze();
            self.send(Piece::Part(last)).await;
        }
        let sha256: [u8; 32] = self.hasher.clone().finalize().into();
        let kept = self.promise.len.is_none_or(|len| len == self.len)
            && self.promise.sha256.is_none_or(|sum| sum == sha256);
        if kept {
            let len = self.len;
            let sha256 = hex::encode(sha256);
            self.send(Piece::End { len, sha256 }).await;
        }
        // Without an end the upload gives up (the engine fails a body that broke its
        // promise too); either way it cleans up before it says it finished.
        self.pieces = None;
        let _ = (&mut self.finished).await;
    }
}

/// What a reader already returned: parts of `part_size` bytes (the last maybe
/// shorter), by their data's checksums, `len` bytes in all.
#[derive(Debug, Clone, Default)]
pub(crate) struct Sent {
    pub(crate) sums: Vec<String>,
    pub(crate) part_size: u64,
    pub(crate) len: u64,
}

impl Sent {
    /// The length of part `index`.
    fn part_len(&self, index: usize) -> u64 {
        self.part_size.min(self.len - index as u64 * self.part_size)
    }
}

/// The rest of `body` (which starts at byte `starts_at` of the blob) after the parts
/// in `sent`. A body from the start has its first parts checked against `sent`
/// instead of returned: if one differs the stream ends with [`Error::Changed`].
pub(crate) fn rest_of(key: &str, body: Body, starts_at: u64, sent: Sent) -> Body {
    if starts_at == sent.len {
        return body;
    }
    let key = key.to_owned();
    if starts_at != 0 {
        let changed = Error::Changed {
            key,
            offset: starts_at,
        };
        return stream::once(async move { Err(BoxError::from(changed)) }).boxed();
    }
    let skip = Skip {
        key,
        body,
        sent,
        part: BytesMut::new(),
        checked: 0,
    };
    stream::unfold(Some(skip), |skip| async move {
        let mut skip = skip?;
        match skip.next().await {
            Some(Err(e)) => Some((Err(e), None)),
            Some(ok) => Some((ok, Some(skip))),
            None => None,
        }
    })
    .boxed()
}

/// A body from the start, its first parts checked rather than returned.
struct Skip {
    key: String,
    body: Body,
    sent: Sent,
    /// The bytes of the part being checked.
    part: BytesMut,
    /// How many parts have been checked.
    checked: usize,
}

impl Skip {
    async fn next(&mut self) -> Option<Result<Bytes, BoxError>> {
        loop {
            let Some(chunk) = self.body.next().await else {
                if self.checked < self.sent.sums.len() {
                    return Some(Err(self.changed().into()));
                }
                return None;
            };
            let mut chunk = match chunk {
                Ok(chunk) => chunk,
                Err(e) => return Some(Err(e)),
            };
            while self.checked < self.sent.sums.len() && !chunk.is_empty() {
                let part_len = self.sent.part_len(self.checked);
                let want = usize::try_from(part_len).unwrap_or(usize::MAX) - self.part.len();
                let take = want.min(chunk.len());
                self.part.extend_from_slice(&chunk.split_to(take));
                if self.part.len() as u64 == part_len {
                    let want = &self.sent.sums[self.checked];
                    if records::sum_like(want, &self.part) != *want {
                        return Some(Err(self.changed().into()));
                    }
                    self.part.clear();
                    self.checked += 1;
                }
            }
            if !chunk.is_empty() {
                return Some(Ok(chunk));
            }
        }
    }

    fn changed(&self) -> Error {
        Error::Changed {
            key: self.key.clone(),
            offset: self.checked as u64 * self.sent.part_size,
        }
    }
}
