//! [`ByteRange`]: a part of a blob, and the one parser of HTTP's range specs
//! (`A-B`, `A-`, `-N`) that the façade, the CLI and the server share.

use std::fmt;
use std::ops::{Range, RangeFrom};
use std::str::FromStr;

use crate::error::Error;

/// A part of a blob to read: the bytes `a..b`, the bytes from `a` on (`a..`), or the
/// last `n` bytes ([`ByteRange::last`]).
///
/// Ranges are resolved against the blob's length as HTTP resolves them (RFC 9110,
/// section 14.1.2): an end past the blob's end is cut to it, a range that starts at or
/// past the end cannot be satisfied, and a suffix longer than the blob is the whole
/// blob (so on an empty blob only a suffix range can be satisfied, and is empty).
///
/// ```
/// use readthrough::ByteRange;
/// assert_eq!(ByteRange::from(10..20).resolve(100), Some(10..20));
/// assert_eq!(ByteRange::from(90..).resolve(100), Some(90..100));
/// assert_eq!(ByteRange::last(5).resolve(100), Some(95..100));
/// assert_eq!(ByteRange::last(500).resolve(100), Some(0..100));
/// assert_eq!(ByteRange::from(100..).resolve(100), None);
/// assert_eq!("-65536".parse::<ByteRange>()?, ByteRange::last(65536));
/// assert_eq!("0-1023".parse::<ByteRange>()?, ByteRange::from(0..1024));
/// # Ok::<(), readthrough::Error>(())
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ByteRange {
    /// From `start` up to, not including, `end`; to the blob's end when `end` is
    /// `None`.
    From {
        /// The first byte.
        start: u64,
        /// The byte after the last one, if not the blob's end.
        end: Option<u64>,
    },
    /// The last this many bytes.
    Last(u64),
}

impl ByteRange {
    /// The last `n` bytes of a blob (all of it when it is shorter), as a footer is
    /// read.
    pub fn last(n: u64) -> Self {
        ByteRange::Last(n)
    }

    /// The bytes of a blob of `len` bytes this range covers, or `None` when it cannot
    /// be satisfied (it starts at or past the end, is empty, or is a suffix of zero
    /// bytes).
    pub fn resolve(&self, len: u64) -> Option<Range<u64>> {
        match *self {
            ByteRange::From { start, end } => {
                let end = end.map_or(len, |end| end.min(len));
                (start < end).then_some(start..end)
            }
            ByteRange::Last(0) => None,
            ByteRange::Last(n) => Some(len.saturating_sub(n)..len),
        }
    }

    /// [`resolve`](Self::resolve), with a range that cannot be satisfied as
    /// [`Error::RangeNotSatisfiable`] for `key`.
    pub(crate) fn window(&self, key: &str, len: u64) -> Result<Range<u64>, Error> {
        self.resolve(len).ok_or_else(|| Error::RangeNotSatisfiable {
            key: key.to_owned(),
            range: self.to_string(),
            length: len,
        })
    }

    /// The first byte, when it does not depend on the blob's length.
    pub fn start(&self) -> Option<u64> {
        match *self {
            ByteRange::From { start, .. } => Some(start),
            ByteRange::Last(_) => None,
        }
    }

    /// Checks that the range is not empty by construction (`5..5`, `9..1`).
    ///
    /// # Errors
    /// [`Error::InvalidRange`] naming the range.
    pub fn check(&self) -> Result<(), Error> {
        match *self {
            ByteRange::From {
                start,
                end: Some(end),
            } if end <= start => Err(Error::InvalidRange {
                spec: self.to_string(),
                reason: "it ends before it starts",
            }),
            _ => Ok(()),
        }
    }
}

impl From<Range<u64>> for ByteRange {
    fn from(range: Range<u64>) -> Self {
        ByteRange::From {
            start: range.start,
            end: Some(range.end),
        }
    }
}

impl From<RangeFrom<u64>> for ByteRange {
    fn from(range: RangeFrom<u64>) -> Self {
        ByteRange::From {
            start: range.start,
            end: None,
        }
    }
}

/// The HTTP form: `A-B` (both included), `A-` or `-N`.
impl fmt::Display for ByteRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ByteRange::From {
                start,
                end: Some(end),
            } if end > start => write!(f, "{start}-{}", end - 1),
            ByteRange::From {
                start,
                end: Some(end),
            } => write!(f, "{start}..{end}"),
            ByteRange::From { start, end: None } => write!(f, "{start}-"),
            ByteRange::Last(n) => write!(f, "-{n}"),
        }
    }
}

/// Parses one HTTP range spec, `A-B` (both included), `A-` or `-N`, with or without
/// a leading `bytes=`.
impl FromStr for ByteRange {
    type Err = Error;

    fn from_str(spec: &str) -> Result<Self, Error> {
        let bad = |reason| Error::InvalidRange {
            spec: spec.to_owned(),
            reason,
        };
        let text = spec.trim();
        let text = text.strip_prefix("bytes=").unwrap_or(text).trim();
        if text.contains(',') {
            return Err(bad("only one range can be read at a time"));
        }
        let (first, last) = text
            .split_once('-')
            .ok_or_else(|| bad("expected A-B, A- or -N"))?;
        let number = |part: &str| {
            let part = part.trim();
            if part.is_empty() || !part.bytes().all(|b| b.is_ascii_digit()) {
                return Err(bad("expected A-B, A- or -N with decimal byte offsets"));
            }
            part.parse::<u64>()
                .map_err(|_| bad("an offset is too large"))
        };
        match (first.trim().is_empty(), last.trim().is_empty()) {
            (true, true) => Err(bad("expected A-B, A- or -N")),
            (true, false) => Ok(ByteRange::Last(number(last)?)),
            (false, true) => Ok(ByteRange::from(number(first)?..)),
            (false, false) => {
                let (start, end) = (number(first)?, number(last)?);
                if end < start {
                    return Err(bad("it ends before it starts"));
                }
                let end = end
                    .checked_add(1)
                    .ok_or_else(|| bad("an offset is too large"))?;
                Ok(ByteRange::from(start..end))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form_and_prints_it_back() {
        for (text, range) in [
            ("0-1023", ByteRange::from(0..1024)),
            ("bytes=5-5", ByteRange::from(5..6)),
            ("1048576-", ByteRange::from(1048576..)),
            (" -65536 ", ByteRange::last(65536)),
            ("-0", ByteRange::last(0)),
        ] {
            assert_eq!(text.parse::<ByteRange>().unwrap(), range, "{text}");
            let back = range.to_string().parse::<ByteRange>().unwrap();
            assert_eq!(back, range);
        }
    }

    #[test]
    fn refuses_what_is_not_one_range() {
        for text in [
            "",
            "-",
            "a-b",
            "1-2,4-5",
            "9-1",
            "+1-2",
            "1-2-3",
            "18446744073709551615-18446744073709551615",
            "99999999999999999999-",
        ] {
            let error = text.parse::<ByteRange>().unwrap_err();
            assert!(error.to_string().contains("range"), "{text}: {error}");
        }
    }

    #[test]
    fn resolves_as_http_does() {
        assert_eq!(ByteRange::from(50..500).resolve(100), Some(50..100));
        assert_eq!(ByteRange::from(99..).resolve(100), Some(99..100));
        assert_eq!(ByteRange::from(100..101).resolve(100), None);
        assert_eq!(ByteRange::last(0).resolve(100), None);
        assert_eq!(ByteRange::last(3).resolve(0), Some(0..0));
        assert_eq!(ByteRange::from(0..).resolve(0), None);
        assert_eq!(ByteRange::from(5..5).resolve(100), None);
    }

    #[test]
    fn empty_ranges_are_refused_by_check() {
        assert!(ByteRange::from(5..5).check().is_err());
        let inverted = ByteRange::From {
            start: 9,
            end: Some(1),
        };
        assert!(inverted.check().is_err());
        assert!(ByteRange::from(1..2).check().is_ok());
        assert!(ByteRange::last(0).check().is_ok());
    }
}
