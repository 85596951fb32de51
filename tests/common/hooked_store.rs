//! An object store that hands every call to a hook before it passes it on: the one
//! wrapper behind the tests' failing store and the benches' counting store.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// What sees each call, by kind ("put", "multipart", "get", "head", "delete", "list",
/// "copy"); an error fails the call instead of passing it on.
pub trait Hook: fmt::Debug + Send + Sync + 'static {
    fn call(&self, kind: &'static str) -> Result<()>;
}

/// `inner`, each call shown to `hook` first.
#[derive(Debug)]
pub struct Hooked<H> {
    inner: Arc<dyn ObjectStore>,
    pub hook: H,
}

impl<H: Hook> Hooked<H> {
    pub fn new(inner: Arc<dyn ObjectStore>, hook: H) -> Self {
        Hooked { inner, hook }
    }

    /// `stream`, or one error when the hook fails the call.
    fn streamed<T: Send + 'static>(
        &self,
        kind: &'static str,
        stream: impl FnOnce() -> BoxStream<'static, Result<T>>,
    ) -> BoxStream<'static, Result<T>> {
        match self.hook.call(kind) {
            Ok(()) => stream(),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }
}

impl<H: Hook> fmt::Display for Hooked<H> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hooked({:?}, {})", self.hook, self.inner)
    }
}

#[async_trait]
impl<H: Hook> ObjectStore for Hooked<H> {
    async fn put_opts(
        &self,
        at: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.hook.call("put")?;
        self.inner.put_opts(at, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        at: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.hook.call("multipart")?;
        self.inner.put_multipart_opts(at, opts).await
    }

    async fn get_opts(&self, at: &Path, options: GetOptions) -> Result<GetResult> {
        self.hook.call(if options.head { "head" } else { "get" })?;
        self.inner.get_opts(at, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        self.streamed("delete", || self.inner.delete_stream(locations))
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.streamed("list", || self.inner.list(prefix))
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.hook.call("list")?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.hook.call("copy")?;
        self.inner.copy_opts(from, to, options).await
    }
}
