//! Scale: hit latency (`get(key)` + `bytes()`, a 64-byte blob, keys drawn at random
//! from the whole set) in a cache holding 1,000 entries and in one holding 1,000,000
//! (`READTHROUGH_SCALE_ENTRIES` overrides the larger count), in one group.
//!
//! The 1,000-entry cache is filled with `put`; the rate is printed, and with it how
//! long 1M puts would take. The large cache is filled faster by writing its files
//! directly in the cache's layout: each entry's blob (the same 64 bytes for every key,
//! so the same size and digest) and a copy of the metadata file that `put` wrote for a
//! template key with only its `key` field changed. A random sample of the written
//! entries is read back through the cache before timing. Each entry takes two inodes
//! and, on ext4 without inline data, two 4 KiB blocks: about 8 GiB for 1M, removed at
//! the end (the time it took is printed).

use std::hint::black_box;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use readthrough::{Cache, Fetched, ReadKind};
use sha2::{Digest, Sha256};

const SMALL_SET: usize = 1_000;
const BODY: &[u8] = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

fn large_set() -> usize {
    std::env::var("READTHROUGH_SCALE_ENTRIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

fn key(i: usize) -> String {
    format!("scale/entry/{i:08}")
}

async fn open(dir: &Path) -> Cache {
    Cache::builder(dir)
        .durable(false)
        .build()
        .await
        .expect("build cache")
}

/// Fills `cache` with `n` entries through `put`, 64 at a time; returns the seconds taken.
async fn fill_with_put(cache: &Cache, n: usize) -> f64 {
    let started = Instant::now();
    let keys: Vec<String> = (0..n).map(key).collect();
    futures::stream::iter(keys)
        .map(|k| {
            let cache = cache.clone();
            async move {
                cache
                    .put(&k, Fetched::from(BODY.to_vec()))
                    .await
                    .expect("put");
            }
        })
        .buffer_unordered(64)
        .collect::<Vec<()>>()
        .await;
    started.elapsed().as_secs_f64()
}

use futures::StreamExt;

/// Writes entries `1..n` directly in the layout, next to the template entry 0 that
/// `put` stored; returns the seconds taken.
fn fill_direct(store_of_0: &Path, n: usize) -> f64 {
    let started = Instant::now();
    // `<base>/store/<shard>/<name>`: the store root is two levels up.
    let store_root = store_of_0.parent().unwrap().parent().unwrap().to_path_buf();
    let meta_of_0 = PathBuf::from(format!("{}.meta", store_of_0.display()));
    let template: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&meta_of_0).expect("template metadata"))
            .expect("metadata is JSON");
    assert_eq!(template["key"], key(0), "metadata layout changed");
    let threads = 4;
    let next = AtomicUsize::new(1);
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| {
                let mut meta = template.clone();
                loop {
                    let first = next.fetch_add(1000, Ordering::Relaxed);
                    if first >= n {
                        break;
                    }
                    for i in first..(first + 1000).min(n) {
                        let k = key(i);
                        let name = hex::encode(Sha256::digest(k.as_bytes()));
                        let shard = store_root.join(&name[..2]);
                        let blob = shard.join(&name);
                        meta["key"] = serde_json::Value::String(k);
                        write_new(&blob, BODY, &shard);
                        let meta_path = shard.join(format!("{name}.meta"));
                        write_new(&meta_path, &serde_json::to_vec(&meta).unwrap(), &shard);
                    }
                }
            });
        }
    });
    started.elapsed().as_secs_f64()
}

fn write_new(path: &Path, data: &[u8], dir: &Path) {
    let open = || {
        std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)
    };
    let mut file = match open() {
        Ok(f) => f,
        Err(_) => {
            std::fs::create_dir_all(dir).expect("shard dir");
            open().expect("create entry file")
        }
    };
    file.write_all(data).expect("write entry file");
}

/// Removes the files under `root/v1/store` in inode order: far faster on ext4 than
/// directory (hash) order, which writes the inode table at random (`rm -rf` took
/// 528 s for 1M entries here).
fn remove_by_inode(root: &Path) {
    use std::os::unix::fs::DirEntryExt;
    let store = root.join("v1").join("store");
    let mut files = Vec::new();
    for shard in std::fs::read_dir(&store).into_iter().flatten().flatten() {
        for entry in std::fs::read_dir(shard.path())
            .into_iter()
            .flatten()
            .flatten()
        {
            files.push((entry.ino(), entry.path()));
        }
    }
    files.sort_unstable();
    for (_, path) in files {
        let _ = std::fs::remove_file(path);
    }
}

fn disk_use_mib(dir: &Path) -> Option<f64> {
    let out = std::process::Command::new("du")
        .arg("-sk")
        .arg(dir)
        .output()
        .ok()?;
    let kib: f64 = String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kib / 1024.0)
}

fn hit_scale(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let large = large_set();
    let small_dir = tempfile::tempdir().expect("tempdir");
    let large_dir = tempfile::tempdir().expect("tempdir");
    let (small, big) = rt.block_on(async {
        let small = open(small_dir.path()).await;
        let secs = fill_with_put(&small, SMALL_SET).await;
        eprintln!(
            "scale: {SMALL_SET} puts in {secs:.2} s ({:.0} puts/s; 1M puts would take ~{:.0} s)",
            SMALL_SET as f64 / secs,
            1e6 * secs / SMALL_SET as f64
        );
        let big = open(large_dir.path()).await;
        big.put(&key(0), Fetched::from(BODY.to_vec())).await.expect("put");
        let store_of_0 = big.path(&key(0)).await.expect("path");
        let secs = tokio::task::spawn_blocking(move || fill_direct(&store_of_0, large))
            .await
            .unwrap();
        eprintln!(
            "scale: wrote {large} entries directly in {secs:.1} s ({:.0} entries/s); disk use {:.0} MiB",
            large as f64 / secs,
            disk_use_mib(large_dir.path()).unwrap_or(f64::NAN)
        );
        // Read back a sample through the cache.
        let mut x = 88172645463325252u64;
        for _ in 0..200 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let k = key((x % large as u64) as usize);
            let reader = big.read(&k).await.expect("read").expect("entry is stored");
            assert_eq!(reader.kind(), ReadKind::Hit);
            assert_eq!(reader.bytes().await.expect("bytes"), BODY);
        }
        (small, big)
    });

    let mut group = c.benchmark_group("hit_scale");
    group
        .sample_size(10)
        .warm_up_time(Duration::from_secs(2))
        .measurement_time(Duration::from_secs(5))
        .throughput(Throughput::Elements(1));
    for (cache, n) in [(&small, SMALL_SET), (&big, large)] {
        group.bench_with_input(BenchmarkId::new("entries", n), &n, |b, &n| {
            let mut x = 0x9E37_79B9_7F4A_7C15u64;
            b.to_async(&rt).iter(|| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let k = key((x % n as u64) as usize);
                async move {
                    let bytes = cache
                        .get(&k)
                        .await
                        .expect("get")
                        .bytes()
                        .await
                        .expect("read");
                    assert_eq!(bytes.len(), BODY.len());
                    black_box(bytes)
                }
            })
        });
    }
    group.finish();

    // The two criterion runs above are seconds apart; on a shared machine the load can
    // change between them. Interleave: rounds of 2,000 random hits on each cache in
    // turn, and compare the medians of the rounds' means.
    let (mut a, mut z) = (Vec::new(), Vec::new());
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    rt.block_on(async {
        for _ in 0..25 {
            for (cache, n, out) in [(&small, SMALL_SET, &mut a), (&big, large, &mut z)] {
                let started = Instant::now();
                for _ in 0..2000 {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    let k = key((x % n as u64) as usize);
                    let bytes = cache
                        .get(&k)
                        .await
                        .expect("get")
                        .bytes()
                        .await
                        .expect("read");
                    assert_eq!(bytes.len(), BODY.len());
                }
                out.push(started.elapsed().as_secs_f64() / 2000.0 * 1e6);
            }
        }
    });
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (a, z) = (median(&mut a), median(&mut z));
    println!(
        "SUMMARY scale interleaved entries_small={SMALL_SET} us={a:.2} entries_large={large} us={z:.2} ratio={:.2}",
        z / a
    );
    drop((small, big));
    drop(rt);
    let started = Instant::now();
    remove_by_inode(large_dir.path());
    drop(large_dir);
    eprintln!(
        "scale: removed the large cache in {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

criterion_group!(benches, hit_scale);
criterion_main!(benches);
