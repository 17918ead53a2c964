//! The alert lifecycle through the whole daemon: a CAP AMBER alert, its update and its
//! cancellation (with no texts of its own) reach Mastodon as a post, a threaded reply,
//! and a reply with the original deleted; a CAP test message reaches no public channel;
//! CAD snapshots post once, update on a material change and close silently.

use std::time::Duration;

use crate::support::platforms;
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
