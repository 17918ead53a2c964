//! The binary's commands as an operator runs them.

use std::process::Command;
use std::time::Duration;

use crate::support::*;

fn bullhorn(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bullhorn"))
        .args(args)
        .env_remove("BULLHORN_CONFIG")
        .output()
        .expect("run bullhorn")
}

#[test]
fn check_passes_on_the_shipped_config() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/bullhorn.toml");
    let out = bullhorn(&["--config", config, "check"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("OK"));
}

#[test]
fn check_reports_every_problem_and_exits_64() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[mqtt]\nurl = \"mqtt://127.0.0.1:1\"\nkeep_alive = \"never\"\n[[mqtt.subscribe]]\ntopic = \"a/#\"\nformat = \"json\"\n[events.x]\nchannels = [\"missing\"]\n[channels.c]\nkind = \"console\"\ncolour = \"red\"\n",
    )
    .expect("write");
    let out = bullhorn(&["--config", path.to_str().expect("utf-8"), "check"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    for needle in ["mqtt.keep_alive", "events.x.channels", "channels.c.colour"] {
        assert!(err.contains(needle), "{needle} missing from:\n{err}");
    }
}

#[test]
fn check_reports_template_errors_with_file_and_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), "url = \"mqtt://127.0.0.1:1\"", "[channels.c]\nkind = \"console\"\n");
    std::fs::create_dir_all(dir.path().join("templates/missing_child")).expect("dir");
    std::fs::write(dir.path().join("templates/missing_child/default.txt"), "ok\n{% if %}\n").expect("write");
    let out = bullhorn(&["--config", path.to_str().expect("utf-8"), "check"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("missing_child/default.txt:2"), "{err}");
}

#[test]
fn usage_errors_exit_64() {
    assert_eq!(bullhorn(&["frobnicate"]).status.code(), Some(64));
    assert_eq!(bullhorn(&["--config", "/nonexistent.toml", "check"]).status.code(), Some(64));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn send_publishes_a_validated_event_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let posts = dir.path().join("posts.jsonl");
    let config = write_config(
        dir.path(),
        "",
        &format!("{}\n[channels.log]\nkind = \"file\"\npath = \"{}\"\n", embedded_broker(), posts.display()),
    );
    let app = start_app(&config).await;
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/amber.json");
    let out = bullhorn(&["--config", config.to_str().expect("utf-8"), "send", example]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("published missing_child alert"));
    let text =
        eventually(Duration::from_secs(10), || std::fs::read_to_string(&posts).ok().filter(|s| !s.is_empty())).await;
    assert!(text.is_some_and(|t| t.contains("Sofia Ramirez")), "the alert reached the file channel");

    let bad = dir.path().join("bad.json");
    std::fs::write(&bad, r#"{"id":"x","type":"nope","status":"actual","headline":"h"}"#).expect("write");
    let out = bullhorn(&["--config", config.to_str().expect("utf-8"), "send", bad.to_str().expect("utf-8")]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("unknown event type"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    app.stop().await;
}

#[test]
fn run_refuses_a_taken_broker_port_with_a_clear_error() {
    // Something (a system Mosquitto, say) already holds the port.
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        "",
        &format!("[broker]\nenabled = true\nlisten = \"127.0.0.1:{port}\"\n[channels.c]\nkind = \"console\"\n"),
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_bullhorn"))
        .args(["--config", config.to_str().expect("utf-8"), "run"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("spawn");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().expect("wait") {
            break s;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("bullhorn kept running on a taken port");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("read");
    assert_eq!(status.code(), Some(1));
    assert!(err.contains(&format!("127.0.0.1:{port} is already in use")), "{err}");
    drop(holder);
}

#[test]
fn check_catches_unknown_variables_and_overflowing_templates() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = write_config(dir.path(), "url = \"mqtt://127.0.0.1:1\"", "[channels.c]\nkind = \"console\"\n");
    let set = dir.path().join("templates/road_closure");
    std::fs::create_dir_all(&set).expect("dir");
    std::fs::write(set.join("default.txt"), "{{ headline }}\nDetour: {{ detour_route }}\n").expect("write");
    std::fs::write(set.join("x.txt"), format!("{{{{ headline }}}} {}", "Avoid the area. ".repeat(30))).expect("write");
    let out = bullhorn(&["--config", path.to_str().expect("utf-8"), "check"]);
    assert_eq!(out.status.code(), Some(64));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("road_closure/default.txt:2: unknown variable detour_route"), "{err}");
    assert!(err.contains("road_closure/x.txt") && err.contains("too long for x"), "{err}");
}

#[test]
fn render_shows_each_platform_with_its_own_count_and_posts_nothing() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/bullhorn.toml");
    let example = concat!(env!("CARGO_MANIFEST_DIR"), "/config/examples/amber.json");
    let out = bullhorn(&["--config", config, "render", example, "--platform", "all", "--json"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert!(report["verdict"].as_str().is_some_and(|v| v.starts_with("would be posted")));
    let deliveries = report["deliveries"].as_array().expect("deliveries");
    let x = deliveries.iter().find(|d| d["platform"] == "x").expect("x");
    assert_eq!(x["length"]["unit"], "weighted characters");
    assert_eq!(x["length"]["limit"], 280);
    assert!(x["length"]["fits"].as_bool().expect("bool"));
    let bsky = deliveries.iter().find(|d| d["platform"] == "bluesky").expect("bluesky");
    assert!(bsky["facets"].as_array().is_some_and(|f| f.iter().any(|f| f["type"] == "tag")), "{bsky}");
    let sms = deliveries.iter().find(|d| d["platform"] == "sms").expect("sms");
    assert!(sms["length"]["detail"].as_str().is_some_and(|d| d.contains("GSM-7")), "{sms}");

    // The configured channels by default, as text.
    let out = bullhorn(&["--config", config, "render", example]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("── console (console)") && text.contains("── log (file)"), "{text}");
}

async fn bullhorn_async(args: Vec<String>) -> std::process::Output {
    tokio::task::spawn_blocking(move || {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        bullhorn(&args)
    })
    .await
    .expect("join")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_online_verifies_credentials_without_posting() {
    use crate::support::platforms::{mastodon, teams};
    let dir = tempfile::tempdir().expect("tempdir");
    let (masto_srv, masto) = mastodon::start().await;
    let (teams_srv, _teams) = teams::start().await;
    let channels = |token: &str| {
        format!(
            "[channels.masto]\nkind = \"mastodon\"\nbase_url = \"{}\"\naccess_token = \"{token}\"\n[channels.teams]\nkind = \"teams\"\nwebhook_url = \"{}\"\n",
            masto_srv.url,
            teams::Fake::url(&teams_srv.url)
        )
    };
    let path = write_config(dir.path(), "url = \"mqtt://127.0.0.1:1\"", &channels(mastodon::TOKEN));
    let config = path.to_str().expect("utf-8").to_owned();

    let out = bullhorn_async(vec!["--config".into(), config.clone(), "check".into(), "--online".into()]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains("masto (mastodon): OK, posts as @rcso"), "{stdout}");
    assert!(stdout.contains("teams (teams): not checked"), "{stdout}");
    assert!(masto.all().is_empty(), "checking posts nothing");

    // A revoked token: check --online fails and says which channel and why.
    let bad = write_config(dir.path(), "url = \"mqtt://127.0.0.1:1\"", &channels("revoked"));
    let out =
        bullhorn_async(vec!["--config".into(), bad.to_str().expect("utf-8").into(), "check".into(), "--online".into()])
            .await;
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("masto (mastodon): FAILED") && stderr.contains("access token is invalid"), "{stderr}");
    assert!(!stderr.contains("revoked"), "the token is not repeated: {stderr}");
}

#[test]
fn amber_wording_only_for_an_amber_activation() {
    let config = concat!(env!("CARGO_MANIFEST_DIR"), "/config/bullhorn.toml");
    let corpus = std::env::var("BULLHORN_CORPUS")
        .unwrap_or_else(|_| concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/corpus").to_owned());
    // A CAP AMBER activation (SAME CAE), in English and Spanish.
    let cap = format!("{corpus}/cap-amber-multilingual.xml");
    let out = bullhorn(&["--config", config, "render", &cap]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("AMBER ALERT") && text.contains("#AmberAlert"), "{text}");
    assert!(text.contains("ALERTA AMBER"), "the es-US info block: {text}");

    // A CAD abduction call: a missing child, held for approval, never AMBER wording.
    let dir = tempfile::tempdir().expect("tempdir");
    let eido = dir.path().join("abduction.json");
    std::fs::write(
        &eido,
        serde_json::json!({
            "$id": "urn:emergency:uid:incidentid:77:cad.rcso.example", "eidoVersion": "1.0",
            "incidentComponent": { "incidentTypeCommonRegistryText": "ABDUCTNF", "incidentStatusCommonRegistryText": ["Active"] },
            "personComponent": [{ "personIncidentRoleRegistryText": ["Victim"],
                "ncPersonComponent": { "nc:PersonName": { "nc:PersonFullName": "Sofia Ramirez" } } }],
            "locationComponent": [{ "locationTypeDescriptionRegistryText": "CurrentIncident", "locationDescriptionText": "1234 Ocean Dr" }]
        })
        .to_string(),
    )
    .expect("write");
    let out = bullhorn(&["--config", config, "render", eido.to_str().expect("utf-8")]);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("MISSING CHILD") && text.contains("Sofia Ramirez"), "{text}");
    assert!(!text.contains("AMBER"), "{text}");
    assert!(text.contains("held for approval"), "{text}");
    assert!(text.contains("1200 block of Ocean Dr"), "the address to the block: {text}");
}

/// `test-channel` posts through the running daemon's queue: a staff channel at once, a
/// public one only with --public, and never through the kill switch or in shadow mode.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn test_channel_obeys_the_pause_shadow_mode_and_the_public_flag() {
    use crate::support::platforms::mastodon;
    let dir = tempfile::tempdir().expect("tempdir");
    let (masto_srv, masto) = mastodon::start().await;
    let staff = dir.path().join("staff.jsonl");
    let body = format!(
        "{}\n[channels.masto]\nkind = \"mastodon\"\nbase_url = \"{}\"\naccess_token = \"{}\"\n[channels.staff]\nkind = \"file\"\npath = \"{}\"\npublic = false\n",
        embedded_broker(),
        masto_srv.url,
        mastodon::TOKEN,
        staff.display()
    );
    let path = write_config(dir.path(), "", &body);
    let app = start_app(&path).await;
    let admin = format!("http://{}", app.admin_addr().expect("admin"));
    let run = |args: &[&str]| {
        let mut all = vec!["--config".to_owned(), path.display().to_string(), "--admin-url".to_owned(), admin.clone()];
        all.extend(args.iter().map(|a| (*a).to_owned()));
        bullhorn_async(all)
    };

    let out = run(&["test-channel", "staff"]).await;
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = std::fs::read_to_string(&staff).expect("staff file");
    assert!(line.contains("TEST: a test message from"), "{line}");

    let out = run(&["test-channel", "masto"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("public channel"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(masto.all().is_empty(), "nothing public without --public");

    // The kill switch holds a public test like anything else.
    assert!(run(&["pause", "--reason", "drill"]).await.status.success());
    let out = run(&["test-channel", "masto", "--public", "--text", "paused test"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("paused"), "{}", String::from_utf8_lossy(&out.stderr));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(masto.all().is_empty(), "the pause holds it: {:?}", masto.all());
    assert!(run(&["resume"]).await.status.success());
    let posted = eventually(Duration::from_secs(10), || masto.all().first().cloned()).await.expect("posted on resume");
    assert_eq!(posted.text, "paused test");

    let out = run(&["test-channel", "masto", "--public"]).await;
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&format!("masto: posted: {}/@rcso/", masto_srv.url)), "{stdout}");
    let db = dir.path().join("bullhorn.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM attempts WHERE channel = 'masto'"), 2, "in the send log (the quota)");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM audit WHERE action = 'test'"), 3, "every test queued is audited");
    app.stop().await;

    // Shadow mode records and posts nothing.
    // (The embedded broker keeps its port for the life of the process: a fresh one.)
    let text = std::fs::read_to_string(&path).expect("read");
    let text =
        text.replace(&embedded_broker_section(&text), &embedded_broker()).replace("[log]", "mode = \"shadow\"\n[log]");
    std::fs::write(&path, text).expect("write");
    let app = start_app(&path).await;
    let admin = format!("http://{}", app.admin_addr().expect("admin"));
    let out = bullhorn_async(vec![
        "--config".to_owned(),
        path.display().to_string(),
        "--admin-url".to_owned(),
        admin,
        "test-channel".to_owned(),
        "masto".to_owned(),
        "--public".to_owned(),
    ])
    .await;
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("shadow mode"), "{}", String::from_utf8_lossy(&out.stderr));
    app.stop().await;
    assert_eq!(masto.all().len(), 2);
}

/// The `[broker]` section `write_config` wrote.
fn embedded_broker_section(text: &str) -> String {
    let start = text.find("[broker]").expect("a broker section");
    let end = text[start..].find("\n[").map_or(text.len(), |e| start + e + 1);
    text[start..end].to_owned()
}
