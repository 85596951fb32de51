//! [`TierOrigin`]: the cache's origin with the shared tier in front of it.

use std::fmt;
use std::sync::Arc;

use futures::future::BoxFuture;

use crate::error::BoxError;
use crate::origin::{FetchOptions, Fetched, Origin};
use crate::stats::add;
use crate::tier::Tier;
use crate::tier::bucket::{Answer, Refusal};
use crate::tier::lead::{Ask, lead};
use crate::tier::lease::{self, Claim, Seen, Watch};
use crate::tier::names::KeyObjects;
use crate::tier::ranged;
use crate::tier::read::{self, FIRST_WAIT, LONGEST_WAIT};
use crate::tier::records::Manifest;

/// How many times a read looks for a generation to follow or lead before it goes to
/// the origin without the tier (the lease kept changing hands).
const ROUNDS: usize = 8;

/// An [`Origin`] that asks the shared tier before the origin it wraps.
pub(crate) struct TierOrigin {
    tier: Arc<Tier>,
    origin: Arc<dyn Origin>,
}

impl TierOrigin {
    pub(crate) fn new(tier: Arc<Tier>, origin: Arc<dyn Origin>) -> Self {
        TierOrigin { tier, origin }
    }
}

impl fmt::Debug for TierOrigin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TierOrigin")
            .field("tier", &self.tier.bucket.store.to_string())
            .field("prefix", &self.tier.prefix)
            .finish_non_exhaustive()
    }
}

impl Origin for TierOrigin {
    fn fetch(
        &self,
        key: &str,
        options: FetchOptions,
    ) -> BoxFuture<'static, Result<Fetched, BoxError>> {
        let ask = Ask {
            objects: KeyObjects::new(&self.tier.prefix, key),
            tier: Arc::clone(&self.tier),
            origin: Arc::clone(&self.origin),
            key: key.to_owned(),
        };
        Box::pin(open(ask, options))
    }

    /// As the origin it wraps: parts of blobs are its to serve.
    fn serves_ranges(&self) -> bool {
        self.origin.serves_ranges()
    }
}

/// What the tier holds for a key.
pub(super) enum Copy {
    Fresh(Box<Manifest>),
    /// An expired copy, of this generation.
    Expired(u64),
    None,
}

async fn open(ask: Ask, options: FetchOptions) -> Result<Fetched, BoxError> {
    // Part of a blob (a resumed fill, a slice, a range): from a published copy's
    // parts, or the origin.
    if options.range().is_some() {
        return ranged::open(ask, options).await;
    }
    let tier = &ask.tier;
    let published = match copy_of(&ask).await {
        Ok(Copy::Fresh(manifest)) => {
            add(&tier.counters.hits, 1);
            return Ok(read::copy(ask, *manifest));
        }
        Ok(Copy::Expired(generation)) => Some(generation),
        Ok(Copy::None) => None,
        Err(e) => {
            tier.trouble("looking for a copy", &e);
            return ask.origin(options).await;
        }
    };
    add(&tier.counters.misses, 1);
    if tier.read_only {
        return ask.origin(options).await;
    }
    match settle(&ask, published).await {
        Ok(answer) => answer,
        Err(e) => {
            tier.trouble("taking the fleet lease", &e);
            ask.origin(options).await
        }
    }
}

/// The tier's copy of the key. A manifest that does not check out is removed.
pub(super) async fn copy_of(ask: &Ask) -> Answer<Copy> {
    let at = ask.objects.manifest();
    let bytes = match ask.tier.bucket.get(&at).await {
        Ok(bytes) => bytes,
        Err(Refusal::Missing) => return Ok(Copy::None),
        Err(e) => return Err(e),
    };
    match Manifest::decode(&bytes, &ask.objects.id) {
        Some(manifest) if manifest.expired(ask.tier.now_ms()) => {
            Ok(Copy::Expired(manifest.generation))
        }
        Some(manifest) => Ok(Copy::Fresh(Box::new(manifest))),
        None => {
            ask.tier
                .trouble("reading a manifest", &"it does not check out; removing it");
            if !ask.tier.read_only {
                // Only while it is still garbage: a good copy may have replaced it.
                ask.tier.drop_copy(&ask.objects, u64::MAX).await?;
            }
            Ok(Copy::None)
        }
    }
}

/// Leads a new generation, or follows the one in progress.
async fn settle(ask: &Ask, mut published: Option<u64>) -> Answer<Result<Fetched, BoxError>> {
    let tier = &ask.tier;
    let mut rechecked = false;
    for _ in 0..ROUNDS {
        let mut claim = lease::claim(tier, &ask.objects, published, rechecked).await?;
        rechecked = false;
        loop {
            let generation = match claim {
                Claim::Lead(holding) => {
                    return Ok(lead(ask, *holding, published, Default::default()).await);
                }
                Claim::Follow(generation) => generation,
                Claim::Published => {
                    rechecked = true;
                    break;
                }
            };
            add(&tier.counters.lease_waits, 1);
            let mut watch = Watch::new(generation);
            match answered(ask, &mut watch).await? {
                Some(Seen::Alive(lease)) => {
                    return Ok(Ok(read::follow(ask.clone(), watch, &lease)));
                }
                Some(Seen::Stale) => {
                    claim = lease::take(tier, &ask.objects, generation + 1).await?;
                    if matches!(claim, Claim::Lead(_)) {
                        add(&tier.counters.takeovers, 1);
                    }
                }
                _ => break,
            }
        }
        match copy_of(ask).await? {
            Copy::Fresh(manifest) => {
                add(&tier.counters.hits, 1);
                return Ok(Ok(read::copy(ask.clone(), *manifest)));
            }
            Copy::Expired(generation) => published = Some(generation),
            Copy::None => published = None,
        }
    }
    Err(Refusal::Trouble(
        "the fleet lease kept changing hands".into(),
    ))
}

/// Waits until the holder of the watched generation has the origin's answer
/// (`Alive`), or goes stale, or the generation ends (`None`).
async fn answered(ask: &Ask, watch: &mut Watch) -> Answer<Option<Seen>> {
    let mut wait = FIRST_WAIT;
    loop {
        match watch.look(&ask.tier, &ask.objects).await? {
            Seen::Alive(lease) if lease.answer.is_some() => return Ok(Some(Seen::Alive(lease))),
            Seen::Alive(_) => {}
            Seen::Stale => return Ok(Some(Seen::Stale)),
            Seen::Ended(_) | Seen::Superseded(_) => return Ok(None),
        }
        tokio::time::sleep(wait).await;
        wait = (wait * 2).min(LONGEST_WAIT);
    }
}
