//! `Reader`: the body of one read, for the Python file object `readthrough.BlobFile`.

use std::sync::Mutex;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::errors;
use crate::runtime::wait;

/// What is left of a read: the crate's reader (`None` once it ended, failed or was
/// closed), the part of its last chunk not yet handed out, the blob offset of the next
/// byte to hand out, and the error it ended with, raised again by every later read so
/// that a failed body never reads as a short one.
struct Body {
    reader: Option<readthrough::Reader>,
    pending: Bytes,
    at: u64,
    length: Option<u64>,
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
                length: reader.len(),
                reader: Some(reader),
                pending: Bytes::new(),
                at: 0,
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

    /// Copies bytes into `buf` until it is full or the body ends; how many it copied,
    /// and the error that stopped it, if one did.
    fn fill(&mut self, py: Python<'_>, buf: &mut [u8]) -> (usize, PyResult<()>) {
        let mut filled = 0;
        while filled < buf.len() {
            if let Err(e) = self.refill(py) {
                return (filled, Err(e));
            }
            let n = self.pending.len().min(buf.len() - filled);
            if n == 0 {
                break;
            }
            buf[filled..filled + n].copy_from_slice(&self.pending.split_to(n));
            filled += n;
        }
        (filled, Ok(()))
    }

    /// Up to `size` bytes, at least one unless the body has ended (all of them with
    /// `whole`, unless it ends first), for a body of unknown length; with how many and
    /// the error that stopped it, if one did.
    fn collect<'py>(
        &mut self,
        py: Python<'py>,
        size: usize,
        whole: bool,
    ) -> (Bound<'py, PyBytes>, (usize, PyResult<()>)) {
        let mut all = BytesMut::new();
        let mut result = Ok(());
        while all.len() < size {
            if let Err(e) = self.refill(py) {
                result = Err(e);
                break;
            }
            let n = self.pending.len().min(size - all.len());
            if n == 0 {
                break;
            }
            all.extend_from_slice(&self.pending.split_to(n));
            if !whole {
                break;
            }
        }
        (PyBytes::new(py, &all), (all.len(), result))
    }

    /// How many bytes are left to hand out, when the blob's length is known.
    fn left(&self) -> Option<usize> {
        self.length
            .map(|length| usize::try_from(length.saturating_sub(self.at)).unwrap_or(usize::MAX))
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
    /// Up to `size` bytes of those that are there, waiting only if none are; with
    /// `whole`, `size` bytes unless the body ends first. Empty at the end. If a wait
    /// is interrupted (Ctrl-C) or the body fails, what was read stays for the next
    /// read, so nothing is skipped.
    #[pyo3(signature = (size, whole = false))]
    fn read<'py>(
        &self,
        py: Python<'py>,
        size: usize,
        whole: bool,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let mut body = self.body.try_lock().map_err(|_| errors::busy())?;
        let known = body.left().map(|left| size.min(left));
        let (data, (n, result)) = match known {
            Some(want) if whole || want == 0 => {
                // The size is known: the bytes go straight into the returned object.
                let mut outcome = (0, Ok(()));
                let data = PyBytes::new_with(py, want, |buf| {
                    outcome = body.fill(py, buf);
                    Ok(())
                })?;
                if outcome.1.is_ok() && size > want {
                    // Asked past the end: the end is read too, so that a read of a
                    // fill this process leads ends once the blob is stored.
                    outcome.1 = body.refill(py);
                }
                (data, outcome)
            }
            _ => body.collect(py, size, whole),
        };
        if let Err(e) = result {
            // Nothing read is lost: the next read starts with it.
            let mut kept = BytesMut::from(&data.as_bytes()[..n]);
            kept.extend_from_slice(&body.pending);
            body.pending = kept.freeze();
            return Err(e);
        }
        body.at += n as u64;
        if n < data.as_bytes().len() {
            return Ok(PyBytes::new(py, &data.as_bytes()[..n]));
        }
        Ok(data)
    }

    /// Reads the rest of the body, as `read` does.
    pub(crate) fn read_all<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyBytes>> {
        self.read(py, usize::MAX, true)
    }

    /// Makes this read start at blob offset `offset`, through the crate's
    /// `Reader::starting_at`: the bytes before it are not read; a fill's read waits
    /// until the offset has landed. Only before the first read, and not past a known
    /// end (`InvalidSettingError`); the read has ended if it fails.
    fn start_at(&self, py: Python<'_>, offset: u64) -> PyResult<()> {
        let mut body = self.body.try_lock().map_err(|_| errors::busy())?;
        body.check(py)?;
        let reader = body
            .reader
            .take()
            .ok_or_else(|| errors::plain("this read has ended"))?;
        body.reader = Some(
            reader
                .starting_at(offset)
                .map_err(|e| errors::to_py(py, &e))?,
        );
        body.at = offset;
        Ok(())
    }

    /// Stops this read. A fill it started goes on, so the blob is still stored.
    fn close(&self) -> PyResult<()> {
        let mut body = self.body.try_lock().map_err(|_| errors::busy())?;
        body.reader = None;
        body.pending = Bytes::new();
        Ok(())
    }
}
