//! The lifecycle's safety rules, checked over generated sequences against the whole
//! daemon: the real store (a SQLite file), ingest through a broker with a persistent
//! session ([`SessionBroker`], which shows which message was acknowledged when), the
//! lifecycle core, the channel workers posting to fake webhook receivers over loopback,
//! operators through the admin API, reloads of the config file, and crashes (every task
//! aborted where it stands) followed by restarts.
//!
//! A sequence mixes messages (native JSON and CAP; alerts, updates and cancellations;
//! actual, exercise and test; with and without event codes, texts and references;
//! revisions out of order; duplicates; signed and unsigned), the receivers' answers
//! (posted, refused for good, failed, unavailable, answer lost), operator actions
//! (approve, reject, retry, retract, correct, pause, resume), reloads (the staff channel
//! made public, removed, its name reused by a public channel) and crashes. After every
//! step the invariants are checked on what the store recorded and what the receivers
//! and the broker saw:
//!
//! - I1 nothing non-actual or restricted, and no staff notice, reaches a public channel;
//! - I2 a message never changes an incident of another status class (or from a less
//!   trusted source than the one that opened it);
//! - I3 once an incident is cancelled or retracted (or an event superseded), no request
//!   for its alert or updates begins;
//! - I4 (at the end) every channel that carried an incident's news gets its cancellation
//!   or retraction, unless the platform refused it for good;
//! - I5 no request begins while a pause that covers it is in force;
//! - I6 every acknowledged message is an event or a reject, acknowledgements go in
//!   arrival order, commits follow arrival order, and (at the end) nothing is lost;
//! - I7 nothing is posted twice on a channel with duplicate protection (webhooks: the
//!   receiver drops a repeated `webhook-id`);
//! - I8 on one channel, no request of an incident begins before the one before it
//!   ended (a reply follows its original, a retraction every post it deletes), however
//!   many requests the channel has in flight;
//! - I9 no channel has more requests in flight than its window (`concurrency`);
//!
//! and, for native JSON incidents, which ones ended up closed is compared with a model of
//! the rules written independently here.
//!
//! `BULLHORN_MODEL_CASES` sets how many sequences run (CI runs a bounded number);
//! `BULLHORN_MODEL_STEPS` the longest sequence. Proptest shrinks a failing sequence.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as ProptestConfig, TestCaseError, TestRunner};
use rusqlite::{Connection, OptionalExtension as _};
use serde_json::json;

use crate::support::session_broker::SessionBroker;
use crate::support::webhook::{FakeWebhook, Reply};

const SIGNING_KEY: &str = "model-signing-key-0123456789";
const CHANNELS: [&str; 3] = ["pub_a", "pub_b", "staff"];

// ---------------------------------------------------------------- the generated steps

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Actual,
    Exercise,
    Test,
}

impl Status {
    fn json(self) -> &'static str {
        match self {
            Status::Actual => "actual",
            Status::Exercise => "exercise",
            Status::Test => "test",
        }
    }

    fn cap(self) -> &'static str {
        match self {
            Status::Actual => "Actual",
            Status::Exercise => "Exercise",
            Status::Test => "Test",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Alert,
    Update,
    Cancel,
}

#[derive(Debug, Clone)]
enum Msg {
    Json {
        incident: u8,
        revision: Option<u8>,
        /// 0 missing_child, 1 road_closure, 2 wanted (held for approval), 3 a type no
        /// rule has.
        type_code: u8,
        kind: Kind,
        status: Status,
        signed: bool,
        /// With a Spanish translation: one post per language.
        spanish: bool,
    },
    /// A CAD snapshot (mapped JSON): held for approval by default, an update only when
    /// its public text changed, closed quietly.
    Cad {
        incident: u8,
        /// One of two headlines: the same one again is no change.
        headline: u8,
        closed: bool,
    },
    Cap {
        /// One of two senders (identifiers are unique per sender only).
        sender: u8,
        kind: Kind,
        status: Status,
        /// SAME CAE (missing_child), or no code (general).
        amber: bool,
        /// No `info` (a text-less cancel).
        bare: bool,
        /// Earlier CAP messages it names, by index (modulo how many there are).
        references: Vec<usize>,
    },
}

#[derive(Debug, Clone, Copy)]
enum Answer {
    Posted,
    Refused,
    Failed,
    Unavailable,
    Lost,
}

#[derive(Debug, Clone, Copy)]
enum Op {
    Approve,
    Reject,
    Retry,
    Retract,
    Correct,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Staff {
    Private,
    Public,
    Removed,
}

#[derive(Debug, Clone)]
enum Step {
    Publish(Msg),
    /// Publish again what was published `n` (modulo) messages ago.
    Duplicate(usize),
    Script(usize, Vec<Answer>),
    Operate(Op, usize),
    Pause(usize),
    Resume(usize),
    Reload(Staff),
    Crash,
}

const SCOPES: [&str; 4] = ["all", "channel:pub_a", "channel:staff", "type:road_closure"];

fn status() -> impl Strategy<Value = Status> {
    prop_oneof![4 => Just(Status::Actual), 2 => Just(Status::Exercise), 1 => Just(Status::Test)]
}

fn kind() -> impl Strategy<Value = Kind> {
    prop_oneof![3 => Just(Kind::Alert), 2 => Just(Kind::Update), 2 => Just(Kind::Cancel)]
}

fn msg() -> impl Strategy<Value = Msg> {
    let json = (
        (0..2u8, proptest::option::of(1..5u8), 0..4u8),
        (kind(), status(), prop::bool::weighted(0.3), prop::bool::weighted(0.3)),
    )
        .prop_map(|((incident, revision, type_code), (kind, status, signed, spanish))| Msg::Json {
            incident,
            revision,
            type_code,
            kind,
            status,
            signed,
            spanish,
        });
    let cap = (
        (0..2u8, kind(), status()),
        (any::<bool>(), prop::bool::weighted(0.3), prop::collection::vec(any::<usize>(), 0..3)),
    )
        .prop_map(|((sender, kind, status), (amber, bare, references))| Msg::Cap {
            sender,
            kind,
            status,
            amber,
            bare: bare && kind == Kind::Cancel,
            references,
        });
    let cad = (0..2u8, 0..2u8, prop::bool::weighted(0.3)).prop_map(|(incident, headline, closed)| Msg::Cad {
        incident,
        headline,
        closed,
    });
    prop_oneof![3 => json, 2 => cap, 1 => cad]
}

fn answer() -> impl Strategy<Value = Answer> {
    prop_oneof![
        Just(Answer::Posted),
        Just(Answer::Refused),
        Just(Answer::Failed),
        Just(Answer::Unavailable),
        Just(Answer::Lost)
    ]
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        2 => Just(Op::Approve),
        1 => Just(Op::Reject),
        2 => Just(Op::Retry),
        1 => Just(Op::Retract),
        1 => Just(Op::Correct)
    ]
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        10 => msg().prop_map(Step::Publish),
        1 => any::<usize>().prop_map(Step::Duplicate),
        3 => (0..CHANNELS.len(), prop::collection::vec(answer(), 1..3)).prop_map(|(c, a)| Step::Script(c, a)),
        3 => (op(), any::<usize>()).prop_map(|(o, n)| Step::Operate(o, n)),
        1 => (0..SCOPES.len()).prop_map(Step::Pause),
        1 => (0..SCOPES.len()).prop_map(Step::Resume),
        1 => prop_oneof![Just(Staff::Private), Just(Staff::Public), Just(Staff::Removed)].prop_map(Step::Reload),
        1 => Just(Step::Crash),
    ]
}

// ---------------------------------------------------------------- the world under test

/// What a config in force looked like: which channels exist and which are public.
type Channels = BTreeMap<&'static str, bool>;

struct World {
    dir: tempfile::TempDir,
    config: PathBuf,
    broker: SessionBroker,
    fakes: Vec<FakeWebhook>,
    app: Option<bullhorn::app::Running>,
    staff: Staff,
    /// The channels of each config put in force, with the newest attempt id read right
    /// after it took effect: an attempt later than `epochs[k].0` began under config `k`
    /// or a later one.
    epochs: Vec<(i64, Channels)>,
    /// Inner payloads of signed messages, by message index.
    inner: HashMap<usize, Vec<u8>>,
    /// The native JSON messages, by message index (a duplicate is told to the model too).
    json_msgs: HashMap<usize, JsonMsg>,
    /// CAP messages so far, per sender.
    cap_sent: [usize; 2],
    cap_keys: Vec<String>,
    published: usize,
    /// The independent model of native JSON incidents.
    json: JsonModel,
    http: reqwest::Client,
}

fn channels_of(staff: Staff) -> Channels {
    let mut c = Channels::new();
    c.insert("pub_a", true);
    c.insert("pub_b", true);
    match staff {
        Staff::Private => {
            c.insert("staff", false);
        }
        Staff::Public => {
            c.insert("staff", true);
        }
        Staff::Removed => {}
    }
    c
}

fn config_text(dir: &Path, broker: u16, fakes: &[FakeWebhook], staff: Staff) -> String {
    let notify = if staff == Staff::Private { "channels = [\"staff\"]\n" } else { "" };
    let mut text = format!(
        r#"[log]
level = "warn"
[mqtt]
url = "mqtt://127.0.0.1:{broker}"
protocol = "v311"
client_id = "model"
reconnect_min = "20ms"
reconnect_max = "100ms"
[[mqtt.subscribe]]
topic = "cad/open/events"
format = "json"
[[mqtt.subscribe]]
topic = "cad/signed/events"
format = "json"
require_signature = true
signing_key = "{SIGNING_KEY}"
[[mqtt.subscribe]]
topic = "ipaws/feed"
format = "cap"
[[mqtt.subscribe]]
topic = "cad/mapped/events"
format = "mapped"
types = {{ MVA = "road_closure" }}
[mqtt.subscribe.mapping]
id = "/incident"
type = "/type"
headline = "/headline"
status = "/status"
[store]
path = "{db}"
[admin]
listen = "127.0.0.1:0"
[delivery]
retry_base = "5ms"
retry_max = "40ms"
request_timeout = "300ms"
shutdown_grace = "1s"
[notify]
{notify}check_every = "20ms"
late_after = "1h"
[events.missing_child]
priority = "critical"
[events.road_closure]
priority = "normal"
[events.wanted]
priority = "high"
approval = "hold"
hold_for = "400ms"
after_hold = "publish"
[events.general]
priority = "normal"
"#,
        db = dir.join("bullhorn.db").display(),
    );
    for (i, name) in CHANNELS.iter().enumerate() {
        if *name == "staff" && staff == Staff::Removed {
            continue;
        }
        let public = !(*name == "staff" && staff == Staff::Private);
        text.push_str(&format!(
            "[channels.{name}]\nkind = \"webhook\"\nurl = \"{}\"\npublic = {public}\n",
            fakes[i].url
        ));
    }
    text
}

impl World {
    async fn new() -> World {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::create_dir_all(dir.path().join("templates")).expect("templates");
        std::fs::write(dir.path().join("templates/default.txt"), "{{ headline }}").expect("template");
        let broker = SessionBroker::start().await;
        let mut fakes = Vec::new();
        for _ in CHANNELS {
            fakes.push(FakeWebhook::start(Vec::new()).await);
        }
        let config = dir.path().join("bullhorn.toml");
        std::fs::write(&config, config_text(dir.path(), broker.port, &fakes, Staff::Private)).expect("config");
        let mut w = World {
            dir,
            config,
            broker,
            fakes,
            app: None,
            staff: Staff::Private,
            epochs: vec![(0, channels_of(Staff::Private))],
            inner: HashMap::new(),
            json_msgs: HashMap::new(),
            cap_sent: [0, 0],
            cap_keys: Vec::new(),
            published: 0,
            json: JsonModel::default(),
            http: bullhorn::channel::http::client().expect("client"),
        };
        w.start().await;
        w
    }

    async fn start(&mut self) {
        let config = bullhorn::config::load(&self.config).unwrap_or_else(|e| panic!("{e}"));
        let app = bullhorn::app::start(config).await.unwrap_or_else(|e| panic!("start: {e:#}"));
        self.app = Some(app);
    }

    fn db(&self) -> Connection {
        let c = Connection::open(self.dir.path().join("bullhorn.db")).expect("open store");
        c.busy_timeout(Duration::from_secs(5)).expect("busy");
        c
    }

    fn newest_attempt(&self) -> i64 {
        self.db().query_row("SELECT COALESCE(MAX(id), 0) FROM attempts", [], |r| r.get(0)).expect("max")
    }

    async fn api(&self, path: &str, body: serde_json::Value) -> u16 {
        let app = self.app.as_ref().expect("running");
        let token = std::fs::read_to_string(self.dir.path().join("admin-token")).expect("token");
        let url = format!("http://{}/api{path}", app.admin_addr().expect("admin"));
        match self.http.post(url).bearer_auth(token.trim()).json(&body).send().await {
            Ok(r) => r.status().as_u16(),
            Err(_) => 0,
        }
    }

    /// Publish `payload` on `topic`; signed subscriptions get the envelope.
    fn publish(&mut self, topic: &str, payload: String, signed: bool) -> usize {
        let wire = if signed {
            let key = bullhorn::config::PublisherKey(secrecy::SecretString::from(SIGNING_KEY));
            bullhorn::pipeline::signature::envelope_for(&key, &payload)
        } else {
            payload.clone()
        };
        let i = self.broker.publish(topic, wire.into_bytes());
        if signed {
            self.inner.insert(i, payload.into_bytes());
        }
        self.published += 1;
        i
    }

    async fn step(&mut self, step: &Step, n: usize) {
        match step {
            Step::Publish(Msg::Json { incident, revision, type_code, kind, status, signed, spanish }) => {
                let id = ["A", "B"][usize::from(*incident)];
                let event_type = ["missing_child", "road_closure", "wanted", "alien_landing"][usize::from(*type_code)];
                let msg_type = match kind {
                    Kind::Alert => "alert",
                    Kind::Update => "update",
                    Kind::Cancel => "cancel",
                };
                let mut v = json!({
                    "id": id, "type": event_type, "msg_type": msg_type, "status": status.json(),
                    "headline": format!("{id} {msg_type} {} step {n}", status.json()),
                });
                if let Some(r) = revision {
                    v["revision"] = json!(r);
                }
                if *spanish {
                    v["language"] = json!("en-US");
                    v["translations"] = json!([{ "language": "es-US", "headline": format!("{id} es step {n}") }]);
                }
                let payload = v.to_string();
                let topic = if *signed { "cad/signed/events" } else { "cad/open/events" };
                let m = JsonMsg {
                    id,
                    status: *status,
                    revision: *revision,
                    known_type: *type_code < 3,
                    kind: *kind,
                    trust: u8::from(*signed),
                    payload: payload.clone(),
                };
                self.json.message(m.clone());
                let i = self.publish(topic, payload, *signed);
                self.json_msgs.insert(i, m);
            }
            Step::Publish(Msg::Cad { incident, headline, closed }) => {
                let id = ["F-1", "F-2"][usize::from(*incident)];
                let text = ["Crash on SH-358", "SH-358 closed both ways"][usize::from(*headline)];
                let status = if *closed { "CLOSED" } else { "ACTIVE" };
                let payload =
                    json!({ "incident": id, "type": "MVA", "headline": text, "status": status, "step": n }).to_string();
                self.publish("cad/mapped/events", payload, false);
            }
            Step::Publish(Msg::Cap { sender, kind, status, amber, bare, references }) => {
                // Both senders number their messages alike, each its own from C0.
                let identifier = format!("C{}", self.cap_sent[usize::from(*sender)]);
                self.cap_sent[usize::from(*sender)] += 1;
                let sender = ["model@sheriff.example", "ops@county.example"][usize::from(*sender)];
                let sent = format!("2026-12-07T10:{:02}:{:02}-06:00", (n / 60) % 60, n % 60);
                let key = format!("{sender},{identifier},{sent}");
                let refs: Vec<&str> = if self.cap_keys.is_empty() {
                    Vec::new()
                } else {
                    let mut r: Vec<&str> =
                        references.iter().map(|i| self.cap_keys[i % self.cap_keys.len()].as_str()).collect();
                    r.dedup();
                    r
                };
                let references = if refs.is_empty() {
                    String::new()
                } else {
                    format!("<references>{}</references>", refs.join(" "))
                };
                let msg_type = match kind {
                    Kind::Alert => "Alert",
                    Kind::Update => "Update",
                    Kind::Cancel => "Cancel",
                };
                let code =
                    if *amber { "<eventCode><valueName>SAME</valueName><value>CAE</value></eventCode>" } else { "" };
                let info = if *bare {
                    String::new()
                } else {
                    format!(
                        "<info><category>Rescue</category><event>Child Abduction</event><urgency>Immediate</urgency>\
                         <severity>Severe</severity><certainty>Likely</certainty>{code}\
                         <headline>CAP {identifier} {msg_type} {}</headline></info>",
                        status.cap()
                    )
                };
                let payload = format!(
                    r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2"><identifier>{identifier}</identifier><sender>{sender}</sender><sent>{sent}</sent><status>{}</status><msgType>{msg_type}</msgType><scope>Public</scope>{references}{info}</alert>"#,
                    status.cap()
                );
                self.cap_keys.push(key);
                self.publish("ipaws/feed", payload, false);
            }
            Step::Duplicate(k) => {
                let messages = self.broker.messages();
                if messages.is_empty() {
                    return;
                }
                let i = messages.len() - 1 - (k % messages.len());
                let (topic, payload) = messages[i].clone();
                let j = self.broker.publish(&topic, payload);
                if let Some(inner) = self.inner.get(&i).cloned() {
                    self.inner.insert(j, inner);
                }
                if let Some(m) = self.json_msgs.get(&i).cloned() {
                    self.json.message(m.clone());
                    self.json_msgs.insert(j, m);
                }
            }
            Step::Script(c, answers) => {
                let replies = answers.iter().map(|a| match a {
                    Answer::Posted => Reply::ok(),
                    Answer::Refused => Reply::status(400, r#"{"error":"refused"}"#),
                    Answer::Failed => Reply::status(500, "oops"),
                    Answer::Unavailable => Reply::status(503, "down"),
                    Answer::Lost => Reply::Hang,
                });
                self.fakes[*c].script(replies);
            }
            Step::Operate(op, k) => {
                let ids: Vec<i64> = {
                    let db = self.db();
                    let mut stmt = db
                        .prepare("SELECT id FROM events WHERE format NOT IN ('system', 'admin') ORDER BY id")
                        .expect("prepare");
                    stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("ids")
                };
                if ids.is_empty() {
                    return;
                }
                let id = ids[k % ids.len()];
                let alert: String = url::form_urlencoded::byte_serialize(format!("#{id}").as_bytes()).collect();
                let (action, body) = match op {
                    Op::Approve => ("approve", json!({ "actor": "model" })),
                    Op::Reject => ("reject", json!({ "actor": "model", "reason": "model" })),
                    Op::Retry => ("retry", json!({ "actor": "model" })),
                    Op::Retract => ("retract", json!({ "actor": "model" })),
                    Op::Correct => ("correct", json!({ "actor": "model", "text": "corrected by the model" })),
                };
                let status = self.api(&format!("/alerts/{alert}/{action}"), body).await;
                if matches!(op, Op::Retract) && status == 200 {
                    let db = self.db();
                    let key: Option<String> = db
                        .query_row("SELECT incident_key FROM events WHERE id = ?1", [id], |r| r.get(0))
                        .optional()
                        .expect("incident");
                    if let Some(k) = key {
                        self.json.retracted(&k);
                    }
                }
            }
            Step::Pause(s) => {
                self.api("/pause", json!({ "scope": SCOPES[*s], "actor": "model", "reason": "model" })).await;
            }
            Step::Resume(s) => {
                self.api("/resume", json!({ "scope": SCOPES[*s], "actor": "model" })).await;
            }
            Step::Reload(staff) => {
                if *staff == self.staff {
                    return;
                }
                std::fs::write(&self.config, config_text(self.dir.path(), self.broker.port, &self.fakes, *staff))
                    .expect("config");
                let app = self.app.as_mut().expect("running");
                app.reload().unwrap_or_else(|e| panic!("reload: {e}"));
                self.staff = *staff;
                let hw = self.newest_attempt();
                self.epochs.push((hw, channels_of(*staff)));
            }
            Step::Crash => {
                if let Some(app) = self.app.take() {
                    app.crash().await;
                }
                self.start().await;
            }
        }
    }

    /// A summary that changes whenever anything happens.
    fn fingerprint(&self) -> (String, usize, usize, usize) {
        let db = self.db();
        let states: String = db
            .query_row(
                "SELECT COALESCE(group_concat(id || state, ','), '') || ':' ||
                        (SELECT COUNT(*) FROM events) || ':' || (SELECT COUNT(*) FROM audit) || ':' ||
                        (SELECT COUNT(*) FROM attempts WHERE finished_at IS NOT NULL)
                 FROM deliveries",
                [],
                |r| r.get(0),
            )
            .expect("fingerprint");
        let requests = self.fakes.iter().map(|f| f.requests().len()).sum();
        (states, requests, self.broker.acks().len(), self.broker.unacked())
    }

    /// Wait until nothing has changed for a while (nothing in flight, nothing
    /// unacknowledged), at most `max`.
    #[expect(clippy::print_stderr, reason = "BULLHORN_MODEL_DEBUG traces a run")]
    async fn settle(&self, max: Duration) {
        let deadline = tokio::time::Instant::now() + max;
        let mut last = None;
        let mut quiet = 0;
        loop {
            tokio::time::sleep(Duration::from_millis(15)).await;
            let fp = self.fingerprint();
            let busy = fp.3 > 0 || fp.0.contains("in_flight");
            if !busy && last.as_ref() == Some(&fp) {
                quiet += 1;
                if quiet >= 3 {
                    return;
                }
            } else {
                quiet = 0;
            }
            last = Some(fp);
            if tokio::time::Instant::now() >= deadline {
                if std::env::var_os("BULLHORN_MODEL_DEBUG").is_some() {
                    eprintln!("settle timed out: {last:?}");
                }
                return;
            }
        }
    }
}

// ---------------------------------------------------------------- the JSON model

#[derive(Debug, Clone)]
struct JsonMsg {
    id: &'static str,
    status: Status,
    revision: Option<u8>,
    known_type: bool,
    kind: Kind,
    trust: u8,
    payload: String,
}

#[derive(Debug, Default)]
struct JsonIncident {
    /// The trust of the source that holds it (the opener, or a more trusted one since).
    trust: u8,
    /// Its type has a rule (a follow-up with a type of its own nobody configured then
    /// takes the incident's).
    typed: bool,
    /// (trust, revision, cancels) of each message that took effect.
    effective: Vec<(u8, Option<u8>, bool)>,
    retracted: bool,
    closed: bool,
}

/// The rules for native JSON incidents, written here on their own: which incidents must
/// end up closed (cancelled or retracted) and which must not.
#[derive(Debug, Default)]
struct JsonModel {
    incidents: BTreeMap<String, JsonIncident>,
    keys: BTreeSet<String>,
}

impl JsonModel {
    fn key(id: &str, status: Status) -> String {
        match status {
            Status::Actual => format!("json:{id}"),
            other => format!("json:{}:{id}", other.json()),
        }
    }

    fn message(&mut self, m: JsonMsg) {
        let key = Self::key(m.id, m.status);
        // The same id and revision from a more trusted source is a message of its own.
        let dedupe = match m.revision {
            Some(r) => format!("{key}#r{r}#t{}", m.trust),
            None => format!("{key}#h{}", bullhorn::digest::sha256_hex(m.payload.as_bytes())),
        };
        if self.keys.contains(&dedupe) {
            return; // a duplicate: nothing happens
        }
        // Rejected (no rule for it or its incident, and not a cancel): not recorded, so
        // the same message sent again is not a duplicate.
        let typed = self.incidents.get(&key).is_some_and(|i| i.typed);
        if !m.known_type && !typed && m.kind != Kind::Cancel {
            return;
        }
        self.keys.insert(dedupe);
        let Some(inc) = self.incidents.get_mut(&key) else {
            let cancels = m.kind == Kind::Cancel;
            self.incidents.insert(
                key,
                JsonIncident {
                    trust: m.trust,
                    typed: m.known_type,
                    effective: vec![(m.trust, m.revision, cancels)],
                    retracted: false,
                    closed: cancels,
                },
            );
            return;
        };
        if m.trust < inc.trust || inc.retracted {
            return;
        }
        // What less trusted sources did binds no more trusted one.
        let binding: Vec<&(u8, Option<u8>, bool)> = inc.effective.iter().filter(|(t, _, _)| *t >= m.trust).collect();
        if binding.iter().any(|(_, _, cancels)| *cancels) {
            return;
        }
        if let (Some(r), Some(newest)) = (m.revision, binding.iter().filter_map(|(_, r, _)| *r).max())
            && r < newest
        {
            return;
        }
        let cancels = m.kind == Kind::Cancel;
        inc.effective.push((m.trust, m.revision, cancels));
        inc.trust = inc.trust.max(m.trust);
        inc.closed = cancels;
    }

    fn retracted(&mut self, key: &str) {
        if let Some(inc) = self.incidents.get_mut(key) {
            inc.retracted = true;
            inc.closed = true;
        }
    }
}

// ---------------------------------------------------------------- the invariants

fn class(status: &str) -> &'static str {
    if status == "actual" { "actual" } else { "practice" }
}

/// Whether `channel` was public under every config an attempt with id `attempt` may
/// have begun under (`None`: it did not exist under any).
fn public_throughout(epochs: &[(i64, Channels)], channel: &str, attempt: i64) -> Option<bool> {
    let k = epochs.iter().rposition(|(hw, _)| *hw < attempt).unwrap_or(0);
    let candidates = [Some(&epochs[k].1), epochs.get(k + 1).map(|(_, c)| c)];
    let known: Vec<bool> = candidates.into_iter().flatten().filter_map(|c| c.get(channel).copied()).collect();
    (!known.is_empty()).then(|| known.iter().all(|p| *p))
}

struct AttemptRow {
    id: i64,
    channel: String,
    audience: String,
    kind: String,
    priority: i64,
    event_type: String,
    event_id: i64,
    incident: String,
    superseded_by: Option<i64>,
    after_event: i64,
    after_audit: i64,
    format: String,
    status: String,
    started_at: i64,
    finished_at: Option<i64>,
}

/// The most requests a model channel has in flight at once (webhooks' default).
const WINDOW: usize = 8;

fn check(w: &World, end: bool) -> Result<(), String> {
    let db = w.db();
    let attempts: Vec<AttemptRow> = db
        .prepare(
            "SELECT a.id, a.channel, d.audience, d.kind, d.priority, e.event_type, e.id, e.incident_key,
                    e.superseded_by, COALESCE(a.after_event, 0), COALESCE(a.after_audit, 0), e.format, e.status,
                    a.started_at, a.finished_at
             FROM attempts a JOIN deliveries d ON d.id = a.delivery_id JOIN events e ON e.id = d.event_id
             ORDER BY a.id",
        )
        .and_then(|mut s| {
            s.query_map([], |r| {
                Ok(AttemptRow {
                    id: r.get(0)?,
                    channel: r.get(1)?,
                    audience: r.get(2)?,
                    kind: r.get(3)?,
                    priority: r.get(4)?,
                    event_type: r.get(5)?,
                    event_id: r.get(6)?,
                    incident: r.get(7)?,
                    superseded_by: r.get(8)?,
                    after_event: r.get(9)?,
                    after_audit: r.get(10)?,
                    format: r.get(11)?,
                    status: r.get(12)?,
                    started_at: r.get(13)?,
                    finished_at: r.get(14)?,
                })
            })?
            .collect()
        })
        .map_err(|e| e.to_string())?;
    let closed_by: HashMap<String, i64> = db
        .prepare("SELECT key, closed_by FROM incidents WHERE closed_by IS NOT NULL")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(|e| e.to_string())?;
    // Closed with a word: the channels that carried them are owed a cancellation.
    let owed: HashMap<String, i64> = db
        .prepare(
            "SELECT i.key, i.closed_by FROM incidents i JOIN events c ON c.id = i.closed_by
             WHERE i.closed_by IS NOT NULL AND c.silent = 0",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?.collect())
        .map_err(|e| e.to_string())?;
    let audit: Vec<(i64, String, String)> = db
        .prepare("SELECT id, action, target FROM audit WHERE action IN ('pause', 'resume') ORDER BY id")
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect())
        .map_err(|e| e.to_string())?;

    for a in &attempts {
        // I1: staff deliveries never begin on a channel public under every config in
        // force when it may have begun; nor does anything of a practice event or a notice.
        let staff_only = a.audience == "staff" || class(&a.status) == "practice" || a.format == "system";
        if staff_only && public_throughout(&w.epochs, &a.channel, a.id) == Some(true) {
            return Err(format!(
                "I1: attempt {} of a staff delivery (event {}) on public {}",
                a.id, a.event_id, a.channel
            ));
        }
        // I3: nothing of an alert or update begins after its incident closed, or after a
        // later message superseded its event.
        if matches!(a.kind.as_str(), "post" | "update") {
            if let Some(c) = closed_by.get(&a.incident)
                && *c <= a.after_event
            {
                return Err(format!(
                    "I3: attempt {} ({} of event {}) began after event {c} closed incident {}",
                    a.id, a.kind, a.event_id, a.incident
                ));
            }
            if let Some(s) = a.superseded_by
                && s <= a.after_event
            {
                return Err(format!(
                    "I3: attempt {} of event {} began after event {s} superseded it",
                    a.id, a.event_id
                ));
            }
        }
        // I5: no request but a retraction begins while a pause that covers it is in force.
        if a.priority >= 0 {
            let mut paused = BTreeSet::new();
            for (id, action, target) in audit.iter().filter(|(id, _, _)| *id <= a.after_audit) {
                let _ = id;
                if action == "pause" {
                    paused.insert(target.clone());
                } else {
                    paused.remove(target);
                }
            }
            let public = public_throughout(&w.epochs, &a.channel, a.id);
            let by_channel = paused.contains(&format!("channel:{}", a.channel));
            let by_public =
                public == Some(true) && (paused.contains("all") || paused.contains(&format!("type:{}", a.event_type)));
            if by_channel || by_public {
                return Err(format!("I5: attempt {} on {} began while paused: {paused:?}", a.id, a.channel));
            }
        }
    }

    // I8: on one channel, an incident's requests one after another: each begins once the
    // one before it ended (an attempt a crash left open ends when the restart resolves it,
    // before anything else begins).
    let mut last_of: HashMap<(&str, &str), &AttemptRow> = HashMap::new();
    for a in &attempts {
        if let Some(prev) = last_of.get(&(a.channel.as_str(), a.incident.as_str()))
            && prev.finished_at.is_none_or(|end| end > a.started_at)
        {
            return Err(format!(
                "I8: on {}, attempt {} of incident {} began at {} while attempt {} was in flight (ended {:?})",
                a.channel, a.id, a.incident, a.started_at, prev.id, prev.finished_at
            ));
        }
        last_of.insert((a.channel.as_str(), a.incident.as_str()), a);
    }
    // I9: at no instant more than the window in flight on one channel (an end at the
    // same millisecond as a start comes first).
    for channel in CHANNELS {
        let mut edges: Vec<(i64, i32)> = Vec::new();
        for a in attempts.iter().filter(|a| a.channel == channel) {
            edges.push((a.started_at, 1));
            if let Some(end) = a.finished_at {
                edges.push((end, -1));
            }
        }
        edges.sort_unstable();
        let mut open = 0;
        for (at, step) in edges {
            open += step;
            if usize::try_from(open).unwrap_or(0) > WINDOW {
                return Err(format!("I9: {open} requests in flight on {channel} at {at}"));
            }
        }
    }

    // I2: whatever stopped a delivery is of the delivery's status class, and at least as
    // trusted as the source of the delivery's own event (a more trusted source may stop
    // what a less trusted one queued: it takes the incident over); every event that took
    // effect on an incident is of its class.
    let stopped: Vec<(i64, String, String, i64, i64)> = db
        .prepare(
            "SELECT d.id, e.status, c.status, c.trust, e.trust
             FROM deliveries d JOIN events e ON e.id = d.event_id JOIN events c ON c.id = d.closed_by",
        )
        .and_then(|mut s| s.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)))?.collect())
        .map_err(|e| e.to_string())?;
    for (d, own, by, trust, own_trust) in stopped {
        if class(&own) != class(&by) || trust < own_trust {
            return Err(format!(
                "I2: delivery {d} ({own}, from a source of trust {own_trust}) stopped by a {by} event of trust {trust}"
            ));
        }
    }
    let foreign: Option<(i64, String)> = db
        .query_row(
            "SELECT e.id, e.incident_key FROM events e JOIN incidents i ON i.key = e.incident_key
             WHERE e.effect != 'none' AND (CASE WHEN e.status = 'actual' THEN 'actual' ELSE 'practice' END) != i.class
             LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()
        .map_err(|e| e.to_string())?;
    if let Some((e, k)) = foreign {
        return Err(format!("I2: event {e} took effect on {k}, an incident of the other class"));
    }

    // I6: acknowledged means recorded; acknowledgements in arrival order; commits follow
    // arrival order.
    let messages = w.broker.messages();
    let acks = w.broker.acks();
    let mut last: HashMap<u64, usize> = HashMap::new();
    for (conn, i) in &acks {
        if last.get(conn).is_some_and(|prev| *prev >= *i) {
            return Err(format!("I6: on connection {conn}, message {i} acknowledged after a later one"));
        }
        last.insert(*conn, *i);
    }
    let payload_of = |i: usize| w.inner.get(&i).cloned().unwrap_or_else(|| messages[i].1.clone());
    let mut copies: HashMap<Vec<u8>, usize> = HashMap::new();
    for i in 0..messages.len() {
        *copies.entry(payload_of(i)).or_default() += 1;
    }
    let mut first_event: Vec<(usize, i64)> = Vec::new();
    for i in w.broker.acked() {
        let payload = payload_of(i);
        let sha = bullhorn::digest::sha256_hex(&payload);
        let raw = bullhorn::digest::sha256_hex(&messages[i].1);
        let event: Option<i64> = db
            .query_row("SELECT MIN(id) FROM events WHERE payload_sha256 = ?1", [&sha], |r| r.get(0))
            .map_err(|e| e.to_string())?;
        let reject: bool = db
            .query_row("SELECT EXISTS (SELECT 1 FROM rejects WHERE payload_sha256 IN (?1, ?2))", [&raw, &sha], |r| {
                r.get(0)
            })
            .map_err(|e| e.to_string())?;
        match event {
            // A payload sent more than once may be refused first and taken later (its
            // incident opened meanwhile): only messages sent once say when they arrived.
            Some(id) if copies.get(&payload) == Some(&1) => first_event.push((i, id)),
            Some(_) => {}
            None if reject => {}
            None => return Err(format!("I6: message {i} was acknowledged but is neither an event nor a reject")),
        }
    }
    // Messages were committed in the order they arrived.
    let mut newest = 0;
    for (i, id) in first_event {
        if id < newest {
            return Err(format!("I6: message {i} committed as event {id}, before an earlier message's event {newest}"));
        }
        newest = id;
    }

    // I7: on each receiver, one webhook-id per delivery, and no delivery accepted twice
    // under different ids.
    for (c, fake) in w.fakes.iter().enumerate() {
        let mut ids: HashMap<i64, BTreeSet<String>> = HashMap::new();
        for r in fake.requests().iter().filter(|r| r.status == 0 || (200..300).contains(&r.status)) {
            let d = r.json()["data"]["delivery_id"].as_i64().unwrap_or(-1);
            ids.entry(d).or_default().insert(r.id());
        }
        if let Some((d, set)) = ids.iter().find(|(_, s)| s.len() > 1) {
            let bodies: Vec<String> = fake.requests().iter().map(|r| format!("{} {}", r.id(), r.json())).collect();
            return Err(format!("I7: delivery {d} posted on {} under ids {set:?}: {bodies:#?}", CHANNELS[c]));
        }
    }

    if end {
        // Nothing acknowledged was lost, and nothing is left unacknowledged.
        if w.broker.unacked() > 0 {
            return Err(format!("I6: {} messages never acknowledged", w.broker.unacked()));
        }
        // I4: every channel (still configured) that carried news of a closed incident
        // got its end, unless the platform refused it for good or the channel is public
        // now and the incident is for staff.
        let channels = &w.epochs.last().expect("epoch").1;
        for incident in owed.keys() {
            for (c, fake) in w.fakes.iter().enumerate() {
                let name = CHANNELS[c];
                let Some(public) = channels.get(name) else { continue };
                let mut news = false;
                let mut ended = false;
                let mut staff_only = false;
                for r in fake.requests().iter().filter(|r| r.status == 0 || (200..300).contains(&r.status)) {
                    let d = r.json()["data"]["delivery_id"].as_i64().unwrap_or(-1);
                    let row: Option<(String, String, String)> = db
                        .query_row(
                            "SELECT e.incident_key, d.kind, d.audience FROM deliveries d JOIN events e ON e.id = d.event_id
                             WHERE d.id = ?1",
                            [d],
                            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                        )
                        .optional()
                        .map_err(|e| e.to_string())?;
                    let Some((key, kind, audience)) = row else { continue };
                    if key != *incident {
                        continue;
                    }
                    staff_only |= audience == "staff";
                    match kind.as_str() {
                        "post" | "update" => news = true,
                        _ => ended = true,
                    }
                }
                if !news || ended || (staff_only && *public) {
                    continue;
                }
                let refused: bool = db
                    .query_row(
                        "SELECT EXISTS (SELECT 1 FROM deliveries d JOIN events e ON e.id = d.event_id
                                        WHERE e.incident_key = ?1 AND d.channel = ?2 AND d.kind IN ('cancel', 'retract')
                                          AND d.state = 'dead')",
                        rusqlite::params![incident, name],
                        |r| r.get(0),
                    )
                    .map_err(|e| e.to_string())?;
                if !refused {
                    return Err(format!("I4: {name} carried news of {incident}, closed, and got no cancellation"));
                }
            }
        }
        // The independent model of JSON incidents agrees on which ones closed.
        for (key, inc) in &w.json.incidents {
            let state: Option<String> = db
                .query_row("SELECT state FROM incidents WHERE key = ?1", [key], |r| r.get(0))
                .optional()
                .map_err(|e| e.to_string())?;
            let closed = state.as_deref().is_some_and(|s| s != "open");
            if closed != inc.closed {
                return Err(format!(
                    "model: incident {key} is {state:?} in the store, the model says closed={}",
                    inc.closed
                ));
            }
        }
    }
    Ok(())
}

// ---------------------------------------------------------------- running it

#[expect(clippy::print_stderr, reason = "BULLHORN_MODEL_DEBUG traces a run")]
async fn run(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let mut w = World::new().await;
    w.settle(Duration::from_secs(5)).await;
    let debug = std::env::var_os("BULLHORN_MODEL_DEBUG").is_some();
    for (n, s) in steps.iter().enumerate() {
        if debug {
            eprintln!("step {n}: {s:?}");
        }
        w.step(s, n).await;
        w.settle(Duration::from_secs(5)).await;
        check(&w, false).map_err(|e| TestCaseError::fail(format!("after step {n} ({s:?}): {e}")))?;
    }
    // The end: everything resumed, every answer given, one more restart to resolve what
    // was in flight; then all that should have happened has.
    for scope in SCOPES {
        w.api("/resume", json!({ "scope": scope, "actor": "model" })).await;
    }
    for f in &w.fakes {
        f.script(std::iter::empty());
    }
    w.settle(Duration::from_secs(10)).await;
    // Checked before and after a restart: the restart must not be what makes them hold.
    check(&w, true).map_err(|e| TestCaseError::fail(format!("at the end: {e}")))?;
    if let Some(app) = w.app.take() {
        app.crash().await;
    }
    w.start().await;
    w.settle(Duration::from_secs(15)).await;
    let result = check(&w, true).map_err(|e| TestCaseError::fail(format!("at the end, after a restart: {e}")));
    if let Some(app) = w.app.take() {
        app.stop().await;
    }
    result
}

fn env_number(name: &str, default: u32) -> u32 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

#[test]
fn the_lifecycle_rules_hold_over_generated_sequences() {
    let cases = env_number("BULLHORN_MODEL_CASES", 12);
    let longest = usize::try_from(env_number("BULLHORN_MODEL_STEPS", 24)).unwrap_or(24);
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
    let config = ProptestConfig { cases, max_shrink_iters: 64, failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = TestRunner::new(config);
    let result = runner.run(&prop::collection::vec(step(), 1..=longest), |steps| rt.block_on(run(steps)));
    if let Err(e) = result {
        panic!("{e}");
    }
}
