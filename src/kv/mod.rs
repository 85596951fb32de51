//! Key-value front-ends on a cache directory, for programs used to other kinds of
//! cache. They import the façade, the store and the storage trait; nothing imports
//! them but `lib.rs`.
//!
//! - [`values`]: [`Values`], values by key with TTLs, listing and named locks.
//! - [`named_lock`]: the named locks behind [`Values::lock`].
//! - [`idempotency`]: [`IdempotencyStore`], insert-once request records.
//! - [`write_behind`]: [`WriteBehind`], a cache in front of durable [`Storage`].
//! - [`records`]: the sharded folder of record files that named locks and idempotency
//!   records share (paths, guard, atomic writes, listing, capped reads).
//!
//! [`Storage`]: crate::Storage

pub(crate) mod idempotency;
pub(crate) mod named_lock;
pub(crate) mod records;
pub(crate) mod values;
pub(crate) mod write_behind;
