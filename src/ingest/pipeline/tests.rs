use super::*;
use crate::config::tests::{MINIMAL, load_str};
use crate::route::DeliveryKind;

fn setup() -> (tempfile::TempDir, Config, Renderer) {
    let toml = format!(
        "{MINIMAL}\n[channels.staff]\nkind = \"console\"\npublic = false\n[channels.off]\nkind = \"console\"\nenabled = false\n"
    );
    let (dir, config) = load_str(&toml);
    let renderer = Renderer::load(&config).expect("templates");
    (dir, config, renderer)
}

fn now() -> Timestamp {
    "2026-11-21T10:00:00Z".parse().expect("ts")
}

fn run(payload: &str) -> IngestRecord {
    let (_d, c, r) = setup();
    prepare(&c, &r, "cad/a/events", &Bytes::from(payload.to_owned()), now())
}

fn reject(payload: &[u8], topic: &str) -> NewReject {
    let (_d, c, r) = setup();
    match prepare(&c, &r, topic, &Bytes::copy_from_slice(payload), now()) {
        IngestRecord::Reject(r) => r,
        IngestRecord::Event(e) => panic!("expected a reject, got {e:?}"),
    }
}

fn event(payload: &str) -> NewEvent {
    match run(payload) {
        IngestRecord::Event(e) => *e,
        IngestRecord::Reject(r) => panic!("expected an event, got {r:?}"),
    }
}

#[test]
fn an_actual_alert_goes_to_every_enabled_channel() {
    let e = event(r#"{"id":"A1","revision":3,"type":"missing_child","status":"actual","headline":"Child missing"}"#);
    assert_eq!(e.dedupe_key, "json:A1#r3");
    assert_eq!(e.disposition, "deliver");
    assert_eq!(e.priority.as_str(), "critical");
    let channels: Vec<&str> = e.deliveries.iter().map(|d| d.channel.as_str()).collect();
    assert_eq!(channels, ["console", "staff"]);
    assert!(e.deliveries.iter().all(|d| d.kind == DeliveryKind::Post && d.text == "Child missing"));
    assert_ne!(e.deliveries[0].idem_key, e.deliveries[1].idem_key);
}

#[test]
fn tests_and_exercises_reach_staff_channels_only() {
    for status in ["test", "exercise", "draft", "system"] {
        let e = event(&format!(r#"{{"id":"T","type":"road_closure","status":"{status}","headline":"Drill"}}"#));
        let channels: Vec<&str> = e.deliveries.iter().map(|d| d.channel.as_str()).collect();
        assert_eq!(channels, ["staff"], "{status}");
        assert!(e.deliveries[0].text.starts_with(&format!("[{}]", status.to_uppercase())));
    }
}

#[test]
fn expired_events_are_recorded_without_deliveries() {
    let e = event(
        r#"{"id":"X","type":"road_closure","status":"actual","headline":"Old","sent":"2026-11-20T00:00:00Z","expires":"2026-11-20T06:00:00Z"}"#,
    );
    assert_eq!(e.disposition, "expired");
    // Planned all the same: the store posts none of them but uses them to supersede.
    assert_eq!(e.deliveries.len(), 2);
}

#[test]
fn a_late_cancel_still_carries_its_channels_to_suppress_queued_posts() {
    let e = event(
        r#"{"id":"X","type":"road_closure","msg_type":"cancel","status":"actual","headline":"Reopened","sent":"2026-11-20T00:00:00Z","expires":"2026-11-20T06:00:00Z"}"#,
    );
    assert_eq!(e.disposition, "expired");
    assert_eq!(e.deliveries.len(), 2);
}

#[test]
fn bad_inputs_become_rejects_with_reasons() {
    let cases: [(&[u8], &str, &str); 6] = [
        (b"{not json", "malformed", "malformed JSON"),
        (b"\xff\xfe\x00", "invalid_utf8", "not valid UTF-8"),
        (br#"{"id":"1","type":"alien_invasion","status":"actual","headline":"h"}"#, "unknown_type", "alien_invasion"),
        (br#"{"id":"1","type":"road_closure","headline":"h"}"#, "invalid", "status"),
        (b"[]", "invalid", "not a bullhorn event"),
        (b"null", "invalid", "not a bullhorn event"),
    ];
    for (payload, kind, needle) in cases {
        let r = reject(payload, "cad/a/events");
        assert_eq!(r.kind, kind, "{}", r.reason);
        assert!(r.reason.contains(needle), "{kind}: {}", r.reason);
        assert_eq!(r.format, Some("json"));
    }
}

#[test]
fn oversize_payloads_and_unsubscribed_topics_are_rejected() {
    let big = vec![b' '; 256 * 1024 + 1];
    let r = reject(&big, "cad/a/events");
    assert_eq!(r.kind, "too_large");
    assert!(r.reason.contains("262145 bytes"), "{}", r.reason);
    let r = reject(b"{}", "elsewhere");
    assert_eq!(r.kind, "no_subscription");
    assert_eq!(r.format, None);
}

#[test]
fn hostile_text_is_kept_verbatim_for_the_channel_to_escape() {
    let e = event(
        r#"{"id":"H","type":"road_closure","status":"actual","headline":"@everyone <b>x</b> [click](http://evil.example) {{ 7*7 }}"}"#,
    );
    assert_eq!(
        e.deliveries[0].text, "@everyone <b>x</b> [click](http://evil.example) {{ 7*7 }}",
        "field values are data, never template code"
    );
}

#[test]
fn idempotency_key_is_stable_and_distinct() {
    let a = idempotency_key("json:A#r1", "hook", "post", "");
    assert_eq!(a, idempotency_key("json:A#r1", "hook", "post", ""));
    assert_ne!(a, idempotency_key("json:A#r1", "hook", "update", ""));
    assert_ne!(a, idempotency_key("json:A#r1", "hook2", "post", ""));
    assert_ne!(a, idempotency_key("json:A#r1", "hook", "post", "es"));
    assert!(a.starts_with("bh_") && a.len() == 35);
}

#[test]
fn a_non_ascii_topic_is_handled_not_a_panic() {
    let (_d, c, r) = setup();
    let rec = prepare(&c, &r, "é/events", &Bytes::from_static(b"{}"), now());
    assert!(matches!(rec, IngestRecord::Reject(ref r) if r.kind == "no_subscription"), "{rec:?}");
    let rec = prepare(&c, &r, "cad/ñandú/events", &Bytes::from(event_json("N-1")), now());
    assert!(matches!(rec, IngestRecord::Event(_)), "{rec:?}");
}

#[test]
fn an_exercise_reusing_a_real_id_is_a_different_incident() {
    let real = event(&event_json("SAME-1"));
    let drill = event(r#"{"id":"SAME-1","revision":1,"type":"road_closure","status":"exercise","headline":"Drill"}"#);
    assert_ne!(real.incident_key, drill.incident_key);
    assert_ne!(real.dedupe_key, drill.dedupe_key);
}

fn event_json(id: &str) -> String {
    format!(r#"{{"id":"{id}","revision":1,"type":"road_closure","status":"actual","headline":"h"}}"#)
}
