//! Responses: headers from what is known of a body, the body streamed from a
//! [`Reader`] (whole or one range), and short text answers.

use std::sync::Arc;

use bytes::Bytes;
use futures::{Stream, StreamExt, TryStreamExt};
use http_body_util::combinators::UnsyncBoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::header::{
    ACCEPT_RANGES, CONTENT_LENGTH, CONTENT_RANGE, CONTENT_TYPE, ETAG, HeaderValue, LAST_MODIFIED,
};
use hyper::{HeaderMap, Response, StatusCode, body::Frame};

use crate::error::{BoxError, Error};
use crate::server::conditional::is_etag;
use crate::server::metrics::Metrics;
use crate::server::upstream::Head;

/// The body of every response.
pub(crate) type Body = UnsyncBoxBody<Bytes, BoxError>;

/// A response with `status` and a one-line text body.
pub(crate) fn text(status: u16, line: &str) -> Response<Body> {
    let mut response = Response::new(full(format!("{line}\n")));
    *response.status_mut() = status_code(status);
    set(
        response.headers_mut(),
        CONTENT_TYPE,
        "text/plain; charset=utf-8",
    );
    response
}

/// A response with `status`, `headers` and no body.
pub(crate) fn empty(status: u16, headers: HeaderMap) -> Response<Body> {
    let mut response = Response::new(Empty::new().map_err(|never| match never {}).boxed_unsync());
    *response.status_mut() = status_code(status);
    *response.headers_mut() = headers;
    response
}

/// A body held in memory.
pub(crate) fn full(data: impl Into<Bytes>) -> Body {
    Full::new(data.into())
        .map_err(|never| match never {})
        .boxed_unsync()
}

fn status_code(status: u16) -> StatusCode {
    StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
}

/// Sets `name` to `value` when `value` is a valid header value.
pub(crate) fn set(headers: &mut HeaderMap, name: hyper::header::HeaderName, value: &str) {
    if let Ok(value) = HeaderValue::from_str(value) {
        headers.insert(name, value);
    }
}

/// The headers that describe a body: its validator (as `ETag` or `Last-Modified`),
/// its type, and that ranges are served when its length is known.
pub(crate) fn describe(head: &Head, len: Option<u64>) -> HeaderMap {
    let mut headers = HeaderMap::new();
    if let Some(validator) = &head.validator {
        let name = if is_etag(validator) {
            ETAG
        } else {
            LAST_MODIFIED
        };
        set(&mut headers, name, validator);
    }
    if let Some(content_type) = &head.content_type {
        set(&mut headers, CONTENT_TYPE, content_type);
    }
    if len.is_some() {
        headers.insert(ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    }
    headers
}

/// Adds `Content-Length` for `len` bytes.
pub(crate) fn length(headers: &mut HeaderMap, len: u64) {
    headers.insert(CONTENT_LENGTH, HeaderValue::from(len));
}

/// Adds `Content-Range` for bytes `start..=end` of `len`.
pub(crate) fn content_range(headers: &mut HeaderMap, start: u64, end: u64, len: u64) {
    set(
        headers,
        CONTENT_RANGE,
        &format!("bytes {start}-{end}/{len}"),
    );
}

/// The `416` answer for a blob of `len` bytes.
pub(crate) fn unsatisfiable(len: u64) -> Response<Body> {
    let mut response = text(416, "the range starts past the end of the body");
    set(
        response.headers_mut(),
        CONTENT_RANGE,
        &format!("bytes */{len}"),
    );
    response
}

/// A streamed body: at most `limit` bytes of `chunks`, counted into `metrics`. An
/// error of the stream is an error of the body, which ends the connection without
/// a proper end of the body (HTTP/1.1) or resets the stream (HTTP/2), so a client
/// never takes a broken body for a whole one. Between two chunks it yields to the
/// runtime's other tasks.
pub(crate) fn streamed(
    chunks: impl Stream<Item = Result<Bytes, Error>> + Send + 'static,
    limit: Option<u64>,
    metrics: Arc<Metrics>,
) -> Body {
    let body = chunks
        .map_err(|error| {
            tracing::warn!(%error, "a body failed while being sent; cutting the connection");
            BoxError::from(error)
        })
        .scan(limit.unwrap_or(u64::MAX), |left, item| {
            if *left == 0 {
                return futures::future::ready(None);
            }
            let item = item.map(|mut chunk| {
                chunk.truncate(
                    chunk
                        .len()
                        .min(usize::try_from(*left).unwrap_or(usize::MAX)),
                );
                *left -= chunk.len() as u64;
                chunk
            });
            futures::future::ready(Some(item))
        })
        .enumerate()
        .then(|(index, item)| async move {
            // Let the thread's other tasks run between two chunks, so that clients
            // taking a body at full speed hold it for one chunk at a time while
            // others wait for their first bytes.
            if index > 0 {
                tokio::task::yield_now().await;
            }
            item
        })
        .map_ok(move |chunk| {
            metrics.sent(chunk.len());
            Frame::data(chunk)
        });
    BodyExt::boxed_unsync(StreamBody::new(body))
}
