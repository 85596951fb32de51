//! [`Engine`]: what every clone of a cache shares: its settings, the fills running in
//! this process, the parsed metadata it remembers, and its counters.

use std::collections::HashMap;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use tokio::sync::watch;

use crate::clock::Clock;
use crate::engine::flush::Flushing;
use crate::engine::progress::{Fill, FillState};
use crate::error::{Error, Result};
use crate::origin::Origin;
use crate::stats::{Counters, Stats};
use crate::store::dir::Folder;
use crate::store::entry::MetaCache;
use crate::store::layout::{KeyPaths, Layout, Resolved};
use crate::store::lock::LockSite;
use crate::sys::RootedPath;

/// A cache's settings, as its builder gathered them.
pub(crate) struct Settings {
    pub(crate) folder: Folder,
    pub(crate) layout: Box<dyn Layout>,
    pub(crate) origin: Option<Arc<dyn Origin>>,
    pub(crate) stale_after: Duration,
    pub(crate) locks: LockSite,
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) max_bytes: Option<u64>,
    pub(crate) verify_on_read: bool,
    pub(crate) serve_stale: bool,
    /// Read ranges of cold blobs by slices of this many bytes.
    pub(crate) slice_size: Option<u64>,
}

/// The engine behind a cache: its settings and its shared state. It keeps one
/// invariant of its own: the map of running fills names, for each key, at most one
/// live fill in this process, and a fill leaves it before it publishes its end, so the
/// read after a finished fill opens the store.
pub(crate) struct Engine {
    pub(super) settings: Settings,
    /// Parsed metadata, so a hit reads its metadata file only when it changed.
    pub(super) metas: MetaCache,
    /// The paths of the keys read lately.
    resolved: Resolved,
    pub(super) counters: Counters,
    /// The fills running in this process, by key.
    pub(super) fills: Mutex<HashMap<String, Weak<Fill>>>,
    /// Whether this process is evicting now.
    pub(super) evicting: AtomicBool,
    /// The blobs published and not yet flushed.
    pub(super) flushing: Flushing,
}

impl Engine {
    pub(crate) fn new(settings: Settings) -> Self {
        Engine {
            settings,
            metas: MetaCache::default(),
            resolved: Resolved::default(),
            counters: Counters::default(),
            fills: Mutex::default(),
            evicting: AtomicBool::new(false),
            flushing: Flushing::default(),
        }
    }

    /// The cache directory, its format folder and how files are written there.
    pub(crate) fn folder(&self) -> &Folder {
        &self.settings.folder
    }

    /// The format folder.
    pub(crate) fn base(&self) -> &RootedPath {
        &self.settings.folder.base
    }

    pub(crate) fn clock(&self) -> &Arc<dyn Clock> {
        &self.settings.folder.clock
    }

    pub(crate) fn stale_after(&self) -> Duration {
        self.settings.stale_after
    }

    pub(crate) fn locks(&self) -> &LockSite {
        &self.settings.locks
    }

    /// A snapshot of the counters.
    pub(crate) fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// The paths of `key`'s files.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty key, [`Error::LayoutEscape`] for a layout
    /// path that could leave the directory.
    pub(crate) fn paths(&self, key: &str) -> Result<Arc<KeyPaths>> {
        if key.is_empty() {
            return Err(Error::InvalidKey {
                reason: "a key must not be empty",
            });
        }
        self.resolved.get(
            self.settings.layout.as_ref(),
            &self.settings.folder.base,
            key,
        )
    }

    /// Waits until every fill running in this process now has ended.
    pub(crate) async fn fills_ended(&self) {
        let running: Vec<_> = {
            let fills = self.fills.lock().unwrap_or_else(|e| e.into_inner());
            let live = fills.values().filter_map(Weak::upgrade);
            live.map(|fill| (fill.key.clone(), fill.state.subscribe()))
                .collect()
        };
        for (key, state) in running {
            // Its end, stored or failed, is its readers' to report.
            let _ = wait_final(state, &key).await;
        }
    }

    /// Whether a fill of `key` runs in this process.
    pub(super) fn is_filling(&self, key: &str) -> bool {
        let fills = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        fills.get(key).is_some_and(|fill| fill.strong_count() > 0)
    }

    /// Removes a fill from the map of running fills, if it is still the one there.
    pub(super) fn forget(&self, fill: &Arc<Fill>) {
        let mut fills = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        if fills
            .get(&fill.key)
            .is_some_and(|weak| Weak::as_ptr(weak) == Arc::as_ptr(fill))
        {
            fills.remove(&fill.key);
        }
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cache")
            .field("dir", &self.settings.folder.root)
            .field("stale_after", &self.settings.stale_after)
            .field("durability", &self.settings.folder.durability)
            .field("locking", &self.settings.locks.locking)
            .finish_non_exhaustive()
    }
}

/// Waits until a fill has ended and returns how.
pub(super) async fn wait_final(
    mut state: watch::Receiver<FillState>,
    key: &str,
) -> Result<FillState> {
    let end = state
        .wait_for(FillState::is_final)
        .await
        .map_err(|_| Error::FillVanished {
            key: key.to_owned(),
        })?;
    Ok(end.clone())
}
