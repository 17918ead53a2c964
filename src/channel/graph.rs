//! What Facebook, Instagram and Threads share: Meta's Graph API calls and its errors.
//!
//! Errors come as `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`,
//! throttling usually not as a 429 but as a 400/403 with code 4, 17, 32, 613 or 80001+,
//! the wait (in minutes) in the `X-Business-Use-Case-Usage` header. A 500 with code 1 or
//! 2 can still have published, so a create that gets one is an unknown outcome.

use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::http::{Reply, exchange, id_field, snippet};
use super::{Context, Outcome, PostRef, Request, Resolution, Response};
use crate::config::MetaSettings;

/// How long before its alert a lost post may have been made and still be found.
const LOOKBACK_MS: i64 = 120_000;

/// Instagram and Threads publish in two steps, a container and then its publish, with
/// their own names for the same things. The container id is saved before publishing, so
/// a retry or a restart publishes that container instead of making a second one, and
/// asks it first (PUBLISHED means done; the post is then found by its text).
#[derive(Debug, Clone, Copy)]
pub struct TwoStep {
    pub product: &'static str,
    /// Where containers are made and the account's posts listed: `media`, `threads`.
    pub edge: &'static str,
    /// `media_publish`, `threads_publish`.
    pub publish: &'static str,
    /// The container's state: `status_code`, `status`.
    pub status_field: &'static str,
    /// Where a post's text is: `caption`, `text`.
    pub text_field: &'static str,
}

#[derive(Debug)]
pub struct Graph {
    pub s: MetaSettings,
    http: reqwest::Client,
    timeout: Duration,
}

/// A Graph API error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GraphError {
    pub code: i64,
    pub subcode: i64,
    pub message: String,
}

impl GraphError {
    pub fn of(r: &Reply) -> Option<GraphError> {
        let v = r.json()?;
        let e = v.get("error")?;
        Some(GraphError {
            code: e["code"].as_i64().unwrap_or(0),
            subcode: e["error_subcode"].as_i64().unwrap_or(0),
            message: e["message"].as_str().unwrap_or("").to_owned(),
        })
    }

    /// The object (a post to reply to or delete) does not exist.
    pub fn missing(&self) -> bool {
        self.code == 100 && self.subcode == 33
    }
}

impl Graph {
    pub fn new(s: MetaSettings, ctx: &Context) -> Self {
        Graph { s, http: ctx.http.clone(), timeout: ctx.timeout }
    }

    /// A call with the access token as a bearer; `params` go in the query for GET and
    /// DELETE, else form-encoded in the body.
    pub async fn call(&self, method: reqwest::Method, path: &str, params: &[(&str, &str)]) -> Result<Reply, Outcome> {
        let url = super::join_url(&self.s.base_url, path);
        let mut req = self
            .http
            .request(method.clone(), url)
            .timeout(self.timeout)
            .bearer_auth(self.s.access_token.expose_secret());
        req = if method == reqwest::Method::GET || method == reqwest::Method::DELETE {
            req.query(params)
        } else {
            req.form(params)
        };
        exchange(req).await
    }

    /// A multipart call (a photo's bytes).
    pub async fn multipart(&self, path: &str, form: reqwest::multipart::Form) -> Result<Reply, Outcome> {
        let url = super::join_url(&self.s.base_url, path);
        exchange(
            self.http.post(url).timeout(self.timeout).bearer_auth(self.s.access_token.expose_secret()).multipart(form),
        )
        .await
    }
}

/// The wait the `X-Business-Use-Case-Usage` header names (its
/// `estimated_time_to_regain_access`, in minutes), the longest over its entries.
pub fn regain_access(r: &Reply) -> Option<Duration> {
    let v: serde_json::Value = serde_json::from_str(r.header("x-business-use-case-usage")?).ok()?;
    let minutes = v
        .as_object()?
        .values()
        .filter_map(|entries| entries.as_array())
        .flatten()
        .filter_map(|e| e["estimated_time_to_regain_access"].as_u64())
        .max()?;
    (minutes > 0).then(|| Duration::from_secs(minutes * 60))
}

/// What a failed Graph call means. `creating`: the call creates something, so a server
/// error may have done it anyway.
pub fn classify_error(r: &Reply, creating: bool) -> Outcome {
    let e = GraphError::of(r);
    let detail = match &e {
        Some(e) => format!("HTTP {}: code {} ({}): {}", r.status, e.code, e.subcode, e.message),
        None => format!("HTTP {}: {}", r.status, snippet(&r.body, 200)),
    };
    let code = e.as_ref().map_or(0, |e| e.code);
    match code {
        // Application, user, page and business-use-case rate limits; 9: publishing cap.
        4 | 9 | 17 | 32 | 613 | 80_001..=80_009 => match regain_access(r) {
            Some(d) => Outcome::RetryAfter(d, detail),
            None => Outcome::Unavailable(detail),
        },
        // The container is not ready to publish (still processing), or was just published:
        // the next try looks at the container again.
        9007 => Outcome::Retry(detail),
        // Token invalid or expired, session, permissions.
        102 | 190 | 10 | 200..=299 => Outcome::Credentials(detail),
        // Unknown error / service temporarily unavailable: may have published.
        1 | 2 if creating => Outcome::Unknown(detail),
        1 | 2 => Outcome::Unavailable(detail),
        _ => match r.status {
            429 => Outcome::Unavailable(detail),
            401 => Outcome::Credentials(detail),
            500..=599 if creating => Outcome::Unknown(detail),
            500..=599 => Outcome::Unavailable(detail),
            _ => Outcome::Permanent(detail),
        },
    }
}

/// Two-step publishing, for Instagram and Threads.
impl Graph {
    /// A container's state: IN_PROGRESS, FINISHED, PUBLISHED, ERROR, EXPIRED.
    pub async fn container_status(&self, t: TwoStep, container: &str) -> Result<String, Outcome> {
        let r = self.call(reqwest::Method::GET, container, &[("fields", t.status_field)]).await?;
        if !r.ok() {
            return Err(classify_error(&r, false));
        }
        Ok(r.json().and_then(|v| v[t.status_field].as_str().map(str::to_owned)).unwrap_or_default())
    }

    async fn permalink(&self, id: &str) -> Option<String> {
        let r = self.call(reqwest::Method::GET, id, &[("fields", "permalink")]).await.ok()?;
        r.json()?["permalink"].as_str().map(str::to_owned)
    }

    /// The published post with this delivery's text, among the account's latest.
    async fn find_published(&self, t: TwoStep, req: &Request<'_>) -> Resolution {
        let path = format!("{}/{}", self.s.account_id, t.edge);
        let fields = format!("id,{},permalink,timestamp", t.text_field);
        let params = [("fields", fields.as_str()), ("limit", "10")];
        match self.call(reqwest::Method::GET, &path, &params).await {
            Ok(r) if r.ok() => {
                match r.json().and_then(|v| find_by_text(&v, t.text_field, req.text, req.post.created_at - LOOKBACK_MS))
                {
                    Some(m) => Resolution::Posted(PostRef {
                        url: m["permalink"].as_str().map(str::to_owned),
                        ..PostRef::id(id_field(&m, "id").unwrap_or_default())
                    }),
                    None => Resolution::NotPosted,
                }
            }
            _ => Resolution::CannotTell,
        }
    }

    /// After a lost answer: published if the saved container says so (and then which post).
    pub async fn resolve_container(&self, t: TwoStep, req: &Request<'_>) -> Resolution {
        match req.scratch.get("container") {
            // No container yet: nothing can have been published.
            None => Resolution::NotPosted,
            Some(c) => match self.container_status(t, c).await.as_deref() {
                Ok("PUBLISHED") => self.find_published(t, req).await,
                Ok(_) => Resolution::NotPosted,
                Err(_) => Resolution::CannotTell,
            },
        }
    }

    /// The saved container to publish (`Ok(Some)`), none to make a new one (`Ok(None)`),
    /// or the answer already (`Err`: it was published, or is still processing).
    pub async fn saved_container(&self, t: TwoStep, req: &Request<'_>) -> Result<Option<String>, Response> {
        let Some(c) = req.scratch.get("container") else { return Ok(None) };
        let status = self.container_status(t, c).await.map_err(Response::from)?;
        match status.as_str() {
            "PUBLISHED" => Err(match self.find_published(t, req).await {
                Resolution::Posted(p) => Outcome::Sent(p).into(),
                // Published, the container says; only its id could not be found.
                _ => Response::from(Outcome::Sent(PostRef::default())).with_note(Some(
                    "published, but the post was not found among the latest to record its id".to_owned(),
                )),
            }),
            "IN_PROGRESS" => Err(Outcome::Retry(format!("{} is still processing", t.product)).into()),
            "FINISHED" => Ok(Some(c.to_owned())),
            // Expired (after 24 hours) or failed: make a new one.
            _ => Ok(None),
        }
    }

    /// Take the answer to a container's creation: save its id before anything else, and
    /// (`wait`, for an image) give the platform a few seconds to fetch and process it.
    pub async fn created(&self, t: TwoStep, req: &Request<'_>, reply: &Reply, wait: bool) -> Result<String, Response> {
        if !reply.ok() {
            // Nothing is posted until the publish step: a failed container is safe to retry.
            let outcome = match classify_error(reply, false) {
                Outcome::Unknown(m) => Outcome::Retry(m),
                o => o,
            };
            return Err(Response::new(outcome, reply.status));
        }
        let id = reply
            .json()
            .and_then(|v| id_field(&v, "id"))
            .ok_or_else(|| Response::from(Outcome::Retry("container answer without an id".to_owned())))?;
        req.scratch
            .save("container", &id)
            .await
            .map_err(|e| Response::from(Outcome::Retry(format!("cannot save the container id: {e}"))))?;
        if wait {
            for _ in 0..10 {
                match self.container_status(t, &id).await.as_deref() {
                    Ok("IN_PROGRESS") => tokio::time::sleep(Duration::from_millis(500)).await,
                    _ => return Ok(id),
                }
            }
            // Saved: the next try publishes this container once it is ready.
            return Err(Outcome::Retry(format!("{} is still processing the image", t.product)).into());
        }
        Ok(id)
    }

    /// Publish a container; the post's id and permalink.
    pub async fn publish(&self, t: TwoStep, container: &str) -> Response {
        let path = format!("{}/{}", self.s.account_id, t.publish);
        let reply = match self.call(reqwest::Method::POST, &path, &[("creation_id", container)]).await {
            Ok(r) => r,
            Err(o) => return o.into(),
        };
        if !reply.ok() {
            return Response::new(classify_error(&reply, true), reply.status);
        }
        let outcome = match reply.json().and_then(|v| id_field(&v, "id")) {
            Some(id) => Outcome::Sent(PostRef { url: self.permalink(&id).await, ..PostRef::id(id) }),
            None => Outcome::Unknown(format!("HTTP {} without a post id", reply.status)),
        };
        Response::new(outcome, reply.status)
    }
}

/// A Graph time: `2026-11-21T10:00:00+0000`.
pub fn graph_time(s: &str) -> Option<jiff::Timestamp> {
    s.parse::<jiff::Timestamp>()
        .ok()
        .or_else(|| jiff::fmt::strtime::parse("%Y-%m-%dT%H:%M:%S%z", s).ok()?.to_timestamp().ok())
}

/// The first of `items` whose `field` is `text` (comparing trimmed) and that was made at
/// or after `since_ms` (its `created_time` or `timestamp`, when it has one).
pub fn find_by_text(items: &serde_json::Value, field: &str, text: &str, since_ms: i64) -> Option<serde_json::Value> {
    let since = jiff::Timestamp::from_millisecond(since_ms).ok();
    items["data"]
        .as_array()?
        .iter()
        .find(|i| {
            let made = i["created_time"].as_str().or_else(|| i["timestamp"].as_str()).and_then(graph_time);
            let recent = match (since, made) {
                (Some(since), Some(at)) => at >= since,
                _ => true,
            };
            recent && i[field].as_str().is_some_and(|t| t.trim() == text.trim())
        })
        .cloned()
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
    fn lookups_compare_text_and_time() {
        assert_eq!(graph_time("2026-11-21T10:00:00+0000"), "2026-11-21T10:00:00Z".parse().ok());
        let items = serde_json::json!({ "data": [
            { "id": "1", "message": "Road closed", "created_time": "2026-11-21T09:00:00+0000" },
            { "id": "2", "message": "Road closed", "created_time": "2026-11-21T10:00:00+0000" },
        ]});
        let since = "2026-11-21T09:30:00Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        assert_eq!(find_by_text(&items, "message", "Road closed", since).map(|v| v["id"].clone()), Some("2".into()));
        assert!(find_by_text(&items, "message", "Other", 0).is_none());
    }

    #[test]
    fn errors_by_code() {
        let throttled = reply(
            400,
            r#"{"error":{"message":"(#32) Page request limit reached","type":"OAuthException","code":32,"fbtrace_id":"A1"}}"#,
            &[(
                "x-business-use-case-usage",
                r#"{"112233":[{"type":"pages","call_count":100,"total_cputime":25,"total_time":25,"estimated_time_to_regain_access":12}]}"#,
            )],
        );
        assert!(matches!(classify_error(&throttled, true), Outcome::RetryAfter(d, _) if d.as_secs() == 720));
        let expired = reply(
            400,
            r#"{"error":{"message":"Error validating access token: Session has expired","type":"OAuthException","code":190,"error_subcode":463}}"#,
            &[],
        );
        assert!(matches!(classify_error(&expired, true), Outcome::Credentials(m) if m.contains("expired")));
        let maybe = reply(
            500,
            r#"{"error":{"message":"An unexpected error has occurred.","type":"OAuthException","code":2}}"#,
            &[],
        );
        assert!(matches!(classify_error(&maybe, true), Outcome::Unknown(_)));
        let bad =
            reply(400, r#"{"error":{"message":"(#100) Invalid parameter","type":"OAuthException","code":100}}"#, &[]);
        assert!(matches!(classify_error(&bad, true), Outcome::Permanent(_)));
    }
}
