//! `readthrough._readthrough`: the native half of the Python package `readthrough`, a
//! thin layer over the Rust crate. The Python half (`readthrough/`) holds the file
//! object, the exception classes and the argument conversions.
//!
//! - One tokio runtime per process, made on first use (`runtime`); a child made by
//!   `fork` makes its own, and a `Cache` made before the fork refuses to work in it.
//! - Every blocking call waits with the GIL released and hears Ctrl-C.
//! - Errors become the exceptions of `readthrough._errors` (`errors`); no panic
//!   reaches Python.

use pyo3::prelude::*;

mod cache;
mod errors;
mod origin;
mod reader;
mod reports;
mod runtime;
mod warm;

#[pymodule]
fn _readthrough(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<cache::Cache>()?;
    m.add_class::<reader::Reader>()?;
    m.add_class::<reports::Stats>()?;
    m.add_class::<reports::Entry>()?;
    m.add_class::<reports::Status>()?;
    m.add_class::<reports::PruneReport>()?;
    m.add_class::<reports::Corrupt>()?;
    m.add_class::<reports::VerifyReport>()?;
    m.add_class::<warm::WarmReport>()?;
    m.add_function(wrap_pyfunction!(cache::parse_size, m)?)?;
    m.add_function(wrap_pyfunction!(runtime::shutdown, m)?)?;
    Ok(())
}
