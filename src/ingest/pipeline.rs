//! The pure stages between a PUBLISH and its store record: size limit, subscription
//! lookup, decode, policy, route, render. No I/O, the clock is an argument, so every
//! branch is unit-tested here. The result is always a record: an event with its
//! deliveries, or a reject; nothing a message contains can make this panic or fail.

use bytes::Bytes;
use jiff::Timestamp;
use sha2::{Digest, Sha256};

use crate::config::{Approval, Config, EventRule, Subscription};
use crate::event::{self, Event, Format, Reject, RejectKind};
use crate::policy::{self, Audience};
use crate::render::{Rendered, Renderer};
use crate::route::{self, Planned};
use crate::store::{IngestRecord, NewDelivery, NewEvent, NewReject};

/// The subscription whose filter matches `topic` (first match wins).
pub fn subscription_for<'a>(subs: &'a [Subscription], topic: &str) -> Option<&'a Subscription> {
    subs.iter().find(|s| super::topic::matches(topic, &s.topic))
}

/// Turn one received message into what the store records for it.
pub fn prepare(config: &Config, renderer: &Renderer, topic: &str, payload: &Bytes, now: Timestamp) -> IngestRecord {
    let format = subscription_for(&config.mqtt.subscriptions, topic).map(|s| s.format);
    // Nothing here should panic; if something does, the message is recorded as a reject
    // instead of taking the ingest task (and every message after it) down.
    let accepted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        accept(config, renderer, format, topic, payload, now)
    }))
    .unwrap_or_else(|panic| {
        let what = crate::supervise::message(panic.as_ref());
        Err(Reject::new(
            RejectKind::Internal,
            format!("internal error while decoding (a bug; please report it): {what}"),
        ))
    });
    match accepted {
        Ok(event) => IngestRecord::Event(Box::new(event)),
        Err(reject) => IngestRecord::Reject(NewReject {
            received_at: now.as_millisecond(),
            topic: topic.to_owned(),
            format: format.map(Format::as_str),
            kind: reject.kind.as_str(),
            reason: reject.reason,
            payload: payload.clone(),
        }),
    }
}

fn accept(
    config: &Config,
    renderer: &Renderer,
    format: Option<Format>,
    topic: &str,
    payload: &Bytes,
    now: Timestamp,
) -> Result<NewEvent, Reject> {
    let limit = config.mqtt.max_payload_bytes;
    if payload.len() > limit {
        return Err(Reject::new(
            RejectKind::TooLarge,
            format!("payload is {} bytes; the limit is {limit}", payload.len()),
        ));
    }
    let format = format
        .ok_or_else(|| Reject::new(RejectKind::NoSubscription, format!("no subscription matches topic {topic:?}")))?;
    let event = event::decode(format, payload)?;
    let rule = policy::rule_for(&event, &config.events)?;
    let assessment = policy::assess(&event, payload, rule, now, now);
    let deliveries = render_all(config, renderer, &event, rule, assessment.audience)
        .into_iter()
        .map(|(p, rendered)| {
            let language = p.language.unwrap_or_default();
            NewDelivery {
                idem_key: idempotency_key(&assessment.dedupe_key, &p.channel, p.kind.as_str(), &language),
                channel: p.channel,
                kind: p.kind,
                language,
                priority: p.priority,
                text: rendered.text,
                parts: rendered.parts,
                render_note: rendered.error,
            }
        })
        .collect();
    let event_json = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
    Ok(NewEvent {
        dedupe_key: assessment.dedupe_key,
        incident_key: assessment.incident_key,
        revision: event.revision,
        format: format.as_str(),
        event_type: event.event_type.clone(),
        msg_type: event.msg_type.as_str(),
        status: event.status.as_str(),
        priority: rule.priority,
        disposition: assessment.disposition.as_str(),
        topic: topic.to_owned(),
        payload: payload.clone(),
        payload_sha256: policy::sha256_hex(payload),
        event_json,
        headline: event.headline.clone(),
        sent_at: event.sent.map(Timestamp::as_millisecond),
        expires_at: event.expires.map(Timestamp::as_millisecond),
        received_at: now.as_millisecond(),
        hold: rule.approval == Approval::Hold,
        // Planned even when not delivered: the store decides what is posted, and an event
        // that is not (expired, stale) still supersedes what of its incident is queued.
        deliveries,
    })
}

/// Each delivery `event` gets, with its rendered text: what the store records and what
/// `bullhorn render` shows.
pub fn render_all(
    config: &Config,
    renderer: &Renderer,
    event: &Event,
    rule: &EventRule,
    audience: Audience,
) -> Vec<(Planned, Rendered)> {
    let planned = route::plan(event, rule, audience, &config.channels, &config.agency.languages);
    // The template context is built once per language, not once per channel.
    let mut prepared: Vec<(Option<String>, crate::render::Prepared<'_>)> = Vec::new();
    let mut out = Vec::with_capacity(planned.len());
    for p in planned {
        let Some(channel) = config.channels.get(&p.channel) else { continue };
        let i = match prepared.iter().position(|(l, _)| *l == p.language) {
            Some(i) => i,
            None => {
                prepared.push((p.language.clone(), renderer.prepare(rule, event, p.language.as_deref())));
                prepared.len() - 1
            }
        };
        let rendered = prepared[i].1.render(&crate::render::Target::channel(channel), p.kind);
        out.push((p, rendered));
    }
    out
}

/// A key that is the same for a delivery however often it is retried, or re-created from
/// a redelivered message: `webhook-id`, Mastodon `Idempotency-Key`, a Bluesky rkey seed.
pub fn idempotency_key(dedupe_key: &str, channel: &str, kind: &str, language: &str) -> String {
    let mut h = Sha256::new();
    for part in [dedupe_key, channel, kind, language] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut s = String::from("bh_");
    for b in &digest[..16] {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

#[cfg(test)]
mod tests;
