//! HTTP helpers shared by channels: parsing `Retry-After` and classifying transport errors.
//! Pure functions, tested here; each platform's own classification lives in its file.

use std::time::Duration;

use jiff::Timestamp;

use super::Outcome;

/// The HTTP client every channel shares (one connection pool). TLS is rustls with the
/// ring provider, installed as the process default on first use.
pub fn client() -> Result<reqwest::Client, String> {
    // Fails only when a provider is already installed, which is what we want.
    let _ = rustls::crypto::ring::default_provider().install_default();
    reqwest::Client::builder()
        .user_agent(concat!("bullhorn/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| format!("cannot build the HTTP client: {e}"))
}

/// Parse a `Retry-After` value: delta-seconds (`"120"`, Discord's `"1.5"`) or an
/// HTTP-date (`"Wed, 21 Oct 2015 07:28:00 GMT"`), relative to `now`. A date in the past
/// means zero. Unparseable values give `None`.
pub fn parse_retry_after(value: &str, now: Timestamp) -> Option<Duration> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs.min(1e9)));
    }
    let at = jiff::fmt::rfc2822::parse(v).ok()?.timestamp();
    let d = at.duration_since(now);
    Some(if d.is_positive() { d.unsigned_abs() } else { Duration::ZERO })
}

/// The `Retry-After` header of a response, if any.
pub fn retry_after_header(headers: &reqwest::header::HeaderMap, now: Timestamp) -> Option<Duration> {
    headers.get(reqwest::header::RETRY_AFTER)?.to_str().ok().and_then(|v| parse_retry_after(v, now))
}

/// A request that failed without a response. A connection that was never made cannot
/// have posted; anything later (a timeout while waiting, a reset mid-response) might have.
pub fn transport_error(e: &reqwest::Error) -> Outcome {
    // `error_chain` leaves out reqwest's own Display, which names the URL: webhook URLs
    // can carry secrets.
    if e.is_connect() {
        Outcome::Unavailable(format!("connection failed: {}", error_chain(e)))
    } else if e.is_timeout() {
        Outcome::Unknown(format!("no response in time: {}", error_chain(e)))
    } else {
        Outcome::Unknown(format!("request failed: {}", error_chain(e)))
    }
}

/// An error and its sources on one line, without the URL (which may carry a secret).
pub fn error_text(e: &reqwest::Error) -> String {
    error_chain(e)
}

/// An error and its sources on one line, without the URL reqwest puts in its Display.
fn error_chain(e: &reqwest::Error) -> String {
    let mut parts = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        parts.push(s.to_string());
        source = s.source();
    }
    if parts.is_empty() {
        if e.is_timeout() { "timed out".to_owned() } else { "error".to_owned() }
    } else {
        parts.join(": ")
    }
}

/// A response read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: reqwest::header::HeaderMap,
    pub body: String,
}

impl Reply {
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_str(&self.body).ok()
    }

    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// `HTTP 400: <start of the body>`, for records.
    pub fn detail(&self) -> String {
        format!("HTTP {}: {}", self.status, snippet(&self.body, 300))
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Send a request and read its whole response. A request that failed is the outcome
/// [`transport_error`] gives it; a body that could not be read after the status arrived
/// is an unknown outcome (the platform had the request).
pub async fn exchange(req: reqwest::RequestBuilder) -> Result<Reply, Outcome> {
    let response = req.send().await.map_err(|e| transport_error(&e))?;
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    match response.text().await {
        Ok(body) => Ok(Reply { status, headers, body }),
        Err(e) => Err(Outcome::Unknown(format!("HTTP {status}, then the response broke off: {}", error_chain(&e)))),
    }
}

/// A JSON string or number field as a string (ids come as either).
pub fn id_field(v: &serde_json::Value, key: &str) -> Option<String> {
    match v.get(key)? {
        serde_json::Value::String(s) => Some(s.clone()),
        serde_json::Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// The first `max` characters of a response body, for records and logs.
pub fn snippet(body: &str, max: usize) -> String {
    let mut s: String = body.chars().take(max).collect();
    if body.chars().nth(max).is_some() {
        s.push('…');
    }
    s.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> Timestamp {
        "2015-10-21T07:27:00Z".parse().expect("ts")
    }

    #[test]
    fn seconds_and_fractions() {
        assert_eq!(parse_retry_after("120", now()), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 1.5 ", now()), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("0", now()), Some(Duration::ZERO));
        assert_eq!(parse_retry_after("-3", now()), None);
        assert_eq!(parse_retry_after("soon", now()), None);
    }

    #[test]
    fn http_dates_relative_to_now() {
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now()), Some(Duration::from_secs(60)));
        assert_eq!(parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now()), Some(Duration::ZERO));
    }

    #[test]
    fn snippets_are_short_and_single_line() {
        assert_eq!(snippet("a\n b", 10), "a b");
        assert_eq!(snippet("abcdef", 3), "abc…");
    }
}
