//! Small files written atomically: into a tmp file in the tmp folder, then renamed over
//! their path, so readers see the old file or the new one, never a part.

use std::io;
use std::path::Path;

use crate::store::names::TMP_SUFFIX;
use crate::sys::Perms;

/// Writes `data` to `path` atomically: into a tmp file in `tmp_dir` (on the same file
/// system), stamped as modified at `modified`, flushed when `durable`, then renamed
/// over `path`. Readers see the old file or the new one, never a part.
pub(crate) fn write_atomic(
    tmp_dir: &Path,
    path: &Path,
    data: &[u8],
    modified: std::time::SystemTime,
    durable: bool,
    perms: Perms,
) -> io::Result<()> {
    prepare_atomic(tmp_dir, data, modified, durable, perms)?
        .persist(path)
        .map_err(|e| e.error)?;
    Ok(())
}

/// The first half of [`write_atomic`]: the complete tmp file, for a caller that checks
/// something before it renames the file into place (dropping it removes it).
///
/// The modification time is `modified` plus a random part of a millisecond, so that
/// two versions of a file written at one clock time, which may get the same inode on
/// a file system that reuses inodes, still differ in their times.
pub(crate) fn prepare_atomic(
    tmp_dir: &Path,
    data: &[u8],
    modified: std::time::SystemTime,
    durable: bool,
    perms: Perms,
) -> io::Result<tempfile::NamedTempFile> {
    use std::io::Write;
    use std::os::unix::fs::PermissionsExt;
    let mut tmp = tempfile::Builder::new()
        .prefix(".write.")
        .suffix(TMP_SUFFIX)
        .permissions(std::fs::Permissions::from_mode(perms.file))
        .tempfile_in(tmp_dir)?;
    perms.fix(tmp.as_file());
    tmp.write_all(data)?;
    let jitter = std::time::Duration::from_nanos(fastrand::u64(1..1_000_000));
    tmp.as_file().set_modified(modified + jitter)?;
    if durable {
        tmp.as_file().sync_data()?;
    }
    Ok(tmp)
}
