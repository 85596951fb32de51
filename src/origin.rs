//! The [`Origin`] trait: where blobs come from on a miss.

use std::fmt;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{FutureExt, Stream, StreamExt, TryStreamExt};

use crate::error::BoxError;
use crate::range::ByteRange;

#[cfg(feature = "http")]
mod http;
#[cfg(feature = "object-store")]
mod object_store;
#[cfg(any(feature = "http", feature = "object-store"))]
mod resume;
#[cfg(all(feature = "http", feature = "s3"))]
mod url;
#[cfg(feature = "object-store")]
pub use self::object_store::ObjectStoreOrigin;
#[cfg(feature = "s3")]
pub use self::object_store::{S3Location, s3_store, s3_store_with};
#[cfg(feature = "http")]
pub use http::{HttpOrigin, HttpOriginBuilder};
#[cfg(all(feature = "http", feature = "s3"))]
pub use url::UrlOrigin;

/// A source of blobs: the slow or costly thing the cache sits in front of.
///
/// The cache calls [`fetch`](Origin::fetch) at most once per fill, however many readers
/// wait on that fill. The trait is object safe; `Arc<T>` and `Box<T>` forward to `T`.
///
/// Errors from the origin (from `fetch` or from the body stream) reach every reader of
/// the fill as [`Error::Origin`](crate::Error::Origin), and nothing is cached.
///
/// ```
/// use bytes::Bytes;
/// use futures::future::BoxFuture;
/// use readthrough::{BoxError, FetchOptions, Fetched, Origin};
///
/// /// Serves the key itself, repeated three times.
/// struct Echo;
///
/// impl Origin for Echo {
///     fn fetch(&self, key: &str, _options: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
///         let body = Bytes::from(key.repeat(3));
///         Box::pin(async move { Ok(Fetched::from(body)) })
///     }
/// }
/// # let fetched = futures::executor::block_on(Echo.fetch("ab", FetchOptions::default())).unwrap();
/// # assert_eq!(fetched.len, Some(6));
/// ```
pub trait Origin: Send + Sync + 'static {
    /// Starts fetching the blob for `key`.
    ///
    /// The returned future resolves once the origin has answered (its length and
    /// validator known, if it gives them); the body then streams through
    /// [`Fetched::body`]. When `options` ask for a range the origin may ignore it and
    /// send the whole body; it then leaves [`Fetched::offset`] at 0.
    ///
    /// # Cancellation
    /// The cache drops the future or the body when the fill is abandoned; an origin must
    /// not rely on being polled to completion.
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>>;

    /// Whether this origin honours ranges ([`FetchOptions::offset`] and
    /// [`FetchOptions::end`]): the cache asks an origin for part of a blob only when
    /// it says so, and fetches whole blobs from the others. The default is no.
    ///
    /// ```
    /// # use readthrough::{Origin, origin_fn};
    /// let origin = origin_fn(|_key: String| async { Ok::<_, std::io::Error>(b"x".to_vec()) });
    /// assert!(!origin.serves_ranges());
    /// ```
    fn serves_ranges(&self) -> bool {
        false
    }
}

impl<T: Origin + ?Sized> Origin for Arc<T> {
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        (**self).fetch(key, options)
    }

    fn serves_ranges(&self) -> bool {
        (**self).serves_ranges()
    }
}

impl<T: Origin + ?Sized> Origin for Box<T> {
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        (**self).fetch(key, options)
    }

    fn serves_ranges(&self) -> bool {
        (**self).serves_ranges()
    }
}

/// What the cache asks of an origin for one fetch. It grows with new fields, so build
/// it from [`FetchOptions::default`].
///
/// ```
/// use readthrough::{ByteRange, FetchOptions};
/// let mut options = FetchOptions::default();
/// assert_eq!(options.range(), None);
/// options.offset = 6;
/// assert_eq!(options.range(), Some(ByteRange::from(6..)));
/// options.end = Some(10);
/// assert_eq!(options.range(), Some(ByteRange::from(6..10)));
/// ```
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct FetchOptions {
    /// Send the body from this byte on (0: from the first). Asked when the cache
    /// resumes a body it already has the start of, and (of an origin that
    /// [serves ranges](Origin::serves_ranges)) for part of a blob.
    pub offset: u64,
    /// Send the body only up to, not including, this byte (`None`: to the end).
    /// Asked only of an origin that [serves ranges](Origin::serves_ranges).
    pub end: Option<u64>,
    /// With a range asked for: send the range only if the blob still has this
    /// validator (as HTTP's `If-Range`), else the whole body.
    pub if_validator: Option<String>,
    /// The validator of an expired copy the cache holds. If the blob still has it,
    /// the origin may answer [`Fetched::not_modified`] instead of sending the body
    /// (as HTTP's `If-None-Match` / `If-Modified-Since`); the copy is then kept for
    /// another lifetime. An origin that ignores this sends the body as usual.
    pub revalidate: Option<String>,
}

impl FetchOptions {
    /// The part of the blob asked for (`offset..end`), or `None` for the whole.
    pub fn range(&self) -> Option<ByteRange> {
        match (self.offset, self.end) {
            (0, None) => None,
            (start, end) => Some(ByteRange::From { start, end }),
        }
    }
}

/// An origin's answer: the body stream and what is known about it.
///
/// ```
/// use bytes::Bytes;
/// use readthrough::Fetched;
///
/// let fetched = Fetched::from(Bytes::from_static(b"hello"))
///     .with_validator("\"v1\"")
///     .with_content_type("text/plain");
/// assert_eq!(fetched.len, Some(5));
/// ```
#[non_exhaustive]
pub struct Fetched {
    /// The body, in order, from [`offset`](Fetched::offset) on.
    pub body: BoxStream<'static, Result<Bytes, BoxError>>,
    /// The full length of the blob when the origin announced it. The fill fails if the
    /// body turns out longer or shorter.
    pub len: Option<u64>,
    /// The byte at which `body` starts: 0 unless the origin honoured a range request.
    pub offset: u64,
    /// A strong validator of this version of the blob (an ETag or a Last-Modified
    /// date), when the origin has one.
    pub validator: Option<String>,
    /// The blob's media type, when the origin says.
    pub content_type: Option<String>,
    /// The SHA-256 the body must have, when the origin knows it. The fill fails if it
    /// differs.
    pub sha256: Option<[u8; 32]>,
    /// How long the stored blob lives.
    pub expiry: Expiry,
    /// The origin confirmed that the cache's expired copy is current (see
    /// [`FetchOptions::revalidate`]); `body` is empty.
    pub not_modified: bool,
}

/// How long a stored blob lives. Set per body with [`Fetched::with_ttl`] or
/// [`Fetched::never_expires`]; the default is the cache's
/// [`default_ttl`](crate::CacheBuilder::default_ttl).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Expiry {
    /// The cache's default time to live.
    #[default]
    Default,
    /// Until it is removed.
    Never,
    /// This long after it is stored.
    After(std::time::Duration),
}

impl Fetched {
    /// A body of unknown length from any stream of byte chunks.
    ///
    /// ```
    /// use bytes::Bytes;
    /// use readthrough::Fetched;
    /// let chunks = futures::stream::iter([Ok::<_, std::io::Error>(Bytes::from("ab")), Ok(Bytes::from("c"))]);
    /// let fetched = Fetched::from_stream(chunks);
    /// assert_eq!(fetched.len, None);
    /// ```
    pub fn from_stream<S, E>(body: S) -> Self
    where
        S: Stream<Item = Result<Bytes, E>> + Send + 'static,
        E: Into<BoxError> + 'static,
    {
        Fetched {
            body: body.map_err(Into::into).boxed(),
            len: None,
            offset: 0,
            validator: None,
            content_type: None,
            sha256: None,
            expiry: Expiry::Default,
            not_modified: false,
        }
    }

    /// The answer to a [revalidation](FetchOptions::revalidate): the cache's copy is
    /// current.
    ///
    /// ```
    /// let answer = readthrough::Fetched::not_modified();
    /// assert!(answer.not_modified);
    /// ```
    pub fn not_modified() -> Self {
        let mut fetched = Fetched::from_stream(stream::empty::<Result<Bytes, BoxError>>());
        fetched.not_modified = true;
        fetched
    }

    /// Stores the blob for `ttl`, whatever the cache's default.
    ///
    /// ```
    /// use std::time::Duration;
    /// use readthrough::{Expiry, Fetched};
    /// let fetched = Fetched::from(b"x".to_vec()).with_ttl(Duration::from_secs(60));
    /// assert_eq!(fetched.expiry, Expiry::After(Duration::from_secs(60)));
    /// ```
    #[must_use]
    pub fn with_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.expiry = Expiry::After(ttl);
        self
    }

    /// Stores the blob until it is removed, whatever the cache's default.
    #[must_use]
    pub fn never_expires(mut self) -> Self {
        self.expiry = Expiry::Never;
        self
    }

    /// Announces the full length of the blob.
    #[must_use]
    pub fn with_len(mut self, len: u64) -> Self {
        self.len = Some(len);
        self
    }

    /// Sets the validator (ETag or Last-Modified) of this version of the blob.
    #[must_use]
    pub fn with_validator(mut self, validator: impl Into<String>) -> Self {
        self.validator = Some(validator.into());
        self
    }

    /// Sets the media type.
    #[must_use]
    pub fn with_content_type(mut self, content_type: impl Into<String>) -> Self {
        self.content_type = Some(content_type.into());
        self
    }

    /// Sets the digest the body must have.
    #[must_use]
    pub fn with_sha256(mut self, digest: [u8; 32]) -> Self {
        self.sha256 = Some(digest);
        self
    }

    /// Says the body starts at `offset` (the origin honoured a range request).
    #[must_use]
    pub fn with_offset(mut self, offset: u64) -> Self {
        self.offset = offset;
        self
    }
}

impl From<Bytes> for Fetched {
    fn from(body: Bytes) -> Self {
        let len = body.len() as u64;
        Fetched::from_stream(stream::once(async move { Ok::<_, BoxError>(body) })).with_len(len)
    }
}

/// Bodies from owned and static bytes and text, as [`Bytes`] converts them.
macro_rules! fetched_from_bytes {
    ($($body:ty),*) => {$(
        impl From<$body> for Fetched {
            fn from(body: $body) -> Self {
                Fetched::from(Bytes::from(body))
            }
        }
    )*};
}

fetched_from_bytes!(Vec<u8>, String, &'static str, &'static [u8]);

impl fmt::Debug for Fetched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Fetched")
            .field("len", &self.len)
            .field("offset", &self.offset)
            .field("validator", &self.validator)
            .field("content_type", &self.content_type)
            .field("expiry", &self.expiry)
            .field("not_modified", &self.not_modified)
            .finish_non_exhaustive()
    }
}

/// An [`Origin`] made from an async closure that takes the key.
///
/// Made by [`origin_fn`].
pub struct FnOrigin<F>(F);

/// Makes an [`Origin`] from an async closure `|key: String| async { … }` that returns
/// anything convertible into [`Fetched`] (such as `Bytes` or `Vec<u8>`), or an error.
///
/// ```
/// use readthrough::{origin_fn, Origin};
/// let origin = origin_fn(|key: String| async move {
///     Ok::<_, std::io::Error>(format!("body of {key}").into_bytes())
/// });
/// # let fetched = futures::executor::block_on(origin.fetch("k", Default::default())).unwrap();
/// # assert_eq!(fetched.len, Some(9));
/// ```
pub fn origin_fn<F, Fut, T, E>(f: F) -> FnOrigin<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<Fetched>,
    E: Into<BoxError>,
{
    FnOrigin(f)
}

impl<F, Fut, T, E> Origin for FnOrigin<F>
where
    F: Fn(String) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<T, E>> + Send + 'static,
    T: Into<Fetched>,
    E: Into<BoxError>,
{
    fn fetch(&self, key: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        (self.0)(key.to_owned())
            .map(|result| result.map(Into::into).map_err(Into::into))
            .boxed()
    }
}

impl<F> fmt::Debug for FnOrigin<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("FnOrigin")
    }
}

/// Calls `origin.fetch` and awaits its answer, turning a panic or an error into
/// [`Error`](crate::Error) for `key`.
pub(crate) async fn guarded_fetch(
    origin: &dyn Origin,
    key: &str,
    options: FetchOptions,
) -> crate::Result<Fetched> {
    let panicked = || crate::Error::OriginPanicked {
        key: key.to_owned(),
    };
    let answer =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| origin.fetch(key, options)))
            .map_err(|_| panicked())?;
    match std::panic::AssertUnwindSafe(answer).catch_unwind().await {
        Ok(Ok(fetched)) => Ok(fetched),
        Ok(Err(e)) => Err(origin_error(key, e)),
        Err(_) => Err(panicked()),
    }
}

/// An origin's error as [`Error::Origin`](crate::Error::Origin) for `key`. One that
/// already is one (the crate's own origins make them), or a range the blob does not
/// have ([`Error::RangeNotSatisfiable`](crate::Error::RangeNotSatisfiable)), keeps its
/// cause and names `key`, the cache's key, rather than what the origin was asked for
/// (an object path).
fn origin_error(key: &str, error: BoxError) -> crate::Error {
    match error.downcast::<crate::Error>() {
        Ok(error) => match *error {
            crate::Error::Origin { source, .. } => crate::Error::Origin {
                key: key.to_owned(),
                source,
            },
            crate::Error::RangeNotSatisfiable { range, length, .. } => {
                crate::Error::RangeNotSatisfiable {
                    key: key.to_owned(),
                    range,
                    length,
                }
            }
            // The origin of a slice says the object changed under the cache's key.
            changed @ crate::Error::Changed { .. } => changed,
            other => crate::Error::origin(key, Box::new(other)),
        },
        Err(error) => crate::Error::origin(key, error),
    }
}

/// The next chunk of an origin's body, turning a panic or an error into
/// [`Error`](crate::Error) for `key`.
pub(crate) async fn guarded_next(
    body: &mut BoxStream<'static, Result<Bytes, BoxError>>,
    key: &str,
) -> crate::Result<Option<Bytes>> {
    match std::panic::AssertUnwindSafe(body.next())
        .catch_unwind()
        .await
    {
        Ok(Some(Ok(chunk))) => Ok(Some(chunk)),
        Ok(Some(Err(e))) => Err(origin_error(key, e)),
        Ok(None) => Ok(None),
        Err(_) => Err(crate::Error::OriginPanicked {
            key: key.to_owned(),
        }),
    }
}
