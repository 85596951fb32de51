//! The one error type of the crate.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// A boxed error from an origin or a user-supplied stream.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in `readthrough`.
///
/// Errors are cheap to clone (causes are shared, see [`Cause`]), because one failed fill
/// reaches every reader that waited on it. Each variant names the key or path it is
/// about.
///
/// ```
/// use readthrough::Error;
/// let err = Error::InvalidKey { reason: "a key must not be empty" };
/// assert!(err.to_string().contains("empty"));
/// let io: std::io::Error = err.into();
/// assert_eq!(io.kind(), std::io::ErrorKind::InvalidInput);
/// ```
#[derive(Debug, Clone, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The cache directory cannot be used: it is a file, or cannot be created, written
    /// or locked.
    #[error("cache directory {path} is not usable: {what}")]
    BadDirectory {
        /// The directory (or the file inside it) that failed.
        path: PathBuf,
        /// What was being checked.
        what: &'static str,
        /// The underlying failure.
        #[source]
        source: Cause<io::Error>,
    },

    /// A file system operation on a path inside the cache failed.
    #[error("{op} {path}: {source}")]
    Io {
        /// What the cache was doing, such as "open" or "rename".
        op: &'static str,
        /// The path it was doing it to.
        path: PathBuf,
        /// The underlying failure.
        #[source]
        source: Cause<io::Error>,
    },

    /// The origin failed, before or while sending the body. Nothing was cached.
    #[error("origin failed for key {key:?}: {source}")]
    Origin {
        /// The key being fetched.
        key: String,
        /// What the origin reported.
        #[source]
        source: Cause<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The origin panicked while fetching. Nothing was cached.
    #[error("origin panicked while fetching key {key:?}")]
    OriginPanicked {
        /// The key being fetched.
        key: String,
    },

    /// The origin sent a different number of bytes than it promised. Nothing was cached.
    #[error("origin sent {actual} bytes for key {key:?} but promised {expected}")]
    LengthMismatch {
        /// The key being fetched.
        key: String,
        /// The length the origin announced.
        expected: u64,
        /// The length it sent (so far, when it sent too much).
        actual: u64,
    },

    /// The body's SHA-256 differs from the digest the origin announced. Nothing was
    /// cached.
    #[error("origin sent a body for key {key:?} with sha256 {actual}, expected {expected}")]
    DigestMismatch {
        /// The key being fetched.
        key: String,
        /// The announced digest, in hex.
        expected: String,
        /// The digest of what arrived, in hex.
        actual: String,
    },

    /// The fill this reader followed was replaced (its leader died or hung) and the new
    /// fill's bytes differ from those this reader already returned. The reader stops
    /// rather than mix two bodies; read again to get the new one.
    #[error("the blob for key {key:?} changed at byte {offset} while it was being read")]
    Changed {
        /// The key being read.
        key: String,
        /// The first offset at which the bodies differ.
        offset: u64,
    },

    /// A range read asked for bytes the blob does not have: its range starts at or
    /// past the blob's end (as HTTP's `416`). An empty range is not an empty body.
    #[error("the range {range} of key {key:?} cannot be read: the blob has {length} bytes")]
    RangeNotSatisfiable {
        /// The key being read.
        key: String,
        /// The range asked for, in HTTP form (`A-B`, `A-` or `-N`).
        range: String,
        /// The blob's length.
        length: u64,
    },

    /// A range spec cannot be parsed, or asks for nothing (`A-B` with `B` before `A`).
    #[error("invalid range {spec:?}: {reason}")]
    InvalidRange {
        /// The spec as given.
        spec: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// This process's fill was taken over by another process while it made no
    /// progress (it was stopped or hung), so its body was not stored; the other
    /// process's fill stores the blob.
    #[error(
        "the fill of key {key:?} was reclaimed as stale by another process; its body was not stored"
    )]
    Reclaimed {
        /// The key being filled.
        key: String,
    },

    /// An HTTP origin answered with a status other than success.
    #[cfg(feature = "http")]
    #[error("HTTP {status} from {url}")]
    HttpStatus {
        /// The URL requested.
        url: String,
        /// The status code.
        status: u16,
    },

    /// An HTTP request failed: no connection, a broken connection, or a malformed
    /// answer.
    #[cfg(feature = "http")]
    #[error("HTTP request to {url} failed: {source}")]
    Http {
        /// The URL requested.
        url: String,
        /// What failed.
        #[source]
        source: Cause<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// An HTTP origin sent nothing for the idle timeout.
    #[error("no data from {url} for {after:?}")]
    IdleTimeout {
        /// The URL requested.
        url: String,
        /// The idle timeout.
        after: std::time::Duration,
    },

    /// The object changed while its download was resuming (the server answered a
    /// range request with a whole new object). The fill fails rather than mix two
    /// versions; the next read fetches the new one.
    #[error(
        "{url} changed while its download was resuming: it was {validator}{}",
        now.as_ref().map(|now| format!(", now {now}")).unwrap_or_default()
    )]
    ObjectChanged {
        /// The URL requested.
        url: String,
        /// The validator (ETag or `Last-Modified`) the download started with.
        validator: String,
        /// The one the origin has now, when its answer said.
        now: Option<String>,
    },

    /// A URL is not of a form the cache can fetch.
    #[error("invalid URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL given.
        url: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A route of [`Server`](crate::Server) cannot be used.
    #[cfg(feature = "server")]
    #[error("invalid route {route:?}: {reason}")]
    InvalidRoute {
        /// The route as given (`PREFIX=URL`).
        route: String,
        /// What is wrong with it.
        reason: &'static str,
    },

    /// A stored blob's bytes no longer match its metadata (found by
    /// [`verify_on_read`](crate::CacheBuilder::verify_on_read)); it was removed.
    #[error("the stored blob of key {key:?} is corrupt: {reason}")]
    Corrupt {
        /// The key read.
        key: String,
        /// What did not match.
        reason: String,
    },

    /// A setting or an argument cannot work: a zero timeout or TTL, data over a size
    /// limit. The text says which.
    #[error("invalid setting: {0}")]
    InvalidSetting(&'static str),

    /// The key cannot be used.
    #[error("invalid key: {reason}")]
    InvalidKey {
        /// Why it was refused.
        reason: &'static str,
    },

    /// A custom [`Layout`](crate::Layout) returned a path that is not a plain relative
    /// path inside the cache directory, or that is in a folder the cache keeps for
    /// itself.
    #[error(
        "layout maps key {key:?} to {path}, which is not a plain path inside the cache directory's store"
    )]
    LayoutEscape {
        /// The key.
        key: String,
        /// The path the layout returned.
        path: PathBuf,
    },

    /// The cache has no origin for this call: it was built without one and the call
    /// needs to fetch.
    #[error("no origin configured to fetch key {key:?}; build the cache with one or use get_with")]
    NoOrigin {
        /// The key that missed.
        key: String,
    },

    /// The key is locked by another holder ([`Values::lock`](crate::Values::lock)), so
    /// it cannot be written or removed until that lock is released or expires.
    #[error("key {key:?} is locked by another holder")]
    Locked {
        /// The key.
        key: String,
    },

    /// An idempotency record with this id already exists and has not expired.
    #[error("an idempotency record with id {id:?} already exists")]
    RecordExists {
        /// The record's id.
        id: String,
    },

    /// No live idempotency record has this id.
    #[error("no idempotency record with id {id:?}")]
    RecordMissing {
        /// The id asked for.
        id: String,
    },

    /// A value could not be turned into JSON, or a stored value is not the JSON of the
    /// type asked for.
    #[error("the value of key {key:?} could not be {op} as JSON: {source}")]
    Json {
        /// The key.
        key: String,
        /// "encoded" or "decoded".
        op: &'static str,
        /// What serde reported.
        #[source]
        source: Cause<serde_json::Error>,
    },

    /// The durable storage behind a [`WriteBehind`](crate::WriteBehind) failed.
    #[error("storage failed to {op} key {key:?}: {source}")]
    Storage {
        /// What was asked of it: "get", "set", "delete" or "check".
        op: &'static str,
        /// The key (empty for a readiness check).
        key: String,
        /// What the storage reported.
        #[source]
        source: Cause<dyn std::error::Error + Send + Sync + 'static>,
    },

    /// The shared tier could not be listed or pruned (reads never fail for the tier:
    /// they go on from the origin).
    #[error("the shared tier failed to {op}: {reason}")]
    Tier {
        /// What was asked of it: "list" or "prune".
        op: &'static str,
        /// What went wrong.
        reason: String,
    },

    /// A write of a key-value front-end ended without a result (the runtime is
    /// shutting down, or the task panicked); it may or may not have landed.
    #[error("the write of key {key:?} ended without a result")]
    WriteVanished {
        /// The key being written.
        key: String,
    },

    /// A background task of the cache ended without reporting (the runtime is shutting
    /// down, or the task panicked).
    #[error("the fill task for key {key:?} ended without a result")]
    FillVanished {
        /// The key being filled.
        key: String,
    },
}

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            source: Cause::new(source),
        }
    }

    pub(crate) fn origin(key: &str, source: BoxError) -> Self {
        Error::Origin {
            key: key.to_owned(),
            source: Cause(Arc::from(source)),
        }
    }

    /// Whether the origin (or the storage behind a [`WriteBehind`](crate::WriteBehind))
    /// has nothing under the key: an origin error of kind
    /// [`NotFound`](io::ErrorKind::NotFound), HTTP 404 or 410, or an object store's
    /// "not found"; also when a leader in another process recorded such a failure. It is what the
    /// conversion to [`io::Error`] gives the kind `NotFound` for, among origin errors.
    ///
    /// ```
    /// # #[tokio::main(flavor = "current_thread")] async fn main() {
    /// # let dir = tempfile::tempdir().unwrap();
    /// use std::io;
    /// let cache = readthrough::Cache::builder(dir.path()).build().await.unwrap();
    /// let err = cache
    ///     .get_with("k", |_| async { Err::<Vec<u8>, _>(io::Error::from(io::ErrorKind::NotFound)) })
    ///     .await
    ///     .unwrap_err();
    /// assert!(err.is_not_found());
    /// # }
    /// ```
    pub fn is_not_found(&self) -> bool {
        let from_origin = match self {
            Error::Origin { .. } => true,
            #[cfg(feature = "http")]
            Error::HttpStatus { .. } => true,
            _ => false,
        };
        from_origin && io::Error::from(self.clone()).kind() == io::ErrorKind::NotFound
    }

    /// Whether the error came from the local disk (as opposed to the origin or a
    /// caller's input). A fill that fails this way is served uncached.
    pub(crate) fn is_local_disk(&self) -> bool {
        matches!(self, Error::Io { .. })
    }
}

/// The cause of an [`Error`], shared by every reader of a failed fill.
///
/// It dereferences to the error inside, and the outer error's
/// [`source`](std::error::Error::source) is that error itself, so it can be downcast:
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() {
/// use std::error::Error as _;
/// let file = tempfile::NamedTempFile::new().unwrap();
/// let err = readthrough::Cache::builder(file.path()).build().await.unwrap_err();
/// let cause = err.source().unwrap().downcast_ref::<std::io::Error>().unwrap();
/// assert_eq!(cause.kind(), std::io::ErrorKind::NotADirectory);
/// # }
/// ```
#[derive(Debug)]
pub struct Cause<E: ?Sized>(pub(crate) Arc<E>);

impl<E> Cause<E> {
    pub(crate) fn new(error: E) -> Self {
        Cause(Arc::new(error))
    }
}

impl<E: ?Sized> Clone for Cause<E> {
    fn clone(&self) -> Self {
        Cause(Arc::clone(&self.0))
    }
}

impl<E: ?Sized> std::ops::Deref for Cause<E> {
    type Target = E;

    fn deref(&self) -> &E {
        &self.0
    }
}

impl<E: ?Sized + std::fmt::Display> std::fmt::Display for Cause<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

impl From<Error> for io::Error {
    /// Keeps the kind of an I/O cause, also inside an origin's error, and makes an
    /// HTTP 404 or 410 and an object store's "not found" `NotFound`.
    fn from(err: Error) -> Self {
        let kind = match &err {
            Error::Io { source, .. } | Error::BadDirectory { source, .. } => source.kind(),
            Error::Origin { source, .. } => origin_kind(&**source),
            #[cfg(feature = "http")]
            Error::HttpStatus {
                status: 404 | 410, ..
            } => io::ErrorKind::NotFound,
            Error::InvalidKey { .. }
            | Error::LayoutEscape { .. }
            | Error::InvalidSetting(_)
            | Error::InvalidRange { .. }
            | Error::RangeNotSatisfiable { .. } => io::ErrorKind::InvalidInput,
            #[cfg(feature = "server")]
            Error::InvalidRoute { .. } => io::ErrorKind::InvalidInput,
            Error::RecordExists { .. } => io::ErrorKind::AlreadyExists,
            Error::RecordMissing { .. } => io::ErrorKind::NotFound,
            Error::Locked { .. } => io::ErrorKind::WouldBlock,
            Error::LengthMismatch { .. } | Error::DigestMismatch { .. } | Error::Changed { .. } => {
                io::ErrorKind::InvalidData
            }
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, err)
    }
}

/// The kind of an origin's error: that of an I/O error or of this crate's error inside,
/// and an object store's "not found" and "permission denied".
fn origin_kind(source: &(dyn std::error::Error + Send + Sync + 'static)) -> io::ErrorKind {
    if let Some(cause) = source.downcast_ref::<io::Error>() {
        return cause.kind();
    }
    if let Some(inner) = source.downcast_ref::<Error>() {
        return io::Error::from(inner.clone()).kind();
    }
    #[cfg(feature = "object-store")]
    if let Some(store) = source.downcast_ref::<object_store::Error>() {
        return match store {
            object_store::Error::NotFound { .. } => io::ErrorKind::NotFound,
            object_store::Error::PermissionDenied { .. }
            | object_store::Error::Unauthenticated { .. } => io::ErrorKind::PermissionDenied,
            _ => io::ErrorKind::Other,
        };
    }
    io::ErrorKind::Other
}
