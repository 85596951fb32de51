//! Paths resolved beneath the cache directory: every file and folder of a cache is
//! reached from one directory handle held on its root, and no symlink is followed on
//! the way, at any level.
//!
//! On Linux 5.6 and later each open is one `openat2` with `RESOLVE_BENEATH |
//! RESOLVE_NO_SYMLINKS`. Where the kernel lacks it, the path is walked one folder at a
//! time with `openat(O_NOFOLLOW)`. Renames, removals and folder creation act on a
//! handle of the parent folder, opened the same way, so they never follow a symlink
//! either. A symlink where a folder or file of the cache should be is an error
//! (`ELOOP`, whichever way the path was resolved), never a way out of the directory.

use std::ffi::OsStr;
use std::fs::{File, Metadata};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};

use rustix::fs::{AtFlags, FileType, Mode, OFlags, ResolveFlags, StatxFlags};
use rustix::io::Errno;

use crate::sys::{FileId, Hold, Perms, Stamp, found};

/// The directory handle every path of a cache is resolved from, and the path it was
/// opened at (to make the directory again if it is removed).
#[derive(Debug)]
struct Root {
    dir: RwLock<Arc<OwnedFd>>,
    path: PathBuf,
}

impl Root {
    /// Creates the directory `path` and its parents if they are missing, and opens it.
    fn make(path: &Path, perms: Perms) -> io::Result<OwnedFd> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(perms.dir)
            .create(path)?;
        Ok(rustix::fs::open(
            path,
            OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )?)
    }

    fn handle(&self) -> Arc<OwnedFd> {
        Arc::clone(&self.dir.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes the root directory again, with the folder mode of `perms`, if the one
    /// the handle is on was removed (someone deleted the whole cache directory while
    /// it was in use), and holds a handle on the new one.
    fn remake_if_removed(&self, perms: Perms) -> io::Result<()> {
        let mut dir = self.dir.write().unwrap_or_else(|e| e.into_inner());
        if rustix::fs::fstat(&**dir)?.st_nlink > 0 {
            return Ok(());
        }
        *dir = Arc::new(Self::make(&self.path, perms)?);
        Ok(())
    }
}

/// A path beneath a cache's root: the root's handle and a relative path of plain
/// names. Cheap to clone; shows as the absolute path in messages.
#[derive(Debug, Clone)]
pub(crate) struct RootedPath {
    root: Arc<Root>,
    rel: PathBuf,
}

/// A file or folder found in a listing.
#[derive(Debug)]
pub(crate) struct Listed {
    pub(crate) path: RootedPath,
    pub(crate) kind: Kind,
}

/// What a listed name is. A symlink is `Other`: nothing follows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    File,
    Dir,
    Other,
}

/// Whether `openat2` works here; cleared the first time the kernel says it has none.
static OPENAT2: AtomicBool = AtomicBool::new(true);

impl RootedPath {
    /// Creates the directory `path` (and its parents) with the folder mode of `perms`
    /// if it is missing, holds a handle on it and returns it as a root. The path itself
    /// is the caller's choice and is followed as given; nothing beneath it is.
    ///
    /// # Errors
    /// The directory cannot be created or opened, or is not a directory.
    pub(crate) fn make_root(path: &Path, perms: Perms) -> io::Result<RootedPath> {
        Ok(RootedPath {
            root: Arc::new(Root {
                dir: RwLock::new(Arc::new(Root::make(path, perms)?)),
                path: path.to_owned(),
            }),
            rel: PathBuf::new(),
        })
    }

    /// The path of `rel` beneath this one.
    pub(crate) fn join(&self, rel: impl AsRef<Path>) -> RootedPath {
        RootedPath {
            root: Arc::clone(&self.root),
            rel: self.rel.join(rel),
        }
    }

    /// The folder this path is in; `None` for the root.
    pub(crate) fn parent(&self) -> Option<RootedPath> {
        let parent = self.rel.parent()?;
        Some(RootedPath {
            root: Arc::clone(&self.root),
            rel: parent.to_owned(),
        })
    }

    /// This path with its last name replaced.
    pub(crate) fn with_file_name(&self, name: impl AsRef<OsStr>) -> RootedPath {
        RootedPath {
            root: Arc::clone(&self.root),
            rel: self.rel.with_file_name(name),
        }
    }

    /// This path with its extension replaced (or removed, when `extension` is empty).
    pub(crate) fn with_extension(&self, extension: impl AsRef<OsStr>) -> RootedPath {
        RootedPath {
            root: Arc::clone(&self.root),
            rel: self.rel.with_extension(extension),
        }
    }

    /// The last name of the path; `None` for the root.
    pub(crate) fn file_name(&self) -> Option<&OsStr> {
        self.rel.file_name()
    }

    /// The root directory's own path, as it was given.
    pub(crate) fn root_dir(&self) -> &Path {
        &self.root.path
    }

    /// The path relative to the root.
    pub(crate) fn rel(&self) -> &Path {
        &self.rel
    }

    /// The absolute path, for messages and for callers outside the cache.
    pub(crate) fn path(&self) -> PathBuf {
        self.root.path.join(&self.rel)
    }

    /// The path beneath this one's root that the absolute path `path` names (one
    /// that [`path`](Self::path) gave).
    ///
    /// # Errors
    /// `InvalidInput` when `path` is not beneath the root.
    pub(crate) fn locate(&self, path: &Path) -> io::Result<RootedPath> {
        let rel = path.strip_prefix(&self.root.path).map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} is not in the cache directory", path.display()),
            )
        })?;
        Ok(self.root_path().join(rel))
    }

    /// Whether `self` is `other` or lies beneath it.
    pub(crate) fn starts_with(&self, other: &RootedPath) -> bool {
        Arc::ptr_eq(&self.root, &other.root) && self.rel.starts_with(&other.rel)
    }

    /// Opens the file for reading.
    pub(crate) fn open_read(&self) -> io::Result<File> {
        self.open(OFlags::RDONLY, Mode::empty()).map(File::from)
    }

    /// Opens the existing file for reading and writing.
    pub(crate) fn open_rw(&self) -> io::Result<File> {
        self.open(OFlags::RDWR, Mode::empty()).map(File::from)
    }

    /// Opens the file for reading and writing, creating it with the file mode of
    /// `perms` if it is missing (the umask applies; see [`Perms::fix`]).
    pub(crate) fn create(&self, perms: Perms) -> io::Result<File> {
        self.open(
            OFlags::RDWR | OFlags::CREATE,
            Mode::from_raw_mode(perms.file),
        )
        .map(File::from)
    }

    /// Creates the file, failing with `AlreadyExists` if anything is there.
    pub(crate) fn create_new(&self, perms: Perms) -> io::Result<File> {
        let flags = OFlags::RDWR | OFlags::CREATE | OFlags::EXCL;
        self.open(flags, Mode::from_raw_mode(perms.file))
            .map(File::from)
    }

    /// The status of what the path names (a symlink's own); `None` when nothing is
    /// there.
    pub(crate) fn stat(&self) -> io::Result<Option<Metadata>> {
        match found(self.open(OFlags::PATH, Mode::empty())) {
            Ok(Some(fd)) => File::from(fd).metadata().map(Some),
            Ok(None) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The [`Stamp`] of what the path names (a symlink's own), and whether it is a
    /// file, from one `statx` that opens nothing; `None` when nothing is there.
    ///
    /// Unlike every other call here, a symlink in a folder on the way is followed (a
    /// symlink at the last name is not). So a peek only tells whether a file is one
    /// already looked at through a guarded open (the same device, inode and times):
    /// what is read, and from where, is never decided by it.
    pub(crate) fn peek(&self) -> io::Result<Option<(Stamp, bool)>> {
        check_plain(&self.rel)?;
        let root = self.root.handle();
        let rel: &Path = if self.rel.as_os_str().is_empty() {
            Path::new(".")
        } else {
            &self.rel
        };
        let wanted = StatxFlags::TYPE
            | StatxFlags::INO
            | StatxFlags::SIZE
            | StatxFlags::MTIME
            | StatxFlags::CTIME;
        match rustix::fs::statx(&*root, rel, AtFlags::SYMLINK_NOFOLLOW, wanted) {
            Ok(stat) => Ok(Some((
                Stamp::of_statx(&stat),
                FileType::from_raw_mode(u32::from(stat.stx_mode)) == FileType::RegularFile,
            ))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(e.into()),
        }
    }

    /// The file the path names now; `None` when nothing is there.
    pub(crate) fn file_id(&self) -> io::Result<Option<FileId>> {
        Ok(self.stat()?.as_ref().map(FileId::of))
    }

    /// Whether the path names the file `id` now.
    pub(crate) fn names(&self, id: FileId) -> io::Result<bool> {
        Ok(self.file_id()? == Some(id))
    }

    /// Removes the file; returns whether there was one.
    pub(crate) fn remove_if_there(&self) -> io::Result<bool> {
        let Some((parent, name)) = found(self.parent_and_name())? else {
            return Ok(false);
        };
        Ok(
            found(rustix::fs::unlinkat(&parent, name, AtFlags::empty()).map_err(io::Error::from))?
                .is_some(),
        )
    }

    /// Renames the file or folder to `to`, replacing a file there.
    pub(crate) fn rename_to(&self, to: &RootedPath) -> io::Result<()> {
        let (from_dir, from_name) = self.parent_and_name()?;
        let (to_dir, to_name) = to.parent_and_name()?;
        rustix::fs::renameat(&from_dir, from_name, &to_dir, to_name)?;
        Ok(())
    }

    /// Creates the folder and its missing parents with the folder mode of `perms`,
    /// which the last one gets whatever the umask (the umask applies to the parents a
    /// custom layout nests deeper). A root directory that was removed is made again.
    pub(crate) fn make_dirs(&self, perms: Perms) -> io::Result<()> {
        self.root.remake_if_removed(perms)?;
        let mut done = self.root_path();
        for name in plain_names(&self.rel)? {
            match rustix::fs::mkdirat(&done.parent_fd()?, name, Mode::from_raw_mode(perms.dir)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(e.into()),
            }
            done = done.join(name);
        }
        if perms != Perms::OWNER {
            use std::os::unix::fs::PermissionsExt;
            self.open_dir()?
                .set_permissions(std::fs::Permissions::from_mode(perms.dir))?;
        }
        Ok(())
    }

    /// Runs `op`; if it fails because this folder is missing, creates the folder and
    /// runs it again.
    pub(crate) fn in_dir<T>(
        &self,
        perms: Perms,
        mut op: impl FnMut() -> io::Result<T>,
    ) -> io::Result<T> {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                self.make_dirs(perms)?;
                op()
            }
            result => result,
        }
    }

    /// The files and folders in this folder; none when it is missing.
    pub(crate) fn list(&self) -> io::Result<Vec<Listed>> {
        let Some(dir) = found(self.open_dir())? else {
            return Ok(Vec::new());
        };
        let mut listed = Vec::new();
        for entry in rustix::fs::Dir::read_from(&dir)? {
            let entry = entry?;
            let name = OsStr::from_bytes(entry.file_name().to_bytes());
            if name == "." || name == ".." {
                continue;
            }
            let kind = match entry.file_type() {
                rustix::fs::FileType::RegularFile => Kind::File,
                rustix::fs::FileType::Directory => Kind::Dir,
                rustix::fs::FileType::Unknown => self.join(name).kind()?,
                _ => Kind::Other,
            };
            listed.push(Listed {
                path: self.join(name),
                kind,
            });
        }
        Ok(listed)
    }

    /// Flushes the folder's entries (a rename into it) to stable storage.
    pub(crate) fn sync_dir(&self) -> io::Result<()> {
        self.open_dir()?.sync_all()
    }

    /// Opens (creating) the guard file and waits for its `flock`, which is released
    /// when the returned file is dropped or the process dies. Blocking: call it on a
    /// blocking thread.
    pub(crate) fn guard(&self, hold: Hold, perms: Perms) -> io::Result<File> {
        let file = self.create(perms)?;
        perms.fix(&file);
        match hold {
            Hold::Exclusive => file.lock()?,
            Hold::Shared => file.lock_shared()?,
        }
        Ok(file)
    }

    fn kind(&self) -> io::Result<Kind> {
        Ok(match self.stat()? {
            Some(meta) if meta.is_file() => Kind::File,
            Some(meta) if meta.is_dir() => Kind::Dir,
            _ => Kind::Other,
        })
    }

    fn root_path(&self) -> RootedPath {
        RootedPath {
            root: Arc::clone(&self.root),
            rel: PathBuf::new(),
        }
    }

    fn open_dir(&self) -> io::Result<File> {
        self.open(OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
            .map(File::from)
    }

    /// A handle on this folder for the `*at` calls. Opened for reading, not as
    /// `O_PATH`, so that a symlink in its place fails with `ELOOP` like any other.
    fn parent_fd(&self) -> io::Result<OwnedFd> {
        self.open(OFlags::RDONLY | OFlags::DIRECTORY, Mode::empty())
    }

    /// A handle on the folder the path is in, and its last name.
    fn parent_and_name(&self) -> io::Result<(OwnedFd, &OsStr)> {
        let name = self.file_name().ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "the cache root has no parent")
        })?;
        let parent = self.parent().expect("a path with a name has a parent");
        Ok((parent.parent_fd()?, name))
    }

    /// Opens the path with `flags`, never following a symlink, never leaving the root.
    fn open(&self, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
        check_plain(&self.rel)?;
        let flags = flags | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let root = self.root.handle();
        if OPENAT2.load(Ordering::Relaxed) && !walk_only() {
            let rel: &Path = if self.rel.as_os_str().is_empty() {
                Path::new(".")
            } else {
                &self.rel
            };
            let resolve =
                ResolveFlags::BENEATH | ResolveFlags::NO_SYMLINKS | ResolveFlags::NO_MAGICLINKS;
            loop {
                match rustix::fs::openat2(&*root, rel, flags, mode, resolve) {
                    Err(Errno::AGAIN | Errno::INTR) => continue,
                    Err(Errno::NOSYS) => {
                        OPENAT2.store(false, Ordering::Relaxed);
                        break;
                    }
                    // A symlink where a folder was asked for says `ENOTDIR`: the walk
                    // tells it from a file, and says `ELOOP` for it.
                    Err(Errno::NOTDIR) => break,
                    result => return result.map_err(io::Error::from),
                }
            }
        }
        walk(&root, &plain_names(&self.rel)?, flags, mode)
    }
}

/// Opens `names` beneath `root` one folder at a time, each with `O_NOFOLLOW`: what
/// `openat2` does where the kernel has it, with the same error (`ELOOP`) for a folder
/// that is a symlink.
fn walk(root: &OwnedFd, names: &[&OsStr], flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    let folder = OFlags::PATH | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC;
    let Some((last, folders)) = names.split_last() else {
        return Ok(rustix::fs::openat(root, ".", flags, mode)?);
    };
    let mut dir: Option<OwnedFd> = None;
    for name in folders {
        dir = Some(open_one(
            dir.as_ref().unwrap_or(root),
            name,
            folder,
            Mode::empty(),
        )?);
    }
    open_one(dir.as_ref().unwrap_or(root), last, flags, mode)
}

/// `openat` of one name, with `ELOOP` for a symlink where a folder was asked for
/// (`O_DIRECTORY | O_NOFOLLOW` says `ENOTDIR` there).
fn open_one(dir: &OwnedFd, name: &OsStr, flags: OFlags, mode: Mode) -> io::Result<OwnedFd> {
    match rustix::fs::openat(dir, name, flags, mode) {
        Err(Errno::NOTDIR) if is_symlink(dir, name) => Err(Errno::LOOP.into()),
        opened => Ok(opened?),
    }
}

/// Whether `name` in the folder `dir` is a symlink.
fn is_symlink(dir: &OwnedFd, name: &OsStr) -> bool {
    rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
        .is_ok_and(|stat| rustix::fs::FileType::from_raw_mode(stat.st_mode).is_symlink())
}

/// Checks that `rel` is made only of plain names (no root, no `.` or `..`), so that
/// a path never leaves the root whatever the walk does.
fn check_plain(rel: &Path) -> io::Result<()> {
    if rel.components().all(|c| matches!(c, Component::Normal(_))) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidInput,
        format!("{} would leave the cache directory", rel.display()),
    ))
}

/// The names of a relative path, once [`check_plain`] has passed it.
fn plain_names(rel: &Path) -> io::Result<Vec<&OsStr>> {
    check_plain(rel)?;
    Ok(rel.components().map(|c| c.as_os_str()).collect())
}

/// Two paths are equal when they are the same names beneath the same root handle.
impl PartialEq for RootedPath {
    fn eq(&self, other: &Self) -> bool {
        Arc::ptr_eq(&self.root, &other.root) && self.rel == other.rel
    }
}

impl Eq for RootedPath {}

impl std::fmt::Display for RootedPath {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.path().display().fmt(f)
    }
}

impl From<&RootedPath> for PathBuf {
    fn from(path: &RootedPath) -> PathBuf {
        path.path()
    }
}

impl From<RootedPath> for PathBuf {
    fn from(path: RootedPath) -> PathBuf {
        path.path()
    }
}

#[cfg(test)]
thread_local! {
    /// Whether this thread resolves by walking even where `openat2` works: for the
    /// tests of the walk.
    static WALK_ONLY: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

#[cfg(test)]
fn walk_only() -> bool {
    WALK_ONLY.with(std::cell::Cell::get)
}

#[cfg(not(test))]
fn walk_only() -> bool {
    false
}

/// A new tmp directory and a root on it, for unit tests.
#[cfg(test)]
pub(crate) fn tmp_root() -> (tempfile::TempDir, RootedPath) {
    let dir = tempfile::tempdir().expect("a tmp directory");
    let root = RootedPath::make_root(dir.path(), Perms::OWNER).expect("a root on it");
    (dir, root)
}

#[cfg(test)]
mod tests;
