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

/// `new` with the sections that cannot change live taken from `old`, and the names of
/// those that differed.
pub fn merge(old: &Config, new: Config) -> (Config, Vec<&'static str>) {
    let mut kept = Vec::new();
    // Debug output compares values (secrets print redacted: a changed password alone is
    // not noticed, and needs a restart like the rest of [mqtt]).
    let differs = |a: &dyn std::fmt::Debug, b: &dyn std::fmt::Debug| format!("{a:?}") != format!("{b:?}");
    if differs(&old.mqtt, &new.mqtt) {
        kept.push("mqtt");
    }
    if differs(&old.broker, &new.broker) {
        kept.push("broker");
    }
    if differs(&old.store, &new.store) {
        kept.push("store");
    }
    if differs(&old.admin, &new.admin) {
        kept.push("admin");
    }
    if differs(&old.log, &new.log) {
        kept.push("log");
    }
    if differs(&old.media, &new.media) {
        kept.push("media");
    }
    let merged = Config {
        mqtt: old.mqtt.clone(),
        broker: old.broker.clone(),
        store: old.store.clone(),
        admin: old.admin.clone(),
        log: old.log.clone(),
        media: old.media.clone(),
        ..new
    };
    (merged, kept)
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

/// Watch `dirs`; each burst of changes (after `debounce` of quiet) sends one `()`.
pub fn watch(dirs: &[PathBuf], debounce: Duration, tx: mpsc::UnboundedSender<()>) -> Result<Watcher, String> {
    use notify_debouncer_full::notify::RecursiveMode;
    let mut debouncer =
        notify_debouncer_full::new_debouncer(debounce, None, move |res: notify_debouncer_full::DebounceEventResult| {
            if let Ok(events) = res
                && events.iter().any(|e| !e.kind.is_access())
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
        let (merged, kept) = merge(&old, new);
        assert_eq!(kept, ["mqtt"]);
        assert_eq!(merged.mqtt.endpoint.port, 1, "the running broker connection stays");
        assert_eq!(merged.events["road_closure"].priority.as_str(), "high", "rules change live");
    }
}
