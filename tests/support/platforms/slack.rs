//! A fake Slack: an incoming webhook (answers the plain text `ok`, or plain-text errors
//! such as `invalid_payload` and `channel_is_archived`) and the Web API methods
//! `chat.postMessage`, `chat.delete` and `auth.test` (errors as HTTP 200 with
//! `"ok": false`). Both throttle with a 429 and `Retry-After`.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use super::{Common, Server, json, raw, with_fault};

pub const HOOK_PATH: &str = "/services/T00000000/B00000000/XXXXXXXXXXXXXXXXXXXXXXXX";
pub const BOT_TOKEN: &str = "xoxb-1111-2222-abcdefghijkl";
pub const CHANNEL: &str = "C024BE91L";

#[derive(Debug, Clone)]
pub struct Message {
    pub ts: String,
    pub text: String,
    pub thread_ts: Option<String>,
    pub mrkdwn: Option<bool>,
    pub attachments: serde_json::Value,
    pub deleted: bool,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    pub messages: Mutex<Vec<Message>>,
    /// The webhook's channel was archived.
    pub archived: std::sync::atomic::AtomicBool,
}

impl Fake {
    pub fn live(&self) -> Vec<Message> {
        self.messages.lock().expect("messages").iter().filter(|m| !m.deleted).cloned().collect()
    }

    pub fn throttle(secs: u32) -> super::Fault {
        super::Fault::respond(429, &[("retry-after", &secs.to_string())], "rate_limited")
    }
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

fn text(status: u16, body: &str) -> Response {
    raw(status, &[], "text/plain; charset=utf-8", body.to_owned())
}

fn api_error(error: &str) -> Response {
    json(200, &[], serde_json::json!({ "ok": false, "error": error }))
}

fn store(f: &Fake, v: &serde_json::Value) -> Result<Message, &'static str> {
    let t = v["text"].as_str().unwrap_or("").to_owned();
    if t.is_empty() {
        return Err("no_text");
    }
    if t.chars().count() > 40_000 {
        return Err("msg_too_long");
    }
    if let Some(attachments) = v["attachments"].as_array()
        && attachments.iter().any(|a| a["fallback"].as_str().is_none())
    {
        return Err("invalid_attachments");
    }
    let m = Message {
        ts: format!("1503435956.{:06}", f.common.next_id()),
        text: t,
        thread_ts: v["thread_ts"].as_str().map(str::to_owned),
        mrkdwn: v["mrkdwn"].as_bool(),
        attachments: v["attachments"].clone(),
        deleted: false,
    };
    f.messages.lock().expect("messages").push(m.clone());
    Ok(m)
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    if method != Method::POST {
        return text(405, "method_not_allowed");
    }
    if hit.path.starts_with("/services/") {
        if hit.path != HOOK_PATH {
            return text(404, "no_service");
        }
        let f2 = Arc::clone(&f);
        return with_fault(&f.common, "webhook", move || {
            if f2.archived.load(std::sync::atomic::Ordering::SeqCst) {
                return text(410, "channel_is_archived");
            }
            match store(&f2, &hit.json()) {
                Ok(_) => text(200, "ok"),
                Err(_) => text(400, "invalid_payload"),
            }
        })
        .await;
    }
    if hit.bearer() != Some(BOT_TOKEN) {
        return api_error("invalid_auth");
    }
    let v = hit.json();
    match hit.path.trim_start_matches("/api/") {
        "chat.postMessage" => {
            let f2 = Arc::clone(&f);
            with_fault(&f.common, "postMessage", move || {
                if v["channel"] != CHANNEL {
                    return api_error("channel_not_found");
                }
                if let Some(ts) = v["thread_ts"].as_str()
                    && !f2.messages.lock().expect("m").iter().any(|m| m.ts == ts)
                {
                    return api_error("thread_not_found");
                }
                match store(&f2, &v) {
                    Ok(m) => json(200, &[], serde_json::json!({ "ok": true, "channel": CHANNEL, "ts": m.ts, "message": { "text": m.text, "type": "message" } })),
                    Err(e) => api_error(e),
                }
            })
            .await
        }
        "chat.delete" => {
            let ts = v["ts"].as_str().unwrap_or("");
            let mut messages = f.messages.lock().expect("messages");
            match messages.iter_mut().find(|m| m.ts == ts && !m.deleted) {
                Some(m) => {
                    m.deleted = true;
                    json(200, &[], serde_json::json!({ "ok": true, "channel": CHANNEL, "ts": ts }))
                }
                None => api_error("message_not_found"),
            }
        }
        "auth.test" => json(
            200,
            &[],
            serde_json::json!({ "ok": true, "url": "https://rcso.slack.com/", "team": "RCSO", "user": "alertbot", "team_id": "T12345", "user_id": "W12345" }),
        ),
        _ => api_error("unknown_method"),
    }
}
