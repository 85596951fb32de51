//! The one tokio runtime of the process, and waiting on it from Python with the GIL
//! released and Ctrl-C heard.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Mutex;
use std::time::Duration;

use pyo3::prelude::*;
use tokio::runtime::{Handle, Runtime};

use crate::errors;

/// How often a wait takes the GIL back to let Python run its signal handlers.
const SIGNAL_TICK: Duration = Duration::from_millis(50);

/// The runtime and the process that made it. A child made by `fork` has a copy of the
/// parent's with none of its threads: it makes its own, and leaves the copy alone.
static RUNTIME: Mutex<Option<(u32, Runtime)>> = Mutex::new(None);

/// A handle on this process's runtime, made on first use.
pub(crate) fn handle() -> PyResult<Handle> {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    let pid = std::process::id();
    if let Some((owner, runtime)) = slot.as_ref()
        && *owner == pid
    {
        return Ok(runtime.handle().clone());
    }
    if let Some(inherited) = slot.take() {
        // Dropping it would wait for threads that exist only in the parent.
        std::mem::forget(inherited);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("readthrough")
        .build()
        .map_err(|e| errors::plain(&format!("cannot start readthrough's runtime: {e}")))?;
    let handle = runtime.handle().clone();
    *slot = Some((pid, runtime));
    Ok(handle)
}

/// Stops this process's runtime at interpreter exit (registered with `atexit`): fills
/// this process leads are cancelled, and their files removed, within `grace` seconds.
#[pyfunction]
pub(crate) fn shutdown(py: Python<'_>, grace: f64) {
    let mut slot = RUNTIME.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((owner, runtime)) = slot.take() {
        if owner == std::process::id() {
            let grace = Duration::try_from_secs_f64(grace).unwrap_or(Duration::from_secs(1));
            py.allow_threads(|| runtime.shutdown_timeout(grace));
        } else {
            std::mem::forget(runtime);
        }
    }
}

/// Runs `future` to its end on the runtime with the GIL released, so other Python
/// threads run meanwhile. Every [`SIGNAL_TICK`] it takes the GIL back to run Python's
/// signal handlers: an exception from one (KeyboardInterrupt) drops `future` and is
/// raised. A panic inside becomes `readthrough.Error`, never a Python-level panic.
pub(crate) fn wait<F, T>(py: Python<'_>, future: F) -> PyResult<T>
where
    F: Future<Output = readthrough::Result<T>> + Send,
    T: Send,
{
    let handle = handle()?;
    let mut future = Box::pin(future);
    loop {
        let slice = py.allow_threads(|| {
            catch_unwind(AssertUnwindSafe(|| {
                handle.block_on(async { tokio::time::timeout(SIGNAL_TICK, &mut future).await })
            }))
        });
        match slice {
            Ok(Ok(done)) => return done.map_err(|e| errors::to_py(py, &e)),
            Ok(Err(_tick)) => py.check_signals()?,
            Err(panic) => return Err(errors::panicked(&*panic)),
        }
    }
}
