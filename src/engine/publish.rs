//! The end of a leader's fill: moving a complete, checked body into the store, or, on
//! a revalidation the origin confirmed, rewriting the metadata of the blob it keeps.
//! Both happen only while the leader's lock is current.

use std::sync::Arc;

use crate::engine::evict;
use crate::engine::heartbeat::Heartbeat;
use crate::engine::progress::{FillState, Role, Source};
use crate::engine::state::Engine;
use crate::error::{Error, Result};
use crate::stats::add;
use crate::store::durability::Durability;
use crate::store::entry::Stored;
use crate::store::layout::KeyPaths;
use crate::store::ledger;
use crate::store::lock::FillLock;
use crate::store::meta::{BlobId, EntryMeta};
use crate::sys::{TmpPath, blocking};

/// The end of a leader's fill whose complete, checked body is in `source` (the tmp
/// file at `tmp_path`): published (and an eviction started if that takes the store
/// over its bound), or, if it could not be, still readable through its handle.
pub(super) async fn complete(
    inner: &Arc<Engine>,
    paths: &KeyPaths,
    held: (Heartbeat, FillLock),
    (tmp_path, source): (TmpPath, Arc<Source>),
    meta: EntryMeta,
) -> FillState {
    let len = meta.size;
    let stored = publish(inner, paths, held, (tmp_path, &source), meta).await;
    if let Ok((total, id)) = &stored {
        if inner.settings.folder.durability == Durability::Background {
            inner.flush_later(paths, *id);
        }
        evict::after_publish(inner, *total);
    }
    FillState::Complete {
        source,
        len,
        role: Role::Leader,
        stored: stored.map(drop),
    }
}

/// Moves a complete, checked tmp file into the store, adds it to the ledger and
/// releases the lock; returns the ledger's new total and the blob's identity.
///
/// The order: the metadata, bound to the blob's identity, is written to a tmp file
/// of its own; then, if the lock is still this leader's, the blob is renamed into the store and
/// its metadata after it. A read that meets the old metadata with the new blob, or the
/// reverse, sees that they do not describe each other and looks again; a crash
/// between the two renames leaves a blob that no metadata describes, which is fetched
/// again, never served. A leader whose lock was broken while it hung does not
/// publish; a local disk failure is logged. Either way the body stays readable
/// through the tmp file's open handle.
async fn publish(
    inner: &Engine,
    paths: &KeyPaths,
    held: (Heartbeat, FillLock),
    (tmp_path, source): (TmpPath, &Arc<Source>),
    meta: EntryMeta,
) -> Result<(u64, BlobId)> {
    let (durable, base, now, perms) = (
        inner.settings.folder.durability.before_publish(),
        inner.base().to_owned(),
        inner.settings.folder.clock.now(),
        inner.settings.folder.perms,
    );
    let key = meta.key.clone();
    let store = paths.store.clone();
    let paths = paths.clone();
    let size = meta.size;
    let source = Arc::clone(source);
    let published = blocking(move || {
        let (heartbeat, lock) = held;
        let id = BlobId::of(&source.file.metadata()?);
        let meta = if durable {
            meta.bound_to(id)
        } else {
            meta.bound_to(id).unflushed()
        };
        let store_dir = paths.store.parent().expect("store path has a parent");
        let meta_tmp = meta.prepare(&paths.tmp_dir, durable, now, perms)?;
        if !lock.may_publish()? {
            return Ok(None);
        }
        let replaced = paths.store.stat().ok().flatten().map_or(0, |old| old.len());
        store_dir.in_dir(perms, || tmp_path.path().rename_to(&paths.store))?;
        // The file is the store's now: dropping its tmp path must not remove it.
        tmp_path.keep();
        crate::failpoint::failpoint!("fill::renamed");
        meta_tmp.persist(&paths.meta)?;
        if durable {
            store_dir.sync_dir()?;
        }
        drop(heartbeat);
        drop(lock);
        let grown =
            i64::try_from(size).unwrap_or(i64::MAX) - i64::try_from(replaced).unwrap_or(i64::MAX);
        let total = ledger::record(&base, grown).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not update the ledger of stored bytes");
            0
        });
        Ok(Some((total, id)))
    })
    .await;
    match published {
        Ok(Some(published)) => {
            tracing::debug!(%key, "published");
            Ok(published)
        }
        Ok(None) => {
            tracing::warn!(%key, "this fill was reclaimed as stale by another process; not publishing it");
            Err(Error::Reclaimed { key })
        }
        Err(e) => {
            tracing::warn!(%key, error = %e, "could not publish a fill; serving it uncached");
            Err(Error::io("publish", store, e))
        }
    }
}

/// A stored blob the origin confirmed current: its metadata is rewritten with a new
/// expiry, and the blob is kept. A leader whose lock was broken while it waited for
/// the origin writes nothing.
pub(super) async fn refresh(
    inner: &Engine,
    paths: &KeyPaths,
    held: (Heartbeat, FillLock),
    stored: Stored,
    generation: u64,
) -> FillState {
    add(&inner.counters.revalidations, 1);
    let meta = EntryMeta::clone(stored.meta.as_ref().expect("an expired entry has metadata"));
    let mut meta = meta.bound_to(stored.blob);
    let ttl_ms = meta
        .ttl_ms
        .or(inner.settings.default_ttl.map(crate::store::meta::millis));
    let now = inner.settings.folder.clock.now();
    meta.expires_ms = ttl_ms.map(|ttl| crate::store::meta::unix_millis(now).saturating_add(ttl));
    let (paths_owned, durable, perms) = (
        paths.clone(),
        inner.settings.folder.durability.before_publish(),
        inner.settings.folder.perms,
    );
    let key = meta.key.clone();
    let written = blocking(move || {
        let (heartbeat, lock) = held;
        let written = (|| {
            if !lock.may_publish()? {
                return Ok(false);
            }
            let tmp = meta.prepare(&paths_owned.tmp_dir, durable, now, perms)?;
            if !lock.may_publish()? {
                return Ok(false);
            }
            tmp.persist(&paths_owned.meta)?;
            Ok(true)
        })();
        drop(heartbeat);
        drop(lock);
        written
    })
    .await;
    let written = match written {
        Ok(true) => {
            tracing::debug!(path = %paths.store, "revalidated");
            Ok(())
        }
        Ok(false) => {
            tracing::warn!(%key, "this revalidation was reclaimed as stale by another process; not recording it");
            Err(Error::Reclaimed { key })
        }
        Err(e) => Err(Error::io("write", &paths.meta, e)),
    };
    FillState::stored(stored, generation, Role::Leader, written)
}
