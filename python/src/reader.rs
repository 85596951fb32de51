//! `Reader`: the body of one read, for the Python file object `readthrough.BlobFile`.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors;
use crate::runtime::wait;

/// What is left of a read: the crate's reader (`None` once it ended, failed or was
/// closed), the part of its last chunk not yet handed out, and the error it ended
/// with, raised again by every later read so that a failed body never reads as a
/// short one.
struct Body {
    reader: Option<readthrough::Reader>,
    pending: Bytes,
    failed: Option<readthrough::Error>,
}

/// The body of one read of a key, streamed as it lands. Use it through
/// `readthrough.BlobFile`.
#[pyclass(module = "readthrough._readthrough", frozen)]
pub(crate) struct Reader {
    body: Mutex<Body>,
    #[pyo3(get)]
    kind: String,
    #[pyo3(get)]
    length: Option<u64>,
}

impl Reader {
    pub(crate) fn new(reader: readthrough::Reader) -> Self {
        Reader {
            kind: reader.kind().to_string(),
            length: reader.len(),
            body: Mutex::new(Body {
                reader: Some(reader),
                pending: Bytes::new(),
                failed: None,
            }),
        }
    }
}

impl Body {
    /// Makes `pending` hold bytes unless the body has ended: waits (GIL released) for
    /// the next chunk. An error ends the body.
    fn refill(&mut self, py: Python<'_>) -> PyResult<()> {
        while self.pending.is_empty() {
            self.check(py)?;
            let Some(reader) = self.reader.as_mut() else {
                return Ok(());
            };
            match wait(py, async { Ok(reader.next().await) })? {
                Some(Ok(chunk)) => self.pending = chunk,
                Some(Err(e)) => return Err(self.fail(py, e)),
                None => self.reader = None,
            }
        }
        Ok(())
    }

    /// The error the body ended with, if it did.
    fn check(&self, py: Python<'_>) -> PyResult<()> {
        match &self.failed {
            Some(e) => Err(errors::to_py(py, e)),
            None => Ok(()),
        }
    }

    /// Ends the body with `error`; the exception to raise.
    fn fail(&mut self, py: Python<'_>, error: readthrough::Error) -> PyErr {
        let raised = errors::to_py(py, &error);
        self.reader = None;
        self.failed = Some(error);
        raised
    }
}

#[pymethods]
impl Reader {
    /// Up to `size` bytes of those that are there, waiting only if none are; empty
    /// at the end.
    fn read<'py>(&self, py: Python<'py>, size: usize) -> PyResult<Bound<'py, PyBytes>> {
        let mut body = self.body.try_lock().map_err(|_| errors::busy())?;
        if size > 0 {
            body.refill(py)?;
        }
        let n = body.pending.len().min(size);
        let chunk = body.pending.split_to(n);
        Ok(PyBytes::new(py, &chunk))
    }

    /// Reads the rest of the body. If a wait is interrupted (Ctrl-C) or the body
    /// fails, what was read stays for the next read, so nothing is skipped.
    fn read_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        let mut body = self.body.try_lock().map_err(|_| errors::busy())?;
        let mut all = BytesMut::new();
        loop {
            if let Err(e) = body.refill(py) {
                body.pending = all.freeze();
                return Err(e);
            }
            if body.pending.is_empty() {
                return Ok(PyBytes::new(py, &all));
            }
            all.extend_from_slice(&std::mem::take(&mut body.pending));
        }
    }

    /// Stops this read. A fill it started goes on, so the blob is still stored.
    fn close(&self) -> PyResult<()> {
        let mut body = self.body.try_lock().map_err(|_| errors::busy())?;
        body.reader = None;
        body.pending = Bytes::new();
        Ok(())
    }
}
