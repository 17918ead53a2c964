//! A fake Teams Workflows webhook: takes the Adaptive Card message envelope, checks its
//! shape and the ~28 KB size limit (413 above), answers 202 Accepted with no body, and
//! keeps the cards it got.

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use super::{Common, Server, json, raw, with_fault};

pub const PATH: &str = "/workflows/8f2a9c/triggers/manual/paths/invoke";

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    pub cards: Mutex<Vec<serde_json::Value>>,
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

impl Fake {
    pub fn url(base: &str) -> String {
        format!("{base}{PATH}?api-version=2016-06-01&sp=%2Ftriggers%2Fmanual%2Frun&sv=1.0&sig=AbCdEfSignature")
    }
}

fn error(status: u16, code: &str, message: &str) -> Response {
    json(status, &[], serde_json::json!({ "error": { "code": code, "message": message } }))
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    if hit.path != PATH || !hit.query.contains("sig=AbCdEfSignature") {
        return error(401, "DirectApiAuthorizationRequired", "The request must be authenticated");
    }
    let f2 = Arc::clone(&f);
    with_fault(&f.common, "post", move || {
        if hit.body.len() > 28 * 1024 {
            return raw(413, &[], "text/plain", "Request Entity too large".to_owned());
        }
        let v = hit.json();
        let card = &v["attachments"][0];
        if v["type"] != "message"
            || card["contentType"] != "application/vnd.microsoft.card.adaptive"
            || card["content"]["type"] != "AdaptiveCard"
        {
            return error(
                400,
                "InvalidRequestContent",
                "The input body for trigger 'manual' of type 'Request' did not match its schema definition.",
            );
        }
        f2.cards.lock().expect("cards").push(card["content"].clone());
        raw(202, &[], "text/plain", String::new())
    })
    .await
}
