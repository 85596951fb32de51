//! Coalescing benchmark: a cold fill from a slow origin (32 MiB in 256 KiB chunks,
//! 1 ms per chunk), read by 1 task versus 100 tasks reading the same cold key at once.
//! Every iteration uses a fresh key; outside the timing it checks that the origin was
//! called exactly once and removes the blob again.
//!
//! `origin_only` drains the same origin directly, without the cache: the floor that
//! the slow origin (tokio's 1 ms timer granularity) sets for any fill.

use std::hint::black_box;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use criterion::{
    BenchmarkId, Criterion, SamplingMode, Throughput, criterion_group, criterion_main,
};
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use readthrough::{BoxError, Cache, FetchOptions, Fetched, Origin};

const BLOB: usize = 32 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;
const DELAY: Duration = Duration::from_millis(1);

/// Serves `BLOB` bytes in `CHUNK`-sized chunks, sleeping `DELAY` before each, and
/// counts its fetches.
#[derive(Clone)]
struct SlowOrigin {
    fetches: Arc<AtomicUsize>,
    chunk: Bytes,
}

impl SlowOrigin {
    fn new() -> Self {
        let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
        SlowOrigin {
            fetches: Arc::default(),
            chunk: Bytes::from(chunk),
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Origin for SlowOrigin {
    fn fetch(&self, _key: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let chunk = self.chunk.clone();
        Box::pin(async move {
            let body = stream::iter(0..BLOB / CHUNK).then(move |_| {
                let chunk = chunk.clone();
                async move {
                    tokio::time::sleep(DELAY).await;
                    Ok::<_, BoxError>(chunk)
                }
            });
            Ok(Fetched::from_stream(body).with_len(BLOB as u64))
        })
    }
}

/// Reads `key` to the end through `cache`, returning the number of bytes.
async fn read_all(cache: Cache, key: Arc<str>) -> usize {
    let mut reader = cache.get(&key).await.expect("get");
    let mut total = 0;
    while let Some(chunk) = reader.next().await {
        total += black_box(chunk.expect("chunk")).len();
    }
    total
}

fn cold_fill(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = SlowOrigin::new();
    let cache = rt.block_on(async {
        Cache::builder(dir.path())
            .origin(origin.clone())
            .durable(false)
            .build()
            .await
            .expect("build cache")
    });
    let next_key = AtomicUsize::new(0);

    let mut group = c.benchmark_group("cold_fill");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(BLOB as u64));
    group.bench_function("origin_only", |b| {
        b.to_async(&rt).iter(|| async {
            let fetched = origin
                .fetch("origin-only", FetchOptions::default())
                .await
                .expect("fetch");
            let total = fetched
                .body
                .fold(0usize, |n, chunk| async move {
                    n + black_box(chunk.expect("chunk")).len()
                })
                .await;
            assert_eq!(total, BLOB);
            black_box(total)
        })
    });
    for tasks in [1usize, 100] {
        group.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
            b.to_async(&rt).iter_custom(|iters| {
                let cache = cache.clone();
                let origin = origin.clone();
                let next_key = &next_key;
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let key: Arc<str> =
                            format!("cold/{}", next_key.fetch_add(1, Ordering::Relaxed)).into();
                        let before = origin.fetches();

                        let start = Instant::now();
                        let readers: Vec<_> = (0..tasks)
                            .map(|_| tokio::spawn(read_all(cache.clone(), Arc::clone(&key))))
                            .collect();
                        let mut totals = Vec::with_capacity(tasks);
                        for reader in readers {
                            totals.push(reader.await.expect("reader task"));
                        }
                        timed += start.elapsed();

                        assert!(totals.iter().all(|&t| t == BLOB), "short read");
                        assert_eq!(
                            origin.fetches() - before,
                            1,
                            "the origin must be called exactly once per cold key"
                        );
                        assert!(cache.remove(&key).await.expect("remove"));
                    }
                    timed
                }
            })
        });
    }
    group.finish();
    drop(cache);
    drop(rt);
}

criterion_group!(benches, cold_fill);
criterion_main!(benches);
