//! One channel's worker: a loop that takes the most urgent due delivery, checks it may
//! still go out, waits for quota, commits an attempt row, calls the channel, and commits
//! the outcome. Requests on one channel are sequential; channels run in parallel.
//!
//! On start it loads the channel's unfinished deliveries from the store and rebuilds the
//! quota window from the attempt log. A delivery whose attempt was started but never
//! finished (a crash mid-request) is resolved through the channel before anything else.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::queue::{Item, Queue};
use super::quota::Window;
use super::{History, Next, WorkerMsg, decide, record};
use crate::channel::{Channel, Outcome, PostRef, Request, Resolution};
use crate::config::{ChannelConfig, Config, Quota};
use crate::metrics::{ChannelLabel, Metrics};
use crate::route::DeliveryKind;
use crate::store::{AttemptEnd, AttemptResult, Closing, Job, Reader, Store, StoreError};
use crate::time::{duration_ms, now_ms, rfc3339};

/// How long to wait before trying again when the store cannot be read or written.
const STORE_RETRY: Duration = Duration::from_secs(1);

pub(super) struct Worker {
    cfg: ChannelConfig,
    channel: Channel,
    http: reqwest::Client,
    config: Arc<Config>,
    store: Store,
    reader: Reader,
    metrics: Arc<Metrics>,
    queue: Queue,
    quota: Option<Window>,
    paused_until: Option<Instant>,
    /// "Unavailable" outcomes in a row: the channel's own backoff.
    unavailable: u32,
    /// Updates and cancels waiting for the post they reply to, by that post's id.
    waiting: HashMap<i64, Vec<Item>>,
    parked: HashSet<i64>,
    cancel: CancellationToken,
}

enum Step {
    Worked,
    Idle(Option<Instant>),
}

impl Worker {
    pub(super) fn new(
        cfg: ChannelConfig,
        http: reqwest::Client,
        config: Arc<Config>,
        store: Store,
        reader: Reader,
        metrics: Arc<Metrics>,
    ) -> Self {
        let quota = cfg.quota.map(Window::new);
        let channel = Channel::build(&cfg, &http, config.delivery.request_timeout);
        Worker {
            cfg,
            channel,
            http,
            config,
            store,
            reader,
            metrics,
            queue: Queue::default(),
            quota,
            paused_until: None,
            unavailable: 0,
            waiting: HashMap::new(),
            parked: HashSet::new(),
            cancel: CancellationToken::new(),
        }
    }

    fn name(&self) -> &str {
        &self.cfg.name
    }

    pub(super) async fn run(mut self, mut rx: mpsc::UnboundedReceiver<WorkerMsg>, cancel: CancellationToken) {
        self.cancel = cancel;
        while !self.cancel.is_cancelled() {
            match self.recover().await {
                Ok(()) => break,
                Err(e) => {
                    tracing::warn!(channel = %self.cfg.name, error = %e, "cannot load queued work; retrying");
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(STORE_RETRY) => {}
                    }
                }
            }
        }
        loop {
            while let Ok(msg) = rx.try_recv() {
                self.handle(msg).await;
            }
            if self.cancel.is_cancelled() {
                break;
            }
            let wake = match self.step().await {
                Step::Worked => continue,
                Step::Idle(wake) => wake,
            };
            self.report_depth();
            let sleep = async {
                match wake {
                    Some(at) => sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = self.cancel.cancelled() => break,
                msg = rx.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                () = sleep => {}
            }
        }
        self.report_depth();
    }

    async fn handle(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Queued(q) => {
                self.queue.push(Item { id: q.id, priority: q.priority }, None, Instant::now());
            }
            WorkerMsg::Config(config) => self.reconfigure(config).await,
        }
    }

    /// Take a reloaded config: a new client for the channel's settings; the queue and the
    /// rate-limit window stay (the window with the new limits).
    async fn reconfigure(&mut self, config: Arc<Config>) {
        if let Some(cfg) = config.channels.get(&self.cfg.name).cloned() {
            self.channel = Channel::build(&cfg, &self.http, config.delivery.request_timeout);
            self.quota = match (self.quota.take(), cfg.quota) {
                (Some(mut window), Some(quota)) => {
                    window.set_quota(quota);
                    Some(window)
                }
                (None, Some(quota)) => Some(self.window_from_log(quota).await.unwrap_or_else(|e| {
                    tracing::warn!(channel = %cfg.name, error = %e, "cannot read the send log; the new rate limit counts from now");
                    Window::new(quota)
                })),
                (_, None) => None,
            };
            self.cfg = cfg;
        }
        self.config = config;
    }

    /// The quota window rebuilt from the attempt log, so a restart or a reload does not
    /// reset it.
    async fn window_from_log(&self, quota: Quota) -> Result<Window, StoreError> {
        let now = Instant::now();
        let wall = now_ms();
        let sends = self.reader.sends_since(&self.cfg.name, wall - duration_ms(quota.window)).await?;
        let instants = sends.into_iter().map(|t| {
            let age = Duration::from_millis(u64::try_from(wall - t).unwrap_or(0));
            now.checked_sub(age).unwrap_or(now)
        });
        Ok(Window::rebuild(quota, instants))
    }

    fn report_depth(&self) {
        let depth = i64::try_from(self.queue.len() + self.parked.len()).unwrap_or(i64::MAX);
        self.metrics.queue_depth.get_or_create(&ChannelLabel { channel: self.cfg.name.clone() }).set(depth);
    }

    /// Load this channel's unfinished work and resolve attempts a previous run left open.
    async fn recover(&mut self) -> Result<(), StoreError> {
        if let Some(quota) = self.cfg.quota {
            self.quota = Some(self.window_from_log(quota).await?);
        }
        let now = Instant::now();
        let wall = now_ms();
        let rows = self.reader.pending(&self.cfg.name).await?;
        let (mut resumed, mut unknown) = (0, 0);
        for row in rows {
            let item = Item { id: row.id, priority: row.priority };
            if let Some(attempt_id) = row.open_attempt {
                unknown += 1;
                if let Some(job) = self.reader.job(row.id).await?
                    && self.resolve_open_attempt(&job, attempt_id).await?
                {
                    continue;
                }
                self.queue.push(item, None, now);
            } else {
                let due = row.not_before.map(|t| now + crate::time::until(t, wall));
                self.queue.push(item, due, now);
            }
            resumed += 1;
        }
        if resumed + unknown > 0 {
            tracing::info!(channel = %self.cfg.name, queued = resumed, unknown_outcomes = unknown, "resumed unfinished deliveries");
        }
        self.report_depth();
        Ok(())
    }

    /// Settle an attempt whose outcome a crash left unknown. Returns whether it had posted.
    async fn resolve_open_attempt(&mut self, job: &Job, attempt_id: i64) -> Result<bool, StoreError> {
        let resolution = self.channel.resolve(job).await;
        let (end, outcome, detail) = match &resolution {
            Resolution::Posted(p) => (
                AttemptEnd::Sent { post_id: p.id.clone(), post_url: p.url.clone() },
                "sent",
                "found posted after restart".to_owned(),
            ),
            Resolution::NotPosted => (
                AttemptEnd::Retry { not_before: now_ms() },
                "unknown",
                "not posted; sending again after restart".to_owned(),
            ),
            Resolution::CannotTell => {
                tracing::warn!(
                    channel = %self.cfg.name, delivery = job.delivery_id,
                    "a request was in flight when bullhorn stopped and the platform cannot say whether it posted; sending again (the webhook-id/idempotency key lets receivers drop a duplicate where supported)"
                );
                (
                    AttemptEnd::Retry { not_before: now_ms() },
                    "unknown",
                    "outcome unknown after restart; sending again".to_owned(),
                )
            }
        };
        let posted = matches!(resolution, Resolution::Posted(_));
        let result = AttemptResult { end, outcome, http_status: None, detail };
        match self.store.finish_attempt(attempt_id, job.delivery_id, now_ms(), result).await {
            Ok(()) | Err(StoreError::NotQueued(_)) => {}
            Err(e) => return Err(e),
        }
        if posted {
            self.metrics.delivery(&self.cfg.name, "sent");
        }
        Ok(posted)
    }

    /// Do at most one delivery; when nothing can go now, say when to look again.
    async fn step(&mut self) -> Step {
        let now = Instant::now();
        let mut wake = self.queue.next_due();
        if let Some(until) = self.paused_until {
            if until > now {
                return Step::Idle(Some(until));
            }
            self.paused_until = None;
        }
        let Some(head) = self.queue.peek(now) else {
            return Step::Idle(wake);
        };
        if let Some(w) = self.quota.as_mut().and_then(|q| q.wait(head.priority, now)) {
            let at = now + w;
            wake = Some(wake.map_or(at, |d| d.min(at)));
            return Step::Idle(wake);
        }
        if let Some(item) = self.queue.pop(now) {
            self.process(item).await;
        }
        Step::Worked
    }

    fn requeue(&mut self, item: Item, after: Duration) {
        let now = Instant::now();
        self.queue.push(item, Some(now + after), now);
    }

    /// Put back what waited on `id`, now that it is final.
    fn release(&mut self, id: i64) {
        if let Some(items) = self.waiting.remove(&id) {
            let now = Instant::now();
            for item in items {
                self.parked.remove(&item.id);
                self.queue.push(item, None, now);
            }
        }
    }

    fn park(&mut self, target: i64, item: Item) {
        if !self.queue.contains(target) && !self.parked.contains(&target) {
            // The post being replied to is unfinished but not in this queue: take it up.
            self.queue.push(Item { id: target, priority: item.priority }, None, Instant::now());
        }
        self.parked.insert(item.id);
        self.waiting.entry(target).or_default().push(item);
    }

    /// Why `job` must not go out any more, if it must not.
    fn expired(&self, job: &Job) -> Option<String> {
        let now = now_ms();
        if let Some(exp) = job.expires_at
            && exp <= now
        {
            return Some(format!("event expired at {}", rfc3339(exp)));
        }
        let max_age = self.config.events.get(&job.event_type)?.max_age?;
        let sent = job.sent_at.unwrap_or(job.received_at);
        (now - sent > duration_ms(max_age))
            .then(|| format!("older than the rule's max_age ({})", humantime::format_duration(max_age)))
    }

    /// Close a delivery without sending it.
    async fn close(&mut self, item: Item, job: &Job, closing: Closing, reason: String) {
        match self.store.close(job.delivery_id, closing, reason.clone()).await {
            Ok(()) | Err(StoreError::NotQueued(_)) => {
                tracing::info!(channel = %self.cfg.name, delivery = job.delivery_id, %reason, "closed without sending");
                self.metrics.delivery(&self.cfg.name, closing.as_str());
                self.release(item.id);
            }
            Err(e) => {
                tracing::warn!(channel = %self.cfg.name, error = %e, "cannot record closing; retrying");
                self.requeue(item, STORE_RETRY);
            }
        }
    }

    async fn process(&mut self, item: Item) {
        let job = match self.reader.job(item.id).await {
            Ok(Some(job)) => job,
            Ok(None) => return self.release(item.id),
            Err(e) => {
                tracing::warn!(channel = %self.cfg.name, error = %e, "cannot read delivery; retrying");
                return self.requeue(item, STORE_RETRY);
            }
        };
        if job.state != "queued" {
            // Suppressed by a cancel or a newer revision, or already done.
            if job.state == "suppressed" {
                self.metrics.delivery(&self.cfg.name, "suppressed");
            }
            return self.release(item.id);
        }
        if let Some(reason) = self.expired(&job) {
            return self.close(item, &job, Closing::Expired, reason).await;
        }
        let reply_to = match job.reply_to {
            None => None,
            Some(target) => match self.reader.reply_target(target).await {
                Ok(Some(t)) if t.state == "sent" => Some(PostRef { id: t.post_id, url: t.post_url }),
                Ok(Some(t)) if t.state == "queued" || t.state == "in_flight" => {
                    return self.park(target, item);
                }
                // The original never went out (dead, expired, withdrawn). A cancellation of
                // nothing is not posted; an update stands alone.
                Ok(_) if job.kind == DeliveryKind::Cancel => {
                    return self
                        .close(
                            item,
                            &job,
                            Closing::Suppressed,
                            "nothing of the incident went out on this channel".to_owned(),
                        )
                        .await;
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(channel = %self.cfg.name, error = %e, "cannot read reply target; retrying");
                    return self.requeue(item, STORE_RETRY);
                }
            },
        };

        let attempt_id = match self.store.begin_attempt(job.delivery_id, &self.cfg.name, now_ms(), None).await {
            Ok(id) => id,
            Err(e) => {
                if let StoreError::NotQueued(_) = e {
                    return self.release(item.id);
                }
                tracing::warn!(channel = %self.cfg.name, delivery = job.delivery_id, error = %e, "cannot record attempt, so not sending; retrying");
                return self.requeue(item, STORE_RETRY);
            }
        };

        // Counted from now, as close as possible to the request leaving (after the attempt's
        // commit): the platform counts by arrival.
        if let Some(q) = self.quota.as_mut() {
            q.record(job.priority, Instant::now());
        }
        let response = self.channel.send(&Request { job: &job, reply_to: reply_to.as_ref() }).await;
        let mut outcome = response.outcome;
        if let Outcome::Unknown(reason) = &outcome {
            tracing::warn!(channel = %self.cfg.name, delivery = job.delivery_id, %reason, "outcome unknown; checking with the platform");
            if let Resolution::Posted(p) = self.channel.resolve(&job).await {
                outcome = Outcome::Sent(p);
            }
        }
        self.conclude(item, &job, attempt_id, outcome, response.http_status).await;
    }

    async fn conclude(&mut self, item: Item, job: &Job, attempt_id: i64, outcome: Outcome, http_status: Option<u16>) {
        let wall = now_ms();
        let age = Duration::from_millis(u64::try_from(wall - job.created_at).unwrap_or(0));
        let history = History { failures: job.attempts, unavailable: self.unavailable, age };
        let (end, next) = decide(&outcome, history, &self.config.delivery, wall, fastrand::f64());
        match outcome {
            Outcome::Unavailable(_) => self.unavailable = self.unavailable.saturating_add(1),
            Outcome::Sent(_) => self.unavailable = 0,
            _ => {}
        }
        let result = record(&outcome, end, http_status);
        // The request went out: its outcome must be recorded before anything else, or a
        // restart would treat it as unknown. Keep trying while the store is down.
        loop {
            match self.store.finish_attempt(attempt_id, job.delivery_id, now_ms(), result.clone()).await {
                Ok(()) => break,
                // Closed: shutting down. NotQueued: someone else closed it; nothing to record.
                Err(StoreError::Closed | StoreError::NotQueued(_)) => return,
                Err(e) => {
                    tracing::warn!(channel = %self.cfg.name, delivery = job.delivery_id, error = %e, "cannot record outcome; retrying");
                    tokio::select! {
                        () = self.cancel.cancelled() => return,
                        () = tokio::time::sleep(STORE_RETRY) => {}
                    }
                }
            }
        }
        self.metrics.delivery(&self.cfg.name, outcome.label());
        let (name, id) = (self.name().to_owned(), job.delivery_id);
        match (&outcome, &next) {
            (Outcome::Sent(p), _) => tracing::info!(
                channel = %name, delivery = id, event_type = %job.event_type, kind = job.kind.as_str(),
                priority = job.priority.as_str(), post_id = p.id.as_deref().unwrap_or(""), "posted"
            ),
            (Outcome::Permanent(_), _) | (_, Next::Done) => tracing::error!(
                channel = %name, delivery = id, event_type = %job.event_type, reason = %result.detail,
                "delivery failed for good and was dead-lettered; check the channel's configuration"
            ),
            (Outcome::Unavailable(_), Next::Pause(d)) => tracing::warn!(
                channel = %name, delivery = id, pause = %humantime::format_duration(*d), in_a_row = self.unavailable,
                detail = %result.detail, "platform unavailable; the channel backs off, its queue kept in order"
            ),
            (_, Next::Pause(d)) => tracing::warn!(
                channel = %name, delivery = id, pause = %humantime::format_duration(*d), detail = %result.detail,
                "platform asked to slow down; channel paused"
            ),
            (_, Next::Retry(d)) => tracing::warn!(
                channel = %name, delivery = id, attempt = job.attempts + 1, retry_in = %humantime::format_duration(*d),
                detail = %result.detail, "delivery failed; will retry"
            ),
        }
        match next {
            Next::Done => self.release(item.id),
            Next::Retry(d) => self.requeue(item, d),
            Next::Pause(d) => {
                self.paused_until = Some(Instant::now() + d);
                self.requeue(item, d);
            }
        }
    }
}
