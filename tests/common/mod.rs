//! Helpers shared by the integration tests: deterministic bodies and origins that
//! count, pause, fail or change.
#![allow(dead_code)]

#[cfg(feature = "object-store")]
pub mod flaky_store;
#[cfg(feature = "object-store")]
pub mod hooked_store;
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

/// A cache in `dir` with no origin (filled by `put`) and durability off.
pub async fn origin_less(dir: &std::path::Path) -> Cache {
    Cache::builder(dir)
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

/// A range an origin was asked for: its offset and end.
pub type Asked = (u64, Option<u64>);

/// An origin that serves ranges of a versioned body (`body_of(key, version, len)`,
/// validator `"v{version}"` unless `no_validator`), counting the fetches and the
/// bytes it sends, and the offset of each fetch.
#[derive(Clone)]
pub struct Ranged {
    pub len: usize,
    pub version: Arc<AtomicUsize>,
    pub no_validator: bool,
    pub fetches: Arc<AtomicUsize>,
    pub bytes_sent: Arc<AtomicUsize>,
    pub offsets: Arc<std::sync::Mutex<Vec<Asked>>>,
    /// The bodies made so far, by key and version.
    bodies: Arc<std::sync::Mutex<std::collections::HashMap<(String, u64), Bytes>>>,
}

impl Ranged {
    pub fn new(len: usize) -> Self {
        Ranged {
            len,
            version: Arc::default(),
            no_validator: false,
            fetches: Arc::default(),
            bytes_sent: Arc::default(),
            offsets: Arc::default(),
            bodies: Arc::default(),
        }
    }

    /// The body of `key` at `version`, made once.
    pub fn data(&self, key: &str, version: u64) -> Bytes {
        let mut bodies = self.bodies.lock().unwrap();
        let entry = bodies.entry((key.to_owned(), version));
        entry
            .or_insert_with(|| Bytes::from(body_of(key, version, self.len)))
            .clone()
    }

    pub fn bytes_sent(&self) -> usize {
        self.bytes_sent.load(Ordering::SeqCst)
    }

    /// The ranges asked for, in order.
    pub fn asked(&self) -> Vec<Asked> {
        self.offsets.lock().unwrap().clone()
    }
}

impl Origin for Ranged {
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        self.offsets
            .lock()
            .unwrap()
            .push((options.offset, options.end));
        let version = self.version.load(Ordering::SeqCst) as u64;
        let validator = format!("\"v{version}\"");
        let data = self.data(key, version);
        // As HTTP's If-Range: another version comes back whole.
        let whole = options.if_validator.is_some_and(|v| v != validator);
        let (start, end) = if whole {
            (0, self.len)
        } else {
            let end = options.end.map_or(self.len, |e| (e as usize).min(self.len));
            ((options.offset as usize).min(end), end)
        };
        let part = data.slice(start..end);
        let sent = Arc::clone(&self.bytes_sent);
        let pieces = (start..end).step_by(64 * 1024).map(move |at| {
            let piece = part.slice(at - start..(at + 64 * 1024).min(end) - start);
            sent.fetch_add(piece.len(), Ordering::SeqCst);
            Ok::<_, BoxError>(piece)
        });
        let body = stream::iter(pieces);
        let mut fetched = Fetched::from_stream(body)
            .with_len(self.len as u64)
            .with_offset(start as u64);
        if !self.no_validator {
            fetched = fetched.with_validator(validator);
        }
        Box::pin(async move { Ok(fetched) })
    }

    fn serves_ranges(&self) -> bool {
        true
    }
}

/// Reads `key`, whose body is `data`, as each of `reads` says: `(a, b, form)` is the
/// range `a..b` (in order, made non-empty), `a..`, the last `a` bytes, or (form 3) a
/// whole read, with `a` and `b` taken modulo a little past the end. Each read must
/// return exactly those bytes of `data`, or `RangeNotSatisfiable` when HTTP says so.
pub async fn check_range_reads(cache: &Cache, key: &str, data: &[u8], reads: Vec<(u64, u64, u8)>) {
    let len = data.len() as u64;
    for (a, b, form) in reads {
        let (a, b) = (a % (len + 10), b % (len + 10));
        let range = match form {
            0 => readthrough::ByteRange::from(a.min(b)..a.max(b) + 1),
            1 => readthrough::ByteRange::from(a..),
            2 => readthrough::ByteRange::last(a),
            _ => {
                let whole = cache.get(key).await.unwrap().bytes().await.unwrap();
                assert!(whole == data, "a whole read");
                continue;
            }
        };
        match range.resolve(len) {
            Some(want) => {
                let reader = cache.get_range(key, range).await.unwrap();
                assert_eq!(reader.len(), Some(want.end - want.start));
                let got = reader.bytes().await.unwrap();
                assert!(
                    got == data[want.start as usize..want.end as usize],
                    "{range}"
                );
            }
            None => {
                let error = cache.get_range(key, range).await.unwrap_err();
                let unsatisfiable = matches!(error, readthrough::Error::RangeNotSatisfiable { .. });
                assert!(unsatisfiable, "{range}: {error}");
            }
        }
    }
}
