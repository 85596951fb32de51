//! Publishing without waiting for the disk, and what a power loss may leave
//! (`Durability`): a blob published without a flush in an earlier boot is checked
//! against its SHA-256 before it is served, so one a crash damaged is never served;
//! the background flush records blobs as flushed; torn metadata is a miss.
//!
//! The crash is simulated: the entry's metadata is rewritten as from another boot,
//! unflushed, and its blob damaged as a power loss may leave it.

mod common;

use std::path::{Path, PathBuf};

use readthrough::{Cache, Durability};
use serde_json::Value;

use common::{Counting, body_of};

const LEN: usize = 300_000;

async fn cache(dir: &Path, origin: &Counting, durability: Durability) -> Cache {
    Cache::builder(dir)
        .origin(origin.clone())
        .durability(durability)
        .build()
        .await
        .unwrap()
}

fn meta_path(blob: &Path) -> PathBuf {
    let mut meta = blob.as_os_str().to_owned();
    meta.push(".meta");
    meta.into()
}

fn read_meta(blob: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(meta_path(blob)).unwrap()).unwrap()
}

fn this_boot() -> String {
    let id = std::fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap();
    id.trim().to_owned()
}

/// Rewrites the metadata of the blob at `blob` as written, unflushed, in another
/// boot: what a machine that lost power before the flush leaves.
fn unflushed_in_an_earlier_boot(blob: &Path) {
    let mut meta = read_meta(blob);
    meta["unflushed_boot"] = Value::from("00000000-0000-4000-8000-000000000000");
    std::fs::write(meta_path(blob), serde_json::to_vec(&meta).unwrap()).unwrap();
}

/// What a power loss may do to a blob's bytes.
type Damage = fn(&Path);

/// Stores "k" through a first cache, waits for its flush, and returns its path.
async fn stored(dir: &Path, origin: &Counting) -> PathBuf {
    let first = cache(dir, origin, Durability::Background).await;
    let body = first.get("k").await.unwrap().bytes().await.unwrap();
    assert_eq!(body, body_of("k", 0, LEN));
    first.sync().await;
    first.path("k").await.unwrap()
}

#[tokio::test]
async fn a_blob_a_crash_damaged_is_never_served() {
    let damages: [(&str, Damage); 3] = [
        ("a flipped byte", |blob| {
            let mut bytes = std::fs::read(blob).unwrap();
            bytes[12_345] ^= 0x40;
            std::fs::write(blob, bytes).unwrap();
        }),
        ("cut short", |blob| {
            let file = std::fs::OpenOptions::new().write(true).open(blob).unwrap();
            file.set_len(1000).unwrap();
        }),
        ("zeros of the right length", |blob| {
            std::fs::write(blob, vec![0u8; LEN]).unwrap();
        }),
    ];
    for (damage, apply) in damages {
        let dir = tempfile::tempdir().unwrap();
        let origin = Counting::new(LEN);
        let blob = stored(dir.path(), &origin).await;
        unflushed_in_an_earlier_boot(&blob);
        apply(&blob);
        // A process of the new boot.
        let after = cache(dir.path(), &origin, Durability::Background).await;
        let body = after.get("k").await.unwrap().bytes().await.unwrap();
        assert!(body == body_of("k", 0, LEN), "{damage}: wrong bytes served");
        assert_eq!(origin.fetches(), 2, "{damage}: fetched again");
        after.sync().await;
        let stored = std::fs::read(after.path("k").await.unwrap()).unwrap();
        assert!(
            stored == body_of("k", 0, LEN),
            "{damage}: the refetch replaced it"
        );
    }
}

#[tokio::test]
async fn an_intact_blob_from_before_a_restart_is_checked_once_and_served() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Counting::new(LEN);
    let blob = stored(dir.path(), &origin).await;
    unflushed_in_an_earlier_boot(&blob);
    let after = cache(dir.path(), &origin, Durability::Background).await;
    let body = after.get("k").await.unwrap().bytes().await.unwrap();
    assert_eq!(body, body_of("k", 0, LEN));
    assert_eq!(origin.fetches(), 1, "served from the store");
    assert!(
        read_meta(&blob).get("unflushed_boot").is_none(),
        "recorded as flushed once checked: {}",
        read_meta(&blob)
    );
}

#[tokio::test]
async fn the_background_flush_records_a_blob_as_flushed() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Counting::new(LEN);
    let cache = cache(dir.path(), &origin, Durability::Background).await;
    cache.get("k").await.unwrap().bytes().await.unwrap();
    let blob = cache.path("k").await.unwrap();
    let meta = read_meta(&blob);
    // Published without waiting for the disk, unless the flush already ran.
    let unflushed = meta.get("unflushed_boot").and_then(Value::as_str);
    assert!(unflushed.is_none_or(|boot| boot == this_boot()), "{meta}");
    cache.sync().await;
    assert!(
        read_meta(&blob).get("unflushed_boot").is_none(),
        "{}",
        read_meta(&blob)
    );
    // A later read of this boot serves it without a check, and without a fetch.
    cache.get("k").await.unwrap().bytes().await.unwrap();
    assert_eq!(origin.fetches(), 1);
}

#[tokio::test]
async fn fsync_publishes_flushed_and_off_never_records_a_flush() {
    for (durability, flushed) in [(Durability::Fsync, true), (Durability::Off, false)] {
        let dir = tempfile::tempdir().unwrap();
        let origin = Counting::new(LEN);
        let cache = cache(dir.path(), &origin, durability).await;
        cache.get("k").await.unwrap().bytes().await.unwrap();
        cache.sync().await;
        let meta = read_meta(&cache.path("k").await.unwrap());
        let boot = meta.get("unflushed_boot").and_then(Value::as_str);
        let expected = (!flushed).then(this_boot);
        assert_eq!(boot, expected.as_deref(), "{durability:?}: {meta}");
    }
}

#[tokio::test]
async fn torn_metadata_is_a_miss() {
    for torn in [
        Vec::new(),
        vec![0u8; 200],
        b"{\"version\":3,\"key\":\"k\"".to_vec(),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let origin = Counting::new(LEN);
        let blob = stored(dir.path(), &origin).await;
        std::fs::write(meta_path(&blob), &torn).unwrap();
        let after = cache(dir.path(), &origin, Durability::Background).await;
        let body = after.get("k").await.unwrap().bytes().await.unwrap();
        assert_eq!(body, body_of("k", 0, LEN));
        assert_eq!(origin.fetches(), 2, "{torn:?}: not served without metadata");
    }
}
