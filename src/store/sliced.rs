//! A blob stored by slices, as the store sees it: the derived keys its slices and its
//! manifest are stored under, the manifest's format, and the gathering of those
//! entries back into one [`Entry`] of the blob's key, so that listings, the status,
//! the size bound and eviction count a sliced blob as one entry.
//!
//! A derived key is the blob's key, a NUL, and then `slices` and the slice size (the
//! manifest), or `slice`, the slice size, the pinned validator and the slice's index.
//! NUL bytes keep these apart from the keys callers use in practice; a validator
//! never holds one (HTTP and object stores cannot send it).

use std::collections::HashMap;
use std::io;

use serde::{Deserialize, Serialize};

use crate::store::entry::{Entry, Slices};
use crate::sys::{self, RootedPath};

/// What the probe learnt of a blob: its length and validator, when the origin gave
/// them. Stored, as JSON, as the blob of the manifest's derived key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Manifest {
    pub(crate) len: Option<u64>,
    pub(crate) validator: Option<String>,
}

impl Manifest {
    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// `None` when `data` is not a manifest.
    pub(crate) fn decode(data: &[u8]) -> Option<Self> {
        serde_json::from_slice(data).ok()
    }
}

/// The largest manifest read; one holds a length and a validator.
const MAX_MANIFEST: usize = 64 << 10;

/// The derived key of the manifest of `key`'s slices of `size` bytes.
pub(crate) fn manifest_key(key: &str, size: u64) -> String {
    format!("{key}\0slices\0{size}")
}

/// The derived key of slice `index` of the version `validator` of `key`'s blob, in
/// slices of `size` bytes.
pub(crate) fn slice_key(key: &str, size: u64, validator: &str, index: u64) -> String {
    format!("{key}\0slice\0{size}\0{validator}\0{index}")
}

/// What a derived key names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Derived<'a> {
    Manifest {
        of: &'a str,
        size: u64,
    },
    Slice {
        of: &'a str,
        size: u64,
        validator: &'a str,
        index: u64,
    },
}

impl<'a> Derived<'a> {
    /// What `key` names, if it is a derived key.
    pub(crate) fn parse(key: &'a str) -> Option<Self> {
        let (rest, last) = key.rsplit_once('\0')?;
        let number = last.parse().ok()?;
        let slice = rest.rsplit_once('\0').and_then(|(rest, validator)| {
            let (rest, size) = rest.rsplit_once('\0')?;
            Some(Derived::Slice {
                of: rest.strip_suffix("\0slice")?,
                size: size.parse().ok()?,
                validator,
                index: number,
            })
        });
        slice.or_else(|| {
            Some(Derived::Manifest {
                of: rest.strip_suffix("\0slices")?,
                size: number,
            })
        })
    }

    /// The key of the blob it belongs to.
    pub(crate) fn of(&self) -> &'a str {
        match self {
            Derived::Manifest { of, .. } | Derived::Slice { of, .. } => of,
        }
    }
}

/// An entry as listings show it, and the stored entries it stands for: the one of a
/// blob stored whole; the slices, manifests (and whole file, if there is one too) of
/// a sliced blob. Removing it removes them all.
#[derive(Debug, Clone)]
pub(crate) struct Gathered {
    pub(crate) entry: Entry,
    pub(crate) files: Vec<Entry>,
}

/// Gathers stored entries (one per blob file, under their own keys) into one entry
/// per blob key, reading each manifest with `manifest`.
pub(crate) fn gather(
    stored: Vec<Entry>,
    mut manifest: impl FnMut(&Entry) -> Option<Manifest>,
) -> Vec<Gathered> {
    let mut by_key: HashMap<String, Vec<Entry>> = HashMap::new();
    for entry in stored {
        let of = Derived::parse(&entry.key).map_or(entry.key.as_str(), |d| d.of());
        by_key.entry(of.to_owned()).or_default().push(entry);
    }
    by_key
        .into_iter()
        .map(|(key, files)| Gathered {
            entry: one_entry(key, &files, &mut manifest),
            files,
        })
        .collect()
}

/// The entry of the blob `key` whose stored entries are `files`.
fn one_entry(
    key: String,
    files: &[Entry],
    manifest: &mut impl FnMut(&Entry) -> Option<Manifest>,
) -> Entry {
    let stored = files.iter().fold(0u64, |sum, f| sum.saturating_add(f.size));
    let last_read = files.iter().map(|f| f.last_read).max();
    let whole = files.iter().find(|f| f.key == key);
    // The version the slices are read in: the most recently read readable manifest.
    let mut manifests: Vec<(&Entry, u64)> = files
        .iter()
        .filter_map(|f| match Derived::parse(&f.key)? {
            Derived::Manifest { size, .. } => Some((f, size)),
            Derived::Slice { .. } => None,
        })
        .collect();
    manifests.sort_by_key(|(f, _)| std::cmp::Reverse(f.last_read));
    let version = manifests
        .into_iter()
        .find_map(|(f, size)| Some((f, size, manifest(f)?)));
    let mut entry = match (whole, version) {
        (Some(whole), version) => Entry {
            slices: version.map(|(_, size, m)| of_version(files, size, &m).slices),
            ..whole.clone()
        },
        (None, Some((found, size, manifest))) => {
            let version = of_version(files, size, &manifest);
            Entry {
                key: key.clone(),
                size: version.len,
                present: version.bytes,
                sha256: None,
                validator: manifest.validator,
                content_type: version.content_type,
                path: None,
                slices: Some(version.slices),
                ..found.clone()
            }
        }
        // Slices without a manifest that can be read: what is stored, of no known
        // length beyond it.
        (None, None) => Entry {
            key: key.clone(),
            size: stored,
            present: stored,
            sha256: None,
            validator: None,
            content_type: None,
            path: None,
            slices: None,
            ..files[0].clone()
        },
    };
    entry.created = files
        .iter()
        .map(|f| f.created)
        .min()
        .unwrap_or(entry.created);
    entry.last_read = last_read.unwrap_or(entry.last_read);
    entry.stored = stored;
    entry
}

/// What the slices of one version hold of their blob.
struct Version {
    slices: Slices,
    bytes: u64,
    len: u64,
    content_type: Option<String>,
}

/// The slices among `files` of the version `manifest` names, in slices of `size`.
fn of_version(files: &[Entry], size: u64, manifest: &Manifest) -> Version {
    let slices: Vec<&Entry> = files
        .iter()
        .filter(|f| {
            matches!(Derived::parse(&f.key), Some(Derived::Slice { size: s, validator, .. })
                if s == size && Some(validator) == manifest.validator.as_deref())
        })
        .collect();
    let bytes = slices
        .iter()
        .fold(0u64, |sum, f| sum.saturating_add(f.size));
    let len = manifest.len.unwrap_or(bytes);
    Version {
        slices: Slices {
            size,
            present: slices.len() as u64,
            count: len.div_ceil(size.max(1)),
        },
        bytes,
        len,
        content_type: slices.first().and_then(|f| f.content_type.clone()),
    }
}

/// The manifest stored as the blob of `entry` (a manifest's stored entry) under
/// `base`; `None` when it cannot be read.
pub(crate) fn read_manifest(base: &RootedPath, entry: &Entry) -> Option<Manifest> {
    let blob = base.locate(entry.path.as_ref()?).ok()?;
    let file = sys::found(blob.open_read()).ok()??;
    let len = usize::try_from(entry.size).ok()?.min(MAX_MANIFEST);
    Manifest::decode(&sys::read_exact_or_eof(&file, 0, len).ok()?)
}

/// A stored entry's key as a person reads it: a derived key as the blob's key and
/// what of it the entry holds; `None` for a plain key.
pub(crate) fn described(key: &str) -> Option<(&str, String)> {
    Some(match Derived::parse(key)? {
        Derived::Manifest { of, .. } => (of, "its slice manifest".to_owned()),
        Derived::Slice { of, index, .. } => (of, format!("its slice {index}")),
    })
}

/// The stored entries of `key`'s blob that [`gather`] would find, where they are
/// known without a walk: its whole entry, and the manifest of slices of `size` and
/// that version's slices. `entry_at` reads the stored entry of a key.
pub(crate) fn files_of(
    base: &RootedPath,
    key: &str,
    size: Option<u64>,
    mut entry_at: impl FnMut(&str) -> io::Result<Option<Entry>>,
) -> io::Result<Vec<Entry>> {
    let mut files: Vec<Entry> = entry_at(key)?.into_iter().collect();
    let Some(size) = size else {
        return Ok(files);
    };
    let Some(found) = entry_at(&manifest_key(key, size))? else {
        return Ok(files);
    };
    let manifest = read_manifest(base, &found);
    files.push(found);
    if let Some(Manifest {
        len: Some(len),
        validator: Some(validator),
    }) = manifest
    {
        for index in 0..len.div_ceil(size.max(1)) {
            files.extend(entry_at(&slice_key(key, size, &validator, index))?);
        }
    }
    Ok(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn stored(key: &str, size: u64, read_at: u64) -> Entry {
        Entry {
            key: key.to_owned(),
            size,
            present: size,
            stored: size,
            slices: None,
            created: UNIX_EPOCH + Duration::from_secs(1),
            last_read: UNIX_EPOCH + Duration::from_secs(read_at),
            expires: None,
            sha256: Some(String::new()),
            validator: None,
            content_type: None,
            path: Some(key.into()),
        }
    }

    #[test]
    fn derived_keys_parse_back() {
        assert_eq!(
            Derived::parse(&manifest_key("k", 8)),
            Some(Derived::Manifest { of: "k", size: 8 })
        );
        assert_eq!(
            Derived::parse(&slice_key("a\0b", 8, "\"v\"", 3)),
            Some(Derived::Slice {
                of: "a\0b",
                size: 8,
                validator: "\"v\"",
                index: 3
            })
        );
        // A validator spelt like the manifest's marker is still a slice's.
        assert_eq!(
            Derived::parse(&slice_key("k", 8, "slices", 0)).map(|d| d.of()),
            Some("k")
        );
        for plain in ["k", "k\0slices\0x", "k\0slice\08\0v\0x", "\0", ""] {
            assert_eq!(Derived::parse(plain), None, "{plain:?}");
        }
    }

    #[test]
    fn a_sliced_blob_gathers_into_one_entry_of_its_present_bytes() {
        let manifest = Manifest {
            len: Some(25),
            validator: Some("v".into()),
        };
        let files = vec![
            stored(&manifest_key("k", 10), 30, 5),
            stored(&slice_key("k", 10, "v", 0), 10, 7),
            stored(&slice_key("k", 10, "v", 2), 5, 6),
            stored(&slice_key("k", 10, "old", 1), 10, 9),
            stored("other", 4, 1),
        ];
        let mut gathered = gather(files, |_| Some(manifest.clone()));
        gathered.sort_by(|a, b| a.entry.key.cmp(&b.entry.key));
        let (k, other) = (&gathered[0], &gathered[1]);
        assert_eq!(k.files.len(), 4);
        assert_eq!((k.entry.key.as_str(), k.entry.size), ("k", 25));
        assert_eq!((k.entry.present, k.entry.stored), (15, 55));
        let slices = k.entry.slices.unwrap();
        assert_eq!((slices.size, slices.present, slices.count), (10, 2, 3));
        assert_eq!(k.entry.last_read, UNIX_EPOCH + Duration::from_secs(9));
        assert_eq!(
            (k.entry.path.as_ref(), k.entry.sha256.as_ref()),
            (None, None)
        );
        assert_eq!(
            (other.entry.clone(), other.files.len()),
            (stored("other", 4, 1), 1)
        );
    }

    #[test]
    fn a_blob_stored_whole_beside_its_slices_is_one_complete_entry() {
        let files = vec![
            stored("k", 25, 2),
            stored(&manifest_key("k", 10), 30, 3),
            stored(&slice_key("k", 10, "v", 1), 10, 4),
        ];
        let manifest = Manifest {
            len: Some(25),
            validator: Some("v".into()),
        };
        let gathered = gather(files, |_| Some(manifest.clone()));
        let entry = &gathered[0].entry;
        assert_eq!((entry.size, entry.present, entry.stored), (25, 25, 65));
        assert_eq!(entry.path, Some("k".into()));
        assert_eq!(entry.slices.map(|s| s.present), Some(1));
    }

    #[test]
    fn slices_whose_manifest_is_gone_count_what_is_stored() {
        let files = vec![stored(&slice_key("k", 10, "v", 4), 10, 4)];
        let entry = &gather(files, |_| None)[0].entry;
        assert_eq!(
            (entry.key.as_str(), entry.size, entry.stored),
            ("k", 10, 10)
        );
        assert_eq!(entry.slices, None);
    }
}
