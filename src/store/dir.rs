//! Creating and checking a cache directory: its folders, the files every process
//! shares, and whether locks work there.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::clock::Clock;
use crate::error::{Cause, Error, Result};
use crate::store::lock::{self, Locking};
use crate::store::names::{BREAK_GUARD, FORMAT_DIR, STORE_DIR, TMP_DIR};
use crate::store::{ledger, scan};
use crate::sys::{Perms, RootedPath, create_tmp};

/// A cache directory, its format folder, and how files are written there: shared by
/// the store, the engine and the key-value front-ends on one directory.
#[derive(Clone)]
pub(crate) struct Folder {
    /// The cache directory, which every path of the cache is resolved beneath.
    pub(crate) root: RootedPath,
    /// The format folder, `<root>/v1`.
    pub(crate) base: RootedPath,
    pub(crate) perms: Perms,
    /// When blobs are flushed to stable storage.
    pub(crate) durability: crate::store::durability::Durability,
    /// The time expiry is judged by and files are stamped with.
    pub(crate) clock: Arc<dyn Clock>,
}

pub(crate) fn bad_dir(path: impl Into<PathBuf>, what: &'static str, source: io::Error) -> Error {
    Error::BadDirectory {
        path: path.into(),
        what,
        source: Cause::new(source),
    }
}

/// Creates the cache directory `dir` if it is missing and holds a handle on it: the
/// root every path of the cache is resolved beneath.
pub(crate) fn root(dir: &Path, perms: Perms) -> Result<RootedPath> {
    if dir.exists() && !dir.is_dir() {
        return Err(bad_dir(
            dir,
            "use as a directory",
            io::Error::new(io::ErrorKind::NotADirectory, "it is not a directory"),
        ));
    }
    RootedPath::make_root(dir, perms).map_err(|e| bad_dir(dir, "create", e))
}

/// The format folder of the cache rooted at `root`.
pub(crate) fn base_of(root: &RootedPath) -> RootedPath {
    root.join(FORMAT_DIR)
}

/// Opens the cache directory `root` with its format folder `base`: creates the
/// folders, starts the ledger if there is none and the guard of lock changes, and
/// finds out how to lock there (`want_locks` off, or locks that do not exclude, lock
/// nothing).
pub(crate) fn open(
    root: &RootedPath,
    base: &RootedPath,
    want_locks: bool,
    perms: Perms,
) -> Result<Locking> {
    let excludes = check(root, base, perms)?;
    if !ledger::exists(base) {
        let stored = scan::entries_in(base).map_err(|e| bad_dir(base, "read", e))?;
        let total = stored
            .iter()
            .fold(0u64, |sum, e| sum.saturating_add(e.stored));
        ledger::start(base, total, perms).map_err(|e| bad_dir(base, "write the ledger in", e))?;
    }
    // The guard of lock changes, made here with the cache's modes.
    let guard = base.join(TMP_DIR).join(BREAK_GUARD);
    guard
        .create(perms)
        .map(|file| perms.fix(&file))
        .map_err(|e| bad_dir(&guard, "create", e))?;
    if !want_locks {
        return Ok(Locking::Disabled);
    }
    if !excludes {
        tracing::warn!(
            dir = %root,
            "file locks do not exclude each other here; processes will not share fetches"
        );
        return Ok(Locking::Disabled);
    }
    Ok(Locking::Flock)
}

/// Makes sure the cache's folders exist and that files can be written, locked and
/// renamed there; returns whether two opens of one file exclude each other's locks.
pub(crate) fn check(root: &RootedPath, base: &RootedPath, perms: Perms) -> Result<bool> {
    let tmp = base.join(TMP_DIR);
    let store = base.join(STORE_DIR);
    for dir in [root, base, &tmp, &store] {
        dir.make_dirs(perms)
            .map_err(|e| bad_dir(dir, "create", e))?;
    }
    let excludes = lock::locks_exclude(&tmp, perms)
        .map_err(|e| bad_dir(&tmp, "write and lock a file in", e))?;
    // A probe of this process's own, so processes opening the cache at once do not
    // remove each other's.
    create_tmp(&store, ".probe.", "", 6, perms)
        .and_then(|probe| std::io::Write::write_all(&mut &probe.file, b"probe"))
        .map_err(|e| bad_dir(&store, "write a file into", e))?;
    Ok(excludes)
}
