//! The ledger of stored bytes that keeps a cache under its `max_bytes`: kept by every
//! publish and removal in every process, so a publish costs one small locked read and
//! write of it, whatever the number of entries. Eviction ([`scan::evict`]) corrects
//! it when it drifted (a process killed between a publish and its ledger update).
//!
//! [`scan::evict`]: crate::store::scan::evict

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use crate::store::names::{EVICTING, LEDGER};
use crate::sys::{self, Perms, RootedPath};

/// Opens (creating) a file of the ledger's; the builder creates them first, with
/// the cache's modes.
pub(crate) fn open(base: &RootedPath, name: &str) -> io::Result<File> {
    base.join(name).create(Perms::OWNER)
}

/// The ledger: the bytes stored, and how many changes made that total (so an
/// eviction can tell whether anything but its own removals happened during its scan).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Ledger {
    total: u64,
    changes: u64,
}

/// Adds `bytes` (which may be negative) to the ledger and returns the new total.
pub(crate) fn record(base: &RootedPath, bytes: i64) -> io::Result<u64> {
    let file = open(base, LEDGER)?;
    file.lock()?;
    let mut ledger = read(&file);
    ledger.total = ledger.total.saturating_add_signed(bytes);
    ledger.changes = ledger.changes.wrapping_add(1);
    write(&file, ledger)?;
    Ok(ledger.total)
}

/// The ledger as it is now.
pub(crate) fn current(base: &RootedPath) -> io::Result<Ledger> {
    let file = open(base, LEDGER)?;
    file.lock()?;
    Ok(read(&file))
}

/// Sets the ledger's total to `total` if it changed exactly `changes` times since
/// it was `before` (only by the caller's own removals); otherwise leaves it.
pub(crate) fn correct(
    base: &RootedPath,
    before: Ledger,
    changes: u64,
    total: u64,
) -> io::Result<()> {
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
pub(crate) fn start(base: &RootedPath, total: u64, perms: Perms) -> io::Result<()> {
    perms.fix(&base.join(EVICTING).create(perms)?);
    let file = base.join(LEDGER).create(perms)?;
    perms.fix(&file);
    file.lock()?;
    write(&file, Ledger { total, changes: 0 })
}

/// Whether the ledger exists (a cache made before it, or never bounded, has none).
pub(crate) fn exists(base: &RootedPath) -> bool {
    matches!(base.join(LEDGER).stat(), Ok(Some(_)))
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
