//! A fake Bluesky PDS for the faults the real one (tests/support/pds.rs) cannot be made to
//! show on demand: an expired access token, a 429 with `RateLimit-*` headers, the 500 a
//! second record with the same key gets, and a timeout after the record was made. XRPC
//! errors are `{"error": name, "message": ...}` as the PDS sends them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;

use super::{Common, Server, json, with_fault};

pub const HANDLE: &str = "rcso.bsky.test";
pub const DID: &str = "did:plc:rcso7fakeaaaaaaaaaaaaaaa";
pub const PASSWORD: &str = "abcd-efgh-ijkl-mnop";

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    /// rkey → record.
    pub records: Mutex<BTreeMap<String, serde_json::Value>>,
    pub logins: AtomicU32,
    pub refreshes: AtomicU32,
    tokens: Mutex<(String, String)>,
    /// The current access token is refused as expired.
    pub expired: std::sync::atomic::AtomicBool,
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

fn error(status: u16, name: &str, message: &str) -> Response {
    json(status, &[], serde_json::json!({ "error": name, "message": message }))
}

impl Fake {
    fn issue(&self) -> serde_json::Value {
        let n = self.common.next_id();
        let (access, refresh) = (format!("acc-{n}"), format!("ref-{n}"));
        *self.tokens.lock().expect("tokens") = (access.clone(), refresh.clone());
        self.expired.store(false, Ordering::SeqCst);
        serde_json::json!({ "did": DID, "handle": HANDLE, "accessJwt": access, "refreshJwt": refresh, "active": true })
    }

    /// The XRPC error when the request's access token is not the current one.
    fn refuse(&self, hit: &super::Hit) -> Option<Response> {
        let current = self.tokens.lock().expect("tokens").0.clone();
        match hit.bearer() {
            Some(t) if t == current && !current.is_empty() => {
                self.expired.load(Ordering::SeqCst).then(|| error(400, "ExpiredToken", "Token has expired"))
            }
            Some(_) => Some(error(400, "InvalidToken", "Token could not be verified")),
            None => Some(error(401, "AuthMissing", "Authentication Required")),
        }
    }

    pub fn posts(&self) -> Vec<serde_json::Value> {
        self.records.lock().expect("records").values().cloned().collect()
    }

    /// A 429 as the PDS's rate limiter sends it.
    pub fn throttle_in(secs: i64) -> super::Fault {
        let reset = (jiff::Timestamp::now().as_second() + secs).to_string();
        super::Fault::respond(
            429,
            &[
                ("ratelimit-limit", "5000"),
                ("ratelimit-remaining", "0"),
                ("ratelimit-reset", &reset),
                ("ratelimit-policy", "5000;w=3600"),
            ],
            r#"{"error":"RateLimitExceeded","message":"Rate Limit Exceeded"}"#,
        )
    }
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    let xrpc = hit.path.trim_start_matches("/xrpc/").to_owned();
    match (method.as_str(), xrpc.as_str()) {
        ("POST", "com.atproto.server.createSession") => {
            f.logins.fetch_add(1, Ordering::SeqCst);
            let v = hit.json();
            if v["identifier"] != HANDLE || v["password"] != PASSWORD {
                return error(401, "AuthenticationRequired", "Invalid identifier or password");
            }
            json(200, &[], f.issue())
        }
        ("POST", "com.atproto.server.refreshSession") => {
            f.refreshes.fetch_add(1, Ordering::SeqCst);
            let refresh = f.tokens.lock().expect("tokens").1.clone();
            if hit.bearer() != Some(refresh.as_str()) {
                return error(400, "ExpiredToken", "Token has been revoked");
            }
            json(200, &[], f.issue())
        }
        ("GET", "com.atproto.server.getSession") => match f.refuse(&hit) {
            None => json(200, &[], serde_json::json!({ "did": DID, "handle": HANDLE })),
            Some(r) => r,
        },
        ("POST", "com.atproto.repo.createRecord") => {
            if let Some(r) = f.refuse(&hit) {
                return r;
            }
            let f2 = Arc::clone(&f);
            with_fault(&f.common, "createRecord", move || {
                let v = hit.json();
                if v["repo"] != DID || v["collection"] != "app.bsky.feed.post" {
                    return error(400, "InvalidRequest", "Input/repo must be the session's DID");
                }
                let rkey = v["rkey"].as_str().unwrap_or("").to_owned();
                let record = v["record"].clone();
                let text = record["text"].as_str().unwrap_or("");
                if unicode_segmentation::UnicodeSegmentation::graphemes(text, true).count() > 300 {
                    return error(
                        400,
                        "InvalidRequest",
                        "Invalid app.bsky.feed.post record: grapheme too big (maximum 300) at $.record.text",
                    );
                }
                let mut records = f2.records.lock().expect("records");
                if records.contains_key(&rkey) {
                    return error(500, "InternalServerError", "Internal Server Error");
                }
                records.insert(rkey.clone(), record);
                json(
                    200,
                    &[],
                    serde_json::json!({
                        "uri": format!("at://{DID}/app.bsky.feed.post/{rkey}"),
                        "cid": format!("bafyrei{rkey}"),
                        "commit": { "cid": "bafyreicommit", "rev": "3n2slk7yvbs27" },
                        "validationStatus": "valid",
                    }),
                )
            })
            .await
        }
        ("GET", "com.atproto.repo.getRecord") => {
            let q = hit.query_map();
            let rkey = q.get("rkey").cloned().unwrap_or_default();
            match f.records.lock().expect("records").get(&rkey) {
                Some(v) => json(
                    200,
                    &[],
                    serde_json::json!({ "uri": format!("at://{DID}/app.bsky.feed.post/{rkey}"), "cid": format!("bafyrei{rkey}"), "value": v }),
                ),
                None => error(
                    400,
                    "RecordNotFound",
                    &format!("Could not locate record: at://{DID}/app.bsky.feed.post/{rkey}"),
                ),
            }
        }
        ("POST", "com.atproto.repo.deleteRecord") => {
            if let Some(r) = f.refuse(&hit) {
                return r;
            }
            let rkey = hit.json()["rkey"].as_str().unwrap_or("").to_owned();
            f.records.lock().expect("records").remove(&rkey);
            json(200, &[], serde_json::json!({ "commit": { "cid": "bafyreicommit", "rev": "3n2slk7yvbs28" } }))
        }
        _ => error(501, "MethodNotImplemented", "Method Not Implemented"),
    }
}
