//! Slices (`CacheBuilder::slice_size`): a range read of a cold blob fetches only the
//! slices it covers, each once however many tasks ask, all of one version of the
//! object; origins without ranges or validators are read whole.

mod common;

use std::sync::Arc;
use std::sync::atomic::Ordering;

use std::io::{BufRead, BufReader, Write};
use std::process::Stdio;

use proptest::prelude::*;
use readthrough::{ByteRange, Cache, Error, HttpOrigin, ReadKind};
use tokio::sync::Barrier;

use common::Ranged;
use common::http_server::{Behaviour, Gate, Server};

const MIB: u64 = 1 << 20;

async fn sliced(dir: &std::path::Path, origin: Ranged, size: u64) -> Cache {
    Cache::builder(dir)
        .origin(origin)
        .durable(false)
        .slice_size(size)
        .build()
        .await
        .unwrap()
}

/// A cache in `dir` over an `HttpOrigin`, with slices of `size`.
async fn http_sliced(dir: &std::path::Path, size: u64) -> Cache {
    Cache::builder(dir)
        .origin(HttpOrigin::new().unwrap())
        .durable(false)
        .slice_size(size)
        .build()
        .await
        .unwrap()
}

/// Reads `lines` (a child's output) until one ends with `word`.
fn wait_for_line(lines: &mut impl BufRead, word: &str) {
    let mut line = String::new();
    while !line.trim_end().ends_with(word) {
        line.clear();
        assert!(
            lines.read_line(&mut line).unwrap() > 0,
            "the child ended early"
        );
    }
}

/// 64 MiB rather than the 1 GiB: the tests run in a debug build on a shared
/// machine, and what is counted (the bytes sent) does not grow with the blob.
#[tokio::test]
async fn a_footer_of_a_cold_blob_fetches_one_slice_and_is_then_a_hit() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new(64 << 20);
    let cache = sliced(dir.path(), origin.clone(), 8 * MIB).await;
    let data = origin.data("big", 0);
    let footer = cache
        .get_range("big", ByteRange::last(65536))
        .await
        .unwrap();
    assert_eq!(footer.len(), Some(65536));
    assert_eq!(
        footer.bytes().await.unwrap(),
        data.slice(data.len() - 65536..)
    );
    // The slice's fill goes on to its end in the background; wait for it by reading
    // the slice whole.
    let slice = cache.get_range("big", 56 * MIB..64 * MIB).await.unwrap();
    assert_eq!(slice.bytes().await.unwrap(), data.slice(56 << 20..));
    // The probe asks for one byte (for the length and validator) and never reads it;
    // over HTTP that byte is sent too.
    assert_eq!(origin.bytes_sent() as u64, 8 * MIB, "the last slice only");
    assert_eq!(
        origin.asked(),
        vec![(0, Some(1)), (56 * MIB, Some(64 * MIB))]
    );
    // Stored: the same footer again reads no byte from the origin.
    let again = eventually_hit(&cache, ByteRange::last(65536)).await;
    assert_eq!(again, data.slice(data.len() - 65536..));
    assert_eq!(origin.bytes_sent() as u64, 8 * MIB);
    assert!(
        !cache.contains("big").await.unwrap(),
        "slices are not the whole blob"
    );
}

/// Reads `range` of "big" until the read is a hit (the slice's fill publishes just
/// after its last byte is read).
async fn eventually_hit(cache: &Cache, range: ByteRange) -> bytes::Bytes {
    let mut last = None;
    let hit = common::eventually(async || {
        let reader = cache.get_range("big", range).await.unwrap();
        let kind = reader.kind();
        last = Some(reader.bytes().await.unwrap());
        kind == ReadKind::Hit
    })
    .await;
    assert!(hit, "the slice is stored");
    last.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn many_tasks_on_random_ranges_fetch_each_slice_once() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new((16 * MIB + 12345) as usize);
    let cache = sliced(dir.path(), origin.clone(), MIB).await;
    let data = origin.data("big", 0);
    let barrier = Arc::new(Barrier::new(50));
    let mut tasks = Vec::new();
    for task in 0..50u64 {
        let (cache, barrier, data) = (cache.clone(), Arc::clone(&barrier), data.clone());
        tasks.push(tokio::spawn(async move {
            let mut rng = fastrand::Rng::with_seed(task);
            barrier.wait().await;
            for _ in 0..4 {
                let start = rng.u64(..data.len() as u64);
                let end = (start + rng.u64(1..3 * MIB)).min(data.len() as u64);
                let got = cache.get_range("big", start..end).await.unwrap();
                let got = got.bytes().await.unwrap();
                assert!(
                    got == data.slice(start as usize..end as usize),
                    "{start}..{end}"
                );
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
    let mut asked = origin.asked();
    assert_eq!(asked.remove(0), (0, Some(1)), "one probe first");
    let mut starts: Vec<u64> = asked.iter().map(|(start, _)| *start).collect();
    starts.sort();
    let before = starts.len();
    starts.dedup();
    assert_eq!(
        before,
        starts.len(),
        "no slice was fetched twice: {asked:?}"
    );
    assert!(starts.iter().all(|s| s % MIB == 0));
}

#[tokio::test]
async fn an_object_that_changes_between_slices_is_changed_and_then_read_right() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new((4 * MIB) as usize);
    let cache = sliced(dir.path(), origin.clone(), MIB).await;
    let old = origin.data("big", 0);
    let first = cache.get_range("big", 0..100).await.unwrap();
    assert_eq!(first.bytes().await.unwrap(), old.slice(..100));
    origin.version.store(1, Ordering::SeqCst);
    let new = origin.data("big", 1);
    // A range that needs the stored first slice and a new one: the new one is of
    // another version, so the read fails rather than mix them.
    let mut got = Vec::new();
    let error = match cache.get_range("big", 0..2 * MIB).await {
        Ok(reader) => {
            let mut reader = reader;
            loop {
                match futures::StreamExt::next(&mut reader).await {
                    Some(Ok(chunk)) => got.extend_from_slice(&chunk),
                    Some(Err(e)) => break e,
                    None => panic!("a read of two versions must fail"),
                }
            }
        }
        Err(e) => e,
    };
    assert!(matches!(error, Error::Changed { .. }), "{error}");
    assert!(
        old.starts_with(&got),
        "only bytes of the old version came out"
    );
    // The old version's slices and manifest are gone: the next read is of the new one.
    let again = cache.get_range("big", 0..2 * MIB).await.unwrap();
    assert!(again.bytes().await.unwrap() == new.slice(..2 * MIB as usize));
}

#[tokio::test]
async fn origins_without_a_validator_or_ranges_are_read_whole() {
    let dir = tempfile::tempdir().unwrap();
    let mut origin = Ranged::new((3 * MIB) as usize);
    origin.no_validator = true;
    let cache = sliced(dir.path(), origin.clone(), MIB).await;
    let data = origin.data("big", 0);
    let part = cache.get_range("big", MIB..MIB + 10).await.unwrap();
    assert_eq!(
        part.bytes().await.unwrap(),
        data.slice(MIB as usize..MIB as usize + 10)
    );
    cache.path("big").await.unwrap();
    assert_eq!(
        origin.asked(),
        vec![(0, Some(1)), (0, None)],
        "the probe, then whole"
    );
    assert!(cache.contains("big").await.unwrap());

    let dir = tempfile::tempdir().unwrap();
    let counting = common::Counting::new(100_000);
    let cache = Cache::builder(dir.path())
        .origin(counting.clone())
        .slice_size(1000)
        .build()
        .await
        .unwrap();
    let part = cache.get_range("k", 5000..5010).await.unwrap();
    assert_eq!(
        part.bytes().await.unwrap(),
        &common::body_of("k", 0, 100_000)[5000..5010]
    );
    cache.path("k").await.unwrap();
    assert_eq!(
        counting.fetches(),
        1,
        "an origin without ranges: one whole fetch"
    );
}

#[tokio::test]
async fn empty_blobs_and_ranges_past_the_end_with_slices() {
    let dir = tempfile::tempdir().unwrap();
    let empty = Ranged::new(0);
    let cache = sliced(dir.path(), empty, MIB).await;
    let reader = cache.get_range("e", ByteRange::last(5)).await.unwrap();
    assert_eq!(reader.len(), Some(0));
    assert_eq!(reader.bytes().await.unwrap(), "");
    let error = cache.get_range("e", 0..).await.unwrap_err();
    assert!(
        matches!(error, Error::RangeNotSatisfiable { length: 0, .. }),
        "{error}"
    );

    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new(1000);
    let cache = sliced(dir.path(), origin.clone(), 300).await;
    let error = cache.get_range("k", 1000..).await.unwrap_err();
    assert!(
        matches!(error, Error::RangeNotSatisfiable { length: 1000, .. }),
        "{error}"
    );
    let all = cache.get_range("k", ByteRange::last(5000)).await.unwrap();
    assert_eq!(all.bytes().await.unwrap(), origin.data("k", 0));
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(16))]

    /// Any sequence of range and whole reads, on any slice size, returns exactly the
    /// origin's bytes for each range.
    #[test]
    fn any_reads_on_any_slice_size_are_the_origins_bytes(
        len in 0usize..300_000,
        size in 1u64..100_000,
        reads in prop::collection::vec((any::<u64>(), any::<u64>(), 0u8..4), 1..10),
    ) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        runtime.block_on(async move {
            let dir = tempfile::tempdir().unwrap();
            let origin = Ranged::new(len);
            let cache = sliced(dir.path(), origin.clone(), size.max(len as u64 / 64 + 1)).await;
            let data = origin.data("k", 0);
            common::check_range_reads(&cache, "k", &data, reads).await;
        });
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_slice_leader_is_taken_over_over_http() {
    let server = Server::start().await;
    let gate = Gate::new();
    let data = common::body(9, (4 * MIB) as usize);
    server.route(
        "/s",
        Behaviour::body(data.clone())
            .etag("\"e\"")
            .hold_at(MIB as usize, &gate),
    );
    let dir = tempfile::tempdir().unwrap();
    let mut child = common::child_test("slice_leader_child")
        .env("SLICE_DIR", dir.path())
        .env("SLICE_URL", server.url("/s"))
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    // The child leads slice 0, held half-way, and has read from it.
    let stdout = child.stdout.take().unwrap();
    let said = tokio::task::spawn_blocking(move || {
        let mut lines = BufReader::new(stdout);
        wait_for_line(&mut lines, "READ");
        lines
    });
    let _stdout = said.await.unwrap();
    gate.reached(1).await;
    child.kill().unwrap();
    child.wait().unwrap();
    gate.open();
    let cache = http_sliced(dir.path(), 2 * MIB).await;
    let reader = cache
        .get_range(&server.url("/s"), 0..2 * MIB)
        .await
        .unwrap();
    assert_eq!(
        reader.kind(),
        ReadKind::Led,
        "the dead leader's slice is taken over"
    );
    assert!(reader.bytes().await.unwrap() == data[..(2 * MIB) as usize]);
    let requests = server.requests("/s");
    let ranges: Vec<_> = requests.iter().map(|r| r.header("range")).collect();
    assert_eq!(
        ranges,
        [
            Some("bytes=0-0"),
            Some("bytes=0-2097151"),
            Some("bytes=0-2097151")
        ],
        "the probe once, the slice by the child and again by its taker"
    );
    assert!(
        requests[1..]
            .iter()
            .all(|r| r.header("if-range") == Some("\"e\""))
    );
}

/// The child of `a_killed_slice_leader_is_taken_over_over_http`: reads ten bytes of
/// slice 0, says so, and waits to be killed while its fill is held.
#[test]
#[ignore = "run as a child process"]
fn slice_leader_child() {
    let dir = std::env::var("SLICE_DIR").expect("SLICE_DIR is set");
    let url = std::env::var("SLICE_URL").expect("SLICE_URL is set");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let cache = http_sliced(dir.as_ref(), 2 * MIB).await;
        let reader = cache.get_range(&url, 0..10).await.unwrap();
        assert_eq!(reader.kind(), ReadKind::Led);
        reader.bytes().await.unwrap();
        println!("READ");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        futures::future::pending::<()>().await;
    });
}

const SHARED_LEN: usize = (16 << 20) + 4321;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_processes_of_fifty_tasks_fetch_each_slice_once() {
    let server = Server::start().await;
    let data = common::body(11, SHARED_LEN);
    server.route("/shared", Behaviour::body(data.clone()).etag("\"one\""));
    let dir = tempfile::tempdir().unwrap();
    let mut children = Vec::new();
    for seed in 0..4 {
        let mut child = common::child_test("random_ranges_child")
            .env("SLICE_DIR", dir.path())
            .env("SLICE_URL", server.url("/shared"))
            .env("SLICE_SEED", seed.to_string())
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = BufReader::new(child.stdout.take().unwrap());
        children.push((child, stdout));
    }
    // Every child has its cache open before any reads.
    let children = tokio::task::spawn_blocking(move || {
        for (_, stdout) in &mut children {
            wait_for_line(stdout, "READY");
        }
        for (child, _) in &mut children {
            writeln!(child.stdin.as_mut().unwrap(), "go").unwrap();
        }
        children
            .into_iter()
            .map(|(child, _)| child.wait_with_output().unwrap().status.success())
            .collect::<Vec<_>>()
    });
    assert!(
        children.await.unwrap().iter().all(|ok| *ok),
        "every range was byte-exact"
    );
    // The rest, read here: only the slices no child fetched.
    let cache = http_sliced(dir.path(), MIB).await;
    let all = cache.get_range(&server.url("/shared"), 0..).await.unwrap();
    assert!(all.bytes().await.unwrap() == data);
    let mut ranges: Vec<String> = server
        .requests("/shared")
        .iter()
        .map(|r| r.header("range").unwrap_or("whole").to_owned())
        .collect();
    ranges.sort();
    let before = ranges.len();
    ranges.dedup();
    assert_eq!(
        before,
        ranges.len(),
        "no range was asked for twice: {ranges:?}"
    );
    assert_eq!(
        ranges.len(),
        1 + SHARED_LEN.div_ceil(MIB as usize),
        "the probe and each slice"
    );
}

/// A child of `four_processes_of_fifty_tasks_fetch_each_slice_once`: says READY, waits
/// for a line, then reads random ranges in 50 tasks and checks each.
#[test]
#[ignore = "run as a child process"]
fn random_ranges_child() {
    let env = |name: &str| std::env::var(name).unwrap_or_else(|_| panic!("{name} is set"));
    let (dir, url) = (env("SLICE_DIR"), env("SLICE_URL"));
    let seed: u64 = env("SLICE_SEED").parse().unwrap();
    let data = bytes::Bytes::from(common::body(11, SHARED_LEN));
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async move {
        let cache = http_sliced(dir.as_ref(), MIB).await;
        println!("READY");
        std::io::Write::flush(&mut std::io::stdout()).unwrap();
        let mut go = String::new();
        std::io::stdin().read_line(&mut go).unwrap();
        let mut tasks = Vec::new();
        for task in 0..50 {
            let (cache, url, data) = (cache.clone(), url.clone(), data.clone());
            tasks.push(tokio::spawn(async move {
                let mut rng = fastrand::Rng::with_seed(seed * 1000 + task);
                for _ in 0..2 {
                    let start = rng.u64(..SHARED_LEN as u64);
                    let end = (start + rng.u64(1..2 * MIB)).min(SHARED_LEN as u64);
                    let got = cache.get_range(&url, start..end).await.unwrap();
                    let got = got.bytes().await.unwrap();
                    assert!(got == data.slice(start as usize..end as usize));
                }
            }));
        }
        for task in tasks {
            task.await.unwrap();
        }
    });
}

#[tokio::test]
async fn a_whole_read_after_ranges_fetches_only_the_missing_slices() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Ranged::new((4 * MIB) as usize);
    let cache = sliced(dir.path(), origin.clone(), MIB).await;
    let data = origin.data("big", 0);
    let tail = cache.get_range("big", 3 * MIB..).await.unwrap();
    assert!(tail.bytes().await.unwrap() == data.slice(3 << 20..));
    let whole = cache.get("big").await.unwrap();
    assert_eq!(whole.len(), Some(4 * MIB));
    assert!(whole.bytes().await.unwrap() == data);
    let asked = origin.asked();
    assert_eq!(asked[..2], [(0, Some(1)), (3 * MIB, Some(4 * MIB))]);
    let mut rest: Vec<_> = asked[2..].to_vec();
    rest.sort();
    assert_eq!(
        rest,
        [
            (0, Some(MIB)),
            (MIB, Some(2 * MIB)),
            (2 * MIB, Some(3 * MIB))
        ],
        "only the three missing slices, and no whole fetch"
    );
}
