//! Keeping a cache under its `max_bytes` from the read path: when a publish takes the
//! ledger's total over the bound, one eviction starts in the background.
//!
//! Eviction ([`scan::evict`]) reads every entry's metadata once and removes the least
//! recently read entries down to a low-water mark of 90% of the bound, so that the next
//! eviction is a tenth of the bound's turnover away: spread over the publishes between
//! two evictions, its cost per publish does not grow with the number of entries. It
//! runs one process at a time.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use crate::engine::state::Engine;
use crate::store::scan;

/// After a publish brought the total to `total`: starts an eviction in the
/// background if that is over the bound and none runs in this process.
pub(super) fn after_publish(inner: &Arc<Engine>, total: u64) {
    let Some(max) = inner.settings.max_bytes else {
        return;
    };
    if total <= max || inner.evicting.swap(true, Ordering::AcqRel) {
        return;
    }
    let inner = Arc::clone(inner);
    tokio::task::spawn_blocking(move || {
        if let Err(e) = scan::evict(inner.base(), max) {
            tracing::warn!(error = %e, "eviction failed");
        }
        inner.evicting.store(false, Ordering::Release);
    });
}
