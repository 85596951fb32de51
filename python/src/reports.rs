//! The crate's reports (counters, entries, status, prune and verify results) as
//! read-only Python objects.

use std::time::{SystemTime, UNIX_EPOCH};

use pyo3::prelude::*;

/// Seconds since the Unix epoch (negative before it).
fn seconds(time: SystemTime) -> f64 {
    match time.duration_since(UNIX_EPOCH) {
        Ok(after) => after.as_secs_f64(),
        Err(before) => -before.duration().as_secs_f64(),
    }
}

/// `seconds` since the epoch as an aware UTC `datetime`.
fn datetime(py: Python<'_>, seconds: f64) -> PyResult<Bound<'_, PyAny>> {
    let module = py.import("datetime")?;
    let utc = module.getattr("timezone")?.getattr("utc")?;
    module
        .getattr("datetime")?
        .call_method1("fromtimestamp", (seconds, utc))
}

/// This cache's counters since it was made (see the crate's `Stats`).
#[pyclass(module = "readthrough._readthrough", frozen, get_all)]
pub(crate) struct Stats {
    hits: u64,
    misses: u64,
    fills_led: u64,
    fills_joined: u64,
    fills_followed: u64,
    stale_reclaims: u64,
    revalidations: u64,
    origin_bytes: u64,
    bytes_served: u64,
    errors: u64,
    tier_hits: u64,
    tier_misses: u64,
    tier_lease_waits: u64,
    tier_takeovers: u64,
    tier_bytes_read: u64,
    tier_bytes_written: u64,
    tier_errors: u64,
}

impl From<readthrough::Stats> for Stats {
    fn from(s: readthrough::Stats) -> Self {
        Stats {
            hits: s.hits,
            misses: s.misses,
            fills_led: s.fills_led,
            fills_joined: s.fills_joined,
            fills_followed: s.fills_followed,
            stale_reclaims: s.stale_reclaims,
            revalidations: s.revalidations,
            origin_bytes: s.origin_bytes,
            bytes_served: s.bytes_served,
            errors: s.errors,
            tier_hits: s.tier_hits,
            tier_misses: s.tier_misses,
            tier_lease_waits: s.tier_lease_waits,
            tier_takeovers: s.tier_takeovers,
            tier_bytes_read: s.tier_bytes_read,
            tier_bytes_written: s.tier_bytes_written,
            tier_errors: s.tier_errors,
        }
    }
}

#[pymethods]
impl Stats {
    fn __repr__(&self) -> String {
        let fields = [
            ("hits", self.hits),
            ("misses", self.misses),
            ("fills_led", self.fills_led),
            ("fills_joined", self.fills_joined),
            ("fills_followed", self.fills_followed),
            ("stale_reclaims", self.stale_reclaims),
            ("revalidations", self.revalidations),
            ("origin_bytes", self.origin_bytes),
            ("bytes_served", self.bytes_served),
            ("errors", self.errors),
            ("tier_hits", self.tier_hits),
            ("tier_misses", self.tier_misses),
            ("tier_lease_waits", self.tier_lease_waits),
            ("tier_takeovers", self.tier_takeovers),
            ("tier_bytes_read", self.tier_bytes_read),
            ("tier_bytes_written", self.tier_bytes_written),
            ("tier_errors", self.tier_errors),
        ];
        let listed: Vec<String> = fields.iter().map(|(k, v)| format!("{k}={v}")).collect();
        format!("Stats({})", listed.join(", "))
    }
}

/// A stored blob and what the cache knows of it.
#[pyclass(module = "readthrough._readthrough", frozen)]
pub(crate) struct Entry {
    #[pyo3(get)]
    key: String,
    #[pyo3(get)]
    size: u64,
    #[pyo3(get)]
    present: u64,
    #[pyo3(get)]
    stored: u64,
    #[pyo3(get)]
    slices: Option<(u64, u64, u64)>,
    #[pyo3(get)]
    sha256: Option<String>,
    #[pyo3(get)]
    validator: Option<String>,
    #[pyo3(get)]
    content_type: Option<String>,
    #[pyo3(get)]
    path: Option<String>,
    created: f64,
    last_read: f64,
    expires: Option<f64>,
}

impl From<readthrough::Entry> for Entry {
    fn from(e: readthrough::Entry) -> Self {
        Entry {
            key: e.key,
            size: e.size,
            present: e.present,
            stored: e.stored,
            slices: e.slices.map(|s| (s.size, s.present, s.count)),
            sha256: e.sha256,
            validator: e.validator,
            content_type: e.content_type,
            path: e.path.map(|path| path.to_string_lossy().into_owned()),
            created: seconds(e.created),
            last_read: seconds(e.last_read),
            expires: e.expires.map(seconds),
        }
    }
}

#[pymethods]
impl Entry {
    #[getter]
    fn created<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.created)
    }

    #[getter]
    fn last_read<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        datetime(py, self.last_read)
    }

    #[getter]
    fn expires<'py>(&self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        self.expires.map(|at| datetime(py, at)).transpose()
    }

    fn __repr__(&self) -> String {
        format!(
            "Entry(key={:?}, size={}, present={}, path={:?})",
            self.key, self.size, self.present, self.path
        )
    }
}

/// How the cache directory is doing.
#[pyclass(module = "readthrough._readthrough", frozen, get_all)]
pub(crate) struct Status {
    entries: u64,
    bytes: u64,
    fills_in_progress: u64,
    abandoned_tmp_files: u64,
    abandoned_bytes: u64,
}

impl From<readthrough::CacheStatus> for Status {
    fn from(s: readthrough::CacheStatus) -> Self {
        Status {
            entries: s.entries,
            bytes: s.bytes,
            fills_in_progress: s.fills_in_progress,
            abandoned_tmp_files: s.abandoned_tmp_files,
            abandoned_bytes: s.abandoned_bytes,
        }
    }
}

/// What `prune` removed.
#[pyclass(module = "readthrough._readthrough", frozen, get_all)]
pub(crate) struct PruneReport {
    removed: Vec<Py<Entry>>,
    bytes_freed: u64,
    tmp_files_removed: u64,
    lock_files_removed: u64,
    orphans_removed: u64,
    named_locks_removed: u64,
}

impl PruneReport {
    pub(crate) fn new(py: Python<'_>, r: readthrough::PruneReport) -> PyResult<Self> {
        Ok(PruneReport {
            removed: entries(py, r.removed)?,
            bytes_freed: r.bytes_freed,
            tmp_files_removed: r.tmp_files_removed,
            lock_files_removed: r.lock_files_removed,
            orphans_removed: r.orphans_removed,
            named_locks_removed: r.named_locks_removed,
        })
    }
}

/// `entries` as Python objects.
pub(crate) fn entries(
    py: Python<'_>,
    entries: Vec<readthrough::Entry>,
) -> PyResult<Vec<Py<Entry>>> {
    entries
        .into_iter()
        .map(|e| Py::new(py, Entry::from(e)))
        .collect()
}

/// An entry `verify` found corrupt and removed.
#[pyclass(module = "readthrough._readthrough", frozen, get_all)]
pub(crate) struct Corrupt {
    key: String,
    path: String,
    reason: String,
}

/// What `verify` found.
#[pyclass(module = "readthrough._readthrough", frozen, get_all)]
pub(crate) struct VerifyReport {
    checked: u64,
    corrupt: Vec<Py<Corrupt>>,
    unverifiable: Vec<String>,
}

impl VerifyReport {
    pub(crate) fn new(py: Python<'_>, r: readthrough::VerifyReport) -> PyResult<Self> {
        let corrupt = r
            .corrupt
            .into_iter()
            .map(|c| {
                let path = c.path.to_string_lossy().into_owned();
                Py::new(
                    py,
                    Corrupt {
                        key: c.key,
                        path,
                        reason: c.reason,
                    },
                )
            })
            .collect::<PyResult<_>>()?;
        Ok(VerifyReport {
            checked: r.checked,
            corrupt,
            unverifiable: r
                .unverifiable
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect(),
        })
    }
}
