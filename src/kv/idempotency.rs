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
//! {"version":1,"id":"…","fingerprint":"…","expires_at_ms":1700000000100,"expires_at_frac_ns":123456,"len":5}
//! ```
//!
//! then the `len` bytes of data. A file whose header does not parse, is of another
//! version, names another id than its file name is for, or whose data is not `len`
//! bytes long is not served (a warning is logged) and [`IdempotencyStore::prune`]
//! removes it. An expiry is kept exactly: milliseconds since the Unix epoch, and the
//! nanoseconds past that millisecond (`expires_at_frac_ns`, added within version 1:
//! older builds ignore it and read the expiry to the millisecond, and a record they
//! wrote, without it, reads to the millisecond).
//!
//! # Concurrency
//!
//! Every change (insert, update, remove, prune) holds the exclusive `flock` of
//! `<dir>/v1/records/guard` while it reads the record and writes or removes it, so
//! of many processes (or tasks) inserting one id exactly one succeeds. Changes to
//! different ids take turns too: the guard is one for the whole folder. Files are
//! replaced by renaming a complete file over them, so a lookup, which takes no lock,
//! sees the old record or the new one, never a part.

mod format;

use std::io;
use std::sync::Arc;
use std::time::SystemTime;

use bytes::Bytes;

use crate::cache::Cache;
use crate::clock::Clock;
use crate::error::{Error, Result};
use crate::kv::records::RecordFolder;
use crate::store::names::RECORDS_DIR;
use crate::sys::{Hold, Kind, RootedPath, blocking_io};

use format::{Header, RECORD_VERSION, Stored, check_id, check_sizes};

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
    /// When it expires: exactly the time given (times before the Unix epoch come back
    /// as the epoch).
    pub expires_at: SystemTime,
}

/// Idempotency records kept in a cache's directory: insert once, look up, update,
/// remove, prune the expired.
///
/// Cheap to clone. Expiry is measured by the cache's [`Clock`](crate::Clock); a record
/// is live while its expiry is later than the clock's time, and an expired record is
/// absent to every call (it can be inserted again) until [`prune`](Self::prune) or an
/// insert removes its file. Expiry times are kept exactly, to the nanosecond, and
/// [`lookup`](Self::lookup) returns the time given; times before the Unix epoch count
/// as the epoch, and times too far ahead to count in milliseconds as a `u64` as the
/// farthest that can.
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
    /// `<dir>/v1/records`.
    folder: RecordFolder,
    clock: Arc<dyn Clock>,
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
                folder: RecordFolder::new(folder, RECORDS_DIR),
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
        check_sizes(id, fingerprint, &data)?;
        let header = Header {
            version: RECORD_VERSION,
            id: id.to_owned(),
            fingerprint: fingerprint.to_owned(),
            expires_at_ms: 0,
            expires_at_frac_ns: 0,
            len: data.len() as u64,
        }
        .expiring(expires_at);
        let exists = |id| Error::RecordExists { id };
        self.change_or("insert record", id, exists, move |records, path| {
            if records.live(path, &header.id, false)?.is_some() {
                return Ok(false);
            }
            records.write(path, &header.encode(&data))?;
            Ok(true)
        })
        .await
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
        let path = self.records.folder.path_of(id);
        let (records, at, owned_id) = (Arc::clone(&self.records), path.clone(), id.to_owned());
        let found = blocking_io("read record", path, move || {
            records.live(&at, &owned_id, true)
        })
        .await?;
        Ok(found.map(|(header, data)| IdempotencyRecord {
            expires_at: header.expires_at(),
            id: header.id,
            data,
            fingerprint: header.fingerprint,
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
        check_sizes(id, "", &data)?;
        let owned_id = id.to_owned();
        let missing = |id| Error::RecordMissing { id };
        self.change_or("update record", id, missing, move |records, path| {
            let Some((old, _)) = records.live(path, &owned_id, false)? else {
                return Ok(false);
            };
            let header = Header {
                len: data.len() as u64,
                ..old
            }
            .expiring(expires_at);
            records.write(path, &header.encode(&data))?;
            Ok(true)
        })
        .await
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
            let live = match format::read(path, false)? {
                Stored::Missing => return Ok(false),
                Stored::Record(header, _) if header.id != owned_id => {
                    tracing::warn!(
                        path = %path, id = %owned_id, stored = %header.id,
                        "a record file holds another id; leaving it"
                    );
                    return Ok(false);
                }
                Stored::Record(header, _) => records.is_live(&header),
                Stored::Garbage(_) => false,
            };
            records.folder.remove(path)?;
            records.folder.sync_shard(path)?;
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
        let dir = records.folder.dir().to_owned();
        blocking_io("prune records", dir, move || {
            let _guard = records.folder.guard(Hold::Exclusive)?;
            records.prune()
        })
        .await
    }

    /// Runs `change` of the record `id` (given its path) on a blocking thread, holding
    /// the guard.
    async fn change<T: Send + 'static>(
        &self,
        op: &'static str,
        id: &str,
        change: impl FnOnce(&Records, &RootedPath) -> io::Result<T> + Send + 'static,
    ) -> Result<T> {
        let (records, path) = (Arc::clone(&self.records), self.records.folder.path_of(id));
        let at = path.clone();
        blocking_io(op, path, move || {
            let _guard = records.folder.guard(Hold::Exclusive)?;
            change(&records, &at)
        })
        .await
    }

    /// Runs `change` as [`change`](Self::change) does; when it returns `false` (it left
    /// the record as it was), fails with the error `refused` makes of `id`.
    async fn change_or(
        &self,
        op: &'static str,
        id: &str,
        refused: fn(String) -> Error,
        change: impl FnOnce(&Records, &RootedPath) -> io::Result<bool> + Send + 'static,
    ) -> Result<()> {
        if self.change(op, id, change).await? {
            Ok(())
        } else {
            Err(refused(id.to_owned()))
        }
    }
}

impl Records {
    /// Replaces the file at `path` with `file`, atomically, and flushes its folder
    /// when durable.
    fn write(&self, path: &RootedPath, file: &[u8]) -> io::Result<()> {
        self.folder.write(path, file, SystemTime::now())?;
        self.folder.sync_shard(path)
    }

    /// Whether a record has not expired by the clock.
    fn is_live(&self, header: &Header) -> bool {
        header.expires_at() > self.clock.now()
    }

    /// The live record of `id` at `path`, with its data when `with_data`. Anything
    /// else there (nothing, an expired record, another id's record, a damaged file)
    /// is `None`.
    fn live(
        &self,
        path: &RootedPath,
        id: &str,
        with_data: bool,
    ) -> io::Result<Option<(Header, Bytes)>> {
        match format::read(path, with_data)? {
            Stored::Missing => Ok(None),
            Stored::Garbage(reason) => {
                tracing::warn!(
                    path = %path, %id, %reason,
                    "not serving a damaged idempotency record"
                );
                Ok(None)
            }
            Stored::Record(header, _) if header.id != id => {
                tracing::warn!(
                    path = %path, %id, stored = %header.id,
                    "a record file holds another id; not serving it"
                );
                Ok(None)
            }
            Stored::Record(header, data) => Ok(self.is_live(&header).then_some((header, data))),
        }
    }

    /// Removes expired records and files that are not records (or that this process
    /// may not read); returns how many. Call it holding the guard.
    fn prune(&self) -> io::Result<u64> {
        let mut removed = 0;
        self.folder.each_entry(|entry| {
            if entry.kind == Kind::Dir {
                return Ok(());
            }
            let path = entry.path.clone();
            if self.is_prunable(&path)? && self.folder.remove(&path)? {
                removed += 1;
            }
            Ok(())
        })?;
        Ok(removed)
    }

    /// Whether pruning removes the file at `path`: an expired record, a record named
    /// for another id, a damaged file or one this process may not read (a warning is
    /// logged for the last three).
    fn is_prunable(&self, path: &RootedPath) -> io::Result<bool> {
        Ok(match format::read(path, false) {
            Ok(Stored::Missing) => false,
            Ok(Stored::Record(header, _)) if self.folder.is_path_of(path, &header.id) => {
                !self.is_live(&header)
            }
            Ok(Stored::Record(header, _)) => {
                tracing::warn!(
                    path = %path, stored = %header.id,
                    "removing a record file named for another id"
                );
                true
            }
            Ok(Stored::Garbage(reason)) => {
                tracing::warn!(
                    path = %path, %reason,
                    "removing a damaged idempotency record"
                );
                true
            }
            Err(error) if error.kind() == io::ErrorKind::PermissionDenied => {
                tracing::warn!(
                    path = %path, %error,
                    "removing an unreadable idempotency record"
                );
                true
            }
            Err(error) => return Err(error),
        })
    }
}
