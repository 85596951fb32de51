//! What an HTTP answer's headers say: its validator, its range, its length when a
//! range cannot be satisfied, and when to retry.

use std::time::Duration;

use reqwest::header::{self, HeaderMap, HeaderValue};

/// `Retry-After` in seconds (the date form is not honoured).
pub(super) fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    let seconds = headers
        .get(header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds))
}

/// A strong `ETag`, else `Last-Modified`: what `If-Range` may carry.
pub(super) fn validator_of(headers: &HeaderMap) -> Option<String> {
    let text = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
    };
    text(header::ETAG)
        .filter(|etag| !etag.starts_with("W/"))
        .or_else(|| text(header::LAST_MODIFIED))
        .map(str::to_owned)
}

/// The start and total length of `Content-Range: bytes START-END/TOTAL`.
pub(super) fn content_range(headers: &HeaderMap) -> Option<(u64, Option<u64>)> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    let (range, total) = value.strip_prefix("bytes ")?.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let total = if total == "*" {
        None
    } else {
        Some(total.parse().ok()?)
    };
    Some((start.parse().ok()?, total))
}

/// The length in `Content-Range: bytes */LEN`, as a `416` gives it.
pub(super) fn unsatisfied_length(headers: &HeaderMap) -> Option<u64> {
    let value = headers.get(header::CONTENT_RANGE)?.to_str().ok()?;
    value.strip_prefix("bytes */")?.trim().parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_range() {
        let mut headers = HeaderMap::new();
        let mut with = |v: &'static str| {
            headers.insert(header::CONTENT_RANGE, HeaderValue::from_static(v));
            content_range(&headers)
        };
        assert_eq!(with("bytes 10-19/20"), Some((10, Some(20))));
        assert_eq!(with("bytes 0-0/*"), Some((0, None)));
        assert_eq!(with("bytes */20"), None);
        assert_eq!(with("items 1-2/3"), None);
        assert_eq!(with("bytes x-2/3"), None);
    }

    #[test]
    fn prefers_a_strong_etag_as_validator() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::LAST_MODIFIED,
            HeaderValue::from_static("Tue, 01 Jan 2030 00:00:00 GMT"),
        );
        headers.insert(header::ETAG, HeaderValue::from_static("W/\"weak\""));
        assert_eq!(
            validator_of(&headers).as_deref(),
            Some("Tue, 01 Jan 2030 00:00:00 GMT")
        );
        headers.insert(header::ETAG, HeaderValue::from_static("\"strong\""));
        assert_eq!(validator_of(&headers).as_deref(), Some("\"strong\""));
        headers.remove(header::LAST_MODIFIED);
        headers.insert(header::ETAG, HeaderValue::from_static("W/\"weak\""));
        assert_eq!(validator_of(&headers), None);
    }

    #[test]
    fn reads_the_length_of_a_416() {
        let mut headers = HeaderMap::new();
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes */1000"),
        );
        assert_eq!(unsatisfied_length(&headers), Some(1000));
        headers.insert(
            header::CONTENT_RANGE,
            HeaderValue::from_static("bytes 0-1/2"),
        );
        assert_eq!(unsatisfied_length(&headers), None);
    }
}
