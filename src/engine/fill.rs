//! The task behind each fill in this process: it takes the key's lock and leads (origin
//! to tmp file, verify, publish), or follows another process's fill and takes over
//! when that one dies or hangs.

use std::os::unix::fs::FileExt;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::FutureExt;
use sha2::{Digest, Sha256};
use tempfile::TempPath;
use tokio::sync::watch;

use crate::engine::evict;
use crate::engine::follow::{self, Followed};
use crate::engine::progress::{Fill, FillState, Role, Source};
use crate::engine::state::{Engine, wait_final};
use crate::error::{Error, Result};
use crate::origin::{Expiry, FetchOptions, Origin, guarded_fetch, guarded_next};
use crate::stats::add;
use crate::store::entry::{self, Standing, Stored};
use crate::store::layout::KeyPaths;
use crate::store::ledger;
use crate::store::lock::{self, Attempt, FillLock, LenInfo, LockInfo, Locking};
use crate::store::meta::{BlobId, EntryMeta};
use crate::store::names::TMP_SUFFIX;
use crate::sys::{self, blocking};

/// The most bytes gathered from a fast origin before they are written in one go.
const WRITE_BATCH: usize = 1 << 20;

/// What a fill is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Fetch the blob unless it is already stored; follow another process's fill.
    Fetch,
    /// Store the body whatever is there (a `put`); wait for other fills to end.
    Replace,
}

/// Starting fills: the map of running fills holds each weakly, so a fill that ends
/// leaves it, and a read after it opens the store.
impl Engine {
    /// Joins the fill of `key` running in this process, or starts one that fetches
    /// through `origin`. Returns its state, its origin, and whether this call started
    /// it.
    pub(super) fn join_or_start(
        self: &Arc<Self>,
        key: &str,
        paths: &KeyPaths,
        origin: Arc<dyn Origin>,
    ) -> (watch::Receiver<FillState>, Arc<dyn Origin>, bool) {
        let mut fills = self.fills.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(fill) = fills.get(key).and_then(Weak::upgrade) {
            add(&self.counters.fills_joined, 1);
            return (fill.state.subscribe(), Arc::clone(&fill.origin), false);
        }
        let state = self.start_fill(&mut fills, key, paths, Arc::clone(&origin), Mode::Fetch);
        (state, origin, true)
    }

    /// Starts a fill that replaces `key`'s blob with the one body `origin` gives, once
    /// no other fill of the key runs in this process.
    pub(super) async fn start_replace(
        self: &Arc<Self>,
        key: &str,
        paths: &KeyPaths,
        origin: Arc<dyn Origin>,
    ) -> Result<watch::Receiver<FillState>> {
        loop {
            let running = {
                let mut fills = self.fills.lock().unwrap_or_else(|e| e.into_inner());
                match fills.get(key).and_then(Weak::upgrade) {
                    Some(fill) => fill.state.subscribe(),
                    None => {
                        return Ok(self.start_fill(&mut fills, key, paths, origin, Mode::Replace));
                    }
                }
            };
            wait_final(running, key).await?;
        }
    }

    fn start_fill(
        self: &Arc<Self>,
        fills: &mut HashMap<String, Weak<Fill>>,
        key: &str,
        paths: &KeyPaths,
        origin: Arc<dyn Origin>,
        mode: Mode,
    ) -> watch::Receiver<FillState> {
        let fill = Fill::new(key, origin);
        fills.insert(key.to_owned(), Arc::downgrade(&fill));
        let state = fill.state.subscribe();
        tokio::spawn(drive(Arc::clone(self), fill, paths.clone(), mode));
        state
    }
}

/// Runs a fill to its end and publishes how it ended. Removes the fill from the
/// cache's map before the final state, so the next read after a success is a hit.
async fn drive(inner: Arc<Engine>, fill: Arc<Fill>, paths: KeyPaths, mode: Mode) {
    let outcome = run(&inner, &fill, &paths, mode).await;
    inner.forget(&fill);
    match outcome {
        Ok(done) => fill.publish(done),
        Err(error) => fill.publish(FillState::Failed(error)),
    }
}

async fn run(inner: &Arc<Engine>, fill: &Fill, paths: &KeyPaths, mode: Mode) -> Result<FillState> {
    let mut generation = 0;
    let mut counted_follow = false;
    loop {
        let lock_path = paths.lock.clone();
        let tmp_dir = paths.tmp_dir.clone();
        let (locks, perms) = (inner.locks.clone(), inner.folder.perms);
        let attempt =
            blocking(move || sys::in_dir(&tmp_dir, perms, || lock::try_lead(&lock_path, &locks)))
                .await
                .map_err(|e| Error::io("lock", &paths.lock, e))?;
        let (lock, stale_tmp) = match (attempt, mode) {
            (Attempt::Led(lock), _) => (lock, None),
            (Attempt::Busy(busy), Mode::Replace) => {
                match follow::wait_free(inner, paths, busy).await? {
                    Some(taken) => taken,
                    None => continue,
                }
            }
            (Attempt::Busy(busy), Mode::Fetch) => {
                if !counted_follow {
                    counted_follow = true;
                    add(&inner.counters.fills_followed, 1);
                    tracing::debug!(key = %fill.key, "following another process's fill");
                }
                match follow::follow(inner, fill, paths, busy, &mut generation).await? {
                    Followed::Complete { source, len } => {
                        return Ok(FillState::Complete {
                            source,
                            len,
                            role: Role::Follower,
                            stored: Ok(()),
                        });
                    }
                    Followed::TookOver { lock, stale_tmp } => (lock, stale_tmp),
                    Followed::Restart => continue,
                    Followed::Failed(message) => {
                        let reported =
                            format!("{message} (reported by the process that led the fill)");
                        return Err(Error::origin(&fill.key, reported.into()));
                    }
                }
            }
        };
        generation += 1;
        let mut current = None;
        if mode == Mode::Fetch {
            let found = {
                let paths = paths.clone();
                let inner = Arc::clone(inner);
                blocking(move || entry::open(&paths, &inner.metas)).await
            }
            .map_err(|e| Error::io("open", &paths.store, e))?;
            if let Some(stored) = found {
                match stored.standing(inner.folder.clock.now()) {
                    Standing::Fresh => {
                        return Ok(stored_state(stored, generation, Role::Found, Ok(())));
                    }
                    Standing::Expired {
                        validator: Some(validator),
                    } => current = Some((validator, stored)),
                    Standing::Expired { validator: None } => {}
                    Standing::Damaged(reason) => {
                        tracing::warn!(key = %fill.key, %reason, "replacing a damaged entry");
                    }
                }
            }
        }
        return lead(inner, fill, paths, lock, stale_tmp, generation, current).await;
    }
}

/// The final state of a fill whose body is the stored blob `stored`.
fn stored_state(stored: Stored, generation: u64, role: Role, result: Result<()>) -> FillState {
    let validator = stored.meta.as_ref().and_then(|meta| meta.validator.clone());
    FillState::Complete {
        source: Arc::new(Source {
            file: stored.file,
            generation,
            len: Some(stored.len),
            validator,
        }),
        len: stored.len,
        role,
        stored: result,
    }
}

/// Leads a fill while holding the key's lock.
async fn lead(
    inner: &Arc<Engine>,
    fill: &Fill,
    paths: &KeyPaths,
    lock: FillLock,
    stale_tmp: Option<String>,
    generation: u64,
    current: Option<(String, Stored)>,
) -> Result<FillState> {
    add(&inner.counters.fills_led, 1);
    tracing::debug!(key = %fill.key, "leading a fill");
    crate::failpoint::failpoint!("fill::lead");
    let heartbeat = Heartbeat::start(&lock, inner.stale_after);
    // The tmp files of a crashed or reclaimed leader. Without real locks another
    // process may be writing the one the lock file names, so it is left alone.
    let crashed = lock
        .previous_info()
        .filter(|_| inner.locks.locking == Locking::Flock);
    for unique in crashed.map(|info| info.tmp).into_iter().chain(stale_tmp) {
        let _ = std::fs::remove_file(paths.tmp_file(&unique));
    }
    let tmp = sys::in_dir(&paths.tmp_dir, inner.folder.perms, || {
        tempfile::Builder::new()
            .prefix(&paths.tmp_prefix)
            .suffix(TMP_SUFFIX)
            .rand_bytes(16)
            .permissions(std::os::unix::fs::PermissionsExt::from_mode(
                inner.folder.perms.file,
            ))
            .tempfile_in(&paths.tmp_dir)
    })
    .map_err(|e| Error::io("create a tmp file in", &paths.tmp_dir, e))?;
    inner.folder.perms.fix(tmp.as_file());
    let unique = unique_part(paths, tmp.path());
    let write_info = |len, failed| {
        let info = LockInfo {
            tmp: unique.clone(),
            len,
            failed,
        };
        lock.write_info(&info)
            .map_err(|e| Error::io("write", &paths.lock, e))
    };
    write_info(LenInfo::Pending, None)?;
    let (file, tmp_path) = tmp.into_parts();
    let revalidate = current.as_ref().map(|(validator, _)| validator.clone());
    let leading = Leading {
        inner,
        fill,
        tmp_path: &tmp_path,
        heartbeat: &heartbeat,
    };
    let filled = leading
        .fill_tmp(file, generation, revalidate, |len| write_info(len, None))
        .await;
    let (source, meta) = match filled {
        Ok(Filled::Body(source, meta)) => (source, meta),
        Ok(Filled::NotModified) => {
            let Some((_, stored)) = current else {
                return Err(Error::origin(
                    &fill.key,
                    "origin answered not-modified to a plain fetch".into(),
                ));
            };
            return Ok(refresh(inner, paths, (heartbeat, lock), stored, generation).await);
        }
        Err(error) => {
            if !error.is_local_disk() {
                // Followers in other processes report this instead of fetching again.
                let _ = write_info(LenInfo::Unknown, Some(error.to_string()));
            }
            return Err(error);
        }
    };
    let len = meta.size;
    let stored = publish(inner, paths, (heartbeat, lock), (tmp_path, &source), meta).await;
    if let Ok(total) = &stored {
        evict::after_publish(inner, *total);
    }
    let stored = stored.map(drop);
    Ok(FillState::Complete {
        source,
        len,
        role: Role::Leader,
        stored,
    })
}

/// A stored blob the origin confirmed current: its metadata is rewritten with a new
/// expiry, and the blob is kept. A leader whose lock was broken while it waited for
/// the origin writes nothing.
async fn refresh(
    inner: &Engine,
    paths: &KeyPaths,
    held: (Heartbeat, FillLock),
    stored: Stored,
    generation: u64,
) -> FillState {
    add(&inner.counters.revalidations, 1);
    let meta = EntryMeta::clone(stored.meta.as_ref().expect("an expired entry has metadata"));
    let mut meta = meta.bound_to(stored.blob);
    let ttl_ms = meta
        .ttl_ms
        .or(inner.default_ttl.map(crate::store::meta::millis));
    let now = inner.folder.clock.now();
    meta.expires_ms = ttl_ms.map(|ttl| crate::store::meta::unix_millis(now).saturating_add(ttl));
    let (paths_owned, durable, perms) = (paths.clone(), inner.folder.durable, inner.folder.perms);
    let key = meta.key.clone();
    let written = blocking(move || {
        let (heartbeat, lock) = held;
        let written = (|| {
            if !lock.is_current()? {
                return Ok(false);
            }
            let tmp = meta.prepare(&paths_owned.tmp_dir, durable, now, perms)?;
            if !lock.is_current()? {
                return Ok(false);
            }
            tmp.persist(&paths_owned.meta).map_err(|e| e.error)?;
            Ok(true)
        })();
        drop(heartbeat);
        drop(lock);
        written
    })
    .await;
    let written = match written {
        Ok(true) => {
            tracing::debug!(path = %paths.store.display(), "revalidated");
            Ok(())
        }
        Ok(false) => {
            tracing::warn!(%key, "this revalidation was reclaimed as stale by another process; not recording it");
            Err(Error::Reclaimed { key })
        }
        Err(e) => Err(Error::io("write", &paths.meta, e)),
    };
    stored_state(stored, generation, Role::Leader, written)
}

/// What filling a tmp file gave.
enum Filled {
    /// The body, in the tmp file as a fill source, and the entry's metadata.
    Body(Arc<Source>, EntryMeta),
    /// The origin confirmed the expired copy.
    NotModified,
}

/// What a leader works with while it fills the tmp file at `tmp_path`: its fill and
/// the heartbeat that keeps its files fresh.
struct Leading<'a> {
    inner: &'a Engine,
    fill: &'a Fill,
    tmp_path: &'a TempPath,
    heartbeat: &'a Heartbeat,
}

impl Leading<'_> {
    /// Fetches the body into the tmp file `file` (or asks the origin to confirm the copy
    /// whose validator is `revalidate`) and checks it. `announce_len` tells followers in
    /// other processes the promised length.
    async fn fill_tmp(
        &self,
        file: std::fs::File,
        generation: u64,
        revalidate: Option<String>,
        announce_len: impl Fn(LenInfo) -> Result<()>,
    ) -> Result<Filled> {
        let (inner, fill) = (self.inner, self.fill);
        let options = FetchOptions {
            revalidate,
            ..FetchOptions::default()
        };
        let fetched = guarded_fetch(fill.origin.as_ref(), &fill.key, options).await?;
        if fetched.not_modified {
            return Ok(Filled::NotModified);
        }
        if fetched.offset != 0 {
            return Err(Error::origin(
                &fill.key,
                "origin sent a range that was not asked for".into(),
            ));
        }
        announce_len(fetched.len.map_or(LenInfo::Unknown, LenInfo::Known))?;
        let source = Arc::new(Source {
            file,
            generation,
            len: fetched.len,
            validator: fetched.validator.clone(),
        });
        self.heartbeat.beat_tmp(Arc::clone(&source));
        fill.progress(&source, 0, Role::Leader);
        let (len, digest) = self.copy_body(&source, fetched.body, fetched.len).await?;
        if let Some(expected) = fetched.sha256
            && expected != digest
        {
            return Err(Error::DigestMismatch {
                key: fill.key.clone(),
                expected: hex::encode(expected),
                actual: hex::encode(digest),
            });
        }
        let ttl = match fetched.expiry {
            Expiry::Default => inner.default_ttl,
            Expiry::Never => None,
            Expiry::After(ttl) => Some(ttl),
        };
        let mut meta = EntryMeta::new(&fill.key, len, digest, inner.folder.clock.now(), ttl);
        meta.validator = fetched.validator;
        meta.content_type = fetched.content_type;
        Ok(Filled::Body(source, meta))
    }

    /// Copies the origin's body into the tmp file, publishing progress; returns the
    /// length and SHA-256 of what it wrote.
    async fn copy_body(
        &self,
        source: &Arc<Source>,
        mut body: futures::stream::BoxStream<'static, Result<Bytes, crate::BoxError>>,
        promised: Option<u64>,
    ) -> Result<(u64, [u8; 32])> {
        let (inner, fill, tmp_path) = (self.inner, self.fill, self.tmp_path);
        let key = &fill.key;
        let mut hasher = Sha256::new();
        let mut written = 0u64;
        loop {
            let first = guarded_next(&mut body, key).await?;
            // Gather what a fast origin has ready, so writes are few and large.
            let mut ended = first.is_none();
            let mut size = first.as_ref().map_or(0, Bytes::len);
            let mut batch: Vec<Bytes> = first.into_iter().collect();
            while !ended && size < WRITE_BATCH {
                match guarded_next(&mut body, key).now_or_never() {
                    Some(Ok(Some(chunk))) => {
                        size += chunk.len();
                        batch.push(chunk);
                    }
                    Some(Ok(None)) => ended = true,
                    Some(Err(e)) => return Err(e),
                    None => break,
                }
            }
            if let Some(promised) = promised
                && written + size as u64 > promised
            {
                return Err(Error::LengthMismatch {
                    key: key.clone(),
                    expected: promised,
                    actual: written + size as u64,
                });
            }
            if size > 0 {
                let file = Arc::clone(source);
                let offset = written;
                hasher = blocking(move || {
                    let mut at = offset;
                    for chunk in &batch {
                        file.file.write_all_at(chunk, at)?;
                        hasher.update(chunk);
                        at += chunk.len() as u64;
                    }
                    Ok(hasher)
                })
                .await
                .map_err(|e| Error::io("write", tmp_path.to_path_buf(), e))?;
                written += size as u64;
                add(&inner.counters.origin_bytes, size as u64);
                fill.progress(source, written, Role::Leader);
            }
            if ended {
                break;
            }
        }
        if let Some(promised) = promised
            && written != promised
        {
            return Err(Error::LengthMismatch {
                key: key.clone(),
                expected: promised,
                actual: written,
            });
        }
        if inner.folder.durable {
            let file = Arc::clone(source);
            blocking(move || {
                crate::failpoint::failpoint!("fill::sync");
                file.file.sync_data()
            })
            .await
            .map_err(|e| Error::io("sync", tmp_path.to_path_buf(), e))?;
        }
        Ok((written, hasher.finalize().into()))
    }
}

/// The name part that makes this tmp file unique (what followers are told).
fn unique_part(paths: &KeyPaths, tmp: &std::path::Path) -> String {
    let name = tmp.file_name().unwrap_or_default().to_string_lossy();
    name.strip_prefix(&paths.tmp_prefix)
        .and_then(|rest| rest.strip_suffix(TMP_SUFFIX))
        .unwrap_or_default()
        .to_owned()
}

/// Keeps a leader's files fresh for as long as it holds the lock, in a task of its
/// own, so that waiters in other processes can tell a live leader from a hung one
/// however long a single step takes (a slow origin, a write held up by the kernel, the
/// final flush, the publish). It refreshes the lock file, and the tmp file while the
/// body is written into it. Dropping it stops it at once.
struct Heartbeat {
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
    fn start(lock: &FillLock, stale_after: Duration) -> Self {
        let files = Arc::new(Mutex::new(Beating {
            lock: Some(lock.file()),
            tmp: None,
        }));
        // Half the staleness timeout, within bounds a timer can hold.
        let period = (stale_after / 2).clamp(Duration::from_millis(1), Duration::from_secs(3600));
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
    fn beat_tmp(&self, tmp: Arc<Source>) {
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

/// Moves a complete, checked tmp file into the store, adds it to the ledger and
/// releases the lock; returns the ledger's new total.
///
/// The order: the metadata, bound to the blob's identity, is written to a tmp file
/// of its own; then, if the lock is still this leader's, the blob is renamed into the store and
/// its metadata after it. A read that meets the old metadata with the new blob, or the
/// reverse, sees that they do not describe each other and looks again; a crash
/// between the two renames leaves a blob that no metadata describes, which is fetched
/// again, never served. A leader whose lock was broken while it hung does not
/// publish; a local disk failure is logged. Either way the body stays readable
/// through the tmp file's open handle.
async fn publish(
    inner: &Engine,
    paths: &KeyPaths,
    held: (Heartbeat, FillLock),
    (tmp_path, source): (TempPath, &Arc<Source>),
    meta: EntryMeta,
) -> Result<u64> {
    let (durable, base, now, perms) = (
        inner.folder.durable,
        inner.base().to_owned(),
        inner.folder.clock.now(),
        inner.folder.perms,
    );
    let key = meta.key.clone();
    let store = paths.store.clone();
    let paths = paths.clone();
    let size = meta.size;
    let source = Arc::clone(source);
    let published = blocking(move || {
        let (heartbeat, lock) = held;
        let meta = meta.bound_to(BlobId::of(&source.file.metadata()?));
        let store_dir = paths.store.parent().expect("store path has a parent");
        let meta_tmp = meta.prepare(&paths.tmp_dir, durable, now, perms)?;
        if !lock.is_current()? {
            return Ok(None);
        }
        let replaced = std::fs::symlink_metadata(&paths.store).map_or(0, |old| old.len());
        sys::in_dir(store_dir, perms, || {
            std::fs::rename(&tmp_path, &paths.store)
        })?;
        // The file is the store's now: dropping its tmp path must not remove it.
        let _ = tmp_path.keep();
        crate::failpoint::failpoint!("fill::renamed");
        meta_tmp.persist(&paths.meta).map_err(|e| e.error)?;
        if durable {
            sys::sync_dir(store_dir)?;
        }
        drop(heartbeat);
        drop(lock);
        let grown =
            i64::try_from(size).unwrap_or(i64::MAX) - i64::try_from(replaced).unwrap_or(i64::MAX);
        let total = ledger::record(&base, grown).unwrap_or_else(|e| {
            tracing::warn!(error = %e, "could not update the ledger of stored bytes");
            0
        });
        Ok(Some(total))
    })
    .await;
    match published {
        Ok(Some(total)) => {
            tracing::debug!(%key, "published");
            Ok(total)
        }
        Ok(None) => {
            tracing::warn!(%key, "this fill was reclaimed as stale by another process; not publishing it");
            Err(Error::Reclaimed { key })
        }
        Err(e) => {
            tracing::warn!(%key, error = %e, "could not publish a fill; serving it uncached");
            Err(Error::io("publish", store, e))
        }
    }
}
