//! The fleet tier across hosts, against moto's S3 server on loopback. A host is a
//! cache directory of its own, read by its own `readthrough` processes; hosts share
//! one bucket (`--shared-tier s3://…/fleet`) and one origin, an HTTP server in this
//! test that counts its requests and can hold a response at a byte.

#![cfg(feature = "cli")]

mod common;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::http_server::{Behaviour, Gate, Server};
use common::moto::{BUCKET, Moto, moto};
use futures::TryStreamExt;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt, PutMode, PutOptions, PutPayload};
use tokio::process::{Child, Command};

/// The size of the tier's parts in these tests.
const PART: usize = 64 * 1024;
/// How long any one step may take before the test gives up (a hang, not a timing).
const HANG: Duration = Duration::from_secs(180);

struct Fleet {
    moto: Moto,
    origin: Server,
    dir: tempfile::TempDir,
    stale_after: &'static str,
}

impl Fleet {
    async fn start(stale_after: &'static str) -> Option<Fleet> {
        let moto = moto()?;
        Some(Fleet {
            moto,
            origin: Server::start().await,
            dir: tempfile::tempdir().unwrap(),
            stale_after,
        })
    }

    fn out(&self, name: &str) -> PathBuf {
        self.dir.path().join(format!("out-{name}"))
    }

    /// `readthrough` on `host`, with the fleet's tier.
    fn readthrough(&self, host: &str) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_readthrough"));
        command
            .arg("--cache-dir")
            .arg(self.dir.path().join(host))
            .args(["--stale-after", self.stale_after])
            .args(["--shared-tier", &format!("s3://{BUCKET}/fleet")])
            .args(["--shared-tier-part-size", &PART.to_string()])
            .args(["--shared-tier-timeout", "3s"])
            .env("AWS_ENDPOINT_URL", self.moto.endpoint())
            .env("AWS_ACCESS_KEY_ID", "testing")
            .env("AWS_SECRET_ACCESS_KEY", "testing")
            .env("AWS_REGION", "us-east-1")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_PROFILE")
            .env_remove("READTHROUGH_SHARED_TIER")
            .stdin(Stdio::null())
            .kill_on_drop(true);
        command
    }

    /// `readthrough get` of origin path `path` on `host`, into `out(name)`.
    fn get(&self, host: &str, path: &str, name: &str, extra: &[&str]) -> Child {
        self.readthrough(host)
            .args(extra)
            .args(["get", &self.origin.url(path), "-o"])
            .arg(self.out(name))
            .spawn()
            .expect("run readthrough")
    }

    fn store(&self) -> Arc<dyn ObjectStore> {
        self.moto.store()
    }

    /// Every object under the tier's prefix.
    async fn objects(&self) -> Vec<String> {
        let prefix = ObjectPath::from("fleet");
        let listed: Vec<_> = self
            .store()
            .list(Some(&prefix))
            .try_collect()
            .await
            .unwrap();
        listed.into_iter().map(|m| m.location.to_string()).collect()
    }

    /// Waits for the first object whose path contains `part`.
    async fn object_like(&self, part: &str) -> String {
        let find = async {
            loop {
                if let Some(found) = self.objects().await.into_iter().find(|o| o.contains(part)) {
                    return found;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(HANG, find)
            .await
            .expect("the object never appeared")
    }

    /// Host `a`'s `get` of a `/blob` of `len` bytes, which the origin holds after its
    /// first part until the gate opens, once that part is in the tier: the gate and the
    /// process.
    async fn leader_past_its_first_part(&self, len: usize) -> (Gate, Child) {
        let gate = Gate::new();
        self.origin.route("/blob", blob(len).hold_at(PART, &gate));
        let leader = self.get("a", "/blob", "a", &[]);
        gate.reached(1).await;
        self.object_like("/gen/00000000000000000001/00000000").await;
        (gate, leader)
    }

    /// Waits until `out(name)` holds at least `len` bytes.
    async fn received(&self, name: &str, len: usize) {
        let path = self.out(name);
        let grown = async {
            while std::fs::metadata(&path).map_or(0, |m| m.len()) < len as u64 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(HANG, grown)
            .await
            .expect("the reader never got the bytes");
    }

    /// Flips one byte of the object at `at` in the bucket.
    async fn flip(&self, at: &str, offset_from_end: usize) {
        let store = self.store();
        let at = ObjectPath::from(at);
        let mut bytes = store
            .get(&at)
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap()
            .to_vec();
        let index = bytes.len() - 1 - offset_from_end;
        bytes[index] ^= 0x01;
        let payload = PutPayload::from(Bytes::from(bytes));
        store
            .put_opts(&at, payload, PutOptions::from(PutMode::Overwrite))
            .await
            .unwrap();
    }
}

/// Waits for `child` and asserts it succeeded.
async fn succeeds(mut child: Child) {
    let status = tokio::time::timeout(HANG, child.wait())
        .await
        .expect("a reader hung")
        .unwrap();
    assert!(status.success(), "a reader failed: {status}");
}

fn signal(pid: libc::pid_t, signal: libc::c_int) {
    // SAFETY: kill(2) with a child's pid that this test has not waited for yet.
    assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
}

fn read(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap()
}

fn blob(len: usize) -> Behaviour {
    Behaviour::body(common::body(7, len))
        .etag("\"v1\"")
        .chunk(16 * 1024)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn moto_refuses_a_second_create_only_write() {
    let Some(fleet) = Fleet::start("30s").await else {
        return;
    };
    let store = fleet.store();
    let at = ObjectPath::from("fleet/probe");
    let create = || PutOptions::from(PutMode::Create);
    store.put_opts(&at, "one".into(), create()).await.unwrap();
    let again = store.put_opts(&at, "two".into(), create()).await;
    assert!(
        matches!(again, Err(object_store::Error::AlreadyExists { .. })),
        "moto must honour If-None-Match: * (moto >= 5.2.1): {again:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn four_hosts_of_three_processes_make_one_origin_fetch() {
    let Some(fleet) = Fleet::start("30s").await else {
        return;
    };
    let len = 5 * PART + 123;
    fleet
        .origin
        .route("/blob", blob(len).delay(Duration::from_millis(5)));
    let mut readers = Vec::new();
    for host in 0..4 {
        for process in 0..3 {
            let name = format!("{host}-{process}");
            readers.push(fleet.get(&format!("host{host}"), "/blob", &name, &[]));
        }
    }
    for reader in readers {
        succeeds(reader).await;
    }
    let want = common::body(7, len);
    for host in 0..4 {
        for process in 0..3 {
            assert!(
                read(&fleet.out(&format!("{host}-{process}"))) == want,
                "wrong bytes"
            );
        }
    }
    assert_eq!(
        fleet.origin.count("/blob"),
        1,
        "one origin fetch for the fleet"
    );
    succeeds(fleet.get("host4", "/blob", "late", &[])).await;
    assert!(read(&fleet.out("late")) == want);
    assert_eq!(
        fleet.origin.count("/blob"),
        1,
        "a fifth host reads the tier"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_host_streams_the_first_part_before_the_origin_resumes() {
    let Some(fleet) = Fleet::start("30s").await else {
        return;
    };
    let len = 4 * PART;
    let (gate, leader) = fleet.leader_past_its_first_part(len).await;
    let follower = fleet.get("b", "/blob", "b", &[]);
    fleet.received("b", PART).await;
    gate.open();
    succeeds(leader).await;
    succeeds(follower).await;
    let want = common::body(7, len);
    assert!(read(&fleet.out("a")) == want && read(&fleet.out("b")) == want);
    assert_eq!(fleet.origin.count("/blob"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_fleet_leader_is_taken_over_and_its_parts_removed() {
    let Some(fleet) = Fleet::start("2s").await else {
        return;
    };
    let len = 4 * PART;
    let (gate, mut leader) = fleet.leader_past_its_first_part(len).await;
    let follower = fleet.get("b", "/blob", "b", &[]);
    fleet.received("b", PART).await;
    leader.start_kill().unwrap();
    leader.wait().await.unwrap();
    gate.open();
    succeeds(follower).await;
    assert!(read(&fleet.out("b")) == common::body(7, len));
    assert!(fleet.origin.count("/blob") <= 2);
    let objects = fleet.objects().await;
    assert!(
        objects
            .iter()
            .all(|o| !o.contains("/gen/00000000000000000001/")),
        "the dead generation's parts stay: {objects:?}"
    );
    assert!(objects.iter().any(|o| o.ends_with("/manifest")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_fleet_leader_cannot_publish_over_the_next_generation() {
    let Some(fleet) = Fleet::start("2s").await else {
        return;
    };
    let len = 4 * PART;
    let (gate, leader) = fleet.leader_past_its_first_part(len).await;
    let pid = leader.id().unwrap() as libc::pid_t;
    signal(pid, libc::SIGSTOP);
    // The follower's own fetch is held at the gate too, until the gate opens.
    let follower = fleet.get("b", "/blob", "b", &[]);
    gate.reached(2).await;
    gate.open();
    succeeds(follower).await;
    fleet.object_like("/manifest").await;
    signal(pid, libc::SIGCONT);
    succeeds(leader).await;
    let want = common::body(7, len);
    assert!(read(&fleet.out("a")) == want && read(&fleet.out("b")) == want);
    let objects = fleet.objects().await;
    assert!(
        objects
            .iter()
            .all(|o| !o.contains("/gen/00000000000000000001/")),
        "the stopped leader's parts stay: {objects:?}"
    );
    let before = fleet.origin.count("/blob");
    succeeds(fleet.get("c", "/blob", "c", &[])).await;
    assert!(
        read(&fleet.out("c")) == want,
        "the tier holds the right copy"
    );
    assert_eq!(
        fleet.origin.count("/blob"),
        before,
        "a third host reads the tier"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_in_the_bucket_is_never_served() {
    let Some(fleet) = Fleet::start("30s").await else {
        return;
    };
    let len = 3 * PART + 5;
    fleet.origin.route("/blob", blob(len));
    let want = common::body(7, len);
    succeeds(fleet.get("a", "/blob", "a", &[])).await;
    let part = fleet
        .object_like("/gen/00000000000000000001/00000001")
        .await;
    fleet.flip(&part, 10).await;
    succeeds(fleet.get("b", "/blob", "b", &[])).await;
    assert!(read(&fleet.out("b")) == want, "a flipped part was served");
    assert_eq!(fleet.origin.count("/blob"), 2, "the origin was asked again");
    // The copy was dropped: the next host fetches and publishes a new generation.
    succeeds(fleet.get("c", "/blob", "c", &[])).await;
    assert!(read(&fleet.out("c")) == want);
    assert_eq!(fleet.origin.count("/blob"), 3);
    let manifest = fleet.object_like("/manifest").await;
    fleet.flip(&manifest, 3).await;
    succeeds(fleet.get("d", "/blob", "d", &[])).await;
    assert!(
        read(&fleet.out("d")) == want,
        "a flipped manifest was trusted"
    );
    assert_eq!(fleet.origin.count("/blob"), 4, "the origin was asked again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_tier_leaves_reads_to_the_origin() {
    let Some(mut fleet) = Fleet::start("30s").await else {
        return;
    };
    let len = 4 * PART;
    let (gate, leader) = fleet.leader_past_its_first_part(len).await;
    fleet.moto.child.kill().unwrap();
    fleet.moto.child.wait().unwrap();
    gate.open();
    succeeds(leader).await;
    succeeds(fleet.get("b", "/blob", "b", &[])).await;
    let want = common::body(7, len);
    assert!(read(&fleet.out("a")) == want && read(&fleet.out("b")) == want);
    assert_eq!(fleet.origin.count("/blob"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_tier_is_read_and_never_written() {
    let Some(fleet) = Fleet::start("30s").await else {
        return;
    };
    fleet.origin.route("/filled", blob(2 * PART));
    fleet.origin.route("/other", blob(PART + 1));
    succeeds(fleet.get("admin", "/filled", "admin", &[])).await;
    let before = fleet.objects().await;
    let read_only = ["--shared-tier-read-only"];
    succeeds(fleet.get("user", "/filled", "user", &read_only)).await;
    assert_eq!(fleet.origin.count("/filled"), 1, "read from the tier");
    succeeds(fleet.get("user", "/other", "other", &read_only)).await;
    assert_eq!(fleet.origin.count("/other"), 1);
    assert!(read(&fleet.out("other")) == common::body(7, PART + 1));
    assert_eq!(
        fleet.objects().await,
        before,
        "a read-only miss wrote to the tier"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tier_ls_lists_copies_and_tier_prune_removes_them() {
    let Some(fleet) = Fleet::start("30s").await else {
        return;
    };
    fleet.origin.route("/blob", blob(PART + 9));
    succeeds(fleet.get("a", "/blob", "a", &[])).await;
    let tier = async |args: &[&str]| fleet.readthrough("a").args(args).output().await.unwrap();
    let listed = tier(&["tier", "ls", "--json"]).await;
    assert!(listed.status.success());
    let entries: serde_json::Value = serde_json::from_slice(&listed.stdout).unwrap();
    assert_eq!(entries[0]["key"], fleet.origin.url("/blob"));
    assert_eq!(entries[0]["size"], PART + 9);
    let pruned = tier(&["tier", "prune", "--older-than", "0s"]).await;
    assert!(
        pruned.status.success(),
        "{}",
        String::from_utf8_lossy(&pruned.stderr)
    );
    let listed = tier(&["tier", "ls", "--json"]).await;
    assert_eq!(String::from_utf8_lossy(&listed.stdout).trim(), "[]");
}
