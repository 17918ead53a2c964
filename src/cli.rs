//! The command line: `run`, `check`, `render`, `send`, `test-channel`, and the operator
//! commands (`status`, `approve`, `reject`, `pause`, `resume`, `retry`, `retract`,
//! `correct`), which are requests to the running daemon's admin API. Each command is a
//! function that returns what `main` turns into an exit status.

use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::config::{Config, Subscription};
use crate::event::{self, Event};
use crate::ingest::mqtt;
use crate::pipeline;
use crate::platform::Platform;
use crate::render::{Rendered, Renderer, Target};

#[derive(Debug, Parser)]
#[command(name = "bullhorn", version, about = "Emergency alert broadcast daemon")]
pub struct Cli {
    /// Config file [default: $BULLHORN_CONFIG, else config/bullhorn.toml]
    #[arg(long, global = true, value_name = "PATH")]
    pub config: Option<PathBuf>,
    /// The daemon's admin API, for the operator commands [default: http:// + [admin] listen]
    #[arg(long, global = true, value_name = "URL", env = "BULLHORN_ADMIN_URL")]
    pub admin_url: Option<String>,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the daemon until SIGINT or SIGTERM.
    Run,
    /// Validate the config and templates; exit 0 only if all is well.
    Check {
        /// Also check each enabled channel's credentials with a read-only call to its
        /// platform.
        #[arg(long)]
        online: bool,
    },
    /// Post a test message on one channel through the running daemon's queue (so a pause,
    /// shadow mode and the rate limit apply); prints where it went. A public channel
    /// needs --public.
    TestChannel {
        /// The channel's name in the config.
        name: String,
        /// The text [default: a test notice naming the agency and the time].
        #[arg(long)]
        text: Option<String>,
        /// The channel is public: post the test where the public sees it anyway.
        #[arg(long)]
        public: bool,
    },
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
    /// The running daemon: mode, pauses, open deliveries per channel, recent alerts; or one
    /// alert with its texts, post URLs and audit trail.
    Status {
        /// An alert: '#12' (its number in `status`; quote the #) or the event's own id.
        alert: Option<String>,
        /// How many recent alerts to list.
        #[arg(long, default_value_t = 10)]
        limit: usize,
        /// Only alerts held for approval.
        #[arg(long)]
        held: bool,
        /// Print JSON for machines.
        #[arg(long)]
        json: bool,
    },
    /// Approve a held alert: it goes out now.
    Approve {
        /// '#12' (its number in `status`; quote the #) or the event's own id.
        alert: String,
    },
    /// Reject a held alert: it is not posted.
    Reject {
        /// '#12' (its number in `status`; quote the #) or the event's own id.
        alert: String,
        #[arg(long)]
        reason: Option<String>,
    },
    /// The kill switch: stop all public posting at once (or one channel, or one event
    /// type). Queued and held work is kept; retractions still go out.
    Pause {
        #[arg(long, value_name = "NAME", conflicts_with = "event_type")]
        channel: Option<String>,
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        #[arg(long)]
        reason: Option<String>,
    },
    /// Lift a pause; what is still valid (not expired, cancelled or past max_age) goes out.
    Resume {
        #[arg(long, value_name = "NAME", conflicts_with = "event_type")]
        channel: Option<String>,
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
    },
    /// Queue an alert's dead-lettered deliveries again.
    Retry {
        /// '#12' (its number in `status`; quote the #) or the event's own id.
        alert: String,
        /// Only this channel's.
        #[arg(long, value_name = "NAME")]
        channel: Option<String>,
    },
    /// Withdraw an alert sent in error: a correction is posted as a reply on every channel
    /// it went out on, ahead of every queue, and the alert deleted wherever the platform
    /// allows. Later messages of its incident are recorded, not posted.
    Retract {
        /// '#12' (its number in `status`; quote the #) or the event's own id.
        alert: String,
        /// The correction's text [default: config/templates/correction.txt].
        #[arg(long)]
        text: Option<String>,
    },
    /// Correct an alert: like retract, with your text, and the incident goes on.
    Correct {
        /// '#12' (its number in `status`; quote the #) or the event's own id.
        alert: String,
        #[arg(long)]
        text: String,
    },
    /// Show what each channel would post for an event file, with each platform's length
    /// count; posts nothing.
    Render {
        /// The event file.
        file: PathBuf,
        /// Its format [default: CAP for XML, EIDO for JSON with eidoVersion, else json];
        /// "mapped" uses the first mapped subscription's mapping.
        #[arg(long, value_name = "FORMAT", value_parser = parse_format)]
        format: Option<event::Format>,
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

fn parse_format(s: &str) -> Result<event::Format, String> {
    match s {
        "json" => Ok(event::Format::Json),
        "cap" => Ok(event::Format::Cap),
        "eido" => Ok(event::Format::Eido),
        "mapped" => Ok(event::Format::Mapped),
        other => Err(format!("unknown format {other:?} (json, cap, eido, mapped)")),
    }
}

/// Run an operator command against the daemon's admin API; what to print.
pub async fn operate(config: &Config, admin_url: Option<&str>, command: &Command) -> Result<String, String> {
    use crate::admin::client::{ApiClient, alert_path, body, format_alert, format_status};
    let client = ApiClient::from_config(config, admin_url)?;
    let scope = |channel: &Option<String>, event_type: &Option<String>| match (channel, event_type) {
        (Some(c), _) => format!("channel:{c}"),
        (None, Some(t)) => format!("type:{t}"),
        (None, None) => "all".to_owned(),
    };
    let message = |v: serde_json::Value| v["message"].as_str().unwrap_or("done").to_owned();
    match command {
        Command::Status { alert: Some(a), json, .. } => {
            let v = client.get(&alert_path(a, "")).await?;
            Ok(if *json { serde_json::to_string_pretty(&v).unwrap_or_default() } else { format_alert(&v) })
        }
        Command::Status { alert: None, limit, held, json } => {
            let status = client.get("/status").await?;
            let alerts = client.get(&format!("/alerts?limit={limit}&held={held}")).await?;
            Ok(if *json {
                serde_json::to_string_pretty(&serde_json::json!({ "status": status, "alerts": alerts["alerts"] }))
                    .unwrap_or_default()
            } else {
                format_status(&status, &alerts)
            })
        }
        Command::Approve { alert } => client.post(&alert_path(alert, "approve"), body(&[])).await.map(message),
        Command::Reject { alert, reason } => {
            client.post(&alert_path(alert, "reject"), body(&[("reason", reason.as_deref())])).await.map(message)
        }
        Command::Pause { channel, event_type, reason } => {
            let b = body(&[("scope", Some(&scope(channel, event_type))), ("reason", reason.as_deref())]);
            let v = client.post("/pause", b).await?;
            Ok(format!("{}; paused now: {}", message(v.clone()), v["paused"]))
        }
        Command::Resume { channel, event_type } => {
            let v = client.post("/resume", body(&[("scope", Some(&scope(channel, event_type)))])).await?;
            Ok(format!("{}; still paused: {}", message(v.clone()), v["paused"]))
        }
        Command::Retry { alert, channel } => {
            client.post(&alert_path(alert, "retry"), body(&[("channel", channel.as_deref())])).await.map(message)
        }
        Command::Retract { alert, text } => {
            client.post(&alert_path(alert, "retract"), body(&[("text", text.as_deref())])).await.map(message)
        }
        Command::Correct { alert, text } => {
            client.post(&alert_path(alert, "correct"), body(&[("text", Some(text))])).await.map(message)
        }
        Command::TestChannel { name, text, public } => {
            let mut b = body(&[("text", text.as_deref())]);
            b["public"] = serde_json::Value::Bool(*public);
            let id: String = url::form_urlencoded::byte_serialize(name.as_bytes()).collect();
            let done = client.post(&format!("/channels/{id}/test"), b).await?;
            let event = done["event_id"].as_i64().ok_or("the daemon did not say which test it queued")?;
            if done["paused"] == serde_json::Value::Bool(true) {
                return Err(format!("{name}: queued as #{event}, but the channel is paused: it goes out when resumed"));
            }
            test_outcome(&client, name, event).await
        }
        _ => Err("not an operator command".to_owned()),
    }
}

/// Wait (at most a minute) for a test message to leave the queue; where it went.
async fn test_outcome(client: &crate::admin::client::ApiClient, channel: &str, event: i64) -> Result<String, String> {
    let path = crate::admin::client::alert_path(&format!("#{event}"), "");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let alert = client.get(&path).await?;
        let d = &alert["deliveries"][0];
        let reason = d["reason"].as_str().unwrap_or("");
        match d["state"].as_str().unwrap_or("") {
            "sent" => {
                let at =
                    d["post_url"].as_str().or(d["post_id"].as_str()).unwrap_or("accepted (the platform returns no id)");
                return Ok(format!("{channel}: posted: {at}"));
            }
            "shadow" => return Err(format!("{channel}: recorded, not posted: shadow mode")),
            state @ ("dead" | "suppressed" | "expired") => {
                return Err(format!("{channel}: not posted: {state}: {reason}"));
            }
            state if tokio::time::Instant::now() >= deadline => {
                return Err(format!(
                    "{channel}: still {state} after a minute (paused? rate-limited? see bullhorn status '#{event}'); it stays queued"
                ));
            }
            _ => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
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

/// The context channels run with outside the daemon.
fn context(config: &Config) -> Result<crate::channel::Context, String> {
    Ok(crate::channel::Context {
        http: crate::channel::http::client()?,
        timeout: config.delivery.request_timeout,
        state_dir: config.store.state_dir.clone(),
    })
}

/// `check --online`: each enabled channel's credentials, checked with a read-only call.
pub async fn check_online(config: &Config) -> Result<Vec<(String, crate::channel::Verified)>, String> {
    let ctx = context(config)?;
    let mut out = Vec::new();
    for c in config.channels.values().filter(|c| c.enabled) {
        let verified = crate::channel::Channel::build(c, &ctx).verify().await;
        out.push((format!("{} ({})", c.name, c.kind.name()), verified));
    }
    Ok(out)
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
        let ev = event::decode(sub.format, &payload, &sub.options)
            .map_err(|r| format!("{} would be rejected: {r}", file.display()))?;
        if ev.ignored.is_none() && !ev.event_type.is_empty() {
            crate::policy::rule_for(&ev, &config.events)
                .map_err(|r| format!("{} would be rejected: {r}", file.display()))?;
        }
        summary = format!(
            "{} {} {} (id {}, status {})",
            ev.event_type,
            ev.msg_type.as_str(),
            summary,
            ev.id,
            ev.status.as_str()
        );
    }
    // A subscription that requires signatures gets the payload signed with its key: as an
    // MQTT 5 user property, or in a JSON envelope over MQTT 3.1.1.
    let mut properties = Vec::new();
    let mut payload = payload;
    if let Some(key) =
        pipeline::subscription_for(&config.mqtt.subscriptions, &topic).and_then(|s| s.signing_key.as_ref())
    {
        use crate::pipeline::signature;
        match config.mqtt.protocol {
            crate::config::Protocol::V5 => {
                properties.push((signature::PROPERTY.to_owned(), signature::sign(key, &payload)));
            }
            crate::config::Protocol::V311 => {
                let text = String::from_utf8(payload)
                    .map_err(|_| "a signed envelope carries text; this file is not UTF-8".to_owned())?;
                payload = signature::envelope_for(key, &text).into_bytes();
            }
        }
        summary.push_str(", signed");
    }
    let tls = if config.mqtt.endpoint.tls { Some(mqtt::tls_config(&config.mqtt)?) } else { None };
    mqtt::publish_once_with(&config.mqtt, tls, &topic, payload, properties, Duration::from_secs(10)).await?;
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
/// The format of an event file: XML is CAP, JSON with `eidoVersion` (or an STA-024
/// envelope) is EIDO, other JSON native.
pub fn sniff(payload: &[u8]) -> event::Format {
    let text = String::from_utf8_lossy(&payload[..payload.len().min(4096)]);
    let t = text.trim_start();
    if t.starts_with('<') {
        event::Format::Cap
    } else if t.contains("\"eidoVersion\"") || t.contains("\"EIDOVersion\"") || t.contains("\"notification\"") {
        event::Format::Eido
    } else {
        event::Format::Json
    }
}

pub fn render(
    config: &Config,
    file: &Path,
    format: Option<event::Format>,
    channel: Option<&str>,
    platform: Option<&str>,
) -> Result<RenderReport, String> {
    let payload = std::fs::read(file).map_err(|e| format!("cannot read {}: {e}", file.display()))?;
    let format = format.unwrap_or_else(|| sniff(&payload));
    // The options (type tables, mapping) of the first subscription of that format.
    let options =
        config.mqtt.subscriptions.iter().find(|s| s.format == format).map(|s| s.options.clone()).unwrap_or_default();
    if format == event::Format::Mapped && options.mapping.is_none() {
        return Err("no subscription with format \"mapped\" in this config to take the mapping from".to_owned());
    }
    let event = event::decode(format, &payload, &options).map_err(|r| format!("{}: {r}", file.display()))?;
    if let Some(why) = &event.ignored {
        return Err(format!("{}: recorded, not posted: {why}", file.display()));
    }
    if event.event_type.is_empty() {
        return Err(format!(
            "{}: a cancel without texts takes them from the alert it cancels, which only the daemon has",
            file.display()
        ));
    }
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
        crate::lifecycle::Disposition::Deliver => format!("would be posted, priority {}", rule.priority.as_str()),
        other => format!("would NOT be posted: {}", other.as_str()),
    };
    if a.audience == crate::lifecycle::Audience::Staff {
        let why = event.restricted.clone().unwrap_or_else(|| format!("status {}", event.status.as_str()));
        verdict.push_str(&format!("; {why}: reaches only channels with public = false"));
    }
    if rule.approval_for(format) == crate::config::Approval::Hold {
        verdict.push_str("; held for approval first");
    }
    let kind = crate::lifecycle::DeliveryKind::for_msg_type(event.msg_type);
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
            if let Some(subject) = &d.rendered.subject {
                writeln!(f, "Subject: {subject}")?;
            }
            if let Some(html) = &d.rendered.html {
                writeln!(f, "(with an HTML alternative of {} bytes)", html.len())?;
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
