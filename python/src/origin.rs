//! A custom origin written in Python: a callable (or an object's `fetch` method) that
//! takes a key and returns bytes, or an iterable of bytes chunks.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyIterator, PyMemoryView, PyString};
use readthrough::{BoxError, FetchOptions, Fetched, Origin};

use crate::errors::PythonFailure;

/// The Python callable behind a cache. Called on one of the runtime's blocking
/// threads, with the GIL, once per fill; it always sends the whole body.
pub(crate) struct PyOrigin {
    fetch: Arc<Py<PyAny>>,
}

impl PyOrigin {
    /// The origin of `object`: its `fetch` method if it has one, else itself, which
    /// must then be callable.
    pub(crate) fn new(object: &Bound<'_, PyAny>) -> PyResult<Self> {
        let fetch = if object.hasattr("fetch")? {
            object.getattr("fetch")?
        } else {
            object.clone()
        };
        if !fetch.is_callable() {
            return Err(PyTypeError::new_err(
                "origin must be a callable taking a key, or an object with a fetch(key) method",
            ));
        }
        Ok(PyOrigin {
            fetch: Arc::new(fetch.unbind()),
        })
    }
}

impl Origin for PyOrigin {
    fn fetch(
        &self,
        key: &str,
        _options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let (fetch, key) = (Arc::clone(&self.fetch), key.to_owned());
        Box::pin(async move {
            tokio::task::spawn_blocking(move || Python::with_gil(|py| call(py, &fetch, &key)))
                .await
                .map_err(BoxError::from)?
        })
    }
}

/// Calls the origin for `key` and turns its answer into a body.
fn call(py: Python<'_>, fetch: &Py<PyAny>, key: &str) -> Result<Fetched, BoxError> {
    let failed = |e: PyErr| PythonFailure::boxed(py, e);
    let answer = fetch.bind(py).call1((key,)).map_err(failed)?;
    if let Some(chunk) = chunk_of(&answer).map_err(failed)? {
        return Ok(Fetched::from(chunk));
    }
    let chunks = answer.try_iter().map_err(|_| {
        failed(PyTypeError::new_err(format!(
            "the origin returned {} for key {key:?}, not bytes or an iterable of bytes",
            type_name(&answer)
        )))
    })?;
    Ok(Fetched::from_stream(body(Arc::new(chunks.unbind()))))
}

/// The body of an iterator of chunks: each `next` on a blocking thread with the GIL.
fn body(chunks: Arc<Py<PyIterator>>) -> impl futures::Stream<Item = Result<Bytes, BoxError>> {
    stream::try_unfold(chunks, |chunks| async move {
        let next = Arc::clone(&chunks);
        let chunk =
            tokio::task::spawn_blocking(move || Python::with_gil(|py| next_chunk(py, &next)))
                .await
                .map_err(BoxError::from)??;
        Ok(chunk.map(|chunk| (chunk, chunks)))
    })
}

/// The next chunk of `chunks`, `None` at its end.
fn next_chunk(py: Python<'_>, chunks: &Py<PyIterator>) -> Result<Option<Bytes>, BoxError> {
    let failed = |e: PyErr| PythonFailure::boxed(py, e);
    let Some(item) = chunks.bind(py).clone().next() else {
        return Ok(None);
    };
    let item = item.map_err(failed)?;
    match chunk_of(&item).map_err(failed)? {
        Some(chunk) => Ok(Some(chunk)),
        None => Err(failed(PyTypeError::new_err(format!(
            "the origin's iterator yielded {}, not bytes",
            type_name(&item)
        )))),
    }
}

/// `value` as bytes when it is bytes, a bytearray or a memoryview; `None` when it is
/// none of those; an error for a `str`, which has no one byte form.
fn chunk_of(value: &Bound<'_, PyAny>) -> PyResult<Option<Bytes>> {
    if let Ok(bytes) = value.downcast::<PyBytes>() {
        return Ok(Some(Bytes::copy_from_slice(bytes.as_bytes())));
    }
    if let Ok(array) = value.downcast::<PyByteArray>() {
        return Ok(Some(Bytes::from(array.to_vec())));
    }
    if value.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(
            "the origin returned str; return bytes (for example text.encode())",
        ));
    }
    if value.is_instance_of::<PyMemoryView>() {
        let copy = value.call_method0("tobytes")?;
        return Ok(Some(Bytes::copy_from_slice(
            copy.downcast::<PyBytes>()?.as_bytes(),
        )));
    }
    Ok(None)
}

/// The name of `value`'s type, for messages.
fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .qualname()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "an object".to_owned())
}
