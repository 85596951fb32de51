//! The on-disk format: plain synchronous code over the cache directory, with no
//! runtime. It imports only the ground (`sys`, `error`, `clock`).
//!
//! - [`names`]: every folder and file name.
//! - [`atomic`]: small files written atomically.
//! - [`durability`]: when blobs are flushed, and the check after a crash.
//! - [`layout`]: keys to paths, checked to stay inside the directory.
//! - [`meta`]: the metadata file beside each blob, bound to its blob.
//! - [`lock`]: the per-key lock file protocol; [`lock_info`]: what a leader writes in it.
//! - [`entry`]: finding a stored entry and judging it (servable, expired, extended).
//! - [`named_locks`]: the record file of a named lock, and the pruning of expired ones.
//! - [`ledger`]: the bytes stored, for the size bound.
//! - [`dir`]: creating and checking a cache directory.
//! - [`scan`]: walking the store: listing, removing, evicting, pruning.
//! - [`verify`]: checking every blob against its metadata.
//! - [`sliced`]: a blob stored by slices: its derived keys, its manifest, and its
//!   entries gathered into one.

pub(crate) mod atomic;
pub(crate) mod dir;
pub(crate) mod durability;
pub(crate) mod entry;
pub(crate) mod layout;
pub(crate) mod ledger;
pub(crate) mod lock;
pub(crate) mod lock_info;
pub(crate) mod meta;
pub(crate) mod named_locks;
pub(crate) mod names;
pub(crate) mod scan;
pub(crate) mod sliced;
pub(crate) mod verify;
