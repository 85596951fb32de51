//! [`Server`]: a caching HTTP reverse proxy over a [`Cache`], the library side of
//! `readthrough serve`.
//!
//! `GET` and `HEAD` of a path under a [`Route`] read the upstream URL it maps to
//! through the cache: one upstream fetch per URL across every client, every `serve`
//! process and every other user of the directory, each client streaming from the
//! first byte.

mod conditional;
mod handler;
mod listen;
mod metrics;
mod range;
mod respond;
mod routes;
mod upstream;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::error::{Error, Result};
use crate::origin::{HttpOrigin, UrlOrigin};

pub use routes::Route;

/// A caching reverse proxy: serves the [`Route`]s' upstreams through a [`Cache`] over
/// HTTP/1.1 and HTTP/2 (cleartext, by prior knowledge or upgrade-free detection).
///
/// What it does with HTTP:
/// - **Keys.** `GET /PREFIX/rest?query` reads `UPSTREAM/rest?query` through the
///   cache; that URL is the key (a path with a `.` or `..` segment is answered 404,
///   so no request leaves a route's base path). No request header is sent upstream, except the
///   credentials rule below; no hop-by-hop header (`Connection`, `Keep-Alive`,
///   `Transfer-Encoding`, ...) is passed either way, and of the upstream's headers
///   only the validator (`ETag`, or `Last-Modified` when there is no strong `ETag`),
///   `Content-Type` and the length reach the client.
/// - **Credentials.** A request with `Authorization` or `Cookie` is never answered
///   from, nor stored into, the shared copies. On a route without
///   [`Route::cache_credentials`] it is passed upstream with those headers and its
///   answer streamed back uncached (no ranges, no `304`). With it, the answer is
///   cached under a key private to a SHA-256 of the credentials. `s3://` routes
///   refuse credentials (`403`).
/// - **Answers.** `304` for a matching `If-None-Match` (weak comparison) or
///   `If-Modified-Since`; `206` with `Content-Range` for one byte range of a body of
///   known length, from a stored blob or from a fill in progress, without reading
///   the bytes before it; `416` with `Content-Range: bytes */LEN` for a range past the
///   end; the whole body (`200`) for several ranges or an `If-Range` that does not
///   match. `HEAD` answers the same headers without a body (and fills the cache as a
///   `GET` would).
/// - **Failures.** The upstream's 404 (or 410) is answered 404 and nothing is cached;
///   an upstream timeout 504; any other upstream failure 502. A body that fails after
///   its headers were sent ends the connection without a proper end (HTTP/1.1) or
///   resets its stream (HTTP/2), so no client takes a broken body for a whole one.
/// - **Operations.** `/-/health` answers `ok`; `/-/metrics` the cache's counters,
///   responses by status, body bytes sent, fetches in flight and open connections
///   in the Prometheus text format. Each request is logged at `info` under the
///   target `readthrough::access`.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use readthrough::{Cache, Route, Server};
/// let cache = Cache::builder(dir.path()).build().await?;
/// let server = Server::new(cache, vec![Route::parse("/=https://files.example.com")?])?
///     .max_connections(256);
/// let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
/// // Serves until the future given resolves; here, at once.
/// server.run(listener, async {}).await?;
/// # Ok(()) }
/// ```
#[must_use]
pub struct Server {
    cache: Cache,
    routes: Vec<Route>,
    idle_timeout: Duration,
    connect_timeout: Duration,
    s3_endpoint: Option<String>,
    limits: listen::Limits,
}

impl Server {
    /// A server of `routes` through `cache` (whose own origin it does not use).
    ///
    /// # Errors
    /// [`Error::InvalidRoute`] when `routes` is empty or two routes have one prefix.
    pub fn new(cache: Cache, routes: Vec<Route>) -> Result<Self> {
        if routes.is_empty() {
            return Err(Error::InvalidRoute {
                route: String::new(),
                reason: "no routes: give an upstream or at least one route",
            });
        }
        for (i, route) in routes.iter().enumerate() {
            if routes[..i].iter().any(|r| r.prefix() == route.prefix()) {
                return Err(Error::InvalidRoute {
                    route: route.prefix().to_owned(),
                    reason: "two routes have this prefix",
                });
            }
        }
        Ok(Server {
            cache,
            routes,
            idle_timeout: Duration::from_secs(30),
            connect_timeout: Duration::from_secs(10),
            s3_endpoint: None,
            limits: listen::Limits {
                connections: 1024,
                header_bytes: 64 * 1024,
            },
        })
    }

    /// How long an upstream may send nothing, for its headers or between body bytes,
    /// before its fetch fails (default 30 s): a client then gets `504`, or its
    /// connection cut if the body had begun.
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How long to wait for a connection to an upstream (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// Sends `s3://` upstreams' requests to `endpoint` (an S3-compatible server).
    pub fn s3_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.s3_endpoint = Some(endpoint.into());
        self
    }

    /// The most client connections open at once (default 1024); more wait to be
    /// accepted.
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.limits.connections = connections.max(1);
        self
    }

    /// The most bytes of request headers (default 64 KiB, at least 8 KiB); a request
    /// with more is refused (`431` over HTTP/1.1).
    pub fn max_header_bytes(mut self, bytes: usize) -> Self {
        self.limits.header_bytes = bytes.max(8 * 1024);
        self
    }

    /// Serves connections from `listener` until `shutdown` resolves, then stops
    /// accepting and returns once the responses in flight have been sent.
    ///
    /// # Errors
    /// [`Error::Http`] when the HTTP client for the upstreams cannot be set up.
    ///
    /// # Cancellation
    /// Dropping the future stops accepting at once; connections already accepted
    /// run on in their own tasks, and fills in theirs, until they end.
    pub async fn run(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<()> {
        let client = reqwest::Client::builder()
            .connect_timeout(self.connect_timeout)
            .build()
            .map_err(|e| Error::Http {
                url: "(setting up the HTTP client)".into(),
                source: crate::error::Cause(Arc::new(e)),
            })?;
        let http = HttpOrigin::builder()
            .client(client.clone())
            .idle_timeout(self.idle_timeout)
            .build()?;
        let mut urls = UrlOrigin::new(http);
        if let Some(endpoint) = self.s3_endpoint {
            urls = urls.s3_endpoint(endpoint);
        }
        let (heads, metrics) = (Arc::default(), Arc::default());
        let upstream = Arc::new(upstream::Recording {
            inner: Arc::new(urls),
            heads: Arc::clone(&heads),
            metrics: Arc::clone(&metrics),
        });
        let shared = Arc::new(handler::Shared {
            cache: self.cache,
            routes: self.routes,
            upstream,
            heads,
            metrics,
            client,
            idle_timeout: self.idle_timeout,
        });
        listen::serve(shared, listener, self.limits, shutdown).await;
        Ok(())
    }
}
