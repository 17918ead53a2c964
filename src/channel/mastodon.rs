//! Mastodon (any instance): `POST /api/v1/statuses` with a bearer token.
//!
//! Duplicate protection: every request carries `Idempotency-Key` (the delivery's key, per
//! step), which the instance remembers for an hour and answers a repeat with the status
//! it already created; so after a timeout or a crash a resend is safe within that hour.
//! Updates reply with `in_reply_to_id`; a cancellation can delete the original
//! (`DELETE /api/v1/statuses/:id`). Throttling is a 429 with `X-RateLimit-Reset` as an
//! ISO-8601 time. Images go up first (`POST /api/v2/media`, polled while the instance
//! processes them); if that fails the post goes out without the image and says so.

use std::time::Duration;

use jiff::Timestamp;
use secrecy::ExposeSecret as _;

use super::http::{Reply, exchange, id_field};
use super::{Api, Verified};
use super::{Context, Image, Outcome, PostRef, Request, Response};
use crate::config::MastodonSettings;
use crate::platform::Platform;

#[derive(Debug)]
pub struct Mastodon {
    s: MastodonSettings,
    http: reqwest::Client,
    timeout: Duration,
}

impl Mastodon {
    pub fn new(s: MastodonSettings, ctx: &Context) -> Self {
        Mastodon { s, http: ctx.http.clone(), timeout: ctx.timeout }
    }

    fn url(&self, path: &str) -> reqwest::Url {
        super::join_url(&self.s.base_url, path)
    }

    fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.http.request(method, self.url(path)).timeout(self.timeout).bearer_auth(self.s.access_token.expose_secret())
    }

    /// Upload each image; the ids of those that made it, and what went wrong otherwise.
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
        let part = reqwest::multipart::Part::bytes(m.bytes.to_vec())
            .file_name("image")
            .mime_str(&m.mime)
            .map_err(|e| format!("bad image type: {e}"))?;
        let form = reqwest::multipart::Form::new().part("file", part).text("description", m.alt.clone());
        let reply = exchange(self.request(reqwest::Method::POST, "api/v2/media").multipart(form))
            .await
            .map_err(|o| format!("image upload failed: {o:?}"))?;
        if !reply.ok() {
            return Err(format!("image upload refused: {}", reply.detail()));
        }
        let v = reply.json().ok_or("image upload answered something else")?;
        let id = id_field(&v, "id").ok_or("image upload returned no id")?;
        if reply.status == 200 && !v["url"].is_null() {
            return Ok(id);
        }
        // 202: still processing. Wait a little; a post with an unprocessed image fails.
        for _ in 0..20 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            let r = exchange(self.request(reqwest::Method::GET, &format!("api/v1/media/{id}")))
                .await
                .map_err(|o| format!("image status failed: {o:?}"))?;
            if r.status == 200 && r.json().is_some_and(|v| !v["url"].is_null()) {
                return Ok(id);
            }
        }
        Err("the instance was still processing the image".to_owned())
    }

    /// Who the token posts as.
    async fn whoami(&self) -> Result<String, String> {
        let r = exchange(self.request(reqwest::Method::GET, "api/v1/accounts/verify_credentials"))
            .await
            .map_err(|o| format!("{o:?}"))?;
        if !r.ok() {
            return Err(r.detail());
        }
        let v = r.json().unwrap_or_default();
        Ok(format!("posts as @{} ({})", v["acct"].as_str().unwrap_or("?"), v["url"].as_str().unwrap_or("")))
    }
}

impl Api for Mastodon {
    const PLATFORM: Platform = Platform::Mastodon;

    async fn send(&self, req: &Request<'_>) -> Response {
        let (media_ids, note) = self.upload_all(req.media).await;
        let mut body = serde_json::json!({
            "status": req.text,
            "visibility": self.s.visibility,
        });
        if let Some(lang) = req.post.language.split('-').next().filter(|l| !l.is_empty()) {
            body["language"] = lang.into();
        }
        if !media_ids.is_empty() {
            body["media_ids"] = media_ids.into();
        }
        let reply_id = req.reply_to.and_then(|p| p.id.clone());
        if let Some(id) = &reply_id {
            body["in_reply_to_id"] = id.clone().into();
        }
        let key = req.key();
        let post = |body: &serde_json::Value| {
            self.request(reqwest::Method::POST, "api/v1/statuses").header("Idempotency-Key", &key).json(body)
        };
        let mut reply = match exchange(post(&body)).await {
            Ok(r) => r,
            Err(outcome) => return Response::from(outcome).with_note(note),
        };
        // The post replied to is gone (deleted by hand): post on its own rather than not at all.
        if reply.status == 404 && reply_id.is_some() {
            if let Some(o) = body.as_object_mut() {
                o.remove("in_reply_to_id");
            }
            reply = match exchange(post(&body)).await {
                Ok(r) => r,
                Err(outcome) => return Response::from(outcome).with_note(note),
            };
        }
        Response::new(classify(&reply, Timestamp::now()), reply.status).with_note(note)
    }

    async fn delete(&self, post: &PostRef) -> Response {
        let Some(id) = &post.id else { return Outcome::Sent(PostRef::default()).into() };
        match exchange(self.request(reqwest::Method::DELETE, &format!("api/v1/statuses/{id}"))).await {
            Ok(r) if r.ok() || r.status == 404 => Response::new(Outcome::Sent(post.clone()), r.status),
            Ok(r) => Response::new(classify(&r, Timestamp::now()), r.status),
            Err(o) => o.into(),
        }
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }
}

/// What a Mastodon response means.
pub fn classify(r: &Reply, now: Timestamp) -> Outcome {
    let error = || {
        r.json()
            .and_then(|v| v.get("error").and_then(|e| e.as_str()).map(str::to_owned))
            .unwrap_or_else(|| super::http::snippet(&r.body, 200))
    };
    match r.status {
        200..=299 => {
            let v = r.json().unwrap_or_default();
            match id_field(&v, "id") {
                Some(id) => Outcome::Sent(PostRef {
                    id: Some(id),
                    url: v.get("url").and_then(|u| u.as_str()).map(str::to_owned),
                    data: None,
                }),
                None => Outcome::Unknown(format!("HTTP {} without a status id", r.status)),
            }
        }
        429 => match r.header("x-ratelimit-reset").and_then(|t| t.parse::<Timestamp>().ok()) {
            Some(at) => {
                let wait = at.duration_since(now);
                let wait = if wait.is_positive() { wait.unsigned_abs() } else { Duration::ZERO };
                Outcome::RetryAfter(wait, format!("rate limited: {}", error()))
            }
            None => Outcome::Unavailable(format!("rate limited: {}", error())),
        },
        401 | 403 => Outcome::Credentials(format!("HTTP {}: {}", r.status, error())),
        // The key makes a resend safe even if the instance did create the status.
        500 => Outcome::Retry(format!("HTTP 500: {}", error())),
        502..=504 => Outcome::Unavailable(format!("HTTP {}: {}", r.status, error())),
        _ => Outcome::Permanent(format!("HTTP {}: {}", r.status, error())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::{HeaderMap, HeaderValue};

    fn reply(status: u16, body: &str, headers: &[(&'static str, &'static str)]) -> Reply {
        let mut h = HeaderMap::new();
        for (k, v) in headers {
            h.insert(*k, HeaderValue::from_static(v));
        }
        Reply { status, headers: h, body: body.to_owned() }
    }

    #[test]
    fn classification() {
        let now: Timestamp = "2020-09-08T13:20:00Z".parse().expect("ts");
        assert_eq!(
            classify(&reply(200, r#"{"id":"1091","url":"https://m.example/@pd/1091"}"#, &[]), now),
            Outcome::Sent(PostRef::id("1091").with_url("https://m.example/@pd/1091"))
        );
        let limited =
            reply(429, r#"{"error":"Too many requests"}"#, &[("x-ratelimit-reset", "2020-09-08T13:25:00.019685Z")]);
        assert!(
            matches!(classify(&limited, now), Outcome::RetryAfter(d, m) if d.as_secs() == 300 && m.contains("Too many"))
        );
        assert!(
            matches!(classify(&reply(401, r#"{"error":"The access token is invalid"}"#, &[]), now), Outcome::Credentials(m) if m.contains("invalid"))
        );
        assert!(matches!(
            classify(&reply(422, r#"{"error":"Validation failed: Text character limit of 500 exceeded"}"#, &[]), now),
            Outcome::Permanent(m) if m.contains("500 exceeded")
        ));
        assert!(matches!(classify(&reply(503, "", &[]), now), Outcome::Unavailable(_)));
    }
}
