//! A CAD's own JSON, read through a mapping in the subscription's config: where each
//! field is (RFC 6901 JSON pointers) and which of the CAD's codes is which event type.
//! So an agency integrates a CAD with no code change:
//!
//! ```toml
//! [[mqtt.subscribe]]
//! topic = "chesco/cad/official_summary"
//! format = "mapped"
//! types = { "MVA" = "road_closure", "STRUCTURE FIRE" = "evacuation" }
//! [mqtt.subscribe.mapping]
//! id = "/incident_number"
//! type = "/type"
//! location = "/location"
//! area = "/municipality"
//! sent = "/timestamp"
//! status = "/status"
//! fields = { units = "/units" }
//! ```
//!
//! Like an EIDO it is CAD data: a snapshot of the incident (with an `id`; without one
//! every message is its own incident), held for approval unless the rule says otherwise,
//! addresses to the block unless `exact_address`, never AMBER wording, and a code nobody
//! mapped is recorded and not posted.

use std::collections::BTreeMap;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;

use super::types::{block_level, label, normalise};
use super::{DecodeOptions, Event, Format, Lifecycle, Location, Reject, RejectKind};

/// Unknown keys are reported by the config loader (which sees them all at once).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct Mapping {
    /// The incident's id; without it each message is its own incident.
    #[serde(default)]
    pub id: Option<String>,
    /// The CAD's incident code, looked up in the subscription's `types`.
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub headline: Option<String>,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub instruction: Option<String>,
    #[serde(default)]
    pub area: Option<String>,
    /// The incident's address or place, as text.
    #[serde(default)]
    pub location: Option<String>,
    #[serde(default)]
    pub lat: Option<String>,
    #[serde(default)]
    pub lon: Option<String>,
    #[serde(default)]
    pub sent: Option<String>,
    #[serde(default)]
    pub expires: Option<String>,
    #[serde(default)]
    pub web: Option<String>,
    #[serde(default)]
    pub contact: Option<String>,
    /// The incident's status; one of `closed_values` closes it.
    #[serde(default)]
    pub status: Option<String>,
    #[serde(default = "closed_values")]
    pub closed_values: Vec<String>,
    /// More values for templates: name → pointer.
    #[serde(default)]
    pub fields: BTreeMap<String, String>,
    /// Post the address as the CAD has it, not to the block.
    #[serde(default)]
    pub exact_address: bool,
}

fn closed_values() -> Vec<String> {
    ["closed", "cancelled", "canceled", "cleared"].map(str::to_owned).to_vec()
}

impl Mapping {
    /// Every pointer with its key, for validating the config.
    pub fn pointers(&self) -> Vec<(String, &str)> {
        let mut out: Vec<(String, &str)> = vec![("type".to_owned(), self.event_type.as_str())];
        for (k, v) in [
            ("id", &self.id),
            ("headline", &self.headline),
            ("description", &self.description),
            ("instruction", &self.instruction),
            ("area", &self.area),
            ("location", &self.location),
            ("lat", &self.lat),
            ("lon", &self.lon),
            ("sent", &self.sent),
            ("expires", &self.expires),
            ("web", &self.web),
            ("contact", &self.contact),
            ("status", &self.status),
        ] {
            if let Some(p) = v {
                out.push((k.to_owned(), p.as_str()));
            }
        }
        out.extend(self.fields.iter().map(|(k, v)| (format!("fields.{k}"), v.as_str())));
        out
    }
}

/// A JSON pointer is empty or starts with `/`.
pub fn valid_pointer(p: &str) -> bool {
    p.is_empty() || p.starts_with('/')
}

/// The value at `pointer` as text (a string, or a number or bool written out).
fn text(v: &Value, pointer: Option<&String>) -> Option<String> {
    match v.pointer(pointer?)? {
        Value::String(s) => Some(s.trim().to_owned()).filter(|s| !s.is_empty()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    }
}

/// Decode one message with the subscription's mapping.
pub fn decode(payload: &[u8], options: &DecodeOptions) -> Result<Event, Reject> {
    let Some(m) = &options.mapping else {
        return Err(Reject::new(RejectKind::Internal, "a mapped subscription without a mapping"));
    };
    let text_payload = super::utf8(payload)?;
    let v: Value = serde_json::from_str(text_payload)
        .map_err(|e| Reject::new(RejectKind::Malformed, format!("malformed JSON: {e}")))?;
    let Some(code) = text(&v, Some(&m.event_type)) else {
        return Err(Reject::new(RejectKind::Invalid, format!("no incident code at {}", m.event_type)));
    };
    // Without an id (not mapped, or not in this message) the message is its own incident.
    let given_id = m.id.as_ref().and_then(|p| text(&v, Some(p)));
    let snapshot = given_id.is_some();
    let id = given_id.unwrap_or_else(|| format!("h{}", &crate::digest::sha256_hex(payload)[..24]));
    let event_type = options.types.get(&code).or_else(|| {
        let n = normalise(&code);
        options.types.iter().find(|(k, _)| normalise(k) == n).map(|(_, t)| t)
    });
    let Some(event_type) = event_type.cloned() else {
        let mut e = Event::empty(Format::Mapped, &id);
        e.ignored =
            Some(format!("CAD code {code:?} is not mapped to an event type (add it to the subscription's types)"));
        return Ok(e);
    };
    let status = text(&v, m.status.as_ref());
    let closed = status.as_ref().is_some_and(|s| m.closed_values.iter().any(|c| c.eq_ignore_ascii_case(s)));
    let time = |p: &Option<String>| text(&v, p.as_ref()).and_then(|t| t.parse::<Timestamp>().ok());
    // An expiry that cannot be read is not "never expires": the message is refused, so
    // nothing past its time is posted because its CAD wrote the time some other way.
    let expires = match text(&v, m.expires.as_ref()) {
        None => None,
        Some(t) => Some(t.parse::<Timestamp>().map_err(|e| {
            Reject::new(
                RejectKind::Invalid,
                format!(
                    "expires {t:?} (at {}) is not a date and time with an offset (RFC 3339): {e}",
                    m.expires.as_deref().unwrap_or("")
                ),
            )
        })?),
    };
    let coordinate = |p: &Option<String>| -> Option<f64> {
        match v.pointer(p.as_ref()?)? {
            Value::Number(n) => n.as_f64(),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }
    };
    let place = text(&v, m.location.as_ref()).map(|t| if m.exact_address { t } else { block_level(&t) });
    let (lat, lon) = (coordinate(&m.lat), coordinate(&m.lon));
    let location = (place.is_some() || lat.is_some()).then_some(Location { text: place, lat, lon });
    let mut fields = serde_json::Map::new();
    fields.insert("cad_code".to_owned(), code.clone().into());
    if let Some(s) = &status {
        fields.insert("cad_status".to_owned(), s.clone().into());
    }
    for (name, p) in &m.fields {
        if let Some(x) = v.pointer(p) {
            fields.insert(name.clone(), x.clone());
        }
    }
    fields.insert("amber".to_owned(), false.into());
    let mut e = Event::empty(Format::Mapped, &id);
    e.headline = text(&v, m.headline.as_ref()).unwrap_or_else(|| label(&event_type).to_owned());
    e.event_type = event_type;
    e.sent = time(&m.sent);
    e.expires = expires;
    e.description = text(&v, m.description.as_ref());
    e.instruction = text(&v, m.instruction.as_ref());
    e.area = text(&v, m.area.as_ref());
    e.location = location;
    e.web = text(&v, m.web.as_ref());
    e.contact = text(&v, m.contact.as_ref());
    e.fields = fields;
    e.lifecycle = Lifecycle { message_key: None, references: Vec::new(), snapshot, closed };
    Ok(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options() -> DecodeOptions {
        let mapping: Mapping = serde_json::from_value(serde_json::json!({
            "id": "/incident", "type": "/type", "location": "/location", "area": "/municipality",
            "sent": "/timestamp", "status": "/status", "fields": { "units": "/units" }
        }))
        .expect("mapping");
        let mut types = BTreeMap::new();
        types.insert("MVA".to_owned(), "road_closure".to_owned());
        DecodeOptions { types, mapping: Some(mapping) }
    }

    #[test]
    fn a_mapped_cad_message() {
        let payload = br#"{"incident":"F25-0142","timestamp":"2025-01-21T19:43:00-05:00","type":"mva","location":"1234 LOCUST ST",
            "municipality":"West Chester Borough","units":["45-1","45-2"],"status":"Active"}"#;
        let e = decode(payload, &options()).expect("decode");
        assert_eq!(e.event_type, "road_closure", "codes match without case");
        assert_eq!(e.id, "F25-0142");
        assert_eq!(e.headline, "Traffic incident");
        assert_eq!(e.location.and_then(|l| l.text).as_deref(), Some("1200 block of LOCUST ST"));
        assert_eq!(e.area.as_deref(), Some("West Chester Borough"));
        assert_eq!(e.fields["units"], serde_json::json!(["45-1", "45-2"]));
        assert!(e.lifecycle.snapshot && !e.lifecycle.closed);
        assert!(e.sent.is_some());
    }

    #[test]
    fn an_unreadable_expires_is_refused_not_taken_as_never_expiring() {
        let mut o = options();
        if let Some(m) = o.mapping.as_mut() {
            m.expires = Some("/until".to_owned());
        }
        let bad = br#"{"incident":"F3","type":"MVA","until":"tomorrow 5pm"}"#;
        let r = decode(bad, &o).expect_err("refused");
        assert!(r.reason.contains("expires \"tomorrow 5pm\"") && r.reason.contains("/until"), "{r}");
        let good = br#"{"incident":"F3","type":"MVA","until":"2026-11-21T17:00:00-06:00"}"#;
        assert!(decode(good, &o).expect("decode").expires.is_some());
        let none = br#"{"incident":"F3","type":"MVA"}"#;
        assert!(decode(none, &o).expect("decode").expires.is_none(), "absent is fine");
    }

    #[test]
    fn closed_unmapped_and_broken() {
        let closed = br#"{"incident":"F1","type":"MVA","status":"CLOSED"}"#;
        assert!(decode(closed, &options()).expect("decode").lifecycle.closed);
        let medical = br#"{"incident":"F2","type":"MEDICAL"}"#;
        assert!(decode(medical, &options()).expect("decode").ignored.is_some_and(|r| r.contains("MEDICAL")));
        assert!(decode(br#"{"incident":"F3"}"#, &options()).is_err(), "no code");
        let no_id = decode(br#"{"type":"MVA"}"#, &options()).expect("decode");
        assert!(!no_id.lifecycle.snapshot && no_id.id.starts_with('h'), "its own incident");
        assert!(decode(b"{", &options()).is_err());
    }
}
