//! The admin API of a running daemon, as the CLI and an operator's scripts use it.

use std::path::Path;

use serde_json::Value;

/// The admin API of a running daemon, with the token it generated into its state dir.
pub struct Api {
    pub base: String,
    token: String,
    http: reqwest::Client,
}

impl Api {
    pub fn new(app: &bullhorn::app::Running, dir: &Path) -> Api {
        let token = std::fs::read_to_string(dir.join("admin-token")).expect("generated admin token");
        let addr = app.admin_addr().expect("admin address");
        Api { base: format!("http://{addr}"), token, http: bullhorn::channel::http::client().expect("client") }
    }

    pub async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let r = req.send().await.expect("admin request");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        self.call(reqwest::Method::GET, path, Some(&self.token), None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        self.call(reqwest::Method::POST, path, Some(&self.token), Some(body)).await
    }
}
