//! The leader's heartbeat: the sign of life that waiters in other processes watch.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use crate::engine::progress::Source;
use crate::store::lock::FillLock;

/// The longest pause between two beats.
const MAX_PERIOD: Duration = Duration::from_secs(1);

/// Keeps a leader's files fresh for as long as it holds the lock, in a task of its
/// own, so that waiters in other processes can tell a live leader from a hung one
/// however long a single step takes (a slow origin, a write held up by the kernel, the
/// final flush, the publish). It refreshes the lock file, and the tmp file while the
/// body is written into it. Dropping it stops it at once.
pub(super) struct Heartbeat {
    files: Arc<Mutex<Beating>>,
    task: tokio::task::JoinHandle<()>,
}

/// The files a heartbeat refreshes.
#[derive(Default)]
struct Beating {
    lock: Option<Arc<std::fs::File>>,
    tmp: Option<Arc<Source>>,
}

impl Heartbeat {
    pub(super) fn start(lock: &FillLock, stale_after: Duration) -> Self {
        let files = Arc::new(Mutex::new(Beating {
            lock: Some(lock.file()),
            tmp: None,
        }));
        // Half the staleness timeout, and at least every second: processes on one
        // directory may be built with different timeouts, and a waiter whose timeout
        // is two seconds or more then never takes this live leader for a hung one.
        let period = (stale_after / 2).clamp(Duration::from_millis(1), MAX_PERIOD);
        let beating = Arc::clone(&files);
        let task = tokio::spawn(async move {
            let mut interval =
                tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            interval.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                interval.tick().await;
                let files = beating.lock().unwrap_or_else(|e| e.into_inner());
                let now = SystemTime::now();
                if let Some(lock) = &files.lock {
                    let _ = lock.set_modified(now);
                }
                if let Some(tmp) = &files.tmp {
                    let _ = tmp.file.set_modified(now);
                }
            }
        });
        Heartbeat { files, task }
    }

    /// Refreshes the tmp file `tmp` too from now on.
    pub(super) fn beat_tmp(&self, tmp: Arc<Source>) {
        self.files.lock().unwrap_or_else(|e| e.into_inner()).tmp = Some(tmp);
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        // The lock's handle goes now, not when the runtime next polls the task: the
        // lock is released with the holder's own handle.
        *self.files.lock().unwrap_or_else(|e| e.into_inner()) = Beating::default();
        self.task.abort();
    }
}
