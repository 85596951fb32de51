//! Coalescing across processes: 2, 4, 8 and 16 processes read one cold blob from a
//! throttled loopback HTTP origin (64 MiB in 256 KiB pieces, 8 ms apart: a fill takes
//! about 2 s) through one shared cache directory.
//!
//! The bench re-executes itself (`current_exe`) as each child (`child DIR URL`). A child
//! builds its cache (`HttpOrigin`, durability off), says `ready`, waits for the
//! parent's `go` line, then reads the key to its end and prints one JSON line: its
//! read kind, and the wall-clock times of `go`, its first byte and its last byte, and
//! its cache's origin bytes. The parent counts the requests the origin received.
//!
//! Reported per process count (3 runs each, a fresh key per run): origin requests and
//! origin bytes per run (must be 1 and 1x the blob), the leader's time to first byte,
//! each follower's time to first byte minus the leader's (median, max), and the time
//! to the last byte (leader, slowest follower).
//!
//! `clients URL N [DIR]` runs N such children on any URL (used by
//! `benches/peers/nginx.sh`) in DIR or a fresh cache directory, and prints the summary
//! as one JSON line (no origin count: the caller counts at its origin).

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::http_server::{Behaviour, Server};
use futures::StreamExt;
use readthrough::{Cache, HttpOrigin};
use serde_json::{Value, json};

const BLOB: usize = 64 * 1024 * 1024;
const PIECE: usize = 256 * 1024;
const DELAY: Duration = Duration::from_millis(8);
const PATH: &str = "/shared.bin";
const RUNS: usize = 3;

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as u64
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| a != "--bench")
        .collect();
    match args.first().map(String::as_str) {
        Some("child") => child(Path::new(&args[1]), &args[2]),
        Some("clients") => {
            let n: usize = args.get(2).and_then(|n| n.parse().ok()).unwrap_or(20);
            let fresh = tempfile::tempdir().expect("tempdir");
            let dir = args.get(3).map_or(fresh.path(), Path::new);
            let results = run_children(dir, &args[1], n);
            let summary = summarize(&results);
            println!("{}", serde_json::to_string(&summary).unwrap());
        }
        _ => bench(),
    }
}

/// One child process: read `url` through the cache in `dir` after the parent's `go`.
fn child(dir: &Path, url: &str) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let cache = rt.block_on(async {
        Cache::builder(dir)
            .origin(HttpOrigin::new().expect("http origin"))
            .durable(false)
            .build()
            .await
            .expect("build cache")
    });
    let mut stdin = BufReader::new(std::io::stdin());
    println!("ready");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    stdin.read_line(&mut line).expect("go line");
    let go = now_ns();
    let out = rt.block_on(async {
        let mut reader = cache.get(url).await.expect("get");
        let kind = reader.kind().to_string();
        let mut first = None;
        let mut total = 0u64;
        while let Some(chunk) = reader.next().await {
            let chunk = chunk.expect("chunk");
            if first.is_none() && !chunk.is_empty() {
                first = Some(now_ns());
            }
            total += chunk.len() as u64;
        }
        let last = now_ns();
        let stats = cache.stats();
        json!({
            "kind": kind,
            "go_ns": go,
            "first_ns": first.unwrap_or(last),
            "last_ns": last,
            "bytes": total,
            "origin_bytes": stats.origin_bytes,
        })
    });
    println!("{out}");
    std::io::stdout().flush().unwrap();
}

/// Spawns `n` children on `url` sharing `dir`, starts them together, and returns
/// their JSON reports.
fn run_children(dir: &Path, url: &str, n: usize) -> Vec<Value> {
    let exe = std::env::current_exe().expect("current_exe");
    let mut children: Vec<Child> = (0..n)
        .map(|_| {
            Command::new(&exe)
                .arg("child")
                .arg(dir)
                .arg(url)
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .expect("spawn child")
        })
        .collect();
    let mut outs: Vec<_> = children
        .iter_mut()
        .map(|c| BufReader::new(c.stdout.take().unwrap()))
        .collect();
    for out in &mut outs {
        let mut line = String::new();
        out.read_line(&mut line).expect("ready line");
        assert_eq!(line.trim(), "ready", "child did not get ready");
    }
    // Start them together: one line to each, back to back.
    for child in &mut children {
        let stdin = child.stdin.as_mut().unwrap();
        stdin.write_all(b"go\n").unwrap();
        stdin.flush().unwrap();
    }
    let mut results = Vec::with_capacity(n);
    for out in &mut outs {
        let mut line = String::new();
        out.read_line(&mut line).expect("result line");
        results.push(serde_json::from_str::<Value>(&line).expect("child JSON"));
    }
    for mut child in children {
        assert!(child.wait().expect("wait").success(), "a child failed");
    }
    results
}

fn median(mut v: Vec<f64>) -> f64 {
    v.retain(|x| !x.is_nan());
    if v.is_empty() {
        return f64::NAN;
    }
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

fn max(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::NAN, f64::max)
}

/// Times in ms from the earliest `go`: the leader's first and last byte, followers'.
fn summarize(results: &[Value]) -> Value {
    let go = results
        .iter()
        .map(|r| r["go_ns"].as_u64().unwrap())
        .min()
        .unwrap();
    let ms = |r: &Value, f: &str| (r[f].as_u64().unwrap() - go) as f64 / 1e6;
    let own_ms =
        |r: &Value, f: &str| (r[f].as_u64().unwrap() - r["go_ns"].as_u64().unwrap()) as f64 / 1e6;
    let leaders: Vec<&Value> = results.iter().filter(|r| r["kind"] == "led").collect();
    let followers: Vec<&Value> = results.iter().filter(|r| r["kind"] != "led").collect();
    let kinds: Vec<String> = results
        .iter()
        .map(|r| r["kind"].as_str().unwrap().to_owned())
        .collect();
    let leader = leaders.first();
    let leader_first = leader.map(|l| ms(l, "first_ns")).unwrap_or(f64::NAN);
    let follower_first: Vec<f64> = followers.iter().map(|r| ms(r, "first_ns")).collect();
    let all_first: Vec<f64> = results.iter().map(|r| own_ms(r, "first_ns")).collect();
    let all_last: Vec<f64> = results.iter().map(|r| own_ms(r, "last_ns")).collect();
    let lag: Vec<f64> = follower_first.iter().map(|f| f - leader_first).collect();
    json!({
        "processes": results.len(),
        "kinds": kinds,
        "leaders": leaders.len(),
        "origin_bytes": results.iter().map(|r| r["origin_bytes"].as_u64().unwrap()).sum::<u64>(),
        "bytes_each": results.iter().map(|r| r["bytes"].as_u64().unwrap()).min(),
        "leader_first_ms": leader_first,
        "leader_last_ms": leader.map(|l| ms(l, "last_ns")).unwrap_or(f64::NAN),
        "follower_first_lag_median_ms": median(lag.clone()),
        "follower_first_lag_max_ms": max(&lag),
        "follower_last_max_ms": max(&followers.iter().map(|r| ms(r, "last_ns")).collect::<Vec<_>>()),
        "first_byte_median_ms": median(all_first.clone()),
        "first_byte_max_ms": max(&all_first),
        "last_byte_median_ms": median(all_last.clone()),
        "last_byte_max_ms": max(&all_last),
    })
}

fn bench() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let server = rt.block_on(Server::start());
    server.route(
        PATH,
        Behaviour::body(common::body(3, BLOB))
            .chunk(PIECE)
            .delay(DELAY),
    );
    println!(
        "multiprocess: {} MiB blob, {} KiB pieces {} ms apart (~{:.1} s a fill), {RUNS} runs per count",
        BLOB >> 20,
        PIECE >> 10,
        DELAY.as_millis(),
        (BLOB / PIECE) as f64 * DELAY.as_secs_f64()
    );
    println!(
        "{:>5} {:>9} {:>12} {:>10} {:>12} {:>12} {:>10} {:>12}",
        "procs",
        "requests",
        "origin_bytes",
        "lead_ttfb",
        "f_lag_med",
        "f_lag_max",
        "lead_ttlb",
        "f_ttlb_max"
    );
    let mut lags_by_n = Vec::new();
    for n in [2usize, 4, 8, 16] {
        let mut lags = Vec::new();
        let mut lag_maxes = Vec::new();
        for run in 0..RUNS {
            let dir = tempfile::tempdir().expect("tempdir");
            let url = server.url(&format!("{PATH}?n={n}&run={run}"));
            let before = server.count(PATH);
            let started = Instant::now();
            let results = run_children(dir.path(), &url, n);
            let _elapsed = started.elapsed();
            let requests = server.count(PATH) - before;
            let s = summarize(&results);
            assert_eq!(
                s["bytes_each"].as_u64().unwrap() as usize,
                BLOB,
                "short read"
            );
            println!(
                "{:>5} {:>9} {:>12} {:>8.1}ms {:>10.2}ms {:>10.2}ms {:>8.0}ms {:>10.0}ms",
                n,
                requests,
                s["origin_bytes"],
                s["leader_first_ms"].as_f64().unwrap_or(f64::NAN),
                s["follower_first_lag_median_ms"]
                    .as_f64()
                    .unwrap_or(f64::NAN),
                s["follower_first_lag_max_ms"].as_f64().unwrap_or(f64::NAN),
                s["leader_last_ms"].as_f64().unwrap_or(f64::NAN),
                s["follower_last_max_ms"].as_f64().unwrap_or(f64::NAN),
            );
            // Each follower's lag in this run.
            let go = results
                .iter()
                .map(|r| r["go_ns"].as_u64().unwrap())
                .min()
                .unwrap();
            let leader_first = s["leader_first_ms"].as_f64().unwrap_or(f64::NAN);
            for r in results.iter().filter(|r| r["kind"] != "led") {
                lags.push((r["first_ns"].as_u64().unwrap() - go) as f64 / 1e6 - leader_first);
            }
            lag_maxes.push(s["follower_first_lag_max_ms"].as_f64().unwrap_or(f64::NAN));
            assert_eq!(requests, 1, "{n} processes: {requests} origin requests");
            assert_eq!(s["origin_bytes"].as_u64().unwrap() as usize, BLOB);
        }
        lags_by_n.push((n, median(lags.clone()), max(&lags)));
    }
    for (n, med, mx) in lags_by_n {
        println!(
            "SUMMARY multiprocess procs={n} origin_requests_per_run=1 origin_bytes=1.00x follower_ttfb_lag_median_ms={med:.2} follower_ttfb_lag_max_ms={mx:.2}"
        );
    }
    drop(server);
}
