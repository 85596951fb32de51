//! Counters of what the cache did, kept per [`Cache`](crate::Cache) handle family.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a cache's counters since it was built. Clones of one
/// [`Cache`](crate::Cache) share counters; caches built separately (and other
/// processes) have their own.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// let cache = readthrough::Cache::builder(dir.path())
///     .origin(readthrough::origin_fn(|_key: String| async { Ok::<_, std::io::Error>(b"x".to_vec()) }))
///     .build()
///     .await?;
/// cache.get("a").await?.bytes().await?;
/// cache.get("a").await?.bytes().await?;
/// let stats = cache.stats();
/// assert_eq!((stats.misses, stats.hits, stats.fills_led), (1, 1, 1));
/// # Ok(()) }
/// ```
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Reads served from a complete blob already in the store.
    pub hits: u64,
    /// Reads that found no blob in the store.
    pub misses: u64,
    /// Fills this cache fetched from the origin itself.
    pub fills_led: u64,
    /// Reads that joined a fill already running in this process.
    pub fills_joined: u64,
    /// Fills this cache followed while another process fetched.
    pub fills_followed: u64,
    /// Fills taken over from another process that had stopped making progress.
    pub stale_reclaims: u64,
    /// Expired blobs the origin confirmed current, kept without fetching their body.
    pub revalidations: u64,
    /// Bytes received from origins (fills, and uncached reads when the disk failed).
    pub origin_bytes: u64,
    /// Bytes handed to callers by readers.
    pub bytes_served: u64,
    /// Reads that ended in an error (at `get`, or later in the body).
    pub errors: u64,
    /// Fills served from a copy in the shared tier.
    pub tier_hits: u64,
    /// Fills that found no servable copy in the shared tier.
    pub tier_misses: u64,
    /// Fills that followed another host's upload to the shared tier.
    pub tier_lease_waits: u64,
    /// Fleet leases taken over from a host that stopped renewing its own.
    pub tier_takeovers: u64,
    /// Bytes of blobs read from the shared tier.
    pub tier_bytes_read: u64,
    /// Bytes of blobs written to the shared tier.
    pub tier_bytes_written: u64,
    /// Calls to the shared tier that failed, timed out or found garbage (the read
    /// went on from the origin).
    pub tier_errors: u64,
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Ordering::Relaxed),)* ..Stats::default() }
            }
        }
    };
}

counters!(
    hits,
    misses,
    fills_led,
    fills_joined,
    fills_followed,
    stale_reclaims,
    revalidations,
    origin_bytes,
    bytes_served,
    errors,
);

/// The shared tier's counters, kept apart from the engine's: the tier is an origin,
/// and the cache adds them to its [`Stats`].
#[cfg(feature = "object-store")]
#[derive(Debug, Default)]
pub(crate) struct TierCounters {
    pub(crate) hits: AtomicU64,
    pub(crate) misses: AtomicU64,
    pub(crate) lease_waits: AtomicU64,
    pub(crate) takeovers: AtomicU64,
    pub(crate) bytes_read: AtomicU64,
    pub(crate) bytes_written: AtomicU64,
    pub(crate) errors: AtomicU64,
}

#[cfg(feature = "object-store")]
impl TierCounters {
    /// `stats` with the tier's counters in.
    pub(crate) fn add_to(&self, stats: Stats) -> Stats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        Stats {
            tier_hits: read(&self.hits),
            tier_misses: read(&self.misses),
            tier_lease_waits: read(&self.lease_waits),
            tier_takeovers: read(&self.takeovers),
            tier_bytes_read: read(&self.bytes_read),
            tier_bytes_written: read(&self.bytes_written),
            tier_errors: read(&self.errors),
            ..stats
        }
    }
}

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
