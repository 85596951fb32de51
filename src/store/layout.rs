//! Where a key's files live: the [`Layout`] trait and the default sharded layout.

use std::collections::HashMap;
use std::path::{Component, PathBuf};
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

use crate::error::{Error, Result};
use crate::store::names::{FRONT_END_DIRS, TMP_SUFFIX};
use crate::sys::RootedPath;

/// Maps a key to the relative paths of its files inside the cache directory.
///
/// Both paths are relative to the cache's format folder (`<root>/v1`). The cache
/// checks every path a layout returns: it must be relative, non-empty and made only of
/// plain names (no `..`, no root, no prefix), and must not start with the folders
/// the cache keeps for itself (`named-locks`, `records`), or the call fails with
/// [`Error::LayoutEscape`]. Two keys must not map to the same paths, and no store path
/// may be another's metadata path (`<store path>.meta`). A key must map to the same
/// paths every time: the cache remembers the paths of the keys it read lately.
///
/// The tmp files of a fill are created beside the lock file, named
/// `<lock file stem>.<random>.part`.
///
/// ```
/// use std::path::PathBuf;
/// use readthrough::Layout;
///
/// /// Keeps blobs under their own names; fine for keys that are already safe names.
/// struct ByName;
///
/// impl Layout for ByName {
///     fn store_path(&self, key: &str) -> PathBuf {
///         PathBuf::from("blobs").join(key)
///     }
///     fn lock_path(&self, key: &str) -> PathBuf {
///         PathBuf::from("locks").join(format!("{key}.lock"))
///     }
/// }
/// # let layout = ByName;
/// # assert_eq!(layout.store_path("a"), PathBuf::from("blobs/a"));
/// ```
pub trait Layout: Send + Sync + 'static {
    /// The path of the complete blob for `key`.
    fn store_path(&self, key: &str) -> PathBuf;
    /// The path of the lock file that coordinates fills of `key` across processes.
    fn lock_path(&self, key: &str) -> PathBuf;
}

/// The default layout: the SHA-256 of the key in hex, sharded by its first two
/// characters.
///
/// `store/ab/ab12…` holds the blob and `tmp/ab/ab12….lock` coordinates its fills. Any
/// key, of any length and content, maps to a fixed-length name of hex digits.
///
/// ```
/// use readthrough::{Layout, ShardedLayout};
/// let path = ShardedLayout.store_path("https://example.com/a.tar");
/// assert!(path.starts_with("store"));
/// assert_eq!(path.file_name().unwrap().len(), 64);
/// ```
#[derive(Debug, Clone, Copy, Default)]
pub struct ShardedLayout;

impl ShardedLayout {
    /// The shard folder and file name of `key`: two hex digits and the hex SHA-256.
    pub(crate) fn split(key: &str) -> (String, String) {
        let name = hex::encode(Sha256::digest(key.as_bytes()));
        (name[..2].to_owned(), name)
    }
}

impl Layout for ShardedLayout {
    fn store_path(&self, key: &str) -> PathBuf {
        let (shard, name) = Self::split(key);
        ["store", &shard, &name].iter().collect()
    }

    fn lock_path(&self, key: &str) -> PathBuf {
        let (shard, name) = Self::split(key);
        ["tmp", &shard, &format!("{name}.lock")].iter().collect()
    }
}

/// The paths of one key's files, beneath the cache root.
#[derive(Debug, Clone)]
pub(crate) struct KeyPaths {
    pub(crate) store: RootedPath,
    pub(crate) meta: RootedPath,
    pub(crate) lock: RootedPath,
    /// The directory tmp files are created in.
    pub(crate) tmp_dir: RootedPath,
    /// The prefix of tmp file names: `<lock stem>.`.
    pub(crate) tmp_prefix: String,
}

impl KeyPaths {
    /// Resolves `key` through `layout` under `base`, refusing any path that could
    /// leave `base`.
    pub(crate) fn resolve(layout: &dyn Layout, base: &RootedPath, key: &str) -> Result<Self> {
        let store = checked(key, layout.store_path(key))?;
        let lock = checked(key, layout.lock_path(key))?;
        let lock_name = lock
            .file_name()
            .expect("a checked path ends in a name")
            .to_string_lossy();
        let stem = lock_name.strip_suffix(".lock").unwrap_or(&lock_name);
        let tmp_prefix = format!("{stem}.");
        let mut meta_name = store.file_name().expect("checked").to_os_string();
        meta_name.push(".meta");
        let store = base.join(store);
        let lock = base.join(lock);
        Ok(KeyPaths {
            meta: store.with_file_name(meta_name),
            tmp_dir: lock.parent().expect("lock path has a parent"),
            store,
            lock,
            tmp_prefix,
        })
    }

    /// The path of a tmp file of this key, given its unique part.
    pub(crate) fn tmp_file(&self, unique: &str) -> RootedPath {
        self.tmp_dir
            .join(format!("{}{unique}{TMP_SUFFIX}", self.tmp_prefix))
    }
}

/// The paths of the keys read lately, so a hit does not hash its key and build and
/// check its paths again: a layout maps a key to the same paths every time.
#[derive(Debug, Default)]
pub(crate) struct Resolved(Mutex<HashMap<Box<str>, Arc<KeyPaths>>>);

/// The most keys [`Resolved`] remembers; past it, it starts over.
const MAX_RESOLVED: usize = 16 * 1024;

impl Resolved {
    /// The paths of `key` through `layout` under `base`, as [`KeyPaths::resolve`]
    /// gives them; remembered only when they resolve.
    pub(crate) fn get(
        &self,
        layout: &dyn Layout,
        base: &RootedPath,
        key: &str,
    ) -> Result<Arc<KeyPaths>> {
        if let Some(paths) = self.0.lock().unwrap_or_else(|e| e.into_inner()).get(key) {
            return Ok(Arc::clone(paths));
        }
        let paths = Arc::new(KeyPaths::resolve(layout, base, key)?);
        let mut known = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if known.len() >= MAX_RESOLVED {
            known.clear();
        }
        known.insert(key.into(), Arc::clone(&paths));
        Ok(paths)
    }
}

/// Checks that `path` is relative and made only of plain names, as written (the
/// components of `a/b/.` hide its `.`), outside the folders the cache reserves.
fn checked(key: &str, path: PathBuf) -> Result<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    let reserved = path
        .components()
        .next()
        .is_some_and(|first| FRONT_END_DIRS.iter().any(|r| first.as_os_str() == *r));
    let plain = !reserved
        && !path.as_os_str().is_empty()
        && path
            .as_os_str()
            .as_bytes()
            .split(|b| *b == b'/')
            .all(|name| !matches!(name, b"" | b"." | b".."))
        && path.components().all(|c| matches!(c, Component::Normal(_)));
    if plain {
        Ok(path)
    } else {
        Err(Error::LayoutEscape {
            key: key.to_owned(),
            path,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    struct Fixed(&'static str);

    impl Layout for Fixed {
        fn store_path(&self, _: &str) -> PathBuf {
            PathBuf::from(self.0)
        }
        fn lock_path(&self, _: &str) -> PathBuf {
            PathBuf::from("locks/x.lock")
        }
    }

    /// The format folder of a cache rooted at a tmp directory.
    fn base() -> (tempfile::TempDir, RootedPath) {
        let dir = tempfile::tempdir().unwrap();
        let base = RootedPath::make_root(dir.path(), crate::sys::Perms::OWNER)
            .unwrap()
            .join("v1");
        (dir, base)
    }

    #[test]
    fn escaping_layouts_are_refused() {
        let (dir, base) = base();
        let base = &base;
        for bad in [
            "../x",
            "/etc/passwd",
            "a/../../b",
            "",
            ".",
            "a/./b/..",
            "store/.",
            "a/./b",
            "a//b",
            "a/",
            "records/ab/x",
            "named-locks/x",
        ] {
            let err = KeyPaths::resolve(&Fixed(bad), base, "k").unwrap_err();
            assert!(
                matches!(err, Error::LayoutEscape { .. }),
                "{bad:?} gave {err:?}"
            );
        }
        let ok = KeyPaths::resolve(&Fixed("a/b"), base, "k").unwrap();
        let v1 = dir.path().join("v1");
        assert_eq!(ok.store.path(), v1.join("a/b"));
        assert_eq!(ok.meta.path(), v1.join("a/b.meta"));
        assert_eq!(ok.tmp_file("r4nd").path(), v1.join("locks/x.r4nd.part"));
    }

    proptest! {
        #[test]
        fn any_key_maps_inside_the_root(key in any::<String>(), big in proptest::bool::ANY) {
            let key = if big { key.repeat(100_000 / (key.len() + 1) + 1) } else { key };
            let (_dir, base) = base();
            let paths = KeyPaths::resolve(&ShardedLayout, &base, &key).unwrap();
            for p in [&paths.store, &paths.meta, &paths.lock, &paths.tmp_file("abc")] {
                prop_assert!(p.starts_with(&base));
                prop_assert_eq!(p.rel().components().count(), 4);
            }
        }

        #[test]
        fn hostile_keys_map_inside_the_root(parts in proptest::collection::vec(
            prop_oneof![Just("..".to_owned()), Just("/".to_owned()), Just("\0".to_owned()), Just(".".to_owned()), "[a-z]{0,3}"], 0..20)) {
            let key: String = parts.concat();
            let (_dir, base) = base();
            let paths = KeyPaths::resolve(&ShardedLayout, &base, &key).unwrap();
            prop_assert!(paths.store.starts_with(&base.join("store")));
            prop_assert!(paths.lock.starts_with(&base.join("tmp")));
        }
    }
}
