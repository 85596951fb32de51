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
}

macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            pub(crate) fn snapshot(&self) -> Stats {
                Stats { $($name: self.$name.load(Ordering::Relaxed),)* }
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

/// Adds `n` to a counter.
pub(crate) fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Ordering::Relaxed);
}
