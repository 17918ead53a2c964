//! Ingest: MQTT in, store records out, PUBACKs after commit.
//!
//! For each PUBLISH the task runs the pure stages ([`pipeline`]) and submits one record to
//! the store writer, keeping the message's ack handle in a FIFO of pending commits. The
//! writer commits in submission order, so acking from the front of that FIFO as commits
//! land sends PUBACKs in arrival order (MQTT 3.1.1 §4.6), rejected messages included.
//!
//! When the store fails a write, the task stops acking (the failed message and everything
//! after it stay unacknowledged at the broker), reports not-ready through the store
//! writer's health flag, and probes the store until it takes writes again (the writer
//! refuses every ingest request meanwhile, so nothing behind the failed message commits
//! ahead of it). Then it forces a new connection, because a broker redelivers
//! unacknowledged messages only on reconnect; the dedupe key turns whatever was committed
//! before the failure into duplicates, which are acked and dropped.
//!
//! A message is placed in its incident before it is rendered (its type and texts may come
//! from there), against committed state and what is ahead of it in the writer's queue:
//! the task keeps what it submitted and has not yet heard back about (`Ahead`), so a
//! cancellation right behind its alert finds it.

pub mod mqtt;

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt as _;
use futures_util::stream::FuturesOrdered;
use jiff::Timestamp;
use tokio::sync::{Notify, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::backoff::Backoff;
use crate::health::Health;
use crate::lifecycle::{Disposition, Known, KnownIncident, KnownMessage, StatusClass};
use crate::metrics::{DispositionLabel, FormatLabel, Metrics, ReasonLabel};
use crate::pipeline;
use crate::reload::Shared;
use crate::store::{IngestOutcome, IngestRecord, NewEvent, Pending, Reader, Store, StoreError};
use mqtt::{AckHandle, Client, ConnEvent};

/// How the store is probed after a failed write.
const PROBE: Backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(10));

/// The running ingest tasks.
#[derive(Debug)]
pub struct Ingest {
    pipeline: JoinHandle<()>,
    connection: JoinHandle<()>,
}

impl Ingest {
    /// Connect to the broker and start receiving. Fails only on a TLS setup error; an
    /// unreachable broker is retried in the background (and reported by `/readyz`).
    pub fn start(
        live: Shared,
        store: Store,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        cancel: CancellationToken,
        failed: CancellationToken,
    ) -> Result<Ingest, String> {
        // The connection keeps the settings it started with: [mqtt] changes need a restart.
        let mqtt = Arc::new(live.load().config.mqtt.clone());
        let tls = if mqtt.endpoint.tls { Some(mqtt::tls_config(&mqtt)?) } else { None };
        let (tx, rx) = mpsc::unbounded_channel();
        let reconnect = Arc::new(Notify::new());
        let connection = crate::supervise::spawn(
            "mqtt connection".to_owned(),
            failed.clone(),
            mqtt::run_connection(mqtt, tls, tx, Arc::clone(&reconnect), cancel.clone()),
        );
        let reader = store.reader().map_err(|e| e.to_string())?;
        let task =
            Task { live, store, reader, health, metrics, reconnect, client: None, stall: None, ahead: VecDeque::new() };
        let pipeline = crate::supervise::spawn("ingest".to_owned(), failed, task.run(rx, cancel));
        Ok(Ingest { pipeline, connection })
    }

    /// Stop both tasks where they stand (a crash, as far as one process can have one).
    pub async fn abort(self) {
        self.pipeline.abort();
        self.connection.abort();
        let _ = self.pipeline.await;
        let _ = self.connection.await;
    }

    /// Wait for both tasks after `cancel`. Messages not yet committed stay unacknowledged
    /// and come back from the broker on the next start.
    pub async fn stop(self) {
        let _ = self.pipeline.await;
        let _ = self.connection.await;
    }
}

struct Task {
    /// The config and templates in force; reloads swap them.
    live: Shared,
    store: Store,
    /// For the original a text-less CAP Cancel refers to.
    reader: Reader,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    reconnect: Arc<Notify>,
    /// The current connection's generation and client.
    client: Option<(u64, Client)>,
    /// Set after a store write failed: ack nothing until the store is back and the
    /// session restarted.
    stall: Option<Stall>,
    /// What was submitted and not yet answered, in submission order (one entry per
    /// pending commit; `None` for a reject).
    ahead: VecDeque<Option<AheadEvent>>,
}

/// An event on its way to the store, as far as placing later messages needs it.
struct AheadEvent {
    message_key: Option<String>,
    references: Vec<String>,
    incident_key: String,
    class: StatusClass,
    trust: crate::lifecycle::Trust,
    event_type: String,
    event_json: String,
    /// Not ignored: it takes part in its incident (and may open it).
    counts: bool,
}

impl AheadEvent {
    fn of(e: &NewEvent) -> Self {
        AheadEvent {
            message_key: e.lifecycle.message_key.clone(),
            references: e.lifecycle.references.clone(),
            incident_key: e.incident_key.clone(),
            class: StatusClass::of(e.status),
            trust: e.trust,
            event_type: e.event_type.clone(),
            event_json: e.event_json.clone(),
            counts: e.disposition != Disposition::Ignored,
        }
    }

    fn known(&self) -> KnownMessage {
        KnownMessage {
            incident_key: self.incident_key.clone(),
            class: self.class,
            trust: self.trust,
            event_json: self.event_json.clone(),
        }
    }
}

/// Committed state and what is ahead in the writer's queue.
struct Ahead<'a> {
    pending: &'a VecDeque<Option<AheadEvent>>,
    reader: &'a Reader,
}

impl Known for Ahead<'_> {
    fn message(&self, key: &str, class: StatusClass) -> Option<KnownMessage> {
        let pending = self.pending.iter().flatten().rev();
        pending
            .filter(|a| a.counts && a.class == class && a.message_key.as_deref() == Some(key))
            .map(AheadEvent::known)
            .next()
            .or_else(|| self.reader.message(key, class))
    }

    fn referencing(&self, key: &str, class: StatusClass, trust: crate::lifecycle::Trust) -> Option<KnownMessage> {
        let pending = self.pending.iter().flatten().rev();
        pending
            .filter(|a| a.counts && a.class == class && a.trust >= trust && a.references.iter().any(|r| r == key))
            .map(AheadEvent::known)
            .next()
            .or_else(|| self.reader.referencing(key, class, trust))
    }

    fn incident(&self, key: &str) -> Option<KnownIncident> {
        // Committed first: its opener is older than anything pending. Else the first
        // pending message of the incident will open it.
        self.reader.incident(key).or_else(|| {
            self.pending.iter().flatten().find(|a| a.counts && a.incident_key == key).map(|a| KnownIncident {
                class: a.class,
                trust: a.trust,
                event_type: a.event_type.clone(),
            })
        })
    }
}

struct Stall {
    /// A fixed time, so a stream of incoming messages cannot keep pushing it back.
    next_probe: tokio::time::Instant,
    probes: u32,
}

/// A message whose record is on its way to the store.
struct Committed {
    generation: u64,
    handle: AckHandle,
    result: Result<IngestOutcome, StoreError>,
}

async fn committed(generation: u64, handle: AckHandle, pending: Pending<IngestOutcome>) -> Committed {
    Committed { generation, handle, result: pending.await }
}

impl Task {
    async fn run(mut self, mut rx: mpsc::UnboundedReceiver<ConnEvent>, cancel: CancellationToken) {
        let mut pending = FuturesOrdered::new();
        loop {
            let probe_at = self.stall.as_ref().map(|s| s.next_probe);
            let probe = async {
                match probe_at {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                Some(done) = pending.next(), if !pending.is_empty() => {
                    self.ahead.pop_front();
                    if let Err(e) = self.on_committed(done).await {
                        self.stall(&e);
                        // Whatever is still waiting must not be acked either: it is after
                        // the failed message. The broker redelivers it all after recovery.
                        pending = FuturesOrdered::new();
                        self.ahead.clear();
                    }
                }
                ev = rx.recv() => match ev {
                    Some(ev) => match self.on_event(ev).await {
                        Ok(Some(c)) => pending.push_back(c),
                        Ok(None) => {}
                        Err(e) => {
                            self.stall(&e);
                            pending = FuturesOrdered::new();
                            self.ahead.clear();
                        }
                    },
                    None => break,
                },
                () = probe => self.probe().await,
            }
        }
        self.health.set_broker_connected(false);
    }

    /// Stop acknowledging until the store takes writes again.
    fn stall(&mut self, error: &StoreError) {
        if self.stall.is_none() {
            tracing::warn!(%error, "store write failed: acknowledging nothing until it recovers; the broker keeps the messages");
        }
        let next_probe = tokio::time::Instant::now() + PROBE.equal_jitter(0, fastrand::f64());
        self.stall = Some(Stall { next_probe, probes: 0 });
    }

    /// Try a write; once one succeeds, reconnect so the broker redelivers.
    async fn probe(&mut self) {
        match self.store.probe().await {
            Ok(()) => {
                tracing::info!("store recovered; reconnecting so the broker redelivers what was not acknowledged");
                self.stall = None;
                self.client = None;
                self.reconnect.notify_one();
            }
            Err(e) => {
                let probes = self.stall.as_ref().map_or(0, |s| s.probes).saturating_add(1);
                tracing::debug!(error = %e, "store still failing");
                let next_probe = tokio::time::Instant::now() + PROBE.equal_jitter(probes, fastrand::f64());
                self.stall = Some(Stall { next_probe, probes });
            }
        }
    }

    /// Handle one connection event; a message becomes a pending commit.
    async fn on_event(&mut self, ev: ConnEvent) -> Result<Option<impl Future<Output = Committed> + use<>>, StoreError> {
        match ev {
            ConnEvent::Connected { generation, client, session_present } => {
                tracing::info!(broker = %self.live.load().config.mqtt.endpoint, session_present, "connected to MQTT broker");
                self.client = Some((generation, client));
                Ok(None)
            }
            ConnEvent::Subscribed { generation } => {
                if self.client.as_ref().is_some_and(|(g, _)| *g == generation) {
                    tracing::info!(
                        subscriptions = self.live.load().config.mqtt.subscriptions.len(),
                        "subscribed; receiving"
                    );
                    self.health.set_broker_connected(true);
                    self.metrics.broker_connected.set(1);
                }
                Ok(None)
            }
            ConnEvent::Disconnected { generation, .. } => {
                if self.client.as_ref().is_some_and(|(g, _)| *g == generation) {
                    self.client = None;
                }
                self.health.set_broker_connected(false);
                self.metrics.broker_connected.set(0);
                Ok(None)
            }
            ConnEvent::Message { generation, message } => {
                if self.stall.is_some() || self.client.as_ref().is_none_or(|(g, _)| *g != generation) {
                    // Left unacknowledged on purpose: it comes back after the reconnect.
                    return Ok(None);
                }
                let now = Timestamp::now();
                let live = self.live.load();
                let known = Ahead { pending: &self.ahead, reader: &self.reader };
                let received = pipeline::Received {
                    topic: &message.topic,
                    payload: &message.payload,
                    user_properties: &message.user_properties,
                };
                let record = pipeline::record_with(&live.config, &live.renderer, received, now, &known);
                if self.reader.read_failed() {
                    // Placed on what could not be read: not taken. Like a failed write.
                    return Err(StoreError::Write("cannot read the store to place a message".to_owned()));
                }
                self.count_received(&message.topic, &record);
                let ahead = match &record {
                    IngestRecord::Event(e) => Some(AheadEvent::of(e)),
                    IngestRecord::Reject(_) => None,
                };
                // Failing to submit is a store failure like any other: acking later
                // messages would skip this one.
                let p = self.store.submit_ingest(record).await?;
                self.ahead.push_back(ahead);
                Ok(Some(committed(generation, message.handle, p)))
            }
        }
    }

    fn count_received(&self, topic: &str, record: &IngestRecord) {
        let format = pipeline::subscription_for(&self.live.load().config.mqtt.subscriptions, topic)
            .map_or("none", |s| s.format.as_str());
        self.metrics.events_received.get_or_create(&FormatLabel { format }).inc();
        match record {
            IngestRecord::Reject(r) => {
                self.metrics.events_rejected.get_or_create(&ReasonLabel { reason: r.kind }).inc();
                tracing::warn!(topic = %r.topic, kind = r.kind, reason = %r.reason, bytes = r.payload.len(), "input rejected and recorded");
            }
            IngestRecord::Event(e) => {
                if e.disposition == Disposition::Ignored {
                    tracing::info!(topic = %e.topic, format = e.format, reason = %e.headline, "recorded, nothing to post");
                }
                // The same template error once per channel, though several kinds were rendered.
                let mut notes: Vec<(&str, &str)> = e
                    .deliveries
                    .iter()
                    .filter_map(|d| d.render_note.as_deref().map(|n| (d.channel.as_str(), n)))
                    .collect();
                notes.sort_unstable();
                notes.dedup();
                if !notes.is_empty() {
                    self.metrics.render_errors.inc_by(notes.len() as u64);
                    for (channel, error) in notes {
                        tracing::error!(
                            channel,
                            error,
                            "template failed; the fallback text is used for this alert; fix the template"
                        );
                    }
                }
            }
        }
    }

    /// A commit landed: ack its message if it succeeded and its connection is current.
    async fn on_committed(&mut self, done: Committed) -> Result<(), StoreError> {
        let outcome = done.result?;
        match &outcome {
            IngestOutcome::Accepted {
                event_id,
                disposition:
                    d @ (Disposition::Closed | Disposition::Retracted | Disposition::Untrusted | Disposition::OtherClass),
                ..
            } => {
                // Someone sent it to be posted, and it will not be: say so where it is seen.
                tracing::warn!(
                    event = event_id,
                    disposition = d.as_str(),
                    "recorded, not posted: its incident was cancelled or retracted, or it came from a source that may not \
                     change it (a new alert needs a new id; see bullhorn status)"
                );
            }
            IngestOutcome::Accepted { event_id, disposition: Disposition::Superseded, .. } => {
                tracing::info!(event = event_id, "older message arrived after a newer one; recorded, not posted");
            }
            IngestOutcome::Accepted { event_id, disposition, deliveries, suppressed } => {
                tracing::info!(
                    event = event_id,
                    disposition = disposition.as_str(),
                    deliveries,
                    suppressed,
                    "event stored"
                );
            }
            IngestOutcome::Duplicate { event_id, same_payload } => {
                self.metrics.events_duplicate.inc();
                if *same_payload {
                    tracing::debug!(event = event_id, "duplicate message ignored");
                } else {
                    tracing::warn!(
                        event = event_id,
                        "a different message reused an id and revision already stored; ignored (send a new revision to change an alert)"
                    );
                }
            }
            IngestOutcome::Rejected { .. } => {}
        }
        let disposition = match outcome {
            IngestOutcome::Accepted { disposition, .. } => Some(disposition.as_str()),
            IngestOutcome::Duplicate { .. } | IngestOutcome::Rejected { .. } => None,
        };
        if let Some(disposition) = disposition {
            self.metrics.events_accepted.get_or_create(&DispositionLabel { disposition }).inc();
        }
        if let Some((generation, client)) = &self.client
            && *generation == done.generation
            && let Err(e) = client.ack(&done.handle).await
        {
            tracing::debug!(error = %e, "ack not sent (connection gone); the broker will redeliver");
        }
        Ok(())
    }
}
