//! Idempotency records: what a web service keeps per request id so that a retried
//! request is answered with the first one's result instead of running twice.
//!
//! A record holds an id (the client's idempotency key), the data to answer with, a
//! fingerprint of the request (so a retry with another body can be told apart) and
//! an expiry. Records live beside the blob store in the cache directory, one file
//! each, and the store's size bound, eviction, [`Cache::prune`] and [`Cache::verify`]
//! never touch them.
//!
//! # On disk
//!
//! `<dir>/v1/records/ab/<sha256(id) in hex>` holds one record: a line of JSON,
//!
//! ```text
//! {"version":1,"id":"…","fingerprint":"…","expires_at_ms":1700000000000,"len":5}
//! ```
//!
//! then the `len` bytes of data. A file whose header does not parse, is of another
//! version, names another id than its file name is for, or whose data is not `len`
//! bytes long is not served (a warning is logged) and [`IdempotencyStore::prune`]
//! removes it. Expiry times are milliseconds since the Unix epoch.
//!
//! # Concurrency
//!
//! Every change (insert, update, remove, prune) holds the exclusive `flock` of
//! `<dir>/v1/records/guard` while it reads the record and writes or removes it, so
//! of many processes (or tasks) inserting one id exactly one succeeds. Changes to
//! different ids take turns too: the guard is one for the whole folder. Files are
//! replaced by renaming a complete file over them, so a lookup, which takes no lock,
//! sees the old record or the new one, never a part.

use std::fs::File;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::cache::Cache;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::store::atomic;
use crate::store::layout::ShardedLayout;
use crate::store::meta::{self, unix_millis};
use crate::store::names::RECORDS_DIR;
use crate::sys::blocking;
use crate::sys::{self, Hold, Perms};

/// The file whose lock every change of a record holds, in the records folder.
const GUARD: &str = "guard";

/// The format version written into every record.
const RECORD_VERSION: u32 = 1;

/// The longest id, and the longest fingerprint, a record may have.
const MAX_ID: usize = 64 << 10;

/// The longest header line read. An id and a fingerprint of [`MAX_ID`] bytes each fit
/// even when every byte is escaped in JSON (six bytes for one).
const MAX_HEADER: usize = 1 << 20;

/// A stored idempotency record, as [`IdempotencyStore::lookup`] returns it.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
/// use std::time::{Duration, SystemTime, UNIX_EPOCH};
/// let records = readthrough::IdempotencyStore::new(&cache);
/// let expires_at = UNIX_EPOCH + Duration::from_millis(4_102_444_800_000); // 2100
/// records.insert("order-17", "201 Created", "sha256:ab12", expires_at).await?;
///
/// let record = records.lookup("order-17").await?.unwrap();
/// assert_eq!(record.id, "order-17");
/// assert_eq!(record.data, "201 Created");
/// assert_eq!(record.fingerprint, "sha256:ab12");
/// assert_eq!(record.expires_at, expires_at);
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct IdempotencyRecord {
    /// The id the record is stored under.
    pub id: String,
    /// The data stored with it, such as the response to replay.
    pub data: Bytes,
    /// The fingerprint given when it was inserted, such as a hash of the request.
    pub fingerprint: String,
    /// When it expires, to the millisecond.
    pub expires_at: SystemTime,
}

/// Idempotency records kept in a cache's directory: insert once, look up, update,
/// remove, prune the expired.
///
/// Cheap to clone. Expiry is measured by the cache's [`Clock`](crate::Clock); a record
/// is live while its expiry is later than the clock's time, and an expired record is
/// absent to every call (it can be inserted again) until [`prune`](Self::prune) or an
/// insert removes its file. Expiry times are kept to the millisecond (truncated);
/// times before the Unix epoch count as the epoch, and times too far ahead to count
/// in milliseconds as a `u64` as the farthest that can.
///
/// Data may be at most [`MAX_DATA`](Self::MAX_DATA) bytes, ids and fingerprints at
/// most 64 KiB.
///
/// Limits: all changes, of any id, take turns through one lock file, so this suits
/// the request rate of a web service, not a bulk store. On a file system whose locks
/// do not exclude each other (the cache warns when it is built there), two processes
/// inserting one id may both succeed. The records are not part of the cache's size
/// bound; prune them on a schedule.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::{Duration, SystemTime};
/// use readthrough::{Cache, Error, IdempotencyStore};
///
/// let cache = Cache::builder(dir.path()).build().await?;
/// let records = IdempotencyStore::new(&cache);
/// let expires_at = SystemTime::now() + Duration::from_secs(24 * 3600);
///
/// records.insert("order-17", "pending", "sha256:ab12", expires_at).await?;
/// let again = records.insert("order-17", "pending", "sha256:ab12", expires_at).await;
/// assert!(matches!(again, Err(Error::RecordExists { .. })));
///
/// records.update("order-17", "201 Created", expires_at).await?;
/// assert_eq!(records.lookup("order-17").await?.unwrap().data, "201 Created");
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct IdempotencyStore {
    records: Arc<Records>,
}

/// What every clone of an [`IdempotencyStore`] shares.
#[derive(Debug)]
struct Records {
    /// The cache's format folder, `<dir>/v1`.
    base: PathBuf,
    perms: Perms,
    durable: bool,
    clock: Arc<dyn Clock>,
}

/// The first line of a record file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Header {
    version: u32,
    id: String,
    fingerprint: String,
    expires_at_ms: u64,
    /// The length of the data after the header line.
    len: u64,
}

impl Header {
    /// The bytes of a record file: this header as a line of JSON, then `data`.
    fn encode(&self, data: &[u8]) -> Vec<u8> {
        let mut file = serde_json::to_vec(self).expect("a record header serializes");
        file.push(b'\n');
        file.extend_from_slice(data);
        file
    }
}

/// What a record file holds.
#[derive(Debug)]
enum Found {
    Missing,
    /// A file that is not a record this version reads, and why.
    Garbage(String),
    /// A well-formed record, with its data when it was asked for (empty otherwise).
    Record(Header, Bytes),
}

impl IdempotencyStore {
    /// The largest data a record may hold: 64 MiB.
    ///
    /// ```
    /// assert_eq!(readthrough::IdempotencyStore::MAX_DATA, 64 << 20);
    /// ```
    pub const MAX_DATA: usize = 64 << 20;

    /// The idempotency records of `cache`'s directory, in `<dir>/v1/records`, timed
    /// by its clock and flushed to stable storage when it is
    /// [durable](crate::CacheBuilder::durable). Any number of stores, in any number of
    /// processes, may share one directory.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// let records = readthrough::IdempotencyStore::new(&cache);
    /// assert_eq!(records.lookup("order-17").await?, None);
    /// # Ok(()) }
    /// ```
    pub fn new(cache: &Cache) -> IdempotencyStore {
        let folder = cache.folder();
        IdempotencyStore {
            records: Arc::new(Records {
                base: folder.base.clone(),
                perms: folder.perms,
                durable: folder.durable,
                clock: Arc::clone(&folder.clock),
            }),
        }
    }

    /// Stores a record under `id` unless a live one is there. An expired record not
    /// yet pruned counts as absent and is replaced.
    ///
    /// # Errors
    /// [`Error::RecordExists`] when a live record has this id (it is left as it is);
    /// [`Error::InvalidKey`] for an empty id or one longer than 64 KiB;
    /// [`Error::InvalidSetting`] for data longer than [`MAX_DATA`](Self::MAX_DATA) or
    /// a fingerprint longer than 64 KiB; [`Error::Io`] when the file cannot be
    /// written.
    ///
    /// # Cancellation
    /// The insert runs on a blocking thread: dropping the future does not stop it once
    /// it has started. The record is then stored whole or not at all, never in part;
    /// look it up to learn which.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use std::time::{Duration, SystemTime};
    /// use readthrough::Error;
    /// let records = readthrough::IdempotencyStore::new(&cache);
    /// let expires_at = SystemTime::now() + Duration::from_secs(3600);
    /// records.insert("order-17", vec![1, 2, 3], "sha256:ab12", expires_at).await?;
    /// let err = records.insert("order-17", "other", "sha256:cd34", expires_at).await.unwrap_err();
    /// assert!(matches!(err, Error::RecordExists { id } if id == "order-17"));
    /// # Ok(()) }
    /// ```
    pub async fn insert(
        &self,
        id: &str,
        data: impl Into<Bytes>,
        fingerprint: &str,
        expires_at: SystemTime,
    ) -> Result<()> {
        self.insert_bytes(id, data.into(), fingerprint, expires_at)
            .await
    }

    async fn insert_bytes(
        &self,
        id: &str,
        data: Bytes,
        fingerprint: &str,
        expires_at: SystemTime,
    ) -> Result<()> {
        check(id, fingerprint, &data)?;
        let header = Header {
            version: RECORD_VERSION,
            id: id.to_owned(),
            fingerprint: fingerprint.to_owned(),
            expires_at_ms: unix_millis(expires_at),
            len: data.len() as u64,
        };
        let inserted = self
            .change("insert record", id, move |records, path| {
                if records.live(path, &header.id, false)?.is_some() {
                    return Ok(false);
                }
                records.write(path, &header.encode(&data))?;
                Ok(true)
            })
            .await?;
        inserted
            .then_some(())
            .ok_or_else(|| Error::RecordExists { id: id.to_owned() })
    }

    /// The live record stored under `id`; `None` when there is none, it has expired,
    /// or its file is damaged (a warning is logged then). Takes no lock: a lookup
    /// during an update sees the record before it or after it.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty id; [`Error::Io`] when the file is there but
    /// cannot be read.
    ///
    /// # Cancellation
    /// Dropping the future leaves everything as it was.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use std::time::{Duration, SystemTime};
    /// let records = readthrough::IdempotencyStore::new(&cache);
    /// assert_eq!(records.lookup("order-17").await?, None);
    /// let expires_at = SystemTime::now() + Duration::from_secs(3600);
    /// records.insert("order-17", "201 Created", "sha256:ab12", expires_at).await?;
    /// let record = records.lookup("order-17").await?.unwrap();
    /// assert_eq!(record.data, "201 Created");
    /// assert_eq!(record.fingerprint, "sha256:ab12");
    /// # Ok(()) }
    /// ```
    pub async fn lookup(&self, id: &str) -> Result<Option<IdempotencyRecord>> {
        check_id(id)?;
        let path = self.records.path_of(id);
        let (records, at, owned_id) = (Arc::clone(&self.records), path.clone(), id.to_owned());
        let found = blocking(move || records.live(&at, &owned_id, true))
            .await
            .map_err(|e| Error::io("read record", path, e))?;
        Ok(found.map(|(header, data)| IdempotencyRecord {
            id: header.id,
            data,
            fingerprint: header.fingerprint,
            expires_at: from_unix_millis(header.expires_at_ms),
        }))
    }

    /// Replaces the data and the expiry of the live record under `id`, keeping its
    /// fingerprint.
    ///
    /// # Errors
    /// [`Error::RecordMissing`] when no live record has this id (nothing is stored
    /// then); [`Error::InvalidKey`] for an empty id; [`Error::InvalidSetting`] for data
    /// longer than [`MAX_DATA`](Self::MAX_DATA); [`Error::Io`] when the file cannot be
    /// read or written.
    ///
    /// # Cancellation
    /// The update runs on a blocking thread: dropping the future does not stop it once
    /// it has started. The record then holds the old data or the new, never a mix.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use std::time::{Duration, SystemTime};
    /// use readthrough::Error;
    /// let records = readthrough::IdempotencyStore::new(&cache);
    /// let soon = SystemTime::now() + Duration::from_secs(60);
    /// let err = records.update("order-17", "201 Created", soon).await.unwrap_err();
    /// assert!(matches!(err, Error::RecordMissing { .. }));
    ///
    /// records.insert("order-17", "pending", "sha256:ab12", soon).await?;
    /// records.update("order-17", "201 Created", soon + Duration::from_secs(3600)).await?;
    /// let record = records.lookup("order-17").await?.unwrap();
    /// assert_eq!(record.data, "201 Created");
    /// assert_eq!(record.fingerprint, "sha256:ab12"); // kept from the insert
    /// # Ok(()) }
    /// ```
    pub async fn update(
        &self,
        id: &str,
        data: impl Into<Bytes>,
        expires_at: SystemTime,
    ) -> Result<()> {
        self.update_bytes(id, data.into(), expires_at).await
    }

    async fn update_bytes(&self, id: &str, data: Bytes, expires_at: SystemTime) -> Result<()> {
        check(id, "", &data)?;
        let owned_id = id.to_owned();
        let updated = self
            .change("update record", id, move |records, path| {
                let Some((old, _)) = records.live(path, &owned_id, false)? else {
                    return Ok(false);
                };
                let header = Header {
                    expires_at_ms: unix_millis(expires_at),
                    len: data.len() as u64,
                    ..old
                };
                records.write(path, &header.encode(&data))?;
                Ok(true)
            })
            .await?;
        updated
            .then_some(())
            .ok_or_else(|| Error::RecordMissing { id: id.to_owned() })
    }

    /// Removes the record under `id`; returns whether a live one was there. The file
    /// of an expired or damaged record is removed too, but that returns `false`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty id; [`Error::Io`] when the file cannot be
    /// read or removed.
    ///
    /// # Cancellation
    /// The removal runs on a blocking thread: dropping the future does not stop it
    /// once it has started.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use std::time::{Duration, SystemTime};
    /// let records = readthrough::IdempotencyStore::new(&cache);
    /// let expires_at = SystemTime::now() + Duration::from_secs(3600);
    /// records.insert("order-17", "201 Created", "sha256:ab12", expires_at).await?;
    /// assert!(records.remove("order-17").await?);
    /// assert!(!records.remove("order-17").await?);
    /// assert_eq!(records.lookup("order-17").await?, None);
    /// # Ok(()) }
    /// ```
    pub async fn remove(&self, id: &str) -> Result<bool> {
        check_id(id)?;
        let owned_id = id.to_owned();
        self.change("remove record", id, move |records, path| {
            let live = match Records::read(path, false)? {
                Found::Missing => return Ok(false),
                Found::Record(header, _) if header.id != owned_id => {
                    tracing::warn!(
                        path = %path.display(), id = %owned_id, stored = %header.id,
                        "a record file holds another id; leaving it"
                    );
                    return Ok(false);
                }
                Found::Record(header, _) => records.is_live(&header),
                Found::Garbage(_) => false,
            };
            sys::remove_if_there(path)?;
            if records.durable {
                sys::sync_dir(path.parent().expect("a record path has a parent"))?;
            }
            Ok(live)
        })
        .await
    }

    /// Removes the records that have expired, and files in the records folder that
    /// are not records or that this process may not read (a warning is logged for
    /// each); returns how many files it removed. Live records stay.
    ///
    /// # Errors
    /// [`Error::Io`] when the records folder cannot be listed or a file cannot be
    /// removed; what was removed before stays removed.
    ///
    /// # Cancellation
    /// The pruning runs on a blocking thread: dropping the future does not stop it
    /// once it has started.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use std::time::{Duration, SystemTime};
    /// let records = readthrough::IdempotencyStore::new(&cache);
    /// let now = SystemTime::now();
    /// records.insert("old", "x", "f", now - Duration::from_secs(1)).await?;
    /// records.insert("new", "y", "f", now + Duration::from_secs(3600)).await?;
    /// assert_eq!(records.prune().await?, 1);
    /// assert!(records.lookup("new").await?.is_some());
    /// # Ok(()) }
    /// ```
    pub async fn prune(&self) -> Result<u64> {
        let records = Arc::clone(&self.records);
        let dir = records.dir();
        blocking(move || {
            let _guard = records.lock()?;
            records.prune()
        })
        .await
        .map_err(|e| Error::io("prune records", dir, e))
    }

    /// Runs `change` of the record `id` (given its path) on a blocking thread, holding
    /// the guard.
    async fn change<T: Send + 'static>(
        &self,
        op: &'static str,
        id: &str,
        change: impl FnOnce(&Records, &Path) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (records, path) = (Arc::clone(&self.records), self.records.path_of(id));
        let at = path.clone();
        blocking(move || {
            let _guard = records.lock()?;
            change(&records, &at)
        })
        .await
        .map_err(|e| Error::io(op, path, e))
    }
}

impl Records {
    /// The records folder.
    fn dir(&self) -> PathBuf {
        self.base.join(RECORDS_DIR)
    }

    /// The file of the record `id`.
    fn path_of(&self, id: &str) -> PathBuf {
        let (shard, name) = ShardedLayout::split(id);
        self.dir().join(shard).join(name)
    }

    /// Waits for the guard that changes of records hold; released when the file is
    /// dropped.
    fn lock(&self) -> io::Result<File> {
        let dir = self.dir();
        sys::in_dir(&dir, self.perms, || {
            sys::guard(&dir.join(GUARD), Hold::Exclusive, self.perms)
        })
    }

    /// Replaces the file at `path` with `file`, atomically.
    fn write(&self, path: &Path, file: &[u8]) -> io::Result<()> {
        let shard = path.parent().expect("a record path has a parent");
        let tmp = self.base.join("tmp");
        sys::in_dir(shard, self.perms, || {
            atomic::write_atomic(
                &tmp,
                path,
                file,
                SystemTime::now(),
                self.durable,
                self.perms,
            )
        })?;
        if self.durable {
            sys::sync_dir(shard)?;
        }
        Ok(())
    }

    /// Whether a record has not expired by the clock.
    fn is_live(&self, header: &Header) -> bool {
        header.expires_at_ms > unix_millis(self.clock.now())
    }

    /// The live record of `id` at `path`, with its data when `with_data`. Anything
    /// else there (nothing, an expired record, another id's record, a damaged file)
    /// is `None`.
    fn live(&self, path: &Path, id: &str, with_data: bool) -> io::Result<Option<(Header, Bytes)>> {
        match Self::read(path, with_data)? {
            Found::Missing => Ok(None),
            Found::Garbage(reason) => {
                tracing::warn!(
                    path = %path.display(), %id, %reason,
                    "not serving a damaged idempotency record"
                );
                Ok(None)
            }
            Found::Record(header, _) if header.id != id => {
                tracing::warn!(
                    path = %path.display(), %id, stored = %header.id,
                    "a record file holds another id; not serving it"
                );
                Ok(None)
            }
            Found::Record(header, data) => Ok(self.is_live(&header).then_some((header, data))),
        }
    }

    /// Reads the record file at `path`, without following a symlink, and checks its
    /// form: a header of this version and exactly the data it announces.
    fn read(path: &Path, with_data: bool) -> io::Result<Found> {
        let file = match sys::open_read(path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Found::Missing),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
                return Ok(Found::Garbage("a symlink".into()));
            }
            Err(e) => return Err(e),
        };
        let stat = file.metadata()?;
        if !stat.is_file() {
            return Ok(Found::Garbage("not a regular file".into()));
        }
        let size = stat.len();
        let head = sys::read_exact_or_eof(&file, 0, MAX_HEADER.min(size as usize))?;
        let Some(end) = head.iter().position(|b| *b == b'\n') else {
            return Ok(Found::Garbage("no header line".into()));
        };
        let header: Header = match serde_json::from_slice(&head[..end]) {
            Ok(header) => header,
            Err(e) => return Ok(Found::Garbage(format!("its header is not JSON: {e}"))),
        };
        if header.version != RECORD_VERSION {
            return Ok(Found::Garbage(format!("version {}", header.version)));
        }
        let start = end as u64 + 1;
        if size - start != header.len || header.len > IdempotencyStore::MAX_DATA as u64 {
            return Ok(Found::Garbage(format!(
                "{} bytes of data where its header says {}",
                size - start,
                header.len
            )));
        }
        if !with_data {
            return Ok(Found::Record(header, Bytes::new()));
        }
        let data = sys::read_exact_or_eof(&file, start, header.len as usize)?;
        if data.len() as u64 != header.len {
            return Ok(Found::Garbage("its data ends early".into()));
        }
        Ok(Found::Record(header, data.into()))
    }

    /// Removes expired records and files that are not records (or that this process
    /// may not read); returns how many. Call it holding the guard.
    fn prune(&self) -> io::Result<u64> {
        let mut removed = 0;
        for shard in sys::read_dir_if_there(&self.dir())? {
            if !shard.file_type()?.is_dir() {
                continue;
            }
            for entry in sys::read_dir_if_there(&shard.path())? {
                if entry.file_type()?.is_dir() {
                    continue;
                }
                let path = entry.path();
                let expired = match Self::read(&path, false) {
                    Ok(Found::Missing) => continue,
                    Ok(Found::Record(header, _)) if path == self.path_of(&header.id) => {
                        !self.is_live(&header)
                    }
                    Ok(Found::Record(header, _)) => {
                        tracing::warn!(
                            path = %path.display(), stored = %header.id,
                            "removing a record file named for another id"
                        );
                        true
                    }
                    Ok(Found::Garbage(reason)) => {
                        tracing::warn!(
                            path = %path.display(), %reason,
                            "removing a damaged idempotency record"
                        );
                        true
                    }
                    Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                        tracing::warn!(
                            path = %path.display(), %error,
                            "removing an unreadable idempotency record"
                        );
                        true
                    }
                    Err(error) => return Err(error),
                };
                if expired && sys::remove_if_there(&path)? {
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}

/// Refuses an id no record can have.
fn check_id(id: &str) -> Result<()> {
    let reason = if id.is_empty() {
        "an idempotency id must not be empty"
    } else if id.len() > MAX_ID {
        "an idempotency id must be at most 64 KiB"
    } else {
        return Ok(());
    };
    Err(Error::InvalidKey { reason })
}

/// Refuses a record too large to store.
fn check(id: &str, fingerprint: &str, data: &[u8]) -> Result<()> {
    check_id(id)?;
    if fingerprint.len() > MAX_ID {
        return Err(Error::InvalidSetting(
            "an idempotency record's fingerprint must be at most 64 KiB",
        ));
    }
    if data.len() > IdempotencyStore::MAX_DATA {
        return Err(Error::InvalidSetting(
            "an idempotency record's data must be at most 64 MiB",
        ));
    }
    Ok(())
}

/// The time `ms` milliseconds after the Unix epoch. Every `u64` of milliseconds fits
/// the Unix `SystemTime` (an `i64` of seconds); the epoch stands in if one did not.
fn from_unix_millis(ms: u64) -> SystemTime {
    meta::from_unix_millis(ms).unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn header(id: &str, len: u64) -> Header {
        Header {
            version: RECORD_VERSION,
            id: id.into(),
            fingerprint: "f\n\"".into(),
            expires_at_ms: u64::MAX,
            len,
        }
    }

    #[test]
    fn files_round_trip_and_garbage_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r");
        let good = header("id\n\0", 4);
        std::fs::write(&path, good.encode(b"da\nt")).unwrap();
        match Records::read(&path, true).unwrap() {
            Found::Record(header, data) => {
                assert_eq!((header, data.as_ref()), (good.clone(), &b"da\nt"[..]))
            }
            other => panic!("{other:?}"),
        }
        let mut newer = good.clone();
        newer.version = 2;
        for bad in [
            good.encode(b"dat"),
            good.encode(b"data!"),
            newer.encode(b"data"),
            b"{\"version\":1}\n".to_vec(),
            b"no header".to_vec(),
            Vec::new(),
        ] {
            std::fs::write(&path, &bad).unwrap();
            let found = Records::read(&path, true).unwrap();
            assert!(matches!(found, Found::Garbage(_)), "{bad:?} gave {found:?}");
        }
        std::fs::remove_file(&path).unwrap();
        assert!(matches!(
            Records::read(&path, true).unwrap(),
            Found::Missing
        ));
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &path).unwrap();
        assert!(matches!(
            Records::read(&path, true).unwrap(),
            Found::Garbage(_)
        ));
    }

    #[test]
    fn times_saturate() {
        assert_eq!(unix_millis(UNIX_EPOCH - Duration::from_secs(1)), 0);
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(unix_millis(far), u64::MAX);
        assert!(from_unix_millis(u64::MAX) > UNIX_EPOCH + Duration::from_secs(1 << 50));
        let exact = UNIX_EPOCH + Duration::from_millis(1_700_000_000_123);
        assert_eq!(
            from_unix_millis(unix_millis(exact + Duration::from_micros(999))),
            exact
        );
    }

    #[test]
    fn sizes_are_checked() {
        assert!(matches!(check("", "", b""), Err(Error::InvalidKey { .. })));
        let long = "x".repeat(MAX_ID + 1);
        assert!(matches!(
            check(&long, "", b""),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            check("a", &long, b""),
            Err(Error::InvalidSetting(_))
        ));
        assert!(check("a", &long[1..], b"").is_ok());
        let worst = header(&"\0".repeat(MAX_ID), 0);
        let worst = Header {
            fingerprint: worst.id.clone(),
            ..worst
        };
        assert!(worst.encode(b"").len() <= MAX_HEADER);
    }
}
