//! OASIS CAP 1.2 (and the 1.1 and 1.0 namespaces), bare or inside an Atom entry or RSS
//! item. One alert per message; a feed that only links to alerts (an index) is refused,
//! since bullhorn never follows links in its input.
//!
//! - Type: the SAME `eventCode` through the type table (CAE → missing_child, ...); else
//!   severe_weather for Met and Geo, else general.
//! - Never public: scope other than Public, SAME test and administrative codes (RMT, RWT,
//!   DMO, NPT, ADR); the status (Test, Exercise, ...) is policy's. (IPAWS `BLOCKCHANNEL`
//!   PUBLIC only keeps a message off FEMA's public feed; it is kept as a parameter.)
//! - Ack and Error are recorded and not posted.
//! - Headline: `headline`, else the IPAWS `CMAMlongtext`, `CMAMtext`, else `event`.
//! - The first `info` block is the main language, the others translations.
//! - Lifecycle: the message's own `sender,identifier,sent`, and its `references` (each a
//!   full triple); the store ties them to the incident they name.

use base64::Engine as _;
use jiff::Timestamp;

use super::types::{CAP_SAME, SAME_NOT_PUBLIC, merged, normalise};
use super::xml::{self, Element};
use super::{
    DecodeOptions, Event, Format, Lifecycle, Location, Media, MsgType, Reject, RejectKind, Status, Translation,
};

const NAMESPACES: &[&str] = &[
    "urn:oasis:names:tc:emergency:cap:1.2",
    "urn:oasis:names:tc:emergency:cap:1.1",
    "http://www.incident.com/cap/1.0",
];
/// Inline (`derefUri`) images above this many base64 characters are left out.
const MAX_INLINE_MEDIA: usize = 2 * 1024 * 1024;

fn invalid(reason: impl Into<String>) -> Reject {
    Reject::new(RejectKind::Invalid, reason)
}

/// Decode one CAP message.
pub fn decode(payload: &[u8], options: &DecodeOptions) -> Result<Event, Reject> {
    let text = super::utf8(payload)?;
    let root = xml::parse(text).map_err(|e| Reject::new(RejectKind::Malformed, format!("malformed XML: {e}")))?;
    let all = root.descendants();
    let alerts: Vec<&Element> = all.iter().copied().filter(|e| e.name == "alert").collect();
    let alert = match alerts.as_slice() {
        [one] => *one,
        [] if matches!(root.name.as_str(), "rss" | "feed" | "RDF") => {
            return Err(invalid(
                "a feed with no CAP alert in it (an index that links to alerts): bullhorn does not follow links; \
                 publish each CAP message itself",
            ));
        }
        [] => return Err(invalid(format!("not a CAP message: the root element is <{}>", root.name))),
        many => {
            return Err(invalid(format!(
                "{} CAP alerts in one message; publish one alert per message so each is acknowledged on its own",
                many.len()
            )));
        }
    };
    match alert.ns.as_deref() {
        Some(ns) if NAMESPACES.contains(&ns) => {}
        other => {
            return Err(invalid(format!(
                "<alert> is in namespace {:?}, not CAP's ({})",
                other.unwrap_or(""),
                NAMESPACES.join(", ")
            )));
        }
    }
    let mut problems = Vec::new();
    let mut required = |name: &str| {
        let v = alert.text_of(name);
        if v.is_none() {
            problems.push(format!("{name} is missing or empty"));
        }
        v.unwrap_or("")
    };
    let (identifier, sender, sent_text) = (required("identifier"), required("sender"), required("sent"));
    let (status_text, msg_type_text, scope) = (required("status"), required("msgType"), required("scope"));
    let sent = parse_time(sent_text, "sent", &mut problems);
    let status = match status_text.to_ascii_lowercase().as_str() {
        "actual" => Status::Actual,
        "exercise" => Status::Exercise,
        "system" => Status::System,
        "test" => Status::Test,
        "draft" => Status::Draft,
        "" => Status::Draft,
        other => {
            problems.push(format!("status {other:?} is not Actual, Exercise, System, Test or Draft"));
            Status::Draft
        }
    };
    let (msg_type, ignored) = match msg_type_text.to_ascii_lowercase().as_str() {
        "alert" | "" => (MsgType::Alert, None),
        "update" => (MsgType::Update, None),
        "cancel" => (MsgType::Cancel, None),
        "ack" => (MsgType::Alert, Some("a CAP Ack (acknowledgement): recorded, nothing to post".to_owned())),
        "error" => (MsgType::Alert, Some("a CAP Error message: recorded, nothing to post".to_owned())),
        other => {
            problems.push(format!("msgType {other:?} is not Alert, Update, Cancel, Ack or Error"));
            (MsgType::Alert, None)
        }
    };
    if !scope.is_empty() && !matches!(scope.to_ascii_lowercase().as_str(), "public" | "restricted" | "private") {
        problems.push(format!("scope {scope:?} is not Public, Restricted or Private"));
    }
    let references = match alert.child("references") {
        None => Vec::new(),
        Some(r) if r.text.trim().is_empty() => {
            problems.push("references is empty: it must name sender,identifier,sent of earlier messages".to_owned());
            Vec::new()
        }
        Some(r) => {
            let refs: Vec<String> = r.text.split_whitespace().map(str::to_owned).collect();
            for bad in refs.iter().filter(|t| t.split(',').count() != 3) {
                problems.push(format!("reference {bad:?} is not sender,identifier,sent"));
            }
            refs
        }
    };
    let infos: Vec<&Element> = alert.all("info").collect();
    for (i, info) in infos.iter().enumerate() {
        for name in ["event", "urgency", "severity", "certainty", "category"] {
            if info.text_of(name).is_none() {
                problems.push(format!("info[{}]: {name} is missing or empty", i + 1));
            }
        }
    }
    // An expiry that cannot be read is not "never expires": refused like any bad field.
    let expires =
        infos.first().and_then(|i| i.text_of("expires")).and_then(|t| parse_time(t, "expires", &mut problems));
    if !problems.is_empty() {
        return Err(invalid(problems.join("; ")));
    }

    let table = merged(CAP_SAME, &options.types);
    let main = infos.first().copied();
    let same = main.and_then(|i| pair_value(i, "eventCode", "SAME")).map(|c| normalise(&c));
    let event_type = match (&same, main) {
        (Some(code), _) if table.contains_key(code) => table[code].clone(),
        (_, Some(info)) if info.all("category").any(|c| matches!(c.text.trim(), "Met" | "Geo")) => {
            "severe_weather".to_owned()
        }
        (_, Some(_)) => "general".to_owned(),
        // A Cancel without info: its type and texts come from the alert it cancels.
        (_, None) => String::new(),
    };
    let ignored = match (&ignored, main, msg_type) {
        (None, None, MsgType::Alert | MsgType::Update) => {
            Some("a CAP message with no info block: nothing to post".to_owned())
        }
        _ => ignored,
    };
    let parameters = main.map(parameters).unwrap_or_default();
    let restricted = if scope.eq_ignore_ascii_case("public") {
        same.as_deref()
            .filter(|c| SAME_NOT_PUBLIC.contains(c))
            .map(|code| format!("SAME code {code} is a test or administrative message"))
    } else {
        Some(format!("CAP scope is {scope}, not Public"))
    };

    let mut fields = serde_json::Map::new();
    let mut put = |k: &str, v: Option<String>| {
        if let Some(v) = v.filter(|v| !v.is_empty()) {
            fields.insert(k.to_owned(), v.into());
        }
    };
    put("sender", Some(sender.to_owned()));
    put("scope", Some(scope.to_owned()));
    put("same", same.clone());
    if let Some(info) = main {
        put("event", info.text_of("event").map(str::to_owned));
        put("urgency", info.text_of("urgency").map(str::to_owned));
        put("severity", info.text_of("severity").map(str::to_owned));
        put("certainty", info.text_of("certainty").map(str::to_owned));
        put("category", Some(texts(info, "category").join(", ")));
        put("response_type", Some(texts(info, "responseType").join(", ")));
        put("sender_name", info.text_of("senderName").map(str::to_owned));
        put("effective", info.text_of("effective").map(str::to_owned));
        put("onset", info.text_of("onset").map(str::to_owned));
        put("audience", info.text_of("audience").map(str::to_owned));
        put("cmam_text", param(&parameters, "CMAMtext"));
        put("cmam_long_text", param(&parameters, "CMAMlongtext"));
        put("eas_org", param(&parameters, "EAS-ORG"));
        put("vtec", param(&parameters, "VTEC"));
    }
    put("incidents", alert.text_of("incidents").map(str::to_owned));
    put("note", alert.text_of("note").map(str::to_owned));
    if !parameters.is_empty() {
        let map: serde_json::Map<String, serde_json::Value> =
            parameters.iter().map(|(k, v)| (k.clone(), v.clone().into())).collect();
        fields.insert("parameters".to_owned(), map.into());
    }
    // AMBER wording only for an actual AMBER activation: SAME CAE.
    fields.insert("amber".to_owned(), (same.as_deref() == Some("CAE")).into());

    let language = main.map(|i| i.text_of("language").unwrap_or("en-US").to_owned());
    let mut translations: Vec<Translation> = Vec::new();
    for info in infos.iter().skip(1) {
        let lang = info.text_of("language").unwrap_or("en-US").to_owned();
        if Some(&lang) == language.as_ref() || translations.iter().any(|t| t.language == lang) {
            continue;
        }
        translations.push(Translation {
            language: lang,
            headline: headline(info),
            description: info.text_of("description").map(tidy),
            instruction: info.text_of("instruction").map(tidy),
            area: area(info),
            web: info.text_of("web").map(str::to_owned),
            contact: info.text_of("contact").map(str::to_owned),
        });
    }
    Ok(Event {
        format: Format::Cap,
        id: identifier.to_owned(),
        revision: None,
        event_type,
        msg_type,
        status,
        sent,
        expires,
        headline: main.map(headline).unwrap_or_default(),
        description: main.and_then(|i| i.text_of("description")).map(tidy),
        instruction: main.and_then(|i| i.text_of("instruction")).map(tidy),
        area: main.and_then(area),
        location: main.and_then(location),
        web: main.and_then(|i| i.text_of("web")).map(str::to_owned),
        contact: main.and_then(|i| i.text_of("contact")).map(str::to_owned),
        language,
        media: main.map(media).unwrap_or_default(),
        fields,
        translations,
        lifecycle: Lifecycle {
            message_key: Some(format!("{sender},{identifier},{sent_text}")),
            references,
            snapshot: false,
            closed: false,
        },
        restricted,
        ignored,
    })
}

fn parse_time(text: &str, name: &str, problems: &mut Vec<String>) -> Option<Timestamp> {
    match text.parse::<Timestamp>() {
        Ok(t) => Some(t),
        Err(e) => {
            problems.push(format!("{name} {text:?} is not a date and time with an offset: {e}"));
            None
        }
    }
}

/// The texts of every child `name`.
fn texts(el: &Element, name: &str) -> Vec<String> {
    el.all(name).map(|c| c.text.trim().to_owned()).filter(|t| !t.is_empty()).collect()
}

/// `valueName`/`value` pairs of children `name` (eventCode, parameter, geocode); CAP 1.0
/// writes them as text, `same=CAE`.
fn pairs(el: &Element, name: &str) -> Vec<(String, String)> {
    el.all(name)
        .filter_map(|p| match p.text_of("valueName") {
            Some(k) => Some((k.to_owned(), p.text_of("value").unwrap_or("").to_owned())),
            None => p.text.split_once('=').map(|(k, v)| (k.trim().to_owned(), v.trim().to_owned())),
        })
        .collect()
}

fn pair_value(el: &Element, name: &str, key: &str) -> Option<String> {
    pairs(el, name).into_iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v).filter(|v| !v.is_empty())
}

fn parameters(info: &Element) -> Vec<(String, String)> {
    pairs(info, "parameter")
}

fn param(params: &[(String, String)], key: &str) -> Option<String> {
    params.iter().find(|(k, _)| k.eq_ignore_ascii_case(key)).map(|(_, v)| v.trim().to_owned())
}

fn headline(info: &Element) -> String {
    let params = parameters(info);
    info.text_of("headline")
        .map(str::to_owned)
        .or_else(|| param(&params, "CMAMlongtext").filter(|v| !v.is_empty()))
        .or_else(|| param(&params, "CMAMtext").filter(|v| !v.is_empty()))
        .or_else(|| info.text_of("event").map(str::to_owned))
        .map(|h| tidy(&h))
        .unwrap_or_default()
}

fn area(info: &Element) -> Option<String> {
    let descs: Vec<String> = info.all("area").filter_map(|a| a.text_of("areaDesc").map(str::to_owned)).collect();
    (!descs.is_empty()).then(|| descs.join("; "))
}

/// A point for map links: a circle's centre, else a polygon's centroid.
fn location(info: &Element) -> Option<Location> {
    let point = |s: &str| {
        let (lat, lon) = s.trim().split_once(',')?;
        let (lat, lon): (f64, f64) = (lat.trim().parse().ok()?, lon.trim().parse().ok()?);
        ((-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lon)).then_some((lat, lon))
    };
    for a in info.all("area") {
        if let Some((lat, lon)) = a.text_of("circle").and_then(|c| point(c.split_whitespace().next()?)) {
            return Some(Location { text: None, lat: Some(lat), lon: Some(lon) });
        }
        if let Some(poly) = a.text_of("polygon") {
            let pts: Vec<(f64, f64)> = poly.split_whitespace().filter_map(point).collect();
            if !pts.is_empty() {
                let n = pts.len() as f64;
                let (lat, lon) = pts.iter().fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
                return Some(Location { text: None, lat: Some(lat / n), lon: Some(lon / n) });
            }
        }
    }
    None
}

/// Images among the resources: by URL, or inline (base64 `derefUri`) up to a size.
fn media(info: &Element) -> Vec<Media> {
    info.all("resource")
        .filter(|r| r.text_of("mimeType").is_some_and(|m| m.to_ascii_lowercase().starts_with("image/")))
        .filter_map(|r| {
            let data = r
                .text_of("derefUri")
                .map(|d| d.split_whitespace().collect::<String>())
                .filter(|d| d.len() <= MAX_INLINE_MEDIA && base64::engine::general_purpose::STANDARD.decode(d).is_ok());
            let url = r.text_of("uri").map(str::to_owned);
            (data.is_some() || url.is_some()).then(|| Media {
                url,
                data,
                content_type: r.text_of("mimeType").map(str::to_owned),
                alt: r.text_of("resourceDesc").map(str::to_owned),
            })
        })
        .collect()
}

/// CAP texts come with hard line breaks and runs of spaces: keep paragraphs, join lines.
fn tidy(s: &str) -> String {
    s.split("\n\n")
        .map(|para| para.split_whitespace().collect::<Vec<_>>().join(" "))
        .filter(|p| !p.is_empty())
        .collect::<Vec<_>>()
        .join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    const AMBER: &str = r#"<?xml version = "1.0" encoding = "UTF-8"?>
<alert xmlns = "urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>KAR0-0306112239-SW</identifier>
  <sender>KARO@CLETS.DOJ.CA.GOV</sender>
  <sent>2003-06-11T22:39:00-07:00</sent>
  <status>Actual</status>
  <msgType>Alert</msgType>
  <scope>Public</scope>
  <info>
    <language>en-US</language>
    <category>Rescue</category>
    <event>Child Abduction</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Likely</certainty>
    <eventCode><valueName>SAME</valueName><value>CAE</value></eventCode>
    <senderName>Los Angeles Police Dept - LAPD</senderName>
    <headline>Amber Alert in Los Angeles County</headline>
    <description>DATE/TIME: 06/11/03, 1915 HRS.
      VICTIM(S): KHAYRI DOE JR.</description>
    <contact>DET. SMITH, 77TH DIV, LOS ANGELES POLICE DEPT-LAPD AT 213 485-2389</contact>
    <area><areaDesc>Los Angeles County</areaDesc><circle>34.05,-118.25 10</circle></area>
  </info>
  <info>
    <language>es-US</language>
    <category>Rescue</category>
    <event>Abducción de Niño</event>
    <urgency>Immediate</urgency>
    <severity>Severe</severity>
    <certainty>Likely</certainty>
    <headline>Alerta Amber en el condado de Los Ángeles</headline>
  </info>
</alert>"#;

    fn decode_str(s: &str) -> Result<Event, Reject> {
        decode(s.as_bytes(), &DecodeOptions::default())
    }

    #[test]
    fn an_amber_alert() {
        let e = decode_str(AMBER).expect("decode");
        assert_eq!(e.format, Format::Cap);
        assert_eq!(e.event_type, "missing_child");
        assert_eq!(e.msg_type, MsgType::Alert);
        assert_eq!(e.headline, "Amber Alert in Los Angeles County");
        assert_eq!(e.description.as_deref(), Some("DATE/TIME: 06/11/03, 1915 HRS. VICTIM(S): KHAYRI DOE JR."));
        assert_eq!(e.language.as_deref(), Some("en-US"));
        assert_eq!(e.translations[0].language, "es-US");
        assert_eq!(e.translations[0].headline, "Alerta Amber en el condado de Los Ángeles");
        assert_eq!(e.area.as_deref(), Some("Los Angeles County"));
        assert_eq!(e.location.as_ref().and_then(|l| l.lat), Some(34.05));
        assert_eq!(e.fields["amber"], true);
        assert_eq!(e.fields["sender_name"], "Los Angeles Police Dept - LAPD");
        assert_eq!(
            e.lifecycle.message_key.as_deref(),
            Some("KARO@CLETS.DOJ.CA.GOV,KAR0-0306112239-SW,2003-06-11T22:39:00-07:00")
        );
        assert!(e.restricted.is_none() && e.ignored.is_none());
    }

    #[test]
    fn prefixed_in_an_atom_entry() {
        let doc = format!(
            r#"<feed xmlns="http://www.w3.org/2005/Atom" xmlns:cap="urn:oasis:names:tc:emergency:cap:1.2"><entry><content type="text/xml">{}</content></entry></feed>"#,
            AMBER.split_once("?>").map(|(_, b)| b).unwrap_or(AMBER)
        );
        assert_eq!(decode_str(&doc).expect("decode").event_type, "missing_child");
    }

    #[test]
    fn every_same_code_in_the_table_becomes_its_type_and_test_codes_stay_off_public() {
        for (code, event_type) in CAP_SAME {
            let e = decode_str(&AMBER.replace("<value>CAE</value>", &format!("<value>{code}</value>"))).expect(code);
            assert_eq!(e.event_type, *event_type, "{code}");
            assert_eq!(e.fields["amber"], *code == "CAE", "{code}");
            assert!(e.restricted.is_none(), "{code}");
        }
        for code in SAME_NOT_PUBLIC {
            let e = decode_str(&AMBER.replace("<value>CAE</value>", &format!("<value>{code}</value>"))).expect(code);
            assert!(e.restricted.is_some_and(|r| r.contains(code)), "{code}");
        }
        let no_code = AMBER.replace("<eventCode><valueName>SAME</valueName><value>CAE</value></eventCode>", "");
        assert_eq!(decode_str(&no_code).expect("decode").event_type, "general", "Rescue without a code");
        let met = no_code.replace("<category>Rescue</category>", "<category>Met</category>");
        assert_eq!(decode_str(&met).expect("decode").event_type, "severe_weather");
        let mut options = DecodeOptions::default();
        options.types.insert("CAE".to_owned(), "silver_alert".to_owned());
        assert_eq!(decode(AMBER.as_bytes(), &options).expect("decode").event_type, "silver_alert", "config wins");
    }

    #[test]
    fn filters_and_fallbacks() {
        let test = AMBER.replace("<value>CAE</value>", "<value>RMT</value>");
        assert!(decode_str(&test).expect("decode").restricted.is_some_and(|r| r.contains("RMT")));
        let private = AMBER.replace("<scope>Public</scope>", "<scope>Private</scope>");
        assert!(decode_str(&private).expect("decode").restricted.is_some());
        let ack = AMBER.replace("<msgType>Alert</msgType>", "<msgType>Ack</msgType>");
        assert!(decode_str(&ack).expect("decode").ignored.is_some());
        let no_headline = AMBER.replace("<headline>Amber Alert in Los Angeles County</headline>", "").replace(
            "<senderName>",
            "<parameter><valueName>CMAMtext</valueName><value>Amber Alert: call 911</value></parameter><senderName>",
        );
        assert_eq!(decode_str(&no_headline).expect("decode").headline, "Amber Alert: call 911");
    }

    #[test]
    fn an_unreadable_expires_is_refused_not_taken_as_never_expiring() {
        let doc = AMBER.replace("<senderName>", "<expires>2003-06-12 08:00</expires><senderName>");
        let r = decode_str(&doc).expect_err("refused");
        assert!(r.reason.contains("expires \"2003-06-12 08:00\""), "{r}");
        let doc = AMBER.replace("<senderName>", "<expires>2003-06-12T08:00:00-07:00</expires><senderName>");
        assert!(decode_str(&doc).expect("decode").expires.is_some());
    }

    #[test]
    fn invalid_messages_say_what_is_wrong() {
        let r = decode_str(&AMBER.replace("<scope>Public</scope>", "")).expect_err("no scope");
        assert!(r.reason.contains("scope is missing"), "{r}");
        let r = decode_str(&AMBER.replace("<scope>Public</scope>", "<scope>Public</scope><references/>"))
            .expect_err("empty references");
        assert!(r.reason.contains("references is empty"), "{r}");
        let r = decode_str(&AMBER.replace("<urgency>Immediate</urgency>", "<urgency></urgency>")).expect_err("empty");
        assert!(r.reason.contains("info[1]: urgency"), "{r}");
        let r = decode_str(&AMBER.replace("cap:1.2", "alerts:1.2")).expect_err("namespace");
        assert!(r.reason.contains("namespace"), "{r}");
        let r =
            decode_str("<rss version=\"2.0\"><channel><item><link>x</link></item></channel></rss>").expect_err("index");
        assert!(r.reason.contains("does not follow links"), "{r}");
        let r = decode_str("<alert").expect_err("malformed");
        assert_eq!(r.kind, RejectKind::Malformed);
    }
}
