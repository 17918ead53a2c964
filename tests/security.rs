//! Security: signed input, secrets kept out of logs and output, and a broker that wants a
//! password and a client certificate.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use bullhorn::config::PublisherKey;
use bullhorn::pipeline::signature;
use secrecy::SecretString;

use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::platforms::mastodon;
use crate::support::webhook::{FakeWebhook, Reply};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(10);

fn rejects(dir: &Path) -> Vec<String> {
    let conn = rusqlite::Connection::open(dir.join("bullhorn.db")).expect("open");
    let mut stmt = conn.prepare("SELECT kind FROM rejects ORDER BY id").expect("prepare");
    stmt.query_map([], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_subscription_takes_only_events_signed_with_its_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let hook = FakeWebhook::start(vec![]).await;
    let key_file = dir.path().join("cad.key");
    std::fs::write(&key_file, "cad-signing-key-2026\n").expect("key");
    let body = format!(
        "[[mqtt.subscribe]]\ntopic = \"signed/#\"\nformat = \"json\"\nrequire_signature = true\nsigning_key_file = \"{}\"\n\
         [channels.hook]\nkind = \"webhook\"\nurl = \"{}\"\n",
        key_file.display(),
        hook.url
    );
    let cfg = write_config(dir.path(), &format!("url = \"{}\"", broker.url()), &body);
    let app = start_app(&cfg).await;
    let config = bullhorn::config::load(&cfg).expect("config");
    let key = PublisherKey(SecretString::from("cad-signing-key-2026"));
    let publish = |payload: String, props: Vec<(String, String)>| {
        let mqtt = config.mqtt.clone();
        async move {
            bullhorn::ingest::mqtt::publish_once_with(&mqtt, None, "signed/cad", payload.into_bytes(), props, WAIT)
                .await
                .expect("publish");
        }
    };
    let sig = |k: &PublisherKey, p: &str| vec![(signature::PROPERTY.to_owned(), signature::sign(k, p.as_bytes()))];

    // Valid, in an MQTT 5 user property.
    let valid = event("SIG-1", 1, "wanted", "Signed: wanted person");
    publish(valid.clone(), sig(&key, &valid)).await;
    assert_eq!(hook.wait_for(1, WAIT).await[0].text(), "Signed: wanted person");
    // Unsigned, and signed with another key.
    publish(event("SIG-2", 1, "wanted", "Unsigned"), Vec::new()).await;
    let forged = event("SIG-3", 1, "wanted", "Forged");
    publish(forged.clone(), sig(&PublisherKey(SecretString::from("guessed-key")), &forged)).await;
    // The valid one again: a replay, stopped by the dedupe key.
    publish(valid.clone(), sig(&key, &valid)).await;
    // Valid, in a JSON envelope (what an MQTT 3.1.1 publisher sends).
    let inner = event("SIG-4", 1, "wanted", "Signed envelope");
    publish(signature::envelope_for(&key, &inner), Vec::new()).await;
    assert_eq!(hook.wait_for(2, WAIT).await[1].text(), "Signed envelope");

    // `bullhorn send` signs for a subscription that requires it.
    let file = dir.path().join("event.json");
    std::fs::write(&file, event("SIG-5", 1, "wanted", "Sent by the CLI")).expect("event file");
    let out = Command::new(env!("CARGO_BIN_EXE_bullhorn"))
        .arg("--config")
        .arg(&cfg)
        .args(["send", "--topic", "signed/cad"])
        .arg(&file)
        .output()
        .expect("bullhorn send");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("signed"));
    assert_eq!(hook.wait_for(3, WAIT).await[2].text(), "Sent by the CLI");

    tokio::time::sleep(Duration::from_millis(500)).await;
    app.stop().await;
    assert_eq!(hook.requests().len(), 3, "the unsigned, forged and replayed events were not posted");
    assert_eq!(rejects(dir.path()), ["unsigned", "bad_signature"]);
    let db = dir.path().join("bullhorn.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events WHERE headline = 'Signed: wanted person'"), 1, "replay deduped");
}

/// A Mosquitto password file line (`$6$`: SHA-512 of the password then the salt).
fn password_line(user: &str, password: &str) -> String {
    use base64::Engine as _;
    use sha2::{Digest, Sha512};
    let salt: [u8; 12] = *b"bullhorn-slt";
    let mut h = Sha512::new();
    h.update(password.as_bytes());
    h.update(salt);
    let b64 = base64::engine::general_purpose::STANDARD;
    format!("{user}:$6${}${}\n", b64.encode(salt), b64.encode(h.finalize()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broker_that_wants_a_password_and_a_client_certificate() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = crate::tls::pki();
    let file = |name: &str, text: &str| crate::tls::write(dir.path(), name, text);
    let (ca, server_cert, server_key) =
        (file("ca.pem", &pki.ca), file("s.pem", &pki.server.0), file("s.key", &pki.server.1));
    let (client_cert, client_key) = (file("c.pem", &pki.client.0), file("c.key", &pki.client.1));
    let passwords = file("passwords", &password_line("bullhorn", "broker-pass-123"));
    let tls_port = free_port();
    // Anonymous access is off for every listener (the last allow_anonymous wins).
    let _broker = Mosquitto::start_with(
        &dir.path().join("mosquitto"),
        &format!(
            "allow_anonymous false\npassword_file {passwords}\n\
             listener {tls_port} 127.0.0.1\ncafile {ca}\ncertfile {server_cert}\nkeyfile {server_key}\nrequire_certificate true\n"
        ),
    );
    let posts = dir.path().join("posts.jsonl");
    let channels = format!("[channels.log]\nkind = \"file\"\npath = \"{}\"\n", posts.display());
    let mqtt = |password: &str| {
        format!(
            "url = \"mqtts://127.0.0.1:{tls_port}\"\nca_file = \"{ca}\"\ncert_file = \"{client_cert}\"\nkey_file = \"{client_key}\"\nusername = \"bullhorn\"\npassword = \"{password}\""
        )
    };
    let cfg = write_config(dir.path(), &mqtt("broker-pass-123"), &channels);
    let app = start_app(&cfg).await;
    let config = bullhorn::config::load(&cfg).expect("config");
    let tls = bullhorn::ingest::mqtt::tls_config(&config.mqtt).expect("tls");
    let payload = event("PW-1", 1, "road_closure", "password and certificate").into_bytes();
    bullhorn::ingest::mqtt::publish_once(&config.mqtt, Some(tls), "cad/a/events", payload, WAIT)
        .await
        .expect("publish");
    let text = eventually(WAIT, || std::fs::read_to_string(&posts).ok().filter(|s| !s.is_empty())).await;
    assert!(text.is_some_and(|t| t.contains("password and certificate")));
    app.stop().await;

    // A wrong password is refused: never ready.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let cfg = write_config(dir2.path(), &mqtt("wrong-password"), &channels);
    let app = bullhorn::app::start(bullhorn::config::load(&cfg).expect("config")).await.expect("start");
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert!(!app.health().readiness().broker_connected, "the broker refused the wrong password");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_secret_reaches_the_log_the_api_or_the_cli() {
    const MARK: &str = "LEAKCHECK";
    let dir = tempfile::tempdir().expect("tempdir");
    let (masto_srv, masto) = mastodon::start().await;
    let closed = free_port();
    let hook = FakeWebhook::start(vec![Reply::status(500, "busy")]).await;
    // Every secret carries MARK; nothing else does.
    let webhook_secret = {
        use base64::Engine as _;
        format!("whsec_{}", base64::engine::general_purpose::STANDARD.encode(format!("{MARK}-webhook-signing-key")))
    };
    let key_file = dir.path().join("signing.key");
    std::fs::write(&key_file, format!("{MARK}-signing-key")).expect("key");
    let body = format!(
        r#"{broker}
[[mqtt.subscribe]]
topic = "signed/#"
format = "json"
require_signature = true
signing_key_file = "{key}"
[channels.masto]
kind = "mastodon"
base_url = "{masto}"
token = "{MARK}-mastodon-token"
[channels.tg]
kind = "telegram"
base_url = "http://127.0.0.1:{closed}"
bot_token = "123456:{MARK}-telegram"
chat_id = "@rcso"
[channels.discord]
kind = "discord"
webhook_url = "http://127.0.0.1:{closed}/api/webhooks/1/{MARK}-discord"
[channels.hook]
kind = "webhook"
url = "{hook}?token={MARK}-url"
secret = "{webhook_secret}"
"#,
        broker = embedded_broker(),
        key = key_file.display(),
        masto = masto_srv.url,
        hook = hook.url,
    );
    let cfg = write_config(dir.path(), &format!("username = \"bullhorn\"\npassword = \"{MARK}-mqtt-password\""), &body);
    // The admin token, set in the config, and a port the test knows (the [admin] section
    // is the helper's).
    let admin_port = free_port();
    let text = std::fs::read_to_string(&cfg).expect("config");
    let text = text.replace(
        "[admin]\nlisten = \"127.0.0.1:0\"",
        &format!("[admin]\nlisten = \"127.0.0.1:{admin_port}\"\ntoken = \"{MARK}-admin-token-0123456789\""),
    );
    std::fs::write(&cfg, text).expect("config");
    let config = bullhorn::config::load(&cfg).expect("config");
    assert!(!format!("{config:?}").contains(MARK), "Debug of the config shows a secret");

    let mut daemon = Daemon::start(&cfg);
    daemon.wait_ready(admin_port, true).await;
    send_raw(&cfg, "cad/a/events", event("L-1", 1, "missing_child", "AMBER ALERT: test of the log")).await;
    send_raw(&cfg, "cad/a/events", "{not json").await;
    send_raw(&cfg, "signed/x", event("L-2", 1, "wanted", "unsigned")).await;
    let http = bullhorn::channel::http::client().expect("client");
    let admin = format!("127.0.0.1:{admin_port}");
    let r =
        http.get(format!("http://{admin}/api/status")).bearer_auth("a-wrong-token-guess").send().await.expect("api");
    assert_eq!(r.status().as_u16(), 401);
    let body = r.text().await.unwrap_or_default();
    assert!(!body.contains(MARK));
    // Every channel failed at least once, in its own way.
    let log = || daemon.log();
    eventually(WAIT, || {
        let l = log();
        (l.contains("refused the channel's credentials")
            && l.matches("delivery failed").count() >= 1
            && l.contains("connection failed"))
        .then_some(())
    })
    .await
    .unwrap_or_else(|| panic!("expected the channels to fail; log:\n{}", log()));
    // (Refused credentials pause the channel for the retry backoff, 50 ms here: it may
    // have tried again already.)
    assert!(!masto.common.hits_to("POST", "/api/v1/statuses").is_empty(), "mastodon was called");

    let check = Command::new(env!("CARGO_BIN_EXE_bullhorn"))
        .arg("--config")
        .arg(&cfg)
        .args(["check", "--online"])
        .output()
        .expect("check --online");
    let status = Command::new(env!("CARGO_BIN_EXE_bullhorn"))
        .arg("--config")
        .arg(&cfg)
        .arg("--admin-url")
        .arg(format!("http://{admin}"))
        .args(["status", "--json"])
        .output()
        .expect("status");
    assert!(status.status.success(), "{}", String::from_utf8_lossy(&status.stderr));
    assert!(daemon.terminate(), "clean exit");

    let log = daemon.log();
    assert!(log.contains("wrong token"), "the refused API call is logged");
    for (what, text) in [
        ("daemon log", log.as_str()),
        ("check --online stdout", &String::from_utf8_lossy(&check.stdout)),
        ("check --online stderr", &String::from_utf8_lossy(&check.stderr)),
        ("status output", &String::from_utf8_lossy(&status.stdout)),
    ] {
        if let Some(at) = text.find(MARK) {
            let start = at.saturating_sub(200);
            panic!("a secret in the {what}: …{}…", &text[start..(at + 60).min(text.len())]);
        }
    }
}
