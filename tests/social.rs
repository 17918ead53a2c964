//! Social channels through the whole daemon: an AMBER alert to every platform at once,
//! a thread that survives a crash between its parts and is deleted by the cancellation,
//! and SMS that reaches every number but one that opted out.

use std::path::Path;
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::platforms::{self, Fault, block};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(20);

fn state_of(db: &Path, channel: &str) -> (String, Option<String>, Option<String>) {
    let conn = rusqlite::Connection::open(db).expect("open");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy");
    conn.query_row(
        "SELECT state, post_url, reason FROM deliveries WHERE channel = ?1 ORDER BY id LIMIT 1",
        [channel],
        |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
    )
    .unwrap_or_else(|e| panic!("no delivery on {channel}: {e}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_amber_alert_reaches_every_platform_at_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (bsky_srv, bsky) = platforms::bluesky::start().await;
    let fleet = platforms::Fleet::start().await;
    let (masto, x, meta, tg, dc) = (&fleet.masto, &fleet.x, &fleet.meta, &fleet.tg, &fleet.discord);
    let (slack, teams, nd, sms) = (&fleet.slack, &fleet.teams, &fleet.nd, &fleet.sms);
    let bsky_block = block(
        "bsky",
        &format!(
            "kind = \"bluesky\"\nbase_url = \"{}\"\nidentifier = \"{}\"\napp_password = \"{}\"",
            bsky_srv.url,
            platforms::bluesky::HANDLE,
            platforms::bluesky::PASSWORD
        ),
    );
    let channels = format!("{}{bsky_block}", fleet.channels);
    let config = write_config(dir.path(), "", &format!("{}\n{channels}", embedded_broker()));
    let app = start_app(&config).await;
    let headline = "AMBER ALERT: Sofia Ramirez, 6, missing from Lakeview Park. Call 911 if seen.";
    send_raw(&config, "cad/county/events", event("RCSO-AMBER-1", 1, "missing_child", headline)).await;

    let db = dir.path().join("bullhorn.db");
    let done = eventually(WAIT, || {
        let all = count(&db, "SELECT COUNT(*) FROM deliveries");
        let open = count(&db, "SELECT COUNT(*) FROM deliveries WHERE state IN ('queued', 'in_flight')");
        (all == 12 && open == 0).then_some(())
    })
    .await;
    assert!(done.is_some(), "every delivery finished");
    app.stop().await;

    assert_eq!(masto.live()[0].text, headline);
    assert_eq!(bsky.posts()[0]["text"], headline);
    assert_eq!(x.live()[0].text, headline);
    assert_eq!(meta.live("feed")[0].text, headline);
    assert_eq!(meta.live("thread")[0].text, headline);
    assert_eq!(tg.live()[0].text, headline);
    assert_eq!(dc.live()[0].content, headline);
    assert_eq!(slack.live()[0].text, headline);
    assert_eq!(teams.cards.lock().expect("cards")[0]["body"][0]["text"], headline);
    assert_eq!(nd.posts.lock().expect("posts")[0].body_text, headline);
    assert_eq!(sms.messages.lock().expect("m")[0].body, headline);
    for channel in ["masto", "bsky", "x", "fb", "threads", "tg", "discord", "slack", "teams", "nd", "sms"] {
        assert_eq!(state_of(&db, channel).0, "sent", "{channel}");
    }
    assert!(state_of(&db, "masto").1.is_some_and(|u| u.contains("/@rcso/")), "the post's URL is recorded");
    assert!(state_of(&db, "bsky").1.is_some_and(|u| u.starts_with("https://bsky.app/profile/")));
    // Instagram takes no text-only post; the photo comes with the media pipeline. The
    // record says so instead of failing silently.
    let (state, _, reason) = state_of(&db, "ig");
    assert_eq!(state, "dead");
    assert!(reason.is_some_and(|r| r.contains("need an image")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thread_survives_a_crash_between_parts_and_the_cancellation_deletes_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, masto) = platforms::mastodon::start().await;
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "{}\n[channels.masto]\nkind = \"mastodon\"\nbase_url = \"{}\"\ntoken = \"{}\"\nmax_chars = 120\noverflow = \"thread\"\ndelete_original = true\n",
            embedded_broker(),
            server.url,
            platforms::mastodon::TOKEN
        ),
    );
    let admin = free_port();
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{admin}\"")))
        .expect("write");
    // Part 1 goes through; part 2 is made but its answer never comes back in time.
    masto.common.fault("statuses", Fault::Pass);
    masto.common.fault("statuses", Fault::AfterWork(Duration::from_secs(60)));
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, true).await;
    let headline = "AMBER ALERT: Sofia Ramirez, 6, was last seen at 2:15 p.m. at Lakeview Park in Corpus Christi, \
                    wearing a yellow raincoat and pink boots. She may be in a silver 2014 Honda Odyssey, Texas plate \
                    NRT-4471. If you see her, the suspect or the vehicle, call 911 immediately. Do not approach.";
    let publish = |payload: String| {
        let config = config.clone();
        async move {
            let deadline = tokio::time::Instant::now() + WAIT;
            loop {
                let c = bullhorn::config::load(&config).expect("config");
                let r = bullhorn::ingest::mqtt::publish_once(
                    &c.mqtt,
                    None,
                    "cad/a/events",
                    payload.clone().into_bytes(),
                    Duration::from_secs(2),
                )
                .await;
                if r.is_ok() {
                    break;
                }
                assert!(tokio::time::Instant::now() < deadline, "broker not up: {r:?}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    };
    publish(event("RCSO-T-1", 1, "missing_child", headline)).await;
    eventually(WAIT, || (masto.all().len() >= 2).then_some(())).await.expect("two parts made");
    daemon.kill9();

    // Restarted, the daemon asks about part 2: Mastodon's idempotency key makes a resend
    // safe, and the instance answers it with the status it already made.
    daemon.restart();
    daemon.wait_ready(admin, true).await;
    let parts = eventually(WAIT, || {
        let db = dir.path().join("bullhorn.db");
        (count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'") == 1).then(|| masto.all())
    })
    .await
    .unwrap_or_else(|| panic!("the thread finished:\n{}", daemon.log()));
    assert!(parts.len() >= 3, "{parts:?}");
    for w in parts.windows(2) {
        assert_eq!(w[1].in_reply_to_id.as_deref(), Some(w[0].id.as_str()), "each part replies to the one before");
    }
    let ids: Vec<String> = parts.iter().map(|p| p.id.clone()).collect();
    let mut unique = ids.clone();
    unique.dedup();
    assert_eq!(ids, unique, "no part posted twice");

    // The cancellation replies to the thread, then deletes every part of it.
    let cancel = serde_json::json!({
        "id": "RCSO-T-1", "revision": 2, "type": "missing_child", "msg_type": "cancel", "status": "actual",
        "headline": "CANCELLED: Sofia Ramirez has been found safe. Thank you for sharing."
    });
    publish(cancel.to_string()).await;
    let after = eventually(WAIT, || {
        let live = masto.live();
        (live.len() == 1 && live[0].text.starts_with("CANCELLED")).then_some(live)
    })
    .await
    .unwrap_or_else(|| panic!("the original deleted, the cancellation kept: {:?}\n{}", masto.live(), daemon.log()));
    assert_eq!(after[0].in_reply_to_id.as_deref(), Some(ids[0].as_str()));
    assert_eq!(masto.common.hits_to("DELETE", "/api/v1/statuses/").len(), parts.len());
    assert!(daemon.terminate(), "{}", daemon.log());
}

/// A config with one SMS channel on the fake Twilio at `url`; `to` has its sender and
/// numbers.
fn sms_config(dir: &Path, url: &str, to: &str) -> std::path::PathBuf {
    let channel = format!(
        "[channels.sms]\nkind = \"sms\"\nbase_url = \"{url}\"\naccount_sid = \"{}\"\nauth_token = \"{}\"\n{to}\n",
        platforms::twilio::SID,
        platforms::twilio::AUTH_TOKEN,
    );
    write_config(dir, "", &format!("{}\n{channel}", embedded_broker()))
}

/// Run the daemon until an AMBER alert `id` is sent; returns the store's path.
async fn sms_alert_sent(config: &Path, dir: &Path, id: &str) -> std::path::PathBuf {
    let app = start_app(config).await;
    send_raw(config, "cad/county/events", event(id, 1, "missing_child", "AMBER ALERT: call 911")).await;
    let db = dir.join("bullhorn.db");
    eventually(WAIT, || (count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'sent'") == 1).then_some(()))
        .await
        .expect("sent");
    app.stop().await;
    db
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sms_reaches_every_number_but_one_that_opted_out() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, sms) = platforms::twilio::start().await;
    let to = format!(
        "messaging_service_sid = \"MG123\"\nto = [\"+15555550101\", \"{}\", \"+15555550103\"]\nrate = \"100/1s\"",
        platforms::twilio::OPTED_OUT
    );
    let config = sms_config(dir.path(), &server.url, &to);
    let db = sms_alert_sent(&config, dir.path(), "RCSO-S-1").await;
    let mut to: Vec<String> = sms.messages.lock().expect("m").iter().map(|m| m.to.clone()).collect();
    to.sort();
    assert_eq!(to, ["+15555550101", "+15555550103"]);
    let (_, _, reason) = state_of(&db, "sms");
    assert!(reason.is_some_and(|r| r.contains(platforms::twilio::OPTED_OUT) && r.contains("21610")));
    // 100/s leaves room for the three numbers at once: one batch, one step.
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attempts WHERE channel = 'sms'"), 1, "one step for the batch");
    let saved: String = rusqlite::Connection::open(&db)
        .expect("open")
        .query_row("SELECT progress FROM deliveries WHERE channel = 'sms'", [], |r| r.get(0))
        .expect("progress");
    assert_eq!(saved.matches("\"to").count(), 3, "each number's answer saved with the step: {saved}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_answer_not_yet_visible_is_looked_for_again_before_sending_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (server, sms) = platforms::twilio::start().await;
    let to = format!("from = \"{}\"\nto = [\"+15555550101\"]", platforms::twilio::FROM);
    let config = sms_config(dir.path(), &server.url, &to);
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("[delivery]\n", "[delivery]\nrequest_timeout = \"500ms\"\n")).expect("write");
    // The message is made but the answer is lost, and the first look does not show it yet.
    sms.common.fault("create", Fault::AfterWork(Duration::from_secs(3)));
    sms.lagging_listings.store(1, std::sync::atomic::Ordering::SeqCst);
    sms_alert_sent(&config, dir.path(), "RCSO-L-1").await;
    assert_eq!(sms.messages.lock().expect("m").len(), 1, "looked again before sending, found it, sent nothing more");
    assert_eq!(sms.common.hits_to("POST", "/Messages.json").len(), 1);
    assert_eq!(
        sms.common.hits_to("GET", "/Messages.json").len(),
        2,
        "a look after the timeout, another before the retry"
    );
}
