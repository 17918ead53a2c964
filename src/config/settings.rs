//! The settings of each social platform's channel kind: credentials, account, base URL.
//!
//! Read field by field from the channel's table (after the keys every channel has) so
//! that every problem is reported with its key path at once: a missing credential names
//! exactly what to add. Every secret can be given inline (usually by an environment
//! override such as `BULLHORN__CHANNELS__MASTODON__ACCESS_TOKEN`) or as `<name>_file`
//! (systemd `LoadCredential`), never both. Every kind has a `base_url` (tests and
//! self-hosted instances point it elsewhere).

use std::collections::BTreeMap;
use std::path::PathBuf;

use reqwest::Url;
use secrecy::SecretString;

use super::Errors;
use super::read::{clean_serde_message, join};
use super::secret::{self, SecretUrl};

/// Any HTTP receiver, signed with Standard Webhooks when a secret is set.
#[derive(Debug, Clone)]
pub struct WebhookSettings {
    pub url: SecretUrl,
    pub key: Option<WebhookKey>,
}

/// A Standard Webhooks signing key, decoded once from its `whsec_<base64>` secret (24 to
/// 64 random bytes). `Debug` shows nothing of it.
#[derive(Clone)]
pub struct WebhookKey(Vec<u8>);

impl WebhookKey {
    pub fn decode(secret: &SecretString) -> Result<WebhookKey, String> {
        use base64::Engine as _;
        use secrecy::ExposeSecret as _;
        let s = secret.expose_secret().trim();
        let b64 = s.strip_prefix("whsec_").unwrap_or(s);
        let key = base64::engine::general_purpose::STANDARD
            .decode(b64)
            .map_err(|_| "the secret must be whsec_ followed by base64".to_owned())?;
        if key.len() < 16 {
            return Err(format!("the secret decodes to {} bytes; use at least 24 random bytes", key.len()));
        }
        Ok(WebhookKey(key))
    }

    /// The key, for the HMAC.
    pub fn expose(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for WebhookKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("WebhookKey(**REDACTED**)")
    }
}

/// X (Twitter) API v2.
#[derive(Debug, Clone)]
pub struct XSettings {
    /// `https://api.x.com`; posts go to `{base_url}/2/tweets`.
    pub base_url: Url,
    /// The account's handle, for post URLs (else `https://x.com/i/web/status/{id}`).
    pub username: Option<String>,
    pub auth: XAuth,
}

#[derive(Debug, Clone)]
pub enum XAuth {
    /// OAuth 1.0a user context: the app's consumer key and the account's access token.
    /// All four are kept as secrets (the key and token are only half of each pair, but
    /// nothing needs to print them).
    OAuth1 {
        consumer_key: SecretString,
        consumer_secret: SecretString,
        access_token: SecretString,
        access_token_secret: SecretString,
    },
    /// OAuth 2.0 user token, refreshed with a (single-use) refresh token.
    OAuth2(OAuth2Settings),
}

/// An OAuth 2.0 user token kept fresh with its refresh token. The refresh token given in
/// the config seeds the one kept in the state directory; each refresh replaces it there.
#[derive(Debug, Clone)]
pub struct OAuth2Settings {
    pub token_url: Url,
    pub client_id: String,
    /// For confidential clients (sent as HTTP Basic auth).
    pub client_secret: Option<SecretString>,
    pub refresh_token: Option<SecretString>,
    /// A current access token, used until it is refused or a refresh replaces it.
    pub access_token: Option<SecretString>,
}

#[derive(Debug, Clone)]
pub struct MastodonSettings {
    /// The instance, e.g. `https://mastodon.social`.
    pub base_url: Url,
    pub access_token: SecretString,
    /// public | unlisted | private | direct
    pub visibility: String,
}

#[derive(Debug, Clone)]
pub struct BlueskySettings {
    /// The account's PDS (`https://bsky.social` for accounts hosted by Bluesky).
    pub base_url: Url,
    /// Handle, email or DID.
    pub identifier: String,
    pub app_password: SecretString,
}

/// Facebook Pages, Instagram and Threads: Meta's Graph APIs.
#[derive(Debug, Clone)]
pub struct MetaSettings {
    /// With the API version: `https://graph.facebook.com/v23.0`,
    /// `https://graph.threads.net/v1.0`.
    pub base_url: Url,
    /// The Page id, Instagram professional account id or Threads user id.
    pub account_id: String,
    pub access_token: SecretString,
}

#[derive(Debug, Clone)]
pub struct TelegramSettings {
    pub base_url: Url,
    pub bot_token: SecretString,
    /// `@channelname` or a numeric chat id.
    pub chat_id: String,
    /// Post without a notification sound.
    pub silent: bool,
}

#[derive(Debug, Clone)]
pub struct DiscordSettings {
    /// The channel's webhook URL (a credential).
    pub webhook_url: SecretUrl,
    /// Shown as the author instead of the webhook's name.
    pub username: Option<String>,
}

#[derive(Debug, Clone)]
pub enum SlackSettings {
    /// An incoming webhook: posts only (no thread, no delete: Slack returns no message id).
    Webhook { webhook_url: SecretUrl },
    /// The Web API with a bot token (`chat:write`): threads replies, deletes.
    Api { base_url: Url, bot_token: SecretString, channel: String },
}

#[derive(Debug, Clone)]
pub struct TeamsSettings {
    /// The Workflows "post to a channel when a webhook request is received" URL.
    pub webhook_url: SecretUrl,
}

#[derive(Debug, Clone)]
pub struct NextdoorSettings {
    pub base_url: Url,
    pub auth: BearerOrRefresh,
    /// Agency boundary groups to post to (else the agency's default area).
    pub group_ids: Vec<String>,
}

/// A fixed bearer token, or one kept fresh by OAuth 2.0 refresh.
#[derive(Debug, Clone)]
pub enum BearerOrRefresh {
    Bearer(SecretString),
    OAuth2(OAuth2Settings),
}

#[derive(Debug, Clone)]
pub struct SmsSettings {
    /// `https://api.twilio.com`
    pub base_url: Url,
    pub account_sid: String,
    /// HTTP Basic user: the account SID, or an API key SID.
    pub auth_user: String,
    /// The auth token, or the API key's secret.
    pub auth_secret: SecretString,
    /// A sender number, or a Messaging Service (one of the two).
    pub sender: SmsSender,
    /// Recipients, E.164 (`+15555550100`).
    pub to: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SmsSender {
    From(String),
    MessagingService(String),
}

/// Mail over SMTP. Addresses are parsed once, here; the password never leaves
/// [`SecretString`].
#[derive(Debug, Clone)]
pub struct EmailSettings {
    pub host: String,
    pub port: u16,
    pub tls: EmailTls,
    /// A private CA's certificates (PEM), trusted besides the system's.
    pub ca_pem: Option<Vec<u8>>,
    /// SMTP AUTH (PLAIN or LOGIN), when given.
    pub username: Option<String>,
    pub password: Option<SecretString>,
    pub from: lettre::message::Mailbox,
    pub to: Vec<lettre::message::Mailbox>,
    pub reply_to: Option<lettre::message::Mailbox>,
    /// One message to every recipient (Bcc) instead of one message each.
    pub one_message: bool,
}

/// How the SMTP session is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailTls {
    /// `smtp://`: STARTTLS, required.
    StartTls,
    /// `smtps://`: TLS from the first byte.
    Implicit,
    /// `smtp://` with `tls = "none"`: a relay on this host only.
    None,
}

/// The fields of one channel's table, taken one by one; what is left at the end is
/// unknown.
pub(super) struct Fields<'a> {
    map: BTreeMap<String, config::Value>,
    path: &'a str,
    errors: &'a mut Errors,
}

impl<'a> Fields<'a> {
    pub(super) fn new(map: BTreeMap<String, config::Value>, path: &'a str, errors: &'a mut Errors) -> Self {
        Fields { map, path, errors }
    }

    fn at(&self, key: &str) -> String {
        join(self.path, key)
    }

    fn error(&mut self, key: &str, message: impl Into<String>) {
        let at = self.at(key);
        self.errors.push(at, message);
    }

    /// An optional string.
    fn string(&mut self, key: &str) -> Option<String> {
        let v = self.map.remove(key)?;
        match v.into_string() {
            Ok(s) if s.trim().is_empty() => {
                self.error(key, "must not be empty");
                None
            }
            Ok(s) => Some(s.trim().to_owned()),
            Err(e) => {
                self.error(key, clean_serde_message(&e.to_string()));
                None
            }
        }
    }

    fn bool(&mut self, key: &str, default: bool) -> bool {
        let Some(v) = self.map.remove(key) else { return default };
        v.into_bool().unwrap_or_else(|e| {
            self.error(key, clean_serde_message(&e.to_string()));
            default
        })
    }

    fn strings(&mut self, key: &str) -> Vec<String> {
        let Some(v) = self.map.remove(key) else { return Vec::new() };
        match v.into_array() {
            Ok(items) => items
                .into_iter()
                .enumerate()
                .filter_map(|(i, item)| match item.into_string() {
                    Ok(s) => Some(s),
                    Err(e) => {
                        self.error(&format!("{key}[{i}]"), clean_serde_message(&e.to_string()));
                        None
                    }
                })
                .collect(),
            Err(e) => {
                self.error(key, clean_serde_message(&e.to_string()));
                Vec::new()
            }
        }
    }

    /// A secret given as `key` or `key_file`.
    fn secret(&mut self, key: &str) -> Option<SecretString> {
        let inline = self.string(key).map(SecretString::from);
        let file = self.string(&format!("{key}_file")).map(PathBuf::from);
        match secret::resolve(inline, file.as_deref()) {
            Ok(s) => s,
            Err(e) => {
                self.error(&format!("{key}_file"), e);
                None
            }
        }
    }

    /// An http(s) URL, with `default` when absent.
    fn url(&mut self, key: &str, default: Option<&str>) -> Option<Url> {
        let text = self.string(key).or_else(|| default.map(str::to_owned))?;
        match Url::parse(&text) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(u),
            Ok(_) => {
                self.error(key, "must be an http:// or https:// URL");
                None
            }
            Err(e) => {
                self.error(key, format!("invalid URL: {e}"));
                None
            }
        }
    }

    /// An address, with or without a display name (`Name <a@b.example>`).
    fn mailbox(&mut self, key: &str, text: &str) -> Option<lettre::message::Mailbox> {
        match text.parse::<lettre::message::Mailbox>() {
            Ok(m) => Some(m),
            Err(e) => {
                self.error(key, format!("{text:?} is not an email address: {e}"));
                None
            }
        }
    }

    /// A URL that is itself a credential (a webhook URL), as `key` or `key_file`.
    fn secret_url(&mut self, key: &str) -> Option<SecretUrl> {
        use secrecy::ExposeSecret as _;
        let s = self.secret(key)?;
        match Url::parse(s.expose_secret().trim()) {
            Ok(u) if matches!(u.scheme(), "http" | "https") && u.host().is_some() => Some(SecretUrl::new(u)),
            // The value is a credential: the message does not repeat it.
            _ => {
                self.error(key, "must be an http:// or https:// URL");
                None
            }
        }
    }

    /// Whether `key` or `key_file` is given.
    fn has(&self, key: &str) -> bool {
        self.map.contains_key(key) || self.map.contains_key(&format!("{key}_file"))
    }

    /// Report what the kind needs and the config lacks, as one message on the channel.
    fn missing(&mut self, what: &str) {
        let at = self.path.to_owned();
        self.errors.push(at, format!("missing credentials: {what}"));
    }

    /// Report every key nobody took.
    pub(super) fn finish(self) {
        for key in self.map.keys() {
            self.errors.push(join(self.path, key), "unknown key");
        }
    }
}

/// Require every one of `values`, reporting `what` (the list of keys) once if any lacks.
macro_rules! all_of {
    ($f:expr, $what:expr, $($v:ident),+) => {{
        match ($($v,)+) {
            ($(Some($v),)+) => Some(($($v,)+)),
            _ => {
                $f.missing($what);
                None
            }
        }
    }};
}

fn oauth2(f: &mut Fields<'_>, default_token_url: &str) -> Option<Option<OAuth2Settings>> {
    let client_id = f.string("client_id");
    let client_secret = f.secret("client_secret");
    let refresh_token = f.secret("refresh_token");
    let token_url = f.url("token_url", Some(default_token_url));
    let access_token = if client_id.is_some() { f.secret("access_token") } else { None };
    match (client_id, token_url) {
        (None, _) => {
            if refresh_token.is_some() || client_secret.is_some() {
                f.missing("client_id (the app's OAuth 2.0 client id) to go with the refresh token");
                return None;
            }
            Some(None)
        }
        (Some(client_id), Some(token_url)) => {
            if refresh_token.is_none() && access_token.is_none() {
                f.missing("refresh_token or refresh_token_file (from the OAuth 2.0 authorization)");
                return None;
            }
            Some(Some(OAuth2Settings { token_url, client_id, client_secret, refresh_token, access_token }))
        }
        (Some(_), None) => None,
    }
}

pub(super) fn x(f: &mut Fields<'_>) -> Option<XSettings> {
    let base_url = f.url("base_url", Some("https://api.x.com"));
    let username = f.string("username").map(|u| u.trim_start_matches('@').to_owned());
    let consumer_key = f.string("consumer_key");
    let consumer_secret = f.secret("consumer_secret");
    let oauth1_given = consumer_key.is_some() || consumer_secret.is_some();
    let access_token = if oauth1_given { f.string("access_token") } else { None };
    let access_token_secret = if oauth1_given { f.secret("access_token_secret") } else { None };
    let auth = if oauth1_given {
        let (consumer_key, consumer_secret, access_token, access_token_secret) = all_of!(
            f,
            "OAuth 1.0a needs consumer_key, consumer_secret (or consumer_secret_file), access_token and access_token_secret (or access_token_secret_file)",
            consumer_key,
            consumer_secret,
            access_token,
            access_token_secret
        )?;
        XAuth::OAuth1 {
            consumer_key: SecretString::from(consumer_key),
            consumer_secret,
            access_token: SecretString::from(access_token),
            access_token_secret,
        }
    } else {
        match oauth2(f, "https://api.x.com/2/oauth2/token")? {
            Some(o) => XAuth::OAuth2(o),
            None => {
                f.missing("give OAuth 1.0a keys (consumer_key, consumer_secret, access_token, access_token_secret) or OAuth 2.0 (client_id and refresh_token)");
                return None;
            }
        }
    };
    Some(XSettings { base_url: base_url?, username, auth })
}

pub(super) fn mastodon(f: &mut Fields<'_>) -> Option<MastodonSettings> {
    if !f.map.contains_key("base_url") {
        f.error("base_url", "the instance's address is required, e.g. \"https://mastodon.social\"");
    }
    let base_url = f.url("base_url", None);
    // `token` / `token_file` (the documented key); `access_token` is accepted as well.
    let token = f.secret("token");
    let access_token = if token.is_some() { token } else { f.secret("access_token") };
    let visibility = f.string("visibility").unwrap_or_else(|| "public".to_owned());
    if !matches!(visibility.as_str(), "public" | "unlisted" | "private" | "direct") {
        f.error("visibility", "one of public, unlisted, private, direct");
    }
    let (access_token,) = all_of!(f, "token or token_file (scopes write:statuses, write:media)", access_token)?;
    Some(MastodonSettings { base_url: base_url?, access_token, visibility })
}

pub(super) fn bluesky(f: &mut Fields<'_>) -> Option<BlueskySettings> {
    let base_url = f.url("base_url", Some("https://bsky.social"));
    let identifier = f.string("identifier").map(|i| i.trim_start_matches('@').to_owned());
    let app_password = f.secret("app_password");
    let (identifier, app_password) = all_of!(
        f,
        "identifier (the account's handle) and app_password (or app_password_file)",
        identifier,
        app_password
    )?;
    Some(BlueskySettings { base_url: base_url?, identifier, app_password })
}

pub(super) fn meta(f: &mut Fields<'_>, default_base: &str, id_key: &str, what: &str) -> Option<MetaSettings> {
    let base_url = f.url("base_url", Some(default_base));
    let account_id = f.string(id_key);
    let access_token = f.secret("access_token");
    let (account_id, access_token) = all_of!(f, what, account_id, access_token)?;
    Some(MetaSettings { base_url: base_url?, account_id, access_token })
}

pub(super) fn telegram(f: &mut Fields<'_>) -> Option<TelegramSettings> {
    let base_url = f.url("base_url", Some("https://api.telegram.org"));
    let bot_token = f.secret("bot_token");
    let chat_id = f.string("chat_id");
    let silent = f.bool("silent", false);
    let (bot_token, chat_id) = all_of!(
        f,
        "bot_token (or bot_token_file, from @BotFather) and chat_id (\"@channelname\" or the numeric id)",
        bot_token,
        chat_id
    )?;
    Some(TelegramSettings { base_url: base_url?, bot_token, chat_id, silent })
}

pub(super) fn discord(f: &mut Fields<'_>) -> Option<DiscordSettings> {
    if !f.has("webhook_url") {
        f.missing("webhook_url or webhook_url_file (Channel settings → Integrations → Webhooks)");
    }
    let webhook_url = f.secret_url("webhook_url");
    let username = f.string("username");
    Some(DiscordSettings { webhook_url: webhook_url?, username })
}

pub(super) fn slack(f: &mut Fields<'_>) -> Option<SlackSettings> {
    let webhook_url = f.secret_url("webhook_url");
    let bot_token = f.secret("bot_token");
    let channel = f.string("channel");
    let base_url = f.url("base_url", Some("https://slack.com/api"));
    match (webhook_url, bot_token, channel) {
        (Some(_), Some(_), _) => {
            f.error("bot_token", "give webhook_url or bot_token and channel, not both");
            None
        }
        (Some(webhook_url), None, None) => Some(SlackSettings::Webhook { webhook_url }),
        (Some(_), None, Some(_)) => {
            f.error("channel", "an incoming webhook posts to its own channel; channel goes with bot_token");
            None
        }
        (None, Some(bot_token), Some(channel)) => Some(SlackSettings::Api { base_url: base_url?, bot_token, channel }),
        _ => {
            f.missing("webhook_url (or webhook_url_file), or bot_token (or bot_token_file, scope chat:write) and channel (its id)");
            None
        }
    }
}

pub(super) fn teams(f: &mut Fields<'_>) -> Option<TeamsSettings> {
    if !f.has("webhook_url") {
        f.missing("webhook_url or webhook_url_file (the Workflows webhook trigger URL)");
    }
    Some(TeamsSettings { webhook_url: f.secret_url("webhook_url")? })
}

pub(super) fn nextdoor(f: &mut Fields<'_>) -> Option<NextdoorSettings> {
    let base_url = f.url("base_url", Some("https://nextdoor.com"));
    let group_ids = f.strings("group_ids");
    let refresh = oauth2(f, "https://auth.nextdoor.com/v2/token")?;
    let auth = match refresh {
        Some(o) => BearerOrRefresh::OAuth2(o),
        None => match f.secret("access_token") {
            Some(t) => BearerOrRefresh::Bearer(t),
            None => {
                f.missing("access_token (or access_token_file), or client_id, client_secret and refresh_token for OAuth 2.0 refresh");
                return None;
            }
        },
    };
    Some(NextdoorSettings { base_url: base_url?, auth, group_ids })
}

pub(super) fn sms(f: &mut Fields<'_>) -> Option<SmsSettings> {
    let base_url = f.url("base_url", Some("https://api.twilio.com"));
    let account_sid = f.string("account_sid");
    let auth_token = f.secret("auth_token");
    let api_key_sid = f.string("api_key_sid");
    let api_key_secret = f.secret("api_key_secret");
    let from = f.string("from");
    let service = f.string("messaging_service_sid");
    let to = f.strings("to");
    for (i, n) in to.iter().enumerate() {
        if !(n.starts_with('+') && n.len() >= 8 && n[1..].chars().all(|c| c.is_ascii_digit())) {
            f.error(&format!("to[{i}]"), format!("{n:?} is not an E.164 number like \"+15555550100\""));
        }
    }
    if to.is_empty() {
        f.error("to", "at least one recipient number is needed");
    }
    let sender = match (from, service) {
        (Some(n), None) => Some(SmsSender::From(n)),
        (None, Some(s)) => Some(SmsSender::MessagingService(s)),
        (Some(_), Some(_)) => {
            f.error("messaging_service_sid", "give from or messaging_service_sid, not both");
            None
        }
        (None, None) => {
            f.missing("from (a sender number) or messaging_service_sid");
            None
        }
    };
    let (auth_user, auth_secret) = match (auth_token, api_key_sid, api_key_secret) {
        (Some(t), None, None) => (account_sid.clone(), Some(t)),
        (None, Some(k), Some(s)) => (Some(k), Some(s)),
        _ => {
            f.missing("auth_token (or auth_token_file), or api_key_sid and api_key_secret (or api_key_secret_file)");
            (None, None)
        }
    };
    if account_sid.is_none() {
        f.missing("account_sid (from the Twilio console)");
    }
    let (Some(account_sid), Some(auth_user), Some(auth_secret), Some(sender)) =
        (account_sid, auth_user, auth_secret, sender)
    else {
        return None;
    };
    Some(SmsSettings { base_url: base_url?, account_sid, auth_user, auth_secret, sender, to })
}

/// `kind = "email"`: `url = "smtp://host:587"` (STARTTLS) or `"smtps://host:465"`, `from`,
/// `to`, and optionally `username` with `password` (or `password_file`), `reply_to`,
/// `ca_file`, `one_message`, and `tls = "none"` for a relay on loopback.
pub(super) fn email(f: &mut Fields<'_>) -> Option<EmailSettings> {
    let url = f.string("url");
    let tls_key = f.string("tls");
    let ca_file = f.string("ca_file").map(PathBuf::from);
    let username = f.string("username");
    let password = f.secret("password");
    let from_text = f.string("from");
    let from = from_text.as_deref().and_then(|a| f.mailbox("from", a));
    let reply_to = f.string("reply_to").and_then(|a| f.mailbox("reply_to", &a));
    let to_text = f.strings("to");
    let to: Vec<_> = to_text.iter().enumerate().filter_map(|(i, a)| f.mailbox(&format!("to[{i}]"), a)).collect();
    for (i, m) in to.iter().enumerate() {
        if to[..i].iter().any(|earlier| earlier.email == m.email) {
            f.error(&format!("to[{i}]"), format!("{} is listed twice: it would get every alert twice", m.email));
        }
    }
    let one_message = f.bool("one_message", false);
    if to_text.is_empty() {
        f.error("to", "at least one recipient address is needed");
    }
    if from_text.is_none() {
        f.error("from", "the sender address is required, e.g. \"Sheriff's Office <alerts@sheriff.example>\"");
    }
    match (&username, &password) {
        (Some(_), None) => f.missing("password (or password_file) to go with username"),
        (None, Some(_)) => f.error("username", "a password needs a username"),
        _ => {}
    }
    let Some(url) = url else {
        f.error("url", "the SMTP server is required: \"smtp://host:587\" (STARTTLS) or \"smtps://host:465\"");
        return None;
    };
    let parsed = match Url::parse(&url) {
        Ok(u) if matches!(u.scheme(), "smtp" | "smtps") && u.host_str().is_some_and(|h| !h.is_empty()) => u,
        _ => {
            f.error("url", "must be smtp://host:port (STARTTLS) or smtps://host:port (implicit TLS)");
            return None;
        }
    };
    if !parsed.username().is_empty() || parsed.password().is_some() {
        // The URL is logged; a password in it would be too.
        f.error("url", "give the account as username and password (or password_file), not in the URL");
        return None;
    }
    let implicit = parsed.scheme() == "smtps";
    let host = parsed.host_str().unwrap_or_default().trim_start_matches('[').trim_end_matches(']').to_owned();
    let port = parsed.port().unwrap_or(if implicit { 465 } else { 587 });
    let tls = match (tls_key.as_deref(), implicit) {
        (None | Some("starttls"), false) => EmailTls::StartTls,
        (None | Some("implicit"), true) => EmailTls::Implicit,
        (Some("none"), false) => {
            let loopback = host == "localhost" || host.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                f.error("tls", "\"none\" sends mail and passwords in the clear: allowed only for a relay on this host (localhost, 127.0.0.1, ::1)");
                return None;
            }
            EmailTls::None
        }
        (Some(other), _) => {
            let scheme = if implicit { "smtps:// is always TLS" } else { "\"starttls\" (the default) or \"none\"" };
            f.error("tls", format!("{other:?}: {scheme}"));
            return None;
        }
    };
    let ca_pem = match ca_file {
        Some(path) if tls == EmailTls::None => {
            f.error("ca_file", format!("{}: set, but tls is \"none\"", path.display()));
            None
        }
        Some(path) => match std::fs::read(&path) {
            Ok(pem) if pem_certificates(&pem) > 0 => Some(pem),
            Ok(_) => {
                f.error("ca_file", format!("{}: no PEM certificate in it", path.display()));
                None
            }
            Err(e) => {
                f.error("ca_file", format!("cannot read {}: {e}", path.display()));
                None
            }
        },
        None => None,
    };
    if username.is_some() != password.is_some() || to.is_empty() || to.len() != to_text.len() {
        return None;
    }
    Some(EmailSettings { host, port, tls, ca_pem, username, password, from: from?, to, reply_to, one_message })
}

/// How many certificates a PEM file holds; 0 when it is not PEM or a certificate is
/// malformed.
fn pem_certificates(pem: &[u8]) -> usize {
    use rustls::pki_types::CertificateDer;
    use rustls::pki_types::pem::PemObject as _;
    CertificateDer::pem_slice_iter(pem).collect::<Result<Vec<_>, _>>().map_or(0, |c| c.len())
}
