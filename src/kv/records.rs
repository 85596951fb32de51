//! A folder of small record files, one for each name, that the key-value front-ends
//! keep beside the store: the named locks and the idempotency records.
//!
//! ```text
//! <dir>/v1/<folder>/guard                  the flock that changes take turns through
//! <dir>/v1/<folder>/<ab>/<sha256(name)>    the record of a name
//! ```
//!
//! A record is replaced by renaming a complete file over it (written in `<dir>/v1/tmp`),
//! so a reader sees a whole record or none, and is read without following a symlink.
//! What a record holds, and when it may change, is its front-end's business.

use std::fs::File;
use std::io::{self, Read};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::atomic;
use crate::store::dir::Folder;
use crate::store::layout::ShardedLayout;
use crate::store::meta::join_time;
use crate::store::names::{FOLDER_GUARD as GUARD, TMP_DIR};
use crate::sys::{self, Hold, Kind, Listed, Perms, RootedPath};

/// One sharded folder of record files in a cache directory.
#[derive(Debug, Clone)]
pub(crate) struct RecordFolder {
    /// The folder, `<dir>/v1/<name>`.
    dir: RootedPath,
    /// Where atomic writes make their tmp files: the format folder's tmp folder, on the
    /// same file system.
    tmp: RootedPath,
    perms: Perms,
    /// Whether a written file is flushed before it is renamed in (and, with
    /// [`sync_shard`](Self::sync_shard), its shard folder after).
    durable: bool,
}

/// The start of a file, read up to a cap.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Capped {
    /// The whole file: it holds no more than the cap.
    Whole(Vec<u8>),
    /// The first cap bytes of a longer file.
    Cut(Vec<u8>),
}

impl Capped {
    /// The bytes read, whole or cut.
    pub(crate) fn into_bytes(self) -> Vec<u8> {
        match self {
            Capped::Whole(bytes) | Capped::Cut(bytes) => bytes,
        }
    }
}

impl RecordFolder {
    /// The folder `name` in the format folder of `folder`, written with its modes and
    /// durability.
    pub(crate) fn new(folder: &Folder, name: &str) -> Self {
        RecordFolder {
            dir: folder.base.join(name),
            tmp: folder.base.join(TMP_DIR),
            perms: folder.perms,
            durable: folder.durability != crate::store::durability::Durability::Off,
        }
    }

    /// The records folder.
    pub(crate) fn dir(&self) -> &RootedPath {
        &self.dir
    }

    /// The file of the record of `name`: `<ab>/<sha256(name)>` in the folder.
    pub(crate) fn path_of(&self, name: &str) -> RootedPath {
        let (shard, file) = ShardedLayout::split(name);
        self.dir.join(shard).join(file)
    }

    /// Whether `path` is where the record of `name` belongs (a record found in a
    /// listing may name another).
    pub(crate) fn is_path_of(&self, path: &RootedPath, name: &str) -> bool {
        *path == self.path_of(name)
    }

    /// Waits for the folder's guard, held as `hold` until the file is dropped; creates
    /// the folder and the guard file when they are missing. Blocking.
    pub(crate) fn guard(&self, hold: Hold) -> io::Result<File> {
        let path = self.dir.join(GUARD);
        self.dir.in_dir(self.perms, || path.guard(hold, self.perms))
    }

    /// Replaces the record file at `path` (in this folder) with `data`, atomically,
    /// stamped as modified at `modified`; creates its shard folder when missing.
    pub(crate) fn write(
        &self,
        path: &RootedPath,
        data: &[u8],
        modified: SystemTime,
    ) -> io::Result<()> {
        debug_assert!(path.starts_with(&self.dir), "{path:?} is not a record path");
        let (tmp, perms, durable) = (&self.tmp, self.perms, self.durable);
        shard_of(path).in_dir(perms, || {
            atomic::write_atomic(tmp, path, data, modified, durable, perms)
        })
    }

    /// Removes the record file at `path`; returns whether there was one.
    pub(crate) fn remove(&self, path: &RootedPath) -> io::Result<bool> {
        debug_assert!(path.starts_with(&self.dir), "{path:?} is not a record path");
        path.remove_if_there()
    }

    /// Flushes the shard folder of `path` (a rename or removal in it) to stable storage
    /// when the folder is durable.
    pub(crate) fn sync_shard(&self, path: &RootedPath) -> io::Result<()> {
        if self.durable {
            shard_of(path).sync_dir()?;
        }
        Ok(())
    }

    /// Calls `visit` with every entry of every shard folder, whatever it is; entries
    /// beside the shard folders that are not folders (the guard) are passed over. None
    /// when the folder is missing.
    pub(crate) fn each_entry(
        &self,
        mut visit: impl FnMut(&Listed) -> io::Result<()>,
    ) -> io::Result<()> {
        for shard in self.dir.list()?.into_iter().filter(|s| s.kind == Kind::Dir) {
            for entry in shard.path.list()? {
                visit(&entry)?;
            }
        }
        Ok(())
    }
}

/// The shard folder a record path is in.
fn shard_of(path: &RootedPath) -> RootedPath {
    path.parent().expect("a record path has a shard folder")
}

/// Opens the record file at `path` for reading without following a symlink (that
/// fails, with `ELOOP`); `None` when nothing is there.
pub(crate) fn open(path: &RootedPath) -> io::Result<Option<File>> {
    sys::found(path.open_read())
}

/// Reads `file` from its cursor (its start, when just opened), up to `cap` bytes and
/// without making room for more than it holds.
pub(crate) fn read_capped(file: &File, cap: usize) -> io::Result<Capped> {
    let mut bytes = Vec::new();
    file.take(cap as u64 + 1).read_to_end(&mut bytes)?;
    if bytes.len() > cap {
        bytes.truncate(cap);
        return Ok(Capped::Cut(bytes));
    }
    Ok(Capped::Whole(bytes))
}

/// The time `ms` milliseconds and `frac_ns` nanoseconds after the Unix epoch, as
/// records keep their expiry ([`split_time`](crate::store::meta::split_time)). Every
/// `u64` of milliseconds fits the Unix `SystemTime` (an `i64` of seconds); the epoch
/// stands in if one did not.
pub(crate) fn time_of(ms: u64, frac_ns: u32) -> SystemTime {
    join_time(ms, frac_ns).unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::sync::Arc;
    use std::time::Duration;

    use crate::clock::SystemClock;
    use crate::store::meta::{split_time, unix_millis};

    /// A format folder in a new temp directory, with its tmp folder, and the record
    /// folder `recs` in it.
    fn folder(durable: bool) -> (tempfile::TempDir, RecordFolder) {
        let (dir, root) = crate::sys::tmp_root();
        let base = root.join("v1");
        std::fs::create_dir_all(base.join(TMP_DIR).path()).unwrap();
        let folder = Folder {
            root,
            base,
            perms: Perms::OWNER,
            durability: if durable {
                crate::store::durability::Durability::Fsync
            } else {
                crate::store::durability::Durability::Off
            },
            clock: Arc::new(SystemClock),
        };
        let records = RecordFolder::new(&folder, "recs");
        (dir, records)
    }

    #[test]
    fn names_map_to_sharded_paths_in_the_folder() {
        let (dir, records) = folder(false);
        assert_eq!(records.dir().path(), dir.path().join("v1/recs"));
        let path = records.path_of("order-17");
        let (shard, file) = ShardedLayout::split("order-17");
        let want = dir.path().join("v1/recs").join(&shard).join(&file);
        assert_eq!(path.path(), want);
        assert_eq!(file.len(), 64);
        assert!(file.starts_with(&shard));
        assert!(records.is_path_of(&path, "order-17"));
        assert!(!records.is_path_of(&path, "order-18"));
        assert_ne!(records.path_of("a"), records.path_of("b"));
    }

    #[test]
    fn writes_replace_whole_files_and_make_their_folders() {
        for durable in [false, true] {
            let (dir, records) = folder(durable);
            let path = records.path_of("k");
            let file = path.path();
            let at = UNIX_EPOCH + Duration::from_secs(1_700_000_000);
            records.write(&path, b"first", at).unwrap();
            records.sync_shard(&path).unwrap();
            assert_eq!(std::fs::read(&file).unwrap(), b"first");
            records.write(&path, b"2nd", at).unwrap();
            assert_eq!(std::fs::read(&file).unwrap(), b"2nd");
            // Stamped with the time given, give or take the jitter of a millisecond.
            let modified = std::fs::metadata(&file).unwrap().modified().unwrap();
            assert!(modified >= at && modified < at + Duration::from_millis(1));
            let mode = std::fs::metadata(&file).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            // No tmp file is left behind.
            let tmp = dir.path().join("v1").join(TMP_DIR);
            assert_eq!(std::fs::read_dir(tmp).unwrap().count(), 0);
            assert!(records.remove(&path).unwrap());
            assert!(!records.remove(&path).unwrap());
            records.sync_shard(&path).unwrap();
        }
    }

    #[test]
    fn the_guard_excludes_and_shares() {
        let (_dir, records) = folder(false);
        let held = records.guard(Hold::Exclusive).unwrap();
        let guard = records.dir().join(GUARD).path();
        assert!(guard.is_file());
        let other = std::fs::File::open(guard).unwrap();
        assert!(other.try_lock_shared().is_err());
        drop(held);
        let shared = records.guard(Hold::Shared).unwrap();
        let again = records.guard(Hold::Shared).unwrap();
        assert!(other.try_lock().is_err());
        drop((shared, again));
        other.try_lock().unwrap();
    }

    #[test]
    fn listing_sees_every_entry_of_every_shard_and_nothing_else() {
        let (_dir, records) = folder(false);
        let mut seen = Vec::new();
        records.each_entry(|_| panic!("no folder yet")).unwrap();
        let _guard = records.guard(Hold::Exclusive).unwrap();
        let now = SystemTime::now();
        for name in ["a", "b", "c"] {
            records
                .write(&records.path_of(name), name.as_bytes(), now)
                .unwrap();
        }
        // A folder in a shard is listed too; a file beside the shards is not.
        let sub = records.path_of("a").with_file_name("sub");
        std::fs::create_dir(sub.path()).unwrap();
        std::fs::write(records.dir().join("stray").path(), b"").unwrap();
        records
            .each_entry(|entry| {
                seen.push(entry.path.path());
                Ok(())
            })
            .unwrap();
        seen.sort();
        let mut want: Vec<_> = ["a", "b", "c"]
            .map(|name| records.path_of(name).path())
            .into();
        want.push(sub.path());
        want.sort();
        assert_eq!(seen, want);
        let err = records.each_entry(|_| Err(io::Error::other("stop")));
        assert_eq!(err.unwrap_err().to_string(), "stop");
    }

    #[test]
    fn reads_are_capped_and_never_follow_a_symlink() {
        let (dir, records) = folder(false);
        let path = records.path_of("k");
        assert!(open(&path).unwrap().is_none());
        records.write(&path, b"12345", SystemTime::now()).unwrap();
        let read = |cap| read_capped(&open(&path).unwrap().unwrap(), cap).unwrap();
        assert_eq!(read(5), Capped::Whole(b"12345".to_vec()));
        assert_eq!(read(9), Capped::Whole(b"12345".to_vec()));
        assert_eq!(read(4), Capped::Cut(b"1234".to_vec()));
        assert_eq!(read(0), Capped::Cut(Vec::new()));
        assert_eq!(read(2).into_bytes(), b"12");
        assert_eq!(read(7).into_bytes(), b"12345");
        let link = records.path_of("link");
        std::fs::create_dir_all(link.parent().unwrap().path()).unwrap();
        std::os::unix::fs::symlink(path.path(), link.path()).unwrap();
        let err = open(&link).unwrap_err();
        assert_eq!(err.raw_os_error(), Some(libc::ELOOP));
        let dangling = records.dir().join("dangling");
        std::os::unix::fs::symlink(dir.path().join("nowhere"), dangling.path()).unwrap();
        assert_eq!(
            open(&dangling).unwrap_err().raw_os_error(),
            Some(libc::ELOOP)
        );
    }

    #[test]
    fn times_saturate() {
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(unix_millis(far), u64::MAX);
        assert!(time_of(u64::MAX, 0) > UNIX_EPOCH + Duration::from_secs(1 << 50));
        let exact = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        let (ms, frac) = split_time(exact);
        assert_eq!(time_of(ms, frac), exact, "to the nanosecond");
        assert_eq!(time_of(0, 0), UNIX_EPOCH);
    }
}
