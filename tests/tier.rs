//! The fleet tier through the library, over an in-memory store shared by caches in
//! separate directories (hosts): lifetimes, pruning and the tier's counters.

#![cfg(feature = "object-store")]

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::{Counting, ManualClock};
use object_store::memory::InMemory;
use readthrough::Cache;

const MINUTE: Duration = Duration::from_secs(60);

async fn host(
    dir: &std::path::Path,
    origin: &Counting,
    bucket: &Arc<InMemory>,
    clock: &ManualClock,
) -> Cache {
    Cache::builder(dir)
        .origin(origin.clone())
        .durable(false)
        .clock(clock.clone())
        .default_ttl(10 * MINUTE)
        .shared_tier(
            Arc::clone(bucket) as Arc<dyn object_store::ObjectStore>,
            "fleet",
        )
        .tier_part_size(4096)
        .build()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_second_host_reads_the_tier_and_counts_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (origin, bucket, clock) = (
        Counting::new(10_000),
        Arc::new(InMemory::new()),
        ManualClock::new(),
    );
    let first = host(a.path(), &origin, &bucket, &clock).await;
    let body = first.get("k").await.unwrap().bytes().await.unwrap();
    let stats = first.stats();
    assert_eq!(
        (stats.tier_misses, stats.tier_hits, stats.tier_bytes_written),
        (1, 0, 10_000)
    );
    let second = host(b.path(), &origin, &bucket, &clock).await;
    assert_eq!(second.get("k").await.unwrap().bytes().await.unwrap(), body);
    let stats = second.stats();
    assert_eq!(
        (stats.tier_hits, stats.tier_bytes_read, stats.tier_errors),
        (1, 10_000, 0)
    );
    assert_eq!(origin.fetches(), 1);
}

#[tokio::test]
async fn an_expired_copy_is_not_served_and_the_refetch_replaces_it() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (origin, bucket, clock) = (
        Counting::new(9_000),
        Arc::new(InMemory::new()),
        ManualClock::new(),
    );
    let first = host(a.path(), &origin, &bucket, &clock).await;
    first.get("k").await.unwrap().bytes().await.unwrap();
    let published = first.tier_entries().await.unwrap();
    assert_eq!(published.len(), 1);
    clock.advance(11 * MINUTE);
    let second = host(b.path(), &origin, &bucket, &clock).await;
    second.get("k").await.unwrap().bytes().await.unwrap();
    assert_eq!(origin.fetches(), 2, "an expired copy was served");
    let now = second.tier_entries().await.unwrap();
    assert_eq!(now.len(), 1);
    assert!(
        now[0].generation > published[0].generation,
        "the copy was not replaced"
    );
    assert!(now[0].expires > published[0].expires);
}

#[tokio::test]
async fn prune_removes_old_and_expired_copies() {
    let dir = tempfile::tempdir().unwrap();
    let (origin, bucket, clock) = (
        Counting::new(5_000),
        Arc::new(InMemory::new()),
        ManualClock::new(),
    );
    let cache = host(dir.path(), &origin, &bucket, &clock).await;
    for key in ["a", "b"] {
        cache.get(key).await.unwrap().bytes().await.unwrap();
    }
    let kept = cache.tier_prune(Some(MINUTE)).await.unwrap();
    assert!(
        kept.removed.is_empty(),
        "fresh copies were pruned: {kept:?}"
    );
    clock.advance(2 * MINUTE);
    let report = cache.tier_prune(Some(MINUTE)).await.unwrap();
    assert_eq!(report.removed.len(), 2);
    assert!(report.bytes_freed >= 10_000);
    assert!(cache.tier_entries().await.unwrap().is_empty());
}
