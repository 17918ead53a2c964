//! The command line: `run`, `check`, `send`. Each command is a function that returns what
//! `main` turns into an exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, Subscription};
use crate::event;
use crate::ingest::{mqtt, pipeline};
use crate::render::Renderer;

#[derive(Debug, Parser)]
#[command(name = "bullhorn", version, about = "Emergency alert broadcast daemon")]
pub struct Cli {
    /// Config file [default: $BULLHORN_CONFIG, else config/bullhorn.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGINT or SIGTERM.
    Run,
    /// Validate the config and templates; exit 0 only if all is well.
    Check,
    /// Publish an event file to the configured broker (drills, manual alerts).
    Send {
        /// The event file, published byte for byte.
        file: PathBuf,
        /// Topic to publish to [default: mqtt.send_topic, else the first subscription with
        /// its wildcards filled in].
        #[arg(long)]
        topic: Option<String>,
        /// Publish even if the file does not decode as an event this config accepts.
        #[arg(long)]
        no_validate: bool,
    },
}

/// Problems `check` found, one per line.
pub fn check(config: &Config) -> Vec<String> {
    let mut problems = Vec::new();
    if let Err(errors) = Renderer::load(config) {
        problems.extend(errors.iter().map(ToString::to_string));
    }
    if config.mqtt.endpoint.tls
        && let Err(e) = mqtt::tls_config(&config.mqtt)
    {
        problems.push(e);
    }
    problems
}

/// The topic `send` publishes to.
pub fn send_topic(config: &Config, explicit: Option<&str>) -> Result<String, String> {
    if let Some(t) = explicit.or(config.mqtt.send_topic.as_deref()) {
        return Ok(t.to_owned());
    }
    config
        .mqtt
        .subscriptions
        .first()
        .map(|s: &Subscription| topic_for_filter(&s.topic))
        .ok_or_else(|| "no subscription to derive a topic from; pass --topic".to_owned())
}

/// A concrete topic matching `filter`: each wildcard level becomes `manual`.
pub fn topic_for_filter(filter: &str) -> String {
    filter
        .split('/')
        .map(|level| if level == "+" || level == "#" { "manual" } else { level })
        .collect::<Vec<_>>()
        .join("/")
}

/// Publish `file` for `send`; returns a line describing what was sent.
pub async fn send(config: &Config, file: &Path, topic: Option<&str>, validate: bool) -> Result<String, String> {
    let payload = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let topic = send_topic(config, topic)?;
    let mut summary = format!("{} bytes", payload.len());
    if validate {
        let sub = pipeline::subscription_for(&config.mqtt.subscriptions, &topic)
            .ok_or_else(|| format!("topic {topic:?} matches no subscription in this config, so the daemon would not receive it (use --no-validate to send anyway)"))?;
        if payload.len() > config.mqtt.max_payload_bytes {
            return Err(format!(
                "{} is {} bytes; the daemon rejects payloads over {}",
                file.display(),
                payload.len(),
                config.mqtt.max_payload_bytes
            ));
        }
        let ev =
            event::decode(sub.format, &payload).map_err(|r| format!("{} would be rejected: {r}", file.display()))?;
        crate::policy::rule_for(&ev, &config.events)
            .map_err(|r| format!("{} would be rejected: {r}", file.display()))?;
        summary = format!(
            "{} {} {} (id {}, status {})",
            ev.event_type,
            ev.msg_type.as_str(),
            summary,
            ev.id,
            ev.status.as_str()
        );
    }
    let tls = if config.mqtt.endpoint.tls { Some(mqtt::tls_config(&config.mqtt)?) } else { None };
    mqtt::publish_once(&config.mqtt, tls, &topic, payload, Duration::from_secs(10)).await?;
    Ok(format!("published {summary} to {topic} on {}", config.mqtt.endpoint))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_become_a_concrete_level() {
        assert_eq!(topic_for_filter("cad/+/events"), "cad/manual/events");
        assert_eq!(topic_for_filter("alerts/#"), "alerts/manual");
        assert_eq!(topic_for_filter("a/b"), "a/b");
    }
}
