//! Where a key's objects live in the tier's bucket.
//!
//! ```text
//! <prefix>/<sha256(key)>/manifest             the published copy (create-only)
//! <prefix>/<sha256(key)>/lease/<generation>   one lease per generation (create-only)
//! <prefix>/<sha256(key)>/gen/<generation>/<k> part k of that generation's upload
//! ```
//!
//! Generations are zero-padded so that a listing sorts them in order.

use object_store::path::Path;
use sha2::{Digest, Sha256};

const MANIFEST: &str = "manifest";
const LEASES: &str = "lease";
const GENERATIONS: &str = "gen";

/// The objects of one key.
#[derive(Debug, Clone)]
pub(crate) struct KeyObjects {
    /// The hex SHA-256 of the key, which every object of the key records.
    pub(crate) id: String,
    dir: Path,
}

impl KeyObjects {
    pub(crate) fn new(prefix: &Path, key: &str) -> Self {
        let id = hex::encode(Sha256::digest(key.as_bytes()));
        KeyObjects {
            dir: prefix.clone().join(id.as_str()),
            id,
        }
    }

    /// The key folder named `id` under `prefix` (for listings).
    pub(crate) fn of_id(prefix: &Path, id: &str) -> Self {
        KeyObjects {
            id: id.to_owned(),
            dir: prefix.clone().join(id),
        }
    }

    pub(crate) fn manifest(&self) -> Path {
        self.dir.clone().join(MANIFEST)
    }

    pub(crate) fn leases(&self) -> Path {
        self.dir.clone().join(LEASES)
    }

    pub(crate) fn lease(&self, generation: u64) -> Path {
        self.leases().join(generation_name(generation))
    }

    pub(crate) fn generations(&self) -> Path {
        self.dir.clone().join(GENERATIONS)
    }

    pub(crate) fn generation(&self, generation: u64) -> Path {
        self.generations().join(generation_name(generation))
    }

    pub(crate) fn part(&self, generation: u64, index: u64) -> Path {
        self.generation(generation).join(format!("{index:08}"))
    }
}

fn generation_name(generation: u64) -> String {
    format!("{generation:020}")
}

/// The generation an object of a lease or generation folder belongs to: the path's
/// part right after `folder`.
pub(crate) fn generation_of(folder: &Path, object: &Path) -> Option<u64> {
    let name = object.prefix_match(folder)?.next()?;
    let name = name.as_ref();
    (name.len() == 20).then_some(())?;
    name.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generations_are_read_back_from_their_paths() {
        let objects = KeyObjects::new(&Path::from("fleet"), "a key");
        let part = objects.part(7, 3);
        assert_eq!(generation_of(&objects.generations(), &part), Some(7));
        assert_eq!(
            generation_of(&objects.leases(), &objects.lease(12)),
            Some(12)
        );
        assert_eq!(generation_of(&objects.leases(), &objects.manifest()), None);
        assert!(part.as_ref().starts_with("fleet/"));
        assert!(
            part.as_ref()
                .ends_with("/gen/00000000000000000007/00000003")
        );
    }

    #[test]
    fn keys_are_data() {
        let objects = KeyObjects::new(&Path::default(), "../../etc/passwd");
        assert_eq!(objects.id.len(), 64);
        assert!(!objects.manifest().as_ref().contains(".."));
    }
}
