//! The pure stages between a PUBLISH and its store record: size limit, subscription
//! lookup, decode, placing the message in its incident, policy, route, render. No I/O of
//! its own (earlier messages are looked up through [`Known`], which the ingest task backs
//! with the store and what is ahead of the message in the writer's queue), the clock is
//! an argument, so every branch is unit-tested here. The result is always a record: an
//! event with its deliveries, or a reject; nothing a message contains can make this
//! panic or fail.

pub mod signature;
pub mod topic;

use bytes::Bytes;
use jiff::Timestamp;

use crate::config::{Approval, Config, EventRule, Subscription};
use crate::event::{self, Event, Format, MsgType, Reject, RejectKind};
use crate::lifecycle::{Audience, DeliveryKind, Disposition, Known, KnownIncident, Snapshot, StatusClass, Trust};
use crate::policy;
use crate::render::{Rendered, Renderer};
use crate::route::{self, Planned};
use crate::store::{IngestRecord, NewDelivery, NewEvent, NewLifecycle, NewReject};

/// The subscription a message on `topic` is taken under. Where several filters match,
/// one that requires a signature wins (the first such): listing an unsigned `cad/#`
/// before a signed `cad/secure/+` must not let unsigned messages through the signed one.
pub fn subscription_for<'a>(subs: &'a [Subscription], topic: &str) -> Option<&'a Subscription> {
    let mut matching = subs.iter().filter(|s| topic::matches(topic, &s.topic));
    let first = matching.next()?;
    if first.signing_key.is_some() {
        return Some(first);
    }
    Some(matching.find(|s| s.signing_key.is_some()).unwrap_or(first))
}

/// Turn one received message into what the store records for it.
pub fn record(
    config: &Config,
    renderer: &Renderer,
    topic: &str,
    payload: &Bytes,
    now: Timestamp,
    known: &dyn Known,
) -> IngestRecord {
    record_with(config, renderer, Received { topic, payload, user_properties: &[] }, now, known)
}

/// A message as the broker delivered it.
#[derive(Debug, Clone, Copy)]
pub struct Received<'a> {
    pub topic: &'a str,
    pub payload: &'a Bytes,
    /// MQTT 5 user properties (a signature).
    pub user_properties: &'a [(String, String)],
}

/// [`record`] for a message with its MQTT 5 user properties.
pub fn record_with(
    config: &Config,
    renderer: &Renderer,
    msg: Received<'_>,
    now: Timestamp,
    known: &dyn Known,
) -> IngestRecord {
    let Received { topic, payload, .. } = msg;
    let sub = subscription_for(&config.mqtt.subscriptions, topic);
    let format = sub.map(|s| s.format);
    // Nothing here should panic; if something does, the message is recorded as a reject
    // instead of taking the ingest task (and every message after it) down.
    let accepted =
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| accept(config, renderer, sub, msg, now, known)))
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
    sub: Option<&Subscription>,
    msg: Received<'_>,
    now: Timestamp,
    known: &dyn Known,
) -> Result<NewEvent, Reject> {
    let Received { topic, payload, user_properties } = msg;
    let limit = config.mqtt.max_payload_bytes;
    if payload.len() > limit {
        return Err(Reject::new(
            RejectKind::TooLarge,
            format!("payload is {} bytes; the limit is {limit}", payload.len()),
        ));
    }
    let sub =
        sub.ok_or_else(|| Reject::new(RejectKind::NoSubscription, format!("no subscription matches topic {topic:?}")))?;
    // A signed subscription: only the verified event goes on (out of its envelope).
    let verified;
    let (payload, trust) = match &sub.signing_key {
        Some(key) => {
            verified = signature::verify(key, payload, user_properties)?;
            (&verified, Trust::Signed)
        }
        None => (payload, Trust::Unsigned),
    };
    let mut event = event::decode(sub.format, payload, &sub.options)?;
    if event.ignored.is_some() {
        let origin = Origin { format: sub.format, topic, payload, trust, now };
        let incident_key = policy::incident_key(&event);
        return Ok(recorded(event, &origin, incident_key, Disposition::Ignored));
    }
    let mut place = place(&event, trust, known);
    // The incident itself is read only when the rule may come from it: a follow-up, or a
    // message whose own type has no rule (most messages are new alerts of a known type).
    let follows = matches!(event.msg_type, MsgType::Update | MsgType::Cancel) || event.lifecycle.snapshot;
    if follows || !config.events.contains_key(&event.event_type) {
        let class = StatusClass::of(event.status);
        place.incident = known.incident(&place.incident_key).filter(|i| i.class == class);
    }
    // A CAP Cancel without `info`: what it cancels gives its type and texts.
    if event.event_type.is_empty()
        && let Some(original) = place.original.as_deref().and_then(|j| serde_json::from_str::<Event>(j).ok())
    {
        take_texts(&mut event, original);
    }
    let (rule, event_type) = rule_for(&event, place.incident.as_ref(), &config.events)?;
    event.event_type = event_type;
    let Some(rule) = rule else {
        // A cancellation of an incident of a type nobody configured (or of one never seen,
        // with no texts): nothing to post, but recorded as the incident's end, so its
        // alert is not posted should it still arrive.
        let origin = Origin { format: sub.format, topic, payload, trust, now };
        return Ok(recorded(event, &origin, place.incident_key, Disposition::Deliver));
    };
    // An image without a description gets the template's (`alt.txt`), so every channel
    // posts it with alt text; one that still has none is not posted on public channels.
    if event.media.iter().any(|m| m.alt.as_deref().is_none_or(|a| a.trim().is_empty()))
        && let Some(Ok(alt)) = renderer.alt_text(rule, &event)
    {
        for m in event.media.iter_mut().filter(|m| m.alt.as_deref().is_none_or(|a| a.trim().is_empty())) {
            m.alt = Some(alt.clone());
        }
    }
    let assessment = policy::assess(&event, payload, rule, now, now);
    let snapshot = event
        .lifecycle
        .snapshot
        .then(|| Snapshot { digest: public_digest(&event, rule), closed: event.lifecycle.closed });
    // Each kind the store may decide the event is, rendered now (the store decides in the
    // same transaction that records it).
    let kinds: Vec<DeliveryKind> = match (&snapshot, event.msg_type) {
        (Some(s), _) if s.closed => {
            if rule.post_on_close {
                vec![DeliveryKind::Cancel]
            } else {
                Vec::new()
            }
        }
        (Some(_), _) => vec![DeliveryKind::Post, DeliveryKind::Update],
        (None, MsgType::Update) => vec![DeliveryKind::Update, DeliveryKind::Post],
        (None, m) => vec![DeliveryKind::for_msg_type(m)],
    };
    let mut deliveries = Vec::new();
    for kind in kinds {
        for (p, rendered) in render_all_as(config, renderer, &event, rule, assessment.audience, kind) {
            let language = p.language.unwrap_or_default();
            let d = NewDelivery::planned(
                &assessment.dedupe_key,
                &p.channel,
                p.kind,
                &language,
                assessment.audience,
                p.priority,
            );
            deliveries.push(d.rendered(rendered));
        }
    }
    let event_json = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
    Ok(NewEvent {
        dedupe_key: assessment.dedupe_key,
        incident_key: place.incident_key,
        ident: event.id.clone(),
        revision: event.revision,
        format: sub.format.as_str(),
        event_type: event.event_type.clone(),
        msg_type: event.msg_type,
        status: event.status,
        trust,
        priority: rule.priority,
        disposition: assessment.disposition,
        topic: topic.to_owned(),
        payload: payload.clone(),
        payload_sha256: crate::digest::sha256_hex(payload),
        event_json,
        headline: event.headline.clone(),
        sent_at: event.sent.map(Timestamp::as_millisecond),
        expires_at: event.expires.map(Timestamp::as_millisecond),
        received_at: now.as_millisecond(),
        hold: rule.approval_for(sub.format) == Approval::Hold,
        // Planned even when not delivered: the store decides what is posted, and an event
        // that is not (expired, stale) still supersedes what of its incident is queued.
        deliveries,
        lifecycle: NewLifecycle {
            message_key: event.lifecycle.message_key.clone(),
            references: event.lifecycle.references.clone(),
            silent: snapshot.as_ref().is_some_and(|s| s.closed) && !rule.post_on_close,
            snapshot,
        },
    })
}

/// Where a message belongs.
struct Place {
    incident_key: String,
    /// The incident, if it was opened (committed, or ahead in the writer's queue).
    incident: Option<KnownIncident>,
    /// The normalised event of the first message it names (a text-less cancel's texts).
    original: Option<String>,
}

/// The incident `event` belongs to: its own key; for a CAP message the incident of the
/// first message it names, or else of a message that names it (it arrived late). Only an
/// incident of its own status class is joined, and a late message joins the one naming
/// it only if that one is at least as trusted, so neither a drill nor an unsigned
/// message can draw a real, signed alert into its incident.
fn place(event: &Event, trust: Trust, known: &dyn Known) -> Place {
    let class = StatusClass::of(event.status);
    let mut incident_key = policy::incident_key(event);
    let mut original = None;
    let named = event.lifecycle.references.iter().find_map(|r| known.message(r, class));
    if let Some(m) = named {
        incident_key = m.incident_key;
        original = Some(m.event_json);
    } else if let Some(key) = &event.lifecycle.message_key
        && let Some(m) = known.referencing(key, class, trust)
    {
        incident_key = m.incident_key;
    }
    Place { incident_key, incident: None, original }
}

/// The rule an event follows, and the type it is recorded with. A follow-up (an update,
/// a cancel, a CAD snapshot) of a known incident takes the incident's type and rule,
/// whatever its own code says; an alert keeps its own type when it has a rule. `None`:
/// no rule applies to a cancellation (recorded, nothing posted). An alert or update with
/// no rule is rejected with the known types.
fn rule_for<'a>(
    event: &Event,
    incident: Option<&KnownIncident>,
    rules: &'a std::collections::BTreeMap<String, EventRule>,
) -> Result<(Option<&'a EventRule>, String), Reject> {
    let follows = matches!(event.msg_type, MsgType::Update | MsgType::Cancel) || event.lifecycle.snapshot;
    let of_incident = incident.and_then(|i| rules.get(&i.event_type).map(|r| (r, i.event_type.clone())));
    let own = policy::rule_for(event, rules).map(|r| (r, event.event_type.clone()));
    let cancels = event.msg_type == MsgType::Cancel || event.lifecycle.closed;
    match (follows, of_incident, own) {
        (true, Some((r, t)), _) | (false, _, Ok((r, t))) | (true, None, Ok((r, t))) => Ok((Some(r), t)),
        (false, Some((r, t)), Err(_)) => Ok((Some(r), t)),
        (_, None, Err(_)) if cancels => Ok((None, event.event_type.clone())),
        (_, None, Err(reject)) => Err(reject),
    }
}

/// Where a message came from and when.
struct Origin<'a> {
    format: Format,
    topic: &'a str,
    payload: &'a Bytes,
    trust: Trust,
    now: Timestamp,
}

/// An event recorded without being rendered: one with nothing to post (a CAP Ack, an
/// EIDO without an incident: `Ignored`), or a cancellation no rule applies to, recorded
/// as its incident's end (`Deliver`).
fn recorded(event: Event, origin: &Origin<'_>, incident_key: String, disposition: Disposition) -> NewEvent {
    let Origin { format, topic, payload, trust, now } = *origin;
    let event_json = serde_json::to_string(&event).unwrap_or_else(|_| "{}".to_owned());
    // A CAD snapshot that closes its incident is a cancellation in the store's eyes.
    let snapshot = (disposition != Disposition::Ignored && event.lifecycle.snapshot)
        .then(|| Snapshot { digest: String::new(), closed: event.lifecycle.closed });
    NewEvent {
        dedupe_key: policy::dedupe_key(&event, payload),
        incident_key,
        ident: event.id.clone(),
        revision: event.revision,
        format: format.as_str(),
        event_type: event.event_type.clone(),
        msg_type: event.msg_type,
        status: event.status,
        trust,
        priority: event::Priority::Normal,
        disposition,
        topic: topic.to_owned(),
        payload: payload.clone(),
        payload_sha256: crate::digest::sha256_hex(payload),
        event_json,
        headline: event.ignored.clone().unwrap_or_else(|| event.headline.clone()),
        sent_at: event.sent.map(Timestamp::as_millisecond),
        expires_at: event.expires.map(Timestamp::as_millisecond),
        received_at: now.as_millisecond(),
        hold: false,
        deliveries: Vec::new(),
        lifecycle: NewLifecycle {
            message_key: event.lifecycle.message_key,
            references: event.lifecycle.references,
            // A CAD close no rule posts is a quiet end.
            silent: snapshot.is_some(),
            snapshot,
        },
    }
}

/// A text-less CAP Cancel takes what its original said: type, texts, languages, fields.
fn take_texts(event: &mut Event, original: Event) {
    event.event_type = original.event_type;
    event.headline = original.headline;
    event.description = original.description;
    event.instruction = original.instruction;
    event.area = original.area;
    event.location = original.location;
    event.web = original.web;
    event.contact = original.contact;
    event.language = original.language;
    event.translations = original.translations;
    event.fields = original.fields;
    event.media = original.media;
}

/// What a post may say of an event, hashed: the texts, the location, and the fields the
/// templates see (the rule's allowlist, else all), leaving out the CAD's status and
/// priority, which change without anything changing for the public.
fn public_digest(event: &Event, rule: &EventRule) -> String {
    let fields: serde_json::Map<String, serde_json::Value> = event
        .fields
        .iter()
        .filter(|(k, _)| rule.public_fields.as_ref().is_none_or(|allowed| allowed.contains(k)))
        .filter(|(k, _)| !matches!(k.as_str(), "incident_status" | "cad_status" | "cad_priority" | "coordinates"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let view = serde_json::json!({
        "type": event.event_type,
        "headline": event.headline,
        "description": event.description,
        "instruction": event.instruction,
        "area": event.area,
        "location": event.location.as_ref().and_then(|l| l.text.as_deref()),
        "fields": fields,
    });
    crate::digest::sha256_hex(view.to_string().as_bytes())
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
    render_all_as(config, renderer, event, rule, audience, DeliveryKind::for_msg_type(event.msg_type))
}

/// [`render_all`] for deliveries of `kind`.
pub fn render_all_as(
    config: &Config,
    renderer: &Renderer,
    event: &Event,
    rule: &EventRule,
    audience: Audience,
    kind: DeliveryKind,
) -> Vec<(Planned, Rendered)> {
    let planned = route::plan_as(event, rule, audience, &config.channels, &config.agency.languages, kind);
    // The template context is built once per language, not once per channel.
    let mut prepared: Vec<(Option<String>, crate::render::ForEvent<'_>)> = Vec::new();
    let mut out = Vec::with_capacity(planned.len());
    for p in planned {
        let Some(channel) = config.channels.get(&p.channel) else { continue };
        let i = match prepared.iter().position(|(l, _)| *l == p.language) {
            Some(i) => i,
            None => {
                prepared.push((p.language.clone(), renderer.for_event(rule, event, p.language.as_deref())));
                prepared.len() - 1
            }
        };
        let rendered = prepared[i].1.render(&crate::render::Target::channel(channel), p.kind);
        out.push((p, rendered));
    }
    out
}

#[cfg(test)]
mod tests;
