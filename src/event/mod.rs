//! The [`Event`]: one incident message, whatever format it arrived in, normalised to the
//! fields templates and policy work with. Decoders (one file per input format) turn a
//! payload into an `Event` or a [`Reject`] that says, for a person, what was wrong.

pub mod cap;
pub mod eido;
pub mod json;
pub mod mapped;
pub mod text;
pub mod types;
pub mod xml;

use std::collections::BTreeMap;
use std::fmt;

use jiff::Timestamp;
use serde::{Deserialize, Serialize};

/// The wire format a subscription decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// bullhorn's native JSON event (`docs/event.schema.json`).
    Json,
    /// OASIS CAP 1.2 (and 1.1, 1.0), bare or inside an Atom entry or RSS item.
    Cap,
    /// NENA EIDO JSON (NENA-STA-021), bare or in a NENA-STA-024 `event` envelope.
    Eido,
    /// A CAD's own JSON, read through a mapping of JSON pointers in the config.
    Mapped,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Json => "json",
            Format::Cap => "cap",
            Format::Eido => "eido",
            Format::Mapped => "mapped",
        }
    }

    /// CAD incident data rather than a public alert: its rules hold for a person's
    /// approval unless they say otherwise, and each message is a snapshot of the incident.
    pub fn is_cad(self) -> bool {
        matches!(self, Format::Eido | Format::Mapped)
    }
}

/// What a subscription's decoder needs besides the payload.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DecodeOptions {
    /// Source codes (CAP SAME codes, EIDO incident types, a CAD's own codes) to event
    /// types: for CAP and EIDO merged over the built-in table, for mapped JSON the table.
    pub types: BTreeMap<String, String>,
    /// Mapped JSON: where each field is.
    pub mapping: Option<mapped::Mapping>,
}

/// How a message relates to the earlier ones of its incident.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lifecycle {
    /// CAP: this message's `sender,identifier,sent`, which later messages reference.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_key: Option<String>,
    /// CAP: the `sender,identifier,sent` of each message this one updates or cancels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub references: Vec<String>,
    /// A snapshot of the whole incident (EIDO, mapped CAD JSON): whether it is an update
    /// is decided by comparing it with the incident's last one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub snapshot: bool,
    /// The snapshot says the incident is closed or cancelled.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub closed: bool,
}

/// How urgent an event type is; critical alerts go first on every channel and may use
/// the quota reserve.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Priority {
    // Declared least urgent first, so `Ord` ranks critical highest.
    Low,
    #[default]
    Normal,
    High,
    Critical,
    /// A retraction or correction (never configured): ahead of everything, outside the
    /// quota budget and any pause.
    #[serde(skip_deserializing)]
    Retraction,
}

impl Priority {
    /// The store's column value: lower sorts first, so `ORDER BY priority` is most urgent first.
    pub fn rank(self) -> i64 {
        match self {
            Priority::Retraction => -1,
            Priority::Critical => 0,
            Priority::High => 1,
            Priority::Normal => 2,
            Priority::Low => 3,
        }
    }

    pub fn from_rank(rank: i64) -> Priority {
        match rank {
            ..=-1 => Priority::Retraction,
            0 => Priority::Critical,
            1 => Priority::High,
            2 => Priority::Normal,
            _ => Priority::Low,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Priority::Retraction => "retraction",
            Priority::Critical => "critical",
            Priority::High => "high",
            Priority::Normal => "normal",
            Priority::Low => "low",
        }
    }
}

/// What the message does to its incident.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MsgType {
    #[default]
    Alert,
    Update,
    Cancel,
}

impl MsgType {
    pub fn as_str(self) -> &'static str {
        match self {
            MsgType::Alert => "alert",
            MsgType::Update => "update",
            MsgType::Cancel => "cancel",
        }
    }

    pub fn parse(s: &str) -> Option<MsgType> {
        [MsgType::Alert, MsgType::Update, MsgType::Cancel].into_iter().find(|m| m.as_str() == s)
    }
}

/// Whether the message is real. Anything but `Actual` never reaches a public channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Actual,
    Exercise,
    Test,
    System,
    Draft,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Actual => "actual",
            Status::Exercise => "exercise",
            Status::Test => "test",
            Status::System => "system",
            Status::Draft => "draft",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        [Status::Actual, Status::Exercise, Status::Test, Status::System, Status::Draft]
            .into_iter()
            .find(|st| st.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Location {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lat: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub lon: Option<f64>,
}

/// An image attached to the event: a URL to fetch or inline base64 data.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Media {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// Base64 of the image bytes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub alt: Option<String>,
}

/// The event's texts in another language (a CAP `info` block, a `translations` entry).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Translation {
    pub language: String,
    pub headline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
}

/// One incident message, normalised.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub format: Format,
    /// The incident this message is about; revisions and cancels share it.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revision: Option<u64>,
    #[serde(rename = "type")]
    pub event_type: String,
    pub msg_type: MsgType,
    pub status: Status,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sent: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires: Option<Timestamp>,
    pub headline: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instruction: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub area: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub location: Option<Location>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub web: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub contact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub media: Vec<Media>,
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub fields: serde_json::Map<String, serde_json::Value>,
    /// The same texts in other languages; `language` is the main texts' language.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub translations: Vec<Translation>,
    #[serde(default, skip_serializing_if = "is_default")]
    pub lifecycle: Lifecycle,
    /// Why it must not reach a public channel though its status is actual (a CAP scope
    /// other than Public, a SAME test code): it goes to staff channels only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restricted: Option<String>,
    /// Why it is recorded but not posted at all (a CAP Ack, an EIDO without an incident,
    /// a CAD type nobody mapped).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

fn is_default<T: Default + PartialEq>(v: &T) -> bool {
    *v == T::default()
}

impl Event {
    /// An event with nothing but its format and id, for decoders to fill in.
    pub fn empty(format: Format, id: &str) -> Event {
        Event {
            format,
            id: id.to_owned(),
            revision: None,
            event_type: String::new(),
            msg_type: MsgType::Alert,
            status: Status::Actual,
            sent: None,
            expires: None,
            headline: String::new(),
            description: None,
            instruction: None,
            area: None,
            location: None,
            web: None,
            contact: None,
            language: None,
            media: Vec::new(),
            fields: serde_json::Map::new(),
            translations: Vec::new(),
            lifecycle: Lifecycle::default(),
            restricted: None,
            ignored: None,
        }
    }

    /// Whether posts may say AMBER: a CAP AMBER activation (SAME CAE), or a native event
    /// published on purpose that does not say otherwise (`fields.amber`); never CAD data.
    pub fn amber(&self) -> bool {
        self.fields.get("amber").and_then(serde_json::Value::as_bool).unwrap_or(false)
    }

    /// The languages this event can be posted in: its own, then its translations'.
    pub fn languages(&self) -> Vec<Option<&str>> {
        std::iter::once(self.language.as_deref())
            .chain(self.translations.iter().map(|t| Some(t.language.as_str())))
            .collect()
    }

    /// The event with its texts in `language` (a translation's), or as it is.
    pub fn in_language(&self, language: Option<&str>) -> std::borrow::Cow<'_, Event> {
        let Some(t) = language.and_then(|l| self.translations.iter().find(|t| t.language == l)) else {
            return std::borrow::Cow::Borrowed(self);
        };
        let mut e = self.clone();
        e.language = Some(t.language.clone());
        e.headline = t.headline.clone();
        e.description = t.description.clone();
        e.instruction = t.instruction.clone();
        e.area = t.area.clone().or(e.area);
        e.web = t.web.clone().or(e.web);
        e.contact = t.contact.clone().or(e.contact);
        e.translations.clear();
        std::borrow::Cow::Owned(e)
    }
}

/// Whether `tag` (e.g. "es-US") is what `wanted` (e.g. "es" or "es-US") asks for.
pub fn language_matches(tag: &str, wanted: &str) -> bool {
    let tag = tag.to_ascii_lowercase();
    let wanted = wanted.to_ascii_lowercase();
    tag == wanted || tag.split('-').next() == Some(wanted.as_str()) || wanted.split('-').next() == Some(tag.as_str())
}

/// Why an input was refused. The kind is a bounded label for metrics; the reason is for
/// the person reading the dead-letter record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reject {
    pub kind: RejectKind,
    pub reason: String,
}

impl Reject {
    pub fn new(kind: RejectKind, reason: impl Into<String>) -> Self {
        Reject { kind, reason: reason.into() }
    }
}

impl fmt::Display for Reject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.kind.as_str(), self.reason)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RejectKind {
    TooLarge,
    InvalidUtf8,
    Malformed,
    Invalid,
    UnknownType,
    NoSubscription,
    /// The subscription requires a signature and the message has none.
    Unsigned,
    /// The signature does not match the payload under the subscription's key.
    BadSignature,
    Internal,
}

impl RejectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            RejectKind::TooLarge => "too_large",
            RejectKind::InvalidUtf8 => "invalid_utf8",
            RejectKind::Malformed => "malformed",
            RejectKind::Invalid => "invalid",
            RejectKind::UnknownType => "unknown_type",
            RejectKind::NoSubscription => "no_subscription",
            RejectKind::Unsigned => "unsigned",
            RejectKind::BadSignature => "bad_signature",
            RejectKind::Internal => "internal_error",
        }
    }
}

/// Decode `payload` as `format`, with every text cleaned of invisible characters
/// ([`text::clean`]).
pub fn decode(format: Format, payload: &[u8], options: &DecodeOptions) -> Result<Event, Reject> {
    let mut event = match format {
        Format::Json => json::decode(payload),
        Format::Cap => cap::decode(payload, options),
        Format::Eido => eido::decode(payload, options),
        Format::Mapped => mapped::decode(payload, options),
    }?;
    text::clean_event(&mut event);
    Ok(event)
}

/// The payload as UTF-8 text, or the reject that says where it is not.
pub fn utf8(payload: &[u8]) -> Result<&str, Reject> {
    std::str::from_utf8(payload).map_err(|e| {
        Reject::new(RejectKind::InvalidUtf8, format!("payload is not valid UTF-8 (at byte {})", e.valid_up_to()))
    })
}

/// Names of event types and channels: what can safely be a config key, a metric label
/// and a folder name.
pub fn valid_type_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
}

/// A BCP 47 language tag, loosely: letters, digits and hyphens, starting with letters.
pub fn valid_language(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 35
        && tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}
