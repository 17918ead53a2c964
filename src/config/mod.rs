//! Configuration: load `bullhorn.toml` (plus `BULLHORN__SECTION__KEY` environment
//! overrides) through the `config` crate, then validate it into a [`Config`].
//!
//! Loading is two-phase, as in ripgrep and Vector: [`file`] mirrors the file with serde,
//! then [`validate`] resolves paths and secrets and cross-checks sections. Every problem
//! found on the way, unknown keys included, is collected with its key path and reported
//! at once in [`ConfigErrors`]; a config is either wholly valid or not used.

mod admin;
mod channels;
mod events;
mod expiry;
pub mod file;
mod media;
mod mqtt;
mod read;
mod secret;
mod settings;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use admin::{AdminConfig, NotifyConfig};
pub use channels::{ChannelConfig, ChannelKind, DEFAULT_RESERVE, Quota};
pub use events::{ChannelSelector, EventRule};
pub use expiry::{Expiring, Expiry, expiring};
pub use file::{AfterHold, Approval, Card, LogFormat, MapProvider, Mode, Overflow, Protocol, Reserve};
pub use media::{MediaConfig, Origin, PublicConfig, PublicTarget};
pub use mqtt::{BrokerConfig, Endpoint, MqttConfig, PublisherKey, Subscription, parse_mqtt_url};
pub use secret::{SecretUrl, read_secret, write_secret};
pub use settings::{
    BearerOrRefresh, BlueskySettings, DiscordSettings, EmailSettings, EmailTls, MastodonSettings, MetaSettings,
    NextdoorSettings, OAuth2Settings, SlackSettings, SmsSender, SmsSettings, TeamsSettings, TelegramSettings,
    WebhookKey, WebhookSettings, XAuth, XSettings,
};

use crate::backoff::Backoff;
use crate::event::{Format, Priority};
use crate::platform::Platform;
use file::*;
use read::{SECTIONS, section, table, take_section};

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

#[derive(Debug, Clone)]
pub struct StoreConfig {
    pub path: PathBuf,
    pub busy_timeout: Duration,
    /// Where refreshed OAuth tokens and platform sessions are kept: `[store] state_dir`,
    /// else the store file's directory.
    pub state_dir: PathBuf,
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
    pub map: MapProvider,
}

#[derive(Debug, Clone)]
pub struct DeliveryConfig {
    pub retry: Backoff,
    pub give_up_after: Duration,
    pub max_retry_after: Duration,
    pub request_timeout: Duration,
    pub shutdown_grace: Duration,
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
        .map(|v| channels::validate(table(v, "channels", errors), &tz, errors))
        .unwrap_or_default();
    if channels.is_empty() {
        errors.push("channels", "no channels configured");
    }
    let events = root
        .remove("events")
        .map(|v| events::validate(table(v, "events", errors), &channels, errors))
        .unwrap_or_default();
    if events.is_empty() {
        errors.push("events", "no event types configured: every event would be rejected");
    }

    let broker = mqtt::validate_broker(broker, errors);
    let mqtt = mqtt::validate(mqtt, &broker, errors);
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
        if !crate::event::valid_language(lang) {
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
    let notify = admin::validate_notify(notify, &channels, errors);
    let media = media::validate(media, errors);
    let admin = admin::validate(admin, errors);

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

#[cfg(test)]
pub(crate) mod tests;
