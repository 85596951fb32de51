//! Every folder and file name of the on-disk format, in one place.
//!
//! ```text
//! <dir>/v1/                       the format folder (FORMAT_DIR)
//!     store/ab/<sha256(key)>      a blob (STORE_DIR)
//!     store/ab/<sha256(key)>.meta its metadata (META_SUFFIX)
//!     tmp/ab/<sha256(key)>.lock   a fill's lock (TMP_DIR, LOCK_SUFFIX)
//!     tmp/ab/<..>.<random>.part   a fill's body, and tmp files of atomic writes (TMP_SUFFIX)
//!     tmp/break.lock              the guard of lock-path changes (BREAK_GUARD)
//!     ledger, evict.lock          the size bound's ledger and eviction lock
//!     named-locks/, records/      the key-value front-ends' folders (not the store's)
//!     named-locks/guard           the guard their changes take turns through (FOLDER_GUARD)
//! ```

/// The folder of this format, in the cache directory.
pub(crate) const FORMAT_DIR: &str = "v1";
/// The blob store, in the format folder.
pub(crate) const STORE_DIR: &str = "store";
/// Lock files and tmp files, in the format folder.
pub(crate) const TMP_DIR: &str = "tmp";
/// What a blob's path gains to name its metadata file.
pub(crate) const META_SUFFIX: &str = ".meta";
/// The ending of lock files.
pub(crate) const LOCK_SUFFIX: &str = ".lock";
/// The ending of tmp files: fills in progress and atomic writes.
pub(crate) const TMP_SUFFIX: &str = ".part";
/// The guard of lock-path changes, in the tmp folder.
pub(crate) const BREAK_GUARD: &str = "break.lock";
/// The ledger of stored bytes, in the format folder.
pub(crate) const LEDGER: &str = "ledger";
/// The lock an evicting process holds, in the format folder.
pub(crate) const EVICTING: &str = "evict.lock";
/// The named locks' folder, in the format folder.
pub(crate) const LOCKS_DIR: &str = "named-locks";
/// The idempotency records' folder, in the format folder.
pub(crate) const RECORDS_DIR: &str = "records";
/// The file whose `flock` changes of a front-end folder's records hold, in the folder.
pub(crate) const FOLDER_GUARD: &str = "guard";
/// The folders the key-value front-ends keep for themselves: no layout may use them
/// and the store's walks pass them over.
pub(crate) const FRONT_END_DIRS: [&str; 2] = [LOCKS_DIR, RECORDS_DIR];
