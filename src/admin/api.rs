//! The operators' JSON API under `/api`, behind the bearer token.
//!
//! Alerts are named by the store's id or by the event's own `id` (its latest message).
//! Request bodies are optional JSON: `actor` (who is asking, for the audit log; the
//! `X-Bullhorn-Actor` header works too), and per request `reason`, `channel`, `text`,
//! `scope` (`all`, `channel:NAME`, `type:NAME`).

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use bytes::Bytes;
use serde::Deserialize;
use serde_json::json;

use super::AdminState;
use crate::event::{Event, Priority};
use crate::lifecycle::DeliveryKind;
use crate::render::Target;
use crate::store::{AdminDone, AdminOp, NewDelivery, Scope, StoreError};

pub fn routes(state: AdminState) -> Router<AdminState> {
    Router::new()
        .route("/status", get(status))
        .route("/alerts", get(alerts))
        .route("/alerts/{id}", get(alert))
        .route("/alerts/{id}/approve", post(approve))
        .route("/alerts/{id}/reject", post(reject))
        .route("/alerts/{id}/retry", post(retry))
        .route("/alerts/{id}/retract", post(retract))
        .route("/alerts/{id}/correct", post(correct))
        .route("/channels/{name}/test", post(test_channel))
        .route("/pause", post(pause))
        .route("/resume", post(resume))
        .layer(middleware::from_fn_with_state(state, auth))
}

/// Refuse a request without the right bearer token.
async fn auth(State(s): State<AdminState>, req: Request, next: Next) -> Response {
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")));
    match given {
        Some(t) if s.token_matches(t.trim()) => next.run(req).await,
        Some(_) => {
            tracing::warn!(path = %req.uri().path(), "admin API: wrong token");
            refuse("wrong token")
        }
        None => refuse("this API needs Authorization: Bearer <token> ([admin] token_file)"),
    }
}

fn refuse(why: &str) -> Response {
    (StatusCode::UNAUTHORIZED, [(header::WWW_AUTHENTICATE, "Bearer")], Json(json!({ "error": why }))).into_response()
}

/// An error answered as `{"error": "..."}`.
#[derive(Debug)]
pub struct ApiError(StatusCode, String);

impl ApiError {
    fn bad(msg: impl Into<String>) -> Self {
        ApiError(StatusCode::BAD_REQUEST, msg.into())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(json!({ "error": self.1 }))).into_response()
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let status = match &e {
            StoreError::NotFound(_) => StatusCode::NOT_FOUND,
            StoreError::Conflict(_) | StoreError::NotQueued(_) => StatusCode::CONFLICT,
            StoreError::Refused(_) => StatusCode::UNPROCESSABLE_ENTITY,
            StoreError::Write(_) | StoreError::Closed | StoreError::Open { .. } | StoreError::Locked(_) => {
                StatusCode::SERVICE_UNAVAILABLE
            }
        };
        ApiError(status, e.to_string())
    }
}

type ApiResult<T> = Result<Json<T>, ApiError>;

#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct Body {
    actor: Option<String>,
    reason: Option<String>,
    channel: Option<String>,
    text: Option<String>,
    scope: Option<String>,
    /// `test-channel` on a public channel: yes, post it where the public sees it.
    public: Option<bool>,
}

fn body(bytes: &Bytes) -> Result<Body, ApiError> {
    if bytes.iter().all(u8::is_ascii_whitespace) {
        return Ok(Body::default());
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad(format!("invalid JSON body: {e}")))
}

/// A request's optional JSON body and who is asking.
struct Ask {
    body: Body,
    actor: String,
}

impl<S: Send + Sync> FromRequest<S> for Ask {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let headers = req.headers().clone();
        let bytes = Bytes::from_request(req, state).await.map_err(|e| ApiError(e.status(), e.body_text()))?;
        let body = body(&bytes)?;
        let actor = actor(&headers, &body);
        Ok(Ask { body, actor })
    }
}

/// Who is asking, for the audit log: the body's `actor`, else the `X-Bullhorn-Actor`
/// header, cleaned of control characters and cut to 100 characters.
fn actor(headers: &HeaderMap, body: &Body) -> String {
    let given = body
        .actor
        .clone()
        .or_else(|| headers.get("x-bullhorn-actor").and_then(|v| v.to_str().ok()).map(str::to_owned))
        .unwrap_or_default();
    let clean: String = given.chars().filter(|c| !c.is_control()).take(100).collect();
    let clean = clean.trim();
    if clean.is_empty() { "api (unnamed)".to_owned() } else { clean.to_owned() }
}

/// The alert `ident` names (`#N`, or the event's own id; see [`crate::store::Reader::find_alert`]).
async fn event_id(s: &AdminState, ident: &str) -> Result<i64, ApiError> {
    Ok(s.reader.find_alert(ident).await?)
}

async fn status(State(s): State<AdminState>) -> ApiResult<serde_json::Value> {
    let live = s.live.load();
    let pauses = s.reader.pauses().await?;
    let counts = s.reader.delivery_counts().await?;
    let mut channels = serde_json::Map::new();
    for (channel, state, n) in counts {
        let entry = channels.entry(channel).or_insert_with(|| json!({}));
        entry[state] = json!(n);
    }
    let held = s.reader.alerts(1000, true).await?.len();
    let now = crate::time::now_ms();
    let expiring: Vec<serde_json::Value> = crate::config::expiring(&live.config, now)
        .into_iter()
        .map(|e| {
            json!({
                "channel": e.channel,
                "expires_at": crate::time::rfc3339(e.at),
                "note": e.describe(&live.config, now),
            })
        })
        .collect();
    Ok(Json(json!({
        "mode": live.config.mode,
        "readiness": s.health.readiness(),
        "paused": pauses,
        "held_alerts": held,
        "channels": channels,
        "credentials_expiring": expiring,
    })))
}

#[derive(Debug, Deserialize)]
struct ListQuery {
    #[serde(default = "default_limit")]
    limit: usize,
    #[serde(default)]
    held: bool,
}

fn default_limit() -> usize {
    50
}

async fn alerts(State(s): State<AdminState>, Query(q): Query<ListQuery>) -> ApiResult<serde_json::Value> {
    let list = s.reader.alerts(q.limit, q.held).await?;
    Ok(Json(json!({ "alerts": list })))
}

async fn alert(State(s): State<AdminState>, Path(ident): Path<String>) -> ApiResult<crate::store::AlertDetail> {
    let id = event_id(&s, &ident).await?;
    let detail = s.reader.alert(id).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no alert {id}")))?;
    Ok(Json(detail))
}

async fn approve(
    State(s): State<AdminState>,
    Path(ident): Path<String>,
    Ask { actor, .. }: Ask,
) -> ApiResult<AdminDone> {
    let event_id = event_id(&s, &ident).await?;
    let done = s.store.admin(AdminOp::Approve { event_id, actor: actor.clone() }).await?;
    tracing::info!(alert = event_id, %actor, deliveries = done.changed, "approved");
    Ok(Json(done))
}

async fn reject(
    State(s): State<AdminState>,
    Path(ident): Path<String>,
    Ask { body: b, actor }: Ask,
) -> ApiResult<AdminDone> {
    let event_id = event_id(&s, &ident).await?;
    let reason = b.reason.unwrap_or_default();
    let done = s.store.admin(AdminOp::Reject { event_id, actor: actor.clone(), reason }).await?;
    tracing::info!(alert = event_id, %actor, deliveries = done.changed, "rejected");
    Ok(Json(done))
}

async fn retry(
    State(s): State<AdminState>,
    Path(ident): Path<String>,
    Ask { body: b, actor }: Ask,
) -> ApiResult<AdminDone> {
    let event_id = event_id(&s, &ident).await?;
    let done = s.store.admin(AdminOp::Retry { event_id, channel: b.channel, actor: actor.clone() }).await?;
    tracing::info!(alert = event_id, %actor, deliveries = done.changed, "dead-lettered deliveries queued again");
    Ok(Json(done))
}

async fn retract(
    State(s): State<AdminState>,
    Path(ident): Path<String>,
    Ask { body: b, actor }: Ask,
) -> ApiResult<AdminDone> {
    let text = b.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    retract_or_correct(&s, &ident, actor, text, false).await
}

async fn correct(
    State(s): State<AdminState>,
    Path(ident): Path<String>,
    Ask { body: b, actor }: Ask,
) -> ApiResult<AdminDone> {
    let text = b.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    let Some(text) = text else { return Err(ApiError::bad("a correction needs its text")) };
    retract_or_correct(&s, &ident, actor, Some(text), true).await
}

/// The longest correction text taken (a thread of it is not what a correction should be).
const MAX_CORRECTION: usize = 2000;

/// Retract (or correct) an alert: render the text for every channel the incident went
/// to, and let the store decide, in one transaction, where something is out.
async fn retract_or_correct(
    s: &AdminState,
    ident: &str,
    actor: String,
    text: Option<String>,
    correction: bool,
) -> ApiResult<AdminDone> {
    if text.as_ref().is_some_and(|t| t.chars().count() > MAX_CORRECTION) {
        return Err(ApiError::bad(format!("the text is over {MAX_CORRECTION} characters")));
    }
    let event_id = event_id(s, ident).await?;
    let detail = s.reader.alert(event_id).await?.ok_or_else(|| ApiError(StatusCode::NOT_FOUND, "gone".to_owned()))?;
    let event: Event = serde_json::from_value(detail.event)
        .map_err(|e| ApiError(StatusCode::UNPROCESSABLE_ENTITY, format!("the stored event cannot be read: {e}")))?;
    // A retraction of a drill or a restricted alert is for staff like the alert was.
    let audience = crate::policy::audience(&event);
    let live = s.live.load();
    let now = jiff::Timestamp::now().as_millisecond();
    let seed = format!("retract:{event_id}:{now}");
    let mut deliveries = Vec::new();
    for (channel, language) in s.reader.incident_channels(event_id).await? {
        let Some(cfg) = live.config.channels.get(&channel).filter(|c| c.enabled) else {
            tracing::warn!(%channel, "the alert went to a channel that is no longer enabled; no retraction there");
            continue;
        };
        let lang = (!language.is_empty()).then_some(language.as_str());
        let event = event.in_language(lang);
        // A retraction's own text is the operator's, unless none is given.
        let rendered = live.renderer.correction(&event, &Target::channel(cfg), text.as_deref());
        let d = NewDelivery::planned(&seed, &channel, DeliveryKind::Retract, &language, audience, Priority::Retraction);
        deliveries.push(d.rendered(rendered));
    }
    let correction_text = if correction { text } else { None };
    // A retraction with the operator's own words is still a retraction (the incident
    // ends); only `correct` keeps it going.
    let op = AdminOp::Retract { event_id, actor: actor.clone(), correction: correction_text, deliveries };
    let done = s.store.admin(op).await?;
    tracing::warn!(alert = event_id, %actor, channels = done.changed, message = %done.message, "{}", if correction { "CORRECTION" } else { "RETRACTION" });
    Ok(Json(done))
}

/// A test message on one channel, queued like any delivery: the pause, shadow mode and
/// the rate limit apply, and its attempt is in the send log. A public channel needs
/// `public: true`: the public sees it.
async fn test_channel(
    State(s): State<AdminState>,
    Path(name): Path<String>,
    Ask { body: b, actor }: Ask,
) -> ApiResult<AdminDone> {
    let live = s.live.load();
    let cfg = live
        .config
        .channels
        .get(&name)
        .filter(|c| c.enabled)
        .ok_or_else(|| ApiError(StatusCode::NOT_FOUND, format!("no enabled channel {name:?}")))?;
    if cfg.public && b.public != Some(true) {
        return Err(ApiError::bad(format!(
            "{name} is a public channel: a test message there is seen by the public. Pass --public to post it anyway (it still waits for a pause, shadow mode and the rate limit)"
        )));
    }
    let now = jiff::Timestamp::now();
    let text = match b.text.as_deref().map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) if t.chars().count() > MAX_CORRECTION => {
            return Err(ApiError::bad(format!("the text is over {MAX_CORRECTION} characters")));
        }
        Some(t) => t.to_owned(),
        None => {
            let tz = jiff::tz::TimeZone::get(&live.config.agency.time_zone).unwrap_or(jiff::tz::TimeZone::UTC);
            format!(
                "TEST: a test message from {} through bullhorn, {}. Please ignore.",
                live.config.agency.name,
                now.to_zoned(tz).strftime("%Y-%m-%d %H:%M %Z")
            )
        }
    };
    let seed = format!("test:{name}:{}:{}", now.as_nanosecond(), crate::digest::random_nonce().map_err(ApiError::bad)?);
    let audience = if cfg.public { crate::lifecycle::Audience::Public } else { crate::lifecycle::Audience::Staff };
    // Someone waits at a terminal for it: not paced like routine posts (it still counts
    // against the channel's rate limit).
    let delivery =
        NewDelivery::planned(&seed, &name, DeliveryKind::Post, "", audience, Priority::High).text(text, None);
    let mut done = s.store.admin(AdminOp::TestMessage { delivery, actor: actor.clone() }).await?;
    tracing::info!(channel = %name, %actor, public = cfg.public, "test message queued");
    let pauses = s.control.current();
    if pauses.channel_paused(cfg) || pauses.type_paused(cfg, "test_message") {
        done.message.push_str("; the channel is paused: it goes out when resumed");
        done.paused = true;
    }
    Ok(Json(done))
}

/// The scope of a pause, checked against the config.
fn scope(s: &AdminState, b: &Body) -> Result<Scope, ApiError> {
    let scope = Scope::parse(b.scope.as_deref().unwrap_or("all")).map_err(ApiError::bad)?;
    let live = s.live.load();
    match &scope {
        Scope::Channel(c) if !live.config.channels.contains_key(c) => Err(ApiError::bad(format!("no channel {c:?}"))),
        Scope::Type(t) if !live.config.events.contains_key(t) => Err(ApiError::bad(format!("no event type {t:?}"))),
        _ => Ok(scope),
    }
}

async fn pause(State(s): State<AdminState>, Ask { body: b, actor }: Ask) -> ApiResult<serde_json::Value> {
    let scope = scope(&s, &b)?;
    let done = s.store.admin(AdminOp::Pause { scope: scope.clone(), actor: actor.clone(), reason: b.reason }).await?;
    let pauses = s.control.refresh(&s.reader).await?;
    tracing::warn!(%scope, %actor, "PAUSED: {}", if scope == Scope::All { "the kill switch is on; no public channel posts until resumed" } else { "deliveries wait until resumed" });
    Ok(Json(json!({ "message": done.message, "paused": pause_list(&pauses) })))
}

async fn resume(State(s): State<AdminState>, Ask { body: b, actor }: Ask) -> ApiResult<serde_json::Value> {
    let scope = Scope::parse(b.scope.as_deref().unwrap_or("all")).map_err(ApiError::bad)?;
    let done = s.store.admin(AdminOp::Resume { scope: scope.clone(), actor: actor.clone() }).await?;
    let pauses = s.control.refresh(&s.reader).await?;
    tracing::warn!(%scope, %actor, still_paused = ?pause_list(&pauses), "RESUMED: what is still valid goes out");
    Ok(Json(json!({ "message": done.message, "paused": pause_list(&pauses) })))
}

fn pause_list(p: &crate::control::Pauses) -> Vec<String> {
    let mut v: Vec<String> = if p.all { vec!["all".to_owned()] } else { Vec::new() };
    v.extend(p.channels.iter().map(|c| format!("channel:{c}")));
    v.extend(p.types.iter().map(|t| format!("type:{t}")));
    v
}
