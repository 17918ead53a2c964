//! Channels: one module per platform, behind one closed enum. A channel knows its API
//! only — how to shape a request and how to classify the response into an [`Outcome`].
//! Retries, queues, quotas and persistence belong to `delivery`, once for all channels;
//! a channel sees a [`Post`] (not the stored delivery) and saves mid-request progress
//! through [`Scratch`], which `delivery` backs with the outbox.
//!
//! Each platform implements [`Api`] (only `send` is required); what differs by platform
//! without code (can it read back, delete, thread?) is its row in [`crate::platform`].
//! Adding a platform is one line in `channels!` below; the compiler then points at the
//! rest (its `ChannelKind` in config, its profile row).

pub mod bluesky;
pub mod console;
pub mod discord;
pub mod email;
pub mod facebook;
pub mod file;
pub mod graph;
pub mod http;
pub mod instagram;
pub mod mastodon;
pub mod nextdoor;
pub mod oauth2;
pub mod slack;
pub mod sms;
pub mod state;
pub mod teams;
pub mod telegram;
pub mod threads;
pub mod webhook;
pub mod x;

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use crate::config::{ChannelConfig, ChannelKind};
use crate::event::Priority;
use crate::lifecycle::DeliveryKind;
use crate::platform::{Platform, Recovery};

/// `base` with `path` ('/'-separated segments, each percent-encoded as needed) appended
/// to its own path: `https://graph.facebook.com/v23.0` + `123/feed`.
pub fn join_url(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(path.split('/').filter(|s| !s.is_empty()));
        // Some APIs (Nextdoor's) want the trailing slash.
        if path.ends_with('/') {
            segments.push("");
        }
    }
    url
}

/// Where a delivery landed on its platform.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct PostRef {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// What the channel needs to reply to or delete the post later, as JSON (Bluesky's
    /// record cid and thread root).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

impl PostRef {
    pub fn id(id: impl Into<String>) -> Self {
        PostRef { id: Some(id.into()), ..PostRef::default() }
    }

    pub fn with_url(mut self, url: impl Into<String>) -> Self {
        self.url = Some(url.into());
        self
    }
}

/// How one request ended, in the terms `delivery` acts on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Sent(PostRef),
    /// The platform said to wait (429, Retry-After, reset headers): pause the channel.
    RetryAfter(Duration, String),
    /// The platform is down or overloaded (connection refused, 502/503/504, a 429 with
    /// no hint), known not to have posted: pause the whole channel with backoff, keeping
    /// its queue in priority order, rather than retrying every delivery on its own.
    Unavailable(String),
    /// The platform refused the channel's credentials (revoked, expired, missing a
    /// permission). Like [`Outcome::Unavailable`] the whole channel backs off, keeping
    /// its queue, and it is logged as an error: someone has to fix the credentials.
    Credentials(String),
    /// This request failed transiently, known not to have posted: retry it with backoff.
    Retry(String),
    /// The platform refused the request for good: dead-letter it.
    Permanent(String),
    /// The request may or may not have posted (timeout after sending): resolve first.
    Unknown(String),
}

impl Outcome {
    /// The metric and attempt-row label.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Sent(_) => "sent",
            Outcome::RetryAfter(..) => "throttled",
            Outcome::Unavailable(_) => "unavailable",
            Outcome::Credentials(_) => "credentials",
            Outcome::Retry(_) => "retry",
            Outcome::Permanent(_) => "dead",
            Outcome::Unknown(_) => "unknown",
        }
    }
}

/// An [`Outcome`] with the HTTP status that produced it, for the attempt record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub outcome: Outcome,
    pub http_status: Option<u16>,
    /// What the delivery's record should say besides the outcome (posted without its
    /// image, and why).
    pub note: Option<String>,
}

impl Response {
    pub fn new(outcome: Outcome, http_status: u16) -> Self {
        Response { outcome, http_status: Some(http_status), note: None }
    }

    pub fn with_note(mut self, note: Option<String>) -> Self {
        self.note = note;
        self
    }
}

impl From<Outcome> for Response {
    fn from(outcome: Outcome) -> Self {
        Response { outcome, http_status: None, note: None }
    }
}

/// What a channel can find out about a request whose outcome was unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// It did post.
    Posted(PostRef),
    /// It did not post; sending again is safe.
    NotPosted,
    /// Sending again is safe because the platform drops a repeat of the same request
    /// (Mastodon's `Idempotency-Key` within an hour, Standard Webhooks' `webhook-id`).
    Deduplicated,
    /// The platform offers no way to know, and nothing drops a repeat: sending again may
    /// post twice.
    CannotTell,
}

/// An image ready for a platform (decoded, stripped, sized by the media pipeline).
#[derive(Clone)]
pub struct Image {
    pub bytes: bytes::Bytes,
    /// `image/jpeg`, `image/png`, ...
    pub mime: String,
    /// Alt text, required for every public image.
    pub alt: String,
    /// Where the platforms that fetch images themselves (Instagram, Threads, Facebook,
    /// Nextdoor) find it: a public URL.
    pub url: Option<String>,
}

impl std::fmt::Debug for Image {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Image")
            .field("bytes", &self.bytes.len())
            .field("mime", &self.mime)
            .field("alt", &self.alt)
            .field("url", &self.url)
            .finish()
    }
}

/// A delivery as a channel sees it: what to post, and the event it is about for the
/// channels that pass that on (webhook, file, console). `delivery` makes it from the
/// stored delivery; nothing else of the outbox reaches a channel.
#[derive(Debug, Clone, Copy)]
pub struct Post<'a> {
    pub delivery_id: i64,
    /// The delivery's idempotency key (a receiver's `webhook-id`, the file's `key`).
    pub key: &'a str,
    pub kind: DeliveryKind,
    pub priority: Priority,
    /// The whole text; a thread's parts are in `parts` (empty for one post).
    pub text: &'a str,
    pub parts: &'a [String],
    /// A subject line, where the channel's templates gave one (email).
    pub subject: Option<&'a str>,
    /// The HTML alternative of the text, where the channel's templates gave one (email).
    pub html: Option<&'a str>,
    /// '' when the event gave no language.
    pub language: &'a str,
    /// Since when it waits to go out (ms): a read-back looks for it no earlier.
    pub created_at: i64,
    pub event: About<'a>,
}

/// The event a post is about.
#[derive(Debug, Clone, Copy)]
pub struct About<'a> {
    pub id: i64,
    pub incident: &'a str,
    pub event_type: &'a str,
    pub msg_type: &'a str,
    pub status: &'a str,
    pub revision: Option<i64>,
    /// The decoded event, as JSON.
    pub json: &'a str,
}

/// One post request: a delivery's text, or one part of its thread, to one recipient.
#[derive(Debug)]
pub struct Request<'a> {
    pub post: Post<'a>,
    /// What to post: the thread part of this step, else the delivery's text.
    pub text: &'a str,
    /// The step of the delivery (0 for a single post); stable across retries, so
    /// idempotency keys and Bluesky record keys derive from it.
    pub step: usize,
    /// Which of the channel's recipients (SMS numbers); 0 elsewhere.
    pub target: usize,
    /// The post this one replies to: the previous part of the thread, else the channel's
    /// original post of the incident.
    pub reply_to: Option<&'a PostRef>,
    /// The first post of the thread `reply_to` is in (Bluesky replies name both).
    pub root: Option<&'a PostRef>,
    pub media: &'a [Image],
    pub scratch: Scratch<'a>,
}

impl Request<'_> {
    /// The delivery's idempotency key, made unique per step.
    pub fn key(&self) -> String {
        if self.step == 0 { self.post.key.to_owned() } else { format!("{}-{}", self.post.key, self.step) }
    }
}

/// Where a channel's progress within a request is kept. `delivery` implements it on the
/// outbox, so a channel saves without knowing where to.
pub trait Checkpoint: Sync {
    /// Keep `value` under `slot`; committed when the future gives `Ok`.
    fn save<'a>(
        &'a self,
        slot: &'a str,
        value: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>>;
}

/// What a channel saves in the middle of a request (a Meta container id) so a retry or a
/// restart continues from it instead of starting over.
#[derive(Clone, Copy)]
pub struct Scratch<'a> {
    saved: &'a BTreeMap<String, String>,
    keep: Option<&'a dyn Checkpoint>,
    step: usize,
}

impl std::fmt::Debug for Scratch<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Scratch").field("saved", self.saved).field("step", &self.step).finish_non_exhaustive()
    }
}

impl<'a> Scratch<'a> {
    /// `saved`: what earlier tries saved; `keep`: where to save (`None`: nowhere, for
    /// `bullhorn send` and tests).
    pub fn new(saved: &'a BTreeMap<String, String>, step: usize, keep: Option<&'a dyn Checkpoint>) -> Self {
        Scratch { saved, keep, step }
    }

    fn slot(&self, key: &str) -> String {
        format!("{key}:{}", self.step)
    }

    /// A value saved by an earlier try of this step.
    pub fn get(&self, key: &str) -> Option<&'a str> {
        self.saved.get(&self.slot(key)).map(String::as_str)
    }

    /// A value saved by the delivery's first step (what the whole delivery keeps to).
    pub fn first(&self, key: &str) -> Option<&'a str> {
        self.saved.get(&format!("{key}:0")).map(String::as_str)
    }

    /// Save a value for this step; it is committed when this returns `Ok`.
    pub async fn save(&self, key: &str, value: &str) -> Result<(), String> {
        match self.keep {
            Some(keep) => keep.save(&self.slot(key), value).await,
            None => Ok(()),
        }
    }
}

/// What a channel can do, for the delivery layer's plan of a delivery's requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caps {
    /// A thread's parts go out as separate posts, each replying to the one before.
    pub threads: bool,
    /// Posts can be deleted (a cancellation may delete the original).
    pub delete: bool,
    /// Recipients each delivery goes to, one request each (SMS numbers); 1 elsewhere.
    pub targets: usize,
}

impl Caps {
    /// What `platform`'s row allows, to one recipient.
    pub fn of(platform: Platform) -> Caps {
        let row = platform.profile();
        Caps { threads: row.replies, delete: row.delete, targets: 1 }
    }
}

/// Everything channels share: the HTTP client, the request timeout, and the state
/// directory where refreshed tokens and sessions are kept.
#[derive(Debug, Clone)]
pub struct Context {
    pub http: reqwest::Client,
    pub timeout: Duration,
    pub state_dir: std::path::PathBuf,
}

/// What every channel does, one file per platform. Only `send` must be written; the rest
/// has the answer of a platform that cannot (its profile row says which apply).
#[expect(
    async_fn_in_trait,
    reason = "called only through Channel on concrete types, whose futures are Send by inference"
)]
pub trait Api {
    const PLATFORM: Platform;
    /// It implements [`Api::read_back`]; must agree with the profile's `recovery`.
    const READS_BACK: bool = false;

    /// Make one request of a delivery: a post, a thread part, a message to one recipient.
    async fn send(&self, req: &Request<'_>) -> Response;

    /// After an unknown outcome (a timeout after sending, a crash mid-request): did the
    /// request post? Asked only where the profile's `recovery` is `ReadBack`.
    async fn read_back(&self, _req: &Request<'_>) -> Resolution {
        Resolution::CannotTell
    }

    /// Delete a post (after a cancellation, where configured). A post already gone counts
    /// as deleted. Asked only where [`Api::caps`] says it can.
    async fn delete(&self, _post: &PostRef) -> Response {
        Outcome::Permanent("this channel cannot delete posts".to_owned()).into()
    }

    /// Check the credentials with a read-only call (`bullhorn check --online`).
    async fn verify(&self) -> Verified {
        Verified::Unchecked("a webhook cannot be checked without posting; use test-channel".to_owned())
    }

    /// What the delivery layer may plan for this channel: the platform's row, narrowed by
    /// the channel's settings.
    fn caps(&self) -> Caps {
        Caps::of(Self::PLATFORM)
    }
}

/// Large channels are boxed in [`Channel`]; a box posts as what it holds.
impl<T: Api> Api for Box<T> {
    const PLATFORM: Platform = T::PLATFORM;
    const READS_BACK: bool = T::READS_BACK;

    async fn send(&self, req: &Request<'_>) -> Response {
        (**self).send(req).await
    }

    async fn read_back(&self, req: &Request<'_>) -> Resolution {
        (**self).read_back(req).await
    }

    async fn delete(&self, post: &PostRef) -> Response {
        (**self).delete(post).await
    }

    async fn verify(&self) -> Verified {
        (**self).verify().await
    }

    fn caps(&self) -> Caps {
        (**self).caps()
    }
}

/// Declares [`Channel`], one variant per platform, with its dispatch: one line per
/// platform, the pattern of its `ChannelKind` and how the channel is built from it.
macro_rules! channels {
    (build($cfg:ident, $ctx:ident); $($variant:ident($ty:ty) from $kind:pat => $build:expr,)*) => {
        #[derive(Debug)]
        pub enum Channel {
            $($variant($ty),)*
        }

        impl Channel {
            pub fn build($cfg: &ChannelConfig, $ctx: &Context) -> Channel {
                match &$cfg.kind {
                    $($kind => Channel::$variant($build.into()),)*
                }
            }

            /// Whether the channel type of `platform` reads back (`None`: no channel).
            #[cfg(test)]
            fn reads_back(platform: Platform) -> Option<bool> {
                $(if <$ty as Api>::PLATFORM == platform {
                    return Some(<$ty as Api>::READS_BACK);
                })*
                None
            }

            /// Where this channel posts.
            pub fn platform(&self) -> Platform {
                match self {
                    $(Channel::$variant(_) => <$ty as Api>::PLATFORM,)*
                }
            }

            pub fn caps(&self) -> Caps {
                match self {
                    $(Channel::$variant(c) => c.caps(),)*
                }
            }

            /// How many messages request `target` sends (against the quota): a batch
            /// of SMS numbers, else one. `saved`: what the delivery's steps saved.
            pub fn messages(&self, target: usize, saved: &BTreeMap<String, String>) -> usize {
                match self {
                    Channel::Sms(c) => c.batch_len(target, saved),
                    _ => 1,
                }
            }

            /// [`Channel::caps`] for a delivery that may have begun under other settings:
            /// an SMS keeps the batch size it began with, an email its recipients.
            pub fn caps_for(&self, saved: &BTreeMap<String, String>) -> Caps {
                match self {
                    Channel::Sms(c) => c.caps_for(saved),
                    Channel::Email(c) => c.caps_for(saved),
                    _ => self.caps(),
                }
            }

            pub async fn send(&self, req: &Request<'_>) -> Response {
                match self {
                    $(Channel::$variant(c) => c.send(req).await,)*
                }
            }

            /// After an unknown outcome: did the request post? What the platform cannot
            /// tell, its row answers without asking.
            pub async fn resolve(&self, req: &Request<'_>) -> Resolution {
                match self.platform().profile().recovery {
                    Recovery::Deduplicated => Resolution::Deduplicated,
                    Recovery::CannotTell => Resolution::CannotTell,
                    Recovery::ReadBack => match self {
                        $(Channel::$variant(c) => c.read_back(req).await,)*
                    },
                }
            }

            pub async fn delete(&self, post: &PostRef) -> Response {
                match self {
                    $(Channel::$variant(c) => c.delete(post).await,)*
                }
            }

            pub async fn verify(&self) -> Verified {
                match self {
                    $(Channel::$variant(c) => c.verify().await,)*
                }
            }
        }
    };
}

channels! {
    build(cfg, ctx);
    Console(console::Console) from ChannelKind::Console => console::Console::new(&cfg.name),
    File(file::FileChannel) from ChannelKind::File { path } => file::FileChannel::new(&cfg.name, path),
    Webhook(webhook::Webhook) from ChannelKind::Webhook(s)
        => webhook::Webhook::new(&cfg.name, s.clone(), ctx.http.clone(), ctx.timeout),
    Mastodon(mastodon::Mastodon) from ChannelKind::Mastodon(s) => mastodon::Mastodon::new(s.clone(), ctx),
    Bluesky(bluesky::Bluesky) from ChannelKind::Bluesky(s) => bluesky::Bluesky::new(&cfg.name, s.clone(), ctx),
    X(Box<x::X>) from ChannelKind::X(s) => x::X::new(&cfg.name, s.clone(), ctx),
    Facebook(facebook::Facebook) from ChannelKind::Facebook(s) => facebook::Facebook::new(s.clone(), ctx),
    Instagram(instagram::Instagram) from ChannelKind::Instagram(s) => instagram::Instagram::new(s.clone(), ctx),
    Threads(threads::Threads) from ChannelKind::Threads(s) => threads::Threads::new(s.clone(), ctx),
    Telegram(telegram::Telegram) from ChannelKind::Telegram(s) => telegram::Telegram::new(s.clone(), ctx),
    Discord(discord::Discord) from ChannelKind::Discord(s) => discord::Discord::new(s.clone(), ctx),
    Slack(slack::Slack) from ChannelKind::Slack(s) => slack::Slack::new(s.clone(), ctx),
    Teams(teams::Teams) from ChannelKind::Teams(s) => teams::Teams::new(s.clone(), ctx),
    Nextdoor(Box<nextdoor::Nextdoor>) from ChannelKind::Nextdoor(s) => nextdoor::Nextdoor::new(&cfg.name, s.clone(), ctx),
    Sms(sms::Sms) from ChannelKind::Sms(s) => sms::Sms::new(s.clone(), sms::batch(cfg), ctx),
    Email(email::Email) from ChannelKind::Email(s) => email::Email::new(s.clone(), ctx),
}

/// What `check --online` found out about a channel's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verified {
    /// The platform accepted them; who the channel posts as.
    Ok(String),
    /// Nothing to check without posting (webhooks), or nothing to check at all.
    Unchecked(String),
    Failed(String),
}

impl From<Result<String, String>> for Verified {
    fn from(r: Result<String, String>) -> Self {
        match r {
            Ok(who) => Verified::Ok(who),
            Err(why) => Verified::Failed(why),
        }
    }
}

impl Verified {
    /// `Ok` with who the channel posts as, else why not (unchecked included).
    pub fn into_result(self) -> Result<String, String> {
        match self {
            Verified::Ok(d) => Ok(d),
            Verified::Unchecked(d) | Verified::Failed(d) => Err(d),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A post as a channel sees it, for unit tests of channels.
    pub(crate) fn post<'a>(key: &'a str, text: &'a str) -> Post<'a> {
        Post {
            delivery_id: 1,
            key,
            kind: DeliveryKind::Post,
            priority: Priority::Critical,
            text,
            parts: &[],
            subject: None,
            html: None,
            language: "",
            created_at: 1_795_000_000_000,
            event: About {
                id: 1,
                incident: "json:1",
                event_type: "missing_child",
                msg_type: "alert",
                status: "actual",
                revision: Some(1),
                json: "{}",
            },
        }
    }

    pub(crate) fn request<'a>(post: Post<'a>, saved: &'a BTreeMap<String, String>, step: usize) -> Request<'a> {
        Request {
            post,
            text: post.text,
            step,
            target: 0,
            reply_to: None,
            root: None,
            media: &[],
            scratch: Scratch::new(saved, step, None),
        }
    }

    #[test]
    fn every_platform_has_a_channel_that_reads_back_exactly_where_its_row_says() {
        for &p in Platform::ALL {
            let row = p.profile().recovery == Recovery::ReadBack;
            assert_eq!(Channel::reads_back(p), Some(row), "{p}: the row's recovery and the channel's read_back");
        }
    }

    #[test]
    fn join_url_keeps_the_base_path_and_encodes_segments() {
        let base: reqwest::Url = "https://graph.facebook.com/v23.0".parse().expect("url");
        assert_eq!(join_url(&base, "123/feed").as_str(), "https://graph.facebook.com/v23.0/123/feed");
        let tg: reqwest::Url = "https://api.telegram.org/".parse().expect("url");
        assert_eq!(join_url(&tg, "bot71:AAH/sendMessage").as_str(), "https://api.telegram.org/bot71:AAH/sendMessage");
        let nd: reqwest::Url = "https://nextdoor.com".parse().expect("url");
        assert_eq!(
            join_url(&nd, "external/api/v1/post/create/").as_str(),
            "https://nextdoor.com/external/api/v1/post/create/"
        );
        assert_eq!(join_url(&nd, "a b/c").as_str(), "https://nextdoor.com/a%20b/c");
    }
}
