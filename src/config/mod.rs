//! Configuration: load `bullhorn.toml` (plus `BULLHORN__SECTION__KEY` environment
//! overrides) through the `config` crate, then validate it into a [`Config`].
//!
//! Loading is two-phase, as in ripgrep and Vector: [`file`] mirrors the file with serde,
//! then [`validate`] resolves paths and secrets and cross-checks sections. Every problem
//! found on the way, unknown keys included, is collected with its key path and reported
//! at once in [`ConfigErrors`]; a config is either wholly valid or not used.

mod channels;
pub mod file;
mod secret;

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::SecretString;
use serde::de::DeserializeOwned;

pub use channels::{
    BearerOrRefresh, BlueskySettings, DiscordSettings, MastodonSettings, MetaSettings, NextdoorSettings,
    OAuth2Settings, SlackSettings, SmsSender, SmsSettings, TeamsSettings, TelegramSettings, XAuth, XSettings,
};
pub use file::{AfterHold, Approval, Card, LogFormat, Mode, Overflow, Protocol, Reserve};
pub use secret::{SecretUrl, read_secret, write_secret};

use crate::backoff::Backoff;
use crate::event::{Format, Priority};
use crate::platform::Platform;
use file::*;

/// The config file used when neither `--config` nor `BULLHORN_CONFIG` names one.
pub const DEFAULT_PATH: &str = "config/bullhorn.toml";

/// One problem in the config, at a key path such as `channels.hook.url`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub path: String,
    pub message: String,
}

/// Every problem found in a config, in file order as far as it is known.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigErrors {
    pub file: PathBuf,
    pub errors: Vec<ConfigError>,
}

impl fmt::Display for ConfigErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let n = self.errors.len();
        write!(f, "{}: {n} problem{}", self.file.display(), if n == 1 { "" } else { "s" })?;
        for e in &self.errors {
            if e.path.is_empty() {
                write!(f, "\n  - {}", e.message)?;
            } else {
                write!(f, "\n  - {}: {}", e.path, e.message)?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for ConfigErrors {}

#[derive(Default)]
struct Errors(Vec<ConfigError>);

impl Errors {
    fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(ConfigError { path: path.into(), message: message.into() });
    }
}

/// The validated configuration the daemon runs with.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file this was loaded from.
    pub source: PathBuf,
    /// Live, or shadow: everything runs and is recorded, nothing is posted.
    pub mode: Mode,
    pub log: LogConfig,
    pub mqtt: MqttConfig,
    pub broker: BrokerConfig,
    pub store: StoreConfig,
    pub admin: AdminConfig,
    pub agency: Agency,
    pub delivery: DeliveryConfig,
    pub templates_dir: PathBuf,
    pub reload: ReloadConfig,
    pub notify: NotifyConfig,
    pub media: MediaConfig,
    /// Rules by event type.
    pub events: BTreeMap<String, EventRule>,
    /// Channels by name.
    pub channels: BTreeMap<String, ChannelConfig>,
}

/// Hot reload: SIGHUP always; file watching when asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReloadConfig {
    pub watch: bool,
    pub debounce: Duration,
}

#[derive(Debug, Clone)]
pub struct LogConfig {
    pub level: Option<String>,
    pub format: LogFormat,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let scheme = if self.tls { "mqtts" } else { "mqtt" };
        if self.host.contains(':') {
            write!(f, "{scheme}://[{}]:{}", self.host, self.port)
        } else {
            write!(f, "{scheme}://{}:{}", self.host, self.port)
        }
    }
}

#[derive(Debug, Clone)]
pub struct MqttConfig {
    pub endpoint: Endpoint,
    pub client_id: String,
    pub protocol: Protocol,
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub ca_file: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub client_cert: Option<(PathBuf, PathBuf)>,
    pub keep_alive: Duration,
    pub session_expiry: Duration,
    pub max_payload_bytes: usize,
    pub max_packet_bytes: usize,
    pub receive_maximum: u16,
    pub reconnect: Backoff,
    pub subscriptions: Vec<Subscription>,
    pub send_topic: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    pub topic: String,
    pub format: Format,
    pub options: crate::event::DecodeOptions,
    /// Set with `require_signature = true`: events must carry a valid HMAC-SHA256.
    pub signing_key: Option<SigningKey>,
}

/// The HMAC key a subscription's publishers sign with. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct SigningKey(pub SecretString);

impl PartialEq for SigningKey {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret as _;
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for SigningKey {}

impl fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SigningKey([REDACTED])")
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Listening beyond loopback was asked for (warned about at start).
    pub allow_remote: bool,
}

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    /// Where refreshed OAuth tokens and platform sessions are kept: `[store] state_dir`,
    /// else the store file's directory.
    pub state_dir: PathBuf,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// The API's bearer token; `None`: generated into the state dir at start
    /// ([`crate::admin::token`]).
    pub token: Option<SecretString>,
    /// Where staff reach the admin server, for links in notices (no trailing slash).
    pub public_url: String,
    /// Listening beyond loopback was asked for (warned about at start).
    pub allow_remote: bool,
}

/// Images (`[media]`).
#[derive(Debug, Clone)]
pub struct MediaConfig {
    pub allow: Vec<crate::media::fetch::Origin>,
    pub allow_private: Vec<ipnet::IpNet>,
    pub max_bytes: usize,
    pub timeout: Duration,
    pub critical_wait: Duration,
    pub wait: Duration,
    pub public: Option<PublicConfig>,
}

/// Where images are published for platforms that take them by URL.
#[derive(Debug, Clone)]
pub struct PublicConfig {
    pub target: PublicTarget,
    /// No trailing slash.
    pub base_url: String,
    pub keep: Duration,
}

#[derive(Debug, Clone)]
pub enum PublicTarget {
    Dir(PathBuf),
    S3 {
        endpoint: reqwest::Url,
        bucket: String,
        region: String,
        access_key: String,
        secret_key: SecretString,
        path_style: bool,
    },
}

/// Staff notifications (`[notify]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotifyConfig {
    pub channels: Vec<String>,
    pub escalate_after: Option<Duration>,
    pub escalate_channels: Vec<String>,
    pub late_after: Duration,
    pub credentials: bool,
    pub credentials_warn: Duration,
    pub link_ttl: Duration,
    pub check_every: Duration,
}

/// The agency profile every template sees.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Agency {
    pub name: String,
    pub time_zone: String,
    pub phone: Option<String>,
    pub web: Option<String>,
    pub hashtags: Vec<String>,
    #[serde(skip)]
    pub languages: Vec<String>,
    #[serde(skip)]
    pub map: crate::render::filters::MapProvider,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub retry: Backoff,
    pub give_up_after: Duration,
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
}

/// What happens to events of one type.
#[derive(Debug, Clone)]
pub struct EventRule {
    pub priority: Priority,
    pub channels: ChannelSelector,
    pub max_age: Option<Duration>,
    pub templates: String,
    /// As configured; see [`EventRule::approval_for`].
    pub approval: Option<Approval>,
    pub hashtags: Vec<String>,
    /// When set, only these entries of the event's `fields` reach templates.
    pub public_fields: Option<Vec<String>>,
    /// When a CAD incident closes: post it (as a cancellation) or end silently.
    pub post_on_close: bool,
    /// How long a held alert waits for a decision, then `after_hold` applies.
    pub hold_for: Option<Duration>,
    pub after_hold: AfterHold,
}

impl EventRule {
    /// A rule with defaults for everything but these (tests, samples).
    pub fn new(priority: Priority, channels: ChannelSelector, templates: &str) -> Self {
        EventRule {
            priority,
            channels,
            max_age: None,
            templates: templates.to_owned(),
            approval: None,
            hashtags: Vec::new(),
            public_fields: None,
            post_on_close: false,
            hold_for: None,
            after_hold: AfterHold::Reject,
        }
    }

    /// Whether events from `format` wait for a person: as configured, else hold for CAD
    /// incident data (an incident is not an alert until someone says so) and auto for
    /// alerts.
    pub fn approval_for(&self, format: Format) -> Approval {
        self.approval.unwrap_or(if format.is_cad() { Approval::Hold } else { Approval::Auto })
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChannelSelector {
    All,
    Named(Vec<String>),
}

impl ChannelSelector {
    pub fn includes(&self, channel: &str) -> bool {
        match self {
            ChannelSelector::All => true,
            ChannelSelector::Named(names) => names.iter().any(|n| n == channel),
        }
    }
}

#[derive(Debug, Clone)]
pub struct ChannelConfig {
    pub name: String,
    pub enabled: bool,
    /// `false` for staff and test channels: the only ones non-actual events may reach.
    pub public: bool,
    pub quota: Option<Quota>,
    /// The channel's own length limit (else the platform's).
    pub max_chars: Option<usize>,
    pub overflow: Overflow,
    /// Languages this channel posts (else the agency's list, else every one).
    pub languages: Option<Vec<String>>,
    /// After posting a cancellation, delete the original where the platform allows it.
    pub delete_original: bool,
    /// Post a text card when the alert has no usable image.
    pub card: bool,
    /// The largest image the platform takes, when not the platform's default.
    pub image_max_bytes: Option<usize>,
    /// When the channel's token expires, as the operator recorded it.
    pub credentials_expire: Option<jiff::Timestamp>,
    pub kind: ChannelKind,
}

impl ChannelConfig {
    /// A channel with defaults for everything but these (tests, previews).
    pub fn new(name: &str, kind: ChannelKind) -> Self {
        ChannelConfig {
            name: name.to_owned(),
            enabled: true,
            public: true,
            quota: None,
            max_chars: None,
            overflow: Overflow::Shorten,
            languages: None,
            delete_original: false,
            card: false,
            image_max_bytes: None,
            credentials_expire: None,
            kind,
        }
    }

    pub fn platform(&self) -> Platform {
        self.kind.platform()
    }

    /// The length limit that applies: the channel's own, else the platform's.
    pub fn limit(&self) -> Option<usize> {
        self.max_chars.or_else(|| self.platform().profile().limit)
    }
}

/// A channel's rate limit with the share kept for critical alerts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Quota {
    pub limit: u32,
    pub window: Duration,
    pub reserve: u32,
}

/// The default share of a window kept for critical alerts.
pub const DEFAULT_RESERVE: Reserve = Reserve::Percent(10.0);

#[derive(Debug, Clone)]
pub enum ChannelKind {
    Console,
    File { path: PathBuf },
    Webhook { url: SecretUrl, secret: Option<SecretString> },
    X(XSettings),
    Mastodon(MastodonSettings),
    Bluesky(BlueskySettings),
    Facebook(MetaSettings),
    Instagram(MetaSettings),
    Threads(MetaSettings),
    Telegram(TelegramSettings),
    Discord(DiscordSettings),
    Slack(SlackSettings),
    Teams(TeamsSettings),
    Nextdoor(NextdoorSettings),
    Sms(SmsSettings),
}

impl ChannelKind {
    /// The kind, as written in `kind = "..."`.
    pub fn name(&self) -> &'static str {
        self.platform().as_str()
    }

    /// Where this kind posts, for text rules and escaping.
    pub fn platform(&self) -> Platform {
        match self {
            ChannelKind::Console => Platform::Console,
            ChannelKind::File { .. } => Platform::File,
            ChannelKind::Webhook { .. } => Platform::Webhook,
            ChannelKind::X(_) => Platform::X,
            ChannelKind::Mastodon(_) => Platform::Mastodon,
            ChannelKind::Bluesky(_) => Platform::Bluesky,
            ChannelKind::Facebook(_) => Platform::Facebook,
            ChannelKind::Instagram(_) => Platform::Instagram,
            ChannelKind::Threads(_) => Platform::Threads,
            ChannelKind::Telegram(_) => Platform::Telegram,
            ChannelKind::Discord(_) => Platform::Discord,
            ChannelKind::Slack(_) => Platform::Slack,
            ChannelKind::Teams(_) => Platform::Teams,
            ChannelKind::Nextdoor(_) => Platform::Nextdoor,
            ChannelKind::Sms(_) => Platform::Sms,
        }
    }
}

/// The config file of an installed package.
pub const INSTALLED_PATH: &str = "/etc/bullhorn/bullhorn.toml";

/// Which config file to use: `--config`, else `BULLHORN_CONFIG`, else [`DEFAULT_PATH`]
/// if it exists (a checkout), else [`INSTALLED_PATH`] if it exists (the package).
pub fn resolve_path(cli: Option<&Path>) -> PathBuf {
    cli.map(Path::to_path_buf)
        .or_else(|| std::env::var_os("BULLHORN_CONFIG").filter(|v| !v.is_empty()).map(PathBuf::from))
        .unwrap_or_else(|| {
            let local = PathBuf::from(DEFAULT_PATH);
            if !local.exists() && Path::new(INSTALLED_PATH).exists() { PathBuf::from(INSTALLED_PATH) } else { local }
        })
}

/// Load and validate the config at `path`, with `BULLHORN__SECTION__KEY` overrides from
/// the process environment.
pub fn load(path: &Path) -> Result<Config, ConfigErrors> {
    load_with_env(path, std::env::vars())
}

/// [`load`] with an explicit environment, for tests.
pub fn load_with_env(path: &Path, env: impl IntoIterator<Item = (String, String)>) -> Result<Config, ConfigErrors> {
    let fail = |errors: Vec<ConfigError>| ConfigErrors { file: path.to_path_buf(), errors };
    if !path.is_file() {
        return Err(fail(vec![ConfigError {
            path: String::new(),
            message: "config file not found (use --config PATH or BULLHORN_CONFIG)".to_owned(),
        }]));
    }
    let env: config::Map<String, String> = env.into_iter().filter(|(k, _)| k.starts_with("BULLHORN__")).collect();
    let built = config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix("BULLHORN")
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(env)),
        )
        .build()
        .map_err(|e| fail(vec![ConfigError { path: String::new(), message: e.to_string() }]))?;
    let root: BTreeMap<String, config::Value> =
        built.try_deserialize().map_err(|e| fail(vec![ConfigError { path: String::new(), message: e.to_string() }]))?;
    let mut errors = Errors::default();
    let base = path.parent().map(Path::to_path_buf).unwrap_or_default();
    let config = validate(path, &base, root, &mut errors);
    if errors.0.is_empty() { Ok(config) } else { Err(fail(errors.0)) }
}

/// Deserialize one section, recording unknown keys and the first type error (with its
/// exact path) instead of stopping.
fn section<T: DeserializeOwned>(value: config::Value, path: &str, errors: &mut Errors) -> Option<T> {
    let mut unknown = Vec::new();
    let mut record = |p: serde_ignored::Path<'_>| unknown.push(key_path(&p));
    let de = serde_ignored::Deserializer::new(value, &mut record);
    let result: Result<T, _> = serde_path_to_error::deserialize(de);
    for key in unknown {
        errors.push(join(path, &key), "unknown key");
    }
    match result {
        Ok(v) => Some(v),
        Err(e) => {
            let inner = e.path().to_string();
            let at = if inner == "." { path.to_owned() } else { join(path, &inner) };
            errors.push(at, clean_serde_message(&e.into_inner().to_string()));
            None
        }
    }
}

/// A key path as the config's errors write them: `subscribe[3].mapping.typo`.
fn key_path(p: &serde_ignored::Path<'_>) -> String {
    use serde_ignored::Path;
    match p {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", key_path(parent)),
        Path::Map { parent, key } => join(&key_path(parent), key),
        Path::Some { parent } | Path::NewtypeStruct { parent } | Path::NewtypeVariant { parent } => key_path(parent),
    }
}

fn join(a: &str, b: &str) -> String {
    match (a.is_empty(), b.is_empty()) {
        (true, _) => b.to_owned(),
        (_, true) => a.to_owned(),
        _ => format!("{a}.{b}"),
    }
}

/// The config crate appends its own (often wrong) key path to serde messages; ours is exact.
fn clean_serde_message(msg: &str) -> String {
    msg.split(" for key `").next().unwrap_or(msg).to_owned()
}

fn take_section<T: DeserializeOwned + Default>(
    root: &mut BTreeMap<String, config::Value>,
    name: &str,
    errors: &mut Errors,
) -> T {
    match root.remove(name) {
        Some(v) => section(v, name, errors).unwrap_or_default(),
        None => T::default(),
    }
}

fn table(value: config::Value, path: &str, errors: &mut Errors) -> BTreeMap<String, config::Value> {
    match value.into_table() {
        Ok(t) => t.into_iter().collect(),
        Err(e) => {
            errors.push(path, clean_serde_message(&e.to_string()));
            BTreeMap::new()
        }
    }
}

const SECTIONS: &[&str] = &[
    "mode",
    "log",
    "mqtt",
    "broker",
    "store",
    "admin",
    "agency",
    "delivery",
    "templates",
    "reload",
    "notify",
    "media",
    "events",
    "channels",
];

fn validate(source: &Path, base: &Path, mut root: BTreeMap<String, config::Value>, errors: &mut Errors) -> Config {
    let unknown: Vec<String> = root.keys().filter(|k| !SECTIONS.contains(&k.as_str())).cloned().collect();
    for k in unknown {
        errors.push(k, format!("unknown section (known: {})", SECTIONS.join(", ")));
    }
    let log: LogFile = take_section(&mut root, "log", errors);
    let mqtt: MqttFile = take_section(&mut root, "mqtt", errors);
    let broker: BrokerFile = take_section(&mut root, "broker", errors);
    let store: StoreFile = take_section(&mut root, "store", errors);
    let admin: AdminFile = take_section(&mut root, "admin", errors);
    let agency: AgencyFile = take_section(&mut root, "agency", errors);
    let delivery: DeliveryFile = take_section(&mut root, "delivery", errors);
    let templates: TemplatesFile = take_section(&mut root, "templates", errors);
    let reload: ReloadFile = take_section(&mut root, "reload", errors);
    let notify: NotifyFile = take_section(&mut root, "notify", errors);
    let media: MediaFile = take_section(&mut root, "media", errors);
    let mode = match root.remove("mode") {
        None => Mode::Live,
        Some(v) => section::<Mode>(v, "mode", errors).unwrap_or_default(),
    };

    let time_zone = agency.time_zone.clone().unwrap_or_else(|| "UTC".to_owned());
    let tz = jiff::tz::TimeZone::get(&time_zone).unwrap_or_else(|e| {
        errors.push("agency.time_zone", format!("unknown time zone {time_zone:?}: {e}"));
        jiff::tz::TimeZone::UTC
    });
    let channels = root
        .remove("channels")
        .map(|v| validate_channels(table(v, "channels", errors), &tz, errors))
        .unwrap_or_default();
    if channels.is_empty() {
        errors.push("channels", "no channels configured");
    }
    let events = root
        .remove("events")
        .map(|v| validate_events(table(v, "events", errors), &channels, errors))
        .unwrap_or_default();
    if events.is_empty() {
        errors.push("events", "no event types configured: every event would be rejected");
    }

    let broker = validate_broker(broker, errors);
    let mqtt = validate_mqtt(mqtt, &broker, errors);
    for (i, s) in mqtt.subscriptions.iter().enumerate() {
        for (code, t) in &s.options.types {
            if !events.contains_key(t) {
                errors.push(
                    format!("mqtt.subscribe[{i}].types.{code}"),
                    format!("event type {t:?} has no [events.{t}] rule"),
                );
            }
        }
    }

    for (i, lang) in agency.languages.iter().enumerate() {
        if !valid_language(lang) {
            errors.push(
                format!("agency.languages[{i}]"),
                format!("{lang:?} is not a language tag like \"en\" or \"es-US\""),
            );
        }
    }
    let agency = Agency {
        name: agency.name,
        time_zone,
        phone: agency.phone,
        web: agency.web,
        hashtags: agency.hashtags,
        languages: agency.languages,
        map: agency.map,
    };

    let delivery = DeliveryConfig {
        retry: Backoff::new(delivery.retry_base.0, delivery.retry_max.0),
        give_up_after: delivery.give_up_after.0,
        max_retry_after: delivery.max_retry_after.0,
        request_timeout: delivery.request_timeout.0,
        shutdown_grace: delivery.shutdown_grace.0,
    };
    if delivery.retry.base.is_zero() || delivery.retry.base > delivery.retry.cap {
        errors.push("delivery.retry_base", "must be above zero and at most delivery.retry_max");
    }
    if delivery.request_timeout.is_zero() {
        errors.push("delivery.request_timeout", "must be above zero");
    }

    let templates_dir = templates.dir.unwrap_or_else(|| base.join("templates"));
    let notify = validate_notify(notify, &channels, errors);
    let media = validate_media(media, errors);
    let admin = validate_admin(admin, errors);

    Config {
        source: source.to_path_buf(),
        mode,
        log: LogConfig { level: log.level, format: log.format },
        mqtt,
        broker,
        store: StoreConfig {
            state_dir: store.state_dir.unwrap_or_else(|| {
                store.path.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf()
            }),
            path: store.path,
            busy_timeout: store.busy_timeout.0,
        },
        admin,
        agency,
        delivery,
        templates_dir,
        reload: ReloadConfig { watch: reload.watch, debounce: reload.debounce.0 },
        notify,
        media,
        events,
        channels,
    }
}

/// A BCP 47 language tag, loosely: letters, digits and hyphens, starting with letters.
pub fn valid_language(tag: &str) -> bool {
    !tag.is_empty()
        && tag.len() <= 35
        && tag.starts_with(|c: char| c.is_ascii_alphabetic())
        && tag.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
}

fn validate_admin(a: AdminFile, errors: &mut Errors) -> AdminConfig {
    let token = match secret::resolve(a.token, a.token_file.as_deref()) {
        Ok(t) => t,
        Err(e) => {
            errors.push("admin.token_file", e);
            None
        }
    };
    if let Some(t) = &token {
        use secrecy::ExposeSecret as _;
        if t.expose_secret().len() < 16 {
            errors.push("admin.token", "too short: use at least 16 characters (e.g. openssl rand -hex 32)");
        }
    }
    let public_url = match a.public_url {
        Some(u) => match reqwest::Url::parse(&u) {
            Ok(url) if matches!(url.scheme(), "http" | "https") => url.as_str().trim_end_matches('/').to_owned(),
            Ok(_) => {
                errors.push("admin.public_url", "must be an http:// or https:// URL");
                String::new()
            }
            Err(e) => {
                errors.push("admin.public_url", format!("invalid URL: {e}"));
                String::new()
            }
        },
        None => {
            let ip = match a.listen.ip() {
                std::net::IpAddr::V4(v) if v.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
                std::net::IpAddr::V6(v) if v.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
                ip => ip,
            };
            format!("http://{}", SocketAddr::new(ip, a.listen.port()))
        }
    };
    if a.enabled && !a.listen.ip().is_loopback() && !a.allow_remote {
        errors.push(
            "admin.listen",
            format!(
                "{} is not a loopback address: the admin server speaks plain HTTP, so its bearer token, the \
                 operators' requests and the approve links would cross the network in clear. Keep it on 127.0.0.1 \
                 behind a TLS reverse proxy (and set admin.public_url), or set admin.allow_remote = true to accept that",
                a.listen
            ),
        );
    }
    AdminConfig { enabled: a.enabled, listen: a.listen, token, public_url, allow_remote: a.allow_remote }
}

fn validate_media(m: MediaFile, errors: &mut Errors) -> MediaConfig {
    let mut allow = Vec::new();
    for (i, origin) in m.allow.iter().enumerate() {
        match crate::media::fetch::Origin::parse(origin) {
            Ok(o) => allow.push(o),
            Err(e) => errors.push(format!("media.allow[{i}]"), e),
        }
    }
    let mut allow_private = Vec::new();
    for (i, net) in m.allow_private.iter().enumerate() {
        // A bare address is a network of one.
        let parsed = net.parse::<ipnet::IpNet>().or_else(|_| net.parse::<std::net::IpAddr>().map(ipnet::IpNet::from));
        match parsed {
            Ok(n) => allow_private.push(n),
            Err(_) => errors
                .push(format!("media.allow_private[{i}]"), format!("{net:?} is not a network like \"10.20.0.0/16\"")),
        }
    }
    if m.max_bytes == 0 {
        errors.push("media.max_bytes", "must be above zero");
    }
    if m.timeout.0.is_zero() {
        errors.push("media.timeout", "must be above zero");
    }
    let public = m.public.and_then(|p| validate_public(p, errors));
    MediaConfig {
        allow,
        allow_private,
        max_bytes: m.max_bytes,
        timeout: m.timeout.0,
        critical_wait: m.critical_wait.0,
        wait: m.wait.0,
        public,
    }
}

fn validate_public(p: PublicFile, errors: &mut Errors) -> Option<PublicConfig> {
    let base_url = match reqwest::Url::parse(&p.base_url) {
        Ok(u) if matches!(u.scheme(), "https" | "http") => u.as_str().trim_end_matches('/').to_owned(),
        _ => {
            errors.push("media.public.base_url", "must be the http(s) URL the images are served at");
            return None;
        }
    };
    let target = match (p.dir, p.s3_endpoint) {
        (Some(dir), None) => PublicTarget::Dir(dir),
        (None, Some(endpoint)) => {
            let endpoint = match reqwest::Url::parse(&endpoint) {
                Ok(u) if matches!(u.scheme(), "https" | "http") => u,
                _ => {
                    errors.push("media.public.s3_endpoint", "must be an http(s) URL");
                    return None;
                }
            };
            let secret_key = match secret::resolve(p.secret_key, p.secret_key_file.as_deref()) {
                Ok(Some(s)) => s,
                Ok(None) => {
                    errors.push("media.public.secret_key_file", "an S3 store needs secret_key_file (or secret_key)");
                    return None;
                }
                Err(e) => {
                    errors.push("media.public.secret_key_file", e);
                    return None;
                }
            };
            let (Some(bucket), Some(access_key)) = (p.bucket, p.access_key) else {
                errors.push("media.public", "an S3 store needs bucket and access_key");
                return None;
            };
            PublicTarget::S3 {
                endpoint,
                bucket,
                region: p.region.unwrap_or_else(|| "us-east-1".to_owned()),
                access_key,
                secret_key,
                path_style: p.path_style,
            }
        }
        _ => {
            errors.push("media.public", "give either dir (served by your web server) or s3_endpoint and bucket");
            return None;
        }
    };
    Some(PublicConfig { target, base_url, keep: p.keep.0 })
}

fn validate_notify(n: NotifyFile, channels: &BTreeMap<String, ChannelConfig>, errors: &mut Errors) -> NotifyConfig {
    for (key, list) in [("channels", &n.channels), ("escalate_channels", &n.escalate_channels)] {
        for (i, name) in list.iter().enumerate() {
            match channels.get(name) {
                None => errors.push(format!("notify.{key}[{i}]"), format!("unknown channel {name:?}")),
                Some(c) if c.public => errors.push(
                    format!("notify.{key}[{i}]"),
                    format!(
                        "{name:?} is public: staff notices (with approve links) go only to channels with public = false"
                    ),
                ),
                Some(_) => {}
            }
        }
    }
    if n.escalate_after.is_some() && n.channels.is_empty() && n.escalate_channels.is_empty() {
        errors.push("notify.escalate_after", "escalation needs notify.channels or notify.escalate_channels");
    }
    if n.late_after.0.is_zero() || n.link_ttl.0.is_zero() {
        errors.push("notify", "late_after and link_ttl must be above zero");
    }
    if !(Duration::from_millis(10)..=Duration::from_secs(60)).contains(&n.check_every.0) {
        errors.push("notify.check_every", "must be between 10ms and 1m");
    }
    let escalate_channels = if n.escalate_channels.is_empty() { n.channels.clone() } else { n.escalate_channels };
    NotifyConfig {
        channels: n.channels,
        escalate_after: n.escalate_after.map(|d| d.0),
        escalate_channels,
        late_after: n.late_after.0,
        credentials: n.credentials,
        credentials_warn: n.credentials_warn.0,
        link_ttl: n.link_ttl.0,
        check_every: n.check_every.0,
    }
}

fn validate_broker(broker: BrokerFile, errors: &mut Errors) -> BrokerConfig {
    if broker.enabled && !cfg!(feature = "embedded-broker") {
        errors.push(
            "broker.enabled",
            "this build has no embedded broker (cargo feature \"embedded-broker\"); set broker.enabled = false and point mqtt.url at a broker",
        );
    }
    if broker.enabled && !broker.listen.ip().is_loopback() && !broker.allow_remote {
        errors.push(
            "broker.listen",
            format!(
                "{} is not a loopback address: the embedded broker asks for no password, so anyone who reaches it \
                 could publish alerts. Run Mosquitto (with passwords or TLS) for other machines to publish to, or \
                 set broker.allow_remote = true to accept that",
                broker.listen
            ),
        );
    }
    BrokerConfig { enabled: broker.enabled, listen: broker.listen, allow_remote: broker.allow_remote }
}

fn validate_mqtt(m: MqttFile, broker: &BrokerConfig, errors: &mut Errors) -> MqttConfig {
    // A broker listening on every address is reached on loopback.
    let ip = match broker.listen.ip() {
        std::net::IpAddr::V4(a) if a.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(a) if a.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let derived = Endpoint { host: ip.to_string(), port: broker.listen.port(), tls: false };
    let endpoint = match (&m.url, broker.enabled) {
        (None, true) => derived,
        (Some(url), true) => match parse_mqtt_url(url) {
            Ok(e) if e == derived => e,
            Ok(_) => {
                errors.push(
                    "mqtt.url",
                    format!(
                        "{url} differs from the embedded broker's address {derived}; with broker.enabled = true the client connects to the embedded broker, so remove mqtt.url or set broker.enabled = false"
                    ),
                );
                derived
            }
            Err(e) => {
                errors.push("mqtt.url", e);
                derived
            }
        },
        // On an error keep checking the rest of [mqtt]; the config is refused anyway.
        (Some(url), false) => parse_mqtt_url(url).unwrap_or_else(|e| {
            errors.push("mqtt.url", e);
            derived
        }),
        (None, false) => {
            errors.push("mqtt.url", "required when the embedded broker is disabled (e.g. \"mqtt://127.0.0.1:1883\")");
            derived
        }
    };
    if m.client_id.trim().is_empty() {
        errors.push("mqtt.client_id", "must not be empty: the persistent session is keyed by it");
    }
    let password = match secret::resolve(m.password, m.password_file.as_deref()) {
        Ok(p) => p,
        Err(e) => {
            errors.push("mqtt.password_file", e);
            None
        }
    };
    if password.is_some() && m.username.is_none() {
        errors.push("mqtt.username", "a password is set but no username");
    }
    let client_cert = match (m.cert_file, m.key_file) {
        (Some(c), Some(k)) => Some((c, k)),
        (None, None) => None,
        (Some(_), None) => {
            errors.push("mqtt.key_file", "cert_file is set but key_file is not");
            None
        }
        (None, Some(_)) => {
            errors.push("mqtt.cert_file", "key_file is set but cert_file is not");
            None
        }
    };
    if !endpoint.tls && (m.ca_file.is_some() || client_cert.is_some()) {
        errors.push("mqtt.url", "ca_file/cert_file are set but the URL is not mqtts://");
    }
    for (key, file) in [("mqtt.ca_file", m.ca_file.as_ref())]
        .into_iter()
        .chain(client_cert.iter().flat_map(|(c, k)| [("mqtt.cert_file", Some(c)), ("mqtt.key_file", Some(k))]))
    {
        if let Some(f) = file
            && !f.is_file()
        {
            errors.push(key, format!("{} is not a readable file", f.display()));
        }
    }
    if m.max_payload_bytes == 0 {
        errors.push("mqtt.max_payload_bytes", "must be above zero");
    }
    if m.max_packet_bytes < m.max_payload_bytes.saturating_add(1024) {
        errors.push(
            "mqtt.max_packet_bytes",
            "must exceed max_payload_bytes (with room for the topic): an oversize message must reach bullhorn to be rejected and recorded",
        );
    }
    if m.keep_alive.0 < Duration::from_secs(5) {
        errors.push("mqtt.keep_alive", "must be at least 5s");
    }
    if m.receive_maximum == 0 {
        errors.push("mqtt.receive_maximum", "must be above zero");
    }
    if m.reconnect_min.0.is_zero() || m.reconnect_min.0 > m.reconnect_max.0 {
        errors.push("mqtt.reconnect_min", "must be above zero and at most mqtt.reconnect_max");
    }
    if m.subscribe.is_empty() {
        errors.push("mqtt.subscribe", "no subscriptions: nothing would be received");
    }
    let mut subscriptions = Vec::new();
    for (i, s) in m.subscribe.into_iter().enumerate() {
        let path = format!("mqtt.subscribe[{i}].topic");
        if let Err(e) = check_filter(&s.topic) {
            errors.push(path, e);
        } else if subscriptions.iter().any(|o: &Subscription| o.topic == s.topic) {
            errors.push(path, format!("{:?} is subscribed twice", s.topic));
        } else {
            let at = format!("mqtt.subscribe[{i}]");
            match (&s.mapping, s.format) {
                (None, Format::Mapped) => errors.push(
                    format!("{at}.mapping"),
                    "format \"mapped\" needs a mapping: where the incident's id, type and texts are (JSON pointers)",
                ),
                (Some(_), f) if f != Format::Mapped => {
                    errors.push(format!("{at}.mapping"), "a mapping is only for format \"mapped\"");
                }
                (Some(m), _) => {
                    for (key, p) in m.pointers() {
                        if !crate::event::mapped::valid_pointer(p) {
                            errors.push(
                                format!("{at}.mapping.{key}"),
                                format!("{p:?} is not a JSON pointer (like \"/incident/type\")"),
                            );
                        }
                    }
                }
                (None, _) => {}
            }
            if s.format == Format::Mapped && s.types.is_empty() {
                errors.push(format!("{at}.types"), "a mapped subscription needs a types table from the CAD's codes");
            }
            if s.format == Format::Json && !s.types.is_empty() {
                errors
                    .push(format!("{at}.types"), "native JSON events name their type; types is for cap, eido, mapped");
            }
            let signing_key = match secret::resolve(s.signing_key, s.signing_key_file.as_deref()) {
                Ok(Some(key)) if s.require_signature => Some(SigningKey(key)),
                Ok(Some(_)) => {
                    errors.push(
                        format!("{at}.require_signature"),
                        "a signing key is set but require_signature is not: set require_signature = true",
                    );
                    None
                }
                Ok(None) if s.require_signature => {
                    errors.push(
                        format!("{at}.signing_key_file"),
                        "require_signature = true needs the key: signing_key_file (or signing_key)",
                    );
                    None
                }
                Ok(None) => None,
                Err(e) => {
                    errors.push(format!("{at}.signing_key_file"), e);
                    None
                }
            };
            let options = crate::event::DecodeOptions { types: s.types, mapping: s.mapping };
            subscriptions.push(Subscription { topic: s.topic, format: s.format, options, signing_key });
        }
    }
    if let Some(t) = &m.send_topic
        && (t.is_empty() || t.contains(['+', '#']))
    {
        errors.push("mqtt.send_topic", "must be a topic name without wildcards");
    }
    MqttConfig {
        endpoint,
        client_id: m.client_id,
        protocol: m.protocol,
        username: m.username,
        password,
        ca_file: m.ca_file,
        client_cert,
        keep_alive: m.keep_alive.0,
        session_expiry: m.session_expiry.0,
        max_payload_bytes: m.max_payload_bytes,
        max_packet_bytes: m.max_packet_bytes,
        receive_maximum: m.receive_maximum,
        reconnect: Backoff::new(m.reconnect_min.0, m.reconnect_max.0),
        subscriptions,
        send_topic: m.send_topic,
    }
}

/// `mqtt://host[:port]` or `mqtts://host[:port]`.
pub fn parse_mqtt_url(url: &str) -> Result<Endpoint, String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("invalid URL {url:?}: {e}"))?;
    let (tls, default_port) = match parsed.scheme() {
        "mqtt" | "tcp" => (false, 1883),
        "mqtts" | "ssl" => (true, 8883),
        other => {
            return Err(format!("unsupported scheme {other:?} in {url:?}: use mqtt:// or mqtts://"));
        }
    };
    let host = match parsed.host() {
        Some(url::Host::Ipv6(a)) => a.to_string(),
        Some(h) => h.to_string(),
        None => return Err(format!("no host in {url:?}")),
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("credentials do not belong in mqtt.url: use mqtt.username and mqtt.password_file".to_owned());
    }
    if !matches!(parsed.path(), "" | "/") {
        return Err(format!("unexpected path in {url:?}"));
    }
    Ok(Endpoint { host, port: parsed.port().unwrap_or(default_port), tls })
}

/// A topic filter bullhorn can subscribe to.
fn check_filter(topic: &str) -> Result<(), String> {
    if topic.starts_with("$share/") {
        return Err(format!(
            "shared subscription {topic:?} refused: each instance keeps its own SQLite outbox, so two instances sharing a subscription would each post; run one instance per subscription"
        ));
    }
    if !rumqttc::valid_filter(topic) {
        return Err(format!("{topic:?} is not a valid MQTT topic filter"));
    }
    Ok(())
}

fn validate_events(
    entries: BTreeMap<String, config::Value>,
    channels: &BTreeMap<String, ChannelConfig>,
    errors: &mut Errors,
) -> BTreeMap<String, EventRule> {
    let mut rules = BTreeMap::new();
    for (name, value) in entries {
        let path = format!("events.{name}");
        if !crate::event::valid_type_name(&name) {
            errors.push(&path, "event type names are lowercase letters, digits and underscores");
        }
        let Some(rule) = section::<EventRuleFile>(value, &path, errors) else {
            continue;
        };
        let selector = if rule.channels.iter().any(|c| c == "*") {
            if rule.channels.len() > 1 {
                errors.push(
                    format!("{path}.channels"),
                    "\"*\" already means every channel; list names or \"*\", not both",
                );
            }
            ChannelSelector::All
        } else {
            for c in &rule.channels {
                if !channels.contains_key(c) {
                    errors.push(format!("{path}.channels"), format!("unknown channel {c:?}"));
                }
            }
            ChannelSelector::Named(rule.channels)
        };
        if rule.max_age.is_some_and(|d| d.0.is_zero()) {
            errors.push(format!("{path}.max_age"), "must be above zero (leave it out for no limit)");
        }
        let templates = rule.templates.unwrap_or_else(|| name.clone());
        for (i, f) in rule.public_fields.iter().flatten().enumerate() {
            if f.is_empty() || f.chars().any(|c| !(c.is_ascii_alphanumeric() || c == '_')) {
                errors.push(format!("{path}.public_fields[{i}]"), format!("{f:?} is not a field name"));
            }
        }
        if rule.hold_for.is_some_and(|d| d.0.is_zero()) {
            errors.push(format!("{path}.hold_for"), "must be above zero (leave it out to wait for a decision)");
        }
        if templates.is_empty() || templates.contains(['/', '\\']) || templates.starts_with('.') {
            errors.push(format!("{path}.templates"), "must be a folder name under the templates dir");
        }
        rules.insert(
            name,
            EventRule {
                priority: rule.priority,
                channels: selector,
                max_age: rule.max_age.map(|d| d.0),
                templates,
                approval: rule.approval,
                hashtags: rule.hashtags,
                public_fields: rule.public_fields,
                post_on_close: rule.post_on_close,
                hold_for: rule.hold_for.map(|d| d.0),
                after_hold: rule.after_hold,
            },
        );
    }
    rules
}

/// A credential's expiry: an RFC 3339 time, or a date (the start of that day in `tz`,
/// the cautious reading of "expires January 15").
fn expiry(s: &str, tz: &jiff::tz::TimeZone) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.trim().parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let date: jiff::civil::Date = s
        .trim()
        .parse()
        .map_err(|_| format!("{s:?} is neither a date like 2027-01-15 nor a time like 2027-01-15T09:00:00-06:00"))?;
    date.to_zoned(tz.clone()).map(|z| z.timestamp()).map_err(|e| format!("{s:?}: {e}"))
}

fn validate_channels(
    entries: BTreeMap<String, config::Value>,
    tz: &jiff::tz::TimeZone,
    errors: &mut Errors,
) -> BTreeMap<String, ChannelConfig> {
    let mut channels = BTreeMap::new();
    for (name, value) in entries {
        let path = format!("channels.{name}");
        if !crate::event::valid_type_name(&name) {
            errors.push(&path, "channel names are lowercase letters, digits and underscores");
        }
        let mut fields = table(value, &path, errors);
        let common_value: config::Map<String, config::Value> =
            CHANNEL_COMMON_KEYS.iter().filter_map(|k| fields.remove(*k).map(|v| ((*k).to_owned(), v))).collect();
        let Some(common) = section::<ChannelCommonFile>(config::Value::from(common_value), &path, errors) else {
            continue;
        };
        let rest = || config::Value::from(fields.clone().into_iter().collect::<config::Map<_, _>>());
        let kind = match common.kind.as_str() {
            "console" => section::<ConsoleFile>(rest(), &path, errors).map(|_| ChannelKind::Console),
            "file" => section::<FileChannelFile>(rest(), &path, errors).map(|f| ChannelKind::File { path: f.path }),
            "webhook" => section::<WebhookFile>(rest(), &path, errors).and_then(|w| validate_webhook(w, &path, errors)),
            other => platform_kind(other, fields, &path, errors),
        };
        // Unless the channel says, the platform's documented limit applies.
        let rate = common.rate.or_else(|| kind.as_ref().and_then(|k| k.platform().profile().rate));
        let quota = rate.map(|r| {
            let reserve = common.reserve.unwrap_or(DEFAULT_RESERVE).of(r.limit);
            Quota { limit: r.limit, window: r.window, reserve }
        });
        if common.max_chars == Some(0) {
            errors.push(format!("{path}.max_chars"), "must be above zero");
        }
        for (i, lang) in common.languages.iter().flatten().enumerate() {
            if !valid_language(lang) {
                errors.push(format!("{path}.languages[{i}]"), format!("{lang:?} is not a language tag"));
            }
        }
        if let Some(q) = quota
            && q.reserve >= q.limit
        {
            errors.push(
                format!("{path}.reserve"),
                "the reserve takes the whole quota: nothing would be left for routine posts",
            );
        }
        if common.reserve.is_some() && quota.is_none() {
            errors.push(format!("{path}.reserve"), "a reserve needs a rate");
        }
        let credentials_expire = common.credentials_expire.as_deref().and_then(|s| match expiry(s, tz) {
            Ok(t) => Some(t),
            Err(e) => {
                errors.push(format!("{path}.credentials_expire"), e);
                None
            }
        });
        if let Some(kind) = kind {
            channels.insert(
                name.clone(),
                ChannelConfig {
                    name,
                    enabled: common.enabled,
                    public: common.public,
                    quota,
                    max_chars: common.max_chars,
                    overflow: common.overflow,
                    languages: common.languages,
                    delete_original: common.delete_original,
                    card: common.card.map_or(kind.platform().profile().needs_image, |c| c == Card::Missing),
                    image_max_bytes: common.image_max_bytes,
                    credentials_expire,
                    kind,
                },
            );
        }
    }
    channels
}

/// The kinds that post to a social platform, read by [`channels`].
const PLATFORM_KINDS: &str =
    "x, mastodon, bluesky, facebook, instagram, threads, telegram, discord, slack, teams, nextdoor, sms";

fn platform_kind(
    kind: &str,
    fields: BTreeMap<String, config::Value>,
    path: &str,
    errors: &mut Errors,
) -> Option<ChannelKind> {
    let mut f = channels::Fields::new(fields, path, errors);
    let meta = |f: &mut channels::Fields<'_>, base: &str, id: &str, what: &str| channels::meta(f, base, id, what);
    let kind = match kind {
        "x" => channels::x(&mut f).map(ChannelKind::X),
        "mastodon" => channels::mastodon(&mut f).map(ChannelKind::Mastodon),
        "bluesky" => channels::bluesky(&mut f).map(ChannelKind::Bluesky),
        "facebook" => meta(
            &mut f,
            "https://graph.facebook.com/v23.0",
            "page_id",
            "page_id and access_token (or access_token_file: a Page access token with pages_manage_posts)",
        )
        .map(ChannelKind::Facebook),
        "instagram" => meta(
            &mut f,
            "https://graph.facebook.com/v23.0",
            "user_id",
            "user_id (the professional account's id) and access_token (or access_token_file, with instagram_content_publish)",
        )
        .map(ChannelKind::Instagram),
        "threads" => meta(
            &mut f,
            "https://graph.threads.net/v1.0",
            "user_id",
            "user_id and access_token (or access_token_file, with threads_content_publish)",
        )
        .map(ChannelKind::Threads),
        "telegram" => channels::telegram(&mut f).map(ChannelKind::Telegram),
        "discord" => channels::discord(&mut f).map(ChannelKind::Discord),
        "slack" => channels::slack(&mut f).map(ChannelKind::Slack),
        "teams" => channels::teams(&mut f).map(ChannelKind::Teams),
        "nextdoor" => channels::nextdoor(&mut f).map(ChannelKind::Nextdoor),
        "sms" => channels::sms(&mut f).map(ChannelKind::Sms),
        other => {
            drop(f);
            errors.push(
                format!("{path}.kind"),
                format!("unknown channel kind {other:?} (known: console, file, webhook, {PLATFORM_KINDS})"),
            );
            return None;
        }
    };
    f.finish();
    kind
}

fn validate_webhook(w: WebhookFile, path: &str, errors: &mut Errors) -> Option<ChannelKind> {
    let url = match reqwest::Url::parse(&w.url) {
        Ok(u) if matches!(u.scheme(), "http" | "https") => u,
        Ok(_) => {
            errors.push(format!("{path}.url"), "must be an http:// or https:// URL");
            return None;
        }
        Err(e) => {
            errors.push(format!("{path}.url"), format!("invalid URL: {e}"));
            return None;
        }
    };
    let secret = match secret::resolve(w.secret, w.secret_file.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            errors.push(format!("{path}.secret_file"), e);
            return None;
        }
    };
    if let Some(s) = &secret
        && let Err(e) = crate::channel::webhook::signing_key(s)
    {
        errors.push(format!("{path}.secret"), e);
    }
    Some(ChannelKind::Webhook { url: SecretUrl::new(url), secret })
}

#[cfg(test)]
pub(crate) mod tests;
