//! `Cache`: the crate's `Cache`, built from keyword settings, its calls each one wait.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use readthrough::{Error, Fetched, HttpOrigin, PrunePolicy, UrlOrigin};

use crate::errors;
use crate::origin::PyOrigin;
use crate::reader::Reader;
use crate::reports::{self, Entry, PruneReport, Stats, Status, VerifyReport};
use crate::runtime::wait;
use crate::warm::{WarmReport, warm};

/// A shared on-disk read-through cache; see `readthrough.Cache`.
#[pyclass(module = "readthrough._readthrough", frozen)]
pub(crate) struct Cache {
    cache: readthrough::Cache,
    /// The process that made it: its fills and runtime live there only.
    pid: u32,
    /// Whether keys are URLs (the cache fetches through a `UrlOrigin`).
    urls: bool,
}

/// `seconds` as a duration, refusing what no duration is.
fn duration(name: &str, seconds: f64) -> PyResult<Duration> {
    Duration::try_from_secs_f64(seconds).map_err(|_| {
        errors::invalid_setting(&format!(
            "{name} must be a number of seconds, at least 0, not {seconds}"
        ))
    })
}

/// The durability named `text`.
fn durability_of(text: &str) -> PyResult<readthrough::Durability> {
    match text {
        "background" => Ok(readthrough::Durability::Background),
        "fsync" => Ok(readthrough::Durability::Fsync),
        "off" => Ok(readthrough::Durability::Off),
        _ => Err(errors::invalid_setting(&format!(
            "durability must be \"background\", \"fsync\" or \"off\", not {text:?}"
        ))),
    }
}

/// The text of a size such as "200GiB" or "1.5 GB" in bytes.
#[pyfunction]
pub(crate) fn parse_size(text: &str) -> PyResult<u64> {
    text.trim().parse::<bytesize::ByteSize>().map(|s| s.as_u64()).map_err(|_| {
        errors::invalid_setting(&format!(
            "{text:?} is not a size: use a number of bytes, or one such as \"200GiB\" or \"1.5 GB\""
        ))
    })
}

impl Cache {
    /// The cache, if it was made in this process.
    fn live(&self) -> PyResult<&readthrough::Cache> {
        if self.pid == std::process::id() {
            return Ok(&self.cache);
        }
        Err(errors::plain(&format!(
            "this Cache was made in process {} and cannot be used after fork; make a new Cache in this process",
            self.pid
        )))
    }

    /// The cache, after checking that its origin can fetch `key`.
    fn for_key(&self, py: Python<'_>, key: &str) -> PyResult<&readthrough::Cache> {
        let cache = self.live()?;
        if self.urls {
            UrlOrigin::check(key).map_err(|e| errors::to_py(py, &e))?;
        }
        Ok(cache)
    }
}

#[pymethods]
impl Cache {
    #[new]
    #[pyo3(signature = (dir, *, origin, stale_after, durability, file_locks, default_ttl, max_bytes, verify_on_read, stale_while_revalidate, group_shared, s3_endpoint, slice_size, shared_tier, shared_tier_read_only))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        dir: PathBuf,
        origin: Option<Bound<'_, PyAny>>,
        stale_after: f64,
        durability: &str,
        file_locks: bool,
        default_ttl: Option<f64>,
        max_bytes: Option<u64>,
        verify_on_read: bool,
        stale_while_revalidate: bool,
        group_shared: bool,
        s3_endpoint: Option<String>,
        slice_size: Option<u64>,
        shared_tier: Option<String>,
        shared_tier_read_only: bool,
    ) -> PyResult<Self> {
        let mut builder = readthrough::Cache::builder(dir)
            .stale_after(duration("stale_after", stale_after)?)
            .durability(durability_of(durability)?)
            .file_locks(file_locks)
            .verify_on_read(verify_on_read)
            .stale_while_revalidate(stale_while_revalidate)
            .group_shared(group_shared);
        if let Some(ttl) = default_ttl {
            builder = builder.default_ttl(duration("default_ttl", ttl)?);
        }
        if let Some(max) = max_bytes {
            builder = builder.max_bytes(max);
        }
        if let Some(size) = slice_size {
            builder = builder.slice_size(size);
        }
        if let Some(url) = shared_tier {
            let (store, prefix) =
                readthrough::tier_store(&url).map_err(|e| errors::to_py(py, &e))?;
            builder = match shared_tier_read_only {
                true => builder.shared_tier_read_only(store, prefix),
                false => builder.shared_tier(store, prefix),
            };
        }
        let urls = origin.is_none();
        builder = match origin {
            Some(origin) => builder.origin(PyOrigin::new(&origin)?),
            None => {
                let http = HttpOrigin::new().map_err(|e| errors::to_py(py, &e))?;
                let origin = UrlOrigin::new(http);
                builder.origin(match s3_endpoint {
                    Some(endpoint) => origin.s3_endpoint(endpoint),
                    None => origin,
                })
            }
        };
        let cache = wait(py, builder.build())?;
        Ok(Cache {
            cache,
            pid: std::process::id(),
            urls,
        })
    }

    #[getter]
    fn dir(&self) -> String {
        self.cache.dir().to_string_lossy().into_owned()
    }

    fn path(&self, py: Python<'_>, key: &str) -> PyResult<String> {
        let cache = self.for_key(py, key)?;
        let path = wait(py, cache.path(key))?;
        Ok(path.to_string_lossy().into_owned())
    }

    fn get_bytes<'py>(&self, py: Python<'py>, key: &str) -> PyResult<Bound<'py, PyBytes>> {
        let cache = self.for_key(py, key)?;
        Reader::new(wait(py, cache.get(key))?).read_all(py)
    }

    fn open(&self, py: Python<'_>, key: &str) -> PyResult<Reader> {
        let cache = self.for_key(py, key)?;
        Ok(Reader::new(wait(py, cache.get(key))?))
    }

    /// Bytes `start` up to `end` (clamped to the blob's end) of the blob of `key`,
    /// through `Cache::get_range`.
    fn get_range<'py>(
        &self,
        py: Python<'py>,
        key: &str,
        start: u64,
        end: u64,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let cache = self.for_key(py, key)?;
        // As a Python slice: an empty range, or one past the end, is no bytes.
        let part = wait(py, async {
            if start >= end {
                return Ok(Bytes::new());
            }
            match cache.get_range(key, start..end).await {
                Err(Error::RangeNotSatisfiable { .. }) => Ok(Bytes::new()),
                reader => reader?.bytes().await,
            }
        })?;
        Ok(PyBytes::new(py, &part))
    }

    fn put(&self, py: Python<'_>, key: &str, data: &[u8]) -> PyResult<u64> {
        let cache = self.live()?;
        wait(py, cache.put(key, Fetched::from(data.to_vec())))
    }

    fn contains(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let cache = self.live()?;
        wait(py, cache.contains(key))
    }

    fn remove(&self, py: Python<'_>, key: &str) -> PyResult<bool> {
        let cache = self.live()?;
        wait(py, cache.remove(key))
    }

    fn metadata(&self, py: Python<'_>, key: &str) -> PyResult<Option<Entry>> {
        let cache = self.live()?;
        Ok(wait(py, cache.metadata(key))?.map(Entry::from))
    }

    fn warm(
        &self,
        py: Python<'_>,
        keys: Vec<String>,
        jobs: usize,
        progress: bool,
    ) -> PyResult<WarmReport> {
        let cache = self.live()?;
        if jobs == 0 {
            return Err(errors::invalid_setting("jobs must be at least 1"));
        }
        warm(py, cache, keys, jobs, progress)
    }

    fn stats(&self) -> PyResult<Stats> {
        Ok(self.live()?.stats().into())
    }

    fn status(&self, py: Python<'_>) -> PyResult<Status> {
        let cache = self.live()?;
        Ok(wait(py, cache.status())?.into())
    }

    fn entries(&self, py: Python<'_>) -> PyResult<Vec<Py<Entry>>> {
        let cache = self.live()?;
        reports::entries(py, wait(py, cache.entries())?)
    }

    #[pyo3(signature = (max_bytes, older_than))]
    fn prune(
        &self,
        py: Python<'_>,
        max_bytes: Option<u64>,
        older_than: Option<f64>,
    ) -> PyResult<PruneReport> {
        let cache = self.live()?;
        let mut policy = PrunePolicy::default();
        if let Some(max) = max_bytes {
            policy = policy.max_bytes(max);
        }
        if let Some(age) = older_than {
            policy = policy.older_than(duration("older_than", age)?);
        }
        PruneReport::new(py, wait(py, cache.prune(&policy))?)
    }

    fn verify(&self, py: Python<'_>) -> PyResult<VerifyReport> {
        let cache = self.live()?;
        VerifyReport::new(py, wait(py, cache.verify())?)
    }

    fn check(&self, py: Python<'_>) -> PyResult<()> {
        let cache = self.live()?;
        wait(py, cache.check())
    }
}
