//! [`ObjectStoreOrigin`]: blobs from any [`object_store`] store (S3, GCS, Azure, local
//! files, memory), and `s3://` URLs.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{BoxStream, StreamExt};
use futures::{FutureExt, TryStreamExt};
use object_store::path::Path;
use object_store::{Attribute, GetOptions, GetRange, GetResult, ObjectStore, ObjectStoreExt};

use crate::error::{BoxError, Error, Result};
use crate::origin::resume::{Reopen, Resuming};
use crate::origin::{FetchOptions, Fetched, Origin};
use crate::range::ByteRange;

/// An [`Origin`] over an [`ObjectStore`]: each key is an object path in the store.
///
/// It streams the object, hands its size, ETag and content type to the cache, and
/// when the stream breaks off resumes with a ranged get that must match the ETag
/// (`If-Match`). If the object changed meanwhile the fetch fails with
/// [`Error::ObjectChanged`] rather than mix two versions.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::sync::Arc;
/// use object_store::{ObjectStoreExt, PutPayload, memory::InMemory, path::Path};
/// use readthrough::{Cache, ObjectStoreOrigin};
///
/// let store = Arc::new(InMemory::new());
/// store.put(&Path::from("data/a.bin"), PutPayload::from_static(b"abc")).await.unwrap();
/// let cache = Cache::builder(dir.path())
///     .origin(ObjectStoreOrigin::new(store))
///     .build()
///     .await?;
/// assert_eq!(cache.get("data/a.bin").await?.bytes().await?, "abc");
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ObjectStoreOrigin {
    store: Arc<dyn ObjectStore>,
    idle_timeout: Duration,
    resumes: u32,
}

impl ObjectStoreOrigin {
    /// An origin over `store`, with a 30 s idle timeout and up to 3 resumes.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ObjectStoreOrigin {
            store,
            idle_timeout: Duration::from_secs(30),
            resumes: 3,
        }
    }

    /// How long the body may send nothing before the fetch fails or resumes.
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = timeout;
        self
    }

    /// How many times a broken body is resumed by range.
    #[must_use]
    pub fn resumes(mut self, resumes: u32) -> Self {
        self.resumes = resumes;
        self
    }
}

impl fmt::Debug for ObjectStoreOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreOrigin")
            .field("store", &self.store.to_string())
            .field("idle_timeout", &self.idle_timeout)
            .finish_non_exhaustive()
    }
}

impl Origin for ObjectStoreOrigin {
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let this = self.clone();
        let key = key.to_owned();
        Box::pin(async move { this.open(key, options).await.map_err(BoxError::from) })
    }

    fn serves_ranges(&self) -> bool {
        true
    }
}

impl ObjectStoreOrigin {
    pub(crate) async fn open(self, key: String, options: FetchOptions) -> Result<Fetched> {
        let location = Path::parse(&key).map_err(|e| store_error(&key, e))?;
        let range = options.range();
        let ranged = GetOptions {
            range: range.map(get_range),
            if_match: options.if_validator.clone().filter(|_| range.is_some()),
            if_none_match: options.revalidate.clone().filter(|_| range.is_none()),
            ..GetOptions::default()
        };
        let result = match self.store.get_opts(&location, ranged).await {
            // As HTTP's If-Range: a changed object comes back whole.
            Err(object_store::Error::Precondition { .. }) => {
                self.store.get_opts(&location, GetOptions::default()).await
            }
            Err(object_store::Error::NotModified { .. }) => return Ok(Fetched::not_modified()),
            Err(e) if let Some(range) = range => {
                return Err(self.range_error(&key, &location, range, e).await);
            }
            other => other,
        }
        .map_err(|e| store_error(&key, e))?;
        let validator = result.meta.e_tag.clone();
        let len = result.meta.size;
        let offset = result.range.start;
        let end = (range.is_some() && offset == options.offset).then_some(result.range.end);
        let content_type = result
            .attributes
            .get(&Attribute::ContentType)
            .map(|v| v.to_string());
        let reopen = validator.clone().map(|etag| {
            let store = Arc::clone(&self.store);
            let key = key.clone();
            Box::new(move |from| {
                resume(Arc::clone(&store), key.clone(), (from, end), etag.clone()).boxed()
            }) as Reopen
        });
        let body = Resuming {
            stream: body_stream(result, &key),
            name: key,
            received: offset,
            len: Some(len),
            end,
            idle: self.idle_timeout,
            resumes: self.resumes,
            reopen,
        };
        Ok(body.into_fetched(validator, content_type))
    }
}

impl ObjectStoreOrigin {
    /// The error of a ranged get that failed with `error`: a range that starts at or
    /// past the object's end (the store's errors do not say so in a form to match,
    /// so its size is asked) is [`Error::RangeNotSatisfiable`].
    async fn range_error(
        &self,
        key: &str,
        location: &Path,
        range: ByteRange,
        error: object_store::Error,
    ) -> Error {
        match self.store.head(location).await {
            Ok(meta) if range.resolve(meta.size).is_none() => Error::RangeNotSatisfiable {
                key: key.to_owned(),
                range: range.to_string(),
                length: meta.size,
            },
            _ => store_error(key, error),
        }
    }
}

/// `range` as object_store asks for it.
fn get_range(range: ByteRange) -> GetRange {
    match range {
        ByteRange::From { start, end: None } => GetRange::Offset(start),
        ByteRange::From {
            start,
            end: Some(end),
        } => GetRange::Bounded(start..end),
        ByteRange::Last(n) => GetRange::Suffix(n),
    }
}

fn store_error(key: &str, e: impl std::error::Error + Send + Sync + 'static) -> Error {
    Error::origin(key, Box::new(e))
}

fn body_stream(result: GetResult, key: &str) -> BoxStream<'static, Result<Bytes>> {
    let key = key.to_owned();
    result
        .into_stream()
        .map_err(move |e| store_error(&key, e))
        .boxed()
}

/// Gets the rest of the object, from `from` to `end`, if its ETag is still `etag`.
async fn resume(
    store: Arc<dyn ObjectStore>,
    key: String,
    (from, end): (u64, Option<u64>),
    etag: String,
) -> Result<BoxStream<'static, Result<Bytes>>> {
    let location = Path::parse(&key).map_err(|e| store_error(&key, e))?;
    let options = GetOptions {
        range: Some(get_range(ByteRange::From { start: from, end })),
        if_match: Some(etag.clone()),
        ..GetOptions::default()
    };
    match store.get_opts(&location, options).await {
        Ok(result) => Ok(body_stream(result, &key)),
        // The store does not say what the ETag is now.
        Err(object_store::Error::Precondition { .. }) => Err(Error::ObjectChanged {
            url: key,
            validator: etag,
            now: None,
        }),
        Err(e) => Err(store_error(&key, e)),
    }
}

/// An `s3://bucket/key` URL, split into its bucket and object key.
///
/// ```
/// use readthrough::S3Location;
/// let location = S3Location::parse("s3://my-bucket/models/a.bin")?;
/// assert_eq!((location.bucket.as_str(), location.key.as_str()), ("my-bucket", "models/a.bin"));
/// assert!(S3Location::parse("https://example.com/a").is_err());
/// assert!(S3Location::parse("s3://bucket-only").is_err());
/// # Ok::<(), readthrough::Error>(())
/// ```
#[cfg(feature = "s3")]
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    /// The bucket name.
    pub bucket: String,
    /// The object key within the bucket.
    pub key: String,
}

#[cfg(feature = "s3")]
impl S3Location {
    /// Parses `s3://bucket/key`.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] naming the URL when it is not of that form.
    pub fn parse(url: &str) -> Result<Self> {
        let invalid = |reason| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        let rest = url
            .strip_prefix("s3://")
            .ok_or_else(|| invalid("an S3 URL starts with s3://"))?;
        let (bucket, key) = rest
            .split_once('/')
            .ok_or_else(|| invalid("an S3 URL names an object: s3://bucket/key"))?;
        if bucket.is_empty() || key.is_empty() {
            return Err(invalid(
                "an S3 URL names a bucket and a key: s3://bucket/key",
            ));
        }
        Ok(S3Location {
            bucket: bucket.to_owned(),
            key: key.to_owned(),
        })
    }
}

/// A store for an S3 bucket, configured from the usual AWS environment variables
/// (`AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
/// `AWS_ENDPOINT_URL`, `AWS_ALLOW_HTTP`, ...). `endpoint`, when given, overrides the
/// endpoint for S3-compatible servers; a plain `http://` endpoint is allowed.
///
/// # Errors
/// [`Error::Origin`] when the configuration is incomplete or invalid.
///
/// ```
/// let store = readthrough::s3_store("my-bucket", Some("http://127.0.0.1:9000"))?;
/// let origin = readthrough::ObjectStoreOrigin::new(store);
/// # Ok::<(), readthrough::Error>(())
/// ```
#[cfg(feature = "s3")]
pub fn s3_store(bucket: &str, endpoint: Option<&str>) -> Result<Arc<dyn ObjectStore>> {
    s3_store_with(
        object_store::aws::AmazonS3Builder::from_env(),
        bucket,
        endpoint,
    )
}

/// As [`s3_store`], from a builder the caller has configured (credentials, region,
/// retries) instead of the environment.
///
/// # Errors
/// [`Error::Origin`] when the configuration is incomplete or invalid.
///
/// ```
/// use object_store::aws::AmazonS3Builder;
/// let builder = AmazonS3Builder::new()
///     .with_access_key_id("key")
///     .with_secret_access_key("secret")
///     .with_region("eu-west-1");
/// let store = readthrough::s3_store_with(builder, "my-bucket", None)?;
/// # Ok::<(), readthrough::Error>(())
/// ```
#[cfg(feature = "s3")]
pub fn s3_store_with(
    builder: object_store::aws::AmazonS3Builder,
    bucket: &str,
    endpoint: Option<&str>,
) -> Result<Arc<dyn ObjectStore>> {
    let mut builder = builder.with_bucket_name(bucket);
    if let Some(endpoint) = endpoint {
        builder = builder
            .with_endpoint(endpoint)
            .with_allow_http(endpoint.starts_with("http://"));
    }
    let store = builder
        .build()
        .map_err(|e| store_error(&format!("s3://{bucket}"), e))?;
    Ok(Arc::new(store))
}
