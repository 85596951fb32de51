//! Reading a key's parts from the tier: a published copy (every part checked against
//! its manifest), or another host's generation as its parts land (each checked on
//! its own, and against the manifest's sum for it once the manifest is there). On
//! any trouble the read goes on from the origin after the parts it already returned;
//! a read whose generation is taken over, or whose holder goes stale, goes on with
//! the next generation.

use std::time::Duration;

use tokio::time::Instant;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{BoxError, Error};
use crate::origin::{FetchOptions, Fetched};
use crate::stats::add;
use crate::tier::bucket::Refusal;
use crate::tier::lead::{Ask, lead, with_expiry};
use crate::tier::lease::{self, Claim, Seen, Watch};
use crate::tier::records::{Answer, Lease, Manifest, PartPlace, decode_part};
use crate::tier::tee::{Sent, rest_of};

/// The first and the longest pause between two looks at a followed generation.
pub(crate) const FIRST_WAIT: Duration = Duration::from_millis(5);
pub(crate) const LONGEST_WAIT: Duration = Duration::from_millis(50);
/// How often a follower waiting for a part also looks at the manifest and the lease
/// (each poll in between is one GET of the part it waits for).
const LOOK_EVERY: Duration = Duration::from_millis(250);

type Body = BoxStream<'static, Result<Bytes, BoxError>>;

enum Source {
    /// A published copy.
    Copy(Manifest),
    /// Another host's generation in progress.
    Follow(Watch),
    /// The origin, after the parts already returned.
    Origin(Body),
    Done,
}

struct Reading {
    ask: Ask,
    source: Source,
    /// The next part to read. Below `sent.sums.len()` (after a change of
    /// generation) parts are checked against those returned, not returned again.
    index: u64,
    sent: Sent,
    validator: Option<String>,
    /// The blob's length, when the origin gave it.
    len: Option<u64>,
    wait: Duration,
    /// When the manifest and the lease were last looked at.
    looked: Option<Instant>,
}

/// The answer for a published copy.
pub(crate) fn copy(ask: Ask, manifest: Manifest) -> Fetched {
    let mut answer = manifest.answer.clone();
    answer.len = Some(manifest.len);
    let sha256 = hex::decode(&manifest.sha256)
        .ok()
        .and_then(|sum| <[u8; 32]>::try_from(sum).ok());
    let part_size = manifest.part_size;
    let fetched = answer_with(ask, Source::Copy(manifest), part_size, &answer);
    match sha256 {
        Some(sum) => fetched.with_sha256(sum),
        None => fetched,
    }
}

/// The answer for another host's generation, once its holder has the origin's answer.
pub(crate) fn follow(ask: Ask, watch: Watch, lease: &Lease) -> Fetched {
    let answer = lease.answer.clone().unwrap_or_default();
    answer_with(ask, Source::Follow(watch), lease.part_size, &answer)
}

fn answer_with(ask: Ask, source: Source, part_size: u64, answer: &Answer) -> Fetched {
    let tier = std::sync::Arc::clone(&ask.tier);
    let reading = Reading {
        ask,
        source,
        index: 0,
        sent: Sent {
            part_size,
            ..Sent::default()
        },
        validator: answer.validator.clone(),
        len: answer.len,
        wait: FIRST_WAIT,
        looked: None,
    };
    let body = stream::unfold(reading, |mut reading| async move {
        let item = reading.next().await?;
        Some((item, reading))
    });
    let mut fetched = Fetched::from_stream(body);
    fetched.len = answer.len;
    fetched.validator = answer.validator.clone();
    fetched.content_type = answer.content_type.clone();
    with_expiry(fetched, &tier, answer.expires_ms)
}

/// What one step of a read found.
enum Step {
    /// Return these bytes.
    Bytes(Bytes),
    /// Nothing to return yet: step again.
    Again,
    /// The read ended, whole.
    End,
    /// The tier failed this read: go on from the origin (dropping the published copy
    /// of generation `drop`, which did not check out).
    Trouble { why: String, drop: Option<u64> },
    /// The bytes differ from those already returned.
    Failed(BoxError),
}

impl Reading {
    async fn next(&mut self) -> Option<Result<Bytes, BoxError>> {
        loop {
            let step = match &mut self.source {
                Source::Done => return None,
                Source::Origin(body) => return body.next().await,
                Source::Copy(_) => self.copy_step().await,
                Source::Follow(_) => self.follow_step().await,
            };
            match step {
                Step::Bytes(bytes) => return Some(Ok(bytes)),
                Step::Again => {}
                Step::End => {
                    self.source = Source::Done;
                    return None;
                }
                Step::Trouble { why, drop } => {
                    if let Err(e) = self.go_to_origin(&why, drop).await {
                        self.source = Source::Done;
                        return Some(Err(e));
                    }
                }
                Step::Failed(e) => {
                    self.source = Source::Done;
                    return Some(Err(e));
                }
            }
        }
    }

    fn place(&self, generation: u64) -> PartPlace<'_> {
        PartPlace {
            key: &self.ask.objects.id,
            generation,
            index: self.index,
        }
    }

    async fn copy_step(&mut self) -> Step {
        let Source::Copy(manifest) = &self.source else {
            return Step::Again;
        };
        let (generation, parts) = (manifest.generation, manifest.parts.len() as u64);
        if self.index == parts {
            // Every part matched the manifest's sum for it, so the whole is the
            // manifest's blob (its SHA-256 is the local fill's to check, for a copy
            // read from its start).
            if self.sent.len == manifest.len {
                return Step::End;
            }
            return trouble(
                "the copy's length differs from its manifest",
                Some(generation),
            );
        }
        let want = manifest.parts[self.index as usize].clone();
        let len = manifest
            .part_size
            .min(manifest.len - self.index * manifest.part_size);
        let at = self.ask.objects.part(generation, self.index);
        match self.ask.tier.bucket.get(&at).await {
            Ok(object) => match decode_part(&object, self.place(generation)) {
                Some((data, sum)) if sum == want && data.len() as u64 == len => {
                    self.accept(data, sum)
                }
                _ => trouble(
                    &format!("part {} of the copy does not check out", self.index),
                    Some(generation),
                ),
            },
            Err(Refusal::Missing) => trouble("the copy lost a part", Some(generation)),
            Err(e) => trouble(&e.to_string(), None),
        }
    }

    async fn follow_step(&mut self) -> Step {
        let Source::Follow(watch) = &self.source else {
            return Step::Again;
        };
        let generation = watch.generation;
        let at = self.ask.objects.part(generation, self.index);
        match self.ask.tier.bucket.get(&at).await {
            Ok(object) => match decode_part(&object, self.place(generation)) {
                Some((data, sum)) if data.len() as u64 <= self.sent.part_size => {
                    if let Source::Follow(watch) = &mut self.source {
                        watch.progressed();
                    }
                    self.wait = FIRST_WAIT;
                    self.accept(data, sum)
                }
                _ => trouble(
                    &format!(
                        "part {} of generation {generation} does not check out",
                        self.index
                    ),
                    None,
                ),
            },
            Err(Refusal::Missing) => self.no_part_yet().await,
            Err(e) => trouble(&e.to_string(), None),
        }
    }

    /// The followed generation has no part `index` yet: it may have published, ended,
    /// been taken over, or gone stale.
    async fn no_part_yet(&mut self) -> Step {
        // Every part is in: only the manifest is awaited.
        let complete = self.len.is_some_and(|len| self.sent.len >= len);
        if !complete && self.looked.is_some_and(|at| at.elapsed() < LOOK_EVERY) {
            return self.pause().await;
        }
        self.looked = Some(Instant::now());
        let ask = self.ask.clone();
        match ask.tier.bucket.get(&ask.objects.manifest()).await {
            Ok(bytes) => match Manifest::decode(&bytes, &ask.objects.id) {
                Some(manifest) if manifest.generation >= self.following() => {
                    return self.adopt(manifest);
                }
                Some(_) => {}
                None => return trouble("the manifest is garbage", None),
            },
            Err(Refusal::Missing) => {}
            Err(e) => return trouble(&e.to_string(), None),
        }
        let Source::Follow(watch) = &mut self.source else {
            return Step::Again;
        };
        match watch.look(&ask.tier, &ask.objects).await {
            Ok(Seen::Alive(_)) => self.pause().await,
            Ok(Seen::Superseded(next)) => self.switch(next),
            Ok(Seen::Stale) => {
                let next = watch.generation + 1;
                self.take_over(next).await
            }
            // Given up, or published and since dropped (the manifest was read first).
            Ok(Seen::Ended(lease)) => {
                let next = lease.generation + 1;
                self.take_over(next).await
            }
            Err(e) => trouble(&e.to_string(), None),
        }
    }

    /// Waits a little longer each time, before the next look for the part.
    async fn pause(&mut self) -> Step {
        tokio::time::sleep(self.wait).await;
        self.wait = (self.wait * 2).min(LONGEST_WAIT);
        Step::Again
    }

    fn following(&self) -> u64 {
        match &self.source {
            Source::Follow(watch) => watch.generation,
            _ => 0,
        }
    }

    /// Goes on with a published copy, if its first parts are those already returned.
    fn adopt(&mut self, manifest: Manifest) -> Step {
        let returned = self.sent.sums.len();
        let same = manifest.part_size == self.sent.part_size
            && manifest.parts.len() >= returned
            && manifest.parts[..returned] == self.sent.sums[..];
        if !same {
            return trouble("the published copy differs from the parts followed", None);
        }
        self.index = returned as u64;
        self.source = Source::Copy(manifest);
        Step::Again
    }

    /// Follows `generation` from its first part, checking the parts already returned.
    fn switch(&mut self, generation: u64) -> Step {
        self.index = 0;
        self.source = Source::Follow(Watch::new(generation));
        Step::Again
    }

    /// Tries to take the lease of `generation` and fetch from the origin.
    async fn take_over(&mut self, generation: u64) -> Step {
        let ask = self.ask.clone();
        match lease::take(&ask.tier, &ask.objects, generation).await {
            Ok(Claim::Lead(holding)) => match lead(&ask, *holding, None, self.sent.clone()).await {
                // Dropping a body of another version drops its upload too (the lease
                // is given up, and the next reader leads with the new version).
                Ok(fetched) => match self.same_version(&fetched) {
                    Ok(()) => {
                        add(&ask.tier.counters.takeovers, 1);
                        self.source = Source::Origin(fetched.body);
                        Step::Again
                    }
                    Err(e) => Step::Failed(e),
                },
                Err(e) => Step::Failed(e),
            },
            Ok(Claim::Follow(generation)) => self.switch(generation),
            Ok(Claim::Published) => Step::Again,
            Err(e) => trouble(&e.to_string(), None),
        }
    }

    /// Takes part `index`, whose data has the checksum `sum`: returns it, or checks it
    /// against the part returned before.
    fn accept(&mut self, data: Bytes, sum: String) -> Step {
        let index = self.index as usize;
        self.index += 1;
        if let Some(returned) = self.sent.sums.get(index) {
            if *returned != sum {
                let offset = index as u64 * self.sent.part_size;
                let key = self.ask.key.clone();
                return Step::Failed(Error::Changed { key, offset }.into());
            }
            return Step::Again;
        }
        self.sent.sums.push(sum);
        self.sent.len += data.len() as u64;
        add(&self.ask.tier.counters.bytes_read, data.len() as u64);
        Step::Bytes(data)
    }

    /// Checks that the origin's answer is of the version this read announced to the
    /// cache (its validator, length and digest went into the answer already): a new
    /// version ends the read with [`Error::ObjectChanged`] rather than be stored
    /// under the old one's validator.
    fn same_version(&self, fetched: &Fetched) -> Result<(), BoxError> {
        match (&self.validator, &fetched.validator) {
            (Some(was), Some(now)) if was != now => Err(Error::ObjectChanged {
                url: self.ask.key.clone(),
                validator: was.clone(),
                now: Some(now.clone()),
            }
            .into()),
            _ => Ok(()),
        }
    }

    /// Goes on from the origin after the parts already returned.
    async fn go_to_origin(&mut self, why: &str, drop: Option<u64>) -> Result<(), BoxError> {
        let ask = self.ask.clone();
        ask.tier.trouble("reading from the tier", &why);
        if let Some(generation) = drop.filter(|_| !ask.tier.read_only) {
            let _ = ask.tier.drop_copy(&ask.objects, generation).await;
        }
        let mut options = FetchOptions::default();
        if self.sent.len > 0 {
            options.offset = self.sent.len;
            options.if_validator = self.validator.clone();
        }
        let fetched = ask.origin(options).await?;
        self.same_version(&fetched)?;
        self.source = Source::Origin(rest_of(
            &ask.key,
            fetched.body,
            fetched.offset,
            self.sent.clone(),
        ));
        Ok(())
    }
}

fn trouble(why: &str, drop: Option<u64>) -> Step {
    Step::Trouble {
        why: why.to_owned(),
        drop,
    }
}
