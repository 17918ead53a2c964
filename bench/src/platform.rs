//! A fake platform: answers every POST with 200 (at once, or after `delay`, as a remote
//! platform would) and records when each arrived, with the event's id, type and the
//! publish time the benchmark put in its fields. It also takes Twilio's message requests.

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::routing::post;

#[derive(Debug, Clone)]
pub struct Hit {
    /// Arrival, Unix nanoseconds.
    pub at_ns: u128,
    pub event_type: String,
    pub published_ns: Option<u128>,
}

#[derive(Clone, Default)]
pub struct Platform {
    pub hits: Arc<Mutex<Vec<Hit>>>,
    /// How long each answer takes.
    pub delay: Duration,
}

pub fn now_ns() -> u128 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0)
}

impl Platform {
    /// Serve on a free port; returns the URL.
    pub async fn start(&self) -> String {
        let app = Router::new()
            .route("/hook", post(hit))
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(sms))
            .with_state(self.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        format!("http://{addr}/hook")
    }

    pub fn hits(&self) -> Vec<Hit> {
        self.hits.lock().expect("lock").clone()
    }
}

async fn hit(State(p): State<Platform>, body: Bytes) -> &'static str {
    let at_ns = now_ns();
    tokio::time::sleep(p.delay).await;
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
    let event = &v["data"]["event"];
    let published_ns = event["fields"]["published_ns"].as_str().and_then(|s| s.parse().ok());
    let event_type = event["type"].as_str().unwrap_or_default().to_owned();
    p.hits.lock().expect("lock").push(Hit { at_ns, event_type, published_ns });
    "ok"
}

/// Twilio's answer to a message request: 201 with the message's sid.
async fn sms(State(p): State<Platform>) -> (axum::http::StatusCode, String) {
    let at_ns = now_ns();
    tokio::time::sleep(p.delay).await;
    let n = {
        let mut hits = p.hits.lock().expect("lock");
        hits.push(Hit { at_ns, event_type: "sms".to_owned(), published_ns: None });
        hits.len()
    };
    (axum::http::StatusCode::CREATED, format!("{{\"sid\":\"SM{n:032}\",\"status\":\"queued\"}}"))
}
