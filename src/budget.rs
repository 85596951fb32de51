//! Keeping a cache under its `max_bytes`: a ledger of the stored bytes, kept by
//! every publish and removal in every process, and eviction of the least recently
//! read entries when a publish takes the total over the bound.
//!
//! A publish costs one small locked read and write of the ledger, whatever the number
//! of entries. Eviction reads every entry's metadata once and removes entries down to
//! a low-water mark of 90% of the bound, so that the next eviction is a tenth of the
//! bound's turnover away: spread over the publishes between two evictions, its cost
//! per publish does not grow with the number of entries. It runs in the background,
//! one process at a time, and recomputes the ledger from what it read, so a ledger
//! that drifted (a process killed between a publish and its ledger update) is put
//! right.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::cache::Inner;
use crate::maintenance;
use crate::sys::{self, Perms};

/// The ledger file, in the format folder.
pub(crate) const LEDGER: &str = "ledger";
/// The lock an evicting process holds, in the format folder.
pub(crate) const EVICTING: &str = "evict.lock";

/// The share of the bound that eviction brings the cache down to, in percent.
const LOW_WATER_PERCENT: u64 = 90;

/// Opens (creating) a file of the ledger's; the builder creates them first, with
/// the cache's modes.
fn open(base: &Path, name: &str) -> io::Result<File> {
    Perms::OWNER.create().open(base.join(name))
}

/// Adds `bytes` (which may be negative) to the ledger and returns the new total.
pub(crate) fn record(base: &Path, bytes: i64) -> io::Result<u64> {
    let ledger = open(base, LEDGER)?;
    ledger.lock()?;
    let total = read(&ledger).saturating_add_signed(bytes);
    write(&ledger, total)?;
    Ok(total)
}

/// Sets the ledger to `total`.
pub(crate) fn reset(base: &Path, total: u64) -> io::Result<()> {
    let ledger = open(base, LEDGER)?;
    ledger.lock()?;
    write(&ledger, total)
}

/// Starts the ledger at `total`, and the eviction lock, with the cache's modes.
pub(crate) fn start(base: &Path, total: u64, perms: Perms) -> io::Result<()> {
    perms.fix(&perms.create().open(base.join(EVICTING))?);
    let ledger = perms.create().open(base.join(LEDGER))?;
    perms.fix(&ledger);
    ledger.lock()?;
    write(&ledger, total)
}

/// Whether the ledger exists (a cache made before it, or never bounded, has none).
pub(crate) fn exists(base: &Path) -> bool {
    base.join(LEDGER).exists()
}

fn read(ledger: &File) -> u64 {
    let data = sys::read_exact_or_eof(ledger, 0, 32).unwrap_or_default();
    std::str::from_utf8(&data)
        .ok()
        .and_then(|text| text.trim().parse().ok())
        .unwrap_or(0)
}

fn write(ledger: &File, total: u64) -> io::Result<()> {
    let text = format!("{total}\n");
    ledger.write_all_at(text.as_bytes(), 0)?;
    ledger.set_len(text.len() as u64)
}

/// After a publish brought the total to `total`: starts an eviction in the
/// background if that is over the bound and none runs in this process.
pub(crate) fn after_publish(inner: &Arc<Inner>, total: u64) {
    let Some(max) = inner.max_bytes else {
        return;
    };
    if total <= max || inner.evicting.swap(true, Ordering::AcqRel) {
        return;
    }
    let inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = evict(&inner.base, max) {
            tracing::warn!(error = %e, "eviction failed");
        }
        inner.evicting.store(false, Ordering::Release);
    });
}

/// Removes the least recently read entries until the cache holds at most the
/// low-water mark of `max`, unless another process is evicting already. Returns the
/// number of entries removed.
pub(crate) fn evict(base: &Path, max: u64) -> io::Result<usize> {
    let guard = open(base, EVICTING)?;
    match guard.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(0),
        Err(TryLockError::Error(e)) => return Err(e),
    }
    let entries = maintenance::entries_in(base)?;
    let low_water = max / 100 * LOW_WATER_PERCENT;
    let (removed, total) = maintenance::evict_lru(base, entries, low_water)?;
    reset(base, total)?;
    tracing::debug!(
        removed = removed.len(),
        total,
        "evicted to the low-water mark"
    );
    Ok(removed.len())
}
