//! One-time approve/reject links from staff notices, served at `/act/{token}` so they work
//! from a phone behind the agency's reverse proxy.
//!
//! The token (256 random bits) is the credential; the store keeps only its SHA-256. A GET
//! shows the held alert, what each channel would post, and one button: chat apps fetch
//! links to preview them, so a GET must change nothing. The POST acts once: the store
//! marks the link (and every other link of the alert) used in the same transaction that
//! approves or rejects. Pages are not cached, not indexed and send no referrer.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use super::AdminState;
use crate::digest::sha256_hex;
use crate::store::{AdminOp, StoreError};
use crate::time::{now_ms, rfc3339};

pub fn routes() -> Router<AdminState> {
    Router::new().route("/{token}", get(show).post(act))
}

/// A token as issued: base64url, 43 characters.
fn well_formed(token: &str) -> bool {
    token.len() == 43 && token.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

async fn show(State(s): State<AdminState>, Path(token): Path<String>) -> Response {
    if !well_formed(&token) {
        return page(StatusCode::NOT_FOUND, "Link not valid", "<p>This link is not valid.</p>");
    }
    let link = match s.reader.link(&sha256_hex(token.as_bytes())).await {
        Ok(Some(l)) => l,
        Ok(None) => return page(StatusCode::NOT_FOUND, "Link not valid", "<p>This link is not valid.</p>"),
        Err(e) => return unavailable(&e),
    };
    let mut html = format!(
        "<p class=meta>{} · {} · alert {}</p><h1>{}</h1>",
        esc(&link.event_type),
        esc(&link.status),
        link.event_id,
        esc(&link.headline)
    );
    for (channel, state, text) in &link.deliveries {
        html.push_str(&format!("<h2>{} <small>({})</small></h2><pre>{}</pre>", esc(channel), esc(state), esc(text)));
    }
    if let Some(used) = &link.used {
        html.push_str(&format!("<p class=done>This link was already used: {}.</p>", esc(used)));
        return page(StatusCode::GONE, "Already decided", &html);
    }
    if link.expires_at <= now_ms() {
        html.push_str(&format!("<p class=done>This link expired at {}.</p>", esc(&rfc3339(link.expires_at))));
        return page(StatusCode::GONE, "Link expired", &html);
    }
    let (label, class) = match link.action.as_str() {
        "approve" => ("Approve and post now", "go"),
        _ => ("Reject: do not post", "stop"),
    };
    html.push_str(&format!("<form method=post><button class={class} type=submit>{label}</button></form>"));
    page(StatusCode::OK, "Held alert", &html)
}

async fn act(
    State(s): State<AdminState>,
    Path(token): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    if !well_formed(&token) {
        return page(StatusCode::NOT_FOUND, "Link not valid", "<p>This link is not valid.</p>");
    }
    // Behind the agency's reverse proxy the client is in X-Forwarded-For.
    let from = headers
        .get("x-forwarded-for")
        .and_then(|v| v.to_str().ok())
        .map(|v| v.chars().filter(|c| !c.is_control()).take(100).collect::<String>())
        .unwrap_or_else(|| peer.ip().to_string());
    let op = AdminOp::UseLink { token_sha256: sha256_hex(token.as_bytes()), actor: format!("staff from {from}") };
    match s.store.admin(op).await {
        Ok(done) => {
            tracing::info!(alert = ?done.event_id, %from, message = %done.message, "decided through a staff link");
            page(StatusCode::OK, "Done", &format!("<p class=done>{}.</p>", esc(&done.message)))
        }
        Err(StoreError::NotFound(m)) => page(StatusCode::NOT_FOUND, "Link not valid", &format!("<p>{}</p>", esc(&m))),
        Err(StoreError::Conflict(m)) => page(StatusCode::GONE, "Already decided", &format!("<p>{}</p>", esc(&m))),
        Err(e) => unavailable(&e),
    }
}

fn unavailable(e: &StoreError) -> Response {
    tracing::warn!(error = %e, "staff link: store unavailable");
    page(StatusCode::SERVICE_UNAVAILABLE, "Try again", "<p>The store is not available right now; try again.</p>")
}

/// HTML-escape text for an element or a quoted attribute.
fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

fn page(status: StatusCode, title: &str, body: &str) -> Response {
    let html = format!(
        "<!doctype html><html lang=en><head><meta charset=utf-8>\
         <meta name=viewport content=\"width=device-width,initial-scale=1\"><title>bullhorn: {title}</title>\
         <style>body{{font:16px/1.4 system-ui,sans-serif;max-width:40em;margin:1em auto;padding:0 1em}}\
         pre{{white-space:pre-wrap;background:#f4f4f4;padding:.5em}}.meta{{color:#555}}\
         button{{font-size:1.2em;padding:.8em 1.2em;width:100%;border:0;color:#fff}}.go{{background:#0a6b2d}}\
         .stop{{background:#a31515}}.done{{font-weight:bold}}</style></head><body>{body}</body></html>",
        title = esc(title)
    );
    let mut r = (status, html).into_response();
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    h.insert("x-robots-tag", HeaderValue::from_static("noindex"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; form-action 'self'"),
    );
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_escape_what_events_say() {
        assert_eq!(
            esc("<script>alert('x')</script> & \"q\""),
            "&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt; &amp; &quot;q&quot;"
        );
    }

    #[test]
    fn only_issued_token_shapes_are_looked_up() {
        let t = crate::digest::random_token().expect("random");
        assert!(well_formed(&t), "{t}");
        assert!(!well_formed("../../etc/passwd"));
        assert!(!well_formed(""));
    }
}
