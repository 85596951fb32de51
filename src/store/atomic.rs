//! Small files written atomically: into a tmp file in the tmp folder, then renamed over
//! their path, so readers see the old file or the new one, never a part.

use std::io;

use crate::store::names::TMP_SUFFIX;
use crate::sys::{Perms, RootedPath, TmpFile, create_tmp};

/// Writes `data` to `path` atomically: into a tmp file in `tmp_dir` (on the same file
/// system), stamped as modified at `modified`, flushed when `durable`, then renamed
/// over `path`. Readers see the old file or the new one, never a part.
pub(crate) fn write_atomic(
    tmp_dir: &RootedPath,
    path: &RootedPath,
    data: &[u8],
    modified: std::time::SystemTime,
    durable: bool,
    perms: Perms,
) -> io::Result<()> {
    prepare_atomic(tmp_dir, data, modified, durable, perms)?.persist(path)
}

/// The first half of [`write_atomic`]: the complete tmp file, for a caller that checks
/// something before it renames the file into place (dropping it removes it).
///
/// The modification time is `modified` plus a random part of a millisecond, so that
/// two versions of a file written at one clock time, which may get the same inode on
/// a file system that reuses inodes, still differ in their times.
pub(crate) fn prepare_atomic(
    tmp_dir: &RootedPath,
    data: &[u8],
    modified: std::time::SystemTime,
    durable: bool,
    perms: Perms,
) -> io::Result<TmpFile> {
    use std::io::Write;
    let tmp = create_tmp(tmp_dir, ".write.", TMP_SUFFIX, 6, perms)?;
    (&tmp.file).write_all(data)?;
    let jitter = std::time::Duration::from_nanos(fastrand::u64(1..1_000_000));
    tmp.file.set_modified(modified + jitter)?;
    if durable {
        tmp.file.sync_data()?;
    }
    Ok(tmp)
}
