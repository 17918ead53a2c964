//! `[admin]` and `[notify]`: the admin listener and its API token, and where staff
//! notices go.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use super::file::*;
use super::*;

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

pub(super) fn validate(a: AdminFile, errors: &mut Errors) -> AdminConfig {
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

pub(super) fn validate_notify(
    n: NotifyFile,
    channels: &BTreeMap<String, ChannelConfig>,
    errors: &mut Errors,
) -> NotifyConfig {
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
