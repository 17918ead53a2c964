//! Policy: the decisions made about a decoded event before anything can be posted. Pure:
//! no I/O, the clock is an argument.
//!
//! - which rule applies (an event type without one is rejected with the known types);
//! - the dedupe key, which the store enforces with a unique index (never an in-memory set),
//!   and the incident key that ties revisions, updates and cancels together;
//! - the audience: only `status = actual` may reach public channels;
//! - whether the event is already past `expires` or older than the rule's `max_age`.

use std::collections::BTreeMap;
use std::time::Duration;

use jiff::Timestamp;

use crate::config::EventRule;
use crate::digest::sha256_hex;
use crate::event::{Event, Reject, RejectKind, Status};
use crate::lifecycle::{Audience, Disposition};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assessment {
    pub audience: Audience,
    pub disposition: Disposition,
    pub dedupe_key: String,
    pub incident_key: String,
}

/// The rule for the event's type.
pub fn rule_for<'a>(event: &Event, rules: &'a BTreeMap<String, EventRule>) -> Result<&'a EventRule, Reject> {
    rules.get(&event.event_type).ok_or_else(|| {
        let known: Vec<&str> = rules.keys().map(String::as_str).collect();
        Reject::new(
            RejectKind::UnknownType,
            format!("unknown event type {:?}; this config handles: {}", event.event_type, known.join(", ")),
        )
    })
}

/// Assess an event that has a rule. `received` stands in for a missing `sent`.
pub fn assess(event: &Event, payload: &[u8], rule: &EventRule, now: Timestamp, received: Timestamp) -> Assessment {
    let audience = audience(event);
    let disposition =
        lapsed(event.expires, event.sent.unwrap_or(received), rule.max_age, now).unwrap_or(Disposition::Deliver);
    Assessment { audience, disposition, dedupe_key: dedupe_key(event, payload), incident_key: incident_key(event) }
}

/// Only an actual event that nothing restricts (a CAP scope, a SAME test code) may reach
/// a public channel.
pub fn audience(event: &Event) -> Audience {
    if event.status == Status::Actual && event.restricted.is_none() { Audience::Public } else { Audience::Staff }
}

/// Whether news sent at `sent` must no longer go out at `now`: `Expired` past its
/// `expires`, `Stale` when older than its rule's `max_age`. Checked when an event is
/// accepted and again before every attempt of its deliveries.
pub fn lapsed(
    expires: Option<Timestamp>,
    sent: Timestamp,
    max_age: Option<Duration>,
    now: Timestamp,
) -> Option<Disposition> {
    if expires.is_some_and(|e| e <= now) {
        Some(Disposition::Expired)
    } else if max_age.is_some_and(|max| too_old(sent, now, max)) {
        Some(Disposition::Stale)
    } else {
        None
    }
}

/// Whether something sent at `sent` is older than `max_age` at `now`.
pub fn too_old(sent: Timestamp, now: Timestamp, max_age: Duration) -> bool {
    let age = now.duration_since(sent);
    age.is_positive() && age.unsigned_abs() > max_age
}

/// A CAP message's own `sender,identifier,sent`; else `id` + `revision` when there is a
/// revision, else `id` + a hash of the exact payload: a redelivered or resent message
/// maps to the same key, a changed one does not.
pub fn dedupe_key(event: &Event, payload: &[u8]) -> String {
    // Keyed by the event's own id (not its incident key, which for CAP also names the
    // sender): the key of a message stored by an earlier version stays the same.
    let incident = id_key(event, &event.id);
    match (&event.lifecycle.message_key, event.revision) {
        // CAP: sender, identifier and sent name one message, however it is re-sent.
        (Some(m), _) => format!("{incident}#m{}", &sha256_hex(m.as_bytes())[..32]),
        (None, Some(r)) => format!("{incident}#r{r}"),
        (None, None) => format!("{incident}#h{}", &sha256_hex(payload)[..32]),
    }
}

/// Ties every message about one incident together (revisions, updates, cancels). The
/// status is part of it: an exercise that reuses a real incident's id is a different
/// incident, and can neither duplicate, supersede nor cancel the real one. A CAP
/// identifier is unique only for its sender, so a CAP incident is keyed by both: two
/// agencies' alerts numbered alike are two incidents.
pub fn incident_key(event: &Event) -> String {
    let sender = event.fields.get("sender").and_then(serde_json::Value::as_str);
    match (event.format, sender) {
        (crate::event::Format::Cap, Some(sender)) => id_key(event, &format!("{sender}/{}", event.id)),
        _ => id_key(event, &event.id),
    }
}

fn id_key(event: &Event, id: &str) -> String {
    match event.status {
        Status::Actual => format!("{}:{id}", event.format.as_str()),
        other => format!("{}:{}:{id}", event.format.as_str(), other.as_str()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::ChannelSelector;
    use crate::event::{Format, MsgType, Priority};

    fn event() -> Event {
        Event {
            format: Format::Json,
            id: "INC-1".to_owned(),
            revision: Some(2),
            event_type: "road_closure".to_owned(),
            msg_type: MsgType::Alert,
            status: Status::Actual,
            sent: Some("2026-11-21T10:00:00Z".parse().expect("ts")),
            expires: Some("2026-11-21T18:00:00Z".parse().expect("ts")),
            headline: "Road closed".to_owned(),
            description: None,
            instruction: None,
            area: None,
            location: None,
            web: None,
            contact: None,
            language: None,
            media: Vec::new(),
            fields: serde_json::Map::new(),
            translations: Vec::new(),
            lifecycle: crate::event::Lifecycle::default(),
            restricted: None,
            ignored: None,
        }
    }

    fn rule(max_age: Option<u64>) -> EventRule {
        EventRule {
            max_age: max_age.map(Duration::from_secs),
            ..EventRule::new(Priority::Normal, ChannelSelector::All, "road_closure")
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().expect("ts")
    }

    #[test]
    fn dedupe_key_uses_revision_else_payload_hash() {
        let e = event();
        assert_eq!(dedupe_key(&e, b"x"), "json:INC-1#r2");
        let mut e = event();
        e.revision = None;
        let a = dedupe_key(&e, b"{\"a\":1}");
        assert_eq!(a, dedupe_key(&e, b"{\"a\":1}"));
        assert_ne!(a, dedupe_key(&e, b"{\"a\":2}"));
    }

    #[test]
    fn only_actual_is_public() {
        let now = at("2026-11-21T10:05:00Z");
        for (status, audience) in [
            (Status::Actual, Audience::Public),
            (Status::Exercise, Audience::Staff),
            (Status::Test, Audience::Staff),
            (Status::System, Audience::Staff),
            (Status::Draft, Audience::Staff),
        ] {
            let mut e = event();
            e.status = status;
            assert_eq!(assess(&e, b"", &rule(None), now, now).audience, audience, "{status:?}");
        }
    }

    #[test]
    fn expired_and_stale_are_not_delivered() {
        let e = event();
        let r = rule(Some(3600));
        assert_eq!(
            assess(&e, b"", &r, at("2026-11-21T10:30:00Z"), at("2026-11-21T10:30:00Z")).disposition,
            Disposition::Deliver
        );
        assert_eq!(
            assess(&e, b"", &r, at("2026-11-21T11:00:01Z"), at("2026-11-21T11:00:01Z")).disposition,
            Disposition::Stale
        );
        assert_eq!(
            assess(&e, b"", &r, at("2026-11-21T18:00:00Z"), at("2026-11-21T18:00:00Z")).disposition,
            Disposition::Expired
        );
        assert_eq!(
            assess(&e, b"", &rule(None), at("2026-11-21T17:00:00Z"), at("2026-11-21T17:00:00Z")).disposition,
            Disposition::Deliver
        );
    }

    #[test]
    fn missing_sent_ages_from_receipt() {
        let mut e = event();
        e.sent = None;
        let r = rule(Some(60));
        let received = at("2026-11-21T10:00:00Z");
        assert_eq!(assess(&e, b"", &r, at("2026-11-21T10:00:30Z"), received).disposition, Disposition::Deliver);
        assert_eq!(assess(&e, b"", &r, at("2026-11-21T10:02:00Z"), received).disposition, Disposition::Stale);
    }

    #[test]
    fn unknown_type_names_the_known_ones() {
        let mut rules = BTreeMap::new();
        rules.insert("missing_child".to_owned(), rule(None));
        let r = rule_for(&event(), &rules).expect_err("unknown");
        assert_eq!(r.kind, RejectKind::UnknownType);
        assert!(r.reason.contains("road_closure") && r.reason.contains("missing_child"), "{}", r.reason);
    }
}
