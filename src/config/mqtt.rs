//! `[mqtt]` and `[broker]`: where ingest connects, what it subscribes to and how each
//! subscription is decoded and verified; the embedded broker's listener.

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use secrecy::SecretString;

use super::file::*;
use super::*;

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
    pub signing_key: Option<PublisherKey>,
}

/// The HMAC key a subscription's publishers sign with. `Debug` shows nothing of it.
#[derive(Clone)]
pub struct PublisherKey(pub SecretString);

impl PartialEq for PublisherKey {
    fn eq(&self, other: &Self) -> bool {
        use secrecy::ExposeSecret as _;
        self.0.expose_secret() == other.0.expose_secret()
    }
}

impl Eq for PublisherKey {}

impl fmt::Debug for PublisherKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PublisherKey([REDACTED])")
    }
}

#[derive(Debug, Clone)]
pub struct BrokerConfig {
    pub enabled: bool,
    pub listen: SocketAddr,
    /// Listening beyond loopback was asked for (warned about at start).
    pub allow_remote: bool,
}

pub(super) fn validate_broker(broker: BrokerFile, errors: &mut Errors) -> BrokerConfig {
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

pub(super) fn validate(m: MqttFile, broker: &BrokerConfig, errors: &mut Errors) -> MqttConfig {
    let endpoint = endpoint(m.url.as_deref(), broker, errors);
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
            subscriptions.push(subscription(&format!("mqtt.subscribe[{i}]"), s, errors));
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

/// Where the client connects: `mqtt.url`, or the embedded broker's address (on loopback
/// when it listens on every address), which `mqtt.url` must then match.
fn endpoint(url: Option<&str>, broker: &BrokerConfig, errors: &mut Errors) -> Endpoint {
    // A broker listening on every address is reached on loopback.
    let ip = match broker.listen.ip() {
        std::net::IpAddr::V4(a) if a.is_unspecified() => std::net::IpAddr::from([127, 0, 0, 1]),
        std::net::IpAddr::V6(a) if a.is_unspecified() => std::net::IpAddr::V6(std::net::Ipv6Addr::LOCALHOST),
        ip => ip,
    };
    let derived = Endpoint { host: ip.to_string(), port: broker.listen.port(), tls: false };
    match (url, broker.enabled) {
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
    }
}

/// One `[[mqtt.subscribe]]` (its topic already checked): its format's options and its
/// publishers' key.
fn subscription(at: &str, s: SubscriptionFile, errors: &mut Errors) -> Subscription {
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
        errors.push(format!("{at}.types"), "native JSON events name their type; types is for cap, eido, mapped");
    }
    let signing_key = match secret::resolve(s.signing_key, s.signing_key_file.as_deref()) {
        Ok(Some(key)) if s.require_signature => Some(PublisherKey(key)),
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
    Subscription { topic: s.topic, format: s.format, options, signing_key }
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
