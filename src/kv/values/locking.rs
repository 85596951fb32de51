//! The named locks of [`Values`]: take, release, check, list, and the default TTL.

use std::time::Duration;

use super::Values;
use crate::error::{Error, Result};
use crate::kv::named_lock::{HeldLock, LockHolder};
use crate::sys::{blocking, blocking_io};

/// How often [`Values::check_lock`] looks again while it waits, at most.
const CHECK_EVERY: Duration = Duration::from_millis(20);

impl Values {
    /// How long a lock taken without a TTL of its own (`lock(name, None)`) lasts,
    /// unless [`with_default_lock_ttl`](Self::with_default_lock_ttl) says otherwise:
    /// one minute.
    ///
    /// ```
    /// assert_eq!(readthrough::Values::DEFAULT_LOCK_TTL.as_secs(), 60);
    /// ```
    pub const DEFAULT_LOCK_TTL: Duration = Duration::from_secs(60);

    /// This handle, taking locks for `ttl` when [`lock`](Self::lock) is given none.
    /// The default belongs to the handle (and its clones), not to the directory: each
    /// holder says how long its own locks last, and other processes' locks keep theirs.
    ///
    /// # Errors
    /// [`Error::InvalidSetting`] for a zero `ttl`.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use std::time::Duration;
    /// let values = readthrough::Values::new(&cache).with_default_lock_ttl(Duration::from_secs(5))?;
    /// assert_eq!(values.default_lock_ttl(), Duration::from_secs(5));
    /// assert!(values.lock("job", None).await?);
    /// # Ok(()) }
    /// ```
    pub fn with_default_lock_ttl(mut self, ttl: Duration) -> Result<Values> {
        check_ttl(ttl)?;
        self.lock_ttl = ttl;
        Ok(self)
    }

    /// How long a lock taken without a TTL of its own lasts.
    pub fn default_lock_ttl(&self) -> Duration {
        self.lock_ttl
    }

    /// Takes the lock `name` for `ttl`, or for the [default lock
    /// TTL](Self::with_default_lock_ttl) when `None`; returns whether this call got it.
    /// `false` when it is held, by another holder or by this one (locks are not
    /// re-entrant). Every process on the cache directory sees the same locks. A lock
    /// lasts until [`unlock`](Self::unlock) or its TTL ends, so a holder that died frees
    /// it when its time is up. While a lock is held, other holders cannot save or
    /// destroy the value of the key with the same name.
    ///
    /// `ttl` is a [`Duration`] or an `Option<Duration>`.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty name, [`Error::InvalidSetting`] for a zero
    /// `ttl`, local I/O errors.
    ///
    /// # Cancellation
    /// The lock is taken on a blocking thread; when the future is dropped after that
    /// started, the lock may be taken and is then held until its TTL ends.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use std::time::Duration;
    /// use readthrough::{Error, Values};
    /// let (a, b) = (Values::new(&cache), Values::new(&cache));
    /// assert!(a.lock("report", Duration::from_secs(30)).await?);
    /// assert!(!a.lock("report", Duration::from_secs(30)).await?);
    /// assert!(!b.lock("report", None).await?);
    /// assert!(matches!(b.save("report", "x", None).await, Err(Error::Locked { .. })));
    /// assert!(a.unlock("report").await?);
    /// assert!(b.lock("report", None).await?); // for Values::DEFAULT_LOCK_TTL
    /// # Ok(()) }
    /// ```
    pub async fn lock(&self, name: &str, ttl: impl Into<Option<Duration>>) -> Result<bool> {
        check_name(name)?;
        let ttl = ttl.into().unwrap_or(self.lock_ttl);
        check_ttl(ttl)?;
        let (locks, name) = (self.locks.clone(), name.to_owned());
        blocking_io("take a lock in", self.locks.dir(), move || {
            locks.lock(&name, ttl)
        })
        .await
    }

    /// Releases the lock `name`; returns whether this holder held it.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty name, local I/O errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// assert!(!values.unlock("never taken").await?);
    /// # Ok(()) }
    /// ```
    pub async fn unlock(&self, name: &str) -> Result<bool> {
        check_name(name)?;
        let (locks, name) = (self.locks.clone(), name.to_owned());
        blocking_io("release a lock in", self.locks.dir(), move || {
            locks.unlock(&name)
        })
        .await
    }

    /// Whether the lock `name` is obtainable by this holder now: free, or held by this
    /// holder itself, as in the application-cache interface it mirrors. While another
    /// holder has it, waits up to `wait` for it to be released or to expire, and
    /// returns `true` as soon as it is; `false` when `wait` ends first. (A lock this
    /// holder has counts as obtainable, though [`lock`](Self::lock), not re-entrant,
    /// returns `false` for it.) To know who holds it, ask
    /// [`lock_holder`](Self::lock_holder).
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty name, local I/O errors.
    ///
    /// # Cancellation
    /// Safe to drop at any point; it only looks.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use std::time::Duration;
    /// let (me, other) = (readthrough::Values::new(&cache), readthrough::Values::new(&cache));
    /// assert!(me.check_lock("job", Duration::ZERO).await?); // free
    /// me.lock("job", Duration::from_secs(60)).await?;
    /// assert!(me.check_lock("job", Duration::ZERO).await?); // mine
    /// assert!(!other.check_lock("job", Duration::from_millis(50)).await?);
    /// # Ok(()) }
    /// ```
    pub async fn check_lock(&self, name: &str, wait: Duration) -> Result<bool> {
        check_name(name)?;
        let deadline = tokio::time::Instant::now().checked_add(wait);
        loop {
            let obtainable = self.holder(name).await? != LockHolder::Other;
            let left = deadline.map(|d| d.saturating_duration_since(tokio::time::Instant::now()));
            if obtainable || left == Some(Duration::ZERO) {
                return Ok(obtainable);
            }
            tokio::time::sleep(left.map_or(CHECK_EVERY, |left| left.min(CHECK_EVERY))).await;
        }
    }

    /// Who holds the lock `name` now: [`LockHolder::Nobody`], [`LockHolder::Me`] (this
    /// handle or a clone of it) or [`LockHolder::Other`]. Does not wait.
    ///
    /// # Errors
    /// [`Error::InvalidKey`] for an empty name, local I/O errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let cache = readthrough::Cache::builder(dir.path()).build().await?;
    /// use readthrough::{LockHolder, Values};
    /// let (me, other) = (Values::new(&cache), Values::new(&cache));
    /// assert_eq!(me.lock_holder("job").await?, LockHolder::Nobody);
    /// me.lock("job", None).await?;
    /// assert_eq!(me.lock_holder("job").await?, LockHolder::Me);
    /// assert_eq!(other.lock_holder("job").await?, LockHolder::Other);
    /// # Ok(()) }
    /// ```
    pub async fn lock_holder(&self, name: &str) -> Result<LockHolder> {
        check_name(name)?;
        self.holder(name).await
    }

    async fn holder(&self, name: &str) -> Result<LockHolder> {
        let (locks, owned) = (self.locks.clone(), name.to_owned());
        blocking(move || locks.holder_of(&owned))
            .await
            .map_err(|e| Error::io("read a lock in", self.locks.dir(), e))
    }

    /// The locks held now, by any holder, sorted by name.
    ///
    /// # Errors
    /// Local I/O errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let values = readthrough::Values::new(&readthrough::Cache::builder(dir.path()).build().await?);
    /// values.lock("b", std::time::Duration::from_secs(60)).await?;
    /// values.lock("a", None).await?;
    /// let held = values.locks().await?;
    /// assert_eq!(held.iter().map(|l| l.name.as_str()).collect::<Vec<_>>(), ["a", "b"]);
    /// assert!(held.iter().all(|l| l.mine));
    /// # Ok(()) }
    /// ```
    pub async fn locks(&self) -> Result<Vec<HeldLock>> {
        let locks = self.locks.clone();
        blocking(move || locks.held())
            .await
            .map_err(|e| Error::io("list the locks in", self.locks.dir(), e))
    }
}

fn check_name(name: &str) -> Result<()> {
    if name.is_empty() {
        return Err(Error::InvalidKey {
            reason: "a lock name must not be empty",
        });
    }
    Ok(())
}

fn check_ttl(ttl: Duration) -> Result<()> {
    if ttl.is_zero() {
        return Err(Error::InvalidSetting(
            "a lock TTL of zero would hold nothing",
        ));
    }
    Ok(())
}
