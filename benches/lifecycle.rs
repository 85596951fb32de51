//! What entry lifetimes cost.
//!
//! * `hit_lifecycle/4KiB`: hits of 4 KiB blobs with lifetimes off (no TTL, no size
//!   bound) against the same hits with a default TTL, a size bound and sliding expiry
//!   on, and plain `File::open` + `read_to_end` of the same files, in one group.
//! * eviction per publish: with a size bound the cache is full at, the time of each
//!   publish, eviction included (amortised over one eviction cycle), at 1k and at 1M
//!   entries (`READTHROUGH_EVICT_ENTRIES` for fewer). Printed, not a criterion group:
//!   one sample is thousands of publishes.

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/direct.rs"]
mod direct;

use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput};
use readthrough::{Cache, Fetched, GetOptions};
use tokio::runtime::Runtime;

const SMALL: usize = 4 * 1024;
const KEYS: usize = 1000;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn filled(dir: &Path, on: bool) -> (Cache, Vec<String>, Vec<PathBuf>) {
    let mut builder = Cache::builder(dir).durable(false);
    if on {
        builder = builder
            .default_ttl(Duration::from_secs(86400))
            .max_bytes(1 << 40);
    }
    let cache = builder.build().await.expect("build");
    let keys: Vec<String> = (0..KEYS).map(|i| format!("key-{i}")).collect();
    let mut paths = Vec::new();
    for (i, key) in keys.iter().enumerate() {
        cache
            .put(key, Fetched::from(common::body(i as u64, SMALL)))
            .await
            .expect("put");
        paths.push(cache.path(key).await.expect("path"));
    }
    (cache, keys, paths)
}

fn hit_lifecycle(c: &mut Criterion) {
    let rt = runtime();
    let (off_dir, on_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (off, keys, paths) = rt.block_on(filled(off_dir.path(), false));
    let (on, _, _) = rt.block_on(filled(on_dir.path(), true));
    let sliding = GetOptions::default().extend_expiry();
    let mut group = c.benchmark_group("hit_lifecycle");
    group
        .throughput(Throughput::Elements(1))
        .sample_size(20)
        .measurement_time(Duration::from_secs(5));
    let mut i = 0;
    group.bench_function("4KiB/lifetimes_off", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let (cache, key) = (&off, &keys[i]);
            async move { black_box(cache.get(key).await.unwrap().bytes().await.unwrap()) }
        })
    });
    group.bench_function("4KiB/ttl_bound_sliding_on", |b| {
        b.to_async(&rt).iter(|| {
            i = (i + 1) % KEYS;
            let (cache, key, sliding) = (&on, &keys[i], &sliding);
            async move {
                black_box(
                    cache
                        .get_opts(key, sliding)
                        .await
                        .unwrap()
                        .bytes()
                        .await
                        .unwrap(),
                )
            }
        })
    });
    group.bench_function("4KiB/baseline_std_open_read", |b| {
        let mut buf = Vec::with_capacity(SMALL);
        b.iter(|| {
            i = (i + 1) % KEYS;
            buf.clear();
            std::fs::File::open(&paths[i])
                .unwrap()
                .read_to_end(&mut buf)
                .unwrap();
            black_box(buf.len())
        })
    });
    group.finish();
}

/// The mean time of a publish into a cache of `entries` entries kept at its bound,
/// over one eviction cycle: the publishes that bring a tenth of the bound in, and the
/// one eviction they cause (a pass over every entry, removing a tenth of them).
fn publish_at(rt: &Runtime, entries: usize) -> Duration {
    const SIZE: usize = 256;
    let body = vec![1; SIZE];
    let key = |i: usize| format!("fill-{i}");
    let dir = tempfile::tempdir().unwrap();
    let bound = (entries * SIZE) as u64;
    let cache = rt.block_on(async {
        let cache = Cache::builder(dir.path())
            .durable(false)
            .max_bytes(bound)
            .build()
            .await
            .expect("build");
        cache
            .put(&key(0), Fetched::from(body.clone()))
            .await
            .expect("put");
        cache
    });
    let store_of_0 = rt.block_on(cache.path(&key(0))).expect("path");
    direct::fill_direct(&store_of_0, entries, key, &body);
    // The entries written straight into the layout, on the ledger too.
    std::fs::write(dir.path().join("v1/ledger"), format!("{bound} 0\n")).unwrap();
    let publishes = entries / 10;
    let started = Instant::now();
    rt.block_on(async {
        for i in 0..publishes {
            cache
                .put(&format!("new-{i}"), Fetched::from(vec![2; SIZE]))
                .await
                .expect("put");
        }
        // Wait for the eviction to finish: the ledger is back under the bound.
        while ledger(cache.dir()) > bound {
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    });
    let per_publish = started.elapsed() / publishes as u32;
    direct::remove_by_inode(dir.path());
    per_publish
}

fn ledger(dir: &Path) -> u64 {
    std::fs::read_to_string(dir.join("v1/ledger"))
        .unwrap()
        .split_whitespace()
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    hit_lifecycle(&mut c);
    c.final_summary();
    let rt = runtime();
    let small = publish_at(&rt, 1_000);
    let large_entries =
        std::env::var("READTHROUGH_EVICT_ENTRIES").map_or(1_000_000, |n| n.parse().unwrap());
    let large = publish_at(&rt, large_entries);
    println!("evict_per_publish/1k     {small:?} per publish, eviction included");
    println!("evict_per_publish/{large_entries}  {large:?} per publish, eviction included");
    println!(
        "evict_per_publish ratio  {:.2} ({large_entries} against 1k; target <= 2.0)",
        large.as_secs_f64() / small.as_secs_f64()
    );
}
