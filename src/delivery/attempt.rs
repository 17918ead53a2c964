//! One attempt of a delivery, in the order it happens: take it up (may it still go out,
//! what does it reply to, what are its steps), check it may go now (pauses, shadow mode),
//! wait for its images, begin the attempt (its row is committed before the request),
//! send, and conclude (the record committed, the worker told what next). Unknown
//! outcomes are looked up in one place, [`Worker::look_up`]; a request a crash left open
//! is settled by [`Worker::resume_open_attempt`] before the worker takes anything else.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::queue::Item;
use super::worker::{STORE_RETRY, Worker};
use super::{Action, History, Next, WorkerMsg, decide, record, steps};
use crate::channel::{
    About, Channel, Checkpoint, Image, Outcome, Post, PostRef, Request, Resolution, Response, Scratch,
};
use crate::config::{DeliveryConfig, Mode};
use crate::event::Priority;
use crate::lifecycle::{DeliveryKind, DeliveryState, Disposition};
use crate::media::{Attached, MediaService};
use crate::store::{AttemptEnd, AttemptResult, Begin, Begun, Closing, Job, Progress, ReplyTarget, Store, StoreError};
use crate::time::{now_ms, rfc3339};

/// How long an interrupted wait for images is remembered (longer than a pause is likely
/// to last; only deliveries retracted or closed meanwhile are forgotten this way).
const IMAGE_WAIT_MEMORY: Duration = Duration::from_secs(24 * 3600);

/// A delivery taken up for its next request.
pub(super) struct Ready {
    job: Job,
    steps: Vec<Action>,
    /// The channel's original post of the incident, for a reply.
    original: Option<ReplyTarget>,
    /// The posts the delivery deletes after its own: the original's for a cancellation
    /// (where configured), every post of the incident for a retraction.
    deletions: Vec<PostRef>,
}

/// What to do with a delivery taken from the queue.
enum Take {
    Ready(Box<Ready>),
    /// Wait for the delivery it replies to.
    Park(i64),
    Close(Closing, String),
    /// Nothing to do any more (no longer queued).
    Release,
    /// The store could not be read; try again soon.
    Requeue,
}

/// How a wait for a delivery's images ended.
enum ImageWait {
    Ready(Attached),
    /// A retraction, a pause change or a reload arrived: the delivery goes back to the queue.
    Interrupted,
    ShuttingDown,
}

impl Ready {
    /// The request for step `done` (an [`Action::Post`]), or `None` for a deletion.
    fn request<'a>(
        &'a self,
        keep: Option<&'a dyn Checkpoint>,
        action: Action,
        root_of_original: Option<&'a PostRef>,
        media: &'a [Image],
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

    /// The first post of the original's thread, for Bluesky-style replies.
    fn root_of_original(&self) -> Option<PostRef> {
        self.original.as_ref().and_then(|o| o.posts().into_iter().next())
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
        subject: job.subject.as_deref(),
        html: job.html.as_deref(),
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
    ) -> Pin<Box<dyn Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move { self.store.save_scratch(self.delivery_id, slot, value).await.map_err(|e| e.to_string()) })
    }
}

/// A delivery taken up, with its step and images, about to begin.
pub(super) struct Prepared {
    pub(super) item: Item,
    ready: Box<Ready>,
    action: Action,
    attached: Attached,
    /// Messages the request sends, counted against the quota.
    pub(super) messages: usize,
}

impl Prepared {
    pub(super) fn incident(&self) -> &str {
        &self.ready.job.incident_key
    }

    /// How many messages the request sends on `channel` (a batch of SMS numbers).
    pub(super) fn count_messages(&self, channel: &Channel) -> usize {
        match self.action {
            Action::Post { target, .. } => channel.messages(target, &self.ready.job.progress.scratch),
            Action::Delete(_) => 1,
        }
    }
}

/// A request in flight, as its task hands it back once its outcome is recorded.
pub(super) struct Landed {
    pub(super) item: Item,
    ready: Box<Ready>,
    outcome: Outcome,
    result: AttemptResult,
    next: Next,
    /// The outcome was committed (else the worker is shutting down, or someone closed
    /// the delivery meanwhile).
    recorded: bool,
}

/// What a request's task needs from its worker, owned: the channel as built when the
/// request began (a reload meanwhile builds a new one for the next requests).
pub(super) struct Crew {
    channel: Arc<Channel>,
    store: Store,
    name: String,
    cancel: CancellationToken,
    delivery: DeliveryConfig,
    /// The channel's "unavailable" streak when the request began.
    unavailable: u32,
}

impl Worker {
    /// Take `item` up for its next attempt: read it, check it may still and may now go,
    /// and wait for its images. `None`: it does not go now (it was parked, set aside,
    /// held behind its incident, closed or requeued).
    pub(super) async fn prepare(&mut self, item: Item) -> Option<Prepared> {
        let ready = self.take_up(item).await?;
        let action = self.may_go_now(item, &ready).await?;
        // Its images, waited for at most its priority's wait (before the attempt row: a
        // slow image is not an open request).
        let attached = match (action, self.io.media.clone()) {
            (Action::Post { part: 0, .. }, Some(media)) => match self.wait_for_images(&media, &ready.job).await {
                ImageWait::Ready(attached) => attached,
                ImageWait::Interrupted => {
                    self.backlog.requeue(item, Duration::ZERO);
                    return None;
                }
                // Still queued in the store: taken up again on start.
                ImageWait::ShuttingDown => return None,
            },
            _ => Attached::default(),
        };
        Some(Prepared { item, ready, action, attached, messages: 1 })
    }

    /// Read `item`'s delivery and get it ready, or settle what else becomes of it.
    async fn take_up(&mut self, item: Item) -> Option<Box<Ready>> {
        let read = match self.prefetched.remove(&item.id) {
            Some(job) => Ok(Some(job)),
            None => self.io.reader.job(item.id).await,
        };
        let job = match read {
            Ok(Some(job)) => job,
            Ok(None) => {
                self.backlog.release(item.id);
                return None;
            }
            Err(e) => {
                tracing::warn!(channel = %self.cfg.name, error = %e, "cannot read delivery; retrying");
                self.backlog.requeue(item, STORE_RETRY);
                return None;
            }
        };
        // Deliveries of one incident on one channel go one at a time: a reply after what
        // it replies to, a retraction after every post it deletes.
        if self.backlog.busy(&job.incident_key) {
            self.backlog.hold(job.incident_key, item);
            return None;
        }
        match self.ready(job, false).await {
            Take::Ready(r) => return Some(r),
            Take::Park(target) => self.backlog.park(target, item),
            Take::Close(closing, reason) => self.close(item, item.id, closing, reason).await,
            Take::Release => self.backlog.release(item.id),
            Take::Requeue => self.backlog.requeue(item, STORE_RETRY),
        }
        None
    }

    /// Check that `job` may still go out and work out its requests. `in_flight`: it is
    /// being resolved after a restart, not taken from the queue.
    async fn ready(&mut self, job: Job, in_flight: bool) -> Take {
        if !in_flight && job.state != DeliveryState::Queued {
            // Suppressed by a cancel or a newer revision, or already done.
            if job.state == DeliveryState::Suppressed {
                self.io.metrics.delivery(&self.cfg.name, "suppressed");
            }
            return Take::Release;
        }
        if !in_flight && let Some(reason) = self.lapsed(&job) {
            return Take::Close(Closing::Expired, reason);
        }
        let original = match job.reply_to {
            None => None,
            Some(target) => match self.io.reader.reply_target(target).await {
                Ok(Some(t)) if t.state == DeliveryState::Sent => Some(t),
                Ok(Some(t)) if matches!(t.state, DeliveryState::Queued | DeliveryState::InFlight) && !in_flight => {
                    return Take::Park(target);
                }
                // Cut short, but part of it went out: that is what gets the reply.
                Ok(Some(t)) if t.post.id.is_some() => Some(t),
                // Whether it went out was never known: a cancellation goes out on its own
                // rather than not at all.
                Ok(Some(t)) if t.maybe_posted => None,
                // The original never went out (dead, expired, withdrawn). A cancellation of
                // nothing is not posted; an update stands alone.
                Ok(_) if matches!(job.kind, DeliveryKind::Cancel | DeliveryKind::Retract) && !in_flight => {
                    return Take::Close(
                        Closing::Suppressed,
                        "nothing of the incident went out on this channel".to_owned(),
                    );
                }
                Ok(_) => None,
                Err(e) => {
                    tracing::warn!(channel = %self.cfg.name, error = %e, "cannot read reply target; retrying");
                    return Take::Requeue;
                }
            },
        };
        // A staff notice's approve/reject links are stored as placeholders; the real
        // ones exist only in the request. Nothing but a notice has them.
        let mut job = job;
        if let Some(key) = &self.io.links
            && job.event_type == "notice"
            && job.status == "system"
            && crate::links::has_links(&job.text)
        {
            job.text = crate::links::expand(&job.text, key, &self.config.admin.public_url);
        }
        let caps = self.channel.caps_for(&job.progress.scratch);
        let deletions = match &original {
            Some(o) if job.kind == DeliveryKind::Cancel && self.cfg.delete_original && caps.delete => o.posts(),
            // A retraction deletes every post of the incident, wherever the platform can; a
            // correction, the alert and updates it replaces (what follows replies to it).
            _ if job.kind == DeliveryKind::Retract && caps.delete => {
                let news_only = job.msg_type == "correct";
                match self.io.reader.incident_posts(&job.incident_key, &job.channel, &job.language, news_only).await {
                    Ok(posts) => posts,
                    Err(e) => {
                        tracing::warn!(channel = %self.cfg.name, error = %e, "cannot read the posts to delete; retrying");
                        return Take::Requeue;
                    }
                }
            }
            _ => Vec::new(),
        };
        let steps = steps(job.parts.len(), caps, deletions.len());
        Take::Ready(Box::new(Ready { job, steps, original, deletions }))
    }

    /// Why `job` must not go out any more, if it must not (policy's rule, applied again
    /// at every attempt). A cancellation or retraction never lapses: what it takes back
    /// is still out.
    fn lapsed(&self, job: &Job) -> Option<String> {
        if !job.kind.is_news() {
            return None;
        }
        // A stored time beyond jiff's range (the store only holds times that came from
        // Timestamps) compares as its end of the range, as the milliseconds would.
        let at = |ms: i64| {
            jiff::Timestamp::from_millisecond(ms).unwrap_or(if ms > 0 {
                jiff::Timestamp::MAX
            } else {
                jiff::Timestamp::MIN
            })
        };
        let expires = job.expires_at.map(at);
        let now = jiff::Timestamp::now();
        let sent = at(job.sent_at.unwrap_or(job.received_at));
        let max_age = self.config.events.get(&job.event_type).and_then(|r| r.max_age);
        match crate::policy::lapsed(expires, sent, max_age, now)? {
            Disposition::Expired => Some(format!("event expired at {}", rfc3339(job.expires_at.unwrap_or_default()))),
            _ => max_age.map(|m| format!("older than the rule's max_age ({})", humantime::format_duration(m))),
        }
    }

    /// The step `ready` is at, unless a pause, shadow mode or a changed config means it
    /// does not go now (then it is set aside or closed).
    async fn may_go_now(&mut self, item: Item, ready: &Ready) -> Option<Action> {
        let job = &ready.job;
        // This event type is paused: set aside until the pauses change. (Checked again
        // where it counts, in the transaction that begins the attempt.)
        if job.priority != Priority::Retraction && self.pauses.borrow().type_paused(&self.cfg, &job.event_type) {
            self.backlog.set_aside.push(item);
            return None;
        }
        // Shadow mode: recorded with its text, counted against the quota, not posted.
        if self.config.mode == Mode::Shadow && !self.cfg.platform().profile().local {
            if let Some(q) = self.pace.quota.as_mut() {
                q.record(job.priority, Instant::now());
            }
            let reason = format!("shadow mode: not posted ({} on {})", job.kind.as_str(), self.cfg.platform());
            self.close(item, job.delivery_id, Closing::Shadow, reason).await;
            return None;
        }
        let Some(&action) = ready.steps.get(job.progress.done) else {
            // Every step is done (the config changed between them): nothing left to send.
            let reason = "every step was done".to_owned();
            self.close(item, job.delivery_id, Closing::Done, reason).await;
            return None;
        };
        Some(action)
    }

    /// Commit the attempt rows of `batch` in one transaction, each checked once more that
    /// it may begin; then count each that began against the quota and start its request.
    /// The batch's incidents were claimed when it was chosen; each that does not begin
    /// lets its incident go.
    pub(super) async fn begin_batch(&mut self, batch: Vec<Prepared>) {
        // The channel as configured now: a reload may have made it public since the
        // delivery was queued (or removed it, and then nothing begins here).
        let Some(public) = self.live.load().config.channels.get(&self.cfg.name).filter(|c| c.enabled).map(|c| c.public)
        else {
            for p in batch {
                self.let_go(p.incident());
                self.backlog.requeue(p.item, STORE_RETRY);
            }
            return;
        };
        let begins = batch
            .iter()
            .map(|p| {
                let done = p.ready.job.progress.done;
                let resolve_data = (p.ready.steps.len() > 1).then(|| format!("{{\"step\":{done}}}"));
                Begin { delivery_id: p.ready.job.delivery_id, started_at: now_ms(), resolve_data }
            })
            .collect();
        let answers = match self.io.store.begin_attempts(&self.cfg.name, public, begins).await {
            Ok(answers) if answers.len() == batch.len() => answers,
            Ok(_) => vec![Err(StoreError::Refused("internal: answers do not match".to_owned())); batch.len()],
            Err(e) => vec![Err(e); batch.len()],
        };
        // Counted from now, as close as possible to the requests leaving (after their
        // attempts' commit): the platform counts by arrival.
        let now = Instant::now();
        for (p, begun) in batch.into_iter().zip(answers) {
            let id = p.ready.job.delivery_id;
            let attempt_id = match begun {
                Ok(Begun::Attempt(attempt_id)) => attempt_id,
                other => {
                    self.let_go(p.incident());
                    self.not_begun(p.item, id, other);
                    continue;
                }
            };
            if let Some(q) = self.pace.quota.as_mut() {
                q.record_n(p.item.priority, now, p.messages);
            }
            let crew = Crew {
                channel: Arc::clone(&self.channel),
                store: self.io.store.clone(),
                name: self.cfg.name.clone(),
                cancel: self.cancel.clone(),
                delivery: self.config.delivery.clone(),
                unavailable: self.pace.unavailable,
            };
            self.launch(p.item, crew.fly(p, attempt_id));
        }
    }

    /// What becomes of a delivery whose attempt did not begin.
    fn not_begun(&mut self, item: Item, delivery_id: i64, begun: Result<Begun, StoreError>) {
        match begun {
            Ok(Begun::Attempt(_)) => unreachable!("it began"),
            Ok(Begun::Paused) => {
                tracing::debug!(channel = %self.cfg.name, delivery = delivery_id, "paused; set aside until the pauses change");
                self.backlog.set_aside.push(item);
            }
            Ok(Begun::Closed(reason)) => {
                tracing::warn!(channel = %self.cfg.name, delivery = delivery_id, %reason, "not sent, and never will be");
                self.io.metrics.delivery(&self.cfg.name, "suppressed");
                self.backlog.release(item.id);
            }
            Err(StoreError::NotQueued(_)) => self.backlog.release(item.id),
            Err(e) => {
                tracing::warn!(channel = %self.cfg.name, delivery = delivery_id, error = %e, "cannot record attempt, so not sending; retrying");
                self.backlog.requeue(item, STORE_RETRY);
            }
        }
    }

    /// Settle an attempt whose outcome a crash left unknown: ask the channel whether it
    /// posted, and record it as done or to be sent again. The delivery then goes back to
    /// the queue (where a finished one is dropped when taken).
    pub(super) async fn resume_open_attempt(&mut self, job: Job, attempt_id: i64) -> Result<(), StoreError> {
        // In flight: the writer refuses to treat it as queued, so look at it as if it were.
        let delivery_id = job.delivery_id;
        let ready = match self.ready(job, true).await {
            Take::Ready(r) => r,
            Take::Requeue => return Err(StoreError::Write("cannot read the delivery".to_owned())),
            // Whatever else: nothing to resolve; send again once it is queued.
            Take::Park(_) | Take::Close(..) | Take::Release => {
                let result = AttemptResult {
                    end: AttemptEnd::Retry { not_before: now_ms() },
                    outcome: "unknown",
                    http_status: None,
                    detail: "outcome unknown after restart".to_owned(),
                    note: None,
                };
                return match self.io.store.finish_attempt(attempt_id, delivery_id, now_ms(), result).await {
                    Ok(()) | Err(StoreError::NotQueued(_)) => Ok(()),
                    Err(e) => Err(e),
                };
            }
        };
        let action = ready.steps.get(ready.job.progress.done).copied().unwrap_or(Action::Post { part: 0, target: 0 });
        let root = ready.root_of_original();
        let keep = Saved { store: &self.io.store, delivery_id };
        let resolution = match ready.request(Some(&keep), action, root.as_ref(), &[]) {
            Some(req) => look_up(&self.channel, &req).await,
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
                self.io.metrics.delivery(&self.cfg.name, "sent");
                let (end, _, _) = advance(&ready, action, Some(p), None);
                AttemptResult { end, outcome: "sent", http_status: None, detail: detail.to_owned(), note: None }
            }
            Resolution::NotPosted | Resolution::Deduplicated | Resolution::CannotTell => AttemptResult {
                end: AttemptEnd::Retry { not_before: now_ms() },
                // The next try looks again before sending.
                outcome: "unknown",
                http_status: None,
                detail: detail.to_owned(),
                note: None,
            },
        };
        match self.io.store.finish_attempt(attempt_id, delivery_id, now_ms(), result).await {
            Ok(()) | Err(StoreError::NotQueued(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Wait for `job`'s images, but not through what cannot wait: a shutdown, a retraction
    /// for this channel (it goes ahead of everything), a pause (nothing goes out once
    /// paused, so the delivery is looked at again under the new pauses) or a reload.
    async fn wait_for_images(&mut self, media: &Arc<MediaService>, job: &Job) -> ImageWait {
        let start = Instant::now();
        // Forget deliveries interrupted long ago (retracted or closed since).
        self.backlog.image_waits.retain(|_, (_, at)| start.duration_since(*at) < IMAGE_WAIT_MEMORY);
        let spent = self.backlog.image_waits.get(&job.delivery_id).map_or(Duration::ZERO, |(spent, _)| *spent);
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
            self.backlog.image_waits.remove(&job.delivery_id);
        } else {
            let now = Instant::now();
            self.backlog.image_waits.insert(job.delivery_id, (spent + now.duration_since(start), now));
        }
        outcome
    }

    /// Start `flight`, the task of a request whose attempt has begun.
    fn launch(&mut self, item: Item, flight: impl Future<Output = Landed> + Send + 'static) {
        self.backlog.flying.insert(item.id);
        self.flight.spawn(flight);
    }

    /// Take back a request that landed (its outcome already recorded by its task): count
    /// and report it, and queue what comes next.
    pub(super) fn settle(&mut self, landed: Landed) {
        let Landed { item, ready, outcome, result, next, recorded } = landed;
        self.backlog.flying.remove(&item.id);
        match outcome {
            Outcome::Unavailable(_) | Outcome::Credentials(_) => {
                self.pace.unavailable = self.pace.unavailable.saturating_add(1);
                self.pace.probing = true;
            }
            Outcome::Sent(_) => {
                self.pace.unavailable = 0;
                self.pace.probing = false;
            }
            Outcome::RetryAfter(..) => self.pace.probing = true,
            Outcome::Retry(_) | Outcome::Permanent(_) | Outcome::Unknown(_) => {}
        }
        if recorded {
            self.report(&ready.job, ready.steps.len(), &outcome, &result, &next);
            if let Next::Pause(d) = next {
                let until = Instant::now() + d;
                self.pace.paused_until = Some(self.pace.paused_until.map_or(until, |u| u.max(until)));
            }
            match next {
                Next::Done => self.backlog.release(item.id),
                Next::Retry(d) | Next::Pause(d) => self.backlog.requeue(item, d),
            }
        }
        // After the requeue, so a copy of the delivery held behind it does not take its
        // place without the backoff.
        self.let_go(&ready.job.incident_key);
    }
}

impl Crew {
    /// The request of `p` (its attempt `attempt_id` begun): send it, judge the outcome
    /// and commit its record.
    async fn fly(self, p: Prepared, attempt_id: i64) -> Landed {
        let Prepared { item, ready, action, attached, .. } = p;
        let Response { outcome, http_status, note } = self.send(&ready, action, attached).await;
        let (end, next, note) = self.judge(&ready, action, &outcome, note);
        let mut result = record(&outcome, end, http_status);
        if let Some(n) = &note {
            result.detail = if result.detail.is_empty() { n.clone() } else { format!("{}; {n}", result.detail) };
        }
        result.note = note;
        let recorded = self.finish(attempt_id, ready.job.delivery_id, &result).await;
        Landed { item, ready, outcome, result, next, recorded }
    }

    /// Make the request of `action`: a post (unless an earlier try whose answer was lost
    /// turns out to have posted) or a deletion.
    async fn send(&self, ready: &Ready, action: Action, attached: Attached) -> Response {
        let root = ready.root_of_original();
        let keep = Saved { store: &self.store, delivery_id: ready.job.delivery_id };
        let Some(req) = ready.request(Some(&keep), action, root.as_ref(), &attached.media) else {
            let Action::Delete(i) = action else { unreachable!("a post has a request") };
            return match ready.deletions.get(i) {
                Some(post) => self.channel.delete(post).await,
                None => Outcome::Sent(PostRef::default()).into(),
            };
        };
        // The last try's outcome was never known: ask before sending again (a lost answer
        // can show up on the platform later than the first look).
        if ready.job.last_outcome.as_deref() == Some("unknown")
            && let Resolution::Posted(post) = look_up(&self.channel, &req).await
        {
            return Response::from(Outcome::Sent(post)).with_note(attached.note);
        }
        let mut response = self.channel.send(&req).await;
        response.note = match (attached.note, response.note) {
            (Some(a), Some(b)) => Some(format!("{a}; {b}")),
            (a, b) => a.or(b),
        };
        if let Outcome::Unknown(reason) = &response.outcome {
            tracing::warn!(channel = %self.name, delivery = ready.job.delivery_id, %reason, "outcome unknown; checking with the platform");
            // Not found stays unknown: a lost post can show up on the platform later than
            // this first look, and the next try looks again before sending.
            if let Resolution::Posted(p) = look_up(&self.channel, &req).await {
                response.outcome = Outcome::Sent(p);
            }
        }
        response
    }

    /// What the outcome makes of the delivery: [`decide`]'s verdict, except that a step
    /// done (or skipped) moves the delivery on.
    fn judge(
        &self,
        ready: &Ready,
        action: Action,
        outcome: &Outcome,
        note: Option<String>,
    ) -> (AttemptEnd, Next, Option<String>) {
        let job = &ready.job;
        let wall = now_ms();
        let age = Duration::from_millis(u64::try_from(wall - job.created_at).unwrap_or(0));
        let history =
            History { failures: job.attempts, unavailable: self.unavailable, age, closing: !job.kind.is_news() };
        let (end, next) = decide(outcome, history, &self.delivery, wall, fastrand::f64());
        let last = job.progress.done + 1 >= ready.steps.len();
        let several = self.channel.caps().targets > 1;
        match (outcome, &end) {
            (Outcome::Sent(post), _) => advance(ready, action, Some(post.clone()), note),
            // The cancellation is out; a post that cannot be deleted does not undo that.
            (_, AttemptEnd::Dead { reason }) if matches!(action, Action::Delete(_)) => {
                let why = format!("the original could not be deleted: {reason}");
                advance(ready, action, None, Some(why))
            }
            // One recipient refused for good (opted out, invalid number): the others still
            // get it. Dead only if nobody did.
            (_, AttemptEnd::Dead { reason }) if several && !(last && job.progress.posted.is_empty()) => {
                let why = reason.clone();
                advance(ready, action, None, Some(why))
            }
            _ => (end, next, note),
        }
    }

    /// Commit the attempt's record. The request went out: its outcome must be recorded
    /// before anything else, or a restart would treat it as unknown, so this keeps trying
    /// while the store is down. `false`: there is nothing more to do (shutting down, or
    /// someone else closed the delivery).
    async fn finish(&self, attempt_id: i64, delivery_id: i64, result: &AttemptResult) -> bool {
        loop {
            match self.store.finish_attempt(attempt_id, delivery_id, now_ms(), result.clone()).await {
                Ok(()) => return true,
                Err(StoreError::Closed | StoreError::NotQueued(_)) => return false,
                Err(e) => {
                    tracing::warn!(channel = %self.name, delivery = delivery_id, error = %e, "cannot record outcome; retrying");
                    tokio::select! {
                        () = self.cancel.cancelled() => return false,
                        () = tokio::time::sleep(STORE_RETRY) => {}
                    }
                }
            }
        }
    }
}

/// Whether a request whose answer was lost posted: the one place an unknown outcome
/// is looked up, whether the answer was lost to a timeout just now, to the try before
/// this one, or to a crash ([`Worker::resume_open_attempt`]). What the platform can
/// tell is its profile's `recovery`.
async fn look_up(channel: &Channel, req: &Request<'_>) -> Resolution {
    channel.resolve(req).await
}

/// The record of a finished step: the next step is queued, or the delivery is done.
/// `post` is where a post step landed (`None` for a deletion or a skipped recipient);
/// `note` what this step's record should say. Notes of all steps are kept with the
/// delivery's progress; the last step's record carries them all.
fn advance(
    ready: &Ready,
    action: Action,
    post: Option<PostRef>,
    note: Option<String>,
) -> (AttemptEnd, Next, Option<String>) {
    let progress = &ready.job.progress;
    let mut posted = progress.posted.clone();
    if let (Action::Post { .. }, Some(post)) = (action, &post) {
        posted.push(post.clone());
    }
    let mut notes = progress.notes.clone();
    notes.extend(note.clone());
    let done = progress.done + 1;
    if done < ready.steps.len() {
        let first = posted.first().cloned();
        return (AttemptEnd::Step { post: first, done, posted, notes }, Next::Retry(Duration::ZERO), note);
    }
    let all = (!notes.is_empty()).then(|| notes.join("; "));
    let progress =
        (ready.steps.len() > 1).then(|| Progress { done, posted: posted.clone(), notes, ..Progress::default() });
    let post = posted.into_iter().next().or(post).unwrap_or_default();
    (AttemptEnd::Sent { post, progress }, Next::Done, all)
}
