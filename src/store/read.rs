//! Read-only access to the store. WAL lets readers run beside the writer without blocking
//! it; each [`Reader`] owns one connection and runs its queries on the blocking pool.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rusqlite::{Connection, OptionalExtension, params};

use super::{PostRef, Progress, StoreError, open_reader};
use crate::event::{Priority, Status};
use crate::lifecycle::{Audience, DeliveryKind, DeliveryState, Known, KnownIncident, KnownMessage, StatusClass, Trust};

#[derive(Debug, Clone)]
pub struct Reader {
    conn: Arc<Mutex<Connection>>,
    /// A lookup for the ingest pipeline failed ([`Reader::read_failed`]).
    failed: Arc<std::sync::atomic::AtomicBool>,
}

/// A delivery still to be done on a channel, as loaded at worker start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingRow {
    pub id: i64,
    pub priority: Priority,
    pub reply_to: Option<i64>,
    pub not_before: Option<i64>,
    /// Set when an attempt was started and never finished: its outcome is unknown.
    pub open_attempt: Option<i64>,
}

/// Everything a worker needs to send one delivery.
#[derive(Debug, Clone)]
pub struct Job {
    pub delivery_id: i64,
    pub channel: String,
    pub kind: DeliveryKind,
    /// '' when the event gave no language.
    pub language: String,
    /// A thread's parts; empty for one post.
    pub parts: Vec<String>,
    pub state: DeliveryState,
    /// Staff deliveries never go out on a public channel.
    pub audience: Audience,
    pub priority: Priority,
    pub text: String,
    /// An email's subject and HTML alternative.
    pub subject: Option<String>,
    pub html: Option<String>,
    pub idem_key: String,
    pub attempts: u32,
    pub reply_to: Option<i64>,
    /// Since when it waits to go out: queued, approved, or queued again by a retry.
    pub created_at: i64,
    pub event_id: i64,
    pub incident_key: String,
    pub event_type: String,
    pub msg_type: String,
    pub status: String,
    pub revision: Option<i64>,
    pub sent_at: Option<i64>,
    pub expires_at: Option<i64>,
    pub received_at: i64,
    pub event_json: String,
    /// How far a multi-step delivery got.
    pub progress: Progress,
    /// The outcome of its latest attempt (`unknown`: it may have posted).
    pub last_outcome: Option<String>,
}

/// An event's image as the media pipeline recorded it.
#[derive(Debug, Clone)]
pub struct OriginalRow {
    pub idx: usize,
    pub source: String,
    /// The MIME type and bytes, or why there is no image.
    pub image: Result<(String, bytes::Bytes), String>,
    /// Its working copy, once made.
    pub work: Option<bytes::Bytes>,
}

/// The state of the delivery a reply points at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplyTarget {
    pub state: DeliveryState,
    /// Where it landed (a thread's first post).
    pub post: PostRef,
    /// Every post of it, when it took several (a thread).
    pub progress: Progress,
    /// It may have gone out even if not `sent`: it has a post on record (a thread cut
    /// short) or an attempt whose outcome was never known.
    pub maybe_posted: bool,
}

impl ReplyTarget {
    /// Every post it made, first first.
    pub fn posts(&self) -> Vec<PostRef> {
        if self.progress.posted.is_empty() { vec![self.post.clone()] } else { self.progress.posted.clone() }
    }
}

impl Reader {
    pub(super) fn open(path: &Path, busy_timeout: Duration) -> Result<Reader, StoreError> {
        let conn = open_reader(path, busy_timeout)
            .map_err(|e| StoreError::Open { path: path.to_path_buf(), message: e.to_string() })?;
        Ok(Reader { conn: Arc::new(Mutex::new(conn)), failed: Arc::default() })
    }

    pub(super) async fn with<T: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> rusqlite::Result<T> + Send + 'static,
    ) -> Result<T, StoreError> {
        let conn = Arc::clone(&self.conn);
        tokio::task::spawn_blocking(move || {
            let guard = conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
            f(&guard)
        })
        .await
        .map_err(|e| StoreError::Write(format!("reader task failed: {e}")))?
        .map_err(|e| StoreError::Write(format!("read failed: {e}")))
    }

    /// Queued and in-flight deliveries of `channel`, most urgent first.
    pub async fn pending(&self, channel: &str) -> Result<Vec<PendingRow>, StoreError> {
        let channel = channel.to_owned();
        self.with(move |c| {
            let mut stmt = c.prepare(
                "SELECT d.id, d.priority, d.reply_to, d.not_before,
                        CASE WHEN d.state = 'in_flight' THEN
                          (SELECT MAX(a.id) FROM attempts a WHERE a.delivery_id = d.id AND a.finished_at IS NULL)
                        END
                 FROM deliveries d
                 WHERE d.channel = ?1 AND d.state IN ('queued', 'in_flight')
                 ORDER BY d.priority, d.id",
            )?;
            let rows = stmt.query_map([channel], |r| {
                Ok(PendingRow {
                    id: r.get(0)?,
                    priority: Priority::from_rank(r.get(1)?),
                    reply_to: r.get(2)?,
                    not_before: r.get(3)?,
                    open_attempt: r.get(4)?,
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// One delivery with its event.
    pub async fn job(&self, delivery_id: i64) -> Result<Option<Job>, StoreError> {
        self.with(move |c| read_job(c, delivery_id)).await
    }

    /// Several deliveries with their events, in one trip to the reader (those that no
    /// longer exist are left out).
    pub async fn jobs(&self, ids: Vec<i64>) -> Result<HashMap<i64, Job>, StoreError> {
        self.with(move |c| {
            let mut out = HashMap::with_capacity(ids.len());
            for id in ids {
                if let Some(job) = read_job(c, id)? {
                    out.insert(id, job);
                }
            }
            Ok(out)
        })
        .await
    }

    /// The state and post of the delivery `delivery_id`.
    pub async fn reply_target(&self, delivery_id: i64) -> Result<Option<ReplyTarget>, StoreError> {
        self.with(move |c| {
            c.prepare_cached(
                "SELECT state, post_id, post_url, post_data, progress,
                        post_id IS NOT NULL
                        OR EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id AND a.outcome = 'unknown')
                 FROM deliveries d WHERE id = ?1",
            )?
            .query_row([delivery_id], |r| {
                let progress: Option<String> = r.get(4)?;
                let state: String = r.get(0)?;
                Ok(ReplyTarget {
                    state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Suppressed),
                    post: PostRef { id: r.get(1)?, url: r.get(2)?, data: r.get(3)? },
                    progress: Progress::parse(progress.as_deref()),
                    maybe_posted: r.get(5)?,
                })
            })
            .optional()
        })
        .await
    }

    /// The images recorded for `event_id`, in order.
    pub async fn media_originals(&self, event_id: i64) -> Result<Vec<OriginalRow>, StoreError> {
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT idx, source, mime, bytes, error, work FROM media WHERE event_id = ?1 ORDER BY idx",
            )?;
            let rows = stmt.query_map([event_id], |r| {
                let mime: Option<String> = r.get(2)?;
                let bytes: Option<Vec<u8>> = r.get(3)?;
                let error: Option<String> = r.get(4)?;
                let image = match (mime, bytes) {
                    (Some(m), Some(b)) => Ok((m, bytes::Bytes::from(b))),
                    _ => Err(error.unwrap_or_else(|| "no image".to_owned())),
                };
                let work: Option<Vec<u8>> = r.get(5)?;
                Ok(OriginalRow {
                    idx: usize::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    source: r.get(1)?,
                    image,
                    work: work.map(bytes::Bytes::from),
                })
            })?;
            rows.collect()
        })
        .await
    }

    /// Names in the public media store published before `cutoff` (Unix ms) and not yet
    /// removed.
    pub async fn published_before(&self, cutoff: i64) -> Result<Vec<String>, StoreError> {
        self.with(move |c| {
            c.prepare_cached("SELECT name FROM published WHERE removed_at IS NULL AND published_at < ?1 ORDER BY id")?
                .query_map([cutoff], |r| r.get(0))?
                .collect()
        })
        .await
    }

    /// When each request to `channel` since `since_ms` started: the send log the quota is
    /// rebuilt from.
    pub async fn sends_since(&self, channel: &str, since_ms: i64) -> Result<Vec<i64>, StoreError> {
        let channel = channel.to_owned();
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT started_at FROM attempts WHERE channel = ?1 AND started_at >= ?2 ORDER BY started_at",
            )?;
            let rows = stmt.query_map(params![channel, since_ms], |r| r.get(0))?;
            rows.collect()
        })
        .await
    }
}

/// What the ingest pipeline reads of committed messages (blocking: single indexed reads,
/// and only for messages that name others or follow an incident).
impl Known for Reader {
    fn message(&self, key: &str, class: StatusClass) -> Option<KnownMessage> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = conn
            .prepare_cached(
                "SELECT incident_key, status, trust, event_json FROM events
                 WHERE message_key = ?1 AND disposition != 'ignored'
                   AND (CASE status WHEN 'actual' THEN 'actual' ELSE 'practice' END) = ?2
                 ORDER BY id LIMIT 1",
            )
            .and_then(|mut stmt| stmt.query_row(params![key, class.as_str()], known_message).optional());
        self.known(found)
    }

    fn referencing(&self, key: &str, class: StatusClass, trust: Trust) -> Option<KnownMessage> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = conn
            .prepare_cached(
                "SELECT e.incident_key, e.status, e.trust, e.event_json FROM event_refs r JOIN events e ON e.id = r.event_id
                 WHERE r.message_key = ?1 AND e.trust >= ?3
                   AND (CASE e.status WHEN 'actual' THEN 'actual' ELSE 'practice' END) = ?2
                 ORDER BY e.id DESC LIMIT 1",
            )
            .and_then(|mut stmt| stmt.query_row(params![key, class.as_str(), trust.rank()], known_message).optional());
        self.known(found)
    }

    fn incident(&self, key: &str) -> Option<KnownIncident> {
        let conn = self.conn.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let found = conn.prepare_cached("SELECT class, trust, event_type FROM incidents WHERE key = ?1").and_then(
            |mut stmt| {
                stmt.query_row([key], |r| {
                    let class: String = r.get(0)?;
                    Ok(KnownIncident {
                        class: StatusClass::parse(&class).unwrap_or(StatusClass::Actual),
                        trust: Trust::from_rank(r.get(1)?),
                        event_type: r.get(2)?,
                    })
                })
                .optional()
            },
        );
        self.known(found)
    }
}

impl Reader {
    /// What a lookup found; a failed read is remembered (see [`Reader::read_failed`]) and
    /// reads as nothing found.
    fn known<T>(&self, found: rusqlite::Result<Option<T>>) -> Option<T> {
        found.unwrap_or_else(|e| {
            tracing::warn!(error = %e, "cannot read the store to place a message in its incident");
            self.failed.store(true, std::sync::atomic::Ordering::Relaxed);
            None
        })
    }

    /// Whether a lookup failed since the last call: the message it was for must not be
    /// taken on what could not be read (it is left to the broker, like a failed write).
    pub fn read_failed(&self) -> bool {
        self.failed.swap(false, std::sync::atomic::Ordering::Relaxed)
    }
}

fn known_message(r: &rusqlite::Row<'_>) -> rusqlite::Result<KnownMessage> {
    let status: String = r.get(1)?;
    Ok(KnownMessage {
        incident_key: r.get(0)?,
        // An unreadable status is treated as practice: it can then touch no real incident.
        class: Status::parse(&status).map_or(StatusClass::Practice, StatusClass::of),
        trust: Trust::from_rank(r.get(2)?),
        event_json: r.get(3)?,
    })
}

/// One delivery with its event.
fn read_job(conn: &Connection, delivery_id: i64) -> rusqlite::Result<Option<Job>> {
    conn.prepare_cached(
        "SELECT d.id, d.channel, d.kind, d.state, d.priority, d.text, d.idem_key, d.attempts, d.reply_to,
                COALESCE(d.queued_at, d.created_at), e.id, e.incident_key, e.event_type, e.msg_type, e.status, e.revision,
                e.sent_at, e.expires_at, e.received_at, e.event_json, d.language, d.parts, d.progress,
                (SELECT a.outcome FROM attempts a WHERE a.delivery_id = d.id ORDER BY a.id DESC LIMIT 1),
                d.audience, d.subject, d.html
         FROM deliveries d JOIN events e ON e.id = d.event_id
         WHERE d.id = ?1",
    )?
    .query_row([delivery_id], |r| {
        let kind: String = r.get(2)?;
        let state: String = r.get(3)?;
        let audience: String = r.get(24)?;
        let parts: Option<String> = r.get(21)?;
        let progress: Option<String> = r.get(22)?;
        Ok(Job {
            progress: Progress::parse(progress.as_deref()),
            last_outcome: r.get(23)?,
            language: r.get(20)?,
            parts: parts.and_then(|p| serde_json::from_str(&p).ok()).unwrap_or_default(),
            delivery_id: r.get(0)?,
            channel: r.get(1)?,
            kind: DeliveryKind::parse(&kind).unwrap_or(DeliveryKind::Post),
            // Unknown reads as finished: it is not sent.
            state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Suppressed),
            audience: Audience::parse(&audience),
            priority: Priority::from_rank(r.get(4)?),
            text: r.get(5)?,
            subject: r.get(25)?,
            html: r.get(26)?,
            idem_key: r.get(6)?,
            attempts: r.get(7)?,
            reply_to: r.get(8)?,
            created_at: r.get(9)?,
            event_id: r.get(10)?,
            incident_key: r.get(11)?,
            event_type: r.get(12)?,
            msg_type: r.get(13)?,
            status: r.get(14)?,
            revision: r.get(15)?,
            sent_at: r.get(16)?,
            expires_at: r.get(17)?,
            received_at: r.get(18)?,
            event_json: r.get(19)?,
        })
    })
    .optional()
}
