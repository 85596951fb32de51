//! The record file: a header line of JSON, then the data it announces; reading one
//! checks its form, and the limits on what a record may hold.

use std::io;
use std::time::SystemTime;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use super::IdempotencyStore;
use crate::error::{Error, Result};
use crate::kv::records;
use crate::store::meta::split_time;
use crate::sys::{self, RootedPath};

/// The format version written into every record.
pub(super) const RECORD_VERSION: u32 = 1;

/// The longest id, and the longest fingerprint, a record may have.
const MAX_ID: usize = 64 << 10;

/// The longest header line read. An id and a fingerprint of [`MAX_ID`] bytes each fit
/// even when every byte is escaped in JSON (six bytes for one).
const MAX_HEADER: usize = 1 << 20;

/// The first line of a record file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct Header {
    pub(super) version: u32,
    pub(super) id: String,
    pub(super) fingerprint: String,
    /// When the record expires: milliseconds since the Unix epoch (all that version 1
    /// kept, and all that builds before the next field read)...
    pub(super) expires_at_ms: u64,
    /// ...and the nanoseconds past that millisecond, so that an expiry comes back
    /// exactly as given. Missing (0) in records written before it; builds before it
    /// ignore it, which is why the version stays 1.
    #[serde(default)]
    pub(super) expires_at_frac_ns: u32,
    /// The length of the data after the header line.
    pub(super) len: u64,
}

impl Header {
    /// When the record expires, to the nanosecond.
    pub(super) fn expires_at(&self) -> SystemTime {
        records::time_of(self.expires_at_ms, self.expires_at_frac_ns)
    }

    /// This header, expiring at `at`.
    pub(super) fn expiring(self, at: SystemTime) -> Self {
        let (expires_at_ms, expires_at_frac_ns) = split_time(at);
        Header {
            expires_at_ms,
            expires_at_frac_ns,
            ..self
        }
    }

    /// The bytes of a record file: this header as a line of JSON, then `data`.
    pub(super) fn encode(&self, data: &[u8]) -> Vec<u8> {
        let mut file = serde_json::to_vec(self).expect("a record header serializes");
        file.push(b'\n');
        file.extend_from_slice(data);
        file
    }
}

/// What a record file holds.
#[derive(Debug)]
pub(super) enum Stored {
    Missing,
    /// A file that is not a record this version reads, and why.
    Garbage(String),
    /// A well-formed record, with its data when it was asked for (empty otherwise).
    Record(Header, Bytes),
}

/// Reads the record file at `path`, without following a symlink, and checks its
/// form: a header of this version and exactly the data it announces.
pub(super) fn read(path: &RootedPath, with_data: bool) -> io::Result<Stored> {
    let file = match records::open(path) {
        Ok(Some(file)) => file,
        Ok(None) => return Ok(Stored::Missing),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => {
            return Ok(Stored::Garbage("a symlink".into()));
        }
        Err(e) => return Err(e),
    };
    let stat = file.metadata()?;
    if !stat.is_file() {
        return Ok(Stored::Garbage("not a regular file".into()));
    }
    let size = stat.len();
    let head = records::read_capped(&file, MAX_HEADER.min(size as usize))?.into_bytes();
    let Some(end) = head.iter().position(|b| *b == b'\n') else {
        return Ok(Stored::Garbage("no header line".into()));
    };
    let header: Header = match serde_json::from_slice(&head[..end]) {
        Ok(header) => header,
        Err(e) => return Ok(Stored::Garbage(format!("its header is not JSON: {e}"))),
    };
    if header.version != RECORD_VERSION {
        return Ok(Stored::Garbage(format!("version {}", header.version)));
    }
    let start = end as u64 + 1;
    if size - start != header.len || header.len > IdempotencyStore::MAX_DATA as u64 {
        return Ok(Stored::Garbage(format!(
            "{} bytes of data where its header says {}",
            size - start,
            header.len
        )));
    }
    if !with_data {
        return Ok(Stored::Record(header, Bytes::new()));
    }
    let data = sys::read_exact_or_eof(&file, start, header.len as usize)?;
    if data.len() as u64 != header.len {
        return Ok(Stored::Garbage("its data ends early".into()));
    }
    Ok(Stored::Record(header, data.into()))
}

/// Refuses an id no record can have.
pub(super) fn check_id(id: &str) -> Result<()> {
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
pub(super) fn check_sizes(id: &str, fingerprint: &str, data: &[u8]) -> Result<()> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn header(id: &str, len: u64) -> Header {
        Header {
            version: RECORD_VERSION,
            id: id.into(),
            fingerprint: "f\n\"".into(),
            expires_at_ms: u64::MAX,
            expires_at_frac_ns: 0,
            len,
        }
    }

    #[test]
    fn files_round_trip_and_garbage_is_refused() {
        let (dir, root) = crate::sys::tmp_root();
        let path = root.join("r");
        let file = path.path();
        let good = header("id\n\0", 4);
        std::fs::write(&file, good.encode(b"da\nt")).unwrap();
        match read(&path, true).unwrap() {
            Stored::Record(header, data) => {
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
            std::fs::write(&file, &bad).unwrap();
            let found = read(&path, true).unwrap();
            assert!(
                matches!(found, Stored::Garbage(_)),
                "{bad:?} gave {found:?}"
            );
        }
        std::fs::remove_file(&file).unwrap();
        assert!(matches!(read(&path, true).unwrap(), Stored::Missing));
        std::os::unix::fs::symlink(dir.path().join("elsewhere"), &file).unwrap();
        assert!(matches!(read(&path, true).unwrap(), Stored::Garbage(_)));
    }

    #[test]
    fn expiries_keep_nanoseconds_and_both_versions_of_the_header_read_each_other() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = UNIX_EPOCH + Duration::new(1_700_000_000, 100_123_456);
        let header = header("id", 0).expiring(at);
        assert_eq!(header.expires_at(), at);
        let line = serde_json::to_string(&header).unwrap();
        assert!(line.contains(r#""expires_at_ms":1700000000100,"expires_at_frac_ns":123456"#));
        // A header written before the nanoseconds were kept reads to the millisecond.
        let old =
            r#"{"version":1,"id":"a","fingerprint":"f","expires_at_ms":1700000000100,"len":0}"#;
        let old: Header = serde_json::from_str(old).unwrap();
        assert_eq!(old.expires_at(), at - Duration::from_nanos(123_456));
        // A build that knows only the milliseconds reads a new header.
        #[derive(Deserialize)]
        struct Before {
            version: u32,
            expires_at_ms: u64,
        }
        let before: Before = serde_json::from_str(&line).unwrap();
        assert_eq!(
            (before.version, before.expires_at_ms),
            (1, 1_700_000_000_100)
        );
    }

    #[test]
    fn sizes_are_checked() {
        assert!(matches!(
            check_sizes("", "", b""),
            Err(Error::InvalidKey { .. })
        ));
        let long = "x".repeat(MAX_ID + 1);
        assert!(matches!(
            check_sizes(&long, "", b""),
            Err(Error::InvalidKey { .. })
        ));
        assert!(matches!(
            check_sizes("a", &long, b""),
            Err(Error::InvalidSetting(_))
        ));
        assert!(check_sizes("a", &long[1..], b"").is_ok());
        let worst = header(&"\0".repeat(MAX_ID), 0);
        let worst = Header {
            fingerprint: worst.id.clone(),
            ..worst
        };
        assert!(worst.encode(b"").len() <= MAX_HEADER);
    }
}
