//! The fleet tier: a second tier below the local cache, in an object store that every
//! host reaches, so that a fleet of hosts makes one origin fetch per blob.
//!
//! [`TierOrigin`] wraps the cache's origin, so the local engine is unchanged: the one
//! local leader of a fill asks the tier first. A published copy (a manifest and its
//! parts) is streamed part by part, each part checked. On a miss the leader takes the
//! key's fleet lease ([`lease`]) and fetches from the origin once, teeing the body
//! into part uploads ([`upload`]) and ending with a create-only manifest; hosts that
//! lost the lease follow the parts as they land ([`read`]). Any trouble with the tier
//! falls back to the origin, with a warning and a count.

mod bucket;
mod lead;
mod lease;
mod listing;
mod names;
mod origin;
mod ranged;
mod read;
mod records;
mod tee;
#[cfg(test)]
mod tests;
mod upload;
mod url;

use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use object_store::ObjectStore;
use object_store::path::Path;

use crate::clock::Clock;
use crate::origin::Origin;
use crate::stats::{TierCounters, add};

pub(crate) use bucket::Bucket;
pub use listing::{TierEntry, TierPruneReport};
use origin::TierOrigin;
pub use url::tier_store;

/// The default size of a part: 8 MiB.
pub(crate) const DEFAULT_PART_SIZE: u64 = 8 << 20;
/// The default bound on one call to the tier's store.
pub(crate) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);

/// A shared tier and how this cache uses it.
pub(crate) struct Tier {
    pub(crate) bucket: Bucket,
    pub(crate) prefix: Path,
    pub(crate) part_size: u64,
    /// Read the tier, never write it.
    pub(crate) read_only: bool,
    /// How long a lease may stand unrenewed before a waiter takes it over.
    pub(crate) stale_after: Duration,
    /// The lifetime of a copy whose origin gave none.
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) counters: Arc<TierCounters>,
}

/// The cache's origin with the tier in front of it, and the tier.
pub(crate) type Wrapped = (Option<Arc<dyn Origin>>, Option<Arc<Tier>>);

/// The cache's settings the tier follows.
pub(crate) struct Lifetimes {
    pub(crate) stale_after: Duration,
    pub(crate) default_ttl: Option<Duration>,
    pub(crate) clock: Arc<dyn Clock>,
}

/// What the builder gathers to make a [`Tier`].
#[derive(Clone)]
pub(crate) struct TierSettings {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) prefix: String,
    pub(crate) read_only: bool,
    pub(crate) part_size: u64,
    pub(crate) timeout: Duration,
}

impl TierSettings {
    pub(crate) fn new(store: Arc<dyn ObjectStore>, prefix: &str, read_only: bool) -> Self {
        TierSettings {
            store,
            prefix: prefix.to_owned(),
            read_only,
            part_size: DEFAULT_PART_SIZE,
            timeout: DEFAULT_TIMEOUT,
        }
    }

    /// The tier for a cache with these settings, and the cache's origin with the tier
    /// in front of it.
    pub(crate) fn wrap(
        self,
        origin: Option<Arc<dyn Origin>>,
        life: Lifetimes,
    ) -> crate::Result<Wrapped> {
        let tier = Arc::new(self.open(life)?);
        let origin = origin
            .map(|origin| Arc::new(TierOrigin::new(Arc::clone(&tier), origin)) as Arc<dyn Origin>);
        Ok((origin, Some(tier)))
    }

    fn open(self, life: Lifetimes) -> crate::Result<Tier> {
        let prefix = Path::parse(self.prefix.trim_matches('/')).map_err(|_| {
            crate::Error::InvalidSetting("the shared tier's prefix is not a valid object path")
        })?;
        if self.part_size == 0 {
            return Err(crate::Error::InvalidSetting(
                "the shared tier's part size must not be zero",
            ));
        }
        Ok(Tier {
            bucket: Bucket {
                store: self.store,
                timeout: self.timeout,
            },
            prefix,
            part_size: self.part_size,
            read_only: self.read_only,
            stale_after: life.stale_after,
            default_ttl: life.default_ttl,
            clock: life.clock,
            counters: Arc::default(),
        })
    }
}

impl Tier {
    /// Now, in milliseconds since the Unix epoch, by the cache's clock.
    pub(crate) fn now_ms(&self) -> u64 {
        let since = self
            .clock
            .now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        u64::try_from(since.as_millis()).unwrap_or(u64::MAX)
    }

    /// Every copy in the tier, for [`Cache::tier_entries`](crate::Cache::tier_entries).
    pub(crate) async fn list(&self) -> crate::Result<Vec<TierEntry>> {
        self.entries().await.map_err(|e| crate::Error::Tier {
            op: "list",
            reason: e.to_string(),
        })
    }

    /// Prunes the tier, for [`Cache::tier_prune`](crate::Cache::tier_prune).
    pub(crate) async fn prune_copies(
        &self,
        older_than: Option<Duration>,
    ) -> crate::Result<TierPruneReport> {
        self.prune(older_than)
            .await
            .map_err(|e| crate::Error::Tier {
                op: "prune",
                reason: e.to_string(),
            })
    }

    /// The tier's counters, for the cache's stats.
    pub(crate) fn counters(&self) -> &TierCounters {
        &self.counters
    }

    /// Logs tier trouble and counts it. The read goes on without the tier.
    pub(crate) fn trouble(&self, doing: &str, why: &dyn std::fmt::Display) {
        tracing::warn!("shared tier: {doing}: {why}; going on without the tier");
        add(&self.counters.errors, 1);
    }
}
