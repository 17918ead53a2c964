//! The email channel against a real SMTP server (aiosmtpd, `support/smtp.rs`): STARTTLS
//! with a private CA and AUTH, implicit TLS, a plain relay on loopback; what arrives is
//! parsed by Python's email package, not by us.

use std::time::Duration;

use bullhorn::channel::{Channel, Outcome, PostRef, Verified};
use bullhorn::config::{ChannelConfig, ChannelKind, EmailSettings, EmailTls};
use secrecy::SecretString;

use crate::support::platforms::{context, job, png, request};
use crate::support::smtp::{Options, Security, Smtp, parts};

const USER: &str = "alerts@sheriff.example";
const PASSWORD: &str = "smtp-SECRET-9f3a";

fn settings(port: u16, tls: EmailTls, ca: Option<&str>, to: &[&str]) -> EmailSettings {
    EmailSettings {
        host: "127.0.0.1".to_owned(),
        port,
        tls,
        ca_pem: ca.map(|c| c.as_bytes().to_vec()),
        username: None,
        password: None,
        from: "Riverside County Sheriff <alerts@sheriff.example>".parse().expect("from"),
        to: to.iter().map(|t| t.parse().expect("to")).collect(),
        reply_to: Some("PIO desk <pio@sheriff.example>".parse().expect("reply_to")),
        one_message: false,
    }
}

fn channel(s: EmailSettings, dir: &std::path::Path, timeout: Duration) -> Channel {
    let mut cfg = ChannelConfig::new("press", ChannelKind::Email(s));
    cfg.quota = None;
    Channel::build(&cfg, &context(dir, timeout))
}

fn with_auth(mut s: EmailSettings, password: &str) -> EmailSettings {
    s.username = Some(USER.to_owned());
    s.password = Some(SecretString::from(password));
    s
}

/// A server that requires STARTTLS (a certificate from a private CA) and AUTH.
fn starttls_with_auth(dir: &std::path::Path) -> (crate::tls::Pki, Smtp) {
    let pki = crate::tls::pki();
    let opts = Options {
        tls: Security::StartTls,
        cert: Some(pki.server.clone()),
        auth: Some((USER.to_owned(), PASSWORD.to_owned())),
        fail_data: 0,
    };
    let server = Smtp::start(dir, &opts);
    (pki, server)
}

#[tokio::test]
async fn starttls_and_auth_the_amber_alert_arrives_whole_and_its_update_threads_under_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, server) = starttls_with_auth(dir.path());
    let to = ["desk@news.example", "nobody@news.example", "greylist@partner.example"];
    let s = with_auth(settings(server.port, EmailTls::StartTls, Some(&pki.ca), &to), PASSWORD);
    let ch = channel(s, dir.path(), Duration::from_secs(5));
    assert_eq!(ch.caps().targets, 3, "one message, and one step, per recipient");

    // Who it signs in as, without sending anything.
    match ch.verify().await {
        Verified::Ok(who) => assert!(who.contains("alerts@sheriff.example") && who.contains("TLS"), "{who}"),
        other => panic!("{other:?}"),
    }
    assert!(server.messages().is_empty(), "check --online sends nothing");

    let alert = job(1, "AMBER ALERT: Sofia Ramirez, 6, abducted in Riverside.\nCall 911.");
    let media = [png()];
    let mut req = request(&alert, None, &media);
    req.post.subject = Some("AMBER ALERT: Sofia Ramirez, 6");
    req.post.html = Some("<html><body><h1>AMBER ALERT</h1><p>Sofia Ramirez, 6 &amp; call 911.</p></body></html>");
    let original = match ch.send(&req).await.outcome {
        Outcome::Sent(p) => p,
        other => panic!("{other:?}"),
    };
    assert_eq!(original.id.as_deref(), Some("bh-key-1@sheriff.example"), "the Message-ID, from the idempotency key");
    let got = server.wait_for(1, Duration::from_secs(5)).await;
    let m = &got[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!(["desk@news.example"]));
    assert_eq!(m["mail_from"], "alerts@sheriff.example");
    assert_eq!((m["tls"].as_bool(), m["auth"].as_bool()), (Some(true), Some(true)), "{m}");
    assert_eq!(m["subject"], "AMBER ALERT: Sofia Ramirez, 6");
    assert_eq!(m["message_id"], "<bh-key-1@sheriff.example>");
    assert_eq!(m["to"], "desk@news.example");
    assert_eq!(m["reply_to"], "PIO desk <pio@sheriff.example>");
    assert_eq!(m["from"], "Riverside County Sheriff <alerts@sheriff.example>");
    let text = parts(m, "text/plain");
    assert!(text[0]["text"].as_str().is_some_and(|t| t.contains("Call 911.") && t.contains("[Photo: Photo of Sofia")));
    let html = parts(m, "text/html");
    let html = html[0]["text"].as_str().expect("html");
    assert!(html.contains("<h1>AMBER ALERT</h1>") && html.contains("src=\"cid:photo1\""), "{html}");
    assert!(html.contains("alt=\"Photo of Sofia Ramirez, 6\""), "{html}");
    let image = parts(m, "image/png");
    assert_eq!(image[0]["cid"], "<photo1>");
    assert_eq!(image[0]["description"], "Photo of Sofia Ramirez, 6", "the alt text goes with the image");
    assert_eq!(image[0]["size"], png().bytes.len());

    // A recipient the server does not know: refused for good, that recipient only.
    let mut req = request(&alert, None, &media);
    req.target = 1;
    req.step = 1;
    match ch.send(&req).await.outcome {
        Outcome::Permanent(m) => assert!(m.contains("550") && m.contains("nobody@news.example"), "{m}"),
        other => panic!("{other:?}"),
    }
    // Greylisted: that recipient is tried again (with backoff, not a pause of the
    // channel), then it goes.
    req.target = 2;
    req.step = 2;
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Retry(m) if m.contains("RCPT") && m.contains("451")));
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Sent(_)));
    let got = server.wait_for(2, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 2, "nothing went to the unknown recipient");
    assert_eq!(got[1]["message_id"], got[0]["message_id"], "one Message-ID for every copy of the alert");

    // The update threads under the original.
    let update = job(2, "UPDATE: Sofia Ramirez was found safe.");
    let req = request(&update, Some(&original), &[]);
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Sent(_)));
    let got = server.wait_for(3, Duration::from_secs(5)).await;
    let u = &got[2];
    assert_eq!(u["in_reply_to"], "<bh-key-1@sheriff.example>");
    assert_eq!(u["references"], "<bh-key-1@sheriff.example>");
    assert_eq!(u["subject"], "UPDATE: Sofia Ramirez was found safe.", "without a subject of its own: the first line");
    assert!(parts(u, "text/html").is_empty(), "no HTML template, no HTML part");

    // A wrong password: the channel's credentials are refused.
    let bad = with_auth(settings(server.port, EmailTls::StartTls, Some(&pki.ca), &to), "wrong");
    let bad = channel(bad, dir.path(), Duration::from_secs(5));
    match bad.send(&request(&alert, None, &[])).await.outcome {
        Outcome::Credentials(m) => assert!(m.contains("535") && !m.contains("wrong"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(bad.verify().await, Verified::Failed(m) if m.contains("535")));
    // A server certificate from a CA it was not told of.
    let untrusted = channel(settings(server.port, EmailTls::StartTls, None, &to), dir.path(), Duration::from_secs(5));
    match untrusted.send(&request(&alert, None, &[])).await.outcome {
        Outcome::Credentials(m) => assert!(m.contains("ca_file"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.messages().len(), 3);
}

#[tokio::test]
async fn implicit_tls_one_message_to_everyone_as_bcc() {
    let dir = tempfile::tempdir().expect("tempdir");
    let pki = crate::tls::pki();
    let opts = Options { tls: Security::Implicit, cert: Some(pki.server.clone()), auth: None, fail_data: 0 };
    let server = Smtp::start(dir.path(), &opts);
    let to = ["desk@news.example", "nobody@news.example", "dispatch@county.example"];
    let mut s = settings(server.port, EmailTls::Implicit, Some(&pki.ca), &to);
    s.one_message = true;
    let ch = channel(s, dir.path(), Duration::from_secs(5));
    assert_eq!(ch.caps().targets, 1);
    let alert = job(3, "Road closed: Main St between 1st and 4th.");
    let r = ch.send(&request(&alert, None, &[])).await;
    assert!(matches!(r.outcome, Outcome::Sent(_)), "{r:?}");
    assert!(r.note.as_deref().is_some_and(|n| n.contains("nobody@news.example") && n.contains("550")), "{r:?}");
    let got = server.wait_for(1, Duration::from_secs(5)).await;
    assert_eq!(got.len(), 1);
    let m = &got[0];
    assert_eq!(m["tls"], true);
    assert_eq!(m["rcpt_tos"], serde_json::json!(["desk@news.example", "dispatch@county.example"]));
    assert_eq!(m["to"], "Riverside County Sheriff <alerts@sheriff.example>", "recipients are not shown to each other");
    assert!(m["bcc_header"].is_null(), "{m}");
    assert_eq!(parts(m, "text/plain")[0]["text"].as_str().map(str::trim), Some(alert.text.as_str()));
}

#[tokio::test]
async fn a_plain_relay_on_loopback_and_how_failures_are_classified() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Smtp::start(dir.path(), &Options { fail_data: 1, ..Options::plain() });
    let alert = job(4, "Shelter in place: hazmat spill on Route 9.");

    // 451 after the message: nothing was accepted, the channel pauses, then it goes.
    let relay = channel(
        settings(server.port, EmailTls::None, None, &["eoc@county.example"]),
        dir.path(),
        Duration::from_secs(5),
    );
    assert!(
        matches!(relay.send(&request(&alert, None, &[])).await.outcome, Outcome::RetryAfter(_, m) if m.contains("451"))
    );
    assert!(server.messages().is_empty());
    assert!(matches!(relay.send(&request(&alert, None, &[])).await.outcome, Outcome::Sent(_)));
    assert_eq!(server.wait_for(1, Duration::from_secs(5)).await.len(), 1);

    // The message went but the connection dropped before its answer: unknown, not
    // "failed" (a resend may duplicate it).
    let lost = channel(
        settings(server.port, EmailTls::None, None, &["lost@county.example"]),
        dir.path(),
        Duration::from_secs(5),
    );
    match lost.send(&request(&alert, None, &[])).await.outcome {
        Outcome::Unknown(m) => assert!(m.contains("sent but not answered"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.wait_for(2, Duration::from_secs(5)).await.len(), 2, "it did arrive");

    // STARTTLS is required unless tls = "none": a server without it is never sent to.
    let strict = channel(
        settings(server.port, EmailTls::StartTls, None, &["eoc@county.example"]),
        dir.path(),
        Duration::from_secs(5),
    );
    match strict.send(&request(&alert, None, &[])).await.outcome {
        Outcome::Unavailable(m) => assert!(m.contains("STARTTLS"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(matches!(strict.verify().await, Verified::Failed(m) if m.contains("STARTTLS")));

    // A full mailbox: retried for that recipient.
    let full = channel(
        settings(server.port, EmailTls::None, None, &["full@county.example"]),
        dir.path(),
        Duration::from_secs(5),
    );
    assert!(matches!(full.send(&request(&alert, None, &[])).await.outcome, Outcome::Retry(m) if m.contains("452")));

    // Nobody listening: the server is unavailable, nothing was sent.
    let port = crate::support::free_port();
    let down =
        channel(settings(port, EmailTls::None, None, &["eoc@county.example"]), dir.path(), Duration::from_secs(2));
    assert!(matches!(down.send(&request(&alert, None, &[])).await.outcome, Outcome::Unavailable(_)));
    assert_eq!(server.messages().len(), 2);
}

/// An update of a delivery whose original is known: References names the whole thread.
#[tokio::test]
async fn a_correction_names_the_thread_it_belongs_to() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Smtp::start(dir.path(), &Options::plain());
    let ch = channel(
        settings(server.port, EmailTls::None, None, &["desk@news.example"]),
        dir.path(),
        Duration::from_secs(5),
    );
    let root = PostRef::id("bh-key-10@sheriff.example");
    let parent = PostRef::id("bh-key-11@sheriff.example");
    let fix = job(12, "CORRECTION: the road is open.");
    let mut req = request(&fix, Some(&parent), &[]);
    req.root = Some(&root);
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Sent(_)));
    let m = &server.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(m["in_reply_to"], "<bh-key-11@sheriff.example>");
    assert_eq!(m["references"], "<bh-key-10@sheriff.example> <bh-key-11@sheriff.example>");
}

/// The daemon, as a separate process with its log kept: an AMBER alert by MQTT reaches
/// every recipient the server knows (a greylisted one when tried again, an unknown one
/// recorded as refused), its update threads under it, `check --online` signs in without
/// sending, `test-channel` mails, and the password appears nowhere in the log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_mails_an_alert_and_its_update_and_never_logs_the_password() {
    use crate::support::daemon::Daemon;
    use crate::support::{count, embedded_broker, event, free_port, send_raw, write_config};

    let dir = tempfile::tempdir().expect("tempdir");
    let (pki, server) = starttls_with_auth(dir.path());
    let ca = crate::tls::write(dir.path(), "ca.pem", &pki.ca);
    let password_file = dir.path().join("smtp-password");
    std::fs::write(&password_file, format!("{PASSWORD}\n")).expect("password");
    let body = format!(
        r#"{broker}
[channels.press]
kind = "email"
url = "smtp://127.0.0.1:{port}"
ca_file = "{ca}"
username = "{USER}"
password_file = "{password}"
from = "Riverside County Sheriff <alerts@sheriff.example>"
to = ["desk@news.example", "nobody@news.example", "greylist@partner.example"]
"#,
        broker = embedded_broker(),
        port = server.port,
        password = password_file.display(),
    );
    let config = write_config(dir.path(), "", &body);
    let templates = dir.path().join("templates");
    std::fs::write(templates.join("email.subject.txt"), "{% if kind == 'update' %}UPDATE: {% endif %}{{ headline }}")
        .expect("subject");
    std::fs::write(templates.join("email.html"), "<html><body><h1>{{ headline }}</h1></body></html>").expect("html");
    let admin = free_port();
    let text = std::fs::read_to_string(&config).expect("config");
    std::fs::write(&config, text.replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{admin}\"")))
        .expect("config");

    // `check --online`: signed in over TLS, nothing sent.
    let check = std::process::Command::new(env!("CARGO_BIN_EXE_bullhorn"))
        .args(["--config", config.to_str().expect("utf-8"), "check", "--online"])
        .output()
        .expect("check");
    let said = format!("{}{}", String::from_utf8_lossy(&check.stdout), String::from_utf8_lossy(&check.stderr));
    assert!(check.status.success() && said.contains("signed in as"), "{said}");
    assert!(!said.contains(PASSWORD));
    assert!(server.messages().is_empty());

    // Everything logged, every crate's debug and trace lines included.
    let env = vec![("RUST_LOG".to_owned(), "trace".to_owned())];
    let mut daemon = Daemon::start_with_env(&config, env);
    daemon.wait_ready(admin, true).await;
    send_raw(&config, "cad/a/events", event("AMB-7", 1, "missing_child", "AMBER ALERT: Sofia Ramirez, 6")).await;
    let got = server.wait_for(2, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 2, "the known recipient at once, the greylisted one after its pause:\n{}", daemon.log());
    let to: Vec<&str> = got.iter().map(|m| m["rcpt_tos"][0].as_str().unwrap_or("")).collect();
    assert_eq!(to, ["desk@news.example", "greylist@partner.example"]);
    let first = &got[0];
    assert_eq!(first["subject"], "AMBER ALERT: Sofia Ramirez, 6");
    assert_eq!(
        parts(first, "text/html")[0]["text"].as_str().map(str::trim),
        Some("<html><body><h1>AMBER ALERT: Sofia Ramirez, 6</h1></body></html>")
    );
    let id = first["message_id"].as_str().expect("Message-ID").to_owned();
    assert_eq!(got[1]["message_id"], id.as_str());

    // The last step's outcome is committed just after the server's answer.
    let db = dir.path().join("bullhorn.db");
    let sent = "SELECT COUNT(*) FROM deliveries WHERE channel = 'press' AND state = 'sent'";
    let done = crate::support::eventually(Duration::from_secs(10), || (count(&db, sent) == 1).then_some(())).await;
    let attempts = attempts(&db);
    assert!(done.is_some(), "the delivery is done: {attempts:?}\n{}", daemon.log());
    let refused: Vec<_> = attempts
        .iter()
        .filter(|(o, d)| o == "dead" && d.contains("nobody@news.example") && d.contains("550"))
        .collect();
    assert_eq!(refused.len(), 1, "the unknown recipient is recorded as refused: {attempts:?}");

    let update = serde_json::json!({
        "id": "AMB-7", "revision": 2, "type": "missing_child", "status": "actual", "msg_type": "update",
        "headline": "Sofia Ramirez found safe"
    });
    send_raw(&config, "cad/a/events", update.to_string()).await;
    let got = server.wait_for(4, Duration::from_secs(20)).await;
    assert_eq!(got.len(), 4, "{}", daemon.log());
    for update in &got[2..] {
        assert_eq!(update["subject"], "UPDATE: Sofia Ramirez found safe");
        assert_eq!(update["in_reply_to"], id.as_str(), "threads under the alert");
        assert_eq!(update["references"], id.as_str());
    }

    // `test-channel` mails each recipient through the daemon's queue.
    let test = std::process::Command::new(env!("CARGO_BIN_EXE_bullhorn"))
        .args(["--config", config.to_str().expect("utf-8"), "--admin-url", &format!("http://127.0.0.1:{admin}")])
        .args(["test-channel", "press", "--public", "--text", "Test of the press desk list"])
        .output()
        .expect("test-channel");
    let said = format!("{}{}", String::from_utf8_lossy(&test.stdout), String::from_utf8_lossy(&test.stderr));
    assert!(test.status.success(), "{said}");
    let got = server.wait_for(6, Duration::from_secs(20)).await;
    let tests: Vec<&serde_json::Value> = got.iter().filter(|m| m["subject"] == "Test of the press desk list").collect();
    assert_eq!(tests.len(), 2, "both reachable recipients got the test: {said}");

    assert!(daemon.terminate(), "{}", daemon.log());
    let log = daemon.log();
    assert!(log.contains("press"), "the log is the daemon's: {log}");
    assert!(!log.contains(PASSWORD), "the password is never logged");
    // Nor as AUTH sends it: PLAIN is base64 of "\0user\0password", LOGIN of each.
    use base64::Engine as _;
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    for form in [b64(&format!("\0{USER}\0{PASSWORD}")), b64(PASSWORD)] {
        assert!(!log.contains(&form), "the password is never logged, not even in base64");
    }
}

/// lettre logs every SMTP line, AUTH included, when its `tracing` feature is on: it must
/// stay off (Cargo.toml says so; this holds it).
#[test]
fn lettre_is_built_without_its_tracing_feature() {
    let lock = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.lock")).expect("Cargo.lock");
    let lettre = lock.split("[[package]]").find(|p| p.contains("name = \"lettre\"")).expect("lettre in Cargo.lock");
    assert!(!lettre.contains("\"tracing"), "lettre depends on tracing:{lettre}");
}

/// A reload that edits the recipients mid-delivery: the delivery keeps the list its
/// first step saved, so nobody gets it twice and nobody is skipped.
#[tokio::test]
async fn a_delivery_keeps_the_recipients_it_began_with() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Smtp::start(dir.path(), &Options::plain());
    // Begun with a and b; the channel now lists only c.
    let ch =
        channel(settings(server.port, EmailTls::None, None, &["c@county.example"]), dir.path(), Duration::from_secs(5));
    let begun = std::collections::BTreeMap::from([(
        "to:0".to_owned(),
        "each\na@county.example\nDesk <b@county.example>".to_owned(),
    )]);
    assert_eq!(ch.caps().targets, 1);
    assert_eq!(ch.caps_for(&begun).targets, 2, "the steps of the list it began with");
    let alert = job(20, "Evacuation order for Zone 4.");
    let mut req = request(&alert, None, &[]);
    req.scratch = bullhorn::channel::Scratch::new(&begun, 1, None);
    req.step = 1;
    req.target = 1;
    assert!(matches!(ch.send(&req).await.outcome, Outcome::Sent(_)));
    let m = &server.wait_for(1, Duration::from_secs(5)).await[0];
    assert_eq!(m["rcpt_tos"], serde_json::json!(["b@county.example"]));
    assert_eq!(m["to"], "Desk <b@county.example>");
}

/// Every attempt's outcome and detail, oldest first.
fn attempts(db: &std::path::Path) -> Vec<(String, String)> {
    let conn = rusqlite::Connection::open(db).expect("open store");
    conn.busy_timeout(Duration::from_secs(5)).expect("busy timeout");
    let mut stmt =
        conn.prepare("SELECT COALESCE(outcome, ''), COALESCE(detail, '') FROM attempts ORDER BY id").expect("prepare");
    stmt.query_map([], |r| Ok((r.get(0)?, r.get(1)?))).expect("query").collect::<Result<_, _>>().expect("rows")
}
