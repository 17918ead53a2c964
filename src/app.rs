//! The running daemon: build every part from a [`Config`], start them in dependency order,
//! and stop them in the order that loses nothing.
//!
//! Start: templates (fail fast on a bad one) → embedded broker (if enabled) → store and its
//! writer → admin listener → channel workers (which load unfinished work) → ingest.
//! Stop: ingest first (nothing new is accepted; what was not committed stays unacked at
//! the broker), then the workers, each finishing the request it has in flight within the
//! grace period, then the admin server, then the store writer after its last commit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::delivery::Delivery;
use crate::health::Health;
use crate::ingest::Ingest;
use crate::metrics::Metrics;
use crate::render::Renderer;
use crate::store::{Store, WriterThread};

/// Run the daemon until `shutdown` resolves (or a task fails), then stop it in order.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let running = start(config).await?;
    let failed = running.failed.clone();
    let outcome = tokio::select! {
        () = shutdown => Ok(()),
        () = failed.cancelled() => Err(anyhow::anyhow!("a bullhorn task failed (see the log); stopped so it can be restarted")),
    };
    tracing::info!("shutting down");
    running.stop().await;
    outcome
}

/// A started daemon.
#[derive(Debug)]
pub struct Running {
    admin_addr: Option<SocketAddr>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    ingest_cancel: CancellationToken,
    delivery_cancel: CancellationToken,
    admin_cancel: CancellationToken,
    /// Triggered when a task fails; see [`crate::supervise`].
    failed: CancellationToken,
    ingest: Ingest,
    delivery: Delivery,
    admin: Option<JoinHandle<()>>,
    store: Store,
    writer: WriterThread,
    grace: Duration,
}

/// Start every part of the daemon.
pub async fn start(config: Config) -> anyhow::Result<Running> {
    let config = Arc::new(config);
    let health = Arc::new(Health::default());
    let metrics = Arc::new(Metrics::new());

    let renderer = Renderer::load(&config).map_err(|errors| {
        let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
        anyhow::anyhow!("template problems:\n  - {}", list.join("\n  - "))
    })?;

    #[cfg(feature = "embedded-broker")]
    if config.broker.enabled {
        crate::broker::start(&config.broker, &config.mqtt).map_err(anyhow::Error::msg)?;
    }

    let failed = CancellationToken::new();
    let (announce, announced) = mpsc::unbounded_channel();
    let (store, writer) = Store::open(
        &config.store.path,
        config.store.busy_timeout,
        announce,
        Arc::clone(&health),
        Arc::clone(&metrics),
        failed.clone(),
    )?;
    metrics.store_writable.set(1);
    tracing::info!(path = %config.store.path.display(), "store open");

    let admin_listener = match config.admin.enabled {
        true => Some(crate::admin::bind(config.admin.listen).await.map_err(anyhow::Error::msg)?),
        false => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|l| l.local_addr().ok());

    let http = crate::channel::http::client().map_err(anyhow::Error::msg)?;
    let delivery_cancel = CancellationToken::new();
    let delivery = Delivery::start(
        Arc::clone(&config),
        &store,
        &http,
        announced,
        Arc::clone(&metrics),
        delivery_cancel.clone(),
        failed.clone(),
    )
    .context("cannot start channel workers")?;

    let ingest_cancel = CancellationToken::new();
    let ingest = Ingest::start(
        Arc::clone(&config),
        Arc::new(renderer),
        store.clone(),
        Arc::clone(&health),
        Arc::clone(&metrics),
        ingest_cancel.clone(),
        failed.clone(),
    )
    .map_err(anyhow::Error::msg)?;

    let admin_cancel = CancellationToken::new();
    let admin = admin_listener.map(|l| {
        crate::admin::serve(l, Arc::clone(&health), Arc::clone(&metrics), admin_cancel.clone(), failed.clone())
    });
    if let Some(addr) = admin_addr {
        tracing::info!(%addr, "admin HTTP listening (/healthz, /readyz, /metrics)");
    }
    tracing::info!(broker = %config.mqtt.endpoint, channels = config.channels.len(), "bullhorn running");

    Ok(Running {
        admin_addr,
        health,
        metrics,
        ingest_cancel,
        delivery_cancel,
        admin_cancel,
        failed,
        ingest,
        delivery,
        admin,
        store,
        writer,
        grace: config.delivery.shutdown_grace,
    })
}

impl Running {
    /// Where the admin server listens (useful when configured with port 0).
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin_addr
    }

    pub fn health(&self) -> &Health {
        &self.health
    }

    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// Stop in order: intake, workers (within the grace period), admin, store writer.
    pub async fn stop(self) {
        self.ingest_cancel.cancel();
        self.ingest.stop().await;
        self.delivery_cancel.cancel();
        self.delivery.stop(self.grace).await;
        self.admin_cancel.cancel();
        if let Some(admin) = self.admin {
            let _ = admin.await;
        }
        // The writer stops once every handle is gone, after committing what it was sent.
        drop(self.store);
        let writer = self.writer;
        let joined =
            tokio::time::timeout(Duration::from_secs(10), tokio::task::spawn_blocking(move || writer.join())).await;
        if joined.is_err() {
            tracing::warn!("store writer did not stop in time");
        }
        tracing::info!("stopped");
    }
}
