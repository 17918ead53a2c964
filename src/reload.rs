//! Hot reload: a new config and templates replace the running ones without a restart.
//!
//! Triggered by SIGHUP, or, when `[reload] watch = true`, by a change under the config's
//! directory or the templates dir (debounced; editors save by renaming a temporary file,
//! so the directory is watched, not the file). The new config and every template are
//! validated first; if anything is wrong the running config stays and the problems are
//! logged.
//!
//! What changes live: event rules, templates, the agency profile, delivery settings and
//! channels (added channels start, removed or disabled ones stop with their queued
//! deliveries kept in the store, changed ones keep their rate-limit window). What needs
//! a restart: `[mqtt]`, `[broker]`, `[store]`, `[admin]`, `[log]`, `[media]`; a change there is
//! logged and the running values stay. Deliveries already queued keep the text they were
//! rendered with.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use secrecy::{ExposeSecret as _, SecretString};
use tokio::sync::mpsc;

use crate::config::Config;
use crate::render::Renderer;

/// The config and templates in force, swapped as a whole on reload.
#[derive(Debug)]
pub struct Live {
    pub config: Arc<Config>,
    pub renderer: Arc<Renderer>,
}

pub type Shared = Arc<ArcSwap<Live>>;

/// A reloaded config with the sections that cannot change live taken from the running
/// one.
#[derive(Debug)]
pub struct Merged {
    pub config: Config,
    /// Sections that changed but need a restart (their running values stay).
    pub kept: Vec<&'static str>,
    /// Changes that do apply live although their section otherwise needs a restart
    /// (a subscription's rotated signing key).
    pub applied: Vec<String>,
}

/// The secrets of a section, as digests (compared, never shown): `Debug` prints them
/// redacted, so a rotated key would otherwise look like no change at all.
fn secrets<'a>(list: impl IntoIterator<Item = (String, Option<&'a SecretString>)>) -> Vec<(String, Option<String>)> {
    list.into_iter().map(|(k, s)| (k, s.map(|s| crate::digest::sha256_hex(s.expose_secret().as_bytes())))).collect()
}

fn mqtt_secrets(m: &crate::config::MqttConfig) -> Vec<(String, Option<String>)> {
    let keys =
        m.subscriptions.iter().map(|s| (format!("signing key of {}", s.topic), s.signing_key.as_ref().map(|k| &k.0)));
    secrets(std::iter::once(("password".to_owned(), m.password.as_ref())).chain(keys))
}

fn media_secrets(m: &crate::config::MediaConfig) -> Vec<(String, Option<String>)> {
    let key = match m.public.as_ref().map(|p| &p.target) {
        Some(crate::config::PublicTarget::S3 { secret_key, .. }) => Some(secret_key),
        _ => None,
    };
    secrets([("s3 secret".to_owned(), key)])
}

/// `new` with the sections that cannot change live taken from `old`, and what differed.
pub fn merge(old: &Config, new: Config) -> Merged {
    let mut kept = Vec::new();
    let mut applied = Vec::new();
    let differs = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    let mut mqtt = old.mqtt.clone();
    if differs(&old.mqtt, &new.mqtt) {
        kept.push("mqtt");
    } else {
        let (was, now) = (mqtt_secrets(&old.mqtt), mqtt_secrets(&new.mqtt));
        if was[0] != now[0] {
            // The connection is authenticated once: a new password takes a restart.
            kept.push("mqtt");
        }
        // A subscription's signing key is read for every message: a rotated one is in
        // force at once (the topics are the same, or Debug would differ).
        for (i, (sub, fresh)) in mqtt.subscriptions.iter_mut().zip(&new.mqtt.subscriptions).enumerate() {
            if was.get(i + 1) != now.get(i + 1) {
                sub.signing_key = fresh.signing_key.clone();
                applied.push(format!("the signing key of subscription {} was rotated", sub.topic));
            }
        }
    }
    if differs(&old.broker, &new.broker) {
        kept.push("broker");
    }
    if differs(&old.store, &new.store) {
        kept.push("store");
    }
    let admin_secrets = |a: &crate::config::AdminConfig| secrets([("token".to_owned(), a.token.as_ref())]);
    if differs(&old.admin, &new.admin) || admin_secrets(&old.admin) != admin_secrets(&new.admin) {
        kept.push("admin");
    }
    if differs(&old.log, &new.log) {
        kept.push("log");
    }
    if differs(&old.media, &new.media) || media_secrets(&old.media) != media_secrets(&new.media) {
        kept.push("media");
    }
    let config = Config {
        mqtt,
        broker: old.broker.clone(),
        store: old.store.clone(),
        admin: old.admin.clone(),
        log: old.log.clone(),
        media: old.media.clone(),
        ..new
    };
    Merged { config, kept, applied }
}

/// The directories whose changes trigger a reload.
pub fn watched(config: &Config) -> Vec<PathBuf> {
    let dir = config.source.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new(".")).to_path_buf();
    let mut dirs = vec![dir.clone()];
    if !config.templates_dir.starts_with(&dir) {
        dirs.push(config.templates_dir.clone());
    }
    dirs
}

/// A running file watcher; dropping it stops watching.
pub struct Watcher(#[expect(dead_code, reason = "held to keep watching")] Box<dyn Send>);

impl std::fmt::Debug for Watcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Watcher")
    }
}

/// Whether a change at `path` (absolute, as the watcher reports it) is one a reload is
/// for: a TOML file (the config) or anything under `templates` (absolute). The store, its
/// lock and mark, tokens and keys may live in the same directory and change all the time.
pub fn relevant(templates: &Path, path: &Path) -> bool {
    path.starts_with(templates) || path.extension().is_some_and(|e| e == "toml")
}

/// Watch `dirs`; each burst of changes to paths `relevant` takes (after `debounce` of
/// quiet) sends one `()`.
pub fn watch(
    dirs: &[PathBuf],
    debounce: Duration,
    relevant: impl Fn(&Path) -> bool + Send + 'static,
    tx: mpsc::UnboundedSender<()>,
) -> Result<Watcher, String> {
    use notify_debouncer_full::notify::RecursiveMode;
    let mut debouncer =
        notify_debouncer_full::new_debouncer(debounce, None, move |res: notify_debouncer_full::DebounceEventResult| {
            if let Ok(events) = res
                && events.iter().any(|e| !e.kind.is_access() && e.paths.iter().any(|p| relevant(p)))
            {
                let _ = tx.send(());
            }
        })
        .map_err(|e| format!("cannot watch the config: {e}"))?;
    for d in dirs {
        debouncer.watch(d, RecursiveMode::Recursive).map_err(|e| format!("cannot watch {}: {e}", d.display()))?;
    }
    Ok(Watcher(Box::new(debouncer)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::tests::{MINIMAL, load_str};

    #[test]
    fn sections_that_need_a_restart_are_kept() {
        let (_a, old) = load_str(MINIMAL);
        let (_b, new) = load_str(
            &MINIMAL
                .replace("mqtt://127.0.0.1:1", "mqtt://127.0.0.1:2")
                .replace("[events.road_closure]", "[events.road_closure]\npriority = \"high\""),
        );
        let m = merge(&old, new);
        assert_eq!(m.kept, ["mqtt"]);
        assert_eq!(m.config.mqtt.endpoint.port, 1, "the running broker connection stays");
        assert_eq!(m.config.events["road_closure"].priority.as_str(), "high", "rules change live");
    }

    #[test]
    fn only_the_config_and_templates_trigger_a_watched_reload() {
        let templates = Path::new("/etc/bullhorn/templates");
        assert!(relevant(templates, Path::new("/etc/bullhorn/bullhorn.toml")));
        assert!(relevant(templates, Path::new("/etc/bullhorn/templates/missing_child/x.txt")));
        for noise in ["/etc/bullhorn/bullhorn.db-wal", "/etc/bullhorn/store-mark.tmp", "/etc/bullhorn/link-key"] {
            assert!(!relevant(templates, Path::new(noise)), "{noise}");
        }
    }

    #[test]
    fn a_rotated_secret_is_noticed_by_reload() {
        let signed = MINIMAL.replace(
            "format = \"json\"",
            "format = \"json\"\nrequire_signature = true\nsigning_key = \"KEY-one-0123456789\"",
        );
        let (_a, old) = load_str(&format!("{signed}\n[admin]\ntoken = \"token-one-0123456789\"\n"));
        let (_b, new) =
            load_str(&format!("{}\n[admin]\ntoken = \"token-two-0123456789\"\n", signed.replace("KEY-one", "KEY-two")));
        let m = merge(&old, new);
        assert_eq!(m.kept, ["admin"], "a new admin token needs a restart, and says so");
        assert_eq!(m.applied.len(), 1, "{:?}", m.applied);
        let key = m.config.mqtt.subscriptions[0].signing_key.as_ref().expect("signed");
        assert_eq!(key.0.expose_secret(), "KEY-two-0123456789", "the rotated key is in force");
    }
}
