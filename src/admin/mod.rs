//! The admin HTTP server (axum), on loopback by default.
//!
//! - `/healthz` (the process is up), `/readyz` (connected to the broker and the store
//!   takes writes) and `/metrics` (Prometheus text format) are open, for probes.
//! - `/api/...` ([`api`]) is the operators' API behind a bearer token (compared in
//!   constant time): alerts with per-channel state and post URLs, approve / reject, pause
//!   / resume, retry, retract / correct. The CLI's `status`, `approve`, ... use it
//!   ([`client`]).
//! - `/act/{token}` ([`act`]) serves the one-time approve/reject links of staff notices:
//!   a GET shows the alert and a button (link previews in chat apps fetch GETs, so a GET
//!   changes nothing); the POST acts, once.
//!
//! Every change goes through the store writer and is recorded in the audit log with who
//! asked.

pub mod act;
pub mod api;
pub mod client;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use secrecy::{ExposeSecret, SecretString};
use sha2::{Digest, Sha256};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use crate::control::Control;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::reload::Shared;
use crate::store::{Reader, Store};

/// The file in the state dir holding the generated API token when the config sets none.
pub const TOKEN_FILE: &str = "admin-token";

/// What the handlers share.
#[derive(Clone)]
pub struct AdminState {
    pub health: Arc<Health>,
    pub metrics: Arc<Metrics>,
    pub store: Store,
    pub reader: Reader,
    pub live: Shared,
    pub control: Control,
    /// SHA-256 of the bearer token.
    token_sha256: [u8; 32],
}

impl std::fmt::Debug for AdminState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdminState").finish_non_exhaustive()
    }
}

impl AdminState {
    pub fn new(
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        store: Store,
        reader: Reader,
        live: Shared,
        control: Control,
        token: &SecretString,
    ) -> Self {
        let token_sha256 = Sha256::digest(token.expose_secret().as_bytes()).into();
        AdminState { health, metrics, store, reader, live, control, token_sha256 }
    }

    /// Whether `given` is the token, in time independent of where they differ.
    fn token_matches(&self, given: &str) -> bool {
        use subtle::ConstantTimeEq as _;
        let given: [u8; 32] = Sha256::digest(given.as_bytes()).into();
        given.ct_eq(&self.token_sha256).into()
    }
}

/// The API token: `[admin] token` / `token_file`, else the one in the state dir,
/// generated (random, 256 bits, file mode 0600) the first time.
pub fn token(configured: Option<&SecretString>, state_dir: &Path) -> Result<SecretString, String> {
    if let Some(t) = configured {
        return Ok(t.clone());
    }
    let path = state_dir.join(TOKEN_FILE);
    if path.exists() {
        return crate::config::read_secret(&path);
    }
    std::fs::create_dir_all(state_dir).map_err(|e| format!("cannot create {}: {e}", state_dir.display()))?;
    let token = crate::digest::random_token()?;
    crate::config::write_secret(&path, &token).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    tracing::info!(file = %path.display(), "generated the admin API token (the CLI reads it from there)");
    Ok(SecretString::from(token))
}

/// Bind the admin address; a taken port is a start-up error.
pub async fn bind(listen: SocketAddr) -> Result<tokio::net::TcpListener, String> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| format!("cannot listen on admin address {listen}: {e}"))
}

/// Serve until `cancel`.
pub fn serve(
    listener: tokio::net::TcpListener,
    state: AdminState,
    cancel: CancellationToken,
    failed: CancellationToken,
) -> JoinHandle<()> {
    let app = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics_text))
        .nest("/api", api::routes(state.clone()))
        .nest("/act", act::routes())
        .with_state(state);
    crate::supervise::spawn("admin".to_owned(), failed, async move {
        let served = axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move { cancel.cancelled().await })
            .await;
        if let Err(e) = served {
            tracing::error!(error = %e, "admin server failed");
        }
    })
}

async fn readyz(State(s): State<AdminState>) -> impl IntoResponse {
    let r = s.health.readiness();
    let status = if r.ready { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, axum::Json(r))
}

async fn metrics_text(State(s): State<AdminState>) -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "application/openmetrics-text; version=1.0.0; charset=utf-8")], s.metrics.encode())
}
