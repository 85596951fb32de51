//! Scale: hit latency (`get(key)` + `bytes()`, a 64-byte blob, keys drawn at random
//! from the whole set) in a cache holding 1,000 entries and in one holding 1,000,000
//! (`READTHROUGH_SCALE_ENTRIES` overrides the larger count), in one group.
//!
//! The 1,000-entry cache is filled with `put`; the rate is printed, and with it how
//! long 1M puts would take. The large cache is filled faster by writing its files
//! directly in the cache's layout: each entry's blob (the same 64 bytes for every key,
//! so the same size and digest) and a copy of the metadata file that `put` wrote for a
//! template key with only its `key` field changed. A random sample of the written
//! entries is read back through the cache before timing. Each entry takes two inodes
//! and, on ext4 without inline data, two 4 KiB blocks: about 8 GiB for 1M, removed at
//! the end (the time it took is printed).

#[path = "support/direct.rs"]
mod direct;

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use readthrough::{Cache, Fetched, ReadKind};

const SMALL_SET: usize = 1_000;
const BODY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn large_set() -> usize {
    std::env::var("READTHROUGH_SCALE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn key(i: usize) -> String {
    format!("scale/entry/{i:08}")
}

async fn open(dir: &Path) -> Cache {
    Cache::builder(dir)
        .durable(false)
        .build()
        .await
        .expect("build cache")
}

/// Fills `cache` with `n` entries through `put`, 64 at a time; returns the seconds taken.
async fn fill_with_put(cache: &Cache, n: usize) -> f64 {
    let started = Instant::now();
    let keys: Vec<String> = (0..n).map(key).collect();
    futures::stream::iter(keys)
        .map(|k| {
            let cache = cache.clone();
            async move {
                cache
                    .put(&k, Fetched::from(BODY.to_vec()))
                    .await
                    .expect("put");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    started.elapsed().as_secs_f64()
}

use futures::StreamExt;

fn disk_use_mib(dir: &Path) -> Option<f64> {
    let out = std::process::Command::new("du")
        .arg("-sk")
        .arg(dir)
        .output()
        .ok()?;
    let kib: f64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn hit_scale(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let large = large_set();
    let small_dir = tempfile::tempdir().expect("tempdir");
    let large_dir = tempfile::tempdir().expect("tempdir");
    let (small, big) = rt.block_on(async {
        let small = open(small_dir.path()).await;
        let secs = fill_with_put(&small, SMALL_SET).await;
        eprintln!(
            "scale: {SMALL_SET} puts in {secs:.2} s ({:.0} puts/s; 1M puts would take ~{:.0} s)",
            SMALL_SET as f64 / secs,
            1e6 * secs / SMALL_SET as f64
        );
        let big = open(large_dir.path()).await;
        big.put(&key(0), Fetched::from(BODY.to_vec())).await.expect("put");
        let store_of_0 = big.path(&key(0)).await.expect("path");
        let secs = tokio::task::spawn_blocking(move || direct::fill_direct(&store_of_0, large, key, BODY))
            .await
            .unwrap();
        eprintln!(
            "scale: wrote {large} entries directly in {secs:.1} s ({:.0} entries/s); disk use {:.0} MiB",
            large as f64 / secs,
            disk_use_mib(large_dir.path()).unwrap_or(f64::NAN)
        );
        // Read back a sample through the cache.
        let mut x = 88172645463325252u64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = key((x % large as u64) as usize);
            let reader = big.read(&k).await.expect("read").expect("entry is stored");
            assert_eq!(reader.kind(), ReadKind::Hit);
            assert_eq!(reader.bytes().await.expect("bytes"), BODY);
        }
        (small, big)
    });

    let mut group = c.benchmark_group("hit_scale");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for (cache, n) in [(&small, SMALL_SET), (&big, large)] {
        group.bench_with_input(BenchmarkId::new("entries", n), &n, |b, &n| {
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            b.to_async(&rt).iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = key((x % n as u64) as usize);
                async move {
                    let bytes = cache
                        .get(&k)
                        .await
                        .expect("get")
                        .bytes()
                        .await
                        .expect("read");
                    assert_eq!(bytes.len(), BODY.len());
                    black_box(bytes)
                }
            })
        });
    }
    group.finish();

    // The two criterion runs above are seconds apart; on a shared machine the load can
    // change between them. Interleave: rounds of 2,000 random hits on each cache in
    // turn, and compare the medians of the rounds' means.
    let (mut a, mut z) = (Vec::new(), Vec::new());
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    rt.block_on(async {
        for _ in 0..25 {
            for (cache, n, out) in [(&small, SMALL_SET, &mut a), (&big, large, &mut z)] {
                let started = Instant::now();
                for _ in 0..2000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = key((x % n as u64) as usize);
                    let bytes = cache
                        .get(&k)
                        .await
                        .expect("get")
                        .bytes()
                        .await
                        .expect("read");
                    assert_eq!(bytes.len(), BODY.len());
                }
                out.push(started.elapsed().as_secs_f64() / 2000.0 * 1e6);
            }
        }
    });
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, z) = (median(&mut a), median(&mut z));
    println!(
        "SUMMARY scale interleaved entries_small={SMALL_SET} us={a:.2} entries_large={large} us={z:.2} ratio={:.2}",
        z / a
    );
    drop((small, big));
    drop(rt);
    let started = Instant::now();
    direct::remove_by_inode(large_dir.path());
    drop(large_dir);
    eprintln!(
        "scale: removed the large cache in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

criterion_group!(benches, hit_scale);
criterion_main!(benches);
