//! What a leader writes into its lock file for followers in other processes: the
//! unique part of its tmp file's name, the length the origin promised, the origin's
//! validator (so a leader that takes over a dead fill can resume it under the same
//! version), and, when the fill failed at the origin, the error and whether it was a
//! "not found". A small line format,
//! parsed strictly: a follower never lets a lock file point it outside the tmp folder.
//!
//! ```text
//! readthrough-lock 2
//! tmp <unique part>
//! len <bytes> | pending | unknown
//! validator <ETag or Last-Modified>     (when the origin gave one)
//! kind not-found                        (before `failed`, when it was one)
//! failed <error on one line>            (when the fill failed)
//! ```
//!
//! Version 1 (no validator line) is still read.

/// What a leader publishes in its lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockInfo {
    /// The unique part of the leader's tmp file name.
    pub(crate) tmp: String,
    /// The length the origin promised.
    pub(crate) len: LenInfo,
    /// The origin's validator of the body being written, once it answered.
    pub(crate) validator: Option<String>,
    /// Set when the fill failed at the origin. Followers in other processes, which
    /// still hold the lock file open, report it.
    pub(crate) failed: Option<Failure>,
}

/// A failure at the origin, as a leader records it for its followers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Failure {
    /// The error, on one line.
    pub(crate) message: String,
    /// What kind of failure it was, so that a follower's error has the same kind.
    pub(crate) kind: FailureKind,
}

/// The kind of a recorded [`Failure`]: the one the error's callers tell apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The origin has nothing under the key. Recorded as a `kind not-found` line
    /// before the `failed` line.
    NotFound,
    /// Anything else: no `kind` line (lock files written before kinds were recorded
    /// read as this).
    Other,
}

/// The length part of [`LockInfo`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LenInfo {
    /// The origin has not answered yet.
    Pending,
    /// The origin answered without a length.
    Unknown,
    /// The origin promised this many bytes.
    Known(u64),
}

const MAGIC: &str = "readthrough-lock 2";
/// The first version, without a validator line.
const MAGIC_V1: &str = "readthrough-lock 1";

/// The longest failure message kept; a longer one is cut.
const MAX_FAILURE: usize = 512;

impl LockInfo {
    /// The most of a lock file that is read: what a failure message is cut to fit.
    pub(crate) const MAX_LEN: usize = 1024;

    pub(crate) fn encode(&self) -> String {
        let len = match self.len {
            LenInfo::Pending => "pending".to_owned(),
            LenInfo::Unknown => "unknown".to_owned(),
            LenInfo::Known(n) => n.to_string(),
        };
        let mut text = format!("{MAGIC}\ntmp {}\nlen {len}\n", self.tmp);
        if let Some(validator) = self.validator.as_deref().filter(|v| is_one_line(v)) {
            text.push_str(&format!("validator {validator}\n"));
        }
        if let Some(failed) = &self.failed {
            if failed.kind == FailureKind::NotFound {
                text.push_str("kind not-found\n");
            }
            let mut line: String = failed
                .message
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            while line.len() > MAX_FAILURE {
                line.pop();
            }
            text.push_str(&format!("failed {line}\n"));
        }
        text
    }

    /// Parses lock file contents; `None` for anything incomplete or malformed (a
    /// leader may be half-way through writing it).
    pub(crate) fn decode(data: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(data).ok()?;
        let mut lines = text.strip_suffix('\n')?.split('\n');
        let version = lines.next()?;
        if version != MAGIC && version != MAGIC_V1 {
            return None;
        }
        let tmp = lines.next()?.strip_prefix("tmp ")?;
        if !is_unique_part(tmp) {
            return None;
        }
        let len = match lines.next()?.strip_prefix("len ")? {
            "pending" => LenInfo::Pending,
            "unknown" => LenInfo::Unknown,
            n if n.bytes().all(|b| b.is_ascii_digit()) => LenInfo::Known(n.parse().ok()?),
            _ => return None,
        };
        let mut next = lines.next();
        let mut validator = None;
        if version == MAGIC
            && let Some(line) = next
            && let Some(value) = line.strip_prefix("validator ")
        {
            validator = Some(value.to_owned());
            next = lines.next();
        }
        // A `kind` line only ever comes before a `failed` line: written in one go,
        // a half-written file never reads as a failure without its kind.
        let failed = match next {
            None => None,
            Some("kind not-found") => Some(failure(lines.next()?, FailureKind::NotFound)?),
            Some(line) => Some(failure(line, FailureKind::Other)?),
        };
        if lines.next().is_some() {
            return None;
        }
        Some(LockInfo {
            tmp: tmp.to_owned(),
            len,
            validator,
            failed,
        })
    }
}

/// Whether `s` can stand on a line of its own: a validator that cannot is not
/// recorded (and its fill not resumed).
fn is_one_line(s: &str) -> bool {
    !s.is_empty() && !s.chars().any(char::is_control)
}

/// The failure a `failed <message>` line records.
fn failure(line: &str, kind: FailureKind) -> Option<Failure> {
    let message = line.strip_prefix("failed ")?.to_owned();
    Some(Failure { message, kind })
}

/// Whether `s` can be the unique part of a tmp file name: it must never let a lock
/// file redirect a follower to a path outside the tmp directory.
pub(crate) fn is_unique_part(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn info_round_trips() {
        for len in [
            LenInfo::Pending,
            LenInfo::Unknown,
            LenInfo::Known(0),
            LenInfo::Known(u64::MAX),
        ] {
            for failed in [
                None,
                Some("HTTP 500\nfrom\0 origin".to_owned()),
                Some("é".repeat(600)),
            ] {
                for kind in [FailureKind::NotFound, FailureKind::Other] {
                    let info = LockInfo {
                        tmp: "abcXYZ09".into(),
                        len,
                        validator: Some("W/\"e 1\"".into()),
                        failed: failed.clone().map(|message| Failure { message, kind }),
                    };
                    let decoded = LockInfo::decode(info.encode().as_bytes()).unwrap();
                    assert_eq!((&decoded.tmp, decoded.len), (&info.tmp, info.len));
                    assert_eq!(decoded.validator, info.validator);
                    let Some(sent) = &failed else {
                        assert_eq!(decoded.failed, None);
                        continue;
                    };
                    let got = decoded.failed.unwrap();
                    assert_eq!(got.kind, kind);
                    let got = got.message;
                    assert!(got.len() <= MAX_FAILURE && !got.contains('\n'), "{got:?}");
                    assert!(sent.replace(['\n', '\0'], " ").starts_with(&got));
                }
            }
        }
    }

    #[test]
    fn a_failure_without_a_kind_line_reads_as_other() {
        // As written before kinds were recorded.
        let old = "readthrough-lock 1\ntmp abc\nlen unknown\nfailed HTTP 404 from x\n";
        let failed = LockInfo::decode(old.as_bytes()).unwrap().failed.unwrap();
        assert_eq!(failed.kind, FailureKind::Other);
        assert_eq!(failed.message, "HTTP 404 from x");
        let new = "readthrough-lock 1\ntmp abc\nlen unknown\nkind not-found\nfailed gone\n";
        let failed = LockInfo::decode(new.as_bytes()).unwrap().failed.unwrap();
        assert_eq!(failed.kind, FailureKind::NotFound);
        assert_eq!(failed.message, "gone");
    }

    #[test]
    fn malformed_info_is_refused() {
        let good = "readthrough-lock 1\ntmp abc\nlen 5\n";
        assert!(
            LockInfo::decode(good.as_bytes()).is_some(),
            "version 1 is read"
        );
        let v2 = "readthrough-lock 2\ntmp abc\nlen 5\nvalidator \"x\"\nfailed boom\n";
        let decoded = LockInfo::decode(v2.as_bytes()).unwrap();
        assert_eq!(decoded.validator.as_deref(), Some("\"x\""));
        assert_eq!(decoded.failed.map(|f| f.message).as_deref(), Some("boom"));
        let multi_line = LockInfo {
            tmp: "abc".into(),
            len: LenInfo::Known(5),
            validator: Some("a\nfailed forged".into()),
            failed: None,
        };
        let decoded = LockInfo::decode(multi_line.encode().as_bytes()).unwrap();
        assert_eq!((decoded.validator, decoded.failed), (None, None));
        for bad in [
            "",
            "readthrough-lock 1\ntmp abc\nlen 5",
            "readthrough-lock 1\ntmp ../../etc/passwd\nlen 5\n",
            "readthrough-lock 1\ntmp a/b\nlen 5\n",
            "readthrough-lock 1\ntmp \nlen 5\n",
            "readthrough-lock 1\ntmp abc\nlen -5\n",
            "readthrough-lock 1\ntmp abc\nlen +5\n",
            "readthrough-lock 1\ntmp abc\nlen 99999999999999999999999\n",
            "readthrough-lock 1\ntmp abc\nlen 5\nextra\n",
            "readthrough-lock 1\ntmp abc\nlen 5\nfailed x\nfailed y\n",
            "readthrough-lock 1\ntmp abc\nlen 5\nvalidator \"x\"\n",
            "readthrough-lock 2\ntmp abc\nlen 5\nvalidator a\nvalidator b\n",
            "readthrough-lock 3\ntmp abc\nlen 5\n",
            // A kind comes only before a failure, once, and only a known one.
            "readthrough-lock 1\ntmp abc\nlen 5\nkind not-found\n",
            "readthrough-lock 1\ntmp abc\nlen 5\nfailed x\nkind not-found\n",
            "readthrough-lock 1\ntmp abc\nlen 5\nkind not-found\nkind not-found\nfailed x\n",
            "readthrough-lock 1\ntmp abc\nlen 5\nkind gone\nfailed x\n",
            "readthrough-lock 1\ntmp abc\nlen 5\nkind \nfailed x\n",
        ] {
            assert_eq!(LockInfo::decode(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
