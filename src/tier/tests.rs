//! The lease, manifest and part protocol over an in-memory store.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::StreamExt;
use object_store::memory::InMemory;
use object_store::path::Path;

use crate::clock::SystemClock;
use crate::origin::{FetchOptions, Fetched, Origin, origin_fn};
use crate::tier::bucket::Refusal;
use crate::tier::lease::{self, Claim, Seen, Watch};
use crate::tier::names::KeyObjects;
use crate::tier::records::{LeaseState, Manifest};
use crate::tier::{Lifetimes, Tier, TierSettings};

const STALE: Duration = Duration::from_secs(5);

fn tier_over(store: Arc<InMemory>, part_size: u64) -> Arc<Tier> {
    tier_with(store, part_size, STALE)
}

fn tier_with(store: Arc<InMemory>, part_size: u64, stale_after: Duration) -> Arc<Tier> {
    let mut settings = TierSettings::new(store, "fleet", false);
    settings.part_size = part_size;
    let life = Lifetimes {
        stale_after,
        default_ttl: None,
        clock: Arc::new(SystemClock),
    };
    Arc::new(settings.open(life).unwrap())
}

fn objects() -> KeyObjects {
    KeyObjects::new(&Path::from("fleet"), "the key")
}

async fn lead(tier: &Tier, published: Option<u64>) -> lease::Holding {
    match lease::claim(tier, &objects(), published, true)
        .await
        .unwrap()
    {
        Claim::Lead(holding) => *holding,
        Claim::Follow(generation) => panic!("followed generation {generation}"),
        Claim::Published => panic!("found a published copy"),
    }
}

#[tokio::test]
async fn one_claimant_leads_and_the_next_follows() {
    let tier = tier_over(Arc::new(InMemory::new()), 4);
    let holding = lead(&tier, None).await;
    assert_eq!(holding.generation(), 1);
    assert!(matches!(
        lease::claim(&tier, &objects(), None, false).await.unwrap(),
        Claim::Follow(1)
    ));
    assert!(matches!(
        lease::take(&tier, &objects(), 1).await.unwrap(),
        Claim::Follow(1)
    ));
}

#[tokio::test]
async fn a_taken_over_holder_is_fenced() {
    let tier = tier_over(Arc::new(InMemory::new()), 4);
    let mut first = lead(&tier, None).await;
    assert!(first.renew(&tier, LeaseState::Running).await.unwrap());
    let Claim::Lead(second) = lease::take(&tier, &objects(), 2).await.unwrap() else {
        panic!("generation 2 was taken");
    };
    assert_eq!(second.generation(), 2);
    assert!(!first.renew(&tier, LeaseState::Running).await.unwrap());
    assert!(first.is_fenced());
    let lease = lease::read(&tier, &objects(), 1).await.unwrap();
    assert_eq!(lease.beat, 1, "a fenced holder writes nothing more");
}

#[tokio::test]
async fn a_renewal_is_conditional_on_the_version_it_wrote() {
    let store = Arc::new(InMemory::new());
    let tier = tier_over(Arc::clone(&store), 4);
    let mut holding = lead(&tier, None).await;
    // Someone else rewrites the lease object: the holder's update no longer applies.
    let at = objects().lease(1);
    tier.bucket
        .put(
            &at,
            Bytes::from_static(b"{}"),
            object_store::PutMode::Overwrite,
        )
        .await
        .unwrap();
    assert!(!holding.renew(&tier, LeaseState::Running).await.unwrap());
    assert!(holding.is_fenced());
}

#[tokio::test]
async fn a_watcher_sees_a_silent_lease_go_stale_on_its_own_clock() {
    let stale = Duration::from_millis(100);
    let tier = tier_with(Arc::new(InMemory::new()), 4, stale);
    let mut holding = lead(&tier, None).await;
    let mut watch = Watch::new(1);
    assert!(matches!(
        watch.look(&tier, &objects()).await.unwrap(),
        Seen::Alive(_)
    ));
    tokio::time::sleep(stale).await;
    holding.renew(&tier, LeaseState::Running).await.unwrap();
    assert!(
        matches!(watch.look(&tier, &objects()).await.unwrap(), Seen::Alive(_)),
        "a renewal restarts the wait"
    );
    tokio::time::sleep(stale).await;
    assert!(matches!(
        watch.look(&tier, &objects()).await.unwrap(),
        Seen::Stale
    ));
    assert!(matches!(
        lease::take(&tier, &objects(), 2).await.unwrap(),
        Claim::Lead(_)
    ));
    assert!(matches!(
        watch.look(&tier, &objects()).await.unwrap(),
        Seen::Superseded(2)
    ));
}

#[tokio::test]
async fn a_finished_generation_sends_the_claimant_back_to_its_copy() {
    let tier = tier_over(Arc::new(InMemory::new()), 4);
    let mut holding = lead(&tier, None).await;
    holding.renew(&tier, LeaseState::Done).await.unwrap();
    assert!(matches!(
        lease::claim(&tier, &objects(), None, false).await.unwrap(),
        Claim::Published
    ));
    assert_eq!(
        lead(&tier, None).await.generation(),
        2,
        "a dropped copy is fetched again"
    );
}

#[tokio::test]
async fn a_garbage_lease_is_followed_by_the_next_generation() {
    let tier = tier_over(Arc::new(InMemory::new()), 4);
    let at = objects().lease(1);
    tier.bucket
        .create(&at, Bytes::from_static(b"garbage"))
        .await
        .unwrap();
    assert_eq!(lead(&tier, None).await.generation(), 2);
}

#[tokio::test]
async fn an_ended_generation_is_not_followed() {
    let tier = tier_over(Arc::new(InMemory::new()), 4);
    let mut holding = lead(&tier, None).await;
    holding.renew(&tier, LeaseState::Abandoned).await.unwrap();
    let next = lead(&tier, None).await;
    assert_eq!(
        next.generation(),
        2,
        "an abandoned lease is followed by the next"
    );
}

#[tokio::test]
async fn a_manifest_is_created_once() {
    let tier = tier_over(Arc::new(InMemory::new()), 4);
    let at = objects().manifest();
    tier.bucket
        .create(&at, Bytes::from_static(b"one"))
        .await
        .unwrap();
    let again = tier.bucket.create(&at, Bytes::from_static(b"two")).await;
    assert!(matches!(again, Err(Refusal::Exists)));
    assert_eq!(tier.bucket.get(&at).await.unwrap(), "one");
}

/// An origin that serves `data` in chunks of `chunk` bytes.
fn serving(data: Bytes, chunk: usize) -> Arc<dyn Origin> {
    Arc::new(origin_fn(move |_key: String| {
        let data = data.clone();
        async move {
            let len = data.len() as u64;
            let chunks: Vec<Result<Bytes, std::io::Error>> = (0..data.len())
                .step_by(chunk)
                .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
                .collect();
            Ok::<_, std::io::Error>(
                Fetched::from_stream(futures::stream::iter(chunks)).with_len(len),
            )
        }
    }))
}

async fn read_all(origin: &dyn Origin) -> Vec<u8> {
    let fetched = origin
        .fetch("the key", FetchOptions::default())
        .await
        .unwrap();
    let chunks: Vec<_> = fetched.body.collect().await;
    chunks
        .into_iter()
        .flat_map(|chunk| chunk.unwrap())
        .collect()
}

fn through(tier: &Arc<Tier>, origin: Arc<dyn Origin>) -> Arc<dyn Origin> {
    Arc::new(crate::tier::TierOrigin::new(Arc::clone(tier), origin))
}

#[tokio::test]
async fn a_leader_publishes_parts_under_its_generation_and_a_manifest() {
    let store = Arc::new(InMemory::new());
    let tier = tier_over(Arc::clone(&store), 4);
    let data = Bytes::from_static(b"0123456789");
    assert_eq!(
        read_all(&*through(&tier, serving(data.clone(), 3))).await,
        data
    );
    let manifest = tier.bucket.get(&objects().manifest()).await.unwrap();
    let manifest = Manifest::decode(&manifest, &objects().id).unwrap();
    assert_eq!(
        (manifest.generation, manifest.len, manifest.parts.len()),
        (1, 10, 3)
    );
    for index in 0..3 {
        tier.bucket.head(&objects().part(1, index)).await.unwrap();
    }
    let lease = lease::read(&tier, &objects(), 1).await.unwrap();
    assert_eq!(lease.state, LeaseState::Done);
}

#[tokio::test]
async fn a_takeover_removes_the_parts_of_the_dead_generation() {
    let store = Arc::new(InMemory::new());
    let tier = tier_over(Arc::clone(&store), 4);
    // Generation 1 uploaded a part and died.
    let dead = lead(&tier, None).await;
    let place = crate::tier::records::PartPlace {
        key: &objects().id,
        generation: 1,
        index: 0,
    };
    let (part, _) = crate::tier::records::encode_part(place, b"0123");
    tier.bucket
        .put(
            &objects().part(1, 0),
            part,
            object_store::PutMode::Overwrite,
        )
        .await
        .unwrap();
    let Claim::Lead(next) = lease::take(&tier, &objects(), 2).await.unwrap() else {
        panic!("generation 2 was taken");
    };
    let data = Bytes::from_static(b"0123456789");
    let ask = crate::tier::lead::Ask {
        tier: Arc::clone(&tier),
        origin: serving(data.clone(), 4),
        key: "the key".into(),
        objects: objects(),
    };
    let fetched = crate::tier::lead::lead(&ask, *next, None, Default::default())
        .await
        .unwrap();
    let body: Vec<_> = fetched.body.collect().await;
    assert_eq!(
        body.into_iter()
            .flat_map(|c| c.unwrap())
            .collect::<Vec<u8>>(),
        data
    );
    drop(dead);
    // The upload's clean-up runs after the body ends; wait for it by its result.
    let gone = async {
        while tier.bucket.head(&objects().part(1, 0)).await.is_ok() {
            tokio::task::yield_now().await;
        }
    };
    tokio::time::timeout(Duration::from_secs(60), gone)
        .await
        .unwrap();
    assert!(tier.bucket.head(&objects().lease(1)).await.is_err());
    tier.bucket.head(&objects().part(2, 2)).await.unwrap();
}

#[tokio::test]
async fn a_corrupt_part_is_never_served_and_the_copy_is_dropped() {
    let store = Arc::new(InMemory::new());
    let tier = tier_over(Arc::clone(&store), 4);
    let data = Bytes::from_static(b"0123456789");
    read_all(&*through(&tier, serving(data.clone(), 10))).await;
    let at = objects().part(1, 1);
    let mut part = tier.bucket.get(&at).await.unwrap().to_vec();
    let last = part.len() - 1;
    part[last] ^= 0x20;
    tier.bucket
        .put(&at, Bytes::from(part), object_store::PutMode::Overwrite)
        .await
        .unwrap();
    let fetches = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let counted = {
        let fetches = Arc::clone(&fetches);
        let inner = serving(data.clone(), 10);
        Arc::new(origin_fn(move |key: String| {
            fetches.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let inner = Arc::clone(&inner);
            async move { inner.fetch(&key, FetchOptions::default()).await }
        })) as Arc<dyn Origin>
    };
    assert_eq!(read_all(&*through(&tier, counted)).await, data);
    assert_eq!(fetches.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(
        tier.counters
            .errors
            .load(std::sync::atomic::Ordering::SeqCst)
            >= 1
    );
    assert!(matches!(
        tier.bucket.get(&objects().manifest()).await,
        Err(Refusal::Missing)
    ));
}

fn body_of(
    data: &'static [u8],
    chunk: usize,
) -> futures::stream::BoxStream<'static, Result<Bytes, crate::error::BoxError>> {
    let data = Bytes::from_static(data);
    let chunks: Vec<_> = (0..data.len())
        .step_by(chunk)
        .map(|at| Ok(data.slice(at..(at + chunk).min(data.len()))))
        .collect();
    futures::stream::iter(chunks).boxed()
}

fn sent(parts: &[&[u8]], part_size: u64) -> crate::tier::tee::Sent {
    use sha2::Digest;
    crate::tier::tee::Sent {
        sums: parts
            .iter()
            .map(|p| hex::encode(sha2::Sha256::digest(p)))
            .collect(),
        part_size,
        len: parts.iter().map(|p| p.len() as u64).sum(),
    }
}

#[tokio::test]
async fn the_rest_of_a_body_from_its_start_is_checked_against_the_parts_returned() {
    use crate::tier::tee::rest_of;
    let returned = sent(&[b"0123", b"4567"], 4);
    let rest: Vec<_> = rest_of("k", body_of(b"0123456789", 3), 0, returned.clone())
        .collect()
        .await;
    let rest: Vec<u8> = rest.into_iter().flat_map(|c| c.unwrap()).collect();
    assert_eq!(rest, b"89");
    let ranged: Vec<_> = rest_of("k", body_of(b"89", 3), 8, returned.clone())
        .collect()
        .await;
    assert_eq!(ranged.len(), 1);
    let changed: Vec<_> = rest_of("k", body_of(b"0123x56789", 3), 0, returned.clone())
        .collect()
        .await;
    let error = changed.last().unwrap().as_ref().unwrap_err();
    assert!(
        matches!(
            error.downcast_ref(),
            Some(crate::Error::Changed { offset: 4, .. })
        ),
        "{error}"
    );
    let short: Vec<_> = rest_of("k", body_of(b"0123", 3), 0, returned)
        .collect()
        .await;
    assert!(
        short.last().unwrap().is_err(),
        "a body shorter than what was returned"
    );
}

#[tokio::test]
async fn part_of_a_blob_is_asked_of_the_origin_and_never_of_the_tier() {
    let store = Arc::new(InMemory::new());
    let tier = tier_over(Arc::clone(&store), 4);
    let origin = through(&tier, serving(Bytes::from_static(b"0123456789"), 4));
    let options = FetchOptions {
        offset: 2,
        end: Some(5),
        ..FetchOptions::default()
    };
    let fetched = origin.fetch("the key", options).await.unwrap();
    let body: Vec<_> = fetched.body.collect().await;
    let body: Vec<u8> = body.into_iter().flat_map(|c| c.unwrap()).collect();
    // This origin ignores ranges: its whole body is its answer, the tier's none.
    assert_eq!(body, b"0123456789");
    let listed = tier.bucket.list(&Path::from("fleet")).await.unwrap();
    assert!(
        listed.is_empty(),
        "a ranged fetch wrote to the tier: {listed:?}"
    );
    let misses = tier
        .counters
        .misses
        .load(std::sync::atomic::Ordering::SeqCst);
    assert_eq!(misses, 0, "a ranged fetch looked in the tier");
}
