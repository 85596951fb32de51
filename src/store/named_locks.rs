//! The record file of a named lock, `<dir>/v1/named-locks/<ab>/<sha256(name)>`: its
//! format, read by the named locks of the key-value front-end (`kv::named_lock`, which
//! takes, releases and judges locks), and the removal of expired ones that
//! [`prune`](crate::store::scan::prune) runs. The format lives here, below both, so that
//! pruning the cache can remove lock files without the store importing the front-end.
//!
//! A record is one JSON object:
//!
//! ```text
//! {"version":1,"name":"…","holder":"…","expires_ms":1700000000100,"expires_frac_ns":123456}
//! ```
//!
//! `expires_frac_ns`, the nanoseconds past `expires_ms`, was added within version 1:
//! older builds ignore it (they judge expiry to the millisecond), and a record they
//! wrote, without it, expires on its millisecond. Bumping the version instead would
//! make older builds see no lock in a newer build's record, and take it.

use std::fs::File;
use std::io::{self, Read};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::store::meta::{join_time, split_time};
use crate::store::names::{FOLDER_GUARD, LOCKS_DIR};
use crate::sys::{self, Kind, RootedPath};

/// The format version written into every lock file.
pub(crate) const LOCK_VERSION: u32 = 1;
/// The largest lock file read; names may be long, but not this long.
const MAX_RECORD: usize = 64 << 10;

/// A lock as its file records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct LockRecord {
    pub(crate) version: u32,
    pub(crate) name: String,
    pub(crate) holder: String,
    /// When the lock expires, in milliseconds since the Unix epoch...
    pub(crate) expires_ms: u64,
    /// ...and the nanoseconds past that millisecond.
    #[serde(default)]
    pub(crate) expires_frac_ns: u32,
}

impl LockRecord {
    /// A record of `name` held by `holder` until `expires`.
    pub(crate) fn new(name: &str, holder: &str, expires: SystemTime) -> Self {
        let (expires_ms, expires_frac_ns) = split_time(expires);
        LockRecord {
            version: LOCK_VERSION,
            name: name.to_owned(),
            holder: holder.to_owned(),
            expires_ms,
            expires_frac_ns,
        }
    }

    /// When the lock expires, to the nanosecond; the farthest time the system holds
    /// if it cannot hold this one.
    pub(crate) fn expires(&self) -> SystemTime {
        join_time(self.expires_ms, self.expires_frac_ns).unwrap_or_else(far_future)
    }

    /// Whether the lock has not expired at `now`.
    pub(crate) fn is_live(&self, now: SystemTime) -> bool {
        self.expires() > now
    }
}

/// What a lock file holds.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// A record of this version.
    Record(LockRecord),
    /// A record of another version: a newer build's, which this one leaves alone.
    Other,
    /// Nothing readable as a lock: too big, not JSON, not a record. It holds nothing.
    Garbage,
}

/// Reads a lock file; `None` when it is missing, too big, malformed or of another
/// version (a lock nobody can read holds nothing).
pub(crate) fn read(path: &RootedPath) -> io::Result<Option<LockRecord>> {
    Ok(match read_any(path)? {
        Some(Found::Record(record)) => Some(record),
        _ => None,
    })
}

/// Reads a lock file without following a symlink; `None` when it is missing.
fn read_any(path: &RootedPath) -> io::Result<Option<Found>> {
    let Some(file) = sys::found(path.open_read())? else {
        return Ok(None);
    };
    let mut data = Vec::new();
    file.take(MAX_RECORD as u64 + 1).read_to_end(&mut data)?;
    if data.len() > MAX_RECORD {
        return Ok(Some(Found::Garbage));
    }
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    Ok(Some(match serde_json::from_slice::<Versioned>(&data) {
        Ok(v) if v.version != LOCK_VERSION => Found::Other,
        Ok(_) => serde_json::from_slice(&data).map_or(Found::Garbage, Found::Record),
        Err(_) => Found::Garbage,
    }))
}

/// Removes the lock files in the format folder `base` that hold nothing at `now`:
/// expired records, and files that are not records (records of another version stay);
/// returns how many it removed. It holds the named locks' guard exclusively while it
/// does, so no lock is taken or released meanwhile; when another process or task
/// holds the guard (taking a lock, or saving a value) it removes nothing and returns
/// 0, and the next prune does the work. Blocking.
pub(crate) fn prune_expired(base: &RootedPath, now: SystemTime) -> io::Result<u64> {
    let dir = base.join(LOCKS_DIR);
    // Every lock file is written holding the guard, so without one there are none.
    let Some(guard) = sys::found(dir.join(FOLDER_GUARD).open_read())? else {
        return Ok(0);
    };
    if !try_exclusive(&guard)? {
        tracing::debug!(%dir, "named locks busy; not pruning them now");
        return Ok(0);
    }
    let mut removed = 0;
    for shard in dir.list()?.into_iter().filter(|s| s.kind == Kind::Dir) {
        for entry in shard.path.list()? {
            if entry.kind != Kind::File {
                continue;
            }
            let path = entry.path;
            let dead = match read_any(&path)? {
                Some(Found::Record(record)) => !record.is_live(now),
                Some(Found::Garbage) => true,
                Some(Found::Other) | None => false,
            };
            if dead && path.remove_if_there()? {
                removed += 1;
            }
        }
    }
    Ok(removed)
}

/// Takes the exclusive `flock` of `guard` if nobody holds it; returns whether it did.
fn try_exclusive(guard: &File) -> io::Result<bool> {
    match guard.try_lock() {
        Ok(()) => Ok(true),
        Err(std::fs::TryLockError::WouldBlock) => Ok(false),
        Err(std::fs::TryLockError::Error(e)) => Err(e),
    }
}

/// The farthest time a lock file can record: a `u64` of milliseconds after the epoch.
pub(crate) fn far_future() -> SystemTime {
    join_time(u64::MAX, 0).unwrap_or(SystemTime::UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn records_keep_their_expiry_to_the_nanosecond_and_read_the_old_form() {
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 100_123_456);
        let record = LockRecord::new("n", "h", at);
        assert_eq!(record.expires(), at);
        assert!(record.is_live(at - Duration::from_nanos(1)));
        assert!(!record.is_live(at));
        let (_dir, root) = crate::sys::tmp_root();
        let path = root.join("lock");
        let file = path.path();
        std::fs::write(&file, serde_json::to_vec(&record).unwrap()).unwrap();
        assert_eq!(read(&path).unwrap(), Some(record));
        let old = br#"{"version":1,"name":"n","holder":"h","expires_ms":1700000000100}"#;
        std::fs::write(&file, old).unwrap();
        let old = read(&path).unwrap().unwrap();
        assert_eq!(old.expires(), at - Duration::from_nanos(123_456));
        std::fs::write(&file, br#"{"version":2,"name":"n"}"#).unwrap();
        assert_eq!(read_any(&path).unwrap(), Some(Found::Other));
        std::fs::write(&file, b"{").unwrap();
        assert_eq!(read_any(&path).unwrap(), Some(Found::Garbage));
        std::fs::write(&file, vec![b' '; MAX_RECORD + 1]).unwrap();
        assert_eq!(read_any(&path).unwrap(), Some(Found::Garbage));
        std::fs::remove_file(&file).unwrap();
        assert_eq!(read(&path).unwrap(), None);
        assert!(far_future() > UNIX_EPOCH + Duration::from_secs(1 << 50));
    }
}
