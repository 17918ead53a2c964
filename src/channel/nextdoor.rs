//! Nextdoor for Public Agencies, through the partner Publish API (access is granted by
//! Nextdoor): `POST /external/api/partner/v1/post/create/` with the text, the images'
//! public URLs and the agency's boundary groups. The token is a fixed bearer token or an
//! OAuth 2.0 token refreshed through [`OAuth2`].
//!
//! The API as documented offers no reply or delete that can be relied on, so an update
//! is a new post and a cancellation is not deleted. Rate limits are not published; a 429
//! is honoured with its `Retry-After`. Duplicate protection: none; after a timeout a
//! resend may post twice.

use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::http::{Reply, exchange, id_field, retry_after_header, snippet};
use super::oauth2::OAuth2;
use super::{Api, Verified};
use super::{Context, Outcome, PostRef, Request, Response};
use crate::config::{BearerOrRefresh, NextdoorSettings};
use crate::platform::Platform;

#[derive(Debug)]
pub struct Nextdoor {
    s: NextdoorSettings,
    http: reqwest::Client,
    timeout: Duration,
    oauth2: Option<OAuth2>,
}

impl Nextdoor {
    pub fn new(name: &str, s: NextdoorSettings, ctx: &Context) -> Self {
        let oauth2 = match &s.auth {
            BearerOrRefresh::OAuth2(o) => Some(OAuth2::new(name, o.clone(), ctx)),
            BearerOrRefresh::Bearer(_) => None,
        };
        Nextdoor { s, http: ctx.http.clone(), timeout: ctx.timeout, oauth2 }
    }

    async fn token(&self) -> Result<String, Outcome> {
        match (&self.s.auth, &self.oauth2) {
            (BearerOrRefresh::Bearer(t), _) => Ok(t.expose_secret().to_owned()),
            (_, Some(o)) => o.token().await,
            (_, None) => Err(Outcome::Credentials("no token".to_owned())),
        }
    }

    /// A call; a refused OAuth 2.0 token is refreshed and the call made once more.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<Reply, Outcome> {
        let url = super::join_url(&self.s.base_url, path);
        let mut token = self.token().await?;
        for attempt in 0..2 {
            let mut req = self.http.request(method.clone(), url.clone()).timeout(self.timeout).bearer_auth(&token);
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = exchange(req).await?;
            match (&self.oauth2, r.status) {
                (Some(o), 401) if attempt == 0 => token = o.refused(&token).await?,
                _ => return Ok(r),
            }
        }
        unreachable!("the loop returns on its second pass")
    }

    async fn whoami(&self) -> Result<String, String> {
        let r =
            self.call(reqwest::Method::GET, "external/api/partner/v1/me/", None).await.map_err(|o| format!("{o:?}"))?;
        if !r.ok() {
            return Err(r.detail());
        }
        let v = r.json().unwrap_or_default();
        Ok(format!(
            "posts as {} (agency {})",
            v["agency_name"].as_str().unwrap_or("?"),
            id_field(&v, "agency_id").unwrap_or_default()
        ))
    }
}

impl Api for Nextdoor {
    const PLATFORM: Platform = Platform::Nextdoor;

    async fn send(&self, req: &Request<'_>) -> Response {
        let images: Vec<&str> = req.media.iter().filter_map(|m| m.url.as_deref()).take(10).collect();
        let note = (images.is_empty() && !req.media.is_empty())
            .then(|| "posted without an image: Nextdoor takes images by public URL, and it has none".to_owned());
        let mut body = serde_json::json!({ "body_text": req.text });
        if !images.is_empty() {
            body["media_attachments"] = images.into();
        }
        if !self.s.group_ids.is_empty() {
            body["group_ids"] = self.s.group_ids.clone().into();
        }
        match self.call(reqwest::Method::POST, "external/api/partner/v1/post/create/", Some(&body)).await {
            Ok(r) => Response::new(classify(&r, jiff::Timestamp::now()), r.status).with_note(note),
            Err(o) => Response::from(o).with_note(note),
        }
    }

    async fn verify(&self) -> Verified {
        self.whoami().await.into()
    }
}

/// What a Publish API response means.
pub fn classify(r: &Reply, now: jiff::Timestamp) -> Outcome {
    let detail = || format!("HTTP {}: {}", r.status, snippet(&r.body, 200));
    match r.status {
        200..=299 => {
            let v = r.json().unwrap_or_default();
            let url = v["share_link"].as_str().map(str::to_owned);
            let id = id_field(&v, "id")
                .or_else(|| id_field(&v, "post_id"))
                .or_else(|| url.as_deref().and_then(|u| u.trim_end_matches('/').rsplit('/').next()).map(str::to_owned));
            Outcome::Sent(PostRef { id, url, data: None })
        }
        429 => match retry_after_header(&r.headers, now) {
            Some(d) => Outcome::RetryAfter(d, detail()),
            None => Outcome::Unavailable(detail()),
        },
        401 | 403 => Outcome::Credentials(detail()),
        500..=599 => Outcome::Unknown(detail()),
        _ => Outcome::Permanent(detail()),
    }
}
