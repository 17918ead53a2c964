//! No loss and no duplicates through crashes, broker restarts and store failures, against
//! a real Mosquitto (persistence on) started by each test, with bullhorn as a separate
//! process so it can be killed with SIGKILL.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::publisher::Publisher;
use crate::support::webhook::{FakeWebhook, Reply};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

/// Config for a daemon process on Mosquitto with a webhook and a file channel; the admin
/// server on a known port.
fn process_config(dir: &Path, broker: &Mosquitto, protocol: &str, hook_url: &str, extra_store: &str) -> (PathBuf, u16) {
    let admin = free_port();
    let path = write_config(
        dir,
        &format!("url = \"{}\"\nprotocol = \"{protocol}\"\nclient_id = \"bullhorn-test\"", broker.url()),
        &format!(
            "[channels.hook]\nkind = \"webhook\"\nurl = \"{hook_url}\"\n[channels.log]\nkind = \"file\"\npath = \"{}\"\n",
            dir.join("posts.jsonl").display()
        ),
    );
    let text = std::fs::read_to_string(&path).expect("read");
    let text = text.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{admin}\""));
    let text = text.replace("[store]\n", &format!("[store]\n{extra_store}"));
    std::fs::write(&path, text).expect("write");
    (path, admin)
}

fn file_lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("posts.jsonl"))
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}

async fn wait_lines(dir: &Path, n: usize) -> Vec<serde_json::Value> {
    eventually(WAIT, || {
        let l = file_lines(dir);
        (l.len() >= n).then_some(l)
    })
    .await
    .unwrap_or_else(|| panic!("expected {n} lines in the file channel, got {}", file_lines(dir).len()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_between_receipt_and_delivery_then_restart_delivers_exactly_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    // The platform is down (connection refused) while the event arrives.
    let hook_port = free_port();
    let (config, admin) = process_config(dir.path(), &broker, "v5", &format!("http://127.0.0.1:{hook_port}/hook"), "");
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, true).await;

    Publisher::new(broker.port, "pub-1")
        .publish("cad/a/events", event("K-1", 1, "missing_child", "AMBER K-1"), WAIT)
        .await;
    let db = dir.path().join("bullhorn.db");
    eventually(WAIT, || (count(&db, "SELECT COUNT(*) FROM attempts WHERE channel = 'hook'") >= 1).then_some(()))
        .await
        .expect("an attempt failed against the down platform");
    daemon.kill9();

    let hook = FakeWebhook::start_on(hook_port, vec![]).await;
    daemon.restart();
    let reqs = hook.wait_for(1, WAIT).await;
    assert_eq!(reqs[0].text(), "AMBER K-1");
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(hook.requests().len(), 1, "delivered once");
    assert_eq!(file_lines(dir.path()).len(), 1, "one line in the file channel");
    assert!(daemon.terminate(), "clean shutdown on SIGTERM:\n{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_during_a_request_is_resolved_without_a_second_post() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let first = FakeWebhook::start(vec![Reply::Hang]).await;
    let port: u16 =
        first.url.split(':').nth(2).and_then(|s| s.split('/').next()).and_then(|p| p.parse().ok()).expect("port");
    let (config, admin) = process_config(dir.path(), &broker, "v5", &first.url, "");
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, true).await;

    Publisher::new(broker.port, "pub-2")
        .publish("cad/a/events", event("K-2", 1, "missing_child", "AMBER K-2"), WAIT)
        .await;
    let hung = first.wait_for(1, WAIT).await.remove(0);
    daemon.kill9(); // the request's outcome is now unknown
    drop(first);

    let second = FakeWebhook::start_on(port, vec![]).await;
    daemon.restart();
    let again = second.wait_for(1, WAIT).await.remove(0);
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(second.requests().len(), 1);
    assert_eq!(again.id(), hung.id(), "resent with the same webhook-id, so the receiver sees one delivery");
    assert_eq!(file_lines(dir.path()).len(), 1, "the file channel found its line and did not write it again");
    let db = dir.path().join("bullhorn.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attempts WHERE channel = 'hook' AND outcome = 'unknown'"), 1);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries WHERE channel = 'hook' AND state = 'sent'"), 1);
    daemon.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_restart_mid_stream_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let hook = FakeWebhook::start(vec![]).await;
    let (config, admin) = process_config(dir.path(), &broker, "v311", &hook.url, "");
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, true).await;

    let mut publisher = Publisher::new(broker.port, "pub-3");
    for i in 0..40 {
        if i == 20 {
            broker.restart();
        }
        publisher
            .publish("cad/a/events", event(&format!("B-{i}"), 1, "road_closure", &format!("event {i}")), WAIT)
            .await;
    }
    let got = eventually(WAIT, || (file_lines(dir.path()).len() >= 40).then_some(())).await;
    if got.is_none() {
        let db = dir.path().join("bullhorn.db");
        let seen: Vec<String> =
            file_lines(dir.path()).iter().map(|l| l["incident"].as_str().unwrap_or("").to_owned()).collect();
        let missing: Vec<String> = (0..40).map(|i| format!("json:B-{i}")).filter(|k| !seen.contains(k)).collect();
        panic!(
            "missing {missing:?}; events in store {}; daemon log:\n{}",
            count(&db, "SELECT COUNT(*) FROM events"),
            daemon.log()
        );
    }
    let lines = file_lines(dir.path());
    hook.wait_for(40, WAIT).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut incidents: Vec<String> =
        file_lines(dir.path()).iter().map(|l| l["incident"].as_str().unwrap_or("").to_owned()).collect();
    incidents.sort();
    incidents.dedup();
    assert_eq!((lines.len(), incidents.len()), (40, 40), "every event once");
    assert_eq!(hook.requests().len(), 40);
    assert!(
        daemon.log().contains("session_present=true"),
        "the broker kept the daemon's session across its restart:\n{}",
        daemon.log()
    );
    assert!(daemon.terminate(), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn broker_down_at_startup_is_retried_and_ready_follows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let hook = FakeWebhook::start(vec![]).await;
    let (config, admin) = process_config(dir.path(), &broker, "v5", &hook.url, "");
    broker.stop();
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, false).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daemon.is_running(), "a broker down at start-up is not fatal");
    broker.restart();
    daemon.wait_ready(admin, true).await;
    Publisher::new(broker.port, "pub-4")
        .publish("cad/a/events", event("D-1", 1, "road_closure", "after start"), WAIT)
        .await;
    assert_eq!(hook.wait_for(1, WAIT).await[0].text(), "after start");
    daemon.kill9();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unwritable_store_acks_nothing_and_the_broker_redelivers_after_recovery() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let hook = FakeWebhook::start(vec![]).await;
    let (config, admin) = process_config(dir.path(), &broker, "v5", &hook.url, "busy_timeout = \"200ms\"\n");
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, true).await;
    let db = dir.path().join("bullhorn.db");
    let mut publisher = Publisher::new(broker.port, "pub-5");

    // Phase 1: the store refuses writes, then comes back while the daemon runs.
    let lock = rusqlite::Connection::open(&db).expect("open");
    lock.execute_batch("BEGIN IMMEDIATE").expect("lock");
    for i in 0..5 {
        publisher
            .publish("cad/a/events", event(&format!("S-{i}"), 1, "road_closure", &format!("first {i}")), WAIT)
            .await;
    }
    daemon.wait_ready(admin, false).await;
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events"), 0);
    lock.execute_batch("ROLLBACK").expect("unlock");
    wait_lines(dir.path(), 5).await;
    daemon.wait_ready(admin, true).await;

    // Phase 2: the store refuses writes and the daemon dies before it recovers. If
    // anything had been acked, it would be lost now.
    lock.execute_batch("BEGIN IMMEDIATE").expect("lock");
    for i in 0..5 {
        publisher
            .publish("cad/a/events", event(&format!("T-{i}"), 1, "road_closure", &format!("second {i}")), WAIT)
            .await;
    }
    daemon.wait_ready(admin, false).await;
    daemon.kill9();
    lock.execute_batch("ROLLBACK").expect("unlock");
    daemon.restart();
    let lines = wait_lines(dir.path(), 10).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    assert_eq!(file_lines(dir.path()).len(), 10, "every message once: {lines:?}");
    assert_eq!(hook.requests().len(), 10);
    daemon.kill9();
}

/// A daemon with no broker to reach (it runs all the same), a staff file channel and the
/// admin server on a known port.
fn standalone(dir: &Path) -> (PathBuf, u16) {
    let admin = free_port();
    let path = write_config(
        dir,
        &format!("url = \"mqtt://127.0.0.1:{}\"", free_port()),
        &format!(
            "[channels.staff]\nkind = \"file\"\npath = \"{}\"\npublic = false\n[notify]\nchannels = [\"staff\"]\n",
            dir.join("staff.jsonl").display()
        ),
    );
    let text = std::fs::read_to_string(&path).expect("read");
    std::fs::write(&path, text.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{admin}\"")))
        .expect("write");
    (path, admin)
}

async fn test_message(dir: &Path, admin: u16, text: &str) {
    let token = std::fs::read_to_string(dir.join("admin-token")).expect("token");
    let http = bullhorn::channel::http::client().expect("client");
    let r = http
        .post(format!("http://127.0.0.1:{admin}/api/channels/staff/test"))
        .bearer_auth(token.trim())
        .json(&serde_json::json!({ "text": text }))
        .send()
        .await
        .expect("request");
    assert_eq!(r.status().as_u16(), 200);
    let staff = dir.join("staff.jsonl");
    eventually(WAIT, || std::fs::read_to_string(&staff).ok().filter(|s| s.contains(text))).await.expect("posted");
}

/// Wait until the daemon serves its admin API (it is up, signal handlers and all).
async fn admin_up(dir: &Path, admin: u16) {
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], admin));
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let http = bullhorn::channel::http::client().expect("client");
        let up = http.get(format!("http://{addr}/healthz")).send().await.is_ok_and(|r| r.status().is_success());
        if up && dir.join("admin-token").exists() {
            return;
        }
        assert!(tokio::time::Instant::now() < deadline, "admin server up");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_daemon_on_the_same_store_is_refused_and_names_the_first() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, admin) = standalone(dir.path());
    let mut first = Daemon::start(&config);
    admin_up(dir.path(), admin).await;
    // Another daemon on the same store (its admin port moved so that is not what stops it).
    let other = dir.path().join("other.toml");
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&other, text.replace(&format!("127.0.0.1:{admin}"), &format!("127.0.0.1:{}", free_port())))
        .expect("write");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bullhorn"))
        .arg("--config")
        .arg(&other)
        .arg("run")
        .output()
        .expect("second daemon");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    let pid = first.pid().expect("pid");
    assert!(err.contains(&format!("bullhorn process {pid}")) && err.contains("only one bullhorn"), "{err}");
    assert!(first.is_running(), "the first one goes on");
    assert!(first.terminate(), "{}", first.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_store_restored_from_a_backup_starts_paused_and_tells_staff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, admin) = standalone(dir.path());
    let mut daemon = Daemon::start(&config);
    admin_up(dir.path(), admin).await;
    test_message(dir.path(), admin, "before the backup").await;
    assert!(daemon.terminate(), "{}", daemon.log());
    // The nightly backup.
    let db = dir.path().join("bullhorn.db");
    let backup = dir.path().join("backup.db");
    std::fs::copy(&db, &backup).expect("backup");

    let mut daemon = Daemon::start(&config);
    admin_up(dir.path(), admin).await;
    test_message(dir.path(), admin, "after the backup").await;
    assert!(daemon.terminate(), "{}", daemon.log());

    // The disk is replaced and last night's backup put back.
    std::fs::copy(&backup, &db).expect("restore");
    for ext in ["bullhorn.db-wal", "bullhorn.db-shm"] {
        let _ = std::fs::remove_file(dir.path().join(ext));
    }
    let mut daemon = Daemon::start(&config);
    admin_up(dir.path(), admin).await;
    let staff = dir.path().join("staff.jsonl");
    let told = eventually(WAIT, || std::fs::read_to_string(&staff).ok().filter(|s| s.contains("STARTED PAUSED"))).await;
    assert!(told.is_some(), "staff are told: {}", daemon.log());
    assert_eq!(count(&db, "SELECT COUNT(*) FROM pauses WHERE scope = 'all'"), 1, "the kill switch is on");
    let log = daemon.log();
    assert!(
        log.contains("ERROR") && log.contains("restored from a backup") && log.contains("bullhorn resume"),
        "{log}"
    );
    assert!(daemon.terminate(), "{log}");
}
