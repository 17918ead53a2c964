//! The store: a SQLite outbox and audit log (WAL, `synchronous=FULL`, versioned schema).
//!
//! Every change goes through one writer thread ([`writer`]) that commits whatever requests
//! are waiting in one transaction as soon as it is idle (group commit, no timer), in the
//! order they were sent. [`Store`] is the cheap, cloneable handle that sends requests to
//! it; [`Reader`] is a read-only connection for workers and the admin API. Nothing outside
//! this module speaks SQL, so a PostgreSQL backend is an addition, not a rewrite.
//!
//! The nouns: an *event* is one accepted message; a *delivery* is that event on one
//! channel; an *attempt* is one request for a delivery, committed before it is sent; a
//! *reject* is the dead-letter record of bad input.

mod incident;
mod lock;
mod operator_reads;
mod operator_writes;
mod read;
mod schema;
mod writer;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rusqlite::{Connection, OpenFlags};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

pub use lock::{Mark, Newest, StoreLock};
pub use operator_reads::{
    AlertDelivery, AlertDetail, AlertSummary, AuditRow, CredentialFailure, HeldEvent, LateDelivery, LinkInfo,
    MissingClosing, PauseRow,
};
pub use operator_writes::{AdminDone, AdminOp, LinkAction, NewLink, NewNotice, Scope};
pub use read::{Job, OriginalRow, PendingRow, Reader, ReplyTarget};

pub use crate::channel::PostRef;

use crate::event::{MsgType, Priority, Status};
use crate::health::Health;
use crate::lifecycle::{Audience, DeliveryKind, DeliveryState, Disposition, Snapshot, Trust};
use crate::metrics::Metrics;

/// Requests the writer takes into one transaction at most.
const MAX_BATCH: usize = 1024;
/// Requests that may wait for the writer before senders wait too.
const QUEUE: usize = 4096;
/// Bytes of a rejected payload kept in its dead-letter record.
pub const REJECT_HEAD_BYTES: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// The store did not take the write (disk full, read-only, locked, I/O error). Nothing
    /// in the failed transaction was committed.
    #[error("store write failed: {0}")]
    Write(String),
    /// This one request was refused (a constraint); the rest of its batch committed.
    #[error("store refused the request: {0}")]
    Refused(String),
    /// The delivery is no longer queued (a cancel suppressed it, or it was closed).
    #[error("delivery {0} is no longer queued")]
    NotQueued(i64),
    #[error("store writer has stopped")]
    Closed,
    /// An admin request named something that is not there.
    #[error("{0}")]
    NotFound(String),
    /// An admin request that does not apply in the current state (approving what is not
    /// held, using a link twice), or that names several alerts.
    #[error("{0}")]
    Conflict(String),
    #[error("cannot open store {path}: {message}")]
    Open { path: PathBuf, message: String },
    /// Another process holds the store.
    #[error("{0}")]
    Locked(String),
}

/// An accepted event with the deliveries planned for it.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub dedupe_key: String,
    /// The incident it belongs to, as the pipeline resolved it (a CAP message takes the
    /// incident of the messages it names).
    pub incident_key: String,
    /// The event's own id (a CAP identifier, a JSON `id`): what operators name it by.
    pub ident: String,
    pub revision: Option<u64>,
    pub format: &'static str,
    pub event_type: String,
    pub msg_type: MsgType,
    pub status: Status,
    /// How far its source is trusted (a signed subscription, or not).
    pub trust: Trust,
    pub priority: Priority,
    /// The policy's view (deliver, expired, stale, ignored); the lifecycle decides the
    /// rest in the writer's transaction.
    pub disposition: Disposition,
    pub topic: String,
    pub payload: Bytes,
    pub payload_sha256: String,
    pub event_json: String,
    pub headline: String,
    pub sent_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub received_at: i64,
    /// The rule says `approval = "hold"`: deliveries wait in `held` until approved.
    pub hold: bool,
    /// Every delivery the event may make, of each kind it may turn out to be (see
    /// [`NewEvent::lifecycle`]): the store keeps those of the kind it decides on.
    pub deliveries: Vec<NewDelivery>,
    pub lifecycle: NewLifecycle,
}

/// How the store ties an event to its incident and decides what it does there.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NewLifecycle {
    /// CAP: this message's `sender,identifier,sent`.
    pub message_key: Option<String>,
    /// CAP: the messages it updates or cancels (recorded, so one of them arriving later
    /// is known to be older).
    pub references: Vec<String>,
    /// A CAD snapshot (EIDO, mapped JSON): the digest of what a post may say, compared
    /// with the incident's last one, and whether it closes the incident.
    pub snapshot: Option<Snapshot>,
    /// It closes its incident without a word (a CAD rule without `post_on_close`): no
    /// channel is owed a cancellation for it, then or later.
    pub silent: bool,
}

#[derive(Debug, Clone)]
pub struct NewDelivery {
    pub channel: String,
    pub kind: DeliveryKind,
    /// Staff deliveries never go out on a public channel.
    pub audience: Audience,
    /// '' when the event gives no language.
    pub language: String,
    /// A thread's parts, when the text was split; empty for one post.
    pub parts: Vec<String>,
    pub priority: Priority,
    pub text: String,
    /// An email's subject and HTML alternative.
    pub subject: Option<String>,
    pub html: Option<String>,
    pub render_note: Option<String>,
    pub idem_key: String,
}

impl NewDelivery {
    /// A delivery planned for `channel`, without its text yet. Its idempotency key derives
    /// from `seed` (what makes it unique: an event's dedupe key, a notice's, a closing's),
    /// the channel, the kind and the language.
    pub fn planned(
        seed: &str,
        channel: &str,
        kind: DeliveryKind,
        language: &str,
        audience: Audience,
        priority: Priority,
    ) -> NewDelivery {
        NewDelivery {
            idem_key: idempotency_key(seed, channel, kind.as_str(), language),
            channel: channel.to_owned(),
            kind,
            audience,
            language: language.to_owned(),
            parts: Vec::new(),
            priority,
            text: String::new(),
            subject: None,
            html: None,
            render_note: None,
        }
    }

    /// Everything rendered for it: the text (and what went wrong rendering it), a
    /// thread's parts, an email's subject and HTML.
    pub fn rendered(self, r: crate::render::Rendered) -> NewDelivery {
        NewDelivery { text: r.text, render_note: r.error, parts: r.parts, subject: r.subject, html: r.html, ..self }
    }

    /// Its text, and what went wrong rendering it (the fallback text was used).
    pub fn text(self, text: String, render_note: Option<String>) -> NewDelivery {
        NewDelivery { text, render_note, ..self }
    }
}

/// A key that is the same for a delivery however often it is retried, or re-created from
/// a redelivered message: `webhook-id`, Mastodon `Idempotency-Key`, a Bluesky rkey seed.
pub fn idempotency_key(dedupe_key: &str, channel: &str, kind: &str, language: &str) -> String {
    let mut h = Sha256::new();
    for part in [dedupe_key, channel, kind, language] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let digest = h.finalize();
    let mut s = String::from("bh_");
    for b in &digest[..16] {
        use std::fmt::Write as _;
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// How far a multi-step delivery got, stored with it (`deliveries.progress`, JSON) so a
/// restart resumes at the next step instead of posting a thread's first part again.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Progress {
    /// Steps finished.
    #[serde(default)]
    pub done: usize,
    /// Where each finished post step landed, in order.
    #[serde(default)]
    pub posted: Vec<PostRef>,
    /// What a channel saved in the middle of a step (a Meta container id), by key.
    #[serde(default)]
    pub scratch: std::collections::BTreeMap<String, String>,
    /// What steps had to say (a recipient skipped, the original not deleted).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub notes: Vec<String>,
}

impl Progress {
    pub fn parse(json: Option<&str>) -> Progress {
        json.and_then(|j| serde_json::from_str(j).ok()).unwrap_or_default()
    }
}

/// Bad input, recorded as a dead letter.
#[derive(Debug, Clone)]
pub struct NewReject {
    pub received_at: i64,
    pub topic: String,
    pub format: Option<&'static str>,
    pub kind: &'static str,
    pub reason: String,
    pub payload: Bytes,
}

#[derive(Debug, Clone)]
pub enum IngestRecord {
    Event(Box<NewEvent>),
    Reject(NewReject),
}

/// What the store did with an ingest record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IngestOutcome {
    Accepted {
        event_id: i64,
        /// What became of it (deliver, superseded, closed, ...).
        disposition: Disposition,
        deliveries: usize,
        /// Earlier deliveries of its incident it stopped.
        suppressed: usize,
    },
    /// The dedupe key is already stored; nothing new was queued.
    Duplicate {
        event_id: i64,
        same_payload: bool,
    },
    Rejected {
        reject_id: i64,
    },
}

/// A delivery ready for its channel's worker, announced after its commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub id: i64,
    pub channel: String,
    pub priority: Priority,
    pub reply_to: Option<i64>,
}

/// How an attempt ended, as the delivery layer decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AttemptEnd {
    /// The delivery is done: `post` is where it landed (a thread's first post).
    Sent {
        post: PostRef,
        /// Every request of a multi-step delivery (see [`Progress`]).
        progress: Option<Progress>,
    },
    /// One step of a multi-step delivery (a thread's part, one SMS recipient, deleting the
    /// original after a cancellation) is done and more follow: the delivery goes back to
    /// the queue, due now, with its failure count reset. `post` is kept as the delivery's
    /// post if it has none yet, so a thread cut short still has its first post on record.
    Step {
        post: Option<PostRef>,
        done: usize,
        posted: Vec<PostRef>,
        /// What the steps so far had to say (a recipient skipped).
        notes: Vec<String>,
    },
    /// Back to the queue, not before `not_before` (Unix ms).
    Retry {
        not_before: i64,
    },
    Dead {
        reason: String,
    },
}

/// The record of one finished request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptResult {
    pub end: AttemptEnd,
    /// sent | retry | throttled | dead | unknown
    pub outcome: &'static str,
    pub http_status: Option<u16>,
    pub detail: String,
    /// Something the record of a sent delivery should say (posted without its image, the
    /// original could not be deleted).
    pub note: Option<String>,
}

/// What the transaction that would begin a request decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Begun {
    /// The attempt row is committed: send.
    Attempt(i64),
    /// A pause in force covers it: it stays queued.
    Paused,
    /// It must never go out, and was closed as suppressed for this reason.
    Closed(String),
}

/// Terminal states a delivery can be closed in without a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Closing {
    Expired,
    Suppressed,
    Dead,
    /// Every step already went out (the plan shrank with a reload).
    Done,
    /// Shadow mode: recorded, not posted.
    Shadow,
}

impl Closing {
    pub fn state(self) -> DeliveryState {
        match self {
            Closing::Expired => DeliveryState::Expired,
            Closing::Suppressed => DeliveryState::Suppressed,
            Closing::Dead => DeliveryState::Dead,
            Closing::Done => DeliveryState::Sent,
            Closing::Shadow => DeliveryState::Shadow,
        }
    }

    pub fn as_str(self) -> &'static str {
        self.state().as_str()
    }
}

type Responder<T> = oneshot::Sender<Result<T, StoreError>>;

#[derive(Debug)]
enum Op {
    Ingest(Box<IngestRecord>, Responder<IngestOutcome>),
    /// Attempts about to begin together, in one transaction; an answer for each.
    BeginAttempts(Vec<BeginRequest>, Responder<Vec<Result<Begun, StoreError>>>),
    FinishAttempt {
        attempt_id: i64,
        delivery_id: i64,
        finished_at: i64,
        result: AttemptResult,
        reply: Responder<()>,
    },
    SaveScratch {
        delivery_id: i64,
        key: String,
        value: String,
        reply: Responder<()>,
    },
    Close {
        delivery_id: i64,
        closing: Closing,
        reason: String,
        reply: Responder<()>,
    },
    Admin(Box<AdminOp>, Responder<AdminDone>),
    Media(Box<MediaOp>, Responder<()>),
    Probe(Responder<()>),
    /// Stop after what was sent before it, whoever still holds a handle (a crash test).
    Halt,
}

/// An attempt about to begin, one of [`Store::begin_attempts`].
#[derive(Debug, Clone)]
pub struct Begin {
    pub delivery_id: i64,
    pub started_at: i64,
    /// What a restart needs to resolve the request (the step of a thread).
    pub resolve_data: Option<String>,
}

/// An attempt about to begin.
#[derive(Debug)]
struct BeginRequest {
    delivery_id: i64,
    channel: String,
    /// Whether the channel is public as configured now.
    public: bool,
    started_at: i64,
    resolve_data: Option<String>,
}

/// What the media pipeline records.
#[derive(Debug, Clone)]
pub enum MediaOp {
    /// An event's image `idx` as fetched or decoded, or why there is none. Recorded once.
    Original { event_id: i64, idx: usize, source: String, image: Result<(String, Bytes), String> },
    /// An image put in the public media store.
    Published { name: String, url: String, event_id: i64 },
    /// Removed from the public media store.
    Unpublished { name: String },
    /// The working copy every platform's version of image `idx` is made from.
    Work { event_id: i64, idx: usize, bytes: Bytes },
}

/// Why the writer could not apply one request.
pub(crate) enum ApplyError {
    Refused(String),
    NotQueued(i64),
    /// The request does not apply (checked before anything was written): this answer.
    Denied(StoreError),
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for ApplyError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::ConstraintViolation) => ApplyError::Refused(e.to_string()),
            _ => ApplyError::Sql(e),
        }
    }
}

/// Handle to the store writer. Cloning is cheap; the writer stops when every handle is
/// dropped, after committing what was sent.
#[derive(Debug, Clone)]
pub struct Store {
    tx: mpsc::Sender<Op>,
    path: Arc<PathBuf>,
    busy_timeout: Duration,
}

/// A store opened by [`Store::open`].
#[derive(Debug)]
pub struct Opened {
    pub store: Store,
    pub writer: WriterThread,
    /// Why the store looks restored from a backup, if it does: the daemon then starts
    /// paused (see `store::lock`).
    pub restored: Option<String>,
}

/// The writer thread; join it after dropping every [`Store`] handle.
#[derive(Debug)]
pub struct WriterThread(std::thread::JoinHandle<()>);

impl WriterThread {
    /// Wait for the writer to commit what it was sent and stop.
    pub fn join(self) {
        if self.0.join().is_err() {
            tracing::error!("store writer thread panicked");
        }
    }
}

impl Store {
    /// Open (creating it if needed), lock and migrate the store at `path`, and start its
    /// writer. `announce` receives each delivery that becomes queued, after its commit.
    /// With a `state_dir`, the store is compared with the mark kept there ([`Mark`]).
    pub fn open(
        path: &Path,
        busy_timeout: Duration,
        state_dir: Option<&Path>,
        announce: mpsc::UnboundedSender<Queued>,
        health: Arc<Health>,
        metrics: Arc<Metrics>,
        failed: tokio_util::sync::CancellationToken,
    ) -> Result<Opened, StoreError> {
        let open_err = |message: String| StoreError::Open { path: path.to_path_buf(), message };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| open_err(format!("cannot create {}: {e}", dir.display())))?;
        }
        let lock = StoreLock::acquire(path)?;
        let mut conn = Connection::open(path).map_err(|e| open_err(e.to_string()))?;
        configure_writer(&conn, busy_timeout).map_err(open_err)?;
        schema::migrate(&mut conn).map_err(|e| open_err(e.to_string()))?.map_err(open_err)?;
        let mark = state_dir.map(|d| Mark::new(d, path));
        let newest = writer::newest(&conn).map_err(|e| open_err(e.to_string()))?;
        let restored = mark.as_ref().and_then(|m| m.restored(newest));
        if let Some(why) = &restored {
            // Paused before the mark moves on: however the start ends, the next one is
            // still paused (the pause is a row) or still finds the store older.
            pause_restored(&mut conn, why).map_err(|e| open_err(format!("cannot pause the restored store: {e}")))?;
        }
        if let Some(m) = &mark {
            m.write(newest);
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let thread = std::thread::Builder::new()
            .name("bullhorn-store".to_owned())
            .spawn(move || {
                let writer_health = Arc::clone(&health);
                let run =
                    std::panic::AssertUnwindSafe(|| writer::run(conn, rx, announce, writer_health, metrics, mark));
                if let Err(panic) = std::panic::catch_unwind(run) {
                    tracing::error!(panic = %crate::supervise::message(panic.as_ref()), "store writer failed; stopping bullhorn so it is restarted");
                    health.set_store_writable(false);
                    failed.cancel();
                }
                // Held until the writer is done with the file.
                drop(lock);
            })
            .map_err(|e| open_err(format!("cannot start writer thread: {e}")))?;
        let store = Store { tx, path: Arc::new(path.to_path_buf()), busy_timeout };
        Ok(Opened { store, writer: WriterThread(thread), restored })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A new read-only connection to this store.
    pub fn reader(&self) -> Result<Reader, StoreError> {
        Reader::open(&self.path, self.busy_timeout)
    }

    async fn send<T>(
        &self,
        op: impl FnOnce(Responder<T>) -> Op,
    ) -> Result<oneshot::Receiver<Result<T, StoreError>>, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx.send(op(reply)).await.map_err(|_| StoreError::Closed)?;
        Ok(rx)
    }

    /// Queue an ingest record; the returned future resolves once it is committed (or
    /// failed). Records commit in the order they are submitted.
    pub async fn submit_ingest(&self, record: IngestRecord) -> Result<Pending<IngestOutcome>, StoreError> {
        self.send(|r| Op::Ingest(Box::new(record), r)).await.map(Pending)
    }

    /// Commit an attempt row before its request, moving the delivery to `in_flight`, if
    /// in that same transaction nothing forbids it: a pause that covers it, its audience
    /// on a channel that is `public` now, its incident cancelled or retracted, its event
    /// superseded ([`crate::lifecycle::may_begin`]).
    pub async fn begin_attempt(
        &self,
        delivery_id: i64,
        channel: &str,
        public: bool,
        started_at: i64,
        resolve_data: Option<String>,
    ) -> Result<Begun, StoreError> {
        let begin = Begin { delivery_id, started_at, resolve_data };
        let mut answers = self.begin_attempts(channel, public, vec![begin]).await?;
        answers.pop().unwrap_or(Err(StoreError::Refused("internal: no answer".to_owned())))
    }

    /// [`Store::begin_attempt`] for several deliveries of one channel, committed in one
    /// transaction before any of their requests starts; an answer for each, in order.
    pub async fn begin_attempts(
        &self,
        channel: &str,
        public: bool,
        begins: Vec<Begin>,
    ) -> Result<Vec<Result<Begun, StoreError>>, StoreError> {
        let requests = begins
            .into_iter()
            .map(|b| BeginRequest {
                delivery_id: b.delivery_id,
                channel: channel.to_owned(),
                public,
                started_at: b.started_at,
                resolve_data: b.resolve_data,
            })
            .collect();
        Pending(self.send(|reply| Op::BeginAttempts(requests, reply)).await?).await
    }

    /// Record how an attempt ended and move its delivery on.
    pub async fn finish_attempt(
        &self,
        attempt_id: i64,
        delivery_id: i64,
        finished_at: i64,
        result: AttemptResult,
    ) -> Result<(), StoreError> {
        Pending(self.send(|reply| Op::FinishAttempt { attempt_id, delivery_id, finished_at, result, reply }).await?)
            .await
    }

    /// Save what a channel learned in the middle of a request (a container id), so a
    /// retry or a restart continues from it. `key` is letters, digits, `_`, `-` and `:`.
    pub async fn save_scratch(&self, delivery_id: i64, key: &str, value: &str) -> Result<(), StoreError> {
        if !key.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | ':')) {
            return Err(StoreError::Refused(format!("invalid scratch key {key:?}")));
        }
        let (key, value) = (key.to_owned(), value.to_owned());
        Pending(self.send(|reply| Op::SaveScratch { delivery_id, key, value, reply }).await?).await
    }

    /// Close a queued delivery without sending it.
    pub async fn close(&self, delivery_id: i64, closing: Closing, reason: String) -> Result<(), StoreError> {
        Pending(self.send(|reply| Op::Close { delivery_id, closing, reason, reply }).await?).await
    }

    /// An operator's request (approve, reject, pause, retract, ...) or a staff notice;
    /// answered once committed, with its audit row.
    pub async fn admin(&self, op: AdminOp) -> Result<AdminDone, StoreError> {
        Pending(self.send(|reply| Op::Admin(Box::new(op), reply)).await?).await
    }

    /// Record what the media pipeline did.
    pub async fn media(&self, op: MediaOp) -> Result<(), StoreError> {
        Pending(self.send(|reply| Op::Media(Box::new(op), reply)).await?).await
    }

    /// A real write, to learn whether the store takes writes again.
    pub async fn probe(&self) -> Result<(), StoreError> {
        Pending(self.send(Op::Probe).await?).await
    }

    /// Make the writer stop once it has committed what was sent before, even though
    /// other handles remain (they then get [`StoreError::Closed`]): what a crash leaves.
    pub async fn halt(&self) {
        let _ = self.tx.send(Op::Halt).await;
    }
}

/// The answer to a submitted request.
#[derive(Debug)]
pub struct Pending<T>(oneshot::Receiver<Result<T, StoreError>>);

impl<T> Future for Pending<T> {
    type Output = Result<T, StoreError>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        std::pin::Pin::new(&mut self.0).poll(cx).map(|r| r.unwrap_or(Err(StoreError::Closed)))
    }
}

/// The kill switch on, with its audit row: a store restored from a backup.
fn pause_restored(conn: &mut Connection, why: &str) -> rusqlite::Result<()> {
    let tx = conn.transaction()?;
    let now = crate::time::now_ms();
    let actor = "bullhorn (store restored from a backup)";
    tx.execute(
        "INSERT INTO pauses (scope, actor, at, reason) VALUES ('all', ?1, ?2, ?3)
         ON CONFLICT (scope) DO UPDATE SET actor = excluded.actor, at = excluded.at, reason = excluded.reason",
        rusqlite::params![actor, now, why],
    )?;
    tx.execute(
        "INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, 'pause', 'all', ?3)",
        rusqlite::params![now, actor, why],
    )?;
    tx.commit()
}

fn configure_writer(conn: &Connection, busy_timeout: Duration) -> Result<(), String> {
    let sql = |e: rusqlite::Error| e.to_string();
    conn.busy_timeout(busy_timeout).map_err(sql)?;
    let mode: String = conn.pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0)).map_err(sql)?;
    if !mode.eq_ignore_ascii_case("wal") {
        return Err(format!("journal_mode is {mode}; WAL is required (is the file on a network file system?)"));
    }
    // In WAL mode NORMAL can lose acknowledged commits on power loss; the broker has
    // already forgotten a message once we ack it, so every commit must be durable.
    conn.pragma_update(None, "synchronous", "FULL").map_err(sql)?;
    conn.pragma_update(None, "foreign_keys", "ON").map_err(sql)?;
    // Every statement the writer runs stays prepared.
    conn.set_prepared_statement_cache_capacity(64);
    keep_plans(conn).map_err(sql)?;
    Ok(())
}

fn open_reader(path: &Path, busy_timeout: Duration) -> rusqlite::Result<Connection> {
    let conn = Connection::open_with_flags(path, OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX)?;
    conn.busy_timeout(busy_timeout)?;
    keep_plans(&conn)?;
    Ok(conn)
}

/// A cached statement keeps the plan it was prepared with. Without the query planner
/// stability guarantee, SQLite marks a statement whose plan looked at a bound value (an
/// equality the index does not serve, a partial index's condition) and expires it when
/// its bindings are cleared, which rusqlite does each time the statement goes back to
/// its cache: every call then parses it again (a quarter of the daemon's CPU in the
/// drain benchmark).
fn keep_plans(conn: &Connection) -> rusqlite::Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

#[cfg(test)]
mod tests;
