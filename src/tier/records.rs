//! What the tier's objects hold: the lease of a generation, the manifest of a
//! published copy, and the parts, each checkable on its own.
//!
//! A part is a one-line JSON header (key, generation, index, length and checksum of
//! its data, see [`part_sum`]) followed by the data. A manifest is the hex SHA-256 of
//! its JSON, a newline, then the JSON. A lease is plain JSON: it carries no bytes of
//! the blob.

use bytes::{BufMut, Bytes, BytesMut};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The format of the tier's records.
pub(crate) const FORMAT: u32 = 1;

/// What the origin said when the leader of a generation asked it, so that followers
/// can answer the engine as the origin would have.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Answer {
    pub(crate) len: Option<u64>,
    pub(crate) validator: Option<String>,
    pub(crate) content_type: Option<String>,
    /// When the copy expires (milliseconds since the Unix epoch), if ever.
    pub(crate) expires_ms: Option<u64>,
}

/// Where a generation stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) enum LeaseState {
    /// Its holder is fetching and uploading.
    Running,
    /// Its manifest is published (or its holder found it had lost the lease).
    Done,
    /// Its holder gave up (its origin failed): the next waiter takes over at once.
    Abandoned,
}

/// The lease of one generation: who holds it and how far it got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Lease {
    pub(crate) format: u32,
    pub(crate) key: String,
    pub(crate) generation: u64,
    /// The holder (host name and process id), for people reading the bucket.
    pub(crate) holder: String,
    /// Bumped at each renewal, so that every renewal changes the object.
    pub(crate) beat: u64,
    /// Where the generation stands.
    pub(crate) state: LeaseState,
    /// The origin's answer, once the holder has it.
    pub(crate) answer: Option<Answer>,
    /// The size of the holder's parts.
    pub(crate) part_size: u64,
    /// When the holder last renewed, by its clock (milliseconds since the epoch);
    /// informative only, as waiters judge staleness on their own clocks.
    pub(crate) renewed_ms: u64,
}

impl Lease {
    pub(crate) fn new(key: &str, generation: u64, part_size: u64, now_ms: u64) -> Self {
        Lease {
            format: FORMAT,
            key: key.to_owned(),
            generation,
            holder: holder(),
            beat: 0,
            state: LeaseState::Running,
            answer: None,
            part_size,
            renewed_ms: now_ms,
        }
    }

    pub(crate) fn encode(&self) -> Bytes {
        Bytes::from(serde_json::to_vec(self).expect("a lease serialises"))
    }

    /// The lease in `bytes`, if it is one of key `key`, generation `generation`.
    pub(crate) fn decode(bytes: &[u8], key: &str, generation: u64) -> Option<Self> {
        let lease: Lease = serde_json::from_slice(bytes).ok()?;
        (lease.format == FORMAT && lease.key == key && lease.generation == generation)
            .then_some(lease)
    }
}

/// This process, as people reading the bucket know it: host name and process id.
fn holder() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// A published copy: which generation holds it and how to check every byte.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Manifest {
    pub(crate) format: u32,
    pub(crate) key: String,
    /// The key itself, for listings.
    pub(crate) name: String,
    pub(crate) generation: u64,
    pub(crate) len: u64,
    /// The whole blob's SHA-256, in hex.
    pub(crate) sha256: String,
    pub(crate) answer: Answer,
    pub(crate) part_size: u64,
    /// Each part's data checksum ([`part_sum`]), in order.
    pub(crate) parts: Vec<String>,
    /// When it was published (milliseconds since the epoch).
    pub(crate) created_ms: u64,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Bytes {
        let json = serde_json::to_vec(self).expect("a manifest serialises");
        let mut out = BytesMut::with_capacity(json.len() + 65);
        out.put_slice(hex::encode(Sha256::digest(&json)).as_bytes());
        out.put_u8(b'\n');
        out.put_slice(&json);
        out.freeze()
    }

    /// The manifest in `bytes` if it is whole, of key `key`, and consistent (its
    /// parts cover its length).
    pub(crate) fn decode(bytes: &[u8], key: &str) -> Option<Self> {
        let (sum, json) = split_line(bytes)?;
        if sum != hex::encode(Sha256::digest(json)).as_bytes() {
            return None;
        }
        let manifest: Manifest = serde_json::from_slice(json).ok()?;
        let parts = manifest.len.div_ceil(manifest.part_size.max(1));
        let sound = manifest.format == FORMAT
            && manifest.key == key
            && manifest.part_size > 0
            && manifest.parts.len() as u64 == parts
            && manifest.answer.len.is_none_or(|len| len == manifest.len);
        sound.then_some(manifest)
    }

    /// Whether the copy has expired at `now_ms`.
    pub(crate) fn expired(&self, now_ms: u64) -> bool {
        self.answer.expires_ms.is_some_and(|at| at <= now_ms)
    }
}

/// The header line of a part.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct PartHeader {
    key: String,
    generation: u64,
    index: u64,
    len: u64,
    /// The data's checksum; named `sha256` in the parts of earlier versions.
    #[serde(alias = "sha256")]
    sum: String,
}

/// Where a part belongs: the key, generation and index it must carry.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PartPlace<'a> {
    pub(crate) key: &'a str,
    pub(crate) generation: u64,
    pub(crate) index: u64,
}

/// How the checksums of parts written now begin.
const XXH3_128: &str = "xxh3-128:";

/// The checksum of a part's data as this version writes it: its 128-bit XXH3, in hex,
/// after `xxh3-128:`. It catches damage, truncation and parts of another upload as
/// surely as a SHA-256 would, at a small part of the CPU; the whole blob is still
/// checked against its SHA-256 (the manifest's) before any host publishes it.
pub(crate) fn part_sum(data: &[u8]) -> String {
    format!("{XXH3_128}{:032x}", xxhash_rust::xxh3::xxh3_128(data))
}

/// The checksum of `data` in the kind `like` is: [`part_sum`], or, for the parts of
/// earlier versions, the bare hex SHA-256.
pub(crate) fn sum_like(like: &str, data: &[u8]) -> String {
    if like.starts_with(XXH3_128) {
        part_sum(data)
    } else {
        hex::encode(Sha256::digest(data))
    }
}

/// A part object holding `data` at `place`, and the data's checksum.
pub(crate) fn encode_part(place: PartPlace<'_>, data: &[u8]) -> (Bytes, String) {
    let sum = part_sum(data);
    let header = PartHeader {
        key: place.key.to_owned(),
        generation: place.generation,
        index: place.index,
        len: data.len() as u64,
        sum: sum.clone(),
    };
    let json = serde_json::to_vec(&header).expect("a part header serialises");
    let mut out = BytesMut::with_capacity(json.len() + 1 + data.len());
    out.put_slice(&json);
    out.put_u8(b'\n');
    out.put_slice(data);
    (out.freeze(), sum)
}

/// A part's data and its checksum, if `object` is a whole part of `place`.
pub(crate) fn decode_part(object: &Bytes, place: PartPlace<'_>) -> Option<(Bytes, String)> {
    let (header, data) = split_line(object)?;
    let header: PartHeader = serde_json::from_slice(header).ok()?;
    let sum = sum_like(&header.sum, data);
    let whole = header.key == place.key
        && header.generation == place.generation
        && header.index == place.index
        && header.len == data.len() as u64
        && header.sum == sum;
    let start = object.len() - data.len();
    whole.then(|| (object.slice(start..), sum))
}

fn split_line(bytes: &[u8]) -> Option<(&[u8], &[u8])> {
    let at = bytes.iter().position(|&b| b == b'\n')?;
    Some((&bytes[..at], &bytes[at + 1..]))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn place(index: u64) -> PartPlace<'static> {
        PartPlace {
            key: "k",
            generation: 2,
            index,
        }
    }

    #[test]
    fn a_part_checks_out_only_whole_and_in_its_place() {
        let (object, _) = encode_part(place(1), b"some data");
        let (data, sum) = decode_part(&object, place(1)).unwrap();
        assert_eq!(
            (&data[..], &sum[..]),
            (&b"some data"[..], &part_sum(b"some data")[..])
        );
        assert_eq!(sum.len(), XXH3_128.len() + 32);
        assert!(decode_part(&object, place(0)).is_none());
        let other = PartPlace {
            generation: 3,
            ..place(1)
        };
        assert!(decode_part(&object, other).is_none());
        assert!(decode_part(&object.slice(..object.len() - 1), place(1)).is_none());
        for at in 0..object.len() {
            let mut flipped = object.to_vec();
            flipped[at] ^= 0x01;
            assert!(
                decode_part(&Bytes::from(flipped), place(1)).is_none(),
                "a flip at byte {at} went unseen"
            );
        }
    }

    #[test]
    fn a_part_of_an_earlier_version_is_checked_against_its_sha256() {
        let data = b"written by an earlier version";
        let sha256 = hex::encode(Sha256::digest(data));
        let header = format!(
            r#"{{"key":"k","generation":2,"index":1,"len":{},"sha256":"{sha256}"}}"#,
            data.len()
        );
        let object = Bytes::from([header.as_bytes(), b"\n", data].concat());
        assert_eq!(
            decode_part(&object, place(1)),
            Some((Bytes::from_static(data), sha256.clone()))
        );
        assert_eq!(sum_like(&sha256, data), sha256);
        let mut flipped = object.to_vec();
        *flipped.last_mut().unwrap() ^= 0x01;
        assert!(decode_part(&Bytes::from(flipped), place(1)).is_none());
    }

    fn manifest() -> Manifest {
        Manifest {
            format: FORMAT,
            key: "k".into(),
            name: "the key".into(),
            generation: 4,
            len: 10,
            sha256: "00".repeat(32),
            answer: Answer::default(),
            part_size: 4,
            parts: vec!["a".into(), "b".into(), "c".into()],
            created_ms: 1,
        }
    }

    #[test]
    fn a_manifest_checks_out_only_whole_and_consistent() {
        let bytes = manifest().encode();
        assert_eq!(Manifest::decode(&bytes, "k"), Some(manifest()));
        assert_eq!(Manifest::decode(&bytes, "other"), None);
        for at in 0..bytes.len() {
            let mut flipped = bytes.to_vec();
            flipped[at] ^= 0x01;
            assert_eq!(Manifest::decode(&flipped, "k"), None, "flip at {at}");
        }
        let short = Manifest {
            parts: vec!["a".into()],
            ..manifest()
        };
        assert_eq!(Manifest::decode(&short.encode(), "k"), None);
    }

    #[test]
    fn a_copy_expires_at_its_time() {
        let mut m = manifest();
        assert!(!m.expired(u64::MAX));
        m.answer.expires_ms = Some(100);
        assert!(!m.expired(99) && m.expired(100));
    }

    #[test]
    fn a_lease_is_read_back_only_for_its_key_and_generation() {
        let lease = Lease::new("k", 3, 4, 5);
        let bytes = lease.encode();
        assert_eq!(Lease::decode(&bytes, "k", 3), Some(lease));
        assert_eq!(Lease::decode(&bytes, "k", 4), None);
        assert_eq!(Lease::decode(b"garbage", "k", 3), None);
    }
}
