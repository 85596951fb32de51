//! `ObjectStoreOrigin` against a real S3 wire-protocol server on loopback: moto's
//! server mode (`pip install 'moto[server]'`), started per test on a free port of
//! 127.0.0.1 and killed when the test ends.
//!
//! Without moto each server test prints `skipped: <why>` and passes; with
//! `READTHROUGH_REQUIRE_MOTO=1` in the environment it fails instead, so CI can insist.

#![cfg(feature = "s3")]

mod common;

use common::moto::{BUCKET, Moto, moto, request};

use std::io;
use std::process::{Command, Stdio};
use std::sync::Arc;

use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{Attribute, Attributes, ObjectStore, ObjectStoreExt, PutOptions, PutPayload};
use readthrough::{Cache, Error, FetchOptions, ObjectStoreOrigin, Origin, ReadKind, S3Location};
use sha2::{Digest, Sha256};
use tokio::sync::Barrier;

async fn put(store: &dyn ObjectStore, key: &str, data: &[u8], content_type: Option<&str>) {
    let mut attributes = Attributes::new();
    if let Some(content_type) = content_type {
        attributes.insert(Attribute::ContentType, content_type.to_owned().into());
    }
    let options = PutOptions {
        attributes,
        ..PutOptions::default()
    };
    store
        .put_opts(&Path::from(key), PutPayload::from(data.to_vec()), options)
        .await
        .expect("put an object into moto");
}

async fn cache(dir: &std::path::Path, store: Arc<dyn ObjectStore>) -> Cache {
    Cache::builder(dir)
        .origin(ObjectStoreOrigin::new(store))
        .build()
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_read_fetches_then_hits_and_records_etag() {
    let Some(moto) = moto() else { return };
    let store = moto.store();
    let key = "models/weights.bin";
    let data = common::body(1, 300_000);
    put(store.as_ref(), key, &data, Some("application/x-test")).await;
    let etag = store.head(&Path::from(key)).await.unwrap().e_tag.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), Arc::clone(&store)).await;
    let first = cache.get(key).await.unwrap();
    assert_eq!(first.kind(), ReadKind::Led);
    assert_eq!(first.len(), Some(data.len() as u64));
    assert!(
        first.bytes().await.unwrap() == data,
        "cold read: wrong bytes"
    );

    let second = cache.get(key).await.unwrap();
    assert_eq!(second.kind(), ReadKind::Hit);
    assert!(second.bytes().await.unwrap() == data, "hit: wrong bytes");
    let object = format!("/{BUCKET}/{key}");
    assert_eq!(moto.settled_requests("GET", &object).await, 1);

    let stats = cache.stats();
    assert_eq!((stats.misses, stats.hits, stats.fills_led), (1, 1, 1));

    let mut meta_path = cache.path(key).await.unwrap().into_os_string();
    meta_path.push(".meta");
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(meta["validator"], etag.as_str(), "meta: {meta}");
    assert_eq!(meta["size"], data.len() as u64, "meta: {meta}");
    assert_eq!(meta["key"], key, "meta: {meta}");
    assert_eq!(meta["content_type"], "application/x-test", "meta: {meta}");
    assert_eq!(
        meta["sha256"],
        hex::encode(Sha256::digest(&data)),
        "meta: {meta}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fifty_tasks_on_one_cold_key_make_one_get() {
    let Some(moto) = moto() else { return };
    let store = moto.store();
    let key = "big/blob.bin";
    let data = Arc::new(common::body(2, 4 << 20));
    put(store.as_ref(), key, &data, None).await;

    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), store).await;
    let barrier = Arc::new(Barrier::new(50));
    let tasks: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                let reader = cache.get(key).await.unwrap();
                let kind = reader.kind();
                (kind, reader.bytes().await.unwrap())
            })
        })
        .collect();
    let mut led = 0;
    for task in tasks {
        let (kind, got) = task.await.unwrap();
        assert!(got == data.as_slice(), "a task got wrong bytes ({kind})");
        led += usize::from(kind == ReadKind::Led);
    }
    assert_eq!(led, 1, "exactly one task leads");
    let stats = cache.stats();
    assert_eq!(stats.fills_led, 1, "{stats:?}");
    assert_eq!(stats.fills_joined + stats.hits, 49, "{stats:?}");
    assert_eq!(stats.origin_bytes, data.len() as u64, "{stats:?}");
    assert_eq!(
        moto.settled_requests("GET", &format!("/{BUCKET}/{key}"))
            .await,
        1,
        "moto saw more than one GET of the object"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_object_is_an_origin_error_and_is_not_cached() {
    let Some(moto) = moto() else { return };
    let store = moto.store();
    let key = "later/arrives.bin";
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), Arc::clone(&store)).await;

    let err = match cache.get(key).await {
        Err(err) => err,
        Ok(reader) => panic!("a missing object was read as {:?}", reader.kind()),
    };
    match &err {
        Error::Origin { key: named, .. } => assert_eq!(named, key),
        other => panic!("expected Error::Origin, got {other:?}"),
    }
    assert!(
        has_not_found(&err),
        "expected object_store's NotFound in {err:?}"
    );
    assert!(!cache.contains(key).await.unwrap(), "an error was cached");
    assert!(
        cache.read(key).await.unwrap().is_none(),
        "an error was cached"
    );
    assert_eq!(cache.stats().errors, 1);

    let data = common::body(3, 10_000);
    put(store.as_ref(), key, &data, None).await;
    let reader = cache.get(key).await.unwrap();
    assert_eq!(reader.kind(), ReadKind::Led, "the failure was remembered");
    assert!(reader.bytes().await.unwrap() == data);
    assert!(cache.contains(key).await.unwrap());
    assert_eq!(
        moto.settled_requests("GET", &format!("/{BUCKET}/{key}"))
            .await,
        2
    );
}

/// Whether object_store's `NotFound` is somewhere under `err`. Looks into
/// `Error::Origin`'s shared source by hand: its `source()` hands out the `Arc` that
/// holds the error, which no downcast sees through.
fn has_not_found(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(err);
    while let Some(err) = next {
        if let Some(e) = err.downcast_ref::<object_store::Error>() {
            return matches!(e, object_store::Error::NotFound { .. });
        }
        next = match err.downcast_ref::<Error>() {
            Some(Error::Origin { source, .. }) => Some(&**source),
            _ => err.source(),
        };
    }
    false
}

/// Collects a fetched body.
async fn fetched_body(fetched: readthrough::Fetched) -> Vec<u8> {
    let chunks: Vec<bytes::Bytes> = fetched.body.try_collect().await.unwrap();
    chunks.concat()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fetch_resumes_by_range_only_under_the_same_etag() {
    let Some(moto) = moto() else { return };
    let store = moto.store();
    let key = "resume/me.bin";
    let data = common::body(4, 200_000);
    put(store.as_ref(), key, &data, None).await;
    let etag = store.head(&Path::from(key)).await.unwrap().e_tag.unwrap();
    let origin = ObjectStoreOrigin::new(store);
    let len = Some(data.len() as u64);

    // The whole object, with its ETag as the validator.
    let whole = origin.fetch(key, FetchOptions::default()).await.unwrap();
    assert_eq!((whole.offset, whole.len), (0, len));
    assert_eq!(whole.validator.as_deref(), Some(etag.as_str()));
    assert!(fetched_body(whole).await == data);

    // The tail under the right ETag.
    let at = 123_457;
    let mut options = FetchOptions::default();
    options.offset = at;
    options.if_validator = Some(etag.clone());
    let tail = origin.fetch(key, options).await.unwrap();
    assert_eq!((tail.offset, tail.len), (at, len), "{tail:?}");
    assert_eq!(tail.validator.as_deref(), Some(etag.as_str()));
    assert!(
        fetched_body(tail).await == data[at as usize..],
        "wrong tail"
    );

    // A tail without a validator is unconditional.
    let mut options = FetchOptions::default();
    options.offset = at;
    let tail = origin.fetch(key, options).await.unwrap();
    assert_eq!((tail.offset, tail.len), (at, len), "{tail:?}");
    assert!(
        fetched_body(tail).await == data[at as usize..],
        "wrong tail"
    );

    // A stale ETag: the whole (current) object comes back, from 0, as If-Range does.
    let mut options = FetchOptions::default();
    options.offset = at;
    options.if_validator = Some("\"0123456789abcdef0123456789abcdef\"".to_owned());
    let whole = origin.fetch(key, options).await.unwrap();
    assert_eq!((whole.offset, whole.len), (0, len), "{whole:?}");
    assert_eq!(whole.validator.as_deref(), Some(etag.as_str()));
    assert!(fetched_body(whole).await == data, "a stale ETag got a tail");

    // Precondition failed, then the whole object: both reached moto.
    let object = format!("/{BUCKET}/{key}");
    assert_eq!(moto.settled_requests("GET", &object).await, 5);
}

#[test]
fn s3_urls_parse_into_bucket_and_key() {
    for (url, bucket, key) in [
        ("s3://my-bucket/a.bin", "my-bucket", "a.bin"),
        ("s3://b/models/v1/weights.bin", "b", "models/v1/weights.bin"),
        ("s3://data.example.com/x/", "data.example.com", "x/"),
    ] {
        let location = S3Location::parse(url).unwrap();
        assert_eq!(
            location,
            S3Location {
                bucket: bucket.to_owned(),
                key: key.to_owned()
            },
            "{url}"
        );
    }
}

#[test]
fn s3_urls_without_scheme_bucket_or_key_are_refused() {
    for url in [
        "",
        "my-bucket/a.bin",
        "https://my-bucket.s3.amazonaws.com/a.bin",
        "s3:/my-bucket/a.bin",
        "s3://",
        "s3://bucket-only",
        "s3://bucket/",
        "s3:///key",
    ] {
        match S3Location::parse(url) {
            Err(Error::InvalidUrl { url: named, reason }) => {
                assert_eq!(named, url);
                assert!(reason.contains("s3://"), "{url}: {reason}");
            }
            other => panic!("{url:?} parsed as {other:?}"),
        }
    }
}

// The CLI's error lines for S3 -------------------------------------------------------

/// `readthrough get URL` on a fresh cache, with moto as the S3 endpoint and these
/// credentials.
#[cfg(feature = "cli")]
fn cli_get(moto: &Moto, url: &str, key_id: &str, secret: &str) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    Command::new(env!("CARGO_BIN_EXE_readthrough"))
        .arg("--cache-dir")
        .arg(dir.path().join("cache"))
        .args(["get", url])
        .env("AWS_ENDPOINT_URL", moto.endpoint())
        .env("AWS_ACCESS_KEY_ID", key_id)
        .env("AWS_SECRET_ACCESS_KEY", secret)
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .stdin(Stdio::null())
        .output()
        .expect("run readthrough")
}

/// Asserts exit status 1 and exactly one line on stderr, naming `url` exactly as
/// given exactly once, and saying each of `causes`.
#[cfg(feature = "cli")]
#[track_caller]
fn assert_error_line(out: &std::process::Output, url: &str, causes: &[&str]) {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "exit status: {stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr: {stderr:?}");
    let line = lines[0];
    assert!(line.starts_with(&format!("readthrough: {url}: ")), "{line}");
    assert_eq!(line.matches(url).count(), 1, "names {url} once: {line}");
    assert!(!line.contains('<'), "no XML: {line}");
    for cause in causes {
        assert!(line.contains(cause), "says {cause:?}: {line}");
    }
    eprintln!("{line}");
}

#[cfg(feature = "cli")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_object_is_one_line_with_its_code_and_not_found() {
    let Some(moto) = moto() else { return };
    let url = format!("s3://{BUCKET}/missing-key");
    let out = cli_get(&moto, &url, "testing", "testing");
    assert_error_line(&out, &url, &["NoSuchKey", "HTTP 404"]);

    // Through the library: a "not found", naming the cache's key.
    let dir = tempfile::tempdir().unwrap();
    let cache = cache(dir.path(), moto.store()).await;
    let err = cache
        .get("missing-key")
        .await
        .expect_err("a missing object");
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);
}

#[cfg(feature = "cli")]
#[test]
fn a_refused_object_is_one_line_with_its_code() {
    let Some(moto) = moto() else { return };
    let put = request(
        moto.port,
        "PUT",
        &format!("/{BUCKET}/secret"),
        &[],
        b"hidden",
    );
    assert_eq!(put.unwrap().0, 200);
    // An IAM user with no policy: once moto checks requests, it may do nothing. The
    // IAM calls go unsigned; moto routes them by the service the header names.
    let iam = [
        (
            "Authorization",
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/iam/aws4_request, SignedHeaders=host, Signature=0",
        ),
        ("Content-Type", "application/x-www-form-urlencoded"),
    ];
    let form = |action: &str| format!("Action={action}&UserName=nobody&Version=2010-05-08");
    let (status, _) = request(moto.port, "POST", "/", &iam, form("CreateUser").as_bytes()).unwrap();
    assert_eq!(status, 200);
    let (status, answer) = request(
        moto.port,
        "POST",
        "/",
        &iam,
        form("CreateAccessKey").as_bytes(),
    )
    .unwrap();
    assert_eq!(status, 200, "{answer}");
    let field = |name: &str| {
        let open = format!("<{name}>");
        let start = answer.find(&open).expect(name) + open.len();
        answer[start..start + answer[start..].find('<').unwrap()].to_owned()
    };
    let (key_id, secret) = (field("AccessKeyId"), field("SecretAccessKey"));
    let text = [("Content-Type", "text/plain")];
    let (status, answer) = request(moto.port, "POST", "/moto-api/reset-auth", &text, b"0").unwrap();
    assert_eq!(status, 200, "moto checks requests from now on: {answer}");

    let url = format!("s3://{BUCKET}/secret");
    let out = cli_get(&moto, &url, &key_id, &secret);
    assert_error_line(&out, &url, &["AccessDenied", "HTTP 403"]);
}
