//! Channels: one module per platform, behind one closed enum. A channel knows its API
//! only — how to shape a request and how to classify the response into an [`Outcome`].
//! Retries, queues, quotas and persistence belong to `delivery`, once for all channels.
//!
//! Adding a platform means adding a variant to [`Channel`]; the compiler then points at
//! every `match` that must handle it.

pub mod bluesky;
pub mod console;
pub mod facebook;
pub mod file;
pub mod graph;
pub mod http;
pub mod instagram;
pub mod mastodon;
pub mod oauth2;
pub mod state;
pub mod threads;
pub mod webhook;
pub mod x;

use std::time::Duration;

use crate::config::{ChannelConfig, ChannelKind};
use crate::store::{Job, Store};

/// `base` with `path` ('/'-separated segments, each percent-encoded as needed) appended
/// to its own path: `https://graph.facebook.com/v23.0` + `123/feed`.
pub fn join_url(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let mut url = base.clone();
    if let Ok(mut segments) = url.path_segments_mut() {
        segments.pop_if_empty().extend(path.split('/').filter(|s| !s.is_empty()));
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
pub struct Media {
    pub bytes: bytes::Bytes,
    /// `image/jpeg`, `image/png`, ...
    pub mime: String,
    /// Alt text, required for every public image.
    pub alt: String,
    /// Where the platforms that fetch images themselves (Instagram, Threads, Facebook,
    /// Nextdoor) find it: a public URL.
    pub url: Option<String>,
}

impl std::fmt::Debug for Media {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Media")
            .field("bytes", &self.bytes.len())
            .field("mime", &self.mime)
            .field("alt", &self.alt)
            .field("url", &self.url)
            .finish()
    }
}

/// One post request: a delivery's text, or one part of its thread, to one recipient.
#[derive(Debug)]
pub struct Request<'a> {
    pub job: &'a Job,
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
    pub media: &'a [Media],
    pub scratch: Scratch<'a>,
}

impl Request<'_> {
    /// The delivery's idempotency key, made unique per step.
    pub fn key(&self) -> String {
        if self.step == 0 { self.job.idem_key.clone() } else { format!("{}-{}", self.job.idem_key, self.step) }
    }
}

/// What a channel saves in the middle of a request (a Meta container id) so a retry or a
/// restart continues from it instead of starting over.
#[derive(Debug, Clone, Copy)]
pub struct Scratch<'a> {
    saved: &'a std::collections::BTreeMap<String, String>,
    store: Option<&'a Store>,
    delivery_id: i64,
    step: usize,
}

impl<'a> Scratch<'a> {
    pub fn new(job: &'a Job, step: usize, store: Option<&'a Store>) -> Self {
        Scratch { saved: &job.progress.scratch, store, delivery_id: job.delivery_id, step }
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
        match self.store {
            Some(store) => {
                store.save_scratch(self.delivery_id, &self.slot(key), value).await.map_err(|e| e.to_string())
            }
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
    /// TEMPORARY while the platforms are written.
    Pending(String),
}

impl Channel {
    pub fn build(cfg: &ChannelConfig, ctx: &Context) -> Channel {
        match &cfg.kind {
            ChannelKind::Console => Channel::Console(console::Console::new(&cfg.name)),
            ChannelKind::File { path } => Channel::File(file::FileChannel::new(&cfg.name, path)),
            ChannelKind::Webhook { url, secret } => Channel::Webhook(webhook::Webhook::new(
                &cfg.name,
                url.clone(),
                secret.as_ref(),
                ctx.http.clone(),
                ctx.timeout,
            )),
            ChannelKind::Mastodon(s) => Channel::Mastodon(mastodon::Mastodon::new(s.clone(), ctx)),
            ChannelKind::Bluesky(s) => Channel::Bluesky(bluesky::Bluesky::new(&cfg.name, s.clone(), ctx)),
            ChannelKind::X(s) => Channel::X(Box::new(x::X::new(&cfg.name, s.clone(), ctx))),
            ChannelKind::Facebook(s) => Channel::Facebook(facebook::Facebook::new(s.clone(), ctx)),
            ChannelKind::Instagram(s) => Channel::Instagram(instagram::Instagram::new(s.clone(), ctx)),
            ChannelKind::Threads(s) => Channel::Threads(threads::Threads::new(s.clone(), ctx)),
            other => Channel::Pending(other.name().to_owned()),
        }
    }

    pub fn caps(&self) -> Caps {
        let one = Caps { threads: false, delete: false, targets: 1 };
        let social = Caps { threads: true, delete: true, targets: 1 };
        match self {
            Channel::Console(_) | Channel::File(_) | Channel::Webhook(_) => one,
            Channel::Mastodon(_) | Channel::Bluesky(_) | Channel::X(_) | Channel::Facebook(_) | Channel::Threads(_) => {
                social
            }
            // Updates are comments; the API cannot delete a post.
            Channel::Instagram(_) => Caps { delete: false, ..social },
            Channel::Pending(_) => one,
        }
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
            Channel::Pending(k) => Outcome::Permanent(format!("{k} pending")).into(),
        }
    }

    /// After an unknown outcome (a timeout after sending, a crash mid-request): did the
    /// request post?
    pub async fn resolve(&self, req: &Request<'_>) -> Resolution {
        match self {
            // Stdout keeps no record to look in.
            Channel::Console(_) => Resolution::CannotTell,
            Channel::File(c) => c.resolve(req.job).await,
            // The receiver deduplicates on `webhook-id`, which stays the same on a resend.
            Channel::Webhook(_) => Resolution::Deduplicated,
            Channel::Mastodon(c) => c.resolve(),
            Channel::Bluesky(c) => c.resolve(req).await,
            Channel::X(c) => c.resolve(req).await,
            Channel::Facebook(c) => c.resolve(req).await,
            Channel::Instagram(c) => c.resolve(req).await,
            Channel::Threads(c) => c.resolve(req).await,
            Channel::Pending(_) => Resolution::CannotTell,
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
            Channel::Console(_)
            | Channel::File(_)
            | Channel::Webhook(_)
            | Channel::Instagram(_)
            | Channel::Pending(_) => Outcome::Permanent("this channel cannot delete posts".to_owned()).into(),
        }
    }

    /// Check the credentials with a read-only call; what the platform says about them.
    pub async fn verify(&self) -> Result<String, String> {
        match self {
            Channel::Console(_) | Channel::File(_) => Ok("local; nothing to verify".to_owned()),
            Channel::Webhook(_) => Err("a webhook cannot be checked without posting; use test-channel".to_owned()),
            Channel::Mastodon(c) => c.verify().await,
            Channel::Bluesky(c) => c.verify().await,
            Channel::X(c) => c.verify().await,
            Channel::Facebook(c) => c.verify().await,
            Channel::Instagram(c) => c.verify().await,
            Channel::Threads(c) => c.verify().await,
            Channel::Pending(_) => Err("pending".to_owned()),
        }
    }
}
