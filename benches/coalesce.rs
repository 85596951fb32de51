//! Coalescing benchmark: a cold fill from a throttled origin, read by 1, 10, 100 and
//! 1000 tasks of one process at once, all on the same cold key. Every iteration uses a
//! fresh key; outside the timing it checks that the origin was called exactly once and
//! sent the blob exactly once (origin bytes = 1x the blob), then removes the blob.
//! The time is to the last byte of the last reader.
//!
//! Two origins:
//!
//! * `cold_fill`: 32 MiB in 256 KiB chunks, 1 ms before each (~118 MiB/s; ~272 ms).
//!   `origin_only` drains it directly, without the cache: the floor for any fill.
//!   At 1000 readers this asks 1000 x 118 MiB/s = 115 GiB/s of copying from the page
//!   cache, more than two cores can do: past some reader count the copies, not the
//!   origin, set the time.
//! * `cold_fill_slow`: 16 MiB in 256 KiB chunks, 30 ms before each (~8 MiB/s, ~2 s),
//!   an origin slower than the readers' aggregate copying: 1000 readers need 8 GiB/s.
//!
//! The origin bytes per fill are printed on stderr (`origin bytes per cold key`).

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

const CHUNK: usize = 256 * 1024;

/// Serves `blob` bytes in `CHUNK`-sized chunks, sleeping `delay` before each, and
/// counts its fetches and the bytes it sent.
#[derive(Clone)]
struct SlowOrigin {
    fetches: Arc<AtomicUsize>,
    sent: Arc<AtomicUsize>,
    chunk: Bytes,
    blob: usize,
    delay: Duration,
}

impl SlowOrigin {
    fn new(blob: usize, delay: Duration) -> Self {
        let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
        SlowOrigin {
            fetches: Arc::default(),
            sent: Arc::default(),
            chunk: Bytes::from(chunk),
            blob,
            delay,
        }
    }

    fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }

    fn sent(&self) -> usize {
        self.sent.load(Ordering::SeqCst)
    }
}

impl Origin for SlowOrigin {
    fn fetch(&self, _key: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let chunk = self.chunk.clone();
        let (sent, delay, blob) = (Arc::clone(&self.sent), self.delay, self.blob);
        Box::pin(async move {
            let body = stream::iter(0..blob / CHUNK).then(move |_| {
                let chunk = chunk.clone();
                let sent = Arc::clone(&sent);
                async move {
                    tokio::time::sleep(delay).await;
                    sent.fetch_add(chunk.len(), Ordering::SeqCst);
                    Ok::<_, BoxError>(chunk)
                }
            });
            Ok(Fetched::from_stream(body).with_len(blob as u64))
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

fn run_group(
    c: &mut Criterion,
    name: &str,
    blob: usize,
    delay: Duration,
    task_counts: &[usize],
    origin_only: bool,
) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let origin = SlowOrigin::new(blob, delay);
    let cache = rt.block_on(async {
        Cache::builder(dir.path())
            .origin(origin.clone())
            .durable(false)
            .build()
            .await
            .expect("build cache")
    });
    let next_key = AtomicUsize::new(0);

    let mut group = c.benchmark_group(name);
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Bytes(blob as u64));
    if origin_only {
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
                assert_eq!(total, blob);
                black_box(total)
            })
        });
    }
    for &tasks in task_counts {
        // Enough time for 10 samples of one fill each (criterion's minimum).
        group.measurement_time(Duration::from_secs(match (tasks, delay.as_millis()) {
            (_, d) if d > 1 => 22,
            (1000, _) => 35,
            _ => 5,
        }));
        let fills = AtomicUsize::new(0);
        let origin_bytes = AtomicUsize::new(0);
        group.bench_with_input(BenchmarkId::new("tasks", tasks), &tasks, |b, &tasks| {
            b.to_async(&rt).iter_custom(|iters| {
                let cache = cache.clone();
                let origin = origin.clone();
                let (next_key, fills, origin_bytes) = (&next_key, &fills, &origin_bytes);
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let key: Arc<str> =
                            format!("cold/{}", next_key.fetch_add(1, Ordering::Relaxed)).into();
                        let (before, sent_before) = (origin.fetches(), origin.sent());
                        let stats_before = cache.stats().origin_bytes;

                        let start = Instant::now();
                        let readers: Vec<_> = (0..tasks)
                            .map(|_| tokio::spawn(read_all(cache.clone(), Arc::clone(&key))))
                            .collect();
                        let mut totals = Vec::with_capacity(tasks);
                        for reader in readers {
                            totals.push(reader.await.expect("reader task"));
                        }
                        timed += start.elapsed();

                        assert!(totals.iter().all(|&t| t == blob), "short read");
                        assert_eq!(
                            origin.fetches() - before,
                            1,
                            "the origin must be called exactly once per cold key"
                        );
                        let sent = origin.sent() - sent_before;
                        assert_eq!(sent, blob, "the origin must send the blob once");
                        assert_eq!((cache.stats().origin_bytes - stats_before) as usize, blob);
                        fills.fetch_add(1, Ordering::Relaxed);
                        origin_bytes.fetch_add(sent, Ordering::Relaxed);
                        assert!(cache.remove(&key).await.expect("remove"));
                    }
                    timed
                }
            })
        });
        let (fills, bytes) = (fills.into_inner(), origin_bytes.into_inner());
        eprintln!(
            "SUMMARY coalesce {name}/tasks/{tasks}: origin bytes per cold key {:.0} over {fills} fills (1 origin fetch each) = {:.2}x the {blob}-byte blob",
            bytes as f64 / fills as f64,
            bytes as f64 / fills as f64 / blob as f64,
        );
    }
    group.finish();
    drop(cache);
    drop(rt);
}

fn cold_fill(c: &mut Criterion) {
    run_group(
        c,
        "cold_fill",
        32 * 1024 * 1024,
        Duration::from_millis(1),
        &[1, 10, 100, 1000],
        true,
    );
}

fn cold_fill_slow(c: &mut Criterion) {
    run_group(
        c,
        "cold_fill_slow",
        16 * 1024 * 1024,
        Duration::from_millis(30),
        &[1, 1000],
        false,
    );
}

criterion_group!(benches, cold_fill, cold_fill_slow);
criterion_main!(benches);
