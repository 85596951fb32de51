//! A range of a key from the tier: read from the parts of a published copy that cover
//! it, each checked against the copy's manifest, so a slice or a range read on one
//! host is served from the parts another host uploaded.
//!
//! A range goes to the origin instead when the tier has no fresh copy, or the copy is
//! of another version than the one asked for (`If-Match` / `If-Range`), or the range
//! starts past the copy's end (the origin says how). A part that does not check out or
//! cannot be read sends the rest of the range to the origin, under the copy's
//! validator (and a copy that lost a part or holds a bad one is dropped); an origin
//! that answers with another version fails the read with [`Error::Changed`], as a
//! resumed fill does.

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};

use crate::error::{BoxError, Error};
use crate::origin::{FetchOptions, Fetched};
use crate::stats::add;
use crate::tier::bucket::Refusal;
use crate::tier::lead::{Ask, with_expiry};
use crate::tier::origin::{Copy, copy_of};
use crate::tier::records::{Manifest, PartPlace, decode_part};

type Body = BoxStream<'static, Result<Bytes, BoxError>>;

/// The answer for the range `options` asks of `ask`'s key.
pub(crate) async fn open(ask: Ask, options: FetchOptions) -> Result<Fetched, BoxError> {
    let manifest = match copy_of(&ask).await {
        Ok(Copy::Fresh(manifest)) => *manifest,
        Ok(_) => return ask.origin(options).await,
        Err(e) => {
            ask.tier
                .trouble("looking for a copy to read a range of", &e);
            return ask.origin(options).await;
        }
    };
    let answer = manifest.answer.clone();
    let other_version = options
        .if_validator
        .as_ref()
        .is_some_and(|asked| answer.validator.as_ref() != Some(asked));
    if other_version || options.offset >= manifest.len {
        return ask.origin(options).await;
    }
    add(&ask.tier.counters.hits, 1);
    let (start, len) = (options.offset, manifest.len);
    let end = options.end.map_or(len, |end| end.min(len));
    let tier = std::sync::Arc::clone(&ask.tier);
    let reading = Reading {
        ask,
        manifest,
        at: start,
        end,
        origin: None,
    };
    let body = stream::unfold(reading, |mut reading| async move {
        let item = reading.next().await?;
        Some((item, reading))
    });
    let mut fetched = Fetched::from_stream(body);
    fetched.offset = start;
    fetched.len = Some(len);
    fetched.validator = answer.validator;
    fetched.content_type = answer.content_type;
    Ok(with_expiry(fetched, &tier, answer.expires_ms))
}

/// A range read from a copy's parts, then from the origin if a part fails it.
struct Reading {
    ask: Ask,
    manifest: Manifest,
    /// The next byte to return.
    at: u64,
    end: u64,
    origin: Option<Body>,
}

impl Reading {
    async fn next(&mut self) -> Option<Result<Bytes, BoxError>> {
        if let Some(body) = &mut self.origin {
            return body.next().await;
        }
        if self.at >= self.end {
            return None;
        }
        match part(&self.ask, &self.manifest, self.at, self.end).await {
            Ok(bytes) => {
                self.at += bytes.len() as u64;
                add(&self.ask.tier.counters.bytes_read, bytes.len() as u64);
                Some(Ok(bytes))
            }
            Err((why, damaged)) => {
                let tier = &self.ask.tier;
                tier.trouble("reading a range of a copy", &why);
                if damaged && !tier.read_only {
                    let _ = tier
                        .drop_copy(&self.ask.objects, self.manifest.generation)
                        .await;
                }
                match rest_from_origin(&self.ask, &self.manifest, self.at, self.end).await {
                    Ok(body) => self.origin.insert(body).next().await,
                    Err(e) => {
                        self.at = self.end;
                        Some(Err(e))
                    }
                }
            }
        }
    }
}

/// The bytes of `manifest`'s copy from `at` to the end of its part or `end`, checked
/// against the manifest; why not, and whether the copy is damaged (a part missing or
/// not checking out, rather than a store that failed).
async fn part(ask: &Ask, manifest: &Manifest, at: u64, end: u64) -> Result<Bytes, (String, bool)> {
    let index = at / manifest.part_size;
    let first = index * manifest.part_size;
    let len = manifest.part_size.min(manifest.len - first);
    let damaged = |why: String| (why, true);
    let want = manifest
        .parts
        .get(index as usize)
        .ok_or_else(|| damaged(format!("the manifest lists no part {index}")))?;
    let at_part = ask.objects.part(manifest.generation, index);
    let object = match ask.tier.bucket.get(&at_part).await {
        Ok(object) => object,
        Err(Refusal::Missing) => return Err(damaged(format!("the copy lost part {index}"))),
        Err(e) => return Err((e.to_string(), false)),
    };
    let place = PartPlace {
        key: &ask.objects.id,
        generation: manifest.generation,
        index,
    };
    match decode_part(&object, place) {
        Some((data, sum)) if sum == *want && data.len() as u64 == len => {
            let upto = end.min(first + len) - first;
            Ok(data.slice((at - first) as usize..upto as usize))
        }
        _ => Err(damaged(format!(
            "part {index} of the copy does not check out"
        ))),
    }
}

/// The bytes `at..end` from the origin, of the version of `manifest`'s copy.
async fn rest_from_origin(
    ask: &Ask,
    manifest: &Manifest,
    at: u64,
    end: u64,
) -> Result<Body, BoxError> {
    let validator = manifest.answer.validator.clone();
    let options = FetchOptions {
        offset: at,
        end: Some(end),
        if_validator: validator.clone(),
        ..FetchOptions::default()
    };
    let fetched = ask.origin(options).await?;
    if fetched.validator != validator || fetched.offset != at {
        let key = ask.key.clone();
        return Err(Error::Changed { key, offset: at }.into());
    }
    Ok(fetched.body)
}
