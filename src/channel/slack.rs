//! Slack, by an incoming webhook or by the Web API with a bot token.
//!
//! A webhook (`POST` JSON, answered with the plain text `ok`) returns no message id, so
//! its posts cannot be threaded or deleted; errors are plain text (`invalid_payload`,
//! `channel_not_found`, `channel_is_archived`, ...). The Web API (`chat.postMessage`,
//! scope `chat:write`) returns the message's `ts`: updates reply in its thread
//! (`thread_ts`) and a cancellation can delete it (`chat.delete`). Its errors come with
//! HTTP 200 and `"ok": false`. Both throttle with a 429 and `Retry-After`.
//!
//! Formatting is off (`mrkdwn: false`) so markup in an event's values stays text; an
//! image at a public URL goes as an attachment with its alt text as the fallback.
//! Duplicate protection: none; after a timeout a resend may post twice.

use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::http::{Reply, exchange, retry_after_header, snippet};
use super::{Api, Caps, Verified};
use super::{Context, Outcome, PostRef, Request, Response};
use crate::config::SlackSettings;
use crate::platform::Platform;

#[derive(Debug)]
pub struct Slack {
    s: SlackSettings,
    http: reqwest::Client,
    timeout: Duration,
}

impl Slack {
    pub fn new(s: SlackSettings, ctx: &Context) -> Self {
        Slack { s, http: ctx.http.clone(), timeout: ctx.timeout }
    }

    /// Whether posts get an id (the Web API), so they can be threaded and deleted.
    pub fn api(&self) -> bool {
        matches!(self.s, SlackSettings::Api { .. })
    }

    /// The message body: the text with Slack's formatting off (`mrkdwn: false`: values
    /// are escaped for Slack, and markup in them must stay text), and an image at a public
    /// URL as an attachment, its alt text as the fallback.
    fn message(req: &Request<'_>, note: &mut Option<String>) -> serde_json::Value {
        let mut body = serde_json::json!({ "text": req.text, "mrkdwn": false, "unfurl_links": false });
        if let Some(image) = req.media.iter().find(|m| m.url.is_some()) {
            body["attachments"] = serde_json::json!([{ "fallback": image.alt, "image_url": image.url }]);
        } else if !req.media.is_empty() {
            *note = Some("posted without an image: Slack shows images from a public URL, and it has none".to_owned());
        }
        body
    }

    async fn whoami(&self) -> Result<String, String> {
        let SlackSettings::Api { base_url, bot_token, channel } = &self.s else {
            return Err("an incoming webhook cannot be checked without posting; use test-channel".to_owned());
        };
        let url = super::join_url(base_url, "auth.test");
        let r = exchange(self.http.post(url).timeout(self.timeout).bearer_auth(bot_token.expose_secret()))
            .await
            .map_err(|o| format!("{o:?}"))?;
        let v = r.json().unwrap_or_default();
        if v["ok"] != true {
            return Err(format!("auth.test: {}", v["error"].as_str().unwrap_or(&r.body)));
        }
        Ok(format!(
            "bot {} in {} posts to {channel}",
            v["user"].as_str().unwrap_or("?"),
            v["team"].as_str().unwrap_or("?")
        ))
    }
}

impl Api for Slack {
    const PLATFORM: Platform = Platform::Slack;

    async fn send(&self, req: &Request<'_>) -> Response {
        let mut note = None;
        let mut body = Self::message(req, &mut note);
        let result = match &self.s {
            SlackSettings::Webhook { webhook_url } => {
                exchange(self.http.post(webhook_url.expose().clone()).timeout(self.timeout).json(&body)).await
            }
            SlackSettings::Api { base_url, bot_token, channel } => {
                body["channel"] = channel.clone().into();
                if let Some(ts) = req.reply_to.and_then(|p| p.id.as_deref()) {
                    body["thread_ts"] = ts.into();
                }
                let url = super::join_url(base_url, "chat.postMessage");
                exchange(self.http.post(url).timeout(self.timeout).bearer_auth(bot_token.expose_secret()).json(&body))
                    .await
            }
        };
        match result {
            Ok(r) => Response::new(classify(&r, self.api(), jiff::Timestamp::now()), r.status).with_note(note),
            Err(o) => Response::from(o).with_note(note),
        }
    }

    async fn delete(&self, post: &PostRef) -> Response {
        let (SlackSettings::Api { base_url, bot_token, channel }, Some(ts)) = (&self.s, &post.id) else {
            return Outcome::Permanent("an incoming webhook cannot delete messages".to_owned()).into();
        };
        let body = serde_json::json!({ "channel": channel, "ts": ts });
        let url = super::join_url(base_url, "chat.delete");
        match exchange(self.http.post(url).timeout(self.timeout).bearer_auth(bot_token.expose_secret()).json(&body))
            .await
        {
            Ok(r) if r.json().is_some_and(|v| v["ok"] == true || v["error"] == "message_not_found") => {
                Response::new(Outcome::Sent(post.clone()), r.status)
            }
            Ok(r) => Response::new(classify(&r, true, jiff::Timestamp::now()), r.status),
            Err(o) => o.into(),
        }
    }

    async fn verify(&self) -> Verified {
        if !self.api() {
            return Verified::Unchecked("a webhook cannot be checked without posting; use test-channel".to_owned());
        }
        self.whoami().await.into()
    }

    /// Only the Web API returns a message id to delete; an incoming webhook does not.
    fn caps(&self) -> Caps {
        let caps = Caps::of(Self::PLATFORM);
        Caps { delete: caps.delete && self.api(), ..caps }
    }
}

/// What a Slack response means. `api`: a Web API answer (JSON, errors with HTTP 200).
pub fn classify(r: &Reply, api: bool, now: jiff::Timestamp) -> Outcome {
    if r.status == 429 {
        let detail = format!("HTTP 429: {}", snippet(&r.body, 200));
        return match retry_after_header(&r.headers, now) {
            Some(d) => Outcome::RetryAfter(d, detail),
            None => Outcome::Unavailable(detail),
        };
    }
    if api && r.ok() {
        let v = r.json().unwrap_or_default();
        if v["ok"] == true {
            return match v["ts"].as_str() {
                Some(ts) => Outcome::Sent(PostRef::id(ts)),
                None => Outcome::Unknown("chat.postMessage answered without a ts".to_owned()),
            };
        }
        let error = v["error"].as_str().unwrap_or("unknown_error");
        let detail = format!("chat.postMessage: {error}");
        return match error {
            "ratelimited" => Outcome::Unavailable(detail),
            "invalid_auth" | "not_authed" | "account_inactive" | "token_revoked" | "token_expired"
            | "missing_scope" | "not_in_channel" | "channel_not_found" | "is_archived" | "restricted_action" => {
                Outcome::Credentials(detail)
            }
            "internal_error" | "fatal_error" | "service_unavailable" | "request_timeout" => Outcome::Unknown(detail),
            _ => Outcome::Permanent(detail),
        };
    }
    let detail = format!("HTTP {}: {}", r.status, snippet(&r.body, 200));
    match r.status {
        200..=299 => Outcome::Sent(PostRef::default()),
        // The webhook's channel is gone or archived, or posting is prohibited.
        403 | 404 | 410 => Outcome::Credentials(detail),
        500..=599 => Outcome::Unknown(detail),
        _ => Outcome::Permanent(detail),
    }
}
