//! Range reads from a hit: random 4 KiB ranges of one stored 256 MiB blob (in the page
//! cache) through `Cache::get_range`, against `pread` of the same store file, measured
//! in the same group (the target: at least half of `pread`'s rate).
//!
//! * `range_hit/get_range`: `get_range(key, a..a + 4096)` and its bytes.
//! * `range_hit/blob_read_at`: `read_at(a..a + 4096)` of a `Blob` opened once
//!   (`Cache::open`), against the same file opened once.
//! * `range_hit/pread_open_fd`: `pread` of the same 4 KiB on a file opened once.
//! * `range_hit/open_pread`: open, `pread`, close, as a cache read must do per read.
//!
//! The offsets come from a seeded generator, the same sequence for each.

#[path = "../tests/common/mod.rs"]
mod common;

use std::fs::File;
use std::hint::black_box;
use std::os::unix::fs::FileExt;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use readthrough::{Cache, Fetched};

const BLOB: usize = 256 * 1024 * 1024;
const RANGE: u64 = 4096;

/// The start of the next random range, on a 4 KiB boundary or not, within the blob.
fn next_offset(rng: &mut fastrand::Rng) -> u64 {
    rng.u64(..BLOB as u64 - RANGE)
}

fn range_hit(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    let dir = tempfile::tempdir().expect("tmp dir");
    let (cache, path) = runtime.block_on(async {
        let cache = Cache::builder(dir.path())
            .durable(false)
            .build()
            .await
            .expect("build cache");
        let body = common::body(7, BLOB);
        cache.put("blob", Fetched::from(body)).await.expect("put");
        let path = cache.path("blob").await.expect("path");
        (cache, path)
    });
    let mut group = c.benchmark_group("range_hit");
    group.throughput(Throughput::Bytes(RANGE));

    let mut rng = fastrand::Rng::with_seed(1);
    group.bench_function("get_range", |b| {
        b.iter(|| {
            let start = next_offset(&mut rng);
            let bytes = runtime.block_on(async {
                let reader = cache.get_range("blob", start..start + RANGE).await;
                reader.expect("get_range").bytes().await.expect("bytes")
            });
            black_box(bytes);
        })
    });

    let blob = runtime.block_on(cache.open("blob")).expect("open");
    assert!(blob.is_stored());
    let mut rng = fastrand::Rng::with_seed(1);
    group.bench_function("blob_read_at", |b| {
        b.iter(|| {
            let start = next_offset(&mut rng);
            let bytes = runtime.block_on(blob.read_at(start..start + RANGE));
            black_box(bytes.expect("read_at"));
        })
    });

    let file = File::open(&path).expect("open the store file");
    let mut buf = vec![0u8; RANGE as usize];
    let mut rng = fastrand::Rng::with_seed(1);
    group.bench_function("pread_open_fd", |b| {
        b.iter(|| {
            let start = next_offset(&mut rng);
            file.read_exact_at(&mut buf, start).expect("pread");
            black_box(&buf);
        })
    });

    let mut rng = fastrand::Rng::with_seed(1);
    group.bench_function("open_pread", |b| {
        b.iter(|| {
            let start = next_offset(&mut rng);
            let file = File::open(&path).expect("open");
            file.read_exact_at(&mut buf, start).expect("pread");
            black_box(&buf);
        })
    });
    group.finish();
}

criterion_group!(benches, range_hit);
criterion_main!(benches);
