//! Bounded resources: memory stays flat whatever the blob size. Readers of a 256 MiB
//! fill and of the stored blob add far less than the blob to the peak resident memory.
//!
//! Each measurement runs in a child (this test executable re-run with `--ignored
//! --exact child_process`), so other tests' memory does not count; the child reports
//! its peak (`VmHWM`) less its resident memory before the readers started.

mod common;

use std::sync::Arc;

use bytes::Bytes;
use futures::{StreamExt, stream};
use readthrough::{Cache, Fetched, origin_fn};

const BLOB: usize = 256 << 20;
const CHUNK: usize = 1 << 20;
const READERS: usize = 20;
/// A quarter of the blob: far above what streaming needs, far below a buffered copy.
const MOST: u64 = (BLOB as u64 / 4) >> 10;

fn status_kib(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap()
}

fn growth_in_child(mode: &str) -> u64 {
    let dir = tempfile::tempdir().unwrap();
    let out = common::child_test("child_process")
        .env("RT_DIR", dir.path())
        .env("RT_MODE", mode)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "child failed: {stdout}");
    stdout
        .lines()
        .find_map(|line| {
            line.split_once("RT growth ")
                .map(|(_, kib)| kib.trim().parse().unwrap())
        })
        .unwrap_or_else(|| panic!("no report in {stdout}"))
}

#[test]
fn readers_of_a_fill_stay_small_whatever_the_blob_size() {
    let kib = growth_in_child("fill");
    assert!(
        kib < MOST,
        "{READERS} readers of a {BLOB}-byte fill grew memory by {kib} KiB"
    );
}

#[test]
fn readers_of_a_stored_blob_stay_small_whatever_its_size() {
    let kib = growth_in_child("hit");
    assert!(
        kib < MOST,
        "{READERS} readers of a {BLOB}-byte blob grew memory by {kib} KiB"
    );
}

/// The child's side. Not a test of its own: the tests above run it.
#[test]
#[ignore = "run by the memory tests as a child"]
fn child_process() {
    let dir = std::env::var("RT_DIR").unwrap();
    let mode = std::env::var("RT_MODE").unwrap();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        // The origin streams one shared 1 MiB buffer over and over: it holds 1 MiB.
        let chunk = Bytes::from(vec![7u8; CHUNK]);
        let body = move || {
            let chunk = chunk.clone();
            Fetched::from_stream(
                stream::iter(0..BLOB / CHUNK).map(move |_| Ok::<_, std::io::Error>(chunk.clone())),
            )
            .with_len(BLOB as u64)
        };
        let fetch = body.clone();
        let cache = Cache::builder(&dir)
            .origin(origin_fn(move |_key: String| {
                let fetched = fetch();
                async move { Ok::<_, std::io::Error>(fetched) }
            }))
            .durable(false)
            .build()
            .await
            .unwrap();
        if mode == "hit" {
            cache.put("blob", body()).await.unwrap();
        }
        let before = status_kib("VmRSS:");
        let barrier = Arc::new(tokio::sync::Barrier::new(READERS));
        let readers: Vec<_> = (0..READERS)
            .map(|_| {
                let (cache, barrier) = (cache.clone(), barrier.clone());
                tokio::spawn(async move {
                    barrier.wait().await;
                    let mut reader = cache.get("blob").await.unwrap();
                    let mut total = 0;
                    while let Some(chunk) = reader.next().await {
                        total += chunk.unwrap().len();
                    }
                    total
                })
            })
            .collect();
        for reader in readers {
            assert_eq!(reader.await.unwrap(), BLOB);
        }
        let peak = status_kib("VmHWM:");
        println!("RT growth {}", peak.saturating_sub(before));
    });
}
