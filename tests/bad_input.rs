//! Bad input of every kind is rejected with a reason and recorded; the daemon keeps
//! running and what comes next is delivered.

use std::time::Duration;

use crate::support::webhook::FakeWebhook;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_inputs_are_recorded_and_the_daemon_keeps_running() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    let config = write_config(
        dir.path(),
        "",
        &format!("{}\n[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\n", embedded_broker(), hook.url),
    );
    let app = start_app(&config).await;

    let oversize =
        format!(r#"{{"id":"big","type":"road_closure","status":"actual","headline":"{}"}}"#, "x".repeat(300 * 1024));
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("malformed", b"{\"id\": \"1\", \"type\": ".to_vec()),
        ("too_large", oversize.into_bytes()),
        ("invalid_utf8", b"{\"id\": \"\xc3\x28\"}".to_vec()),
        ("unknown_type", event("U-1", 1, "alien_invasion", "Aliens").into_bytes()),
        ("invalid", br#"{"id":"M-1","type":"road_closure","headline":"no status"}"#.to_vec()),
        (
            "invalid",
            br#"{"id":"M-2","type":"road_closure","status":"actual","headline":"x","web":"javascript:alert(1)"}"#
                .to_vec(),
        ),
    ];
    for (_, payload) in &cases {
        send_raw(&config, "cad/a/events", payload.clone()).await;
    }
    send_raw(&config, "cad/a/events", event("OK-1", 1, "road_closure", "Still working")).await;
    let reqs = hook.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(reqs[0].text(), "Still working");
    let (status, _) = admin_get(app.admin_addr().expect("admin"), "/readyz").await;
    assert_eq!(status, 200);
    let (_, metrics) = admin_get(app.admin_addr().expect("admin"), "/metrics").await;
    app.stop().await;

    let conn = rusqlite::Connection::open(dir.path().join("bullhorn.db")).expect("open");
    let rows: Vec<(String, String, i64)> = conn
        .prepare("SELECT kind, reason, payload_len FROM rejects ORDER BY id")
        .expect("prepare")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .expect("query")
        .collect::<Result<_, _>>()
        .expect("rows");
    let kinds: Vec<&str> = rows.iter().map(|r| r.0.as_str()).collect();
    let expected: Vec<&str> = cases.iter().map(|c| c.0).collect();
    assert_eq!(kinds, expected, "every bad input recorded, in arrival order");
    assert!(rows[1].1.contains("limit is 262144"), "{}", rows[1].1);
    assert!(rows[3].1.contains("alien_invasion"), "{}", rows[3].1);
    assert!(rows[4].1.contains("status"), "{}", rows[4].1);
    assert!(rows[5].1.contains("web"), "{}", rows[5].1);
    assert_eq!(hook.requests().len(), 1, "nothing rejected was posted");
    assert!(metrics.contains("bullhorn_events_rejected_total{reason=\"invalid\"} 2"), "{metrics}");
}
