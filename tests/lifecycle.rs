//! Entry lifetimes: expiry on a controllable clock, revalidation against a loopback
//! server, sliding expiry, stale-while-revalidate, damaged entries, and the size
//! bound.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use common::http_server::{Behaviour, Server};
use common::{Counting, ManualClock, body_of};
use readthrough::{Cache, Clock, Error, Fetched, GetOptions, HttpOrigin, ReadKind};

const MINUTE: Duration = Duration::from_secs(60);

/// An origin that serves version N of each key on its Nth fetch.
#[derive(Clone, Default)]
struct Versions(Arc<AtomicUsize>);

impl readthrough::Origin for Versions {
    fn fetch(
        &self,
        key: &str,
        _: readthrough::FetchOptions,
    ) -> futures::future::BoxFuture<'static, Result<Fetched, readthrough::BoxError>> {
        let version = self.0.fetch_add(1, Ordering::SeqCst) as u64;
        let body = body_of(key, version, 10_000);
        Box::pin(async move { Ok(Fetched::from(body)) })
    }
}

async fn cache_with(
    dir: &std::path::Path,
    clock: &ManualClock,
    origin: impl readthrough::Origin,
) -> Cache {
    Cache::builder(dir)
        .origin(origin)
        .clock(clock.clone())
        .default_ttl(10 * MINUTE)
        .durable(false)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn an_expired_entry_is_fetched_again_and_replaced_without_disturbing_its_readers() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let origin = Versions::default();
    let cache = cache_with(dir.path(), &clock, origin.clone()).await;
    assert_eq!(
        cache.get("k").await.unwrap().bytes().await.unwrap(),
        body_of("k", 0, 10_000)
    );
    clock.advance(9 * MINUTE);
    let old_reader = cache.get("k").await.unwrap();
    assert_eq!(old_reader.kind(), ReadKind::Hit, "not expired yet");

    clock.advance(2 * MINUTE);
    assert!(cache.read("k").await.unwrap().is_none(), "expired: no hit");
    let fresh = cache.get("k").await.unwrap();
    assert_eq!(fresh.kind(), ReadKind::Led);
    assert_eq!(fresh.bytes().await.unwrap(), body_of("k", 1, 10_000));
    assert_eq!(
        old_reader.bytes().await.unwrap(),
        body_of("k", 0, 10_000),
        "the old reader is undisturbed"
    );
    assert_eq!(origin.0.load(Ordering::SeqCst), 2);
    assert_eq!(cache.get("k").await.unwrap().kind(), ReadKind::Hit);
}

#[tokio::test]
async fn ttls_per_body_override_the_default() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let cache = cache_with(dir.path(), &clock, Versions::default()).await;
    cache
        .put("short", Fetched::from(b"s".to_vec()).with_ttl(MINUTE))
        .await
        .unwrap();
    cache
        .put("forever", Fetched::from(b"f".to_vec()).never_expires())
        .await
        .unwrap();
    cache
        .put("default", Fetched::from(b"d".to_vec()))
        .await
        .unwrap();
    let entry = cache.metadata("short").await.unwrap().unwrap();
    assert_eq!(
        entry
            .expires
            .unwrap()
            .duration_since(entry.created)
            .unwrap(),
        MINUTE
    );
    assert_eq!(
        cache.metadata("forever").await.unwrap().unwrap().expires,
        None
    );

    clock.advance(2 * MINUTE);
    assert!(cache.read("short").await.unwrap().is_none());
    assert!(cache.read("default").await.unwrap().is_some());
    clock.advance(365 * 24 * 60 * MINUTE);
    assert!(cache.read("default").await.unwrap().is_none());
    assert_eq!(common::stored(&cache, "forever").await.unwrap(), "f");
}

#[tokio::test]
async fn a_sliding_read_extends_the_expiry() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let cache = cache_with(dir.path(), &clock, Versions::default()).await;
    cache
        .put("session", Fetched::from(b"token".to_vec()))
        .await
        .unwrap();
    let sliding = GetOptions::default().extend_expiry();
    for _ in 0..5 {
        clock.advance(8 * MINUTE);
        let reader = cache.get_opts("session", &sliding).await.unwrap();
        assert_eq!(reader.kind(), ReadKind::Hit);
    }
    clock.advance(8 * MINUTE);
    assert!(
        cache.read("session").await.unwrap().is_some(),
        "40 minutes on, kept alive by reads"
    );
    clock.advance(3 * MINUTE);
    assert!(
        cache.read("session").await.unwrap().is_none(),
        "11 minutes after the last read"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_expired_entry_with_a_validator_is_revalidated_without_its_body() {
    for (path, behaviour, header) in [
        (
            "/etag",
            Behaviour::body(common::body(1, 500_000)).etag("\"v1\""),
            "if-none-match",
        ),
        (
            "/dated",
            Behaviour::body(common::body(1, 500_000))
                .last_modified("Tue, 01 Jan 2030 00:00:00 GMT"),
            "if-modified-since",
        ),
    ] {
        let server = Server::start().await;
        server.route(path, behaviour);
        let dir = tempfile::tempdir().unwrap();
        let clock = ManualClock::new();
        let cache = cache_with(dir.path(), &clock, HttpOrigin::new().unwrap()).await;
        let url = server.url(path);
        let first = cache.get(&url).await.unwrap().bytes().await.unwrap();
        clock.advance(11 * MINUTE);
        let again = cache.get(&url).await.unwrap();
        assert_eq!(again.kind(), ReadKind::Led);
        assert_eq!(again.bytes().await.unwrap(), first);
        let requests = server.requests(path);
        assert_eq!(requests.len(), 2, "{path}");
        assert!(
            requests[1].header(header).is_some(),
            "{path}: the second request is conditional"
        );
        assert_eq!(cache.stats().revalidations, 1, "{path}");
        assert_eq!(
            cache.get(&url).await.unwrap().kind(),
            ReadKind::Hit,
            "{path}: extended"
        );
        let entry = cache.metadata(&url).await.unwrap().unwrap();
        assert!(entry.expires.unwrap() > clock.now() + 9 * MINUTE, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_while_revalidate_serves_the_old_copy_at_once_and_refreshes_it() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let origin = Versions::default();
    let cache = Cache::builder(dir.path())
        .origin(origin.clone())
        .clock(clock.clone())
        .default_ttl(MINUTE)
        .stale_while_revalidate(true)
        .durable(false)
        .build()
        .await
        .unwrap();
    cache.get("k").await.unwrap().bytes().await.unwrap();
    clock.advance(2 * MINUTE);
    let stale = cache.get("k").await.unwrap();
    assert_eq!(stale.kind(), ReadKind::Hit);
    assert_eq!(
        stale.bytes().await.unwrap(),
        body_of("k", 0, 10_000),
        "the old copy, at once"
    );
    // The refresh runs in the background; `path` waits for a servable copy.
    // While the refresh publishes, between its renames, the key may have no metadata
    // for a moment: that is "not yet".
    common::eventually(async || {
        origin.0.load(Ordering::SeqCst) == 2
            && cache
                .metadata("k")
                .await
                .unwrap()
                .is_some_and(|meta| meta.expires > Some(clock.now()))
    })
    .await;
    assert_eq!(
        cache.get("k").await.unwrap().bytes().await.unwrap(),
        body_of("k", 1, 10_000)
    );
    assert_eq!(origin.0.load(Ordering::SeqCst), 2, "one background refresh");
}

#[tokio::test]
async fn damaged_entries_are_never_served_and_are_fetched_again() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Counting::new(50_000);
    let cache = common::cache(dir.path(), origin.clone()).await;
    let want = body_of("k", 0, 50_000);
    cache.get("k").await.unwrap().bytes().await.unwrap();
    let path = cache.path("k").await.unwrap();
    let meta = format!("{}.meta", path.display());

    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(100)
        .unwrap();
    assert_eq!(
        cache.get("k").await.unwrap().bytes().await.unwrap(),
        want,
        "a truncated blob is fetched again"
    );
    assert_eq!(origin.fetches(), 2);

    for garbage in [&b""[..], b"{not json", b"{\"version\":99}"] {
        std::fs::write(&meta, garbage).unwrap();
        assert!(cache.read("k").await.unwrap().is_none(), "{garbage:?}");
        assert_eq!(cache.get("k").await.unwrap().bytes().await.unwrap(), want);
    }
    assert_eq!(origin.fetches(), 5);
    assert_eq!(cache.get("k").await.unwrap().kind(), ReadKind::Hit);
}

#[tokio::test]
async fn verify_on_read_catches_a_flipped_byte() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Counting::new(50_000);
    let cache = Cache::builder(dir.path())
        .origin(origin.clone())
        .verify_on_read(true)
        .durable(false)
        .build()
        .await
        .unwrap();
    let want = body_of("k", 0, 50_000);
    cache.get("k").await.unwrap().bytes().await.unwrap();
    assert_eq!(
        cache.get("k").await.unwrap().bytes().await.unwrap(),
        want,
        "an intact blob verifies"
    );
    let path = cache.path("k").await.unwrap();
    let mut bytes = std::fs::read(&path).unwrap();
    bytes[40_000] ^= 0x20;
    std::fs::write(&path, bytes).unwrap();
    let err = cache.get("k").await.unwrap().bytes().await.unwrap_err();
    assert!(matches!(err, Error::Corrupt { .. }), "{err:?}");
    assert!(
        !cache.contains("k").await.unwrap(),
        "the corrupt blob is removed"
    );
    assert_eq!(cache.get("k").await.unwrap().bytes().await.unwrap(), want);
    assert_eq!(origin.fetches(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_bound_holds_and_evicts_the_least_recently_read() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let cache = Cache::builder(dir.path())
        .origin(Counting::new(100_000))
        .clock(clock.clone())
        .max_bytes(1_000_000)
        .durable(false)
        .build()
        .await
        .unwrap();
    for i in 0..8 {
        common::fetch_all(&cache, &format!("k{i}")).await;
        clock.advance(2 * MINUTE);
    }
    // "k0" is read again: now the most recently read.
    cache.get("k0").await.unwrap().bytes().await.unwrap();
    clock.advance(2 * MINUTE);
    for i in 8..20 {
        common::fetch_all(&cache, &format!("k{i}")).await;
        clock.advance(2 * MINUTE);
        settle_under(&cache, 1_000_000 + 100_000).await;
        let status = cache.status().await.unwrap();
        assert!(
            status.bytes <= 1_000_000 + 100_000,
            "over the bound by more than one fill: {status:?}"
        );
        if i == 10 {
            // k10 took the cache over the bound: wait for the eviction it started.
            settle_under(&cache, 1_000_000).await;
            // The first eviction took k1 and k2, read longest ago; k0 was read again.
            assert!(!cache.contains("k1").await.unwrap() && !cache.contains("k2").await.unwrap());
            assert!(cache.contains("k0").await.unwrap() && cache.contains("k3").await.unwrap());
        }
    }
    settle_under(&cache, 1_000_000).await;
    assert!(cache.status().await.unwrap().bytes <= 1_000_000);
    assert!(cache.contains("k19").await.unwrap());
}

/// The bound each process of the multi-process eviction test keeps.
const SHARED_BOUND: u64 = 2_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_size_bound_holds_with_several_processes_filling_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let children: Vec<_> = (0..4)
        .map(|i| {
            common::child_test("eviction_child")
                .env("RT_DIR", dir.path())
                .env("RT_CHILD", i.to_string())
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut child in children {
        assert!(child.wait().unwrap().success());
    }
    // Each child waited for its own evictions; one more publish settles the rest.
    let cache = Cache::builder(dir.path())
        .max_bytes(SHARED_BOUND)
        .durable(false)
        .build()
        .await
        .unwrap();
    cache
        .put("last", Fetched::from(vec![0; 1000]))
        .await
        .unwrap();
    settle_under(&cache, SHARED_BOUND).await;
    let status = cache.status().await.unwrap();
    assert!(status.bytes <= SHARED_BOUND, "{status:?}");
    assert!(
        status.entries >= 10,
        "eviction stops at the low-water mark: {status:?}"
    );
    let ledger = ledger_total(dir.path());
    assert_eq!(ledger, status.bytes, "the ledger agrees with the store");
}

/// Waits until the ledger is under `bound` and agrees with what is stored (an
/// eviction may still be running).
async fn settle_under(cache: &Cache, bound: u64) {
    common::eventually(async || {
        let ledger = ledger_total(cache.dir());
        ledger <= bound && ledger == cache.status().await.unwrap().bytes
    })
    .await;
}

/// The total the ledger of the cache in `dir` holds.
fn ledger_total(dir: &std::path::Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("v1/ledger")).unwrap();
    text.split_whitespace().next().unwrap().parse().unwrap()
}

/// A child of the multi-process eviction test: fills 25 keys of 100 kB into the
/// shared directory, bounded at [`SHARED_BOUND`], checking the bound as it goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "run by the multi-process eviction test as a child"]
async fn eviction_child() {
    let dir = std::env::var("RT_DIR").expect("RT_DIR is set");
    let child = std::env::var("RT_CHILD").expect("RT_CHILD is set");
    let cache = Cache::builder(&dir)
        .origin(Counting::new(100_000))
        .max_bytes(SHARED_BOUND)
        .durable(false)
        .build()
        .await
        .unwrap();
    for i in 0..25 {
        let key = format!("child{child}-{i}");
        assert_eq!(
            cache.get(&key).await.unwrap().bytes().await.unwrap(),
            body_of(&key, 0, 100_000)
        );
    }
    settle_under(&cache, SHARED_BOUND).await;
}

#[tokio::test]
async fn an_expired_object_is_revalidated_through_the_object_store() {
    use object_store::{ObjectStoreExt, PutPayload, memory::InMemory, path::Path};
    let store = Arc::new(InMemory::new());
    store
        .put(
            &Path::from("data/a.bin"),
            PutPayload::from(common::body(5, 100_000)),
        )
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let cache = cache_with(
        dir.path(),
        &clock,
        readthrough::ObjectStoreOrigin::new(store.clone()),
    )
    .await;
    assert_eq!(
        common::fetch_all(&cache, "data/a.bin").await,
        common::body(5, 100_000)
    );
    clock.advance(11 * MINUTE);
    let again = cache.get("data/a.bin").await.unwrap();
    assert_eq!(again.bytes().await.unwrap(), common::body(5, 100_000));
    assert_eq!(
        cache.stats().revalidations,
        1,
        "the unchanged object was confirmed, not fetched"
    );
    assert_eq!(cache.stats().origin_bytes, 100_000, "its body crossed once");

    // A changed object is fetched again when it next expires.
    store
        .put(
            &Path::from("data/a.bin"),
            PutPayload::from(common::body(6, 50_000)),
        )
        .await
        .unwrap();
    clock.advance(11 * MINUTE);
    assert_eq!(
        common::fetch_all(&cache, "data/a.bin").await,
        common::body(6, 50_000)
    );
    assert_eq!(cache.stats().revalidations, 1);
}

/// Metadata format 3 binds each metadata file to its blob. A cache written by the
/// previous format (2, no binding) keeps its entries: they are served, listed and
/// revalidated as before, paired with their blobs by length alone, and the first
/// rewrite of an entry's metadata (here a sliding expiry) binds it.
#[tokio::test]
async fn entries_of_the_previous_metadata_format_are_kept_and_bound_on_rewrite() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::new();
    let cache = cache_with(dir.path(), &clock, Versions::default()).await;
    let body = body_of("old", 0, 10_000);
    cache.put("old", Fetched::from(body.clone())).await.unwrap();
    let meta_path = {
        let mut path = cache.path("old").await.unwrap().into_os_string();
        path.push(".meta");
        std::path::PathBuf::from(path)
    };
    let mut json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(json["version"], 3);
    assert!(json["blob"]["ino"].is_u64(), "{json}");
    json["version"] = 2.into();
    json.as_object_mut().unwrap().remove("blob");
    std::fs::write(&meta_path, serde_json::to_vec(&json).unwrap()).unwrap();

    let cache = cache_with(dir.path(), &clock, Versions::default()).await;
    let reader = cache.get("old").await.unwrap();
    assert_eq!(reader.kind(), ReadKind::Hit);
    assert_eq!(reader.bytes().await.unwrap(), body);
    assert_eq!(cache.entries().await.unwrap().len(), 1);
    clock.advance(5 * MINUTE);
    let sliding = GetOptions::default().extend_expiry();
    cache.get_opts("old", &sliding).await.unwrap();
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_path).unwrap()).unwrap();
    assert_eq!(json["version"], 3, "rewritten in the current format");
    assert!(json["blob"]["ino"].is_u64(), "{json}");
    assert_eq!(cache.get("old").await.unwrap().kind(), ReadKind::Hit);
}
