//! `Reader::starting_at`: a read from an offset, of a hit and of a fill in progress,
//! and the calls it refuses.

mod common;

use common::Paused;
use readthrough::{Error, Fetched, ReadKind};

#[tokio::test]
async fn a_hit_starts_at_any_offset_up_to_its_length() {
    let dir = tempfile::tempdir().unwrap();
    let cache = common::cache(dir.path(), Paused::new(vec![])).await;
    let data = common::body(1, 600_000);
    cache.put("k", Fetched::from(data.clone())).await.unwrap();
    for offset in [0, 1, 262_144, 599_999, 600_000] {
        let reader = cache.get("k").await.unwrap().starting_at(offset).unwrap();
        assert_eq!(reader.len(), Some(600_000), "len is the whole blob's");
        let rest = reader.bytes().await.unwrap();
        assert!(rest == data[offset as usize..], "offset {offset}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_of_a_fill_waits_for_its_offset_then_streams_from_there() {
    let dir = tempfile::tempdir().unwrap();
    let data = common::body(2, 400_000);
    let origin = Paused::new(data.clone());
    let cache = common::cache(dir.path(), origin.clone()).await;
    let leader = cache.get("k").await.unwrap();
    assert_eq!(leader.kind(), ReadKind::Led);
    let _half = origin.half_sent.acquire().await.unwrap();
    // Within the half that has landed: served while the fill waits.
    let mut early = cache.get("k").await.unwrap().starting_at(1_000).unwrap();
    let first = futures::StreamExt::next(&mut early).await.unwrap().unwrap();
    assert!(first[..] == data[1_000..1_000 + first.len()]);
    // Past what has landed: waits for the rest, which the origin then sends.
    let late = cache.get("k").await.unwrap().starting_at(300_000).unwrap();
    let late = tokio::spawn(late.bytes());
    origin.resume.add_permits(1);
    assert!(late.await.unwrap().unwrap() == data[300_000..]);
    let rest = early.bytes().await.unwrap();
    assert!([first.as_ref(), &rest].concat() == data[1_000..]);
    assert!(leader.bytes().await.unwrap() == data);
    assert_eq!(origin.fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
}

#[tokio::test]
async fn an_offset_past_the_end_or_after_a_read_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let cache = common::cache(dir.path(), Paused::new(vec![])).await;
    cache
        .put("k", Fetched::from(b"0123456789".to_vec()))
        .await
        .unwrap();
    let past = cache.get("k").await.unwrap().starting_at(11).unwrap_err();
    assert!(matches!(past, Error::InvalidSetting(_)), "{past}");
    let mut reader = cache.get("k").await.unwrap();
    let _ = futures::StreamExt::next(&mut reader).await;
    let read = reader.starting_at(2).unwrap_err();
    assert!(read.to_string().contains("before its first read"), "{read}");
}
