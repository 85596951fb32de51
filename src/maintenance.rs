//! Looking after a cache directory: [`Cache::entries`], [`Cache::status`],
//! [`Cache::prune`] and [`Cache::verify`], on a blocking thread over the store's
//! [`scan`].

use crate::cache::Cache;
use crate::error::Result;
use crate::store::entry::Entry;
use crate::store::scan::{self, CacheStatus, PrunePolicy, PruneReport};
use crate::store::verify::{self, VerifyReport};
use crate::sys::blocking_io;

impl Cache {
    /// Lists the stored entries, in no particular order. Metadata files that cannot be
    /// read or parsed are skipped.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) when the cache directory cannot be walked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.put("a", readthrough::Fetched::from(b"123".to_vec())).await?;
    /// let entries = cache.entries().await?;
    /// assert_eq!((entries[0].key.as_str(), entries[0].size), ("a", 3));
    /// # Ok(()) }
    /// ```
    pub async fn entries(&self) -> Result<Vec<Entry>> {
        let base = self.engine().base().to_owned();
        blocking_io("list", self.engine().base(), move || {
            scan::entries_in(&base)
        })
        .await
    }

    /// Counts entries, bytes, fills in progress and abandoned tmp files.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) when the cache directory cannot be walked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.put("a", readthrough::Fetched::from(b"123".to_vec())).await?;
    /// let status = cache.status().await?;
    /// assert_eq!((status.entries, status.bytes, status.fills_in_progress), (1, 3, 0));
    /// # Ok(()) }
    /// ```
    pub async fn status(&self) -> Result<CacheStatus> {
        let base = self.engine().base().to_owned();
        let (stale_after, locks) = (self.engine().stale_after(), self.engine().locks().clone());
        blocking_io("inspect", self.engine().base(), move || {
            scan::status(&base, stale_after, &locks)
        })
        .await
    }

    /// Removes abandoned files (tmp files no live fill writes and that are older than
    /// the staleness timeout, lock files of crashed fills, metadata without a blob),
    /// then expired entries, then the entries `policy` names: those stored longer ago
    /// than its age, then the least recently read until the stored bytes fit its
    /// budget. A fill in progress is never touched;
    /// readers of a removed blob finish reading it undisturbed. Last it removes the
    /// files of expired [named locks](crate::Values::lock), taking turns with the
    /// locks' takers so that no lock being taken is removed
    /// ([`PruneReport::named_locks_removed`]).
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) when the cache directory cannot be walked or a file cannot be
    /// removed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use readthrough::{Fetched, PrunePolicy};
    /// cache.put("a", Fetched::from(vec![0; 100])).await?;
    /// cache.put("b", Fetched::from(vec![0; 100])).await?;
    /// let report = cache.prune(&PrunePolicy::default().max_bytes(150)).await?;
    /// assert_eq!((report.removed.len(), report.bytes_freed), (1, 100));
    /// # Ok(()) }
    /// ```
    pub async fn prune(&self, policy: &PrunePolicy) -> Result<PruneReport> {
        let base = self.engine().base().to_owned();
        let (stale_after, locks) = (self.engine().stale_after(), self.engine().locks().clone());
        let (policy, now) = (policy.clone(), self.engine().clock().now());
        blocking_io("prune", self.engine().base(), move || {
            scan::prune(&base, stale_after, &locks, &policy, now)
        })
        .await
    }

    /// Re-reads every entry and checks its length and SHA-256 against its metadata.
    /// Corrupt entries are removed (the next read fetches them again) and reported.
    ///
    /// # Errors
    /// [`Error::Io`](crate::Error::Io) when the cache directory cannot be walked.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// cache.put("a", readthrough::Fetched::from(b"good".to_vec())).await?;
    /// std::fs::write(cache.path("a").await?, b"evil").unwrap();
    /// let report = cache.verify().await?;
    /// assert_eq!(report.corrupt[0].key, "a");
    /// assert!(!cache.contains("a").await?);
    /// # Ok(()) }
    /// ```
    pub async fn verify(&self) -> Result<VerifyReport> {
        let base = self.engine().base().to_owned();
        blocking_io("verify", self.engine().base(), move || {
            verify::verify(&base)
        })
        .await
    }
}

#[cfg(feature = "object-store")]
impl Cache {
    /// Lists the copies published in the shared tier, in no particular order (none
    /// without a tier). Copies that do not check out are left out.
    ///
    /// # Errors
    /// [`Error::Tier`](crate::Error::Tier) when the tier cannot be listed.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// assert!(cache.tier_entries().await?.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn tier_entries(&self) -> Result<Vec<crate::tier::TierEntry>> {
        match self.tier() {
            Some(tier) => tier.list().await,
            None => Ok(Vec::new()),
        }
    }

    /// Removes from the shared tier its expired copies, those published longer ago
    /// than `older_than`, those that do not check out, and the parts of generations
    /// that no manifest names and whose holders are gone. Copies being uploaded stay.
    ///
    /// # Errors
    /// [`Error::Tier`](crate::Error::Tier) when the tier cannot be listed or an object
    /// cannot be removed.
    ///
    /// # Cancellation
    /// Safe to drop: each object is removed or not; a copy loses its manifest first.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// let report = cache.tier_prune(Some(std::time::Duration::from_secs(86_400))).await?;
    /// assert!(report.removed.is_empty());
    /// # Ok(()) }
    /// ```
    pub async fn tier_prune(
        &self,
        older_than: Option<std::time::Duration>,
    ) -> Result<crate::tier::TierPruneReport> {
        match self.tier() {
            Some(tier) => tier.prune_copies(older_than).await,
            None => Ok(crate::tier::TierPruneReport::default()),
        }
    }
}
