//! Microsoft Teams, through a Workflows webhook ("Post to a channel when a webhook request
//! is received"): an Adaptive Card with the text (and an image at a public URL, with its
//! alt text). The flow answers 200 or 202 with no message id, so posts cannot be
//! threaded or deleted; an update is a new message. The whole message must stay under
//! about 28 KB (413 above). Duplicate protection: none; after a timeout a resend may post
//! twice.

use std::time::Duration;

use super::Api;
use super::http::{Reply, exchange, retry_after_header, snippet};
use super::{Context, Outcome, PostRef, Request, Response};
use crate::config::TeamsSettings;
use crate::platform::Platform;

#[derive(Debug)]
pub struct Teams {
    s: TeamsSettings,
    http: reqwest::Client,
    timeout: Duration,
}

/// The Adaptive Card message for `text`, with an image if there is one at a public URL.
pub fn card(text: &str, image: Option<(&str, &str)>) -> serde_json::Value {
    let mut body = vec![serde_json::json!({ "type": "TextBlock", "text": text, "wrap": true })];
    if let Some((url, alt)) = image {
        body.push(serde_json::json!({ "type": "Image", "url": url, "altText": alt, "size": "Large" }));
    }
    serde_json::json!({
        "type": "message",
        "attachments": [{
            "contentType": "application/vnd.microsoft.card.adaptive",
            "contentUrl": null,
            "content": {
                "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
                "type": "AdaptiveCard",
                "version": "1.4",
                "body": body,
            },
        }],
    })
}

impl Teams {
    pub fn new(s: TeamsSettings, ctx: &Context) -> Self {
        Teams { s, http: ctx.http.clone(), timeout: ctx.timeout }
    }
}

impl Api for Teams {
    const PLATFORM: Platform = Platform::Teams;

    async fn send(&self, req: &Request<'_>) -> Response {
        let image = req.media.iter().find_map(|m| m.url.as_deref().map(|u| (u, m.alt.as_str())));
        let note = (image.is_none() && !req.media.is_empty())
            .then(|| "posted without an image: Teams shows images from a public URL, and it has none".to_owned());
        let body = card(req.text, image);
        match exchange(self.http.post(self.s.webhook_url.expose().clone()).timeout(self.timeout).json(&body)).await {
            Ok(r) => Response::new(classify(&r, jiff::Timestamp::now()), r.status).with_note(note),
            Err(o) => Response::from(o).with_note(note),
        }
    }
}

/// What a Workflows webhook response means.
pub fn classify(r: &Reply, now: jiff::Timestamp) -> Outcome {
    let detail = || format!("HTTP {}: {}", r.status, snippet(&r.body, 200));
    match r.status {
        200..=299 => Outcome::Sent(PostRef::default()),
        429 => match retry_after_header(&r.headers, now) {
            Some(d) => Outcome::RetryAfter(d, detail()),
            None => Outcome::Unavailable(detail()),
        },
        // The flow was deleted or turned off, or its signature no longer matches.
        401 | 403 | 404 => Outcome::Credentials(detail()),
        500..=599 => Outcome::Unknown(detail()),
        _ => Outcome::Permanent(detail()),
    }
}
