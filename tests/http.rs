//! HttpOrigin against a real HTTP server on loopback: coalescing, statuses, retries,
//! redirects, short and stalled bodies, resume by range, and objects that change.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::http_server::{Behaviour, Server};
use readthrough::{Cache, Error, HttpOrigin, ReadKind};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::Barrier;

/// An origin with a short backoff, so failure tests run fast. Its idle timeout is long
/// enough that a loaded machine, which may hold up the loopback server or the client
/// for a while, does not make a timeout (and a resume or a retry) the test did not ask
/// for; the test of a stalled body sets a short one.
fn origin() -> HttpOrigin {
    origin_idle_for(Duration::from_secs(10))
}

fn origin_idle_for(idle: Duration) -> HttpOrigin {
    HttpOrigin::builder()
        .idle_timeout(idle)
        .backoff(Duration::from_millis(10))
        .retries(3)
        .build()
        .unwrap()
}

async fn cache_over(dir: &std::path::Path, origin: HttpOrigin) -> Cache {
    Cache::builder(dir)
        .origin(origin)
        .durable(false)
        .build()
        .await
        .unwrap()
}

/// Reads `url` fully, whether the error comes at `get` or in the body.
async fn read(cache: &Cache, url: &str) -> readthrough::Result<bytes::Bytes> {
    cache.get(url).await?.bytes().await
}

/// The `HttpStatus` or `ObjectChanged` inside an origin error.
fn inner(err: &Error) -> &Error {
    match err {
        Error::Origin { source, .. } => source.downcast_ref::<Error>().unwrap_or(err),
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_gets_of_one_cold_url_make_one_request() {
    let server = Server::start().await;
    let body = common::body(1, 3 << 20);
    server.route(
        "/big",
        Behaviour::body(body.clone())
            .etag("\"v1\"")
            .chunk(64 * 1024)
            .delay(Duration::from_millis(2)),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin()).await;
    let url = server.url("/big");
    let barrier = Arc::new(Barrier::new(200));
    let tasks: Vec<_> = (0..200)
        .map(|_| {
            let (cache, url, barrier) = (cache.clone(), url.clone(), Arc::clone(&barrier));
            tokio::spawn(async move {
                barrier.wait().await;
                read(&cache, &url).await.unwrap()
            })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap() == body, "wrong bytes");
    }
    assert_eq!(server.count("/big"), 1);
    assert_eq!(cache.get(&url).await.unwrap().kind(), ReadKind::Hit);
}

#[tokio::test]
async fn error_statuses_name_the_status_and_url_and_cache_nothing() {
    let server = Server::start().await;
    server.route("/gone", Behaviour::body("x").status(404));
    server.route("/broken", Behaviour::body("x").status(500));
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin()).await;
    for (path, status, requests) in [("/gone", 404, 1), ("/broken", 500, 4)] {
        let url = server.url(path);
        let err = read(&cache, &url).await.unwrap_err();
        assert!(
            matches!(inner(&err), Error::HttpStatus { status: s, url: u } if *s == status && *u == url),
            "{err:?}"
        );
        assert!(
            err.to_string().contains(&status.to_string()) && err.to_string().contains(&url),
            "{err}"
        );
        assert!(!cache.contains(&url).await.unwrap());
        assert_eq!(
            server.count(path),
            requests,
            "404 is not retried; 500 is retried 3 times"
        );
    }
}

#[tokio::test]
async fn retryable_failures_before_the_body_are_retried() {
    let server = Server::start().await;
    server.route(
        "/busy",
        Behaviour::body("fine").fail_first(2).fail_status(503),
    );
    server.route(
        "/limited",
        Behaviour::body("fine").fail_first(1).fail_status(429),
    );
    server.route(
        "/down",
        Behaviour::body("never").fail_first(100).fail_status(503),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin()).await;
    assert_eq!(read(&cache, &server.url("/busy")).await.unwrap(), "fine");
    assert_eq!(server.count("/busy"), 3);
    assert_eq!(read(&cache, &server.url("/limited")).await.unwrap(), "fine");
    assert_eq!(server.count("/limited"), 2);
    let err = read(&cache, &server.url("/down")).await.unwrap_err();
    assert!(
        matches!(inner(&err), Error::HttpStatus { status: 503, .. }),
        "{err:?}"
    );
    assert_eq!(server.count("/down"), 4, "one try and three retries");
}

#[tokio::test]
async fn a_refused_connection_is_an_error_naming_the_url() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/x", listener.local_addr().unwrap());
    drop(listener);
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin()).await;
    let err = read(&cache, &url).await.unwrap_err();
    assert!(
        matches!(inner(&err), Error::Http { url: u, .. } if *u == url),
        "{err:?}"
    );
}

#[tokio::test]
async fn redirects_are_followed_and_cached_under_the_asked_url() {
    let server = Server::start().await;
    server.route("/real", Behaviour::body("the body"));
    server.route(
        "/alias",
        Behaviour::body("").redirect_to(server.url("/real")),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin()).await;
    assert_eq!(
        read(&cache, &server.url("/alias")).await.unwrap(),
        "the body"
    );
    assert!(cache.contains(&server.url("/alias")).await.unwrap());
}

#[tokio::test]
async fn a_short_body_without_a_validator_fails_and_caches_nothing() {
    let server = Server::start().await;
    server.route(
        "/short",
        Behaviour::body(common::body(2, 100_000)).short_by(10),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin()).await;
    let url = server.url("/short");
    assert!(read(&cache, &url).await.is_err());
    assert!(!cache.contains(&url).await.unwrap());
    assert_eq!(
        common::files_under(&dir.path().join("v1/tmp"))
            .iter()
            .filter(|f| f.ends_with(".part"))
            .count(),
        0
    );
}

#[tokio::test]
async fn a_stalled_body_times_out_instead_of_holding_the_fill() {
    let server = Server::start().await;
    server.route(
        "/stall",
        Behaviour::body(common::body(3, 100_000)).stall_after(1000),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin_idle_for(Duration::from_millis(500))).await;
    let err = read(&cache, &server.url("/stall")).await.unwrap_err();
    assert!(matches!(inner(&err), Error::IdleTimeout { .. }), "{err:?}");
    assert!(!cache.contains(&server.url("/stall")).await.unwrap());
}

#[tokio::test]
async fn a_dropped_connection_resumes_with_a_range_request() {
    for (name, behaviour) in [
        (
            "/etag",
            Behaviour::body(common::body(4, 1 << 20)).etag("\"abc\""),
        ),
        (
            "/dated",
            Behaviour::body(common::body(4, 1 << 20))
                .last_modified("Tue, 01 Jan 2030 00:00:00 GMT"),
        ),
    ] {
        let server = Server::start().await;
        server.route(name, behaviour.drop_after(1 << 19).chunk(64 * 1024));
        let dir = tempfile::tempdir().unwrap();
        let cache = cache_over(dir.path(), origin()).await;
        let got = read(&cache, &server.url(name)).await.unwrap();
        assert!(
            got == common::body(4, 1 << 20),
            "{name}: wrong bytes after resume"
        );
        let requests = server.requests(name);
        assert_eq!(requests.len(), 2, "{name}");
        let resume = &requests[1];
        assert_eq!(resume.header("range"), Some("bytes=524288-"), "{name}");
        assert!(
            resume.header("if-range").is_some(),
            "{name}: resumes under the validator"
        );
    }
}

#[tokio::test]
async fn without_a_strong_validator_a_dropped_connection_is_an_error() {
    let server = Server::start().await;
    server.route(
        "/weak",
        Behaviour::body(common::body(5, 1 << 20))
            .etag("W/\"weak\"")
            .drop_after(1 << 19),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin()).await;
    assert!(read(&cache, &server.url("/weak")).await.is_err());
    assert_eq!(
        server.count("/weak"),
        1,
        "no resume without a strong validator"
    );
    assert!(!cache.contains(&server.url("/weak")).await.unwrap());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_object_that_changes_during_resume_never_mixes_bytes() {
    let server = Server::start().await;
    let old = common::body(6, 1 << 20);
    let new = common::body(7, 1 << 20);
    server.route(
        "/obj",
        Behaviour::body(old.clone())
            .etag("\"old\"")
            .chunk(64 * 1024)
            .delay(Duration::from_millis(5))
            .drop_after(1 << 19),
    );
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin()).await;
    let url = server.url("/obj");
    let mut reader = cache.get(&url).await.unwrap();
    // The object changes while the first answer is still being sent.
    server.route("/obj", Behaviour::body(new.clone()).etag("\"new\""));
    let mut got = Vec::new();
    let mut failed = None;
    while let Some(chunk) = futures::StreamExt::next(&mut reader).await {
        match chunk {
            Ok(chunk) => got.extend_from_slice(&chunk),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    let err = failed.expect("the read must fail, not return two versions");
    assert!(
        matches!(inner(&err), Error::ObjectChanged { .. }),
        "{err:?}"
    );
    assert!(
        old.starts_with(&got),
        "what was returned is a prefix of the old version only"
    );
    assert!(!cache.contains(&url).await.unwrap(), "nothing is cached");
    assert!(
        read(&cache, &url).await.unwrap() == new,
        "the next read gets the new version whole"
    );
}

#[tokio::test]
async fn the_validator_and_content_type_are_kept_and_headers_are_sent() {
    let server = Server::start().await;
    server.route(
        "/typed",
        Behaviour::body("{}")
            .etag("\"e1\"")
            .content_type("application/json"),
    );
    let client = reqwest::Client::builder()
        .user_agent("readthrough-test")
        .build()
        .unwrap();
    let origin = HttpOrigin::builder()
        .client(client)
        .header(
            HeaderName::from_static("x-team"),
            HeaderValue::from_static("blue"),
        )
        .headers_for(|url| {
            let mut headers = HeaderMap::new();
            headers.insert("x-url-len", HeaderValue::from(url.len()));
            headers
        })
        .build()
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cache = cache_over(dir.path(), origin).await;
    let url = server.url("/typed");
    assert_eq!(read(&cache, &url).await.unwrap(), "{}");
    let request = &server.requests("/typed")[0];
    assert_eq!(request.header("x-team"), Some("blue"));
    assert_eq!(
        request.header("x-url-len"),
        Some(url.len().to_string().as_str())
    );
    assert_eq!(request.header("user-agent"), Some("readthrough-test"));
    let meta = format!("{}.meta", cache.path(&url).await.unwrap().display());
    let meta: serde_json::Value = serde_json::from_slice(&std::fs::read(meta).unwrap()).unwrap();
    assert_eq!(meta["validator"], "\"e1\"");
    assert_eq!(meta["content_type"], "application/json");
}

// The connect timeout ----------------------------------------------------------------

/// The address the connect-timeout test dials. It is routed only inside a network
/// namespace the test creates for its child, to a TUN device that nobody reads: every
/// SYN sent there is dropped, so a connect can only time out. (A `blackhole` route
/// would not do: the kernel refuses a local connect to one at once, with `EINVAL`.)
///
/// The workplace forbids traffic to any non-loopback address outside namespaces we
/// create ourselves. This address is dialled only from inside the child's fresh
/// namespace, whose only interfaces are its own loopback and that unread TUN device,
/// and which disappears with the child: no packet can reach a real network.
const DROPPED: &str = "10.255.255.1";

/// Why the connect-timeout test cannot run here, if it cannot.
fn no_network_namespaces() -> Option<String> {
    // SAFETY: geteuid(2) has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Some("not root: cannot create a network namespace and a TUN device".into());
    }
    let probe = |program: &str, args: &[&str]| match std::process::Command::new(program)
        .args(args)
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "`{program} {}` failed: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("no `{program}` ({e})")),
    };
    probe("unshare", &["--net", "--", "true"]).or_else(|| probe("ip", &["-V"]))
}

/// A fetch from an address that never answers ends at the connect timeout, with an
/// error that names the URL and says the connect timed out; it does not hang until the
/// kernel gives up on its SYNs (minutes) or the idle timeout (longer still here). The
/// client runs in a child process in a network namespace of its own (see [`DROPPED`]).
#[test]
fn a_connect_that_is_never_answered_ends_at_the_connect_timeout() {
    if let Some(why) = no_network_namespaces() {
        println!("skipped: {why}");
        return;
    }
    let outer = std::fs::read_link("/proc/self/ns/net").unwrap();
    let mut child = std::process::Command::new("unshare")
        .arg("--net")
        .arg("--")
        .arg(std::env::current_exe().unwrap())
        .args(common::child_test_args("connect_timeout_child"))
        .env("RT_OUTER_NETNS", &outer)
        // A proxy would be dialled instead of the address under test.
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            if let Some(at) = line.find("RT ") {
                let _ = tx.send(line[at + 3..].to_owned());
            }
        }
    });
    // A bound on the child as a whole, far above what it should take: only a fetch
    // that hangs gets near it.
    let said = lines.recv_timeout(Duration::from_secs(300));
    if said.is_err() {
        let _ = child.kill();
    }
    let status = child.wait().unwrap();
    let said = said.unwrap_or_else(|_| panic!("the child said nothing in 300 s ({status})"));
    if let Some(why) = said.strip_prefix("SKIP ") {
        println!("skipped: {why}");
        return;
    }
    assert_eq!(said, "CHECKED", "the child ran its checks ({status})");
}

/// The client side of the test above. It refuses to run outside a network namespace
/// other than its parent's, so the route it adds never reaches the machine's own.
#[tokio::test]
#[ignore = "run by the connect-timeout test as a child, in a network namespace of its own"]
async fn connect_timeout_child() {
    let outer = std::env::var_os("RT_OUTER_NETNS").expect("run by the connect-timeout test");
    let ours = std::fs::read_link("/proc/self/ns/net").unwrap();
    assert_ne!(ours.as_os_str(), outer, "in a network namespace of its own");
    let ip = |args: &[&str]| {
        let out = std::process::Command::new("ip")
            .args(args)
            .output()
            .unwrap();
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "`ip {}` failed: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            ))
        }
    };
    if let Err(why) = ip(&["tuntap", "add", "dev", "rt-drop", "mode", "tun"]) {
        return println!("RT SKIP no TUN device to drop packets into: {why}");
    }
    ip(&["link", "set", "rt-drop", "up"]).unwrap();
    ip(&["route", "add", &format!("{DROPPED}/32"), "dev", "rt-drop"]).unwrap();

    let connect_timeout = Duration::from_millis(300);
    let origin = HttpOrigin::builder()
        .connect_timeout(connect_timeout)
        .idle_timeout(Duration::from_secs(600))
        .retries(0)
        .build()
        .unwrap();
    let url = format!("http://{DROPPED}/never");
    let started = std::time::Instant::now();
    let fetch = readthrough::Origin::fetch(&origin, &url, readthrough::FetchOptions::default());
    let fetched = tokio::time::timeout(Duration::from_secs(120), fetch)
        .await
        .expect("the fetch ended by itself, not after 120 s");
    let elapsed = started.elapsed();
    let Err(err) = fetched else {
        panic!("a fetch from an address whose packets are dropped succeeded");
    };
    assert!(
        elapsed >= connect_timeout,
        "it waited for the connect timeout, not for a refusal: {elapsed:?}"
    );
    assert!(
        elapsed < Duration::from_secs(30),
        "it ended at the connect timeout (300 ms), long before the kernel gives up: {elapsed:?}"
    );
    let err = err.downcast::<Error>().expect("a readthrough error");
    let Error::Http { url: named, .. } = &*err else {
        panic!("an HTTP request error: {err:?}");
    };
    assert_eq!(named, &url);
    let said = err.to_string();
    assert!(
        said.contains(&url) && said.contains("timed out connecting"),
        "the error names the URL and says the connect timed out: {said}"
    );
    // Below it, reqwest's own error, which a caller may look at.
    let mut next = std::error::Error::source(&*err);
    let mut reqwest_said = None;
    while let Some(cause) = next {
        if let Some(cause) = cause.downcast_ref::<reqwest::Error>() {
            reqwest_said = Some(cause.is_connect() && cause.is_timeout());
        }
        next = cause.source();
    }
    assert_eq!(
        reqwest_said,
        Some(true),
        "reqwest's connect timeout: {err:?}"
    );
    println!("RT CHECKED");
}
