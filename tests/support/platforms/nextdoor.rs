//! A fake Nextdoor Publish API: post create, `me`, and the OAuth 2.0 token endpoint
//! (client credentials as HTTP Basic, refresh tokens that rotate).

use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, Method, Uri};
use axum::response::Response;
use base64::Engine as _;

use super::{Common, Server, json, with_fault};

pub const CLIENT_ID: &str = "nd-client-rcso";
pub const CLIENT_SECRET: &str = "nd-secret-123";

#[derive(Debug, Clone)]
pub struct Post {
    pub body_text: String,
    pub media: Vec<String>,
    pub group_ids: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Fake {
    pub common: Common,
    pub posts: Mutex<Vec<Post>>,
    /// (access token, refresh token)
    pub tokens: Mutex<(String, String)>,
}

pub async fn start() -> (Server, Arc<Fake>) {
    let fake = Arc::new(Fake::default());
    *fake.tokens.lock().expect("t") = ("nd-access-0".to_owned(), "nd-refresh-0".to_owned());
    let router = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    (super::serve(router).await, fake)
}

fn error(status: u16, message: &str) -> Response {
    json(status, &[], serde_json::json!({ "errors": [{ "code": status, "message": message }] }))
}

async fn handle(State(f): State<Arc<Fake>>, method: Method, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let hit = f.common.record(&method, &uri, &headers, &body);
    if hit.path == "/v2/token" {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{CLIENT_ID}:{CLIENT_SECRET}"));
        let form = hit.form();
        let mut tokens = f.tokens.lock().expect("t");
        if hit.header("authorization") != Some(format!("Basic {basic}").as_str())
            || form.get("refresh_token") != Some(&tokens.1)
        {
            return json(400, &[], serde_json::json!({ "error": "invalid_grant" }));
        }
        let n = f.common.next_id();
        *tokens = (format!("nd-access-{n}"), format!("nd-refresh-{n}"));
        return json(
            200,
            &[],
            serde_json::json!({ "access_token": tokens.0, "token_type": "Bearer", "expires_in": 3600, "refresh_token": tokens.1 }),
        );
    }
    if hit.bearer() != Some(f.tokens.lock().expect("t").0.as_str()) {
        return error(401, "Invalid or expired access token");
    }
    match (method.as_str(), hit.path.as_str()) {
        ("GET", "/external/api/partner/v1/me/") => {
            json(200, &[], serde_json::json!({ "agency_id": 4242, "agency_name": "Ruiz County Sheriff's Office" }))
        }
        ("POST", "/external/api/partner/v1/post/create/") => {
            let f2 = Arc::clone(&f);
            with_fault(&f.common, "create", move || {
                let v = hit.json();
                let text = v["body_text"].as_str().unwrap_or("").to_owned();
                if text.is_empty() || text.len() > 8192 {
                    return error(400, "body_text must be between 1 and 8192 characters");
                }
                let strings = |k: &str| -> Vec<String> {
                    v[k].as_array().map(|a| a.iter().filter_map(|x| x.as_str().map(str::to_owned)).collect()).unwrap_or_default()
                };
                let mut posts = f2.posts.lock().expect("posts");
                posts.push(Post { body_text: text, media: strings("media_attachments"), group_ids: strings("group_ids") });
                json(200, &[], serde_json::json!({ "result": "success", "share_link": format!("https://nextdoor.com/p/Rcso{}", posts.len()) }))
            })
            .await
        }
        _ => error(404, "Not found"),
    }
}
