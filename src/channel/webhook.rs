//! The webhook channel: a JSON POST per delivery, signed per Standard Webhooks v1
//! (`webhook-id`, `webhook-timestamp`, `webhook-signature: v1,<base64 HMAC-SHA256>` over
//! `"{id}.{timestamp}.{body}"`).
//!
//! `webhook-id` is the delivery's idempotency key and stays the same on every retry, so a
//! receiver that deduplicates on it (as the spec asks) sees each delivery once even when
//! a timeout makes bullhorn send again.
//!
//! Responses: 2xx is sent; 429 and 503 with `Retry-After` pause the channel for that long;
//! without it, and 502/504, the platform is unavailable (the channel backs off); 408, 425
//! and other 5xx retry the request; 410 Gone and other 4xx are permanent; 3xx is not
//! followed (permanent).

use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use jiff::Timestamp;
use reqwest::header::HeaderMap;

use crate::config::{SecretUrl, WebhookKey, WebhookSettings};
use sha2::Sha256;

use super::Api;
use super::http::{retry_after_header, snippet, transport_error};
use super::{Outcome, PostRef, Request, Response};
use crate::platform::Platform;

#[derive(Debug)]
pub struct Webhook {
    name: String,
    url: SecretUrl,
    key: Option<WebhookKey>,
    client: reqwest::Client,
    timeout: Duration,
}

/// The `webhook-signature` header value for one message.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes keys of any length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

impl Webhook {
    pub fn new(name: &str, s: WebhookSettings, client: reqwest::Client, timeout: Duration) -> Self {
        Webhook { name: name.to_owned(), url: s.url, key: s.key, client, timeout }
    }
}

impl Api for Webhook {
    const PLATFORM: Platform = Platform::Webhook;

    async fn send(&self, req: &Request<'_>) -> Response {
        let post = req.post;
        let event: serde_json::Value = serde_json::from_str(post.event.json).unwrap_or(serde_json::Value::Null);
        let now = Timestamp::now();
        let body = serde_json::json!({
            "type": format!("alert.{}.{}", post.event.event_type, post.event.msg_type),
            "timestamp": now.to_string(),
            "data": {
                "channel": self.name,
                "delivery_id": post.delivery_id,
                "kind": post.kind.as_str(),
                "priority": post.priority.as_str(),
                "text": post.text,
                "parts": post.parts,
                "language": (!post.language.is_empty()).then_some(post.language),
                "in_reply_to": req.reply_to.map(|p| serde_json::json!({ "id": p.id, "url": p.url })),
                "event": event,
            }
        });
        let body = match serde_json::to_vec(&body) {
            Ok(b) => b,
            Err(e) => return Outcome::Permanent(format!("cannot encode body: {e}")).into(),
        };
        let ts = now.as_second();
        let mut request = self
            .client
            .post(self.url.expose().clone())
            .timeout(self.timeout)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header("webhook-id", post.key)
            .header("webhook-timestamp", ts.to_string());
        if let Some(key) = &self.key {
            request = request.header("webhook-signature", sign(key.expose(), post.key, ts, &body));
        }
        let response = match request.body(body).send().await {
            Ok(r) => r,
            Err(e) => return transport_error(&e).into(),
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap_or_default();
        Response::new(classify(status, &headers, &text, post.key, Timestamp::now()), status)
    }
}

/// What a webhook response means.
pub fn classify(status: u16, headers: &HeaderMap, body: &str, id: &str, now: Timestamp) -> Outcome {
    let detail = || format!("HTTP {status}: {}", snippet(body, 200));
    match status {
        200..=299 => {
            // A receiver may answer with its own id and URL for the item it created.
            let parsed: Option<serde_json::Value> = serde_json::from_str(body).ok();
            let field = |k: &str| parsed.as_ref().and_then(|v| v.get(k)).and_then(|v| v.as_str()).map(str::to_owned);
            Outcome::Sent(PostRef { id: field("id").or_else(|| Some(id.to_owned())), url: field("url"), data: None })
        }
        429 | 503 => match retry_after_header(headers, now) {
            Some(d) => Outcome::RetryAfter(d, detail()),
            None => Outcome::Unavailable(detail()),
        },
        502 | 504 => Outcome::Unavailable(detail()),
        408 | 425 | 500..=599 => Outcome::Retry(detail()),
        410 => Outcome::Permanent(format!("endpoint gone (410); remove or fix the channel: {}", detail())),
        300..=399 => Outcome::Permanent(format!("redirects are not followed; fix the channel's url: {}", detail())),
        _ => Outcome::Permanent(detail()),
    }
}

#[cfg(test)]
mod tests {
    use reqwest::header::{HeaderValue, RETRY_AFTER};
    use secrecy::SecretString;

    use super::*;

    fn now() -> Timestamp {
        "2026-11-21T10:00:00Z".parse().expect("ts")
    }

    #[test]
    fn signature_matches_the_standard_webhooks_example() {
        // The test vector from the Standard Webhooks specification.
        let key = WebhookKey::decode(&SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).expect("key");
        let sig = sign(key.expose(), "msg_p5jXN8AQM9LWM0D4loKWxJek", 1_614_265_330, br#"{"test": 2432232314}"#);
        assert_eq!(sig, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    #[test]
    fn classification() {
        let none = HeaderMap::new();
        let mut wait = HeaderMap::new();
        wait.insert(RETRY_AFTER, HeaderValue::from_static("30"));
        assert_eq!(
            classify(200, &none, r#"{"id":"abc","url":"https://x.example/abc"}"#, "k", now()),
            Outcome::Sent(PostRef::id("abc").with_url("https://x.example/abc"))
        );
        assert_eq!(classify(204, &none, "", "k", now()), Outcome::Sent(PostRef::id("k")));
        assert!(
            matches!(classify(429, &wait, "", "k", now()), Outcome::RetryAfter(d, _) if d == Duration::from_secs(30))
        );
        assert!(matches!(classify(503, &wait, "", "k", now()), Outcome::RetryAfter(..)));
        assert!(matches!(classify(429, &none, "", "k", now()), Outcome::Unavailable(_)));
        assert!(matches!(classify(502, &none, "", "k", now()), Outcome::Unavailable(_)));
        assert!(matches!(classify(500, &none, "", "k", now()), Outcome::Retry(_)));
        assert!(matches!(classify(408, &none, "", "k", now()), Outcome::Retry(_)));
        assert!(matches!(classify(400, &none, "bad", "k", now()), Outcome::Permanent(m) if m.contains("bad")));
        assert!(matches!(classify(410, &none, "", "k", now()), Outcome::Permanent(m) if m.contains("gone")));
        assert!(matches!(classify(301, &none, "", "k", now()), Outcome::Permanent(_)));
    }

    #[test]
    fn debug_never_shows_the_key() {
        let secret = SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
        let hook = Webhook::new(
            "hook",
            WebhookSettings {
                url: SecretUrl::new("http://127.0.0.1:1/services/T000/B000/XXXXsecretpath".parse().expect("url")),
                key: Some(WebhookKey::decode(&secret).expect("key")),
            },
            crate::channel::http::client().expect("client"),
            Duration::from_secs(1),
        );
        let dbg = format!("{hook:?}");
        assert!(dbg.contains("REDACTED") && !dbg.contains("MfKQ9r8") && !dbg.contains("secretpath"), "{dbg}");
    }
}
