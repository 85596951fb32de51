//! Ranges at the origins: `HttpOrigin` against a real loopback server (206 and
//! Content-Range, 416, a server that ignores Range, resuming against one) and
//! `ObjectStoreOrigin` over an in-memory store; which origins serve ranges.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use common::http_server::{Behaviour, Server};
use futures::TryStreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;
use object_store::{ObjectStoreExt, PutPayload};
use readthrough::{
    ByteRange, Cache, Error, FetchOptions, Fetched, HttpOrigin, ObjectStoreOrigin, Origin,
    origin_fn,
};

fn ranged(offset: u64, end: Option<u64>, if_validator: Option<&str>) -> FetchOptions {
    let mut options = FetchOptions::default();
    options.offset = offset;
    options.end = end;
    options.if_validator = if_validator.map(str::to_owned);
    options
}

async fn body_of(fetched: Fetched) -> Bytes {
    let chunks: Vec<Bytes> = fetched.body.try_collect().await.unwrap();
    chunks.concat().into()
}

/// The crate's error inside an origin's boxed error.
fn crate_error(error: readthrough::BoxError) -> Error {
    *error.downcast::<Error>().expect("the crate's own error")
}

#[tokio::test]
async fn http_asks_for_a_range_and_checks_the_answer() {
    let server = Server::start().await;
    let data = common::body(1, 100_000);
    server.route("/r", Behaviour::body(data.clone()).etag("\"v\""));
    let origin = HttpOrigin::new().unwrap();
    let fetched = origin
        .fetch(&server.url("/r"), ranged(10, Some(20), None))
        .await
        .unwrap();
    assert_eq!((fetched.offset, fetched.len), (10, Some(100_000)));
    assert_eq!(fetched.validator.as_deref(), Some("\"v\""));
    assert_eq!(body_of(fetched).await, &data[10..20]);
    let request = &server.requests("/r")[0];
    assert_eq!(request.header("range"), Some("bytes=10-19"));

    let tail = origin
        .fetch(&server.url("/r"), ranged(99_990, None, Some("\"v\"")))
        .await
        .unwrap();
    assert_eq!(tail.offset, 99_990);
    assert_eq!(body_of(tail).await, &data[99_990..]);
    let request = &server.requests("/r")[1];
    assert_eq!(request.header("if-range"), Some("\"v\""));
}

#[tokio::test]
async fn http_maps_416_to_a_range_the_blob_does_not_have() {
    let server = Server::start().await;
    server.route("/r", Behaviour::body(vec![7u8; 1000]));
    let origin = HttpOrigin::new().unwrap();
    let url = server.url("/r");
    let error = origin
        .fetch(&url, ranged(1000, None, None))
        .await
        .unwrap_err();
    match crate_error(error) {
        Error::RangeNotSatisfiable { key, range, length } => {
            assert_eq!(
                (key.as_str(), range.as_str(), length),
                (url.as_str(), "1000-", 1000)
            );
        }
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_server_that_ignores_range_gets_its_leading_bytes_skipped() {
    let server = Server::start().await;
    let data = common::body(2, 300_000);
    server.route(
        "/plain",
        Behaviour::body(data.clone()).etag("\"v\"").ranges(false),
    );
    let origin = HttpOrigin::new().unwrap();
    let url = server.url("/plain");
    for validator in [None, Some("\"v\"")] {
        let fetched = origin
            .fetch(&url, ranged(123_456, Some(200_000), validator))
            .await
            .unwrap();
        assert_eq!(fetched.offset, 123_456, "{validator:?}");
        assert_eq!(body_of(fetched).await, &data[123_456..200_000]);
    }
    // Another validator than the one pinned: the whole body of the new version, not
    // a range of it.
    let fetched = origin
        .fetch(&url, ranged(123_456, None, Some("\"old\"")))
        .await
        .unwrap();
    assert_eq!(fetched.offset, 0);
    assert_eq!(fetched.validator.as_deref(), Some("\"v\""));
    assert_eq!(body_of(fetched).await, data);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_download_resumes_against_a_server_that_ignores_range() {
    let server = Server::start().await;
    let data = common::body(3, 2 << 20);
    server.route(
        "/plain",
        Behaviour::body(data.clone())
            .etag("\"same\"")
            .ranges(false)
            .chunk(64 * 1024)
            .drop_after(1 << 20),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .origin(HttpOrigin::new().unwrap())
        .durable(false)
        .build()
        .await
        .unwrap();
    let url = server.url("/plain");
    let got = cache.get(&url).await.unwrap().bytes().await.unwrap();
    assert!(
        got == data,
        "the whole body, not \"changed while resuming\""
    );
    let requests = server.requests("/plain");
    assert_eq!(requests.len(), 2, "the break was resumed once");
    assert_eq!(requests[1].header("if-range"), Some("\"same\""));
    assert!(cache.contains(&url).await.unwrap());
}

#[tokio::test]
async fn object_stores_get_ranges() {
    let store = Arc::new(InMemory::new());
    let data = common::body(4, 50_000);
    store
        .put(&Path::from("a/b"), PutPayload::from(data.clone()))
        .await
        .unwrap();
    let origin = ObjectStoreOrigin::new(store);
    let fetched = origin
        .fetch("a/b", ranged(100, Some(300), None))
        .await
        .unwrap();
    assert_eq!((fetched.offset, fetched.len), (100, Some(50_000)));
    let etag = fetched.validator.clone().expect("the store gives an ETag");
    assert_eq!(body_of(fetched).await, &data[100..300]);
    let tail = origin
        .fetch("a/b", ranged(49_000, None, Some(&etag)))
        .await
        .unwrap();
    assert_eq!(body_of(tail).await, &data[49_000..]);

    let error = origin
        .fetch("a/b", ranged(50_000, None, None))
        .await
        .unwrap_err();
    assert!(
        matches!(
            crate_error(error),
            Error::RangeNotSatisfiable { length: 50_000, .. }
        ),
        "past the end"
    );
}

#[test]
fn origins_say_whether_they_serve_ranges() {
    let custom = origin_fn(|_key: String| async { Ok::<_, std::io::Error>(Vec::new()) });
    assert!(
        !custom.serves_ranges(),
        "a custom origin does not, unless it says so"
    );
    let http: Arc<dyn Origin> = Arc::new(HttpOrigin::new().unwrap());
    assert!(http.serves_ranges());
    let store: Box<dyn Origin> = Box::new(ObjectStoreOrigin::new(Arc::new(InMemory::new())));
    assert!(store.serves_ranges());
}

#[tokio::test]
async fn an_object_store_blob_is_read_by_slices_of_one_version() {
    let store = Arc::new(InMemory::new());
    let old = common::body(5, 3_000_000);
    let location = Path::from("data/big");
    store
        .put(&location, PutPayload::from(old.clone()))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .origin(ObjectStoreOrigin::new(store.clone()))
        .durable(false)
        .slice_size(1 << 20)
        .build()
        .await
        .unwrap();
    let footer = cache
        .get_range("data/big", ByteRange::last(100))
        .await
        .unwrap();
    assert_eq!(footer.bytes().await.unwrap(), &old[old.len() - 100..]);
    assert!(
        !cache.contains("data/big").await.unwrap(),
        "only a slice was fetched"
    );
    // The object changes: the next slice is refused under the pinned ETag, the read
    // fails, and the one after reads the new version.
    let new = common::body(6, 3_000_000);
    store
        .put(&location, PutPayload::from(new.clone()))
        .await
        .unwrap();
    let error = cache.get_range("data/big", 0..10).await.unwrap_err();
    assert!(matches!(error, Error::Changed { .. }), "{error}");
    let head = cache.get_range("data/big", 0..10).await.unwrap();
    assert_eq!(head.bytes().await.unwrap(), &new[..10]);
}
