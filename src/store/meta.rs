//! The small metadata file kept beside each blob (`<store path>.meta`).

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sys::{Perms, RootedPath, TmpFile};

/// The format version written into every metadata file. Version 3 binds the
/// metadata to its blob file ([`BlobId`]); version 2 files (times in milliseconds, no
/// binding) and version 1 files (times in seconds) are still read.
pub(crate) const META_VERSION: u32 = 3;

/// Which file a metadata file describes: the blob's inode and its birth time in
/// nanoseconds (its modification time where the file system keeps no birth time). A
/// metadata file is paired only with the blob it names, so a read that opens one
/// version of a blob and then finds another version's metadata sees the mismatch
/// instead of trusting it: two versions that are both in the directory have different
/// inodes, and an inode that is freed and given to a later blob gets a new birth time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct BlobId {
    pub(crate) ino: u64,
    pub(crate) born_ns: u64,
}

impl BlobId {
    /// The identity of the file whose status is `stat`.
    pub(crate) fn of(stat: &std::fs::Metadata) -> Self {
        use std::os::unix::fs::MetadataExt;
        let born = stat
            .created()
            .ok()
            .and_then(|at| at.duration_since(UNIX_EPOCH).ok());
        let born_ns = match born {
            Some(since) => u64::try_from(since.as_nanos()).unwrap_or(u64::MAX),
            None => {
                let secs = u64::try_from(stat.mtime()).unwrap_or(0);
                let nanos = u64::try_from(stat.mtime_nsec()).unwrap_or(0);
                secs.saturating_mul(1_000_000_000).saturating_add(nanos)
            }
        };
        BlobId {
            ino: stat.ino(),
            born_ns,
        }
    }
}

/// What the cache remembers about a stored blob.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct EntryMeta {
    pub(crate) version: u32,
    pub(crate) key: String,
    pub(crate) size: u64,
    /// Milliseconds since the Unix epoch.
    pub(crate) created_ms: u64,
    /// When the entry stops being served, in milliseconds since the Unix epoch; never
    /// when absent.
    #[serde(default)]
    pub(crate) expires_ms: Option<u64>,
    /// The entry's time to live in milliseconds, kept so a read can extend it.
    #[serde(default)]
    pub(crate) ttl_ms: Option<u64>,
    pub(crate) sha256: String,
    pub(crate) validator: Option<String>,
    pub(crate) content_type: Option<String>,
    /// The blob this describes; `None` only in metadata of version 2 and older.
    #[serde(default)]
    pub(crate) blob: Option<BlobId>,
    /// The boot (the kernel's boot id, or `""` where it cannot be read) the blob was
    /// published in without being flushed; `None` once it is known flushed, and in
    /// metadata of older versions (which flushed before publishing by default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) unflushed_boot: Option<String>,
}

impl EntryMeta {
    /// Metadata for a blob stored `now`, living for `ttl` (forever when `None`).
    pub(crate) fn new(
        key: &str,
        size: u64,
        sha256: [u8; 32],
        now: SystemTime,
        ttl: Option<Duration>,
    ) -> Self {
        let created = unix_millis(now);
        let ttl = ttl.map(millis);
        EntryMeta {
            version: META_VERSION,
            key: key.to_owned(),
            size,
            created_ms: created,
            expires_ms: ttl.map(|ttl| created.saturating_add(ttl)),
            ttl_ms: ttl,
            sha256: hex::encode(sha256),
            validator: None,
            content_type: None,
            blob: None,
            unflushed_boot: None,
        }
    }

    /// Whether this metadata may describe the blob file `blob`: it names that file,
    /// or (written by an older version) names none.
    pub(crate) fn describes(&self, blob: BlobId) -> bool {
        self.blob.is_none_or(|named| named == blob)
    }

    /// This metadata bound to the blob file `blob`, in the current format.
    pub(crate) fn bound_to(mut self, blob: BlobId) -> Self {
        self.version = META_VERSION;
        self.blob = Some(blob);
        self
    }

    /// This metadata marked as describing a blob published without a flush in this
    /// boot.
    pub(crate) fn unflushed(mut self) -> Self {
        self.unflushed_boot = Some(crate::sys::boot_id().unwrap_or_default().to_owned());
        self
    }

    /// Whether its blob was published without a flush in a boot other than this one
    /// (so that it may have lost bytes in a crash), and must be checked before it is
    /// served.
    pub(crate) fn unflushed_before_this_boot(&self) -> bool {
        self.unflushed_boot
            .as_deref()
            .is_some_and(|boot| boot.is_empty() || Some(boot) != crate::sys::boot_id())
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata serializes")
    }

    /// Parses a metadata file; `None` for anything malformed or of another version.
    pub(crate) fn decode(data: &[u8]) -> Option<Self> {
        match serde_json::from_slice::<EntryMeta>(data) {
            Ok(meta) if meta.version == META_VERSION => meta.blob.is_some().then_some(meta),
            Ok(meta) => (meta.version == 2 && meta.blob.is_none()).then_some(meta),
            Err(_) => serde_json::from_slice::<EntryMetaV1>(data)
                .ok()
                .filter(|old| old.version == 1)
                .map(EntryMetaV1::upgrade),
        }
    }

    /// This metadata in a complete tmp file in `tmp_dir`, stamped as read at `now` (a
    /// metadata file's modification time is its entry's last read), for the caller to
    /// rename into place once it has checked it still may.
    pub(crate) fn prepare(
        &self,
        tmp_dir: &RootedPath,
        durable: bool,
        now: SystemTime,
        perms: Perms,
    ) -> std::io::Result<TmpFile> {
        crate::store::atomic::prepare_atomic(tmp_dir, &self.encode(), now, durable, perms)
    }
}

/// Metadata as version 1 wrote it: times in whole seconds. Read so a cache written
/// by an older build keeps its entries.
#[derive(Deserialize)]
struct EntryMetaV1 {
    version: u32,
    key: String,
    size: u64,
    created: u64,
    #[serde(default)]
    expires: Option<u64>,
    #[serde(default)]
    ttl: Option<u64>,
    sha256: String,
    validator: Option<String>,
    content_type: Option<String>,
}

impl EntryMetaV1 {
    fn upgrade(self) -> EntryMeta {
        let ms = |secs: u64| secs.saturating_mul(1000);
        EntryMeta {
            version: 2,
            key: self.key,
            size: self.size,
            created_ms: ms(self.created),
            expires_ms: self.expires.map(ms),
            ttl_ms: self.ttl.map(ms),
            sha256: self.sha256,
            validator: self.validator,
            content_type: self.content_type,
            blob: None,
            unflushed_boot: None,
        }
    }
}

/// An entry's last-read time is refreshed at most this often, so hits stay cheap.
pub(crate) const LAST_READ_EVERY: Duration = Duration::from_secs(60);

/// Records a read at `now` of the entry whose metadata file is at `path`, last
/// modified at `last_read`. Its last-read time is that file's modification time,
/// refreshed here when older than [`LAST_READ_EVERY`]. Best effort: a read never fails
/// for this.
pub(crate) fn note_read(path: &RootedPath, last_read: SystemTime, now: SystemTime) {
    if now
        .duration_since(last_read)
        .is_ok_and(|age| age > LAST_READ_EVERY)
    {
        let touched = path.open_rw().and_then(|file| file.set_modified(now));
        if let Err(e) = touched {
            tracing::debug!(%path, error = %e, "could not record a read");
        }
    }
}

/// Milliseconds since the Unix epoch (0 before it, saturating far after it).
pub(crate) fn unix_millis(time: SystemTime) -> u64 {
    time.duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

/// A duration in whole milliseconds, rounded up so a short time to live is never
/// shortened to nothing; saturating.
pub(crate) fn millis(duration: Duration) -> u64 {
    let ms = duration.as_nanos().div_ceil(1_000_000);
    u64::try_from(ms).unwrap_or(u64::MAX)
}

/// The time `ms` milliseconds after the Unix epoch; `None` past what the system's
/// time can hold.
pub(crate) fn from_unix_millis(ms: u64) -> Option<SystemTime> {
    UNIX_EPOCH.checked_add(Duration::from_millis(ms))
}

/// A time as the key-value record files keep it exactly: whole milliseconds since the
/// Unix epoch, and the nanoseconds past that millisecond (below 1,000,000). Times
/// before the epoch count as the epoch; times too far ahead for a `u64` of
/// milliseconds as the farthest that fits, with no nanoseconds.
pub(crate) fn split_time(time: SystemTime) -> (u64, u32) {
    let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
    match u64::try_from(since.as_millis()) {
        Ok(ms) => (ms, since.subsec_nanos() % 1_000_000),
        Err(_) => (u64::MAX, 0),
    }
}

/// The time [`split_time`] split: `ms` milliseconds and `frac_ns` nanoseconds after the
/// Unix epoch (nanoseconds past a millisecond's worth are ignored); `None` past what
/// the system's time can hold.
pub(crate) fn join_time(ms: u64, frac_ns: u32) -> Option<SystemTime> {
    let frac = Duration::from_nanos(u64::from(frac_ns % 1_000_000));
    from_unix_millis(ms)?.checked_add(frac)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_garbage() {
        let mut meta = EntryMeta::new(
            "k\0/..",
            3,
            [7; 32],
            SystemTime::now(),
            Some(Duration::from_secs(9)),
        );
        meta.validator = Some("\"e\"".into());
        assert_eq!(
            EntryMeta::decode(&meta.encode()),
            None,
            "the current version names its blob"
        );
        let blob = BlobId {
            ino: 12,
            born_ns: 1_700_000_000_123_456_789,
        };
        let mut meta = meta.bound_to(blob);
        assert_eq!(EntryMeta::decode(&meta.encode()), Some(meta.clone()));
        assert!(meta.describes(blob));
        assert!(!meta.describes(BlobId { ino: 13, ..blob }));
        assert_eq!(EntryMeta::decode(b""), None);
        assert_eq!(EntryMeta::decode(b"{\"version\":2}"), None);
        assert_eq!(meta.expires_ms, Some(meta.created_ms + 9000));
        meta.version = 4;
        assert_eq!(EntryMeta::decode(&meta.encode()), None);
    }

    #[test]
    fn reads_the_second_version_unbound() {
        let v2 = br#"{"version":2,"key":"k","size":3,"created_ms":1700000000123,"expires_ms":null,"ttl_ms":null,"sha256":"ab","validator":"\"v\"","content_type":null}"#;
        let meta = EntryMeta::decode(v2).unwrap();
        assert_eq!(
            (meta.version, meta.blob, meta.created_ms),
            (2, None, 1_700_000_000_123)
        );
        let any = BlobId { ino: 1, born_ns: 2 };
        assert!(
            meta.describes(any),
            "an unbound entry pairs by its length alone"
        );
        assert_eq!(meta.bound_to(any).version, META_VERSION);
    }

    #[test]
    fn reads_the_first_version_in_seconds() {
        let v1 = br#"{"version":1,"key":"k","size":3,"created":1700000000,"expires":1700000060,"ttl":60,"sha256":"ab","validator":null,"content_type":"text/plain"}"#;
        let meta = EntryMeta::decode(v1).unwrap();
        assert_eq!((meta.version, meta.blob), (2, None));
        assert_eq!(meta.created_ms, 1_700_000_000_000);
        assert_eq!(meta.expires_ms, Some(1_700_000_060_000));
        assert_eq!(meta.ttl_ms, Some(60_000));
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
        assert_eq!(EntryMeta::decode(&v1[..v1.len() - 1]), None);
    }

    #[test]
    fn split_times_join_exactly() {
        let exact = UNIX_EPOCH + Duration::new(1_700_000_000, 100_123_456);
        assert_eq!(split_time(exact), (1_700_000_000_100, 123_456));
        assert_eq!(join_time(1_700_000_000_100, 123_456), Some(exact));
        assert_eq!(split_time(UNIX_EPOCH - Duration::from_secs(1)), (0, 0));
        let far = UNIX_EPOCH + Duration::from_secs(u64::MAX / 4);
        assert_eq!(split_time(far), (u64::MAX, 0));
        assert_eq!(
            join_time(5, 2_000_007),
            Some(UNIX_EPOCH + Duration::new(0, 5_000_007))
        );
    }
}
