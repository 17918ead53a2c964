//! The running daemon: build every part from a [`Config`], start them in dependency order,
//! and stop them in the order that loses nothing.
//!
//! Start: templates (fail fast on a bad one) → embedded broker (if enabled) → store and its
//! writer → pauses → admin listener → channel workers (which load unfinished work) →
//! ingest → staff-notice timers. Then systemd hears READY (not waiting for the broker:
//! a broker down at boot must not restart-loop a daemon with queued work to send).
//! Stop: ingest first (nothing new is accepted; what was not committed stays unacked at
//! the broker), then the timers and the workers, each finishing the request it has in
//! flight within the grace period, then the admin server, then the store writer after its
//! last commit.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::control::Control;
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
        true => {
            let templates = std::path::absolute(&config.templates_dir).unwrap_or_else(|_| config.templates_dir.clone());
            let relevant = move |p: &std::path::Path| crate::reload::relevant(&templates, p);
            let dirs = crate::reload::watched(&config);
            Some(
                crate::reload::watch(&dirs, config.reload.debounce, relevant, reload_tx.clone())
                    .map_err(anyhow::Error::msg)?,
            )
        }
        false => None,
    };
    let mut hangups =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).context("cannot listen for SIGHUP")?;
    let mut running = start(config).await?;
    let failed = running.failed.clone();
    sd_notify(&[
        sd_notify::NotifyState::Ready,
        sd_notify::NotifyState::Status(&format!("running; mode {:?}", running.config().mode)),
    ]);
    // With WatchdogSec= set, systemd restarts a daemon whose main loop stops answering.
    let mut watchdog = sd_notify::watchdog_enabled().map(|every| tokio::time::interval(every / 2));
    let watchdog_tick = async |w: &mut Option<tokio::time::Interval>| match w {
        Some(i) => {
            i.tick().await;
        }
        None => std::future::pending().await,
    };
    tokio::pin!(shutdown);
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            () = failed.cancelled() => {
                break Err(anyhow::anyhow!("a bullhorn task failed (see the log); stopped so it can be restarted"));
            }
            Some(()) = hangups.recv() => {
                tracing::info!("SIGHUP: reloading the config");
                running.reload_notifying();
            }
            Some(()) = reloads.recv() => {
                tracing::info!("config or templates changed: reloading");
                running.reload_notifying();
            }
            () = watchdog_tick(&mut watchdog) => sd_notify(&[sd_notify::NotifyState::Watchdog]),
        }
    };
    tracing::info!("shutting down");
    sd_notify(&[sd_notify::NotifyState::Stopping]);
    running.stop().await;
    outcome
}

/// Tell systemd (a no-op when not started by it).
fn sd_notify(states: &[sd_notify::NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::warn!(error = %e, "cannot notify systemd");
    }
}

/// The store was put back from a backup: posting again what went out since the backup is
/// worse than waiting for a person, so everything public is paused until one resumes.
async fn restored(config: &Config, store: &Store, why: &str) {
    tracing::error!(
        %why,
        "STARTING PAUSED: the store looks restored from a backup. Check what it would post (bullhorn status), \
         close what went out already (bullhorn reject/retract), then resume: bullhorn resume"
    );
    // The store paused itself when it found it was restored (`Store::open`).
    if let Some(notice) = crate::notify::restored_notice(config, why, crate::time::now_ms())
        && let Err(e) = store.admin(crate::store::AdminOp::Notice(notice)).await
    {
        tracing::error!(error = %e, "cannot queue the staff notice");
    }
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
    notify_cancel: CancellationToken,
    notify: JoinHandle<()>,
    media_cleanup: Option<JoinHandle<()>>,
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
    if config.broker.enabled && !config.broker.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.broker.listen, "the embedded broker, which asks for no password, listens beyond loopback (broker.allow_remote): anyone who reaches it can publish alerts");
    }
    if config.admin.enabled && !config.admin.listen.ip().is_loopback() {
        tracing::warn!(listen = %config.admin.listen, "the admin server listens beyond loopback over plain HTTP (admin.allow_remote): its token crosses the network in clear unless a TLS proxy is in front");
    }

    let failed = CancellationToken::new();
    let (announce, announced) = mpsc::unbounded_channel();
    let opened = Store::open(
        &config.store.path,
        config.store.busy_timeout,
        Some(&config.store.state_dir),
        announce,
        Arc::clone(&health),
        Arc::clone(&metrics),
        failed.clone(),
    )?;
    let (store, writer) = (opened.store, opened.writer);
    metrics.store_writable.set(1);
    tracing::info!(path = %config.store.path.display(), "store open");
    if let Some(why) = &opened.restored {
        restored(&config, &store, why).await;
    }
    let control = Control::load(&store.reader()?).await.context("cannot read the pauses")?;

    let admin_listener = match config.admin.enabled {
        true => {
            let token = crate::admin::token(config.admin.token.as_ref(), &config.store.state_dir)
                .map_err(anyhow::Error::msg)?;
            Some((crate::admin::bind(config.admin.listen).await.map_err(anyhow::Error::msg)?, token))
        }
        false => None,
    };
    let admin_addr = admin_listener.as_ref().and_then(|(l, _)| l.local_addr().ok());

    let live: Shared =
        Arc::new(ArcSwap::from_pointee(Live { config: Arc::clone(&config), renderer: Arc::new(renderer) }));
    let ctx = crate::channel::Context {
        http: crate::channel::http::client().map_err(anyhow::Error::msg)?,
        timeout: config.delivery.request_timeout,
        state_dir: config.store.state_dir.clone(),
    };
    let link_key =
        Arc::new(crate::links::LinkKey::load_or_create(&config.store.state_dir).map_err(anyhow::Error::msg)?);
    let delivery_cancel = CancellationToken::new();
    let media = crate::media::MediaService::new(
        config.media.clone(),
        store.clone(),
        store.reader()?,
        Arc::clone(&live),
        ctx.http.clone(),
        delivery_cancel.child_token(),
        Arc::clone(&metrics),
    )
    .map_err(anyhow::Error::msg)?;
    let delivery = Delivery::start(
        Arc::clone(&config),
        &store,
        &ctx,
        announced,
        crate::delivery::Deps {
            metrics: Arc::clone(&metrics),
            control: control.clone(),
            media: Some(Arc::clone(&media)),
            live: Arc::clone(&live),
            links: Some(Arc::clone(&link_key)),
        },
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
    let admin = match admin_listener {
        Some((listener, token)) => {
            let state = crate::admin::AdminState::new(
                Arc::clone(&health),
                Arc::clone(&metrics),
                store.clone(),
                store.reader()?,
                Arc::clone(&live),
                control.clone(),
                &token,
            );
            Some(crate::admin::serve(listener, state, admin_cancel.clone(), failed.clone()))
        }
        None => None,
    };
    if let Some(addr) = admin_addr {
        tracing::info!(%addr, "admin HTTP listening (/healthz, /readyz, /metrics, /api, /act)");
    }
    let notify_cancel = CancellationToken::new();
    let media_cleanup = media.start_cleanup(notify_cancel.clone(), failed.clone());
    let notify = crate::notify::start(
        Arc::clone(&live),
        store.clone(),
        store.reader()?,
        Arc::clone(&link_key),
        Arc::clone(&metrics),
        notify_cancel.clone(),
        failed.clone(),
    );
    if config.mode == crate::config::Mode::Shadow {
        tracing::warn!(
            "SHADOW MODE: everything is recorded, nothing is posted (console and file channels still write)"
        );
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
        notify_cancel,
        notify,
        media_cleanup,
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
            let crate::reload::Merged { config: new, kept, applied } = crate::reload::merge(&old, new);
            for change in &applied {
                tracing::warn!(%change, "applied by the reload");
            }
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

    /// [`reload`](Self::reload), telling systemd it is reloading and when it is done.
    pub fn reload_notifying(&mut self) {
        sd_notify(&[
            sd_notify::NotifyState::Reloading,
            sd_notify::NotifyState::monotonic_usec_now().unwrap_or(sd_notify::NotifyState::Status("reloading")),
        ]);
        let status = match self.reload() {
            Ok(()) => "running; config reloaded".to_owned(),
            Err(_) => "running; the last reload was refused (see the log)".to_owned(),
        };
        sd_notify(&[sd_notify::NotifyState::Ready, sd_notify::NotifyState::Status(&status)]);
    }

    /// Stop at once, the way a killed process would as far as one process can: every task
    /// is aborted where it stands (a request in flight never has its outcome recorded,
    /// nothing more is acknowledged), and the store writer commits only what it had
    /// already been sent. For crash tests; `kill -9` of the binary is tested too.
    pub async fn crash(self) {
        self.ingest.abort().await;
        self.notify.abort();
        let _ = self.notify.await;
        if let Some(c) = self.media_cleanup {
            c.abort();
            let _ = c.await;
        }
        self.delivery.abort().await;
        self.delivery_cancel.cancel();
        if let Some(admin) = self.admin {
            admin.abort();
            let _ = admin.await;
        }
        // Open HTTP connections of the admin server still hold store handles.
        self.store.halt().await;
        drop(self.store);
        let writer = self.writer;
        let _ = tokio::task::spawn_blocking(move || writer.join()).await;
    }

    /// Stop in order: intake, timers, workers (within the grace period), admin, store
    /// writer.
    pub async fn stop(self) {
        self.ingest_cancel.cancel();
        self.ingest.stop().await;
        self.notify_cancel.cancel();
        let _ = self.notify.await;
        if let Some(c) = self.media_cleanup {
            let _ = c.await;
        }
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
