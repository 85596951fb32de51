//! Checking every stored blob against its metadata ([`Cache::verify`]): its length
//! and SHA-256, removing the blobs that do not match.
//!
//! [`Cache::verify`]: crate::Cache::verify

use std::io;
use std::path::PathBuf;

use crate::store::entry::{fault_of, read_meta};
use crate::store::meta::BlobId;
use crate::store::scan::{blob_of, remove_entry, scan};
use crate::store::sliced;
use crate::sys::{self, FileId, RootedPath};

/// What [`Cache::verify`](crate::Cache::verify) found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VerifyReport {
    /// Entries read and checked.
    pub checked: u64,
    /// Entries whose bytes did not match their metadata; they were removed.
    pub corrupt: Vec<Corrupt>,
    /// Stored files with no readable metadata to check them against; left alone.
    pub unverifiable: Vec<PathBuf>,
}

/// An entry [`Cache::verify`](crate::Cache::verify) found corrupt and removed.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Corrupt {
    /// Its key.
    pub key: String,
    /// Its path.
    pub path: PathBuf,
    /// What was wrong.
    pub reason: String,
}

pub(crate) fn verify(base: &RootedPath) -> io::Result<VerifyReport> {
    let files = scan(base)?;
    let mut report = VerifyReport::default();
    let described: std::collections::HashSet<PathBuf> = files
        .metas
        .iter()
        .map(|meta| blob_of(meta).rel().to_owned())
        .collect();
    for blob in files.blobs.iter().filter(|b| !described.contains(b.rel())) {
        report.unverifiable.push(blob.path());
    }
    for meta_path in &files.metas {
        let blob = blob_of(meta_path);
        let Some(meta) = read_meta(meta_path).ok().flatten() else {
            if blob.stat()?.is_some() {
                report.unverifiable.push(blob.path());
            }
            continue;
        };
        let file = match sys::found(blob.open_read())? {
            Some(file) if file.metadata()?.is_file() => file,
            // A directory or other odd file where a blob should be: no blob here.
            _ => continue,
        };
        // Metadata that names another blob file is not this blob's: a publish is
        // between its two renames (the blob is in, its metadata not yet).
        if !meta.describes(BlobId::of(&file.metadata()?)) {
            continue;
        }
        report.checked += 1;
        let Some(reason) = fault_of(&file, &meta)? else {
            continue;
        };
        // A blob replaced while it was read is not corrupt: only remove the one read.
        if !blob.names(FileId::of_file(&file)?)?
            || read_meta(meta_path).ok().flatten().as_ref() != Some(&meta)
        {
            continue;
        }
        tracing::debug!(key = %meta.key, path = %blob, %reason, "removing a corrupt entry");
        remove_entry(base, &blob)?;
        let (key, reason) = match sliced::described(&meta.key) {
            Some((of, what)) => (of.to_owned(), format!("{what}: {reason}")),
            None => (meta.key, reason),
        };
        report.corrupt.push(Corrupt {
            key,
            path: blob.path(),
            reason,
        });
    }
    Ok(report)
}
