//! The footer (last 64 KiB) of a cold 1 GiB blob behind a loopback HTTP origin that
//! sends about 100 MiB/s (1 MiB writes, 10 ms apart), read three ways, each from a
//! fresh cache directory, timed and with the body bytes the client took from the
//! origin:
//!
//! * `get_range, slices of 8 MiB`: `Cache::get_range(url, ByteRange::last(65536))`
//!   with `slice_size(8 MiB)` (the probe's one byte and the last slice);
//! * `get_range, no slices`: the same read without slices (the whole blob is fetched;
//!   the range is out once the last 64 KiB has landed);
//! * `reqwest ranged GET`: one `GET` with `Range: bytes=-65536`, no cache (the floor).
//!
//! Run with `cargo bench --bench range_footer` (about a minute, most of it the whole
//! download); `READTHROUGH_FOOTER_RUNS=N` repeats each (default 3; the whole
//! download once).

#[path = "../tests/common/mod.rs"]
mod common;

use std::time::{Duration, Instant};

use common::http_server::{Behaviour, Server};
use readthrough::{ByteRange, Cache, HttpOrigin};

const BLOB: usize = 1 << 30;
const FOOTER: u64 = 65536;
const PATH: &str = "/big.bin";

/// A fresh cache over an `HttpOrigin`, with slices of `slice` when given.
async fn cache_in(dir: &std::path::Path, slice: Option<u64>) -> Cache {
    let mut builder = Cache::builder(dir)
        .origin(HttpOrigin::new().expect("http origin"))
        .durable(false);
    if let Some(size) = slice {
        builder = builder.slice_size(size);
    }
    builder.build().await.expect("cache")
}

/// Reads the footer through a fresh cache; the time and the origin bytes.
async fn through_cache(url: &str, slice: Option<u64>) -> (Duration, u64) {
    let dir = tempfile::tempdir().expect("tempdir");
    let cache = cache_in(dir.path(), slice).await;
    let started = Instant::now();
    let reader = cache.get_range(url, ByteRange::last(FOOTER)).await;
    let footer = reader.expect("get_range").bytes().await.expect("footer");
    let took = started.elapsed();
    assert_eq!(footer.len() as u64, FOOTER);
    (took, cache.stats().origin_bytes)
}

/// One ranged GET with reqwest; the time and the body bytes.
async fn plain_ranged(client: &reqwest::Client, url: &str) -> (Duration, u64) {
    let started = Instant::now();
    let response = client
        .get(url)
        .header(reqwest::header::RANGE, format!("bytes=-{FOOTER}"))
        .send()
        .await
        .expect("GET");
    assert_eq!(response.status(), reqwest::StatusCode::PARTIAL_CONTENT);
    let body = response.bytes().await.expect("body");
    (started.elapsed(), body.len() as u64)
}

fn main() {
    let runs: usize = std::env::var("READTHROUGH_FOOTER_RUNS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(3);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async move {
        let server = Server::start().await;
        let body = Behaviour::body(common::body(3, BLOB))
            .etag("\"big\"")
            .chunk(1 << 20)
            .delay(Duration::from_millis(10));
        server.route(PATH, body);
        let url = server.url(PATH);
        let client = reqwest::Client::new();
        println!("footer (64 KiB) of a cold 1 GiB blob, origin ~100 MiB/s");
        println!("{:<28} {:>12} {:>16}", "read", "time", "origin bytes");
        for _ in 0..runs {
            let (took, bytes) = through_cache(&url, Some(8 << 20)).await;
            println!(
                "{:<28} {:>12.1?} {:>16}",
                "get_range, slices of 8 MiB", took, bytes
            );
        }
        for _ in 0..runs {
            let (took, bytes) = plain_ranged(&client, &url).await;
            println!("{:<28} {:>12.1?} {:>16}", "reqwest ranged GET", took, bytes);
        }
        let (took, bytes) = through_cache(&url, None).await;
        println!(
            "{:<28} {:>12.1?} {:>16}",
            "get_range, no slices", took, bytes
        );
    });
}
