//! SMS through Twilio Programmable Messaging: one `POST
//! /2010-04-01/Accounts/{sid}/Messages.json` per recipient (each its own step, so a
//! restart carries on with the next number), from a number or a Messaging Service, with
//! the image's public URL as `MediaUrl` (MMS, where the carrier supports it).
//!
//! Errors are Twilio's JSON (`code`, `message`, `more_info`): 20429 (too many concurrent
//! requests; never processed, so always safe to retry), 20003 (authentication), 21610
//! (the recipient opted out) and other 21xxx refusals of one number, which skip that
//! recipient with a note rather than fail the alert for everyone.
//!
//! Duplicate protection: Twilio has no idempotency key; after a timeout the account's
//! latest messages to that number are listed and compared with the text.

use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::http::{Reply, exchange, snippet};
use super::{Api, Caps, Verified};
use super::{Context, Outcome, PostRef, Request, Resolution, Response};
use crate::config::{SmsSender, SmsSettings};
use crate::platform::Platform;

#[derive(Debug)]
pub struct Sms {
    s: SmsSettings,
    http: reqwest::Client,
    timeout: Duration,
}

impl Sms {
    pub fn new(s: SmsSettings, ctx: &Context) -> Self {
        Sms { s, http: ctx.http.clone(), timeout: ctx.timeout }
    }

    pub fn recipients(&self) -> usize {
        self.s.to.len()
    }

    fn messages_url(&self) -> reqwest::Url {
        super::join_url(&self.s.base_url, &format!("2010-04-01/Accounts/{}/Messages.json", self.s.account_sid))
    }

    fn auth(&self, req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        req.timeout(self.timeout).basic_auth(&self.s.auth_user, Some(self.s.auth_secret.expose_secret()))
    }

    fn to<'a>(&'a self, req: &Request<'_>) -> &'a str {
        self.s.to.get(req.target).map_or("", String::as_str)
    }

    async fn whoami(&self) -> Result<String, String> {
        let url = super::join_url(&self.s.base_url, &format!("2010-04-01/Accounts/{}.json", self.s.account_sid));
        let r = exchange(self.auth(self.http.get(url))).await.map_err(|o| format!("{o:?}"))?;
        if !r.ok() {
            return Err(r.detail());
        }
        let v = r.json().unwrap_or_default();
        Ok(format!(
            "account {:?} ({}) sends to {} number{}",
            v["friendly_name"].as_str().unwrap_or("?"),
            v["status"].as_str().unwrap_or("?"),
            self.s.to.len(),
            if self.s.to.len() == 1 { "" } else { "s" }
        ))
    }
}

impl Api for Sms {
    const PLATFORM: Platform = Platform::Sms;
    const READS_BACK: bool = true;

    async fn send(&self, req: &Request<'_>) -> Response {
        let to = self.to(req);
        let mut form: Vec<(&str, &str)> = vec![("To", to), ("Body", req.text)];
        match &self.s.sender {
            SmsSender::From(n) => form.push(("From", n)),
            SmsSender::MessagingService(s) => form.push(("MessagingServiceSid", s)),
        }
        if let Some(url) = req.media.iter().find_map(|m| m.url.as_deref()) {
            form.push(("MediaUrl", url));
        }
        match exchange(self.auth(self.http.post(self.messages_url())).form(&form)).await {
            Ok(r) => Response::new(classify(&r, to), r.status),
            Err(o) => o.into(),
        }
    }

    /// The latest messages to the recipient (newest first; not filtered by `DateSent`,
    /// which is empty while a message is still queued), compared with the text, made
    /// since the delivery was.
    async fn read_back(&self, req: &Request<'_>) -> Resolution {
        let to = self.to(req);
        let query = [("To", to), ("PageSize", "50")];
        let since = jiff::Timestamp::from_millisecond(req.post.created_at - 120_000).ok();
        match exchange(self.auth(self.http.get(self.messages_url())).query(&query)).await {
            Ok(r) if r.ok() => {
                let v = r.json().unwrap_or_default();
                let found = v["messages"].as_array().into_iter().flatten().find(|m| {
                    let created = m["date_created"].as_str().and_then(|d| jiff::fmt::rfc2822::parse(d).ok());
                    let recent = match (since, created) {
                        (Some(since), Some(at)) => at.timestamp() >= since,
                        _ => true,
                    };
                    recent
                        && m["to"].as_str() == Some(to)
                        && m["body"].as_str().is_some_and(|b| b.trim() == req.text.trim())
                });
                match found.and_then(|m| m["sid"].as_str()) {
                    Some(sid) => Resolution::Posted(PostRef::id(sid)),
                    None => Resolution::NotPosted,
                }
            }
            _ => Resolution::CannotTell,
        }
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }

    /// Each recipient is a request of its own.
    fn caps(&self) -> Caps {
        Caps { targets: self.recipients(), ..Caps::of(Self::PLATFORM) }
    }
}

/// What a Twilio response means for the message to `to`.
pub fn classify(r: &Reply, to: &str) -> Outcome {
    let v = r.json().unwrap_or_default();
    let code = v["code"].as_i64().unwrap_or(0);
    let detail = || {
        let msg = v["message"].as_str().map_or_else(|| snippet(&r.body, 200), str::to_owned);
        format!("HTTP {}: {code}: {msg}", r.status)
    };
    match (r.status, code) {
        (200..=299, _) => match v["sid"].as_str() {
            Some(sid) => Outcome::Sent(PostRef::id(sid)),
            None => Outcome::Unknown("Twilio answered without a message sid".to_owned()),
        },
        // Never processed: safe to retry after a moment.
        (429, _) | (_, 20_429) => Outcome::RetryAfter(Duration::from_secs(1), detail()),
        (401, _) | (_, 20_003) => Outcome::Credentials(detail()),
        // This number cannot get it (opted out, invalid, unreachable): skip it.
        (400, 21_211 | 21_408 | 21_610 | 21_612 | 21_614) => {
            Outcome::Permanent(format!("not sent to {to}: {}", detail()))
        }
        (500..=599, _) => Outcome::Unknown(detail()),
        _ => Outcome::Permanent(detail()),
    }
}
