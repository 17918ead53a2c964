//! One channel's worker: a loop that takes the most urgent due deliveries, begins their
//! next attempts together and starts their requests (`attempt.rs`), then reports how each
//! ended (`report.rs`). Up to the channel's `concurrency` requests are in flight at once,
//! within its quota, the most urgent first; deliveries of one incident go one at a time,
//! so a reply follows what it replies to and a retraction every post it deletes. Each
//! request runs in a task of its own, which commits its outcome; channels run in parallel.
//!
//! On start it loads the channel's unfinished deliveries from the store and rebuilds the
//! quota window from the attempt log. A delivery whose attempt was started but never
//! finished (a crash mid-request) is resolved through the channel before anything else.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinSet;
use tokio::time::{Instant, sleep_until};
use tokio_util::sync::CancellationToken;

use super::WorkerMsg;
use super::attempt::Landed;
use super::queue::{Item, Queue};
use super::quota::{Pending, Window};
use crate::channel::{Channel, Context};
use crate::config::{ChannelConfig, Config, Quota};
use crate::control::{Control, Pauses};
use crate::event::Priority;
use crate::lifecycle::DeliveryKind;
use crate::media::MediaService;
use crate::metrics::{ChannelLabel, Metrics};
use crate::reload::Shared;
use crate::store::{Closing, Job, Reader, Store, StoreError};
use crate::time::{duration_ms, now_ms};

/// How long to wait before trying again when the store cannot be read or written.
pub(super) const STORE_RETRY: Duration = Duration::from_secs(1);

pub(super) struct Worker {
    /// The channel as configured now.
    pub(super) cfg: ChannelConfig,
    /// Shared with the requests in flight; a reload builds a new one for the next.
    pub(super) channel: Arc<Channel>,
    pub(super) ctx: Context,
    pub(super) config: Arc<Config>,
    /// The config in force, for the channel as configured right now.
    pub(super) live: Shared,
    /// What the worker reads, writes and counts with.
    pub(super) io: Io,
    /// What waits to go out.
    pub(super) backlog: Backlog,
    /// How fast the channel may go.
    pub(super) pace: Pace,
    pub(super) pauses: watch::Receiver<Pauses>,
    pub(super) cancel: CancellationToken,
    /// New deliveries and reloads, from the router.
    pub(super) inbox: mpsc::UnboundedReceiver<WorkerMsg>,
    /// The requests in flight, a task each (aborted with the worker: a crash).
    pub(super) flight: JoinSet<Landed>,
    /// The deliveries at the head of the queue, read in one trip while a batch is chosen
    /// (the attempt's begin checks again that each may go); empty between batches.
    pub(super) prefetched: HashMap<i64, Job>,
    /// Counts reloads, so a batch chosen across one is not begun with the old steps.
    generation: u64,
}

/// What the worker works with.
pub(super) struct Io {
    pub(super) store: Store,
    pub(super) reader: Reader,
    pub(super) metrics: Arc<Metrics>,
    pub(super) media: Option<Arc<MediaService>>,
    /// For the links in staff notices, put in place just before the request.
    pub(super) links: Option<Arc<crate::links::LinkKey>>,
    /// Kept so the pauses' sender outlives the worker.
    _control: Control,
}

/// The deliveries the worker holds: due or waiting in the queue, parked behind the post
/// they reply to, set aside by a pause.
#[derive(Default)]
pub(super) struct Backlog {
    pub(super) queue: Queue,
    /// Updates and cancels waiting for the post they reply to, by that post's id.
    waiting: HashMap<i64, Vec<Item>>,
    parked: HashSet<i64>,
    /// Deliveries a pause covers, queued again when the pauses change.
    pub(super) set_aside: Vec<Item>,
    /// How long each delivery has waited for its images so far (and when it last did), so
    /// an interrupted wait resumes with what is left of it.
    pub(super) image_waits: HashMap<i64, (Duration, Instant)>,
    /// Incidents with a delivery being begun or in flight, and the deliveries of the same
    /// incident waiting behind it.
    behind: HashMap<String, Vec<Item>>,
    /// Deliveries whose request is in flight.
    pub(super) flying: HashSet<i64>,
}

impl Backlog {
    pub(super) fn requeue(&mut self, item: Item, after: Duration) {
        let now = Instant::now();
        self.queue.push(item, Some(now + after), now);
    }

    /// Put back what waited on `id`, now that it is final.
    pub(super) fn release(&mut self, id: i64) {
        if let Some(items) = self.waiting.remove(&id) {
            let now = Instant::now();
            for item in items {
                self.parked.remove(&item.id);
                self.queue.push(item, None, now);
            }
        }
    }

    /// Hold `item` until `target`, the post it replies to, is final.
    pub(super) fn park(&mut self, target: i64, item: Item) {
        if !self.queue.contains(target) && !self.parked.contains(&target) && !self.flying.contains(&target) {
            // The post being replied to is unfinished but not in this queue: take it up.
            self.queue.push(Item { id: target, priority: item.priority }, None, Instant::now());
        }
        self.parked.insert(item.id);
        self.waiting.entry(target).or_default().push(item);
    }

    /// A delivery of `incident` is being begun or in flight.
    pub(super) fn busy(&self, incident: &str) -> bool {
        self.behind.contains_key(incident)
    }

    /// Mark `incident` busy: its other deliveries wait until [`Backlog::let_go`].
    pub(super) fn claim(&mut self, incident: &str) {
        self.behind.entry(incident.to_owned()).or_default();
    }

    /// Hold `item` until `incident` is let go.
    pub(super) fn hold(&mut self, incident: String, item: Item) {
        self.behind.entry(incident).or_default().push(item);
    }

    /// `incident`'s request landed (or never began): what waited behind it is queued.
    pub(super) fn let_go(&mut self, incident: &str) {
        let now = Instant::now();
        for item in self.behind.remove(incident).unwrap_or_default() {
            self.queue.push(item, None, now);
        }
    }

    fn depth(&self) -> usize {
        let behind: usize = self.behind.values().map(Vec::len).sum();
        self.queue.len() + self.parked.len() + self.set_aside.len() + behind + self.flying.len()
    }
}

/// The channel's pace: its quota window, and a pause the platform asked for.
pub(super) struct Pace {
    pub(super) quota: Option<Window>,
    pub(super) paused_until: Option<Instant>,
    /// "Unavailable" outcomes in a row: the channel's own backoff.
    pub(super) unavailable: u32,
    /// The platform failed, throttled or refused the credentials, and has not taken a
    /// post since: one request at a time (the most urgent) until one is sent.
    pub(super) probing: bool,
}

impl Pace {
    /// How many requests may be in flight now.
    fn window(&self, concurrency: usize) -> usize {
        if self.probing { 1 } else { concurrency.max(1) }
    }
}

enum Step {
    Worked,
    Idle(Option<Instant>),
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
        let channel = Arc::new(Channel::build(&cfg, &ctx));
        Worker {
            cfg,
            channel,
            ctx,
            config,
            live,
            io: Io { store, reader, metrics, media, links, _control: control },
            backlog: Backlog::default(),
            pace: Pace { quota, paused_until: None, unavailable: 0, probing: false },
            pauses,
            cancel: CancellationToken::new(),
            inbox,
            flight: JoinSet::new(),
            prefetched: HashMap::new(),
            generation: 0,
        }
    }

    pub(super) fn name(&self) -> &str {
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
            self.land_ready();
            if self.cancel.is_cancelled() {
                break;
            }
            let wake = match self.fill().await {
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
                Some(landed) = self.flight.join_next() => self.land(landed),
                msg = self.inbox.recv() => match msg {
                    Some(msg) => self.handle(msg).await,
                    None => break,
                },
                Ok(()) = self.pauses.changed() => self.pauses_changed(),
                () = sleep => {}
            }
        }
        // The requests in flight finish (their tasks record their outcomes) before the
        // worker stops, unless the shutdown's grace runs out and aborts it, them with it.
        while let Some(landed) = self.flight.join_next().await {
            self.land(landed);
        }
        self.report_depth();
    }

    /// Take back the requests that have landed, without waiting.
    fn land_ready(&mut self) {
        while let Some(landed) = self.flight.try_join_next() {
            self.land(landed);
        }
    }

    fn land(&mut self, landed: Result<Landed, tokio::task::JoinError>) {
        match landed {
            Ok(landed) => self.settle(landed),
            // A request's task panicked: the worker fails as it would have with the
            // request in its own task (the supervisor stops the daemon; the open attempt
            // is resolved on restart).
            Err(e) if e.is_panic() => {
                tracing::error!(channel = %self.cfg.name, "a request's task panicked; the others in flight finish first");
                let others = std::mem::take(&mut self.flight);
                let payload = e.into_panic();
                let mut others = others;
                // Not aborted with the unwinding worker: their outcomes are recorded.
                let finish = async move { while others.join_next().await.is_some() {} };
                drop(tokio::spawn(finish));
                std::panic::resume_unwind(payload)
            }
            Err(_) => {}
        }
    }

    /// `incident`'s request landed or never began.
    pub(super) fn let_go(&mut self, incident: &str) {
        self.backlog.let_go(incident);
    }

    /// A pause was set or lifted: what waited for its event type is looked at again.
    pub(super) fn pauses_changed(&mut self) {
        let paused = self.pauses.borrow_and_update().channel_paused(&self.cfg);
        if paused {
            tracing::warn!(channel = %self.cfg.name, "paused: nothing but retractions goes out until resumed");
        }
        let now = Instant::now();
        for item in std::mem::take(&mut self.backlog.set_aside) {
            self.backlog.queue.push(item, None, now);
        }
    }

    pub(super) async fn handle(&mut self, msg: WorkerMsg) {
        match msg {
            WorkerMsg::Queued(q) => {
                self.backlog.queue.push(Item { id: q.id, priority: q.priority }, None, Instant::now());
            }
            WorkerMsg::Config(config) => self.reconfigure(config).await,
        }
    }

    /// Take a reloaded config: a new client for the channel's settings; the queue and the
    /// rate-limit window stay (the window with the new limits).
    async fn reconfigure(&mut self, config: Arc<Config>) {
        self.generation += 1;
        if let Some(cfg) = config.channels.get(&self.cfg.name).cloned() {
            self.channel = Arc::new(Channel::build(&cfg, &self.ctx));
            self.pace.quota = match (self.pace.quota.take(), cfg.quota) {
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
        let sends = self.io.reader.sends_since(&self.cfg.name, wall - duration_ms(quota.window)).await?;
        let instants = sends.into_iter().map(|t| {
            let age = Duration::from_millis(u64::try_from(wall - t).unwrap_or(0));
            now.checked_sub(age).unwrap_or(now)
        });
        Ok(Window::rebuild(quota, instants))
    }

    fn report_depth(&self) {
        let depth = i64::try_from(self.backlog.depth()).unwrap_or(i64::MAX);
        self.io.metrics.queue_depth.get_or_create(&ChannelLabel { channel: self.cfg.name.clone() }).set(depth);
    }

    /// Load this channel's unfinished work and resolve attempts a previous run left open.
    async fn recover(&mut self) -> Result<(), StoreError> {
        if let Some(quota) = self.cfg.quota {
            self.pace.quota = Some(self.window_from_log(quota).await?);
        }
        let now = Instant::now();
        let wall = now_ms();
        let rows = self.io.reader.pending(&self.cfg.name).await?;
        let (mut resumed, mut unknown) = (0, 0);
        for row in rows {
            let item = Item { id: row.id, priority: row.priority };
            if let Some(attempt_id) = row.open_attempt {
                unknown += 1;
                if let Some(job) = self.io.reader.job(row.id).await? {
                    self.resume_open_attempt(job, attempt_id).await?;
                }
                self.backlog.queue.push(item, None, now);
            } else {
                let due = row.not_before.map(|t| now + crate::time::until(t, wall));
                self.backlog.queue.push(item, due, now);
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
        for m in self.io.reader.missing_closings(&self.cfg.name).await? {
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
                    .rendered(rendered);
            let op = crate::store::AdminOp::Closing { closer: m.closer, reply_to: m.reply_to, delivery };
            let done = self.io.store.admin(op).await?;
            if done.changed > 0 {
                tracing::warn!(channel = %self.cfg.name, event = m.closer, "the channel missed an incident's {}: queued now", kind.as_str());
            }
        }
        Ok(())
    }

    /// Begin as many deliveries as the window has room for and the quota allows, the most
    /// urgent first, and start their requests; when nothing can go now, say when to look
    /// again (a request landing wakes the worker too).
    async fn fill(&mut self) -> Step {
        let now = Instant::now();
        let mut wake = self.backlog.queue.next_due();
        if let Some(until) = self.pace.paused_until {
            if until > now {
                return Step::Idle(Some(until));
            }
            self.pace.paused_until = None;
        }
        let generation = self.generation;
        let mut batch = Vec::new();
        let mut pending = Pending::default();
        let mut worked = false;
        let mut read_ahead = false;
        while self.flight.len() + batch.len() < self.pace.window(self.cfg.concurrency) {
            let now = Instant::now();
            let Some(head) = self.backlog.queue.peek(now) else { break };
            // Paused (the kill switch, or this channel): only a retraction may go.
            if head.priority != Priority::Retraction && self.pauses.borrow().channel_paused(&self.cfg) {
                break;
            }
            if let Some(w) = self.pace.quota.as_mut().and_then(|q| q.wait_after(head.priority, now, pending, 1)) {
                let at = now + w;
                wake = Some(wake.map_or(at, |d| d.min(at)));
                break;
            }
            let Some(item) = self.backlog.queue.pop(now) else { break };
            worked = true;
            // What is urgent goes at once, not after the rest of a batch is prepared (a
            // routine post may wait for its images).
            let urgent = item.priority >= Priority::Critical;
            if !read_ahead && !urgent {
                // The first of a batch may go: what else may go now is read with it, in
                // one trip to the reader rather than one each.
                read_ahead = true;
                self.read_ahead(item, batch.len(), pending, now).await;
            }
            if let Some(mut p) = self.prepare(item).await {
                // A batch of SMS numbers needs room for each message.
                p.messages = p.count_messages(&self.channel);
                if p.messages > 1
                    && let Some(w) =
                        self.pace.quota.as_mut().and_then(|q| q.wait_after(p.item.priority, now, pending, p.messages))
                {
                    self.backlog.requeue(p.item, w);
                    let at = now + w;
                    wake = Some(wake.map_or(at, |d| d.min(at)));
                    break;
                }
                self.backlog.claim(p.incident());
                pending.add(p.item.priority, p.messages);
                batch.push(p);
            }
            if urgent || self.cancel.is_cancelled() {
                break;
            }
        }
        // What was read for items not taken is not kept: the next batch reads afresh.
        self.prefetched.clear();
        if self.cancel.is_cancelled() {
            // Shutting down: nothing more begins; the rows stay queued in the store.
            for p in batch {
                self.let_go(p.incident());
            }
            return Step::Idle(None);
        }
        if self.generation != generation {
            // A reload came while the batch was chosen (during a wait for images): it is
            // taken up again under the new config.
            for p in batch {
                self.let_go(p.incident());
                self.backlog.requeue(p.item, Duration::ZERO);
            }
        } else if !batch.is_empty() {
            self.begin_batch(batch).await;
        }
        if worked {
            Step::Worked
        } else if self.flight.len() >= self.pace.window(self.cfg.concurrency) {
            // The window is full: a landing wakes the worker (a retry falling due
            // meanwhile waits for room, without the loop spinning on its due time).
            Step::Idle(None)
        } else {
            Step::Idle(wake)
        }
    }

    /// Read `first` together with the deliveries behind it that may go now as well: as
    /// many as the window has room for after it, and the quota lets go at once. Used by
    /// `take_up` within this batch only; the begin checks each again.
    async fn read_ahead(&mut self, first: Item, chosen: usize, pending: Pending, now: Instant) {
        let mut room = self.pace.window(self.cfg.concurrency).saturating_sub(self.flight.len() + chosen + 1);
        if let Some(q) = self.pace.quota.as_mut() {
            let mut after = pending;
            after.add(first.priority, 1);
            room = if q.wait_after(first.priority, now, after, 1).is_some() { 0 } else { room.min(q.free(now)) };
        }
        if room == 0 {
            return;
        }
        let mut ids = self.backlog.queue.peek_ids(now, room);
        ids.push(first.id);
        // On an error each is read on its own, and its error handled there.
        self.prefetched = self.io.reader.jobs(ids).await.unwrap_or_default();
    }

    /// Close a delivery without sending it.
    pub(super) async fn close(&mut self, item: Item, delivery_id: i64, closing: Closing, reason: String) {
        match self.io.store.close(delivery_id, closing, reason.clone()).await {
            Ok(()) | Err(StoreError::NotQueued(_)) => {
                self.report_closed(delivery_id, closing, &reason);
                self.backlog.release(item.id);
            }
            Err(e) => {
                tracing::warn!(channel = %self.cfg.name, error = %e, "cannot record closing; retrying");
                self.backlog.requeue(item, STORE_RETRY);
            }
        }
    }
}
