//! The config file as written: serde structs that mirror `bullhorn.toml` one to one, with
//! the defaults a key takes when it is absent. Nothing here touches the file system or
//! cross-checks sections; [`super::validate`] turns these into a [`super::Config`].
//!
//! Unknown keys are not rejected by serde here (that would stop at the first one); the
//! loader collects every ignored key with `serde_ignored` and reports them all.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;
use serde::{Deserialize, Deserializer};

use crate::event::{Format, Priority};
use crate::platform::Rate;

/// A duration written the human way: `"30s"`, `"3h"`, `"7d"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        humantime::parse_duration(s.trim()).map(HumanDuration).map_err(|e| {
            serde::de::Error::custom(format!("invalid duration {s:?}: {e} (write e.g. \"30s\", \"3h\", \"7d\")"))
        })
    }
}

/// The share of a window only critical alerts may use: `"20%"` or a count.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Reserve {
    Percent(f64),
    Count(u32),
}

impl Reserve {
    /// The reserved number of requests out of `limit` (rounded down, so a tiny quota keeps
    /// room for routine posts).
    pub fn of(self, limit: u32) -> u32 {
        match self {
            Reserve::Percent(p) => {
                let n = (f64::from(limit) * p / 100.0).floor().clamp(0.0, f64::from(limit));
                #[expect(clippy::cast_possible_truncation, reason = "clamped to 0..=limit, a u32")]
                let n = n as u32;
                n
            }
            Reserve::Count(n) => n.min(limit),
        }
    }
}

impl<'de> Deserialize<'de> for Reserve {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Raw {
            Count(u32),
            Text(String),
        }
        match Raw::deserialize(d)? {
            Raw::Count(n) => Ok(Reserve::Count(n)),
            Raw::Text(s) => {
                let t = s.trim();
                if let Some(p) = t.strip_suffix('%') {
                    match p.trim().parse::<f64>() {
                        Ok(p) if (0.0..=100.0).contains(&p) => Ok(Reserve::Percent(p)),
                        _ => Err(serde::de::Error::custom(format!("invalid reserve {s:?}: a percentage 0-100%"))),
                    }
                } else {
                    t.parse::<u32>().map(Reserve::Count).map_err(|_| {
                        serde::de::Error::custom(format!("invalid reserve {s:?}: write \"20%\" or a count"))
                    })
                }
            }
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    #[default]
    Text,
    Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct LogFile {
    /// A tracing filter (`info`, `bullhorn=debug,info`); `RUST_LOG` wins when set.
    pub level: Option<String>,
    pub format: LogFormat,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Protocol {
    #[default]
    #[serde(rename = "v5")]
    V5,
    #[serde(rename = "v311")]
    V311,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct MqttFile {
    pub url: Option<String>,
    pub client_id: String,
    pub protocol: Protocol,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub password_file: Option<PathBuf>,
    pub ca_file: Option<PathBuf>,
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    pub keep_alive: HumanDuration,
    pub session_expiry: HumanDuration,
    pub max_payload_bytes: usize,
    pub max_packet_bytes: usize,
    pub receive_maximum: u16,
    pub reconnect_min: HumanDuration,
    pub reconnect_max: HumanDuration,
    pub send_topic: Option<String>,
    pub subscribe: Vec<SubscriptionFile>,
}

impl Default for MqttFile {
    fn default() -> Self {
        MqttFile {
            url: None,
            client_id: "bullhorn".to_owned(),
            protocol: Protocol::V5,
            username: None,
            password: None,
            password_file: None,
            ca_file: None,
            cert_file: None,
            key_file: None,
            keep_alive: HumanDuration(Duration::from_secs(30)),
            session_expiry: HumanDuration(Duration::from_secs(7 * 24 * 3600)),
            max_payload_bytes: 256 * 1024,
            max_packet_bytes: 16 * 1024 * 1024,
            receive_maximum: 1000,
            reconnect_min: HumanDuration(Duration::from_millis(500)),
            reconnect_max: HumanDuration(Duration::from_secs(60)),
            send_topic: None,
            subscribe: Vec::new(),
        }
    }
}

#[derive(Debug, Deserialize)]
pub struct SubscriptionFile {
    pub topic: String,
    pub format: Format,
    /// Source codes to event types (CAP SAME codes, EIDO incident types, a CAD's codes).
    #[serde(default)]
    pub types: std::collections::BTreeMap<String, String>,
    /// Mapped JSON: where each field is.
    #[serde(default)]
    pub mapping: Option<crate::event::mapped::Mapping>,
    /// Accept only events signed with HMAC-SHA256 under `signing_key`.
    #[serde(default)]
    pub require_signature: bool,
    #[serde(default)]
    pub signing_key: Option<SecretString>,
    #[serde(default)]
    pub signing_key_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct BrokerFile {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Listen on an address other than loopback: the embedded broker asks for no
    /// password, so anyone who reaches it can publish alerts. Refused unless set.
    pub allow_remote: bool,
}

impl Default for BrokerFile {
    fn default() -> Self {
        BrokerFile { enabled: false, listen: SocketAddr::from(([127, 0, 0, 1], 1883)), allow_remote: false }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct StoreFile {
    pub path: PathBuf,
    pub busy_timeout: HumanDuration,
    /// Refreshed OAuth tokens and platform sessions; default: the store's directory.
    pub state_dir: Option<PathBuf>,
}

impl Default for StoreFile {
    fn default() -> Self {
        StoreFile {
            path: PathBuf::from("data/bullhorn.db"),
            busy_timeout: HumanDuration(Duration::from_secs(5)),
            state_dir: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct AdminFile {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// The bearer token of the admin API; unset: one is generated into the state dir.
    pub token: Option<SecretString>,
    pub token_file: Option<PathBuf>,
    /// Where staff reach the admin server (through the agency's reverse proxy), for the
    /// approve/reject links in staff notices; default: `http://` + `listen`.
    pub public_url: Option<String>,
    /// Listen on an address other than loopback: the server speaks plain HTTP, so its
    /// token and links cross the network in clear unless a TLS proxy is in front.
    /// Refused unless set.
    pub allow_remote: bool,
}

impl Default for AdminFile {
    fn default() -> Self {
        AdminFile {
            enabled: true,
            listen: SocketAddr::from(([127, 0, 0, 1], 9180)),
            token: None,
            token_file: None,
            public_url: None,
            allow_remote: false,
        }
    }
}

/// Staff notifications: held alerts with approve/reject links, escalation, alerts late
/// on a channel, refused credentials.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct NotifyFile {
    /// Staff channels (`public = false`) that get every notice.
    pub channels: Vec<String>,
    /// A held alert nobody decided on for this long is sent again to `escalate_channels`.
    pub escalate_after: Option<HumanDuration>,
    /// Default: `channels`.
    pub escalate_channels: Vec<String>,
    /// A critical alert not out on a channel this long after it was queued is reported.
    pub late_after: HumanDuration,
    /// Report a channel whose credentials the platform refuses, or whose
    /// `credentials_expire` is near.
    pub credentials: bool,
    /// How long before a channel's `credentials_expire` staff are first told.
    pub credentials_warn: HumanDuration,
    /// How long an approve/reject link works.
    pub link_ttl: HumanDuration,
    /// How often held alerts (hold timers, notices) are looked at.
    pub check_every: HumanDuration,
}

impl Default for NotifyFile {
    fn default() -> Self {
        NotifyFile {
            channels: Vec::new(),
            escalate_after: None,
            escalate_channels: Vec::new(),
            late_after: HumanDuration(Duration::from_secs(5 * 60)),
            credentials: true,
            credentials_warn: HumanDuration(Duration::from_secs(14 * 24 * 3600)),
            link_ttl: HumanDuration(Duration::from_secs(24 * 3600)),
            check_every: HumanDuration(Duration::from_secs(1)),
        }
    }
}

/// Images: where they may be fetched from, how long an alert waits for them, where
/// platforms that take images by URL find them.
#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct MediaFile {
    /// Origins images may be fetched from: `https://photos.sheriff.example`,
    /// `https://*.ncmec.org`, `http://10.20.1.5:8080`. Nothing else is ever fetched.
    pub allow: Vec<String>,
    /// Networks an allowed host name may resolve into (the agency's internal servers);
    /// loopback, private and link-local addresses are refused otherwise.
    pub allow_private: Vec<String>,
    /// Largest image taken, fetched or inline.
    pub max_bytes: usize,
    /// Longest a fetch may take.
    pub timeout: HumanDuration,
    /// Longest a critical alert waits for its image before it goes out without it.
    pub critical_wait: HumanDuration,
    /// The same for everything else.
    pub wait: HumanDuration,
    /// Where images are published for platforms that fetch them by URL.
    pub public: Option<PublicFile>,
}

impl Default for MediaFile {
    fn default() -> Self {
        MediaFile {
            allow: Vec::new(),
            allow_private: Vec::new(),
            max_bytes: 10 * 1024 * 1024,
            timeout: HumanDuration(Duration::from_secs(10)),
            critical_wait: HumanDuration(Duration::from_secs(3)),
            wait: HumanDuration(Duration::from_secs(15)),
            public: None,
        }
    }
}

/// A public media store: a directory the agency's web server serves, or an
/// S3-compatible bucket.
#[derive(Debug, Deserialize)]
pub struct PublicFile {
    /// Where the files go (served at `base_url`).
    #[serde(default)]
    pub dir: Option<PathBuf>,
    /// The public URL of the directory or bucket.
    pub base_url: String,
    /// How long a published image stays.
    #[serde(default = "default_keep")]
    pub keep: HumanDuration,
    #[serde(default)]
    pub s3_endpoint: Option<String>,
    #[serde(default)]
    pub bucket: Option<String>,
    #[serde(default)]
    pub region: Option<String>,
    #[serde(default)]
    pub access_key: Option<String>,
    #[serde(default)]
    pub secret_key: Option<SecretString>,
    #[serde(default)]
    pub secret_key_file: Option<PathBuf>,
    /// `https://endpoint/bucket/key` (true, MinIO and most) or `https://bucket.endpoint/key`.
    #[serde(default = "yes")]
    pub path_style: bool,
}

fn default_keep() -> HumanDuration {
    HumanDuration(Duration::from_secs(7 * 24 * 3600))
}

/// When a channel posts a text card (an image of the alert's text).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Card {
    Never,
    /// When the alert has no image it can post (Instagram's default: it takes no text-only post).
    Missing,
}

/// Whether the daemon posts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Live,
    /// Everything runs and is recorded; nothing is posted (console and file still write).
    Shadow,
}

/// What happens to a held alert nobody decided on within the rule's `hold_for`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AfterHold {
    /// It expires unposted.
    #[default]
    Reject,
    /// It goes out as if approved.
    Publish,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct AgencyFile {
    pub name: String,
    pub time_zone: Option<String>,
    pub phone: Option<String>,
    pub web: Option<String>,
    pub hashtags: Vec<String>,
    /// Languages to post, in order (BCP 47, e.g. "en", "es"); empty: every language the
    /// event has.
    pub languages: Vec<String>,
    pub map: MapProvider,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct DeliveryFile {
    /// First retry delay; doubles per failed attempt up to `retry_max` (full jitter).
    pub retry_base: HumanDuration,
    pub retry_max: HumanDuration,
    /// A delivery that has failed transiently for this long is dead-lettered.
    pub give_up_after: HumanDuration,
    /// A platform's "retry after" is honoured up to this long, then asked again.
    pub max_retry_after: HumanDuration,
    pub request_timeout: HumanDuration,
    /// How long shutdown waits for requests already sent.
    pub shutdown_grace: HumanDuration,
}

impl Default for DeliveryFile {
    fn default() -> Self {
        DeliveryFile {
            retry_base: HumanDuration(Duration::from_secs(2)),
            retry_max: HumanDuration(Duration::from_secs(600)),
            give_up_after: HumanDuration(Duration::from_secs(24 * 3600)),
            max_retry_after: HumanDuration(Duration::from_secs(3600)),
            request_timeout: HumanDuration(Duration::from_secs(15)),
            shutdown_grace: HumanDuration(Duration::from_secs(10)),
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub struct TemplatesFile {
    /// Default: `templates/` beside the config file.
    pub dir: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct EventRuleFile {
    pub priority: Priority,
    pub channels: Vec<String>,
    pub max_age: Option<HumanDuration>,
    /// Template set (folder under the templates dir); default: the event type.
    pub templates: Option<String>,
    /// Unset: auto for alerts (JSON, CAP), hold for CAD incident data (EIDO, mapped).
    pub approval: Option<Approval>,
    /// When a CAD incident closes: post (as a cancellation) or end silently.
    pub post_on_close: bool,
    /// How long a held alert waits for a decision before `after_hold` applies.
    pub hold_for: Option<HumanDuration>,
    pub after_hold: AfterHold,
    /// Added to the agency's hashtags for this type.
    pub hashtags: Vec<String>,
    /// When set, only these entries of the event's `fields` reach templates.
    pub public_fields: Option<Vec<String>>,
}

impl Default for EventRuleFile {
    fn default() -> Self {
        EventRuleFile {
            priority: Priority::Normal,
            channels: vec!["*".to_owned()],
            max_age: None,
            templates: None,
            approval: None,
            post_on_close: false,
            hold_for: None,
            after_hold: AfterHold::Reject,
            hashtags: Vec::new(),
            public_fields: None,
        }
    }
}

/// Whether an event type posts by itself or waits for a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Approval {
    #[default]
    Auto,
    /// Deliveries wait in the `held` state until approved or rejected.
    Hold,
}

/// What a channel does with a text over its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Overflow {
    /// Shorten the description at a word boundary, keeping everything else.
    #[default]
    Shorten,
    /// Post a thread of numbered parts.
    Thread,
}

#[derive(Debug, Deserialize)]
#[serde(default)]
pub struct ReloadFile {
    /// Reload when a file under the config's directory changes (SIGHUP always works).
    pub watch: bool,
    pub debounce: HumanDuration,
}

impl Default for ReloadFile {
    fn default() -> Self {
        ReloadFile { watch: false, debounce: HumanDuration(Duration::from_millis(500)) }
    }
}

/// The keys every channel has, whatever its kind.
#[derive(Debug, Deserialize)]
pub struct ChannelCommonFile {
    pub kind: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default = "yes")]
    pub public: bool,
    #[serde(default)]
    pub rate: Option<Rate>,
    #[serde(default)]
    pub reserve: Option<Reserve>,
    /// The channel's own length limit, e.g. a Mastodon instance allowing more than 500.
    #[serde(default)]
    pub max_chars: Option<usize>,
    #[serde(default)]
    pub overflow: Overflow,
    /// Languages this channel posts (overrides the agency's).
    #[serde(default)]
    pub languages: Option<Vec<String>>,
    /// After posting a cancellation, delete the original where the platform allows it.
    #[serde(default)]
    pub delete_original: bool,
    /// Post a text card when the alert has no image (default: Instagram only).
    #[serde(default)]
    pub card: Option<Card>,
    /// The largest image the platform takes (a Mastodon instance's own limit).
    #[serde(default)]
    pub image_max_bytes: Option<usize>,
    /// When the channel's token expires (`2027-01-15`, the start of that day in the
    /// agency's zone, or an RFC 3339 time): staff are warned ahead of it.
    #[serde(default)]
    pub credentials_expire: Option<String>,
    /// How many deliveries may be in flight at once (default: the platform's).
    #[serde(default)]
    pub concurrency: Option<usize>,
}

/// Keys split off the channel table before [`ChannelCommonFile`] is read; the rest belongs
/// to the kind.
pub const CHANNEL_COMMON_KEYS: &[&str] = &[
    "kind",
    "enabled",
    "public",
    "rate",
    "reserve",
    "max_chars",
    "overflow",
    "languages",
    "delete_original",
    "card",
    "image_max_bytes",
    "credentials_expire",
    "concurrency",
];

fn yes() -> bool {
    true
}

#[derive(Debug, Default, Deserialize)]
pub struct ConsoleFile {}

#[derive(Debug, Deserialize)]
pub struct FileChannelFile {
    pub path: PathBuf,
}

#[derive(Debug, Deserialize)]
pub struct WebhookFile {
    pub url: String,
    #[serde(default)]
    pub secret: Option<SecretString>,
    #[serde(default)]
    pub secret_file: Option<PathBuf>,
}

/// Where `map_url` points.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MapProvider {
    #[default]
    OpenStreetMap,
    Google,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserve_rounds_down_and_caps() {
        assert_eq!(Reserve::Percent(20.0).of(300), 60);
        assert_eq!(Reserve::Percent(20.0).of(4), 0);
        assert_eq!(Reserve::Percent(100.0).of(7), 7);
        assert_eq!(Reserve::Count(5).of(3), 3);
    }
}
