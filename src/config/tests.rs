use std::path::PathBuf;

use secrecy::SecretString;

use super::*;

/// A minimal valid config, with an external broker so nothing is started.
pub(crate) const MINIMAL: &str = r#"
[mqtt]
url = "mqtt://127.0.0.1:1"
[[mqtt.subscribe]]
topic = "cad/+/events"
format = "json"
[events.missing_child]
priority = "critical"
[events.road_closure]
[channels.console]
kind = "console"
"#;

/// Write `toml` (and a default template) to a temp dir and load it with `env`.
pub(crate) fn load_str_env(toml: &str, env: &[(&str, &str)]) -> (tempfile::TempDir, Result<Config, ConfigErrors>) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("bullhorn.toml");
    std::fs::write(&path, toml).expect("write config");
    std::fs::create_dir_all(dir.path().join("templates")).expect("templates dir");
    std::fs::write(dir.path().join("templates/default.txt"), "{{ headline }}").expect("template");
    let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
    let result = load_with_env(&path, env);
    (dir, result)
}

pub(crate) fn load_str(toml: &str) -> (tempfile::TempDir, Config) {
    let (dir, result) = load_str_env(toml, &[]);
    (dir, result.unwrap_or_else(|e| panic!("config should load: {e}")))
}

fn errors(toml: &str) -> Vec<ConfigError> {
    let (_dir, result) = load_str_env(toml, &[]);
    result.expect_err("config should be refused").errors
}

fn has(errors: &[ConfigError], path: &str, needle: &str) -> bool {
    errors.iter().any(|e| e.path == path && e.message.contains(needle))
}

#[test]
fn shipped_config_is_valid() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/bullhorn.toml");
    let c = load_with_env(&path, Vec::new()).unwrap_or_else(|e| panic!("{e}"));
    assert!(c.broker.enabled);
    assert_eq!(c.mqtt.endpoint.to_string(), "mqtt://127.0.0.1:1883", "client URL derived from the broker");
    assert_eq!(c.events["missing_child"].priority, Priority::Critical);
    assert!(c.channels.contains_key("console") && c.channels.contains_key("log"));
    assert!(c.templates_dir.ends_with("config/templates"));
}

#[test]
fn minimal_config_takes_defaults() {
    let (_d, c) = load_str(MINIMAL);
    assert_eq!(c.mqtt.client_id, "bullhorn");
    assert_eq!(c.mqtt.protocol, Protocol::V5);
    assert_eq!(c.mqtt.max_payload_bytes, 256 * 1024);
    assert_eq!(c.store.path, PathBuf::from("data/bullhorn.db"));
    assert_eq!(c.events["road_closure"].priority, Priority::Normal);
    assert_eq!(c.events["road_closure"].channels, ChannelSelector::All);
    assert_eq!(c.events["road_closure"].templates, "road_closure");
    assert!(c.channels["console"].enabled && c.channels["console"].public);
}

#[test]
fn every_unknown_key_is_reported_with_its_path() {
    let errs = errors(&format!(
        "{MINIMAL}\n[store]\npathh = \"x\"\n[channels.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nurll = \"typo\"\n[bogus]\na = 1\n"
    )
    .replace("priority = \"critical\"", "priority = \"critical\"\nprioritty = \"low\""));
    assert!(has(&errs, "store.pathh", "unknown key"), "{errs:?}");
    assert!(has(&errs, "channels.hook.urll", "unknown key"), "{errs:?}");
    assert!(has(&errs, "events.missing_child.prioritty", "unknown key"), "{errs:?}");
    assert!(has(&errs, "bogus", "unknown section"), "{errs:?}");
}

#[test]
fn type_errors_name_the_key_and_the_problem() {
    let errs = errors(&format!(
        "{MINIMAL}\n[delivery]\nretry_base = \"soon\"\n[channels.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nrate = \"lots\"\n"
    ));
    assert!(has(&errs, "delivery.retry_base", "invalid duration"), "{errs:?}");
    assert!(has(&errs, "channels.hook.rate", "invalid rate"), "{errs:?}");
}

#[test]
fn all_problems_are_reported_together() {
    let toml = r#"
[mqtt]
url = "http://wrong.example"
[[mqtt.subscribe]]
topic = "$share/group/cad/#"
format = "json"
[events.missing_child]
channels = ["nope"]
[channels.hook]
kind = "carrier_pigeon"
"#;
    let errs = errors(toml);
    assert!(has(&errs, "mqtt.url", "unsupported scheme"), "{errs:?}");
    assert!(has(&errs, "mqtt.subscribe[0].topic", "shared subscription"), "{errs:?}");
    assert!(has(&errs, "events.missing_child.channels", "unknown channel \"nope\""), "{errs:?}");
    assert!(has(&errs, "channels.hook.kind", "unknown channel kind"), "{errs:?}");
}

#[test]
fn environment_overrides_nested_keys() {
    let env = [
        ("BULLHORN__MQTT__CLIENT_ID", "sheriff-1"),
        ("BULLHORN__CHANNELS__CONSOLE__ENABLED", "false"),
        ("BULLHORN__MQTT__RECEIVE_MAXIMUM", "50"),
        ("BULLHORN_CONFIG", "ignored.toml"),
    ];
    let (_d, c) = load_str_env(MINIMAL, &env);
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.mqtt.client_id, "sheriff-1");
    assert!(!c.channels["console"].enabled);
    assert_eq!(c.mqtt.receive_maximum, 50);
}

#[test]
fn embedded_broker_derives_the_client_url_and_refuses_a_different_one() {
    let toml = MINIMAL.replace("url = \"mqtt://127.0.0.1:1\"\n", "")
        + "\n[broker]\nenabled = true\nlisten = \"0.0.0.0:18830\"\nallow_remote = true\n";
    let (_d, c) = load_str(&toml);
    assert_eq!(c.mqtt.endpoint.to_string(), "mqtt://127.0.0.1:18830");

    let errs = errors(&(MINIMAL.to_owned() + "\n[broker]\nenabled = true\nlisten = \"127.0.0.1:18830\"\n"));
    assert!(has(&errs, "mqtt.url", "differs from the embedded broker"), "{errs:?}");

    let errs = errors(&MINIMAL.replace("url = \"mqtt://127.0.0.1:1\"\n", ""));
    assert!(has(&errs, "mqtt.url", "required when the embedded broker is disabled"), "{errs:?}");
}

#[test]
fn the_embedded_broker_and_the_admin_server_are_not_exposed_beyond_loopback_without_a_word() {
    let broker = MINIMAL.replace("url = \"mqtt://127.0.0.1:1\"\n", "")
        + "\n[broker]\nenabled = true\nlisten = \"0.0.0.0:18830\"\n";
    let errs = errors(&broker);
    assert!(has(&errs, "broker.listen", "asks for no password"), "{errs:?}");
    let errs = errors(&(MINIMAL.to_owned() + "\n[admin]\nlisten = \"192.0.2.7:9180\"\n"));
    assert!(has(&errs, "admin.listen", "plain HTTP"), "{errs:?}");
    let (_d, c) = load_str(&(MINIMAL.to_owned() + "\n[admin]\nlisten = \"[::]:9180\"\nallow_remote = true\n"));
    assert!(c.admin.allow_remote, "an explicit yes is taken (and warned about at start)");
    let (_d, c) = load_str(&(MINIMAL.to_owned() + "\n[admin]\nlisten = \"[::1]:9180\"\n"));
    assert!(!c.admin.allow_remote, "loopback needs no consent");
}

#[test]
fn secrets_come_from_files_or_env_and_never_print() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("hook.secret");
    std::fs::write(&secret_file, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw\n").expect("write");
    let toml = format!(
        "{MINIMAL}\n[channels.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret_file = \"{}\"\n",
        secret_file.display()
    );
    let (_d, c) = load_str(&toml);
    let ChannelKind::Webhook(WebhookSettings { key: Some(k), .. }) = &c.channels["hook"].kind else {
        panic!("webhook with secret")
    };
    let decoded = WebhookKey::decode(&SecretString::from("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")).expect("key");
    assert_eq!(k.expose(), decoded.expose());
    assert!(WebhookKey::decode(&SecretString::from("whsec_AAAA")).is_err(), "too short");
    assert!(WebhookKey::decode(&SecretString::from("whsec_not base64!")).is_err(), "not base64");
    assert!(!format!("{c:?}").contains("MfKQ9r8"), "Debug must redact secrets");

    let env = [("BULLHORN__MQTT__USERNAME", "bh"), ("BULLHORN__MQTT__PASSWORD", "hunter2-long-password")];
    let (_d, c) = load_str_env(MINIMAL, &env);
    let c = c.unwrap_or_else(|e| panic!("{e}"));
    assert!(c.mqtt.password.is_some());
    assert!(!format!("{c:?}").contains("hunter2"), "Debug must redact secrets");

    let errs = errors(&format!(
        "{MINIMAL}\n[channels.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nsecret_file = \"/nonexistent/secret\"\n"
    ));
    assert!(has(&errs, "channels.hook.secret_file", "cannot read secret file"), "{errs:?}");
}

#[test]
fn webhook_urls_never_print_their_path() {
    let toml = format!(
        "{MINIMAL}\n[channels.slack]\nkind = \"webhook\"\nurl = \"https://hooks.slack.example/services/T00/B00/XXXXSECRETXXXX\"\n"
    );
    let (_d, c) = load_str(&toml);
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("XXXXSECRETXXXX"), "{dbg}");
    assert!(dbg.contains("https://hooks.slack.example/**REDACTED**"), "{dbg}");
}

#[test]
fn quota_and_reserve() {
    let toml = format!(
        "{MINIMAL}\n[channels.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nrate = \"300/3h\"\nreserve = \"20%\"\n"
    );
    let (_d, c) = load_str(&toml);
    assert_eq!(
        c.channels["hook"].quota,
        Some(Quota { limit: 300, window: Duration::from_secs(3 * 3600), reserve: 60 })
    );

    let toml = format!(
        "{MINIMAL}\n[channels.hook]\nkind = \"webhook\"\nurl = \"http://127.0.0.1:9/\"\nrate = \"2/1h\"\nreserve = 2\n"
    );
    assert!(has(&errors(&toml), "channels.hook.reserve", "whole quota"));
}

#[test]
fn concurrency_is_the_platforms_unless_the_channel_sets_it() {
    let chan = |kind: &str, extra: &str| format!("{MINIMAL}\n[channels.c]\nkind = \"{kind}\"\n{extra}\n");
    let (_d, c) = load_str(&chan("webhook", "url = \"http://127.0.0.1:9/\""));
    assert_eq!(c.channels["c"].concurrency, 8);
    let (_d, c) = load_str(&chan("console", ""));
    assert_eq!(c.channels["c"].concurrency, 1);
    let (_d, c) = load_str(&chan("console", "concurrency = 3"));
    assert_eq!(c.channels["c"].concurrency, 3);
    for bad in ["0", "257"] {
        let toml = chan("console", &format!("concurrency = {bad}"));
        assert!(has(&errors(&toml), "channels.c.concurrency", "from 1 to 256"), "{bad}");
    }
}

#[test]
fn credentials_expire_is_a_date_in_the_agency_zone_or_a_time() {
    let chan = |v: &str| {
        format!(
            "{MINIMAL}\n[agency]\ntime_zone = \"America/Chicago\"\n[channels.x]\nkind = \"console\"\ncredentials_expire = \"{v}\"\n"
        )
    };
    let (_d, c) = load_str(&chan("2027-01-15"));
    assert_eq!(c.channels["x"].credentials_expire, "2027-01-15T06:00:00Z".parse().ok(), "midnight in Chicago");
    let (_d, c) = load_str(&chan("2027-01-15T09:30:00-05:00"));
    assert_eq!(c.channels["x"].credentials_expire, "2027-01-15T14:30:00Z".parse().ok());
    assert!(has(&errors(&chan("next month")), "channels.x.credentials_expire", "neither a date"));
    assert_eq!(load_str(MINIMAL).1.channels["console"].credentials_expire, None);
}

#[test]
fn a_missing_file_is_a_clear_error() {
    let e = load(Path::new("/nonexistent/bullhorn.toml")).expect_err("missing");
    assert!(e.to_string().contains("config file not found"), "{e}");
}

/// Every platform kind with all it needs, secrets inline, as files and from the
/// environment.
const ALL_PLATFORMS: &str = r#"
[channels.x]
kind = "x"
consumer_key = "ck"
consumer_secret = "cs-SECRET"
access_token = "at"
access_token_secret_file = "SECRETFILE"
username = "@RuizSheriff"
[channels.x2]
kind = "x"
client_id = "cid"
refresh_token_file = "SECRETFILE"
[channels.masto]
kind = "mastodon"
base_url = "https://mastodon.example"
[channels.bsky]
kind = "bluesky"
identifier = "@rcso.bsky.social"
app_password = "app-SECRET"
[channels.fb]
kind = "facebook"
page_id = "1122"
access_token = "fb-SECRET"
[channels.ig]
kind = "instagram"
user_id = "1784"
access_token = "ig-SECRET"
[channels.th]
kind = "threads"
user_id = "7654"
access_token = "th-SECRET"
[channels.tg]
kind = "telegram"
bot_token = "71:tg-SECRET"
chat_id = "@rcso_alerts"
silent = true
[channels.discord]
kind = "discord"
webhook_url = "https://discord.com/api/webhooks/1/discord-SECRET"
[channels.slack]
kind = "slack"
bot_token = "xoxb-SECRET"
channel = "C024BE91L"
[channels.slackhook]
kind = "slack"
webhook_url = "https://hooks.slack.com/services/T0/B0/slack-SECRET"
[channels.teams]
kind = "teams"
webhook_url = "https://prod.westus.logic.azure.com/workflows/1/triggers/manual/paths/invoke?sig=teams-SECRET"
[channels.nd]
kind = "nextdoor"
access_token = "nd-SECRET"
group_ids = ["g1"]
[channels.sms]
kind = "sms"
account_sid = "AC123"
auth_token = "sms-SECRET"
from = "+15555550100"
to = ["+15555550101", "+15555550102"]
rate = "10/1s"
"#;

#[test]
fn every_platform_kind_loads_with_its_defaults_and_never_shows_a_secret() {
    let dir = tempfile::tempdir().expect("tempdir");
    let secret_file = dir.path().join("secret");
    std::fs::write(&secret_file, "file-SECRET\n").expect("write");
    let toml = format!("{MINIMAL}{}", ALL_PLATFORMS.replace("SECRETFILE", &secret_file.display().to_string()));
    let (_d, result) = load_str_env(&toml, &[("BULLHORN__CHANNELS__MASTO__ACCESS_TOKEN", "masto-SECRET")]);
    let c = result.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(c.channels.len(), 15);
    let platform = |n: &str| c.channels[n].platform();
    assert_eq!(platform("x"), Platform::X);
    assert_eq!(platform("slackhook"), Platform::Slack);
    // The platform's own limit applies unless the channel sets one.
    assert_eq!(c.channels["masto"].quota.map(|q| (q.limit, q.window.as_secs())), Some((300, 3 * 3600)));
    assert_eq!(c.channels["ig"].quota.map(|q| (q.limit, q.window.as_secs())), Some((50, 24 * 3600)));
    assert_eq!(c.channels["sms"].quota.map(|q| q.limit), Some(10));
    assert!(c.channels["console"].quota.is_none());
    match &c.channels["x"].kind {
        ChannelKind::X(s) => {
            assert_eq!(s.base_url.as_str(), "https://api.x.com/");
            assert_eq!(s.username.as_deref(), Some("RuizSheriff"));
            assert!(matches!(s.auth, XAuth::OAuth1 { .. }));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(&c.channels["x2"].kind, ChannelKind::X(XSettings { auth: XAuth::OAuth2(_), .. })));
    assert!(
        matches!(&c.channels["fb"].kind, ChannelKind::Facebook(m) if m.base_url.as_str() == "https://graph.facebook.com/v23.0")
    );
    assert!(matches!(&c.channels["sms"].kind, ChannelKind::Sms(s) if s.to.len() == 2 && s.auth_user == "AC123"));
    let shown = format!("{:?}", c.channels);
    assert!(!shown.contains("SECRET"), "a secret in Debug output: {shown}");
}

#[test]
fn missing_credentials_are_named_per_channel() {
    let toml = format!(
        "{MINIMAL}{}",
        r#"
[channels.x]
kind = "x"
consumer_key = "ck"
[channels.masto]
kind = "mastodon"
[channels.bsky]
kind = "bluesky"
identifier = "rcso.bsky.social"
[channels.tg]
kind = "telegram"
bot_token = "t"
[channels.slack]
kind = "slack"
channel = "C1"
[channels.sms]
kind = "sms"
account_sid = "AC1"
auth_token = "t"
to = ["5550100"]
[channels.ig]
kind = "instagram"
access_token = "t"
token = "typo"
[channels.nope]
kind = "myspace"
"#
    );
    let e = errors(&toml);
    assert!(has(&e, "channels.x", "OAuth 1.0a needs consumer_key, consumer_secret"), "{e:?}");
    assert!(has(&e, "channels.masto.base_url", "instance's address"), "{e:?}");
    assert!(has(&e, "channels.masto", "token or token_file"), "{e:?}");
    assert!(has(&e, "channels.bsky", "app_password"), "{e:?}");
    assert!(has(&e, "channels.tg", "chat_id"), "{e:?}");
    assert!(has(&e, "channels.slack", "bot_token"), "{e:?}");
    assert!(has(&e, "channels.sms.to[0]", "E.164"), "{e:?}");
    assert!(has(&e, "channels.sms", "from (a sender number) or messaging_service_sid"), "{e:?}");
    assert!(has(&e, "channels.ig", "user_id"), "{e:?}");
    assert!(has(&e, "channels.ig.token", "unknown key"), "{e:?}");
    assert!(has(&e, "channels.nope.kind", "known: x, mastodon, bluesky"), "{e:?}");
}

#[test]
fn an_email_channel_needs_tls_beyond_loopback_and_keeps_passwords_out_of_its_url() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = dir.path().join("ca.pem");
    let not_pem = dir.path().join("not.pem");
    let cert = rcgen::generate_simple_self_signed(vec!["mail.sheriff.example".to_owned()]).expect("cert");
    std::fs::write(&ca, cert.cert.pem()).expect("ca");
    std::fs::write(&not_pem, "hello").expect("not pem");
    let good = format!(
        r#"{MINIMAL}
[channels.press]
kind = "email"
url = "smtps://mail.sheriff.example"
username = "alerts"
password = "smtp-SECRET"
ca_file = "{}"
from = "Sheriff <alerts@sheriff.example>"
to = ["desk@news.example", "Dispatch <dispatch@county.example>"]
one_message = true
[channels.relay]
kind = "email"
url = "smtp://127.0.0.1:25"
tls = "none"
from = "alerts@sheriff.example"
to = ["eoc@county.example"]
"#,
        ca.display()
    );
    let (_d, c) = load_str(&good);
    let ChannelKind::Email(s) = &c.channels["press"].kind else { panic!("email") };
    assert_eq!((s.host.as_str(), s.port, s.tls), ("mail.sheriff.example", 465, EmailTls::Implicit));
    assert!(s.ca_pem.is_some() && s.one_message && s.to.len() == 2);
    assert!(!format!("{s:?}").contains("smtp-SECRET"), "Debug keeps the password out");
    assert_eq!(c.channels["press"].quota.map(|q| (q.limit, q.window.as_secs())), Some((30, 60)), "the default rate");
    let ChannelKind::Email(r) = &c.channels["relay"].kind else { panic!("email") };
    assert_eq!((r.port, r.tls, r.username.is_none()), (25, EmailTls::None, true));

    let bad = format!(
        r#"{MINIMAL}
[channels.a]
kind = "email"
url = "smtp://mail.sheriff.example"
tls = "none"
from = "alerts@sheriff.example"
to = ["desk@news.example"]
[channels.b]
kind = "email"
url = "smtp://alerts:hunter2@mail.sheriff.example"
from = "not an address"
to = []
[channels.c]
kind = "email"
url = "https://mail.sheriff.example"
username = "alerts"
to = ["desk@news"]
[channels.d]
kind = "email"
url = "smtp://mail.sheriff.example"
ca_file = "{}"
from = "alerts@sheriff.example"
to = ["desk@news.example", "Desk <desk@news.example>"]
"#,
        not_pem.display()
    );
    let e = errors(&bad);
    assert!(has(&e, "channels.a.tls", "only for a relay on this host"), "{e:?}");
    assert!(has(&e, "channels.b.url", "not in the URL"), "{e:?}");
    assert!(!e.iter().any(|e| e.message.contains("hunter2")), "the password is not repeated: {e:?}");
    assert!(has(&e, "channels.b.from", "is not an email address"), "{e:?}");
    assert!(has(&e, "channels.b.to", "at least one recipient"), "{e:?}");
    assert!(has(&e, "channels.c.url", "smtp://host:port"), "{e:?}");
    assert!(has(&e, "channels.c", "password (or password_file)"), "{e:?}");
    assert!(has(&e, "channels.c.from", "sender address is required"), "{e:?}");
    assert!(has(&e, "channels.d.ca_file", "no PEM certificate"), "{e:?}");
    assert!(has(&e, "channels.d.to[1]", "listed twice"), "{e:?}");
}

#[test]
fn the_example_of_every_channel_kind_is_valid() {
    let example =
        std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("config/examples/channels.toml"))
            .expect("example");
    let creds = tempfile::tempdir().expect("tempdir");
    for line in example.lines() {
        if let Some(name) = line.split("${CREDENTIALS_DIRECTORY}/").nth(1).and_then(|r| r.split('"').next()) {
            let value = if name.ends_with("-url") { "https://hooks.example/secret-path\n" } else { "a-secret\n" };
            std::fs::write(creds.path().join(name), value).expect("credential");
        }
    }
    let toml = format!("{MINIMAL}{}", example.replace("${CREDENTIALS_DIRECTORY}", &creds.path().display().to_string()));
    let (_d, c) = load_str(&toml);
    assert_eq!(c.channels.len(), 14, "console plus the twelve platforms, plus email");
}

#[test]
fn subscriptions_take_type_tables_and_mappings_and_say_what_is_wrong() {
    let subs = r#"
[[mqtt.subscribe]]
topic = "cap/#"
format = "cap"
types = { LEW = "road_closure" }
[[mqtt.subscribe]]
topic = "cad/x/#"
format = "mapped"
types = { MVA = "road_closure" }
[mqtt.subscribe.mapping]
id = "/id"
type = "/type"
fields = { units = "/units" }
"#;
    let (_d, c) = load_str(&MINIMAL.replace("[events.missing_child]", &format!("{subs}\n[events.missing_child]")));
    let cap = &c.mqtt.subscriptions[1];
    assert_eq!(cap.format, Format::Cap);
    assert_eq!(cap.options.types.get("LEW").map(String::as_str), Some("road_closure"));
    assert!(c.mqtt.subscriptions[2].options.mapping.as_ref().is_some_and(|m| m.fields.contains_key("units")));

    let bad = r#"
[[mqtt.subscribe]]
topic = "cap/#"
format = "cap"
types = { LEW = "police_stuff" }
[[mqtt.subscribe]]
topic = "cad/x/#"
format = "mapped"
[[mqtt.subscribe]]
topic = "cad/y/#"
format = "mapped"
types = { MVA = "road_closure" }
[mqtt.subscribe.mapping]
type = "type"
typo = "/x"
[[mqtt.subscribe]]
topic = "eido/#"
format = "eido"
[mqtt.subscribe.mapping]
type = "/t"
"#;
    let e = errors(&MINIMAL.replace("[events.missing_child]", &format!("{bad}\n[events.missing_child]")));
    assert!(has(&e, "mqtt.subscribe[1].types.LEW", "no [events.police_stuff] rule"), "{e:?}");
    assert!(has(&e, "mqtt.subscribe[2].mapping", "needs a mapping"), "{e:?}");
    assert!(has(&e, "mqtt.subscribe[2].types", "needs a types table"), "{e:?}");
    assert!(has(&e, "mqtt.subscribe[3].mapping.typo", "unknown key"), "{e:?}");
    assert!(has(&e, "mqtt.subscribe[3].mapping.type", "not a JSON pointer"), "{e:?}");
    assert!(has(&e, "mqtt.subscribe[4].mapping", "only for format \"mapped\""), "{e:?}");
}

#[test]
fn approval_defaults_to_hold_for_cad_data_only() {
    let (_d, c) = load_str(MINIMAL);
    let rule = &c.events["missing_child"];
    assert_eq!(rule.approval_for(Format::Json), Approval::Auto);
    assert_eq!(rule.approval_for(Format::Cap), Approval::Auto);
    assert_eq!(rule.approval_for(Format::Eido), Approval::Hold);
    assert_eq!(rule.approval_for(Format::Mapped), Approval::Hold);
    let (_d, c) = load_str(&MINIMAL.replace("priority = \"critical\"", "priority = \"critical\"\napproval = \"auto\""));
    assert_eq!(c.events["missing_child"].approval_for(Format::Eido), Approval::Auto, "as configured");
}
