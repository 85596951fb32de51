//! An origin's error as a follower in another process sees it: two caches built
//! separately on one directory coordinate only through the files, as two processes
//! do, so the follower learns of the leader's failure only from its lock file.

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant};

use readthrough::Cache;
use tokio::sync::{Notify, oneshot};

async fn handle(dir: &std::path::Path) -> Cache {
    Cache::builder(dir).durable(false).build().await.unwrap()
}

/// Waits until `cache` follows another cache's fill: its counter of followed fills
/// passes `before`, what it was before this fill.
async fn until_following(cache: &Cache, before: u64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while cache.stats().fills_followed <= before {
        assert!(Instant::now() < deadline, "the second cache never followed");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Leads a fill of `key` in `leader` that fails with `error` once `go` is notified,
/// follows it from `follower`, and returns the follower's error.
async fn followers_error(
    leader: &Cache,
    follower: &Cache,
    key: &str,
    error: fn() -> io::Error,
) -> readthrough::Error {
    let go = Arc::new(Notify::new());
    let (started, fetching) = oneshot::channel();
    let started = std::sync::Mutex::new(Some(started));
    let gate = Arc::clone(&go);
    let origin = move |_| {
        if let Some(started) = started.lock().unwrap().take() {
            let _ = started.send(());
        }
        let gate = Arc::clone(&gate);
        async move {
            gate.notified().await;
            Err::<Vec<u8>, _>(error())
        }
    };
    let leading = tokio::spawn({
        let (leader, key) = (leader.clone(), key.to_owned());
        async move {
            match leader.get_with(&key, origin).await {
                Ok(reader) => reader.bytes().await.err(),
                Err(e) => Some(e),
            }
        }
    });
    fetching.await.expect("the leader fetches");
    let before = follower.stats().fills_followed;
    let following = tokio::spawn({
        let follower = follower.clone();
        let key = key.to_owned();
        async move {
            // The follower's own origin must not be asked: it would succeed.
            match follower
                .get_with(&key, |_| async { Ok::<_, io::Error>(b"fetched".to_vec()) })
                .await
            {
                Ok(reader) => reader.bytes().await.err(),
                Err(e) => Some(e),
            }
        }
    });
    until_following(follower, before).await;
    go.notify_one();
    assert!(leading.await.unwrap().is_some(), "the leader fails");
    following
        .await
        .unwrap()
        .expect("the follower reports the leader's failure")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_not_found_reaches_a_follower_in_another_process_as_not_found() {
    let dir = tempfile::tempdir().unwrap();
    let (leader, follower) = (handle(dir.path()).await, handle(dir.path()).await);
    let err = followers_error(&leader, &follower, "missing", || {
        io::Error::new(io::ErrorKind::NotFound, "no such object")
    })
    .await;
    assert!(err.to_string().contains("no such object"), "{err}");
    assert!(err.is_not_found(), "{err:?}");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::NotFound);
    assert_eq!(follower.stats().fills_led, 0, "the follower did not fetch");

    // Any other failure stays what it was: not a "not found".
    let err = followers_error(&leader, &follower, "broken", || {
        io::Error::other("the origin broke")
    })
    .await;
    assert!(err.to_string().contains("the origin broke"), "{err}");
    assert!(!err.is_not_found(), "{err:?}");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::Other);
}
