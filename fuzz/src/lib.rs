//! The harnesses of the fuzz targets. Each writes arbitrary bytes where the cache
//! keeps data it parses (a lock file, a metadata file) or takes paths from a custom
//! [`Layout`], and then drives the cache through its public API only. Whatever the
//! bytes, nothing may panic or hang, no read may return anything but the origin's
//! body (or the body of a fill that a well-behaved leader completed), and nothing
//! outside the cache directory may be created, changed or removed.
//!
//! Every case runs in a fresh directory:
//!
//! ```text
//! <tmp>/cache/            the cache directory
//! <tmp>/outside/secret    bytes no read may return, which must stay as they are
//! ```
//!
//! Checks for known findings can be switched off to fuzz past them; see [`Checks`].

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use readthrough::{Cache, Error, Fetched, Layout, PrunePolicy, origin_fn};
use sha2::{Digest, Sha256};

/// Bytes outside the cache directory that no read may ever return.
const SECRET: &[u8] = b"SECRET: bytes outside the cache directory, which no read may return";
/// Short, so that stale locks are broken within a fuzz case.
const STALE: Duration = Duration::from_millis(20);
/// How long one call may take before it counts as hung.
const HANG: Duration = Duration::from_secs(20);

/// Which checks a case makes beyond "no panic, no hang, no wrong byte, nothing
/// touched outside the cache directory". Each can be switched off to fuzz past a
/// known finding, by naming it in `READTHROUGH_FUZZ_RELAX` (comma-separated).
#[derive(Debug, Clone, Copy)]
pub struct Checks {
    /// `announced-len`: a reader's `len()`, when it gives one, is the number of bytes
    /// it returns.
    pub announced_len: bool,
    /// `maintenance-errors`: `entries`, `status`, `verify` and `prune` succeed
    /// whatever a layout left in the folder.
    pub maintenance: bool,
}

impl Checks {
    /// Every check.
    pub const ALL: Checks = Checks {
        announced_len: true,
        maintenance: true,
    };

    /// Every check but those named in `READTHROUGH_FUZZ_RELAX`.
    pub fn from_env() -> Checks {
        let relaxed = std::env::var("READTHROUGH_FUZZ_RELAX").unwrap_or_default();
        let off = |name: &str| relaxed.split(',').any(|n| n.trim() == name);
        Checks {
            announced_len: !off("announced-len"),
            maintenance: !off("maintenance-errors"),
        }
    }
}

/// The body the test origin serves for `key`: a few KiB that depend on the key.
pub fn origin_body(key: &str) -> Vec<u8> {
    let seed = Sha256::digest(key.as_bytes());
    (0..5000u32)
        .map(|i| seed[(i % 32) as usize].wrapping_add((i / 32) as u8))
        .collect()
}

/// The SHA-256 of `key` in hex: the default layout's file name for it.
pub fn hashed(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A key's lock file in the default layout.
pub fn lock_path(root: &Path, key: &str) -> PathBuf {
    let name = hashed(key);
    root.join("v1")
        .join("tmp")
        .join(&name[..2])
        .join(format!("{name}.lock"))
}

/// A key's stored blob in the default layout.
pub fn store_path(root: &Path, key: &str) -> PathBuf {
    let name = hashed(key);
    root.join("v1").join("store").join(&name[..2]).join(name)
}

/// A key's metadata file in the default layout.
pub fn meta_path(root: &Path, key: &str) -> PathBuf {
    let mut path = store_path(root, key).into_os_string();
    path.push(".meta");
    PathBuf::from(path)
}

/// A fresh directory with the cache directory and a secret beside it.
pub struct Sandbox {
    _dir: tempfile::TempDir,
    top: PathBuf,
    /// The cache directory (not created yet).
    pub root: PathBuf,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Self {
        let dir = tempfile::tempdir().expect("a temporary directory");
        let top = dir.path().to_owned();
        std::fs::create_dir(top.join("outside")).unwrap();
        std::fs::write(top.join("outside").join("secret"), SECRET).unwrap();
        Sandbox {
            root: top.join("cache"),
            top,
            _dir: dir,
        }
    }

    /// Checks that nothing outside the cache directory was created, removed or
    /// changed, and that the cache directory is still a directory.
    pub fn check(&self) {
        let names = |dir: &Path| {
            let mut names: Vec<String> = std::fs::read_dir(dir)
                .unwrap()
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect();
            names.sort();
            names
        };
        assert_eq!(names(&self.top), ["cache", "outside"], "beside the cache");
        assert_eq!(names(&self.top.join("outside")), ["secret"]);
        assert_eq!(
            std::fs::read(self.top.join("outside").join("secret")).unwrap(),
            SECRET
        );
        let meta = std::fs::symlink_metadata(&self.root).unwrap();
        assert!(meta.is_dir(), "the cache directory is still a directory");
    }
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

async fn within<T>(what: &str, work: impl Future<Output = T>) -> T {
    match tokio::time::timeout(HANG, work).await {
        Ok(out) => out,
        Err(_) => panic!("{what} hung for {HANG:?}"),
    }
}

/// Reads `key` through a closure origin that serves [`origin_body`]: the bytes and
/// the length the reader announced.
async fn read_with(cache: &Cache, key: &str) -> readthrough::Result<(Vec<u8>, Option<u64>)> {
    let reader = cache
        .get_with(key, |key: String| async move {
            Ok::<_, std::io::Error>(origin_body(&key))
        })
        .await?;
    let announced = reader.len();
    Ok((reader.bytes().await?.to_vec(), announced))
}

/// Checks a successful read: the bytes are one of `allowed`, and the length the
/// reader announced, if any, is the number of bytes it returned.
fn check_read(checks: Checks, what: &str, got: &[u8], announced: Option<u64>, allowed: &[&[u8]]) {
    assert!(
        got != SECRET,
        "{what}: a read returned bytes from outside the cache"
    );
    assert!(
        allowed.contains(&got),
        "{what}: a read returned {} bytes that are none of the allowed bodies",
        got.len()
    );
    if checks.announced_len
        && let Some(n) = announced
    {
        assert_eq!(
            n,
            got.len() as u64,
            "{what}: the reader announced {n} bytes and returned {}",
            got.len()
        );
    }
}

fn same_file(a: &File, path: &Path) -> bool {
    let (Ok(a), Ok(b)) = (a.metadata(), std::fs::symlink_metadata(path)) else {
        return false;
    };
    (a.dev(), a.ino()) == (b.dev(), b.ino())
}

/// The value of the first line of `text` that starts with `name` and a space.
fn field<'a>(text: &'a [u8], name: &str) -> Option<&'a [u8]> {
    text.split(|&b| b == b'\n')
        .find_map(|line| line.strip_prefix(name.as_bytes())?.strip_prefix(b" "))
}

/// (a) Arbitrary bytes as the lock file of a key, while a read of the key runs beside
/// `status()` and `prune()`.
///
/// The input: a flags byte, a hold-time byte, then the lock file's bytes. Flags:
/// 1 hold the lock (as another process's leader would) for up to 62 ms; 2 create the
/// tmp file that a `tmp NAME` line names (when NAME is a plain file name); 4 then
/// publish that tmp file as the blob, as a leader that finished would (only while the
/// lock is still ours and the tmp file is as long as a `len N` line says); 8 keep the
/// lock file fresh while holding it (else it goes stale after 20 ms and is broken);
/// 16 fill the tmp file with a prefix of the origin's body (else with the input).
pub fn lock_file(data: &[u8]) {
    lock_file_checked(data, Checks::from_env());
}

/// [`lock_file`] with the given checks.
pub fn lock_file_checked(data: &[u8], checks: Checks) {
    let (&flags, rest) = data.split_first().unwrap_or((&0, &[]));
    let (&hold_units, lock_bytes) = rest.split_first().unwrap_or((&0, &[]));
    let hold = flags & 1 != 0;
    let make_tmp = flags & 2 != 0;
    let publish = flags & 4 != 0;
    let fresh = flags & 8 != 0;
    let tmp_is_prefix = flags & 16 != 0;
    let hold_for = Duration::from_millis(u64::from(hold_units % 32) * 2);

    let sandbox = Sandbox::new();
    let key = "fuzz/key";
    let body = origin_body(key);
    let lock = lock_path(&sandbox.root, key);
    let store = store_path(&sandbox.root, key);
    let tmp_content: Vec<u8> = if tmp_is_prefix {
        body[..(lock_bytes.len() * 37) % (body.len() + 1)].to_vec()
    } else {
        lock_bytes.to_vec()
    };
    let runtime = runtime();
    let published = runtime.block_on(async {
        let cache = Cache::builder(&sandbox.root)
            .stale_after(STALE)
            .durable(false)
            .build()
            .await
            .unwrap();
        std::fs::create_dir_all(lock.parent().unwrap()).unwrap();
        std::fs::write(&lock, lock_bytes).unwrap();
        // The tmp file a leader would have created under the name it wrote.
        let tmp = field(lock_bytes, "tmp")
            .filter(|name| {
                make_tmp
                    && !name.is_empty()
                    && name.len() < 200
                    && !name.contains(&b'/')
                    && !name.contains(&0)
                    && *name != b"."
                    && *name != b".."
            })
            .map(|name| {
                let mut file_name = format!("{}.", hashed(key)).into_bytes();
                file_name.extend_from_slice(name);
                file_name.extend_from_slice(b".part");
                lock.with_file_name(OsStr::from_bytes(&file_name))
            });
        if let Some(tmp) = &tmp {
            std::fs::write(tmp, &tmp_content).unwrap();
        }
        let promised =
            field(lock_bytes, "len").and_then(|n| std::str::from_utf8(n).ok()?.parse::<u64>().ok());
        let holder = hold.then(|| {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .open(&lock)
                .unwrap();
            file.try_lock().expect("nobody else holds the lock yet");
            let (lock, store, tmp) = (lock.clone(), store.clone(), tmp.clone());
            let complete = promised.is_none_or(|n| n == tmp_content.len() as u64);
            std::thread::spawn(move || {
                let start = Instant::now();
                while start.elapsed() < hold_for {
                    if fresh {
                        let _ = file.set_modified(SystemTime::now());
                    }
                    std::thread::sleep(Duration::from_millis(2));
                }
                // A leader publishes only while its lock is its own (not broken as
                // stale) and its body is complete.
                let mut published = false;
                if publish
                    && complete
                    && same_file(&file, &lock)
                    && let Some(tmp) = tmp
                {
                    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
                    published = std::fs::rename(&tmp, &store).is_ok();
                }
                drop(file);
                published
            })
        });
        let policy = PrunePolicy::default();
        let (read, status, prune) = tokio::join!(
            within("a read", read_with(&cache, key)),
            within("status", cache.status()),
            within("prune", cache.prune(&policy)),
        );
        let published = holder.is_some_and(|h| h.join().unwrap());
        status.expect("status of a cache with a corrupt lock file");
        prune.expect("prune of a cache with a corrupt lock file");
        let allowed: Vec<&[u8]> = if published {
            vec![&body, &tmp_content]
        } else {
            vec![&body]
        };
        if let Ok((got, announced)) = &read {
            check_read(checks, "the first read", got, *announced, &allowed);
        }
        // Nothing is poisoned: once the lock is let go, a read gets the body.
        let (got, announced) = within("a second read", read_with(&cache, key))
            .await
            .expect("a read after the lock file's holder let go");
        check_read(checks, "the second read", &got, announced, &allowed);
        within("status", cache.status()).await.unwrap();
        published
    });
    drop(runtime);
    let _ = published;
    sandbox.check();
}

/// (b) Arbitrary bytes as the metadata file beside a stored blob, then `entries()`,
/// `verify()`, `status()`, `prune()` and reads.
///
/// The input: a flags byte, then the metadata file's bytes. Two entries are stored,
/// `a` and `b`; the bytes replace `a`'s metadata. Flags: 1 remove `a`'s blob (metadata
/// without a blob); 2 write the bytes as `b`'s metadata too; 4 date `a`'s metadata two
/// minutes back (a hit then refreshes it, and prune sees it as old); the high four
/// bits give prune a byte budget (in KiB).
pub fn meta_file(data: &[u8]) {
    meta_file_checked(data, Checks::from_env());
}

/// [`meta_file`] with the given checks.
pub fn meta_file_checked(data: &[u8], checks: Checks) {
    let (&flags, meta) = data.split_first().unwrap_or((&0, &[]));
    let sandbox = Sandbox::new();
    let runtime = runtime();
    runtime.block_on(async {
        let cache = Cache::builder(&sandbox.root)
            .origin(origin_fn(|key: String| async move {
                Ok::<_, std::io::Error>(origin_body(&key))
            }))
            .stale_after(STALE)
            .durable(false)
            .build()
            .await
            .unwrap();
        for key in ["a", "b"] {
            cache
                .put(key, Fetched::from(origin_body(key)))
                .await
                .unwrap();
        }
        let a_meta = meta_path(&sandbox.root, "a");
        std::fs::write(&a_meta, meta).unwrap();
        if flags & 1 != 0 {
            std::fs::remove_file(store_path(&sandbox.root, "a")).unwrap();
        }
        if flags & 2 != 0 {
            std::fs::write(meta_path(&sandbox.root, "b"), meta).unwrap();
        }
        if flags & 4 != 0 {
            let old = SystemTime::now() - Duration::from_secs(120);
            File::options()
                .write(true)
                .open(&a_meta)
                .unwrap()
                .set_modified(old)
                .unwrap();
        }
        let inside = |path: &Path| {
            assert!(
                path.starts_with(&sandbox.root),
                "{} is outside the cache",
                path.display()
            )
        };
        for entry in within("entries", cache.entries()).await.unwrap() {
            entry.path.as_deref().map(inside);
        }
        within("status", cache.status()).await.unwrap();
        // A hit reads the blob and refreshes the metadata's last-read time.
        if let Some(reader) = within("read", cache.read("a")).await.unwrap() {
            let announced = reader.len();
            let got = reader.bytes().await.unwrap();
            check_read(checks, "a hit", &got, announced, &[&origin_body("a")]);
        }
        let report = within("verify", cache.verify()).await.unwrap();
        for corrupt in &report.corrupt {
            inside(&corrupt.path);
        }
        for path in &report.unverifiable {
            inside(path);
        }
        within("status", cache.status()).await.unwrap();
        within("prune", cache.prune(&PrunePolicy::default()))
            .await
            .unwrap();
        let budget = u64::from(flags >> 4) << 10;
        let pruned = within(
            "prune",
            cache.prune(&PrunePolicy::default().max_bytes(budget)),
        )
        .await
        .unwrap();
        for entry in &pruned.removed {
            entry.path.as_deref().map(inside);
        }
        within("entries", cache.entries()).await.unwrap();
        // Whatever the metadata said, reads return the origin's bytes.
        for key in ["a", "b"] {
            let reader = within("get", cache.get(key)).await.unwrap();
            let announced = reader.len();
            let got = within("read", reader.bytes()).await.unwrap();
            check_read(checks, key, &got, announced, &[&origin_body(key)]);
        }
    });
    drop(runtime);
    sandbox.check();
}

/// A layout that maps every key to the same two paths.
struct FixedLayout {
    store: PathBuf,
    lock: PathBuf,
}

impl Layout for FixedLayout {
    fn store_path(&self, _key: &str) -> PathBuf {
        self.store.clone()
    }
    fn lock_path(&self, _key: &str) -> PathBuf {
        self.lock.clone()
    }
}

/// Whether the cache must accept `path` from a layout: relative, non-empty, and only
/// plain names.
fn plain(path: &Path) -> bool {
    use std::os::unix::ffi::OsStrExt;
    // As written: `a/./b` and `a/b/.` normalise to plain components but are not plain.
    let names_plain = path
        .as_os_str()
        .as_bytes()
        .split(|b| *b == b'/')
        .all(|name| !matches!(name, b"" | b"." | b".."));
    names_plain
        && path.components().count() > 0
        && path.components().all(|c| matches!(c, Component::Normal(_)))
}

/// (c) A custom [`Layout`] whose store and lock paths come from the input: reads must
/// fail with `LayoutEscape` or touch only files inside the cache directory.
///
/// The input: a byte that says where the store path ends, the store path's bytes,
/// then the lock path's bytes (any bytes, not only UTF-8).
pub fn layout(data: &[u8]) {
    layout_checked(data, Checks::from_env());
}

/// [`layout`] with the given checks.
pub fn layout_checked(data: &[u8], checks: Checks) {
    let (&split, rest) = data.split_first().unwrap_or((&0, &[]));
    let at = usize::from(split).min(rest.len());
    let store = PathBuf::from(OsStr::from_bytes(&rest[..at]));
    let lock = PathBuf::from(OsStr::from_bytes(&rest[at..]));
    let accepted = plain(&store) && plain(&lock);
    let sandbox = Sandbox::new();
    let runtime = runtime();
    runtime.block_on(async {
        let cache = Cache::builder(&sandbox.root)
            .layout(FixedLayout {
                store: store.clone(),
                lock: lock.clone(),
            })
            .stale_after(STALE)
            .durable(false)
            .build()
            .await
            .unwrap();
        let body = origin_body("k");
        let check = |what: &str, result: &readthrough::Result<(Vec<u8>, Option<u64>)>| match result
        {
            Err(Error::LayoutEscape { .. }) => assert!(
                !accepted,
                "{what}: {store:?} and {lock:?} are plain relative paths, refused"
            ),
            _ if !accepted => panic!(
                "{what}: {store:?} or {lock:?} leaves the cache, and was not refused: {result:?}"
            ),
            Ok((got, announced)) => check_read(checks, what, got, *announced, &[&body]),
            Err(_) => {}
        };
        check("a read", &within("a read", read_with(&cache, "k")).await);
        check(
            "a second read",
            &within("a read", read_with(&cache, "k")).await,
        );
        let put = within("put", cache.put("k", Fetched::from(body.clone()))).await;
        assert!(
            accepted || matches!(put, Err(Error::LayoutEscape { .. })),
            "put: {put:?}"
        );
        if let Ok(Some(reader)) = within("read", cache.read("k")).await {
            let announced = reader.len();
            if let Ok(got) = reader.bytes().await {
                check_read(checks, "a hit", &got, announced, &[&body]);
            }
        }
        let _ = within("contains", cache.contains("k")).await;
        let _ = within("remove", cache.remove("k")).await;
        check("a read", &within("a read", read_with(&cache, "k")).await);
        // The maintenance calls walk the whole folder, whatever the layout put there.
        let policy = PrunePolicy::default().max_bytes(0);
        let upkeep = [
            ("entries", within("entries", cache.entries()).await.err()),
            ("status", within("status", cache.status()).await.err()),
            ("verify", within("verify", cache.verify()).await.err()),
            ("prune", within("prune", cache.prune(&policy)).await.err()),
        ];
        for (call, error) in upkeep {
            if let Some(error) = error
                && checks.maintenance
            {
                panic!("{call} failed after layout {store:?}, {lock:?}: {error}");
            }
        }
    });
    drop(runtime);
    sandbox.check();
}
