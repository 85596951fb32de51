//! Conditional requests: `If-None-Match` and `If-Modified-Since` against the
//! stored validator (an `ETag`, or a `Last-Modified` date when the upstream gave no
//! strong `ETag`).

use std::time::SystemTime;

use hyper::HeaderMap;
use hyper::header::{IF_MODIFIED_SINCE, IF_NONE_MATCH};

/// Whether a validator is an entity tag (else it is a date).
pub(crate) fn is_etag(validator: &str) -> bool {
    validator.starts_with('"') || validator.starts_with("W/")
}

/// Whether the request in `headers` already has the version whose validator is
/// `validator`, so the answer is `304 Not Modified`. `If-None-Match` is compared
/// weakly, as RFC 9110 says; when it is present `If-Modified-Since` is ignored.
pub(crate) fn not_modified(headers: &HeaderMap, validator: Option<&str>) -> bool {
    let Some(validator) = validator else {
        return false;
    };
    if let Some(tags) = headers.get(IF_NONE_MATCH).and_then(|v| v.to_str().ok()) {
        let ours = validator.trim_start_matches("W/");
        return is_etag(validator)
            && tags
                .split(',')
                .map(str::trim)
                .any(|tag| tag == "*" || tag.trim_start_matches("W/") == ours);
    }
    let since = headers
        .get(IF_MODIFIED_SINCE)
        .and_then(|v| v.to_str().ok())
        .and_then(date);
    match (since, date(validator)) {
        (Some(since), Some(modified)) => modified <= since,
        _ => false,
    }
}

fn date(text: &str) -> Option<SystemTime> {
    httpdate::parse_http_date(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn with(name: hyper::header::HeaderName, value: &str) -> HeaderMap {
        let mut headers = HeaderMap::new();
        headers.insert(name, HeaderValue::from_str(value).unwrap());
        headers
    }

    #[test]
    fn entity_tags_match_weakly_and_dates_by_time() {
        let tag = Some("\"abc\"");
        assert!(not_modified(&with(IF_NONE_MATCH, "\"x\", W/\"abc\""), tag));
        assert!(not_modified(&with(IF_NONE_MATCH, "*"), tag));
        assert!(!not_modified(&with(IF_NONE_MATCH, "\"x\""), tag));
        let date = Some("Wed, 21 Oct 2015 07:28:00 GMT");
        assert!(not_modified(
            &with(IF_MODIFIED_SINCE, "Wed, 21 Oct 2015 07:28:00 GMT"),
            date
        ));
        assert!(!not_modified(
            &with(IF_MODIFIED_SINCE, "Tue, 20 Oct 2015 07:28:00 GMT"),
            date
        ));
        assert!(!not_modified(&with(IF_MODIFIED_SINCE, "garbage"), date));
        assert!(!not_modified(&with(IF_NONE_MATCH, "*"), None));
    }
}
