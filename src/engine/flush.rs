//! Flushing published blobs in the background ([`Durability::Background`]): each
//! publish queues its blob, and one blocking task at a time flushes what is queued,
//! a moment after the first publish (so that a batch gathers, and a short-lived
//! process such as the CLI exits without waiting for the disk), in a batch: every blob's data, then every folder they were renamed into once, and
//! only then records each blob as flushed in its metadata. So metadata that says a
//! blob is flushed never reaches the disk before the blob's bytes and name do; a
//! crash before that leaves the blob marked unflushed, checked at its next read.
//!
//! [`Durability::Background`]: crate::Durability::Background

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use std::time::Duration;

use tokio::sync::{Notify, watch};

use crate::engine::state::Engine;
use crate::store::entry;
use crate::store::layout::KeyPaths;
use crate::store::meta::BlobId;

/// The blobs published and not yet flushed, and how far the flushing got.
#[derive(Debug)]
pub(crate) struct Flushing {
    queue: Mutex<Vec<(KeyPaths, BlobId)>>,
    running: AtomicBool,
    /// How many blobs were ever queued.
    queued: AtomicU64,
    /// How many of them the flushing has been through.
    done: watch::Sender<u64>,
    /// Told when a caller waits for the flush, so that it starts at once.
    hurry: Notify,
}

/// How long after a publish the flushing of a batch starts.
const GATHER: Duration = Duration::from_secs(1);

impl Default for Flushing {
    fn default() -> Self {
        Flushing {
            queue: Mutex::default(),
            running: AtomicBool::new(false),
            queued: AtomicU64::new(0),
            done: watch::Sender::new(0),
            hurry: Notify::new(),
        }
    }
}

impl Engine {
    /// Queues the blob `id` just published at `paths` for the background flush, and
    /// starts the flushing task if none runs.
    pub(super) fn flush_later(self: &Arc<Self>, paths: &KeyPaths, id: BlobId) {
        let flushing = &self.flushing;
        flushing
            .queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((paths.clone(), id));
        flushing.queued.fetch_add(1, Ordering::AcqRel);
        if !flushing.running.swap(true, Ordering::AcqRel) {
            let engine = Arc::clone(self);
            tokio::spawn(async move {
                tokio::select! {
                    () = tokio::time::sleep(GATHER) => {}
                    () = engine.flushing.hurry.notified() => {}
                }
                let _ = tokio::task::spawn_blocking(move || engine.flush_queued()).await;
            });
        }
    }

    /// Waits until every blob queued so far has been through the background flush.
    pub(crate) async fn flushed(&self) {
        let target = self.flushing.queued.load(Ordering::Acquire);
        let mut done = self.flushing.done.subscribe();
        self.flushing.hurry.notify_one();
        let _ = done.wait_for(|done| *done >= target).await;
    }

    /// Flushes batches until the queue is empty.
    fn flush_queued(&self) {
        let flushing = &self.flushing;
        loop {
            let batch =
                std::mem::take(&mut *flushing.queue.lock().unwrap_or_else(|e| e.into_inner()));
            if batch.is_empty() {
                flushing.running.store(false, Ordering::Release);
                // A publish may have queued between the take and the store.
                let waiting = !flushing
                    .queue
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .is_empty();
                if waiting && !flushing.running.swap(true, Ordering::AcqRel) {
                    continue;
                }
                return;
            }
            let count = batch.len() as u64;
            if let Err(e) = self.flush(batch) {
                tracing::warn!(error = %e, "could not flush published blobs; they are checked after a restart");
            }
            flushing.done.send_modify(|done| *done += count);
        }
    }

    /// Flushes `batch`: the blobs that are still the ones published, their folders,
    /// then their metadata's record.
    fn flush(&self, batch: Vec<(KeyPaths, BlobId)>) -> std::io::Result<()> {
        let mut folders = HashMap::<PathBuf, _>::new();
        let mut flushed = Vec::new();
        for (paths, id) in batch {
            let Some(file) = crate::sys::found_beneath(paths.store.open_read())? else {
                continue;
            };
            if BlobId::of(&file.metadata()?) != id {
                continue;
            }
            crate::failpoint::failpoint!("flush::data");
            file.sync_data()?;
            if let Some(folder) = paths.store.parent() {
                folders.insert(folder.rel().to_owned(), folder);
            }
            flushed.push((paths, id));
        }
        for folder in folders.values() {
            folder.sync_dir()?;
        }
        let locks = &self.settings.locks;
        for (paths, id) in flushed {
            let Some(stored) = entry::open(&paths, &self.metas)? else {
                continue;
            };
            let unflushed = stored
                .meta
                .as_ref()
                .is_some_and(|m| m.unflushed_boot.is_some());
            if stored.blob == id && unflushed {
                let stamp = stored.last_read;
                entry::rewrite(&paths, &self.metas, locks, &stored, stamp, |m| {
                    m.unflushed_boot = None;
                })?;
            }
        }
        Ok(())
    }
}
