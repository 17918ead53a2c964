//! Bounded fuzzing (proptest) of what takes untrusted input: the decoders (JSON, CAP,
//! EIDO) and the renderer. Runs with every `cargo test`, a few hundred cases each; raise the count with
//! `PROPTEST_CASES=100000 cargo test --lib fuzz` for a longer hunt.
//!
//! Properties: nothing panics (the pipeline turns a panic into an `internal_error`
//! reject, so that kind must never appear); every post fits its platform; a hostile value
//! cannot mention, ping or format on any platform.

use bytes::Bytes;
use proptest::prelude::*;

use crate::config::tests::{MINIMAL, load_str};
use crate::event::{DecodeOptions, cap, eido, json};
use crate::lifecycle::DeliveryKind;
use crate::pipeline::record;
use crate::platform::Platform;
use crate::render::{Renderer, Target};
use crate::store::IngestRecord;

fn config() -> ProptestConfig {
    ProptestConfig { cases: 300, failure_persistence: None, ..ProptestConfig::default() }
}

/// Text a hostile or broken source might send: any Unicode, markup, mentions, template
/// syntax, control characters, very long runs.
fn hostile() -> impl Strategy<Value = String> {
    prop_oneof![
        any::<String>(),
        "\\PC{0,300}",
        prop::collection::vec(
            prop_oneof![
                Just("@everyone".to_owned()),
                Just("@here".to_owned()),
                Just("<!channel>".to_owned()),
                Just("<@123456>".to_owned()),
                Just("[click](https://evil.example)".to_owned()),
                Just("**bold** __u__ ~~s~~ ||spoiler|| `code`".to_owned()),
                Just("{{ agency.name }}{% for x in range(99999) %}".to_owned()),
                Just("# heading\n> quote\n- item".to_owned()),
                Just("👨‍👩‍👧‍👦".to_owned()),
                Just("e\u{301}".to_owned()),
                Just("https://sheriff.example/a_b-(c)".to_owned()),
                Just("see x.co, t.gov/a or http://a.io".to_owned()),
                Just("日本語テキスト".to_owned()),
                "\\PC{0,40}",
            ],
            0..30
        )
        .prop_map(|v| v.join(" ")),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn the_json_decoder_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = json::decode(&bytes);
    }

    #[test]
    fn the_json_decoder_never_panics_on_event_shaped_input(
        id in hostile(), t in "[a-z_]{0,10}|\\PC{0,10}", status in "actual|test|exercise|bogus|",
        headline in hostile(), description in hostile(), web in hostile(),
        revision in prop_oneof![Just(serde_json::Value::Null), any::<i64>().prop_map(serde_json::Value::from), Just(serde_json::json!("1"))],
        lat in any::<f64>(), fields in prop::collection::btree_map("\\PC{0,12}", hostile(), 0..5),
    ) {
        let v = serde_json::json!({
            "id": id, "type": t, "status": status, "headline": headline, "description": description,
            "web": web, "revision": revision, "location": { "lat": lat, "lon": 0.0 }, "fields": fields,
        });
        let _ = json::decode(v.to_string().as_bytes());
    }

    #[test]
    fn the_cap_decoder_never_panics_on_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = cap::decode(&bytes, &DecodeOptions::default());
    }

    #[test]
    fn the_cap_decoder_never_panics_on_cap_shaped_input(
        identifier in hostile(), sender in "\\PC{0,20}", sent in "2026-11-21T10:00:00-06:00|\\PC{0,25}",
        status in "Actual|Test|Exercise|bogus|", msg in "Alert|Update|Cancel|Ack|Error|bogus",
        scope in "Public|Private|Restricted|", refs in "\\PC{0,60}", code in "CAE|RMT|LEW|\\PC{0,5}",
        headline in hostile(), description in hostile(), area in hostile(), circle in "\\PC{0,30}",
        infos in 0usize..3, wrap in 0usize..3,
    ) {
        let esc = |s: &str| s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
        let info = format!(
            "<info><category>Rescue</category><event>e</event><urgency>Immediate</urgency><severity>Severe</severity>\
             <certainty>Likely</certainty><eventCode><valueName>SAME</valueName><value>{}</value></eventCode>\
             <headline>{}</headline><description>{}</description><area><areaDesc>{}</areaDesc><circle>{}</circle></area></info>",
            esc(&code), esc(&headline), esc(&description), esc(&area), esc(&circle)
        );
        let alert = format!(
            "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><identifier>{}</identifier><sender>{}</sender>\
             <sent>{}</sent><status>{status}</status><msgType>{msg}</msgType><scope>{scope}</scope>\
             <references>{}</references>{}</alert>",
            esc(&identifier), esc(&sender), esc(&sent), esc(&refs), info.repeat(infos)
        );
        let doc = match wrap {
            0 => alert,
            1 => format!("<feed xmlns=\"http://www.w3.org/2005/Atom\"><entry><content>{alert}</content></entry></feed>"),
            _ => format!("<rss><channel><item>{alert}</item></channel></rss>"),
        };
        let _ = cap::decode(doc.as_bytes(), &DecodeOptions::default());
    }

    #[test]
    fn the_eido_decoder_never_panics(
        bytes in prop::collection::vec(any::<u8>(), 0..1024),
        code in "ABDUCTNF|BARICADE|MVA|\\PC{0,8}", status in "Active|Closed|\\PC{0,8}",
        name in hostile(), place in hostile(), pidf in hostile(), as_array in any::<bool>(), envelope in any::<bool>(),
    ) {
        let _ = eido::decode(&bytes, &DecodeOptions::default());
        let incident = serde_json::json!({ "incidentTypeCommonRegistryText": code, "incidentStatusCommonRegistryText": [status] });
        let mut doc = serde_json::json!({
            "$id": "urn:emergency:uid:incidentid:1:x", "eidoVersion": "1.0",
            "incidentComponent": if as_array { serde_json::json!([incident]) } else { incident },
            "personComponent": [{ "personIncidentRoleRegistryText": ["Victim"], "ncPersonComponent": { "nc:PersonFullName": name } }],
            "locationComponent": [{ "locationTypeDescriptionRegistryText": "CurrentIncident", "locationDescriptionText": place,
                                    "locationByValue": pidf }],
        });
        if envelope {
            doc = serde_json::json!({ "event": { "notification": [doc] } });
        }
        let _ = eido::decode(doc.to_string().as_bytes(), &DecodeOptions::default());
    }

    #[test]
    fn the_pipeline_turns_any_input_into_a_record_without_a_panic(
        payload in prop::collection::vec(any::<u8>(), 0..1024), topic in "\\PC{0,30}",
    ) {
        let (_d, c) = load_str(MINIMAL);
        let r = Renderer::load(&c).expect("templates");
        let rec = record(&c, &r, &topic, &Bytes::from(payload), jiff::Timestamp::now(), &crate::lifecycle::NothingKnown);
        if let IngestRecord::Reject(reject) = rec {
            prop_assert_ne!(reject.kind, "internal_error", "{}", reject.reason);
        }
    }

    #[test]
    fn x_length_never_panics_and_the_fallback_never_undercounts(text in hostile()) {
        let counted = crate::render::length::x_weighted_length(&text);
        prop_assert!(crate::render::length::x_conservative_length(&text) >= counted);
    }

    #[test]
    fn hostile_values_render_safely_and_fit_on_every_platform(
        headline in hostile(), description in hostile(), name in hostile(),
    ) {
        let (_d, c) = load_str(MINIMAL);
        std::fs::create_dir_all(c.templates_dir.join("missing_child")).expect("dir");
        std::fs::write(
            c.templates_dir.join("missing_child/default.txt"),
            "ALERT: {{ headline }}\n{{ description }}\nName: {{ child_name }}\nCall 911.",
        ).expect("template");
        let r = Renderer::load(&c).expect("templates");
        let v = serde_json::json!({
            "id": "F-1", "type": "missing_child", "status": "actual",
            "headline": if headline.trim().is_empty() { "x".to_owned() } else { headline.chars().take(400).collect() },
            "description": description, "fields": { "child_name": name },
        });
        // Inputs the decoder refuses never reach a template.
        let Ok(event) = json::decode(v.to_string().as_bytes()) else { return Ok(()) };
        let rule = &c.events["missing_child"];
        for &p in Platform::ALL {
            let out = r.render_for(rule, &Target::platform(p), &event, DeliveryKind::Post, None);
            prop_assert!(out.length.fits, "{p}: {}", out.length);
            if p.profile().mentions {
                prop_assert!(!out.text.contains("@everyone") && !out.text.contains("@here"), "{p}: {}", out.text);
            }
            if p == Platform::Slack {
                prop_assert!(!out.text.contains("<!") && !out.text.contains("<@"), "{}", out.text);
            }
            if p == Platform::Discord {
                let masked = out.text.match_indices("](").any(|(i, _)| !out.text[..i].ends_with('\\'));
                prop_assert!(!masked, "an unescaped masked link on Discord: {}", out.text);
            }
        }
    }
}
