//! Staff notifications and the timers of held alerts (SPEC 6).
//!
//! One task looks at the store every second and, for what it finds, asks the writer for a
//! staff notice, which is an event of format `system` with deliveries to the `[notify]`
//! channels (all `public = false`): queued, retried, rate-limited and recorded like any
//! other delivery. Each notice has a key (`held:12`, `escalate:12`, `late:12`,
//! `credentials:x:2026112114`) that the store keeps unique, so a restart or a second look
//! never sends one twice.
//!
//! - A held alert: its previews and one-time approve/reject links ([`crate::admin::act`]).
//! - Still held after `escalate_after`: again, to `escalate_channels`, with fresh links.
//! - Held past its rule's `hold_for`: rejected or published (`after_hold`), by "hold
//!   timer" in the audit log. This needs no staff channel.
//! - A critical alert (or a retraction) not out on a channel `late_after` after it was
//!   queued: which channels, and what their last attempt said.
//! - A channel whose credentials the platform refused (at most once an hour per channel).
//! - A channel whose `credentials_expire` is near: when it comes within
//!   `credentials_warn`, a week, three days and a day, and when it has passed (once each
//!   for a given expiry; a new token with a new date starts again).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::{AfterHold, ChannelConfig, Config, Expiring, Expiry, expiring};
use crate::event::Priority;
use crate::lifecycle::DeliveryKind;
use crate::links::LinkKey;
use crate::metrics::{ChannelLabel, Metrics};
use crate::platform::Platform;
use crate::reload::Shared;
use crate::render::escape::escape;
use crate::render::length;
use crate::store::{
    AdminOp, CredentialFailure, HeldEvent, LateDelivery, LinkAction, NewDelivery, NewLink, NewNotice, Reader, Store,
};
use crate::time::{duration_ms, now_ms};

/// Late deliveries and refused credentials are looked at every this many ticks (of
/// `[notify] check_every`, which is how often held alerts are looked at).
const SLOW_EVERY: u32 = 3;

/// Start the task; it stops with `cancel`.
pub fn start(
    live: Shared,
    store: Store,
    reader: Reader,
    links: Arc<LinkKey>,
    metrics: Arc<Metrics>,
    cancel: CancellationToken,
    failed: CancellationToken,
) -> JoinHandle<()> {
    crate::supervise::spawn("notify".to_owned(), failed, async move {
        let every = live.load().config.notify.check_every;
        let mut timers = Timers {
            links,
            live,
            store,
            reader,
            metrics,
            credentials_since: now_ms() - 3_600_000,
            expiry_sent: HashSet::new(),
            expiry_gauges: HashSet::new(),
            seen: HashMap::new(),
        };
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut n: u32 = 0;
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                _ = tick.tick() => {}
            }
            timers.held().await;
            if n.is_multiple_of(SLOW_EVERY) {
                timers.late().await;
                timers.credentials().await;
                timers.expiring().await;
            }
            n = n.wrapping_add(1);
        }
    })
}

struct Timers {
    /// Derives the approve/reject links' tokens.
    links: Arc<LinkKey>,
    live: Shared,
    store: Store,
    reader: Reader,
    metrics: Arc<Metrics>,
    credentials_since: i64,
    /// Expiry notices already queued (the store keeps them unique too; this saves it a
    /// write every few seconds).
    expiry_sent: HashSet<String>,
    /// Channels with a `credentials_expiry` gauge.
    expiry_gauges: HashSet<String>,
    /// Each held alert as first seen: when, on the monotonic clock, and its age by the
    /// wall clock then (see [`held_age`]).
    seen: HashMap<i64, (tokio::time::Instant, Duration)>,
}

/// How long a held alert has waited: its age by the wall clock, but never more than its
/// age when first seen plus the time measured since on the monotonic clock. A forward
/// step of the wall clock (NTP correcting a wrong clock, an operator's typo) must not
/// age held alerts at once and publish those whose rule says `after_hold = "publish"`.
pub fn held_age(wall: Duration, first: (tokio::time::Instant, Duration), now: tokio::time::Instant) -> Duration {
    let (at, then) = first;
    wall.min(then + now.saturating_duration_since(at))
}

impl Timers {
    async fn held(&mut self) {
        let held = match self.reader.held_events().await {
            Ok(h) => h,
            Err(e) => return tracing::debug!(error = %e, "cannot read held alerts"),
        };
        self.metrics.held_alerts.set(i64::try_from(held.len()).unwrap_or(i64::MAX));
        if let Ok(p) = self.reader.pauses().await {
            self.metrics.paused.set(i64::try_from(p.len()).unwrap_or(i64::MAX));
        }
        if held.is_empty() {
            self.seen.clear();
            return;
        }
        let config = Arc::clone(&self.live.load().config);
        let now = now_ms();
        let mono = tokio::time::Instant::now();
        self.seen.retain(|id, _| held.iter().any(|h| h.event_id == *id));
        for h in held {
            let wall = Duration::from_millis(u64::try_from(now - h.received_at).unwrap_or(0));
            let first = *self.seen.entry(h.event_id).or_insert((mono, wall));
            let age = held_age(wall, first, mono);
            let rule = config.events.get(&h.event_type);
            if let Some((hold_for, after)) = rule.and_then(|r| r.hold_for.map(|d| (d, r.after_hold)))
                && age >= hold_for
            {
                let waited = humantime::format_duration(hold_for);
                let op = match after {
                    AfterHold::Reject => AdminOp::Reject {
                        event_id: h.event_id,
                        actor: "hold timer".to_owned(),
                        reason: format!("not approved within {waited} (after_hold = reject)"),
                    },
                    AfterHold::Publish => {
                        AdminOp::Approve { event_id: h.event_id, actor: format!("hold timer (after {waited})") }
                    }
                };
                match self.store.admin(op).await {
                    Ok(done) => {
                        tracing::warn!(alert = h.event_id, %waited, message = %done.message, "held alert timed out")
                    }
                    Err(e) => tracing::warn!(alert = h.event_id, error = %e, "cannot time out a held alert"),
                }
                continue;
            }
            let n = &config.notify;
            if !h.noticed && !n.channels.is_empty() {
                self.send(held_notice(&config, &self.links, &h, &n.channels, false)).await;
            }
            if let Some(after) = n.escalate_after
                && age >= after
                && !h.escalated
                && !n.escalate_channels.is_empty()
            {
                self.send(held_notice(&config, &self.links, &h, &n.escalate_channels, true)).await;
            }
        }
    }

    async fn late(&mut self) {
        let config = Arc::clone(&self.live.load().config);
        if config.notify.channels.is_empty() {
            return;
        }
        let cutoff = now_ms() - duration_ms(config.notify.late_after);
        let late = match self.reader.late_critical(cutoff).await {
            Ok(l) => l,
            Err(e) => return tracing::debug!(error = %e, "cannot read late deliveries"),
        };
        let mut by_event: BTreeMap<i64, Vec<LateDelivery>> = BTreeMap::new();
        for d in late {
            by_event.entry(d.event_id).or_default().push(d);
        }
        for (event_id, list) in by_event {
            self.send(late_notice(&config, event_id, &list)).await;
        }
    }

    async fn credentials(&mut self) {
        let config = Arc::clone(&self.live.load().config);
        if !config.notify.credentials || config.notify.channels.is_empty() {
            return;
        }
        let since = self.credentials_since;
        let failures = match self.reader.credential_failures(since).await {
            Ok(f) => f,
            Err(e) => return tracing::debug!(error = %e, "cannot read refused credentials"),
        };
        for f in failures {
            // Not past a failure the store could not take: it is read again next time.
            if !self.send(credentials_notice(&config, &f)).await {
                break;
            }
            self.credentials_since = self.credentials_since.max(f.at + 1);
        }
    }

    async fn expiring(&mut self) {
        let config = Arc::clone(&self.live.load().config);
        let gauges: HashSet<String> = config
            .channels
            .values()
            .filter(|c| c.enabled)
            .filter_map(|c| {
                let at = c.credentials_expire?;
                let label = ChannelLabel { channel: c.name.clone() };
                self.metrics.credentials_expiry.get_or_create(&label).set(at.as_second());
                Some(c.name.clone())
            })
            .collect();
        // A channel removed, disabled or without a date since the last look.
        for gone in self.expiry_gauges.difference(&gauges) {
            self.metrics.credentials_expiry.remove(&ChannelLabel { channel: gone.clone() });
        }
        self.expiry_gauges = gauges;
        if !config.notify.credentials || config.notify.channels.is_empty() {
            return;
        }
        let now = now_ms();
        for e in expiring(&config, now) {
            let Some(notice) = expiry_notice(&config, &e, now) else { continue };
            let key = notice.key.clone();
            if !self.expiry_sent.contains(&key) && self.send(Some(notice)).await {
                self.expiry_sent.insert(key);
            }
        }
    }

    /// Queue a notice; `false` when the store could not take it (try again later).
    async fn send(&self, notice: Option<NewNotice>) -> bool {
        let Some(notice) = notice else { return true };
        let key = notice.key.clone();
        match self.store.admin(AdminOp::Notice(notice)).await {
            Ok(done) => {
                if done.changed > 0 {
                    tracing::info!(notice = %key, channels = done.changed, "staff notified");
                }
                true
            }
            Err(e) => {
                tracing::warn!(notice = %key, error = %e, "cannot queue a staff notice; will try again");
                false
            }
        }
    }
}

/// Local time in the agency's zone, for people.
fn local(config: &Config, ms: i64) -> String {
    config.local_time(ms)
}

/// One delivery per staff channel of `head` (trusted text with event values already
/// escaped per platform by `build`), cut to each platform's limit from the end, where
/// the previews are.
fn deliveries(
    config: &Config,
    key: &str,
    channels: &[String],
    priority: Priority,
    build: &dyn Fn(Platform) -> String,
) -> Vec<NewDelivery> {
    channels
        .iter()
        .filter_map(|name| config.channels.get(name).filter(|c| c.enabled && !c.public))
        .map(|c: &ChannelConfig| {
            let platform = c.platform();
            let text = build(platform);
            let fits = |s: &str| length::measure(platform, s, c.limit()).fits;
            let text = if fits(&text) { text } else { crate::render::fit::hard_fit(&text, &fits) };
            let seed = format!("notice:{key}");
            NewDelivery::planned(&seed, &c.name, DeliveryKind::Post, "", crate::lifecycle::Audience::Staff, priority)
                .text(text, None)
        })
        .collect()
}

fn urgency(p: Priority) -> Priority {
    p.max(Priority::High)
}

/// A held alert's notice, with approve and reject links. The text is fitted with the
/// links' real URLs, then stored with placeholders in their place ([`crate::links`]).
fn held_notice(
    config: &Config,
    link_key: &LinkKey,
    h: &HeldEvent,
    channels: &[String],
    escalation: bool,
) -> Option<NewNotice> {
    let key = format!("{}:{}", if escalation { "escalate" } else { "held" }, h.event_id);
    let expires_at = now_ms() + duration_ms(config.notify.link_ttl);
    let mut links = Vec::new();
    let mut urls = Vec::new();
    for action in [LinkAction::Approve, LinkAction::Reject] {
        let nonce = match crate::digest::random_nonce() {
            Ok(n) => n,
            Err(e) => {
                tracing::error!(error = %e, "cannot make approval links");
                return None;
            }
        };
        let token = link_key.token(&nonce);
        urls.push((crate::links::url(link_key, &config.admin.public_url, &nonce), crate::links::placeholder(&nonce)));
        links.push(NewLink { token_sha256: crate::digest::sha256_hex(token.as_bytes()), action, expires_at });
    }
    let deadline = config.events.get(&h.event_type).and_then(|r| r.hold_for.map(|d| (d, r.after_hold)));
    let build = |p: Platform| {
        let mut t = String::new();
        t.push_str(if escalation { "STILL HELD, nobody has decided: " } else { "HELD FOR APPROVAL: " });
        t.push_str(&escape(p, &h.headline));
        t.push_str(&format!(
            "\n{} · {} · {} · alert #{} · received {}",
            escape(p, &h.event_type),
            h.priority.as_str(),
            escape(p, &h.status),
            h.event_id,
            local(config, h.received_at)
        ));
        t.push_str(&format!("\nApprove: {}\nReject: {}", urls[0].0, urls[1].0));
        t.push_str(&format!("\n(or: bullhorn approve '#{0}' / bullhorn reject '#{0}')", h.event_id));
        if let Some((d, after)) = deadline {
            let what = if after == AfterHold::Publish { "published" } else { "rejected" };
            t.push_str(&format!(
                "\nUndecided, it will be {what} at {}.",
                local(config, h.received_at + duration_ms(d))
            ));
        }
        t.push_str("\n\nWould post:");
        for (channel, text) in &h.previews {
            t.push_str(&format!("\n— {}: {}", escape(p, channel), escape(p, text)));
        }
        t
    };
    let mut deliveries = deliveries(config, &key, channels, urgency(h.priority), &build);
    for d in &mut deliveries {
        for (url, placeholder) in &urls {
            d.text = d.text.replace(url.as_str(), placeholder);
        }
    }
    (!deliveries.is_empty()).then(|| NewNotice {
        key,
        about: Some(h.event_id),
        headline: format!("held: {}", h.headline),
        priority: urgency(h.priority),
        deliveries,
        links,
    })
}

/// The store looks restored from a backup (`why`), and the daemon started paused.
pub fn restored_notice(config: &Config, why: &str, now: i64) -> Option<NewNotice> {
    let key = format!("restored:{now}");
    let build = |p: Platform| {
        format!(
            "BULLHORN STARTED PAUSED at {}: {}. Nothing public is posted until someone checks what is queued (bullhorn status) and resumes (bullhorn resume).",
            local(config, now),
            escape(p, why)
        )
    };
    let deliveries = deliveries(config, &key, &config.notify.channels, Priority::Critical, &build);
    (!deliveries.is_empty()).then(|| NewNotice {
        key,
        about: None,
        headline: "started paused: store restored from a backup".to_owned(),
        priority: Priority::Critical,
        deliveries,
        links: Vec::new(),
    })
}

fn late_notice(config: &Config, event_id: i64, list: &[LateDelivery]) -> Option<NewNotice> {
    let first = list.first()?;
    let key = format!("late:{event_id}");
    let build = |p: Platform| {
        let mut t = format!(
            "NOT OUT after {}: {}\n{} · alert #{event_id}",
            humantime::format_duration(config.notify.late_after),
            escape(p, &first.headline),
            escape(p, &first.event_type)
        );
        for d in list {
            t.push_str(&format!(
                "\n— {}: {} since {}{}",
                escape(p, &d.channel),
                d.state,
                local(config, d.queued_at),
                d.last.as_deref().map(|l| format!("; last try: {}", escape(p, l))).unwrap_or_default()
            ));
        }
        t.push_str(&format!("\nSee: bullhorn status {event_id}"));
        t
    };
    let deliveries = deliveries(config, &key, &config.notify.channels, Priority::Critical, &build);
    (!deliveries.is_empty()).then(|| NewNotice {
        key,
        about: Some(event_id),
        headline: format!("late: {}", first.headline),
        priority: Priority::Critical,
        deliveries,
        links: Vec::new(),
    })
}

fn credentials_notice(config: &Config, f: &CredentialFailure) -> Option<NewNotice> {
    // At most one a channel an hour.
    let key = format!("credentials:{}:{}", f.channel, f.at / 3_600_000);
    // The refused channel itself may be a staff channel: tell the others.
    let channels: Vec<String> = config.notify.channels.iter().filter(|c| **c != f.channel).cloned().collect();
    let build = |p: Platform| {
        format!(
            "CHANNEL {}: the platform refused its credentials at {}: {}\nIts queue waits. Fix the token, then reload (systemctl reload bullhorn); check with bullhorn check --online.",
            escape(p, &f.channel),
            local(config, f.at),
            escape(p, &f.detail)
        )
    };
    let deliveries = deliveries(config, &key, &channels, Priority::High, &build);
    (!deliveries.is_empty()).then(|| NewNotice {
        key,
        about: None,
        headline: format!("credentials refused: {}", f.channel),
        priority: Priority::High,
        deliveries,
        links: Vec::new(),
    })
}

fn expiry_notice(config: &Config, e: &Expiring, now: i64) -> Option<NewNotice> {
    // Once per stage of one expiry: a renewed token with a new date is told about afresh.
    let key = format!("expiring:{}:{}:{}", e.channel, e.at, e.stage.key());
    let channels: Vec<String> = config.notify.channels.iter().filter(|c| **c != e.channel).cloned().collect();
    let what = e.describe(config, now);
    let then = if e.stage == Expiry::Expired {
        "The platform will refuse its posts until the token is renewed."
    } else {
        "Renew the token before then."
    };
    let build = |p: Platform| {
        format!(
            "CHANNEL {}: {what} (credentials_expire). {then} Put the new token in the credentials directory, set credentials_expire to its new date, then reload (systemctl reload bullhorn); check with bullhorn check --online.",
            escape(p, &e.channel)
        )
    };
    let priority = if e.stage <= Expiry::WithinADay { Priority::High } else { Priority::Normal };
    let deliveries = deliveries(config, &key, &channels, priority, &build);
    (!deliveries.is_empty()).then(|| NewNotice {
        key,
        about: None,
        headline: format!("credentials expiring: {}", e.channel),
        priority,
        deliveries,
        links: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(dir: &std::path::Path) -> Config {
        let toml = r#"
[broker]
enabled = false
[mqtt]
url = "mqtt://127.0.0.1:1883"
[[mqtt.subscribe]]
topic = "t"
format = "json"
[admin]
public_url = "https://bullhorn.sheriff.example/"
[notify]
channels = ["staff", "pager"]
[events.missing_child]
priority = "critical"
approval = "hold"
hold_for = "30m"
after_hold = "publish"
[channels.public_x]
kind = "console"
[channels.staff]
kind = "console"
public = false
[channels.slack]
kind = "slack"
webhook_url = "https://hooks.slack.com/services/T0/B0/x"
public = false
[channels.pager]
kind = "console"
public = false
credentials_expire = "2027-01-15"
"#;
        let path = dir.join("bullhorn.toml");
        std::fs::write(&path, toml).expect("write");
        crate::config::load_with_env(&path, []).expect("valid")
    }

    fn held() -> HeldEvent {
        HeldEvent {
            event_id: 12,
            event_type: "missing_child".to_owned(),
            status: "actual".to_owned(),
            headline: "AMBER ALERT @everyone <b>".to_owned(),
            priority: Priority::Critical,
            received_at: now_ms(),
            noticed: false,
            escalated: false,
            previews: vec![("public_x".to_owned(), "AMBER ALERT: Ana, 6".to_owned())],
        }
    }

    #[test]
    fn a_forward_clock_step_does_not_age_a_held_alert() {
        let start = tokio::time::Instant::now();
        let first = (start, Duration::from_secs(60));
        let later = start + Duration::from_secs(5);
        // The wall clock jumped an hour ahead: the alert has still waited 65 s, not 3,665.
        assert_eq!(held_age(Duration::from_secs(3665), first, later), Duration::from_secs(65));
        // A backward step makes it younger, which only delays a decision.
        assert_eq!(held_age(Duration::from_secs(10), first, later), Duration::from_secs(10));
        assert_eq!(held_age(Duration::from_secs(65), first, later), Duration::from_secs(65));
    }

    #[test]
    fn a_held_notice_has_two_single_use_links_and_the_previews() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        let n = held_notice(&c, &LinkKey::fixed([1; 32]), &held(), &c.notify.channels, false).expect("notice");
        assert_eq!(n.key, "held:12");
        assert_eq!(n.about, Some(12));
        assert_eq!(n.deliveries.len(), 2, "one per staff channel");
        assert_eq!(n.links.len(), 2);
        assert_ne!(n.links[0].token_sha256, n.links[1].token_sha256);
        let text = &n.deliveries[0].text;
        assert!(text.starts_with("HELD FOR APPROVAL: AMBER ALERT"), "{text}");
        assert!(!text.contains("/act/"), "no working link is stored: {text}");
        let sent = crate::links::expand(text, &LinkKey::fixed([1; 32]), &c.admin.public_url);
        assert!(sent.contains("https://bullhorn.sheriff.example/act/"), "no trailing slash doubled: {sent}");
        assert!(text.contains("bullhorn approve '#12'"), "{text}");
        assert!(text.contains("will be published at"), "{text}");
        assert!(text.contains("— public_x: AMBER ALERT: Ana, 6"), "{text}");
        // The token goes out in the text, never its hash, and is stored only as its hash.
        assert!(!sent.contains(&n.links[0].token_sha256));
        let token = sent.split("/act/").nth(1).and_then(|t| t.split_whitespace().next()).expect("token");
        assert_eq!(crate::digest::sha256_hex(token.as_bytes()), n.links[0].token_sha256);
        assert_eq!(n.deliveries[0].priority, Priority::Critical);
    }

    #[test]
    fn event_values_in_notices_are_escaped_for_the_staff_platform() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        let n = held_notice(&c, &LinkKey::fixed([1; 32]), &held(), &["slack".to_owned()], false).expect("notice");
        let text = &n.deliveries[0].text;
        assert!(text.contains("&lt;b&gt;"), "{text}");
        assert!(!text.contains("@everyone"), "{text}");
        assert!(crate::links::has_links(text), "links stay usable: {text}");
    }

    #[test]
    fn no_enabled_staff_channel_means_no_notice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut c = config(dir.path());
        for ch in c.channels.values_mut() {
            ch.enabled = false;
        }
        assert!(held_notice(&c, &LinkKey::fixed([1; 32]), &held(), &c.notify.channels, false).is_none());
    }

    #[test]
    fn a_credentials_notice_goes_once_an_hour_and_not_to_the_broken_channel() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        let f = CredentialFailure { channel: "staff".to_owned(), at: 7_200_000 + 5, detail: "401".to_owned() };
        let n = credentials_notice(&c, &f).expect("notice");
        assert_eq!(n.key, "credentials:staff:2");
        assert_eq!(n.deliveries.iter().map(|d| d.channel.as_str()).collect::<Vec<_>>(), ["pager"]);
    }

    #[test]
    fn expiring_credentials_are_told_at_each_stage_once_and_not_to_the_channel_itself() {
        let dir = tempfile::tempdir().expect("tempdir");
        let c = config(dir.path());
        // A date is the start of that day in the agency's zone (UTC here).
        let at = "2027-01-15T00:00:00Z".parse::<jiff::Timestamp>().expect("ts").as_millisecond();
        assert_eq!(c.channels["pager"].credentials_expire.map(|t| t.as_millisecond()), Some(at));
        let day = 24 * 3_600_000;
        let stage = |now: i64| expiring(&c, now).first().map(|e| e.stage);
        assert_eq!(stage(at - 15 * day), None, "more than credentials_warn (14 days) ahead");
        let mut short = c.clone();
        short.notify.credentials_warn = Duration::from_secs(2 * 24 * 3600);
        assert_eq!(expiring(&short, at - 3 * day).first().map(|e| e.stage), None, "a shorter warning is kept");
        assert_eq!(expiring(&short, at - 2 * day).first().map(|e| e.stage), Some(Expiry::WithinThreeDays));
        assert_eq!(stage(at - 14 * day), Some(Expiry::Ahead));
        assert_eq!(stage(at - 7 * day), Some(Expiry::WithinAWeek));
        assert_eq!(stage(at - 3 * day + 1), Some(Expiry::WithinThreeDays));
        assert_eq!(stage(at - day), Some(Expiry::WithinADay));
        assert_eq!(stage(at), Some(Expiry::Expired));

        let now = at - 2 * day - 3_600_000;
        let e = expiring(&c, now).remove(0);
        let n = expiry_notice(&c, &e, now).expect("notice");
        assert_eq!(n.key, format!("expiring:pager:{at}:3d"));
        assert_eq!(n.deliveries.iter().map(|d| d.channel.as_str()).collect::<Vec<_>>(), ["staff"]);
        let text = &n.deliveries[0].text;
        assert!(text.starts_with("CHANNEL pager: credentials expire at 00:00 UTC (Jan 15), in 2 days"), "{text}");
        assert!(expiring(&c, at - 5 * 3_600_000)[0].describe(&c, at - 5 * 3_600_000).ends_with("in 5 h"));
        assert_eq!(n.priority, Priority::Normal);
        let late = expiring(&c, at + 1).remove(0);
        let n = expiry_notice(&c, &late, at + 1).expect("notice");
        assert_eq!(n.key, format!("expiring:pager:{at}:expired"));
        assert!(n.deliveries[0].text.contains("expired at 00:00 UTC (Jan 15)"), "{}", n.deliveries[0].text);
        assert_eq!(n.priority, Priority::High);
    }
}
