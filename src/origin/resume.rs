//! A body stream that resumes where it broke off: the shared part of the HTTP and
//! object store origins.

use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{BoxError, Error, Result};
use crate::origin::{Expiry, Fetched};

/// Opens the rest of a body (up to the end of the range first asked for) from a byte
/// offset, under the validator the first answer carried; fails with
/// [`Error::ObjectChanged`] when the object is no longer that one.
pub(crate) type Reopen =
    Box<dyn FnMut(u64) -> BoxFuture<'static, Result<BoxStream<'static, Result<Bytes>>>> + Send>;

/// A body that resumes by range, at most `resumes` times, when its stream fails, ends
/// short of `end` (else `len`), or sends nothing for `idle`.
pub(crate) struct Resuming {
    pub(crate) name: String,
    pub(crate) stream: BoxStream<'static, Result<Bytes>>,
    /// The blob offset of the next byte.
    pub(crate) received: u64,
    pub(crate) len: Option<u64>,
    /// The blob offset the body ends at, when a range was asked for and honoured.
    pub(crate) end: Option<u64>,
    pub(crate) idle: Duration,
    pub(crate) resumes: u32,
    /// `None` when the first answer had no validator: then a break is final.
    pub(crate) reopen: Option<Reopen>,
}

impl Resuming {
    /// An origin's answer with this body, starting at the byte it was opened at.
    pub(crate) fn into_fetched(
        self,
        validator: Option<String>,
        content_type: Option<String>,
    ) -> Fetched {
        let (len, offset) = (self.len, self.received);
        Fetched {
            body: self.into_stream(),
            len,
            offset,
            validator,
            content_type,
            sha256: None,
            expiry: Expiry::Default,
            not_modified: false,
        }
    }

    fn into_stream(self) -> BoxStream<'static, Result<Bytes, BoxError>> {
        stream::try_unfold(self, |mut body| async move {
            match body.next().await {
                Ok(Some(chunk)) => Ok(Some((chunk, body))),
                Ok(None) => Ok(None),
                Err(e) => Err(BoxError::from(e)),
            }
        })
        .boxed()
    }

    async fn next(&mut self) -> Result<Option<Bytes>> {
        loop {
            if self.end.is_some_and(|end| self.received >= end) {
                return Ok(None);
            }
            let failure = match tokio::time::timeout(self.idle, self.stream.next()).await {
                Ok(Some(Ok(mut chunk))) => {
                    if let Some(end) = self.end {
                        chunk.truncate((end - self.received).min(chunk.len() as u64) as usize);
                    }
                    self.received += chunk.len() as u64;
                    return Ok(Some(chunk));
                }
                Ok(None) => match self.end.or(self.len) {
                    Some(len) if self.received < len => Error::origin(
                        &self.name,
                        format!("the body ended after {} of {len} bytes", self.received).into(),
                    ),
                    _ => return Ok(None),
                },
                Ok(Some(Err(e))) => e,
                Err(_) => Error::IdleTimeout {
                    url: self.name.clone(),
                    after: self.idle,
                },
            };
            // A break after the last byte loses nothing.
            if self
                .end
                .or(self.len)
                .is_some_and(|len| self.received >= len)
            {
                return Ok(None);
            }
            let Some(reopen) = self.reopen.as_mut().filter(|_| self.resumes > 0) else {
                return Err(failure);
            };
            self.resumes -= 1;
            tracing::info!(name = %self.name, received = self.received, error = %failure, "resuming an interrupted download");
            self.stream = reopen(self.received).await?;
        }
    }
}

/// `body`, a whole body, from byte `offset` on: what a server that ignores a range
/// sends, cut to the range asked for. The skipped bytes are read and dropped.
#[cfg(feature = "http")]
pub(crate) fn skip_to(
    body: BoxStream<'static, Result<Bytes>>,
    offset: u64,
) -> BoxStream<'static, Result<Bytes>> {
    stream::try_unfold((body, offset), |(mut body, mut skip)| async move {
        while let Some(mut chunk) = body.next().await.transpose()? {
            if skip >= chunk.len() as u64 {
                skip -= chunk.len() as u64;
                continue;
            }
            let rest = chunk.split_off(skip as usize);
            return Ok(Some((rest, (body, 0))));
        }
        Ok(None)
    })
    .boxed()
}
