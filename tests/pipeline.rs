//! A leader receives the origin's next bytes while it writes the ones before them
//! (issue 14): the copy is a pipeline, not write-then-read. The `fill::write`
//! failpoint holds the first write on its thread while the test feeds the origin.

mod common;

use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use common::body_of;
use futures::StreamExt;
use readthrough::{Cache, Fetched, origin_fn};

/// How long the test waits for a step before it fails instead of hanging.
const WAIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_next_bytes_are_received_while_a_write_is_on_its_thread() {
    let scenario = fail::FailScenario::setup();
    let body = body_of("k", 3, 3 << 20);
    let dir = tempfile::tempdir().unwrap();

    // The origin's chunks come from the test, one at a time; each one the fill takes
    // is reported.
    let (feed, chunks) = tokio::sync::mpsc::channel::<Bytes>(1);
    let (taken, took) = mpsc::channel::<usize>();
    let source = Arc::new(Mutex::new(Some((chunks, taken))));
    let origin = origin_fn(move |_key: String| {
        let source = source.lock().unwrap().take();
        async move {
            let (chunks, taken) = source.expect("one fetch");
            let stream =
                futures::stream::unfold((chunks, taken, 0), |(mut chunks, taken, n)| async move {
                    let chunk = chunks.recv().await?;
                    taken.send(n).unwrap();
                    Some((Ok::<_, std::io::Error>(chunk), (chunks, taken, n + 1)))
                });
            Ok::<_, std::io::Error>(Fetched::from_stream(stream.boxed()))
        }
    });
    let cache = Cache::builder(dir.path())
        .origin(origin)
        .durable(false)
        .build()
        .await
        .unwrap();

    // The first write stops on its thread until the test lets it go.
    let (writing, wrote) = mpsc::channel::<()>();
    let (go, gate) = mpsc::channel::<()>();
    let (writing, gate) = (Mutex::new(writing), Mutex::new(gate));
    fail::cfg_callback("fill::write", move || {
        if writing.lock().unwrap().send(()).is_ok() {
            gate.lock().unwrap().recv_timeout(3 * WAIT).ok();
        }
    })
    .unwrap();

    let read = tokio::spawn({
        let cache = cache.clone();
        async move { cache.get("k").await.unwrap().bytes().await.unwrap() }
    });
    let (first, rest) = body.split_at(1 << 20);
    feed.send(Bytes::copy_from_slice(first)).await.unwrap();
    let took_first = tokio::task::spawn_blocking(move || {
        let n = took.recv_timeout(WAIT).expect("the first chunk is taken");
        wrote.recv_timeout(WAIT).expect("the first write starts");
        (n, took, wrote)
    })
    .await
    .unwrap();
    let (n, took, wrote) = took_first;
    assert_eq!(n, 0);

    // The first write is held. The second chunk is still taken from the origin.
    feed.send(Bytes::copy_from_slice(&rest[..1 << 20]))
        .await
        .unwrap();
    let second = tokio::task::spawn_blocking(move || (took.recv_timeout(WAIT), took))
        .await
        .unwrap();
    assert_eq!(
        second.0,
        Ok(1),
        "the origin was not read while a write was held"
    );
    drop(wrote);
    go.send(()).unwrap();
    feed.send(Bytes::copy_from_slice(&rest[1 << 20..]))
        .await
        .unwrap();
    drop(feed);

    assert_eq!(read.await.unwrap(), body);
    assert_eq!(cache.get("k").await.unwrap().bytes().await.unwrap(), body);
    scenario.teardown();
}
