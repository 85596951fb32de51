//! Quickstart: 160 readers in four processes ask for one cold key at the same moment,
//! and the origin is fetched exactly once.
//!
//! ```text
//! cargo run --release --example quickstart           # a 32 MiB blob
//! cargo run --release --example quickstart -- 256    # another size, in MiB
//! ```
//!
//! The origin stands in for something slow and costly (object storage, a model hub):
//! it makes up deterministic bytes for any key and trickles them out in 1 MiB chunks,
//! so one fetch takes about 1.5 s. It appends a line to `origin-fetches.log` in the
//! cache directory for every fetch, so fetches by any process can be counted.
//!
//! On a fresh cache directory, all at once, this example starts 100 reader tasks in
//! this process and re-runs itself as 3 child processes with 20 readers each, every
//! process with its own `Cache` on the same directory. One read leads the fill and calls
//! the origin; other reads in its process join that fill, and the other processes
//! follow it through the files on disk. Every reader streams the body as it lands (the
//! first byte arrives long before the fetch ends) and checks its SHA-256. A last read is
//! then a plain hit from disk. The example fails if any reader got wrong bytes or the
//! origin was asked more than once.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use readthrough::{BoxError, Cache, FetchOptions, Fetched, Origin};
use sha2::{Digest, Sha256};

const KEY: &str = "models/demo-weights.bin";
const LOCAL_READERS: usize = 100;
const CHILDREN: usize = 3;
const CHILD_READERS: usize = 20;
const CHUNK: u64 = 1 << 20;
/// About how long the origin takes to send a whole body.
const FETCH_TIME: Duration = Duration::from_millis(1500);
const FETCH_LOG: &str = "origin-fetches.log";

/// A slow origin: `len` pseudo-random bytes for any key, paced to take [`FETCH_TIME`].
struct SlowOrigin {
    len: u64,
    log: PathBuf,
    fetches: AtomicU64,
}

impl Origin for SlowOrigin {
    fn fetch(&self, key: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        // One line per fetch, appended (O_APPEND) to a file that every process shares.
        let logged = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .and_then(|mut log| writeln!(log, "{} {key}", std::process::id()));
        let (seed, len, chunks) = (seed_of(key), self.len, self.len.div_ceil(CHUNK));
        let pause = FETCH_TIME / chunks.max(1) as u32;
        Box::pin(async move {
            logged?;
            let body = stream::iter(0..chunks).then(move |i| async move {
                tokio::time::sleep(pause).await;
                Ok::<_, BoxError>(chunk_of(seed, i, len))
            });
            Ok(Fetched::from_stream(body).with_len(len))
        })
    }
}

fn seed_of(key: &str) -> u64 {
    let fnv = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    key.bytes().fold(0xcbf2_9ce4_8422_2325, fnv)
}

/// Chunk `index` of the `len`-byte body for `seed` (xorshift64* bytes).
fn chunk_of(seed: u64, index: u64, len: u64) -> Bytes {
    let size = (len - index * CHUNK).min(CHUNK) as usize;
    let mut x = (seed ^ index.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1;
    let mut out = Vec::with_capacity(size + 8);
    while out.len() < size {
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        out.extend_from_slice(&x.wrapping_mul(0x2545_F491_4F6C_DD1D).to_le_bytes());
    }
    out.truncate(size);
    out.into()
}

async fn open_cache(dir: &Path, len: u64) -> readthrough::Result<(Cache, Arc<SlowOrigin>)> {
    let (log, fetches) = (dir.join(FETCH_LOG), AtomicU64::new(0));
    let origin = Arc::new(SlowOrigin { len, log, fetches });
    let cache = Cache::builder(dir)
        .origin(Arc::clone(&origin)) // keep a handle, to read its counter
        .durable(false) // a throwaway demo directory needs no fsync
        .build()
        .await?;
    Ok((cache, origin))
}

/// What one reader saw; times are from its call to `get`.
#[derive(Default, serde::Serialize, serde::Deserialize)]
struct Outcome {
    kind: String,
    ok: bool,
    bytes: u64,
    first_ms: f64,
    last_ms: f64,
}

/// Reads `key`, hashing the body chunk by chunk as it streams in.
async fn read_one(cache: Cache, key: String, want: Arc<str>) -> Outcome {
    let start = Instant::now();
    let since = || start.elapsed().as_secs_f64() * 1e3;
    let mut out = Outcome {
        kind: "failed".into(),
        ..Outcome::default()
    };
    let read = async {
        let mut reader = cache.get(&key).await?;
        out.kind = reader.kind().to_string();
        let mut hasher = Sha256::new();
        while let Some(chunk) = reader.next().await {
            let chunk = chunk?;
            if out.bytes == 0 {
                out.first_ms = since();
            }
            out.bytes += chunk.len() as u64;
            hasher.update(&chunk);
        }
        out.last_ms = since();
        out.ok = hex::encode(hasher.finalize()) == *want;
        Ok::<(), readthrough::Error>(())
    };
    if let Err(e) = read.await {
        eprintln!("a read of {key} failed: {e}");
    }
    out
}

async fn run_readers(cache: &Cache, key: &str, readers: usize, want: &str) -> Vec<Outcome> {
    let want: Arc<str> = want.into();
    let tasks: Vec<_> = (0..readers)
        .map(|_| tokio::spawn(read_one(cache.clone(), key.into(), Arc::clone(&want))))
        .collect();
    let mut outs = Vec::new();
    for task in tasks {
        outs.push(task.await.expect("a reader panicked"));
    }
    outs
}

/// One table row: readers by kind, and median times of the good reads.
fn row(who: &str, outs: &[Outcome]) -> String {
    let count = |kind| outs.iter().filter(|o| o.kind == kind).count();
    let [led, joined, followed, hit] = ["led", "joined", "followed", "hit"].map(count);
    let n = outs.len();
    let (first, last) = (median(outs, |o| o.first_ms), median(outs, |o| o.last_ms));
    format!("  {who:<18}{n:>8}{led:>5}{joined:>8}{followed:>10}{hit:>5}{first:>12}{last:>11}")
}

fn median(outs: &[Outcome], time: fn(&Outcome) -> f64) -> String {
    let mut times: Vec<f64> = outs.iter().filter(|o| o.ok).map(time).collect();
    times.sort_by(f64::total_cmp);
    times.get(times.len() / 2).map_or("-".into(), |&t| ms(t))
}

fn ms(ms: f64) -> String {
    if ms >= 1000.0 {
        format!("{:.2} s", ms / 1e3)
    } else {
        format!("{ms:.1} ms")
    }
}

fn size(bytes: u64) -> String {
    match bytes as f64 / (1u64 << 20) as f64 {
        mib if mib >= 1024.0 => format!("{:.2} GiB", mib / 1024.0),
        mib => format!("{mib:.1} MiB"),
    }
}

/// A child process, run as `--child <dir> <key> <readers> <len> <sha256>`: it prints
/// one line of JSON, `[pid, [outcome, …]]`.
async fn child(args: &[String]) -> Result<ExitCode, BoxError> {
    let [dir, key, readers, len, want] = args else {
        return Err("usage: --child <dir> <key> <readers> <len> <sha256>".into());
    };
    let (cache, _) = open_cache(Path::new(dir), len.parse()?).await?;
    let outs = run_readers(&cache, key, readers.parse()?, want).await;
    println!("{}", serde_json::to_string(&(std::process::id(), &outs))?);
    Ok(ExitCode::from(u8::from(!outs.iter().all(|o| o.ok))))
}

#[tokio::main]
async fn main() -> Result<ExitCode, BoxError> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if args.first().is_some_and(|a| a == "--child") {
        return child(&args[1..]).await;
    }
    let len = args.first().map_or(Ok(32), |a| a.parse::<u64>())?.max(1) << 20;
    let dir = tempfile::tempdir()?;
    let mut hasher = Sha256::new();
    (0..len.div_ceil(CHUNK)).for_each(|i| hasher.update(chunk_of(seed_of(KEY), i, len)));
    let want = hex::encode(hasher.finalize());
    let (cache, origin) = open_cache(dir.path(), len).await?;
    println!(
        "readthrough quickstart: {} readers, one cold key, one slow origin\n  \
         cache dir  {}\n  key        {KEY} ({}, sha256 {}…)\n  \
         origin     made-up bytes in 1 MiB chunks, ~{FETCH_TIME:?} per fetch\n  \
         readers    {LOCAL_READERS} tasks here + {CHILDREN} processes x {CHILD_READERS} tasks\n",
        LOCAL_READERS + CHILDREN * CHILD_READERS,
        dir.path().display(),
        size(len),
        &want[..16],
    );

    // Start the children first (they take a moment to start; the fetch takes longer),
    // then this process's readers, so every reader asks while the key is cold.
    let mut children = Vec::new();
    for _ in 0..CHILDREN {
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.arg("--child").arg(dir.path());
        command.args([KEY, &CHILD_READERS.to_string(), &len.to_string(), &want]);
        children.push(command.stdout(Stdio::piped()).spawn()?);
    }
    let mut all = run_readers(&cache, KEY, LOCAL_READERS, &want).await;
    println!("  process            readers  led  joined  followed  hit    1st byte  last byte");
    println!("{}", row(&format!("this ({})", std::process::id()), &all));
    let mut children_ok = true;
    for (n, child) in (1..).zip(children) {
        let output = child.wait_with_output().await?;
        let summary: Option<(u32, Vec<Outcome>)> = serde_json::from_slice(&output.stdout).ok();
        let Some((pid, outs)) = summary else {
            eprintln!("child {n} gave no summary ({})", output.status);
            children_ok = false;
            continue;
        };
        children_ok &= output.status.success();
        println!("{}", row(&format!("child {n} ({pid})"), &outs));
        all.extend(outs);
    }
    println!("{}", row("all", &all));
    println!("  (led: fetched from the origin; joined: shared a fill led in its own process;");
    println!("   followed: tailed another process's fill; hit: read a stored blob)\n");

    let hit = read_one(cache.clone(), KEY.into(), want.as_str().into()).await;
    let log = std::fs::read_to_string(dir.path().join(FETCH_LOG)).unwrap_or_default();
    let fetch_pids: Vec<&str> = log.lines().filter_map(|l| l.split(' ').next()).collect();
    let good = all.iter().filter(|o| o.ok).count();
    let served: u64 = all.iter().map(|o| o.bytes).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let fetches_here = origin.fetches.load(Ordering::SeqCst);
    let (fetches, by) = (fetch_pids.len(), fetch_pids.join(", "));
    let (per_reader, served, n) = (size(len), size(served), all.len());
    let (first, last) = (median(&all, |o| o.first_ms), median(&all, |o| o.last_ms));
    let (hit_kind, hit_len, hit_time) = (&hit.kind, size(hit.bytes), ms(hit.last_ms));
    println!("origin fetches      {fetches} (by pid {by}; {fetches_here} in this process)");
    println!("bytes per reader    {per_reader} ({good} of {n} readers sha256-verified)");
    println!("bytes served        {served} in total, from {per_reader} fetched");
    println!("time to first byte  median {first}");
    println!("time to last byte   median {last}");
    println!(
        "  (the origin sends for {FETCH_TIME:?}; the rest is hashing {served} on {cores} cores)"
    );
    println!("read once more      {hit_kind}, {hit_len} in {hit_time}");
    println!("this cache's stats  {:?}", cache.stats());

    if good < all.len() || !hit.ok || hit.kind != "hit" || fetch_pids.len() != 1 || !children_ok {
        eprintln!("\nFAILED: expected every read to verify, one origin fetch, and then a hit");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "\nOK: {n} readers in {} processes, 1 origin fetch",
        CHILDREN + 1
    );
    Ok(ExitCode::SUCCESS)
}
