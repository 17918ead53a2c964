//! A fake Telegram Bot API: `sendMessage`, `sendPhoto` (multipart), `deleteMessage`,
//! `getMe`, `getChat`, with the bot token in the path and the API's envelope
//! (`{"ok": true, "result": ...}` / `{"ok": false, "error_code", "description",
//! "parameters": {"retry_after"}}`).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use super::{Common, Hit, Server, json, with_fault};

pub const TOKEN: &str = "7101234567:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw";
pub const CHAT: &str = "@rcso_alerts";

#[derive(Debug, Clone)]
pub struct Message {
    pub id: i64,
    pub text: String,
    pub reply_to: Option<i64>,
    pub photo: bool,
    pub silent: bool,
    pub deleted: bool,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    pub messages: Mutex<Vec<Message>>,
}

impl Fake {
    pub fn live(&self) -> Vec<Message> {
        self.messages.lock().expect("messages").iter().filter(|m| !m.deleted).cloned().collect()
    }

    pub fn throttle(secs: u64) -> super::Fault {
        super::Fault::respond(
            429,
            &[],
            &format!(
                r#"{{"ok":false,"error_code":429,"description":"Too Many Requests: retry after {secs}","parameters":{{"retry_after":{secs}}}}}"#
            ),
        )
    }
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

fn fail(code: u16, description: &str) -> Response {
    json(code, &[], serde_json::json!({ "ok": false, "error_code": code, "description": description }))
}

fn ok(result: serde_json::Value) -> Response {
    json(200, &[], serde_json::json!({ "ok": true, "result": result }))
}

/// The request's parameters: JSON, or multipart fields.
fn params(hit: &Hit) -> serde_json::Value {
    if hit.header("content-type").is_some_and(|c| c.starts_with("multipart/")) {
        let fields = hit.multipart_fields();
        let mut v = serde_json::json!({});
        for (k, bytes) in fields {
            let text = String::from_utf8_lossy(&bytes).into_owned();
            v[k.as_str()] = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
        }
        return v;
    }
    hit.json()
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    let path = hit.path.trim_start_matches('/').to_owned();
    let Some((bot, api)) = path.split_once('/') else { return fail(404, "Not Found") };
    if bot != format!("bot{TOKEN}") {
        return fail(401, "Unauthorized");
    }
    let p = params(&hit);
    let chat_ok = || p["chat_id"].as_str() == Some(CHAT);
    match api {
        "getMe" => ok(serde_json::json!({ "id": 7_101_234_567_i64, "is_bot": true, "username": "rcso_alerts_bot" })),
        "getChat" if chat_ok() => ok(
            serde_json::json!({ "id": -1_001_234_567_890_i64, "type": "channel", "title": "Ruiz County Sheriff Alerts", "username": "rcso_alerts" }),
        ),
        "sendMessage" | "sendPhoto" | "deleteMessage" | "getChat" if !chat_ok() => {
            fail(400, "Bad Request: chat not found")
        }
        "sendMessage" | "sendPhoto" => {
            let photo = api == "sendPhoto";
            let f2 = Arc::clone(&f);
            with_fault(&f.common, api, move || {
                let text = if photo { p["caption"].as_str() } else { p["text"].as_str() }.unwrap_or("").to_owned();
                let limit = if photo { 1024 } else { 4096 };
                if text.encode_utf16().count() > limit {
                    return fail(400, if photo { "Bad Request: message caption is too long" } else { "Bad Request: message is too long" });
                }
                if !photo && text.is_empty() {
                    return fail(400, "Bad Request: message text is empty");
                }
                let reply_to = p["reply_parameters"]["message_id"].as_i64();
                let silent = p["disable_notification"] == true || p["disable_notification"] == "true";
                let mut messages = f2.messages.lock().expect("messages");
                let id = 100 + i64::try_from(messages.len()).expect("len");
                messages.push(Message { id, text: text.clone(), reply_to, photo, silent, deleted: false });
                let mut m = serde_json::json!({
                    "message_id": id, "date": 1_795_000_000,
                    "chat": { "id": -1_001_234_567_890_i64, "type": "channel", "title": "Ruiz County Sheriff Alerts", "username": "rcso_alerts" },
                    "sender_chat": { "id": -1_001_234_567_890_i64, "type": "channel" },
                });
                m[if photo { "caption" } else { "text" }] = text.into();
                ok(m)
            })
            .await
        }
        "deleteMessage" => {
            let id = p["message_id"].as_i64().unwrap_or(0);
            let mut messages = f.messages.lock().expect("messages");
            match messages.iter_mut().find(|m| m.id == id && !m.deleted) {
                Some(m) => {
                    m.deleted = true;
                    ok(serde_json::Value::Bool(true))
                }
                None => fail(400, "Bad Request: message to delete not found"),
            }
        }
        _ => fail(404, "Not Found"),
    }
}
