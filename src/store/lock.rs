//! The per-key lock file: who leads a fill across processes, and where its bytes go.
//!
//! The leader holds an exclusive `flock` on `<key>.lock` and writes into it the name
//! of its tmp file and, once the origin has answered, the length it promised.
//! Followers in other processes read that to find the tmp file to tail. When the
//! leader's process dies the OS drops the lock; a waiter that then takes it checks
//! that the path still names the file it locked (a stale lock may have been broken
//! and replaced meanwhile) before acting as leader. A leader removes the lock file
//! when it is done, so only the lock files of live or crashed fills exist.

use std::fs::{File, TryLockError};
use std::io;
use std::os::unix::fs::FileExt;
use std::sync::Arc;
use std::time::SystemTime;

use crate::store::lock_info::LockInfo;
use crate::sys::{self, FileId, Perms, RootedPath, create_tmp};

/// How the cache locks: for real, or not at all where the file system's locks do
/// nothing (then every process leads its own fill and only coalescing is lost).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Locking {
    Flock,
    Disabled,
}

/// Where a cache's lock files are and how they are made: the locking mode, the
/// modes of new files, and the guard that every change of a lock path takes turns
/// through.
///
/// Breakers of stale locks hold the guard exclusively while they check, remove and
/// replace a lock file; a taker holds it shared while it refreshes the file it locked
/// and checks the path still names it, and a releaser while it checks and removes its
/// file. So no check-then-unlink can remove a newer lock, and a taker of an old lock
/// file is never also broken by a waiter that saw the file's old time. Nobody waits
/// for the guard: a breaker that cannot have it waits as if the lock were not stale
/// yet, a taker starts over, and a releaser leaves its file for the next taker (or
/// `prune`).
#[derive(Debug, Clone)]
pub(crate) struct LockSite {
    pub(crate) locking: Locking,
    pub(crate) perms: Perms,
    /// The guard file, `tmp/break.lock` ([`BREAK_GUARD`](crate::store::names::BREAK_GUARD)).
    pub(crate) guard: RootedPath,
}

/// How a change of a lock path is guarded.
#[derive(Clone, Copy)]
enum Turn {
    /// Take the guard shared for it.
    Shared,
    /// The caller holds the guard exclusively already.
    Held,
}

/// The outcome of trying to lead a fill.
pub(crate) enum Attempt {
    /// This process now holds the lock.
    Led(FillLock),
    /// Another holder has it.
    Busy(Busy),
}

/// A held lock on a key. Dropping it releases the lock and removes the lock file if
/// the path still names it.
#[derive(Debug)]
pub(crate) struct FillLock {
    file: Arc<File>,
    path: RootedPath,
    id: FileId,
    site: LockSite,
    /// Whether dropping it removes the lock file (all but [`FillLock::keep`]).
    remove: bool,
}

/// A lock file someone else holds, kept open to watch it.
#[derive(Debug)]
pub(crate) struct Busy {
    file: File,
    path: RootedPath,
    id: FileId,
}

/// What taking a busy lock gave.
pub(crate) enum Take {
    Taken(FillLock),
    /// Someone else holds it (or a breaker is at work on it).
    Held(Busy),
    /// The lock file was removed or replaced: start over from [`try_lead`]. The old file stays open to read what its last holder
    /// left in it.
    Gone(Busy),
}

fn open_lock(path: &RootedPath, perms: Perms) -> io::Result<File> {
    let file = path.create(perms)?;
    perms.fix(&file);
    Ok(file)
}

/// Takes the guard shared without waiting; `None` while a breaker holds it.
fn guard_shared(site: &LockSite) -> io::Result<Option<File>> {
    let guard = open_lock(&site.guard, site.perms)?;
    match guard.try_lock_shared() {
        Ok(()) => Ok(Some(guard)),
        Err(TryLockError::WouldBlock) => Ok(None),
        Err(TryLockError::Error(e)) => Err(e),
    }
}

/// Opens (creating) the lock file at `path` and tries to lock it without waiting.
pub(crate) fn try_lead(path: &RootedPath, site: &LockSite) -> io::Result<Attempt> {
    lead_at(path, site, Turn::Shared)
}

fn lead_at(path: &RootedPath, site: &LockSite, turn: Turn) -> io::Result<Attempt> {
    loop {
        let busy = Busy::open(open_lock(path, site.perms)?, path)?;
        match busy.claim(site, turn)? {
            Take::Taken(lock) => return Ok(Attempt::Led(lock)),
            Take::Held(busy) => return Ok(Attempt::Busy(busy)),
            Take::Gone(_) => continue,
        }
    }
}

/// What a lock file says about its fill, seen from outside.
pub(crate) enum LockState {
    /// No lock file.
    Missing,
    /// Someone holds it; what they published, if anything.
    Held(Option<LockInfo>),
    /// Nobody held it; now this caller does (dropping it removes the file).
    Free(FillLock),
}

/// Looks at an existing lock file without creating one or refreshing it.
pub(crate) fn inspect(path: &RootedPath, site: &LockSite) -> io::Result<LockState> {
    let Some(file) = sys::found(path.open_rw())? else {
        return Ok(LockState::Missing);
    };
    let busy = Busy::open(file, path)?;
    Ok(if busy.held_elsewhere(site.locking)? {
        LockState::Held(busy.info())
    } else if busy.is_current()? {
        LockState::Free(busy.into_lock(site))
    } else {
        LockState::Missing
    })
}

impl Busy {
    fn open(file: File, path: &RootedPath) -> io::Result<Self> {
        let id = FileId::of_file(&file)?;
        Ok(Busy {
            file,
            path: path.to_owned(),
            id,
        })
    }

    /// Tries the flock without waiting; whether someone else holds it.
    fn held_elsewhere(&self, locking: Locking) -> io::Result<bool> {
        if locking == Locking::Disabled {
            return Ok(false);
        }
        match self.file.try_lock() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(e),
        }
    }

    fn into_lock(self, site: &LockSite) -> FillLock {
        FillLock {
            file: Arc::new(self.file),
            path: self.path,
            id: self.id,
            site: site.clone(),
            remove: true,
        }
    }

    /// Tries to take the lock without waiting, to lead. Once it has the flock it
    /// refreshes the file's time and checks the path still names the file, both
    /// within one turn of the guard (see [`LockSite`]).
    pub(crate) fn try_claim(self, site: &LockSite) -> io::Result<Take> {
        self.claim(site, Turn::Shared)
    }

    fn claim(self, site: &LockSite, turn: Turn) -> io::Result<Take> {
        if self.held_elsewhere(site.locking)? {
            return Ok(Take::Held(self));
        }
        let guard = match turn {
            Turn::Held => None,
            Turn::Shared => match guard_shared(site)? {
                Some(guard) => Some(guard),
                // A breaker is at work: wait as if the lock were held.
                None => return Ok(Take::Held(self.let_go(site)?)),
            },
        };
        self.file.set_modified(SystemTime::now())?;
        if !self.is_current()? {
            return Ok(Take::Gone(self.let_go(site)?));
        }
        drop(guard);
        Ok(Take::Taken(self.into_lock(site)))
    }

    /// Releases a flock this caller took but may not use.
    fn let_go(self, site: &LockSite) -> io::Result<Self> {
        if site.locking == Locking::Flock {
            self.file.unlock()?;
        }
        Ok(self)
    }

    /// What the holder published, if it has written it yet.
    pub(crate) fn info(&self) -> Option<LockInfo> {
        read_info(&self.file)
    }

    /// Whether the lock path still names this file.
    pub(crate) fn is_current(&self) -> io::Result<bool> {
        self.path.names(self.id)
    }

    /// When the lock file was last written.
    pub(crate) fn modified(&self) -> io::Result<SystemTime> {
        self.file.metadata()?.modified()
    }

    /// Breaks a stale lock: removes the lock file if the path still names it and
    /// `still_stale` agrees, then tries to lead with a fresh one, all within an
    /// exclusive turn of the guard. A breaker that cannot have its turn at once keeps
    /// waiting, as if the lock were not stale yet; so two waiters that see the same
    /// stale lock cannot both replace it (the second finds the path renamed to the
    /// first one's fresh lock and follows it).
    pub(crate) fn break_stale(
        self,
        site: &LockSite,
        still_stale: impl FnOnce(&Busy) -> io::Result<bool>,
    ) -> io::Result<Attempt> {
        let guard = open_lock(&site.guard, site.perms)?;
        match guard.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Attempt::Busy(self)),
            Err(TryLockError::Error(e)) => return Err(e),
        }
        if self.is_current()? && still_stale(&self)? {
            self.path.remove_if_there()?;
        }
        let path = self.path;
        drop(self.file);
        let attempt = lead_at(&path, site, Turn::Held);
        drop(guard);
        attempt
    }
}

impl FillLock {
    /// What the previous holder wrote (a crashed leader's tmp name), if anything.
    pub(crate) fn previous_info(&self) -> Option<LockInfo> {
        read_info(&self.file)
    }

    /// Publishes `info` for followers.
    pub(crate) fn write_info(&self, info: &LockInfo) -> io::Result<()> {
        let data = info.encode();
        self.file.write_all_at(data.as_bytes(), 0)?;
        self.file.set_len(data.len() as u64)
    }

    /// Whether the lock path still names this lock (it was not broken as stale).
    pub(crate) fn is_current(&self) -> io::Result<bool> {
        self.path.names(self.id)
    }

    /// Whether this holder may still publish: its lock was not broken as stale.
    /// Without working locks nothing is ever reclaimed (every process leads its own
    /// fill, and the lock file is only where they meet), so that is always so, even
    /// when another process removed the file.
    pub(crate) fn may_publish(&self) -> io::Result<bool> {
        Ok(self.site.locking == Locking::Disabled || self.is_current()?)
    }

    /// The lock file, for a heartbeat that refreshes its time. A holder of the handle
    /// holds the lock: drop it before the lock.
    pub(crate) fn file(&self) -> Arc<File> {
        Arc::clone(&self.file)
    }

    /// Releases the lock and leaves its file in place: for a look that must not
    /// change anything.
    pub(crate) fn keep(mut self) {
        self.remove = false;
    }
}

impl Drop for FillLock {
    fn drop(&mut self) {
        if !self.remove {
            return;
        }
        // Within a shared turn of the guard, so no breaker replaces the file between
        // the check and the removal; while a breaker has its turn, the file stays.
        if let Ok(Some(_guard)) = guard_shared(&self.site)
            && matches!(self.is_current(), Ok(true))
        {
            let _ = self.path.remove_if_there();
            crate::failpoint::failpoint!("lock::unlinked");
        }
    }
}

fn read_info(file: &File) -> Option<LockInfo> {
    let data = sys::read_exact_or_eof(file, 0, LockInfo::MAX_LEN).ok()?;
    LockInfo::decode(&data)
}

/// Checks, in a scratch directory, that two opens of one file exclude each other's
/// locks, as `flock` promises. Some network file systems accept locks and enforce
/// nothing.
pub(crate) fn locks_exclude(dir: &RootedPath, perms: Perms) -> io::Result<bool> {
    let probe = create_tmp(dir, ".lock-probe.", "", 6, perms)?;
    let other = probe.path.path().open_read()?;
    probe.file.lock()?;
    Ok(matches!(other.try_lock(), Err(TryLockError::WouldBlock)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::lock_info::LenInfo;
    use crate::store::names::BREAK_GUARD;

    fn site(dir: &RootedPath) -> LockSite {
        LockSite {
            locking: Locking::Flock,
            perms: Perms::OWNER,
            guard: dir.join(BREAK_GUARD),
        }
    }

    #[test]
    fn a_held_lock_is_busy_and_dropping_it_frees_the_path() {
        let (_dir, root) = crate::sys::tmp_root();
        let path = root.join("k.lock");
        let site = site(&root);
        let Attempt::Led(lock) = try_lead(&path, &site).unwrap() else {
            panic!("first attempt must lead");
        };
        let info = LockInfo {
            tmp: "x1".into(),
            len: LenInfo::Known(3),
            validator: None,
            failed: None,
        };
        lock.write_info(&info).unwrap();
        let Attempt::Busy(busy) = try_lead(&path, &site).unwrap() else {
            panic!("second attempt must find it busy");
        };
        assert_eq!(busy.info(), Some(info));
        drop(lock);
        assert!(
            path.stat().unwrap().is_none(),
            "release removes the lock file"
        );
        assert!(matches!(busy.try_claim(&site).unwrap(), Take::Gone(_)));
        assert!(matches!(try_lead(&path, &site).unwrap(), Attempt::Led(_)));
    }

    #[test]
    fn breaking_a_stale_lock_leaves_the_old_holder_unable_to_remove_the_new_one() {
        let (_dir, root) = crate::sys::tmp_root();
        let path = root.join("k.lock");
        let site = site(&root);
        let Attempt::Led(old) = try_lead(&path, &site).unwrap() else {
            panic!("must lead");
        };
        let Attempt::Busy(busy) = try_lead(&path, &site).unwrap() else {
            panic!("must be busy");
        };
        let Attempt::Busy(second) = try_lead(&path, &site).unwrap() else {
            panic!("must be busy");
        };
        let Attempt::Led(new) = busy.break_stale(&site, |_| Ok(true)).unwrap() else {
            panic!("breaking must lead");
        };
        let Attempt::Busy(_) = second.break_stale(&site, |_| Ok(true)).unwrap() else {
            panic!("a second breaker of the same stale lock must follow the first");
        };
        assert!(!old.is_current().unwrap());
        drop(old);
        assert!(
            new.is_current().unwrap(),
            "the old holder must not remove the new lock"
        );
    }

    fn lead(path: &RootedPath, site: &LockSite) -> FillLock {
        match try_lead(path, site).unwrap() {
            Attempt::Led(lock) => lock,
            Attempt::Busy(_) => panic!("the lock must be free"),
        }
    }

    fn busy(path: &RootedPath, site: &LockSite) -> Busy {
        match try_lead(path, site).unwrap() {
            Attempt::Busy(busy) => busy,
            Attempt::Led(_) => panic!("the lock must be held"),
        }
    }

    /// A breaker's exclusive turn of the guard, held until dropped.
    fn breaker_turn(site: &LockSite) -> File {
        let guard = open_lock(&site.guard, site.perms).unwrap();
        guard.lock().unwrap();
        guard
    }

    #[test]
    fn taking_a_crashed_leaders_lock_file_refreshes_it_and_keeps_its_info() {
        let (_dir, root) = crate::sys::tmp_root();
        let (path, site) = (root.join("k.lock"), site(&root));
        std::fs::write(path.path(), "readthrough-lock 1\ntmp dead\nlen 7\n").unwrap();
        let hour_ago = SystemTime::now() - std::time::Duration::from_secs(3600);
        path.open_rw().unwrap().set_modified(hour_ago).unwrap();
        let lock = lead(&path, &site);
        let age = std::fs::metadata(path.path()).unwrap().modified().unwrap();
        assert!(
            age > hour_ago + std::time::Duration::from_secs(3000),
            "refreshed"
        );
        assert_eq!(lock.previous_info().unwrap().tmp, "dead");
    }

    #[test]
    fn a_stale_lock_is_broken_once_and_the_breaker_leads() {
        let (_dir, root) = crate::sys::tmp_root();
        let (path, site) = (root.join("k.lock"), site(&root));
        let hung = lead(&path, &site);
        let waiter = busy(&path, &site);
        let not_yet = waiter.break_stale(&site, |_| Ok(false)).unwrap();
        let Attempt::Busy(waiter) = not_yet else {
            panic!("a lock that is not stale stays");
        };
        assert!(hung.is_current().unwrap());
        let Attempt::Led(new) = waiter.break_stale(&site, |_| Ok(true)).unwrap() else {
            panic!("the breaker leads");
        };
        assert!(!hung.is_current().unwrap() && new.is_current().unwrap());
        drop(hung);
        assert!(
            path.stat().unwrap().is_some(),
            "the broken holder leaves the new lock alone"
        );
    }

    #[test]
    fn while_a_breaker_has_its_turn_takers_wait_and_releasers_leave_their_file() {
        let (_dir, root) = crate::sys::tmp_root();
        let (path, site) = (root.join("k.lock"), site(&root));
        let lock = lead(&path, &site);
        let turn = breaker_turn(&site);
        drop(lock);
        assert!(
            path.stat().unwrap().is_some(),
            "no removal during a breaker's turn"
        );
        let waiting = busy(&path, &site);
        let second = waiting.break_stale(&site, |_| Ok(true)).unwrap();
        assert!(
            matches!(second, Attempt::Busy(_)),
            "a second breaker waits for its turn"
        );
        drop(turn);
        let lock = lead(&path, &site);
        drop(lock);
        assert!(
            path.stat().unwrap().is_none(),
            "released for good after the turn"
        );
    }

    #[test]
    fn inspect_sees_missing_held_and_free_locks_without_refreshing_them() {
        let (_dir, root) = crate::sys::tmp_root();
        let (path, site) = (root.join("k.lock"), site(&root));
        assert!(matches!(inspect(&path, &site).unwrap(), LockState::Missing));
        let lock = lead(&path, &site);
        let info = LockInfo {
            tmp: "t1".into(),
            len: LenInfo::Pending,
            validator: None,
            failed: None,
        };
        lock.write_info(&info).unwrap();
        assert!(matches!(
            inspect(&path, &site).unwrap(),
            LockState::Held(Some(seen)) if seen == info
        ));
        lock.keep();
        let old = SystemTime::now() - std::time::Duration::from_secs(600);
        path.open_rw().unwrap().set_modified(old).unwrap();
        let LockState::Free(free) = inspect(&path, &site).unwrap() else {
            panic!("nobody holds it");
        };
        free.keep();
        let kept = std::fs::metadata(path.path()).unwrap().modified().unwrap();
        assert_eq!(kept, old, "a look does not refresh the file");
    }

    #[test]
    fn flock_excludes_on_this_file_system() {
        let (_dir, root) = crate::sys::tmp_root();
        assert!(locks_exclude(&root, Perms::OWNER).unwrap());
    }
}
