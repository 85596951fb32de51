//! What the tier holds, and removing what it should no longer hold: `tier ls` and
//! `tier prune`.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use crate::tier::Tier;
use crate::tier::bucket::{Answer, Refusal};
use crate::tier::lease;
use crate::tier::names::{KeyObjects, generation_of};
use crate::tier::records::{LeaseState, Manifest};

/// A blob published in the shared tier. Listed by
/// [`Cache::tier_entries`](crate::Cache::tier_entries).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierEntry {
    /// The key.
    pub key: String,
    /// The blob's length.
    pub size: u64,
    /// When it was published.
    pub created: SystemTime,
    /// When it expires, if ever.
    pub expires: Option<SystemTime>,
    /// The origin's validator of this version.
    pub validator: Option<String>,
    /// The generation that uploaded it.
    pub generation: u64,
    /// The blob's SHA-256, in hex.
    pub sha256: String,
}

/// What [`Cache::tier_prune`](crate::Cache::tier_prune) removed from the tier.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct TierPruneReport {
    /// The keys whose copies were removed.
    pub removed: Vec<String>,
    /// Generations without a manifest whose parts were removed.
    pub orphans_removed: usize,
    /// The bytes of the objects removed.
    pub bytes_freed: u64,
}

fn time_of(ms: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms)
}

impl Tier {
    /// The key folders of the tier.
    async fn keys(&self) -> Answer<Vec<KeyObjects>> {
        let folders = self.bucket.folders(&self.prefix).await?;
        Ok(folders
            .iter()
            .filter_map(|folder| folder.filename())
            .filter(|id| id.len() == 64 && id.bytes().all(|b| b.is_ascii_hexdigit()))
            .map(|id| KeyObjects::of_id(&self.prefix, id))
            .collect())
    }

    async fn manifest(&self, objects: &KeyObjects) -> Answer<Option<Manifest>> {
        match self.bucket.get(&objects.manifest()).await {
            Ok(bytes) => Ok(Manifest::decode(&bytes, &objects.id)),
            Err(Refusal::Missing) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Removes the key's manifest if it is still that of `generation` (a newer copy
    /// may have replaced it meanwhile) or garbage.
    pub(crate) async fn drop_copy(&self, objects: &KeyObjects, generation: u64) -> Answer<()> {
        let at = objects.manifest();
        let bytes = match self.bucket.get(&at).await {
            Ok(bytes) => bytes,
            Err(Refusal::Missing) => return Ok(()),
            Err(e) => return Err(e),
        };
        if Manifest::decode(&bytes, &objects.id).is_none_or(|m| m.generation == generation) {
            self.bucket.delete(&at).await?;
        }
        Ok(())
    }

    /// Every copy that checks out, expired or not.
    pub(crate) async fn entries(&self) -> Answer<Vec<TierEntry>> {
        let mut entries = Vec::new();
        for objects in self.keys().await? {
            if let Some(manifest) = self.manifest(&objects).await? {
                entries.push(TierEntry {
                    key: manifest.name,
                    size: manifest.len,
                    created: time_of(manifest.created_ms),
                    expires: manifest.answer.expires_ms.map(time_of),
                    validator: manifest.answer.validator,
                    generation: manifest.generation,
                    sha256: manifest.sha256,
                });
            }
        }
        Ok(entries)
    }

    /// Removes expired copies, copies published longer ago than `older_than`, copies
    /// that do not check out, and the parts of generations no manifest names whose
    /// holders are gone (given up, or unrenewed for the staleness timeout).
    pub(crate) async fn prune(&self, older_than: Option<Duration>) -> Answer<TierPruneReport> {
        let now = self.now_ms();
        let cutoff = older_than
            .map(|age| now.saturating_sub(u64::try_from(age.as_millis()).unwrap_or(u64::MAX)));
        let mut report = TierPruneReport::default();
        for objects in self.keys().await? {
            let manifest = self.manifest(&objects).await?;
            let kept = manifest
                .as_ref()
                .filter(|m| !m.expired(now) && cutoff.is_none_or(|cutoff| m.created_ms > cutoff));
            if let (Some(manifest), None) = (&manifest, kept) {
                self.bucket.delete(&objects.manifest()).await?;
                report.removed.push(manifest.name.clone());
            }
            let named = kept.map(|m| m.generation);
            for generation in self.generations(&objects).await? {
                if Some(generation) != named && self.gone(&objects, generation).await? {
                    report.bytes_freed += self
                        .bucket
                        .delete_all(&objects.generation(generation))
                        .await?;
                    report.orphans_removed +=
                        usize::from(manifest.as_ref().is_none_or(|m| m.generation != generation));
                }
            }
        }
        Ok(report)
    }

    async fn generations(&self, objects: &KeyObjects) -> Answer<Vec<u64>> {
        let folder = objects.generations();
        let mut generations: Vec<u64> = self
            .bucket
            .folders(&folder)
            .await?
            .iter()
            .filter_map(|path| generation_of(&folder, path))
            .collect();
        generations.dedup();
        Ok(generations)
    }

    /// Whether the holder of `generation` is gone: its lease ended, is missing, or
    /// was last written longer ago than the staleness timeout (by the store's clock).
    async fn gone(&self, objects: &KeyObjects, generation: u64) -> Answer<bool> {
        match lease::read(self, objects, generation).await {
            Ok(lease) if lease.state != LeaseState::Running => return Ok(true),
            Ok(_) => {}
            Err(Refusal::Missing) => return Ok(true),
            Err(e) => return Err(e),
        }
        let written = self.bucket.head(&objects.lease(generation)).await?;
        let written_ms = u64::try_from(written.last_modified.timestamp_millis()).unwrap_or(0);
        let age = Duration::from_millis(self.now_ms().saturating_sub(written_ms));
        Ok(age >= self.stale_after)
    }
}
