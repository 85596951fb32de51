//! Memory: peak resident memory while 100 readers stream one 2 GiB blob, measured in a
//! child process (this bench re-executes itself as `child MODE DIR`).
//!
//! * `fill`: the 100 readers start together on a cold key; one leads the fill from an
//!   in-process origin that streams 2 GiB (1 MiB chunks of one shared buffer, so the
//!   origin itself holds 1 MiB), the other 99 join it.
//! * `hit`: the blob is stored first (with `put`, streamed), then 100 readers stream
//!   it from the store.
//!
//! The baseline is the same process just before the readers start: runtime, cache and
//! origin built (and, for `hit`, the blob stored). The peak is `VmHWM` from
//! `/proc/self/status`, reset to the current RSS (`clear_refs` 5) at the baseline, and
//! cross-checked by sampling `VmRSS` every 5 ms from a thread. Page-cache pages of the
//! blob are not in the process's RSS (nothing is mapped).

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use readthrough::{BoxError, Cache, FetchOptions, Fetched, Origin};

const BLOB: u64 = 2 * 1024 * 1024 * 1024;
const CHUNK: usize = 1024 * 1024;
const READERS: usize = 100;

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    if args.first().map(String::as_str) == Some("child") {
        child(&args[1], Path::new(&args[2]));
        return;
    }
    let exe = std::env::current_exe().expect("current_exe");
    for mode in ["fill", "hit"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let status = Command::new(&exe)
            .args(["child", mode])
            .arg(dir.path())
            .status()
            .expect("spawn child");
        assert!(status.success(), "memory child {mode} failed");
    }
}

/// `kB` fields of `/proc/self/status`.
fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// Streams `BLOB` bytes in `CHUNK`s, all views of one buffer.
struct Generated(Bytes);

impl Origin for Generated {
    fn fetch(&self, _: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let chunk = self.0.clone();
        Box::pin(async move {
            let n = (BLOB / CHUNK as u64) as usize;
            let body = stream::iter((0..n).map(move |_| Ok::<_, BoxError>(chunk.clone())));
            Ok(Fetched::from_stream(body).with_len(BLOB))
        })
    }
}

fn child(mode: &str, dir: &Path) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let chunk: Vec<u8> = (0..CHUNK).map(|i| (i * 31 % 251) as u8).collect();
    let origin = Generated(Bytes::from(chunk));
    let cache = rt.block_on(async {
        Cache::builder(dir)
            .origin(Generated(origin.0.clone()))
            .durable(false)
            .build()
            .await
            .expect("build cache")
    });
    let key = "big";
    if mode == "hit" {
        let started = Instant::now();
        let body = rt
            .block_on(origin.fetch(key, FetchOptions::default()))
            .expect("body");
        let stored = rt.block_on(cache.put(key, body)).expect("put");
        assert_eq!(stored, BLOB);
        eprintln!(
            "memory/hit: stored 2 GiB in {:.1} s",
            started.elapsed().as_secs_f64()
        );
    }
    // Let the runtime's threads and allocator settle, then take the baseline.
    std::thread::sleep(Duration::from_millis(200));
    let baseline = status_kib("VmRSS:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    let stop = Arc::new(AtomicBool::new(false));
    let sampled = Arc::new(AtomicU64::new(baseline));
    let sampler = {
        let (stop, sampled) = (Arc::clone(&stop), Arc::clone(&sampled));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                sampled.fetch_max(status_kib("VmRSS:"), Ordering::Relaxed);
                std::thread::sleep(Duration::from_millis(5));
            }
        })
    };
    let started = Instant::now();
    let totals: Vec<u64> = rt.block_on(async {
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let cache = cache.clone();
                tokio::spawn(async move {
                    let mut reader = cache.get(key).await.expect("get");
                    let mut total = 0u64;
                    while let Some(chunk) = reader.next().await {
                        total += chunk.expect("chunk").len() as u64;
                    }
                    total
                })
            })
            .collect();
        let mut totals = Vec::new();
        for r in readers {
            totals.push(r.await.expect("reader"));
        }
        totals
    });
    let elapsed = started.elapsed();
    stop.store(true, Ordering::Relaxed);
    sampler.join().unwrap();
    assert!(totals.iter().all(|&t| t == BLOB), "short read");
    let hwm = status_kib("VmHWM:");
    let peak = if reset {
        hwm
    } else {
        sampled.load(Ordering::Relaxed)
    };
    println!(
        "memory/{mode}: {READERS} readers x 2 GiB in {:.1} s ({:.1} GiB/s delivered); baseline RSS {:.1} MiB, peak {:.1} MiB (VmHWM{}; sampled max {:.1} MiB): +{:.1} MiB over baseline",
        elapsed.as_secs_f64(),
        (READERS as f64 * BLOB as f64) / elapsed.as_secs_f64() / (1u64 << 30) as f64,
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
        if reset {
            " reset at baseline"
        } else {
            " not resettable, sampled"
        },
        sampled.load(Ordering::Relaxed) as f64 / 1024.0,
        peak.saturating_sub(baseline) as f64 / 1024.0,
    );
    if mode == "fill" {
        println!(
            "memory/fill: origin bytes {} (1 fetch for 100 readers)",
            cache.stats().origin_bytes
        );
    }
    println!(
        "SUMMARY memory mode={mode} readers={READERS} blob_gib=2 baseline_mib={:.1} peak_mib={:.1} over_baseline_mib={:.1}",
        baseline as f64 / 1024.0,
        peak as f64 / 1024.0,
        peak.saturating_sub(baseline) as f64 / 1024.0
    );
    drop(cache);
    drop(rt);
}
