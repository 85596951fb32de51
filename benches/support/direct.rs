//! Filling a cache directory fast for the benchmarks that need many entries: a
//! million `put`s take too long to set up, so entries are written straight into the
//! store layout, from a template entry the cache wrote itself.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Instant;

use sha2::{Digest, Sha256};

/// Writes entries `1..n` (keys from `key`, bodies `body`) directly in the layout,
/// next to the template entry 0 that `put` stored; returns the seconds taken.
pub fn fill_direct(
    store_of_0: &Path,
    n: usize,
    key: impl Fn(usize) -> String + Sync,
    body: &[u8],
) -> f64 {
    let started = Instant::now();
    // `<base>/store/<shard>/<name>`: the store root is two levels up.
    let store_root = store_of_0.parent().unwrap().parent().unwrap().to_path_buf();
    let meta_of_0 = PathBuf::from(format!("{}.meta", store_of_0.display()));
    let template: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_of_0).expect("template metadata"))
            .expect("metadata is JSON");
    assert_eq!(template["key"], key(0), "metadata layout changed");
    let threads = 4;
    let next = AtomicUsize::new(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut meta = template.clone();
                loop {
                    let first = next.fetch_add(1000, Ordering::Relaxed);
                    if first >= n {
                        break;
                    }
                    for i in first..(first + 1000).min(n) {
                        let k = key(i);
                        let name = hex::encode(Sha256::digest(k.as_bytes()));
                        let shard = store_root.join(&name[..2]);
                        let blob = shard.join(&name);
                        meta["key"] = serde_json::Value::String(k);
                        // The metadata names the blob file it describes.
                        meta["blob"] = blob_id(&write_new(&blob, body, &shard));
                        let meta_path = shard.join(format!("{name}.meta"));
                        write_new(&meta_path, &serde_json::to_vec(&meta).unwrap(), &shard);
                    }
                }
            });
        }
    });
    started.elapsed().as_secs_f64()
}

/// The identity a metadata file names its blob by: the inode and the birth time
/// (in nanoseconds since the epoch; the modification time where the file system
/// keeps no birth time), as the cache records it.
fn blob_id(stat: &std::fs::Metadata) -> serde_json::Value {
    use std::os::unix::fs::MetadataExt;
    let born = stat
        .created()
        .unwrap_or_else(|_| stat.modified().expect("mtime"));
    let born_ns = born
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64;
    serde_json::json!({ "ino": stat.ino(), "born_ns": born_ns })
}

/// Writes `data` to a new file at `path` (making `dir` if need be); the file's status.
fn write_new(path: &Path, data: &[u8], dir: &Path) -> std::fs::Metadata {
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
    };
    let mut file = match open() {
        Ok(f) => f,
        Err(_) => {
            std::fs::create_dir_all(dir).expect("shard dir");
            open().expect("create entry file")
        }
    };
    file.write_all(data).expect("write entry file");
    file.metadata().expect("stat entry file")
}

/// Removes the files under `root/v1/store` in inode order: far faster on ext4 than
/// directory (hash) order, which writes the inode table at random (`rm -rf` took
/// 528 s for 1M entries here).
pub fn remove_by_inode(root: &Path) {
    use std::os::unix::fs::DirEntryExt;
    let store = root.join("v1").join("store");
    let mut files = Vec::new();
    for shard in std::fs::read_dir(&store).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            files.push((entry.ino(), entry.path()));
        }
    }
    files.sort_unstable();
    for (_, path) in files {
        let _ = std::fs::remove_file(path);
    }
}
