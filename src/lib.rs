//! A shared on-disk read-through cache for blobs from a slow or costly origin.
//!
//! A read asks a [`Cache`] for a key. If the blob is stored it streams from disk (a
//! hit). If not, exactly one fetch from the [`Origin`] runs, however many tasks in this
//! process and processes on this machine ask at the same time, and every one of them
//! streams the bytes as they land. The blob is written to a tmp file and published
//! atomically under the key. [`Cache::get_range`] reads part of a blob (a
//! [`ByteRange`]: `a..b`, `a..` or the last `n` bytes): only those bytes of a hit, or
//! of a fill as they land.
//!
//! ```
//! # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
//! # let dir = tempfile::tempdir().unwrap();
//! use readthrough::{Cache, ReadKind, origin_fn};
//!
//! let cache = Cache::builder(dir.path())
//!     .origin(origin_fn(|key: String| async move {
//!         // Any async source: an HTTP client, an object store, a computation.
//!         Ok::<_, std::io::Error>(format!("contents of {key}").into_bytes())
//!     }))
//!     .build()
//!     .await?;
//!
//! let first = cache.get("report.csv").await?;
//! assert_eq!(first.kind(), ReadKind::Led);
//! assert_eq!(first.bytes().await?, "contents of report.csv");
//!
//! let again = cache.get("report.csv").await?;
//! assert_eq!(again.kind(), ReadKind::Hit);
//! # Ok(()) }
//! ```
//!
//! # Guarantees
//!
//! 1. **Never a wrong byte.** A [`Reader`] yields exactly the bytes of one complete,
//!    successful origin response for its key, or ends with an error.
//! 2. **One fetch.** While a fill of a key is alive and making progress, no other task
//!    in the process and no other process sharing the directory fetches that key.
//! 3. **Followers stream.** A reader that joins a fill gets the bytes already written,
//!    then each new byte as it lands.
//! 4. **Atomic publish.** A blob appears under its key only complete, with its length
//!    (and its digest, when the origin gave one) checked. It is flushed to stable
//!    storage as [`Durability`] says (by default just after it is published); after a
//!    crash of the machine, a blob that was not yet flushed is checked against its
//!    SHA-256 before it is served again, and fetched again if it does not match.
//! 5. **Crash and hang recovery.** A fill whose process died is taken over at once (the
//!    OS drops its lock). A fill whose process stops refreshing its files for the
//!    [staleness timeout](CacheBuilder::stale_after) is reclaimed by a waiter; when the
//!    stalled process wakes it cannot publish. A new leader removes a dead leader's tmp
//!    file. A waiter measures that timeout on its own monotonic clock, from the last
//!    change it saw in the leader's file times, so a step of the wall clock (back or
//!    forward) neither keeps a hung leader nor reclaims a live one. A leader refreshes
//!    its files from a task of its own for as long as it holds the lock, so one long
//!    step (a flush, a write the kernel holds up) is not taken for a hang.
//! 6. **Errors fan out, nothing is poisoned.** An origin error reaches every reader of
//!    that fill; nothing is cached and the next read tries again. When a leader dies,
//!    its followers carry on with the new fill, after checking that its bytes match
//!    those they already returned ([`Error::Changed`] if not).
//! 7. **Local disk trouble degrades.** If a write fails during a fill (a full disk),
//!    each reader fetches the rest of the body from the origin itself, uncached, a
//!    warning is logged, and nothing partial stays behind.
//! 8. **Keys are data.** Any key maps inside the cache directory; paths from a custom
//!    [`Layout`] are checked, and every file is reached from a handle on the cache
//!    directory without following a symlink at any level, so nothing outside the
//!    directory is ever read or written through one.
//! 9. **Bounded resources.** Each reader holds one buffer of at most 256 KiB; each fill
//!    holds one file descriptor in each process that reads it, shared by its readers.
//! 10. **One fetch per fleet.** With a [shared tier](CacheBuilder::shared_tier) (an
//!     object store every host reaches), hosts that miss a key at the same time make
//!     one origin fetch between them, and readers on other hosts stream its parts as
//!     they land. A dead or hung fleet leader is taken over, a tier copy that does not
//!     check out is never served, and a tier that fails or is slow degrades to the
//!     origin (the README's fleet section has the protocol and its limits).
//!
//! # On disk
//!
//! ```text
//! <dir>/v1/store/ab/<sha256(key)>        complete blobs, raw bytes
//! <dir>/v1/store/ab/<sha256(key)>.meta   key, size, created, expiry, sha256, validator,
//!                                        the blob file it describes (JSON, version 3);
//!                                        its mtime is the entry's last read
//! <dir>/v1/tmp/ab/<sha256(key)>.lock     the lock a fill's leader holds
//! <dir>/v1/tmp/ab/<sha256(key)>.<random>.part   a fill in progress
//! <dir>/v1/tmp/break.lock                changes of lock paths take turns here
//! <dir>/v1/ledger                        the bytes stored, for the size bound
//! <dir>/v1/records/ab/<sha256(id)>       an idempotency record: a JSON header line,
//!                                        then its data; changes lock records/guard
//! <dir>/v1/named-locks/ab/<sha256(name)> a named lock: holder and expiry (JSON);
//!                                        changes lock named-locks/guard
//! ```
//!
//! Files are the owner's only (0600, directories 0700) unless the cache is
//! [group shared](CacheBuilder::group_shared), and no file is opened through a symlink.
//!
//! # Lifetimes
//!
//! Blobs live for the builder's [default TTL](CacheBuilder::default_ttl) or their own
//! ([`Fetched::with_ttl`]), forever without either. An expired blob is fetched again
//! through the same coalesced path, or revalidated when its origin gave a validator
//! ([`FetchOptions::revalidate`]). A [size bound](CacheBuilder::max_bytes) evicts the
//! least recently read blobs in the background. [`Cache::prune`] and [`Cache::verify`]
//! look after the directory.
//!
//! The `v1` folder is the format version: a later format gets a folder of its own.
//! Metadata files carry a version of their own: a file of version 2 (written before
//! metadata named its blob) is still read, paired with its blob by length alone, and
//! is bound to its blob the next time it is rewritten.
//! [`Cache::path`] hands out a store path; stored files are only ever replaced by
//! renaming a new file over them, never written in place.
//!
//! # Key-value interfaces
//!
//! The same directory serves programs used to other kinds of cache:
//!
//! - [`Values`]: save, load (with created, last-read and expiry times), destroy, list
//!   and clear values by key, bytes, streams or serde values, with per-value TTLs and
//!   named locks shared by every process ([`Values::lock`]).
//! - [`IdempotencyStore`]: records for request de-duplication, inserted once per id
//!   across processes, looked up, updated and pruned.
//! - [`WriteBehind`]: a cache in front of a slower durable [`Storage`] (such as
//!   [`ObjectStoreStorage`]); writes reach storage in the background, retried until
//!   they land, and reads fall back to storage.
//! - [`Cache::check`] says whether the directory can be used at all.
//!
//! # Failure modes and cancellation
//!
//! - Dropping a [`Reader`] or a pending [`Cache::get`] never cancels a fill: it runs on
//!   in a spawned task and stores the blob. Shutting down the runtime does cancel it;
//!   its tmp and lock files are removed and the next read fetches again.
//! - A fill runs in a task of the runtime that started it; all calls need a Tokio
//!   runtime.
//! - Without working file locks (some network file systems) processes do not share
//!   fetches; every other guarantee holds. [`CacheBuilder::build`] checks and warns.
//! - Only Unix is supported.
#![deny(missing_docs)]

// The ground: Unix calls, errors, byte ranges, time, counters, test-only failpoints.
mod clock;
mod error;
mod failpoint;
mod range;
mod stats;
mod sys;

// Origins and durable storage, beside the rest (they depend only on the ground).
mod origin;
mod storage;

// The on-disk format, the fill engine over it, and the façade over both.
mod builder;
mod cache;
mod engine;
mod maintenance;
mod store;

// The fleet tier over an object store, below the façade (it depends on origins only).
#[cfg(feature = "object-store")]
mod tier;

// Key-value front-ends over the façade.
mod kv;

// The caching HTTP server over the façade.
#[cfg(feature = "server")]
mod server;

pub use builder::CacheBuilder;
pub use cache::{Blob, Cache, GetOptions, ReadKind, Reader};
pub use clock::{Clock, SystemClock};
pub use error::{BoxError, Cause, Error, Result};
pub use kv::idempotency::{IdempotencyRecord, IdempotencyStore};
pub use kv::named_lock::{HeldLock, LockHolder};
pub use kv::values::{Loaded, Values};
pub use kv::write_behind::{StorageEvent, WriteBehind};
#[cfg(feature = "object-store")]
pub use origin::ObjectStoreOrigin;
#[cfg(all(feature = "http", feature = "s3"))]
pub use origin::UrlOrigin;
pub use origin::{Expiry, FetchOptions, Fetched, FnOrigin, Origin, origin_fn};
#[cfg(feature = "http")]
pub use origin::{HttpOrigin, HttpOriginBuilder};
#[cfg(feature = "s3")]
pub use origin::{S3Location, s3_store, s3_store_with};
pub use range::ByteRange;
#[cfg(feature = "server")]
pub use server::{Route, Server};
pub use stats::Stats;
#[cfg(feature = "object-store")]
pub use storage::ObjectStoreStorage;
pub use storage::Storage;
pub use store::durability::Durability;
pub use store::entry::{Entry, Slices};
pub use store::layout::{Layout, ShardedLayout};
pub use store::scan::{CacheStatus, PrunePolicy, PruneReport};
pub use store::verify::{Corrupt, VerifyReport};
#[cfg(feature = "object-store")]
pub use tier::{TierEntry, TierPruneReport, tier_store};

/// The README's examples, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
