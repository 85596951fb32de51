//! Error lines. Every error is one line on stderr: `readthrough: SUBJECT: CAUSE`, where
//! the subject is what the user gave (a URL, as typed) and appears once, and the cause
//! is short: an HTTP status, an S3 error code, "connection refused", what changed.
//! Errors about no URL (the cache directory, a list file) are `readthrough: CAUSE`.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use readthrough::Error;

/// An error about something the user named, such as a URL.
#[derive(Debug)]
pub(crate) struct About {
    subject: String,
    error: anyhow::Error,
}

impl fmt::Display for About {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.subject, cause(&self.error, &self.subject))
    }
}

impl StdError for About {}

/// `error`, reported as being about `subject`.
pub(crate) fn about(subject: &str, error: impl Into<anyhow::Error>) -> anyhow::Error {
    anyhow::Error::new(About {
        subject: subject.to_owned(),
        error: error.into(),
    })
}

/// The line for `error`, without the `readthrough: ` in front.
pub(crate) fn line(error: &anyhow::Error) -> String {
    match error.downcast_ref::<About>() {
        Some(about) => about.to_string(),
        None => one_line(error.chain().map(ToString::to_string)),
    }
}

/// Why `error` happened, short, on one line, without naming `subject`.
pub(crate) fn cause(error: &anyhow::Error, subject: &str) -> String {
    let text = error
        .chain()
        .find_map(describe)
        .unwrap_or_else(|| one_line(error.chain().map(ToString::to_string)));
    flatten(&without(&text, subject))
}

/// Messages joined with ": ", leaving out those the messages before already say (the
/// library's errors include their source in their message).
fn one_line(messages: impl Iterator<Item = String>) -> String {
    let mut line = String::new();
    for text in messages {
        if !line.contains(&text) {
            if !line.is_empty() {
                line.push_str(": ");
            }
            line.push_str(&text);
        }
    }
    flatten(&line)
}

/// A short cause for an error of a kind this knows, `None` for others.
fn describe(error: &(dyn StdError + 'static)) -> Option<String> {
    if let Some(error) = error.downcast_ref::<Error>() {
        return describe_crate(error);
    }
    if let Some(error) = error.downcast_ref::<object_store::Error>() {
        return Some(describe_store(error));
    }
    if error.is::<reqwest::Error>() {
        return Some(transport(error));
    }
    let io = error.downcast_ref::<io::Error>()?;
    Some(match io.get_ref() {
        Some(inner) => describe(inner).unwrap_or_else(|| inner.to_string()),
        None => io.to_string(),
    })
}

fn describe_crate(error: &Error) -> Option<String> {
    Some(match error {
        Error::Origin { source, .. } => {
            let source: &(dyn StdError + 'static) = &**source;
            describe(source).unwrap_or_else(|| source.to_string())
        }
        Error::HttpStatus { status, .. } => http_status(*status),
        Error::Http { source, .. } => transport(&**source),
        Error::IdleTimeout { after, .. } => {
            format!("no data for {}", humantime::format_duration(*after))
        }
        Error::ObjectChanged { validator, now, .. } => match now {
            Some(now) => format!("changed while resuming: {validator} is now {now}"),
            None => format!("changed while resuming: {validator} no longer matches"),
        },
        Error::InvalidUrl { reason, .. } => format!("invalid URL: {reason}"),
        Error::LengthMismatch {
            expected, actual, ..
        } => format!("the origin sent {actual} bytes but promised {expected}"),
        Error::DigestMismatch {
            expected, actual, ..
        } => format!("the body's sha256 is {actual}, expected {expected}"),
        Error::Changed { offset, .. } => {
            format!("changed at byte {offset} while it was read; read it again")
        }
        Error::OriginPanicked { .. } => "the origin panicked".to_owned(),
        Error::RangeNotSatisfiable { range, length, .. } => {
            format!("the range {range} is past the end of its {length} bytes")
        }
        Error::Corrupt { reason, .. } => format!("the cached copy was corrupt ({reason})"),
        _ => return None,
    })
}

/// `HTTP 404 Not Found`.
fn http_status(status: u16) -> String {
    let reason = reqwest::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason());
    match reason {
        Some(reason) => format!("HTTP {status} {reason}"),
        None => format!("HTTP {status}"),
    }
}

/// An object store's error: the S3 error code and the status (`NoSuchKey, HTTP 404
/// Not Found`), else what kind of failure it was. The code is in the XML body that
/// object_store puts in its message; the XML itself is never shown.
fn describe_store(error: &object_store::Error) -> String {
    let texts: Vec<String> = chain(error).map(ToString::to_string).collect();
    let code = texts.iter().find_map(|t| between(t, "<Code>", "</Code>"));
    let status = texts
        .iter()
        .find_map(|t| between(t, "status code: ", " "))
        .and_then(|s| s.parse().ok())
        .map(http_status);
    match (code, status) {
        (Some(code), Some(status)) => format!("{code}, {status}"),
        (Some(code), None) => code.to_owned(),
        (None, Some(status)) => status,
        (None, None) => match error {
            object_store::Error::NotFound { .. } => "not found".to_owned(),
            object_store::Error::PermissionDenied { .. } => "permission denied".to_owned(),
            object_store::Error::Unauthenticated { .. } => "not authenticated".to_owned(),
            _ => transport(error),
        },
    }
}

/// A failure to talk to a server: "connection refused" and the like from the I/O
/// error at the bottom, else the innermost message.
fn transport(error: &(dyn StdError + 'static)) -> String {
    let io_kind = chain(error).find_map(|e| e.downcast_ref::<io::Error>().map(io::Error::kind));
    let named = match io_kind {
        Some(io::ErrorKind::ConnectionRefused) => Some("connection refused"),
        Some(io::ErrorKind::ConnectionReset) => Some("connection reset"),
        Some(io::ErrorKind::ConnectionAborted) => Some("connection aborted"),
        Some(io::ErrorKind::TimedOut) => Some("timed out"),
        _ => None,
    };
    match named {
        Some(named) => named.to_owned(),
        None => chain(error)
            .last()
            .map_or_else(String::new, ToString::to_string),
    }
}

/// `error` and its sources.
fn chain<'a>(
    error: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    std::iter::successors(Some(error), |&e| e.source())
}

/// The text between `start` and the next `end` (or the end of `text`).
fn between<'a>(text: &'a str, start: &str, end: &str) -> Option<&'a str> {
    let rest = &text[text.find(start)? + start.len()..];
    let found = rest.find(end).map_or(rest, |at| &rest[..at]);
    Some(found.trim()).filter(|s| !s.is_empty())
}

/// `text` without its mentions of `subject` (as the library's messages make them:
/// `for key "URL"`, `from URL`, `to URL`, `URL`), for a line that names it already.
fn without(text: &str, subject: &str) -> String {
    let quoted = format!("{subject:?}");
    let mut text = text.to_owned();
    for mention in [&quoted, subject] {
        for lead in [" for key ", " from ", " to ", " of ", " "] {
            text = text.replace(&format!("{lead}{mention}"), "");
        }
        text = text.replace(mention, "");
    }
    text.trim_start_matches([':', ' ']).to_owned()
}

/// `text` on one line, without runs of blanks.
fn flatten(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_reported_message_loses_its_mentions_of_the_url() {
        let url = "http://127.0.0.1:1/x";
        let text = format!(
            "origin failed for key \"{url}\": HTTP 404 from {url} (reported by the process that led the fill)"
        );
        assert_eq!(
            without(&text, url),
            "origin failed: HTTP 404 (reported by the process that led the fill)"
        );
        let text = format!("{url} changed while its download was resuming");
        assert_eq!(
            without(&text, url),
            "changed while its download was resuming"
        );
    }

    #[test]
    fn the_code_is_taken_from_the_xml_and_the_xml_is_left_out() {
        let body = "Server returned non-2xx status code: 404 Not Found: <?xml version=\"1.0\"?>\n<Error><Code>NoSuchKey</Code><Message>gone</Message></Error>";
        assert_eq!(between(body, "<Code>", "</Code>"), Some("NoSuchKey"));
        assert_eq!(between(body, "status code: ", " "), Some("404"));
        assert_eq!(http_status(404), "HTTP 404 Not Found");
    }

    #[test]
    fn lines_are_flat() {
        let error = about("u", anyhow::anyhow!("two\nlines"));
        assert_eq!(line(&error), "u: two lines");
        assert_eq!(line(&anyhow::anyhow!("a\n b")), "a b");
    }
}
