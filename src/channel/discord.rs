//! Discord, through a channel webhook: `POST {webhook}?wait=true` (so the message comes
//! back with its id), with `allowed_mentions` empty so nothing in a post can ping anyone.
//! An image goes as a multipart file with its description (alt text). A cancellation can
//! delete the original (`DELETE {webhook}/messages/{id}`).
//!
//! Webhooks cannot reply to a message: an update is a new message in the channel (the
//! template names what it updates). Throttling: a 429 with `Retry-After` and
//! `retry_after` (seconds, fractional). A 404 means the webhook was deleted: the channel
//! pauses as for refused credentials instead of hammering it (Discord bans IPs that send
//! too many invalid requests). Duplicate protection: none for webhooks; after a timeout
//! a resend may post twice.

use std::time::Duration;

use super::http::{Reply, exchange, id_field, retry_after_header, snippet};
use super::{Api, Verified};
use super::{Context, Outcome, PostRef, Request, Response};
use crate::config::DiscordSettings;
use crate::platform::Platform;

#[derive(Debug)]
pub struct Discord {
    s: DiscordSettings,
    http: reqwest::Client,
    timeout: Duration,
}

impl Discord {
    pub fn new(s: DiscordSettings, ctx: &Context) -> Self {
        Discord { s, http: ctx.http.clone(), timeout: ctx.timeout }
    }

    fn payload(&self, text: &str) -> serde_json::Value {
        let mut p = serde_json::json!({ "content": text, "allowed_mentions": { "parse": [] } });
        if let Some(u) = &self.s.username {
            p["username"] = u.clone().into();
        }
        p
    }

    async fn whoami(&self) -> Result<String, String> {
        let r = exchange(self.http.get(self.s.webhook_url.expose().clone()).timeout(self.timeout))
            .await
            .map_err(|o| format!("{o:?}"))?;
        if !r.ok() {
            return Err(r.detail());
        }
        let v = r.json().unwrap_or_default();
        Ok(format!(
            "webhook {:?} posts to channel {}",
            v["name"].as_str().unwrap_or("?"),
            v["channel_id"].as_str().unwrap_or("?")
        ))
    }
}

impl Api for Discord {
    const PLATFORM: Platform = Platform::Discord;

    async fn send(&self, req: &Request<'_>) -> Response {
        let mut url = self.s.webhook_url.expose().clone();
        url.query_pairs_mut().append_pair("wait", "true");
        let mut payload = self.payload(req.text);
        let mut note = None;
        let result = match req.media.first() {
            Some(image) => {
                payload["attachments"] =
                    serde_json::json!([{ "id": 0, "filename": "image", "description": image.alt }]);
                let part =
                    reqwest::multipart::Part::bytes(image.bytes.to_vec()).file_name("image").mime_str(&image.mime);
                match part {
                    Ok(part) => {
                        let form = reqwest::multipart::Form::new()
                            .text("payload_json", payload.to_string())
                            .part("files[0]", part);
                        match exchange(self.http.post(url.clone()).timeout(self.timeout).multipart(form)).await {
                            // 40005 "Request entity too large": the text goes out alone.
                            Ok(r) if r.status == 413 => {
                                note = Some("posted without an image: Discord refused its size (HTTP 413)".to_owned());
                                exchange(self.http.post(url).timeout(self.timeout).json(&self.payload(req.text))).await
                            }
                            other => other,
                        }
                    }
                    Err(e) => {
                        note = Some(format!("posted without an image: {e}"));
                        exchange(self.http.post(url).timeout(self.timeout).json(&self.payload(req.text))).await
                    }
                }
            }
            None => exchange(self.http.post(url).timeout(self.timeout).json(&payload)).await,
        };
        match result {
            Ok(r) => Response::new(classify(&r, jiff::Timestamp::now()), r.status).with_note(note),
            Err(o) => Response::from(o).with_note(note),
        }
    }

    async fn delete(&self, post: &PostRef) -> Response {
        let Some(id) = &post.id else { return Outcome::Sent(PostRef::default()).into() };
        let url = super::join_url(self.s.webhook_url.expose(), &format!("messages/{id}"));
        match exchange(self.http.delete(url).timeout(self.timeout)).await {
            // 10008: Unknown Message — already gone.
            Ok(r) if r.ok() || (r.status == 404 && r.body.contains("10008")) => {
                Response::new(Outcome::Sent(post.clone()), r.status)
            }
            Ok(r) => Response::new(classify(&r, jiff::Timestamp::now()), r.status),
            Err(o) => o.into(),
        }
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }
}

/// What a Discord response means.
pub fn classify(r: &Reply, now: jiff::Timestamp) -> Outcome {
    let v = r.json().unwrap_or_default();
    let detail = || {
        let msg = v["message"].as_str().map_or_else(|| snippet(&r.body, 200), str::to_owned);
        format!("HTTP {}: {msg}", r.status)
    };
    match r.status {
        200..=299 => match id_field(&v, "id") {
            Some(id) => Outcome::Sent(PostRef::id(id)),
            None => Outcome::Sent(PostRef::default()),
        },
        429 => {
            let wait = retry_after_header(&r.headers, now).or_else(|| {
                v["retry_after"].as_f64().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
            });
            match wait {
                Some(d) => Outcome::RetryAfter(d, detail()),
                None => Outcome::Unavailable(detail()),
            }
        }
        // The webhook was deleted or its token is wrong: not to be retried one by one.
        401 | 403 | 404 => Outcome::Credentials(detail()),
        500..=599 => Outcome::Unknown(detail()),
        _ => Outcome::Permanent(detail()),
    }
}
