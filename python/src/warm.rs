//! `Cache.warm`: read many keys into the cache, some at a time, with a progress bar.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytesize::ByteSize;
use futures::{StreamExt, stream};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use pyo3::prelude::*;
use readthrough::{Cache, ReadKind};

use crate::errors;

/// How one key went.
enum Warmed {
    Fetched(u64),
    Cached,
    /// Read, but the local disk could not keep it.
    NotStored,
}

/// What `warm` did.
#[pyclass(module = "readthrough._readthrough", frozen, get_all)]
pub(crate) struct WarmReport {
    fetched: u64,
    cached: u64,
    bytes: u64,
    seconds: f64,
    failed: Vec<(String, Py<PyAny>)>,
}

#[pymethods]
impl WarmReport {
    fn __str__(&self) -> String {
        let total = self.fetched + self.cached + self.failed.len() as u64;
        let plural = if total == 1 { "" } else { "s" };
        format!(
            "warmed {total} key{plural} in {:.1}s: {} fetched ({}), {} already cached, {} failed",
            self.seconds,
            self.fetched,
            ByteSize(self.bytes),
            self.cached,
            self.failed.len()
        )
    }
}

/// Reads every key of `keys` (each once, `jobs` at a time) through `cache`, drawing a
/// bar on stderr when `shown`.
pub(crate) fn warm(
    py: Python<'_>,
    cache: &Cache,
    mut keys: Vec<String>,
    jobs: usize,
    shown: bool,
) -> PyResult<WarmReport> {
    let mut seen = std::collections::HashSet::new();
    keys.retain(|key| seen.insert(key.clone()));
    let started = Instant::now();
    let bar = progress_bar(keys.len() as u64, shown);
    let total = AtomicU64::new(0);
    let results: Vec<(String, readthrough::Result<Warmed>)> = crate::runtime::wait(py, async {
        Ok(stream::iter(keys)
            .map(|key| async {
                let result = warm_one(cache, &key, (&bar, &total)).await;
                bar.inc(1);
                (key, result)
            })
            .buffer_unordered(jobs)
            .collect()
            .await)
    })?;
    bar.finish_and_clear();
    let mut report = WarmReport {
        fetched: 0,
        cached: 0,
        bytes: 0,
        seconds: started.elapsed().as_secs_f64(),
        failed: Vec::new(),
    };
    for (key, result) in results {
        match result {
            Ok(Warmed::Fetched(n)) => {
                (report.fetched, report.bytes) = (report.fetched + 1, report.bytes + n)
            }
            Ok(Warmed::Cached) => report.cached += 1,
            Ok(Warmed::NotStored) => {
                let message = format!("{key:?} was read, but the local disk could not store it");
                report
                    .failed
                    .push((key, errors::plain(&message).into_value(py).into_any()));
            }
            Err(e) => report
                .failed
                .push((key, errors::to_py(py, &e).into_value(py).into_any())),
        }
    }
    Ok(report)
}

/// Reads `key` to its end, adding its bytes to `total` and showing that on `bar`.
async fn warm_one(
    cache: &Cache,
    key: &str,
    (bar, total): (&ProgressBar, &AtomicU64),
) -> readthrough::Result<Warmed> {
    let mut reader = cache.get(key).await?;
    if reader.kind() == ReadKind::Hit {
        return Ok(Warmed::Cached);
    }
    let mut bytes = 0;
    while let Some(chunk) = reader.next().await {
        let n = chunk?.len() as u64;
        bytes += n;
        let sum = total.fetch_add(n, Ordering::Relaxed) + n;
        bar.set_message(ByteSize(sum).to_string());
    }
    // Once the whole body is read the fill has ended, stored or not.
    if !cache.contains(key).await? {
        return Ok(Warmed::NotStored);
    }
    Ok(Warmed::Fetched(bytes))
}

/// One bar of `items` keys, hidden unless `shown`.
fn progress_bar(items: u64, shown: bool) -> ProgressBar {
    let bar = ProgressBar::with_draw_target(Some(items), ProgressDrawTarget::stderr());
    if !shown {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    if let Ok(style) = ProgressStyle::with_template(
        "{bar:30} {pos}/{len} keys  {elapsed_precise}  ETA {eta}  {msg}",
    ) {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}
