//! Range reads (`Cache::get_range`): from a hit, from a fill in progress, of a cold
//! blob, and the edges HTTP defines (ends past the end, suffixes longer than the blob,
//! empty blobs, unsatisfiable ranges).

mod common;

use std::sync::atomic::Ordering;

use bytes::Bytes;
use futures::stream;
use proptest::prelude::*;
use readthrough::{ByteRange, Cache, Error, Fetched, HttpOrigin, ReadKind, origin_fn};

use common::http_server::{Behaviour, Gate, Server};
use common::{Counting, Failing, Paused, body_of, cache};

#[tokio::test]
async fn a_hit_reads_only_the_range() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), Counting::new(1 << 20)).await;
    let whole = cache.get("k").await.unwrap().bytes().await.unwrap();
    let served = cache.stats().bytes_served;
    let reader = cache.get_range("k", 1000..1010).await.unwrap();
    assert_eq!(reader.kind(), ReadKind::Hit);
    assert_eq!(reader.len(), Some(10));
    assert_eq!(reader.bytes().await.unwrap(), whole.slice(1000..1010));
    assert_eq!(
        cache.stats().bytes_served - served,
        10,
        "only the range is read"
    );

    let footer = cache.get_range("k", ByteRange::last(65536)).await.unwrap();
    assert_eq!(footer.len(), Some(65536));
    assert_eq!(
        footer.bytes().await.unwrap(),
        whole.slice((1 << 20) - 65536..)
    );
    let tail = cache.get_range("k", (1 << 20) - 3..).await.unwrap();
    assert_eq!(tail.bytes().await.unwrap(), whole.slice((1 << 20) - 3..));
    let cut = cache
        .get_range("k", (1 << 20) - 3..(1 << 30))
        .await
        .unwrap();
    assert_eq!(
        cut.len(),
        Some(3),
        "an end past the blob's end is cut to it"
    );
}

#[tokio::test]
async fn a_range_of_a_cold_blob_streams_before_its_fill_ends() {
    let dir = tempfile::tempdir().unwrap();
    let data = body_of("k", 0, 1 << 20);
    let origin = Paused::new(data.clone());
    let cache = cache(dir.path(), origin.clone()).await;
    // The first half lands and the origin then waits: the range inside it is read
    // whole while the fill is still running.
    let first = cache.get_range("k", 100..200).await.unwrap();
    assert_eq!(first.kind(), ReadKind::Led);
    assert_eq!(first.bytes().await.unwrap(), &data[100..200]);
    let _ = origin.half_sent.acquire().await.unwrap();
    let joined = cache.get_range("k", 1000..2000).await.unwrap();
    assert_eq!(joined.kind(), ReadKind::Joined);
    assert_eq!(joined.bytes().await.unwrap(), &data[1000..2000]);
    // A range past the half waits for its bytes.
    let later = tokio::spawn({
        let cache = cache.clone();
        async move {
            cache
                .get_range("k", ByteRange::last(10))
                .await?
                .bytes()
                .await
        }
    });
    origin.resume.add_permits(1);
    assert_eq!(later.await.unwrap().unwrap(), &data[data.len() - 10..]);
    assert_eq!(
        origin.fetches.load(Ordering::SeqCst),
        1,
        "one fetch for all"
    );
    cache.path("k").await.unwrap(); // waits for the fill to be stored
    assert_eq!(common::stored(&cache, "k").await.unwrap(), data);
    assert_eq!(origin.fetches.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_body_of_unknown_length_is_ranged_once_its_fill_ends() {
    let dir = tempfile::tempdir().unwrap();
    let data = Bytes::from(body_of("k", 0, 300_000));
    let body = data.clone();
    let origin = origin_fn(move |_key: String| {
        let chunks = common::chunked(body.to_vec(), 7000);
        async move { Ok::<_, std::io::Error>(Fetched::from_stream(stream::iter(chunks))) }
    });
    let cache = cache(dir.path(), origin).await;
    let footer = cache.get_range("k", ByteRange::last(100)).await.unwrap();
    assert_eq!(footer.len(), Some(100));
    assert_eq!(
        footer.bytes().await.unwrap(),
        data.slice(data.len() - 100..)
    );
    let past = cache.get_range("k", 300_000..).await.unwrap_err();
    assert!(
        matches!(
            past,
            Error::RangeNotSatisfiable {
                length: 300_000,
                ..
            }
        ),
        "{past}"
    );
}

#[tokio::test]
async fn edges_as_http_defines_them() {
    let dir = tempfile::tempdir().unwrap();
    let origin = origin_fn(|key: String| async move {
        Ok::<_, std::io::Error>(if key == "empty" {
            Vec::new()
        } else {
            b"0123456789".to_vec()
        })
    });
    let cache = cache(dir.path(), origin).await;
    let all = cache.get_range("k", ByteRange::last(500)).await.unwrap();
    assert_eq!(
        all.len(),
        Some(10),
        "a suffix longer than the blob is the whole blob"
    );
    assert_eq!(all.bytes().await.unwrap(), "0123456789");

    for range in [
        ByteRange::from(10..),
        ByteRange::from(10..20),
        ByteRange::last(0),
    ] {
        let error = cache.get_range("k", range).await.unwrap_err();
        assert!(
            matches!(&error, Error::RangeNotSatisfiable { key, length: 10, .. } if key == "k"),
            "{range}: {error}"
        );
        assert!(error.to_string().contains("10 bytes"), "{error}");
    }
    let error = cache.get_range("k", 5..5).await.unwrap_err();
    assert!(matches!(error, Error::InvalidRange { .. }), "{error}");

    // An empty blob: only a suffix can be read, and it is empty.
    let empty = cache.get_range("empty", ByteRange::last(3)).await.unwrap();
    assert_eq!(empty.len(), Some(0));
    assert_eq!(empty.bytes().await.unwrap(), "");
    let error = cache.get_range("empty", 0..).await.unwrap_err();
    assert!(
        matches!(error, Error::RangeNotSatisfiable { length: 0, .. }),
        "{error}"
    );
}

#[tokio::test]
async fn a_range_reader_starts_at_an_offset_within_its_range() {
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), Counting::new(10_000)).await;
    let data = body_of("k", 0, 10_000);
    let part = cache
        .get_range("k", 100..200)
        .await
        .unwrap()
        .starting_at(50)
        .unwrap();
    assert_eq!(part.bytes().await.unwrap(), &data[150..200]);
    let hit = cache
        .get_range("k", 100..200)
        .await
        .unwrap()
        .starting_at(50)
        .unwrap();
    assert_eq!(hit.bytes().await.unwrap(), &data[150..200]);
}

#[tokio::test]
async fn an_origin_failure_reaches_a_range_past_what_landed_and_nothing_is_cached() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Failing::new(100_000, 50_000, false);
    let cache = cache(dir.path(), origin.clone()).await;
    let data = body_of("k", 0, 100_000);
    // Inside what lands before the failure: the range is whole.
    let early = cache.get_range("k", 0..10_000).await.unwrap();
    assert_eq!(early.bytes().await.unwrap(), &data[..10_000]);
    // Past it: the origin's error, at once for every reader of the fill.
    let late = cache.get_range("k", ByteRange::last(10)).await.unwrap();
    origin.release.add_permits(1);
    let error = late.bytes().await.unwrap_err();
    assert!(matches!(error, Error::Origin { .. }), "{error}");
    assert!(!cache.contains("k").await.unwrap(), "nothing is cached");
    assert_eq!(origin.fetches.load(Ordering::SeqCst), 1);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    /// Any sequence of range and whole reads, of a cold blob and then of its stored
    /// copy, returns exactly the origin's bytes for each range.
    #[test]
    fn any_ranges_read_the_origins_bytes(
        len in 0usize..200_000,
        reads in prop::collection::vec((any::<u64>(), any::<u64>(), 0u8..4), 1..12),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let mut origin = Counting::new(len);
            origin.chunk = 4099;
            let cache = cache(dir.path(), origin.clone()).await;
            let data = body_of("k", 0, len);
            common::check_range_reads(&cache, "k", &data, reads).await;
            assert_eq!(origin.fetches(), 1);
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_range_follows_another_processs_fill_without_a_second_fetch() {
    let server = Server::start().await;
    let gate = Gate::new();
    let data = body_of("shared", 0, 2 << 20);
    let held = 1 << 20;
    server.route("/b", Behaviour::body(data.clone()).hold_at(held, &gate));
    let dir = tempfile::tempdir().unwrap();
    let child = common::child_test("range_reads_child")
        .env("RANGE_DIR", dir.path())
        .env("RANGE_URL", server.url("/b"))
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    gate.reached(1).await;
    let cache = Cache::builder(dir.path())
        .origin(HttpOrigin::new().unwrap())
        .durable(false)
        .build()
        .await
        .unwrap();
    // The child leads, held half-way: a range in the half that landed is read from
    // its file while it waits.
    let early = cache
        .get_range(&server.url("/b"), 1000..5000)
        .await
        .unwrap();
    assert_eq!(early.kind(), ReadKind::Followed);
    assert_eq!(early.bytes().await.unwrap(), &data[1000..5000]);
    let late = tokio::spawn({
        let (cache, url) = (cache.clone(), server.url("/b"));
        async move {
            cache
                .get_range(&url, ByteRange::last(3000))
                .await?
                .bytes()
                .await
        }
    });
    gate.open();
    assert_eq!(late.await.unwrap().unwrap(), &data[data.len() - 3000..]);
    let status = tokio::task::spawn_blocking(move || child.wait_with_output()).await;
    let out = status.unwrap().unwrap();
    assert!(out.status.success(), "the child read the whole blob");
    assert_eq!(server.count("/b"), 1, "one fetch between the processes");
}

/// The child of `a_range_follows_another_processs_fill_without_a_second_fetch`: reads
/// the whole blob, leading its fill.
#[test]
#[ignore = "run as a child process"]
fn range_reads_child() {
    let dir = std::env::var("RANGE_DIR").expect("RANGE_DIR is set");
    let url = std::env::var("RANGE_URL").expect("RANGE_URL is set");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let cache = Cache::builder(dir)
            .origin(HttpOrigin::new().unwrap())
            .durable(false)
            .build()
            .await
            .unwrap();
        let reader = cache.get(&url).await.unwrap();
        assert_eq!(reader.kind(), ReadKind::Led);
        reader.bytes().await.unwrap();
    });
}
