//! Delivery: one worker per channel takes queued deliveries from the store and posts them
//! under the channel's quota, most urgent first.
//!
//! This module owns what happens around a request — the queue, the quota, the attempt row
//! committed before it, retries with backoff, pauses on a platform's throttle signal,
//! dead-lettering — once for every channel. [`decide`] and [`steps`] are the pure part: a
//! channel's [`Outcome`] plus the delivery's history becomes the record to commit and what
//! the worker does next.
//!
//! - `worker.rs`: a channel's worker, its state (backlog, pace) and its loop;
//! - `attempt.rs`: one attempt, from taking a delivery up to committing its outcome, and
//!   the one place unknown outcomes are looked up;
//! - `report.rs`: what the worker logs and counts for each outcome;
//! - `queue.rs`, `quota.rs`: the priority queue and the rate-limit window, pure.

mod attempt;
pub mod queue;
pub mod quota;
mod report;
mod worker;

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::channel::{Caps, Context, Outcome};
use crate::config::{Config, DeliveryConfig};
use crate::control::Control;
use crate::media::MediaService;
use crate::metrics::Metrics;
use crate::store::{AttemptEnd, AttemptResult, Queued, Store, StoreError};
use crate::supervise;

/// Shortest pause honoured for a throttle signal: a `Retry-After: 0` must not become a
/// tight loop.
const MIN_PAUSE: Duration = Duration::from_millis(250);

/// What the worker does after an attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Next {
    /// Final: sent or dead.
    Done,
    /// Try this delivery again after the delay.
    Retry(Duration),
    /// Stop the whole channel for the delay (the platform said so), then retry.
    Pause(Duration),
}

/// What `decide` needs to know of the past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct History {
    /// Attempts this delivery had before this one.
    pub failures: u32,
    /// The channel's "unavailable" outcomes in a row before this one.
    pub unavailable: u32,
    /// Since the delivery was queued.
    pub age: Duration,
    /// A cancellation or retraction: what it takes back is still up, so it never gives
    /// up on a transient failure (rule 4 in docs/ARCHITECTURE.md).
    pub closing: bool,
}

/// One request of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Post part `part` of the text (0 when it is not split) to recipient `target`.
    Post { part: usize, target: usize },
    /// Delete post `index` of the channel's original (a cancellation, where configured).
    Delete(usize),
}

/// The requests a delivery makes, in order: each thread part to each recipient (parts
/// as separate posts only where the channel threads; elsewhere the channel gets them all
/// at once), then the deletions. Pure.
pub fn steps(parts: usize, caps: Caps, deletes: usize) -> Vec<Action> {
    let parts = if caps.threads { parts.max(1) } else { 1 };
    let mut steps: Vec<Action> =
        (0..caps.targets.max(1)).flat_map(|target| (0..parts).map(move |part| Action::Post { part, target })).collect();
    steps.extend((0..deletes).map(Action::Delete));
    steps
}

/// Turn a channel's outcome into the attempt record and the next step. `unit` is a random
/// number in `[0, 1)` for the jitter.
pub fn decide(outcome: &Outcome, h: History, cfg: &DeliveryConfig, now_ms: i64, unit: f64) -> (AttemptEnd, Next) {
    let History { failures, unavailable, age, closing } = h;
    let retry = |delay: Duration| {
        (AttemptEnd::Retry { not_before: now_ms + crate::time::duration_ms(delay) }, Next::Retry(delay))
    };
    match outcome {
        Outcome::Sent(post) => (AttemptEnd::Sent { post: post.clone(), progress: None }, Next::Done),
        Outcome::Permanent(reason) => (AttemptEnd::Dead { reason: reason.clone() }, Next::Done),
        Outcome::RetryAfter(d, _) => {
            let d = (*d).clamp(MIN_PAUSE, cfg.max_retry_after.max(MIN_PAUSE));
            (AttemptEnd::Retry { not_before: now_ms + crate::time::duration_ms(d) }, Next::Pause(d))
        }
        Outcome::Retry(reason)
        | Outcome::Unknown(reason)
        | Outcome::Unavailable(reason)
        | Outcome::Credentials(reason)
            if age >= cfg.give_up_after && !closing =>
        {
            let reason = format!(
                "gave up after {} of failures ({} attempts); last: {reason}",
                humantime::format_duration(Duration::from_secs(age.as_secs())),
                failures + 1
            );
            (AttemptEnd::Dead { reason }, Next::Done)
        }
        Outcome::Unavailable(_) | Outcome::Credentials(_) => {
            // The whole channel backs off; the delivery keeps its place in the queue.
            let d = cfg.retry.full_jitter(unavailable, unit).max(Duration::from_millis(10));
            (AttemptEnd::Retry { not_before: now_ms + crate::time::duration_ms(d) }, Next::Pause(d))
        }
        Outcome::Retry(_) | Outcome::Unknown(_) => {
            retry(cfg.retry.full_jitter(failures, unit).max(Duration::from_millis(10)))
        }
    }
}

/// What a worker is told besides new deliveries.
#[derive(Debug)]
pub enum WorkerMsg {
    Queued(Queued),
    /// A reload: the new config (the worker's channel is in it).
    Config(Arc<Config>),
}

type Senders = Arc<RwLock<HashMap<String, mpsc::UnboundedSender<WorkerMsg>>>>;

struct WorkerTask {
    handle: JoinHandle<()>,
    cancel: CancellationToken,
}

/// Workers for every enabled channel, and the task routing new deliveries to them.
pub struct Delivery {
    workers: HashMap<String, WorkerTask>,
    /// Workers told to stop (a channel disabled or removed) that may still be finishing
    /// a request: a worker started again for the same name waits for its predecessor, so
    /// two never post on one channel at once.
    stopping: HashMap<String, JoinHandle<()>>,
    senders: Senders,
    router: JoinHandle<()>,
    store: Store,
    ctx: Context,
    metrics: Arc<Metrics>,
    control: Control,
    media: Option<Arc<MediaService>>,
    live: crate::reload::Shared,
    links: Option<Arc<crate::links::LinkKey>>,
    cancel: CancellationToken,
    failed: CancellationToken,
}

/// What every worker shares besides the store and the channel context.
#[derive(Debug, Clone)]
pub struct Deps {
    pub metrics: Arc<Metrics>,
    pub control: Control,
    /// `None` runs without images (tools, tests of the core).
    pub media: Option<Arc<MediaService>>,
    /// The config in force: a worker checks its channel as configured now before each
    /// request.
    pub live: crate::reload::Shared,
    /// Puts the approve/reject links of staff notices in place (`None`: tools and tests
    /// without notices).
    pub links: Option<Arc<crate::links::LinkKey>>,
}

impl std::fmt::Debug for Delivery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Delivery").field("workers", &self.workers.keys().collect::<Vec<_>>()).finish_non_exhaustive()
    }
}

impl Delivery {
    /// Start a worker per enabled channel. Each first loads its channel's unfinished work
    /// from the store; `announced` then brings each delivery committed later.
    pub fn start(
        config: Arc<Config>,
        store: &Store,
        ctx: &Context,
        mut announced: mpsc::UnboundedReceiver<Queued>,
        deps: Deps,
        cancel: CancellationToken,
        failed: CancellationToken,
    ) -> Result<Delivery, StoreError> {
        let senders: Senders = Arc::default();
        let routes = Arc::clone(&senders);
        let router = supervise::spawn("delivery router".to_owned(), failed.clone(), async move {
            while let Some(q) = announced.recv().await {
                let routes = routes.read().unwrap_or_else(std::sync::PoisonError::into_inner);
                match routes.get(&q.channel) {
                    Some(tx) => {
                        let _ = tx.send(WorkerMsg::Queued(q));
                    }
                    // A channel disabled or removed since: the delivery waits in the store.
                    None => {
                        tracing::debug!(channel = %q.channel, delivery = q.id, "no worker for channel; held in store")
                    }
                }
            }
        });
        let mut delivery = Delivery {
            workers: HashMap::new(),
            stopping: HashMap::new(),
            senders,
            router,
            store: store.clone(),
            ctx: ctx.clone(),
            metrics: deps.metrics,
            control: deps.control,
            media: deps.media,
            live: deps.live,
            links: deps.links,
            cancel,
            failed,
        };
        for ch in config.channels.values().filter(|c| c.enabled) {
            delivery.spawn_worker(&ch.name, &config)?;
        }
        Ok(delivery)
    }

    fn spawn_worker(&mut self, name: &str, config: &Arc<Config>) -> Result<(), StoreError> {
        let Some(ch) = config.channels.get(name) else { return Ok(()) };
        let (tx, rx) = mpsc::unbounded_channel();
        let cancel = self.cancel.child_token();
        let worker = worker::Worker::new(
            ch.clone(),
            self.ctx.clone(),
            Arc::clone(config),
            self.store.clone(),
            self.store.reader()?,
            Deps {
                metrics: Arc::clone(&self.metrics),
                control: self.control.clone(),
                media: self.media.clone(),
                live: Arc::clone(&self.live),
                links: self.links.clone(),
            },
            rx,
        );
        let previous = self.stopping.remove(name);
        let handle =
            supervise::spawn(format!("worker {name}"), self.failed.clone(), worker.run(cancel.clone(), previous));
        self.senders.write().unwrap_or_else(std::sync::PoisonError::into_inner).insert(name.to_owned(), tx);
        self.workers.insert(name.to_owned(), WorkerTask { handle, cancel });
        Ok(())
    }

    /// Apply a reloaded config: start workers for new (or re-enabled) channels, stop those
    /// of removed or disabled ones (their queued deliveries stay in the store until the
    /// channel comes back), and hand the new config to the rest, which keep their queues
    /// and rate-limit windows. Returns (started, stopped).
    pub fn reconfigure(&mut self, config: &Arc<Config>) -> Result<(Vec<String>, Vec<String>), StoreError> {
        let wanted: Vec<String> = config.channels.values().filter(|c| c.enabled).map(|c| c.name.clone()).collect();
        let stopped: Vec<String> = self.workers.keys().filter(|n| !wanted.contains(n)).cloned().collect();
        for name in &stopped {
            self.senders.write().unwrap_or_else(std::sync::PoisonError::into_inner).remove(name);
            if let Some(w) = self.workers.remove(name) {
                // It finishes the request it has in flight, then stops.
                w.cancel.cancel();
                self.stopping.retain(|_, h| !h.is_finished());
                self.stopping.insert(name.clone(), w.handle);
            }
        }
        let mut started = Vec::new();
        for name in &wanted {
            if self.workers.contains_key(name) {
                if let Some(tx) = self.senders.read().unwrap_or_else(std::sync::PoisonError::into_inner).get(name) {
                    let _ = tx.send(WorkerMsg::Config(Arc::clone(config)));
                }
            } else {
                self.spawn_worker(name, config)?;
                started.push(name.clone());
            }
        }
        Ok((started, stopped))
    }

    /// Stop every worker where it stands: a request in flight never has its outcome
    /// recorded (a crash, as far as one process can have one).
    pub async fn abort(self) {
        let tasks = self.workers.into_values().map(|w| w.handle).chain(self.stopping.into_values());
        for task in tasks.chain(std::iter::once(self.router)) {
            task.abort();
            let _ = task.await;
        }
    }

    /// Wait for the workers (already told to stop) to finish their current request, at
    /// most `grace`; then abort what is left, which the store resumes on restart.
    pub async fn stop(self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        let tasks = self.workers.into_iter().map(|(name, w)| (name, w.handle)).chain(self.stopping);
        for (name, mut task) in tasks {
            if tokio::time::timeout_at(deadline, &mut task).await.is_err() {
                tracing::warn!(channel = %name, "request still running at shutdown deadline; its outcome will be resolved on restart");
                task.abort();
                let _ = task.await;
            }
        }
        self.router.abort();
        let _ = self.router.await;
    }
}

/// Build the attempt record for an outcome.
pub fn record(outcome: &Outcome, end: AttemptEnd, http_status: Option<u16>) -> AttemptResult {
    let detail = match outcome {
        Outcome::Sent(p) => p.id.clone().unwrap_or_default(),
        Outcome::RetryAfter(d, m) => format!("retry after {}: {m}", humantime::format_duration(*d)),
        Outcome::Retry(m)
        | Outcome::Unavailable(m)
        | Outcome::Credentials(m)
        | Outcome::Permanent(m)
        | Outcome::Unknown(m) => m.clone(),
    };
    AttemptResult { end, outcome: outcome.label(), http_status, detail, note: None }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use crate::channel::PostRef;

    fn cfg() -> DeliveryConfig {
        DeliveryConfig {
            retry: Backoff::new(Duration::from_secs(2), Duration::from_secs(600)),
            give_up_after: Duration::from_secs(24 * 3600),
            max_retry_after: Duration::from_secs(3600),
            request_timeout: Duration::from_secs(15),
            shutdown_grace: Duration::from_secs(10),
        }
    }

    const NOW: i64 = 1_000_000;

    fn h(failures: u32, unavailable: u32, age_secs: u64) -> History {
        History { failures, unavailable, age: Duration::from_secs(age_secs), closing: false }
    }

    #[test]
    fn a_plan_posts_each_part_to_each_recipient_then_deletes() {
        let thread = Caps { threads: true, delete: true, targets: 1 };
        assert_eq!(steps(0, thread, 0), [Action::Post { part: 0, target: 0 }]);
        assert_eq!(
            steps(3, thread, 1),
            [
                Action::Post { part: 0, target: 0 },
                Action::Post { part: 1, target: 0 },
                Action::Post { part: 2, target: 0 },
                Action::Delete(0)
            ]
        );
        let whole = Caps { threads: false, delete: false, targets: 2 };
        assert_eq!(steps(3, whole, 0), [Action::Post { part: 0, target: 0 }, Action::Post { part: 0, target: 1 }]);
    }

    #[test]
    fn an_unavailable_platform_pauses_the_channel_with_its_own_backoff() {
        let out = Outcome::Unavailable("503".to_owned());
        // ceiling 2 s * 2^2 = 8 s; half with unit 0.5; the delivery's own count plays no part.
        let (end, next) = decide(&out, h(9, 2, 0), &cfg(), NOW, 0.5);
        assert_eq!(next, Next::Pause(Duration::from_secs(4)));
        assert_eq!(end, AttemptEnd::Retry { not_before: NOW + 4000 });
        let (end, _) = decide(&out, h(9, 2, 25 * 3600), &cfg(), NOW, 0.5);
        assert!(matches!(end, AttemptEnd::Dead { .. }), "gives up like any transient failure");
    }

    #[test]
    fn refused_credentials_pause_the_channel_and_keep_the_queue() {
        let out = Outcome::Credentials("401 token revoked".to_owned());
        let (end, next) = decide(&out, h(0, 3, 60), &cfg(), NOW, 0.5);
        assert_eq!(next, Next::Pause(Duration::from_secs(8)), "the channel's streak sets the pause");
        assert_eq!(end, AttemptEnd::Retry { not_before: NOW + 8000 }, "the delivery waits, not dead-lettered");
    }

    #[test]
    fn sent_and_permanent_are_final() {
        let post = PostRef::id("1");
        let (end, next) = decide(&Outcome::Sent(post), h(0, 0, 0), &cfg(), NOW, 0.5);
        assert_eq!(end, AttemptEnd::Sent { post: PostRef::id("1"), progress: None });
        assert_eq!(next, Next::Done);
        let (end, next) = decide(&Outcome::Permanent("400 bad".to_owned()), h(0, 0, 0), &cfg(), NOW, 0.5);
        assert_eq!(end, AttemptEnd::Dead { reason: "400 bad".to_owned() });
        assert_eq!(next, Next::Done);
    }

    #[test]
    fn retries_back_off_exponentially_with_jitter() {
        let (end, next) = decide(&Outcome::Retry("500".to_owned()), h(3, 0, 0), &cfg(), NOW, 0.5);
        // ceiling 2s * 2^3 = 16s; half of it with unit 0.5.
        assert_eq!(next, Next::Retry(Duration::from_secs(8)));
        assert_eq!(end, AttemptEnd::Retry { not_before: NOW + 8000 });
        let (_, next) = decide(&Outcome::Unknown("timeout".to_owned()), h(30, 0, 0), &cfg(), NOW, 0.999);
        assert!(matches!(next, Next::Retry(d) if d <= Duration::from_secs(600)));
    }

    #[test]
    fn throttle_pauses_within_bounds() {
        let (_, next) = decide(&Outcome::RetryAfter(Duration::ZERO, String::new()), h(0, 0, 0), &cfg(), NOW, 0.5);
        assert_eq!(next, Next::Pause(MIN_PAUSE));
        let day = Duration::from_secs(86_400);
        let (end, next) = decide(&Outcome::RetryAfter(day, String::new()), h(0, 0, 0), &cfg(), NOW, 0.5);
        assert_eq!(next, Next::Pause(Duration::from_secs(3600)));
        assert_eq!(end, AttemptEnd::Retry { not_before: NOW + 3_600_000 });
    }

    #[test]
    fn transient_failures_give_up_eventually() {
        let (end, next) = decide(&Outcome::Retry("503".to_owned()), h(40, 0, 25 * 3600), &cfg(), NOW, 0.5);
        assert!(matches!(end, AttemptEnd::Dead { reason } if reason.contains("gave up") && reason.contains("503")));
        assert_eq!(next, Next::Done);
    }

    #[test]
    fn a_cancellation_never_gives_up_after_a_long_outage() {
        let long = History { closing: true, ..h(40, 3, 30 * 24 * 3600) };
        for out in [Outcome::Retry("503".to_owned()), Outcome::Unavailable("down".to_owned())] {
            let (end, _) = decide(&out, long, &cfg(), NOW, 0.5);
            assert!(matches!(end, AttemptEnd::Retry { .. }), "{out:?}: {end:?}");
        }
        let (end, _) = decide(&Outcome::Permanent("410 gone".to_owned()), long, &cfg(), NOW, 0.5);
        assert!(matches!(end, AttemptEnd::Dead { .. }), "refused for good is dead, and recorded");
    }
}
