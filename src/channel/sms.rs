//! SMS through Twilio Programmable Messaging: one `POST
//! /2010-04-01/Accounts/{sid}/Messages.json` per recipient, from a number or a Messaging
//! Service, with the image's public URL as `MediaUrl` (MMS, where the carrier supports it).
//!
//! The recipients go in batches, one step of the delivery each (so a restart carries on
//! with the next batch), the messages of a batch at once. A batch is as large as the
//! channel's `concurrency`, and no larger than its quota leaves routine posts (one number
//! at a time with the default rate of one message a second, a long code's throughput).
//! Each number reached is saved with the step as it is, so a retry or a restart sends
//! only to the numbers not yet reached.
//!
//! Errors are Twilio's JSON (`code`, `message`, `more_info`): 20429 (too many concurrent
//! requests; never processed, so always safe to retry), 20003 (authentication), 21610
//! (the recipient opted out) and other 21xxx refusals of one number, which skip that
//! recipient with a note rather than fail the alert for everyone.
//!
//! Duplicate protection: Twilio has no idempotency key; after a timeout the account's
//! latest messages to that number are listed and compared with the text.

use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::http::{Reply, exchange, snippet};
use super::{Api, Caps, Verified};
use super::{Context, Outcome, PostRef, Request, Resolution, Response};
use crate::config::{SmsSender, SmsSettings};
use crate::platform::Platform;

/// How many numbers a channel sends to at once: its `concurrency`, within what its quota
/// leaves routine posts.
pub fn batch(cfg: &crate::config::ChannelConfig) -> usize {
    let budget = cfg.quota.map_or(usize::MAX, |q| q.limit.saturating_sub(q.reserve).max(1) as usize);
    cfg.concurrency.min(budget).max(1)
}

#[derive(Debug)]
pub struct Sms {
    s: SmsSettings,
    http: reqwest::Client,
    timeout: Duration,
    /// Recipients per request of the delivery layer (a batch, sent at once).
    batch: usize,
    /// Numbers a look-up found reached, by (delivery, step, number): the send that
    /// follows the look-up skips them.
    found: Mutex<HashMap<(i64, usize, usize), String>>,
}

impl Sms {
    /// `batch`: how many numbers to send to at once (at least 1).
    pub fn new(s: SmsSettings, batch: usize, ctx: &Context) -> Self {
        Sms { s, http: ctx.http.clone(), timeout: ctx.timeout, batch: batch.max(1), found: Mutex::default() }
    }

    pub fn recipients(&self) -> usize {
        self.s.to.len()
    }

    /// How many numbers request `target` sends to.
    pub fn batch_len(&self, target: usize, saved: &std::collections::BTreeMap<String, String>) -> usize {
        self.numbers(target, self.batch_of(saved)).count().max(1)
    }

    /// The batch size of a delivery: the one its first step saved (a reload changing
    /// `concurrency` or `rate` mid-delivery must not renumber its batches), else ours.
    fn batch_of(&self, saved: &std::collections::BTreeMap<String, String>) -> usize {
        saved.get("batch:0").and_then(|b| b.parse().ok()).filter(|b| *b > 0).unwrap_or(self.batch)
    }

    /// The delivery's requests: one per batch.
    pub fn caps_for(&self, saved: &std::collections::BTreeMap<String, String>) -> Caps {
        Caps { targets: self.recipients().div_ceil(self.batch_of(saved)), ..Caps::of(Self::PLATFORM) }
    }

    /// The batch size `req`'s delivery keeps to.
    fn batch_for(&self, req: &Request<'_>) -> usize {
        req.scratch.first("batch").and_then(|b| b.parse().ok()).filter(|b| *b > 0).unwrap_or(self.batch)
    }

    /// The numbers of request `target`: its batch, with their places in it.
    fn numbers(&self, target: usize, batch: usize) -> impl Iterator<Item = (usize, &str)> {
        self.s.to.iter().skip(target.saturating_mul(batch)).take(batch).map(String::as_str).enumerate()
    }

    /// Where number `i` of the batch is kept among the step's saved values.
    fn slot(i: usize) -> String {
        format!("to{i}")
    }

    /// Number `i` of `req`'s batch was reached (or skipped for good) by an earlier try: its
    /// sid, or `-` and why it was skipped.
    fn reached(&self, req: &Request<'_>, i: usize) -> Option<String> {
        if let Some(v) = req.scratch.get(&Self::slot(i)) {
            return Some(v.to_owned());
        }
        let found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        found.get(&(req.post.delivery_id, req.step, i)).cloned()
    }

    /// Send `req`'s text to each number of its batch not reached yet, at once.
    async fn send_batch(&self, req: &Request<'_>) -> Response {
        let batch = self.batch_for(req);
        if req.step == 0 && req.scratch.get("batch").is_none() {
            // Kept for the whole delivery, before anything is sent.
            if let Err(e) = req.scratch.save("batch", &batch.to_string()).await {
                return Outcome::Retry(format!("cannot record the batch size: {e}")).into();
            }
        }
        let todo: Vec<(usize, &str)> =
            self.numbers(req.target, batch).filter(|(i, _)| self.reached(req, *i).is_none()).collect();
        let sends = todo.iter().map(|(i, to)| async move { (*i, self.send_one(req, to).await) });
        let answers = futures_util::future::join_all(sends).await;
        let mut failed: Option<Response> = None;
        for (i, r) in answers {
            let saved = match &r.outcome {
                Outcome::Sent(p) => p.id.clone().unwrap_or_default(),
                // Skipped for good, and why.
                Outcome::Permanent(m) => format!("-{m}"),
                _ => {
                    failed = Some(worse(failed, r));
                    continue;
                }
            };
            let result = req.scratch.save(&Self::slot(i), &saved).await;
            self.found
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .insert((req.post.delivery_id, req.step, i), saved);
            if let Err(e) = result {
                // Reached, but not recorded: the next try looks before sending again.
                let unknown = Response::from(Outcome::Unknown(format!("cannot record a message sent: {e}")));
                failed = Some(worse(failed, unknown));
            }
        }
        if let Some(f) = failed {
            return f;
        }
        // Every number is reached or skipped: the step is done.
        let reached: Vec<String> = self.numbers(req.target, batch).filter_map(|(i, _)| self.reached(req, i)).collect();
        let skipped: Vec<&str> = reached.iter().filter_map(|v| v.strip_prefix('-')).collect();
        let note = (!skipped.is_empty()).then(|| skipped.join("; "));
        let first = reached.iter().find(|v| !v.starts_with('-')).cloned();
        self.forget(req);
        match first {
            Some(sid) => Response::from(Outcome::Sent(PostRef::id(sid))).with_note(note),
            None => Outcome::Permanent(note.unwrap_or_else(|| "no recipient in this batch".to_owned())).into(),
        }
    }

    /// The step is done: what look-ups found for it is no longer needed.
    fn forget(&self, req: &Request<'_>) {
        let mut found = self.found.lock().unwrap_or_else(PoisonError::into_inner);
        found.retain(|(d, step, _), _| !(*d == req.post.delivery_id && *step == req.step));
    }

    async fn send_one(&self, req: &Request<'_>, to: &str) -> Response {
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

    /// Whether each number of the batch not known reached was: those found are saved.
    /// Posted only if all were.
    async fn read_back_batch(&self, req: &Request<'_>) -> Resolution {
        let batch = self.batch_for(req);
        let todo: Vec<(usize, &str)> =
            self.numbers(req.target, batch).filter(|(i, _)| self.reached(req, *i).is_none()).collect();
        let looks = todo.iter().map(|(i, to)| async move { (*i, self.read_back_one(req, to).await) });
        let mut all = Resolution::NotPosted;
        let mut missing = false;
        for (i, found) in futures_util::future::join_all(looks).await {
            match found {
                Resolution::Posted(p) => {
                    let sid = p.id.clone().unwrap_or_default();
                    let _ = req.scratch.save(&Self::slot(i), &sid).await;
                    self.found
                        .lock()
                        .unwrap_or_else(PoisonError::into_inner)
                        .insert((req.post.delivery_id, req.step, i), sid);
                }
                Resolution::CannotTell => all = Resolution::CannotTell,
                Resolution::NotPosted | Resolution::Deduplicated => missing = true,
            }
        }
        if matches!(all, Resolution::CannotTell) {
            return all;
        }
        if missing {
            return Resolution::NotPosted;
        }
        match self.numbers(req.target, batch).find_map(|(i, _)| self.reached(req, i).filter(|v| !v.starts_with('-'))) {
            Some(sid) => Resolution::Posted(PostRef::id(sid)),
            None => Resolution::NotPosted,
        }
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

    /// The latest messages to `to` (newest first; not filtered by `DateSent`, which is
    /// empty while a message is still queued), compared with the text, made since the
    /// delivery was.
    async fn read_back_one(&self, req: &Request<'_>, to: &str) -> Resolution {
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
        if self.batch_for(req) == 1 {
            return self.send_one(req, self.to(req)).await;
        }
        self.send_batch(req).await
    }

    async fn read_back(&self, req: &Request<'_>) -> Resolution {
        if self.batch_for(req) == 1 {
            return self.read_back_one(req, self.to(req)).await;
        }
        self.read_back_batch(req).await
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }

    /// Each batch of recipients is a request of its own.
    fn caps(&self) -> Caps {
        self.caps_for(&std::collections::BTreeMap::new())
    }
}

/// Of two failures in one batch, the one that decides what the step does next: an unknown
/// outcome (the next try looks before sending), then refused credentials, then an
/// unavailable platform, then throttling (the longer pause), then a plain retry.
fn worse(a: Option<Response>, b: Response) -> Response {
    let rank = |r: &Response| match &r.outcome {
        // First: the next try must look before sending to that number again.
        Outcome::Unknown(_) => 5,
        Outcome::Credentials(_) => 4,
        Outcome::Unavailable(_) => 3,
        Outcome::RetryAfter(..) => 2,
        Outcome::Retry(_) => 1,
        Outcome::Sent(_) | Outcome::Permanent(_) => 0,
    };
    match a {
        Some(a) if rank(&a) > rank(&b) => a,
        Some(a) if rank(&a) == rank(&b) => match (&a.outcome, &b.outcome) {
            (Outcome::RetryAfter(x, _), Outcome::RetryAfter(y, _)) if y > x => b,
            _ => a,
        },
        _ => b,
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
