//! Hit-path benchmarks: reading blobs that are already in the cache (and in the page
//! cache), each against plain reads of the same data measured in the same group.
//!
//! * `hit_large/{256MiB,1GiB}`: one blob streamed chunk by chunk through `Cache::get`,
//!   against a `std::fs::File` read loop and a `tokio::fs::File` read loop, both with a
//!   256 KiB buffer, on the same store file.
//! * `hit_small/{4KiB,64KiB}`: blobs (1000 keys, cycled) read whole with
//!   `Cache::get(..).bytes()`, against `File::open` + `read_to_end` of the same store
//!   files, and against the `cacache` crate (`cacache::read`, tokio runtime) reading the
//!   same bodies from its own directory.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::hint::black_box;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use readthrough::{Cache, Fetched, ReadKind};
use tokio::io::AsyncReadExt;
use tokio::runtime::Runtime;

const MIB: usize = 1024 * 1024;
const LARGE: [(usize, &str); 2] = [(256 * MIB, "256MiB"), (1024 * MIB, "1GiB")];
const SMALL: [(usize, &str); 2] = [(4 * 1024, "4KiB"), (64 * 1024, "64KiB")];
const SMALL_KEYS: usize = 1000;
const BUF: usize = 256 * 1024;

fn runtime() -> Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime")
}

async fn open_cache(dir: &Path) -> Cache {
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

/// The same loop on `tokio::fs::File` (each read a trip to the blocking pool).
async fn tokio_read(path: &Path, buf: &mut [u8]) -> usize {
    let mut file = tokio::fs::File::open(path).await.expect("open");
    let mut total = 0;
    loop {
        let n = file.read(buf).await.expect("read");
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
    for (size, label) in LARGE {
        let dir = tempfile::tempdir().expect("tempdir");
        let key = "large";
        let (cache, path) = rt.block_on(async {
            let cache = open_cache(dir.path()).await;
            let data = common::body(1, size);
            let stored = cache.put(key, Fetched::from(data)).await.expect("put");
            assert_eq!(stored as usize, size);
            // Warm the page cache (and check the read path) once.
            assert_eq!(stream_hit(&cache, key).await, size);
            let path = cache.path(key).await.expect("path");
            (cache, path)
        });
        let mut buf = vec![0u8; BUF];
        assert_eq!(plain_read(&path, &mut buf), size);

        let mut group = c.benchmark_group(format!("hit_large/{label}"));
        group
            .sample_size(10)
            .sampling_mode(SamplingMode::Flat)
            .warm_up_time(Duration::from_secs(2))
            .measurement_time(Duration::from_secs(if size > 256 * MIB { 12 } else { 6 }))
            .throughput(Throughput::Bytes(size as u64));
        group.bench_function("readthrough_get_stream", |b| {
            b.to_async(&rt).iter(|| async {
                let total = stream_hit(&cache, key).await;
                assert_eq!(total, size);
                black_box(total)
            })
        });
        group.bench_function("baseline_std_file_read_256k", |b| {
            b.iter(|| {
                let total = plain_read(&path, &mut buf);
                assert_eq!(total, size);
                black_box(total)
            })
        });
        group.bench_function("baseline_tokio_fs_read_256k", |b| {
            let path = &path;
            b.to_async(&rt).iter(|| async move {
                let mut buf = vec![0u8; BUF];
                let total = tokio_read(path, &mut buf).await;
                assert_eq!(total, size);
                black_box(total)
            })
        });
        group.finish();
        drop(cache);
    }
    drop(rt);
}

fn hit_small(c: &mut Criterion) {
    let rt = runtime();
    for (size, label) in SMALL {
        let dir = tempfile::tempdir().expect("tempdir");
        let cacache_dir = tempfile::tempdir().expect("tempdir");
        let cacache_dir = cacache_dir.path().to_path_buf();
        let keys: Vec<String> = (0..SMALL_KEYS).map(|i| format!("small/{i:04}")).collect();
        let (cache, paths) = rt.block_on(async {
            let cache = open_cache(dir.path()).await;
            let mut paths = Vec::with_capacity(keys.len());
            for (i, key) in keys.iter().enumerate() {
                let data = common::body(i as u64 + 100, size);
                let stored = cache
                    .put(key, Fetched::from(data.clone()))
                    .await
                    .expect("put");
                assert_eq!(stored as usize, size);
                paths.push(cache.path(key).await.expect("path"));
                // The same body under the same key in cacache's directory.
                cacache::write(&cacache_dir, key, &data)
                    .await
                    .expect("cacache write");
            }
            // Warm: read every key once through the cache and through cacache.
            for key in &keys {
                let bytes = cache
                    .get(key)
                    .await
                    .expect("get")
                    .bytes()
                    .await
                    .expect("read");
                assert_eq!(bytes.len(), size);
                let data = cacache::read(&cacache_dir, key)
                    .await
                    .expect("cacache read");
                assert_eq!(data, bytes);
            }
            (cache, paths)
        });
        for path in &paths {
            assert_eq!(std::fs::read(path).expect("read").len(), size);
        }

        let mut group = c.benchmark_group(format!("hit_small/{label}"));
        group
            .sample_size(10)
            .warm_up_time(Duration::from_secs(1))
            .measurement_time(Duration::from_secs(4))
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
                    assert_eq!(bytes.len(), size);
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
                assert_eq!(data.len(), size);
                black_box(data)
            })
        });
        group.bench_function("peer_cacache_read", |b| {
            let keys = &keys;
            let cacache_dir = &cacache_dir;
            let mut i = 0usize;
            b.to_async(&rt).iter(move || {
                let key = &keys[i % SMALL_KEYS];
                i = i.wrapping_add(1);
                async move {
                    let data = cacache::read(cacache_dir, key).await.expect("cacache read");
                    assert_eq!(data.len(), size);
                    black_box(data)
                }
            })
        });
        group.finish();
        drop(cache);
        let _ = std::fs::remove_dir_all(&cacache_dir);
    }
    drop(rt);
}

criterion_group!(benches, hit_large, hit_small);
criterion_main!(benches);
