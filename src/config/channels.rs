//! `[channels.<name>]`: the keys every channel has (enabled, rate, languages, ...) and its
//! kind with that platform's settings (read in `settings.rs`).

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use super::file::*;
use super::read::{section, table};
use super::settings::{self, Fields};
use super::*;

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
    /// How many deliveries may be in flight at once.
    pub concurrency: usize,
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
            concurrency: kind.platform().profile().concurrency,
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
    Webhook(WebhookSettings),
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
    Email(EmailSettings),
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
            ChannelKind::Webhook(_) => Platform::Webhook,
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
            ChannelKind::Email(_) => Platform::Email,
        }
    }
}

/// The most deliveries a channel may have in flight at once.
pub const MAX_CONCURRENCY: usize = 256;

pub(super) fn validate(
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
        let kind = match Platform::parse(&common.kind) {
            Some(platform) => channel_kind(platform, fields, &path, errors),
            None => {
                let known: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
                errors.push(
                    format!("{path}.kind"),
                    format!("unknown channel kind {:?} (known: {})", common.kind, known.join(", ")),
                );
                None
            }
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
            if !crate::event::valid_language(lang) {
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
        if common.concurrency.is_some_and(|c| !(1..=MAX_CONCURRENCY).contains(&c)) {
            errors.push(format!("{path}.concurrency"), format!("must be from 1 to {MAX_CONCURRENCY}"));
        }
        if common.reserve.is_some() && quota.is_none() {
            errors.push(format!("{path}.reserve"), "a reserve needs a rate");
        }
        let credentials_expire = common.credentials_expire.as_deref().and_then(|s| match expiry::parse(s, tz) {
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
                    concurrency: common.concurrency.unwrap_or(kind.platform().profile().concurrency),
                    kind,
                },
            );
        }
    }
    channels
}

/// The Meta platforms' base URL, the key naming the account, and what a channel needs.
const FACEBOOK: (&str, &str, &str) = (
    "https://graph.facebook.com/v23.0",
    "page_id",
    "page_id and access_token (or access_token_file: a Page access token with pages_manage_posts)",
);
const INSTAGRAM: (&str, &str, &str) = (
    "https://graph.facebook.com/v23.0",
    "user_id",
    "user_id (the professional account's id) and access_token (or access_token_file, with instagram_content_publish)",
);
const THREADS: (&str, &str, &str) = (
    "https://graph.threads.net/v1.0",
    "user_id",
    "user_id and access_token (or access_token_file, with threads_content_publish)",
);

/// The channel's kind, with its platform's settings read from the rest of its table.
fn channel_kind(
    platform: Platform,
    fields: BTreeMap<String, config::Value>,
    path: &str,
    errors: &mut Errors,
) -> Option<ChannelKind> {
    let rest = || config::Value::from(fields.clone().into_iter().collect::<config::Map<_, _>>());
    let meta = |(base, id, what): (&'static str, &'static str, &'static str)| {
        move |f: &mut Fields<'_>| settings::meta(f, base, id, what)
    };
    match platform {
        Platform::Console => section::<ConsoleFile>(rest(), path, errors).map(|_| ChannelKind::Console),
        Platform::File => section::<FileChannelFile>(rest(), path, errors).map(|f| ChannelKind::File { path: f.path }),
        Platform::Webhook => {
            section::<WebhookFile>(rest(), path, errors).and_then(|w| validate_webhook(w, path, errors))
        }
        Platform::X => read(fields, path, errors, settings::x).map(ChannelKind::X),
        Platform::Mastodon => read(fields, path, errors, settings::mastodon).map(ChannelKind::Mastodon),
        Platform::Bluesky => read(fields, path, errors, settings::bluesky).map(ChannelKind::Bluesky),
        Platform::Facebook => read(fields, path, errors, meta(FACEBOOK)).map(ChannelKind::Facebook),
        Platform::Instagram => read(fields, path, errors, meta(INSTAGRAM)).map(ChannelKind::Instagram),
        Platform::Threads => read(fields, path, errors, meta(THREADS)).map(ChannelKind::Threads),
        Platform::Telegram => read(fields, path, errors, settings::telegram).map(ChannelKind::Telegram),
        Platform::Discord => read(fields, path, errors, settings::discord).map(ChannelKind::Discord),
        Platform::Slack => read(fields, path, errors, settings::slack).map(ChannelKind::Slack),
        Platform::Teams => read(fields, path, errors, settings::teams).map(ChannelKind::Teams),
        Platform::Nextdoor => read(fields, path, errors, settings::nextdoor).map(ChannelKind::Nextdoor),
        Platform::Sms => read(fields, path, errors, settings::sms).map(ChannelKind::Sms),
        Platform::Email => read(fields, path, errors, settings::email).map(ChannelKind::Email),
    }
}

/// A platform's settings, read field by field; a key left over is reported as unknown.
fn read<T>(
    fields: BTreeMap<String, config::Value>,
    path: &str,
    errors: &mut Errors,
    settings: impl FnOnce(&mut Fields<'_>) -> Option<T>,
) -> Option<T> {
    let mut f = Fields::new(fields, path, errors);
    let out = settings(&mut f);
    f.finish();
    out
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
    let key = match secret.as_ref().map(WebhookKey::decode).transpose() {
        Ok(k) => k,
        Err(e) => {
            errors.push(format!("{path}.secret"), e);
            return None;
        }
    };
    Some(ChannelKind::Webhook(WebhookSettings { url: SecretUrl::new(url), key }))
}
