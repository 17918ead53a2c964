//! Hot reload: new wording takes effect, a broken template never replaces a working one,
//! queued work keeps its text, a removed channel's work waits for it, rate windows stay.

use std::path::Path;
use std::time::Duration;

use crate::support::admin::Api;
use crate::support::daemon::Daemon;
use crate::support::webhook::{FakeWebhook, Reply};
use crate::support::*;

fn template(dir: &Path, text: &str) {
    std::fs::create_dir_all(dir.join("templates/road_closure")).expect("dir");
    std::fs::write(dir.join("templates/road_closure/default.txt"), text).expect("write");
}

fn set_channels(config: &Path, channels: &str) {
    let text = std::fs::read_to_string(config).expect("read");
    let head = &text[..text.find("[channels.").expect("channels")];
    std::fs::write(config, format!("{head}{channels}")).expect("write");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_wording_applies_and_a_broken_template_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    template(dir.path(), "v1: {{ headline }}");
    let config = write_config(
        dir.path(),
        "",
        &format!("{}\n[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\n", embedded_broker(), hook.url),
    );
    let mut app = start_app(&config).await;
    send_raw(&config, "cad/a/events", event("W-1", 1, "road_closure", "first")).await;
    hook.wait_for(1, Duration::from_secs(10)).await;

    template(dir.path(), "v2: {{ headline }}");
    app.reload().expect("valid reload");
    send_raw(&config, "cad/a/events", event("W-2", 1, "road_closure", "second")).await;
    hook.wait_for(2, Duration::from_secs(10)).await;

    template(dir.path(), "v3: {{ headline }\n");
    let err = app.reload().expect_err("broken template");
    assert!(err.contains("road_closure/default.txt:1"), "{err}");
    send_raw(&config, "cad/a/events", event("W-3", 1, "road_closure", "third")).await;
    let reqs = hook.wait_for(3, Duration::from_secs(10)).await;
    app.stop().await;
    let texts: Vec<String> = reqs.iter().map(|r| r.text()).collect();
    assert_eq!(texts, ["v1: first", "v2: second", "v2: third"], "the broken template never replaced v2");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_work_keeps_its_text_and_a_removed_channel_holds_its_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The platform is throttling: the first delivery waits 2 s in the queue.
    let hook = FakeWebhook::start(vec![Reply::retry_after(429, "2")]).await;
    template(dir.path(), "old wording: {{ headline }}");
    let hook_channel = format!("[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\n", hook.url);
    let config = write_config(dir.path(), "", &format!("{}\n{hook_channel}", embedded_broker()));
    let mut app = start_app(&config).await;
    send_raw(&config, "cad/a/events", event("Q-1", 1, "road_closure", "queued")).await;
    hook.wait_for(1, Duration::from_secs(10)).await;

    // New wording while Q-1 waits; then the channel is removed altogether.
    template(dir.path(), "new wording: {{ headline }}");
    app.reload().expect("reload");
    set_channels(&config, "[channels.other]\nkind = \"console\"\npublic = false\n");
    app.reload().expect("reload without hook");
    send_raw(&config, "cad/a/events", event("Q-2", 1, "road_closure", "while removed")).await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(hook.requests().len(), 1, "nothing goes to a removed channel");
    let db = dir.path().join("bullhorn.db");
    assert_eq!(
        count(&db, "SELECT COUNT(*) FROM deliveries WHERE channel = 'hook' AND state = 'queued'"),
        1,
        "held, not dropped"
    );

    // Back again: the held delivery goes out with the text it was rendered with.
    set_channels(&config, &hook_channel);
    app.reload().expect("reload with hook");
    let reqs = hook.wait_for(2, Duration::from_secs(10)).await;
    app.stop().await;
    assert_eq!(reqs[1].text(), "old wording: queued");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_window_survives_a_reload() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    template(dir.path(), "{{ headline }}");
    let channel = |rate: &str| {
        format!("[channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\nrate = \"{rate}\"\nreserve = 0\n", hook.url)
    };
    let config = write_config(dir.path(), "", &format!("{}\n{}", embedded_broker(), channel("2/1h")));
    let mut app = start_app(&config).await;
    for i in 0..3 {
        send_raw(&config, "cad/a/events", event(&format!("R-{i}"), 1, "wanted", &format!("n{i}"))).await;
    }
    hook.wait_for(2, Duration::from_secs(10)).await;
    // A reload that raises the limit by one: the two sends still count, so one more goes.
    set_channels(&config, &channel("3/1h"));
    app.reload().expect("reload");
    hook.wait_for(3, Duration::from_secs(10)).await;
    send_raw(&config, "cad/a/events", event("R-3", 1, "wanted", "n3")).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    app.stop().await;
    assert_eq!(hook.requests().len(), 3, "at most 3 in the window across the reload");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_a_running_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    let posts = dir.path().join("posts.jsonl");
    let admin = free_port();
    template(dir.path(), "before: {{ headline }}");
    let config = write_config(
        dir.path(),
        "",
        &format!("{}\n[channels.log]\nkind = \"file\"\npath = \"{}\"\n", embedded_broker(), posts.display()),
    );
    let text = std::fs::read_to_string(&config).expect("read").replace("127.0.0.1:0", &format!("127.0.0.1:{admin}"));
    std::fs::write(&config, text).expect("write");
    let mut daemon = Daemon::start(&config);
    let ready =
        eventually(Duration::from_secs(20), || std::net::TcpStream::connect(("127.0.0.1", admin)).ok().map(|_| ()))
            .await;
    assert!(ready.is_some(), "daemon up:\n{}", daemon.log());
    tokio::time::sleep(Duration::from_millis(300)).await;
    send_raw(&config, "cad/a/events", event("H-1", 1, "road_closure", "one")).await;
    eventually(Duration::from_secs(10), || std::fs::read_to_string(&posts).ok().filter(|s| s.contains("before: one")))
        .await
        .expect("first post");

    template(dir.path(), "after: {{ headline }}");
    daemon.signal("HUP");
    eventually(Duration::from_secs(10), || daemon.log().contains("config reloaded").then_some(()))
        .await
        .expect("reloaded");
    send_raw(&config, "cad/a/events", event("H-2", 1, "road_closure", "two")).await;
    let text = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&posts).ok().filter(|s| s.contains("after: two"))
    })
    .await;
    assert!(text.is_some(), "the next alert uses the new wording:\n{}", daemon.log());
    assert!(daemon.terminate(), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_watch_on_a_saved_template_reloads_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let posts = dir.path().join("posts.jsonl");
    template(dir.path(), "before: {{ headline }}");
    let config = write_config(
        dir.path(),
        "",
        &format!(
            "{}\n[reload]\nwatch = true\ndebounce = \"200ms\"\n[channels.log]\nkind = \"file\"\npath = \"{}\"\n",
            embedded_broker(),
            posts.display()
        ),
    );
    let mut daemon = Daemon::start(&config);
    eventually(Duration::from_secs(20), || daemon.log().contains("subscribed").then_some(())).await.expect("daemon up");
    send_raw(&config, "cad/a/events", event("F-1", 1, "road_closure", "one")).await;
    eventually(Duration::from_secs(10), || std::fs::read_to_string(&posts).ok().filter(|s| s.contains("before: one")))
        .await
        .expect("first post");

    // Saved the way editors do: a new file renamed over the old one.
    let target = dir.path().join("templates/road_closure/default.txt");
    let tmp = dir.path().join("templates/road_closure/.default.txt.swp");
    std::fs::write(&tmp, "after: {{ headline }}").expect("write");
    std::fs::rename(&tmp, &target).expect("rename");
    eventually(Duration::from_secs(10), || daemon.log().contains("config reloaded").then_some(()))
        .await
        .unwrap_or_else(|| panic!("no reload:\n{}", daemon.log()));
    send_raw(&config, "cad/a/events", event("F-2", 1, "road_closure", "two")).await;
    let text = eventually(Duration::from_secs(10), || {
        std::fs::read_to_string(&posts).ok().filter(|s| s.contains("after: two"))
    })
    .await;
    assert!(text.is_some(), "{}", daemon.log());
    assert!(daemon.terminate(), "{}", daemon.log());
}

fn webhook(name: &str, url: &str, public: bool) -> String {
    format!("[channels.{name}]\nkind = \"webhook\"\nurl = \"{url}\"\npublic = {public}\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drills_queued_for_a_staff_channel_stay_off_it_once_it_is_public() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trial = FakeWebhook::start(vec![]).await;
    let config =
        write_config(dir.path(), "", &format!("{}\n{}", embedded_broker(), webhook("trial", &trial.url, false)));
    let mut app = start_app(&config).await;
    let api = Api::new(&app, dir.path());
    // The trial channel is paused while staff look at it; a drill is queued for it.
    let (status, _) = api.post("/api/pause", serde_json::json!({ "scope": "channel:trial" })).await;
    assert_eq!(status, 200);
    let drill = serde_json::json!({ "id": "EX-1", "revision": 1, "type": "road_closure", "status": "exercise", "headline": "Drill" });
    send_raw(&config, "cad/a/events", drill.to_string()).await;
    let db = dir.path().join("bullhorn.db");
    eventually(Duration::from_secs(10), || (count(&db, "SELECT COUNT(*) FROM deliveries") == 1).then_some(()))
        .await
        .expect("queued for the staff channel");
    // Opened to the public, then resumed: the drill must not go out there.
    set_channels(&config, &webhook("trial", &trial.url, true));
    app.reload().expect("reload");
    let (status, _) = api.post("/api/resume", serde_json::json!({ "scope": "channel:trial" })).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), || {
        (count(&db, "SELECT COUNT(*) FROM deliveries WHERE state = 'suppressed' AND reason LIKE '%public%'") == 1)
            .then_some(())
    })
    .await
    .expect("closed, with the reason");
    app.stop().await;
    assert!(trial.requests().is_empty(), "nothing of the drill reached the now-public channel");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_removed_staff_channel_whose_name_is_reused_by_a_public_one_posts_no_staff_notice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let staff = FakeWebhook::start(vec![]).await;
    let public = FakeWebhook::start(vec![]).await;
    let body = format!(
        "{}\n[events.barricade]\npriority = \"high\"\napproval = \"hold\"\n[notify]\nchannels = [\"ops\"]\n{}",
        embedded_broker(),
        webhook("ops", &staff.url, false)
    );
    let config = write_config(dir.path(), "", &body);
    let mut app = start_app(&config).await;
    let api = Api::new(&app, dir.path());
    let (status, _) = api.post("/api/pause", serde_json::json!({ "scope": "channel:ops" })).await;
    assert_eq!(status, 200);
    send_raw(&config, "cad/a/events", event("B-1", 1, "barricade", "Barricade on Elm St")).await;
    let db = dir.path().join("bullhorn.db");
    let notices = "SELECT COUNT(*) FROM deliveries d JOIN events e ON e.id = d.event_id WHERE e.format = 'system'";
    eventually(Duration::from_secs(10), || (count(&db, notices) == 1).then_some(())).await.expect("notice queued");
    // The staff channel is removed, and later a public channel takes its name.
    let text = std::fs::read_to_string(&config).expect("read");
    std::fs::write(&config, text.replace("[notify]\nchannels = [\"ops\"]\n", "")).expect("write");
    set_channels(&config, &webhook("other", &public.url, true));
    app.reload().expect("removed");
    set_channels(&config, &webhook("ops", &public.url, true));
    app.reload().expect("name reused");
    let (status, _) = api.post("/api/resume", serde_json::json!({ "scope": "channel:ops" })).await;
    assert_eq!(status, 200);
    eventually(Duration::from_secs(10), || {
        (count(&db, &format!("{notices} AND d.state = 'suppressed'")) == 1).then_some(())
    })
    .await
    .expect("the notice is closed");
    app.stop().await;
    assert!(public.requests().is_empty(), "no staff notice, with its approve links, went out publicly");
    assert!(staff.requests().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_quick_reloads_never_run_two_workers_on_one_channel() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The first request takes a second to be answered.
    let hook = FakeWebhook::start(vec![Reply::Delayed(Duration::from_secs(1), Box::new(Reply::ok()))]).await;
    let channel = webhook("hook", &hook.url, true);
    let config = write_config(dir.path(), "", &format!("{}\n{channel}", embedded_broker()));
    let mut app = start_app(&config).await;
    send_raw(&config, "cad/a/events", event("R-1", 1, "road_closure", "first")).await;
    hook.wait_for(1, Duration::from_secs(10)).await;
    // Disabled and enabled again while that request is out.
    set_channels(&config, &channel.replace("public = true", "public = true\nenabled = false"));
    app.reload().expect("disable");
    set_channels(&config, &channel);
    app.reload().expect("enable");
    send_raw(&config, "cad/a/events", event("R-2", 1, "road_closure", "second")).await;
    let reqs = hook.wait_for(2, Duration::from_secs(10)).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    app.stop().await;
    let reqs = hook.requests().into_iter().chain(reqs.into_iter().skip(hook.requests().len())).collect::<Vec<_>>();
    assert_eq!(reqs.len(), 2, "each posted once");
    assert!(
        reqs[1].at.duration_since(reqs[0].at) >= Duration::from_millis(900),
        "the new worker waited for the old one's request: {:?}",
        reqs[1].at.duration_since(reqs[0].at)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_disabled_when_its_incident_was_cancelled_gets_the_cancellation_once_enabled() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hook = FakeWebhook::start(vec![]).await;
    let channel = webhook("hook", &hook.url, true);
    let config = write_config(dir.path(), "", &format!("{}\n{channel}", embedded_broker()));
    let mut app = start_app(&config).await;
    send_raw(&config, "cad/a/events", event("D-1", 1, "road_closure", "Road closed")).await;
    hook.wait_for(1, Duration::from_secs(10)).await;
    // Disabled (tokens being renewed, say) when the cancel comes in.
    set_channels(&config, &channel.replace("public = true", "public = true\nenabled = false"));
    app.reload().expect("disable");
    let cancel = serde_json::json!({ "id": "D-1", "revision": 2, "type": "road_closure", "msg_type": "cancel",
        "status": "actual", "headline": "Road open again" });
    send_raw(&config, "cad/a/events", cancel.to_string()).await;
    let db = dir.path().join("bullhorn.db");
    eventually(Duration::from_secs(10), || (count(&db, "SELECT COUNT(*) FROM events") == 2).then_some(()))
        .await
        .expect("cancel recorded");
    set_channels(&config, &channel);
    app.reload().expect("enable");
    let reqs = hook.wait_for(2, Duration::from_secs(10)).await;
    app.stop().await;
    assert_eq!(reqs[1].json()["data"]["kind"], "cancel");
    assert_eq!(reqs[1].text(), "Road open again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_drill_cancelled_while_its_staff_channel_was_public_is_cancelled_there_once_it_is_staff_again() {
    let dir = tempfile::tempdir().expect("tempdir");
    let trial = FakeWebhook::start(vec![]).await;
    let config =
        write_config(dir.path(), "", &format!("{}\n{}", embedded_broker(), webhook("trial", &trial.url, false)));
    let mut app = start_app(&config).await;
    let drill = |msg_type: &str, revision: u64| {
        serde_json::json!({ "id": "EX-2", "revision": revision, "type": "road_closure", "msg_type": msg_type,
            "status": "exercise", "headline": format!("Drill {msg_type}") })
        .to_string()
    };
    send_raw(&config, "cad/a/events", drill("alert", 1)).await;
    trial.wait_for(1, Duration::from_secs(10)).await;
    set_channels(&config, &webhook("trial", &trial.url, true));
    app.reload().expect("public");
    send_raw(&config, "cad/a/events", drill("cancel", 2)).await;
    let db = dir.path().join("bullhorn.db");
    eventually(Duration::from_secs(10), || (count(&db, "SELECT COUNT(*) FROM events") == 2).then_some(()))
        .await
        .expect("cancel recorded");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(trial.requests().len(), 1, "nothing of the drill while the channel is public");
    set_channels(&config, &webhook("trial", &trial.url, false));
    app.reload().expect("staff again");
    let reqs = trial.wait_for(2, Duration::from_secs(10)).await;
    app.stop().await;
    assert_eq!(reqs[1].json()["data"]["kind"], "cancel", "the drill's cancellation, now that it may go there");
}
