//! How deliveries behave against a platform's real answers: throttling with Retry-After,
//! server errors, permanent refusals, and the quota with its critical reserve.

use std::time::Duration;

use crate::support::webhook::{FakeWebhook, Reply};
use crate::support::*;

fn hook_config(dir: &std::path::Path, url: &str, extra: &str) -> std::path::PathBuf {
    write_config(
        dir,
        "",
        &format!("{}\n[channels.hook]\nkind = \"webhook\"\nurl = \"{url}\"\n{extra}", embedded_broker()),
    )
}

fn attempts(dir: &std::path::Path) -> Vec<(Option<i64>, String)> {
    let conn = rusqlite::Connection::open(dir.join("bullhorn.db")).expect("open");
    let mut stmt = conn.prepare("SELECT http_status, outcome FROM attempts ORDER BY id").expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").collect::<Result<_, _>>().expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_429_with_retry_after_pauses_then_succeeds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![Reply::retry_after(429, "1")]).await;
    let config = hook_config(dir.path(), &hook.url, "");
    let app = start_app(&config).await;
    send_raw(&config, "cad/a/events", event("T-1", 1, "road_closure", "Closed")).await;
    let reqs = hook.wait_for(2, Duration::from_secs(10)).await;
    let gap = reqs[1].at - reqs[0].at;
    assert!(gap >= Duration::from_millis(950), "waited only {gap:?} after Retry-After: 1");
    assert_eq!(reqs[0].id(), reqs[1].id(), "the same webhook-id on the retry");
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop().await;
    assert_eq!(attempts(dir.path()), [(Some(429), "throttled".to_owned()), (Some(200), "sent".to_owned())]);
    assert_eq!(hook.requests().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_errors_are_retried_with_backoff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![Reply::status(500, "oops"), Reply::status(502, "bad gateway")]).await;
    let config = hook_config(dir.path(), &hook.url, "");
    let app = start_app(&config).await;
    send_raw(&config, "cad/a/events", event("T-2", 1, "road_closure", "Closed")).await;
    let reqs = hook.wait_for(3, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop().await;
    assert_eq!(hook.requests().len(), 3, "no retry after success");
    assert!(reqs[1].at > reqs[0].at && reqs[2].at > reqs[1].at);
    assert_eq!(
        attempts(dir.path()),
        [(Some(500), "retry".to_owned()), (Some(502), "unavailable".to_owned()), (Some(200), "sent".to_owned())]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_400_is_dead_lettered_and_the_daemon_goes_on() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![Reply::status(400, r#"{"error":"unknown field: priority"}"#)]).await;
    let config = hook_config(dir.path(), &hook.url, "");
    let app = start_app(&config).await;
    send_raw(&config, "cad/a/events", event("T-3", 1, "road_closure", "Closed")).await;
    hook.wait_for(1, Duration::from_secs(10)).await;
    send_raw(&config, "cad/a/events", event("T-4", 1, "road_closure", "Open again")).await;
    let reqs = hook.wait_for(2, Duration::from_secs(10)).await;
    assert_eq!(reqs[1].text(), "Open again");
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop().await;
    assert_eq!(hook.requests().len(), 2, "the 400 was not retried");
    let db = dir.path().join("bullhorn.db");
    let conn = rusqlite::Connection::open(&db).expect("open");
    let (state, reason): (String, String) = conn
        .query_row("SELECT state, reason FROM deliveries WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("row");
    assert_eq!(state, "dead");
    assert!(reason.contains("HTTP 400") && reason.contains("unknown field: priority"), "{reason}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn critical_uses_the_reserve_ahead_of_a_backlog_and_the_window_survives_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    // 5 per hour, one of them reserved: routine posts get 4.
    let config = hook_config(dir.path(), &hook.url, "rate = \"5/1h\"\nreserve = 1\n");
    let app = start_app(&config).await;
    // High priority: not paced, so they use the whole non-reserved budget at once.
    for i in 0..10 {
        send_raw(&config, "cad/a/events", event(&format!("R-{i}"), 1, "wanted", &format!("routine {i}"))).await;
    }
    hook.wait_for(4, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(hook.requests().len(), 4, "non-critical posts stop at the reserve");

    send_raw(&config, "cad/a/events", event("AMBER-1", 1, "missing_child", "AMBER Alert")).await;
    let reqs = hook.wait_for(5, Duration::from_secs(5)).await;
    assert_eq!(reqs[4].text(), "AMBER Alert", "the critical alert went next, from the reserve");
    let mut sent: Vec<String> = reqs[..4].iter().map(|r| r.text()).collect();
    sent.sort();
    assert_eq!(sent, ["routine 0", "routine 1", "routine 2", "routine 3"], "the oldest four");
    app.stop().await;
    let begun = begun_in_order(&dir.path().join("bullhorn.db"), "hook");
    assert_eq!(begun, ["routine 0", "routine 1", "routine 2", "routine 3", "AMBER Alert"], "begun oldest first");

    // Restart on the same store: the 5 requests still fill the window, so even a critical
    // alert waits.
    let text = std::fs::read_to_string(&config).expect("read");
    let text = text.replace(
        &text[text.find("[broker]").expect("broker")..text.find("[channels.hook]").expect("hook")],
        &embedded_broker(),
    );
    std::fs::write(&config, text).expect("write");
    let app = start_app(&config).await;
    send_raw(&config, "cad/a/events", event("AMBER-2", 1, "missing_child", "Second AMBER")).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let (_, metrics) = admin_get(app.admin_addr().expect("admin"), "/metrics").await;
    app.stop().await;
    assert_eq!(hook.requests().len(), 5, "the rebuilt window still counts the 5 sends");
    assert!(metrics.contains("bullhorn_queue_depth{channel=\"hook\"} 7"), "6 routine + 1 critical wait: {metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delivery_whose_event_expires_while_it_waits_is_dropped() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![Reply::retry_after(429, "3")]).await;
    let config = hook_config(dir.path(), &hook.url, "");
    let app = start_app(&config).await;
    let expires = (jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500)).to_string();
    let e = serde_json::json!({
        "id": "EXP-1", "type": "road_closure", "status": "actual", "headline": "Short-lived", "expires": expires
    });
    send_raw(&config, "cad/a/events", e.to_string()).await;
    hook.wait_for(1, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_secs(4)).await;
    app.stop().await;
    assert_eq!(hook.requests().len(), 1, "not sent again after it expired");
    let conn = rusqlite::Connection::open(dir.path().join("bullhorn.db")).expect("open");
    let (state, reason): (String, String) = conn
        .query_row("SELECT state, reason FROM deliveries WHERE id = 1", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("row");
    assert_eq!(state, "expired");
    assert!(reason.contains("expired at"), "{reason}");
}

/// A cancel arrives while the original's request is out. If the request fails, the
/// original is not retried and no "cancelled" notice goes out for a post nobody saw; if it
/// succeeds, the cancellation replies to it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_during_the_originals_request() {
    for (first, expect_requests) in [(500, 1), (200, 2)] {
        let dir = tempfile::tempdir().expect("tempdir");
        let slow = Reply::Delayed(Duration::from_millis(1500), Box::new(Reply::status(first, "")));
        let hook = FakeWebhook::start(vec![slow]).await;
        let config = hook_config(dir.path(), &hook.url, "");
        let app = start_app(&config).await;
        send_raw(&config, "cad/a/events", event("C-1", 1, "missing_child", "AMBER C-1")).await;
        hook.wait_for(1, Duration::from_secs(10)).await;
        let cancel = serde_json::json!({
            "id": "C-1", "revision": 2, "type": "missing_child", "msg_type": "cancel", "status": "actual",
            "headline": "Found safe"
        });
        send_raw(&config, "cad/a/events", cancel.to_string()).await;
        tokio::time::sleep(Duration::from_secs(3)).await;
        app.stop().await;
        let reqs = hook.requests();
        assert_eq!(reqs.len(), expect_requests, "original answered {first}");
        let db = dir.path().join("bullhorn.db");
        if first == 500 {
            assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'suppressed'"), 2, "post and cancel");
        } else {
            let body = reqs[1].json();
            assert_eq!(body["data"]["kind"], "cancel");
            assert_eq!(body["data"]["in_reply_to"]["id"], reqs[0].id().as_str());
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routine_posts_are_paced_but_critical_is_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    // 20 per 4 s, 4 reserved: routine posts go one every 250 ms.
    let config = hook_config(dir.path(), &hook.url, "rate = \"20/4s\"\nreserve = 4\n");
    let app = start_app(&config).await;
    for i in 0..5 {
        send_raw(&config, "cad/a/events", event(&format!("P-{i}"), 1, "road_closure", &format!("routine {i}"))).await;
    }
    send_raw(&config, "cad/a/events", event("P-AMBER", 1, "missing_child", "AMBER")).await;
    let reqs = hook.wait_for(6, Duration::from_secs(10)).await;
    app.stop().await;
    let routine: Vec<_> = reqs.iter().filter(|r| r.text().starts_with("routine")).collect();
    for pair in routine.windows(2) {
        let gap = pair[1].at - pair[0].at;
        assert!(gap >= Duration::from_millis(230), "routine posts {gap:?} apart");
    }
    let amber = reqs.iter().position(|r| r.text() == "AMBER").expect("amber");
    assert!(amber <= 2, "the critical alert does not wait behind paced routine posts: position {amber}");
}
