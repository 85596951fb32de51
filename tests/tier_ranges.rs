//! Ranges through the fleet tier: a slice or a range read on one host is served from
//! the parts of a copy another host published, each part checked; a part that does
//! not check out sends the rest of the range to the origin and drops the copy.

#![cfg(feature = "object-store")]

mod common;

use std::sync::Arc;

use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};
use readthrough::{ByteRange, Cache};

use common::Ranged;

/// Parts that do not line up with the slices.
const PART: u64 = 16_384;
const SLICE: u64 = 50_000;
const LEN: usize = 300_001;

async fn host(
    dir: &std::path::Path,
    origin: &Ranged,
    bucket: &Arc<InMemory>,
    slices: bool,
) -> Cache {
    let builder = Cache::builder(dir)
        .origin(origin.clone())
        .durable(false)
        .shared_tier(Arc::clone(bucket) as Arc<dyn ObjectStore>, "fleet")
        .tier_part_size(PART);
    let builder = if slices {
        builder.slice_size(SLICE)
    } else {
        builder
    };
    builder.build().await.unwrap()
}

/// A first host reads "big" whole, so that the tier holds a copy; returns its body.
async fn published(origin: &Ranged, bucket: &Arc<InMemory>) -> bytes::Bytes {
    let dir = tempfile::tempdir().unwrap();
    let first = host(dir.path(), origin, bucket, false).await;
    let body = first.get("big").await.unwrap().bytes().await.unwrap();
    assert_eq!(
        first.tier_entries().await.unwrap().len(),
        1,
        "a copy is published"
    );
    assert_eq!(origin.asked(), [(0, None)]);
    body
}

#[tokio::test]
async fn slices_on_another_host_are_read_from_the_copys_parts() {
    let (origin, bucket) = (Ranged::new(LEN), Arc::new(InMemory::new()));
    let data = published(&origin, &bucket).await;
    assert_eq!(data, origin.data("big", 0));
    let dir = tempfile::tempdir().unwrap();
    let second = host(dir.path(), &origin, &bucket, true).await;
    let ranges = [
        ByteRange::last(1000),
        ByteRange::from(0..10),
        ByteRange::from(PART - 1..3 * PART + 7),
        ByteRange::from(SLICE - 3..SLICE + 3),
    ];
    for range in ranges {
        let window = range.resolve(LEN as u64).unwrap();
        let got = second
            .get_range("big", range)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(
            got,
            data.slice(window.start as usize..window.end as usize),
            "{range}"
        );
    }
    // The probe and every slice came from the tier: the origin was asked only by the
    // first host.
    assert_eq!(origin.asked(), [(0, None)]);
    let stats = second.stats();
    assert!(stats.tier_hits >= 5, "the probe and four slices: {stats:?}");
    assert_eq!(stats.tier_errors, 0);
    let entry = second.metadata("big").await.unwrap().unwrap();
    assert_eq!(
        (entry.size, entry.validator.as_deref()),
        (LEN as u64, Some("\"v0\""))
    );
    // A whole read of the sliced blob fills in the missing slices, from the tier too.
    assert_eq!(
        second.get("big").await.unwrap().bytes().await.unwrap(),
        data
    );
    assert_eq!(origin.asked(), [(0, None)]);
}

#[tokio::test]
async fn a_damaged_part_under_a_slice_is_fetched_from_the_origin_by_range() {
    let (origin, bucket) = (Ranged::new(LEN), Arc::new(InMemory::new()));
    let data = published(&origin, &bucket).await;
    let objects: Vec<_> = bucket.list(None).try_collect().await.unwrap();
    let part = objects
        .iter()
        .map(|o| o.location.clone())
        .find(|path| path.filename() == Some("00000004"))
        .expect("part 4");
    bucket
        .put(&part, PutPayload::from_static(b"garbage"))
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let second = host(dir.path(), &origin, &bucket, true).await;
    // Slice 1 (50000..100000) holds parts 3 to 6; part 4 starts at 65536.
    let got = second
        .get_range("big", SLICE..2 * SLICE)
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(got, data.slice(SLICE as usize..2 * SLICE as usize));
    assert_eq!(origin.asked()[1..], [(4 * PART, Some(2 * SLICE))]);
    assert_eq!(second.stats().tier_errors, 1);
    assert!(
        second.tier_entries().await.unwrap().is_empty(),
        "the damaged copy is dropped"
    );
}
