//! A fake webhook receiver over real HTTP on loopback. It answers from a script of
//! responses (a 429 with `Retry-After`, 500s, a 400 with an error body, a hang), then
//! 200s, and records every request with its arrival time.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use tokio::time::Instant;

#[derive(Debug, Clone)]
pub enum Reply {
    Status {
        status: u16,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
    /// Accept the request and never answer (until the server is dropped).
    Hang,
    /// Answer with the inner reply after a while.
    Delayed(Duration, Box<Reply>),
}

impl Reply {
    pub fn ok() -> Reply {
        Reply::Status { status: 200, headers: Vec::new(), body: String::new() }
    }

    pub fn status(status: u16, body: &str) -> Reply {
        Reply::Status { status, headers: Vec::new(), body: body.to_owned() }
    }

    pub fn retry_after(status: u16, secs: &str) -> Reply {
        Reply::Status {
            status,
            headers: vec![("retry-after", secs.to_owned())],
            body: r#"{"error":"slow down"}"#.to_owned(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Received {
    pub at: Instant,
    pub headers: HeaderMap,
    pub body: Bytes,
    /// The status it was answered with; 0: never answered (a hang).
    pub status: u16,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("webhook body is JSON")
    }

    pub fn id(&self) -> String {
        self.headers.get("webhook-id").and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned()
    }

    pub fn text(&self) -> String {
        self.json()["data"]["text"].as_str().unwrap_or_default().to_owned()
    }
}

#[derive(Default)]
struct Inner {
    script: VecDeque<Reply>,
    requests: Vec<Received>,
}

pub struct FakeWebhook {
    pub url: String,
    inner: Arc<Mutex<Inner>>,
    task: tokio::task::JoinHandle<()>,
}

impl FakeWebhook {
    pub async fn start(script: Vec<Reply>) -> FakeWebhook {
        Self::start_on(0, script).await
    }

    /// Start on a given port (0 for any), e.g. to come back on the same URL.
    pub async fn start_on(port: u16, script: Vec<Reply>) -> FakeWebhook {
        let inner = Arc::new(Mutex::new(Inner { script: script.into(), requests: Vec::new() }));
        let app = Router::new().route("/hook", post(handle)).with_state(Arc::clone(&inner));
        // A fake on this port may just have been dropped; its socket closes shortly.
        let mut tries = 0;
        let listener = loop {
            match tokio::net::TcpListener::bind(("127.0.0.1", port)).await {
                Ok(l) => break l,
                Err(_) if tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => panic!("bind fake webhook on {port}: {e}"),
            }
        };
        let addr = listener.local_addr().expect("addr");
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        FakeWebhook { url: format!("http://{addr}/hook"), inner, task }
    }

    /// Answer the next requests with `replies` (after what is already scripted).
    pub fn script(&self, replies: impl IntoIterator<Item = Reply>) {
        self.inner.lock().expect("lock").script.extend(replies);
    }

    pub fn requests(&self) -> Vec<Received> {
        self.inner.lock().expect("lock").requests.clone()
    }

    /// Wait until at least `n` requests arrived; returns them all.
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<Received> {
        super::eventually(timeout, || {
            let r = self.requests();
            (r.len() >= n).then_some(r)
        })
        .await
        .unwrap_or_else(|| panic!("expected {n} webhook requests within {timeout:?}, got {}", self.requests().len()))
    }
}

impl Drop for FakeWebhook {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn handle(State(inner): State<Arc<Mutex<Inner>>>, headers: HeaderMap, body: Bytes) -> Response {
    let reply = {
        let mut i = inner.lock().expect("lock");
        let reply = i.script.pop_front().unwrap_or_else(Reply::ok);
        let mut final_reply = &reply;
        while let Reply::Delayed(_, r) = final_reply {
            final_reply = r;
        }
        let status = match final_reply {
            Reply::Status { status, .. } => *status,
            Reply::Hang | Reply::Delayed(..) => 0,
        };
        i.requests.push(Received { at: Instant::now(), headers, body, status });
        reply
    };
    let reply = match reply {
        Reply::Delayed(after, inner) => {
            tokio::time::sleep(after).await;
            *inner
        }
        other => other,
    };
    match reply {
        Reply::Status { status, headers, body } => {
            let mut r = (StatusCode::from_u16(status).expect("status"), body).into_response();
            for (k, v) in headers {
                r.headers_mut().insert(k, v.parse().expect("header value"));
            }
            r
        }
        Reply::Hang | Reply::Delayed(..) => {
            tokio::time::sleep(Duration::from_secs(3600)).await;
            StatusCode::GATEWAY_TIMEOUT.into_response()
        }
    }
}
