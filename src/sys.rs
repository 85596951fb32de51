//! The few calls that differ between operating systems. Only Unix is supported.

use std::fs::{File, Metadata};
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::{FileExt, MetadataExt};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bytes::BytesMut;

mod beneath;
mod boot;
mod tmp;

#[cfg(test)]
pub(crate) use beneath::tmp_root;
pub(crate) use beneath::{Kind, Listed, RootedPath};
pub(crate) use boot::{boot_id, written_since_boot};
pub(crate) use tmp::{TmpFile, TmpPath, create_tmp};

/// Identifies a file (not a path): device and inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FileId {
    dev: u64,
    ino: u64,
}

impl FileId {
    pub(crate) fn of(meta: &Metadata) -> Self {
        FileId {
            dev: meta.dev(),
            ino: meta.ino(),
        }
    }

    /// The file an open handle refers to.
    pub(crate) fn of_file(file: &File) -> io::Result<Self> {
        Ok(Self::of(&file.metadata()?))
    }
}

/// What identifies one version of a file: its inode, length, modification time and
/// change time (which only the kernel sets). Another version that reuses the inode
/// differs in its times, on a file system that keeps them finer than seconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Stamp {
    pub(crate) id: FileId,
    pub(crate) len: u64,
    pub(crate) modified: SystemTime,
    pub(crate) changed: (i64, i64),
}

impl Stamp {
    pub(crate) fn of(stat: &Metadata) -> io::Result<Self> {
        Ok(Stamp {
            id: FileId::of(stat),
            len: stat.len(),
            modified: stat.modified()?,
            changed: (stat.ctime(), stat.ctime_nsec()),
        })
    }

    /// The stamp in a `statx` answer, equal to [`Stamp::of`] the same file's metadata.
    fn of_statx(stat: &rustix::fs::Statx) -> Self {
        let time = |t: rustix::fs::StatxTimestamp| {
            let whole = Duration::from_secs(t.tv_sec.unsigned_abs());
            let at = if t.tv_sec < 0 {
                UNIX_EPOCH - whole
            } else {
                UNIX_EPOCH + whole
            };
            at + Duration::from_nanos(u64::from(t.tv_nsec))
        };
        Stamp {
            id: FileId {
                dev: rustix::fs::makedev(stat.stx_dev_major, stat.stx_dev_minor),
                ino: stat.stx_ino,
            },
            len: stat.stx_size,
            modified: time(stat.stx_mtime),
            changed: (stat.stx_ctime.tv_sec, i64::from(stat.stx_ctime.tv_nsec)),
        }
    }

    /// Whether the stamp tells versions apart: not on a file system that keeps whole
    /// seconds, where two versions can share every time.
    pub(crate) fn is_fine(&self) -> bool {
        self.modified
            .duration_since(UNIX_EPOCH)
            .is_ok_and(|since| since.subsec_nanos() != 0)
    }
}

/// Reads up to `len` bytes at `offset`; fewer only at end of file.
pub(crate) fn read_exact_or_eof(file: &File, offset: u64, len: usize) -> io::Result<Vec<u8>> {
    let mut buf = vec![0; len];
    let filled = read_exact_or_eof_into(file, offset, &mut buf)?;
    buf.truncate(filled);
    Ok(buf)
}

/// Fills `buf` from `offset`; returns how many bytes it read, fewer only at end of
/// file.
pub(crate) fn read_exact_or_eof_into(
    file: &File,
    offset: u64,
    buf: &mut [u8],
) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match file.read_at(&mut buf[filled..], offset + filled as u64) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// Whether `preadv2(RWF_NOWAIT)` works here; cleared the first time the kernel or
/// the file system says it does not.
static NOWAIT_READS: AtomicBool = AtomicBool::new(true);

/// Reads up to `want` bytes at `offset` into the spare capacity of `buf`, but only
/// what the page cache holds: it never waits for the disk, so it can run on an async
/// thread. `Ok(None)` means the read would have to wait (or the kernel cannot read
/// without waiting); read with [`read_into`] on a blocking thread instead. `Ok(Some(0))`
/// is the end of the file.
pub(crate) fn read_cached(
    file: &File,
    buf: &mut BytesMut,
    want: usize,
    offset: u64,
) -> io::Result<Option<usize>> {
    if !NOWAIT_READS.load(Ordering::Relaxed) {
        return Ok(None);
    }
    buf.reserve(want);
    let spare = buf.spare_capacity_mut();
    let iov = libc::iovec {
        iov_base: spare.as_mut_ptr().cast(),
        iov_len: want.min(spare.len()),
    };
    let Ok(offset) = libc::off_t::try_from(offset) else {
        return Ok(None);
    };
    // SAFETY: `iov` describes `iov_len` writable bytes of `buf`'s spare capacity,
    // which preadv2 writes at most; the file descriptor is open for the call.
    let n = unsafe { libc::preadv2(file.as_raw_fd(), &iov, 1, offset, libc::RWF_NOWAIT) };
    if n >= 0 {
        let n = n as usize;
        // SAFETY: preadv2 initialised the first `n` bytes of the spare capacity.
        unsafe { buf.set_len(buf.len() + n) };
        return Ok(Some(n));
    }
    let error = io::Error::last_os_error();
    match error.raw_os_error() {
        Some(libc::EAGAIN | libc::EINTR) => Ok(None),
        Some(libc::EOPNOTSUPP | libc::ENOSYS | libc::EINVAL) => {
            NOWAIT_READS.store(false, Ordering::Relaxed);
            Ok(None)
        }
        _ => Err(error),
    }
}

/// Reads up to `want` bytes at `offset` into the spare capacity of `buf`, waiting for
/// the disk if need be; returns how many (0 at the end of the file).
pub(crate) fn read_into(
    file: &File,
    buf: &mut BytesMut,
    want: usize,
    offset: u64,
) -> io::Result<usize> {
    buf.reserve(want);
    let target = buf.spare_capacity_mut().as_mut_ptr();
    let offset =
        libc::off_t::try_from(offset).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let n = loop {
        // SAFETY: `target` points to at least `want` bytes of `buf`'s spare capacity,
        // which pread writes at most; the file descriptor is open for the call.
        let n = unsafe { libc::pread(file.as_raw_fd(), target.cast(), want, offset) };
        if n >= 0 {
            break n as usize;
        }
        let error = io::Error::last_os_error();
        if error.kind() != io::ErrorKind::Interrupted {
            return Err(error);
        }
    };
    // SAFETY: pread initialised the first `n` bytes of the spare capacity.
    unsafe { buf.set_len(buf.len() + n) };
    Ok(n)
}

/// Runs blocking file work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> io::Result<T> {
    match tokio::task::spawn_blocking(f).await {
        Ok(result) => result,
        Err(join) => Err(io::Error::other(join)),
    }
}

/// [`blocking`], with an I/O error as [`Error::Io`] naming what was being done to
/// which path.
pub(crate) async fn blocking_io<T: Send + 'static>(
    op: &'static str,
    path: impl Into<std::path::PathBuf>,
    f: impl FnOnce() -> io::Result<T> + Send + 'static,
) -> crate::error::Result<T> {
    blocking(f)
        .await
        .map_err(|e| crate::error::Error::io(op, path, e))
}

/// `result`, with "not found" as `None`: for a file another process may remove at any
/// moment, its absence is an answer, not an error.
pub(crate) fn found<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// [`found`], with a symlink in the way (`ELOOP`, at any level of the path) also as
/// `None`: nothing of the cache's is there, and what is there is never followed.
pub(crate) fn found_beneath<T>(result: io::Result<T>) -> io::Result<Option<T>> {
    match result {
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            tracing::warn!(error = %e, "a symlink is where a file or folder of the cache should be; passing it over");
            Ok(None)
        }
        other => found(other),
    }
}

/// The modes the cache gives the files and directories it creates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Perms {
    pub(crate) dir: u32,
    pub(crate) file: u32,
}

impl Perms {
    /// The owner only (the default).
    pub(crate) const OWNER: Perms = Perms {
        dir: 0o700,
        file: 0o600,
    };
    /// The owner and the directory's group; new files keep the group (setgid).
    pub(crate) const GROUP: Perms = Perms {
        dir: 0o2770,
        file: 0o660,
    };

    /// Gives a file this process just created its mode whatever the umask (the
    /// owner-only mode needs no help). Best effort: a file another user created
    /// keeps the mode they gave it.
    pub(crate) fn fix(self, file: &File) {
        use std::os::unix::fs::PermissionsExt;
        if self != Perms::OWNER {
            let _ = file.set_permissions(std::fs::Permissions::from_mode(self.file));
        }
    }
}

/// Whether a guard lock is taken alone or shared with other shared holders.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Hold {
    Exclusive,
    Shared,
}
