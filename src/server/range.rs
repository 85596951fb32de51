//! The `Range` and `If-Range` request headers: which part of a blob a request wants.

use hyper::HeaderMap;
use hyper::header::{IF_RANGE, RANGE};

use crate::range::ByteRange;

/// What part of a blob of known length a request wants.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Wanted {
    /// The whole body: no `Range`, one this server does not serve (several ranges,
    /// another unit, bad syntax), or an `If-Range` that does not match.
    Whole,
    /// The bytes from `start` to `end`, both included.
    Part { start: u64, end: u64 },
    /// A range that starts past the end (`416`).
    Unsatisfiable,
}

/// The part of a blob of `len` bytes, whose validator is `validator`, that
/// `headers` ask for.
pub(crate) fn wanted(headers: &HeaderMap, len: u64, validator: Option<&str>) -> Wanted {
    let Some(range) = headers.get(RANGE).and_then(|v| v.to_str().ok()) else {
        return Wanted::Whole;
    };
    if let Some(if_range) = headers.get(IF_RANGE) {
        let strong = validator.filter(|v| !v.starts_with("W/"));
        if strong.is_none_or(|v| if_range.as_bytes() != v.as_bytes()) {
            return Wanted::Whole;
        }
    }
    let Some(spec) = range.trim().strip_prefix("bytes=") else {
        return Wanted::Whole;
    };
    // A spec this server cannot read (bad syntax, several ranges) is ignored, as
    // RFC 9110 allows.
    let Ok(range) = spec.parse::<ByteRange>() else {
        return Wanted::Whole;
    };
    match range.resolve(len) {
        None => Wanted::Unsatisfiable,
        // The suffix of an empty blob is all of it: nothing a 206 could describe.
        Some(part) if part.is_empty() => Wanted::Whole,
        Some(part) => Wanted::Part {
            start: part.start,
            end: part.end - 1,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn of(range: &str, if_range: Option<&str>) -> Wanted {
        let mut headers = HeaderMap::new();
        headers.insert(RANGE, HeaderValue::from_str(range).unwrap());
        if let Some(v) = if_range {
            headers.insert(IF_RANGE, HeaderValue::from_str(v).unwrap());
        }
        wanted(&headers, 100, Some("\"v\""))
    }

    #[test]
    fn single_ranges_of_each_form() {
        assert_eq!(of("bytes=10-19", None), Wanted::Part { start: 10, end: 19 });
        assert_eq!(of("bytes=90-", None), Wanted::Part { start: 90, end: 99 });
        assert_eq!(of("bytes=-5", None), Wanted::Part { start: 95, end: 99 });
        assert_eq!(of("bytes=-500", None), Wanted::Part { start: 0, end: 99 });
        assert_eq!(
            of("bytes=50-500", None),
            Wanted::Part { start: 50, end: 99 }
        );
    }

    #[test]
    fn unsatisfiable_and_ignored_ranges() {
        assert_eq!(of("bytes=100-", None), Wanted::Unsatisfiable);
        assert_eq!(of("bytes=-0", None), Wanted::Unsatisfiable);
        assert_eq!(of("bytes=0-1,5-6", None), Wanted::Whole);
        assert_eq!(of("bytes=x-", None), Wanted::Whole);
        assert_eq!(of("items=0-1", None), Wanted::Whole);
        assert_eq!(of("bytes=9-1", None), Wanted::Whole);
        assert_eq!(of("bytes=0-9", Some("\"other\"")), Wanted::Whole);
        assert_eq!(
            of("bytes=0-9", Some("\"v\"")),
            Wanted::Part { start: 0, end: 9 }
        );
    }
}
