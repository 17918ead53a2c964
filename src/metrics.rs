//! Prometheus metrics. One [`Metrics`] per running daemon, with its own registry (no
//! global recorder), passed to the tasks that count; `/metrics` encodes it.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FormatLabel {
    pub format: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    pub reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DispositionLabel {
    pub disposition: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ImageLabel {
    /// taken | refused
    pub outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChannelLabel {
    pub channel: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabel {
    pub channel: String,
    pub outcome: &'static str,
}

#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Every message taken off the broker, by subscription format.
    pub events_received: Family<FormatLabel, Counter>,
    /// Events stored, by what happens to them (deliver, expired, stale, superseded).
    pub events_accepted: Family<DispositionLabel, Counter>,
    /// Inputs refused, by reason kind.
    pub events_rejected: Family<ReasonLabel, Counter>,
    /// Messages already in the store (redeliveries, resends).
    pub events_duplicate: Counter,
    /// Delivery attempts and closings by outcome.
    pub deliveries: Family<OutcomeLabel, Counter>,
    /// Deliveries waiting per channel.
    pub queue_depth: Family<ChannelLabel, Gauge>,
    pub broker_connected: Gauge,
    pub store_writable: Gauge,
    /// Requests per store transaction.
    pub store_batch_size: Histogram,
    /// Time from BEGIN to the end of COMMIT.
    pub store_commit_seconds: Histogram,
    /// Templates that failed at render time (the fallback text was used).
    pub render_errors: Counter,
    /// Pause scopes in force (1 with the kill switch alone): alert on it being left on.
    pub paused: Gauge,
    /// Alerts waiting for approval.
    pub held_alerts: Gauge,
    /// Event images fetched or decoded from inline data, by outcome.
    pub media_images: Family<ImageLabel, Counter>,
    /// Deliveries that went out without their image because it was not ready in time.
    pub media_not_ready: Counter,
    /// Time to fit one image to one platform (decode, orient, scale, encode).
    pub media_processing_seconds: Histogram,
    pub media_work_copies: Counter,
    /// When each channel's recorded `credentials_expire` falls, as a Unix time.
    pub credentials_expiry: Family<ChannelLabel, Gauge>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("bullhorn");
        let m = Metrics {
            events_received: Family::default(),
            events_accepted: Family::default(),
            events_rejected: Family::default(),
            events_duplicate: Counter::default(),
            deliveries: Family::default(),
            queue_depth: Family::default(),
            broker_connected: Gauge::default(),
            store_writable: Gauge::default(),
            store_batch_size: Histogram::new(exponential_buckets(1.0, 2.0, 12)),
            store_commit_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
            render_errors: Counter::default(),
            paused: Gauge::default(),
            held_alerts: Gauge::default(),
            media_images: Family::default(),
            media_not_ready: Counter::default(),
            media_processing_seconds: Histogram::new(exponential_buckets(0.005, 2.0, 12)),
            media_work_copies: Counter::default(),
            credentials_expiry: Family::default(),
            registry: Registry::default(),
        };
        registry.register("events_received", "MQTT messages received", m.events_received.clone());
        registry.register("events_accepted", "Events stored, by disposition", m.events_accepted.clone());
        registry.register("events_rejected", "Inputs rejected, by reason", m.events_rejected.clone());
        registry.register(
            "events_duplicate",
            "Messages already stored (redelivered or resent)",
            m.events_duplicate.clone(),
        );
        registry.register("deliveries", "Delivery outcomes by channel", m.deliveries.clone());
        registry.register("queue_depth", "Deliveries waiting, by channel", m.queue_depth.clone());
        registry.register("broker_connected", "1 while connected to the MQTT broker", m.broker_connected.clone());
        registry.register("store_writable", "1 while the store accepts writes", m.store_writable.clone());
        registry.register("store_batch_size", "Requests committed per store transaction", m.store_batch_size.clone());
        registry.register(
            "store_commit_seconds",
            "Store transaction time, BEGIN to COMMIT",
            m.store_commit_seconds.clone(),
        );
        registry.register("render_errors", "Templates that failed at render time", m.render_errors.clone());
        registry.register("paused", "Pauses in force (all, a channel, an event type)", m.paused.clone());
        registry.register("held_alerts", "Alerts waiting for approval", m.held_alerts.clone());
        registry.register("media_images", "Event images taken or refused", m.media_images.clone());
        registry.register(
            "media_work_copies",
            "Originals decoded into the working copy every platform's version is made from",
            m.media_work_copies.clone(),
        );
        registry.register(
            "media_not_ready",
            "Deliveries posted without their image: not ready within the wait",
            m.media_not_ready.clone(),
        );
        registry.register(
            "media_processing_seconds",
            "Time to fit one image to one platform",
            m.media_processing_seconds.clone(),
        );
        registry.register(
            "credentials_expiry_timestamp_seconds",
            "When a channel's recorded credentials_expire falls (Unix time)",
            m.credentials_expiry.clone(),
        );
        Metrics { registry, ..m }
    }

    /// Count one delivery outcome.
    pub fn delivery(&self, channel: &str, outcome: &'static str) {
        self.deliveries.get_or_create(&OutcomeLabel { channel: channel.to_owned(), outcome }).inc();
    }

    /// The Prometheus text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        if prometheus_client::encoding::text::encode(&mut out, &self.registry).is_err() {
            out.clear();
        }
        out
    }
}
