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
use crate::reload::{Live, Shared};
use crate::render::Renderer;
use crate::store::{Store, WriterThread};
use arc_swap::ArcSwap;

/// Run the daemon until `shutdown` resolves (or a task fails), then stop it in order.
/// SIGHUP (and, with `[reload] watch = true`, a change to the config or templates)
/// reloads the config from its file.
pub async fn run(config: Config, shutdown: impl Future<Output = ()>) -> anyhow::Result<()> {
    let (reload_tx, mut reloads) = mpsc::unbounded_channel();
    let _watcher = match config.reload.watch {
        true => Some(
            crate::reload::watch(&crate::reload::watched(&config), config.reload.debounce, reload_tx.clone())
                .map_err(anyhow::Error::msg)?,
        ),
        false => None,
    };
    let mut hangups =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut running = start(config).await?;
    let failed = running.failed.clone();
    tokio::pin!(shutdown);
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            () = failed.cancelled() => {
                break Err(anyhow::anyhow!("a bullhorn task failed (see the log); stopped so it can be restarted"));
            }
            Some(()) = hangups.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                let _ = running.reload();
            }
            Some(()) = reloads.recv() => {
                tracing::info!("config or templates changed: reloading");
                let _ = running.reload();
            }
        }
    };
    tracing::info!("shutting down");
    running.stop().await;
    outcome
}

/// A started daemon.
#[derive(Debug)]
pub struct Running {
    /// The config and templates in force.
    live: Shared,
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

    let live: Shared =
        Arc::new(ArcSwap::from_pointee(Live { config: Arc::clone(&config), renderer: Arc::new(renderer) }));
    let ctx = crate::channel::Context {
        http: crate::channel::http::client().map_err(anyhow::Error::msg)?,
        timeout: config.delivery.request_timeout,
        state_dir: config.store.state_dir.clone(),
    };
    let delivery_cancel = CancellationToken::new();
    let delivery = Delivery::start(
        Arc::clone(&config),
        &store,
        &ctx,
        announced,
        Arc::clone(&metrics),
        delivery_cancel.clone(),
        failed.clone(),
    )
    .context("cannot start channel workers")?;

    let ingest_cancel = CancellationToken::new();
    let ingest = Ingest::start(
        Arc::clone(&live),
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
        live,
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

    /// The config in force.
    pub fn config(&self) -> Arc<Config> {
        Arc::clone(&self.live.load().config)
    }

    /// Reload the config from its file (and the templates). If anything is wrong, the
    /// running config stays and the problems are logged and returned.
    pub fn reload(&mut self) -> Result<(), String> {
        let old = self.config();
        let result = crate::config::load(&old.source).map_err(|e| e.to_string()).and_then(|new| {
            let (new, kept) = crate::reload::merge(&old, new);
            let renderer = Renderer::load(&new).map_err(|errors| {
                let list: Vec<String> = errors.iter().map(ToString::to_string).collect();
                format!("template problems:\n  - {}", list.join("\n  - "))
            })?;
            Ok((new, renderer, kept))
        });
        let (new, renderer, kept) = match result {
            Ok(v) => v,
            Err(e) => {
                tracing::error!(problems = %e, "reload refused; the running config stays");
                return Err(e);
            }
        };
        if !kept.is_empty() {
            tracing::warn!(sections = ?kept, "these sections changed but need a restart; the running values stay");
        }
        let new = Arc::new(new);
        self.live.store(Arc::new(Live { config: Arc::clone(&new), renderer: Arc::new(renderer) }));
        match self.delivery.reconfigure(&new) {
            Ok((started, stopped)) => tracing::info!(
                event_types = new.events.len(),
                channels = new.channels.len(),
                ?started,
                ?stopped,
                "config reloaded"
            ),
            Err(e) => tracing::error!(error = %e, "reloaded, but a new channel's worker could not start"),
        }
        Ok(())
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
