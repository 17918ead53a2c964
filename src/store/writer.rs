//! The store writer: one thread, the only write connection.
//!
//! Loop: block for the first request, take whatever else is already waiting (up to a
//! cap), apply them all in one `BEGIN IMMEDIATE … COMMIT`, then answer each in order. No
//! timer: an idle writer commits the next request at once (lowest latency), a busy one
//! commits bigger batches by itself (highest throughput), one fsync per batch.
//!
//! A request the database refuses (a constraint) fails alone: the batch is redone with a
//! savepoint per request (see [`commit`]), and a refused event is recorded as a reject.
//! Any other error (disk full, I/O, lock timeout) fails the whole batch, so a caller is
//! told "committed" only when it is.
//!
//! The writer is fail-stop for ingest: after a failed batch it refuses every ingest
//! request until a probe commits. The ingest task stops acknowledging at the first
//! failure and the broker redelivers everything from there, so without this a message
//! queued behind the failed one could commit ahead of it (an alert's cancel before the
//! alert).

use std::sync::Arc;
use std::time::{Duration, Instant};

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::mpsc;

#[cfg(doc)]
use super::ReplyTarget;
use super::lock::{Mark, Newest};
use super::{
    ApplyError, AttemptEnd, AttemptResult, Begun, IngestOutcome, IngestRecord, MAX_BATCH, NewEvent, NewReject, Op,
    PostRef, Queued, REJECT_HEAD_BYTES, StoreError, incident,
};
use crate::digest::sha256_hex;
use crate::event::MsgType;
use crate::event::Priority;
use crate::health::Health;
use crate::lifecycle::{
    self, Audience, DeliveryKind, DeliveryState, Disposition, Effect, IncidentState, Message, Planned, StatusClass,
};
use crate::metrics::Metrics;
use crate::time::now_ms;

/// How often the store's mark is rewritten at most.
const MARK_EVERY: Duration = Duration::from_secs(1);

pub(super) fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    announce: mpsc::UnboundedSender<Queued>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
    mark: Option<Mark>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    // Set by a failed batch, cleared by a probe that commits.
    let mut failed = false;
    let mut marked = (Instant::now(), Newest::default());
    let mut halted = false;
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        if let Some(at) = batch.iter().position(|op| matches!(op, Op::Halt)) {
            // Whatever came after the halt is never committed; its senders hear Closed.
            batch.truncate(at);
            rx.close();
            halted = true;
        }
        if failed {
            // Refused without touching the store: the broker redelivers them, in order,
            // after the ingest task's probe succeeds and it reconnects.
            for op in batch.extract_if(.., |op| matches!(op, Op::Ingest(..))) {
                let why = "refused: an earlier write failed and the store has not taken a write since".to_owned();
                reply(op, Err(StoreError::Write(why)));
            }
            if batch.is_empty() {
                if halted {
                    break;
                }
                continue;
            }
        }
        let started = Instant::now();
        let size = batch.len();
        let answers = commit(&mut conn, &batch, &announce);
        metrics.store_commit_seconds.observe(started.elapsed().as_secs_f64());
        metrics.store_batch_size.observe(size as f64);
        // Readiness first, then the answers: whoever hears "committed" sees it ready.
        let ok = !answers.iter().any(|a| matches!(a, Err(StoreError::Write(_))));
        if !ok {
            failed = true;
        } else if failed && batch.iter().any(|op| matches!(op, Op::Probe(_))) {
            failed = false;
        }
        if health.store_writable() != ok {
            if ok {
                tracing::info!("store takes writes again");
            }
            health.set_store_writable(ok);
            metrics.store_writable.set(i64::from(ok));
        }
        for (op, answer) in batch.drain(..).zip(answers) {
            reply(op, answer);
        }
        // At most once a second under load, and as soon as the writer goes idle, so the
        // mark trails the store by little.
        if let Some(m) = &mark
            && ok
            && (marked.0.elapsed() >= MARK_EVERY || rx.is_empty())
        {
            update_mark(&conn, m, &mut marked);
        }
        if halted {
            break;
        }
    }
    if let Some(m) = &mark {
        update_mark(&conn, m, &mut marked);
    }
    tracing::debug!("store writer stopped");
}

/// Rewrite the mark if the newest rows changed.
fn update_mark(conn: &Connection, mark: &Mark, marked: &mut (Instant, Newest)) {
    if let Ok(newest) = newest(conn)
        && newest != marked.1
    {
        mark.write(newest);
        *marked = (Instant::now(), newest);
    }
}

/// What one applied request answers once the batch commits.
enum Answer {
    Ingest(IngestOutcome),
    Begun(Vec<Result<Begun, StoreError>>),
    Admin(super::AdminDone),
    Done,
}

/// Apply and commit `batch`; one answer per request, in order.
///
/// The fast path applies every request in one transaction with no savepoints (each would
/// cost a statement journal). Requests check before they write, so one refused as
/// `NotQueued` leaves nothing behind. Only a constraint refusal, which can leave part of a
/// request written, rolls the batch back; it is then redone with a savepoint per request
/// so that the refused one fails alone.
fn commit(
    conn: &mut Connection,
    batch: &[Op],
    announce: &mpsc::UnboundedSender<Queued>,
) -> Vec<Result<Answer, StoreError>> {
    let outcome = match apply_batch(conn, batch, false) {
        Err(BatchError::Refused) => apply_batch(conn, batch, true),
        other => other,
    };
    match outcome {
        Ok((answers, queued)) => {
            for q in queued {
                // The delivery layer may be gone at shutdown; the rows are in the store.
                let _ = announce.send(q);
            }
            answers
        }
        Err(BatchError::Sql(e)) => {
            let message = e.to_string();
            tracing::warn!(error = %message, requests = batch.len(), "store transaction failed; nothing in it was committed");
            batch.iter().map(|_| Err(StoreError::Write(message.clone()))).collect()
        }
        Err(BatchError::Refused) => {
            batch.iter().map(|_| Err(StoreError::Refused("internal: refused twice".to_owned()))).collect()
        }
    }
}

enum BatchError {
    /// A request was refused by a constraint on the fast path: redo with savepoints.
    Refused,
    Sql(rusqlite::Error),
}

impl From<rusqlite::Error> for BatchError {
    fn from(e: rusqlite::Error) -> Self {
        BatchError::Sql(e)
    }
}

type Applied = (Vec<Result<Answer, StoreError>>, Vec<Queued>);

fn apply_batch(conn: &mut Connection, batch: &[Op], savepoints: bool) -> Result<Applied, BatchError> {
    let mut answers: Vec<Result<Answer, StoreError>> = Vec::with_capacity(batch.len());
    let mut queued = Vec::new();
    let mut tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    for op in batch {
        let mut announced = Vec::new();
        if !savepoints {
            match apply(&tx, op, &mut announced) {
                Ok(a) => {
                    queued.append(&mut announced);
                    answers.push(Ok(a));
                }
                Err(ApplyError::NotQueued(id)) => answers.push(Err(StoreError::NotQueued(id))),
                Err(ApplyError::Denied(e)) => answers.push(Err(e)),
                Err(ApplyError::Refused(_)) => return Err(BatchError::Refused),
                Err(ApplyError::Sql(e)) => return Err(BatchError::Sql(e)),
            }
            continue;
        }
        let sp = tx.savepoint()?;
        match apply(&sp, op, &mut announced) {
            Ok(a) => {
                sp.commit()?;
                queued.append(&mut announced);
                answers.push(Ok(a));
            }
            Err(ApplyError::Refused(msg)) => {
                drop(sp);
                answers.push(refused(&mut tx, op, msg)?);
            }
            Err(ApplyError::NotQueued(id)) => {
                drop(sp);
                answers.push(Err(StoreError::NotQueued(id)));
            }
            Err(ApplyError::Denied(e)) => {
                drop(sp);
                answers.push(Err(e));
            }
            Err(ApplyError::Sql(e)) => return Err(BatchError::Sql(e)),
        }
    }
    tx.commit()?;
    Ok((answers, queued))
}

/// A request the database refused. An event is recorded as a reject in its place, so its
/// message is acknowledged in order rather than redelivered and refused forever.
fn refused(tx: &mut rusqlite::Transaction<'_>, op: &Op, msg: String) -> rusqlite::Result<Result<Answer, StoreError>> {
    let Op::Ingest(record, _) = op else { return Ok(Err(StoreError::Refused(msg))) };
    let IngestRecord::Event(e) = record.as_ref() else { return Ok(Err(StoreError::Refused(msg))) };
    tracing::error!(event = %e.dedupe_key, error = %msg, "the store refused an event; recorded as a reject");
    let reject = NewReject {
        received_at: e.received_at,
        topic: e.topic.clone(),
        format: Some(e.format),
        kind: "store_refused",
        reason: format!("the store refused the event: {msg}"),
        payload: e.payload.clone(),
    };
    let sp = tx.savepoint()?;
    match insert_reject(&sp, &reject) {
        Ok(id) => {
            sp.commit()?;
            Ok(Ok(Answer::Ingest(IngestOutcome::Rejected { reject_id: id })))
        }
        Err(ApplyError::Sql(e)) => Err(e),
        Err(_) => Ok(Err(StoreError::Refused(msg))),
    }
}

fn reply(op: Op, answer: Result<Answer, StoreError>) {
    // A caller that went away (shutdown) no longer needs its answer.
    match op {
        Op::Ingest(_, r) => {
            let _ = r.send(answer.and_then(|a| match a {
                Answer::Ingest(o) => Ok(o),
                _ => Err(StoreError::Refused("internal: wrong answer".to_owned())),
            }));
        }
        Op::BeginAttempts(_, reply) => {
            let _ = reply.send(answer.and_then(|a| match a {
                Answer::Begun(b) => Ok(b),
                _ => Err(StoreError::Refused("internal: wrong answer".to_owned())),
            }));
        }
        Op::Admin(_, reply) => {
            let _ = reply.send(answer.and_then(|a| match a {
                Answer::Admin(done) => Ok(done),
                _ => Err(StoreError::Refused("internal: wrong answer".to_owned())),
            }));
        }
        Op::FinishAttempt { reply, .. }
        | Op::Media(_, reply)
        | Op::SaveScratch { reply, .. }
        | Op::Close { reply, .. }
        | Op::Probe(reply) => {
            let _ = reply.send(answer.map(|_| ()));
        }
        Op::Halt => {}
    }
}

fn apply(conn: &Connection, op: &Op, announced: &mut Vec<Queued>) -> Result<Answer, ApplyError> {
    let now = now_ms();
    match op {
        Op::Ingest(record, _) => match record.as_ref() {
            IngestRecord::Event(e) => ingest_event(conn, e, now, announced).map(Answer::Ingest),
            IngestRecord::Reject(r) => {
                insert_reject(conn, r).map(|id| Answer::Ingest(IngestOutcome::Rejected { reject_id: id }))
            }
        },
        Op::BeginAttempts(begins, _) => {
            let mut answers = Vec::with_capacity(begins.len());
            for b in begins {
                answers.push(match begin_attempt(conn, b, now) {
                    Ok(begun) => Ok(begun),
                    // Checked before anything was written: this one alone did not begin.
                    Err(ApplyError::NotQueued(id)) => Err(StoreError::NotQueued(id)),
                    Err(ApplyError::Denied(e)) => Err(e),
                    Err(e) => return Err(e),
                });
            }
            Ok(Answer::Begun(answers))
        }
        Op::FinishAttempt { attempt_id, delivery_id, finished_at, result, .. } => {
            finish_attempt(conn, *attempt_id, *delivery_id, *finished_at, result)?;
            Ok(Answer::Done)
        }
        Op::SaveScratch { delivery_id, key, value, .. } => {
            // `key` was checked to be a plain word, so it is safe inside the JSON path.
            let changed = conn
                .prepare_cached(
                    "UPDATE deliveries SET progress = json_set(COALESCE(progress, '{}'), '$.scratch.\"' || ?2 || '\"', ?3)
                     WHERE id = ?1",
                )?
                .execute(params![delivery_id, key, value])?;
            if changed == 0 {
                return Err(ApplyError::NotQueued(*delivery_id));
            }
            Ok(Answer::Done)
        }
        Op::Close { delivery_id, closing, reason, .. } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE deliveries SET state = ?2, reason = ?3, updated_at = ?4
                     WHERE id = ?1 AND state IN ('queued', 'in_flight')",
                )?
                .execute(params![delivery_id, closing.as_str(), reason, now])?;
            if changed == 0 {
                return Err(ApplyError::NotQueued(*delivery_id));
            }
            Ok(Answer::Done)
        }
        Op::Admin(op, _) => super::operator_writes::apply(conn, op, now, announced).map(Answer::Admin),
        Op::Media(op, _) => {
            media(conn, op, now)?;
            Ok(Answer::Done)
        }
        Op::Halt => Ok(Answer::Done),
        Op::Probe(_) => {
            conn.prepare_cached(
                "INSERT INTO probe (id, at) VALUES (1, ?1) ON CONFLICT (id) DO UPDATE SET at = excluded.at",
            )?
            .execute([now])?;
            Ok(Answer::Done)
        }
    }
}

fn finish_attempt(
    conn: &Connection,
    attempt_id: i64,
    delivery_id: i64,
    finished_at: i64,
    r: &AttemptResult,
) -> Result<(), ApplyError> {
    let changed = match &r.end {
        AttemptEnd::Step { post, done, posted, notes } => {
            let posted = serde_json::to_string(posted).unwrap_or_else(|_| "[]".to_owned());
            let notes = serde_json::to_string(notes).unwrap_or_else(|_| "[]".to_owned());
            let (id, url, data) = post_columns(post.as_ref());
            // Withdrawn while in flight (a cancel or a newer revision came in): the rest of
            // the thread stops here, and what went out is the post on record.
            conn.prepare_cached(
                "UPDATE deliveries SET
                    state = CASE WHEN withdrawn = 1 THEN 'sent' ELSE 'queued' END,
                    reason = CASE WHEN withdrawn = 1
                                  THEN 'stopped after ' || ?5 || ' steps: a cancel or newer revision arrived' END,
                    attempts = 0, not_before = NULL,
                    post_id = COALESCE(post_id, ?2), post_url = COALESCE(post_url, ?3), post_data = COALESCE(post_data, ?4),
                    progress = json_set(COALESCE(progress, '{}'), '$.done', ?5, '$.posted', json(?6), '$.notes', json(?8)),
                    updated_at = ?7
                 WHERE id = ?1 AND state = 'in_flight'",
            )?
            .execute(params![
                delivery_id,
                id,
                url,
                data,
                i64::try_from(*done).unwrap_or(i64::MAX),
                posted,
                finished_at,
                notes
            ])?
        }
        end => {
            let (state, post, not_before, reason) = match end {
                AttemptEnd::Sent { post, .. } => ("sent", Some(post), None, r.note.as_deref()),
                AttemptEnd::Retry { not_before } => ("queued", None, Some(*not_before), Some(r.detail.as_str())),
                AttemptEnd::Dead { reason } => ("dead", None, None, Some(reason.as_str())),
                AttemptEnd::Step { .. } => unreachable!("handled above"),
            };
            let (post_id, post_url, post_data) = post_columns(post);
            let progress = match end {
                AttemptEnd::Sent { progress: Some(p), .. } => serde_json::to_string(p).ok(),
                _ => None,
            };
            // A retry of a delivery withdrawn while in flight (a cancel or a newer revision
            // came in) is not a retry: it stops here.
            conn.prepare_cached(
                "UPDATE deliveries SET
                    state = CASE WHEN ?2 = 'queued' AND withdrawn = 1 THEN 'suppressed' ELSE ?2 END,
                    post_id = COALESCE(post_id, ?3), post_url = COALESCE(post_url, ?4),
                    post_data = COALESCE(post_data, ?5), not_before = ?6,
                    reason = CASE WHEN ?2 = 'queued' AND withdrawn = 1
                                  THEN 'withdrawn while in flight: a cancel or newer revision arrived' ELSE ?7 END,
                    progress = CASE WHEN ?8 IS NULL THEN progress
                                    ELSE json_set(?8, '$.scratch', json(COALESCE(progress ->> '$.scratch', '{}'))) END,
                    updated_at = ?9
                 WHERE id = ?1 AND state = 'in_flight'",
            )?
            .execute(params![
                delivery_id,
                state,
                post_id,
                post_url,
                post_data,
                not_before,
                reason,
                progress,
                finished_at
            ])?
        }
    };
    if changed == 0 {
        return Err(ApplyError::NotQueued(delivery_id));
    }
    conn.prepare_cached(
        "UPDATE attempts SET finished_at = ?2, http_status = ?3, outcome = ?4, detail = ?5 WHERE id = ?1",
    )?
    .execute(params![attempt_id, finished_at, r.http_status, r.outcome, r.detail])?;
    Ok(())
}

fn media(conn: &Connection, op: &super::MediaOp, now: i64) -> Result<(), ApplyError> {
    use super::MediaOp;
    match op {
        MediaOp::Original { event_id, idx, source, image } => {
            let (mime, sha, bytes, error) = match image {
                Ok((mime, bytes)) => (Some(mime.as_str()), Some(sha256_hex(bytes)), Some(&bytes[..]), None),
                Err(e) => (None, None, None, Some(e.as_str())),
            };
            conn.prepare_cached(
                "INSERT INTO media (event_id, idx, source, fetched_at, mime, sha256, bytes, error)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) ON CONFLICT (event_id, idx) DO NOTHING",
            )?
            .execute(params![
                event_id,
                i64::try_from(*idx).unwrap_or(i64::MAX),
                source,
                now,
                mime,
                sha,
                bytes,
                error
            ])?;
        }
        MediaOp::Published { name, url, event_id } => {
            conn.prepare_cached(
                "INSERT INTO published (name, url, event_id, published_at) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (name) DO NOTHING",
            )?
            .execute(params![name, url, event_id, now])?;
        }
        MediaOp::Unpublished { name } => {
            conn.prepare_cached("UPDATE published SET removed_at = ?2 WHERE name = ?1")?.execute(params![name, now])?;
        }
        MediaOp::Work { event_id, idx, bytes } => {
            conn.prepare_cached("UPDATE media SET work = ?3 WHERE event_id = ?1 AND idx = ?2")?.execute(params![
                event_id,
                i64::try_from(*idx).unwrap_or(i64::MAX),
                &bytes[..]
            ])?;
        }
    }
    Ok(())
}

/// A post as the three `post_*` columns.
fn post_columns(post: Option<&PostRef>) -> (Option<&str>, Option<&str>, Option<&str>) {
    post.map_or((None, None, None), |p| (p.id.as_deref(), p.url.as_deref(), p.data.as_deref()))
}

fn insert_reject(conn: &Connection, r: &NewReject) -> Result<i64, ApplyError> {
    let head = &r.payload[..r.payload.len().min(REJECT_HEAD_BYTES)];
    conn.prepare_cached(
        "INSERT INTO rejects (received_at, topic, format, kind, reason, payload_len, payload_sha256, payload_head)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        r.received_at,
        r.topic,
        r.format,
        r.kind,
        r.reason,
        i64::try_from(r.payload.len()).unwrap_or(i64::MAX),
        sha256_hex(&r.payload),
        head
    ])?;
    Ok(conn.last_insert_rowid())
}

/// The newest event and attempt ids (for the store's mark).
pub(super) fn newest(conn: &Connection) -> rusqlite::Result<Newest> {
    conn.prepare_cached(
        "SELECT COALESCE((SELECT MAX(id) FROM events), 0), COALESCE((SELECT MAX(id) FROM attempts), 0)",
    )?
    .query_row([], |r| Ok(Newest { events: r.get(0)?, attempts: r.get(1)? }))
}

/// The effect `e` has if it opens its incident (most do), recorded with the row so that
/// the common case needs no second write of it.
fn guessed_effect(e: &NewEvent) -> Effect {
    if e.disposition == Disposition::Ignored {
        Effect::None
    } else if e.msg_type == MsgType::Cancel || e.lifecycle.snapshot.as_ref().is_some_and(|s| s.closed) {
        Effect::Cancel
    } else {
        Effect::Post
    }
}

/// Insert `e` under dedupe key `key`; `None` when the key is taken.
fn insert_event(conn: &Connection, e: &NewEvent, key: &str) -> Result<Option<i64>, ApplyError> {
    let digest = e.lifecycle.snapshot.as_ref().map(|s| s.digest.as_str());
    Ok(conn
        .prepare_cached(
            "INSERT INTO events (dedupe_key, incident_key, revision, format, event_type, msg_type, status, priority,
                                 disposition, topic, payload, payload_sha256, event_json, headline, sent_at, expires_at,
                                 received_at, message_key, digest, trust, ident, silent, effect)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19, ?20, ?21,
                     ?22, ?23)
             ON CONFLICT (dedupe_key) DO NOTHING
             RETURNING id",
        )?
        .query_row(
            params![
                key,
                e.incident_key,
                e.revision.and_then(|r| i64::try_from(r).ok()),
                e.format,
                e.event_type,
                e.msg_type.as_str(),
                e.status.as_str(),
                e.priority.rank(),
                e.disposition.as_str(),
                e.topic,
                &e.payload[..],
                e.payload_sha256,
                e.event_json,
                e.headline,
                e.sent_at,
                e.expires_at,
                e.received_at,
                e.lifecycle.message_key,
                digest,
                e.trust.rank(),
                e.ident,
                e.lifecycle.silent,
                guessed_effect(e).as_str()
            ],
            |r| r.get(0),
        )
        .optional()?)
}

/// Record an event and let the lifecycle decide, on its incident's committed state, what
/// it does there.
fn ingest_event(
    conn: &Connection,
    e: &NewEvent,
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<IngestOutcome, ApplyError> {
    // A key already taken by a less trusted source's message (an unsigned message sent
    // ahead with the signed one's id and revision) does not stop the more trusted one:
    // it is recorded under the key marked with its trust.
    let mut key = e.dedupe_key.clone();
    let event_id = loop {
        if let Some(id) = insert_event(conn, e, &key)? {
            break id;
        }
        let (event_id, sha, trust): (i64, String, i64) = conn
            .prepare_cached("SELECT id, payload_sha256, trust FROM events WHERE dedupe_key = ?1")?
            .query_row([&key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if trust < e.trust.rank() && key == e.dedupe_key {
            key = format!("{}#t{}", e.dedupe_key, e.trust.rank());
            continue;
        }
        let same_payload = sha == e.payload_sha256;
        if !same_payload {
            // A different message under a key already taken (an id and revision reused):
            // not posted, but recorded, so every acknowledged message is on file.
            insert_reject(
                conn,
                &NewReject {
                    received_at: e.received_at,
                    topic: e.topic.clone(),
                    format: Some(e.format),
                    kind: "conflicting_duplicate",
                    reason: format!(
                        "a different message with the dedupe key of event {event_id} ({key}): send a new revision to change an alert"
                    ),
                    payload: e.payload.clone(),
                },
            )?;
        }
        return Ok(IngestOutcome::Duplicate { event_id, same_payload });
    };
    // Recorded, nothing to do: an Ack, an EIDO without an incident, an unmapped CAD type.
    if e.disposition == Disposition::Ignored {
        return Ok(IngestOutcome::Accepted { event_id, disposition: e.disposition, deliveries: 0, suppressed: 0 });
    }
    if !e.lifecycle.references.is_empty() {
        let mut stmt =
            conn.prepare_cached("INSERT OR IGNORE INTO event_refs (message_key, event_id) VALUES (?1, ?2)")?;
        for r in &e.lifecycle.references {
            stmt.execute(params![r, event_id])?;
        }
    }
    let incident = incident::load(conn, &e.incident_key, event_id)?;
    let class = StatusClass::of(e.status);
    // A message of its incident that took effect, from a source at least as trusted,
    // names this one as earlier: this one arrived late.
    let older_than_known = match &e.lifecycle.message_key {
        Some(key) if incident.is_some() => conn
            .prepare_cached(
                "SELECT EXISTS (SELECT 1 FROM event_refs r JOIN events l ON l.id = r.event_id
                                WHERE r.message_key = ?1 AND l.incident_key = ?2 AND l.effect != 'none'
                                  AND l.trust >= ?3 AND l.id != ?4)",
            )?
            .query_row(params![key, e.incident_key, e.trust.rank(), event_id], |r| r.get(0))?,
        _ => false,
    };
    let planned: Vec<Planned> = e
        .deliveries
        .iter()
        .map(|d| Planned { channel: d.channel.clone(), kind: d.kind, language: d.language.clone() })
        .collect();
    let msg = Message {
        event_id,
        class,
        trust: e.trust,
        msg_type: e.msg_type,
        revision: e.revision.and_then(|r| i64::try_from(r).ok()),
        snapshot: e.lifecycle.snapshot.as_ref(),
        assessed: e.disposition,
        older_than_known,
        hold: e.hold,
        planned: &planned,
    };
    let verdict = lifecycle::on_message(&msg, incident.as_ref());
    let opener = incident.is_none().then_some(incident::Opener { class, trust: e.trust, event_type: &e.event_type });
    let recorded = (e.disposition, guessed_effect(e));
    let applied =
        incident::apply(conn, event_id, recorded, &e.incident_key, opener, &verdict, &e.deliveries, now, announced)?;
    Ok(IngestOutcome::Accepted {
        event_id,
        disposition: verdict.disposition,
        deliveries: applied.created,
        suppressed: applied.stopped,
    })
}

/// Begin an attempt if, in this transaction, nothing forbids it (see
/// [`lifecycle::may_begin`]).
fn begin_attempt(conn: &Connection, b: &super::BeginRequest, now: i64) -> Result<Begun, ApplyError> {
    type Row = (String, String, i64, String, String, Option<i64>, String);
    let row: Option<Row> = conn
        .prepare_cached(
            "SELECT d.state, d.kind, d.priority, d.audience, e.event_type, e.superseded_by, COALESCE(i.state, 'open')
             FROM deliveries d JOIN events e ON e.id = d.event_id LEFT JOIN incidents i ON i.key = e.incident_key
             WHERE d.id = ?1",
        )?
        .query_row([b.delivery_id], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
        })
        .optional()?;
    let Some((state, kind, priority, audience, event_type, superseded_by, incident)) = row else {
        return Err(ApplyError::NotQueued(b.delivery_id));
    };
    if state != DeliveryState::Queued.as_str() {
        return Err(ApplyError::NotQueued(b.delivery_id));
    }
    let scopes = lifecycle::pause_scopes(&b.channel, b.public, &event_type);
    let paused: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM pauses WHERE scope IN (?1, ?2, ?3))")?
        .query_row(params![scopes.first(), scopes.get(1), scopes.get(2)], |r| r.get(0))?;
    let facts = lifecycle::BeginFacts {
        kind: DeliveryKind::parse(&kind).unwrap_or(DeliveryKind::Post),
        priority: Priority::from_rank(priority),
        audience: Audience::parse(&audience),
        incident: IncidentState::parse(&incident),
        superseded_by,
        channel_public: b.public,
        paused,
    };
    match lifecycle::may_begin(&facts) {
        lifecycle::Begin::Paused => Ok(Begun::Paused),
        lifecycle::Begin::Close(why) => {
            conn.prepare_cached(
                "UPDATE deliveries SET state = 'suppressed', reason = ?2, updated_at = ?3 WHERE id = ?1",
            )?
            .execute(params![b.delivery_id, why, now])?;
            Ok(Begun::Closed(why))
        }
        lifecycle::Begin::Go => {
            conn.prepare_cached(
                "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, updated_at = ?2 WHERE id = ?1",
            )?
            .execute(params![b.delivery_id, b.started_at])?;
            conn.prepare_cached(
                "INSERT INTO attempts (delivery_id, channel, started_at, resolve_data, after_event, after_audit)
                 VALUES (?1, ?2, ?3, ?4, (SELECT MAX(id) FROM events), (SELECT MAX(id) FROM audit))",
            )?
            .execute(params![b.delivery_id, b.channel, b.started_at, b.resolve_data])?;
            Ok(Begun::Attempt(conn.last_insert_rowid()))
        }
    }
}
