//! A stored entry: as a read finds it (its blob and its metadata, opened together and
//! paired) and judges it (servable, expired, damaged, extended), and as a listing
//! describes it ([`Entry`]).

use std::collections::HashMap;
use std::ffi::OsString;
use std::fs::File;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::store::layout::KeyPaths;
use crate::store::lock::{self, Attempt, LockSite};
use crate::store::meta::{self, BlobId, EntryMeta};
use crate::sys::{self, RootedPath, Stamp};

/// The largest metadata file read; a key may be long, but not this long.
pub(crate) const MAX_META: u64 = 4 << 20;

/// A stored blob and what the cache knows of it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Entry {
    /// The key it is stored under.
    pub key: String,
    /// Its length in bytes. For a blob stored only by slices whose manifest is gone,
    /// the bytes of its slices stored.
    pub size: u64,
    /// How many of its bytes are stored: all of them for a blob stored whole, those of
    /// its slices present for a blob read by [slices](crate::CacheBuilder::slice_size).
    pub present: u64,
    /// The bytes its files take in the cache: its blob, and its slices and their
    /// manifest when it has them. The size bound and eviction count these.
    pub stored: u64,
    /// The slices of it that are stored, for a blob read by slices.
    pub slices: Option<Slices>,
    /// When it was stored.
    pub created: SystemTime,
    /// When it was last read, to within a minute (hits refresh it at most that often);
    /// when it was stored if it was never read.
    pub last_read: SystemTime,
    /// When it stops being served; never when `None`.
    pub expires: Option<SystemTime>,
    /// Its SHA-256, in hex; `None` for a blob stored only by slices (each slice is
    /// checked against its own).
    pub sha256: Option<String>,
    /// The origin's validator (ETag or Last-Modified), if it gave one.
    pub validator: Option<String>,
    /// The origin's media type, if it gave one.
    pub content_type: Option<String>,
    /// The path of the complete file; `None` for a blob stored only by slices.
    pub path: Option<PathBuf>,
}

/// What an [`Entry`] of a blob read by [slices](crate::CacheBuilder::slice_size)
/// holds of it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Slices {
    /// The slice size, in bytes.
    pub size: u64,
    /// The slices stored.
    pub present: u64,
    /// The slices the blob has.
    pub count: u64,
}

/// A blob found in the store, with what its metadata says.
#[derive(Debug)]
pub(crate) struct Stored {
    pub(crate) file: File,
    pub(crate) len: u64,
    /// The identity of the blob file opened.
    pub(crate) blob: BlobId,
    /// `None` when the metadata is missing, unreadable, of another format, or
    /// describes another blob.
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
pub(crate) struct MetaCache(Mutex<HashMap<OsString, Remembered>>);

/// A metadata file's stamp and what it held.
type Remembered = (Stamp, Option<Arc<EntryMeta>>);

/// The most metadata files remembered; past it the cache starts over.
const MAX_REMEMBERED: usize = 16 * 1024;

/// How many times a read looks again at a blob and its metadata that changed while
/// it looked (a publish or a rewrite in between) before it calls them damaged.
const LOOKS: usize = 3;

impl MetaCache {
    /// The metadata file at `path` as it is now: what it holds (`None` when it is not
    /// metadata of this format) and its modification time; `None` when there is no
    /// such file. A file replaced between its `stat` and its open is looked at again.
    fn load(&self, path: &RootedPath) -> io::Result<Option<(Option<Arc<EntryMeta>>, SystemTime)>> {
        for _ in 0..LOOKS {
            let stamp = match path.peek()? {
                Some((stamp, true)) => stamp,
                Some((_, false)) => return Ok(Some((None, UNIX_EPOCH))),
                None => return Ok(None),
            };
            if let Some(meta) = self.remembered(path, stamp) {
                return Ok(Some((meta, stamp.modified)));
            }
            crate::failpoint::failpoint!("entry::meta_stat");
            let Some(meta) = parse(path, stamp)? else {
                continue;
            };
            if stamp.is_fine() {
                let mut remembered = self.0.lock().unwrap_or_else(|e| e.into_inner());
                if remembered.len() >= MAX_REMEMBERED {
                    remembered.clear();
                }
                remembered.insert(path.rel().as_os_str().to_owned(), (stamp, meta.clone()));
            }
            return Ok(Some((meta, stamp.modified)));
        }
        Ok(Some((None, UNIX_EPOCH)))
    }

    fn remembered(&self, path: &RootedPath, stamp: Stamp) -> Option<Option<Arc<EntryMeta>>> {
        let remembered = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let (known, meta) = remembered.get(path.rel().as_os_str())?;
        (*known == stamp).then(|| meta.clone())
    }
}

/// Reads and parses the metadata file at `path`, expected to be the one `stamp`
/// describes: `Some(None)` when it is not metadata, `None` when the file there is
/// another (it changed or went since its `stat`).
fn parse(path: &RootedPath, stamp: Stamp) -> io::Result<Option<Option<Arc<EntryMeta>>>> {
    if stamp.len > MAX_META {
        return Ok(Some(None));
    }
    let Some(file) = sys::found(path.open_read())? else {
        return Ok(None);
    };
    if Stamp::of(&file.metadata()?)? != stamp {
        return Ok(None);
    }
    let data = sys::read_exact_or_eof(&file, 0, stamp.len as usize)?;
    Ok(Some(EntryMeta::decode(&data).map(Arc::new)))
}

/// Reads the metadata file at `path` without following a symlink; `None` when it is
/// missing, too large or not metadata of a known format.
pub(crate) fn read_meta(path: &RootedPath) -> io::Result<Option<EntryMeta>> {
    let Some(file) = sys::found(path.open_read())? else {
        return Ok(None);
    };
    let stat = file.metadata()?;
    if !stat.is_file() || stat.len() > MAX_META {
        return Ok(None);
    }
    let data = sys::read_exact_or_eof(&file, 0, stat.len() as usize)?;
    Ok(EntryMeta::decode(&data))
}

/// Opens the blob of a key and reads its metadata, without following symlinks;
/// `None` when no blob is stored. The metadata is kept only when it describes the
/// blob opened; a pair that does not match (a publish or a removal between the two
/// opens) is looked at again before the metadata is dropped.
pub(crate) fn open(paths: &KeyPaths, metas: &MetaCache) -> io::Result<Option<Stored>> {
    let mut look = 0;
    loop {
        look += 1;
        let Some(file) = sys::found_beneath(paths.store.open_read())? else {
            return Ok(None);
        };
        let stat = file.metadata()?;
        crate::failpoint::failpoint!("entry::blob_opened");
        let (meta, last_read) = metas.load(&paths.meta)?.unwrap_or((None, UNIX_EPOCH));
        let blob = BlobId::of(&stat);
        let paired = meta.as_ref().is_none_or(|meta| meta.describes(blob));
        if paired || look == LOOKS {
            return Ok(Some(Stored {
                file,
                len: stat.len(),
                blob,
                meta: meta.filter(|_| paired),
                last_read,
            }));
        }
    }
}

/// What a restart may have done to a stored blob.
pub(crate) enum AfterRestart {
    /// It was flushed, or published in this boot: nothing to check.
    Unaffected,
    /// It was published without a flush before a restart, and its bytes match.
    Verified,
    /// It was published without a flush before a restart, and its bytes differ.
    Damaged(String),
}

/// How a read judges what it finds: at what time, whether an expired entry may be
/// served (while a fill refreshes it), and whether a hit slides its expiry.
pub(crate) struct Serving {
    pub(crate) now: SystemTime,
    pub(crate) serve_stale: bool,
    pub(crate) extend: bool,
}

/// The stored entry of `key` if it may be served, and whether it is stale; records
/// the read (the metadata file's time) and slides the expiry when asked. `None` when
/// nothing is stored, the entry expired (and stale entries are not served), or it is
/// damaged (then a warning is logged: the read fetches it again).
pub(crate) fn servable(
    key: &str,
    paths: &KeyPaths,
    metas: &MetaCache,
    locks: &LockSite,
    serving: &Serving,
) -> io::Result<Option<(Stored, bool)>> {
    let Some(mut stored) = open(paths, metas)? else {
        return Ok(None);
    };
    let now = serving.now;
    if let Some(reason) = check_after_restart(paths, metas, locks, &mut stored, now)? {
        tracing::warn!(%key, %reason, "not serving an entry a restart damaged; fetching it again");
        return Ok(None);
    }
    let stale = match stored.standing(now) {
        Standing::Fresh => false,
        Standing::Expired { .. } if serving.serve_stale => true,
        Standing::Expired { .. } => return Ok(None),
        Standing::Damaged(reason) => {
            tracing::warn!(%key, %reason, "not serving a damaged entry; fetching it again");
            return Ok(None);
        }
    };
    // An expired entry served while it is refreshed keeps its expiry.
    if serving.extend
        && !stale
        && let Some(expires) = stored.extended_expiry(now)
    {
        crate::failpoint::failpoint!("entry::extend");
        match rewrite(paths, metas, locks, &stored, now, |m| {
            m.expires_ms = Some(expires)
        }) {
            Ok(Some(extended)) => stored.meta = Some(extended),
            Ok(None) => {}
            Err(e) => tracing::debug!(%key, error = %e, "could not extend an expiry"),
        }
    }
    meta::note_read(&paths.meta, stored.last_read, now);
    Ok(Some((stored, stale)))
}

/// An entry whose blob was published without a flush in an earlier boot (a crash may
/// have cut, zeroed or undone its bytes): its bytes are checked against its metadata
/// before anything is served, `Some(why)` when they differ. When they match it is
/// recorded as flushed (its bytes were just read from the disk), so the check is not
/// repeated. Nothing to check for any other entry.
fn check_after_restart(
    paths: &KeyPaths,
    metas: &MetaCache,
    locks: &LockSite,
    stored: &mut Stored,
    now: SystemTime,
) -> io::Result<Option<String>> {
    match stored.after_restart()? {
        AfterRestart::Unaffected => return Ok(None),
        AfterRestart::Damaged(reason) => return Ok(Some(reason)),
        AfterRestart::Verified => {}
    }
    if let Some(flushed) = rewrite(paths, metas, locks, stored, now, |m| {
        m.unflushed_boot = None
    })? {
        stored.meta = Some(flushed);
    }
    Ok(None)
}

/// What is wrong with a blob's bytes against its metadata, if anything: its length,
/// then its SHA-256.
pub(crate) fn fault_of(file: &File, meta: &EntryMeta) -> io::Result<Option<String>> {
    use sha2::{Digest, Sha256};
    let len = file.metadata()?.len();
    if len != meta.size {
        return Ok(Some(format!("{len} bytes where {} were stored", meta.size)));
    }
    let mut hasher = Sha256::new();
    let mut reader = io::BufReader::with_capacity(1 << 20, file);
    io::copy(&mut reader, &mut hasher)?;
    let actual = hex::encode(hasher.finalize());
    Ok(
        (actual != meta.sha256)
            .then(|| format!("sha256 {actual} where {} was stored", meta.sha256)),
    )
}

/// Rewrites the metadata of the entry `stored`, read at `now`, as `change` says, and
/// returns the new metadata. The rewrite holds the key's lock and happens only while
/// the entry is still the one read, so a publish or a revalidation that lands
/// meanwhile is never overwritten with older metadata. While a fill holds the lock
/// nothing is written (`None`): a later read tries again.
pub(crate) fn rewrite(
    paths: &KeyPaths,
    metas: &MetaCache,
    locks: &LockSite,
    stored: &Stored,
    now: SystemTime,
    change: impl FnOnce(&mut EntryMeta),
) -> io::Result<Option<Arc<EntryMeta>>> {
    let Some(meta) = &stored.meta else {
        return Ok(None);
    };
    let attempt = paths
        .tmp_dir
        .in_dir(locks.perms, || lock::try_lead(&paths.lock, locks))?;
    let Attempt::Led(held) = attempt else {
        return Ok(None);
    };
    let Some(current) = open(paths, metas)? else {
        return Ok(None);
    };
    if current.blob != stored.blob || current.meta.as_ref() != Some(meta) {
        return Ok(None);
    }
    let mut changed = EntryMeta::clone(meta).bound_to(current.blob);
    change(&mut changed);
    changed
        .prepare(&paths.tmp_dir, false, now, locks.perms)?
        .persist(&paths.meta)?;
    drop(held);
    Ok(Some(Arc::new(changed)))
}

impl Stored {
    /// What a restart may have done to the blob: nothing to check unless it was
    /// published without a flush in an earlier boot; then its bytes are read and
    /// checked against its metadata.
    pub(crate) fn after_restart(&self) -> io::Result<AfterRestart> {
        let Some(meta) = self
            .meta
            .as_ref()
            .filter(|m| m.unflushed_before_this_boot())
        else {
            return Ok(AfterRestart::Unaffected);
        };
        Ok(match fault_of(&self.file, meta)? {
            None => AfterRestart::Verified,
            Some(reason) => AfterRestart::Damaged(format!(
                "it was published without a flush before the machine restarted, and {reason}"
            )),
        })
    }

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

/// The entry whose metadata file is at `meta_path`, if it is readable and the blob
/// it describes is there.
pub(crate) fn entry_of(meta_path: &RootedPath) -> Option<Entry> {
    entry_with_blob(meta_path).map(|(entry, _)| entry)
}

/// [`entry_of`], with the identity of the blob file.
pub(crate) fn entry_with_blob(meta_path: &RootedPath) -> Option<(Entry, BlobId)> {
    let path = meta_path.with_extension("");
    // A publish renames its blob an instant before its metadata: a pair that does not
    // match is looked at again before it counts as no entry.
    let (meta, blob) = (0..LOOKS).find_map(|_| {
        let meta = read_meta(meta_path).ok().flatten()?;
        let blob = path.stat().ok()??;
        (blob.is_file() && meta.describes(BlobId::of(&blob))).then_some((meta, blob))
    })?;
    let last_read = meta_path.stat().ok()??.modified().ok()?;
    let expires = expiry_time(&meta);
    let entry = Entry {
        key: meta.key,
        size: blob.len(),
        present: blob.len(),
        stored: blob.len(),
        slices: None,
        created: crate::store::meta::from_unix_millis(meta.created_ms)?,
        last_read,
        expires,
        sha256: Some(meta.sha256),
        validator: meta.validator,
        content_type: meta.content_type,
        path: Some(path.path()),
    };
    Some((entry, BlobId::of(&blob)))
}
