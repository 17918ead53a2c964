//! Bounded fuzzing (proptest) of what takes untrusted input: the decoders and the
//! renderer. Runs with every `cargo test`, a few hundred cases each; raise the count with
//! `PROPTEST_CASES=100000 cargo test --lib fuzz` for a longer hunt.
//!
//! Properties: nothing panics (the pipeline turns a panic into an `internal_error`
//! reject, so that kind must never appear); every post fits its platform; a hostile value
//! cannot mention, ping or format on any platform.

use bytes::Bytes;
use proptest::prelude::*;

use crate::config::tests::{MINIMAL, load_str};
use crate::event::json;
use crate::ingest::pipeline::prepare;
use crate::render::platform::Platform;
use crate::render::{Renderer, Target};
use crate::route::DeliveryKind;
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
    fn the_pipeline_turns_any_input_into_a_record_without_a_panic(
        payload in prop::collection::vec(any::<u8>(), 0..1024), topic in "\\PC{0,30}",
    ) {
        let (_d, c) = load_str(MINIMAL);
        let r = Renderer::load(&c).expect("templates");
        let rec = prepare(&c, &r, &topic, &Bytes::from(payload), jiff::Timestamp::now());
        if let IngestRecord::Reject(reject) = rec {
            prop_assert_ne!(reject.kind, "internal_error", "{}", reject.reason);
        }
    }

    #[test]
    fn x_length_never_panics_and_the_fallback_never_undercounts(text in hostile()) {
        let counted = crate::render::platform::x_weighted_length(&text);
        prop_assert!(crate::render::platform::x_conservative_length(&text) >= counted);
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
        for p in Platform::ALL {
            let out = r.render_for(rule, &Target::platform(p), &event, DeliveryKind::Post, None);
            prop_assert!(out.length.fits, "{p}: {}", out.length);
            if p.has_mentions() {
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
