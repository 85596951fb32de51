//! A shared directory's doors: file modes, and symlinks planted where the cache
//! creates or reads files.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use common::{Paused, body_of};
use readthrough::{Cache, Fetched, ReadKind};

fn mode(path: &Path) -> u32 {
    std::fs::symlink_metadata(path)
        .unwrap()
        .permissions()
        .mode()
        & 0o7777
}

/// Every file and directory under `dir`, with its mode.
fn modes(dir: &Path) -> Vec<(String, bool, u32)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap().flatten() {
        let path = entry.path();
        let is_dir = entry.file_type().unwrap().is_dir();
        out.push((path.display().to_string(), is_dir, mode(&path)));
        if is_dir {
            out.extend(modes(&path));
        }
    }
    out
}

/// Fills a cache and, while a fill is paused half-way, returns the modes of every
/// file and directory (tmp and lock files included), then lets it finish.
async fn modes_during_a_fill(cache_dir: &Path, group: bool) -> Vec<(String, bool, u32)> {
    let origin = Paused::new(common::body(3, 100_000));
    let cache = Cache::builder(cache_dir)
        .origin(origin.clone())
        .group_shared(group)
        .max_bytes(1 << 30)
        .durable(false)
        .build()
        .await
        .unwrap();
    cache
        .put("stored", Fetched::from(b"x".to_vec()))
        .await
        .unwrap();
    let reader = cache.get("filling").await.unwrap();
    let _ = origin.half_sent.acquire().await.unwrap();
    let during = modes(&cache_dir.join("v1"));
    origin.resume.add_permits(1);
    reader.bytes().await.unwrap();
    assert!(
        during.iter().any(|(p, _, _)| p.ends_with(".part")),
        "a tmp file was seen"
    );
    assert!(
        during
            .iter()
            .any(|(p, _, _)| p.ends_with(".lock") && !p.ends_with("break.lock")),
        "a lock file was seen"
    );
    during
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_and_directories_are_the_owners_only_by_default() {
    let dir = tempfile::tempdir().unwrap();
    for (path, is_dir, mode) in modes_during_a_fill(&dir.path().join("c"), false).await {
        let want = if is_dir { 0o700 } else { 0o600 };
        assert_eq!(mode, want, "{path}: {mode:o}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_group_shared_cache_gives_the_group_access_whatever_the_umask() {
    // SAFETY: umask(2) only sets this process's file creation mask.
    let old = unsafe { libc::umask(0o077) };
    let dir = tempfile::tempdir().unwrap();
    let seen = modes_during_a_fill(&dir.path().join("c"), true).await;
    // SAFETY: as above.
    unsafe { libc::umask(old) };
    for (path, is_dir, mode) in seen {
        let want = if is_dir { 0o2770 } else { 0o660 };
        assert_eq!(mode, want, "{path}: {mode:o}");
    }
}

#[tokio::test]
async fn a_symlink_planted_at_a_lock_path_never_redirects_a_write() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside");
    std::fs::write(&outside, b"precious").unwrap();
    let cache = common::cache(&dir.path().join("c"), common::Counting::new(1000)).await;
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"k"));
    let shard = cache.dir().join("v1/tmp").join(&hash[..2]);
    std::fs::create_dir_all(&shard).unwrap();
    std::os::unix::fs::symlink(&outside, shard.join(format!("{hash}.lock"))).unwrap();
    // The lock cannot be opened through the link: the read is served from the
    // origin, uncached, as on any local disk trouble.
    let body = cache.get("k").await.unwrap().bytes().await.unwrap();
    assert_eq!(body, body_of("k", 0, 1000));
    assert_eq!(
        std::fs::read(&outside).unwrap(),
        b"precious",
        "nothing was written outside"
    );
    assert!(!cache.contains("k").await.unwrap());
}

#[tokio::test]
async fn a_symlink_planted_at_a_metadata_path_is_never_read() {
    let dir = tempfile::tempdir().unwrap();
    let outside = dir.path().join("outside.meta");
    let cache = common::cache(&dir.path().join("c"), common::Counting::new(1000)).await;
    cache.get("k").await.unwrap().bytes().await.unwrap();
    let blob = cache.path("k").await.unwrap();
    let meta = format!("{}.meta", blob.display());
    std::fs::rename(&meta, &outside).unwrap();
    std::os::unix::fs::symlink(&outside, &meta).unwrap();
    let served = match cache.get("k").await {
        Ok(reader) => reader.bytes().await.ok(),
        Err(_) => None,
    };
    // Either refused, or the blob fetched again: never metadata read through the link.
    if let Some(body) = &served {
        assert_eq!(body, &body_of("k", 0, 1000));
    }
    assert!(
        served.is_some(),
        "metadata behind a link counts as damaged: fetched again"
    );
    let replaced = std::fs::symlink_metadata(&meta).unwrap();
    assert!(
        replaced.is_file(),
        "the link was replaced by the new metadata"
    );
    assert!(
        std::fs::read(&outside).is_ok(),
        "the file outside is untouched"
    );
}

/// Every file under `dir` (symlinks as such, not followed), with its bytes and its
/// modification time: what a cache must not change outside its directory.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>, std::time::SystemTime)> {
    let mut out = Vec::new();
    for path in common::files_under(dir) {
        let meta = std::fs::symlink_metadata(&path).unwrap();
        out.push((
            path.clone(),
            std::fs::read(&path).unwrap(),
            meta.modified().unwrap(),
        ));
    }
    out
}

/// A key other than `key` whose files share its shard folders.
fn shard_mate(key: &str) -> String {
    let shard =
        |k: &str| hex::encode(<sha2::Sha256 as sha2::Digest>::digest(k.as_bytes()))[..2].to_owned();
    (0..)
        .map(|i| format!("{key}-mate-{i}"))
        .find(|k| shard(k) == shard(key))
        .unwrap()
}

#[tokio::test]
async fn a_folder_swapped_for_a_symlink_at_any_level_is_never_followed() {
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(b"k"));
    let shard = &hash[..2];
    let mate = shard_mate("k");
    for level in [
        format!("v1/store/{shard}"),
        "v1/store".to_owned(),
        format!("v1/tmp/{shard}"),
        "v1/tmp".to_owned(),
        "v1".to_owned(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let origin = common::Counting::new(1000);
        let cache = common::cache(&dir.path().join("c"), origin.clone()).await;
        common::fetch_all(&cache, "k").await;
        // A group member moves the real folder out and plants a symlink to it: the
        // entry of "k" is complete and valid over there.
        let planted = cache.dir().join(&level);
        let outside = dir.path().join("outside");
        std::fs::rename(&planted, &outside).unwrap();
        std::os::unix::fs::symlink(&outside, &planted).unwrap();
        let before = snapshot(&outside);
        let again = cache.get("k").await.unwrap();
        let through_store = !level.starts_with("v1/tmp");
        if through_store {
            assert_ne!(
                again.kind(),
                ReadKind::Hit,
                "{level}: read through the link"
            );
        }
        assert_eq!(
            again.bytes().await.unwrap(),
            body_of("k", 0, 1000),
            "{level}"
        );
        assert_eq!(
            common::fetch_all(&cache, &mate).await,
            body_of(&mate, 0, 1000),
            "{level}"
        );
        let fetched_again = usize::from(through_store);
        assert_eq!(
            origin.fetches(),
            2 + fetched_again,
            "{level}: served from the origin"
        );
        assert_eq!(
            snapshot(&outside),
            before,
            "{level}: nothing outside changed"
        );
        assert!(
            std::fs::symlink_metadata(&planted).unwrap().is_symlink(),
            "{level}: the link is left for an administrator to see"
        );
    }
}
