//! What Facebook, Instagram and Threads share: Meta's Graph API calls and its errors.
//!
//! Errors come as `{"error": {"message", "type", "code", "error_subcode", "fbtrace_id"}}`,
//! throttling usually not as a 429 but as a 400/403 with code 4, 17, 32, 613 or 80001+,
//! the wait (in minutes) in the `X-Business-Use-Case-Usage` header. A 500 with code 1 or
//! 2 can still have published, so a create that gets one is an unknown outcome.

use std::time::Duration;

use secrecy::ExposeSecret as _;

use super::http::{Reply, exchange, snippet};
use super::{Context, Outcome};
use crate::config::MetaSettings;

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
