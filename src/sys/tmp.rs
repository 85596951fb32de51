//! Tmp files beneath the cache root: created under a fresh random name, and removed
//! when dropped unless they were renamed into place or kept.

use std::fs::File;
use std::io;

use crate::sys::{Perms, RootedPath};

/// The path of a tmp file that is removed when this is dropped.
#[derive(Debug)]
pub(crate) struct TmpPath {
    path: Option<RootedPath>,
}

/// A tmp file created by [`create_tmp`], open for reading and writing.
#[derive(Debug)]
pub(crate) struct TmpFile {
    pub(crate) file: File,
    pub(crate) path: TmpPath,
}

impl TmpPath {
    /// Takes charge of an existing tmp file (a dead fill's, being resumed).
    pub(crate) fn adopt(path: RootedPath) -> Self {
        TmpPath { path: Some(path) }
    }

    pub(crate) fn path(&self) -> &RootedPath {
        self.path
            .as_ref()
            .expect("a tmp path is set until it is given up")
    }

    /// Renames the file to `to`, replacing a file there. On an error the tmp file is
    /// still removed when this is dropped.
    pub(crate) fn persist(mut self, to: &RootedPath) -> io::Result<()> {
        self.path().rename_to(to)?;
        self.path = None;
        Ok(())
    }

    /// Gives up the removal: the file stays where it is.
    pub(crate) fn keep(mut self) -> RootedPath {
        self.path
            .take()
            .expect("a tmp path is set until it is given up")
    }
}

impl Drop for TmpPath {
    fn drop(&mut self) {
        if let Some(path) = &self.path {
            let _ = path.remove_if_there();
        }
    }
}

impl TmpFile {
    /// [`TmpPath::persist`].
    pub(crate) fn persist(self, to: &RootedPath) -> io::Result<()> {
        self.path.persist(to)
    }
}

/// Creates a new file in `dir` named `<prefix><random><suffix>`, with `random_len`
/// random letters and digits, with the file mode of `perms` whatever the umask.
pub(crate) fn create_tmp(
    dir: &RootedPath,
    prefix: &str,
    suffix: &str,
    random_len: usize,
    perms: Perms,
) -> io::Result<TmpFile> {
    loop {
        let random: String = std::iter::repeat_with(fastrand::alphanumeric)
            .take(random_len)
            .collect();
        let path = dir.join(format!("{prefix}{random}{suffix}"));
        match path.create_new(perms) {
            Ok(file) => {
                perms.fix(&file);
                return Ok(TmpFile {
                    file,
                    path: TmpPath::adopt(path),
                });
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
    }
}
