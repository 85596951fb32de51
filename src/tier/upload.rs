//! The fleet leader's upload: parts as the body arrives, then the create-only manifest
//! that publishes them, then the removal of older generations' parts.
//!
//! The upload runs in a task of its own, fed by the leader's stream ([`tee`]) through
//! a channel of two parts, so memory stays within a few parts. Any trouble ends the
//! upload (and marks the lease abandoned, so followers take over at once); the
//! leader's own read goes on from the origin either way.
//!
//! [`tee`]: crate::tier::tee

use std::sync::Arc;

use bytes::Bytes;
use tokio::sync::{Mutex, mpsc, oneshot};

use crate::stats::add;
use crate::tier::Tier;
use crate::tier::bucket::{Answer, Refusal};
use crate::tier::lease::{Heartbeat, Holding, SharedHolding};
use crate::tier::names::generation_of;
use crate::tier::records::{self, Answer as Said, LeaseState, Manifest, PartPlace};

/// What the leader's stream hands the upload.
pub(crate) enum Piece {
    /// The next part's data.
    Part(Bytes),
    /// The body ended whole and checked: publish.
    End { len: u64, sha256: String },
}

/// The leader's end of an upload.
pub(crate) struct Upload {
    pub(crate) pieces: mpsc::Sender<Piece>,
    /// Resolves once the upload has published or given up, and cleaned up after.
    pub(crate) finished: oneshot::Receiver<()>,
}

/// What the upload publishes under.
pub(crate) struct Publish {
    pub(crate) name: String,
    pub(crate) answer: Said,
    /// The generation of the expired manifest this one replaces.
    pub(crate) replaces: Option<u64>,
}

/// Starts uploading under `holding`.
pub(crate) fn start(tier: Arc<Tier>, holding: Holding, publish: Publish) -> Upload {
    let (pieces, mut received) = mpsc::channel(2);
    let (done, finished) = oneshot::channel();
    tokio::spawn(async move {
        let generation = holding.generation();
        let holding: SharedHolding = Arc::new(Mutex::new(holding));
        holding.lock().await.lease.answer = Some(publish.answer.clone());
        let mut run = Run {
            tier: &tier,
            holding: &holding,
            sums: Vec::new(),
        };
        let ended = run.run(&mut received, &publish).await;
        drop(received);
        let mut holding = holding.lock().await;
        let state = match ended {
            Ok(true) => LeaseState::Done,
            Ok(false) => LeaseState::Abandoned,
            Err(e) => {
                tier.trouble("uploading to the tier", &e);
                LeaseState::Abandoned
            }
        };
        if state == LeaseState::Abandoned || holding.is_fenced() {
            let objects = holding.objects.clone();
            if let Err(e) = holding.renew(&tier, state).await {
                tier.trouble("giving up a lease", &e);
            }
            let _ = tier
                .bucket
                .delete_all(&objects.generation(generation))
                .await;
        } else {
            remove_older(&tier, &holding).await;
        }
        // Only now: a process may exit once its read ends.
        let _ = done.send(());
    });
    Upload { pieces, finished }
}

struct Run<'a> {
    tier: &'a Arc<Tier>,
    holding: &'a SharedHolding,
    sums: Vec<String>,
}

impl Run<'_> {
    /// Uploads the parts and publishes them. Says whether it published.
    async fn run(
        &mut self,
        received: &mut mpsc::Receiver<Piece>,
        publish: &Publish,
    ) -> Answer<bool> {
        if !self
            .holding
            .lock()
            .await
            .renew(self.tier, LeaseState::Running)
            .await?
        {
            return Ok(false);
        }
        let _heartbeat = Heartbeat::start(Arc::clone(self.tier), Arc::clone(self.holding));
        while let Some(piece) = received.recv().await {
            match piece {
                Piece::Part(data) => self.part(data).await?,
                Piece::End { len, sha256 } => return self.publish(publish, len, sha256).await,
            }
            if self.holding.lock().await.is_fenced() {
                return Ok(false);
            }
        }
        Ok(false)
    }

    async fn part(&mut self, data: Bytes) -> Answer<()> {
        let holding = self.holding.lock().await;
        let place = PartPlace {
            key: &holding.objects.id,
            generation: holding.generation(),
            index: self.sums.len() as u64,
        };
        let (object, sum) = records::encode_part(place, &data);
        let at = holding.objects.part(place.generation, place.index);
        drop(holding);
        self.tier
            .bucket
            .put(&at, object, object_store::PutMode::Overwrite)
            .await?;
        add(&self.tier.counters.bytes_written, data.len() as u64);
        self.sums.push(sum);
        Ok(())
    }

    async fn publish(&mut self, publish: &Publish, len: u64, sha256: String) -> Answer<bool> {
        let mut holding = self.holding.lock().await;
        if holding.check_fence(self.tier).await? {
            return Ok(false);
        }
        let objects = holding.objects.clone();
        if let Some(old) = publish.replaces {
            self.tier.drop_copy(&objects, old).await?;
        }
        let manifest = Manifest {
            format: records::FORMAT,
            key: objects.id.clone(),
            name: publish.name.clone(),
            generation: holding.generation(),
            len,
            sha256,
            answer: publish.answer.clone(),
            part_size: self.tier.part_size,
            parts: std::mem::take(&mut self.sums),
            created_ms: self.tier.now_ms(),
        };
        match self
            .tier
            .bucket
            .create(&objects.manifest(), manifest.encode())
            .await
        {
            Ok(_) => {}
            // Another generation published first (its holder was taken over just
            // after it last checked): that copy stands, checked like any other.
            Err(Refusal::Exists) => return Ok(false),
            Err(other) => return Err(other),
        }
        if let Err(e) = holding.renew(self.tier, LeaseState::Done).await {
            self.tier.trouble("closing a lease", &e);
        }
        Ok(true)
    }
}

/// After a publish: removes the parts and leases of every earlier generation (their
/// holders are dead or fenced, and no manifest names them). Stops at the first
/// failure: `tier prune` removes what is left.
async fn remove_older(tier: &Tier, holding: &Holding) {
    let objects = &holding.objects;
    let mine = holding.generation();
    for folder in [objects.generations(), objects.leases()] {
        let removed = async {
            for object in tier.bucket.list(&folder).await? {
                if generation_of(&folder, &object.location).is_some_and(|g| g < mine) {
                    tier.bucket.delete(&object.location).await?;
                }
            }
            Ok::<_, Refusal>(())
        };
        if let Err(e) = removed.await {
            return tier.trouble("removing old generations", &e);
        }
    }
}
