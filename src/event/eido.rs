//! NENA EIDO JSON (NENA-STA-021), bare or wrapped in a NENA-STA-024 `event` envelope.
//!
//! An EIDO is a CAD incident's whole state, not an alert: the event built from it is a
//! snapshot (the store decides whether it is new, an update, or no material change),
//! its rule holds for a person's approval unless it says otherwise, and only what a
//! public post may say is taken from it:
//!
//! - type: `incidentTypeCommonRegistryText` through the type table (ABDUCTF/ABDUCTNF →
//!   missing_child, BARICADE → barricaded_suspect, THAZ/MVA → road_closure, ...); an
//!   unmapped type is recorded and not posted. AMBER wording never comes from here.
//! - headline: a plain label for the type; the CAD's own nature text stays in
//!   `fields.internal_type`, out of posts unless the rule's allowlist names it.
//! - location: the incident's location (never the caller's), to the block
//!   ("1200 block of Main St"); coordinates only as `fields.coordinates`.
//! - persons and vehicles as fields (roles, descriptions, plates), with `child_name`,
//!   `suspect`, `vehicle` and `plate` picked out for the templates.
//! - `incidentStatusCommonRegistryText` Closed or Cancelled closes the incident.
//!
//! EIDOs without an incident (a call transfer) and STA-024 control messages (subscribe,
//! terminate) are recorded and not posted.

use jiff::Timestamp;
use serde_json::{Map, Value};

use super::types::{EIDO_TYPES, block_level, label, merged, normalise};
use super::{DecodeOptions, Event, Format, Lifecycle, Location, MsgType, Reject, RejectKind, Status};

/// Location types that are where the incident is (not where the caller is).
const INCIDENT_LOCATIONS: &[&str] = &["CurrentIncident", "Initial", "Investigation"];

/// A key of `v`, ignoring case (the 2020 draft capitalises some: `EIDOVersion`).
fn get<'a>(v: &'a Value, key: &str) -> Option<&'a Value> {
    v.as_object()?.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v)
}

fn get_str<'a>(v: &'a Value, key: &str) -> Option<&'a str> {
    get(v, key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// A value that may be one object or an array of them.
fn items(v: Option<&Value>) -> Vec<&Value> {
    match v {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        _ => Vec::new(),
    }
}

/// Strings of a value that may be a string or an array of strings.
fn strings(v: Option<&Value>) -> Vec<String> {
    match v {
        Some(Value::String(s)) => vec![s.trim().to_owned()],
        Some(Value::Array(a)) => a.iter().filter_map(Value::as_str).map(|s| s.trim().to_owned()).collect(),
        _ => Vec::new(),
    }
}

/// The first string or number under a key ending in `suffix`, anywhere in `v`.
fn find(v: &Value, suffix: &str) -> Option<String> {
    match v {
        Value::Object(m) => {
            for (k, inner) in m {
                if k.to_ascii_lowercase().ends_with(&suffix.to_ascii_lowercase())
                    && let Some(s) = leaf(inner)
                {
                    return Some(s);
                }
            }
            m.values().find_map(|inner| find(inner, suffix))
        }
        Value::Array(a) => a.iter().find_map(|inner| find(inner, suffix)),
        _ => None,
    }
}

fn leaf(v: &Value) -> Option<String> {
    match v {
        Value::String(s) if !s.trim().is_empty() => Some(s.trim().to_owned()),
        Value::Number(n) => Some(n.to_string()),
        Value::Object(m) => m.values().find_map(leaf),
        Value::Array(a) => a.iter().find_map(leaf),
        _ => None,
    }
}

fn ignored(id: &str, reason: impl Into<String>) -> Event {
    let mut e = Event::empty(Format::Eido, id);
    e.ignored = Some(reason.into());
    e
}

/// Decode one EIDO (or STA-024 message).
pub fn decode(payload: &[u8], options: &DecodeOptions) -> Result<Event, Reject> {
    let text = super::utf8(payload)?;
    let value: Value =
        serde_json::from_str(text).map_err(|e| Reject::new(RejectKind::Malformed, format!("malformed JSON: {e}")))?;
    if !value.is_object() {
        return Err(Reject::new(RejectKind::Invalid, "an EIDO is a JSON object"));
    }
    for control in ["subscribe", "terminate", "unsubscribe", "eventResponse", "subscribeResponse"] {
        if value.get(control).is_some() {
            return Ok(ignored("", format!("a NENA-STA-024 {control} message, not an incident")));
        }
    }
    let eido = match value.get("event") {
        Some(envelope) => match items(envelope.get("notification")).as_slice() {
            [one] => *one,
            [] => return Ok(ignored("", "a NENA-STA-024 event with no EIDO in it")),
            many => {
                return Err(Reject::new(
                    RejectKind::Invalid,
                    format!("{} EIDOs in one message; publish one per message so each is acknowledged", many.len()),
                ));
            }
        },
        None => &value,
    };
    let id = get_str(eido, "incidentTrackingIdentifier").or_else(|| get_str(eido, "$id")).unwrap_or("").to_owned();
    if get(eido, "eidoVersion").is_none() {
        return Err(Reject::new(RejectKind::Invalid, "not an EIDO: eidoVersion is missing"));
    }
    if id.is_empty() {
        return Err(Reject::new(RejectKind::Invalid, "the EIDO has no $id (incident tracking identifier)"));
    }
    let Some(incident) = items(get(eido, "incidentComponent")).into_iter().next() else {
        return Ok(ignored(&id, "an EIDO without an incident component (a call transfer, say): nothing to post"));
    };
    let Some(code) = get_str(incident, "incidentTypeCommonRegistryText") else {
        return Err(Reject::new(RejectKind::Invalid, "incidentComponent: incidentTypeCommonRegistryText is missing"));
    };
    let table = merged(EIDO_TYPES, &options.types);
    let Some(event_type) = table.get(&normalise(code)).cloned() else {
        return Ok(ignored(
            &id,
            format!("EIDO incident type {code:?} is not mapped to an event type (add it to the subscription's types)"),
        ));
    };
    let statuses = strings(get(incident, "incidentStatusCommonRegistryText"));
    let closed = statuses.iter().any(|s| s.eq_ignore_ascii_case("Closed") || s.eq_ignore_ascii_case("Cancelled"));
    let sent = get_str(eido, "lastUpdateTimeStamp")
        .or_else(|| get_str(incident, "lastUpdateTimeStamp"))
        .and_then(|t| t.parse::<Timestamp>().ok());

    let mut fields = Map::new();
    fields.insert("incident_type".to_owned(), code.into());
    if let Some(t) = get_str(incident, "incidentTypeInternalText") {
        fields.insert("internal_type".to_owned(), t.into());
    }
    if let Some(p) = get(incident, "incidentCommonPriorityNumber").and_then(Value::as_i64) {
        fields.insert("cad_priority".to_owned(), p.into());
    }
    if !statuses.is_empty() {
        fields.insert("incident_status".to_owned(), statuses.join(", ").into());
    }
    let persons: Vec<Value> = items(get(eido, "personComponent")).into_iter().map(person).collect();
    let vehicles: Vec<Value> = items(get(eido, "vehicleComponent")).into_iter().map(vehicle).collect();
    pick(&mut fields, &event_type, &persons, &vehicles);
    if !persons.is_empty() {
        fields.insert("persons".to_owned(), persons.into());
    }
    if !vehicles.is_empty() {
        fields.insert("vehicles".to_owned(), vehicles.into());
    }
    fields.insert("amber".to_owned(), false.into());

    let place = incident_location(eido);
    if let Some((_, Some((lat, lon)))) = &place {
        fields.insert("coordinates".to_owned(), serde_json::json!({ "lat": lat, "lon": lon }));
    }
    let near = place.as_ref().and_then(|(text, _)| text.as_deref()).map(block_level);
    if event_type == "missing_child"
        && let Some(n) = &near
    {
        fields.insert("last_seen".to_owned(), n.clone().into());
    }
    let headline = match (fields.get("child_name").and_then(Value::as_str), &near) {
        (Some(child), Some(n)) if event_type == "missing_child" => format!("{child}, reported missing near {n}"),
        (Some(child), None) if event_type == "missing_child" => format!("{child}, reported missing"),
        (_, Some(n)) => format!("{} near {n}", label(&event_type)),
        (_, None) => label(&event_type).to_owned(),
    };
    let location = near.map(|t| Location { text: Some(t), lat: None, lon: None });
    Ok(Event {
        format: Format::Eido,
        id,
        revision: None,
        headline,
        event_type,
        msg_type: MsgType::Alert,
        status: Status::Actual,
        sent,
        expires: None,
        description: None,
        instruction: None,
        area: None,
        location,
        web: None,
        contact: None,
        language: None,
        media: Vec::new(),
        fields,
        translations: Vec::new(),
        lifecycle: Lifecycle { message_key: None, references: Vec::new(), snapshot: true, closed },
        restricted: None,
        ignored: None,
    })
}

/// A person component as fields: roles and a description (NIEM name, age, sex, looks).
fn person(p: &Value) -> Value {
    let nc = get(p, "ncPersonComponent").unwrap_or(p);
    let name = find(nc, "PersonFullName").or_else(|| {
        let given = find(nc, "PersonGivenName");
        let sur = find(nc, "PersonSurName");
        match (given, sur) {
            (Some(g), Some(s)) => Some(format!("{g} {s}")),
            (g, s) => g.or(s),
        }
    });
    let mut looks = Vec::new();
    for (key, what) in [
        ("PersonSexText", ""),
        ("PersonSexCode", ""),
        ("PersonRaceText", ""),
        ("PersonHeightMeasure", ""),
        ("PersonWeightMeasure", ""),
        ("HairColorText", " hair"),
        ("HairColorCode", " hair"),
        ("EyeColorText", " eyes"),
        ("EyeColorCode", " eyes"),
        ("ClothingDescriptionText", ""),
        ("PersonDescriptionText", ""),
    ] {
        if let Some(v) = find(nc, key) {
            looks.push(format!("{v}{what}"));
        }
    }
    serde_json::json!({
        "roles": strings(get(p, "personIncidentRoleRegistryText")),
        "name": name,
        "age": find(nc, "PersonAgeMeasure"),
        "description": (!looks.is_empty()).then(|| looks.join(", ")),
    })
}

/// A vehicle component as fields: relationship, colour, make, model, year, plate.
fn vehicle(v: &Value) -> Value {
    let nc = get(v, "ncVehicleComponent").unwrap_or(v);
    serde_json::json!({
        "relationships": strings(get(v, "vehicleRelationshipType")),
        "color": find(nc, "ColorPrimaryCode").or_else(|| find(nc, "ColorPrimaryText")),
        "make": find(nc, "MakeCode").or_else(|| find(nc, "MakeName")),
        "model": find(nc, "ModelCode").or_else(|| find(nc, "ModelName")),
        "year": find(nc, "ModelYearDate"),
        "plate": find(nc, "PlateIdentification").or_else(|| find(nc, "IdentificationID")),
        "plate_state": find(nc, "JurisdictionUSPostalServiceCode").or_else(|| find(nc, "JurisdictionText")),
    })
}

/// The fields templates look for, picked from the persons and vehicles by role.
fn pick(fields: &mut Map<String, Value>, event_type: &str, persons: &[Value], vehicles: &[Value]) {
    let with_role = |role: &str| {
        persons.iter().find(|p| p["roles"].as_array().is_some_and(|r| r.iter().any(|x| x.as_str() == Some(role))))
    };
    let describe = |p: &Value| -> Option<String> {
        let parts: Vec<&str> = [p["name"].as_str(), p["description"].as_str()].into_iter().flatten().collect();
        (!parts.is_empty()).then(|| parts.join(", "))
    };
    if event_type == "missing_child"
        && let Some(child) = with_role("Victim").or_else(|| with_role("InvolvedPerson"))
    {
        if let Some(n) = child["name"].as_str() {
            fields.insert("child_name".to_owned(), n.into());
        }
        if let Some(a) = child["age"].as_str() {
            fields.insert("child_age".to_owned(), a.into());
        }
        if let Some(d) = child["description"].as_str() {
            fields.insert("child_description".to_owned(), d.into());
        }
    }
    if let Some(s) = with_role("Suspect").or_else(|| with_role("PersonOfInterest")).and_then(describe) {
        fields.insert("suspect".to_owned(), s.into());
    }
    let car = vehicles
        .iter()
        .find(|v| v["relationships"].as_array().is_some_and(|r| r.iter().any(|x| x.as_str() == Some("SuspectVehicle"))))
        .or_else(|| vehicles.first());
    if let Some(v) = car {
        let parts: Vec<&str> = ["color", "year", "make", "model"].iter().filter_map(|k| v[*k].as_str()).collect();
        if !parts.is_empty() {
            fields.insert("vehicle".to_owned(), parts.join(" ").into());
        }
        if let Some(p) = v["plate"].as_str() {
            let plate = match v["plate_state"].as_str() {
                Some(s) => format!("{s} {p}"),
                None => p.to_owned(),
            };
            fields.insert("plate".to_owned(), plate.into());
        }
    }
}

/// Where an incident is: a description or civic address, and coordinates.
type Place = (Option<String>, Option<(f64, f64)>);

/// The incident's location: its description or civic address, and coordinates.
fn incident_location(eido: &Value) -> Option<Place> {
    let locations: Vec<&Value> = items(get(eido, "locationComponent"))
        .into_iter()
        .chain(items(get(eido, "locationInformationComponent")))
        .filter(|l| get_str(l, "locationTypeDescriptionRegistryText").is_some_and(|t| INCIDENT_LOCATIONS.contains(&t)))
        .collect();
    let l = locations.first()?;
    let pidf = get_str(l, "locationByValue").and_then(|x| super::xml::parse(x).ok());
    let civic = pidf.as_ref().and_then(|p| {
        let el = p.descendants().into_iter().find(|e| e.name == "civicAddress")?;
        let part = |n: &str| el.text_of(n).map(str::to_owned);
        let street: Vec<String> =
            [part("HNO"), part("PRD"), part("RD"), part("STS"), part("POD")].into_iter().flatten().collect();
        let city = part("A3");
        (!street.is_empty()).then(|| match city {
            Some(c) => format!("{}, {c}", street.join(" ")),
            None => street.join(" "),
        })
    });
    let point = pidf.as_ref().and_then(|p| {
        let pos = p.descendants().into_iter().find(|e| e.name == "pos")?;
        let mut it = pos.text.split_whitespace().filter_map(|n| n.parse::<f64>().ok());
        Some((it.next()?, it.next()?))
    });
    let text = get_str(l, "locationDescriptionText").map(str::to_owned).or(civic);
    Some((text, point))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eido(incident: Value, extra: Value) -> Vec<u8> {
        let mut v = serde_json::json!({
            "$id": "urn:emergency:uid:incidentid:a56e556d871:bcf.state.pa.us",
            "lastUpdateTimeStamp": "2026-11-21T14:43:49.439-05:00",
            "eidoVersion": "1.0",
            "issuingElementIdentification": "cad.rcso.example",
            "agencyComponent": [],
            "incidentComponent": incident,
        });
        if let (Some(o), Some(e)) = (v.as_object_mut(), extra.as_object()) {
            o.extend(e.clone());
        }
        v.to_string().into_bytes()
    }

    #[test]
    fn an_abduction_with_persons_vehicles_and_a_location() {
        let incident = serde_json::json!({
            "incidentTypeCommonRegistryText": "ABDUCTNF",
            "incidentTypeInternalText": "10-57 CHILD ABDUCTION PER CALLER",
            "incidentStatusCommonRegistryText": ["Active"],
        });
        let extra = serde_json::json!({
            "personComponent": [
                { "personIncidentRoleRegistryText": ["Victim"], "ncPersonComponent": {
                    "nc:PersonName": { "nc:PersonGivenName": "Sofia", "nc:PersonSurName": "Ramirez" },
                    "nc:PersonAgeMeasure": { "nc:MeasureIntegerValue": 6 },
                    "nc:PersonDescriptionText": "yellow raincoat" } },
                { "personIncidentRoleRegistryText": ["Caller"], "ncPersonComponent": {
                    "nc:PersonName": { "nc:PersonFullName": "Private Caller" } } }
            ],
            "vehicleComponent": [{ "vehicleRelationshipType": ["SuspectVehicle"], "ncVehicleComponent": {
                "j:ConveyanceColorPrimaryCode": "SIL", "nc:VehicleMakeCode": "HOND", "nc:VehicleModelCode": "ODY",
                "nc:ConveyanceRegistrationPlateIdentification": { "nc:IdentificationID": "NRT4471",
                    "nc:IdentificationJurisdiction": { "j:JurisdictionUSPostalServiceCode": "TX" } } } }],
            "locationComponent": [
                { "locationTypeDescriptionRegistryText": "Caller", "locationDescriptionText": "99 Caller Home Rd" },
                { "locationTypeDescriptionRegistryText": "CurrentIncident", "locationDescriptionText": "1234 Ocean Dr" }
            ]
        });
        let e = decode(&eido(incident, extra), &DecodeOptions::default()).expect("decode");
        assert_eq!(e.event_type, "missing_child");
        assert_eq!(e.headline, "Sofia Ramirez, reported missing near 1200 block of Ocean Dr");
        assert_eq!(e.fields["last_seen"], "1200 block of Ocean Dr");
        assert_eq!(e.fields["amber"], false, "never AMBER wording from a CAD call");
        assert_eq!(e.fields["child_name"], "Sofia Ramirez");
        assert_eq!(e.fields["child_age"], "6");
        assert_eq!(e.fields["plate"], "TX NRT4471");
        assert_eq!(e.fields["vehicle"], "SIL HOND ODY");
        assert_eq!(e.location.and_then(|l| l.text).as_deref(), Some("1200 block of Ocean Dr"), "never the caller's");
        assert!(e.lifecycle.snapshot && !e.lifecycle.closed);
        assert_eq!(e.fields["internal_type"], "10-57 CHILD ABDUCTION PER CALLER");
    }

    #[test]
    fn every_incident_type_in_the_table_becomes_its_type_without_amber() {
        for (code, event_type) in EIDO_TYPES {
            let payload = eido(
                serde_json::json!({ "incidentTypeCommonRegistryText": format!(" {code} ") }),
                serde_json::json!({}),
            );
            let e = decode(&payload, &DecodeOptions::default()).expect(code);
            assert_eq!(e.event_type, *event_type, "{code}");
            assert_eq!(e.fields["amber"], false, "{code}");
            assert!(e.lifecycle.snapshot, "{code}");
        }
    }

    #[test]
    fn closed_unmapped_envelopes_and_controls() {
        let closed = eido(
            serde_json::json!([{ "incidentTypeCommonRegistryText": "BARICADE", "incidentStatusCommonRegistryText": ["Closed"] }]),
            serde_json::json!({}),
        );
        let e = decode(&closed, &DecodeOptions::default()).expect("decode");
        assert_eq!(e.event_type, "barricaded_suspect");
        assert!(e.lifecycle.closed, "an array incidentComponent works too");

        let medical = eido(serde_json::json!({ "incidentTypeCommonRegistryText": "SICK" }), serde_json::json!({}));
        assert!(
            decode(&medical, &DecodeOptions::default()).expect("decode").ignored.is_some_and(|r| r.contains("SICK"))
        );
        let mut options = DecodeOptions::default();
        options.types.insert("sick".to_owned(), "general".to_owned());
        assert_eq!(decode(&medical, &options).expect("decode").event_type, "general");

        let envelope = serde_json::json!({ "event": { "subscriptionId": "s", "transactionId": "t",
            "notification": [serde_json::from_slice::<Value>(&closed).expect("json")] } });
        assert_eq!(
            decode(envelope.to_string().as_bytes(), &DecodeOptions::default()).expect("decode").event_type,
            "barricaded_suspect"
        );
        let sub = br#"{"subscribe":{"requestId":"x","requestType":"EIDO"}}"#;
        assert!(decode(sub, &DecodeOptions::default()).expect("decode").ignored.is_some());
        assert!(decode(b"[1]", &DecodeOptions::default()).is_err());
        assert!(decode(br#"{"eidoVersion":"1.0"}"#, &DecodeOptions::default()).is_err(), "no $id");
    }
}
