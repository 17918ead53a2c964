use super::*;
use crate::config::tests::{MINIMAL, load_str};
use crate::lifecycle::{DeliveryKind, KnownMessage, NothingKnown, StatusClass, Trust};

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
    record(&c, &r, "cad/a/events", &Bytes::from(payload.to_owned()), now(), &NothingKnown)
}

fn reject(payload: &[u8], topic: &str) -> NewReject {
    let (_d, c, r) = setup();
    match record(&c, &r, topic, &Bytes::copy_from_slice(payload), now(), &NothingKnown) {
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
    assert_eq!(e.disposition, Disposition::Deliver);
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
    assert_eq!(e.disposition, Disposition::Expired);
    // Planned all the same: the store posts none of them but uses them to supersede.
    assert_eq!(e.deliveries.len(), 2);
}

#[test]
fn a_late_cancel_still_carries_its_channels_to_suppress_queued_posts() {
    let e = event(
        r#"{"id":"X","type":"road_closure","msg_type":"cancel","status":"actual","headline":"Reopened","sent":"2026-11-20T00:00:00Z","expires":"2026-11-20T06:00:00Z"}"#,
    );
    assert_eq!(e.disposition, Disposition::Expired);
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
    use crate::store::idempotency_key;
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
    let rec = record(&c, &r, "é/events", &Bytes::from_static(b"{}"), now(), &NothingKnown);
    assert!(matches!(rec, IngestRecord::Reject(ref r) if r.kind == "no_subscription"), "{rec:?}");
    let rec = record(&c, &r, "cad/ñandú/events", &Bytes::from(event_json("N-1")), now(), &NothingKnown);
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

/// A config with CAP, EIDO and mapped subscriptions beside the JSON one.
fn formats() -> (tempfile::TempDir, Config, Renderer) {
    let toml = MINIMAL.replace(
        "[events.missing_child]",
        r#"[[mqtt.subscribe]]
topic = "ipaws/#"
format = "cap"
[[mqtt.subscribe]]
topic = "eido/#"
format = "eido"
[[mqtt.subscribe]]
topic = "cad/chesco/#"
format = "mapped"
types = { MVA = "road_closure" }
[mqtt.subscribe.mapping]
id = "/incident"
type = "/type"
location = "/location"
status = "/status"
[events.general]
[events.barricaded_suspect]
post_on_close = true
[events.missing_child]"#,
    );
    let toml = format!("{toml}\n[channels.staff]\nkind = \"console\"\npublic = false\n");
    let (dir, config) = load_str(&toml);
    let renderer = Renderer::load(&config).expect("templates");
    (dir, config, renderer)
}

const CAP_ALERT: &str = r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>RCSO-1</identifier><sender>rcso@sheriff.example</sender><sent>2026-11-21T09:59:00-06:00</sent>
  <status>Actual</status><msgType>MSGTYPE</msgType><scope>Public</scope>REFS
  <info><category>Rescue</category><event>Child Abduction</event><urgency>Immediate</urgency>
    <severity>Severe</severity><certainty>Likely</certainty>
    <eventCode><valueName>SAME</valueName><value>CODE</value></eventCode>
    <headline>AMBER Alert: Sofia Ramirez, 6</headline></info>
</alert>"#;

fn cap(msg_type: &str, code: &str, refs: &str) -> String {
    CAP_ALERT.replace("MSGTYPE", msg_type).replace("CODE", code).replace("REFS", refs)
}

fn prepared(config: &(tempfile::TempDir, Config, Renderer), topic: &str, payload: &str, known: &dyn Known) -> NewEvent {
    match record(&config.1, &config.2, topic, &Bytes::from(payload.to_owned()), now(), known) {
        IngestRecord::Event(e) => *e,
        IngestRecord::Reject(r) => panic!("expected an event, got {r:?}"),
    }
}

#[test]
fn a_cap_alert_is_keyed_by_its_message() {
    let f = formats();
    let e = prepared(&f, "ipaws/rcso", &cap("Alert", "CAE", ""), &NothingKnown);
    assert_eq!(e.format, "cap");
    assert_eq!(e.event_type, "missing_child");
    assert_eq!(e.lifecycle.message_key.as_deref(), Some("rcso@sheriff.example,RCSO-1,2026-11-21T09:59:00-06:00"));
    assert!(e.dedupe_key.starts_with("cap:RCSO-1#m"));
    assert!(!e.hold, "an alert is auto unless the rule says hold");
    assert!(e.deliveries.iter().all(|d| d.kind == DeliveryKind::Post));
    assert_eq!(e.deliveries[0].text, "AMBER Alert: Sofia Ramirez, 6");
}

#[test]
fn a_cap_update_is_rendered_both_ways_and_tests_stay_with_staff() {
    let f = formats();
    let refs = "<references>rcso@sheriff.example,RCSO-1,2026-11-21T09:59:00-06:00</references>";
    let e = prepared(&f, "ipaws/rcso", &cap("Update", "CAE", refs), &NothingKnown);
    let kinds: Vec<DeliveryKind> = e.deliveries.iter().map(|d| d.kind).collect();
    assert!(kinds.contains(&DeliveryKind::Update) && kinds.contains(&DeliveryKind::Post), "{kinds:?}");
    assert_eq!(e.lifecycle.references.len(), 1);

    let rmt = prepared(&f, "ipaws/rcso", &cap("Alert", "RMT", ""), &NothingKnown);
    let channels: Vec<&str> = rmt.deliveries.iter().map(|d| d.channel.as_str()).collect();
    assert_eq!(channels, ["staff"], "a required monthly test never reaches a public channel");

    let ack = prepared(&f, "ipaws/rcso", &cap("Ack", "CAE", ""), &NothingKnown);
    assert_eq!(ack.disposition, Disposition::Ignored);
    assert!(ack.deliveries.is_empty());
}

#[test]
fn a_cap_cancel_without_info_takes_the_texts_of_what_it_cancels() {
    let f = formats();
    let bare = r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>RCSO-2</identifier>
        <sender>rcso@sheriff.example</sender><sent>2026-11-21T11:00:00-06:00</sent><status>Actual</status>
        <msgType>Cancel</msgType><scope>Public</scope>
        <references>rcso@sheriff.example,RCSO-1,2026-11-21T09:59:00-06:00</references></alert>"#;
    let lookup = stored_alert();
    let e = prepared(&f, "ipaws/rcso", bare, &lookup);
    assert_eq!(e.event_type, "missing_child");
    assert_eq!(e.incident_key, "cap:RCSO-1", "the incident of what it cancels");
    assert!(e.deliveries.iter().all(|d| d.kind == DeliveryKind::Cancel));
    assert_eq!(e.deliveries[0].text, "AMBER Alert: Sofia Ramirez, 6", "the original's headline");
    let unknown = prepared(&f, "ipaws/rcso", bare, &NothingKnown);
    assert_eq!(unknown.disposition, Disposition::Deliver, "recorded as a cancellation...");
    assert!(unknown.deliveries.is_empty(), "...with nothing to post");
    assert_eq!(unknown.msg_type, MsgType::Cancel);
}

#[test]
fn cad_snapshots_are_held_and_carry_a_digest_of_what_a_post_may_say() {
    let f = formats();
    let eido = |status: &str, location: &str| {
        serde_json::json!({
            "$id": "urn:emergency:uid:incidentid:1:cad.example", "eidoVersion": "1.0",
            "incidentComponent": { "incidentTypeCommonRegistryText": "BARICADE", "incidentStatusCommonRegistryText": [status] },
            "locationComponent": [{ "locationTypeDescriptionRegistryText": "CurrentIncident", "locationDescriptionText": location }]
        })
        .to_string()
    };
    let a = prepared(&f, "eido/rcso", &eido("Active", "3812 Half Turn Rd"), &NothingKnown);
    assert!(a.hold, "CAD data waits for a person unless the rule says otherwise");
    let kinds: Vec<DeliveryKind> = a.deliveries.iter().map(|d| d.kind).collect();
    assert!(kinds.contains(&DeliveryKind::Post) && kinds.contains(&DeliveryKind::Update));
    let digest = |e: &NewEvent| e.lifecycle.snapshot.as_ref().map(|s| s.digest.clone());
    let same = prepared(&f, "eido/rcso", &eido("ResourcesOnscene", "3899 Half Turn Rd"), &NothingKnown);
    assert_eq!(digest(&a), digest(&same), "a new status or a house number in the same block is no change");
    let moved = prepared(&f, "eido/rcso", &eido("Active", "4100 Half Turn Rd"), &NothingKnown);
    assert_ne!(digest(&a), digest(&moved));
    let closed = prepared(&f, "eido/rcso", &eido("Closed", "3812 Half Turn Rd"), &NothingKnown);
    assert!(closed.lifecycle.snapshot.as_ref().is_some_and(|s| s.closed));
    assert!(closed.deliveries.iter().all(|d| d.kind == DeliveryKind::Cancel), "this rule posts on close");

    let mva = prepared(
        &f,
        "cad/chesco/summary",
        r#"{"incident":"F1","type":"MVA","location":"10 LOCUST ST","status":"CLOSED"}"#,
        &NothingKnown,
    );
    assert!(mva.lifecycle.snapshot.as_ref().is_some_and(|s| s.closed));
    assert!(mva.deliveries.is_empty(), "road_closure ends silently when the incident closes");
    let medical = prepared(&f, "cad/chesco/summary", r#"{"incident":"F2","type":"MEDICAL"}"#, &NothingKnown);
    assert_eq!(medical.disposition, Disposition::Ignored);
}

/// The CAP AMBER alert RCSO-1, stored (incident `cap:RCSO-1`).
fn stored_alert() -> Fake {
    let original = match event::decode(Format::Cap, cap("Alert", "CAE", "").as_bytes(), &Default::default()) {
        Ok(e) => e,
        Err(r) => panic!("{r}"),
    };
    Fake::default().message(
        "rcso@sheriff.example,RCSO-1,2026-11-21T09:59:00-06:00",
        "cap:RCSO-1",
        StatusClass::Actual,
        &original,
    )
}

/// Earlier messages, as a test says they are.
#[derive(Default)]
struct Fake {
    messages: Vec<(String, KnownMessage)>,
    referencing: Vec<(String, KnownMessage)>,
    incidents: Vec<(String, KnownIncident)>,
}

impl Fake {
    fn message(mut self, key: &str, incident: &str, class: StatusClass, event: &Event) -> Self {
        let m = KnownMessage {
            incident_key: incident.to_owned(),
            class,
            trust: Trust::Unsigned,
            event_json: serde_json::to_string(event).expect("json"),
        };
        self.incidents.push((
            incident.to_owned(),
            KnownIncident { class, trust: Trust::Unsigned, event_type: event.event_type.clone() },
        ));
        self.messages.push((key.to_owned(), m));
        self
    }
}

impl Known for Fake {
    fn message(&self, key: &str, class: StatusClass) -> Option<KnownMessage> {
        self.messages.iter().find(|(k, m)| k == key && m.class == class).map(|(_, m)| m.clone())
    }

    fn referencing(&self, key: &str, class: StatusClass, trust: Trust) -> Option<KnownMessage> {
        self.referencing.iter().find(|(k, m)| k == key && m.class == class && m.trust >= trust).map(|(_, m)| m.clone())
    }

    fn incident(&self, key: &str) -> Option<KnownIncident> {
        self.incidents.iter().find(|(k, _)| k == key).map(|(_, i)| i.clone())
    }
}

#[test]
fn an_unsigned_filter_listed_first_does_not_skip_a_signed_one() {
    let toml = MINIMAL.replace(
        "[[mqtt.subscribe]]\ntopic = \"cad/+/events\"\nformat = \"json\"",
        "[[mqtt.subscribe]]\ntopic = \"cad/#\"\nformat = \"json\"\n[[mqtt.subscribe]]\ntopic = \"cad/secure/+\"\nformat = \"json\"\nrequire_signature = true\nsigning_key = \"secure-key-0123456789\"",
    );
    let (_d, c) = load_str(&toml);
    let r = Renderer::load(&c).expect("templates");
    let unsigned = Bytes::from(event_json("S-1"));
    let rec = record(&c, &r, "cad/secure/events", &unsigned, now(), &NothingKnown);
    assert!(matches!(&rec, IngestRecord::Reject(r) if r.kind == "unsigned"), "{rec:?}");
    let rec = record(&c, &r, "cad/other/events", &unsigned, now(), &NothingKnown);
    assert!(matches!(&rec, IngestRecord::Event(e) if e.trust == Trust::Unsigned), "elsewhere the open filter applies");
}

#[test]
fn a_cancel_without_an_event_code_follows_the_type_of_its_incident() {
    let f = formats();
    let known = stored_alert();
    // A hand-written cancel: its own info has no SAME code, so on its own it is "general".
    let refs = "<references>rcso@sheriff.example,RCSO-1,2026-11-21T09:59:00-06:00</references>";
    let found_safe = cap("Cancel", "CAE", refs)
        .replace("<eventCode><valueName>SAME</valueName><value>CAE</value></eventCode>", "")
        .replace("AMBER Alert: Sofia Ramirez, 6", "FOUND SAFE: Sofia Ramirez")
        .replace("RCSO-1</identifier>", "RCSO-3</identifier>");
    let e = prepared(&f, "ipaws/rcso", &found_safe, &known);
    assert_eq!(e.event_type, "missing_child", "the incident's type, not general");
    assert_eq!(e.priority.as_str(), "critical", "and its rule");
    assert!(e.deliveries.iter().all(|d| d.kind == DeliveryKind::Cancel && d.text.contains("FOUND SAFE")));
    // With a code nobody configured, a follow-up is still not a reject.
    let odd = found_safe
        .replace("<category>", "<eventCode><valueName>SAME</valueName><value>XYZ</value></eventCode><category>");
    assert_eq!(prepared(&f, "ipaws/rcso", &odd, &known).event_type, "missing_child");
}

#[test]
fn a_drill_never_joins_a_real_incident_by_its_references() {
    let f = formats();
    let known = stored_alert();
    let refs = "<references>rcso@sheriff.example,RCSO-1,2026-11-21T09:59:00-06:00</references>";
    let drill = cap("Cancel", "CAE", refs)
        .replace("<status>Actual</status>", "<status>Exercise</status>")
        .replace("RCSO-1</identifier>", "RCSO-EX-1</identifier>");
    let e = prepared(&f, "ipaws/rcso", &drill, &known);
    assert_eq!(e.incident_key, "cap:exercise:rcso@sheriff.example/RCSO-EX-1", "its own incident, not the real alert's");
    assert!(e.deliveries.iter().all(|d| d.channel == "staff"), "and only staff channels");
}

#[test]
fn two_senders_with_the_same_identifier_are_two_incidents() {
    let f = formats();
    let ours = prepared(&f, "ipaws/rcso", &cap("Alert", "CAE", ""), &NothingKnown);
    let theirs = cap("Alert", "CAE", "").replace("rcso@sheriff.example", "ops@county.example");
    let theirs = prepared(&f, "ipaws/rcso", &theirs, &NothingKnown);
    assert_ne!(ours.incident_key, theirs.incident_key);
    assert_eq!(ours.incident_key, "cap:rcso@sheriff.example/RCSO-1");
    assert_ne!(ours.dedupe_key, theirs.dedupe_key);
}

#[test]
fn invisible_characters_never_reach_a_post() {
    let e = event(
        r#"{"id":"Z","type":"road_closure","status":"actual","headline":"Call 911\u202e evil\u202c @\u200beveryone"}"#,
    );
    assert_eq!(e.deliveries[0].text, "Call 911 evil @everyone", "the console gets it clean");
    let f = formats();
    let hostile = cap("Alert", "CAE", "").replace("AMBER Alert: Sofia", "AMBER&#x202E; Alert:&#x7; Sofia&#xFEFF;");
    let e = prepared(&f, "ipaws/rcso", &hostile, &NothingKnown);
    assert_eq!(e.deliveries[0].text, "AMBER Alert: Sofia Ramirez, 6");
}
