//! Moving a stored blob's bytes to stdout or a file with the kernel's help:
//! `copy_file_range` (file to file; the blocks are shared where the file system can),
//! then `sendfile` (to a pipe, a socket, a device or a file), then plain reads and
//! writes, each taking over where the one before stopped.

use std::fs::File;
use std::io;
use std::os::fd::BorrowedFd;
use std::os::unix::fs::FileExt;

use rustix::io::Errno;

/// The most bytes one call moves.
const STEP: usize = 1 << 30;

/// Copies all of `stored`, by position from its first byte, to `out` at `out`'s own
/// offset, which moves.
pub(crate) fn copy_stored(stored: &File, out: BorrowedFd<'_>) -> io::Result<()> {
    let len = stored.metadata()?.len();
    let mut offset = 0u64;
    while offset < len {
        let want = step(len - offset);
        match rustix::fs::copy_file_range(stored, Some(&mut offset), out, None, want) {
            Ok(0) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) if unsupported(e) => break,
            Err(e) => return Err(e.into()),
        }
    }
    while offset < len {
        let want = step(len - offset);
        match rustix::fs::sendfile(out, stored, Some(&mut offset), want) {
            Ok(0) => break,
            Ok(_) | Err(Errno::INTR) => {}
            Err(e) if unsupported(e) => break,
            Err(e) => return Err(e.into()),
        }
    }
    let mut buf = vec![0; 256 * 1024];
    while offset < len {
        let n = stored.read_at(&mut buf, offset)?;
        if n == 0 {
            break;
        }
        write_all(out, &buf[..n])?;
        offset += n as u64;
    }
    if offset < len {
        return Err(io::Error::new(
            io::ErrorKind::UnexpectedEof,
            "the stored blob is shorter than it was when opened",
        ));
    }
    Ok(())
}

fn step(left: u64) -> usize {
    usize::try_from(left).map_or(STEP, |left| left.min(STEP))
}

/// Whether a call cannot move bytes between these two files, so that the next way
/// is to be tried.
fn unsupported(e: Errno) -> bool {
    matches!(
        e,
        Errno::XDEV | Errno::INVAL | Errno::NOSYS | Errno::OPNOTSUPP | Errno::BADF | Errno::PERM
    )
}

fn write_all(out: BorrowedFd<'_>, mut data: &[u8]) -> io::Result<()> {
    while !data.is_empty() {
        match rustix::io::write(out, data) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => data = &data[n..],
            Err(Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
