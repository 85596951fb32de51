//! Named locks with a time to live, shared by every process on a cache directory.
//!
//! A lock is a small file, `<dir>/v1/named-locks/<ab>/<sha256(name)>`, naming its holder
//! and when it expires. It is replaced atomically, so a reader sees a whole record or
//! none. Taking, releasing and expiring locks happen under the exclusive `flock` of
//! `<dir>/v1/named-locks/guard`; a write of a key checks that key's lock under the shared
//! one, so no lock can be taken between the check and the write. The OS drops a
//! `flock` when its process dies, so a dead process never blocks the guard; a lock
//! it held lives on until its time to live runs out.

use std::fs::File;
use std::io;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::kv::records::{self, Capped, RecordFolder};
use crate::store::dir::Folder;
use crate::store::meta::{millis, unix_millis};
use crate::store::names::LOCKS_DIR;
use crate::sys::Hold;

/// The format version written into every lock file.
const LOCK_VERSION: u32 = 1;
/// The largest lock file read; names may be long, but not this long.
const MAX_RECORD: usize = 64 << 10;

/// A lock as its file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct LockRecord {
    version: u32,
    name: String,
    holder: String,
    expires_ms: u64,
}

impl LockRecord {
    /// Whether the lock has not expired at `now`.
    fn is_live(&self, now: SystemTime) -> bool {
        self.expires_ms > unix_millis(now)
    }
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
    pub(crate) fn dir(&self) -> &Path {
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
        let record = LockRecord {
            version: LOCK_VERSION,
            name: name.to_owned(),
            holder: self.holder.clone(),
            expires_ms: unix_millis(now).saturating_add(millis(ttl)),
        };
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
        let Some(record) = read_record(&path)?.filter(|r| r.name == name) else {
            return Ok(false);
        };
        if record.holder != self.holder {
            return Ok(false);
        }
        self.folder.remove(&path)?;
        Ok(record.is_live(now))
    }

    /// Who holds `name` now: `Some(true)` this holder, `Some(false)` another, `None`
    /// nobody.
    pub(crate) fn holder_of(&self, name: &str) -> io::Result<Option<bool>> {
        Ok(self
            .live(&self.folder.path_of(name), name, self.clock.now())?
            .map(|record| record.holder == self.holder))
    }

    /// Takes the shared guard and checks that no other holder locks `name`; the guard
    /// keeps it so until dropped. `Ok(None)` when another holder has the lock.
    pub(crate) fn write_guard(&self, name: &str) -> io::Result<Option<WriteGuard>> {
        let guard = self.folder.guard(Hold::Shared)?;
        Ok(match self.holder_of(name)? {
            Some(false) => None,
            _ => Some(WriteGuard(guard)),
        })
    }

    /// The locks held now, by name.
    pub(crate) fn held(&self) -> io::Result<Vec<HeldLock>> {
        let now = self.clock.now();
        let mut held = Vec::new();
        self.folder.each_entry(|file| {
            let path = file.path();
            let Some(record) = read_record(&path)? else {
                return Ok(());
            };
            if record.is_live(now) && self.folder.is_path_of(&path, &record.name) {
                held.push(HeldLock {
                    mine: record.holder == self.holder,
                    expires: records::time_of_millis(record.expires_ms),
                    name: record.name,
                });
            }
            Ok(())
        })?;
        held.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(held)
    }

    /// The record at `path` if it is the live lock `name` at `now`.
    fn live(&self, path: &Path, name: &str, now: SystemTime) -> io::Result<Option<LockRecord>> {
        Ok(read_record(path)?.filter(|record| record.name == name && record.is_live(now)))
    }
}

/// Reads a lock file; `None` when it is missing, too big or malformed (a lock nobody
/// can read holds nothing).
fn read_record(path: &Path) -> io::Result<Option<LockRecord>> {
    let Some(file) = records::open(path)? else {
        return Ok(None);
    };
    let Capped::Whole(data) = records::read_capped(&file, MAX_RECORD)? else {
        return Ok(None);
    };
    Ok(serde_json::from_slice::<LockRecord>(&data)
        .ok()
        .filter(|record| record.version == LOCK_VERSION))
}
