//! A stored entry as a read finds it: its blob and its metadata, opened together, and
//! whether it may be served.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::layout::KeyPaths;
use crate::meta::{self, EntryMeta};
use crate::sys::{self, FileId};

/// The largest metadata file read; a key may be long, but not this long.
pub(crate) const MAX_META: u64 = 4 << 20;

/// A blob found in the store, with what its metadata says.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) file: File,
    pub(crate) len: u64,
    /// `None` when the metadata is missing, unreadable or of another format.
    pub(crate) meta: Option<Arc<EntryMeta>>,
    /// The metadata file's modification time: the entry's last read.
    pub(crate) last_read: SystemTime,
}

/// Whether a stored entry may be served.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Standing {
    Fresh,
    /// Past its expiry; its validator, if it has one, lets the origin confirm it.
    Expired {
        validator: Option<String>,
    },
    /// Not to be trusted: fetch it again and replace it.
    Damaged(String),
}

/// Parsed metadata files, by path, with the stamp of the file each was parsed from.
/// A read stats the metadata file and parses it again only when it changed (a
/// rewrite, a garbage write, a touch), so a hit costs one `stat` for its metadata.
#[derive(Debug, Default)]
pub(crate) struct MetaCache(Mutex<HashMap<PathBuf, Remembered>>);

/// A metadata file's stamp and what it held.
type Remembered = (Stamp, Option<Arc<EntryMeta>>);

/// What identifies one version of a metadata file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    id: FileId,
    len: u64,
    modified: SystemTime,
}

impl Stamp {
    fn of(stat: &std::fs::Metadata) -> io::Result<Self> {
        Ok(Stamp {
            id: FileId::of(stat),
            len: stat.len(),
            modified: stat.modified()?,
        })
    }
}

/// The most metadata files remembered; past it the cache starts over.
const MAX_REMEMBERED: usize = 16 * 1024;

impl MetaCache {
    /// The metadata at `path`, whose file has the status `stat`, parsed or remembered.
    fn read(&self, path: &Path, stat: &std::fs::Metadata) -> io::Result<Option<Arc<EntryMeta>>> {
        let stamp = Stamp::of(stat)?;
        let mut remembered = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((known, meta)) = remembered.get(path)
            && *known == stamp
        {
            return Ok(meta.clone());
        }
        drop(remembered);
        let meta = parse(path, stamp)?;
        remembered = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if remembered.len() >= MAX_REMEMBERED {
            remembered.clear();
        }
        remembered.insert(path.to_owned(), (stamp, meta.clone()));
        Ok(meta)
    }
}

/// Reads and parses the metadata file at `path`, expected to be the one `stamp`
/// describes; `None` when it is not metadata (or changed in between).
fn parse(path: &Path, stamp: Stamp) -> io::Result<Option<Arc<EntryMeta>>> {
    if stamp.len > MAX_META {
        return Ok(None);
    }
    let file = match sys::open_read(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if Stamp::of(&file.metadata()?)? != stamp {
        return Ok(None);
    }
    let data = sys::read_exact_or_eof(&file, 0, stamp.len as usize)?;
    Ok(EntryMeta::decode(&data).map(Arc::new))
}

/// Opens the blob of a key and reads its metadata, without following symlinks;
/// `None` when no blob is stored.
pub(crate) fn open(paths: &KeyPaths, metas: &MetaCache) -> io::Result<Option<Stored>> {
    let file = match sys::open_read(&paths.store) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let (meta, last_read) = match std::fs::symlink_metadata(&paths.meta) {
        Ok(stat) if stat.is_file() => (metas.read(&paths.meta, &stat)?, stat.modified()?),
        Ok(_) => (None, UNIX_EPOCH),
        Err(e) if e.kind() == io::ErrorKind::NotFound => (None, UNIX_EPOCH),
        Err(e) => return Err(e),
    };
    Ok(Some(Stored {
        file,
        len,
        meta,
        last_read,
    }))
}

impl Stored {
    /// Whether the entry may be served at `now`.
    pub(crate) fn standing(&self, now: SystemTime) -> Standing {
        let Some(meta) = &self.meta else {
            return Standing::Damaged("it has no readable metadata".into());
        };
        if meta.size != self.len {
            return Standing::Damaged(format!(
                "{} bytes where {} were stored",
                self.len, meta.size
            ));
        }
        if meta
            .expires_ms
            .is_some_and(|expires| meta::unix_millis(now) >= expires)
        {
            return Standing::Expired {
                validator: meta.validator.clone(),
            };
        }
        Standing::Fresh
    }

    /// The entry's expiry, for an entry read at `now` with a sliding expiry: its time
    /// to live from now, if that moves it later by more than a tenth of the time to
    /// live or a minute, whichever is less.
    pub(crate) fn extended_expiry(&self, now: SystemTime) -> Option<u64> {
        let meta = self.meta.as_ref()?;
        let ttl = meta.ttl_ms?;
        let extended = meta::unix_millis(now).saturating_add(ttl);
        let step = (ttl / 10).min(meta::millis(meta::LAST_READ_EVERY));
        let later = extended.saturating_sub(meta.expires_ms?) > step;
        later.then_some(extended)
    }
}

/// When an entry expires, as a time; never when it has no expiry or one past what
/// the system's time can hold.
pub(crate) fn expiry_time(meta: &EntryMeta) -> Option<SystemTime> {
    meta.expires_ms.and_then(meta::from_unix_millis)
}
