//! Bad input at the public calls: clear errors, no panics, nothing already stored lost.

mod common;

use std::time::Duration;

use common::{Counting, body_of};
use futures::StreamExt;
use readthrough::{Cache, Error, Fetched, ReadKind};

#[tokio::test]
async fn nonsense_settings_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    for (builder, mentions) in [
        (
            Cache::builder(dir.path()).stale_after(Duration::ZERO),
            "stale_after",
        ),
        (
            Cache::builder(dir.path()).default_ttl(Duration::ZERO),
            "TTL",
        ),
        (Cache::builder(dir.path()).max_bytes(0), "max_bytes"),
    ] {
        let err = builder.build().await.unwrap_err();
        assert!(matches!(err, Error::InvalidSetting(_)), "{err:?}");
        assert!(err.to_string().contains(mentions), "{err}");
    }
}

#[tokio::test]
async fn huge_durations_and_keys_work() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .origin(Counting::new(1000))
        .stale_after(Duration::MAX)
        .default_ttl(Duration::MAX)
        .max_bytes(u64::MAX)
        .durable(false)
        .build()
        .await
        .unwrap();
    let key = "k".repeat(100_000);
    assert_eq!(
        cache.get(&key).await.unwrap().bytes().await.unwrap(),
        body_of(&key, 0, 1000)
    );
    assert_eq!(cache.get(&key).await.unwrap().kind(), ReadKind::Hit);
    assert_eq!(cache.entries().await.unwrap()[0].key, key);
    cache
        .put("ttl", Fetched::from(b"x".to_vec()).with_ttl(Duration::MAX))
        .await
        .unwrap();
    assert!(cache.read("ttl").await.unwrap().is_some());
}

#[tokio::test]
async fn empty_keys_and_bodies() {
    let dir = tempfile::tempdir().unwrap();
    let cache = common::cache(dir.path(), Counting::new(0)).await;
    for err in [
        cache.get("").await.unwrap_err(),
        cache.read("").await.unwrap_err(),
        cache.put("", Fetched::from(Vec::new())).await.unwrap_err(),
        cache.remove("").await.unwrap_err(),
        cache.contains("").await.unwrap_err(),
        cache.path("").await.unwrap_err(),
        cache.metadata("").await.unwrap_err(),
    ] {
        assert!(matches!(err, Error::InvalidKey { .. }), "{err:?}");
    }
    assert_eq!(common::fetch_all(&cache, "zero").await.len(), 0);
    let hit = cache.get("zero").await.unwrap();
    assert_eq!((hit.kind(), hit.len()), (ReadKind::Hit, Some(0)));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_stream_that_panics_is_an_error_and_stores_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .durable(false)
        .build()
        .await
        .unwrap();
    cache
        .put("kept", Fetched::from(b"safe".to_vec()))
        .await
        .unwrap();
    let err = match cache
        .get_with("boom", |_| async move {
            let panicking = futures::stream::iter(0..3).map(|i| {
                if i == 2 {
                    panic!("a bug in the body stream");
                }
                Ok::<_, std::io::Error>(bytes::Bytes::from_static(b"part"))
            });
            Ok::<_, std::io::Error>(Fetched::from_stream(panicking))
        })
        .await
    {
        Ok(reader) => reader.bytes().await.unwrap_err(),
        Err(e) => e,
    };
    assert!(matches!(err, Error::OriginPanicked { .. }), "{err:?}");
    assert!(!cache.contains("boom").await.unwrap());
    assert_eq!(common::stored(&cache, "kept").await.unwrap(), "safe");
}

#[tokio::test]
async fn a_cache_directory_removed_while_in_use_is_made_again() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("cache");
    let origin = Counting::new(5000);
    let cache = common::cache(&root, origin.clone()).await;
    cache.get("a").await.unwrap().bytes().await.unwrap();
    std::fs::remove_dir_all(&root).unwrap();
    assert!(
        cache.read("a").await.unwrap().is_none(),
        "gone with the directory"
    );
    assert_eq!(
        cache.get("a").await.unwrap().bytes().await.unwrap(),
        body_of("a", 0, 5000)
    );
    assert_eq!(cache.get("a").await.unwrap().kind(), ReadKind::Hit);
    assert_eq!(origin.fetches(), 2);
    let status = cache.status().await.unwrap();
    assert_eq!(status.entries, 1);
}

#[tokio::test]
async fn a_failing_closure_origin_names_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path())
        .durable(false)
        .build()
        .await
        .unwrap();
    let err = cache
        .get_with("missing/thing", |key| async move {
            Err::<Vec<u8>, _>(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("no {key}"),
            ))
        })
        .await
        .unwrap_err();
    assert!(err.to_string().contains("missing/thing"), "{err}");
    let io: std::io::Error = err.into();
    assert_eq!(
        io.kind(),
        std::io::ErrorKind::NotFound,
        "an origin's NotFound stays NotFound"
    );
}
