//! Leading a generation: the one origin fetch of the fleet, teed into the upload.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::{self, StreamExt};

use crate::error::BoxError;
use crate::origin::{Expiry, FetchOptions, Fetched, Origin};
use crate::tier::Tier;
use crate::tier::lease::Holding;
use crate::tier::names::KeyObjects;
use crate::tier::records::{Answer, LeaseState};
use crate::tier::tee::{Promise, Sent, rest_of, tee};
use crate::tier::upload::{self, Publish};

/// One read of a key through the tier: what every step needs.
#[derive(Clone)]
pub(crate) struct Ask {
    pub(crate) tier: Arc<Tier>,
    pub(crate) origin: Arc<dyn Origin>,
    pub(crate) key: String,
    pub(crate) objects: KeyObjects,
}

impl Ask {
    /// Fetches from the origin, bypassing the tier.
    pub(crate) async fn origin(&self, options: FetchOptions) -> Result<Fetched, BoxError> {
        self.origin.fetch(&self.key, options).await
    }
}

/// Fetches the whole blob from the origin under `holding`, uploading it as the
/// generation's parts. The body returned starts after `sent` (the parts this read
/// already returned, which the new body's are checked against). `replaces` names the
/// expired manifest the new one replaces.
pub(crate) async fn lead(
    ask: &Ask,
    mut holding: Holding,
    replaces: Option<u64>,
    sent: Sent,
) -> Result<Fetched, BoxError> {
    let tier = &ask.tier;
    let mut fetched = match ask.origin(FetchOptions::default()).await {
        Ok(fetched) if !fetched.not_modified && fetched.offset == 0 => fetched,
        other => {
            if let Err(e) = holding.renew(tier, LeaseState::Abandoned).await {
                tier.trouble("giving up a lease", &e);
            }
            return other;
        }
    };
    let answer = Answer {
        len: fetched.len,
        validator: fetched.validator.clone(),
        content_type: fetched.content_type.clone(),
        expires_ms: expires_ms(tier, fetched.expiry),
    };
    let publish = Publish {
        name: ask.key.clone(),
        answer,
        replaces,
    };
    let upload = upload::start(Arc::clone(tier), holding, publish);
    let promise = Promise {
        len: fetched.len,
        sha256: fetched.sha256,
    };
    let body = std::mem::replace(&mut fetched.body, stream::empty().boxed());
    let body = tee(Arc::clone(tier), body, upload, promise);
    fetched.body = rest_of(&ask.key, body, 0, sent);
    Ok(fetched)
}

/// When a copy stored now with `expiry` expires, by the tier's clock.
fn expires_ms(tier: &Tier, expiry: Expiry) -> Option<u64> {
    let ttl = match expiry {
        Expiry::Never => return None,
        Expiry::After(ttl) => ttl,
        Expiry::Default => tier.default_ttl?,
    };
    Some(tier.now_ms().saturating_add(millis(ttl)))
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis()).unwrap_or(u64::MAX)
}

/// The lifetime left of a copy that expires at `expires_ms`, as the engine takes it.
pub(crate) fn with_expiry(fetched: Fetched, tier: &Tier, expires_ms: Option<u64>) -> Fetched {
    match expires_ms {
        None => fetched.never_expires(),
        Some(at) => {
            let left = at.saturating_sub(tier.now_ms()).max(1);
            fetched.with_ttl(Duration::from_millis(left))
        }
    }
}
