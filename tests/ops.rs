//! Operations through the admin API, end to end: events through the broker, decisions
//! through the API (or a staff link), requests counted at fake platforms.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::admin::Api;
use crate::support::mosquitto::Mosquitto;
use crate::support::platforms::mastodon;
use crate::support::webhook::{FakeWebhook, Reply};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

fn config(dir: &Path, channels: &str) -> PathBuf {
    config_on(dir, "", &embedded_broker(), channels)
}

/// `mqtt` goes in `[mqtt]`, `broker` is the `[broker]` section.
fn config_on(dir: &Path, mqtt: &str, broker: &str, channels: &str) -> PathBuf {
    let body = format!("{broker}\n[events.barricade]\npriority = \"high\"\napproval = \"hold\"\n{channels}");
    write_config(dir, mqtt, &body)
}

/// `bullhorn --config CFG --admin-url BASE ARGS...` as user "dispatcher": whether it
/// succeeded, and what it printed.
fn cli(cfg: &Path, base: &str, args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bullhorn"))
        .arg("--config")
        .arg(cfg)
        .arg("--admin-url")
        .arg(base)
        .args(args)
        .env("USER", "dispatcher")
        .env_remove("SUDO_USER")
        .env_remove("BULLHORN_CONFIG")
        .output()
        .expect("bullhorn");
    (out.status.success(), String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr))
}

fn hook(name: &str, url: &str) -> String {
    format!("[channels.{name}]\nkind = \"webhook\"\nurl = \"{url}\"\n")
}

fn staff_file(dir: &Path) -> String {
    format!("[channels.staff]\nkind = \"file\"\npath = \"{}\"\npublic = false\n", dir.join("staff.jsonl").display())
}

fn states(dir: &Path, channel: &str) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("bullhorn.db")).expect("open");
    let mut stmt = conn.prepare("SELECT state FROM deliveries WHERE channel = ?1 ORDER BY id").expect("prepare");
    stmt.query_map([channel], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
}

fn audit(dir: &Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(dir.join("bullhorn.db")).expect("open");
    let mut stmt = conn.prepare("SELECT actor, action FROM audit ORDER BY id").expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").collect::<Result<_, _>>().expect("rows")
}

/// Wait until `f` holds; panic with `what` if it does not within [`WAIT`].
async fn until(what: &str, mut f: impl FnMut() -> bool) {
    eventually(WAIT, || f().then_some(())).await.unwrap_or_else(|| panic!("timed out waiting for: {what}"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_refuses_requests_without_the_right_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook_srv = FakeWebhook::start(vec![]).await;
    let cfg = config(dir.path(), &hook("hook", &hook_srv.url));
    let app = start_app(&cfg).await;
    let api = Api::new(&app, dir.path());

    let (status, body) = api.call(reqwest::Method::GET, "/api/status", None, None).await;
    assert_eq!(status, 401, "{body}");
    let (status, _) = api.call(reqwest::Method::GET, "/api/alerts", Some("not-the-token-at-all"), None).await;
    assert_eq!(status, 401);
    let (status, _) =
        api.call(reqwest::Method::POST, "/api/pause", Some("not-the-token-at-all"), Some(json!({}))).await;
    assert_eq!(status, 401);
    let (status, body) = api.get("/api/status").await;
    assert_eq!(status, 200);
    assert_eq!(body["paused"], json!([]), "the refused pause did nothing");
    assert_eq!(body["mode"], "live");
    // Probes stay open.
    assert_eq!(admin_get(app.admin_addr().expect("addr"), "/healthz").await.0, 200);
    let mode = std::fs::metadata(dir.path().join("admin-token")).expect("token file");
    assert_eq!(std::os::unix::fs::PermissionsExt::mode(&mode.permissions()) & 0o777, 0o600);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approve_and_reject_decide_what_a_held_alert_posts() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook_srv = FakeWebhook::start(vec![]).await;
    let cfg = config(dir.path(), &hook("hook", &hook_srv.url));
    let app = start_app(&cfg).await;
    let api = Api::new(&app, dir.path());

    send_raw(&cfg, "cad/a/events", event("B-1", 1, "barricade", "Barricaded suspect, Elm St")).await;
    until("held", || states(dir.path(), "hook") == ["held"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hook_srv.requests().is_empty(), "a held alert waits");
    let (_, held) = api.get("/api/alerts?held=true").await;
    assert_eq!(held["alerts"][0]["headline"], "Barricaded suspect, Elm St");

    let (status, done) = api.post("/api/alerts/B-1/approve", json!({ "actor": "sgt.lee" })).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["changed"], 1);
    let reqs = hook_srv.wait_for(1, WAIT).await;
    assert_eq!(reqs[0].text(), "Barricaded suspect, Elm St");
    let (status, again) = api.post("/api/alerts/B-1/approve", json!({})).await;
    assert_eq!(status, 409, "{again}");
    assert!(again["error"].as_str().unwrap_or("").contains("approved by sgt.lee"), "{again}");

    send_raw(&cfg, "cad/a/events", event("B-2", 1, "barricade", "Do not post this")).await;
    until("second held", || states(dir.path(), "hook").len() == 2).await;
    let (status, _) = api.post("/api/alerts/B-2/reject", json!({ "actor": "lt.diaz", "reason": "tactical" })).await;
    assert_eq!(status, 200);
    let (status, _) = api.post("/api/alerts/B-2/approve", json!({})).await;
    assert_eq!(status, 409, "a rejected alert cannot be approved");
    let (status, _) = api.post("/api/alerts/NOPE-9/approve", json!({})).await;
    assert_eq!(status, 404);

    tokio::time::sleep(Duration::from_millis(300)).await;
    let (_, detail) = api.get("/api/alerts/B-2").await;
    assert_eq!(detail["deliveries"][0]["state"], "suppressed");
    assert_eq!(detail["audit"][0]["actor"], "lt.diaz");

    // The same through the CLI, as a sysadmin would.
    send_raw(&cfg, "cad/a/events", event("B-3", 1, "barricade", "Approved from the shell")).await;
    until("third held", || states(dir.path(), "hook").len() == 3).await;
    let cli = |args: &[&str]| cli(&cfg, &api.base, args);
    let (ok, out) = cli(&["status", "--held"]);
    assert!(ok && out.contains("Approved from the shell"), "{out}");
    let (ok, out) = cli(&["approve", "B-3"]);
    assert!(ok && out.contains("approved: 1 deliveries queued"), "{out}");
    assert_eq!(hook_srv.wait_for(2, WAIT).await[1].text(), "Approved from the shell");
    let (ok, out) = cli(&["approve", "B-3"]);
    assert!(!ok && out.contains("not held"), "{out}");
    let (ok, out) = cli(&["status", "B-3"]);
    assert!(ok && out.contains("approve by dispatcher"), "{out}");

    app.stop().await;
    assert_eq!(hook_srv.requests().len(), 2, "only the approved alerts were posted");
    assert_eq!(states(dir.path(), "hook"), ["sent", "suppressed", "sent"]);
    let who: Vec<(String, String)> = audit(dir.path());
    assert_eq!(&who[..2], [("sgt.lee".to_owned(), "approve".to_owned()), ("lt.diaz".to_owned(), "reject".to_owned())]);
    assert!(who[2].0.starts_with("dispatcher") && who[2].0.ends_with("(cli)"), "{who:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_kill_switch_holds_public_posts_through_a_restart_and_resume_sends_what_is_still_valid() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook_srv = FakeWebhook::start(vec![]).await;
    // The daemon restarts in this process: an external broker (the embedded one cannot).
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let mqtt = format!("url = \"{}\"", broker.url());
    let cfg = config_on(dir.path(), &mqtt, "", &format!("{}{}", hook("hook", &hook_srv.url), staff_file(dir.path())));
    let staff = dir.path().join("staff.jsonl");
    let staff_lines = || std::fs::read_to_string(&staff).unwrap_or_default().lines().count();
    let app = start_app(&cfg).await;
    let api = Api::new(&app, dir.path());

    let (status, body) = api.post("/api/pause", json!({ "actor": "pio", "reason": "false alarm check" })).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["paused"], json!(["all"]));
    send_raw(&cfg, "cad/a/events", event("R-1", 1, "road_closure", "Main St closed")).await;
    let soon = (jiff::Timestamp::now() + jiff::SignedDuration::from_millis(1500)).to_string();
    let expiring = json!({ "id": "R-2", "revision": 1, "type": "road_closure", "status": "actual",
                           "headline": "Closed briefly", "expires": soon });
    send_raw(&cfg, "cad/a/events", expiring.to_string()).await;
    until("staff channels keep working", || staff_lines() == 2).await;

    // A restart does not lift the kill switch.
    app.stop().await;
    let app = start_app(&cfg).await;
    let api = Api::new(&app, dir.path());
    let (_, status) = api.get("/api/status").await;
    assert_eq!(status["paused"][0]["scope"], "all", "{status}");
    tokio::time::sleep(Duration::from_millis(1600)).await;
    assert!(hook_srv.requests().is_empty(), "nothing public while paused");

    let (status, body) = api.post("/api/resume", json!({ "actor": "pio" })).await;
    assert_eq!(status, 200, "{body}");
    let reqs = hook_srv.wait_for(1, WAIT).await;
    assert_eq!(reqs[0].text(), "Main St closed");
    until("the expired one closed", || states(dir.path(), "hook") == ["sent", "expired"]).await;

    // One event type, then one channel.
    let (status, _) = api.post("/api/pause", json!({ "scope": "type:road_closure" })).await;
    assert_eq!(status, 200);
    send_raw(&cfg, "cad/a/events", event("R-3", 1, "road_closure", "Oak Ave closed")).await;
    send_raw(&cfg, "cad/a/events", event("W-1", 1, "wanted", "Wanted: J. Doe")).await;
    let reqs = hook_srv.wait_for(2, WAIT).await;
    assert_eq!(reqs[1].text(), "Wanted: J. Doe", "other types go on");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(hook_srv.requests().len(), 2, "the paused type waits");
    let (status, _) = api.post("/api/resume", json!({ "scope": "type:road_closure" })).await;
    assert_eq!(status, 200);
    assert_eq!(hook_srv.wait_for(3, WAIT).await[2].text(), "Oak Ave closed");

    let (status, _) = api.post("/api/pause", json!({ "scope": "channel:hook" })).await;
    assert_eq!(status, 200);
    let before = staff_lines();
    send_raw(&cfg, "cad/a/events", event("W-2", 1, "wanted", "Wanted: R. Roe")).await;
    until("the other channel posts", || staff_lines() == before + 1).await;
    assert_eq!(hook_srv.requests().len(), 3, "the paused channel waits");
    let (status, _) = api.post("/api/resume", json!({ "scope": "channel:hook" })).await;
    assert_eq!(status, 200);
    assert_eq!(hook_srv.wait_for(4, WAIT).await[3].text(), "Wanted: R. Roe");
    let (status, _) = api.post("/api/pause", json!({ "scope": "channel:nope" })).await;
    assert_eq!(status, 400);
    app.stop().await;
    let actions: Vec<String> = audit(dir.path()).into_iter().map(|(_, a)| a).collect();
    assert_eq!(actions, ["pause", "resume", "pause", "resume", "pause", "resume"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_queues_a_dead_lettered_delivery_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook_srv = FakeWebhook::start(vec![Reply::status(400, r#"{"error":"bad field"}"#)]).await;
    let cfg = config(dir.path(), &hook("hook", &hook_srv.url));
    let app = start_app(&cfg).await;
    let api = Api::new(&app, dir.path());
    send_raw(&cfg, "cad/a/events", event("T-1", 1, "wanted", "Wanted: A. Person")).await;
    until("dead", || states(dir.path(), "hook") == ["dead"]).await;
    let (status, done) = api.post("/api/alerts/T-1/retry", json!({ "channel": "hook" })).await;
    assert_eq!(status, 200, "{done}");
    hook_srv.wait_for(2, WAIT).await;
    until("sent", || states(dir.path(), "hook") == ["sent"]).await;
    let (status, _) = api.post("/api/alerts/T-1/retry", json!({})).await;
    assert_eq!(status, 409, "nothing dead any more");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retraction_goes_out_ahead_of_a_full_queue_and_deletes_the_alert() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (masto_srv, masto) = mastodon::start().await;
    let hook_srv = FakeWebhook::start(vec![]).await;
    // Two requests an hour on each: one alert and one routine post fill the window.
    let channels = format!(
        "[channels.masto]\nkind = \"mastodon\"\nbase_url = \"{}\"\ntoken = \"{}\"\nrate = \"2/1h\"\nreserve = 0\n{}rate = \"2/1h\"\nreserve = 0\n",
        masto_srv.url,
        mastodon::TOKEN,
        hook("hook", &hook_srv.url)
    );
    let cfg = config(dir.path(), &channels);
    let app = start_app(&cfg).await;
    let api = Api::new(&app, dir.path());

    send_raw(&cfg, "cad/a/events", event("A-1", 1, "missing_child", "AMBER ALERT: Ana, 6")).await;
    until("alert posted", || masto.live().len() == 1).await;
    for i in 0..10 {
        send_raw(&cfg, "cad/a/events", event(&format!("R-{i}"), 1, "road_closure", &format!("Road {i} closed"))).await;
    }
    until("the window is full", || masto.live().len() == 2 && hook_srv.requests().len() == 2).await;
    until("the rest wait", || states(dir.path(), "masto").iter().filter(|s| *s == "queued").count() == 9).await;
    let original = masto.live()[0].clone();

    let (status, done) = api.post("/api/alerts/A-1/retract", json!({ "actor": "pio" })).await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["changed"], 2, "{done}");
    until("retraction posted and the alert deleted", || {
        masto.all().iter().any(|s| s.in_reply_to_id.as_ref() == Some(&original.id))
            && masto.live().iter().all(|s| s.id != original.id)
    })
    .await;
    let reply = masto.all().into_iter().find(|s| s.in_reply_to_id.as_ref() == Some(&original.id)).expect("reply");
    assert!(reply.text.starts_with("CORRECTION: Our alert"), "{}", reply.text);
    assert!(reply.text.contains("AMBER ALERT: Ana, 6"), "{}", reply.text);
    let reqs = hook_srv.wait_for(3, WAIT).await;
    assert!(reqs[2].text().starts_with("CORRECTION"), "{}", reqs[2].text());
    assert_eq!(masto.all().len(), 3, "nothing from the queue went before or with it");
    assert_eq!(states(dir.path(), "masto").iter().filter(|s| *s == "queued").count(), 9, "the queue still waits");

    // The incident is over: a later message of it is recorded, not posted.
    send_raw(&cfg, "cad/a/events", event("A-1", 2, "missing_child", "AMBER ALERT update")).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let retracted = count(
        &dir.path().join("bullhorn.db"),
        "SELECT COUNT(*) FROM events WHERE disposition = 'retracted' AND revision = 2",
    );
    assert_eq!(retracted, 1);
    let (status, _) = api.post("/api/alerts/A-1/retract", json!({})).await;
    assert_eq!(status, 409, "retracted once");
    app.stop().await;
    assert_eq!(masto.all().len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_correction_replies_with_the_operators_text_even_during_a_pause() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (masto_srv, masto) = mastodon::start().await;
    let channels = format!(
        "[channels.masto]\nkind = \"mastodon\"\nbase_url = \"{}\"\ntoken = \"{}\"\n",
        masto_srv.url,
        mastodon::TOKEN
    );
    let cfg = config(dir.path(), &channels);
    let app = start_app(&cfg).await;
    let api = Api::new(&app, dir.path());
    send_raw(&cfg, "cad/a/events", event("C-1", 1, "road_closure", "Bridge closed")).await;
    until("posted", || masto.live().len() == 1).await;
    let (status, _) = api.post("/api/pause", json!({})).await;
    assert_eq!(status, 200);
    let (status, _) = api.post("/api/alerts/C-1/correct", json!({})).await;
    assert_eq!(status, 400, "a correction needs its text");
    let text = "The bridge is open; the closure was for the old bridge. @everyone";
    let (status, done) = api.post("/api/alerts/C-1/correct", json!({ "text": text })).await;
    assert_eq!(status, 200, "{done}");
    until("correction out despite the pause", || masto.all().len() == 2 && masto.live().len() == 1).await;
    let correction = &masto.all()[1];
    assert!(correction.text.starts_with("CORRECTION: The bridge is open"), "{}", correction.text);
    assert!(!correction.text.contains("@everyone"), "the operator's text is escaped too: {}", correction.text);
    assert_eq!(correction.in_reply_to_id.as_deref(), Some(masto.all()[0].id.as_str()));
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_records_everything_and_posts_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook_srv = FakeWebhook::start(vec![]).await;
    let log = dir.path().join("out.jsonl");
    let channels =
        format!("{}[channels.log]\nkind = \"file\"\npath = \"{}\"\n", hook("hook", &hook_srv.url), log.display());
    let cfg = config(dir.path(), &channels);
    let text = std::fs::read_to_string(&cfg).expect("config");
    std::fs::write(&cfg, format!("mode = \"shadow\"\n{text}")).expect("shadow");
    let app = start_app(&cfg).await;
    send_raw(&cfg, "cad/a/events", event("S-1", 1, "missing_child", "DRILL: AMBER ALERT")).await;
    until("the local file still writes", || std::fs::read_to_string(&log).is_ok_and(|t| t.contains("DRILL"))).await;
    until("recorded as shadow", || states(dir.path(), "hook") == ["shadow"]).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop().await;
    assert!(hook_srv.requests().is_empty(), "nothing posted");
    let db = dir.path().join("bullhorn.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attempts WHERE channel = 'hook'"), 0);
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM deliveries WHERE channel = 'hook' AND text = 'DRILL: AMBER ALERT'"),
        1,
        "the text it would have posted is kept"
    );
}

/// The `/act/...` path of the line starting with `label` in a staff notice.
fn link(notice: &str, label: &str) -> String {
    let line = notice.lines().find(|l| l.starts_with(label)).unwrap_or_else(|| panic!("no {label} in {notice}"));
    let at = line.find("/act/").expect("a link");
    line[at..].trim().to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_alerts_approve_link_works_once_and_only_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook_srv = FakeWebhook::start(vec![]).await;
    let channels =
        format!("{}{}[notify]\nchannels = [\"staff\"]\n", hook("hook", &hook_srv.url), staff_file(dir.path()));
    let cfg = config(dir.path(), &channels);
    let app = start_app(&cfg).await;
    let api = Api::new(&app, dir.path());
    send_raw(&cfg, "cad/a/events", event("B-7", 1, "barricade", "Barricaded suspect <b>@here</b>")).await;

    let staff = dir.path().join("staff.jsonl");
    let notice = eventually(WAIT, || {
        let text = std::fs::read_to_string(&staff).ok()?;
        let line = text.lines().find(|l| l.contains("HELD FOR APPROVAL"))?.to_owned();
        let v: Value = serde_json::from_str(&line).ok()?;
        v["text"].as_str().map(str::to_owned)
    })
    .await
    .expect("a staff notice");
    assert!(notice.contains("— hook: Barricaded suspect"), "previews: {notice}");
    let approve = link(&notice, "Approve:");
    let reject = link(&notice, "Reject:");
    assert_ne!(approve, reject);
    // The staff channel got working links; the store and the API have none of them.
    let token = approve.trim_start_matches("/act/").to_owned();
    let db = dir.path().join("bullhorn.db");
    let stored = format!("SELECT COUNT(*) FROM deliveries WHERE instr(text, '{token}') > 0");
    assert_eq!(count(&db, &stored), 0, "one-time links are not stored in the notice text");
    let notice_id = count(&db, "SELECT event_id FROM deliveries WHERE channel = 'staff'");
    let (status, shown) = api.get(&format!("/api/alerts/%23{notice_id}")).await;
    assert_eq!(status, 200, "{shown}");
    assert!(!shown.to_string().contains(&token), "nor shown by the API: {shown}");

    let http = bullhorn::channel::http::client().expect("client");
    let url = |path: &str| format!("{}{path}", api.base);
    // A GET (a chat app's link preview) changes nothing.
    let page = http.get(url(&approve)).send().await.expect("get");
    assert_eq!(page.status().as_u16(), 200);
    assert_eq!(page.headers().get("referrer-policy").and_then(|v| v.to_str().ok()), Some("no-referrer"));
    let html = page.text().await.expect("page");
    assert!(html.contains("Approve and post now"), "{html}");
    assert!(html.contains("&lt;b&gt;"), "event text is escaped in the page: {html}");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(hook_srv.requests().is_empty());

    let first = http.post(url(&approve)).send().await.expect("post");
    assert_eq!(first.status().as_u16(), 200);
    hook_srv.wait_for(1, WAIT).await;
    let second = http.post(url(&approve)).send().await.expect("post again");
    assert_eq!(second.status().as_u16(), 410, "used once");
    let other = http.post(url(&reject)).send().await.expect("reject after approve");
    assert_eq!(other.status().as_u16(), 410, "the alert is decided");
    let forged = http.post(url("/act/AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA")).send().await.expect("forged");
    assert_eq!(forged.status().as_u16(), 404);
    tokio::time::sleep(Duration::from_millis(300)).await;
    app.stop().await;
    assert_eq!(hook_srv.requests().len(), 1, "posted once");
    let audit = audit(dir.path());
    assert_eq!(audit.len(), 1);
    assert_eq!(audit[0].1, "approve");
    assert!(audit[0].0.starts_with("staff from 127.0.0.1"), "{audit:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hold_timers_late_alerts_and_refused_credentials_reach_staff() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook_srv = FakeWebhook::start(vec![]).await;
    let (masto_srv, _masto) = mastodon::start().await;
    let channels = format!(
        "{}{}[channels.masto]\nkind = \"mastodon\"\nbase_url = \"{}\"\ntoken = \"revoked-token\"\n\
         [notify]\nchannels = [\"staff\"]\nlate_after = \"1s\"\nescalate_after = \"1s\"\n\
         [events.bomb_threat]\npriority = \"high\"\napproval = \"hold\"\nhold_for = \"1s\"\nafter_hold = \"publish\"\n",
        hook("hook", &hook_srv.url),
        staff_file(dir.path()),
        masto_srv.url
    );
    let cfg = config(dir.path(), &channels);
    let app = start_app(&cfg).await;
    let staff = dir.path().join("staff.jsonl");
    let staff_text = || std::fs::read_to_string(&staff).unwrap_or_default();

    // Published by the timer after a second, nobody having decided.
    send_raw(&cfg, "cad/a/events", event("X-1", 1, "bomb_threat", "Evacuate City Hall")).await;
    let reqs = hook_srv.wait_for(1, WAIT).await;
    assert_eq!(reqs[0].text(), "Evacuate City Hall");
    assert!(audit(dir.path()).iter().any(|(who, what)| who.starts_with("hold timer") && what == "approve"));

    // A critical alert that cannot go out on Mastodon (the token is refused).
    send_raw(&cfg, "cad/a/events", event("M-1", 1, "missing_child", "AMBER ALERT: Leo, 4")).await;
    until("staff told the alert is late", || staff_text().contains("NOT OUT after 1s: AMBER ALERT: Leo, 4")).await;
    until("staff told the credentials are refused", || staff_text().contains("CHANNEL masto: the platform refused"))
        .await;
    let text = staff_text();
    assert!(text.contains("masto: queued"), "{text}");

    // Held with no deadline: staff are told at once, and again when nobody decides.
    send_raw(&cfg, "cad/a/events", event("B-5", 1, "barricade", "Barricade on Pine St")).await;
    until("held notice", || staff_text().contains("HELD FOR APPROVAL: Barricade on Pine St")).await;
    until("escalation", || staff_text().contains("STILL HELD, nobody has decided: Barricade on Pine St")).await;
    app.stop().await;
    let db = dir.path().join("bullhorn.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events WHERE dedupe_key LIKE 'notice:late:%'"), 1, "told once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn credentials_near_their_expiry_are_told_to_staff_once_and_shown_by_status_and_check() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook_srv = FakeWebhook::start(vec![]).await;
    let expires =
        jiff::Timestamp::from_millisecond(jiff::Timestamp::now().as_millisecond() + 50 * 3_600_000).expect("ts");
    let channels = format!(
        "{}credentials_expire = \"{expires}\"\n{}[notify]\nchannels = [\"staff\"]\n",
        hook("hook", &hook_srv.url),
        staff_file(dir.path()),
    );
    // It restarts in this process: an external broker (the embedded one cannot).
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let cfg = config_on(dir.path(), &format!("url = \"{}\"", broker.url()), "", &channels);
    let staff = dir.path().join("staff.jsonl");
    let staff_text = || std::fs::read_to_string(&staff).unwrap_or_default();
    let db = dir.path().join("bullhorn.db");
    let told = "SELECT COUNT(*) FROM events WHERE dedupe_key LIKE 'notice:expiring:hook:%'";

    let app = start_app(&cfg).await;
    until("staff told", || staff_text().contains("CHANNEL hook: credentials expire at")).await;
    let text = staff_text();
    assert!(text.contains(", in 2 days (credentials_expire). Renew the token"), "{text}");
    let api = Api::new(&app, dir.path());
    let (status, body) = api.get("/api/status").await;
    assert_eq!(status, 200);
    let (ok, out) = cli(&cfg, &api.base, &["status"]);
    assert!(ok && out.contains("WARNING: channel hook: credentials expire at"), "{out}");
    assert_eq!(body["credentials_expiring"][0]["channel"], "hook", "{body}");
    assert_eq!(body["credentials_expiring"][0]["expires_at"], expires.to_string());
    let (_, metrics) = admin_get(app.admin_addr().expect("admin"), "/metrics").await;
    let gauge = format!("bullhorn_credentials_expiry_timestamp_seconds{{channel=\"hook\"}} {}\n", expires.as_second());
    assert!(metrics.contains(&gauge), "{metrics}");
    app.stop().await;

    // A restart does not tell them again (the notice's key is kept in the store).
    let app = start_app(&cfg).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.stop().await;
    assert_eq!(count(&db, told), 1, "told once for this stage");
    assert_eq!(staff_text().lines().count(), 1);
    assert!(hook_srv.requests().is_empty(), "nothing on the public channel");

    // `bullhorn check` warns, and still passes: the daemon must start.
    let (ok, out) = cli(&cfg, "http://127.0.0.1:9", &["check"]);
    assert!(ok && out.contains("warning: channel hook: credentials expire at"), "{out}");
}
