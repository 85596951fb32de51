//! The fleet lease of a key: one generation at a time fetches from the origin.
//!
//! Each generation has its own lease object, made with a create-only write, so of the
//! hosts that try to start generation `g` exactly one succeeds. A holder renews its
//! lease (a conditional update on its version where the store has one) while it
//! lives; a waiter that sees the lease unchanged for the staleness timeout, on its
//! own monotonic clock, takes over by creating generation `g + 1`. A holder checks
//! before every renewal and before it publishes that no later generation exists, so
//! one that was taken over stops: its parts are under a dead generation.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use object_store::UpdateVersion;
use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::tier::Tier;
use crate::tier::bucket::{Answer, Refusal};
use crate::tier::names::{KeyObjects, generation_of};
use crate::tier::records::{Lease, LeaseState};

/// What a host that missed does next.
pub(crate) enum Claim {
    /// It holds the lease of a new generation: it fetches from the origin.
    Lead(Box<Holding>),
    /// Another host holds this generation: follow its parts.
    Follow(u64),
    /// The latest generation published its copy since the caller looked: read it.
    Published,
}

/// Takes the lease of a new generation, or names the one to follow. `published` is
/// the generation of the manifest the caller found (expired, or none); with
/// `rechecked` the caller looked again after a `Published`, so a finished generation
/// without a servable copy is followed by a new one.
pub(crate) async fn claim(
    tier: &Tier,
    objects: &KeyObjects,
    published: Option<u64>,
    rechecked: bool,
) -> Answer<Claim> {
    let top = latest(tier, objects).await?;
    let after = top.unwrap_or(0).max(published.unwrap_or(0));
    if let Some(top) = top.filter(|&top| top > published.unwrap_or(0)) {
        // A lease that is garbage is followed by the next generation.
        match decoded(tier, objects, top).await?.map(|lease| lease.state) {
            Some(LeaseState::Running) => return Ok(Claim::Follow(top)),
            Some(LeaseState::Done) if !rechecked => return Ok(Claim::Published),
            _ => {}
        }
    }
    take(tier, objects, after + 1).await
}

/// Tries to create the lease of `generation`.
pub(crate) async fn take(tier: &Tier, objects: &KeyObjects, generation: u64) -> Answer<Claim> {
    let lease = Lease::new(&objects.id, generation, tier.part_size, tier.now_ms());
    match tier
        .bucket
        .create(&objects.lease(generation), lease.encode())
        .await
    {
        Ok(put) => Ok(Claim::Lead(Box::new(Holding {
            objects: objects.clone(),
            lease,
            version: Some(UpdateVersion::from(put)),
            fenced: Arc::default(),
        }))),
        Err(Refusal::Exists) => Ok(Claim::Follow(generation)),
        Err(other) => Err(other),
    }
}

/// The latest generation that has a lease.
async fn latest(tier: &Tier, objects: &KeyObjects) -> Answer<Option<u64>> {
    let folder = objects.leases();
    let leases = tier.bucket.list(&folder).await?;
    Ok(leases
        .iter()
        .filter_map(|meta| generation_of(&folder, &meta.location))
        .max())
}

/// The lease record of `generation`, or `None` if it is garbage.
async fn decoded(tier: &Tier, objects: &KeyObjects, generation: u64) -> Answer<Option<Lease>> {
    let bytes = tier.bucket.get(&objects.lease(generation)).await?;
    Ok(Lease::decode(&bytes, &objects.id, generation))
}

/// The lease record of `generation`; garbage there is trouble.
pub(crate) async fn read(tier: &Tier, objects: &KeyObjects, generation: u64) -> Answer<Lease> {
    decoded(tier, objects, generation)
        .await?
        .ok_or_else(|| Refusal::Trouble(format!("the lease of generation {generation} is garbage")))
}

/// A generation later than `generation`, if one has started.
async fn later(tier: &Tier, objects: &KeyObjects, generation: u64) -> Answer<Option<u64>> {
    Ok(latest(tier, objects).await?.filter(|&top| top > generation))
}

/// A lease this process holds.
pub(crate) struct Holding {
    pub(crate) objects: KeyObjects,
    pub(crate) lease: Lease,
    /// The version to update, while the store does conditional updates.
    version: Option<UpdateVersion>,
    /// Set once a later generation is seen: this one must not publish.
    pub(crate) fenced: Arc<AtomicBool>,
}

impl Holding {
    pub(crate) fn generation(&self) -> u64 {
        self.lease.generation
    }

    pub(crate) fn is_fenced(&self) -> bool {
        self.fenced.load(Ordering::SeqCst)
    }

    /// Whether a later generation has started (the lease was taken over).
    pub(crate) async fn check_fence(&self, tier: &Tier) -> Answer<bool> {
        if self.is_fenced() {
            return Ok(true);
        }
        let fenced = later(tier, &self.objects, self.generation())
            .await?
            .is_some();
        if fenced {
            self.fenced.store(true, Ordering::SeqCst);
        }
        Ok(fenced)
    }

    /// Renews the lease with `state`, unless a later generation exists. Says whether
    /// this holder still holds it.
    pub(crate) async fn renew(&mut self, tier: &Tier, state: LeaseState) -> Answer<bool> {
        if self.check_fence(tier).await? {
            return Ok(false);
        }
        self.lease.beat += 1;
        self.lease.state = state;
        self.lease.renewed_ms = tier.now_ms();
        let at = self.objects.lease(self.generation());
        let bytes = self.lease.encode();
        let written = match self.version.clone() {
            Some(version) => match tier.bucket.update(&at, bytes.clone(), version).await {
                Err(Refusal::Unsupported) => None,
                Err(Refusal::Conflict) => {
                    self.fenced.store(true, Ordering::SeqCst);
                    return Ok(false);
                }
                other => Some(other?),
            },
            None => None,
        };
        self.version = match written {
            Some(put) => Some(UpdateVersion::from(put)),
            None => {
                let mode = object_store::PutMode::Overwrite;
                tier.bucket.put(&at, bytes, mode).await?;
                None
            }
        };
        Ok(true)
    }
}

/// A holding shared by the uploader and its heartbeat.
pub(crate) type SharedHolding = Arc<Mutex<Holding>>;

/// Renews `holding` every quarter of the staleness timeout until dropped.
pub(crate) struct Heartbeat(tokio::task::JoinHandle<()>);

impl Heartbeat {
    pub(crate) fn start(tier: Arc<Tier>, holding: SharedHolding) -> Self {
        let every = tier.stale_after / 4;
        Heartbeat(tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                let mut holding = holding.lock().await;
                match holding.renew(&tier, LeaseState::Running).await {
                    Ok(true) => {}
                    Ok(false) => return,
                    Err(e) => tier.trouble("renewing a lease", &e),
                }
            }
        }))
    }
}

impl Drop for Heartbeat {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A follower's view of another host's generation: whether its holder still shows
/// signs of life, judged on this process's monotonic clock.
pub(crate) struct Watch {
    pub(crate) generation: u64,
    beat: Option<u64>,
    since: Instant,
}

/// What a look at a followed generation found.
pub(crate) enum Seen {
    /// Its holder renewed within the staleness timeout.
    Alive(Lease),
    /// It ended: published, fenced, or abandoned.
    Ended(Lease),
    /// This later generation exists.
    Superseded(u64),
    /// Its holder has not renewed for the staleness timeout.
    Stale,
}

impl Watch {
    pub(crate) fn new(generation: u64) -> Self {
        Watch {
            generation,
            beat: None,
            since: Instant::now(),
        }
    }

    /// The holder made progress (a part landed).
    pub(crate) fn progressed(&mut self) {
        self.since = Instant::now();
    }

    pub(crate) async fn look(&mut self, tier: &Tier, objects: &KeyObjects) -> Answer<Seen> {
        if let Some(next) = later(tier, objects, self.generation).await? {
            return Ok(Seen::Superseded(next));
        }
        let lease = read(tier, objects, self.generation).await?;
        if lease.state != LeaseState::Running {
            return Ok(Seen::Ended(lease));
        }
        if self.beat != Some(lease.beat) {
            self.beat = Some(lease.beat);
            self.progressed();
        }
        if self.since.elapsed() >= tier.stale_after {
            return Ok(Seen::Stale);
        }
        Ok(Seen::Alive(lease))
    }
}
