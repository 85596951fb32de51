//! The server's origins: the upstream as the cache reads it, recording what each
//! response said about its body (validator, content type) for the responses to
//! clients, and the upstream with a request's credentials.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use futures::future::BoxFuture;
use futures::{FutureExt, StreamExt};
use hyper::HeaderMap;
use hyper::header::{AUTHORIZATION, COOKIE};
use sha2::{Digest, Sha256};

use crate::error::{BoxError, Error, Result};
use crate::origin::{FetchOptions, Fetched, HttpOrigin, Origin};
use crate::server::metrics::Metrics;

/// How many keys' heads are remembered while their fills run; past it they are
/// forgotten (a response then goes without `Content-Type` and validator).
const HEADS_KEPT: usize = 4096;

/// What an upstream response said about its body.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) validator: Option<String>,
    pub(crate) content_type: Option<String>,
}

impl Head {
    pub(crate) fn of(fetched: &Fetched) -> Self {
        Head {
            validator: fetched.validator.clone(),
            content_type: fetched.content_type.clone(),
        }
    }
}

/// The heads of the latest fetches, by key.
#[derive(Debug, Default)]
pub(crate) struct Heads(Mutex<HashMap<String, Head>>);

impl Heads {
    fn record(&self, key: &str, head: Head) {
        let mut heads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if heads.len() >= HEADS_KEPT {
            heads.clear();
        }
        heads.insert(key.to_owned(), head);
    }

    pub(crate) fn get(&self, key: &str) -> Option<Head> {
        let heads = self.0.lock().unwrap_or_else(|e| e.into_inner());
        heads.get(key).cloned()
    }
}

/// An upstream as the cache reads it: a key is the upstream URL, with a
/// `#credentials=DIGEST` suffix when it is private to some credentials.
pub(crate) struct Recording {
    pub(crate) inner: Arc<dyn Origin>,
    pub(crate) heads: Arc<Heads>,
    pub(crate) metrics: Arc<Metrics>,
}

impl Origin for Recording {
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let url = key.split_once('#').map_or(key, |(url, _)| url);
        let fetching = self.inner.fetch(url, options);
        let (heads, key, held) = (
            Arc::clone(&self.heads),
            key.to_owned(),
            self.metrics.fetch(),
        );
        async move {
            let mut fetched = fetching.await?;
            heads.record(&key, Head::of(&fetched));
            // The fetch counts as in flight until its body is dropped.
            fetched.body = fetched
                .body
                .inspect(move |_| {
                    let _in_flight = &held;
                })
                .boxed();
            Ok(fetched)
        }
        .boxed()
    }
}

/// The credentials a request carries (`Authorization`, `Cookie`), if any.
pub(crate) fn credentials(headers: &HeaderMap) -> Option<HeaderMap> {
    let mut found = HeaderMap::new();
    for name in [AUTHORIZATION, COOKIE] {
        for value in headers.get_all(&name) {
            found.append(name.clone(), value.clone());
        }
    }
    (!found.is_empty()).then_some(found)
}

/// The cache key of `url` private to `credentials`.
pub(crate) fn private_key(url: &str, credentials: &HeaderMap) -> String {
    let mut digest = Sha256::new();
    for (name, value) in credentials {
        digest.update(name.as_str());
        digest.update(b"\0");
        digest.update(value.as_bytes());
        digest.update(b"\0");
    }
    format!("{url}#credentials={}", hex::encode(digest.finalize()))
}

/// An HTTP upstream that sends `credentials` with each request, over `client`.
pub(crate) fn with_credentials(
    client: &reqwest::Client,
    idle_timeout: std::time::Duration,
    credentials: HeaderMap,
) -> Result<HttpOrigin> {
    let mut builder = HttpOrigin::builder()
        .client(client.clone())
        .idle_timeout(idle_timeout);
    for (name, value) in &credentials {
        builder = builder.header(name.clone(), value.clone());
    }
    builder.build()
}

/// The status a client gets for `error`: the upstream's 404 (or 410) as 404, a
/// timeout as 504, a bad key as 400, local trouble as 500, anything else from the
/// upstream as 502.
pub(crate) fn status_of(error: &Error) -> u16 {
    if error.is_not_found() {
        return 404;
    }
    if timed_out(error) {
        return 504;
    }
    match error {
        Error::InvalidKey { .. } | Error::LayoutEscape { .. } => 400,
        Error::Io { .. } | Error::BadDirectory { .. } => 500,
        _ => 502,
    }
}

/// Whether `error` or any of its causes is a timeout.
fn timed_out(error: &Error) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(error);
    while let Some(e) = cause {
        if matches!(e.downcast_ref::<Error>(), Some(Error::IdleTimeout { .. }))
            || e.downcast_ref::<reqwest::Error>()
                .is_some_and(reqwest::Error::is_timeout)
        {
            return true;
        }
        cause = e.source();
    }
    false
}
