//! The store a shared tier's URL names: `s3://bucket/prefix`, `gs://bucket/prefix`,
//! `az://container/prefix` or `file:///path` (a volume every host mounts), each where
//! the crate is built with its feature (`s3`, `gcs`, `azure`, `fs`).

use std::sync::Arc;

use object_store::ObjectStore;

use crate::error::{Error, Result};

/// The store and the prefix in it that the tier URL `url` names. The clouds'
/// settings come from their usual environment variables (`AWS_*`, with
/// `AWS_ENDPOINT_URL` for an S3-compatible server; `GOOGLE_*`; `AZURE_*`); a `file://`
/// folder is made if it is missing.
///
/// # Errors
/// [`Error::InvalidUrl`] for a URL of another form or of a scheme this build has no
/// store for; [`Error::Tier`] when the store cannot be set up.
///
/// ```
/// # let dir = tempfile::tempdir().unwrap();
/// let url = format!("file://{}/fleet", dir.path().display());
/// let (store, prefix) = readthrough::tier_store(&url)?;
/// assert_eq!(prefix, "");
/// # let _ = store;
/// assert!(readthrough::tier_store("ftp://host/x").is_err());
/// # Ok::<(), readthrough::Error>(())
/// ```
pub fn tier_store(url: &str) -> Result<(Arc<dyn ObjectStore>, String)> {
    let bad = |reason| Error::InvalidUrl {
        url: url.to_owned(),
        reason,
    };
    let (scheme, rest) = url.split_once("://").ok_or(bad(
        "a shared tier is an s3://, gs://, az:// or file:// URL",
    ))?;
    if scheme == "file" {
        return file_store(rest).map_err(bad);
    }
    let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
    if bucket.is_empty() {
        return Err(bad("the URL names no bucket: scheme://bucket/prefix"));
    }
    let store = match scheme {
        "s3" => s3(bucket, url)?,
        "gs" => gcs(bucket, url)?,
        "az" => azure(bucket, url)?,
        _ => {
            return Err(bad(
                "a shared tier is an s3://, gs://, az:// or file:// URL",
            ));
        }
    };
    Ok((store, prefix.to_owned()))
}

/// A URL of a scheme this build has no store for.
#[cfg(not(all(feature = "s3", feature = "gcs", feature = "azure")))]
fn not_built(url: &str) -> Error {
    Error::InvalidUrl {
        url: url.to_owned(),
        reason: "this build of readthrough has no store for this scheme",
    }
}

/// A store of `url` that could not be set up.
#[cfg(any(feature = "gcs", feature = "azure"))]
fn setup_failed(url: &str, e: &object_store::Error) -> Error {
    Error::Tier {
        op: "open",
        reason: format!("{url}: {e}"),
    }
}

#[cfg(feature = "s3")]
fn s3(bucket: &str, _: &str) -> Result<Arc<dyn ObjectStore>> {
    crate::origin::s3_store(bucket, std::env::var("AWS_ENDPOINT_URL").ok().as_deref())
}

#[cfg(not(feature = "s3"))]
fn s3(_: &str, url: &str) -> Result<Arc<dyn ObjectStore>> {
    Err(not_built(url))
}

#[cfg(feature = "gcs")]
fn gcs(bucket: &str, url: &str) -> Result<Arc<dyn ObjectStore>> {
    let store = object_store::gcp::GoogleCloudStorageBuilder::from_env()
        .with_bucket_name(bucket)
        .build()
        .map_err(|e| setup_failed(url, &e))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "gcs"))]
fn gcs(_: &str, url: &str) -> Result<Arc<dyn ObjectStore>> {
    Err(not_built(url))
}

#[cfg(feature = "azure")]
fn azure(container: &str, url: &str) -> Result<Arc<dyn ObjectStore>> {
    let store = object_store::azure::MicrosoftAzureBuilder::from_env()
        .with_container_name(container)
        .build()
        .map_err(|e| setup_failed(url, &e))?;
    Ok(Arc::new(store))
}

#[cfg(not(feature = "azure"))]
fn azure(_: &str, url: &str) -> Result<Arc<dyn ObjectStore>> {
    Err(not_built(url))
}

/// The store of a `file://` URL's folder (what follows `file://`).
#[cfg(feature = "fs")]
fn file_store(path: &str) -> std::result::Result<(Arc<dyn ObjectStore>, String), &'static str> {
    if !path.starts_with('/') {
        return Err("a file URL names an absolute path: file:///path");
    }
    std::fs::create_dir_all(path).map_err(|_| "the folder cannot be made")?;
    let store = object_store::local::LocalFileSystem::new_with_prefix(path)
        .map_err(|_| "the folder cannot be used as a store")?;
    Ok((Arc::new(store), String::new()))
}

#[cfg(not(feature = "fs"))]
fn file_store(_: &str) -> std::result::Result<(Arc<dyn ObjectStore>, String), &'static str> {
    Err("this build has no store for file:// URLs")
}
