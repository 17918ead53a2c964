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

use tokio::sync::{mpsc, watch};
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::queue::{Item, Queue};
use super::quota::Window;
use super::{Action, History, Next, WorkerMsg, decide, record, steps};
use crate::channel::{
    About, Channel, Checkpoint, Context, Outcome, Post, PostRef, Request, Resolution, Response, Scratch,
};
use crate::config::{ChannelConfig, Config, Mode, Quota};
use crate::control::{Control, Pauses};
use crate::event::Priority;
use crate::lifecycle::{DeliveryKind, DeliveryState};
use crate::media::{Attached, MediaService};
use crate::metrics::{ChannelLabel, Metrics};
use crate::reload::Shared;
use crate::store::{AttemptEnd, AttemptResult, Begun, Closing, Job, Progress, Reader, ReplyTarget, Store, StoreError};
use crate::time::{duration_ms, now_ms, rfc3339};

/// How long to wait before trying again when the store cannot be read or written.
const STORE_RETRY: Duration = Duration::from_secs(1);

/// How long an interrupted wait for images is remembered (longer than a pause is likely
/// to last; only deliveries retracted or closed meanwhile are forgotten this way).
const IMAGE_WAIT_MEMORY: Duration = Duration::from_secs(24 * 3600);

pub(super) struct Worker {
    cfg: ChannelConfig,
    channel: Channel,
    ctx: Context,
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
    /// Deliveries a pause covers, queued again when the pauses change.
    set_aside: Vec<Item>,
    /// The config in force, for the channel as configured right now.
    live: Shared,
    /// For the links in staff notices, put in place just before the request.
    links: Option<Arc<crate::links::LinkKey>>,
    /// Kept so the pauses' sender outlives the worker.
    _control: Control,
    media: Option<Arc<MediaService>>,
    pauses: watch::Receiver<Pauses>,
    cancel: CancellationToken,
    /// New deliveries and reloads, from the router.
    inbox: mpsc::UnboundedReceiver<WorkerMsg>,
    /// How long each delivery has waited for its images so far (and when it last did), so
    /// an interrupted wait resumes with what is left of it.
    image_waits: HashMap<i64, (Duration, Instant)>,
}

/// How a wait for a delivery's images ended.
enum ImageWait {
    Ready(Attached),
    /// A retraction, a pause change or a reload arrived: the delivery goes back to the queue.
    Interrupted,
    ShuttingDown,
}

enum Step {
    Worked,
    Idle(Option<Instant>),
}

/// A delivery ready for its next request.
struct Prepared {
    job: Job,
    steps: Vec<Action>,
    /// The channel's original post of the incident, for a reply.
    original: Option<ReplyTarget>,
    /// The posts the delivery deletes after its own: the original's for a cancellation
    /// (where configured), every post of the incident for a retraction.
    deletions: Vec<PostRef>,
}

/// What to do with a delivery taken from the queue.
enum Prep {
    Ready(Box<Prepared>),
    /// Wait for the delivery it replies to.
    Park(i64),
    Close(Closing, String),
    /// Nothing to do any more (no longer queued).
    Release,
    /// The store could not be read; try again soon.
    Requeue,
}

impl Prepared {
    /// The request for step `done` (an [`Action::Post`]), or `None` for a deletion.
    fn request<'a>(
        &'a self,
        keep: Option<&'a dyn Checkpoint>,
        action: Action,
        root_of_original: Option<&'a PostRef>,
        media: &'a [crate::channel::Image],
    ) -> Option<Request<'a>> {
        let Action::Post { part, target } = action else { return None };
        let job = &self.job;
        let posted = &job.progress.posted;
        let original = self.original.as_ref().map(|o| &o.post);
        let (reply_to, root) =
            if part == 0 { (original, root_of_original) } else { (posted.last(), root_of_original.or(posted.first())) };
        let text = if self.steps.iter().any(|a| matches!(a, Action::Post { part: 1.., .. })) {
            job.parts.get(part).map_or(job.text.as_str(), String::as_str)
        } else {
            job.text.as_str()
        };
        let step = job.progress.done;
        // Images go with the first post (of a thread, to each recipient).
        let media = if part == 0 { media } else { &[] };
        let scratch = Scratch::new(&job.progress.scratch, step, keep);
        Some(Request { post: post_of(job), text, step, target, reply_to, root, media, scratch })
    }
}

/// The delivery as its channel sees it.
fn post_of(job: &Job) -> Post<'_> {
    Post {
        delivery_id: job.delivery_id,
        key: &job.idem_key,
        kind: job.kind,
        priority: job.priority,
        text: &job.text,
        parts: &job.parts,
        language: &job.language,
        created_at: job.created_at,
        event: About {
            id: job.event_id,
            incident: &job.incident_key,
            event_type: &job.event_type,
            msg_type: &job.msg_type,
            status: &job.status,
            revision: job.revision,
            json: &job.event_json,
        },
    }
}

/// The outbox as a channel's [`Checkpoint`]: what it saves lands in the delivery's row.
struct Saved<'a> {
    store: &'a Store,
    delivery_id: i64,
}

impl Checkpoint for Saved<'_> {
    fn save<'a>(
        &'a self,
        slot: &'a str,
        value: &'a str,
    ) -> std::pin::Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move { self.store.save_scratch(self.delivery_id, slot, value).await.map_err(|e| e.to_string()) })
    }
}

impl Worker {
    pub(super) fn new(
        cfg: ChannelConfig,
        ctx: Context,
        config: Arc<Config>,
        store: Store,
        reader: Reader,
        deps: super::Deps,
        inbox: mpsc::UnboundedReceiver<WorkerMsg>,
    ) -> Self {
        let super::Deps { metrics, control, media, live, links } = deps;
        let quota = cfg.quota.map(Window::new);
        let pauses = control.subscribe();
        let channel = Channel::build(&cfg, &ctx);
        Worker {
            cfg,
            channel,
            ctx,
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
            set_aside: Vec::new(),
            live,
            links,
            _control: control,
            media,
            pauses,
            cancel: CancellationToken::new(),
            inbox,
            image_waits: HashMap::new(),
        }
    }

    fn name(&self) -> &str {
        &self.cfg.name
    }

    /// Run until `cancel`. `previous`: a worker of the same channel told to stop, which
    /// may still be finishing its request; nothing is taken up before it is done.
    pub(super) async fn run(mut self, cancel: CancellationToken, previous: Option<tokio::task::JoinHandle<()>>) {
        self.cancel = cancel;
        // Not cut short by our own cancellation: a worker stopped while it waits would
        // let go of its predecessor, and the next one would wait for nobody.
        if let Some(previous) = previous {
            let _ = previous.await;
            if self.cancel.is_cancelled() {
                return;
            }
        }
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
            while let Ok(msg) = self.inbox.try_recv() {
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
                msg = self.inbox.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                Ok(()) = self.pauses.changed() => self.pauses_changed(),
                () = sleep => {}
            }
        }
        self.report_depth();
    }

    /// A pause was set or lifted: what waited for its event type is looked at again.
    fn pauses_changed(&mut self) {
        let paused = self.pauses.borrow_and_update().channel_paused(&self.cfg);
        if paused {
            tracing::warn!(channel = %self.cfg.name, "paused: nothing but retractions goes out until resumed");
        }
        let now = Instant::now();
        for item in std::mem::take(&mut self.set_aside) {
            self.queue.push(item, None, now);
        }
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
            self.channel = Channel::build(&cfg, &self.ctx);
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
            let audience_changed = cfg.public != self.cfg.public;
            self.cfg = cfg;
            self.config = config;
            // A staff channel made public, or back: what it could not be given meanwhile
            // (a drill's cancellation) it is given now.
            if audience_changed && let Err(e) = self.closings().await {
                tracing::warn!(channel = %self.cfg.name, error = %e, "cannot look for missed cancellations; at the next start then");
            }
            return;
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
        let depth = i64::try_from(self.queue.len() + self.parked.len() + self.set_aside.len()).unwrap_or(i64::MAX);
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
                if let Some(job) = self.reader.job(row.id).await? {
                    self.resolve_open_attempt(job, attempt_id).await?;
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
        self.closings().await?;
        self.report_depth();
        Ok(())
    }

    /// Queue the cancellations and retractions this channel missed while it was disabled
    /// or removed: every channel that carried an incident gets its end.
    async fn closings(&mut self) -> Result<(), StoreError> {
        for m in self.reader.missing_closings(&self.cfg.name).await? {
            let Ok(event) = serde_json::from_str::<crate::event::Event>(&m.event_json) else { continue };
            let live = self.live.load();
            let target = crate::render::Target::channel(&self.cfg);
            let language = (!m.language.is_empty()).then_some(m.language.as_str());
            let fallback;
            let rule = match self.config.events.get(&event.event_type) {
                Some(r) => r,
                None => {
                    fallback = crate::config::EventRule::new(
                        Priority::Normal,
                        crate::config::ChannelSelector::All,
                        &event.event_type,
                    );
                    &fallback
                }
            };
            let (kind, priority, rendered) = if m.retraction {
                let event = event.in_language(language);
                (
                    DeliveryKind::Retract,
                    Priority::Retraction,
                    live.renderer.correction(&event, &target, m.text.as_deref()),
                )
            } else {
                let rendered = live.renderer.for_event(rule, &event, language).render(&target, DeliveryKind::Cancel);
                (DeliveryKind::Cancel, rule.priority, rendered)
            };
            let seed = format!("closing:{}", m.closer);
            let audience = crate::policy::audience(&event);
            let delivery =
                crate::store::NewDelivery::planned(&seed, &self.cfg.name, kind, &m.language, audience, priority)
                    .text(rendered.text, rendered.error);
            let op = crate::store::AdminOp::Closing { closer: m.closer, reply_to: m.reply_to, delivery };
            let done = self.store.admin(op).await?;
            if done.changed > 0 {
                tracing::warn!(channel = %self.cfg.name, event = m.closer, "the channel missed an incident's {}: queued now", kind.as_str());
            }
        }
        Ok(())
    }

    /// Settle an attempt whose outcome a crash left unknown: ask the channel whether it
    /// posted, and record it as done or to be sent again. The delivery then goes back to
    /// the queue (where a finished one is dropped when taken).
    async fn resolve_open_attempt(&mut self, job: Job, attempt_id: i64) -> Result<(), StoreError> {
        // In flight: the writer refuses to treat it as queued, so look at it as if it were.
        let delivery_id = job.delivery_id;
        let prepared = match self.prepare(job, true).await {
            Prep::Ready(p) => p,
            Prep::Requeue => return Err(StoreError::Write("cannot read the delivery".to_owned())),
            // Whatever else: nothing to resolve; send again once it is queued.
            _ => {
                let result = AttemptResult {
                    end: AttemptEnd::Retry { not_before: now_ms() },
                    outcome: "unknown",
                    http_status: None,
                    detail: "outcome unknown after restart".to_owned(),
                    note: None,
                };
                return match self.store.finish_attempt(attempt_id, delivery_id, now_ms(), result).await {
                    Ok(()) | Err(StoreError::NotQueued(_)) => Ok(()),
                    Err(e) => Err(e),
                };
            }
        };
        let done = prepared.job.progress.done;
        let action = prepared.steps.get(done).copied().unwrap_or(Action::Post { part: 0, target: 0 });
        let root = self.root_of_original(&prepared);
        let keep = Saved { store: &self.store, delivery_id: prepared.job.delivery_id };
        let resolution = match prepared.request(Some(&keep), action, root.as_ref(), &[]) {
            Some(req) => self.channel.resolve(&req).await,
            // A deletion is safe to repeat: a post already gone counts as deleted.
            None => Resolution::NotPosted,
        };
        let detail = match &resolution {
            Resolution::Posted(_) => "found posted after restart",
            Resolution::NotPosted => "not posted; sending again after restart",
            Resolution::Deduplicated => "outcome unknown after restart; sending again (the platform drops a repeat)",
            Resolution::CannotTell => {
                tracing::warn!(
                    channel = %self.cfg.name, delivery = delivery_id,
                    "a request was in flight when bullhorn stopped and the platform cannot say whether it posted; sending again, which may post twice"
                );
                "outcome unknown after restart; sending again"
            }
        };
        let result = match resolution {
            Resolution::Posted(p) => {
                self.metrics.delivery(&self.cfg.name, "sent");
                let (end, _, _) = self.advance(&prepared, action, Some(p), None);
                AttemptResult { end, outcome: "sent", http_status: None, detail: detail.to_owned(), note: None }
            }
            _ => AttemptResult {
                end: AttemptEnd::Retry { not_before: now_ms() },
                // The next try looks again before sending.
                outcome: "unknown",
                http_status: None,
                detail: detail.to_owned(),
                note: None,
            },
        };
        match self.store.finish_attempt(attempt_id, delivery_id, now_ms(), result).await {
            Ok(()) | Err(StoreError::NotQueued(_)) => Ok(()),
            Err(e) => Err(e),
        }
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
        // Paused (the kill switch, or this channel): only a retraction may go.
        if head.priority != Priority::Retraction && self.pauses.borrow().channel_paused(&self.cfg) {
            return Step::Idle(wake);
        }
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

    /// Why `job` must not go out any more, if it must not. A cancellation or retraction
    /// never expires: what it takes back is still out.
    fn expired(&self, job: &Job) -> Option<String> {
        if !job.kind.is_news() {
            return None;
        }
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
    async fn close(&mut self, item: Item, delivery_id: i64, closing: Closing, reason: String) {
        match self.store.close(delivery_id, closing, reason.clone()).await {
            Ok(()) | Err(StoreError::NotQueued(_)) => {
                tracing::info!(channel = %self.cfg.name, delivery = delivery_id, %reason, "closed without sending");
                self.metrics.delivery(&self.cfg.name, closing.as_str());
                self.release(item.id);
            }
            Err(e) => {
                tracing::warn!(channel = %self.cfg.name, error = %e, "cannot record closing; retrying");
                self.requeue(item, STORE_RETRY);
            }
        }
    }

    /// The first post of the original's thread, for Bluesky-style replies.
    fn root_of_original(&self, p: &Prepared) -> Option<PostRef> {
        p.original.as_ref().and_then(|o| o.posts().into_iter().next())
    }

    /// Check that `job` may still go out and work out its requests. `in_flight`: it is
    /// being resolved after a restart, not taken from the queue.
    async fn prepare(&mut self, job: Job, in_flight: bool) -> Prep {
        if !in_flight && job.state != DeliveryState::Queued {
            // Suppressed by a cancel or a newer revision, or already done.
            if job.state == DeliveryState::Suppressed {
                self.metrics.delivery(&self.cfg.name, "suppressed");
            }
            return Prep::Release;
        }
        if !in_flight && let Some(reason) = self.expired(&job) {
            return Prep::Close(Closing::Expired, reason);
        }
        let original = match job.reply_to {
            None => None,
            Some(target) => match self.reader.reply_target(target).await {
                Ok(Some(t)) if t.state == DeliveryState::Sent => Some(t),
                Ok(Some(t)) if matches!(t.state, DeliveryState::Queued | DeliveryState::InFlight) && !in_flight => {
                    return Prep::Park(target);
                }
                // Cut short, but part of it went out: that is what gets the reply.
                Ok(Some(t)) if t.post.id.is_some() => Some(t),
                // Whether it went out was never known: a cancellation goes out on its own
                // rather than not at all.
                Ok(Some(t)) if t.maybe_posted => None,
                // The original never went out (dead, expired, withdrawn). A cancellation of
                // nothing is not posted; an update stands alone.
                Ok(_) if matches!(job.kind, DeliveryKind::Cancel | DeliveryKind::Retract) && !in_flight => {
                    return Prep::Close(
                        Closing::Suppressed,
                        "nothing of the incident went out on this channel".to_owned(),
                    );
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(channel = %self.cfg.name, error = %e, "cannot read reply target; retrying");
                    return Prep::Requeue;
                }
            },
        };
        // A staff notice's approve/reject links are stored as placeholders; the real
        // ones exist only in the request. Nothing but a notice has them.
        let mut job = job;
        if let Some(key) = &self.links
            && job.event_type == "notice"
            && job.status == "system"
            && crate::links::has_links(&job.text)
        {
            job.text = crate::links::expand(&job.text, key, &self.config.admin.public_url);
        }
        let caps = self.channel.caps();
        let deletions = match &original {
            Some(o) if job.kind == DeliveryKind::Cancel && self.cfg.delete_original && caps.delete => o.posts(),
            // A retraction deletes every post of the incident, wherever the platform can; a
            // correction, the alert and updates it replaces (what follows replies to it).
            _ if job.kind == DeliveryKind::Retract && caps.delete => {
                let news_only = job.msg_type == "correct";
                match self.reader.incident_posts(&job.incident_key, &job.channel, &job.language, news_only).await {
                    Ok(posts) => posts,
                    Err(e) => {
                        tracing::warn!(channel = %self.cfg.name, error = %e, "cannot read the posts to delete; retrying");
                        return Prep::Requeue;
                    }
                }
            }
            _ => Vec::new(),
        };
        let steps = steps(job.parts.len(), caps, deletions.len());
        Prep::Ready(Box::new(Prepared { job, steps, original, deletions }))
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
        let prepared = match self.prepare(job, false).await {
            Prep::Ready(p) => p,
            Prep::Park(target) => return self.park(target, item),
            Prep::Close(closing, reason) => {
                let id = item.id;
                return self.close(item, id, closing, reason).await;
            }
            Prep::Release => return self.release(item.id),
            Prep::Requeue => return self.requeue(item, STORE_RETRY),
        };
        let job = &prepared.job;
        // This event type is paused: set aside until the pauses change. (Checked again
        // where it counts, in the transaction that begins the attempt.)
        if job.priority != Priority::Retraction && self.pauses.borrow().type_paused(&self.cfg, &job.event_type) {
            self.set_aside.push(item);
            return;
        }
        // Shadow mode: recorded with its text, counted against the quota, not posted.
        if self.config.mode == Mode::Shadow && !self.cfg.platform().profile().local {
            if let Some(q) = self.quota.as_mut() {
                q.record(job.priority, Instant::now());
            }
            let reason = format!("shadow mode: not posted ({} on {})", job.kind.as_str(), self.cfg.platform());
            let id = job.delivery_id;
            return self.close(item, id, Closing::Shadow, reason).await;
        }
        let done = job.progress.done;
        let Some(&action) = prepared.steps.get(done) else {
            // Every step is done (the config changed between them): nothing left to send.
            let reason = "every step was done".to_owned();
            return self.close(item, job.delivery_id, Closing::Done, reason).await;
        };
        // Its images, waited for at most its priority's wait (before the attempt row: a
        // slow image is not an open request).
        let attached = match (action, self.media.clone()) {
            (Action::Post { part: 0, .. }, Some(media)) => match self.wait_for_images(&media, job).await {
                ImageWait::Ready(attached) => attached,
                ImageWait::Interrupted => return self.requeue(item, Duration::ZERO),
                // Still queued in the store: taken up again on start.
                ImageWait::ShuttingDown => return,
            },
            _ => Attached::default(),
        };
        let resolve_data = (prepared.steps.len() > 1).then(|| format!("{{\"step\":{done}}}"));
        // The channel as configured now: a reload may have made it public since the
        // delivery was queued (or removed it, and then nothing begins here).
        let Some(public) = self.live.load().config.channels.get(&self.cfg.name).filter(|c| c.enabled).map(|c| c.public)
        else {
            return self.requeue(item, STORE_RETRY);
        };
        let begun = self.store.begin_attempt(job.delivery_id, &self.cfg.name, public, now_ms(), resolve_data).await;
        let attempt_id = match begun {
            Ok(Begun::Attempt(id)) => id,
            Ok(Begun::Paused) => {
                tracing::debug!(channel = %self.cfg.name, delivery = job.delivery_id, "paused; set aside until the pauses change");
                self.set_aside.push(item);
                return;
            }
            Ok(Begun::Closed(reason)) => {
                tracing::warn!(channel = %self.cfg.name, delivery = job.delivery_id, %reason, "not sent, and never will be");
                self.metrics.delivery(&self.cfg.name, "suppressed");
                return self.release(item.id);
            }
            Err(StoreError::NotQueued(_)) => return self.release(item.id),
            Err(e) => {
                tracing::warn!(channel = %self.cfg.name, delivery = job.delivery_id, error = %e, "cannot record attempt, so not sending; retrying");
                return self.requeue(item, STORE_RETRY);
            }
        };

        // Counted from now, as close as possible to the request leaving (after the attempt's
        // commit): the platform counts by arrival.
        if let Some(q) = self.quota.as_mut() {
            q.record(job.priority, Instant::now());
        }
        let root = self.root_of_original(&prepared);
        let keep = Saved { store: &self.store, delivery_id: prepared.job.delivery_id };
        let response = match prepared.request(Some(&keep), action, root.as_ref(), &attached.media) {
            Some(req) => {
                // The last try's outcome was never known: ask before sending again (a lost
                // answer can show up on the platform later than the first look).
                if job.last_outcome.as_deref() == Some("unknown")
                    && let Resolution::Posted(post) = self.channel.resolve(&req).await
                {
                    let response = Response::from(Outcome::Sent(post)).with_note(attached.note);
                    return self.conclude(item, &prepared, action, attempt_id, response).await;
                }
                let mut response = self.channel.send(&req).await;
                response.note = match (attached.note, response.note) {
                    (Some(a), Some(b)) => Some(format!("{a}; {b}")),
                    (a, b) => a.or(b),
                };
                if let Outcome::Unknown(reason) = &response.outcome {
                    tracing::warn!(channel = %self.cfg.name, delivery = job.delivery_id, %reason, "outcome unknown; checking with the platform");
                    // Not found stays unknown: a lost post can show up on the platform later
                    // than this first look, and the next try looks again before sending.
                    if let Resolution::Posted(p) = self.channel.resolve(&req).await {
                        response.outcome = Outcome::Sent(p);
                    }
                }
                response
            }
            None => {
                let Action::Delete(i) = action else { unreachable!("a post has a request") };
                match prepared.deletions.get(i) {
                    Some(post) => self.channel.delete(post).await,
                    None => Outcome::Sent(PostRef::default()).into(),
                }
            }
        };
        self.conclude(item, &prepared, action, attempt_id, response).await;
    }

    /// Wait for `job`'s images, but not through what cannot wait: a shutdown, a retraction
    /// for this channel (it goes ahead of everything), a pause (nothing goes out once
    /// paused, so the delivery is looked at again under the new pauses) or a reload.
    async fn wait_for_images(&mut self, media: &Arc<MediaService>, job: &Job) -> ImageWait {
        let start = Instant::now();
        // Forget deliveries interrupted long ago (retracted or closed since).
        self.image_waits.retain(|_, (_, at)| start.duration_since(*at) < IMAGE_WAIT_MEMORY);
        let spent = self.image_waits.get(&job.delivery_id).map_or(Duration::ZERO, |(spent, _)| *spent);
        let mut held = Vec::new();
        let mut pauses_changed = false;
        let outcome = {
            let images = media.for_delivery(job, &self.cfg, spent);
            tokio::pin!(images);
            loop {
                tokio::select! {
                    biased;
                    () = self.cancel.cancelled() => break ImageWait::ShuttingDown,
                    Ok(()) = self.pauses.changed() => {
                        pauses_changed = true;
                        break ImageWait::Interrupted;
                    }
                    msg = self.inbox.recv() => match msg {
                        Some(WorkerMsg::Queued(q)) if q.priority == Priority::Retraction => {
                            held.push(WorkerMsg::Queued(q));
                            break ImageWait::Interrupted;
                        }
                        // A reload: the delivery is prepared again under the new config,
                        // never sent with steps and limits of the old one.
                        Some(msg @ WorkerMsg::Config(_)) => {
                            held.push(msg);
                            break ImageWait::Interrupted;
                        }
                        Some(msg) => held.push(msg),
                        None => break ImageWait::ShuttingDown,
                    },
                    attached = &mut images => break ImageWait::Ready(attached),
                }
            }
        };
        for msg in held {
            self.handle(msg).await;
        }
        if pauses_changed {
            self.pauses_changed();
        }
        if matches!(outcome, ImageWait::Ready(_)) {
            self.image_waits.remove(&job.delivery_id);
        } else {
            let now = Instant::now();
            self.image_waits.insert(job.delivery_id, (spent + now.duration_since(start), now));
        }
        outcome
    }

    /// The record of a finished step: the next step is queued, or the delivery is done.
    /// `post` is where a post step landed (`None` for a deletion or a skipped recipient);
    /// `note` what this step's record should say. Notes of all steps are kept with the
    /// delivery's progress; the last step's record carries them all.
    fn advance(
        &self,
        p: &Prepared,
        action: Action,
        post: Option<PostRef>,
        note: Option<String>,
    ) -> (AttemptEnd, Next, Option<String>) {
        let mut posted = p.job.progress.posted.clone();
        if let (Action::Post { .. }, Some(post)) = (action, &post) {
            posted.push(post.clone());
        }
        let mut notes = p.job.progress.notes.clone();
        notes.extend(note.clone());
        let done = p.job.progress.done + 1;
        if done < p.steps.len() {
            let first = posted.first().cloned();
            return (AttemptEnd::Step { post: first, done, posted, notes }, Next::Retry(Duration::ZERO), note);
        }
        let all = (!notes.is_empty()).then(|| notes.join("; "));
        let progress =
            (p.steps.len() > 1).then(|| Progress { done, posted: posted.clone(), notes, ..Progress::default() });
        let post = posted.into_iter().next().or(post).unwrap_or_default();
        (AttemptEnd::Sent { post, progress }, Next::Done, all)
    }

    async fn conclude(&mut self, item: Item, p: &Prepared, action: Action, attempt_id: i64, response: Response) {
        let job = &p.job;
        let Response { outcome, http_status, note } = response;
        let wall = now_ms();
        let age = Duration::from_millis(u64::try_from(wall - job.created_at).unwrap_or(0));
        let history =
            History { failures: job.attempts, unavailable: self.unavailable, age, closing: !job.kind.is_news() };
        let (mut end, mut next) = decide(&outcome, history, &self.config.delivery, wall, fastrand::f64());
        let mut note = note;
        let last = job.progress.done + 1 >= p.steps.len();
        let several = self.channel.caps().targets > 1;
        match (&outcome, &end) {
            (Outcome::Sent(post), _) => (end, next, note) = self.advance(p, action, Some(post.clone()), note),
            // The cancellation is out; a post that cannot be deleted does not undo that.
            (_, AttemptEnd::Dead { reason }) if matches!(action, Action::Delete(_)) => {
                let why = format!("the original could not be deleted: {reason}");
                (end, next, note) = self.advance(p, action, None, Some(why));
            }
            // One recipient refused for good (opted out, invalid number): the others still
            // get it. Dead only if nobody did.
            (_, AttemptEnd::Dead { reason }) if several && !(last && job.progress.posted.is_empty()) => {
                let why = reason.clone();
                (end, next, note) = self.advance(p, action, None, Some(why));
            }
            _ => {}
        }
        match outcome {
            Outcome::Unavailable(_) | Outcome::Credentials(_) => self.unavailable = self.unavailable.saturating_add(1),
            Outcome::Sent(_) => self.unavailable = 0,
            _ => {}
        }
        let mut result = record(&outcome, end, http_status);
        if let Some(n) = &note {
            result.detail = if result.detail.is_empty() { n.clone() } else { format!("{}; {n}", result.detail) };
        }
        result.note = note;
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
        let step_of = || format!("{}/{}", job.progress.done + 1, p.steps.len());
        let (name, id) = (self.name().to_owned(), job.delivery_id);
        match (&outcome, &result.end) {
            (_, AttemptEnd::Step { .. }) => {
                tracing::debug!(channel = %name, delivery = id, step = %step_of(), "step done")
            }
            (_, AttemptEnd::Sent { post, .. }) => {
                self.metrics.delivery(&self.cfg.name, "sent");
                tracing::info!(
                    channel = %name, delivery = id, event_type = %job.event_type, kind = job.kind.as_str(),
                    priority = job.priority.as_str(), post_id = post.id.as_deref().unwrap_or(""),
                    note = result.note.as_deref().unwrap_or(""), "posted"
                );
            }
            (_, AttemptEnd::Dead { .. }) => {
                self.metrics.delivery(&self.cfg.name, "dead");
                tracing::error!(
                    channel = %name, delivery = id, event_type = %job.event_type, reason = %result.detail,
                    "delivery failed for good and was dead-lettered; check the channel's configuration"
                );
            }
            (Outcome::Credentials(_), _) => {
                self.metrics.delivery(&self.cfg.name, outcome.label());
                tracing::error!(
                    channel = %name, delivery = id, pause = %humantime::format_duration(next_delay(&next)),
                    detail = %result.detail,
                    "the platform refused the channel's credentials; its queue waits until they are fixed (then reload)"
                );
            }
            (Outcome::Unavailable(_), _) => {
                self.metrics.delivery(&self.cfg.name, outcome.label());
                tracing::warn!(
                    channel = %name, delivery = id, pause = %humantime::format_duration(next_delay(&next)),
                    in_a_row = self.unavailable, detail = %result.detail,
                    "platform unavailable; the channel backs off, its queue kept in order"
                );
            }
            (_, _) if matches!(next, Next::Pause(_)) => {
                self.metrics.delivery(&self.cfg.name, outcome.label());
                tracing::warn!(
                    channel = %name, delivery = id, pause = %humantime::format_duration(next_delay(&next)),
                    detail = %result.detail, "platform asked to slow down; channel paused"
                );
            }
            (_, _) => {
                self.metrics.delivery(&self.cfg.name, outcome.label());
                tracing::warn!(
                    channel = %name, delivery = id, attempt = job.attempts + 1,
                    retry_in = %humantime::format_duration(next_delay(&next)), detail = %result.detail,
                    "delivery failed; will retry"
                );
            }
        }
        if let Next::Pause(d) = next {
            self.paused_until = Some(Instant::now() + d);
        }
        match next {
            Next::Done => self.release(item.id),
            Next::Retry(d) | Next::Pause(d) => self.requeue(item, d),
        }
    }
}

fn next_delay(next: &Next) -> Duration {
    match next {
        Next::Done => Duration::ZERO,
        Next::Retry(d) | Next::Pause(d) => *d,
    }
}
