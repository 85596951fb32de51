//! The in-process view of one fill: which file holds its bytes, how many have landed,
//! and how it ended. The task driving the fill publishes it; every reader of the key
//! in this process watches it.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::sync::{Arc, Mutex};

use bytes::{Bytes, BytesMut};

use tokio::sync::watch;

use crate::error::Error;
use crate::origin::Origin;
use crate::store::entry::Stored;
use crate::sys::{self, blocking};

/// A file holding a fill's bytes from offset 0: the tmp file being written (by this
/// process or another), or a complete store file. All readers share its one handle
/// and read it by offset.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) file: File,
    /// Changes whenever the fill moves to another file (a takeover), so readers know
    /// to check the new file's bytes against those they already returned.
    pub(crate) generation: u64,
    /// The length the origin promised, when known.
    pub(crate) len: Option<u64>,
    /// The validator of the body in this file, when known.
    pub(crate) validator: Option<String>,
    /// The chunks this process's leader wrote last, for its readers to share: only on
    /// the file a leader in this process writes.
    pub(crate) recent: Option<Recent>,
}

/// The most bytes of recently written chunks a fill keeps for its readers.
pub(crate) const RECENT_BYTES: usize = 8 << 20;

/// The chunks a leader wrote last, at their offsets, up to [`RECENT_BYTES`]: readers
/// of the fill that are close behind it take their bytes from here, the same memory
/// for every reader (no copy and no read of the file), and readers further behind read
/// the file.
#[derive(Debug, Default)]
pub(crate) struct Recent(Mutex<Kept>);

/// The chunks [`Recent`] keeps, oldest first, and their total length.
#[derive(Debug, Default)]
struct Kept {
    chunks: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl Recent {
    /// Keeps `chunks`, written from `offset` on, dropping the oldest beyond the bound.
    pub(crate) fn remember(&self, mut offset: u64, chunks: &[Bytes]) {
        let mut kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        for chunk in chunks {
            kept.chunks.push_back((offset, chunk.clone()));
            kept.bytes += chunk.len();
            offset += chunk.len() as u64;
        }
        while kept.bytes > RECENT_BYTES {
            let Some((_, oldest)) = kept.chunks.pop_front() else {
                break;
            };
            kept.bytes -= oldest.len();
        }
    }

    /// Up to `len` bytes at `offset`, if a kept chunk holds that offset.
    pub(crate) fn recall(&self, offset: u64, len: usize) -> Option<Bytes> {
        let kept = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (start, chunk) = kept
            .chunks
            .iter()
            .find(|(start, chunk)| *start <= offset && offset < start + chunk.len() as u64)?;
        let from = (offset - start) as usize;
        Some(chunk.slice(from..chunk.len().min(from + len)))
    }
}

impl Source {
    /// Reads up to `len` bytes at `offset` through `buf` (whose allocation is reused
    /// once the caller drops the bytes returned before). Bytes the page cache holds
    /// are read on this thread; the rest on a blocking thread. May return fewer than
    /// `len` bytes; none only at the end of the file.
    pub(crate) async fn read_at(
        self: &Arc<Self>,
        buf: &mut BytesMut,
        offset: u64,
        len: usize,
    ) -> io::Result<Bytes> {
        if let Some(kept) = self.recent.as_ref().and_then(|r| r.recall(offset, len)) {
            return Ok(kept);
        }
        if sys::read_cached(&self.file, buf, len, offset)?.is_none() {
            let source = Arc::clone(self);
            let mut owned = std::mem::take(buf);
            *buf = blocking(move || {
                sys::read_into(&source.file, &mut owned, len, offset)?;
                Ok(owned)
            })
            .await?;
        }
        Ok(buf.split().freeze())
    }

    /// Reads `len` bytes at `offset`, fewer only at the end of the file.
    pub(crate) async fn read_full(self: &Arc<Self>, offset: u64, len: usize) -> io::Result<Bytes> {
        let mut buf = BytesMut::new();
        let mut all = BytesMut::with_capacity(len);
        while all.len() < len {
            let chunk = self
                .read_at(&mut buf, offset + all.len() as u64, len - all.len())
                .await?;
            if chunk.is_empty() {
                break;
            }
            all.extend_from_slice(&chunk);
        }
        Ok(all.freeze())
    }

    /// The first offset at which this file differs from `data` placed at `offset`, or
    /// `None` when they agree (a file that ends early differs at its end).
    pub(crate) async fn first_difference(
        self: &Arc<Self>,
        offset: u64,
        data: &[u8],
    ) -> io::Result<Option<u64>> {
        let ours = self.read_full(offset, data.len()).await?;
        let same = ours.iter().zip(data).take_while(|(a, b)| a == b).count();
        Ok((same < data.len()).then_some(offset + same as u64))
    }
}

/// Who is producing the bytes of a fill, as seen from this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Role {
    /// This process fetches from the origin.
    Leader,
    /// Another process fetches; this one tails its tmp file.
    Follower,
    /// The blob was already in the store once the lock was taken.
    Found,
}

/// The state of a fill, as published to readers.
#[derive(Debug, Clone)]
pub(crate) enum FillState {
    /// Nothing to read yet.
    Starting,
    /// `written` bytes of `source` can be read; more may come.
    Streaming {
        source: Arc<Source>,
        written: u64,
        role: Role,
    },
    /// `source` holds the whole body, `len` bytes. `stored` says whether it is also in
    /// the store, and if not, why (a local disk failure, or a reclaimed leader).
    Complete {
        source: Arc<Source>,
        len: u64,
        role: Role,
        stored: Result<(), Error>,
    },
    /// The fill failed. A local disk error lets readers fetch the body uncached; any
    /// other error is theirs to report.
    Failed(Error),
}

impl FillState {
    /// The final state of a fill whose body is the stored blob `stored`.
    pub(crate) fn stored(
        stored: Stored,
        generation: u64,
        role: Role,
        result: Result<(), Error>,
    ) -> Self {
        let validator = stored.meta.as_ref().and_then(|meta| meta.validator.clone());
        FillState::Complete {
            source: Arc::new(Source {
                file: stored.file,
                generation,
                len: Some(stored.len),
                validator,
                recent: None,
            }),
            len: stored.len,
            role,
            stored: result,
        }
    }

    pub(crate) fn is_final(&self) -> bool {
        matches!(self, FillState::Complete { .. } | FillState::Failed(_))
    }
}

/// One fill in this process. The driving task owns it; the cache's map of fills
/// holds it weakly, and readers hold only a receiver, so a driver that vanishes ends
/// its readers with an error instead of leaving them waiting.
pub(crate) struct Fill {
    pub(crate) key: String,
    pub(crate) origin: Arc<dyn Origin>,
    pub(crate) state: watch::Sender<FillState>,
}

impl Fill {
    pub(crate) fn new(key: &str, origin: Arc<dyn Origin>) -> Arc<Self> {
        Arc::new(Fill {
            key: key.to_owned(),
            origin,
            state: watch::Sender::new(FillState::Starting),
        })
    }

    pub(crate) fn publish(&self, state: FillState) {
        self.state.send_replace(state);
    }

    /// Publishes that `written` bytes of `source` can now be read.
    pub(crate) fn progress(&self, source: &Arc<Source>, written: u64, role: Role) {
        self.publish(FillState::Streaming {
            source: Arc::clone(source),
            written,
            role,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recent_chunks_stay_within_their_bound_and_are_shared() {
        let recent = Recent::default();
        let chunk = Bytes::from(vec![7u8; 1 << 20]);
        let chunks: Vec<Bytes> = (0..12).map(|_| chunk.clone()).collect();
        recent.remember(0, &chunks);
        let kept = recent.0.lock().unwrap();
        let held: usize = kept.chunks.iter().map(|(_, c)| c.len()).sum();
        assert_eq!(held, RECENT_BYTES, "the oldest 4 MiB are dropped");
        assert_eq!(kept.bytes, held, "the running total");
        drop(kept);
        assert!(
            recent.recall(3 << 20, 10).is_none(),
            "behind the window: read the file"
        );
        let kept = recent.recall((11 << 20) + 5, 100).unwrap();
        assert_eq!(kept.len(), 100);
        assert_eq!(
            kept.as_ptr(),
            chunk[5..].as_ptr(),
            "the same memory, not a copy"
        );
        let tail = recent.recall((12 << 20) - 3, 100).unwrap();
        assert_eq!(tail.len(), 3, "no further than the chunk");
        assert!(
            recent.recall(12 << 20, 1).is_none(),
            "nothing past what was written"
        );
    }
}
