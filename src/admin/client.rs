//! The CLI's side of the admin API: `bullhorn status`, `approve`, `reject`, `pause`,
//! `resume`, `retry`, `retract`, `correct` are requests to the running daemon, so every
//! change goes through its store writer and lands in its audit log.

use std::fmt::Write as _;

use reqwest::Method;
use secrecy::{ExposeSecret, SecretString};
use serde_json::{Value, json};

use crate::config::Config;

/// A client for one daemon's admin API.
pub struct ApiClient {
    base: String,
    token: SecretString,
    http: reqwest::Client,
    actor: String,
}

impl std::fmt::Debug for ApiClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ApiClient").field("base", &self.base).field("actor", &self.actor).finish_non_exhaustive()
    }
}

impl ApiClient {
    /// The daemon `config` describes: its admin address (or `url`), its token (the
    /// configured one, else the one it generated into the state dir).
    pub fn from_config(config: &Config, url: Option<&str>) -> Result<ApiClient, String> {
        if !config.admin.enabled && url.is_none() {
            return Err("the admin API is disabled in this config ([admin] enabled = false)".to_owned());
        }
        let base = match url {
            Some(u) => u.trim_end_matches('/').to_owned(),
            None => {
                let l = config.admin.listen;
                let ip = if l.ip().is_unspecified() {
                    if l.is_ipv4() {
                        std::net::IpAddr::from([127, 0, 0, 1])
                    } else {
                        std::net::Ipv6Addr::LOCALHOST.into()
                    }
                } else {
                    l.ip()
                };
                format!("http://{}", std::net::SocketAddr::new(ip, l.port()))
            }
        };
        let token = match &config.admin.token {
            Some(t) => t.clone(),
            None => {
                let path = config.store.state_dir.join(super::TOKEN_FILE);
                crate::config::read_secret(&path).map_err(|e| {
                    format!("{e}\n(the daemon writes its admin token there when it starts with no [admin] token_file; is it running, and may you read its state dir?)")
                })?
            }
        };
        let http = crate::channel::http::client()?;
        Ok(ApiClient { base, token, http, actor: whoami() })
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}/api{path}", self.base);
        let mut req = self
            .http
            .request(method, &url)
            .bearer_auth(self.token.expose_secret())
            .header("x-bullhorn-actor", &self.actor);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp =
            req.timeout(std::time::Duration::from_secs(30)).send().await.map_err(|e| {
                format!("cannot reach the daemon's admin API at {}: {e} (is bullhorn running?)", self.base)
            })?;
        let status = resp.status();
        let value: Value = resp.json().await.unwrap_or(Value::Null);
        if status.is_success() {
            Ok(value)
        } else {
            let why = value["error"].as_str().map_or_else(|| status.to_string(), str::to_owned);
            Err(why)
        }
    }

    pub async fn get(&self, path: &str) -> Result<Value, String> {
        self.call(Method::GET, path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> Result<Value, String> {
        self.call(Method::POST, path, Some(body)).await
    }
}

/// `user@host (cli)`, for the audit log.
fn whoami() -> String {
    let user = ["SUDO_USER", "USER", "LOGNAME"]
        .iter()
        .find_map(|v| std::env::var(v).ok().filter(|u| !u.is_empty()))
        .unwrap_or_else(|| "unknown".to_owned());
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").map(|h| h.trim().to_owned()).unwrap_or_default();
    if host.is_empty() { format!("{user} (cli)") } else { format!("{user}@{host} (cli)") }
}

/// An alert's id as a URL path segment.
pub fn alert_path(alert: &str, action: &str) -> String {
    let id: String = url::form_urlencoded::byte_serialize(alert.as_bytes()).collect();
    if action.is_empty() { format!("/alerts/{id}") } else { format!("/alerts/{id}/{action}") }
}

/// What `bullhorn status` prints.
pub fn format_status(status: &Value, alerts: &Value) -> String {
    let mut out = String::new();
    let r = &status["readiness"];
    let _ = writeln!(
        out,
        "mode: {}   ready: {} (broker {}, store {})",
        status["mode"].as_str().unwrap_or("?"),
        yes(&r["ready"]),
        if r["broker_connected"].as_bool() == Some(true) { "connected" } else { "NOT connected" },
        if r["store_writable"].as_bool() == Some(true) { "writable" } else { "NOT writable" },
    );
    match status["paused"].as_array() {
        Some(p) if !p.is_empty() => {
            for row in p {
                let _ = writeln!(
                    out,
                    "PAUSED {} by {} at {}{}",
                    row["scope"].as_str().unwrap_or("?"),
                    row["actor"].as_str().unwrap_or("?"),
                    row["at"].as_str().unwrap_or("?"),
                    row["reason"].as_str().map(|r| format!(": {r}")).unwrap_or_default()
                );
            }
        }
        _ => out.push_str("not paused\n"),
    }
    let _ = writeln!(out, "held for approval: {}", status["held_alerts"]);
    for e in status["credentials_expiring"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "WARNING: channel {}: {}",
            e["channel"].as_str().unwrap_or("?"),
            e["note"].as_str().unwrap_or("?")
        );
    }
    if let Some(ch) = status["channels"].as_object().filter(|c| !c.is_empty()) {
        out.push_str("open deliveries:\n");
        for (name, counts) in ch {
            let parts: Vec<String> =
                counts.as_object().map(|m| m.iter().map(|(k, v)| format!("{k} {v}")).collect()).unwrap_or_default();
            let _ = writeln!(out, "  {name}: {}", parts.join(", "));
        }
    }
    if let Some(list) = alerts["alerts"].as_array() {
        out.push_str("\nrecent alerts:\n");
        for a in list {
            out.push_str(&format_alert_line(a));
        }
    }
    out
}

fn yes(v: &Value) -> &'static str {
    if v.as_bool() == Some(true) { "yes" } else { "NO" }
}

fn format_alert_line(a: &Value) -> String {
    let mut out = format!(
        "  #{} {} {} [{}] {}\n",
        a["id"],
        a["received_at"].as_str().unwrap_or(""),
        a["event_type"].as_str().unwrap_or(""),
        a["disposition"].as_str().unwrap_or(""),
        a["headline"].as_str().unwrap_or("")
    );
    for d in a["deliveries"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "      {:<14} {:<8} {:<10} {}",
            d["channel"].as_str().unwrap_or(""),
            d["kind"].as_str().unwrap_or(""),
            d["state"].as_str().unwrap_or(""),
            d["post_url"].as_str().or(d["reason"].as_str()).unwrap_or("")
        );
    }
    out
}

/// What `bullhorn status ALERT` prints.
pub fn format_alert(a: &Value) -> String {
    let mut out = format_alert_line(a);
    let text = |k: &str| a[k].as_str().unwrap_or("").to_owned();
    let _ = writeln!(
        out,
        "  incident {} · {} · {} · {}",
        text("incident"),
        text("format"),
        text("status"),
        text("priority")
    );
    for d in a["deliveries"].as_array().into_iter().flatten() {
        let _ = writeln!(
            out,
            "\n── {} ({}, {}, {} attempts)\n{}",
            d["channel"].as_str().unwrap_or(""),
            d["kind"].as_str().unwrap_or(""),
            d["state"].as_str().unwrap_or(""),
            d["attempts"],
            d["text"].as_str().unwrap_or("")
        );
    }
    if let Some(audit) = a["audit"].as_array().filter(|a| !a.is_empty()) {
        out.push_str("\naudit:\n");
        for r in audit {
            let _ = writeln!(
                out,
                "  {} {} by {}{}",
                r["at"].as_str().unwrap_or(""),
                r["action"].as_str().unwrap_or(""),
                r["actor"].as_str().unwrap_or(""),
                r["detail"].as_str().map(|d| format!(": {d}")).unwrap_or_default()
            );
        }
    }
    out
}

/// The body of a request with these fields (those given).
pub fn body(fields: &[(&str, Option<&str>)]) -> Value {
    let mut m = serde_json::Map::new();
    for (k, v) in fields {
        if let Some(v) = v {
            m.insert((*k).to_owned(), json!(v));
        }
    }
    Value::Object(m)
}
