//! A fake Mastodon instance: statuses (with `Idempotency-Key`, replies, the 500-grapheme
//! limit), media upload with asynchronous processing (202, then 206 while processing,
//! then 200), delete, and `verify_credentials`. Errors are Mastodon's: `{"error": ...}`
//! with 401, 404, 422, and 429 with `X-RateLimit-*` headers (the reset as ISO-8601).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use unicode_segmentation::UnicodeSegmentation as _;

use super::{Common, Server, json, with_fault};

pub const TOKEN: &str = "mastodon-token-123";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub id: String,
    pub text: String,
    pub in_reply_to_id: Option<String>,
    pub media: Vec<String>,
    pub language: Option<String>,
    pub deleted: bool,
    pub created: jiff::Timestamp,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    pub statuses: Mutex<Vec<Status>>,
    keys: Mutex<HashMap<String, String>>,
    /// Media id → (polls left until processed, description).
    pub media: Mutex<HashMap<String, (u32, String)>>,
}

impl Fake {
    /// Statuses that exist (not deleted), oldest first.
    pub fn live(&self) -> Vec<Status> {
        self.statuses.lock().expect("statuses").iter().filter(|s| !s.deleted).cloned().collect()
    }

    pub fn all(&self) -> Vec<Status> {
        self.statuses.lock().expect("statuses").clone()
    }

    /// The answer to a throttled request, as Mastodon sends it.
    pub fn throttle_in(secs: i64) -> super::Fault {
        let reset = jiff::Timestamp::now() + jiff::SignedDuration::from_secs(secs);
        super::Fault::respond(
            429,
            &[
                ("x-ratelimit-limit", "300"),
                ("x-ratelimit-remaining", "0"),
                ("x-ratelimit-reset", &reset.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string()),
            ],
            r#"{"error":"Too many requests"}"#,
        )
    }
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

fn error(status: u16, message: &str) -> Response {
    json(status, &[], serde_json::json!({ "error": message }))
}

fn status_json(s: &Status, base: &str) -> serde_json::Value {
    serde_json::json!({
        "id": s.id,
        "created_at": s.created.to_string(),
        "in_reply_to_id": s.in_reply_to_id,
        "sensitive": false,
        "spoiler_text": "",
        "visibility": "public",
        "language": s.language,
        "uri": format!("{base}/users/rcso/statuses/{}", s.id),
        "url": format!("{base}/@rcso/{}", s.id),
        "content": format!("<p>{}</p>", s.text),
        "media_attachments": s.media.iter().map(|m| serde_json::json!({ "id": m, "type": "image" })).collect::<Vec<_>>(),
        "account": { "id": "1", "username": "rcso", "acct": "rcso" },
    })
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    let base = format!("http://{}", headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or("mastodon.test"));
    if hit.bearer() != Some(TOKEN) {
        return error(401, "The access token is invalid");
    }
    let path = hit.path.clone();
    let segs: Vec<&str> = path.trim_matches('/').split('/').collect();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["api", "v1", "statuses"]) => {
            let f2 = Arc::clone(&f);
            with_fault(&f.common, "statuses", move || create(&f2, &hit, &base)).await
        }
        ("DELETE", ["api", "v1", "statuses", id]) => {
            let mut statuses = f.statuses.lock().expect("statuses");
            match statuses.iter_mut().find(|s| s.id == *id && !s.deleted) {
                Some(s) => {
                    s.deleted = true;
                    let mut v = status_json(s, &base);
                    v["text"] = s.text.clone().into();
                    json(200, &[], v)
                }
                None => error(404, "Record not found"),
            }
        }
        ("POST", ["api", "v2", "media"]) => {
            with_fault(&f.common, "media", || {
                let fields = hit.multipart_fields();
                if !fields.contains_key("file") {
                    return error(422, "Validation failed: File can't be blank");
                }
                let description =
                    fields.get("description").map(|d| String::from_utf8_lossy(d).into_owned()).unwrap_or_default();
                let id = format!("m{}", f.common.next_id());
                f.media.lock().expect("media").insert(id.clone(), (2, description.clone()));
                json(
                    202,
                    &[],
                    serde_json::json!({ "id": id, "type": "image", "url": null, "description": description }),
                )
            })
            .await
        }
        ("GET", ["api", "v1", "media", id]) => {
            let mut media = f.media.lock().expect("media");
            match media.get_mut(*id) {
                Some((left, description)) if *left > 0 => {
                    *left -= 1;
                    json(
                        206,
                        &[],
                        serde_json::json!({ "id": id, "type": "image", "url": null, "description": description }),
                    )
                }
                Some((_, description)) => json(
                    200,
                    &[],
                    serde_json::json!({ "id": id, "type": "image", "url": format!("{base}/media/{id}.png"), "description": description }),
                ),
                None => error(404, "Record not found"),
            }
        }
        ("GET", ["api", "v1", "accounts", "verify_credentials"]) => json(
            200,
            &[],
            serde_json::json!({ "id": "1", "username": "rcso", "acct": "rcso", "url": format!("{base}/@rcso") }),
        ),
        _ => error(404, "Record not found"),
    }
}

fn create(f: &Fake, hit: &super::Hit, base: &str) -> Response {
    let body = if hit.header("content-type").is_some_and(|c| c.starts_with("application/json")) {
        hit.json()
    } else {
        serde_json::to_value(hit.form()).unwrap_or_default()
    };
    let text = body["status"].as_str().unwrap_or("").to_owned();
    if let Some(key) = hit.header("idempotency-key")
        && let Some(id) = f.keys.lock().expect("keys").get(key)
    {
        let statuses = f.statuses.lock().expect("statuses");
        let s = statuses.iter().find(|s| &s.id == id).expect("status of key");
        return json(200, &[], status_json(s, base));
    }
    if text.is_empty() {
        return error(422, "Validation failed: Text can't be blank");
    }
    if text.graphemes(true).count() > 500 {
        return error(422, "Validation failed: Text character limit of 500 exceeded");
    }
    let in_reply_to_id = body["in_reply_to_id"].as_str().map(str::to_owned);
    let mut statuses = f.statuses.lock().expect("statuses");
    if let Some(r) = &in_reply_to_id
        && !statuses.iter().any(|s| &s.id == r && !s.deleted)
    {
        return error(404, "Record not found");
    }
    let media: Vec<String> = body["media_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    {
        let known = f.media.lock().expect("media");
        for m in &media {
            match known.get(m) {
                None => return error(422, "Validation failed: Media ids are invalid"),
                Some((left, _)) if *left > 0 => {
                    return error(422, "Cannot attach files that have not finished processing. Try again in a moment!");
                }
                _ => {}
            }
        }
    }
    let id = format!("{}", 110_000_000_000_000_000u64 + f.common.next_id());
    let s = Status {
        id: id.clone(),
        text,
        in_reply_to_id,
        media,
        language: body["language"].as_str().map(str::to_owned),
        deleted: false,
        created: jiff::Timestamp::now(),
    };
    let v = status_json(&s, base);
    statuses.push(s);
    if let Some(key) = hit.header("idempotency-key") {
        f.keys.lock().expect("keys").insert(key.to_owned(), id);
    }
    json(200, &[], v)
}
