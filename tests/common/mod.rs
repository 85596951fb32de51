//! Helpers shared by the integration tests: deterministic bodies and origins that
//! count, pause, fail or change.
#![allow(dead_code)]

#[cfg(feature = "object-store")]
pub mod flaky_store;
pub mod http_server;
#[cfg(feature = "s3")]
pub mod moto;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{StreamExt, stream};
use readthrough::{BoxError, Cache, FetchOptions, Fetched, Origin};
use tokio::sync::Semaphore;

/// `len` pseudo-random bytes determined by `seed`.
pub fn body(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 24) as u8
        })
        .collect()
}

/// The body the test origins serve for `key`, version `version`.
pub fn body_of(key: &str, version: u64, len: usize) -> Vec<u8> {
    let seed = key.bytes().fold(version.wrapping_add(1), |h, b| {
        h.wrapping_mul(31).wrapping_add(b as u64)
    });
    body(seed, len)
}

/// Splits `data` into a stream of `chunk`-sized pieces.
pub fn chunked(data: Vec<u8>, chunk: usize) -> Vec<Result<Bytes, BoxError>> {
    let data = Bytes::from(data);
    (0..data.len())
        .step_by(chunk.max(1))
        .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
        .collect()
}

/// An origin that serves `body_of(key, 0, len)` in chunks and counts its fetches.
#[derive(Clone)]
pub struct Counting {
    pub fetches: Arc<AtomicUsize>,
    pub len: usize,
    pub chunk: usize,
    /// A pause before each chunk.
    pub delay: Duration,
}

impl Counting {
    pub fn new(len: usize) -> Self {
        Counting {
            fetches: Arc::default(),
            len,
            chunk: 16 * 1024,
            delay: Duration::ZERO,
        }
    }

    pub fn fetches(&self) -> usize {
        self.fetches.load(Ordering::SeqCst)
    }
}

impl Origin for Counting {
    fn fetch(&self, key: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let chunks = chunked(body_of(key, 0, self.len), self.chunk);
        let delay = self.delay;
        let len = self.len as u64;
        Box::pin(async move {
            let body = stream::iter(chunks).then(move |chunk| async move {
                if !delay.is_zero() {
                    tokio::time::sleep(delay).await;
                }
                chunk
            });
            Ok(Fetched::from_stream(body).with_len(len))
        })
    }
}

/// An origin that sends the first half of its body, says so, and waits for the test
/// to let it send the rest.
#[derive(Clone)]
pub struct Paused {
    pub data: Bytes,
    pub half_sent: Arc<Semaphore>,
    pub resume: Arc<Semaphore>,
    pub fetches: Arc<AtomicUsize>,
}

impl Paused {
    pub fn new(data: Vec<u8>) -> Self {
        Paused {
            data: data.into(),
            half_sent: Arc::new(Semaphore::new(0)),
            resume: Arc::new(Semaphore::new(0)),
            fetches: Arc::default(),
        }
    }
}

impl Origin for Paused {
    fn fetch(&self, _: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let this = self.clone();
        Box::pin(async move {
            let half = this.data.len() / 2;
            let first = this.data.slice(..half);
            let rest = this.data.slice(half..);
            let body = stream::once(async move { Ok::<_, BoxError>(first) }).chain(stream::once(
                async move {
                    this.half_sent.add_permits(1);
                    let _ = this.resume.acquire().await;
                    Ok(rest)
                },
            ));
            Ok(Fetched::from_stream(body).with_len(this.data.len() as u64))
        })
    }
}

/// An origin that sends `good` bytes of its body, waits for `release`, and then fails,
/// or ends early when `short` is set (a body shorter than promised).
#[derive(Clone)]
pub struct Failing {
    pub len: usize,
    pub good: usize,
    pub short: bool,
    pub fetches: Arc<AtomicUsize>,
    pub release: Arc<Semaphore>,
}

impl Failing {
    pub fn new(len: usize, good: usize, short: bool) -> Self {
        Failing {
            len,
            good,
            short,
            fetches: Arc::default(),
            release: Arc::new(Semaphore::new(0)),
        }
    }
}

impl Origin for Failing {
    fn fetch(&self, key: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        let data = body_of(key, 0, self.len);
        let good = stream::iter(chunked(data[..self.good].to_vec(), 4096));
        let release = Arc::clone(&self.release);
        let short = self.short;
        let end = stream::once(async move {
            let _ = release.acquire().await.expect("semaphore open");
            (!short).then(|| Err::<Bytes, BoxError>("the origin broke mid-body".into()))
        })
        .filter_map(|item| async move { item });
        let len = self.len as u64;
        Box::pin(async move { Ok(Fetched::from_stream(good.chain(end)).with_len(len)) })
    }
}

/// A cache in `dir` with durability off (the tests that need it turn it on).
pub async fn cache(dir: &std::path::Path, origin: impl Origin) -> Cache {
    Cache::builder(dir)
        .origin(origin)
        .durable(false)
        .build()
        .await
        .expect("open the cache")
}

/// This test executable, to be run as a child process that runs only the ignored
/// test `name` (a test in a child role), its output not captured.
pub fn child_test(name: &str) -> std::process::Command {
    let mut command = std::process::Command::new(std::env::current_exe().unwrap());
    command.args(child_test_args(name));
    command
}

/// The arguments that make this test executable run only the ignored test `name`, its
/// output not captured: for a child started through another program (`unshare`).
pub fn child_test_args(name: &str) -> [&str; 5] {
    [
        "--ignored",
        "--exact",
        name,
        "--nocapture",
        "--test-threads=1",
    ]
}

/// Reads `key` through the cache's origin, whole.
pub async fn fetch_all(cache: &Cache, key: &str) -> Bytes {
    cache.get(key).await.unwrap().bytes().await.unwrap()
}

/// The stored body of `key`, whole; `None` when nothing servable is stored.
pub async fn stored(cache: &Cache, key: &str) -> Option<Bytes> {
    Some(cache.read(key).await.unwrap()?.bytes().await.unwrap())
}

/// The names of the files under `dir`, recursively, sorted.
pub fn files_under(dir: &std::path::Path) -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                out.extend(files_under(&path));
            } else {
                out.push(path.display().to_string());
            }
        }
    }
    out.sort();
    out
}

/// Waits until `done` holds, looking again every few milliseconds, for up to a minute
/// of wall-clock time: a bound on time, not on the number of looks, which a loaded
/// machine makes far longer than it seems. Whether it held.
pub async fn eventually(mut done: impl AsyncFnMut() -> bool) -> bool {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while !done().await {
        if std::time::Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    true
}

/// A clock that moves only when the test says so. Clones share the time.
#[derive(Clone)]
pub struct ManualClock(Arc<std::sync::Mutex<std::time::SystemTime>>);

impl ManualClock {
    /// A clock at the real time now.
    pub fn new() -> Self {
        ManualClock(Arc::new(
            std::sync::Mutex::new(std::time::SystemTime::now()),
        ))
    }

    pub fn advance(&self, by: Duration) {
        *self.0.lock().unwrap() += by;
    }
}

impl readthrough::Clock for ManualClock {
    fn now(&self) -> std::time::SystemTime {
        *self.0.lock().unwrap()
    }
}
