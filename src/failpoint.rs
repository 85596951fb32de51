//! Test-only failpoints: named steps of the fill protocol where a test built with the
//! `failpoints` feature can stop, observe or widen a window (tikv's fail-rs). Without
//! the feature they compile to nothing.
//!
//! The points, in the order a read meets them:
//! - `entry::blob_opened`: a read has opened a stored blob and not yet read its metadata.
//! - `entry::meta_stat`: a read has stat'ed a metadata file and not yet opened it.
//! - `entry::extend`: a hit with a sliding expiry has read its entry and is about to
//!   push the expiry later.
//! - `fill::lead`: a leader holds the key's lock and has written nothing into it yet.
//! - `follow::look`: a follower in another process is about to look at the fill.
//! - `reader::checked`: a reader that follows a new fill after a takeover has compared
//!   another step of it with the bytes it had already returned.
//! - `fill::write`: a leader is about to write a batch of the body into its tmp file
//!   (a blocking thread); the next batch is being received meanwhile.
//! - `fill::sync`: a leader is about to flush the complete body (a blocking thread).
//! - `fill::renamed`: a leader has renamed the blob into the store and not yet its
//!   metadata (a blocking thread).
//! - `lock::unlinked`: a releasing leader has removed its lock file and not yet closed
//!   it, so it still holds the lock.

/// Marks the failpoint `$name`.
macro_rules! failpoint {
    ($name:literal) => {
        #[cfg(feature = "failpoints")]
        fail::fail_point!($name);
    };
}

pub(crate) use failpoint;
