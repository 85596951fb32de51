//! A blob read by slices is one entry (`CacheBuilder::slice_size`): listings, the
//! status and `metadata` show its length and how much of it is present; prune and
//! eviction remove it as one entry, by its last read; verify names the blob of a
//! damaged slice; `remove` removes its slices.

mod common;

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use readthrough::{ByteRange, Cache, PrunePolicy};

use common::Ranged;

const SLICE: u64 = 64 << 10;
/// Ten slices, the last one short.
const LEN: usize = 9 * SLICE as usize + 1000;

async fn sliced(dir: &Path, origin: Ranged) -> Cache {
    Cache::builder(dir)
        .origin(origin)
        .durable(false)
        .slice_size(SLICE)
        .build()
        .await
        .unwrap()
}

/// Reads `range` of `key` and waits for its slices' fills to be published.
async fn read(cache: &Cache, key: &str, range: impl Into<ByteRange>) -> bytes::Bytes {
    let got = cache
        .get_range(key, range)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    cache.fills_ended().await;
    got
}

/// Every file under `dir` whose name ends with `suffix`.
fn files_ending(dir: &Path, suffix: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(files_ending(&path, suffix));
        } else if path.to_string_lossy().ends_with(suffix) {
            found.push(path);
        }
    }
    found
}

/// Makes every entry stored so far look last read `age` ago.
fn age_all(cache: &Cache, age: Duration) {
    for meta in files_ending(&cache.dir().join("v1/store"), ".meta") {
        let file = std::fs::File::options().write(true).open(meta).unwrap();
        file.set_modified(SystemTime::now() - age).unwrap();
    }
}

#[tokio::test]
async fn a_half_read_blob_is_one_entry_of_its_length_and_its_present_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new(LEN);
    let cache = sliced(dir.path(), origin.clone()).await;
    let data = origin.data("big", 0);
    // Slices 0 and 9 (the short last one).
    assert_eq!(read(&cache, "big", 10..20).await, data.slice(10..20));
    assert_eq!(
        read(&cache, "big", ByteRange::last(10)).await,
        data.slice(LEN - 10..)
    );

    let entries = cache.entries().await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let entry = &entries[0];
    assert_eq!((entry.key.as_str(), entry.size), ("big", LEN as u64));
    assert_eq!(entry.present, SLICE + 1000);
    assert!(entry.stored > entry.present, "the manifest is stored too");
    let slices = entry.slices.expect("read by slices");
    assert_eq!((slices.size, slices.present, slices.count), (SLICE, 2, 10));
    assert_eq!(entry.validator.as_deref(), Some("\"v0\""));
    assert_eq!((entry.path.as_ref(), entry.sha256.as_ref()), (None, None));
    assert_eq!(cache.metadata("big").await.unwrap().as_ref(), Some(entry));

    let status = cache.status().await.unwrap();
    assert_eq!((status.entries, status.bytes), (1, entry.stored));
}

#[tokio::test]
async fn a_blob_stored_whole_beside_its_slices_is_one_complete_entry() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new(LEN);
    let cache = sliced(dir.path(), origin.clone()).await;
    read(&cache, "big", 0..10).await;
    let path = cache.path("big").await.unwrap();
    let entries = cache.entries().await.unwrap();
    assert_eq!(entries.len(), 1, "{entries:#?}");
    let entry = &entries[0];
    assert_eq!((entry.size, entry.present), (LEN as u64, LEN as u64));
    assert_eq!(entry.path.as_ref(), Some(&path));
    assert!(
        entry.stored > LEN as u64 + SLICE,
        "the whole file and the slice"
    );
    assert_eq!(entry.slices.map(|s| s.present), Some(1));
}

#[tokio::test]
async fn prune_evicts_the_least_recently_read_sliced_blob_whole() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new(LEN);
    let cache = sliced(dir.path(), origin.clone()).await;
    for key in ["a", "b"] {
        read(&cache, key, 0..10).await;
        read(&cache, key, 5 * SLICE..5 * SLICE + 10).await;
    }
    // All read an hour ago, then one slice of "a" again: "b" is the least recently
    // read, though "a"'s other slice and its manifest are as old as "b"'s.
    age_all(&cache, Duration::from_secs(3600));
    read(&cache, "a", 0..10).await;
    let a = cache.metadata("a").await.unwrap().unwrap();
    let b = cache.metadata("b").await.unwrap().unwrap();
    assert!(a.last_read > b.last_read);

    let report = cache
        .prune(&PrunePolicy::default().max_bytes(a.stored + 1))
        .await
        .unwrap();
    let removed: Vec<&str> = report.removed.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(removed, ["b"], "one entry for the sliced blob");
    assert_eq!(report.bytes_freed, b.stored, "all its files");
    assert_eq!(cache.metadata("b").await.unwrap(), None);
    let left = cache.entries().await.unwrap();
    assert_eq!(left.len(), 1);
    assert_eq!((left[0].key.as_str(), left[0].present), ("a", 2 * SLICE));
    assert_eq!(cache.status().await.unwrap().bytes, a.stored);

    // "a"'s slices are still hits; "b" is fetched again from its manifest on.
    let fetches = origin.asked().len();
    read(&cache, "a", 5 * SLICE..5 * SLICE + 10).await;
    assert_eq!(origin.asked().len(), fetches);
    assert_eq!(
        read(&cache, "b", 0..10).await,
        origin.data("b", 0).slice(0..10)
    );
    assert_eq!(origin.asked()[fetches..], [(0, Some(1)), (0, Some(SLICE))]);
}

#[tokio::test]
async fn the_size_bound_evicts_a_sliced_blob_as_one_entry() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new(LEN);
    // Room for three slices and their manifests, not four.
    let cache = Cache::builder(dir.path())
        .origin(origin.clone())
        .durable(false)
        .slice_size(SLICE)
        .max_bytes(3 * SLICE + 1000)
        .build()
        .await
        .unwrap();
    read(&cache, "a", 0..10).await;
    read(&cache, "a", SLICE..SLICE + 10).await;
    age_all(&cache, Duration::from_secs(3600));
    read(&cache, "b", 0..10).await;
    read(&cache, "b", SLICE..SLICE + 10).await;
    // The publish that went over the bound started an eviction in the background,
    // which removes a's files one after the other: wait for it to end.
    let store = cache.dir().join("v1/store");
    let evicted = common::eventually(async || {
        cache.metadata("a").await.unwrap().is_none() && files_ending(&store, ".meta").len() <= 3
    })
    .await;
    let metas = files_ending(&store, ".meta");
    assert!(
        evicted,
        "the least recently read blob goes, all of it: {metas:?}"
    );
    assert_eq!(metas.len(), 3, "b's two slices and manifest: {metas:?}");
    let b = cache
        .metadata("b")
        .await
        .unwrap()
        .expect("the newer blob stays");
    assert_eq!(b.slices.map(|s| s.present), Some(2));
}

#[tokio::test]
async fn verify_names_the_blob_of_a_damaged_slice() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new(LEN);
    let cache = sliced(dir.path(), origin.clone()).await;
    let data = origin.data("big", 0);
    read(&cache, "big", 2 * SLICE..2 * SLICE + 10).await;
    let slice = data.slice(2 * SLICE as usize..3 * SLICE as usize);
    let stored = files_ending(&cache.dir().join("v1/store"), "")
        .into_iter()
        .find(|path| std::fs::read(path).is_ok_and(|bytes| bytes == slice))
        .expect("the slice's file");
    let mut damaged = slice.to_vec();
    damaged[7] ^= 1;
    std::fs::write(&stored, damaged).unwrap();

    let report = cache.verify().await.unwrap();
    assert_eq!(report.corrupt.len(), 1, "{report:?}");
    assert_eq!(report.corrupt[0].key, "big");
    assert!(
        report.corrupt[0].reason.starts_with("its slice 2: sha256"),
        "{}",
        report.corrupt[0].reason
    );
    assert_eq!(
        read(&cache, "big", 2 * SLICE..2 * SLICE + 10).await,
        data.slice(2 * SLICE as usize..2 * SLICE as usize + 10)
    );
}

#[tokio::test]
async fn remove_removes_a_blobs_slices_and_manifest() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new(LEN);
    let cache = sliced(dir.path(), origin.clone()).await;
    read(&cache, "big", 0..10).await;
    read(&cache, "other", 0..10).await;
    assert!(cache.remove("big").await.unwrap());
    assert!(
        !cache.remove("big").await.unwrap(),
        "nothing left to remove"
    );
    let left: Vec<String> = cache
        .entries()
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(left, ["other"]);
    assert_eq!(
        cache.status().await.unwrap().bytes,
        cache.metadata("other").await.unwrap().unwrap().stored
    );
}
