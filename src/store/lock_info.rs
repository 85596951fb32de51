//! What a leader writes into its lock file for followers in other processes: the
//! unique part of its tmp file's name, the length the origin promised, and, when the
//! fill failed at the origin, the error and whether it was a "not found". A small line
//! format, parsed strictly: a follower never lets a lock file point it outside the tmp
//! folder.

/// What a leader publishes in its lock file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LockInfo {
    /// The unique part of the leader's tmp file name.
    pub(crate) tmp: String,
    /// The length the origin promised.
    pub(crate) len: LenInfo,
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

const MAGIC: &str = "readthrough-lock 1";

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
        if lines.next()? != MAGIC {
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
        // A `kind` line only ever comes before a `failed` line: written in one go,
        // a half-written file never reads as a failure without its kind.
        let failed = match lines.next() {
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
            failed,
        })
    }
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
                        failed: failed.clone().map(|message| Failure { message, kind }),
                    };
                    let decoded = LockInfo::decode(info.encode().as_bytes()).unwrap();
                    assert_eq!((&decoded.tmp, decoded.len), (&info.tmp, info.len));
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
        assert!(LockInfo::decode(good.as_bytes()).is_some());
        for bad in [
            "",
            "readthrough-lock 1\ntmp abc\nlen 5",
            "readthrough-lock 2\ntmp abc\nlen 5\n",
            "readthrough-lock 1\ntmp ../../etc/passwd\nlen 5\n",
            "readthrough-lock 1\ntmp a/b\nlen 5\n",
            "readthrough-lock 1\ntmp \nlen 5\n",
            "readthrough-lock 1\ntmp abc\nlen -5\n",
            "readthrough-lock 1\ntmp abc\nlen +5\n",
            "readthrough-lock 1\ntmp abc\nlen 99999999999999999999999\n",
            "readthrough-lock 1\ntmp abc\nlen 5\nextra\n",
            "readthrough-lock 1\ntmp abc\nlen 5\nfailed x\nfailed y\n",
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
