//! Fakes and helpers shared by the integration tests. Everything binds to 127.0.0.1 on a
//! free port, bounds its waits, and cleans up the processes it starts.

#![allow(dead_code, reason = "each test uses a different subset")]

pub mod admin;
pub mod daemon;
pub mod mosquitto;
pub mod pds;
pub mod platforms;
pub mod publisher;
pub mod s3;
pub mod session_broker;
pub mod smtp;
pub mod webhook;

use std::net::TcpListener;
use std::path::Path;
use std::time::Duration;

/// A port nothing listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).expect("free port")
}

/// Poll `f` until it returns `Some`, at most `timeout`.
pub async fn eventually<T>(timeout: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A native JSON event.
pub fn event(id: &str, revision: u64, event_type: &str, headline: &str) -> String {
    serde_json::json!({
        "id": id, "revision": revision, "type": event_type, "status": "actual", "headline": headline
    })
    .to_string()
}

/// Count rows of `sql` (a `SELECT COUNT(*) ...`) in the store at `db`.
pub fn count(db: &Path, sql: &str) -> i64 {
    let conn = rusqlite::Connection::open(db).expect("open store");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    conn.query_row(sql, [], |r| r.get(0)).expect("count")
}

/// The texts of `channel`'s posts in the order their requests began (the order they
/// were chosen in; with several in flight at once they may arrive in another).
pub fn begun_in_order(db: &Path, channel: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(db).expect("open store");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    let mut stmt = conn
        .prepare(
            "SELECT d.text FROM attempts a JOIN deliveries d ON d.id = a.delivery_id
             WHERE a.channel = ?1 AND a.outcome = 'sent' ORDER BY a.id",
        )
        .expect("prepare");
    stmt.query_map([channel], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
}

/// Write a config file for tests; `body` is appended to the common part.
pub fn write_config(dir: &Path, mqtt: &str, body: &str) -> std::path::PathBuf {
    std::fs::create_dir_all(dir.join("templates")).expect("templates dir");
    std::fs::write(dir.join("templates/default.txt"), "{{ headline }}").expect("template");
    // Every public image needs alt text (`bullhorn check` insists).
    std::fs::write(dir.join("templates/alt.txt"), "Image with the alert: {{ headline }}").expect("template");
    let text = format!(
        r#"
[log]
level = "info"

[mqtt]
{mqtt}
reconnect_min = "50ms"
reconnect_max = "500ms"
[[mqtt.subscribe]]
topic = "cad/+/events"
format = "json"

[store]
path = "{db}"

[admin]
listen = "127.0.0.1:0"

[delivery]
retry_base = "50ms"
retry_max = "400ms"
shutdown_grace = "2s"

[events.missing_child]
priority = "critical"
[events.road_closure]
priority = "normal"
[events.wanted]
priority = "high"
{body}
"#,
        db = dir.join("bullhorn.db").display(),
    );
    let path = dir.join("bullhorn.toml");
    std::fs::write(&path, text).expect("write config");
    path
}

/// Load `path` and start the daemon in this process.
pub async fn start_app(path: &Path) -> bullhorn::app::Running {
    // Daemon logs go to the test's captured output, shown when a test fails.
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,bullhorn=debug,rumqttd=warn"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).with_test_writer().try_init();
    let config = bullhorn::config::load(path).unwrap_or_else(|e| panic!("{e}"));
    let app = bullhorn::app::start(config).await.unwrap_or_else(|e| panic!("start: {e:#}"));
    // A fresh session has no queue at the broker until it has subscribed.
    eventually(Duration::from_secs(10), || app.health().readiness().ready.then_some(()))
        .await
        .expect("daemon ready (connected and subscribed)");
    app
}

/// Publish `payload` with QoS 1 through the broker `path`'s config points at, the way
/// `bullhorn send` does.
pub async fn send_raw(path: &Path, topic: &str, payload: impl Into<Vec<u8>>) {
    let config = bullhorn::config::load(path).unwrap_or_else(|e| panic!("{e}"));
    bullhorn::ingest::mqtt::publish_once(&config.mqtt, None, topic, payload.into(), Duration::from_secs(10))
        .await
        .unwrap_or_else(|e| panic!("publish: {e}"));
}

/// `[broker]` section for an embedded broker on a free port.
pub fn embedded_broker() -> String {
    format!("[broker]\nenabled = true\nlisten = \"127.0.0.1:{}\"\n", free_port())
}

/// GET `path` on the admin server; returns status and body.
pub async fn admin_get(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let client = bullhorn::channel::http::client().expect("client");
    let r = client.get(format!("http://{addr}{path}")).send().await.expect("admin request");
    (r.status().as_u16(), r.text().await.unwrap_or_default())
}
