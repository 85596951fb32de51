//! Local faults: a full disk, unusable directories, hostile layouts and planted
//! symlinks.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

use common::{Counting, body_of, cache};
use readthrough::{Cache, Error, Layout};
use tokio::sync::Barrier;

/// A tmpfs mounted for one test, unmounted when dropped.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// Mounts a tmpfs with `options`, or says why it cannot.
    fn mount(options: &str) -> Result<Tmpfs, String> {
        let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .output()
            .map_err(|e| format!("cannot run mount: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "mount -t tmpfs failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(Tmpfs { dir })
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_still_serves_every_reader_the_whole_body_uncached() {
    let fs = match Tmpfs::mount("size=1m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: this test needs a tiny tmpfs and {why}");
            return;
        }
    };
    let len = 4 << 20;
    let mut origin = Counting::new(len);
    origin.delay = std::time::Duration::from_millis(1);
    let cache = cache(&fs.path().join("cache"), origin.clone()).await;
    let barrier = Arc::new(Barrier::new(5));
    let tasks: Vec<_> = (0..5)
        .map(|_| {
            let cache = cache.clone();
            let barrier = Arc::clone(&barrier);
            tokio::spawn(async move {
                barrier.wait().await;
                cache.get("big").await?.bytes().await
            })
        })
        .collect();
    for task in tasks {
        let got = task
            .await
            .unwrap()
            .expect("a full disk must not fail the read");
        assert!(
            got == body_of("big", 0, len),
            "wrong bytes when the disk is full"
        );
    }
    assert!(
        !cache.contains("big").await.unwrap(),
        "nothing partial is stored"
    );
    let leftovers: Vec<String> = common::files_under(&fs.path().join("cache/v1"))
        .into_iter()
        .filter(|f| {
            !f.ends_with("break.lock")
                && !f.ends_with("/v1/ledger")
                && !f.ends_with("/v1/evict.lock")
        })
        .collect();
    assert!(leftovers.is_empty(), "nothing stays behind: {leftovers:?}");
    assert!(
        origin.fetches() >= 2,
        "the readers fetched the rest uncached"
    );
}

#[tokio::test]
async fn a_file_in_place_of_the_directory_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"keep me").unwrap();
    let err = Cache::builder(&file).build().await.unwrap_err();
    assert!(
        matches!(&err, Error::BadDirectory { path, .. } if path == &file),
        "{err:?}"
    );
    assert!(err.to_string().contains("not-a-dir"), "{err}");
    assert_eq!(
        std::fs::read(&file).unwrap(),
        b"keep me",
        "nothing already there is lost"
    );
}

#[tokio::test]
async fn a_read_only_directory_is_a_clear_error() {
    let fs = match Tmpfs::mount("ro,size=1m") {
        Ok(fs) => fs,
        Err(why) => {
            eprintln!("skipped: this test needs a read-only tmpfs and {why}");
            return;
        }
    };
    let err = Cache::builder(fs.path()).build().await.unwrap_err();
    assert!(
        matches!(&err, Error::BadDirectory { path, .. } if path.starts_with(fs.path())),
        "{err:?}"
    );
    assert!(
        err.to_string().contains(&fs.path().display().to_string()),
        "{err}"
    );
}

/// Puts blobs under their own names, and refuses nothing itself.
struct ByName;

impl Layout for ByName {
    fn store_path(&self, key: &str) -> PathBuf {
        PathBuf::from("blobs").join(key)
    }
    fn lock_path(&self, key: &str) -> PathBuf {
        PathBuf::from("locks").join(format!("{key}.lock"))
    }
}

#[tokio::test]
async fn a_custom_layout_places_blobs_and_cannot_escape_the_root() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Cache::builder(dir.path().join("cache"))
        .layout(ByName)
        .origin(Counting::new(1000))
        .durable(false)
        .build()
        .await
        .unwrap();
    let body = cache.get("plain").await.unwrap().bytes().await.unwrap();
    assert_eq!(body, body_of("plain", 0, 1000));
    let path = dir.path().join("cache/v1/blobs/plain");
    assert_eq!(cache.path("plain").await.unwrap(), path);
    assert_eq!(std::fs::read(&path).unwrap(), body);
    for key in ["../escape", "a/../../escape", "/etc/passwd"] {
        let err = cache.get(key).await.unwrap_err();
        assert!(matches!(err, Error::LayoutEscape { .. }), "{key}: {err:?}");
    }
    assert!(!dir.path().join("cache/escape").exists() && !dir.path().join("escape").exists());
}

#[tokio::test]
async fn durable_fills_publish_complete_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let origin = Counting::new(300_000);
    let cache = Cache::builder(dir.path())
        .origin(origin.clone())
        .build()
        .await
        .unwrap();
    let got = cache.get("k").await.unwrap().bytes().await.unwrap();
    assert_eq!(got, body_of("k", 0, 300_000));
    assert_eq!(std::fs::read(cache.path("k").await.unwrap()).unwrap(), got);
    assert_eq!(origin.fetches(), 1);
}

#[tokio::test]
async fn a_symlink_planted_at_a_store_path_is_never_followed() {
    let dir = tempfile::tempdir().unwrap();
    let secret = dir.path().join("secret");
    std::fs::write(&secret, b"outside the cache").unwrap();
    let cache = cache(&dir.path().join("cache"), Counting::new(10)).await;
    cache
        .put("k", readthrough::Fetched::from(b"x".to_vec()))
        .await
        .unwrap();
    let store = cache.path("k").await.unwrap();
    std::fs::remove_file(&store).unwrap();
    std::os::unix::fs::symlink(&secret, &store).unwrap();
    match cache.get("k").await {
        Ok(reader) => assert_ne!(reader.bytes().await.unwrap(), "outside the cache"),
        Err(e) => assert!(e.to_string().contains(&store.display().to_string()), "{e}"),
    }
    assert_eq!(std::fs::read(&secret).unwrap(), b"outside the cache");
}
