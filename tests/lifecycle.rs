//! The alert lifecycle through the whole daemon: a CAP AMBER alert, its update and its
//! cancellation (with no texts of its own) reach Mastodon as a post, a threaded reply,
//! and a reply with the original deleted; a CAP test message reaches no public channel;
//! CAD snapshots post once, update on a material change and close silently.

use std::time::Duration;

use crate::support::admin::Api;
use crate::support::platforms;
use crate::support::session_broker::SessionBroker;
use crate::support::webhook::FakeWebhook;
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);
const SENDER: &str = "rcso@sheriff.example";

fn cap(identifier: &str, sent: &str, msg_type: &str, references: &[&str], body: &str) -> String {
    let refs = if references.is_empty() {
        String::new()
    } else {
        format!("<references>{}</references>", references.join(" "))
    };
    format!(
        r#"<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>{identifier}</identifier><sender>{SENDER}</sender><sent>{sent}</sent>
  <status>Actual</status><msgType>{msg_type}</msgType><scope>Public</scope>{refs}{body}
</alert>"#
    )
}

fn info(code: &str, headline: &str) -> String {
    format!(
        "<info><language>en-US</language><category>Rescue</category><event>Child Abduction</event>\
         <urgency>Immediate</urgency><severity>Severe</severity><certainty>Likely</certainty>\
         <eventCode><valueName>SAME</valueName><value>{code}</value></eventCode><headline>{headline}</headline></info>"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cap_alert_its_update_and_its_cancellation_thread_and_delete_on_mastodon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, masto) = platforms::mastodon::start().await;
    let staff = dir.path().join("staff.jsonl");
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "{}\n[[mqtt.subscribe]]\ntopic = \"ipaws/#\"\nformat = \"cap\"\n\
             [events.general]\n\
             [channels.masto]\nkind = \"mastodon\"\nbase_url = \"{}\"\ntoken = \"{}\"\ndelete_original = true\n\
             [channels.staff]\nkind = \"file\"\npath = \"{}\"\npublic = false\n",
            embedded_broker(),
            server.url,
            platforms::mastodon::TOKEN,
            staff.display()
        ),
    );
    let app = start_app(&config).await;
    let sent1 = "2026-11-21T10:00:00-06:00";
    let alert = cap("RCSO-AMBER-7", sent1, "Alert", &[], &info("CAE", "AMBER Alert: Sofia Ramirez, 6"));
    send_raw(&config, "ipaws/rcso", alert).await;
    let first = eventually(WAIT, || masto.live().first().cloned()).await.expect("the alert is posted");
    assert_eq!(first.text, "AMBER Alert: Sofia Ramirez, 6");

    let original = format!("{SENDER},RCSO-AMBER-7,{sent1}");
    let sent2 = "2026-11-21T10:30:00-06:00";
    let update = cap("RCSO-AMBER-8", sent2, "Update", &[&original], &info("CAE", "UPDATE: vehicle found in Robstown"));
    send_raw(&config, "ipaws/rcso", update).await;
    let reply = eventually(WAIT, || masto.live().get(1).cloned()).await.expect("the update is posted");
    assert_eq!(reply.in_reply_to_id.as_deref(), Some(first.id.as_str()), "threaded under the alert");

    // The cancellation names both messages and carries no texts: it takes the alert's.
    let update_key = format!("{SENDER},RCSO-AMBER-8,{sent2}");
    let cancel = cap("RCSO-AMBER-9", "2026-11-21T11:00:00-06:00", "Cancel", &[&original, &update_key], "");
    send_raw(&config, "ipaws/rcso", cancel).await;
    let after = eventually(WAIT, || {
        let all = masto.all();
        (all.len() == 3 && all[0].deleted).then_some(all)
    })
    .await
    .unwrap_or_else(|| panic!("cancelled and deleted: {:?}", masto.all()));
    assert_eq!(after[2].in_reply_to_id.as_deref(), Some(first.id.as_str()), "the cancellation replies to the alert");
    assert_eq!(after[2].text, "AMBER Alert: Sofia Ramirez, 6", "with the stored alert's texts");

    // A required monthly test reaches only the staff channel.
    let rmt = cap("RCSO-RMT-1", "2026-11-21T11:05:00-06:00", "Alert", &[], &info("RMT", "Required Monthly Test"));
    send_raw(&config, "ipaws/rcso", rmt).await;
    let line =
        eventually(WAIT, || std::fs::read_to_string(&staff).ok().filter(|s| s.contains("Required Monthly Test"))).await;
    assert!(line.is_some(), "the test reached the staff channel");
    app.stop().await;
    assert_eq!(masto.all().len(), 3, "nothing of the test on Mastodon");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cad_snapshots_post_once_update_on_change_and_close_silently() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, masto) = platforms::mastodon::start().await;
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "{}\n[[mqtt.subscribe]]\ntopic = \"cad/chesco/#\"\nformat = \"mapped\"\ntypes = {{ \"VEHICLE ACCIDENT\" = \"road_closure\" }}\n\
             [mqtt.subscribe.mapping]\nid = \"/incident\"\ntype = \"/type\"\nheadline = \"/headline\"\nlocation = \"/location\"\nstatus = \"/status\"\n\
             [channels.masto]\nkind = \"mastodon\"\nbase_url = \"{}\"\naccess_token = \"{}\"\n",
            embedded_broker(),
            server.url,
            platforms::mastodon::TOKEN
        ),
    );
    // The shipped rule would hold CAD data for approval; this agency posts road closures.
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(
        &config,
        text.replace(
            "[events.road_closure]\npriority = \"normal\"",
            "[events.road_closure]\npriority = \"high\"\napproval = \"auto\"",
        ),
    )
    .expect("write");
    let app = start_app(&config).await;
    let snapshot = |status: &str, headline: &str, location: &str| {
        serde_json::json!({ "incident": "F26-1", "type": "VEHICLE ACCIDENT", "headline": headline, "location": location, "status": status })
            .to_string()
    };
    send_raw(&config, "cad/chesco/summary", snapshot("ACTIVE", "SH-358 closed at Airline Rd", "1234 AIRLINE RD")).await;
    let first = eventually(WAIT, || masto.live().first().cloned()).await.expect("posted");
    // Units arrive on scene, another house number in the same block: nothing new to say.
    send_raw(&config, "cad/chesco/summary", snapshot("ONSCENE", "SH-358 closed at Airline Rd", "1250 AIRLINE RD"))
        .await;
    // The closure widens: an update.
    send_raw(
        &config,
        "cad/chesco/summary",
        snapshot("ONSCENE", "SH-358 closed from Airline Rd to Everhart Rd", "1250 AIRLINE RD"),
    )
    .await;
    let update = eventually(WAIT, || masto.live().get(1).cloned()).await.expect("updated");
    assert_eq!(update.in_reply_to_id.as_deref(), Some(first.id.as_str()));
    assert!(update.text.contains("Everhart"));
    // Closed: the rule does not post on close.
    send_raw(&config, "cad/chesco/summary", snapshot("CLOSED", "SH-358 reopened", "1250 AIRLINE RD")).await;
    let db = dir.path().join("bullhorn.db");
    eventually(WAIT, || (count(&db, "SELECT COUNT(*) FROM events") == 4).then_some(())).await.expect("all recorded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop().await;
    assert_eq!(masto.all().len(), 2, "one post, one update: {:?}", masto.all());
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events WHERE disposition = 'unchanged'"), 1);
}

/// A config with the CAP feed and one public webhook channel (`rules` appended).
async fn cap_setup(dir: &std::path::Path, rules: &str) -> (std::path::PathBuf, FakeWebhook) {
    let hook = FakeWebhook::start(vec![]).await;
    let config = write_config(
        dir,
        "",
        &format!(
            "{}\n[[mqtt.subscribe]]\ntopic = \"ipaws/#\"\nformat = \"cap\"\n[events.general]\n{rules}\n[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\n",
            embedded_broker(),
            hook.url
        ),
    );
    (config, hook)
}

fn cap_status(identifier: &str, sent: &str, status: &str, msg_type: &str, references: &[&str], body: &str) -> String {
    cap(identifier, sent, msg_type, references, body)
        .replace("<status>Actual</status>", &format!("<status>{status}</status>"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_cancel_does_not_silence_a_real_held_amber_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, hook) = cap_setup(dir.path(), "").await;
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("[events.missing_child]\n", "[events.missing_child]\napproval = \"hold\"\n"))
        .expect("hold");
    let app = start_app(&config).await;
    let api = Api::new(&app, dir.path());
    let sent = "2026-11-21T10:00:00-06:00";
    send_raw(
        &config,
        "ipaws/rcso",
        cap("RCSO-AMBER-7", sent, "Alert", &[], &info("CAE", "AMBER Alert: Sofia Ramirez, 6")),
    )
    .await;
    let db = dir.path().join("bullhorn.db");
    eventually(WAIT, || (count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'held'") == 1).then_some(()))
        .await
        .expect("held");
    // An exercise names the real alert and cancels it.
    let real = format!("{SENDER},RCSO-AMBER-7,{sent}");
    let drill = cap_status(
        "RCSO-EX-1",
        "2026-11-21T10:05:00-06:00",
        "Exercise",
        "Cancel",
        &[&real],
        &info("CAE", "EXERCISE cancel"),
    );
    send_raw(&config, "ipaws/rcso", drill).await;
    eventually(WAIT, || (count(&db, "SELECT COUNT(*) FROM events") == 2).then_some(())).await.expect("both recorded");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'held'"), 1, "the real alert is still held");
    // The operator approves the real alert by its own identifier.
    let (status, done) = api.post("/api/alerts/RCSO-AMBER-7/approve", serde_json::json!({ "actor": "pio" })).await;
    assert_eq!(status, 200, "{done}");
    let reqs = hook.wait_for(1, WAIT).await;
    assert_eq!(reqs[0].text(), "AMBER Alert: Sofia Ramirez, 6");
    app.stop().await;
    assert_eq!(hook.requests().len(), 1, "nothing of the drill on the public channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_without_an_event_code_still_reaches_the_channels_of_its_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (config, hook) = cap_setup(dir.path(), "").await;
    let app = start_app(&config).await;
    let sent = "2026-11-21T10:00:00-06:00";
    send_raw(&config, "ipaws/rcso", cap("RCSO-AMBER-8", sent, "Alert", &[], &info("CAE", "AMBER Alert: Leo Diaz, 4")))
        .await;
    hook.wait_for(1, WAIT).await;
    // Hand-written: its info has no SAME code, so on its own it would be "general".
    let original = format!("{SENDER},RCSO-AMBER-8,{sent}");
    let found = info("CAE", "FOUND SAFE: Leo Diaz")
        .replace("<eventCode><valueName>SAME</valueName><value>CAE</value></eventCode>", "");
    send_raw(&config, "ipaws/rcso", cap("RCSO-AMBER-9", "2026-11-21T12:00:00-06:00", "Cancel", &[&original], &found))
        .await;
    let reqs = hook.wait_for(2, WAIT).await;
    app.stop().await;
    let cancel = reqs[1].json();
    assert_eq!(cancel["data"]["kind"], "cancel", "{cancel}");
    assert_eq!(reqs[1].text(), "FOUND SAFE: Leo Diaz");
    assert_eq!(cancel["type"], "alert.missing_child.cancel", "the alert's type and rule");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_textless_cancel_right_behind_its_alert_stops_it() {
    let broker = SessionBroker::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    let config = write_config(
        dir.path(),
        &format!("url = \"mqtt://127.0.0.1:{}\"\nprotocol = \"v311\"", broker.port),
        &format!(
            "[[mqtt.subscribe]]\ntopic = \"ipaws/#\"\nformat = \"cap\"\n[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\n",
            hook.url
        ),
    );
    let app = start_app(&config).await;
    eventually(WAIT, || broker.subscribed().then_some(())).await.expect("subscribed");
    // A backlog after a restart: the store is busy, so the cancel is prepared while its
    // alert is still waiting to be committed.
    let lock = rusqlite::Connection::open(dir.path().join("bullhorn.db")).expect("open");
    lock.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let sent = "2026-11-21T10:00:00-06:00";
    broker.publish(
        "ipaws/rcso",
        cap("RCSO-AMBER-10", sent, "Alert", &[], &info("CAE", "AMBER Alert: Mia Cruz, 3")).into_bytes(),
    );
    let original = format!("{SENDER},RCSO-AMBER-10,{sent}");
    broker.publish(
        "ipaws/rcso",
        cap("RCSO-AMBER-11", "2026-11-21T10:01:00-06:00", "Cancel", &[&original], "").into_bytes(),
    );
    tokio::time::sleep(Duration::from_millis(500)).await;
    lock.execute_batch("COMMIT").expect("unlock");
    let db = dir.path().join("bullhorn.db");
    eventually(WAIT, || (broker.acks().len() == 2).then_some(())).await.expect("both acked");
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop().await;
    assert!(hook.requests().is_empty(), "the cancelled alert never went out: {:?}", hook.requests().len());
    assert_eq!(count(&db, "SELECT COUNT(DISTINCT incident_key) FROM events"), 1, "the cancel found its alert");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'suppressed'"), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancellation_still_goes_out_after_its_alert_aged_past_max_age() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    let config = write_config(
        dir.path(),
        "",
        &format!("{}\n[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\n", embedded_broker(), hook.url),
    );
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("[events.road_closure]\n", "[events.road_closure]\nmax_age = \"1s\"\n"))
        .expect("max_age");
    let app = start_app(&config).await;
    let api = Api::new(&app, dir.path());
    send_raw(&config, "cad/a/events", event("M-1", 1, "road_closure", "Road closed")).await;
    hook.wait_for(1, WAIT).await;
    // The channel is paused past the rule's max_age; the cancel waits meanwhile.
    let (status, _) = api.post("/api/pause", serde_json::json!({ "scope": "channel:hook" })).await;
    assert_eq!(status, 200);
    let cancel = serde_json::json!({ "id": "M-1", "revision": 2, "type": "road_closure", "msg_type": "cancel",
        "status": "actual", "headline": "Road open again", "expires": "2020-01-01T00:00:00Z" });
    send_raw(&config, "cad/a/events", cancel.to_string()).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (status, _) = api.post("/api/resume", serde_json::json!({ "scope": "channel:hook" })).await;
    assert_eq!(status, 200);
    let reqs = hook.wait_for(2, WAIT).await;
    app.stop().await;
    assert_eq!(reqs[1].json()["data"]["kind"], "cancel", "the public post is taken back, late or not");
}
