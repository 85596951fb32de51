//! A leader's copy of the origin's body into its tmp file, as a pipeline: while one
//! batch is written and hashed on a blocking thread, the next is received from the
//! origin. Readers are told of each batch once it is written. At most three batches
//! are held at once: one written and hashed, one received and waiting for that, one
//! being received.
//!
//! Hashing on a thread of its own beside the write was measured too (`benches/miss.rs`,
//! 2 cores): 7% slower, as the receive, the write, the hash and the origin itself all
//! want a core; so one thread writes and hashes.

use std::future::Future;
use std::os::unix::fs::FileExt;
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use futures::stream::BoxStream;
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;

use crate::engine::progress::{Fill, Role, Source};
use crate::engine::state::Engine;
use crate::error::{BoxError, Error, Result};
use crate::origin::guarded_next;
use crate::stats::add;
use crate::sys::{TmpPath, blocking};

/// The most bytes gathered from a fast origin before they are written in one go.
const WRITE_BATCH: usize = 1 << 20;

/// The tmp file a leader fills and what it tells readers.
pub(super) struct Target<'a> {
    pub(super) inner: &'a Engine,
    pub(super) fill: &'a Fill,
    pub(super) source: &'a Arc<Source>,
    pub(super) tmp_path: &'a TmpPath,
}

/// One batch being written and hashed: the hasher after it, or the write's error.
type InFlight = JoinHandle<std::io::Result<Sha256>>;

/// A batch being received.
type Gathering<'b> = Pin<Box<dyn Future<Output = Result<Batch>> + Send + 'b>>;

impl Target<'_> {
    /// Copies the origin's `body` into the tmp file after the `written` bytes already
    /// there (and in the hasher), telling readers of each batch written; returns the
    /// length and SHA-256 of the whole. The file is synced at the end when the cache
    /// is durable.
    ///
    /// # Errors
    /// The origin's error, [`Error::LengthMismatch`] when the body is longer or
    /// shorter than `promised`, or a local I/O error.
    ///
    /// # Cancellation
    /// Dropping the future stops the copy; a write already on its thread finishes
    /// into the tmp file, which its owner removes.
    pub(super) async fn copy_body(
        &self,
        (mut written, hasher): (u64, Sha256),
        mut body: BoxStream<'static, Result<Bytes, BoxError>>,
        promised: Option<u64>,
    ) -> Result<(u64, [u8; 32])> {
        let key = &self.fill.key;
        let mut hasher = Some(hasher);
        let mut received = written;
        let mut in_flight: Option<(InFlight, Vec<Bytes>)> = None;
        let mut waiting: Option<Batch> = None;
        let mut gathering: Option<Gathering<'_>> = Some(Box::pin(Batch::next(&mut body, key)));
        loop {
            if in_flight.is_none() {
                match waiting.take() {
                    Some(batch) => {
                        let hasher = hasher.take().expect("a hasher between batches");
                        let kept = batch.chunks.clone();
                        in_flight =
                            Some((self.write_and_hash(batch.chunks, written, hasher), kept));
                    }
                    None if gathering.is_none() => break,
                    None => {}
                }
            }
            tokio::select! {
                done = async { (&mut in_flight.as_mut().expect("checked").0).await },
                    if in_flight.is_some() => {
                    let chunks = in_flight.take().map_or_else(Vec::new, |(_, chunks)| chunks);
                    hasher = Some(self.landed(done)?);
                    // Readers close behind share these chunks instead of reading them.
                    if let Some(recent) = &self.source.recent {
                        recent.remember(written, &chunks);
                    }
                    let size: usize = chunks.iter().map(Bytes::len).sum();
                    written += size as u64;
                    add(&self.inner.counters.origin_bytes, size as u64);
                    self.fill.progress(self.source, written, Role::Leader);
                }
                batch = async { gathering.as_mut().expect("checked").as_mut().await },
                    if gathering.is_some() && waiting.is_none() => {
                    gathering = None;
                    let batch = batch?;
                    received += batch.size as u64;
                    if let Some(promised) = promised
                        && received > promised
                    {
                        return Err(self.mismatch(promised, received));
                    }
                    if !batch.ended {
                        gathering = Some(Box::pin(Batch::next(&mut body, key)));
                    }
                    if batch.size > 0 {
                        waiting = Some(batch);
                    }
                }
            }
        }
        if let Some(promised) = promised
            && written != promised
        {
            return Err(self.mismatch(promised, written));
        }
        if self.inner.settings.folder.durability.before_publish() {
            self.sync().await?;
        }
        let hasher = hasher.expect("a hasher after the last batch");
        Ok((written, hasher.finalize().into()))
    }

    /// The hasher after a batch that was written and hashed, or why it was not.
    fn landed(&self, done: <InFlight as Future>::Output) -> Result<Sha256> {
        done.map_err(std::io::Error::other)
            .and_then(|done| done)
            .map_err(|e| self.io("write", e))
    }

    /// Flushes the whole body to the disk.
    async fn sync(&self) -> Result<()> {
        let file = Arc::clone(self.source);
        blocking(move || {
            crate::failpoint::failpoint!("fill::sync");
            file.file.sync_data()
        })
        .await
        .map_err(|e| self.io("sync", e))
    }

    /// Writes `chunks` at `offset`, hashing each after its write, on a blocking thread.
    fn write_and_hash(&self, chunks: Vec<Bytes>, offset: u64, mut hasher: Sha256) -> InFlight {
        let file = Arc::clone(self.source);
        tokio::task::spawn_blocking(move || {
            crate::failpoint::failpoint!("fill::write");
            let mut at = offset;
            for chunk in &chunks {
                file.file.write_all_at(chunk, at)?;
                hasher.update(chunk);
                at += chunk.len() as u64;
            }
            Ok(hasher)
        })
    }

    fn io(&self, op: &'static str, e: std::io::Error) -> Error {
        Error::io(op, self.tmp_path.path(), e)
    }

    fn mismatch(&self, expected: u64, actual: u64) -> Error {
        Error::LengthMismatch {
            key: self.fill.key.clone(),
            expected,
            actual,
        }
    }
}

/// What a fast origin has ready, gathered so that writes are few and large.
struct Batch {
    chunks: Vec<Bytes>,
    size: usize,
    /// Whether the body ended with these.
    ended: bool,
}

impl Batch {
    /// Waits for the body's next chunk, then takes what else is ready at once, up to
    /// [`WRITE_BATCH`] bytes.
    async fn next(
        body: &mut BoxStream<'static, Result<Bytes, BoxError>>,
        key: &str,
    ) -> Result<Batch> {
        let first = guarded_next(body, key).await?;
        let mut batch = Batch {
            ended: first.is_none(),
            size: first.as_ref().map_or(0, Bytes::len),
            chunks: first.into_iter().collect(),
        };
        while !batch.ended && batch.size < WRITE_BATCH {
            match guarded_next(body, key).now_or_never() {
                Some(Ok(Some(chunk))) => {
                    batch.size += chunk.len();
                    batch.chunks.push(chunk);
                }
                Some(Ok(None)) => batch.ended = true,
                Some(Err(e)) => return Err(e),
                None => break,
            }
        }
        Ok(batch)
    }
}
