//! A fake Twilio Messaging API: create a Message (form-encoded, HTTP Basic auth, 201 with
//! the Message resource), list Messages by `To` and `DateSent>`, fetch the Account.
//! Errors are Twilio's `{"code", "message", "more_info", "status"}`: 20003, 20429,
//! 21211, 21610.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;

use super::{Common, Server, json, with_fault};

pub const SID: &str = "ACa1b2c3d4e5f60718293a4b5c6d7e8f90";
pub const AUTH_TOKEN: &str = "twilio-auth-token-123";
pub const FROM: &str = "+15555550100";
/// A number that has replied STOP.
pub const OPTED_OUT: &str = "+15555550199";

#[derive(Debug, Clone)]
pub struct Message {
    pub sid: String,
    pub to: String,
    pub from: String,
    pub body: String,
    pub media: Option<String>,
    /// When it was made; listings report it (the daemon ignores messages older than the alert).
    pub created: jiff::Timestamp,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    pub messages: Mutex<Vec<Message>>,
    /// The next this many listings come back empty: a message not visible yet.
    pub lagging_listings: std::sync::atomic::AtomicU32,
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

pub fn error(status: u16, code: u32, message: &str) -> Response {
    json(
        status,
        &[],
        serde_json::json!({ "code": code, "message": message, "more_info": format!("https://www.twilio.com/docs/errors/{code}"), "status": status }),
    )
}

fn resource(m: &Message) -> serde_json::Value {
    serde_json::json!({
        "sid": m.sid, "account_sid": SID, "to": m.to, "from": m.from, "body": m.body, "status": "queued",
        "num_segments": "1", "num_media": if m.media.is_some() { "1" } else { "0" }, "direction": "outbound-api",
        "date_created": jiff::fmt::rfc2822::DateTimePrinter::new().timestamp_to_rfc9110_string(&m.created).unwrap_or_default(), "error_code": null, "error_message": null,
        "uri": format!("/2010-04-01/Accounts/{SID}/Messages/{}.json", m.sid),
    })
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("{SID}:{AUTH_TOKEN}"));
    if hit.header("authorization") != Some(format!("Basic {basic}").as_str()) {
        return error(401, 20003, "Authenticate");
    }
    let messages_path = format!("/2010-04-01/Accounts/{SID}/Messages.json");
    match (method.as_str(), hit.path.as_str()) {
        ("POST", p) if p == messages_path => {
            let f2 = Arc::clone(&f);
            with_fault(&f.common, "create", move || {
                let form = hit.form();
                let to = form.get("To").cloned().unwrap_or_default();
                let body = form.get("Body").cloned().unwrap_or_default();
                if !to.starts_with('+') {
                    return error(400, 21211, &format!("The 'To' number {to} is not a valid phone number."));
                }
                if to == OPTED_OUT {
                    return error(400, 21610, "Attempt to send to unsubscribed recipient");
                }
                if body.chars().count() > 1600 {
                    return error(400, 21617, "The concatenated message body exceeds the 1600 character limit.");
                }
                let m = Message {
                    sid: format!("SM{:032x}", f2.common.next_id()),
                    to,
                    from: form.get("From").cloned().unwrap_or_default(),
                    body,
                    media: form.get("MediaUrl").cloned(),
                    created: jiff::Timestamp::now(),
                };
                f2.messages.lock().expect("messages").push(m.clone());
                json(201, &[], resource(&m))
            })
            .await
        }
        ("GET", p) if p == messages_path => {
            let q = hit.query_map();
            let to = q.get("To").cloned().unwrap_or_default();
            let lagging = f
                .lagging_listings
                .fetch_update(std::sync::atomic::Ordering::SeqCst, std::sync::atomic::Ordering::SeqCst, |n| {
                    n.checked_sub(1)
                })
                .is_ok();
            let list: Vec<serde_json::Value> = if lagging {
                Vec::new()
            } else {
                f.messages.lock().expect("messages").iter().rev().filter(|m| m.to == to).map(resource).collect()
            };
            json(200, &[], serde_json::json!({ "messages": list, "page": 0, "page_size": 50 }))
        }
        ("GET", p) if p == format!("/2010-04-01/Accounts/{SID}.json") => {
            json(200, &[], serde_json::json!({ "sid": SID, "friendly_name": "RCSO Alerts", "status": "active" }))
        }
        _ => error(404, 20404, "The requested resource was not found"),
    }
}
