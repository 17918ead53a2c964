//! Channels: one module per platform, behind one closed enum. A channel knows its API
//! only — how to shape a request and how to classify the response into an [`Outcome`].
//! Retries, queues, quotas and persistence belong to `delivery`, once for all channels.
//!
//! Adding a platform means adding a variant to [`Channel`]; the compiler then points at
//! every `match` that must handle it.

pub mod bluesky;
pub mod console;
pub mod discord;
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

/// Everything channels share: the HTTP client, the request timeout, and the state
/// directory where refreshed tokens and sessions are kept.
#[derive(Debug, Clone)]
pub struct Context {
    pub http: reqwest::Client,
    pub timeout: Duration,
    pub state_dir: std::path::PathBuf,
}

#[derive(Debug)]
pub enum Channel {
    Console(console::Console),
    File(file::FileChannel),
    Webhook(webhook::Webhook),
    Mastodon(mastodon::Mastodon),
    Bluesky(bluesky::Bluesky),
    X(Box<x::X>),
    Facebook(facebook::Facebook),
    Instagram(instagram::Instagram),
    Threads(threads::Threads),
    Telegram(telegram::Telegram),
    Discord(discord::Discord),
    Slack(slack::Slack),
    Teams(teams::Teams),
    Nextdoor(Box<nextdoor::Nextdoor>),
    Sms(sms::Sms),
}

impl Channel {
    pub fn build(cfg: &ChannelConfig, ctx: &Context) -> Channel {
        match &cfg.kind {
            ChannelKind::Console => Channel::Console(console::Console::new(&cfg.name)),
            ChannelKind::File { path } => Channel::File(file::FileChannel::new(&cfg.name, path)),
            ChannelKind::Webhook(s) => {
                Channel::Webhook(webhook::Webhook::new(&cfg.name, s.clone(), ctx.http.clone(), ctx.timeout))
            }
            ChannelKind::Mastodon(s) => Channel::Mastodon(mastodon::Mastodon::new(s.clone(), ctx)),
            ChannelKind::Bluesky(s) => Channel::Bluesky(bluesky::Bluesky::new(&cfg.name, s.clone(), ctx)),
            ChannelKind::X(s) => Channel::X(Box::new(x::X::new(&cfg.name, s.clone(), ctx))),
            ChannelKind::Facebook(s) => Channel::Facebook(facebook::Facebook::new(s.clone(), ctx)),
            ChannelKind::Instagram(s) => Channel::Instagram(instagram::Instagram::new(s.clone(), ctx)),
            ChannelKind::Threads(s) => Channel::Threads(threads::Threads::new(s.clone(), ctx)),
            ChannelKind::Telegram(s) => Channel::Telegram(telegram::Telegram::new(s.clone(), ctx)),
            ChannelKind::Discord(s) => Channel::Discord(discord::Discord::new(s.clone(), ctx)),
            ChannelKind::Slack(s) => Channel::Slack(slack::Slack::new(s.clone(), ctx)),
            ChannelKind::Teams(s) => Channel::Teams(teams::Teams::new(s.clone(), ctx)),
            ChannelKind::Nextdoor(s) => Channel::Nextdoor(Box::new(nextdoor::Nextdoor::new(&cfg.name, s.clone(), ctx))),
            ChannelKind::Sms(s) => Channel::Sms(sms::Sms::new(s.clone(), ctx)),
        }
    }

    /// Where this channel posts.
    pub fn platform(&self) -> Platform {
        match self {
            Channel::Console(_) => Platform::Console,
            Channel::File(_) => Platform::File,
            Channel::Webhook(_) => Platform::Webhook,
            Channel::Mastodon(_) => Platform::Mastodon,
            Channel::Bluesky(_) => Platform::Bluesky,
            Channel::X(_) => Platform::X,
            Channel::Facebook(_) => Platform::Facebook,
            Channel::Instagram(_) => Platform::Instagram,
            Channel::Threads(_) => Platform::Threads,
            Channel::Telegram(_) => Platform::Telegram,
            Channel::Discord(_) => Platform::Discord,
            Channel::Slack(_) => Platform::Slack,
            Channel::Teams(_) => Platform::Teams,
            Channel::Nextdoor(_) => Platform::Nextdoor,
            Channel::Sms(_) => Platform::Sms,
        }
    }

    /// The platform's row, narrowed by this channel's settings.
    pub fn caps(&self) -> Caps {
        let row = self.platform().profile();
        let (delete, targets) = match self {
            // Only the Web API returns a message id to delete; an incoming webhook does not.
            Channel::Slack(c) => (row.delete && c.api(), 1),
            Channel::Sms(c) => (row.delete, c.recipients()),
            Channel::Console(_)
            | Channel::File(_)
            | Channel::Webhook(_)
            | Channel::Mastodon(_)
            | Channel::Bluesky(_)
            | Channel::X(_)
            | Channel::Facebook(_)
            | Channel::Instagram(_)
            | Channel::Threads(_)
            | Channel::Telegram(_)
            | Channel::Discord(_)
            | Channel::Teams(_)
            | Channel::Nextdoor(_) => (row.delete, 1),
        };
        Caps { threads: row.replies, delete, targets }
    }

    pub async fn send(&self, req: &Request<'_>) -> Response {
        match self {
            Channel::Console(c) => c.send(req).await,
            Channel::File(c) => c.send(req).await,
            Channel::Webhook(c) => c.send(req).await,
            Channel::Mastodon(c) => c.send(req).await,
            Channel::Bluesky(c) => c.send(req).await,
            Channel::X(c) => c.send(req).await,
            Channel::Facebook(c) => c.send(req).await,
            Channel::Instagram(c) => c.send(req).await,
            Channel::Threads(c) => c.send(req).await,
            Channel::Telegram(c) => c.send(req).await,
            Channel::Discord(c) => c.send(req).await,
            Channel::Slack(c) => c.send(req).await,
            Channel::Teams(c) => c.send(req).await,
            Channel::Nextdoor(c) => c.send(req).await,
            Channel::Sms(c) => c.send(req).await,
        }
    }

    /// After an unknown outcome (a timeout after sending, a crash mid-request): did the
    /// request post?
    pub async fn resolve(&self, req: &Request<'_>) -> Resolution {
        match self.platform().profile().recovery {
            Recovery::Deduplicated => return Resolution::Deduplicated,
            Recovery::CannotTell => return Resolution::CannotTell,
            Recovery::ReadBack => {}
        }
        match self {
            Channel::File(c) => c.read_back(&req.post).await,
            Channel::Bluesky(c) => c.read_back(req).await,
            Channel::X(c) => c.read_back(req).await,
            Channel::Facebook(c) => c.read_back(req).await,
            Channel::Instagram(c) => c.read_back(req).await,
            Channel::Threads(c) => c.read_back(req).await,
            Channel::Sms(c) => c.read_back(req).await,
            // Their rows say they cannot read back.
            Channel::Console(_)
            | Channel::Webhook(_)
            | Channel::Mastodon(_)
            | Channel::Telegram(_)
            | Channel::Discord(_)
            | Channel::Slack(_)
            | Channel::Teams(_)
            | Channel::Nextdoor(_) => Resolution::CannotTell,
        }
    }

    /// Delete a post (after a cancellation, where configured). A post already gone counts
    /// as deleted.
    pub async fn delete(&self, post: &PostRef) -> Response {
        match self {
            Channel::Mastodon(c) => c.delete(post).await,
            Channel::Bluesky(c) => c.delete(post).await,
            Channel::X(c) => c.delete(post).await,
            Channel::Facebook(c) => c.delete(post).await,
            Channel::Threads(c) => c.delete(post).await,
            Channel::Telegram(c) => c.delete(post).await,
            Channel::Discord(c) => c.delete(post).await,
            Channel::Slack(c) => c.delete(post).await,
            Channel::Console(_)
            | Channel::File(_)
            | Channel::Webhook(_)
            | Channel::Instagram(_)
            | Channel::Teams(_)
            | Channel::Nextdoor(_)
            | Channel::Sms(_) => Outcome::Permanent("this channel cannot delete posts".to_owned()).into(),
        }
    }

    /// Check the credentials with a read-only call (`bullhorn check --online`).
    pub async fn verify(&self) -> Verified {
        let checked = match self {
            Channel::Console(_) | Channel::File(_) => return Verified::Unchecked("local; nothing to check".to_owned()),
            Channel::Webhook(_) | Channel::Teams(_) => {
                return Verified::Unchecked("a webhook cannot be checked without posting; use test-channel".to_owned());
            }
            Channel::Slack(c) if !c.api() => {
                return Verified::Unchecked("a webhook cannot be checked without posting; use test-channel".to_owned());
            }
            Channel::Mastodon(c) => c.verify().await,
            Channel::Bluesky(c) => c.verify().await,
            Channel::X(c) => c.verify().await,
            Channel::Facebook(c) => c.verify().await,
            Channel::Instagram(c) => c.verify().await,
            Channel::Threads(c) => c.verify().await,
            Channel::Telegram(c) => c.verify().await,
            Channel::Discord(c) => c.verify().await,
            Channel::Slack(c) => c.verify().await,
            Channel::Nextdoor(c) => c.verify().await,
            Channel::Sms(c) => c.verify().await,
        };
        match checked {
            Ok(detail) => Verified::Ok(detail),
            Err(why) => Verified::Failed(why),
        }
    }
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
