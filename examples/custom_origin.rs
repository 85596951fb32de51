//! A custom origin: put the cache in front of your own source of blobs.
//!
//! ```text
//! cargo run --example custom_origin
//! ```
//!
//! `DirOrigin` serves the files of a folder, standing in for a slow network share or any
//! store you can open by key. It implements [`Origin`]: for each fetch it answers with
//! what it knows up front (the length, so a short or long body is caught, and a
//! validator, so the cache can resume a body by range), then streams the file in chunks.
//!
//! The example shows, asserting each step:
//! - `Cache::builder(..).origin(DirOrigin { .. })` and `get`: a miss fetches, later reads hit;
//! - ten tasks reading a cold key at once: one fetch between them;
//! - an origin error (a missing file) reaching the caller as `Error::Origin`, uncached;
//! - `get_with` and a closure, for a one-off source, without the cache's origin;
//! - how `DirOrigin` answers when the cache asks for a range.

use std::io::{self, SeekFrom};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::{TryStreamExt, stream};
use readthrough::{BoxError, Cache, Error, FetchOptions, Fetched, Origin, ReadKind};
use tokio::io::{AsyncReadExt, AsyncSeekExt};

/// Serves `<root>/<key>`, slowly, and counts its fetches.
struct DirOrigin {
    root: PathBuf,
    fetches: Arc<AtomicUsize>,
}

impl Origin for DirOrigin {
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        self.fetches.fetch_add(1, Ordering::SeqCst);
        // Keys come from callers: keep them inside the root.
        if key.split('/').any(|part| matches!(part, "" | "." | "..")) {
            let error = format!("key {key:?} is not a relative path");
            return Box::pin(async move { Err(error.into()) });
        }
        let path = self.root.join(key);
        Box::pin(async move {
            let mut file = tokio::fs::File::open(&path).await?;
            let meta = file.metadata().await?;
            let modified = meta.modified()?.duration_since(UNIX_EPOCH)?.as_nanos();
            // Like an HTTP ETag: it changes whenever the file does.
            let validator = format!("\"{:x}-{modified:x}\"", meta.len());
            // A range is honoured only for the version it was asked against; otherwise
            // the whole body goes out, from offset 0.
            let same = options.if_validator.as_ref() == Some(&validator);
            let offset = if same { options.offset } else { 0 };
            file.seek(SeekFrom::Start(offset)).await?;
            let body = stream::try_unfold(file, |mut file| async move {
                tokio::time::sleep(Duration::from_millis(20)).await; // a slow share
                let mut chunk = vec![0; 64 * 1024];
                let n = file.read(&mut chunk).await?;
                chunk.truncate(n);
                Ok::<_, io::Error>((n > 0).then(|| (Bytes::from(chunk), file)))
            });
            Ok(Fetched::from_stream(body)
                .with_len(meta.len())
                .with_validator(validator)
                .with_offset(offset))
        })
    }
}

#[tokio::main]
async fn main() -> Result<(), BoxError> {
    // The "remote" folder and its files.
    let share = tempfile::tempdir()?;
    let hello = b"hello from the slow share\n".to_vec();
    let report: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::create_dir(share.path().join("docs"))?;
    std::fs::write(share.path().join("hello.txt"), &hello)?;
    std::fs::write(share.path().join("docs/report.bin"), &report)?;

    let cache_dir = tempfile::tempdir()?;
    let fetches = Arc::new(AtomicUsize::new(0));
    let cache = Cache::builder(cache_dir.path())
        .origin(DirOrigin {
            root: share.path().to_owned(),
            fetches: Arc::clone(&fetches),
        })
        .build()
        .await?;

    // A miss: this read leads the fill. The length is known before the body arrives,
    // because the origin announced it.
    let reader = cache.get("hello.txt").await?;
    assert_eq!(
        (reader.kind(), reader.len()),
        (ReadKind::Led, Some(hello.len() as u64))
    );
    assert_eq!(reader.bytes().await?, hello);
    // Read again, it is a hit from the cache directory; the origin is not asked.
    let reader = cache.get("hello.txt").await?;
    assert_eq!(reader.kind(), ReadKind::Hit);
    assert_eq!(reader.bytes().await?, hello);
    assert_eq!(fetches.load(Ordering::SeqCst), 1);
    println!("get hello.txt      led, then hit; 1 fetch");

    // Ten tasks on a cold key at once: one leads, nine join, one fetch between them.
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move {
                let reader = cache.get("docs/report.bin").await?;
                Ok::<_, Error>((reader.kind(), reader.bytes().await?))
            })
        })
        .collect();
    let (mut led, mut joined) = (0, 0);
    for task in tasks {
        let (kind, body) = task.await??;
        assert_eq!(body, report);
        led += u64::from(kind == ReadKind::Led);
        joined += u64::from(kind == ReadKind::Joined);
    }
    assert_eq!((led, fetches.load(Ordering::SeqCst)), (1, 2));
    println!("10 x get report    {led} led, {joined} joined; 2 fetches so far");

    // The origin's errors reach the caller, and nothing is cached.
    match cache.get("missing.txt").await {
        Err(Error::Origin { key, source }) => {
            let io = source.downcast_ref::<io::Error>().expect("an io::Error");
            assert_eq!(
                (key.as_str(), io.kind()),
                ("missing.txt", io::ErrorKind::NotFound)
            );
            println!("get missing.txt    Error::Origin: {io}");
        }
        other => panic!("expected an origin error, got {other:?}"),
    }
    assert!(!cache.contains("missing.txt").await?);

    // `get_with`: a one-off origin, a closure called with the key on a miss.
    let calls = Arc::new(AtomicUsize::new(0));
    for expected in [ReadKind::Led, ReadKind::Hit] {
        let counter = Arc::clone(&calls);
        let reader = cache
            .get_with("generated/squares", move |key| {
                counter.fetch_add(1, Ordering::SeqCst);
                async move {
                    let squares: Vec<String> = (1..=5).map(|i| (i * i).to_string()).collect();
                    Ok::<_, io::Error>(format!("{key}: {}", squares.join(" ")).into_bytes())
                }
            })
            .await?;
        assert_eq!(reader.kind(), expected);
        assert_eq!(reader.bytes().await?, "generated/squares: 1 4 9 16 25");
    }
    assert_eq!(calls.load(Ordering::SeqCst), 1, "the hit did not call it");
    assert_eq!(fetches.load(Ordering::SeqCst), 3, "DirOrigin was not asked");
    println!("get_with squares   led, then hit; the closure ran once");

    let stats = cache.stats();
    assert_eq!((stats.fills_led, stats.fills_joined), (4, joined));
    println!("cache.stats()      {stats:?}");

    // The cache asks for a range only to resume a body (after a local disk failure),
    // so here DirOrigin is called by hand: a range against the current validator is
    // honoured, one against a stale validator gets the whole body.
    let origin = DirOrigin {
        root: share.path().to_owned(),
        fetches: Arc::default(),
    };
    let validator = origin
        .fetch("hello.txt", FetchOptions::default())
        .await?
        .validator;
    for (if_validator, offset) in [(validator, 6), (Some("\"stale\"".to_owned()), 0)] {
        let mut options = FetchOptions::default();
        options.offset = 6;
        options.if_validator = if_validator;
        let answer = origin.fetch("hello.txt", options).await?;
        assert_eq!(answer.offset, offset);
        let body: Vec<Bytes> = answer.body.try_collect().await?;
        assert_eq!(body.concat(), hello[offset as usize..]);
    }
    println!("ranges             resumed at byte 6 for the same version, whole body otherwise");
    println!("OK");
    Ok(())
}
