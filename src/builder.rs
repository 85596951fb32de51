//! [`CacheBuilder`]: the settings of a [`Cache`], and opening its directory.

use std::fmt;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::cache::Cache;
use crate::clock::{Clock, SystemClock};
use crate::engine::{Engine, Settings};
use crate::error::{Error, Result};
use crate::origin::Origin;
use crate::store::dir::{self, Folder};
use crate::store::durability::Durability;
use crate::store::layout::{Layout, ShardedLayout};
use crate::store::lock::LockSite;
use crate::store::names::{BREAK_GUARD, TMP_DIR};
use crate::sys::{Perms, blocking};
#[cfg(feature = "object-store")]
use crate::tier::{Lifetimes, TierSettings};

/// Builds a [`Cache`]. Made by [`Cache::builder`].
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::time::Duration;
/// let cache = readthrough::Cache::builder(dir.path())
///     .stale_after(Duration::from_secs(10))
///     .default_ttl(Duration::from_secs(3600))
///     .max_bytes(50 << 30)
///     .durable(false)
///     .build()
///     .await?;
/// # Ok(()) }
/// ```
#[must_use = "a builder does nothing until build() is called"]
pub struct CacheBuilder {
    root: PathBuf,
    origin: Option<Arc<dyn Origin>>,
    layout: Box<dyn Layout>,
    stale_after: Duration,
    durability: Durability,
    file_locks: bool,
    clock: Arc<dyn Clock>,
    default_ttl: Option<Duration>,
    max_bytes: Option<u64>,
    slice_size: Option<u64>,
    verify_on_read: bool,
    serve_stale: bool,
    perms: Perms,
    #[cfg(feature = "object-store")]
    tier: Option<TierSettings>,
}

impl fmt::Debug for CacheBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CacheBuilder")
            .field("root", &self.root)
            .field("stale_after", &self.stale_after)
            .field("durability", &self.durability)
            .field("file_locks", &self.file_locks)
            .field("default_ttl", &self.default_ttl)
            .field("max_bytes", &self.max_bytes)
            .finish_non_exhaustive()
    }
}

impl CacheBuilder {
    pub(crate) fn new(root: PathBuf) -> Self {
        CacheBuilder {
            root,
            origin: None,
            layout: Box::new(ShardedLayout),
            stale_after: Duration::from_secs(30),
            durability: Durability::default(),
            file_locks: true,
            clock: Arc::new(SystemClock),
            default_ttl: None,
            max_bytes: None,
            verify_on_read: false,
            serve_stale: false,
            slice_size: None,
            perms: Perms::OWNER,
            #[cfg(feature = "object-store")]
            tier: None,
        }
    }

    /// The origin that [`Cache::get`] and [`Cache::path`] fetch from on a miss.
    /// Without one, only [`Cache::get_with`] and explicit writes fill the cache.
    pub fn origin(mut self, origin: impl Origin) -> Self {
        self.origin = Some(Arc::new(origin));
        self
    }

    /// How long a fill led by another process may go without refreshing its files
    /// before a waiter takes it over (default 30 s). A live leader refreshes them every
    /// half of this, even while its origin is slow; a stopped or hung process does not.
    pub fn stale_after(mut self, timeout: Duration) -> Self {
        self.stale_after = timeout;
        self
    }

    /// When a blob is flushed to stable storage (default
    /// [`Durability::Background`]: published at once, flushed soon after). Whatever
    /// the mode, a blob that a crash may have damaged is checked against its SHA-256
    /// before it is served again ([`Durability`] says how).
    pub fn durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// [`durability`](Self::durability) as a switch: on is [`Durability::Fsync`]
    /// (flushed before it is published), off is [`Durability::Off`] (never flushed).
    pub fn durable(mut self, durable: bool) -> Self {
        self.durability = if durable {
            Durability::Fsync
        } else {
            Durability::Off
        };
        self
    }

    /// Where each key's files live (default [`ShardedLayout`]).
    pub fn layout(mut self, layout: impl Layout) -> Self {
        self.layout = Box::new(layout);
        self
    }

    /// Whether to coordinate processes with file locks (default on). Turn off only
    /// where the file system accepts locks but enforces nothing: every process then
    /// fetches for itself (tasks in one process still share fetches), and every other
    /// guarantee holds. [`build`](Self::build) turns locks off by itself, with a
    /// warning, when it finds they do not exclude.
    pub fn file_locks(mut self, on: bool) -> Self {
        self.file_locks = on;
        self
    }

    /// How long a stored blob is served before it is fetched again (or revalidated,
    /// when the origin gave a validator), unless its body says otherwise
    /// ([`Fetched::with_ttl`](crate::Fetched::with_ttl)). Without it (the default)
    /// blobs never expire.
    pub fn default_ttl(mut self, ttl: Duration) -> Self {
        self.default_ttl = Some(ttl);
        self
    }

    /// Keeps the stored bytes under `max_bytes`: after a publish takes the cache over
    /// it, the least recently read entries are evicted in the background down to 90%
    /// of it. The bound holds across processes sharing the directory; a fill in
    /// progress may overshoot it by its own size.
    pub fn max_bytes(mut self, max_bytes: u64) -> Self {
        self.max_bytes = Some(max_bytes);
        self
    }

    /// Checks every hit's SHA-256 as it streams (default off): a blob whose bytes no
    /// longer match ends its read with [`Error::Corrupt`] and is removed, so the next
    /// read fetches it again. Its length is checked on every read either way.
    pub fn verify_on_read(mut self, on: bool) -> Self {
        self.verify_on_read = on;
        self
    }

    /// Reads ranges of cold blobs by slices of `size` bytes (default off): a
    /// [`get_range`](Cache::get_range) of a blob that is not stored fetches only the
    /// slices the range covers, each one fill of its own (coalesced across tasks and
    /// processes, published atomically), all of one version of the object. A whole
    /// [`get`](Cache::get) of a blob read by slices before reads it by slices too,
    /// fetching only the missing ones; a cold one, and [`path`](Cache::path), fetch
    /// the whole blob. Only origins that
    /// [serve ranges](crate::Origin::serves_ranges) and give a validator are sliced;
    /// others are read whole. See the README's section on ranges.
    pub fn slice_size(mut self, size: u64) -> Self {
        self.slice_size = Some(size);
        self
    }

    /// Serves an expired blob at once while one background fill fetches (or
    /// revalidates) it (default off: an expired blob is a miss).
    pub fn stale_while_revalidate(mut self, on: bool) -> Self {
        self.serve_stale = on;
        self
    }

    /// Whether processes of other users in the cache directory's group share the
    /// cache (default off: files and directories are the owner's only, 0600 and
    /// 0700). On, directories are 2770 (setgid, so new files keep the group) and files
    /// 0660, whatever the umask. Give the directory the group before building.
    pub fn group_shared(mut self, on: bool) -> Self {
        self.perms = if on { Perms::GROUP } else { Perms::OWNER };
        self
    }

    /// The clock that expiry and last-read times follow (default the system clock).
    pub fn clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Puts a shared tier below the local cache: an object store every host of a
    /// fleet reaches (S3, GCS, Azure, a shared volume), under `prefix`. On a local
    /// miss the local leader reads the tier's copy, or follows the parts another host
    /// uploads, or takes the key's fleet lease, fetches from the origin once and
    /// uploads the blob for the others. Every part and every blob is checked before a
    /// byte of it is returned; any trouble with the tier goes on from the origin with
    /// a warning (see the README's fleet section). The lease is taken over after
    /// [`stale_after`](Self::stale_after) without renewal. Needs a store with
    /// create-only writes (`PutMode::Create`).
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::sync::Arc;
    /// let bucket = Arc::new(object_store::memory::InMemory::new());
    /// let cache = readthrough::Cache::builder(dir.path())
    ///     .origin(readthrough::origin_fn(|_key: String| async { Ok::<_, std::io::Error>(b"x".to_vec()) }))
    ///     .shared_tier(bucket, "fleet")
    ///     .build()
    ///     .await?;
    /// cache.get("a").await?.bytes().await?;
    /// assert_eq!(cache.tier_entries().await?.len(), 1);
    /// # Ok(()) }
    /// ```
    #[cfg(feature = "object-store")]
    pub fn shared_tier(
        mut self,
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        prefix: impl AsRef<str>,
    ) -> Self {
        self.tier = Some(TierSettings::new(store, prefix.as_ref(), false));
        self
    }

    /// As [`shared_tier`](Self::shared_tier), for a tier others fill: its copies are
    /// read, and a miss goes to the origin without writing to the tier.
    #[cfg(feature = "object-store")]
    pub fn shared_tier_read_only(
        mut self,
        store: std::sync::Arc<dyn object_store::ObjectStore>,
        prefix: impl AsRef<str>,
    ) -> Self {
        self.tier = Some(TierSettings::new(store, prefix.as_ref(), true));
        self
    }

    /// The size of the parts a blob is uploaded to the shared tier in (default
    /// 8 MiB). A fleet leader keeps up to four parts in memory.
    #[cfg(feature = "object-store")]
    pub fn tier_part_size(mut self, bytes: u64) -> Self {
        if let Some(tier) = &mut self.tier {
            tier.part_size = bytes;
        }
        self
    }

    /// How long one call to the shared tier may take before the read goes on without
    /// the tier (default 10 s).
    #[cfg(feature = "object-store")]
    pub fn tier_timeout(mut self, timeout: Duration) -> Self {
        if let Some(tier) = &mut self.tier {
            tier.timeout = timeout;
        }
        self
    }

    /// The origin with the shared tier in front of it, and the tier, when there is one.
    #[cfg(feature = "object-store")]
    fn tiered(&self) -> Result<crate::tier::Wrapped> {
        let origin = self.origin.clone();
        let Some(tier) = self.tier.clone() else {
            return Ok((origin, None));
        };
        let life = Lifetimes {
            stale_after: self.stale_after,
            default_ttl: self.default_ttl,
            clock: Arc::clone(&self.clock),
        };
        tier.wrap(origin, life)
    }

    /// Opens the cache: creates its directories, checks it can write there, and checks
    /// that file locks exclude each other.
    ///
    /// # Errors
    /// [`Error::BadDirectory`] naming the path when the directory is a file, cannot be
    /// created, or cannot be written; [`Error::InvalidSetting`] for a staleness
    /// timeout under a millisecond, a zero default TTL, a zero size bound or a zero
    /// slice size.
    ///
    /// # Cancellation
    /// Safe to drop; at worst the directories exist.
    pub async fn build(self) -> Result<Cache> {
        if self.stale_after < Duration::from_millis(1) {
            return Err(Error::InvalidSetting("stale_after must be at least 1 ms"));
        }
        if self.default_ttl == Some(Duration::ZERO) {
            return Err(Error::InvalidSetting(
                "a default TTL of zero would store nothing servable",
            ));
        }
        if self.slice_size == Some(0) {
            return Err(Error::InvalidSetting(
                "a slice size must be at least 1 byte",
            ));
        }
        if self.max_bytes == Some(0) {
            return Err(Error::InvalidSetting(
                "max_bytes of zero would keep nothing",
            ));
        }
        let (want_locks, perms) = (self.file_locks, self.perms);
        let dir = self.root.clone();
        let (root, base, locking) = blocking(move || {
            Ok(dir::root(&dir, perms).and_then(|root| {
                let base = dir::base_of(&root);
                let locking = dir::open(&root, &base, want_locks, perms)?;
                Ok((root, base, locking))
            }))
        })
        .await
        .map_err(|e| dir::bad_dir(&self.root, "reach", e))??;
        let guard = base.join(TMP_DIR).join(BREAK_GUARD);
        #[cfg(feature = "object-store")]
        let (origin, tier) = self.tiered()?;
        #[cfg(not(feature = "object-store"))]
        let origin = self.origin;
        let cache = Cache::new(Engine::new(Settings {
            folder: Folder {
                root,
                base,
                perms,
                durability: self.durability,
                clock: self.clock,
            },
            layout: self.layout,
            origin,
            stale_after: self.stale_after,
            locks: LockSite {
                locking,
                perms,
                guard,
            },
            default_ttl: self.default_ttl,
            max_bytes: self.max_bytes,
            verify_on_read: self.verify_on_read,
            serve_stale: self.serve_stale,
            slice_size: self.slice_size,
        }));
        #[cfg(feature = "object-store")]
        let cache = cache.with_tier(tier);
        Ok(cache)
    }
}
