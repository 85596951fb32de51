//! The tier's store calls, each bounded by the tier's request timeout, with their
//! failures sorted into what the protocol acts on.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::TryStreamExt;
use object_store::path::Path;
use object_store::{
    ObjectMeta, ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload, PutResult,
    UpdateVersion,
};

/// Why a tier call did not do what was asked.
#[derive(Debug)]
pub(crate) enum Refusal {
    /// There is no such object.
    Missing,
    /// A create-only write found the object there.
    Exists,
    /// A conditional write found another version.
    Conflict,
    /// The store cannot do a conditional update.
    Unsupported,
    /// Anything else: unreachable, slow, throttled, denied, or a broken answer.
    Trouble(String),
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Missing => f.write_str("no such object"),
            Refusal::Exists => f.write_str("the object already exists"),
            Refusal::Conflict => f.write_str("the object changed"),
            Refusal::Unsupported => f.write_str("the store has no conditional update"),
            Refusal::Trouble(why) => f.write_str(why),
        }
    }
}

pub(crate) type Answer<T> = std::result::Result<T, Refusal>;

/// The tier's store, with the timeout that bounds each call.
#[derive(Clone)]
pub(crate) struct Bucket {
    pub(crate) store: Arc<dyn ObjectStore>,
    pub(crate) timeout: Duration,
}

impl Bucket {
    async fn bounded<T>(
        &self,
        what: &str,
        at: &Path,
        call: impl Future<Output = object_store::Result<T>>,
    ) -> Answer<T> {
        match tokio::time::timeout(self.timeout, call).await {
            Ok(Ok(value)) => Ok(value),
            Ok(Err(e)) => Err(refusal(e, what, at)),
            Err(_) => Err(Refusal::Trouble(format!(
                "{what} {at}: no answer within {:?}",
                self.timeout
            ))),
        }
    }

    /// The whole object.
    pub(crate) async fn get(&self, at: &Path) -> Answer<Bytes> {
        self.bounded("get", at, async { self.store.get(at).await?.bytes().await })
            .await
    }

    pub(crate) async fn head(&self, at: &Path) -> Answer<ObjectMeta> {
        self.bounded("head", at, self.store.head(at)).await
    }

    /// Writes `bytes` at `at` as `mode` says.
    pub(crate) async fn put(&self, at: &Path, bytes: Bytes, mode: PutMode) -> Answer<PutResult> {
        let options = PutOptions::from(mode);
        let payload = PutPayload::from_bytes(bytes);
        self.bounded("put", at, self.store.put_opts(at, payload, options))
            .await
    }

    /// Creates `at` only if nothing is there.
    pub(crate) async fn create(&self, at: &Path, bytes: Bytes) -> Answer<PutResult> {
        self.put(at, bytes, PutMode::Create).await
    }

    /// Replaces `at` only if it is still `version`.
    pub(crate) async fn update(
        &self,
        at: &Path,
        bytes: Bytes,
        version: UpdateVersion,
    ) -> Answer<PutResult> {
        self.put(at, bytes, PutMode::Update(version)).await
    }

    pub(crate) async fn delete(&self, at: &Path) -> Answer<()> {
        match self.bounded("delete", at, self.store.delete(at)).await {
            Err(Refusal::Missing) => Ok(()),
            other => other,
        }
    }

    /// Every object under `prefix`.
    pub(crate) async fn list(&self, prefix: &Path) -> Answer<Vec<ObjectMeta>> {
        self.bounded(
            "list",
            prefix,
            self.store.list(Some(prefix)).try_collect::<Vec<_>>(),
        )
        .await
    }

    /// The folders right under `prefix`.
    pub(crate) async fn folders(&self, prefix: &Path) -> Answer<Vec<Path>> {
        self.bounded("list", prefix, self.store.list_with_delimiter(Some(prefix)))
            .await
            .map(|listing| listing.common_prefixes)
    }

    /// Removes every object under `prefix`; says how many bytes went.
    pub(crate) async fn delete_all(&self, prefix: &Path) -> Answer<u64> {
        let mut freed = 0;
        for object in self.list(prefix).await? {
            self.delete(&object.location).await?;
            freed += object.size;
        }
        Ok(freed)
    }
}

fn refusal(e: object_store::Error, what: &str, at: &Path) -> Refusal {
    match e {
        object_store::Error::NotFound { .. } => Refusal::Missing,
        object_store::Error::AlreadyExists { .. } => Refusal::Exists,
        object_store::Error::Precondition { .. } => Refusal::Conflict,
        object_store::Error::NotImplemented { .. } | object_store::Error::NotSupported { .. } => {
            Refusal::Unsupported
        }
        other => Refusal::Trouble(format!("{what} {at}: {other}")),
    }
}
