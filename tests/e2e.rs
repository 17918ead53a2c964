//! An event published to a real broker arrives, signed, at a webhook over loopback, and
//! in the file channel.

use std::time::Duration;

use crate::support::webhook::FakeWebhook;
use crate::support::*;

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn event_reaches_a_signed_webhook_and_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    let posts = dir.path().join("posts.jsonl");
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "{}\n[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\nsecret = \"{SECRET}\"\n[channels.log]\nkind = \"file\"\npath = \"{}\"\n",
            embedded_broker(),
            hook.url,
            posts.display()
        ),
    );
    let app = start_app(&config).await;
    let payload = serde_json::json!({
        "id": "RCSO-1", "revision": 1, "type": "missing_child", "status": "actual",
        "headline": "AMBER Alert: Sofia, 6", "fields": { "child_name": "Sofia" }
    });
    send_raw(&config, "cad/county/events", payload.to_string()).await;

    let req = hook.wait_for(1, Duration::from_secs(10)).await.remove(0);
    // Verified with the Standard Webhooks reference library, as a receiver would.
    standardwebhooks::Webhook::new(SECRET).expect("secret").verify(&req.body, &req.headers).expect("valid signature");
    let body = req.json();
    assert_eq!(body["type"], "alert.missing_child.alert");
    assert_eq!(body["data"]["text"], "AMBER Alert: Sofia, 6");
    assert_eq!(body["data"]["priority"], "critical");
    assert_eq!(body["data"]["event"]["id"], "RCSO-1");
    assert_eq!(body["data"]["event"]["fields"]["child_name"], "Sofia");
    assert!(req.id().starts_with("bh_"));

    let line = eventually(Duration::from_secs(5), || std::fs::read_to_string(&posts).ok().filter(|s| !s.is_empty()))
        .await
        .expect("file channel line");
    let line: serde_json::Value = serde_json::from_str(line.trim()).expect("json line");
    assert_eq!(line["text"], "AMBER Alert: Sofia, 6");
    assert_eq!(line["priority"], "critical");

    let (status, body) = admin_get(app.admin_addr().expect("admin"), "/readyz").await;
    assert_eq!(status, 200, "{body}");
    let (_, metrics) = admin_get(app.admin_addr().expect("admin"), "/metrics").await;
    assert!(metrics.contains("bullhorn_deliveries_total{channel=\"hook\",outcome=\"sent\"} 1"), "{metrics}");
    assert!(metrics.contains("bullhorn_events_received_total{format=\"json\"} 1"), "{metrics}");
    app.stop().await;
    assert_eq!(count(&dir.path().join("bullhorn.db"), "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resent_message_posts_once_even_across_restarts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    let config = write_config(
        dir.path(),
        "",
        &format!("{}\n[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\n", embedded_broker(), hook.url),
    );
    let app = start_app(&config).await;
    let e = event("INC-9", 1, "road_closure", "Main St closed");
    send_raw(&config, "cad/a/events", e.clone()).await;
    send_raw(&config, "cad/a/events", e.clone()).await;
    hook.wait_for(1, Duration::from_secs(10)).await;
    app.stop().await;

    // A restart with the same store: the same message is still a duplicate.
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, with_broker_port(&text, free_port())).expect("write");
    let app = start_app(&config).await;
    send_raw(&config, "cad/a/events", e).await;
    send_raw(&config, "cad/a/events", event("INC-9", 2, "road_closure", "Main St reopened")).await;
    hook.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop().await;
    let texts: Vec<String> = hook.requests().iter().map(|r| r.text()).collect();
    assert_eq!(texts, ["Main St closed", "Main St reopened"]);
}

/// The embedded broker has no stop API, so a restarted daemon gets a fresh port.
fn with_broker_port(text: &str, port: u16) -> String {
    text.lines()
        .map(|l| {
            if l.starts_with("listen = \"127.0.0.1:") && !l.ends_with(":0\"") {
                format!("listen = \"127.0.0.1:{port}\"")
            } else {
                l.to_owned()
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}
