//! X (Twitter) API v2: `POST /2/tweets`.
//!
//! Auth: OAuth 1.0a user context (each request signed with HMAC-SHA1 by the
//! `oauth1-request` crate; a JSON or multipart body is not part of the signature, query
//! parameters are), or an OAuth 2.0 user token refreshed through [`OAuth2`] (X's refresh
//! tokens are single-use, so the current one lives in the state directory).
//!
//! Throttling: X sends no `Retry-After`; a 429 names its reset in `x-rate-limit-reset`
//! (Unix seconds), or in the 24-hour headers when a daily cap is what was hit.
//!
//! Duplicate protection: X has no idempotency key, and refuses a recent identical text
//! with `403 duplicate content`, without an id. After a timeout, a 5xx or that 403, the
//! account's recent posts are read (`GET /2/users/:id/tweets`) and compared with the text
//! (X rewrites links to t.co and escapes `&<>`, so both are normalised first).

use std::time::Duration;

use jiff::Timestamp;
use oauth1_request as oauth;
use secrecy::ExposeSecret as _;

use super::http::{Reply, exchange, id_field, snippet};
use super::oauth2::OAuth2;
use super::{Api, Verified};
use super::{Context, Image, Outcome, PostRef, Request, Resolution, Response};
use crate::config::{XAuth, XSettings};
use crate::platform::Platform;

#[derive(Debug)]
pub struct X {
    s: XSettings,
    http: reqwest::Client,
    timeout: Duration,
    oauth2: Option<OAuth2>,
    /// The account's user id and handle, once asked.
    me: tokio::sync::Mutex<Option<(String, String)>>,
}

/// A request body.
enum Body<'a> {
    None,
    Json(&'a serde_json::Value),
    Image(&'a Image),
}

impl X {
    pub fn new(name: &str, s: XSettings, ctx: &Context) -> Self {
        let oauth2 = match &s.auth {
            XAuth::OAuth2(o) => Some(OAuth2::new(name, o.clone(), ctx)),
            XAuth::OAuth1 { .. } => None,
        };
        X { s, http: ctx.http.clone(), timeout: ctx.timeout, oauth2, me: tokio::sync::Mutex::new(None) }
    }

    /// The `Authorization` header for a request (OAuth 1.0a signs the method, URL and
    /// query parameters).
    async fn authorization(&self, method: &str, url: &reqwest::Url, query: &[(&str, &str)]) -> Result<String, Outcome> {
        match (&self.s.auth, &self.oauth2) {
            (XAuth::OAuth1 { consumer_key, consumer_secret, access_token, access_token_secret }, _) => {
                let token = oauth::Token::from_parts(
                    consumer_key.expose_secret(),
                    consumer_secret.expose_secret(),
                    access_token.expose_secret(),
                    access_token_secret.expose_secret(),
                );
                let mut base = url.clone();
                base.set_query(None);
                let params = oauth::ParameterList::new(query.to_vec());
                let mut builder = oauth::Builder::with_token(token, oauth::HmacSha1::new());
                builder.version(true);
                Ok(builder.authorize(method, base.as_str(), &params))
            }
            (XAuth::OAuth2(_), Some(o)) => Ok(format!("Bearer {}", o.token().await?)),
            (XAuth::OAuth2(_), None) => Err(Outcome::Credentials("no OAuth 2.0 client".to_owned())),
        }
    }

    /// Make a request; with OAuth 2.0 a refused token is refreshed and the request made
    /// once more.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        query: &[(&str, &str)],
        body: Body<'_>,
    ) -> Result<Reply, Outcome> {
        let url = super::join_url(&self.s.base_url, path);
        let mut refreshed = false;
        loop {
            let auth = self.authorization(method.as_str(), &url, query).await?;
            let mut req =
                self.http.request(method.clone(), url.clone()).timeout(self.timeout).header("authorization", &auth);
            if !query.is_empty() {
                req = req.query(query);
            }
            req = match &body {
                Body::None => req,
                Body::Json(v) => req.json(v),
                Body::Image(m) => {
                    let part = reqwest::multipart::Part::bytes(m.bytes.to_vec())
                        .file_name("image")
                        .mime_str(&m.mime)
                        .map_err(|e| Outcome::Permanent(format!("bad image type: {e}")))?;
                    req.multipart(
                        reqwest::multipart::Form::new()
                            .part("media", part)
                            .text("media_category", "tweet_image")
                            .text("media_type", m.mime.clone()),
                    )
                }
            };
            let reply = exchange(req).await?;
            match (&self.oauth2, reply.status) {
                (Some(o), 401) if !refreshed => {
                    let used = auth.trim_start_matches("Bearer ").to_owned();
                    o.refused(&used).await?;
                    refreshed = true;
                }
                _ => return Ok(reply),
            }
        }
    }

    /// The account's id and handle (`GET /2/users/me`), asked once.
    async fn me(&self) -> Result<(String, String), Outcome> {
        let mut me = self.me.lock().await;
        if let Some(m) = me.as_ref() {
            return Ok(m.clone());
        }
        let r = self.call(reqwest::Method::GET, "2/users/me", &[], Body::None).await?;
        if !r.ok() {
            return Err(classify(&r, Timestamp::now()));
        }
        let v = r.json().unwrap_or_default();
        let id = id_field(&v["data"], "id").ok_or_else(|| Outcome::Unavailable("users/me without an id".to_owned()))?;
        let username = v["data"]["username"].as_str().unwrap_or("").to_owned();
        *me = Some((id.clone(), username.clone()));
        Ok((id, username))
    }

    fn post_url(&self, id: &str) -> String {
        match &self.s.username {
            Some(u) => format!("https://x.com/{u}/status/{id}"),
            None => format!("https://x.com/i/web/status/{id}"),
        }
    }

    async fn upload_all(&self, media: &[Image]) -> (Vec<String>, Option<String>) {
        let mut ids = Vec::new();
        let mut problems = Vec::new();
        for m in media.iter().take(4) {
            match self.upload(m).await {
                Ok(id) => ids.push(id),
                Err(e) => problems.push(e),
            }
        }
        let note = (!problems.is_empty()).then(|| format!("posted without an image: {}", problems.join("; ")));
        (ids, note)
    }

    async fn upload(&self, m: &Image) -> Result<String, String> {
        let r = self
            .call(reqwest::Method::POST, "2/media/upload", &[], Body::Image(m))
            .await
            .map_err(|o| format!("image upload failed: {o:?}"))?;
        if !r.ok() {
            return Err(format!("image upload refused: {}", r.detail()));
        }
        let v = r.json().unwrap_or_default();
        let id = id_field(&v["data"], "id").ok_or("image upload answered without an id")?;
        if !m.alt.is_empty() {
            let meta = serde_json::json!({ "id": id, "metadata": { "alt_text": { "text": m.alt } } });
            match self.call(reqwest::Method::POST, "2/media/metadata/create", &[], Body::Json(&meta)).await {
                Ok(r) if r.ok() => {}
                // An image without its description is worse than none: every public image
                // has alt text.
                Ok(r) => return Err(format!("alt text refused: {}", r.detail())),
                Err(o) => return Err(format!("alt text failed: {o:?}")),
            }
        }
        Ok(id)
    }

    /// Look for the post among the account's latest.
    async fn find(&self, req: &Request<'_>) -> Resolution {
        let Ok((user, _)) = self.me().await else { return Resolution::CannotTell };
        let path = format!("2/users/{user}/tweets");
        let query = [("max_results", "20"), ("tweet.fields", "created_at,text")];
        let r = match self.call(reqwest::Method::GET, &path, &query, Body::None).await {
            Ok(r) if r.ok() => r,
            _ => return Resolution::CannotTell,
        };
        let v = r.json().unwrap_or_default();
        let ours = normalise(req.text);
        let since = Timestamp::from_millisecond(req.post.created_at).ok();
        let found = v["data"].as_array().into_iter().flatten().find(|t| {
            let recent = match (since, t["created_at"].as_str().and_then(|c| c.parse::<Timestamp>().ok())) {
                (Some(since), Some(at)) => at >= since - jiff::SignedDuration::from_secs(120),
                _ => true,
            };
            recent && t["text"].as_str().is_some_and(|text| normalise(text) == ours)
        });
        match found.and_then(|t| id_field(t, "id")) {
            Some(id) => Resolution::Posted(PostRef::id(id.clone()).with_url(self.post_url(&id))),
            None => Resolution::NotPosted,
        }
    }

    async fn whoami(&self) -> Result<String, String> {
        self.me().await.map(|(id, username)| format!("posts as @{username} (user {id})")).map_err(|o| format!("{o:?}"))
    }
}

impl Api for X {
    const PLATFORM: Platform = Platform::X;
    const READS_BACK: bool = true;

    async fn send(&self, req: &Request<'_>) -> Response {
        let (media_ids, note) = self.upload_all(req.media).await;
        let mut body = serde_json::json!({ "text": req.text });
        if let Some(id) = req.reply_to.and_then(|p| p.id.as_deref()) {
            body["reply"] = serde_json::json!({ "in_reply_to_tweet_id": id });
        }
        if !media_ids.is_empty() {
            body["media"] = serde_json::json!({ "media_ids": media_ids });
        }
        let reply = match self.call(reqwest::Method::POST, "2/tweets", &[], Body::Json(&body)).await {
            Ok(r) => r,
            Err(o) => return Response::from(o).with_note(note),
        };
        let mut outcome = classify(&reply, Timestamp::now());
        if let Outcome::Sent(p) = &mut outcome
            && let Some(id) = p.id.clone()
        {
            p.url = Some(self.post_url(&id));
        }
        // Identical text was posted recently: if it is ours (a lost answer), it is done.
        if reply.status == 403 && reply.body.contains("duplicate content") {
            outcome = match self.find(req).await {
                Resolution::Posted(p) => Outcome::Sent(p),
                Resolution::NotPosted => Outcome::Permanent(format!(
                    "X refused the text as a duplicate of a recent post that is not this delivery's: {}",
                    snippet(&reply.body, 200)
                )),
                // Probably ours, but the timeline could not be read: ask again later.
                Resolution::Deduplicated | Resolution::CannotTell => Outcome::Unknown(format!(
                    "X refused the text as a duplicate and the timeline could not be read: {}",
                    snippet(&reply.body, 200)
                )),
            };
        }
        Response::new(outcome, reply.status).with_note(note)
    }

    async fn read_back(&self, req: &Request<'_>) -> Resolution {
        self.find(req).await
    }

    async fn delete(&self, post: &PostRef) -> Response {
        let Some(id) = &post.id else { return Outcome::Sent(PostRef::default()).into() };
        match self.call(reqwest::Method::DELETE, &format!("2/tweets/{id}"), &[], Body::None).await {
            Ok(r) if r.ok() || r.status == 404 => Response::new(Outcome::Sent(post.clone()), r.status),
            Ok(r) => Response::new(classify(&r, Timestamp::now()), r.status),
            Err(o) => o.into(),
        }
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }
}

/// A text as compared with what X returns: links dropped (X rewrites them to t.co),
/// `&amp;` `&lt;` `&gt;` unescaped, whitespace collapsed.
fn normalise(text: &str) -> String {
    let text = text.replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">");
    text.split_whitespace()
        .filter(|w| !w.starts_with("http://") && !w.starts_with("https://"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// When a throttled request may go again: the latest reset of the limits that are used
/// up (the 15-minute window, or a 24-hour cap).
fn reset(r: &Reply, now: Timestamp) -> Option<Duration> {
    let exhausted = |prefix: &str| {
        let remaining = r.header(&format!("{prefix}-remaining")).and_then(|v| v.trim().parse::<i64>().ok());
        let reset = r.header(&format!("{prefix}-reset")).and_then(|v| v.trim().parse::<i64>().ok());
        match (remaining, reset) {
            (Some(0), Some(at)) => Some(at),
            _ => None,
        }
    };
    let at = ["x-user-limit-24hour", "x-app-limit-24hour", "x-rate-limit"]
        .into_iter()
        .filter_map(exhausted)
        .max()
        .or_else(|| r.header("x-rate-limit-reset").and_then(|v| v.trim().parse().ok()))?;
    Some(Duration::from_secs(u64::try_from(at - now.as_second()).unwrap_or(0)))
}

/// What an X API v2 response means.
pub fn classify(r: &Reply, now: Timestamp) -> Outcome {
    let detail = || {
        let v = r.json().unwrap_or_default();
        let text = v["detail"]
            .as_str()
            .or_else(|| v["errors"][0]["message"].as_str())
            .or_else(|| v["title"].as_str())
            .map_or_else(|| snippet(&r.body, 200), str::to_owned);
        format!("HTTP {}: {text}", r.status)
    };
    match r.status {
        200..=299 => {
            let v = r.json().unwrap_or_default();
            match id_field(&v["data"], "id") {
                Some(id) => Outcome::Sent(PostRef::id(id)),
                None => Outcome::Unknown(format!("HTTP {} without a post id", r.status)),
            }
        }
        429 => match reset(r, now) {
            Some(d) => Outcome::RetryAfter(d, detail()),
            None => Outcome::Unavailable(detail()),
        },
        401 => Outcome::Credentials(detail()),
        // The app or token lacks a permission (oauth1-permissions, client-forbidden,
        // unsupported-authentication): no post goes through until that is fixed.
        403 if ["permissions", "client-forbidden", "unsupported-authentication"].iter().any(|p| r.body.contains(p)) => {
            Outcome::Credentials(detail())
        }
        500 => Outcome::Unknown(detail()),
        502..=504 => Outcome::Unavailable(detail()),
        _ => Outcome::Permanent(detail()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};
    use std::num::NonZeroU64;

    /// The example from X's "Creating a signature" documentation.
    #[test]
    fn oauth1_signature_matches_the_documented_example() {
        let token = oauth::Token::from_parts(
            "xvz1evFS4wEEPTGEFPHBog",
            "kAcSOqF21Fu85e7zjz7ZN2U4ZRhfV3WpwPAoE3Z7kBw",
            "370773112-GmHxMAgYyLbNEtIKZeRNFsMKPR9EyMZeS9weJAEb",
            "LswwdoUaIvS8ltyTt5jkRh4J50vUPVVHtR2YPi5kE",
        );
        let params = oauth::ParameterList::new([
            ("include_entities", "true"),
            ("status", "Hello Ladies + Gentlemen, a signed OAuth request!"),
        ]);
        let mut b = oauth::Builder::with_token(token, oauth::HmacSha1::new());
        b.nonce("kYjzVBB8Y0ZFabxSWbWovY3uYSQ2pTgmZeNu2VS4cg").timestamp(NonZeroU64::new(1_318_622_958)).version(true);
        let header = b.authorize("POST", "https://api.twitter.com/1.1/statuses/update.json", &params);
        assert!(header.contains(r#"oauth_signature="hCtSmYh%2BiHYCEqBWrE7C7hYmtUk%3D""#), "{header}");
    }

    fn reply(status: u16, body: &str, headers: &[(&'static str, &'static str)]) -> Reply {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_static(v));
        }
        Reply { status, headers: h, body: body.to_owned() }
    }

    #[test]
    fn a_daily_cap_waits_for_its_own_reset() {
        let now = Timestamp::from_second(1_000_000).expect("ts");
        let r = reply(
            429,
            r#"{"title":"Too Many Requests","detail":"Too Many Requests","type":"about:blank","status":429}"#,
            &[
                ("x-rate-limit-remaining", "37"),
                ("x-rate-limit-reset", "1000600"),
                ("x-user-limit-24hour-remaining", "0"),
                ("x-user-limit-24hour-reset", "1050000"),
            ],
        );
        assert!(matches!(classify(&r, now), Outcome::RetryAfter(d, _) if d.as_secs() == 50_000));
        let r = reply(429, "{}", &[("x-rate-limit-remaining", "0"), ("x-rate-limit-reset", "1000900")]);
        assert!(matches!(classify(&r, now), Outcome::RetryAfter(d, _) if d.as_secs() == 900));
    }

    #[test]
    fn texts_compare_without_links_and_escapes() {
        assert_eq!(
            normalise("Road closed & detour https://sheriff.example/x <here>"),
            normalise("Road closed &amp; detour https://t.co/abc123 &lt;here&gt;")
        );
    }
}
