//! Quickstart: 160 readers in four processes ask a real HTTP server for one cold URL
//! at the same moment, and the server answers exactly one request.
//!
//! ```text
//! cargo run --release --example quickstart           # a 32 MiB blob
//! cargo run --release --example quickstart -- 256    # another size, in MiB
//! ```
//!
//! No network is needed. The origin is a real HTTP/1.1 server on loopback
//! (`127.0.0.1`, a free port), started inside this process. It stands in for something
//! slow and costly (object storage, a model hub): for any `GET` it sends deterministic
//! made-up bytes, with `Content-Length`, `ETag` and `Content-Type`, trickled out in
//! 1 MiB chunks so that one request takes about 1.5 s. It counts the requests it
//! answers, from this process and from the others.
//!
//! On a fresh cache directory, all at once, this example starts 100 reader tasks in
//! this process and re-runs itself as 3 child processes with 20 readers each. Every
//! process has its own `Cache` on the same directory, fetching with
//! `readthrough::HttpOrigin`, and the key is the server's URL. One read leads the fill
//! and sends the request; other reads in its process join that fill, and the other
//! processes follow it through the files on disk. Every reader streams the body as it
//! lands (the first byte arrives long before the download ends) and checks its
//! SHA-256. A last read is then a plain hit from disk. The example fails if any reader
//! got wrong bytes, a child process failed, the server answered other than one
//! request, or the last read was not a hit.

use std::path::Path;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::StreamExt;
use readthrough::{BoxError, Cache, HttpOrigin};
use sha2::{Digest, Sha256};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};

const PATH: &str = "/models/demo-weights.bin";
const LOCAL_READERS: usize = 100;
const CHILDREN: usize = 3;
const CHILD_READERS: usize = 20;
const CHUNK: u64 = 1 << 20;
/// About how long the server takes to send a whole body.
const FETCH_TIME: Duration = Duration::from_millis(1500);

/// The origin: answers every `GET /<path>` on `listener` with the `len`-byte body for
/// `path`, paced to take [`FETCH_TIME`], and counts the requests it answers.
async fn serve(listener: TcpListener, len: u64, requests: Arc<AtomicUsize>) {
    while let Ok((stream, _)) = listener.accept().await {
        let requests = Arc::clone(&requests);
        tokio::spawn(async move {
            if let Err(e) = answer(stream, len, &requests).await {
                eprintln!("origin: a connection failed: {e}");
            }
        });
    }
}

/// Answers the requests on one (keep-alive) connection.
async fn answer(stream: TcpStream, len: u64, requests: &AtomicUsize) -> std::io::Result<()> {
    let (read, mut write) = stream.into_split();
    let mut lines = BufReader::new(read).lines();
    // A request line, `GET /path HTTP/1.1`, then headers up to an empty line.
    while let Some(request) = lines.next_line().await? {
        while lines
            .next_line()
            .await?
            .is_some_and(|line| !line.is_empty())
        {}
        let (method, path) = request.split_once(' ').unwrap_or((&request, ""));
        let path = path.split(' ').next().unwrap_or_default();
        if method != "GET" {
            let refuse = "HTTP/1.1 405 Method Not Allowed\r\nContent-Length: 0\r\n\r\n";
            write.write_all(refuse.as_bytes()).await?;
            continue;
        }
        requests.fetch_add(1, Ordering::SeqCst);
        let (seed, chunks) = (seed_of(path), len.div_ceil(CHUNK));
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\n\
             Content-Type: application/octet-stream\r\nETag: \"{seed:016x}-{len}\"\r\n\r\n"
        );
        write.write_all(head.as_bytes()).await?;
        for i in 0..chunks {
            tokio::time::sleep(FETCH_TIME / chunks as u32).await;
            write.write_all(&chunk_of(seed, i, len)).await?;
        }
    }
    Ok(())
}

fn seed_of(path: &str) -> u64 {
    let fnv = |h: u64, b: u8| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3);
    path.bytes().fold(0xcbf2_9ce4_8422_2325, fnv)
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

async fn open_cache(dir: &Path) -> Result<Cache, BoxError> {
    // The server is on loopback: keep any HTTP_PROXY in the environment out of the way.
    let client = reqwest::Client::builder().no_proxy().build()?;
    let cache = Cache::builder(dir)
        .origin(HttpOrigin::builder().client(client).build()?)
        .durable(false) // a throwaway demo directory needs no fsync
        .build()
        .await?;
    Ok(cache)
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
async fn read_one(cache: Cache, key: Arc<str>, want: Arc<str>) -> Outcome {
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
    let (key, want): (Arc<str>, Arc<str>) = (key.into(), want.into());
    let tasks: Vec<_> = (0..readers)
        .map(|_| tokio::spawn(read_one(cache.clone(), Arc::clone(&key), Arc::clone(&want))))
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

/// A child process, run as `--child <dir> <url> <readers> <sha256>`: it prints one
/// line of JSON, `[pid, [outcome, …]]`.
async fn child(args: &[String]) -> Result<ExitCode, BoxError> {
    let [dir, url, readers, want] = args else {
        return Err("usage: --child <dir> <url> <readers> <sha256>".into());
    };
    let cache = open_cache(Path::new(dir)).await?;
    let outs = run_readers(&cache, url, readers.parse()?, want).await;
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

    // The origin: a loopback HTTP server on a free port, counting the requests it answers.
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}{PATH}", listener.local_addr()?);
    let requests = Arc::new(AtomicUsize::new(0));
    tokio::spawn(serve(listener, len, Arc::clone(&requests)));

    let dir = tempfile::tempdir()?;
    let mut hasher = Sha256::new();
    (0..len.div_ceil(CHUNK)).for_each(|i| hasher.update(chunk_of(seed_of(PATH), i, len)));
    let want = hex::encode(hasher.finalize());
    let cache = open_cache(dir.path()).await?;
    println!(
        "readthrough quickstart: {} readers, one cold URL, one slow HTTP origin\n  \
         cache dir  {}\n  key        {url}\n             ({}, sha256 {}…)\n  \
         origin     an HTTP server on loopback in this process, sending 1 MiB chunks,\n             \
         ~{FETCH_TIME:?} per request\n  \
         readers    {LOCAL_READERS} tasks here + {CHILDREN} processes x {CHILD_READERS} tasks\n",
        LOCAL_READERS + CHILDREN * CHILD_READERS,
        dir.path().display(),
        size(len),
        &want[..16],
    );

    // Start the children first (they take a moment to start; the download takes
    // longer), then this process's readers, so every reader asks while the key is cold.
    let mut children = Vec::new();
    for _ in 0..CHILDREN {
        let mut command = tokio::process::Command::new(std::env::current_exe()?);
        command.arg("--child").arg(dir.path());
        command.args([&url, &CHILD_READERS.to_string(), &want]);
        children.push(command.stdout(Stdio::piped()).spawn()?);
    }
    let mut all = run_readers(&cache, &url, LOCAL_READERS, &want).await;
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
    println!("  (led: sent the request to the origin; joined: shared a fill led in its own");
    println!("   process; followed: tailed another process's fill; hit: read a stored blob)\n");

    let hit = read_one(cache.clone(), url.as_str().into(), want.as_str().into()).await;
    let requests = requests.load(Ordering::SeqCst);
    let good = all.iter().filter(|o| o.ok).count();
    let served: u64 = all.iter().map(|o| o.bytes).sum();
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let (per_reader, served, n) = (size(len), size(served), all.len());
    let fetched = size(len * requests as u64);
    let (first, last) = (median(&all, |o| o.first_ms), median(&all, |o| o.last_ms));
    let (hit_kind, hit_len, hit_time) = (&hit.kind, size(hit.bytes), ms(hit.last_ms));
    println!("origin requests     {requests} (answered by the server, for all processes)");
    println!("bytes per reader    {per_reader} ({good} of {n} readers sha256-verified)");
    println!("bytes served        {served} in total, from {fetched} downloaded");
    println!("time to first byte  median {first}");
    println!("time to last byte   median {last}");
    println!(
        "  (the origin sends for {FETCH_TIME:?}; the rest is hashing {served} on {cores} cores)"
    );
    println!("read once more      {hit_kind}, {hit_len} in {hit_time}");
    println!("this cache's stats  {:?}", cache.stats());

    if good < n || !hit.ok || hit.kind != "hit" || requests != 1 || !children_ok {
        eprintln!("\nFAILED: expected every read to verify, one origin request, and then a hit");
        return Ok(ExitCode::FAILURE);
    }
    println!(
        "\nOK: {n} readers in {} processes, 1 origin request",
        CHILDREN + 1
    );
    Ok(ExitCode::SUCCESS)
}
