//! [`ObjectStoreStorage`]: any [`object_store`] store (S3, GCS, Azure, local files,
//! memory) as the durable storage of a write-behind cache.

use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use object_store::path::Path;
use object_store::{ObjectStore, ObjectStoreExt, PutPayload};

use crate::error::{BoxError, Error};
use crate::origin::{FetchOptions, Fetched, ObjectStoreOrigin};
use crate::storage::Storage;

/// [`Storage`] over an [`ObjectStore`]: each key is an object path in the store.
///
/// Reads stream through an [`ObjectStoreOrigin`], so a read that breaks off resumes
/// where it stopped if the object is unchanged. Keys must be valid object paths
/// (`a/b.json`, not `a//b` or `/a`); [`WriteBehind::set`](crate::WriteBehind::set)
/// refuses any other key at once.
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> readthrough::Result<()> {
/// # let dir = tempfile::tempdir().unwrap();
/// use std::sync::Arc;
/// use readthrough::{Cache, ObjectStoreStorage, WriteBehind};
///
/// let store = Arc::new(object_store::memory::InMemory::new());
/// let cache = Cache::builder(dir.path()).build().await?;
/// let values = WriteBehind::new(&cache, ObjectStoreStorage::new(store));
/// values.ready().await?;
/// # Ok(()) }
/// ```
#[derive(Clone)]
pub struct ObjectStoreStorage {
    store: Arc<dyn ObjectStore>,
    reads: ObjectStoreOrigin,
}

impl ObjectStoreStorage {
    /// Storage in `store`.
    pub fn new(store: Arc<dyn ObjectStore>) -> Self {
        ObjectStoreStorage {
            reads: ObjectStoreOrigin::new(Arc::clone(&store)),
            store,
        }
    }
}

impl fmt::Debug for ObjectStoreStorage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ObjectStoreStorage")
            .field("store", &self.store.to_string())
            .finish()
    }
}

impl Storage for ObjectStoreStorage {
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Fetched>, BoxError>> {
        let (reads, key) = (self.reads.clone(), key.to_owned());
        Box::pin(async move {
            match reads.open(key, FetchOptions::default()).await {
                Ok(fetched) => Ok(Some(fetched)),
                Err(Error::Origin { source, .. })
                    if matches!(
                        source.downcast_ref::<object_store::Error>(),
                        Some(object_store::Error::NotFound { .. })
                    ) =>
                {
                    Ok(None)
                }
                Err(e) => Err(e.into()),
            }
        })
    }

    fn set(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<(), BoxError>> {
        let (store, path) = (Arc::clone(&self.store), Path::parse(key));
        Box::pin(async move {
            store.put(&path?, PutPayload::from(value)).await?;
            Ok(())
        })
    }

    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), BoxError>> {
        let (store, path) = (Arc::clone(&self.store), Path::parse(key));
        Box::pin(async move {
            match store.delete(&path?).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }

    /// Keys must be valid object paths.
    fn accepts(&self, key: &str) -> Result<(), BoxError> {
        Path::parse(key)?;
        Ok(())
    }

    /// Asks for an object that need not exist: an answer, found or not, means the
    /// store is reachable and the credentials work.
    fn check(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        let store = Arc::clone(&self.store);
        Box::pin(async move {
            match store.head(&Path::from(".readthrough-check")).await {
                Ok(_) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(e) => Err(e.into()),
            }
        })
    }
}
