//! Wrap an HTTP download in one call: the first run fetches the URL into the cache,
//! later runs (and concurrent ones, in any process) reuse it.
//!
//! ```sh
//! cargo run --example http -- https://example.com/file.tar [CACHE_DIR]
//! ```

use std::time::Instant;

use readthrough::{Cache, HttpOrigin};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let Some(url) = args.next() else {
        eprintln!("usage: http URL [CACHE_DIR]");
        std::process::exit(2);
    };
    let dir = args.next().unwrap_or_else(|| {
        std::env::temp_dir()
            .join("readthrough-http-example")
            .display()
            .to_string()
    });

    let cache = Cache::builder(&dir)
        .origin(HttpOrigin::new()?)
        .build()
        .await?;
    let started = Instant::now();
    // One call: fetch once (or reuse), get the path of a complete file.
    let path = cache.path(&url).await?;
    let size = std::fs::metadata(&path)?.len();
    println!(
        "{url}\n  -> {} ({size} bytes) in {:.2?}",
        path.display(),
        started.elapsed()
    );
    println!("  {:?}", cache.stats());
    Ok(())
}
