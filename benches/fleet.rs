//! The fleet tier: 8 hosts (caches in directories of their own, in this process)
//! read one cold blob behind a throttled origin at once, without and with a shared
//! tier (an in-memory object store), side by side in one run. Prints, for each: the
//! origin bytes against the blob, the time for the whole fleet against one host
//! alone, and the other hosts' first byte after the leader's; then the tier's
//! requests per GiB read from it, and one host's cold read with the tier against
//! without it.
//!
//! `READTHROUGH_FLEET_MIB` (256) sets the blob's size, `READTHROUGH_FLEET_RATE_MIB`
//! (200) the origin's link in MiB/s (shared by every fetch), `READTHROUGH_FLEET_HOSTS` (8) the hosts.

#[path = "support/counting_store.rs"]
mod counting_store;
#[path = "../tests/common/hooked_store.rs"]
mod hooked_store;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use futures::future::BoxFuture;
use object_store::memory::InMemory;
use readthrough::{BoxError, Cache, FetchOptions, Fetched, Origin};

const CHUNK: usize = 1 << 20;

fn setting(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// An origin behind one link of `rate` bytes a second, shared by all its fetches
/// (bytes are sent in the order they are asked for); it counts what it sent.
#[derive(Clone)]
struct Throttled {
    blob: Bytes,
    rate: u64,
    sent: Arc<AtomicU64>,
    /// When the link started, and the bytes it has been asked for since.
    epoch: Arc<std::sync::Mutex<Instant>>,
    asked: Arc<AtomicU64>,
}

impl Throttled {
    fn restart(&self) {
        self.sent.store(0, Ordering::Relaxed);
        self.asked.store(0, Ordering::Relaxed);
        *self.epoch.lock().unwrap() = Instant::now();
    }
}

impl Origin for Throttled {
    fn fetch(&self, _: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let this = self.clone();
        Box::pin(async move {
            let len = this.blob.len() as u64;
            let chunks = (0..this.blob.len()).step_by(CHUNK).map(move |at| {
                let this = this.clone();
                async move {
                    let end = (at + CHUNK).min(this.blob.len());
                    let asked = this.asked.fetch_add((end - at) as u64, Ordering::Relaxed);
                    let due = Duration::from_secs_f64(
                        (asked + (end - at) as u64) as f64 / this.rate as f64,
                    );
                    let epoch = *this.epoch.lock().unwrap();
                    tokio::time::sleep_until((epoch + due).into()).await;
                    this.sent.fetch_add((end - at) as u64, Ordering::Relaxed);
                    Ok::<_, BoxError>(this.blob.slice(at..end))
                }
            });
            let body = futures::stream::iter(chunks).then(|chunk| chunk);
            Ok(Fetched::from_stream(body).with_len(len))
        })
    }
}

/// What one fleet read measured.
struct Run {
    seconds: f64,
    origin_bytes: u64,
    /// Each host's first byte, from the start.
    first_bytes: Vec<f64>,
}

async fn host(
    dir: &std::path::Path,
    origin: &Throttled,
    tier: Option<&Arc<counting_store::Counting>>,
) -> Cache {
    let mut builder = Cache::builder(dir).origin(origin.clone()).durable(false);
    if let Some(tier) = tier {
        builder = builder.shared_tier(
            Arc::clone(tier) as Arc<dyn object_store::ObjectStore>,
            "fleet",
        );
    }
    builder.build().await.expect("build a host's cache")
}

async fn fleet(
    hosts: usize,
    origin: &Throttled,
    tier: Option<&Arc<counting_store::Counting>>,
) -> Run {
    let dirs: Vec<_> = (0..hosts).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut caches = Vec::new();
    for dir in &dirs {
        caches.push(host(dir.path(), origin, tier).await);
    }
    let started = Instant::now();
    origin.restart();
    let reads = caches.into_iter().map(|cache| {
        tokio::spawn(async move {
            let mut reader = cache.get("blob").await.expect("get");
            let mut first = None;
            let mut len = 0;
            while let Some(chunk) = reader.next().await {
                len += chunk.expect("read").len();
                first.get_or_insert_with(|| started.elapsed().as_secs_f64());
            }
            (first.unwrap_or_default(), len)
        })
    });
    let mut first_bytes = Vec::new();
    for read in futures::future::join_all(reads).await {
        let (first, len) = read.unwrap();
        assert_eq!(len, origin.blob.len(), "a host read the wrong length");
        first_bytes.push(first);
    }
    first_bytes.sort_by(f64::total_cmp);
    Run {
        seconds: started.elapsed().as_secs_f64(),
        origin_bytes: origin.sent.load(Ordering::Relaxed),
        first_bytes,
    }
}

fn tiered() -> Arc<counting_store::Counting> {
    Arc::new(counting_store::counting(Arc::new(InMemory::new())))
}

fn main() {
    let mib = setting("READTHROUGH_FLEET_MIB", 256);
    let rate = setting("READTHROUGH_FLEET_RATE_MIB", 200) << 20;
    let hosts = setting("READTHROUGH_FLEET_HOSTS", 8) as usize;
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let blob = Bytes::from((0..mib << 20).map(|i| (i % 251) as u8).collect::<Vec<u8>>());
    let origin = Throttled {
        blob,
        rate,
        sent: Arc::default(),
        epoch: Arc::new(std::sync::Mutex::new(Instant::now())),
        asked: Arc::default(),
    };
    let size = origin.blob.len() as f64;
    runtime.block_on(async {
        let alone = fleet(1, &origin, None).await;
        let alone_tier = fleet(1, &origin, Some(&tiered())).await;
        let without = fleet(hosts, &origin, None).await;
        let store = tiered();
        let with = fleet(hosts, &origin, Some(&store)).await;
        println!("fleet: {hosts} hosts, one cold {mib} MiB blob, origin at {} MiB/s", rate >> 20);
        for (name, run) in [("without the tier", &without), ("with the tier", &with)] {
            let first = run.first_bytes[0];
            let last = run.first_bytes[run.first_bytes.len() - 1];
            println!(
                "  {name:<17} origin bytes {:.2}x the blob; fleet {:.2} s ({:.2}x one host alone, {:.2} s); first byte: leader {:.3} s, last host +{:.3} s",
                run.origin_bytes as f64 / size,
                run.seconds,
                run.seconds / alone.seconds,
                alone.seconds,
                first,
                last - first,
            );
        }
        let calls = store.hook.by_kind();
        let requests: u64 = calls.values().sum();
        let gib_from_tier = (hosts - 1) as f64 * size / f64::from(1 << 30);
        println!(
            "  tier requests: {requests} ({calls:?}), {:.0} per GiB read from the tier",
            requests as f64 / gib_from_tier
        );
        println!(
            "  one host, cold: {:.2} s with the tier, {:.2} s without ({:.2}x)",
            alone_tier.seconds,
            alone.seconds,
            alone_tier.seconds / alone.seconds
        );
    });
}
