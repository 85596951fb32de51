//! Named locks with a time to live, shared by every process on a cache directory.
//!
//! A lock is a small file, `<dir>/v1/named-locks/<ab>/<sha256(name)>`, naming its holder
//! and when it expires. It is replaced atomically, so a reader sees a whole record or
//! none. Taking, releasing and expiring locks happen under the exclusive `flock` of
//! `<dir>/v1/named-locks/guard`; a write of a key checks that key's lock under the shared
//! one, so no lock can be taken between the check and the write. The OS drops a
//! `flock` when its process dies, so a dead process never blocks the guard; a lock
//! it held lives on until its time to live runs out, and its file until
//! [`Cache::prune`](crate::Cache::prune) removes it. The record's format is
//! `store::named_locks`, so that pruning, in the store, can read it.

use std::fs::File;
use std::io;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::clock::Clock;
use crate::kv::records::RecordFolder;
use crate::store::dir::Folder;
use crate::store::named_locks::{self, LockRecord};
use crate::store::names::LOCKS_DIR;
use crate::sys::{Hold, RootedPath};

/// Who holds a named lock now, as [`Values::lock_holder`](crate::Values::lock_holder)
/// tells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum LockHolder {
    /// Nobody: the lock is free (never taken, released, or expired).
    Nobody,
    /// The handle that asked (or one of its clones).
    Me,
    /// Another holder: another `Values` handle, in this process or another.
    Other,
}

/// A lock someone holds now. Listed by [`Values::locks`](crate::Values::locks).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct HeldLock {
    /// The lock's name.
    pub name: String,
    /// When it expires unless released first.
    pub expires: SystemTime,
    /// Whether the handle that listed it holds it.
    pub mine: bool,
}

/// The lock files of one cache directory, as seen by one holder.
#[derive(Clone)]
pub(crate) struct Locks {
    folder: RecordFolder,
    holder: String,
    /// Tells the time a lock is taken at and expiry is judged by, read once the
    /// guard is held.
    clock: Arc<dyn Clock>,
}

/// What a write of a key holds while it runs: the shared guard, so that no lock on the
/// key can be taken until the write is done.
#[derive(Debug)]
pub(crate) struct WriteGuard(#[allow(dead_code, reason = "held for its flock")] File);

impl Locks {
    /// The locks under the format folder `base`, held as `holder`.
    pub(crate) fn new(folder: &Folder, holder: String) -> Self {
        Locks {
            folder: RecordFolder::new(folder, LOCKS_DIR),
            holder,
            clock: Arc::clone(&folder.clock),
        }
    }

    /// The folder of the lock files.
    pub(crate) fn dir(&self) -> &RootedPath {
        self.folder.dir()
    }

    /// Takes the lock `name` for `ttl` from now, unless anyone (this holder too)
    /// holds it; returns whether it was taken.
    pub(crate) fn lock(&self, name: &str, ttl: Duration) -> io::Result<bool> {
        let _guard = self.folder.guard(Hold::Exclusive)?;
        let now = self.clock.now();
        let path = self.folder.path_of(name);
        if self.live(&path, name, now)?.is_some() {
            return Ok(false);
        }
        // A TTL too long for the system's time lasts as long as it can hold.
        let expires = now.checked_add(ttl).unwrap_or_else(named_locks::far_future);
        let record = LockRecord::new(name, &self.holder, expires);
        let data = serde_json::to_vec(&record).map_err(io::Error::other)?;
        self.folder.write(&path, &data, now)?;
        Ok(true)
    }

    /// Releases the lock `name` if this holder holds it; returns whether it did. An
    /// expired lock file of this holder is removed too, but does not count.
    pub(crate) fn unlock(&self, name: &str) -> io::Result<bool> {
        let _guard = self.folder.guard(Hold::Exclusive)?;
        let now = self.clock.now();
        let path = self.folder.path_of(name);
        let Some(record) = named_locks::read(&path)?.filter(|r| r.name == name) else {
            return Ok(false);
        };
        if record.holder != self.holder {
            return Ok(false);
        }
        self.folder.remove(&path)?;
        Ok(record.is_live(now))
    }

    /// Who holds `name` now.
    pub(crate) fn holder_of(&self, name: &str) -> io::Result<LockHolder> {
        let live = self.live(&self.folder.path_of(name), name, self.clock.now())?;
        Ok(match live {
            None => LockHolder::Nobody,
            Some(record) if record.holder == self.holder => LockHolder::Me,
            Some(_) => LockHolder::Other,
        })
    }

    /// Takes the shared guard and checks that no other holder locks `name`; the guard
    /// keeps it so until dropped. `Ok(None)` when another holder has the lock.
    pub(crate) fn write_guard(&self, name: &str) -> io::Result<Option<WriteGuard>> {
        let guard = self.folder.guard(Hold::Shared)?;
        Ok(match self.holder_of(name)? {
            LockHolder::Other => None,
            LockHolder::Nobody | LockHolder::Me => Some(WriteGuard(guard)),
        })
    }

    /// The locks held now, by name.
    pub(crate) fn held(&self) -> io::Result<Vec<HeldLock>> {
        let now = self.clock.now();
        let mut held = Vec::new();
        self.folder.each_entry(|file| {
            let path = file.path.clone();
            let Some(record) = named_locks::read(&path)? else {
                return Ok(());
            };
            if record.is_live(now) && self.folder.is_path_of(&path, &record.name) {
                held.push(HeldLock {
                    mine: record.holder == self.holder,
                    expires: record.expires(),
                    name: record.name,
                });
            }
            Ok(())
        })?;
        held.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(held)
    }

    /// The record at `path` if it is the live lock `name` at `now`.
    fn live(
        &self,
        path: &RootedPath,
        name: &str,
        now: SystemTime,
    ) -> io::Result<Option<LockRecord>> {
        Ok(named_locks::read(path)?.filter(|record| record.name == name && record.is_live(now)))
    }
}
