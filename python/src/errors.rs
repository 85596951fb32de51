//! The crate's errors as the Python exceptions of `readthrough._errors`, and Python
//! exceptions of a custom origin carried through the crate.

use std::error::Error as StdError;
use std::fmt;
use std::io;

use pyo3::exceptions::{PyFileNotFoundError, PyRuntimeError};
use pyo3::prelude::*;
use readthrough::Error;

/// The exception a Python origin raised, as an origin error the crate carries to every
/// reader of the fill. `text` is its one-line form ("ValueError: no such thumb").
pub(crate) struct PythonFailure {
    pub(crate) exception: PyErr,
    text: String,
}

impl PythonFailure {
    /// `exception` as an error of kind `NotFound` when it is a `FileNotFoundError` (so
    /// the key's readers get `readthrough.NotFoundError`), of kind `Other` otherwise.
    pub(crate) fn boxed(py: Python<'_>, exception: PyErr) -> readthrough::BoxError {
        let kind = if exception.is_instance_of::<PyFileNotFoundError>(py) {
            io::ErrorKind::NotFound
        } else {
            io::ErrorKind::Other
        };
        let name = exception
            .get_type(py)
            .qualname()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "exception".to_owned());
        let text = one_line(&format!("{name}: {}", exception.value(py)));
        Box::new(io::Error::new(kind, PythonFailure { exception, text }))
    }
}

impl fmt::Debug for PythonFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for PythonFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl StdError for PythonFailure {}

/// The name of the class in `readthrough._errors` that stands for `error`.
fn class_of(error: &Error) -> &'static str {
    if error.is_not_found() {
        return "NotFoundError";
    }
    match error {
        Error::BadDirectory { .. } => "BadDirectoryError",
        Error::Io { .. } => "LocalIOError",
        Error::InvalidKey { .. } | Error::LayoutEscape { .. } => "InvalidKeyError",
        Error::InvalidUrl { .. } => "InvalidUrlError",
        Error::InvalidSetting(_) => "InvalidSettingError",
        Error::Changed { .. } | Error::ObjectChanged { .. } => "ChangedError",
        Error::Corrupt { .. } => "CorruptError",
        Error::Reclaimed { .. } => "ReclaimedError",
        Error::Origin { .. }
        | Error::OriginPanicked { .. }
        | Error::LengthMismatch { .. }
        | Error::DigestMismatch { .. }
        | Error::HttpStatus { .. }
        | Error::Http { .. }
        | Error::IdleTimeout { .. } => "OriginError",
        _ => "Error",
    }
}

/// The errors `error` stands on: itself, then each source in turn.
fn chain<'a>(error: &'a Error) -> Vec<&'a (dyn StdError + 'static)> {
    let mut all: Vec<&'a (dyn StdError + 'static)> = Vec::new();
    let mut next: Option<&'a (dyn StdError + 'static)> = Some(error);
    while let Some(e) = next {
        all.push(e);
        next = e.source();
    }
    all
}

/// The HTTP status of an origin's refusal, if that is what `error` is.
fn status_of(error: &Error) -> Option<u16> {
    chain(error)
        .into_iter()
        .find_map(|e| match e.downcast_ref::<Error>() {
            Some(Error::HttpStatus { status, .. }) => Some(*status),
            _ => None,
        })
}

/// The Python exception a custom origin raised, if `error` carries one.
fn python_cause(py: Python<'_>, error: &Error) -> Option<PyErr> {
    chain(error).into_iter().find_map(|e| {
        let failure = e
            .downcast_ref::<io::Error>()
            .and_then(|io| io.get_ref())
            .and_then(|inner| inner.downcast_ref::<PythonFailure>())
            .or_else(|| e.downcast_ref::<PythonFailure>())?;
        Some(failure.exception.clone_ref(py))
    })
}

/// The key an error is about, when it names one.
fn key_of(error: &Error) -> Option<&str> {
    match error {
        Error::Origin { key, .. }
        | Error::OriginPanicked { key }
        | Error::LengthMismatch { key, .. }
        | Error::DigestMismatch { key, .. }
        | Error::Changed { key, .. }
        | Error::Reclaimed { key }
        | Error::Corrupt { key, .. }
        | Error::LayoutEscape { key, .. }
        | Error::NoOrigin { key }
        | Error::FillVanished { key } => Some(key),
        Error::HttpStatus { url, .. }
        | Error::Http { url, .. }
        | Error::IdleTimeout { url, .. }
        | Error::ObjectChanged { url, .. }
        | Error::InvalidUrl { url, .. } => Some(url),
        _ => None,
    }
}

/// `error` as the `readthrough` exception of its kind, with its one-line message and
/// the attributes `key` and `status`; a custom origin's own exception is its
/// `__cause__`.
pub(crate) fn to_py(py: Python<'_>, error: &Error) -> PyErr {
    let message = one_line(&error.to_string());
    build(
        py,
        class_of(error),
        &message,
        key_of(error),
        status_of(error),
    )
    .inspect(|exception| exception.set_cause(py, python_cause(py, error)))
    .unwrap_or_else(|failure| failure)
}

/// A `readthrough.Error` with `message`, for failures of the binding itself.
pub(crate) fn plain(message: &str) -> PyErr {
    Python::with_gil(|py| build(py, "Error", message, None, None).unwrap_or_else(|e| e))
}

/// A `readthrough.InvalidSettingError`: an argument that cannot work.
pub(crate) fn invalid_setting(message: &str) -> PyErr {
    Python::with_gil(|py| {
        build(py, "InvalidSettingError", message, None, None).unwrap_or_else(|e| e)
    })
}

/// A panic caught inside the crate, as a `readthrough.Error`.
pub(crate) fn panicked(payload: &(dyn std::any::Any + Send)) -> PyErr {
    let what = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "no message".to_owned());
    plain(&one_line(&format!("internal error in readthrough: {what}")))
}

/// An instance of `readthrough._errors.<class>`.
fn build(
    py: Python<'_>,
    class: &str,
    message: &str,
    key: Option<&str>,
    status: Option<u16>,
) -> PyResult<PyErr> {
    let class = py.import("readthrough._errors")?.getattr(class)?;
    let exception = class.call1((message,))?;
    exception.setattr("key", key)?;
    exception.setattr("status", status)?;
    Ok(PyErr::from_value(exception))
}

/// `text` on one line.
fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

/// A `RuntimeError` for a file object used by two threads at once.
pub(crate) fn busy() -> PyErr {
    PyRuntimeError::new_err("this readthrough file is being read by another thread")
}
