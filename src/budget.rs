//! Keeping a cache under its `max_bytes`: a ledger of the stored bytes, kept by
//! every publish and removal in every process, and eviction of the least recently
//! read entries when a publish takes the total over the bound.
//!
//! A publish costs one small locked read and write of the ledger, whatever the number
//! of entries. Eviction reads every entry's metadata once and removes entries down to
//! a low-water mark of 90% of the bound, so that the next eviction is a tenth of the
//! bound's turnover away: spread over the publishes between two evictions, its cost
//! per publish does not grow with the number of entries. It runs in the background,
//! one process at a time. When nothing but its own removals changed the ledger during
//! its pass, it sets the ledger to what it counted, so a ledger that drifted (a
//! process killed between a publish and its ledger update) is put right.

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

/// The ledger: the bytes stored, and how many changes made that total (so an
/// eviction can tell whether anything but its own removals happened during its scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct Ledger {
    total: u64,
    changes: u64,
}

/// Adds `bytes` (which may be negative) to the ledger and returns the new total.
pub(crate) fn record(base: &Path, bytes: i64) -> io::Result<u64> {
    let file = open(base, LEDGER)?;
    file.lock()?;
    let mut ledger = read(&file);
    ledger.total = ledger.total.saturating_add_signed(bytes);
    ledger.changes = ledger.changes.wrapping_add(1);
    write(&file, ledger)?;
    Ok(ledger.total)
}

/// The ledger as it is now.
fn current(base: &Path) -> io::Result<Ledger> {
    let file = open(base, LEDGER)?;
    file.lock()?;
    Ok(read(&file))
}

/// Sets the ledger's total to `total` if it changed exactly `changes` times since
/// it was `before` (only by the caller's own removals); otherwise leaves it.
fn correct(base: &Path, before: Ledger, changes: u64, total: u64) -> io::Result<()> {
    let file = open(base, LEDGER)?;
    file.lock()?;
    let now = read(&file);
    if now.changes == before.changes.wrapping_add(changes) && now.total != total {
        tracing::debug!(was = now.total, total, "correcting the ledger");
        write(&file, Ledger { total, ..now })?;
    }
    Ok(())
}

/// Starts the ledger at `total`, and the eviction lock, with the cache's modes.
pub(crate) fn start(base: &Path, total: u64, perms: Perms) -> io::Result<()> {
    perms.fix(&perms.create().open(base.join(EVICTING))?);
    let file = perms.create().open(base.join(LEDGER))?;
    perms.fix(&file);
    file.lock()?;
    write(&file, Ledger { total, changes: 0 })
}

/// Whether the ledger exists (a cache made before it, or never bounded, has none).
pub(crate) fn exists(base: &Path) -> bool {
    base.join(LEDGER).exists()
}

/// Reads `<total> <changes>`; anything unreadable counts as an empty ledger, which
/// the next eviction corrects.
fn read(file: &File) -> Ledger {
    let data = sys::read_exact_or_eof(file, 0, 64).unwrap_or_default();
    let text = std::str::from_utf8(&data).unwrap_or_default();
    let mut numbers = text.split_whitespace().map(|n| n.parse::<u64>().ok());
    match (numbers.next().flatten(), numbers.next().flatten()) {
        (Some(total), Some(changes)) => Ledger { total, changes },
        (Some(total), None) => Ledger { total, changes: 0 },
        _ => Ledger::default(),
    }
}

fn write(file: &File, ledger: Ledger) -> io::Result<()> {
    let text = format!("{} {}\n", ledger.total, ledger.changes);
    file.write_all_at(text.as_bytes(), 0)?;
    file.set_len(text.len() as u64)
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
    let before = current(base)?;
    let entries = maintenance::entries_in(base)?;
    let low_water = max / 100 * LOW_WATER_PERCENT;
    let (removed, total) = maintenance::evict_lru(base, entries, low_water)?;
    correct(base, before, removed.len() as u64, total)?;
    tracing::debug!(
        removed = removed.len(),
        total,
        "evicted to the low-water mark"
    );
    Ok(removed.len())
}
