//! Miss-path benchmark: a cold 256 MiB blob from a loopback HTTP/1.1 origin (the test
//! server, 1 MiB writes, no delay), read to its last byte through the cache
//! (`HttpOrigin`, a fresh key per iteration, durability off), against a plain reqwest
//! download of the same URL into a file (`std::fs::File::write_all` per chunk), in the
//! same group. Neither side fsyncs. A fill also computes the blob's SHA-256 (kept in
//! its metadata), so a third function adds that to the plain download: the floor for
//! what the cache does. Outside the timing each iteration checks the
//! length, that the origin got exactly one request, and removes what it wrote.

#[path = "../tests/common/mod.rs"]
mod common;

use std::hint::black_box;
use std::io::Write;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::http_server::{Behaviour, Server};
use criterion::{Criterion, SamplingMode, Throughput, criterion_group, criterion_main};
use futures::StreamExt;
use readthrough::{Cache, HttpOrigin, ReadKind};
use sha2::{Digest, Sha256};

const BLOB: usize = 256 * 1024 * 1024;
const PATH: &str = "/blob.bin";

fn miss(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, cache) = rt.block_on(async {
        let server = Server::start().await;
        server.route(
            PATH,
            Behaviour::body(common::body(7, BLOB)).chunk(1024 * 1024),
        );
        let cache = Cache::builder(dir.path().join("cache"))
            .origin(HttpOrigin::new().expect("http origin"))
            .durable(false)
            .build()
            .await
            .expect("build cache");
        (server, cache)
    });
    let client = reqwest::Client::new();
    let next = AtomicUsize::new(0);

    let mut group = c.benchmark_group("miss_http_256MiB");
    group
        .sample_size(10)
        .sampling_mode(SamplingMode::Flat)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(10))
        .throughput(Throughput::Bytes(BLOB as u64));
    group.bench_function("readthrough_get_cold", |b| {
        b.to_async(&rt).iter_custom(|iters| {
            let (cache, server, next) = (cache.clone(), &server, &next);
            async move {
                let mut timed = Duration::ZERO;
                for _ in 0..iters {
                    let url = server.url(&format!(
                        "{PATH}?i={}",
                        next.fetch_add(1, Ordering::Relaxed)
                    ));
                    let before = server.count(PATH);
                    let start = Instant::now();
                    let mut reader = cache.get(&url).await.expect("get");
                    assert_eq!(reader.kind(), ReadKind::Led);
                    let mut total = 0;
                    while let Some(chunk) = reader.next().await {
                        total += black_box(chunk.expect("chunk")).len();
                    }
                    timed += start.elapsed();
                    assert_eq!(total, BLOB);
                    assert_eq!(server.count(PATH) - before, 1);
                    assert!(cache.remove(&url).await.expect("remove"));
                }
                timed
            }
        })
    });
    for hash in [false, true] {
        let name = if hash {
            "baseline_reqwest_to_file_sha256"
        } else {
            "baseline_reqwest_to_file"
        };
        group.bench_function(name, |b| {
            b.to_async(&rt).iter_custom(|iters| {
                let (client, server, next, dir) = (&client, &server, &next, dir.path());
                async move {
                    let mut timed = Duration::ZERO;
                    for _ in 0..iters {
                        let url = server.url(&format!(
                            "{PATH}?i={}",
                            next.fetch_add(1, Ordering::Relaxed)
                        ));
                        let path = dir.join("plain.bin");
                        let start = Instant::now();
                        let response = client.get(&url).send().await.expect("send");
                        assert!(response.status().is_success());
                        let mut file = std::fs::File::create(&path).expect("create");
                        let mut hasher = Sha256::new();
                        let mut body = response.bytes_stream();
                        let mut total = 0;
                        while let Some(chunk) = body.next().await {
                            let chunk = chunk.expect("chunk");
                            file.write_all(&chunk).expect("write");
                            if hash {
                                hasher.update(&chunk);
                            }
                            total += chunk.len();
                        }
                        drop(file);
                        black_box(hasher.finalize());
                        timed += start.elapsed();
                        assert_eq!(total, BLOB);
                        std::fs::remove_file(&path).expect("remove");
                    }
                    timed
                }
            })
        });
    }
    group.finish();
    drop(cache);
    drop(server);
    drop(rt);
}

criterion_group!(benches, miss);
criterion_main!(benches);
