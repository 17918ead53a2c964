//! Channels: one module per platform, behind one closed enum. A channel knows its API
//! only — how to shape a request and how to classify the response into an [`Outcome`].
//! Retries, queues, quotas and persistence belong to `delivery`, once for all channels.
//!
//! Adding a platform means adding a variant to [`Channel`]; the compiler then points at
//! every `match` that must handle it.

pub mod console;
pub mod file;
pub mod http;
pub mod webhook;

use std::time::Duration;

use crate::config::{ChannelConfig, ChannelKind};
use crate::store::Job;

/// Where a delivery landed on its platform.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PostRef {
    pub id: Option<String>,
    pub url: Option<String>,
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
}

impl From<Outcome> for Response {
    fn from(outcome: Outcome) -> Self {
        Response { outcome, http_status: None }
    }
}

/// What a channel can find out about a request whose outcome was unknown.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Resolution {
    /// It did post.
    Posted(PostRef),
    /// It did not post; sending again is safe.
    NotPosted,
    /// The platform offers no way to know. Sending again may post twice, unless the
    /// request carries a key the receiver deduplicates on.
    CannotTell,
}

/// What a channel sends for one delivery.
#[derive(Debug)]
pub struct Request<'a> {
    pub job: &'a Job,
    /// The channel's original post of the incident, for updates and cancels.
    pub reply_to: Option<&'a PostRef>,
}

#[derive(Debug)]
pub enum Channel {
    Console(console::Console),
    File(file::FileChannel),
    Webhook(webhook::Webhook),
}

impl Channel {
    pub fn build(cfg: &ChannelConfig, http: &reqwest::Client, timeout: Duration) -> Channel {
        match &cfg.kind {
            ChannelKind::Console => Channel::Console(console::Console::new(&cfg.name)),
            ChannelKind::File { path } => Channel::File(file::FileChannel::new(&cfg.name, path)),
            ChannelKind::Webhook { url, secret } => {
                Channel::Webhook(webhook::Webhook::new(&cfg.name, url.clone(), secret.as_ref(), http.clone(), timeout))
            }
        }
    }

    pub async fn send(&self, req: &Request<'_>) -> Response {
        match self {
            Channel::Console(c) => c.send(req).await,
            Channel::File(c) => c.send(req).await,
            Channel::Webhook(c) => c.send(req).await,
        }
    }

    /// After an unknown outcome (a timeout after sending, a crash mid-request): did the
    /// delivery post?
    pub async fn resolve(&self, job: &Job) -> Resolution {
        match self {
            // Stdout keeps no record to look in.
            Channel::Console(_) => Resolution::CannotTell,
            Channel::File(c) => c.resolve(job).await,
            // The receiver deduplicates on `webhook-id`, which stays the same on a resend.
            Channel::Webhook(_) => Resolution::CannotTell,
        }
    }
}
