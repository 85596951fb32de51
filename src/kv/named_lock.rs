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
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::{Deserialize, Serialize};

use crate::clock::Clock;
use crate::store::atomic;
use crate::store::dir::Folder;
use crate::store::layout::ShardedLayout;
use crate::store::meta::{from_unix_millis, millis, unix_millis};
use crate::store::names::{LOCKS_DIR, TMP_DIR};
use crate::sys::{self, Hold, Perms};

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
    dir: PathBuf,
    tmp: PathBuf,
    perms: Perms,
    durable: bool,
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
            dir: folder.base.join(LOCKS_DIR),
            tmp: folder.base.join(TMP_DIR),
            perms: folder.perms,
            durable: folder.durable,
            holder,
            clock: Arc::clone(&folder.clock),
        }
    }

    /// The folder of the lock files.
    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    /// Takes the lock `name` for `ttl` from now, unless anyone (this holder too)
    /// holds it; returns whether it was taken.
    pub(crate) fn lock(&self, name: &str, ttl: Duration) -> io::Result<bool> {
        let _guard = self.guard(Hold::Exclusive)?;
        let now = self.clock.now();
        let path = self.path_of(name);
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
        let shard = path.parent().expect("a lock path has a shard folder");
        sys::in_dir(shard, self.perms, || {
            atomic::write_atomic(&self.tmp, &path, &data, now, self.durable, self.perms)
        })?;
        Ok(true)
    }

    /// Releases the lock `name` if this holder holds it; returns whether it did. An
    /// expired lock file of this holder is removed too, but does not count.
    pub(crate) fn unlock(&self, name: &str) -> io::Result<bool> {
        let _guard = self.guard(Hold::Exclusive)?;
        let now = self.clock.now();
        let path = self.path_of(name);
        let Some(record) = read_record(&path)?.filter(|r| r.name == name) else {
            return Ok(false);
        };
        if record.holder != self.holder {
            return Ok(false);
        }
        sys::remove_if_there(&path)?;
        Ok(record.is_live(now))
    }

    /// Who holds `name` now: `Some(true)` this holder, `Some(false)` another, `None`
    /// nobody.
    pub(crate) fn holder_of(&self, name: &str) -> io::Result<Option<bool>> {
        Ok(self
            .live(&self.path_of(name), name, self.clock.now())?
            .map(|record| record.holder == self.holder))
    }

    /// Takes the shared guard and checks that no other holder locks `name`; the guard
    /// keeps it so until dropped. `Ok(None)` when another holder has the lock.
    pub(crate) fn write_guard(&self, name: &str) -> io::Result<Option<WriteGuard>> {
        let guard = self.guard(Hold::Shared)?;
        Ok(match self.holder_of(name)? {
            Some(false) => None,
            _ => Some(WriteGuard(guard)),
        })
    }

    /// The locks held now, by name.
    pub(crate) fn held(&self) -> io::Result<Vec<HeldLock>> {
        let now = self.clock.now();
        let mut held = Vec::new();
        for shard in sys::read_dir_if_there(&self.dir)? {
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for file in sys::read_dir_if_there(&shard.path())? {
                let path = file.path();
                let Some(record) = read_record(&path)? else {
                    continue;
                };
                if !record.is_live(now) || path != self.path_of(&record.name) {
                    continue;
                }
                held.push(HeldLock {
                    mine: record.holder == self.holder,
                    expires: from_unix_millis(record.expires_ms).unwrap_or(SystemTime::UNIX_EPOCH),
                    name: record.name,
                });
            }
        }
        held.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(held)
    }

    /// The record at `path` if it is the live lock `name` at `now`.
    fn live(&self, path: &Path, name: &str, now: SystemTime) -> io::Result<Option<LockRecord>> {
        Ok(read_record(path)?.filter(|record| record.name == name && record.is_live(now)))
    }

    fn guard(&self, hold: Hold) -> io::Result<File> {
        let path = self.dir.join("guard");
        sys::in_dir(&self.dir, self.perms, || {
            sys::guard(&path, hold, self.perms)
        })
    }

    fn path_of(&self, name: &str) -> PathBuf {
        let (shard, file) = ShardedLayout::split(name);
        self.dir.join(shard).join(file)
    }
}

/// Reads a lock file; `None` when it is missing, too big or malformed (a lock nobody
/// can read holds nothing).
fn read_record(path: &Path) -> io::Result<Option<LockRecord>> {
    let file = match sys::open_read(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let data = sys::read_exact_or_eof(&file, 0, MAX_RECORD + 1)?;
    if data.len() > MAX_RECORD {
        return Ok(None);
    }
    Ok(serde_json::from_slice::<LockRecord>(&data)
        .ok()
        .filter(|record| record.version == LOCK_VERSION))
}
