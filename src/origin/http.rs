//! [`HttpOrigin`]: blobs from HTTP and HTTPS URLs, with retries, an idle timeout and
//! resumption of interrupted bodies.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use reqwest::header::{self, HeaderMap, HeaderName, HeaderValue};
use reqwest::{Client, Response, StatusCode};

use crate::error::{BoxError, Cause, Error, Result};
use crate::origin::resume::{Reopen, Resuming, skip_to};
use crate::origin::{FetchOptions, Fetched, Origin};
use crate::range::ByteRange;

mod headers;

use headers::{content_range, retry_after, unsatisfied_length, validator_of};

/// A function that adds headers to the request for one URL.
type HeadersFor = dyn Fn(&str) -> HeaderMap + Send + Sync;

/// An [`Origin`] that fetches each key, a URL, with `GET`.
///
/// - A status other than 2xx is an error naming the status and the URL
///   ([`Error::HttpStatus`]); redirects are followed.
/// - The body must be as long as `Content-Length` says, or the fill fails.
/// - Connection failures, 429 and 5xx answers that come before any body byte are
///   retried with exponential backoff (honouring `Retry-After`), [`retries`] times.
/// - No byte for the [idle timeout] ends the fetch with [`Error::IdleTimeout`], so a
///   stalled server cannot hold a fill forever.
/// - It [serves ranges](Origin::serves_ranges): a range is asked for with `Range`
///   (under `If-Range` when the cache pins a validator), a `206` is checked against
///   its `Content-Range`, and a `416` is [`Error::RangeNotSatisfiable`] with the
///   blob's length. A server that ignores `Range` answers `200` with the whole body:
///   of the same version (the same validator, or none asked for) its leading bytes
///   are skipped, so that is not a change.
/// - When a body breaks off and the response carried a strong `ETag` or a
///   `Last-Modified`, the download resumes with `Range` and `If-Range`. A `206`
///   continues the same body, as does a `200` with the same validator (its leading
///   bytes skipped); a `200` with another validator means the object changed, and
///   the fetch fails with [`Error::ObjectChanged`] rather than mix two versions.
/// - The validator and the `Content-Type` are handed to the cache with the body.
///
/// [`retries`]: HttpOriginBuilder::retries
/// [idle timeout]: HttpOriginBuilder::idle_timeout
///
/// ```no_run
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// use readthrough::{Cache, HttpOrigin};
///
/// let cache = Cache::builder("/var/cache/downloads")
///     .origin(HttpOrigin::new()?)
///     .build()
///     .await?;
/// let path = cache.path("https://example.com/dataset.tar").await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct HttpOrigin {
    settings: Arc<Settings>,
}

struct Settings {
    client: Client,
    headers: HeaderMap,
    headers_for: Option<Box<HeadersFor>>,
    /// The connect timeout this origin set on its own client (`None`: the caller's).
    connect_timeout: Option<Duration>,
    idle_timeout: Duration,
    retries: u32,
    backoff: Duration,
}

/// Builds an [`HttpOrigin`]. Made by [`HttpOrigin::builder`].
///
/// ```
/// use std::time::Duration;
/// use readthrough::HttpOrigin;
/// use reqwest::header::{AUTHORIZATION, HeaderValue};
///
/// let origin = HttpOrigin::builder()
///     .header(AUTHORIZATION, HeaderValue::from_static("Bearer secret"))
///     .idle_timeout(Duration::from_secs(10))
///     .retries(5)
///     .build()?;
/// # Ok::<(), readthrough::Error>(())
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct HttpOriginBuilder {
    client: Option<Client>,
    headers: HeaderMap,
    headers_for: Option<Box<HeadersFor>>,
    connect_timeout: Duration,
    idle_timeout: Duration,
    retries: u32,
    backoff: Duration,
}

impl HttpOrigin {
    /// An origin with the default settings: a new client, a 10 s connect timeout, a
    /// 30 s idle timeout, 3 retries from 200 ms.
    ///
    /// # Errors
    /// [`Error::Http`] when the HTTP client cannot be set up (its TLS backend).
    pub fn new() -> Result<Self> {
        Self::builder().build()
    }

    /// Starts building an origin.
    pub fn builder() -> HttpOriginBuilder {
        HttpOriginBuilder {
            client: None,
            headers: HeaderMap::new(),
            headers_for: None,
            connect_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
            retries: 3,
            backoff: Duration::from_millis(200),
        }
    }
}

impl HttpOriginBuilder {
    /// Uses `client` (with its own authentication, proxies and timeouts) instead of a
    /// new one; [`connect_timeout`](Self::connect_timeout) then does not apply.
    pub fn client(mut self, client: Client) -> Self {
        self.client = Some(client);
        self
    }

    /// Adds a header to every request.
    pub fn header(mut self, name: HeaderName, value: HeaderValue) -> Self {
        self.headers.insert(name, value);
        self
    }

    /// Adds the headers `f` returns for a URL to each request for it (such as a
    /// signature computed per URL).
    pub fn headers_for(mut self, f: impl Fn(&str) -> HeaderMap + Send + Sync + 'static) -> Self {
        self.headers_for = Some(Box::new(f));
        self
    }

    /// How long to wait for a connection (default 10 s).
    pub fn connect_timeout(mut self, timeout: Duration) -> Self {
        self.connect_timeout = timeout;
        self
    }

    /// How long a response may send nothing, for its headers or between body bytes,
    /// before the fetch fails (default 30 s).
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many times a failed request is retried, and a broken body resumed
    /// (default 3).
    pub fn retries(mut self, retries: u32) -> Self {
        self.retries = retries;
        self
    }

    /// The pause before the first retry; it doubles for each one after (default
    /// 200 ms).
    pub fn backoff(mut self, backoff: Duration) -> Self {
        self.backoff = backoff;
        self
    }

    /// Builds the origin.
    ///
    /// # Errors
    /// [`Error::Http`] when no client was given and a new one cannot be set up.
    pub fn build(self) -> Result<HttpOrigin> {
        let (client, connect_timeout) = match self.client {
            Some(client) => (client, None),
            None => (
                Client::builder()
                    .connect_timeout(self.connect_timeout)
                    .build()
                    .map_err(|e| http_error("(setting up the HTTP client)", e))?,
                Some(self.connect_timeout),
            ),
        };
        Ok(HttpOrigin {
            settings: Arc::new(Settings {
                client,
                headers: self.headers,
                headers_for: self.headers_for,
                connect_timeout,
                idle_timeout: self.idle_timeout,
                retries: self.retries,
                backoff: self.backoff,
            }),
        })
    }
}

impl fmt::Debug for HttpOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOrigin")
            .field("idle_timeout", &self.settings.idle_timeout)
            .field("retries", &self.settings.retries)
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for HttpOriginBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HttpOriginBuilder")
            .field("idle_timeout", &self.idle_timeout)
            .field("retries", &self.retries)
            .finish_non_exhaustive()
    }
}

impl Origin for HttpOrigin {
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let settings = Arc::clone(&self.settings);
        let url = key.to_owned();
        Box::pin(async move { open(settings, url, options).await.map_err(BoxError::from) })
    }

    fn serves_ranges(&self) -> bool {
        true
    }
}

fn http_error(url: &str, source: reqwest::Error) -> Error {
    Error::Http {
        url: url.to_owned(),
        source: Cause(Arc::new(source)),
    }
}

/// A connect that timed out, said so in so many words: reqwest's own error reads
/// "error sending request for url (...)" and keeps the timeout in its sources.
#[derive(Debug)]
struct ConnectTimedOut {
    after: Option<Duration>,
    source: reqwest::Error,
}

impl fmt::Display for ConnectTimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.after {
            Some(after) => write!(f, "timed out connecting (after {after:?})"),
            None => write!(f, "timed out connecting"),
        }
    }
}

impl std::error::Error for ConnectTimedOut {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The error for a failed request: a connect that timed out says so.
fn request_error(url: &str, source: reqwest::Error, connect_timeout: Option<Duration>) -> Error {
    if !(source.is_connect() && source.is_timeout()) {
        return http_error(url, source);
    }
    Error::Http {
        url: url.to_owned(),
        source: Cause(Arc::new(ConnectTimedOut {
            after: connect_timeout,
            source,
        })),
    }
}

fn broken(url: &str, what: String) -> Error {
    Error::Http {
        url: url.to_owned(),
        source: Cause(Arc::from(BoxError::from(what))),
    }
}

/// What one request asks for: a range (under `If-Range`), or a revalidation.
#[derive(Clone, Copy)]
struct Ask<'a> {
    range: Option<ByteRange>,
    if_range: Option<&'a str>,
    revalidate: Option<&'a str>,
}

/// Requests `url` (the range `options` ask for, if any) and wraps the answer.
async fn open(settings: Arc<Settings>, url: String, options: FetchOptions) -> Result<Fetched> {
    let range = options.range();
    let ask = Ask {
        range,
        if_range: options.if_validator.as_deref().filter(|_| range.is_some()),
        revalidate: options.revalidate.as_deref().filter(|_| range.is_none()),
    };
    let response = settings.send(&url, ask).await?;
    if response.status() == StatusCode::NOT_MODIFIED {
        return Ok(Fetched::not_modified());
    }
    let validator = validator_of(response.headers());
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let (offset, len, stream) = if response.status() == StatusCode::PARTIAL_CONTENT {
        let (start, total) = content_range(response.headers())
            .ok_or_else(|| broken(&url, "a 206 answer without a usable Content-Range".into()))?;
        if start != options.offset {
            return Err(broken(
                &url,
                format!(
                    "asked for bytes from {}, got them from {start}",
                    options.offset
                ),
            ));
        }
        (start, total, body_stream(response, &url))
    } else if range.is_some() && (ask.if_range.is_none() || ask.if_range == validator.as_deref()) {
        // A server that ignores Range sends the whole body of the version asked for:
        // its leading bytes are skipped, not taken for a change.
        let len = response.content_length();
        let body = skip_to(body_stream(response, &url), options.offset);
        (options.offset, len, body)
    } else {
        (0, response.content_length(), body_stream(response, &url))
    };
    let end = options
        .end
        .filter(|_| offset == options.offset && range.is_some());
    let reopen = validator.clone().map(|validator| {
        let settings = Arc::clone(&settings);
        let url = url.clone();
        Box::new(move |offset| {
            let settings = Arc::clone(&settings);
            let url = url.clone();
            let validator = validator.clone();
            async move { resume(&settings, &url, (offset, end), &validator).await }.boxed()
        }) as Reopen
    });
    let body = Resuming {
        stream,
        name: url,
        received: offset,
        len,
        end,
        idle: settings.idle_timeout,
        resumes: settings.retries,
        reopen,
    };
    Ok(body.into_fetched(validator, content_type))
}

impl Settings {
    /// A `GET` of `url` with the origin's headers and what `ask` asks for.
    fn request(&self, url: &str, ask: Ask<'_>) -> reqwest::RequestBuilder {
        let mut request = self.client.get(url).headers(self.headers.clone());
        if let Some(headers_for) = &self.headers_for {
            request = request.headers(headers_for(url));
        }
        if let Some(range) = ask.range {
            request = request.header(header::RANGE, format!("bytes={range}"));
            if let Some(validator) = ask.if_range {
                request = request.header(header::IF_RANGE, validator);
            }
        }
        if let Some(validator) = ask.revalidate {
            let is_etag = validator.starts_with('"') || validator.starts_with("W/");
            let name = if is_etag {
                header::IF_NONE_MATCH
            } else {
                header::IF_MODIFIED_SINCE
            };
            request = request.header(name, validator);
        }
        request
    }

    /// Retries connection failures, 429 and 5xx; returns a success or (when
    /// revalidating) a 304, maps a 416 to a range the blob does not have, and fails
    /// on any other status.
    async fn send(&self, url: &str, ask: Ask<'_>) -> Result<Response> {
        let mut attempt = 0;
        loop {
            let request = self.request(url, ask);
            let (failure, wait) = match tokio::time::timeout(self.idle_timeout, request.send())
                .await
            {
                Err(_) => (
                    Error::IdleTimeout {
                        url: url.to_owned(),
                        after: self.idle_timeout,
                    },
                    None,
                ),
                Ok(Ok(response)) if retryable(response.status()) => {
                    let status = response.status().as_u16();
                    (
                        Error::HttpStatus {
                            url: url.to_owned(),
                            status,
                        },
                        retry_after(response.headers()),
                    )
                }
                Ok(Ok(response)) if response.status().is_success() => return Ok(response),
                Ok(Ok(response))
                    if ask.revalidate.is_some()
                        && response.status() == StatusCode::NOT_MODIFIED =>
                {
                    return Ok(response);
                }
                Ok(Ok(response)) => return Err(refused(url, ask, &response)),
                Ok(Err(e)) if e.is_builder() || e.is_redirect() => return Err(http_error(url, e)),
                Ok(Err(e)) => (request_error(url, e, self.connect_timeout), None),
            };
            if attempt >= self.retries {
                return Err(failure);
            }
            let pause = wait.unwrap_or(self.backoff * 2u32.saturating_pow(attempt));
            tracing::debug!(%url, error = %failure, ?pause, "retrying");
            tokio::time::sleep(pause.min(MAX_PAUSE)).await;
            attempt += 1;
        }
    }
}

/// The error for a refusal: a `416` with the blob's length (`Content-Range:
/// bytes */LEN`) is a range the blob does not have, any other status is itself.
fn refused(url: &str, ask: Ask<'_>, response: &Response) -> Error {
    let status = response.status();
    let length = unsatisfied_length(response.headers());
    match (ask.range, length) {
        (Some(range), Some(length)) if status == StatusCode::RANGE_NOT_SATISFIABLE => {
            Error::RangeNotSatisfiable {
                key: url.to_owned(),
                range: range.to_string(),
                length,
            }
        }
        _ => Error::HttpStatus {
            url: url.to_owned(),
            status: status.as_u16(),
        },
    }
}

/// The longest pause between retries, whatever `Retry-After` asks.
const MAX_PAUSE: Duration = Duration::from_secs(30);

fn retryable(status: StatusCode) -> bool {
    status == StatusCode::TOO_MANY_REQUESTS || status.is_server_error()
}

/// The body of `response`, with errors that name `url`.
fn body_stream(response: Response, url: &str) -> BoxStream<'static, Result<Bytes>> {
    let url = url.to_owned();
    response
        .bytes_stream()
        .map(move |chunk| chunk.map_err(|e| http_error(&url, e)))
        .boxed()
}

/// Requests the rest of `url`, from `offset` to `end`, under `validator`
/// (`If-Range`). A whole answer with another validator (or none) means the object
/// changed; with the same one, the server ignores ranges and its leading bytes are
/// skipped.
async fn resume(
    settings: &Settings,
    url: &str,
    (offset, end): (u64, Option<u64>),
    validator: &str,
) -> Result<BoxStream<'static, Result<Bytes>>> {
    let range = FetchOptions {
        offset,
        end,
        ..FetchOptions::default()
    }
    .range();
    let ask = Ask {
        range,
        if_range: Some(validator),
        revalidate: None,
    };
    let response = settings.send(url, ask).await?;
    let now = validator_of(response.headers());
    if response.status() == StatusCode::PARTIAL_CONTENT {
        return match content_range(response.headers()) {
            Some((start, _)) if start == offset => Ok(body_stream(response, url)),
            _ => Err(broken(
                url,
                "a resumed body does not start where the last one broke off".into(),
            )),
        };
    }
    match &now {
        Some(now) if now == validator => Ok(skip_to(body_stream(response, url), offset)),
        _ => Err(Error::ObjectChanged {
            url: url.to_owned(),
            validator: validator.to_owned(),
            now,
        }),
    }
}
