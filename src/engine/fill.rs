//! The task behind each fill in this process: it takes the key's lock and leads (origin
//! to tmp file, verify, publish), or follows another process's fill and takes over
//! when that one dies or hangs.

use std::collections::HashMap;
use std::io;
use std::sync::{Arc, Weak};

use sha2::{Digest, Sha256};
use tokio::sync::watch;

use crate::engine::copy::Target;
use crate::engine::follow::{self, Followed};
use crate::engine::heartbeat::Heartbeat;
use crate::engine::progress::{Fill, FillState, Recent, Role, Source};
use crate::engine::publish;
use crate::engine::resume::Prefix;
use crate::engine::state::{Engine, wait_final};
use crate::error::{BoxError, Error, Result};
use crate::origin::{Expiry, FetchOptions, Fetched, Origin, guarded_fetch};
use crate::stats::add;
use crate::store::entry::{self, AfterRestart, Standing, Stored};
use crate::store::layout::KeyPaths;
use crate::store::lock::{self, Attempt, FillLock, Locking};
use crate::store::lock_info::{Failure, FailureKind, LenInfo, LockInfo};
use crate::store::meta::EntryMeta;
use crate::store::names::TMP_SUFFIX;
use crate::sys::{self, RootedPath, TmpFile, TmpPath, blocking_io};

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
        let (locks, perms) = (inner.settings.locks.clone(), inner.settings.folder.perms);
        let attempt = blocking_io("lock", &paths.lock, move || {
            tmp_dir.in_dir(perms, || lock::try_lead(&lock_path, &locks))
        })
        .await?;
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
                    Followed::Failed(failure) => return Err(reported(&fill.key, failure)),
                }
            }
        };
        generation += 1;
        let mut current = None;
        if mode == Mode::Fetch {
            match recheck(inner, fill, paths).await? {
                Recheck::Fresh(stored) => {
                    return Ok(FillState::stored(stored, generation, Role::Found, Ok(())));
                }
                Recheck::Expired(expired) => current = expired,
            }
        }
        return lead(inner, fill, paths, lock, stale_tmp, generation, current).await;
    }
}

/// The error a follower reports for the failure its leader recorded, of the same kind.
fn reported(key: &str, failure: Failure) -> Error {
    let message = format!(
        "{} (reported by the process that led the fill)",
        failure.message
    );
    let cause: BoxError = match failure.kind {
        FailureKind::NotFound => Box::new(io::Error::new(io::ErrorKind::NotFound, message)),
        FailureKind::Other => message.into(),
    };
    Error::origin(key, cause)
}

/// The failure a leader records for `error`, with its kind.
fn recorded(error: &Error) -> Failure {
    let kind = if error.is_not_found() {
        FailureKind::NotFound
    } else {
        FailureKind::Other
    };
    Failure {
        message: error.to_string(),
        kind,
    }
}

/// What the store holds for a key once its lock is taken.
enum Recheck {
    /// A servable blob (another process just published it).
    Fresh(Stored),
    /// Nothing servable; the expired blob and its validator, if the origin may
    /// confirm it.
    Expired(Option<(String, Stored)>),
}

/// Looks at the store again under the key's lock.
async fn recheck(inner: &Arc<Engine>, fill: &Fill, paths: &KeyPaths) -> Result<Recheck> {
    let (owned, engine) = (paths.clone(), Arc::clone(inner));
    let found = blocking_io("open", &paths.store, move || {
        let Some(stored) = entry::open(&owned, &engine.metas)? else {
            return Ok(None);
        };
        let fault = stored.after_restart()?;
        Ok(Some((stored, fault)))
    })
    .await?;
    let Some((stored, fault)) = found else {
        return Ok(Recheck::Expired(None));
    };
    let standing = match fault {
        AfterRestart::Damaged(reason) => Standing::Damaged(reason),
        AfterRestart::Unaffected | AfterRestart::Verified => {
            stored.standing(inner.settings.folder.clock.now())
        }
    };
    Ok(match standing {
        Standing::Fresh => Recheck::Fresh(stored),
        Standing::Expired {
            validator: Some(validator),
        } => Recheck::Expired(Some((validator, stored))),
        Standing::Expired { validator: None } => Recheck::Expired(None),
        Standing::Damaged(reason) => {
            tracing::warn!(key = %fill.key, %reason, "replacing a damaged entry");
            Recheck::Expired(None)
        }
    })
}

/// Leads a fill while holding the key's lock: resumes a dead leader's prefix when
/// the origin still serves its version, else fetches from the first byte (or asks
/// the origin to confirm the expired copy `current`).
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
    let heartbeat = Heartbeat::start(&lock, inner.settings.stale_after);
    // Without real locks another process may be writing the tmp file the lock file
    // names, so it is neither resumed nor removed.
    let dead = lock
        .previous_info()
        .filter(|_| inner.settings.locks.locking == Locking::Flock);
    let prefix = dead
        .clone()
        .filter(|_| current.is_none())
        .and_then(|info| Prefix::of_dead(paths, info));
    let keep = prefix.as_ref().map(|p| p.unique.as_str());
    let fresh = create_tmp(inner, paths, dead, stale_tmp, keep)?;
    let announce = Announce { lock: &lock, paths };
    let fresh_unique = unique_part(paths, fresh.path.path());
    announce.info(&fresh_unique, LenInfo::Pending, None, None)?;
    let options = fetch_options(current.as_ref(), prefix.as_ref());
    let fetched = guarded_fetch(fill.origin.as_ref(), &fill.key, options).await;
    let fetched = announce.failure(&fresh_unique, fetched)?;
    if fetched.not_modified {
        let Some((_, stored)) = current else {
            return Err(Error::origin(
                &fill.key,
                "origin answered not-modified to a plain fetch".into(),
            ));
        };
        return Ok(publish::refresh(inner, paths, (heartbeat, lock), stored, generation).await);
    }
    let tmp = match prefix {
        Some(prefix) if prefix.continued_by(&fetched) => Tmp::resumed(&fill.key, prefix).await?,
        other => {
            if let Some(prefix) = other {
                prefix.discard();
            }
            Tmp::fresh(fresh, fresh_unique)
        }
    };
    let unique = tmp.unique.clone();
    let leading = Leading {
        inner,
        fill,
        heartbeat: &heartbeat,
    };
    let filled = leading
        .fill_tmp(tmp, fetched, generation, |len, validator| {
            announce.info(&unique, len, validator, None)
        })
        .await;
    let (source, meta, tmp_path) = announce.failure(&unique, filled)?;
    Ok(publish::complete(inner, paths, (heartbeat, lock), (tmp_path, source), meta).await)
}

/// What to ask the origin for: to confirm the expired copy `current`, the rest of a
/// dead leader's `prefix`, or the whole body.
fn fetch_options(current: Option<&(String, Stored)>, prefix: Option<&Prefix>) -> FetchOptions {
    match (current, prefix) {
        (Some((validator, _)), _) => FetchOptions {
            revalidate: Some(validator.clone()),
            ..FetchOptions::default()
        },
        (None, Some(prefix)) => prefix.options(),
        (None, None) => FetchOptions::default(),
    }
}

/// Writes what followers in other processes read into the leader's lock file.
struct Announce<'a> {
    lock: &'a FillLock,
    paths: &'a KeyPaths,
}

impl Announce<'_> {
    fn info(
        &self,
        unique: &str,
        len: LenInfo,
        validator: Option<String>,
        failed: Option<Failure>,
    ) -> Result<()> {
        let info = LockInfo {
            tmp: unique.to_owned(),
            len,
            validator,
            failed,
        };
        self.lock
            .write_info(&info)
            .map_err(|e| Error::io("write", &self.paths.lock, e))
    }

    /// `result`, after recording its error (unless the local disk caused it), so
    /// followers in other processes report that error instead of fetching again.
    fn failure<T>(&self, unique: &str, result: Result<T>) -> Result<T> {
        if let Err(error) = &result
            && !error.is_local_disk()
        {
            let _ = self.info(unique, LenInfo::Unknown, None, Some(recorded(error)));
        }
        result
    }
}

/// Removes the tmp files of a crashed or reclaimed leader (`stale_tmp`, and the one
/// the `dead` leader's lock file names, unless it is `keep`, being resumed), and
/// creates this leader's own, uniquely named tmp file.
fn create_tmp(
    inner: &Engine,
    paths: &KeyPaths,
    dead: Option<LockInfo>,
    stale_tmp: Option<String>,
    keep: Option<&str>,
) -> Result<TmpFile> {
    for unique in dead.map(|info| info.tmp).into_iter().chain(stale_tmp) {
        if Some(unique.as_str()) != keep {
            let _ = paths.tmp_file(&unique).remove_if_there();
        }
    }
    let perms = inner.settings.folder.perms;
    paths
        .tmp_dir
        .in_dir(perms, || {
            sys::create_tmp(&paths.tmp_dir, &paths.tmp_prefix, TMP_SUFFIX, 16, perms)
        })
        .map_err(|e| Error::io("create a tmp file in", &paths.tmp_dir, e))
}

/// The tmp file a leader writes: a fresh one, or a dead leader's whose first `start`
/// bytes (hashed into `hasher`) it resumes after.
struct Tmp {
    unique: String,
    file: std::fs::File,
    path: TmpPath,
    start: u64,
    hasher: Sha256,
}

impl Tmp {
    fn fresh(tmp: TmpFile, unique: String) -> Self {
        let TmpFile { file, path } = tmp;
        Tmp {
            unique,
            file,
            path,
            start: 0,
            hasher: Sha256::new(),
        }
    }

    async fn resumed(key: &str, prefix: Prefix) -> Result<Self> {
        tracing::debug!(%key, from = prefix.len, "resuming a dead leader's fill");
        let (unique, start) = (prefix.unique.clone(), prefix.len);
        let (file, path, hasher) = prefix.adopt().await?;
        Ok(Tmp {
            unique,
            file,
            path,
            start,
            hasher,
        })
    }
}

/// What a leader works with while it fills its tmp file: its fill and the heartbeat
/// that keeps its files fresh.
struct Leading<'a> {
    inner: &'a Engine,
    fill: &'a Fill,
    heartbeat: &'a Heartbeat,
}

impl Leading<'_> {
    /// Writes the origin's answer `fetched` into `tmp` and checks it; returns the body
    /// as a fill source, the entry's metadata and the tmp file's path. `announce`
    /// tells followers in other processes the promised length and the validator.
    async fn fill_tmp(
        &self,
        tmp: Tmp,
        fetched: Fetched,
        generation: u64,
        announce: impl Fn(LenInfo, Option<String>) -> Result<()>,
    ) -> Result<(Arc<Source>, EntryMeta, TmpPath)> {
        let (inner, fill) = (self.inner, self.fill);
        if fetched.offset != tmp.start {
            return Err(Error::origin(
                &fill.key,
                "origin sent a range that was not asked for".into(),
            ));
        }
        let len = fetched.len.map_or(LenInfo::Unknown, LenInfo::Known);
        announce(len, fetched.validator.clone())?;
        let source = Arc::new(Source {
            file: tmp.file,
            generation,
            len: fetched.len,
            validator: fetched.validator.clone(),
            recent: Some(Recent::default()),
        });
        self.heartbeat.beat_tmp(Arc::clone(&source));
        fill.progress(&source, tmp.start, Role::Leader);
        let written = (tmp.start, tmp.hasher);
        let target = Target {
            inner,
            fill,
            source: &source,
            tmp_path: &tmp.path,
        };
        let (len, digest) = target.copy_body(written, fetched.body, fetched.len).await?;
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
            Expiry::Default => inner.settings.default_ttl,
            Expiry::Never => None,
            Expiry::After(ttl) => Some(ttl),
        };
        let now = inner.settings.folder.clock.now();
        let mut meta = EntryMeta::new(&fill.key, len, digest, now, ttl);
        meta.validator = fetched.validator;
        meta.content_type = fetched.content_type;
        Ok((source, meta, tmp.path))
    }
}

/// The name part that makes this tmp file unique (what followers are told).
fn unique_part(paths: &KeyPaths, tmp: &RootedPath) -> String {
    let name = tmp.file_name().unwrap_or_default().to_string_lossy();
    name.strip_prefix(&paths.tmp_prefix)
        .and_then(|rest| rest.strip_suffix(TMP_SUFFIX))
        .unwrap_or_default()
        .to_owned()
}
