//! A stored entry as a read finds it: its blob and its metadata, opened together, and
//! whether it may be served.

use std::fs::File;
use std::io;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::layout::KeyPaths;
use crate::meta::{self, EntryMeta};
use crate::sys;

/// The largest metadata file read; a key may be long, but not this long.
pub(crate) const MAX_META: u64 = 4 << 20;

/// A blob found in the store, with what its metadata says.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) file: File,
    pub(crate) len: u64,
    /// `None` when the metadata is missing, unreadable or of another format.
    pub(crate) meta: Option<EntryMeta>,
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

/// Opens the blob and metadata of a key without following symlinks; `None` when no
/// blob is stored.
pub(crate) fn open(paths: &KeyPaths) -> io::Result<Option<Stored>> {
    let file = match sys::open_read(&paths.store) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let len = file.metadata()?.len();
    let (meta, last_read) = match sys::open_read(&paths.meta) {
        Ok(meta_file) => {
            let stat = meta_file.metadata()?;
            // One read of the size the file has; a file larger than any metadata is
            // not read at all.
            let meta = match stat.len() {
                len if len <= MAX_META => {
                    EntryMeta::decode(&sys::read_exact_or_eof(&meta_file, 0, len as usize)?)
                }
                _ => None,
            };
            (meta, stat.modified()?)
        }
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
            .expires
            .is_some_and(|expires| meta::unix_seconds(now) >= expires)
        {
            return Standing::Expired {
                validator: meta.validator.clone(),
            };
        }
        Standing::Fresh
    }

    /// The entry's expiry, for an entry read at `now` with a sliding expiry: its time
    /// to live from now, if that moves it later by more than a minute.
    pub(crate) fn extended_expiry(&self, now: SystemTime) -> Option<u64> {
        let meta = self.meta.as_ref()?;
        let extended = meta::unix_seconds(now).saturating_add(meta.ttl?);
        let later = extended.saturating_sub(meta.expires?) > meta::LAST_READ_EVERY.as_secs();
        later.then_some(extended)
    }
}

/// When an entry expires, as a time; never when it has no expiry or one past what
/// the system's time can hold.
pub(crate) fn expiry_time(meta: &EntryMeta) -> Option<SystemTime> {
    meta.expires
        .and_then(|secs| UNIX_EPOCH.checked_add(Duration::from_secs(secs)))
}
