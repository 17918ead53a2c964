//! The command line: `run`, `check`, `send`. Each command is a function that returns what
//! `main` turns into an exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, Subscription};
use crate::event::{self, Event};
use crate::ingest::{mqtt, pipeline};
use crate::render::platform::Platform;
use crate::render::{Rendered, Renderer, Target};

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
    /// Show what each channel would post for an event file, with each platform's length
    /// count; posts nothing.
    Render {
        /// The event file.
        file: PathBuf,
        /// Only this channel.
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
        /// Preview platforms instead of the configured channels: a name (x, mastodon,
        /// bluesky, sms, ...) or "all".
        #[arg(long, value_name = "NAME")]
        platform: Option<String>,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
}

/// Problems `check` found, one per line.
pub fn check(config: &Config) -> Vec<String> {
    let mut problems: Vec<String> = crate::render::check::check(config).iter().map(ToString::to_string).collect();
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

/// One delivery as `render` shows it.
#[derive(Debug, serde::Serialize)]
pub struct Preview {
    pub channel: String,
    pub platform: Platform,
    pub kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub language: Option<String>,
    #[serde(flatten)]
    pub rendered: Rendered,
    /// Bluesky link and hashtag facets (UTF-8 byte offsets).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub facets: Vec<crate::render::facets::Facet>,
}

/// What `render` reports for an event file.
#[derive(Debug, serde::Serialize)]
pub struct RenderReport {
    pub event: Event,
    /// Whether it would be posted, and if not why.
    pub verdict: String,
    pub deliveries: Vec<Preview>,
}

/// Render `file` for every channel (or `--channel`), or for platforms (`--platform`).
pub fn render(
    config: &Config,
    file: &Path,
    channel: Option<&str>,
    platform: Option<&str>,
) -> Result<RenderReport, String> {
    let payload = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let event = event::decode(event::Format::Json, &payload).map_err(|r| format!("{}: {r}", file.display()))?;
    let rule = crate::policy::rule_for(&event, &config.events).map_err(|r| format!("{}: {r}", file.display()))?;
    let renderer = Renderer::load(config).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        format!("template problems:\n  - {}", list.join("\n  - "))
    })?;
    if let Some(c) = channel
        && !config.channels.contains_key(c)
    {
        return Err(format!("no channel {c:?} in this config"));
    }
    let now = jiff::Timestamp::now();
    let a = crate::policy::assess(&event, &payload, rule, now, now);
    let mut verdict = match a.disposition {
        crate::policy::Disposition::Deliver => format!("would be posted, priority {}", rule.priority.as_str()),
        other => format!("would NOT be posted: {}", other.as_str()),
    };
    if a.audience == crate::policy::Audience::StaffOnly {
        verdict.push_str(&format!("; status {} reaches only channels with public = false", event.status.as_str()));
    }
    if rule.approval == crate::config::Approval::Hold {
        verdict.push_str("; held for approval first");
    }
    let kind = crate::route::DeliveryKind::for_msg_type(event.msg_type);
    let deliveries = match platform {
        Some(p) => {
            let platforms: Vec<Platform> = if p == "all" {
                Platform::ALL.to_vec()
            } else {
                vec![Platform::parse(p).ok_or_else(|| format!("unknown platform {p:?}"))?]
            };
            platforms
                .into_iter()
                .flat_map(|p| {
                    crate::route::languages(&event, &config.agency.languages)
                        .into_iter()
                        .map(|l| {
                            let rendered = renderer.render_for(rule, &Target::platform(p), &event, kind, l);
                            preview(p.as_str(), p, kind.as_str(), l.map(str::to_owned), rendered)
                        })
                        .collect::<Vec<_>>()
                })
                .collect()
        }
        None => pipeline::render_all(config, &renderer, &event, rule, a.audience)
            .into_iter()
            .filter(|(p, _)| channel.is_none_or(|c| c == p.channel))
            .map(|(p, rendered)| {
                let platform = config.channels.get(&p.channel).map_or(Platform::Console, |c| c.platform());
                preview(&p.channel, platform, p.kind.as_str(), p.language, rendered)
            })
            .collect(),
    };
    Ok(RenderReport { event, verdict, deliveries })
}

fn preview(
    channel: &str,
    platform: Platform,
    kind: &'static str,
    language: Option<String>,
    rendered: Rendered,
) -> Preview {
    let facets = if platform == Platform::Bluesky { crate::render::facets::facets(&rendered.text) } else { Vec::new() };
    Preview { channel: channel.to_owned(), platform, kind, language, rendered, facets }
}

impl std::fmt::Display for RenderReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let e = &self.event;
        writeln!(
            f,
            "{} {} ({}, status {}): {}",
            e.event_type,
            e.id,
            e.msg_type.as_str(),
            e.status.as_str(),
            self.verdict
        )?;
        if self.deliveries.is_empty() {
            writeln!(f, "\nno channel gets this event")?;
        }
        for d in &self.deliveries {
            let lang = d.language.as_deref().map(|l| format!(" · {l}")).unwrap_or_default();
            let mut notes = vec![d.rendered.length.to_string(), d.rendered.template.clone()];
            if d.rendered.shortened {
                notes.push("shortened to fit".to_owned());
            }
            if !d.rendered.parts.is_empty() {
                notes.push(format!("thread of {}", d.rendered.parts.len()));
            }
            writeln!(f, "\n── {} ({}) · {}{lang} · {}", d.channel, d.platform, d.kind, notes.join(" · "))?;
            if let Some(err) = &d.rendered.error {
                writeln!(f, "!! {err}")?;
            }
            if d.rendered.parts.is_empty() {
                writeln!(f, "{}", d.rendered.text)?;
            } else {
                for p in &d.rendered.parts {
                    writeln!(f, "{p}\n  ┄┄")?;
                }
            }
        }
        Ok(())
    }
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
