//! Slices: a range read of a cold blob that fetches only the parts of the blob the
//! range covers, when the cache has a [slice size](crate::CacheBuilder::slice_size).
//!
//! Each slice is an ordinary blob under a derived key, so it is fetched, coalesced
//! across tasks and processes, followed, taken over and published atomically by the
//! same fill machinery as any blob. One version per blob: a first, one-byte request
//! (the probe, itself a coalesced fill of a derived key) learns the blob's length and
//! validator and stores them as the blob's manifest. The validator is part of every
//! slice's key, and every slice fetch asks the origin for its range under that
//! validator (HTTP `If-Range`, an object store's `If-Match`); an answer of any other
//! version fails the read with [`Error::Changed`] and drops the manifest and that
//! version's slices, so the next read starts over. Slices of two versions can never
//! meet in one read: they live under different keys.

use std::sync::Arc;

use bytes::Bytes;
use futures::future::BoxFuture;
use futures::stream::{self, BoxStream};
use futures::{StreamExt, TryStreamExt};

use crate::engine::reader::{ReadKind, Reader, Restart};
use crate::engine::state::Engine;
use crate::error::{BoxError, Error, Result};
use crate::origin::{FetchOptions, Fetched, Origin};
use crate::range::ByteRange;
use crate::store::entry::{Entry, entry_of};
use crate::store::scan;
use crate::store::sliced::{self, Manifest, manifest_key, slice_key};
use crate::sys::blocking_io;

/// A blob to be read by slices: one version of it.
#[derive(Clone)]
struct Plan {
    key: String,
    size: u64,
    len: u64,
    validator: String,
    origin: Arc<dyn Origin>,
}

impl Engine {
    /// Reads `range` of `key` by slices of `size` bytes through `origin`, or `None`
    /// when the blob cannot be sliced safely (the origin gives no validator or no
    /// length): the caller reads it whole.
    pub(super) async fn get_sliced(
        self: &Arc<Self>,
        key: &str,
        origin: Arc<dyn Origin>,
        range: ByteRange,
        size: u64,
    ) -> Result<Option<Reader>> {
        let manifest = self.manifest(key, &origin, size).await?;
        let (Some(len), Some(validator)) = (manifest.len, manifest.validator) else {
            tracing::info!(%key, "the origin gives no validator or length for this blob, so its slices could mix versions; reading it whole");
            return Ok(None);
        };
        let window = range.window(key, len)?;
        let plan = Plan {
            key: key.to_owned(),
            size,
            len,
            validator,
            origin,
        };
        if window.is_empty() {
            return Ok(Some(Reader::of_bytes(Bytes::new(), ReadKind::Hit)));
        }
        let (start, end) = (window.start, window.end);
        let head = self.slice_reader(&plan, start / size, (start, end)).await;
        let head = self.unless_changed(&plan, head).await?;
        let kind = head.kind();
        let head = watched(Arc::clone(self), plan.clone(), head);
        let rest = sliced_body(
            Arc::clone(self),
            plan.clone(),
            (start, end),
            start / size + 1,
        );
        let body = head.chain(rest).boxed();
        let engine = Arc::clone(self);
        let restart: Restart = Box::new(move |from, _| {
            sliced_body(engine, plan, (start + from, end), (start + from) / size)
        });
        Ok(Some(
            Reader::new(body, Some(end - start), kind).with_restart(restart),
        ))
    }

    /// A whole read of `key` by its slices, when the blob has been read by slices
    /// before (its manifest is stored): the slices present are read and only the
    /// missing ones fetched. `None` for a whole fill.
    pub(super) async fn whole_by_slices(
        self: &Arc<Self>,
        key: &str,
        origin: &Arc<dyn Origin>,
    ) -> Result<Option<Reader>> {
        let Some(size) = self.settings.slice_size else {
            return Ok(None);
        };
        if !origin.serves_ranges() || self.is_filling(key) {
            return Ok(None);
        }
        let manifest = self.paths(&manifest_key(key, size))?;
        if !matches!(manifest.store.stat(), Ok(Some(_))) {
            return Ok(None);
        }
        // A suffix as long as any blob: the whole of it, even an empty one.
        let whole = ByteRange::last(u64::MAX);
        self.get_sliced(key, Arc::clone(origin), whole, size).await
    }

    /// The manifest of `key` for slices of `size`: stored, or probed (one coalesced
    /// fill of its derived key).
    async fn manifest(
        self: &Arc<Self>,
        key: &str,
        origin: &Arc<dyn Origin>,
        size: u64,
    ) -> Result<Manifest> {
        let probe: Arc<dyn Origin> = Arc::new(Probe {
            inner: Arc::clone(origin),
            key: key.to_owned(),
        });
        let name = manifest_key(key, size);
        let text = get_derived(self, &name, probe).await?.bytes().await?;
        match Manifest::decode(&text) {
            Some(manifest) => Ok(manifest),
            None => {
                self.remove_keys(vec![name]).await?;
                Err(Error::Corrupt {
                    key: key.to_owned(),
                    reason: "its slice manifest could not be read; it was removed".into(),
                })
            }
        }
    }

    /// A reader of the bytes `window` of the blob that slice `index` of `plan` holds:
    /// a hit, or the slice's fill (joined, followed or started).
    async fn slice_reader(
        self: &Arc<Self>,
        plan: &Plan,
        index: u64,
        (start, end): (u64, u64),
    ) -> Result<Reader> {
        let first = index * plan.size;
        let last = (first + plan.size).min(plan.len);
        let origin: Arc<dyn Origin> = Arc::new(SliceOrigin {
            plan: plan.clone(),
            start: first,
            end: last,
        });
        let name = plan_slice_key(plan, index);
        let reader = get_derived(self, &name, origin).await?;
        reader.windowed(start.max(first) - first..end.min(last) - first)
    }

    /// `result`, after dropping the blob's manifest and this version's slices when it
    /// says the object changed.
    async fn unless_changed<T>(&self, plan: &Plan, result: Result<T>) -> Result<T> {
        if let Err(Error::Changed { .. }) = &result {
            tracing::warn!(key = %plan.key, "the object changed between slice fetches; dropping its slices");
            let slices = plan.len.div_ceil(plan.size);
            let mut names: Vec<String> = (0..slices).map(|i| plan_slice_key(plan, i)).collect();
            names.push(manifest_key(&plan.key, plan.size));
            if let Err(error) = self.remove_keys(names).await {
                // The change is the reader's error; slices of the old version stay
                // apart from the new one's under their own keys whatever is left.
                tracing::warn!(key = %plan.key, %error, "could not drop the slices of a changed object");
            }
        }
        result
    }

    /// Removes the stored entries of `names`, derived keys of this module.
    async fn remove_keys(&self, names: Vec<String>) -> Result<()> {
        let paths = names
            .iter()
            .map(|name| self.paths(name))
            .collect::<Result<Vec<_>>>()?;
        let base = self.base().to_owned();
        let shown = self.base().path();
        blocking_io("remove the slices of", shown, move || {
            for paths in paths {
                scan::remove_entry(&base, &paths.store)?;
            }
            Ok(())
        })
        .await
    }

    /// The entry of `key` as listings show it: its blob stored whole, and the
    /// manifest and slices of it stored in the cache's slice size, gathered into one.
    pub(crate) async fn entry(self: &Arc<Self>, key: &str) -> Result<Option<Entry>> {
        let paths = self.paths(key)?;
        let (engine, key) = (Arc::clone(self), key.to_owned());
        blocking_io("read", paths.meta.clone(), move || {
            let files = engine.files_of(&key)?;
            let base = engine.base();
            let mut gathered = sliced::gather(files, |m| sliced::read_manifest(base, m));
            Ok(gathered.pop().map(|gathered| gathered.entry))
        })
        .await
    }

    /// Removes the blob of `key`, and its manifest and slices in the cache's slice
    /// size; returns whether any of them was there.
    pub(crate) async fn remove(self: &Arc<Self>, key: &str) -> Result<bool> {
        let paths = self.paths(key)?;
        let (engine, key) = (Arc::clone(self), key.to_owned());
        blocking_io("remove", paths.store.clone(), move || {
            let base = engine.base();
            let mut any = scan::remove_entry(base, &paths.store)?;
            for file in engine.files_of(&key)? {
                if let Some(path) = &file.path {
                    any |= scan::remove_entry(base, &base.locate(path)?)?;
                }
            }
            Ok(any)
        })
        .await
    }

    /// The stored entries of `key`'s blob: [`sliced::files_of`] over this cache's
    /// layout and slice size. A derived key the layout refuses has no entry.
    fn files_of(&self, key: &str) -> std::io::Result<Vec<Entry>> {
        sliced::files_of(self.base(), key, self.settings.slice_size, |name| {
            Ok(self
                .paths(name)
                .ok()
                .and_then(|paths| entry_of(&paths.meta)))
        })
    }
}

/// The body of the bytes `window` of `plan`'s blob from slice `from` on, opening
/// each slice only once the one before it has been read.
fn sliced_body(
    engine: Arc<Engine>,
    plan: Plan,
    (start, end): (u64, u64),
    from: u64,
) -> BoxStream<'static, Result<Bytes>> {
    let slices = from..end.div_ceil(plan.size);
    stream::iter(slices)
        .then(move |index| {
            let (engine, plan) = (Arc::clone(&engine), plan.clone());
            async move {
                let reader = engine.slice_reader(&plan, index, (start, end)).await;
                let reader = engine.unless_changed(&plan, reader).await?;
                Ok::<_, Error>(watched(engine, plan, reader))
            }
        })
        .try_flatten()
        .boxed()
}

/// [`Engine::get`] of the derived key `name` through `origin`, boxed: a whole read by
/// slices reads each slice through that call.
fn get_derived<'a>(
    engine: &'a Arc<Engine>,
    name: &'a str,
    origin: Arc<dyn Origin>,
) -> BoxFuture<'a, Result<Reader>> {
    Box::pin(engine.get(name, Some(origin), false))
}

/// The chunks of `reader`, a slice's, dropping `plan`'s version when one says the
/// object changed.
fn watched(engine: Arc<Engine>, plan: Plan, reader: Reader) -> BoxStream<'static, Result<Bytes>> {
    reader
        .then(move |chunk| {
            let (engine, plan) = (Arc::clone(&engine), plan.clone());
            async move { engine.unless_changed(&plan, chunk).await }
        })
        .boxed()
}

/// The derived key of slice `index` of `plan`'s version of its blob.
fn plan_slice_key(plan: &Plan, index: u64) -> String {
    slice_key(&plan.key, plan.size, &plan.validator, index)
}

/// The origin of a manifest: a one-byte request of the blob, for its length and
/// validator. An empty blob (whose every range but a suffix is unsatisfiable) has a
/// length and no validator to pin.
struct Probe {
    inner: Arc<dyn Origin>,
    key: String,
}

impl Origin for Probe {
    fn fetch(&self, _: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let options = FetchOptions {
            end: Some(1),
            ..FetchOptions::default()
        };
        let answer = self.inner.fetch(&self.key, options);
        Box::pin(async move {
            let manifest = match answer.await {
                Ok(fetched) => Manifest {
                    len: fetched.len,
                    validator: fetched.validator,
                },
                Err(e) => match e.downcast_ref::<Error>() {
                    Some(Error::RangeNotSatisfiable { length, .. }) => Manifest {
                        len: Some(*length),
                        validator: None,
                    },
                    _ => return Err(e),
                },
            };
            Ok(Fetched::from(manifest.encode()))
        })
    }
}

/// The origin of one slice: its range of the blob, under the pinned validator.
struct SliceOrigin {
    plan: Plan,
    start: u64,
    end: u64,
}

impl Origin for SliceOrigin {
    fn fetch(&self, _: &str, _: FetchOptions) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let options = FetchOptions {
            offset: self.start,
            end: Some(self.end),
            if_validator: Some(self.plan.validator.clone()),
            ..FetchOptions::default()
        };
        let answer = self.plan.origin.fetch(&self.plan.key, options);
        let (plan, start, end) = (self.plan.clone(), self.start, self.end);
        Box::pin(async move {
            let mut fetched = answer.await?;
            let same = fetched.validator.as_deref() == Some(plan.validator.as_str())
                && fetched.len == Some(plan.len);
            if !same {
                return Err(Error::Changed {
                    key: plan.key,
                    offset: start,
                }
                .into());
            }
            if fetched.offset != start {
                let why = format!(
                    "asked for bytes from {start}, got them from {}",
                    fetched.offset
                );
                return Err(Error::origin(&plan.key, why.into()).into());
            }
            fetched.offset = 0;
            fetched.len = Some(end - start);
            fetched.sha256 = None;
            Ok(fetched)
        })
    }
}
