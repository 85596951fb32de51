//! [`UrlOrigin`]: keys that are URLs of several schemes.

use std::collections::HashMap;
use std::fmt;
use std::sync::Mutex;

use futures::future::BoxFuture;

use crate::error::{BoxError, Error, Result};
use crate::origin::{
    FetchOptions, Fetched, HttpOrigin, ObjectStoreOrigin, Origin, S3Location, s3_store,
};

/// An [`Origin`] whose keys are URLs: `http://` and `https://` through an
/// [`HttpOrigin`], and `s3://bucket/key` through an [`ObjectStoreOrigin`] for each
/// bucket (configured from the AWS environment, see [`s3_store`]). The key of an
/// entry is the URL exactly as given.
///
/// ```
/// use readthrough::{HttpOrigin, UrlOrigin};
/// let origin = UrlOrigin::new(HttpOrigin::new()?);
/// assert!(UrlOrigin::check("https://example.com/a.bin").is_ok());
/// assert!(UrlOrigin::check("s3://bucket/a.bin").is_ok());
/// assert!(UrlOrigin::check("ftp://example.com/a.bin").is_err());
/// assert!(UrlOrigin::check("not a url").is_err());
/// # Ok::<(), readthrough::Error>(())
/// ```
pub struct UrlOrigin {
    http: HttpOrigin,
    s3_endpoint: Option<String>,
    buckets: Mutex<HashMap<String, ObjectStoreOrigin>>,
}

impl UrlOrigin {
    /// Fetches HTTP(S) URLs with `http` and S3 URLs with stores made on first use.
    pub fn new(http: HttpOrigin) -> Self {
        UrlOrigin {
            http,
            s3_endpoint: None,
            buckets: Mutex::default(),
        }
    }

    /// Sends S3 requests to `endpoint` (an S3-compatible server) instead of AWS.
    #[must_use]
    pub fn s3_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.s3_endpoint = Some(endpoint.into());
        self
    }

    /// Checks that `url` is one this origin can fetch, without fetching it.
    ///
    /// # Errors
    /// [`Error::InvalidUrl`] naming the URL and what is wrong with it.
    pub fn check(url: &str) -> Result<()> {
        let invalid = |reason| Error::InvalidUrl {
            url: url.to_owned(),
            reason,
        };
        if url.starts_with("s3://") {
            return S3Location::parse(url).map(drop);
        }
        let parsed = reqwest::Url::parse(url).map_err(|_| invalid("not a URL"))?;
        match parsed.scheme() {
            "http" | "https" if parsed.host().is_some() => Ok(()),
            "http" | "https" => Err(invalid("an HTTP URL needs a host")),
            _ => Err(invalid(
                "unsupported scheme: use http://, https:// or s3://",
            )),
        }
    }

    fn bucket(&self, bucket: &str) -> Result<ObjectStoreOrigin> {
        let mut buckets = self.buckets.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(origin) = buckets.get(bucket) {
            return Ok(origin.clone());
        }
        let origin = ObjectStoreOrigin::new(s3_store(bucket, self.s3_endpoint.as_deref())?);
        buckets.insert(bucket.to_owned(), origin.clone());
        Ok(origin)
    }
}

impl Origin for UrlOrigin {
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        if let Err(e) = Self::check(key) {
            return Box::pin(async move { Err(BoxError::from(e)) });
        }
        match S3Location::parse(key) {
            Ok(location) => match self.bucket(&location.bucket) {
                Ok(origin) => origin.fetch(&location.key, options),
                Err(e) => Box::pin(async move { Err(BoxError::from(e)) }),
            },
            Err(_) => self.http.fetch(key, options),
        }
    }

    fn serves_ranges(&self) -> bool {
        true
    }
}

impl fmt::Debug for UrlOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UrlOrigin")
            .field("http", &self.http)
            .field("s3_endpoint", &self.s3_endpoint)
            .finish_non_exhaustive()
    }
}
