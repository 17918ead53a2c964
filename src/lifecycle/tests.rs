use proptest::prelude::*;

use super::*;

fn planned(kinds: &[DeliveryKind], channels: &[&str]) -> Vec<Planned> {
    kinds
        .iter()
        .flat_map(|k| {
            channels.iter().map(move |c| Planned { channel: (*c).to_owned(), kind: *k, language: String::new() })
        })
        .collect()
}

fn msg<'a>(event_id: i64, class: StatusClass, msg_type: MsgType, planned: &'a [Planned]) -> Message<'a> {
    Message {
        event_id,
        class,
        trust: Trust::Unsigned,
        msg_type,
        revision: None,
        snapshot: None,
        assessed: Disposition::Deliver,
        older_than_known: false,
        hold: false,
        planned,
    }
}

fn incident(class: StatusClass, deliveries: Vec<PriorDelivery>) -> Incident {
    Incident {
        class,
        trust: Trust::Unsigned,
        event_type: "missing_child".to_owned(),
        state: IncidentState::Open,
        events: vec![PriorEvent {
            id: 1,
            revision: None,
            effect: Effect::Post,
            trust: Trust::Unsigned,
            digest: None,
            superseded: false,
        }],
        deliveries,
    }
}

fn delivery(id: i64, channel: &str, kind: DeliveryKind, state: DeliveryState) -> PriorDelivery {
    PriorDelivery {
        id,
        event_id: 1,
        channel: channel.to_owned(),
        language: String::new(),
        kind,
        state,
        posted: state == DeliveryState::Sent,
        maybe_posted: state == DeliveryState::Sent,
    }
}

#[test]
fn a_drill_never_touches_a_real_incident() {
    let held = incident(StatusClass::Actual, vec![delivery(10, "x", DeliveryKind::Post, DeliveryState::Held)]);
    let p = planned(&[DeliveryKind::Cancel], &["x"]);
    let v = on_message(&msg(2, StatusClass::Practice, MsgType::Cancel, &p), Some(&held));
    assert_eq!(v.disposition, Disposition::OtherClass);
    assert!(v.stop.is_empty() && v.create.is_empty() && v.closes.is_none());
}

#[test]
fn a_less_trusted_source_cannot_change_an_incident() {
    let mut signed = incident(StatusClass::Actual, vec![delivery(10, "x", DeliveryKind::Post, DeliveryState::Queued)]);
    signed.trust = Trust::Signed;
    let p = planned(&[DeliveryKind::Cancel], &["x"]);
    let v = on_message(&msg(2, StatusClass::Actual, MsgType::Cancel, &p), Some(&signed));
    assert_eq!(v.disposition, Disposition::Untrusted);
    assert!(v.stop.is_empty());
    let mut m = msg(2, StatusClass::Actual, MsgType::Cancel, &p);
    m.trust = Trust::Signed;
    assert_eq!(on_message(&m, Some(&signed)).effect, Effect::Cancel);
}

#[test]
fn a_cancel_stops_what_is_queued_and_replies_where_something_is_out() {
    let inc = incident(
        StatusClass::Actual,
        vec![
            delivery(10, "x", DeliveryKind::Post, DeliveryState::Sent),
            delivery(11, "y", DeliveryKind::Post, DeliveryState::Queued),
            delivery(12, "z", DeliveryKind::Post, DeliveryState::InFlight),
        ],
    );
    let p = planned(&[DeliveryKind::Cancel], &["x", "y", "z"]);
    let mut m = msg(2, StatusClass::Actual, MsgType::Cancel, &p);
    // Expired on arrival: a cancellation goes out all the same.
    m.assessed = Disposition::Expired;
    let v = on_message(&m, Some(&inc));
    assert_eq!(v.disposition, Disposition::Deliver);
    assert_eq!(v.closes, Some(IncidentState::Cancelled));
    assert_eq!(v.stop, [Stop { delivery: 11, how: StopHow::Suppress }, Stop { delivery: 12, how: StopHow::Withdraw }]);
    let made: Vec<(&str, Option<i64>)> = v.create.iter().map(|c| (p[c.index].channel.as_str(), c.reply_to)).collect();
    assert_eq!(made, [("x", Some(10)), ("z", Some(12))], "nothing went out on y");
    assert_eq!(v.reason, "cancelled by event 2");
}

#[test]
fn after_a_cancel_nothing_of_the_incident_is_posted_again() {
    let mut inc = incident(StatusClass::Actual, vec![delivery(10, "x", DeliveryKind::Post, DeliveryState::Sent)]);
    inc.state = IncidentState::Cancelled;
    let p = planned(&[DeliveryKind::Update, DeliveryKind::Post], &["x"]);
    for t in [MsgType::Alert, MsgType::Update, MsgType::Cancel] {
        let v = on_message(&msg(3, StatusClass::Actual, t, &p), Some(&inc));
        assert_eq!(v.disposition, Disposition::Closed, "{t:?}");
        assert!(v.create.is_empty());
    }
    for kind in [DeliveryKind::Post, DeliveryKind::Update] {
        assert!(still_valid(kind, IncidentState::Cancelled, None).is_err());
    }
    assert!(still_valid(DeliveryKind::Cancel, IncidentState::Cancelled, None).is_ok(), "its cancellation may go");
}

#[test]
fn a_cancel_before_its_alert_stops_the_alert() {
    let p = planned(&[DeliveryKind::Cancel], &["x"]);
    let v = on_message(&msg(1, StatusClass::Actual, MsgType::Cancel, &p), None);
    assert_eq!(v.disposition, Disposition::Unmatched);
    assert_eq!(v.closes, Some(IncidentState::Cancelled));
    let mut inc = incident(StatusClass::Actual, Vec::new());
    inc.state = IncidentState::Cancelled;
    let alert = planned(&[DeliveryKind::Post], &["x"]);
    let v = on_message(&msg(2, StatusClass::Actual, MsgType::Alert, &alert), Some(&inc));
    assert_eq!(v.disposition, Disposition::Closed);
    assert!(v.create.is_empty());
}

#[test]
fn an_older_revision_is_superseded_and_a_newer_one_replaces_what_is_queued() {
    let mut inc = incident(StatusClass::Actual, vec![delivery(10, "x", DeliveryKind::Post, DeliveryState::Queued)]);
    inc.events[0].revision = Some(3);
    let p = planned(&[DeliveryKind::Update, DeliveryKind::Post], &["x"]);
    let mut m = msg(2, StatusClass::Actual, MsgType::Update, &p);
    m.revision = Some(2);
    assert_eq!(on_message(&m, Some(&inc)).disposition, Disposition::Superseded);
    m.revision = Some(4);
    let v = on_message(&m, Some(&inc));
    assert_eq!(v.effect, Effect::Update);
    assert_eq!(v.supersedes, [1]);
    assert_eq!(v.stop, [Stop { delivery: 10, how: StopHow::Suppress }]);
    assert_eq!(v.create.len(), 1);
    assert_eq!(p[v.create[0].index].kind, DeliveryKind::Update);
    assert_eq!(v.create[0].reply_to, None, "nothing out to reply to: a standalone update");
}

#[test]
fn a_refused_message_does_not_make_the_real_revisions_look_old() {
    let mut inc = incident(StatusClass::Actual, Vec::new());
    inc.trust = Trust::Signed;
    inc.events[0].revision = Some(1);
    // An unsigned "revision 99" was recorded, and refused.
    inc.events.push(PriorEvent {
        id: 2,
        revision: Some(99),
        effect: Effect::None,
        trust: Trust::Unsigned,
        digest: None,
        superseded: false,
    });
    let p = planned(&[DeliveryKind::Update, DeliveryKind::Post], &["x"]);
    let mut m = msg(3, StatusClass::Actual, MsgType::Update, &p);
    m.trust = Trust::Signed;
    m.revision = Some(2);
    assert_eq!(on_message(&m, Some(&inc)).effect, Effect::Update);
}

#[test]
fn a_more_trusted_source_is_not_bound_by_what_a_less_trusted_one_sent_ahead() {
    // An unsigned cancel came first and opened the incident, closed.
    let p = planned(&[DeliveryKind::Post], &["x"]);
    let mut inc = incident(StatusClass::Actual, Vec::new());
    inc.events[0].effect = Effect::Cancel;
    inc.state = IncidentState::Cancelled;
    let mut alert = msg(2, StatusClass::Actual, MsgType::Alert, &p);
    alert.trust = Trust::Signed;
    let v = on_message(&alert, Some(&inc));
    assert_eq!((v.disposition, v.effect), (Disposition::Deliver, Effect::Post), "the signed alert goes out");
    assert_eq!((v.closes, v.trust), (Some(IncidentState::Open), Some(Trust::Signed)), "and takes the incident over");
    assert_eq!(v.create.len(), 1);
    // An unsigned "revision 99" ahead of it does not make it look old either.
    let mut inc = incident(StatusClass::Actual, Vec::new());
    inc.events[0].revision = Some(99);
    alert.revision = Some(1);
    assert_eq!(on_message(&alert, Some(&inc)).disposition, Disposition::Deliver);
    // Once signed, unsigned messages change nothing.
    inc.trust = Trust::Signed;
    let mut cancel = msg(3, StatusClass::Actual, MsgType::Cancel, &p);
    cancel.trust = Trust::Unsigned;
    assert_eq!(on_message(&cancel, Some(&inc)).disposition, Disposition::Untrusted);
}

#[test]
fn a_cancel_reaches_posts_in_languages_it_does_not_have() {
    let mut es = delivery(11, "x", DeliveryKind::Post, DeliveryState::Sent);
    es.language = "es".to_owned();
    let inc = incident(StatusClass::Actual, vec![delivery(10, "x", DeliveryKind::Post, DeliveryState::Sent), es]);
    let p = planned(&[DeliveryKind::Cancel], &["x"]);
    let v = on_message(&msg(2, StatusClass::Actual, MsgType::Cancel, &p), Some(&inc));
    let made: Vec<(Option<i64>, Option<&str>)> = v.create.iter().map(|c| (c.reply_to, c.language.as_deref())).collect();
    assert_eq!(made, [(Some(10), None), (Some(11), Some("es"))], "the Spanish post gets the cancellation too");
}

#[test]
fn after_a_correction_replies_go_to_the_correction() {
    let inc = incident(
        StatusClass::Actual,
        vec![
            delivery(10, "x", DeliveryKind::Post, DeliveryState::Sent),
            delivery(12, "x", DeliveryKind::Retract, DeliveryState::Sent),
        ],
    );
    let p = planned(&[DeliveryKind::Update, DeliveryKind::Post], &["x"]);
    let v = on_message(&msg(3, StatusClass::Actual, MsgType::Update, &p), Some(&inc));
    assert_eq!(v.create[0].reply_to, Some(12), "the alert it replaced was deleted");
}

#[test]
fn staff_deliveries_never_begin_on_a_public_channel() {
    let facts = BeginFacts {
        kind: DeliveryKind::Post,
        priority: Priority::Normal,
        audience: Audience::Staff,
        incident: IncidentState::Open,
        superseded_by: None,
        channel_public: true,
        paused: false,
    };
    assert!(matches!(may_begin(&facts), Begin::Close(_)));
    assert_eq!(may_begin(&BeginFacts { channel_public: false, ..facts }), Begin::Go);
    let paused = BeginFacts { channel_public: false, paused: true, ..facts };
    assert_eq!(may_begin(&paused), Begin::Paused);
    let retraction = BeginFacts { priority: Priority::Retraction, kind: DeliveryKind::Retract, ..paused };
    assert_eq!(may_begin(&retraction), Begin::Go, "retractions go through a pause");
}

#[test]
fn pause_scopes_cover_public_channels_for_all_and_types() {
    assert_eq!(pause_scopes("x", true, "wanted"), ["channel:x", "all", "type:wanted"]);
    assert_eq!(pause_scopes("staff", false, "wanted"), ["channel:staff"]);
}

#[test]
fn states_round_trip_through_their_strings() {
    for d in Disposition::ALL {
        assert_eq!(Disposition::parse(d.as_str()), Some(d));
    }
    for s in DeliveryState::ALL {
        assert_eq!(DeliveryState::parse(s.as_str()), Some(s));
    }
    for k in [DeliveryKind::Post, DeliveryKind::Update, DeliveryKind::Cancel, DeliveryKind::Retract] {
        assert_eq!(DeliveryKind::parse(k.as_str()), Some(k));
    }
    for s in [IncidentState::Open, IncidentState::Cancelled, IncidentState::Retracted] {
        assert_eq!(IncidentState::parse(s.as_str()), s);
    }
    assert_eq!(IncidentState::parse("bogus"), IncidentState::Retracted, "unknown is the safe side");
    assert_eq!(Audience::parse("bogus"), Audience::Staff, "unknown is the safe side");
}

// A pure model of the store: the verdicts applied to an in-memory incident, driven by
// generated sequences of messages, sends and operator actions. Checks the rules on the
// core alone, over many more sequences than the full-system model test can afford.

#[derive(Debug, Clone)]
enum Step {
    Message {
        class: StatusClass,
        trust: Trust,
        msg_type: MsgType,
        revision: Option<i64>,
        hold: bool,
    },
    /// The worker takes delivery `n % open` and the platform answers.
    Send {
        n: usize,
        outcome: SendOutcome,
    },
    Approve,
    Retract {
        correction: bool,
    },
}

#[derive(Debug, Clone, Copy)]
enum SendOutcome {
    Sent,
    Dead,
    Lost,
}

fn step() -> impl Strategy<Value = Step> {
    let class = prop_oneof![Just(StatusClass::Actual), Just(StatusClass::Practice)];
    let trust = prop_oneof![Just(Trust::Unsigned), Just(Trust::Signed)];
    let msg_type = prop_oneof![Just(MsgType::Alert), Just(MsgType::Update), Just(MsgType::Cancel)];
    let outcome = prop_oneof![Just(SendOutcome::Sent), Just(SendOutcome::Dead), Just(SendOutcome::Lost)];
    prop_oneof![
        4 => (class, trust, msg_type, proptest::option::of(1..5i64), any::<bool>())
            .prop_map(|(class, trust, msg_type, revision, hold)| Step::Message { class, trust, msg_type, revision, hold }),
        4 => (any::<usize>(), outcome).prop_map(|(n, outcome)| Step::Send { n, outcome }),
        1 => Just(Step::Approve),
        1 => any::<bool>().prop_map(|correction| Step::Retract { correction }),
    ]
}

struct World {
    incident: Option<Incident>,
    /// The trust of what closed the incident, when something did.
    closed_by: Option<Trust>,
    next_id: i64,
    /// (delivery id, kind) of every request begun, with the incident state at the time.
    begun: Vec<(i64, DeliveryKind, IncidentState)>,
    /// Channels that carried news of the incident, and the ones that got its end.
    carried: std::collections::BTreeSet<String>,
    ended_on: std::collections::BTreeSet<String>,
}

const CHANNELS: [&str; 2] = ["a", "b"];

impl World {
    fn apply(
        &mut self,
        v: &Verdict,
        event_id: i64,
        revision: Option<i64>,
        planned: &[Planned],
        opener: Option<(StatusClass, Trust)>,
        trust: Trust,
    ) {
        if self.incident.is_none() && v.effect != Effect::None {
            let (class, trust) = opener.unwrap_or((StatusClass::Actual, Trust::Operator));
            self.incident = Some(Incident {
                class,
                trust,
                event_type: "t".to_owned(),
                state: IncidentState::Open,
                events: Vec::new(),
                deliveries: Vec::new(),
            });
        }
        let Some(inc) = self.incident.as_mut() else { return };
        for e in inc.events.iter_mut().filter(|e| v.supersedes.contains(&e.id)) {
            e.superseded = true;
        }
        for s in &v.stop {
            if let Some(d) = inc.deliveries.iter_mut().find(|d| d.id == s.delivery) {
                match s.how {
                    StopHow::Suppress => d.state = DeliveryState::Suppressed,
                    StopHow::KeepPartial => d.state = DeliveryState::Sent,
                    // Its request is under way; the model lets it finish as lost.
                    StopHow::Withdraw => d.state = DeliveryState::Suppressed,
                }
            }
        }
        if let Some(state) = v.closes {
            inc.state = state;
            self.closed_by = (state != IncidentState::Open).then_some(trust);
        }
        if let Some(t) = v.trust {
            inc.trust = t;
        }
        inc.events.push(PriorEvent {
            id: event_id,
            revision,
            effect: v.effect,
            trust,
            digest: None,
            superseded: false,
        });
        for c in &v.create {
            let p = &planned[c.index];
            self.next_id += 1;
            inc.deliveries.push(PriorDelivery {
                id: self.next_id,
                event_id,
                channel: p.channel.clone(),
                language: String::new(),
                kind: p.kind,
                state: c.state,
                posted: false,
                maybe_posted: false,
            });
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn the_rules_hold_over_any_sequence(steps in proptest::collection::vec(step(), 1..40)) {
        let mut w = World { incident: None, closed_by: None, next_id: 100, begun: Vec::new(), carried: Default::default(), ended_on: Default::default() };
        let mut event_id = 0;
        for s in steps {
            match s {
                Step::Message { class, trust, msg_type, revision, hold } => {
                    event_id += 1;
                    let kinds = [DeliveryKind::for_msg_type(msg_type), DeliveryKind::Post];
                    let p = planned(&kinds, &CHANNELS);
                    let m = Message { event_id, class, trust, msg_type, revision, snapshot: None, assessed: Disposition::Deliver, older_than_known: false, hold, planned: &p };
                    let before = w.incident.clone();
                    let v = on_message(&m, w.incident.as_ref());
                    if let Some(inc) = &before {
                        // I2: another class, or a less trusted source, changes nothing.
                        if inc.class != class || trust < inc.trust {
                            prop_assert!(v.stop.is_empty() && v.create.is_empty() && v.closes.is_none() && v.supersedes.is_empty());
                        }
                        // I3: nothing news-like is created for an incident closed by a source
                        // at least as trusted.
                        if inc.state != IncidentState::Open && w.closed_by.is_some_and(|t| t >= trust) {
                            prop_assert!(v.create.is_empty());
                        }
                    }
                    for c in &v.create {
                        let kind = p[c.index].kind;
                        prop_assert!(v.effect.kind() == Some(kind));
                        if kind == DeliveryKind::Cancel {
                            prop_assert!(c.reply_to.is_some(), "a cancellation only where something is out");
                        }
                    }
                    w.apply(&v, event_id, revision, &p, Some((class, trust)), trust);
                }
                Step::Send { n, outcome } => {
                    let Some(inc) = w.incident.as_mut() else { continue };
                    let open: Vec<usize> = (0..inc.deliveries.len()).filter(|i| inc.deliveries[*i].state == DeliveryState::Queued).collect();
                    if open.is_empty() { continue }
                    let i = open[n % open.len()];
                    let superseded = inc.events.iter().find(|e| e.id == inc.deliveries[i].event_id).filter(|e| e.superseded).map(|e| e.id);
                    let d = &mut inc.deliveries[i];
                    let facts = BeginFacts { kind: d.kind, priority: Priority::Normal, audience: Audience::Public, incident: inc.state, superseded_by: superseded, channel_public: true, paused: false };
                    match may_begin(&facts) {
                        Begin::Go => {
                            w.begun.push((d.id, d.kind, inc.state));
                            match outcome {
                                SendOutcome::Sent => { d.state = DeliveryState::Sent; d.posted = true; d.maybe_posted = true; }
                                SendOutcome::Dead => d.state = DeliveryState::Dead,
                                SendOutcome::Lost => { d.state = DeliveryState::Queued; d.maybe_posted = true; }
                            }
                            if d.kind.is_news() && d.maybe_posted { w.carried.insert(d.channel.clone()); }
                            if !d.kind.is_news() && d.state == DeliveryState::Sent { w.ended_on.insert(d.channel.clone()); }
                        }
                        Begin::Close(_) => d.state = DeliveryState::Suppressed,
                        Begin::Paused => {}
                    }
                }
                Step::Approve => {
                    let Some(inc) = w.incident.as_mut() else { continue };
                    let state = inc.state;
                    let superseded: Vec<i64> = inc.events.iter().filter(|e| e.superseded).map(|e| e.id).collect();
                    for d in inc.deliveries.iter_mut().filter(|d| d.state == DeliveryState::Held) {
                        let by = superseded.contains(&d.event_id).then_some(d.event_id);
                        d.state = if still_valid(d.kind, state, by).is_ok() { DeliveryState::Queued } else { DeliveryState::Suppressed };
                    }
                }
                Step::Retract { correction } => {
                    let Some(inc) = w.incident.clone() else { continue };
                    event_id += 1;
                    let p = planned(&[DeliveryKind::Retract], &CHANNELS);
                    if let Ok(v) = on_retract(&inc, event_id, correction, &p) {
                        for c in &v.create {
                            prop_assert!(c.reply_to.is_some());
                        }
                        w.apply(&v, event_id, None, &p, None, Trust::Operator);
                    } else {
                        prop_assert_eq!(inc.state, IncidentState::Retracted);
                    }
                }
            }
            // I3: nothing news-like ever began once its incident was closed.
            for (_, kind, state) in &w.begun {
                prop_assert!(!(kind.is_news() && *state != IncidentState::Open));
            }
        }
        // I4, at the end: once every queued cancellation went out, each channel that
        // carried news of a cancelled or retracted incident got its end.
        if let Some(inc) = w.incident.as_mut()
            && inc.state != IncidentState::Open
        {
            for d in inc.deliveries.iter_mut().filter(|d| d.state == DeliveryState::Queued && !d.kind.is_news()) {
                d.state = DeliveryState::Sent;
                w.ended_on.insert(d.channel.clone());
            }
            let dead_ends: std::collections::BTreeSet<String> = inc.deliveries.iter().filter(|d| !d.kind.is_news() && d.state == DeliveryState::Dead).map(|d| d.channel.clone()).collect();
            for ch in &w.carried {
                prop_assert!(w.ended_on.contains(ch) || dead_ends.contains(ch), "{ch} carried the incident and got no end: {:?}", inc);
            }
        }
    }
}
