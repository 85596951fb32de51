//! An object store that fails some of its calls: the shared tier's trouble (an
//! unreachable, throttled or denying store) at a chosen rate.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
};

/// `inner`, with `permille` of its calls failing (a 503 SlowDown, as S3 throttles).
#[derive(Debug)]
pub struct Flaky {
    inner: Arc<dyn ObjectStore>,
    permille: u64,
    state: AtomicU64,
}

impl Flaky {
    pub fn new(inner: Arc<dyn ObjectStore>, permille: u64, seed: u64) -> Self {
        Flaky {
            inner,
            permille,
            state: AtomicU64::new(seed | 1),
        }
    }

    /// Whether this call fails, by a xorshift draw.
    fn fails(&self) -> Result<()> {
        let mut x = self.state.load(Ordering::Relaxed);
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.state.store(x, Ordering::Relaxed);
        if x % 1000 < self.permille {
            return Err(object_store::Error::Generic {
                store: "flaky",
                source: "503 SlowDown: please reduce your request rate".into(),
            });
        }
        Ok(())
    }
}

impl fmt::Display for Flaky {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Flaky({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Flaky {
    async fn put_opts(
        &self,
        at: &Path,
        payload: PutPayload,
        opts: PutOptions,
    ) -> Result<PutResult> {
        self.fails()?;
        self.inner.put_opts(at, payload, opts).await
    }

    async fn put_multipart_opts(
        &self,
        at: &Path,
        opts: PutMultipartOptions,
    ) -> Result<Box<dyn MultipartUpload>> {
        self.fails()?;
        self.inner.put_multipart_opts(at, opts).await
    }

    async fn get_opts(&self, at: &Path, options: GetOptions) -> Result<GetResult> {
        self.fails()?;
        self.inner.get_opts(at, options).await
    }

    fn delete_stream(
        &self,
        locations: BoxStream<'static, Result<Path>>,
    ) -> BoxStream<'static, Result<Path>> {
        match self.fails() {
            Ok(()) => self.inner.delete_stream(locations),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        match self.fails() {
            Ok(()) => self.inner.list(prefix),
            Err(e) => stream::once(async move { Err(e) }).boxed(),
        }
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        self.fails()?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        self.fails()?;
        self.inner.copy_opts(from, to, options).await
    }
}
