//! bullhorn's native JSON event (SPEC 2.2; the schema is `docs/event.schema.json`): what a
//! dispatcher's console or an integration publishes on purpose. Strict: unknown keys are
//! refused (a typo like `"headlne"` must not silently drop the headline) and every
//! problem with the values is reported together.

use base64::Engine as _;
use jiff::Timestamp;
use serde::Deserialize;

use super::{Event, Format, Location, Media, MsgType, Reject, RejectKind, Status, Translation};

/// Longest accepted `id`.
const MAX_ID: usize = 256;
/// Longest accepted headline, in characters.
const MAX_HEADLINE: usize = 500;
/// Longest accepted free-text field, in characters.
const MAX_TEXT: usize = 10_000;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Native {
    id: String,
    #[serde(default)]
    revision: Option<u64>,
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    msg_type: MsgType,
    status: Status,
    #[serde(default)]
    sent: Option<Timestamp>,
    #[serde(default)]
    expires: Option<Timestamp>,
    headline: String,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    instruction: Option<String>,
    #[serde(default)]
    area: Option<String>,
    #[serde(default)]
    location: Option<Location>,
    #[serde(default)]
    web: Option<String>,
    #[serde(default)]
    contact: Option<String>,
    #[serde(default)]
    language: Option<String>,
    #[serde(default)]
    media: Option<OneOrMany<Media>>,
    #[serde(default)]
    fields: serde_json::Map<String, serde_json::Value>,
    #[serde(default)]
    translations: Vec<Translation>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    // Many first: serde reads a struct from a sequence too, so `[]` would be one empty item.
    Many(Vec<T>),
    One(T),
}

/// Decode one native JSON event.
pub fn decode(payload: &[u8]) -> Result<Event, Reject> {
    let text = super::utf8(payload)?;
    let native: Native = serde_json::from_str(text).map_err(|e| {
        let kind = match e.classify() {
            serde_json::error::Category::Data => RejectKind::Invalid,
            _ => RejectKind::Malformed,
        };
        let what = if kind == RejectKind::Malformed { "malformed JSON" } else { "not a bullhorn event" };
        Reject::new(kind, format!("{what}: {e}"))
    })?;
    let event = Event {
        format: Format::Json,
        id: native.id,
        revision: native.revision,
        event_type: native.event_type,
        msg_type: native.msg_type,
        status: native.status,
        sent: native.sent,
        expires: native.expires,
        headline: native.headline.trim().to_owned(),
        description: non_empty(native.description),
        instruction: non_empty(native.instruction),
        area: non_empty(native.area),
        location: native.location,
        web: non_empty(native.web),
        contact: non_empty(native.contact),
        language: non_empty(native.language),
        media: match native.media {
            None => Vec::new(),
            Some(OneOrMany::One(m)) => vec![m],
            Some(OneOrMany::Many(v)) => v,
        },
        fields: native.fields,
        translations: native.translations,
        lifecycle: super::Lifecycle::default(),
        restricted: None,
        ignored: None,
    };
    let mut event = event;
    // A native missing-child event is published on purpose: AMBER wording unless it says
    // `"amber": false` (a missing-child case that is not an AMBER activation).
    if event.event_type == "missing_child" && !event.fields.contains_key("amber") {
        event.fields.insert("amber".to_owned(), true.into());
    }
    let problems = check(&event);
    if problems.is_empty() { Ok(event) } else { Err(Reject::new(RejectKind::Invalid, problems.join("; "))) }
}

fn non_empty(s: Option<String>) -> Option<String> {
    s.map(|s| s.trim().to_owned()).filter(|s| !s.is_empty())
}

/// Every problem with the values, in field order.
fn check(e: &Event) -> Vec<String> {
    let mut p = Vec::new();
    if e.id.trim().is_empty() {
        p.push("id: must not be empty".to_owned());
    } else if e.id.chars().count() > MAX_ID || e.id.chars().any(char::is_control) {
        p.push(format!("id: at most {MAX_ID} characters, no control characters"));
    }
    if !super::valid_type_name(&e.event_type) {
        p.push(format!("type: {:?} is not an event type name (lowercase letters, digits, _)", truncate(&e.event_type)));
    }
    if e.headline.is_empty() {
        p.push("headline: must not be empty".to_owned());
    }
    let texts = [
        ("headline", Some(&e.headline), MAX_HEADLINE),
        ("description", e.description.as_ref(), MAX_TEXT),
        ("instruction", e.instruction.as_ref(), MAX_TEXT),
        ("area", e.area.as_ref(), MAX_TEXT),
        ("web", e.web.as_ref(), 2048),
        ("contact", e.contact.as_ref(), MAX_TEXT),
        ("language", e.language.as_ref(), 35),
        ("location.text", e.location.as_ref().and_then(|l| l.text.as_ref()), MAX_TEXT),
    ];
    for (name, value, max) in texts {
        if let Some(v) = value {
            if v.chars().count() > max {
                p.push(format!("{name}: longer than {max} characters"));
            }
            if v.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
                p.push(format!("{name}: contains control characters"));
            }
        }
    }
    if let (Some(sent), Some(expires)) = (e.sent, e.expires)
        && expires <= sent
    {
        p.push("expires: must be after sent".to_owned());
    }
    if let Some(loc) = &e.location {
        match (loc.lat, loc.lon) {
            (Some(lat), Some(lon)) => {
                if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
                    p.push("location: lat must be within ±90 and lon within ±180".to_owned());
                }
            }
            (None, None) => {}
            _ => p.push("location: give both lat and lon, or neither".to_owned()),
        }
    }
    if let Some(web) = &e.web
        && !is_http_url(web)
    {
        p.push("web: must be an http:// or https:// URL".to_owned());
    }
    if !e.translations.is_empty() && e.language.is_none() {
        p.push("language: required when translations are given (the language of the main texts)".to_owned());
    }
    for (i, t) in e.translations.iter().enumerate() {
        if !super::valid_language(&t.language) {
            p.push(format!("translations[{i}].language: {:?} is not a language tag", truncate(&t.language)));
        } else if e.language.as_deref() == Some(t.language.as_str())
            || e.translations[..i].iter().any(|o| o.language == t.language)
        {
            p.push(format!("translations[{i}].language: {} is given twice", t.language));
        }
        if t.headline.trim().is_empty() {
            p.push(format!("translations[{i}].headline: must not be empty"));
        }
        let texts = [
            ("headline", Some(&t.headline), MAX_HEADLINE),
            ("description", t.description.as_ref(), MAX_TEXT),
            ("instruction", t.instruction.as_ref(), MAX_TEXT),
            ("area", t.area.as_ref(), MAX_TEXT),
            ("contact", t.contact.as_ref(), MAX_TEXT),
            ("web", t.web.as_ref(), 2048),
        ];
        for (name, value, max) in texts {
            if let Some(v) = value
                && (v.chars().count() > max || v.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')))
            {
                p.push(format!("translations[{i}].{name}: longer than {max} characters or has control characters"));
            }
        }
        if t.web.as_ref().is_some_and(|w| !is_http_url(w)) {
            p.push(format!("translations[{i}].web: must be an http:// or https:// URL"));
        }
    }
    for (i, m) in e.media.iter().enumerate() {
        match (&m.url, &m.data) {
            (Some(url), None) if !is_http_url(url) => p.push(format!("media[{i}].url: must be an http(s) URL")),
            (Some(_), None) => {}
            (None, Some(data)) => {
                if base64::engine::general_purpose::STANDARD.decode(data.trim()).is_err() {
                    p.push(format!("media[{i}].data: not valid base64"));
                }
            }
            _ => p.push(format!("media[{i}]: give exactly one of url or data")),
        }
    }
    p
}

fn is_http_url(s: &str) -> bool {
    url::Url::parse(s).is_ok_and(|u| matches!(u.scheme(), "http" | "https") && u.host().is_some())
}

/// A hostile value quoted back in an error stays short.
fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn amber() -> serde_json::Value {
        serde_json::json!({
            "id": "RCSO-2026-1121-0001",
            "revision": 1,
            "type": "missing_child",
            "msg_type": "alert",
            "status": "actual",
            "sent": "2026-11-21T03:00:00-06:00",
            "expires": "2026-11-22T03:00:00-06:00",
            "headline": "AMBER Alert: Sofia Ramirez, 6",
            "description": "Last seen at Lakeview Park.",
            "location": { "text": "Lakeview Park", "lat": 27.8, "lon": -97.4 },
            "web": "https://sheriff.example/amber",
            "fields": { "child_name": "Sofia Ramirez", "plate": "TX ABC-1234" }
        })
    }

    fn decode_value(v: &serde_json::Value) -> Result<Event, Reject> {
        decode(v.to_string().as_bytes())
    }

    #[test]
    fn decodes_a_complete_event() {
        let e = decode_value(&amber()).expect("valid");
        assert_eq!(e.id, "RCSO-2026-1121-0001");
        assert_eq!(e.revision, Some(1));
        assert_eq!(e.event_type, "missing_child");
        assert_eq!(e.msg_type, MsgType::Alert);
        assert_eq!(e.status, Status::Actual);
        assert_eq!(e.fields["plate"], "TX ABC-1234");
        assert_eq!(e.sent, Some("2026-11-21T09:00:00Z".parse().expect("ts")));
    }

    #[test]
    fn status_is_required() {
        let mut v = amber();
        v.as_object_mut().map(|o| o.remove("status"));
        let r = decode_value(&v).expect_err("no status");
        assert_eq!(r.kind, RejectKind::Invalid);
        assert!(r.reason.contains("status"), "{}", r.reason);
    }

    #[test]
    fn unknown_keys_are_refused_by_name() {
        let mut v = amber();
        v["headlne"] = "typo".into();
        let r = decode_value(&v).expect_err("typo");
        assert!(r.reason.contains("headlne"), "{}", r.reason);
    }

    #[test]
    fn malformed_and_non_utf8_are_told_apart() {
        let r = decode(b"{\"id\": ").expect_err("truncated");
        assert_eq!(r.kind, RejectKind::Malformed);
        let r = decode(b"{\"id\": \"\xff\xfe\"}").expect_err("bad utf-8");
        assert_eq!(r.kind, RejectKind::InvalidUtf8);
        assert!(r.reason.contains("byte 8"), "{}", r.reason);
    }

    #[test]
    fn every_value_problem_is_reported_together() {
        let mut v = amber();
        v["headline"] = " ".into();
        v["web"] = "javascript:alert(1)".into();
        v["expires"] = "2026-11-20T00:00:00Z".into();
        v["location"] = serde_json::json!({ "lat": 95.0 });
        let r = decode_value(&v).expect_err("bad values");
        for needle in ["headline", "web", "expires", "location"] {
            assert!(r.reason.contains(needle), "{needle} missing from {}", r.reason);
        }
    }

    #[test]
    fn control_characters_and_bad_type_names_are_refused() {
        let mut v = amber();
        v["description"] = "a\u{0007}b".into();
        v["type"] = "Missing Child".into();
        let r = decode_value(&v).expect_err("bad");
        assert!(r.reason.contains("description: contains control"), "{}", r.reason);
        assert!(r.reason.contains("type:"), "{}", r.reason);
    }

    /// `docs/event.schema.json` and this decoder describe the same event.
    #[test]
    fn the_published_schema_matches_the_decoder() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/event.schema.json");
        let schema: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(path).expect("schema")).expect("json");
        let mut documented: Vec<&str> =
            schema["properties"].as_object().expect("properties").keys().map(String::as_str).collect();
        documented.sort_unstable();

        // serde names every field it knows when it meets an unknown one.
        let err = decode(br#"{"zz_unknown": 1}"#).expect_err("unknown key");
        let listed = err.reason.split("expected one of").nth(1).expect("field list");
        let listed = listed.split(" at line").next().expect("list");
        let mut known: Vec<&str> = listed
            .split(',')
            .map(|s| s.trim().trim_matches(|c: char| c == '`' || !c.is_ascii_graphic()))
            .filter(|s| !s.is_empty())
            .collect();
        known.sort_unstable();
        assert_eq!(known, documented);

        let example = &schema["examples"][0];
        decode_value(example).expect("the schema's example decodes");
        for key in schema["required"].as_array().expect("required") {
            let mut v = example.clone();
            v.as_object_mut().map(|o| o.remove(key.as_str().expect("name")));
            assert!(decode_value(&v).is_err(), "{key} is documented as required");
        }
    }

    #[test]
    fn media_takes_one_or_many_with_url_or_data() {
        let mut v = amber();
        v["media"] = serde_json::json!({ "url": "https://photos.example/1.jpg", "alt": "Photo of Sofia" });
        assert_eq!(decode_value(&v).expect("one").media.len(), 1);
        v["media"] = serde_json::json!([{ "data": "aGVsbG8=" }, { "url": "https://p.example/2.jpg" }]);
        assert_eq!(decode_value(&v).expect("many").media.len(), 2);
        v["media"] = serde_json::json!({ "data": "%%%" });
        assert!(decode_value(&v).is_err());
        v["media"] = serde_json::json!([]);
        assert!(decode_value(&v).expect("none").media.is_empty(), "an empty list is no image, not an empty one");
    }
}
