//! Hit-path benchmarks: reading blobs that are already in the cache, each against a
//! plain `std::fs` read of the same store file, measured in the same group.
//!
//! * `hit_large`: one 256 MiB blob streamed chunk by chunk through `Cache::get`,
//!   against a `File` read loop with a 256 KiB buffer.
//! * `hit_small`: 4 KiB blobs (1000 keys, cycled) read whole with
//!   `Cache::get(..).bytes()`, against `File::open` + `read_to_end`.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::path::PathBuf;
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use readthrough::{Cache, Fetched, ReadKind};
use tokio::runtime::Runtime;

const LARGE: usize = 256 * 1024 * 1024;
const SMALL: usize = 4 * 1024;
const SMALL_KEYS: usize = 1000;
const BUF: usize = 256 * 1024;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn open_cache(dir: &std::path::Path) -> Cache {
    Cache::builder(dir)
        .durable(false)
        .build()
        .await
        .expect("build cache")
}

/// Streams a hit through the cache, returning the number of bytes seen.
async fn stream_hit(cache: &Cache, key: &str) -> usize {
    let mut reader = cache.get(key).await.expect("get");
    debug_assert_eq!(reader.kind(), ReadKind::Hit);
    let mut total = 0;
    while let Some(chunk) = reader.next().await {
        total += black_box(chunk.expect("chunk")).len();
    }
    total
}

/// Reads a file with a plain read loop into `buf`, returning the number of bytes.
fn plain_read(path: &PathBuf, buf: &mut [u8]) -> usize {
    let mut file = File::open(path).expect("open");
    let mut total = 0;
    loop {
        let n = file.read(buf).expect("read");
        if n == 0 {
            break;
        }
        black_box(&buf[..n]);
        total += n;
    }
    total
}

fn hit_large(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let key = "large";
    let (cache, path) = rt.block_on(async {
        let cache = open_cache(dir.path()).await;
        let data = common::body(1, LARGE);
        let stored = cache.put(key, Fetched::from(data)).await.expect("put");
        assert_eq!(stored as usize, LARGE);
        // Warm the page cache (and check the read path) once.
        assert_eq!(stream_hit(&cache, key).await, LARGE);
        let path = cache.path(key).await.expect("path");
        (cache, path)
    });
    let mut buf = vec![0u8; BUF];
    assert_eq!(plain_read(&path, &mut buf), LARGE);

    let mut group = c.benchmark_group("hit_large");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(8))
        .throughput(Throughput::Bytes(LARGE as u64));
    group.bench_function("readthrough_get_stream", |b| {
        b.to_async(&rt).iter(|| async {
            let total = stream_hit(&cache, key).await;
            assert_eq!(total, LARGE);
            black_box(total)
        })
    });
    group.bench_function("baseline_std_file_read_256k", |b| {
        b.iter(|| {
            let total = plain_read(&path, &mut buf);
            assert_eq!(total, LARGE);
            black_box(total)
        })
    });
    group.finish();
    drop(cache);
    drop(rt);
}

fn hit_small(c: &mut Criterion) {
    let rt = runtime();
    let dir = tempfile::tempdir().expect("tempdir");
    let keys: Vec<String> = (0..SMALL_KEYS).map(|i| format!("small/{i:04}")).collect();
    let (cache, paths) = rt.block_on(async {
        let cache = open_cache(dir.path()).await;
        let mut paths = Vec::with_capacity(keys.len());
        for (i, key) in keys.iter().enumerate() {
            let stored = cache
                .put(key, Fetched::from(common::body(i as u64 + 100, SMALL)))
                .await
                .expect("put");
            assert_eq!(stored as usize, SMALL);
            paths.push(cache.path(key).await.expect("path"));
        }
        // Warm: read every key once through the cache.
        for key in &keys {
            let bytes = cache
                .get(key)
                .await
                .expect("get")
                .bytes()
                .await
                .expect("read");
            assert_eq!(bytes.len(), SMALL);
        }
        (cache, paths)
    });
    for path in &paths {
        assert_eq!(std::fs::read(path).expect("read").len(), SMALL);
    }

    let mut group = c.benchmark_group("hit_small");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    group.bench_function("readthrough_get_bytes", |b| {
        let cache = &cache;
        let keys = &keys;
        let mut i = 0usize;
        b.to_async(&rt).iter(move || {
            let key = &keys[i % SMALL_KEYS];
            i = i.wrapping_add(1);
            async move {
                let bytes = cache
                    .get(key)
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("read");
                assert_eq!(bytes.len(), SMALL);
                black_box(bytes)
            }
        })
    });
    group.bench_function("baseline_std_open_read_to_end", |b| {
        let mut i = 0usize;
        b.iter(|| {
            let path = &paths[i % SMALL_KEYS];
            i = i.wrapping_add(1);
            let mut file = File::open(path).expect("open");
            let mut data = Vec::new();
            file.read_to_end(&mut data).expect("read");
            assert_eq!(data.len(), SMALL);
            black_box(data)
        })
    });
    group.finish();
    drop(cache);
    drop(rt);
}

criterion_group!(benches, hit_large, hit_small);
criterion_main!(benches);
