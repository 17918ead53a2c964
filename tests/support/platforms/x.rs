//! A fake X API v2: posts (201 with the text as X returns it, links rewritten to t.co and
//! `&<>` escaped), the duplicate-content 403, replies, delete, media upload with alt text,
//! the account's recent posts, `users/me`, and the OAuth 2.0 token endpoint with
//! single-use refresh tokens. Every request's OAuth 1.0a signature is checked here with
//! an implementation of RFC 5849 independent of the channel's crate; a bad one gets X's
//! 401.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;
use hmac::{Hmac, Mac};

use super::{Common, Hit, Server, json, with_fault};

pub const CONSUMER_KEY: &str = "xvz1evFS4wEEPTGEFPHBog";
pub const CONSUMER_SECRET: &str = "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw";
pub const ACCESS_TOKEN: &str = "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb";
pub const ACCESS_SECRET: &str = "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE";
pub const CLIENT_ID: &str = "M1M5R3BMVy13QmpScXkzTUt5OE46MTpjaQ";
pub const USER_ID: &str = "2244994945";

#[derive(Debug, Clone)]
pub struct Tweet {
    pub id: String,
    /// As posted.
    pub text: String,
    pub reply_to: Option<String>,
    pub media: Vec<String>,
    pub deleted: bool,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    pub tweets: Mutex<Vec<Tweet>>,
    /// Media id → alt text.
    pub media: Mutex<BTreeMap<String, Option<String>>>,
    /// OAuth 2.0: the valid access token and the one refresh token that works.
    pub oauth2: Mutex<(String, String)>,
    pub refreshes: AtomicU32,
}

impl Fake {
    pub fn live(&self) -> Vec<Tweet> {
        self.tweets.lock().expect("tweets").iter().filter(|t| !t.deleted).cloned().collect()
    }

    /// The 429 X sends: no Retry-After, the reset in epoch seconds.
    pub fn throttle_in(secs: i64) -> super::Fault {
        let reset = (jiff::Timestamp::now().as_second() + secs).to_string();
        super::Fault::respond(
            429,
            &[("x-rate-limit-limit", "100"), ("x-rate-limit-remaining", "0"), ("x-rate-limit-reset", &reset)],
            r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#,
        )
    }
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    *fake.oauth2.lock().expect("oauth2") = ("access-0".to_owned(), "refresh-0".to_owned());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

fn problem(status: u16, title: &str, detail: &str) -> Response {
    json(status, &[], serde_json::json!({ "title": title, "detail": detail, "type": "about:blank", "status": status }))
}

/// RFC 3986 percent-encoding as OAuth 1.0a requires (unreserved characters kept).
fn enc(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

fn dec(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={}", s.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default()
}

/// Check the OAuth 1.0a signature of `hit` (RFC 5849 section 3.4).
pub fn signature_ok(hit: &Hit, host: &str) -> bool {
    let Some(header) = hit.header("authorization").and_then(|h| h.strip_prefix("OAuth ")) else { return false };
    let mut oauth: BTreeMap<String, String> = BTreeMap::new();
    for part in header.split(',') {
        if let Some((k, v)) = part.trim().split_once('=') {
            oauth.insert(dec(k), dec(v.trim_matches('"')));
        }
    }
    if oauth.get("oauth_consumer_key").map(String::as_str) != Some(CONSUMER_KEY)
        || oauth.get("oauth_token").map(String::as_str) != Some(ACCESS_TOKEN)
        || oauth.get("oauth_signature_method").map(String::as_str) != Some("HMAC-SHA1")
    {
        return false;
    }
    let Some(signature) = oauth.remove("oauth_signature") else { return false };
    let mut params: Vec<(String, String)> = oauth.into_iter().map(|(k, v)| (enc(&k), enc(&v))).collect();
    params.extend(hit.query_map().into_iter().map(|(k, v)| (enc(&k), enc(&v))));
    params.sort();
    let normalized: Vec<String> = params.iter().map(|(k, v)| format!("{k}={v}")).collect();
    let base = format!("{}&{}&{}", hit.method, enc(&format!("http://{host}{}", hit.path)), enc(&normalized.join("&")));
    let key = format!("{}&{}", enc(CONSUMER_SECRET), enc(ACCESS_SECRET));
    let mut mac = Hmac::<sha1::Sha1>::new_from_slice(key.as_bytes()).expect("key");
    mac.update(base.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()) == signature
}

/// The text as X returns it.
fn as_returned(text: &str) -> String {
    text.split(' ')
        .map(|w| {
            if w.starts_with("https://") || w.starts_with("http://") {
                "https://t.co/Ab12Cd34Ef".to_owned()
            } else {
                w.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    let host = hit.header("host").unwrap_or("").to_owned();
    if hit.path == "/2/oauth2/token" {
        return token(&f, &hit);
    }
    let authorized = match hit.bearer() {
        Some(t) => *t == f.oauth2.lock().expect("oauth2").0,
        None => signature_ok(&hit, &host),
    };
    if !authorized {
        return json(
            401,
            &[],
            serde_json::json!({ "title": "Unauthorized", "type": "about:blank", "status": 401, "detail": "Unauthorized" }),
        );
    }
    let segs: Vec<String> = hit.path.trim_matches('/').split('/').map(str::to_owned).collect();
    let segs: Vec<&str> = segs.iter().map(String::as_str).collect();
    match (method.as_str(), segs.as_slice()) {
        ("POST", ["2", "tweets"]) => {
            let f2 = Arc::clone(&f);
            with_fault(&f.common, "tweets", move || create(&f2, &hit)).await
        }
        ("DELETE", ["2", "tweets", id]) => {
            let mut tweets = f.tweets.lock().expect("tweets");
            match tweets.iter_mut().find(|t| t.id == *id && !t.deleted) {
                Some(t) => {
                    t.deleted = true;
                    json(200, &[], serde_json::json!({ "data": { "deleted": true } }))
                }
                None => problem(404, "Not Found Error", &format!("Could not find tweet with id: [{id}].")),
            }
        }
        ("GET", ["2", "users", "me"]) => json(
            200,
            &[],
            serde_json::json!({ "data": { "id": USER_ID, "name": "Ruiz County Sheriff", "username": "RuizSheriff" } }),
        ),
        ("GET", ["2", "users", USER_ID, "tweets"]) => {
            let tweets = f.tweets.lock().expect("tweets");
            let data: Vec<serde_json::Value> = tweets
                .iter()
                .rev()
                .filter(|t| !t.deleted)
                .take(20)
                .map(|t| {
                    serde_json::json!({
                        "id": t.id, "text": as_returned(&t.text), "edit_history_tweet_ids": [t.id],
                        "created_at": jiff::Timestamp::now().to_string(),
                    })
                })
                .collect();
            json(200, &[], serde_json::json!({ "data": data, "meta": { "result_count": data.len() } }))
        }
        ("POST", ["2", "media", "upload"]) => with_fault(&f.common, "media", || {
            let fields = hit.multipart_fields();
            if !fields.contains_key("media") || fields.get("media_category").map(Vec::as_slice) != Some(b"tweet_image") {
                return problem(400, "Invalid Request", "One or more parameters to your request was invalid.");
            }
            let id = format!("18800281060205{:05}", f.common.next_id());
            f.media.lock().expect("media").insert(id.clone(), None);
            json(
                200,
                &[],
                serde_json::json!({ "data": { "id": id, "media_key": format!("3_{id}"), "expires_after_secs": 86400, "size": fields["media"].len() } }),
            )
        })
        .await,
        ("POST", ["2", "media", "metadata", "create"]) => {
            let v = hit.json();
            let id = v["id"].as_str().unwrap_or("").to_owned();
            let alt = v["metadata"]["alt_text"]["text"].as_str().map(str::to_owned);
            let mut media = f.media.lock().expect("media");
            match media.get_mut(&id) {
                Some(slot) => {
                    *slot = alt.clone();
                    json(200, &[], serde_json::json!({ "data": { "id": id, "associated_metadata": { "alt_text": { "text": alt } } } }))
                }
                None => problem(400, "Invalid Request", "media id not found"),
            }
        }
        _ => problem(404, "Not Found Error", "Sorry, that page does not exist."),
    }
}

fn create(f: &Fake, hit: &Hit) -> Response {
    let v = hit.json();
    let Some(text) = v["text"].as_str().map(str::to_owned) else {
        return problem(400, "Invalid Request", "One or more parameters to your request was invalid.");
    };
    if bullhorn::render::length::x_weighted_length(&text) > 280 {
        return json(
            403,
            &[],
            serde_json::json!({ "title": "Forbidden", "type": "about:blank", "status": 403, "detail": "You are not permitted to perform this action." }),
        );
    }
    let mut tweets = f.tweets.lock().expect("tweets");
    if tweets.iter().any(|t| t.text == text && !t.deleted) {
        return problem(403, "Forbidden", "You are not allowed to create a Tweet with duplicate content.");
    }
    let reply_to = v["reply"]["in_reply_to_tweet_id"].as_str().map(str::to_owned);
    if let Some(r) = &reply_to
        && !tweets.iter().any(|t| &t.id == r && !t.deleted)
    {
        return problem(
            400,
            "Invalid Request",
            "The Tweet you are replying to has been deleted or is not visible to you.",
        );
    }
    let media: Vec<String> = v["media"]["media_ids"]
        .as_array()
        .map(|a| a.iter().filter_map(|m| m.as_str().map(str::to_owned)).collect())
        .unwrap_or_default();
    let id = format!("1445880548472{:06}", f.common.next_id());
    tweets.push(Tweet { id: id.clone(), text: text.clone(), reply_to, media, deleted: false });
    json(
        201,
        &[],
        serde_json::json!({ "data": { "id": id, "text": as_returned(&text), "edit_history_tweet_ids": [id] } }),
    )
}

/// `POST /2/oauth2/token` with `grant_type=refresh_token`: each refresh token works once.
fn token(f: &Fake, hit: &Hit) -> Response {
    let form = hit.form();
    f.refreshes.fetch_add(1, Ordering::SeqCst);
    let mut state = f.oauth2.lock().expect("oauth2");
    if form.get("grant_type").map(String::as_str) != Some("refresh_token")
        || form.get("client_id").map(String::as_str) != Some(CLIENT_ID)
        || form.get("refresh_token") != Some(&state.1)
    {
        return json(
            400,
            &[],
            serde_json::json!({ "error": "invalid_request", "error_description": "Value passed for the token was invalid." }),
        );
    }
    let n = f.common.next_id();
    *state = (format!("access-{n}"), format!("refresh-{n}"));
    json(
        200,
        &[],
        serde_json::json!({
            "token_type": "bearer", "expires_in": 7200, "access_token": state.0,
            "scope": "tweet.write users.read tweet.read offline.access media.write", "refresh_token": state.1,
        }),
    )
}
