use std::path::PathBuf;

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
        + "\n[broker]\nenabled = true\nlisten = \"0.0.0.0:18830\"\n";
    let (_d, c) = load_str(&toml);
    assert_eq!(c.mqtt.endpoint.to_string(), "mqtt://127.0.0.1:18830");

    let errs = errors(&(MINIMAL.to_owned() + "\n[broker]\nenabled = true\nlisten = \"127.0.0.1:18830\"\n"));
    assert!(has(&errs, "mqtt.url", "differs from the embedded broker"), "{errs:?}");

    let errs = errors(&MINIMAL.replace("url = \"mqtt://127.0.0.1:1\"\n", ""));
    assert!(has(&errs, "mqtt.url", "required when the embedded broker is disabled"), "{errs:?}");
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
    let ChannelKind::Webhook { secret: Some(s), .. } = &c.channels["hook"].kind else { panic!("webhook with secret") };
    assert_eq!(secrecy::ExposeSecret::expose_secret(s), "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw");
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
fn a_missing_file_is_a_clear_error() {
    let e = load(Path::new("/nonexistent/bullhorn.toml")).expect_err("missing");
    assert!(e.to_string().contains("config file not found"), "{e}");
}
