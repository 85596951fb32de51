//! Walking the store: listing its entries, its status, removing, evicting and pruning,
//! as plain functions over the format folder. They walk the whole folder
//! (all but the front-ends' folders, which are not the store's), so they work for any
//! layout, and they cost a read of every metadata file: they are for tools, schedules
//! and background eviction, never for the read path.

use std::fs::TryLockError;
use std::io;
use std::time::{Duration, SystemTime};

use crate::store::entry::{Entry, entry_of, entry_with_blob};
use crate::store::ledger;
use crate::store::lock::{self, LockSite, LockState};
use crate::store::meta::BlobId;
use crate::store::named_locks;
use crate::store::names::{
    BREAK_GUARD, EVICTING, FRONT_END_DIRS, LEDGER, LOCK_SUFFIX, META_SUFFIX, TMP_SUFFIX,
};
use crate::store::sliced::{self, Gathered};
use crate::sys::{Kind, RootedPath};

/// How a cache directory is doing. Made by [`Cache::status`](crate::Cache::status).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CacheStatus {
    /// Stored blobs.
    pub entries: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Fills whose lock is held now, by any process.
    pub fills_in_progress: u64,
    /// Tmp files no live fill is writing (left by crashed or reclaimed fills).
    pub abandoned_tmp_files: u64,
    /// Their bytes.
    pub abandoned_bytes: u64,
}

/// What [`Cache::prune`](crate::Cache::prune) removes besides abandoned files. The default removes only
/// abandoned tmp, lock and metadata files.
///
/// ```
/// use std::time::Duration;
/// let policy = readthrough::PrunePolicy::default()
///     .max_bytes(10 << 30)
///     .older_than(Duration::from_secs(7 * 86400));
/// assert_eq!(policy.max_bytes, Some(10 << 30));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PrunePolicy {
    /// Remove the least recently read entries until the stored bytes are at most this.
    pub max_bytes: Option<u64>,
    /// Remove entries stored longer ago than this.
    pub older_than: Option<Duration>,
}

impl PrunePolicy {
    /// Sets [`max_bytes`](Self::max_bytes).
    #[must_use]
    pub fn max_bytes(mut self, bytes: u64) -> Self {
        self.max_bytes = Some(bytes);
        self
    }

    /// Sets [`older_than`](Self::older_than).
    #[must_use]
    pub fn older_than(mut self, age: Duration) -> Self {
        self.older_than = Some(age);
        self
    }
}

/// What [`Cache::prune`](crate::Cache::prune) removed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct PruneReport {
    /// The entries removed.
    pub removed: Vec<Entry>,
    /// The bytes freed: removed entries and abandoned tmp files.
    pub bytes_freed: u64,
    /// Abandoned tmp files removed.
    pub tmp_files_removed: u64,
    /// Lock files of crashed fills removed.
    pub lock_files_removed: u64,
    /// Blobs without metadata of their own removed (left by a crash, or by a removal,
    /// while they were being published).
    pub orphans_removed: u64,
    /// Files of expired [named locks](crate::Values::lock) removed (and of damaged
    /// ones). None while another task or process is taking a lock or saving a value
    /// through [`Values`](crate::Values): the next prune removes them then.
    pub named_locks_removed: u64,
}

/// The files of a format folder, by kind.
#[derive(Default)]
pub(super) struct Files {
    pub(super) metas: Vec<RootedPath>,
    locks: Vec<RootedPath>,
    parts: Vec<RootedPath>,
    pub(super) blobs: Vec<RootedPath>,
}

/// Sorts the files under `dir` into `files`, passing over the folder `skip`.
fn walk(dir: &RootedPath, skip: &[RootedPath], files: &mut Files) -> io::Result<()> {
    for listed in dir.list()? {
        let path = listed.path;
        if listed.kind == Kind::Dir {
            if !skip.contains(&path) {
                walk(&path, skip, files)?;
            }
        } else if listed.kind == Kind::File {
            let name = path.file_name().unwrap_or_default().to_string_lossy();
            if [BREAK_GUARD, LEDGER, EVICTING].contains(&name.as_ref()) {
                continue;
            }
            let list = if name.ends_with(META_SUFFIX) {
                &mut files.metas
            } else if name.ends_with(LOCK_SUFFIX) {
                &mut files.locks
            } else if name.ends_with(TMP_SUFFIX) {
                &mut files.parts
            } else {
                &mut files.blobs
            };
            list.push(path);
        }
    }
    Ok(())
}

/// The blob a metadata file describes.
pub(super) fn blob_of(meta: &RootedPath) -> RootedPath {
    meta.with_extension("")
}

/// How long since `path` was modified; `None` when it is gone (another process may
/// be pruning too).
fn age(path: &RootedPath) -> io::Result<Option<Duration>> {
    let Some(meta) = path.stat()? else {
        return Ok(None);
    };
    Ok(Some(
        SystemTime::now()
            .duration_since(meta.modified()?)
            .unwrap_or_default(),
    ))
}

/// The length of `path`, 0 when it is gone.
fn len_of(path: &RootedPath) -> io::Result<u64> {
    Ok(path.stat()?.map_or(0, |meta| meta.len()))
}

/// The lock file that coordinates the fill a tmp file belongs to:
/// `<stem>.<unique>.part` belongs to `<stem>.lock`, and the unique part.
fn lock_of(part: &RootedPath) -> Option<(RootedPath, String)> {
    let name = part.file_name()?.to_str()?.strip_suffix(TMP_SUFFIX)?;
    let (stem, unique) = name.rsplit_once('.')?;
    Some((
        part.with_file_name(format!("{stem}{LOCK_SUFFIX}")),
        unique.to_owned(),
    ))
}

/// Whether a tmp file is one no live fill writes: no holder of its lock names it,
/// and it has not been touched for the staleness timeout.
fn abandoned(part: &RootedPath, stale_after: Duration, locks: &LockSite) -> io::Result<bool> {
    if age(part)?.is_none_or(|age| age <= stale_after) {
        return Ok(false);
    }
    let Some((lock_path, unique)) = lock_of(part) else {
        return Ok(true);
    };
    Ok(match lock::inspect(&lock_path, locks)? {
        LockState::Held(info) => info.is_none_or(|info| info.tmp != unique),
        LockState::Free(lock) => {
            lock.keep();
            true
        }
        LockState::Missing => true,
    })
}

/// Counts entries, bytes, fills in progress and abandoned tmp files under `base`.
pub(crate) fn status(
    base: &RootedPath,
    stale_after: Duration,
    locks: &LockSite,
) -> io::Result<CacheStatus> {
    let files = scan(base)?;
    let mut status = CacheStatus::default();
    for gathered in gathered_in(base, &files.metas) {
        status.entries += 1;
        status.bytes = status.bytes.saturating_add(gathered.entry.stored);
    }
    for lock_path in &files.locks {
        match lock::inspect(lock_path, locks)? {
            LockState::Held(_) => status.fills_in_progress += 1,
            LockState::Free(lock) => lock.keep(),
            LockState::Missing => {}
        }
    }
    for part in &files.parts {
        if abandoned(part, stale_after, locks)? {
            status.abandoned_tmp_files += 1;
            status.abandoned_bytes = status.abandoned_bytes.saturating_add(len_of(part)?);
        }
    }
    Ok(status)
}

/// The files of the blob store under `base`; the idempotency records and the named
/// locks are not its.
pub(super) fn scan(base: &RootedPath) -> io::Result<Files> {
    let mut files = Files::default();
    let skip = FRONT_END_DIRS.map(|dir| base.join(dir));
    walk(base, &skip, &mut files)?;
    Ok(files)
}

/// The entries stored under `base`, a sliced blob as one.
pub(crate) fn entries_in(base: &RootedPath) -> io::Result<Vec<Entry>> {
    let files = scan(base)?;
    Ok(gathered_in(base, &files.metas)
        .into_iter()
        .map(|gathered| gathered.entry)
        .collect())
}

/// The entries the metadata files `metas` describe, gathered by blob key.
fn gathered_in(base: &RootedPath, metas: &[RootedPath]) -> Vec<Gathered> {
    let stored = metas.iter().filter_map(entry_of).collect();
    sliced::gather(stored, |manifest| sliced::read_manifest(base, manifest))
}

/// What an eviction removed.
#[derive(Debug, Default)]
pub(crate) struct Evicted {
    /// The entries removed (a sliced blob as one).
    pub(crate) removed: Vec<Entry>,
    /// The blob files removed.
    pub(crate) files: u64,
    /// Their bytes.
    pub(crate) freed: u64,
    /// The bytes left.
    pub(crate) left: u64,
}

/// Removes the least recently read of `entries`, each with all its files, until
/// they hold at most `budget` bytes.
pub(crate) fn evict_lru(
    base: &RootedPath,
    mut entries: Vec<Gathered>,
    budget: u64,
) -> io::Result<Evicted> {
    entries.sort_by_key(|gathered| gathered.entry.last_read);
    let left = entries
        .iter()
        .map(|g| g.entry.stored)
        .fold(0, u64::saturating_add);
    let mut evicted = Evicted {
        left,
        ..Evicted::default()
    };
    for gathered in entries {
        if evicted.left <= budget {
            break;
        }
        evicted.left = evicted.left.saturating_sub(gathered.entry.stored);
        remove_gathered(base, gathered, &mut evicted)?;
    }
    Ok(evicted)
}

/// Removes each file of `gathered` that is still as it was listed, recording it in
/// `evicted`.
fn remove_gathered(base: &RootedPath, gathered: Gathered, evicted: &mut Evicted) -> io::Result<()> {
    let mut any = false;
    for file in &gathered.files {
        if remove_if_unchanged(base, file)? {
            any = true;
            evicted.files += 1;
            evicted.freed = evicted.freed.saturating_add(file.size);
        }
    }
    if any {
        evicted.removed.push(gathered.entry);
    }
    Ok(())
}

pub(crate) fn prune(
    base: &RootedPath,
    stale_after: Duration,
    locks: &LockSite,
    policy: &PrunePolicy,
    now: SystemTime,
) -> io::Result<PruneReport> {
    let files = scan(base)?;
    let mut report = PruneReport::default();
    for part in &files.parts {
        if abandoned(part, stale_after, locks)? {
            let size = len_of(part)?;
            if part.remove_if_there()? {
                report.tmp_files_removed += 1;
                report.bytes_freed = report.bytes_freed.saturating_add(size);
            }
        }
    }
    for lock_path in &files.locks {
        if age(lock_path)?.is_some_and(|age| age > stale_after)
            && let LockState::Free(held) = lock::inspect(lock_path, locks)?
        {
            // Dropping a held lock removes its file while it is still locked, so a
            // process that opened it meanwhile sees it replaced and starts over.
            drop(held);
            report.lock_files_removed += 1;
        }
    }
    let mut described = std::collections::HashSet::new();
    let mut listed = Vec::new();
    for meta in &files.metas {
        let Some(entry) = entry_of(meta) else {
            if blob_of(meta).stat()?.is_none() && age(meta)?.is_some_and(|age| age > stale_after) {
                meta.remove_if_there()?;
            }
            continue;
        };
        described.insert(blob_of(meta).rel().to_owned());
        listed.push(entry);
    }
    let (kept, mut gone) = remove_old(base, listed, policy, now)?;
    // Blobs no metadata describes: left by a crash or a removal between a publish's
    // two renames. A publish renames its metadata an instant after its blob, so only
    // ones older than the staleness timeout are removed.
    for blob in files.blobs.iter().filter(|b| !described.contains(b.rel())) {
        let size = len_of(blob)?;
        if age(blob)?.is_some_and(|age| age > stale_after) && remove_entry(base, blob)? {
            report.orphans_removed += 1;
            report.bytes_freed = report.bytes_freed.saturating_add(size);
        }
    }
    if let Some(max) = policy.max_bytes {
        let evicted = evict_lru(base, kept, max)?;
        gone.freed = gone.freed.saturating_add(evicted.freed);
        gone.removed.extend(evicted.removed);
    }
    report.bytes_freed = report.bytes_freed.saturating_add(gone.freed);
    report.removed = gone.removed;
    report.named_locks_removed = named_locks::prune_expired(base, now)?;
    Ok(report)
}

/// Gathers `listed` by blob and removes the blobs expired at `now` or older than
/// `policy` allows; returns the others, and what it removed.
fn remove_old(
    base: &RootedPath,
    listed: Vec<Entry>,
    policy: &PrunePolicy,
    now: SystemTime,
) -> io::Result<(Vec<Gathered>, Evicted)> {
    let mut kept = Vec::new();
    let mut gone = Evicted::default();
    for gathered in sliced::gather(listed, |m| sliced::read_manifest(base, m)) {
        let entry = &gathered.entry;
        let expired = entry.expires.is_some_and(|at| at <= now);
        let too_old = policy
            .older_than
            .is_some_and(|age| now.duration_since(entry.created).unwrap_or_default() > age);
        if expired || too_old {
            remove_gathered(base, gathered, &mut gone)?;
        } else {
            kept.push(gathered);
        }
    }
    Ok((kept, gone))
}

/// Removes a blob and its metadata, and takes its bytes off the ledger; returns
/// whether the blob was there.
pub(crate) fn remove_entry(base: &RootedPath, blob: &RootedPath) -> io::Result<bool> {
    let size = len_of(blob)?;
    let existed = blob.remove_if_there()?;
    meta_of(blob).remove_if_there()?;
    if existed {
        ledger::record(base, -i64::try_from(size).unwrap_or(i64::MAX))?;
    }
    Ok(existed)
}

/// Removes the entry at `blob` only if the blob there is still the file `id`, so a
/// blob published since it was read is kept; returns whether it removed it. (The
/// check and the removal are two steps: a publish in between is lost, as it would be
/// to a removal an instant later.)
pub(crate) fn remove_blob(base: &RootedPath, blob: &RootedPath, id: BlobId) -> io::Result<bool> {
    match blob.stat()? {
        Some(stat) if BlobId::of(&stat) == id => remove_entry(base, blob),
        _ => Ok(false),
    }
}

/// Removes `entry` if it is still as it was listed (a scan may be old by the time
/// eviction reaches an entry: one read or published since is kept).
fn remove_if_unchanged(base: &RootedPath, entry: &Entry) -> io::Result<bool> {
    let Some(path) = &entry.path else {
        return Ok(false);
    };
    let blob = base.locate(path)?;
    match entry_with_blob(&meta_of(&blob)) {
        Some((now, id)) if now == *entry => remove_blob(base, &blob, id),
        _ => Ok(false),
    }
}

/// The metadata file of the blob at `blob`.
fn meta_of(blob: &RootedPath) -> RootedPath {
    let mut name = blob.file_name().unwrap_or_default().to_owned();
    name.push(META_SUFFIX);
    blob.with_file_name(name)
}

/// The share of the bound that eviction brings the cache down to, in percent.
const LOW_WATER_PERCENT: u64 = 90;

/// Removes the least recently read entries until the cache holds at most the
/// low-water mark of `max`, unless another process is evicting already. Returns the
/// number of entries removed.
pub(crate) fn evict(base: &RootedPath, max: u64) -> io::Result<usize> {
    let guard = ledger::open(base, EVICTING)?;
    match guard.try_lock() {
        Ok(()) => {}
        Err(TryLockError::WouldBlock) => return Ok(0),
        Err(TryLockError::Error(e)) => return Err(e),
    }
    let before = ledger::current(base)?;
    let entries = gathered_in(base, &scan(base)?.metas);
    let low_water = max / 100 * LOW_WATER_PERCENT;
    let evicted = evict_lru(base, entries, low_water)?;
    ledger::correct(base, before, evicted.files, evicted.left)?;
    tracing::debug!(
        removed = evicted.removed.len(),
        total = evicted.left,
        "evicted to the low-water mark"
    );
    Ok(evicted.removed.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Cache, Fetched};

    async fn cache() -> (tempfile::TempDir, Cache) {
        let dir = tempfile::tempdir().unwrap();
        let cache = Cache::builder(dir.path()).durable(false).build().await;
        (dir, cache.unwrap())
    }

    #[tokio::test]
    async fn eviction_keeps_an_entry_published_again_since_the_scan() {
        let (dir, cache) = cache().await;
        for key in ["a", "b"] {
            cache.put(key, Fetched::from(vec![1; 100])).await.unwrap();
        }
        let base = RootedPath::make_root(dir.path(), crate::sys::Perms::OWNER)
            .unwrap()
            .join("v1");
        let listed = gathered_in(&base, &scan(&base).unwrap().metas);
        cache.put("a", Fetched::from(vec![2; 100])).await.unwrap();
        let evicted = evict_lru(&base, listed, 0).unwrap();
        let removed: Vec<&str> = evicted.removed.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(removed, ["b"]);
        let left = cache.read("a").await.unwrap().expect("kept");
        assert_eq!(left.bytes().await.unwrap(), vec![2; 100]);
    }

    #[tokio::test]
    async fn verify_leaves_a_blob_its_metadata_does_not_name_yet() {
        let (dir, cache) = cache().await;
        cache.put("a", Fetched::from(vec![1; 100])).await.unwrap();
        // A publish between its two renames: the new blob is in, its metadata not yet.
        let blob = cache.path("a").await.unwrap();
        let next = dir.path().join("next");
        std::fs::write(&next, vec![2; 100]).unwrap();
        std::fs::rename(&next, &blob).unwrap();
        let root = RootedPath::make_root(dir.path(), crate::sys::Perms::OWNER).unwrap();
        let report = crate::store::verify::verify(&root.join("v1")).unwrap();
        assert!(report.corrupt.is_empty(), "{report:?}");
        assert_eq!(
            std::fs::read(&blob).unwrap(),
            vec![2; 100],
            "the blob is kept"
        );
    }

    #[tokio::test]
    async fn metadata_behind_a_symlink_is_not_read() {
        let (dir, cache) = cache().await;
        cache.put("a", Fetched::from(vec![1; 10])).await.unwrap();
        let root = RootedPath::make_root(dir.path(), crate::sys::Perms::OWNER).unwrap();
        let meta = meta_of(&root.locate(&cache.path("a").await.unwrap()).unwrap()).path();
        let elsewhere = dir.path().join("planted");
        std::fs::rename(&meta, &elsewhere).unwrap();
        std::os::unix::fs::symlink(&elsewhere, &meta).unwrap();
        assert_eq!(cache.metadata("a").await.unwrap(), None);
        assert!(cache.entries().await.unwrap().is_empty());
    }
}
