//! One request: the operator paths, the route, the credentials rule, and the answer
//! from the cache (or, for a request with credentials on a route that does not cache
//! them, straight from the upstream).

use std::convert::Infallible;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::TryStreamExt;
use hyper::body::Incoming;
use hyper::header::{ALLOW, CONTENT_TYPE};
use hyper::{HeaderMap, Method, Request, Response};

use crate::cache::{Cache, ReadKind, Reader};
use crate::error::Error;
use crate::origin::{FetchOptions, Origin};
use crate::server::conditional::not_modified;
use crate::server::metrics::Metrics;
use crate::server::range::{Wanted, wanted};
use crate::server::respond::{self, Body, describe, empty, set, text};
use crate::server::routes::{Route, route_for};
use crate::server::upstream::{
    Head, Heads, Recording, credentials, private_key, status_of, with_credentials,
};

/// What every request of one server shares.
pub(crate) struct Shared {
    pub(crate) cache: Cache,
    pub(crate) routes: Vec<Route>,
    /// The upstreams as the cache reads them, recording into `heads`.
    pub(crate) upstream: Arc<dyn Origin>,
    pub(crate) heads: Arc<Heads>,
    pub(crate) metrics: Arc<Metrics>,
    /// The HTTP client of the upstreams, for requests with credentials.
    pub(crate) client: reqwest::Client,
    pub(crate) idle_timeout: Duration,
}

/// Answers `request`, and logs it (target `readthrough::access`) once its headers
/// are ready, with the time that took.
pub(crate) async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Body>, Infallible> {
    let started = Instant::now();
    let (response, how) = respond(&shared, &request).await;
    let status = response.status().as_u16();
    shared.metrics.responded(status);
    tracing::info!(
        target: "readthrough::access",
        method = %request.method(),
        target = %request.uri(),
        version = ?request.version(),
        status,
        how,
        header_ms = started.elapsed().as_millis() as u64,
    );
    Ok(response)
}

/// The response to `request`, and how it was served (for the access log).
async fn respond(
    shared: &Arc<Shared>,
    request: &Request<Incoming>,
) -> (Response<Body>, &'static str) {
    let path = request.uri().path();
    if let Some(answer) = operator(shared, path) {
        return answer;
    }
    let head_only = request.method() == Method::HEAD;
    if !head_only && request.method() != Method::GET {
        let mut response = text(405, "only GET and HEAD are served");
        set(response.headers_mut(), ALLOW, "GET, HEAD");
        return (response, "refused");
    }
    let target = request.uri().path_and_query().map_or(path, |p| p.as_str());
    let found = route_for(&shared.routes, path).and_then(|r| Some((r, r.url_of(target)?)));
    let Some((route, url)) = found else {
        return (text(404, "no route serves this path"), "refused");
    };
    let headers = request.headers();
    match credentials(headers) {
        None => {
            cached(
                shared,
                &url,
                Arc::clone(&shared.upstream),
                headers,
                head_only,
            )
            .await
        }
        Some(_) if route.is_object_store() => (
            text(403, "credentials are not forwarded to s3:// upstreams"),
            "refused",
        ),
        Some(found) => with_credentials_of(shared, route, &url, found, headers, head_only).await,
    }
}

/// The answers of the operator paths, `/-/health` and `/-/metrics`.
fn operator(shared: &Shared, path: &str) -> Option<(Response<Body>, &'static str)> {
    match path {
        "/-/health" => Some((text(200, "ok"), "health")),
        "/-/metrics" => {
            let metrics = shared.metrics.render(&shared.cache.stats());
            let mut response = Response::new(respond::full(metrics));
            set(
                response.headers_mut(),
                CONTENT_TYPE,
                "text/plain; version=0.0.4",
            );
            Some((response, "metrics"))
        }
        _ => None,
    }
}

/// The answer for `url` to a request with the credentials `found`: passed through
/// uncached, or cached privately when `route` caches credentials.
async fn with_credentials_of(
    shared: &Shared,
    route: &Route,
    url: &str,
    found: HeaderMap,
    headers: &HeaderMap,
    head_only: bool,
) -> (Response<Body>, &'static str) {
    let origin = match with_credentials(&shared.client, shared.idle_timeout, found.clone()) {
        Ok(origin) => origin,
        Err(e) => return (failed(url, &e), "error"),
    };
    if !route.caches_credentials() {
        return passed_through(shared, url, &origin, head_only).await;
    }
    let private: Arc<dyn Origin> = Arc::new(Recording {
        inner: Arc::new(origin),
        heads: Arc::clone(&shared.heads),
        metrics: Arc::clone(&shared.metrics),
    });
    cached(
        shared,
        &private_key(url, &found),
        private,
        headers,
        head_only,
    )
    .await
}

/// The answer from the cache for `key`, read through `origin` on a miss.
async fn cached(
    shared: &Shared,
    key: &str,
    origin: Arc<dyn Origin>,
    headers: &HeaderMap,
    head_only: bool,
) -> (Response<Body>, &'static str) {
    let reader = match shared.cache.get_through(key, origin, false).await {
        Ok(reader) => reader,
        Err(e) => return (failed(key, &e), "error"),
    };
    let (head, how) = match reader.kind() {
        ReadKind::Hit => {
            let head = Head {
                validator: reader.validator().map(str::to_owned),
                content_type: reader.content_type().map(str::to_owned),
            };
            (Some(head), "hit")
        }
        ReadKind::Led => (shared.heads.get(key), "led"),
        ReadKind::Joined => (shared.heads.get(key), "joined"),
        _ => (shared.heads.get(key), "followed"),
    };
    (
        answer(
            shared,
            reader,
            &head.unwrap_or_default(),
            headers,
            head_only,
        ),
        how,
    )
}

/// The response with `reader`'s body described by `head`: `304` when the client
/// has this version, `206` or `416` for a range, else `200`.
fn answer(
    shared: &Shared,
    reader: Reader,
    head: &Head,
    headers: &HeaderMap,
    head_only: bool,
) -> Response<Body> {
    let len = reader.len();
    let mut out = describe(head, len);
    if not_modified(headers, head.validator.as_deref()) {
        return empty(304, out);
    }
    let (status, start, count) =
        match len.map(|len| (len, wanted(headers, len, head.validator.as_deref()))) {
            Some((len, Wanted::Unsatisfiable)) => return respond::unsatisfiable(len),
            Some((len, Wanted::Part { start, end })) => {
                respond::content_range(&mut out, start, end, len);
                (206, start, Some(end - start + 1))
            }
            Some((len, Wanted::Whole)) => (200, 0, Some(len)),
            None => (200, 0, None),
        };
    if let Some(count) = count {
        respond::length(&mut out, count);
    }
    if head_only {
        return empty(status, out);
    }
    let reader = if start > 0 {
        match reader.starting_at(start) {
            Ok(reader) => reader,
            Err(e) => return failed("(range)", &e),
        }
    } else {
        reader
    };
    let mut response = empty(status, out);
    *response.body_mut() = respond::streamed(reader, count, Arc::clone(&shared.metrics));
    response
}

/// The upstream's answer for `url` fetched with a request's credentials, uncached.
async fn passed_through(
    shared: &Shared,
    url: &str,
    origin: &dyn Origin,
    head_only: bool,
) -> (Response<Body>, &'static str) {
    let fetched = match origin.fetch(url, FetchOptions::default()).await {
        Ok(fetched) => fetched,
        Err(e) => return (failed(url, &Error::origin(url, e)), "error"),
    };
    let mut out = describe(&Head::of(&fetched), None);
    if let Some(len) = fetched.len {
        respond::length(&mut out, len);
    }
    let mut response = empty(200, out);
    if !head_only {
        let url = url.to_owned();
        let body = fetched.body.map_err(move |e| Error::origin(&url, e));
        *response.body_mut() = respond::streamed(body, fetched.len, Arc::clone(&shared.metrics));
    }
    (response, "passed")
}

/// The answer to a read of `key` that failed with `error`.
fn failed(key: &str, error: &Error) -> Response<Body> {
    let status = status_of(error);
    if status >= 500 {
        tracing::warn!(key, %error, "upstream read failed");
    }
    text(status, &error.to_string())
}
