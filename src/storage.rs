//! The [`Storage`] trait: a slower durable store that a [`WriteBehind`](crate::WriteBehind)
//! cache sits in front of.

#[cfg(feature = "object-store")]
mod object_store;

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;

use crate::error::BoxError;
use crate::origin::{FetchOptions, Fetched, Origin};

#[cfg(feature = "object-store")]
pub use self::object_store::ObjectStoreStorage;

/// A durable key-value store behind a [`WriteBehind`](crate::WriteBehind) cache:
/// an object store, a database, a remote service.
///
/// Implementations are called from background tasks and may be called concurrently.
/// A failed [`set`](Self::set) or [`delete`](Self::delete) is retried, so both must be
/// safe to repeat.
///
/// ```
/// use std::collections::HashMap;
/// use std::sync::Mutex;
/// use bytes::Bytes;
/// use futures::future::BoxFuture;
/// use readthrough::{BoxError, Fetched, Storage};
///
/// /// A toy storage in memory.
/// #[derive(Default)]
/// struct Memory(Mutex<HashMap<String, Bytes>>);
///
/// impl Storage for Memory {
///     fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Fetched>, BoxError>> {
///         let found = self.0.lock().unwrap().get(key).cloned();
///         Box::pin(async move { Ok(found.map(Fetched::from)) })
///     }
///     fn set(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<(), BoxError>> {
///         self.0.lock().unwrap().insert(key.to_owned(), value);
///         Box::pin(async { Ok(()) })
///     }
///     fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), BoxError>> {
///         self.0.lock().unwrap().remove(key);
///         Box::pin(async { Ok(()) })
///     }
/// }
/// ```
pub trait Storage: Send + Sync + 'static {
    /// The value of `key`, streaming, or `None` when storage has none.
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Fetched>, BoxError>>;

    /// Stores `value` under `key`, replacing what is there.
    fn set(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<(), BoxError>>;

    /// Removes `key`; removing a key that is not there succeeds.
    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), BoxError>>;

    /// Whether storage can ever hold `key`: a key it refuses is refused at once by
    /// [`WriteBehind::set`](crate::WriteBehind::set), instead of being retried in the
    /// background forever. The default takes every key.
    fn accepts(&self, key: &str) -> Result<(), BoxError> {
        let _ = key;
        Ok(())
    }

    /// Whether storage can be reached now. The default says yes.
    fn check(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        Box::pin(async { Ok(()) })
    }
}

impl<S: Storage + ?Sized> Storage for Arc<S> {
    fn get(&self, key: &str) -> BoxFuture<'static, Result<Option<Fetched>, BoxError>> {
        (**self).get(key)
    }
    fn set(&self, key: &str, value: Bytes) -> BoxFuture<'static, Result<(), BoxError>> {
        (**self).set(key, value)
    }
    fn delete(&self, key: &str) -> BoxFuture<'static, Result<(), BoxError>> {
        (**self).delete(key)
    }
    fn accepts(&self, key: &str) -> Result<(), BoxError> {
        (**self).accepts(key)
    }
    fn check(&self) -> BoxFuture<'static, Result<(), BoxError>> {
        (**self).check()
    }
}

/// Storage seen as the origin of a cache fill, so reads of one key from storage are
/// shared like any other fetch.
pub(crate) struct StorageOrigin(pub(crate) Arc<dyn Storage>);

impl Origin for StorageOrigin {
    fn fetch(&self, key: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let get = self.0.get(key);
        Box::pin(async move {
            get.await?.ok_or_else(|| {
                let absent = "storage has no value for this key";
                Box::new(std::io::Error::new(std::io::ErrorKind::NotFound, absent)) as BoxError
            })
        })
    }
}
