//! Following a fill that another process leads: tail its tmp file, notice when it is
//! published, and take over when its leader dies (the lock frees) or hangs (its files
//! stop being refreshed for the staleness timeout).

use std::io;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use crate::engine::progress::{Fill, Role, Source};
use crate::engine::state::Engine;
use crate::error::Result;
use crate::stats::add;
use crate::store::layout::KeyPaths;
use crate::store::lock::{Attempt, Busy, FillLock, Take};
use crate::store::lock_info::{Failure, LenInfo, LockInfo};
use crate::sys::{self, FileId, blocking_io};

/// The first pause between looks at another process's fill; it doubles up to
/// [`MAX_POLL`] while nothing changes.
const FIRST_POLL: Duration = Duration::from_millis(1);
const MAX_POLL: Duration = Duration::from_millis(8);

/// How following another process's fill ended.
pub(super) enum Followed {
    /// The leader published; `source` is the stored blob.
    Complete { source: Arc<Source>, len: u64 },
    /// The leader died or hung; this process holds the lock now. `stale_tmp` names
    /// the hung leader's tmp file, to remove.
    TookOver {
        lock: FillLock,
        stale_tmp: Option<String>,
    },
    /// The lock file went away or was replaced: look again from the start.
    Restart,
    /// The leader's origin failed; this is the error it recorded.
    Failed(Failure),
}

/// Follows the fill behind `busy`: tails its tmp file, publishing its progress to this
/// process's readers.
pub(super) async fn follow(
    inner: &Arc<Engine>,
    fill: &Fill,
    paths: &KeyPaths,
    busy: Busy,
    generation: &mut u64,
) -> Result<Followed> {
    let mut watch = Watch::new(busy);
    let mut pause = FIRST_POLL;
    loop {
        let next_generation = *generation + 1;
        match look(inner, paths, watch, true, next_generation).await? {
            Seen::Complete { source, len } => return Ok(Followed::Complete { source, len }),
            Seen::Free(lock) => {
                return Ok(Followed::TookOver {
                    lock,
                    stale_tmp: None,
                });
            }
            Seen::Reclaimed { lock, stale_tmp } => {
                return Ok(Followed::TookOver { lock, stale_tmp });
            }
            Seen::Gone => return Ok(Followed::Restart),
            Seen::Failed(failure) => return Ok(Followed::Failed(failure)),
            Seen::Waiting { watch: w, grew } => {
                watch = w;
                if let Some((_, source)) = &watch.tmp {
                    *generation = (*generation).max(source.generation);
                    if grew {
                        fill.progress(source, watch.written, Role::Follower);
                        pause = FIRST_POLL;
                    }
                }
            }
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// Waits, without reading its bytes, until another process's fill ends; returns the
/// lock (and a hung leader's tmp name), or `None` to start over.
pub(super) async fn wait_free(
    inner: &Arc<Engine>,
    paths: &KeyPaths,
    busy: Busy,
) -> Result<Option<(FillLock, Option<String>)>> {
    let mut watch = Watch::new(busy);
    let mut pause = FIRST_POLL;
    loop {
        match look(inner, paths, watch, false, 0).await? {
            Seen::Free(lock) => return Ok(Some((lock, None))),
            Seen::Reclaimed { lock, stale_tmp } => return Ok(Some((lock, stale_tmp))),
            Seen::Gone | Seen::Failed(_) | Seen::Complete { .. } => return Ok(None),
            Seen::Waiting { watch: w, .. } => watch = w,
        }
        tokio::time::sleep(pause).await;
        pause = (pause * 2).min(MAX_POLL);
    }
}

/// What a follower knows of another process's fill between looks.
struct Watch {
    busy: Busy,
    /// The leader's tmp file (its unique name and open handle), once opened.
    tmp: Option<(String, Arc<Source>)>,
    /// How many of its bytes are known to be written.
    written: u64,
    /// The leader's last heartbeat seen, and when (on this process's monotonic clock)
    /// it was first seen.
    beat: Option<(Beat, Instant)>,
}

impl Watch {
    fn new(busy: Busy) -> Self {
        Watch {
            busy,
            tmp: None,
            written: 0,
            beat: None,
        }
    }

    /// How long the leader's heartbeat has stood still, as far as this watch has seen:
    /// measured on the monotonic clock from the first look at its latest value, so a
    /// step of the wall clock neither hides a hung leader nor condemns a live one.
    fn stillness(&mut self, beat: Beat) -> Duration {
        match self.beat {
            Some((seen, since)) if seen == beat => since.elapsed(),
            _ => {
                self.beat = Some((beat, Instant::now()));
                Duration::ZERO
            }
        }
    }
}

enum Seen {
    Waiting {
        watch: Watch,
        grew: bool,
    },
    Complete {
        source: Arc<Source>,
        len: u64,
    },
    Free(FillLock),
    Reclaimed {
        lock: FillLock,
        stale_tmp: Option<String>,
    },
    Gone,
    Failed(Failure),
}

/// One look at the other process's fill, on a blocking thread.
async fn look(
    inner: &Arc<Engine>,
    paths: &KeyPaths,
    watch: Watch,
    read_tmp: bool,
    next_generation: u64,
) -> Result<Seen> {
    let paths_owned = paths.clone();
    let inner = Arc::clone(inner);
    blocking_io("follow the fill at", &paths.lock, move || {
        look_now(&inner, &paths_owned, watch, read_tmp, next_generation)
    })
    .await
}

fn look_now(
    inner: &Engine,
    paths: &KeyPaths,
    mut watch: Watch,
    read_tmp: bool,
    next_generation: u64,
) -> io::Result<Seen> {
    crate::failpoint::failpoint!("follow::look");
    let mut grew = false;
    if read_tmp {
        match tail_tmp(paths, &mut watch, next_generation)? {
            Tailing::Complete { source, len } => return Ok(Seen::Complete { source, len }),
            Tailing::Grew(more) => grew = more,
        }
    }
    // A leader whose origin failed records why before it lets go of the lock.
    watch.busy = match watch.busy.try_claim(&inner.settings.locks)? {
        Take::Taken(lock) => return Ok(failed_or(lock.previous_info(), Seen::Free(lock))),
        Take::Gone(old) => return Ok(failed_or(old.info(), Seen::Gone)),
        Take::Held(busy) => busy,
    };
    if !watch.busy.is_current()? {
        // Removed by a leader that has not closed it yet: it may have failed.
        return Ok(failed_or(watch.busy.info(), Seen::Gone));
    }
    let beat = Beat::of(&watch.busy, paths)?;
    if watch.stillness(beat) > inner.settings.stale_after {
        let stale_tmp = watch.busy.info().map(|info| info.tmp);
        let still = |busy: &Busy| Ok(Beat::of(busy, paths)? == beat);
        match watch.busy.break_stale(&inner.settings.locks, still)? {
            Attempt::Led(lock) => {
                tracing::warn!(lock = %paths.lock, "reclaimed a fill that made no progress");
                add(&inner.counters.stale_reclaims, 1);
                return Ok(Seen::Reclaimed { lock, stale_tmp });
            }
            Attempt::Busy(busy) => watch.busy = busy,
        }
    }
    Ok(Seen::Waiting { watch, grew })
}

/// What one look at the leader's tmp file found.
enum Tailing {
    /// The store names the tmp file now: the fill is complete, `len` bytes.
    Complete { source: Arc<Source>, len: u64 },
    /// Whether more of it landed (or a new tmp file was opened) since the last look.
    Grew(bool),
}

/// Opens the tmp file the lock file names (once the origin answered), and sees how
/// far it has grown or whether it was published.
fn tail_tmp(paths: &KeyPaths, watch: &mut Watch, next_generation: u64) -> io::Result<Tailing> {
    let mut grew = false;
    if let Some(info) = watch.busy.info() {
        let known = watch
            .tmp
            .as_ref()
            .is_some_and(|(name, _)| *name == info.tmp);
        if !known
            && info.len != LenInfo::Pending
            && let Some(file) = sys::found(paths.tmp_file(&info.tmp).open_read())?
        {
            let len = match info.len {
                LenInfo::Known(n) => Some(n),
                _ => None,
            };
            let source = Source {
                file,
                generation: next_generation,
                len,
                validator: None,
                recent: None,
            };
            watch.tmp = Some((info.tmp, Arc::new(source)));
            watch.written = 0;
            grew = true;
        }
    }
    if let Some((_, source)) = &watch.tmp {
        let id = FileId::of_file(&source.file)?;
        if paths.store.names(id)? {
            let len = source.file.metadata()?.len();
            return Ok(Tailing::Complete {
                source: Arc::clone(source),
                len,
            });
        }
        let size = source.file.metadata()?.len();
        if size > watch.written {
            watch.written = size;
            grew = true;
        }
    }
    Ok(Tailing::Grew(grew))
}

/// The failure a lock file records, if any; else `otherwise`.
fn failed_or(info: Option<LockInfo>, otherwise: Seen) -> Seen {
    match info.and_then(|info| info.failed) {
        Some(failure) => Seen::Failed(failure),
        None => otherwise,
    }
}

/// A leader's heartbeat as its files show it: the modification times of its lock
/// file and of the tmp file the lock names. Any change is a sign of life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Beat {
    lock: SystemTime,
    tmp: Option<SystemTime>,
}

impl Beat {
    fn of(busy: &Busy, paths: &KeyPaths) -> io::Result<Self> {
        let tmp = match busy.info() {
            None => None,
            Some(info) => match paths.tmp_file(&info.tmp).stat()? {
                Some(meta) => Some(meta.modified()?),
                None => None,
            },
        };
        Ok(Beat {
            lock: busy.modified()?,
            tmp,
        })
    }
}
