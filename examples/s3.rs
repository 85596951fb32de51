//! Read an object through an S3 bucket (or any S3-compatible server) with the cache
//! in front, and print its size and SHA-256.
//!
//! Credentials, region and endpoint come from the usual AWS environment variables
//! (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_REGION`, `AWS_ENDPOINT_URL`);
//! set `AWS_ENDPOINT_URL=http://127.0.0.1:9000` for a local server.
//!
//! ```sh
//! cargo run --example s3 -- s3://bucket/path/to/object [CACHE_DIR]
//! ```

use futures::TryStreamExt;
use readthrough::{Cache, ObjectStoreOrigin, S3Location};
use sha2::{Digest, Sha256};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: s3 s3://BUCKET/KEY [CACHE_DIR]");
        std::process::exit(2);
    };
    let dir = args.next().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("readthrough-s3-example")
            .display()
            .to_string()
    });
    let location = S3Location::parse(&url)?;
    let endpoint = std::env::var("AWS_ENDPOINT_URL").ok();
    let store = readthrough::s3_store(&location.bucket, endpoint.as_deref())?;

    // Keys of an ObjectStoreOrigin are object paths within its bucket.
    let cache = Cache::builder(&dir)
        .origin(ObjectStoreOrigin::new(store))
        .build()
        .await?;
    let reader = cache.get(&location.key).await?;
    let kind = reader.kind();
    let mut hasher = Sha256::new();
    let mut size = 0u64;
    reader
        .try_for_each(|chunk| {
            size += chunk.len() as u64;
            hasher.update(&chunk);
            futures::future::ready(Ok(()))
        })
        .await?;
    println!(
        "{url}: {size} bytes, sha256 {} ({kind})",
        hex::encode(hasher.finalize())
    );
    Ok(())
}
