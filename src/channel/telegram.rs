//! Telegram Bot API, broadcasting to a channel the bot administers: `sendMessage`, or
//! `sendPhoto` with the text as its caption; updates reply to the original
//! (`reply_parameters`); a cancellation can delete it (`deleteMessage`, within 48 hours).
//!
//! Throttling: a 429 whose `parameters.retry_after` says how many seconds to wait.
//! Duplicate protection: none. The Bot API has no idempotency key and no way to read a
//! channel's history, so after a timeout it cannot tell whether the message went out; a
//! resend may post twice.

use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::http::{Reply, exchange, snippet};
use super::{Api, Verified};
use super::{Context, Image, Outcome, PostRef, Request, Response};
use crate::config::TelegramSettings;
use crate::platform::Platform;

/// A caption's limit, in UTF-16 code units.
const MAX_CAPTION: usize = 1024;

#[derive(Debug)]
pub struct Telegram {
    s: TelegramSettings,
    http: reqwest::Client,
    timeout: Duration,
}

impl Telegram {
    pub fn new(s: TelegramSettings, ctx: &Context) -> Self {
        Telegram { s, http: ctx.http.clone(), timeout: ctx.timeout }
    }

    /// `{base}/bot<token>/<method>`: the URL holds the token, so it is never logged.
    fn url(&self, method: &str) -> reqwest::Url {
        super::join_url(&self.s.base_url, &format!("bot{}/{method}", self.s.bot_token.expose_secret()))
    }

    async fn call(&self, method: &str, body: &serde_json::Value) -> Result<Reply, Outcome> {
        exchange(self.http.post(self.url(method)).timeout(self.timeout).json(body)).await
    }

    async fn message(&self, req: &Request<'_>, reply_to: Option<i64>) -> Result<Reply, Outcome> {
        let mut body = serde_json::json!({
            "chat_id": self.s.chat_id,
            "text": req.text,
            "disable_notification": self.s.silent,
            "link_preview_options": { "is_disabled": false },
        });
        if let Some(id) = reply_to {
            body["reply_parameters"] = serde_json::json!({ "message_id": id, "allow_sending_without_reply": true });
        }
        self.call("sendMessage", &body).await
    }

    async fn photo(&self, req: &Request<'_>, image: &Image, reply_to: Option<i64>) -> Result<Reply, Outcome> {
        let part = reqwest::multipart::Part::bytes(image.bytes.to_vec())
            .file_name("photo")
            .mime_str(&image.mime)
            .map_err(|e| Outcome::Permanent(format!("bad image type: {e}")))?;
        let mut form = reqwest::multipart::Form::new()
            .text("chat_id", self.s.chat_id.clone())
            .text("caption", req.text.to_owned())
            .text("disable_notification", self.s.silent.to_string())
            .part("photo", part);
        if let Some(id) = reply_to {
            let params = serde_json::json!({ "message_id": id, "allow_sending_without_reply": true });
            form = form.text("reply_parameters", params.to_string());
        }
        exchange(self.http.post(self.url("sendPhoto")).timeout(self.timeout).multipart(form)).await
    }

    async fn whoami(&self) -> Result<String, String> {
        let me = self.call("getMe", &serde_json::json!({})).await.map_err(|o| format!("{o:?}"))?;
        if !me.ok() {
            return Err(format!("getMe: {}", description(&me)));
        }
        let chat = self
            .call("getChat", &serde_json::json!({ "chat_id": self.s.chat_id }))
            .await
            .map_err(|o| format!("{o:?}"))?;
        if !chat.ok() {
            return Err(format!("getChat {}: {}", self.s.chat_id, description(&chat)));
        }
        let bot = me.json().unwrap_or_default()["result"]["username"].as_str().unwrap_or("?").to_owned();
        let title = chat.json().unwrap_or_default()["result"]["title"].as_str().unwrap_or("?").to_owned();
        Ok(format!("bot @{bot} posts to {title:?}"))
    }
}

impl Api for Telegram {
    const PLATFORM: Platform = Platform::Telegram;

    async fn send(&self, req: &Request<'_>) -> Response {
        let mut note = None;
        let reply_to = req.reply_to.and_then(|p| p.id.as_deref()).and_then(|id| id.parse::<i64>().ok());
        let photo = req.media.first().filter(|_| {
            let fits = req.text.encode_utf16().count() <= MAX_CAPTION;
            if !fits {
                note = Some(format!(
                    "posted without an image: the text is longer than a Telegram caption ({MAX_CAPTION} characters)"
                ));
            }
            fits
        });
        let result = match photo {
            Some(image) => match self.photo(req, image, reply_to).await {
                Ok(r) if r.status == 400 || r.status == 413 => {
                    // The image was refused (format, size): the text goes out alone.
                    note = Some(format!("posted without an image: {}", description(&r)));
                    self.message(req, reply_to).await
                }
                other => other,
            },
            None => self.message(req, reply_to).await,
        };
        match result {
            Ok(r) => Response::new(classify(&r), r.status).with_note(note),
            Err(o) => Response::from(o).with_note(note),
        }
    }

    async fn delete(&self, post: &PostRef) -> Response {
        let Some(id) = post.id.as_deref().and_then(|i| i.parse::<i64>().ok()) else {
            return Outcome::Sent(PostRef::default()).into();
        };
        let body = serde_json::json!({ "chat_id": self.s.chat_id, "message_id": id });
        match self.call("deleteMessage", &body).await {
            Ok(r) if r.ok() || description(&r).contains("message to delete not found") => {
                Response::new(Outcome::Sent(post.clone()), r.status)
            }
            Ok(r) => Response::new(classify(&r), r.status),
            Err(o) => o.into(),
        }
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }
}

fn description(r: &Reply) -> String {
    r.json().and_then(|v| v["description"].as_str().map(str::to_owned)).unwrap_or_else(|| snippet(&r.body, 200))
}

/// What a Bot API response means.
pub fn classify(r: &Reply) -> Outcome {
    let v = r.json().unwrap_or_default();
    let detail = || format!("HTTP {}: {}", r.status, description(r));
    match r.status {
        200 if v["ok"] == true => {
            let m = &v["result"];
            match m["message_id"].as_i64() {
                Some(id) => {
                    let url = m["chat"]["username"].as_str().map(|u| format!("https://t.me/{u}/{id}"));
                    Outcome::Sent(PostRef { id: Some(id.to_string()), url, data: None })
                }
                None => Outcome::Unknown("sendMessage answered without a message id".to_owned()),
            }
        }
        429 => match v["parameters"]["retry_after"].as_u64() {
            Some(s) => Outcome::RetryAfter(Duration::from_secs(s), detail()),
            None => Outcome::Unavailable(detail()),
        },
        // A wrong token, or the bot is not (or no longer) an admin of the channel.
        401 | 403 => Outcome::Credentials(detail()),
        // The chat is wrong, or the bot lost its rights in it: no post goes through until
        // someone fixes that.
        400 if ["chat not found", "not enough rights", "need administrator rights", "CHAT_WRITE_FORBIDDEN"]
            .iter()
            .any(|m| description(r).contains(m)) =>
        {
            Outcome::Credentials(detail())
        }
        500..=599 => Outcome::Unknown(detail()),
        _ => Outcome::Permanent(detail()),
    }
}
