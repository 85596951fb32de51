//! Listing, status, prune and verify on a real cache directory.

mod common;

use std::time::{Duration, SystemTime};

use readthrough::{Cache, Fetched, PrunePolicy};

async fn filled(dir: &std::path::Path) -> Cache {
    let cache = Cache::builder(dir)
        .durable(false)
        .stale_after(Duration::from_secs(60))
        .build()
        .await
        .unwrap();
    for (key, len) in [("a", 1000), ("b", 2000), ("c", 3000)] {
        cache
            .put(key, Fetched::from(common::body_of(key, 0, len)))
            .await
            .unwrap();
    }
    cache
}

fn set_age(path: &std::path::Path, age: Duration) {
    let file = std::fs::File::options().write(true).open(path).unwrap();
    file.set_modified(SystemTime::now() - age).unwrap();
}

/// Leaves what a leader killed mid-fill leaves: a lock file naming a tmp file, both
/// unlocked and old.
fn crashed_fill(cache: &Cache, key: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let store = cache.dir().join("v1/store");
    let hash = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(key.as_bytes()));
    let tmp_dir = cache.dir().join("v1/tmp").join(&hash[..2]);
    std::fs::create_dir_all(&tmp_dir).unwrap();
    let lock = tmp_dir.join(format!("{hash}.lock"));
    let part = tmp_dir.join(format!("{hash}.deadbeef.part"));
    std::fs::write(&lock, "readthrough-lock 1\ntmp deadbeef\nlen 10\n").unwrap();
    std::fs::write(&part, b"half").unwrap();
    set_age(&lock, Duration::from_secs(3600));
    set_age(&part, Duration::from_secs(3600));
    assert!(store.exists());
    (lock, part)
}

#[tokio::test]
async fn entries_and_status_count_what_is_stored() {
    let dir = tempfile::tempdir().unwrap();
    let cache = filled(dir.path()).await;
    let mut entries = cache.entries().await.unwrap();
    entries.sort_by(|a, b| a.key.cmp(&b.key));
    let listed: Vec<(&str, u64)> = entries.iter().map(|e| (e.key.as_str(), e.size)).collect();
    assert_eq!(listed, [("a", 1000), ("b", 2000), ("c", 3000)]);
    assert_eq!(
        std::fs::read(entries[1].path.as_ref().unwrap()).unwrap(),
        common::body_of("b", 0, 2000)
    );
    let (_, part) = crashed_fill(&cache, "d");
    let status = cache.status().await.unwrap();
    assert_eq!((status.entries, status.bytes), (3, 6000));
    assert_eq!(
        (
            status.fills_in_progress,
            status.abandoned_tmp_files,
            status.abandoned_bytes
        ),
        (0, 1, 4)
    );
    set_age(&part, Duration::ZERO);
    assert_eq!(
        cache.status().await.unwrap().abandoned_tmp_files,
        0,
        "a fresh tmp file may be a live fill"
    );
}

#[tokio::test]
async fn prune_removes_a_crashed_fill_and_evicts_to_a_budget_and_an_age() {
    let dir = tempfile::tempdir().unwrap();
    let cache = filled(dir.path()).await;
    let (lock, part) = crashed_fill(&cache, "d");
    let report = cache.prune(&PrunePolicy::default()).await.unwrap();
    assert_eq!(
        (
            report.tmp_files_removed,
            report.lock_files_removed,
            report.removed.len()
        ),
        (1, 1, 0)
    );
    assert!(!lock.exists() && !part.exists());

    let report = cache
        .prune(&PrunePolicy::default().max_bytes(4000))
        .await
        .unwrap();
    let freed: u64 = report.removed.iter().map(|e| e.size).sum();
    assert_eq!(report.bytes_freed, freed);
    assert!(6000 - freed <= 4000, "under budget after pruning");
    let last = report.removed.last().unwrap().size;
    assert!(
        6000 - (freed - last) > 4000,
        "nothing removed past the budget"
    );
    assert_eq!(cache.status().await.unwrap().bytes, 6000 - freed);
    let left = cache.entries().await.unwrap().len();

    let report = cache
        .prune(&PrunePolicy::default().older_than(Duration::from_secs(3600)))
        .await
        .unwrap();
    assert!(report.removed.is_empty(), "nothing is an hour old");
    let report = cache
        .prune(&PrunePolicy::default().older_than(Duration::ZERO))
        .await
        .unwrap();
    assert_eq!(report.removed.len(), left);
    assert_eq!(cache.status().await.unwrap().entries, 0);
}

#[tokio::test]
async fn prune_never_touches_a_fill_in_progress() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::body(3, 1 << 20);
    let origin = common::Paused::new(data.clone());
    let cache = Cache::builder(dir.path())
        .origin(origin.clone())
        .durable(false)
        .stale_after(Duration::from_millis(1))
        .build()
        .await
        .unwrap();
    let reader = cache.get("k").await.unwrap();
    let _ = origin.half_sent.acquire().await.unwrap();
    let status = cache.status().await.unwrap();
    assert_eq!(
        (status.fills_in_progress, status.abandoned_tmp_files),
        (1, 0)
    );
    let report = cache.prune(&PrunePolicy::default()).await.unwrap();
    assert_eq!(
        (report.tmp_files_removed, report.lock_files_removed),
        (0, 0)
    );
    origin.resume.add_permits(1);
    assert_eq!(reader.bytes().await.unwrap(), data);
    assert!(cache.contains("k").await.unwrap());
}

#[tokio::test]
async fn verify_removes_a_flipped_byte_and_a_truncated_file() {
    let dir = tempfile::tempdir().unwrap();
    let cache = filled(dir.path()).await;
    let a = cache.path("a").await.unwrap();
    let mut bytes = std::fs::read(&a).unwrap();
    bytes[500] ^= 1;
    std::fs::write(&a, bytes).unwrap();
    let b = cache.path("b").await.unwrap();
    std::fs::File::options()
        .write(true)
        .open(&b)
        .unwrap()
        .set_len(100)
        .unwrap();
    std::fs::write(cache.dir().join("v1/store/stray"), b"no metadata").unwrap();

    let report = cache.verify().await.unwrap();
    assert_eq!(report.checked, 3);
    let mut corrupt: Vec<&str> = report.corrupt.iter().map(|c| c.key.as_str()).collect();
    corrupt.sort();
    assert_eq!(corrupt, ["a", "b"]);
    assert!(report.corrupt.iter().any(|c| c.reason.contains("sha256")));
    assert!(
        report
            .corrupt
            .iter()
            .any(|c| c.reason.contains("100 bytes"))
    );
    assert_eq!(report.unverifiable, [cache.dir().join("v1/store/stray")]);
    assert!(!cache.contains("a").await.unwrap() && !cache.contains("b").await.unwrap());
    assert!(cache.contains("c").await.unwrap());
    assert!(cache.verify().await.unwrap().corrupt.is_empty());
}

/// The metadata file of a stored key.
fn meta_of(path: &std::path::Path) -> std::path::PathBuf {
    let mut meta = path.as_os_str().to_owned();
    meta.push(".meta");
    meta.into()
}

fn last_read(entries: &[readthrough::Entry], key: &str) -> SystemTime {
    entries.iter().find(|e| e.key == key).unwrap().last_read
}

#[tokio::test]
async fn a_hit_refreshes_the_last_read_time_at_most_once_a_minute() {
    let dir = tempfile::tempdir().unwrap();
    let cache = filled(dir.path()).await;
    let meta = meta_of(&cache.path("a").await.unwrap());
    set_age(&meta, Duration::from_secs(120));
    // Bounded by the times around the hit, not by how long it took (a loaded machine
    // may take seconds); a second's slack for a coarse file system clock.
    let before = SystemTime::now();
    cache.get("a").await.unwrap().bytes().await.unwrap();
    let read = last_read(&cache.entries().await.unwrap(), "a");
    let after = SystemTime::now();
    assert!(
        read + Duration::from_secs(1) >= before && read <= after,
        "a hit after two minutes refreshes it: read at {read:?}, hit between {before:?} and {after:?}"
    );

    set_age(&meta, Duration::from_secs(30));
    cache.get("a").await.unwrap().bytes().await.unwrap();
    let age = SystemTime::now()
        .duration_since(last_read(&cache.entries().await.unwrap(), "a"))
        .unwrap();
    assert!(
        age >= Duration::from_secs(29),
        "a hit within the minute writes nothing: {age:?}"
    );
}

#[tokio::test]
async fn prune_to_a_budget_evicts_the_least_recently_read_first() {
    let dir = tempfile::tempdir().unwrap();
    let cache = filled(dir.path()).await;
    for (key, minutes) in [("a", 10), ("b", 30), ("c", 20)] {
        set_age(
            &meta_of(&cache.path(key).await.unwrap()),
            Duration::from_secs(minutes * 60),
        );
    }
    // "b" (2000 bytes) was read longest ago: it alone makes room for 4000.
    let report = cache
        .prune(&PrunePolicy::default().max_bytes(4000))
        .await
        .unwrap();
    let removed: Vec<&str> = report.removed.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(removed, ["b"]);
    // Then "c", read longer ago than "a".
    let report = cache
        .prune(&PrunePolicy::default().max_bytes(1000))
        .await
        .unwrap();
    let removed: Vec<&str> = report.removed.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(removed, ["c"]);
    assert!(cache.contains("a").await.unwrap());
}
