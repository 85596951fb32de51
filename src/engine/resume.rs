//! Taking over a dead leader's fill where it stopped. The dead leader's tmp file holds
//! a prefix of the body, and its lock file names the body's validator. The new leader
//! asks the origin for the rest under that validator (HTTP `Range` with `If-Range`, an
//! object store's ranged get with `If-Match`) and appends to the same file, so the
//! followers tailing it carry on without a break. Any other answer (another version,
//! no range) starts over from the first byte, in a fresh file that followers check
//! against what they already returned.
//!
//! Only a prefix written since the machine last booted is trusted: a process that dies
//! leaves its written bytes in the page cache, but a machine that crashes may leave a
//! file whose length outran its data.

use std::fs::File;

use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::origin::{FetchOptions, Fetched};
use crate::store::layout::KeyPaths;
use crate::store::lock_info::{LenInfo, LockInfo};
use crate::sys::{self, RootedPath, TmpPath, blocking_io};

/// The part of a body a dead leader wrote, to be resumed.
pub(super) struct Prefix {
    /// The unique part of the dead leader's tmp file name.
    pub(super) unique: String,
    path: RootedPath,
    file: File,
    /// How many bytes it holds.
    pub(super) len: u64,
    validator: String,
    /// The whole body's length, when the origin promised one.
    total: Option<u64>,
}

impl Prefix {
    /// The prefix the dead leader whose lock file said `info` left, if its fill can be
    /// resumed: the origin gave a validator, the file is there, holds some bytes but
    /// not all, and was written since the machine booted.
    pub(super) fn of_dead(paths: &KeyPaths, info: LockInfo) -> Option<Prefix> {
        let validator = info.validator?;
        let total = match info.len {
            LenInfo::Known(n) => Some(n),
            LenInfo::Unknown => None,
            LenInfo::Pending => return None,
        };
        let path = paths.tmp_file(&info.tmp);
        let file = path.open_rw().ok()?;
        let stat = file.metadata().ok()?;
        let len = stat.len();
        let partial = len > 0 && total.is_none_or(|total| len < total);
        if !stat.is_file() || !partial || !crate::sys::written_since_boot(&stat) {
            return None;
        }
        Some(Prefix {
            unique: info.tmp,
            path,
            file,
            len,
            validator,
            total,
        })
    }

    /// The fetch that asks the origin for the rest.
    pub(super) fn options(&self) -> FetchOptions {
        FetchOptions {
            offset: self.len,
            if_validator: Some(self.validator.clone()),
            ..FetchOptions::default()
        }
    }

    /// Whether the origin's answer `fetched` continues this prefix: the range asked
    /// for, of the same version, and of the same length.
    pub(super) fn continued_by(&self, fetched: &Fetched) -> bool {
        fetched.offset == self.len
            && fetched.validator.as_deref() == Some(self.validator.as_str())
            && self.total.is_none_or(|total| fetched.len == Some(total))
    }

    /// Takes the dead leader's file over: hashes its prefix (on a blocking thread)
    /// and returns the file, its path (removed if this fill fails too) and the
    /// hash so far.
    pub(super) async fn adopt(self) -> Result<(File, TmpPath, Sha256)> {
        let Prefix {
            path, file, len, ..
        } = self;
        let shown = path.clone();
        blocking_io("read the resumed tmp file", shown, move || {
            let mut hasher = Sha256::new();
            let mut at = 0;
            let mut buf = vec![0; 1 << 20];
            while at < len {
                let want = (len - at).min(buf.len() as u64) as usize;
                let got = sys::read_exact_or_eof_into(&file, at, &mut buf[..want])?;
                if got < want {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::UnexpectedEof,
                        "the tmp file shrank while it was resumed",
                    ));
                }
                hasher.update(&buf[..got]);
                at += got as u64;
            }
            Ok((file, TmpPath::adopt(path), hasher))
        })
        .await
    }

    /// Gives the prefix up: the origin's answer starts over, so the dead leader's file
    /// goes.
    pub(super) fn discard(self) {
        let _ = self.path.remove_if_there();
    }
}
