//! A fake Discord webhook: execute (`?wait=true` returns the Message; JSON or multipart
//! with `payload_json` and `files[0]`), delete a message, get the webhook. Errors are
//! Discord's `{"message", "code"}`; the 429 carries `Retry-After`, `retry_after` and
//! `X-RateLimit-*` headers.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use super::{Common, Server, json, raw, with_fault};

pub const WEBHOOK: &str = "1234567890123456789";
pub const TOKEN: &str = "ZsCb7xr2kQ-webhook-token";

#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub content: String,
    pub username: Option<String>,
    pub allowed_mentions: serde_json::Value,
    pub attachment_description: Option<String>,
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

    pub fn throttle(secs: f64) -> super::Fault {
        super::Fault::respond(
            429,
            &[
                ("retry-after", &format!("{}", secs.ceil())),
                ("x-ratelimit-limit", "5"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset-after", &format!("{secs}")),
                ("x-ratelimit-scope", "user"),
            ],
            &format!(r#"{{"message": "You are being rate limited.", "retry_after": {secs}, "global": false}}"#),
        )
    }

    pub fn url(base: &str) -> String {
        format!("{base}/api/webhooks/{WEBHOOK}/{TOKEN}")
    }
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

fn error(status: u16, code: i64, message: &str) -> Response {
    json(status, &[], serde_json::json!({ "message": message, "code": code }))
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    let segs: Vec<&str> = hit.path.trim_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        (_, ["api", "webhooks", id, token, ..]) if *id != WEBHOOK || *token != TOKEN => {
            error(404, 10015, "Unknown Webhook")
        }
        ("GET", ["api", "webhooks", _, _]) => json(
            200,
            &[],
            serde_json::json!({ "type": 1, "id": WEBHOOK, "name": "RCSO Alerts", "channel_id": "199737254929760256", "guild_id": "199737254929760000" }),
        ),
        ("POST", ["api", "webhooks", _, _]) => {
            let f2 = Arc::clone(&f);
            with_fault(&f.common, "execute", move || {
                let (payload, description) = if hit.header("content-type").is_some_and(|c| c.starts_with("multipart/")) {
                    let fields = hit.multipart_fields();
                    let p: serde_json::Value = fields
                        .get("payload_json")
                        .and_then(|b| serde_json::from_slice(b).ok())
                        .unwrap_or_default();
                    if !fields.contains_key("files[0]") {
                        return error(400, 50035, "Invalid Form Body");
                    }
                    let d = p["attachments"][0]["description"].as_str().map(str::to_owned);
                    (p, d)
                } else {
                    (hit.json(), None)
                };
                let content = payload["content"].as_str().unwrap_or("").to_owned();
                if content.chars().count() > 2000 {
                    return json(
                        400,
                        &[],
                        serde_json::json!({ "message": "Invalid Form Body", "code": 50035, "errors": { "content": { "_errors": [{ "code": "BASE_TYPE_MAX_LENGTH", "message": "Must be 2000 or fewer in length." }] } } }),
                    );
                }
                let wait = hit.query_map().get("wait").map(String::as_str) == Some("true");
                let id = format!("11{:017}", f2.common.next_id());
                f2.messages.lock().expect("messages").push(Message {
                    id: id.clone(),
                    content: content.clone(),
                    username: payload["username"].as_str().map(str::to_owned),
                    allowed_mentions: payload["allowed_mentions"].clone(),
                    attachment_description: description,
                    deleted: false,
                });
                if !wait {
                    return raw(204, &[], "text/plain", String::new());
                }
                json(200, &[], serde_json::json!({ "id": id, "type": 0, "content": content, "channel_id": "199737254929760256", "webhook_id": WEBHOOK }))
            })
            .await
        }
        ("DELETE", ["api", "webhooks", _, _, "messages", mid]) => {
            let mut messages = f.messages.lock().expect("messages");
            match messages.iter_mut().find(|m| m.id == *mid && !m.deleted) {
                Some(m) => {
                    m.deleted = true;
                    raw(204, &[], "text/plain", String::new())
                }
                None => error(404, 10008, "Unknown Message"),
            }
        }
        _ => error(404, 0, "404: Not Found"),
    }
}
