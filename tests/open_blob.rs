//! A blob opened for many reads (`Cache::open`, `Blob::read_at`): a stored one reads
//! its held file (one hit, however many reads; the version opened, even once replaced
//! or removed); a cold one reads through `get_range`; ranges as HTTP defines them.

mod common;

use readthrough::{ByteRange, Error, Fetched};

use common::{Counting, cache};

#[tokio::test]
async fn a_stored_blob_is_read_from_its_held_file_with_one_hit() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), Counting::new(1 << 20)).await;
    let whole = cache.get("k").await.unwrap().bytes().await.unwrap();
    let before = cache.stats();
    let blob = cache.open("k").await.unwrap();
    assert!(blob.is_stored());
    assert_eq!((blob.key(), blob.len()), ("k", Some(1 << 20)));
    let mut rng = fastrand::Rng::with_seed(3);
    let mut served = 0;
    for _ in 0..200 {
        let start = rng.u64(..1 << 20);
        let end = (start + rng.u64(1..70_000)).min(1 << 20);
        let got = blob.read_at(start..end).await.unwrap();
        assert_eq!(got, whole.slice(start as usize..end as usize));
        served += end - start;
    }
    assert_eq!(
        blob.read_at(ByteRange::last(5)).await.unwrap(),
        whole.slice((1 << 20) - 5..)
    );
    let after = cache.stats();
    assert_eq!(after.hits - before.hits, 1, "one lookup, at open");
    assert_eq!(after.bytes_served - before.bytes_served, served + 5);
}

#[tokio::test]
async fn an_open_blob_keeps_the_version_it_opened() {
    let dir = tempfile::tempdir().unwrap();
    let cache = common::origin_less(dir.path()).await;
    cache
        .put("k", Fetched::from(b"first version".to_vec()))
        .await
        .unwrap();
    let blob = cache.open("k").await.unwrap();
    cache
        .put("k", Fetched::from(b"SECOND".to_vec()))
        .await
        .unwrap();
    assert_eq!(blob.read_at(0..5).await.unwrap(), "first");
    assert!(cache.remove("k").await.unwrap());
    assert_eq!(blob.read_at(6..).await.unwrap(), "version");
    assert!(!cache.open("k").await.unwrap().is_stored());
}

#[tokio::test]
async fn a_cold_blob_is_read_through_get_range() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Counting::new(100_000);
    let cache = cache(dir.path(), origin.clone()).await;
    let blob = cache.open("k").await.unwrap();
    assert!(!blob.is_stored() && blob.len().is_none());
    let part = blob.read_at(10..20).await.unwrap();
    cache.fills_ended().await;
    let whole = cache.get("k").await.unwrap().bytes().await.unwrap();
    assert_eq!(part, whole.slice(10..20));
    assert_eq!(blob.read_at(99_990..).await.unwrap(), whole.slice(99_990..));
    assert_eq!(origin.fetches(), 1, "one fill, then hits");
}

#[tokio::test]
async fn ranges_past_the_end_and_backwards_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = common::origin_less(dir.path()).await;
    cache
        .put("k", Fetched::from(b"0123456789".to_vec()))
        .await
        .unwrap();
    cache.put("empty", Fetched::from(Vec::new())).await.unwrap();
    let blob = cache.open("k").await.unwrap();
    assert_eq!(blob.read_at(5..100).await.unwrap(), "56789");
    assert_eq!(
        blob.read_at(ByteRange::last(100)).await.unwrap(),
        "0123456789"
    );
    let past = blob.read_at(10..).await.unwrap_err();
    assert!(
        matches!(past, Error::RangeNotSatisfiable { length: 10, .. }),
        "{past}"
    );
    let backwards = blob
        .read_at(ByteRange::From {
            start: 5,
            end: Some(2),
        })
        .await
        .unwrap_err();
    assert!(
        matches!(backwards, Error::InvalidRange { .. }),
        "{backwards}"
    );
    let empty = cache.open("empty").await.unwrap();
    assert_eq!(empty.read_at(ByteRange::last(4)).await.unwrap(), "");
    assert!(matches!(
        empty.read_at(0..1).await,
        Err(Error::RangeNotSatisfiable { length: 0, .. })
    ));
}
