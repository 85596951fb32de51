//! The small metadata file kept beside each blob (`<store path>.meta`).

use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::sys::Perms;

/// The format version written into every metadata file.
pub(crate) const META_VERSION: u32 = 2;

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
        }
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("metadata serializes")
    }

    /// Parses a metadata file; `None` for anything malformed or of another version.
    pub(crate) fn decode(data: &[u8]) -> Option<Self> {
        match serde_json::from_slice::<EntryMeta>(data) {
            Ok(meta) => (meta.version == META_VERSION).then_some(meta),
            Err(_) => serde_json::from_slice::<EntryMetaV1>(data)
                .ok()
                .filter(|old| old.version == 1)
                .map(EntryMetaV1::upgrade),
        }
    }

    /// Writes this metadata atomically to `path`, through a tmp file in `tmp_dir`,
    /// stamped as read at `now` (a file's modification time is its entry's last read).
    pub(crate) fn write(
        &self,
        tmp_dir: &Path,
        path: &Path,
        durable: bool,
        now: SystemTime,
        perms: Perms,
    ) -> std::io::Result<()> {
        crate::sys::write_atomic(tmp_dir, path, &self.encode(), now, durable, perms)
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
            version: META_VERSION,
            key: self.key,
            size: self.size,
            created_ms: ms(self.created),
            expires_ms: self.expires.map(ms),
            ttl_ms: self.ttl.map(ms),
            sha256: self.sha256,
            validator: self.validator,
            content_type: self.content_type,
        }
    }
}

/// An entry's last-read time is refreshed at most this often, so hits stay cheap.
pub(crate) const LAST_READ_EVERY: Duration = Duration::from_secs(60);

/// Records a read at `now` of the entry whose metadata file is at `path`, last
/// modified at `last_read`. Its last-read time is that file's modification time,
/// refreshed here when older than [`LAST_READ_EVERY`]. Best effort: a read never fails
/// for this.
pub(crate) fn note_read(path: &Path, last_read: SystemTime, now: SystemTime) {
    if now
        .duration_since(last_read)
        .is_ok_and(|age| age > LAST_READ_EVERY)
    {
        let touched = crate::sys::no_follow()
            .write(true)
            .open(path)
            .and_then(|file| file.set_modified(now));
        if let Err(e) = touched {
            tracing::debug!(path = %path.display(), error = %e, "could not record a read");
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
        assert_eq!(EntryMeta::decode(&meta.encode()), Some(meta.clone()));
        assert_eq!(EntryMeta::decode(b""), None);
        assert_eq!(EntryMeta::decode(b"{\"version\":2}"), None);
        assert_eq!(meta.expires_ms, Some(meta.created_ms + 9000));
        meta.version = 3;
        assert_eq!(EntryMeta::decode(&meta.encode()), None);
    }

    #[test]
    fn reads_the_first_version_in_seconds() {
        let v1 = br#"{"version":1,"key":"k","size":3,"created":1700000000,"expires":1700000060,"ttl":60,"sha256":"ab","validator":null,"content_type":"text/plain"}"#;
        let meta = EntryMeta::decode(v1).unwrap();
        assert_eq!(meta.version, META_VERSION);
        assert_eq!(meta.created_ms, 1_700_000_000_000);
        assert_eq!(meta.expires_ms, Some(1_700_000_060_000));
        assert_eq!(meta.ttl_ms, Some(60_000));
        assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
        assert_eq!(EntryMeta::decode(&v1[..v1.len() - 1]), None);
    }
}
