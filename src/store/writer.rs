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

use std::sync::Arc;
use std::time::Instant;

use rusqlite::{Connection, OptionalExtension, TransactionBehavior, params};
use tokio::sync::mpsc;

#[cfg(doc)]
use super::ReplyTarget;
use super::{
    AttemptEnd, AttemptResult, IngestOutcome, IngestRecord, MAX_BATCH, NewEvent, NewReject, Op, PostRef, Queued,
    REJECT_HEAD_BYTES, StoreError,
};
use crate::health::Health;
use crate::metrics::Metrics;
use crate::policy::sha256_hex;
use crate::route::DeliveryKind;
use crate::time::now_ms;

pub(super) fn run(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Op>,
    announce: mpsc::UnboundedSender<Queued>,
    health: Arc<Health>,
    metrics: Arc<Metrics>,
) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        batch.push(first);
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(op) => batch.push(op),
                Err(_) => break,
            }
        }
        let started = Instant::now();
        let size = batch.len();
        let answers = commit(&mut conn, &batch, &announce);
        metrics.store_commit_seconds.observe(started.elapsed().as_secs_f64());
        metrics.store_batch_size.observe(size as f64);
        // Readiness first, then the answers: whoever hears "committed" sees it ready.
        let ok = !answers.iter().any(|a| matches!(a, Err(StoreError::Write(_))));
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
    }
    tracing::debug!("store writer stopped");
}

/// What one applied request answers once the batch commits.
enum Answer {
    Ingest(IngestOutcome),
    Attempt(i64),
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
        Op::BeginAttempt { reply, .. } => {
            let _ = reply.send(answer.and_then(|a| match a {
                Answer::Attempt(id) => Ok(id),
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
    }
}

pub(super) enum ApplyError {
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

fn apply(conn: &Connection, op: &Op, announced: &mut Vec<Queued>) -> Result<Answer, ApplyError> {
    let now = now_ms();
    match op {
        Op::Ingest(record, _) => match record.as_ref() {
            IngestRecord::Event(e) => ingest_event(conn, e, now, announced).map(Answer::Ingest),
            IngestRecord::Reject(r) => {
                insert_reject(conn, r).map(|id| Answer::Ingest(IngestOutcome::Rejected { reject_id: id }))
            }
        },
        Op::BeginAttempt { delivery_id, channel, started_at, resolve_data, .. } => {
            let changed = conn
                .prepare_cached(
                    "UPDATE deliveries SET state = 'in_flight', attempts = attempts + 1, updated_at = ?2
                     WHERE id = ?1 AND state = 'queued'",
                )?
                .execute(params![delivery_id, started_at])?;
            if changed == 0 {
                return Err(ApplyError::NotQueued(*delivery_id));
            }
            conn.prepare_cached(
                "INSERT INTO attempts (delivery_id, channel, started_at, resolve_data) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![delivery_id, channel, started_at, resolve_data])?;
            Ok(Answer::Attempt(conn.last_insert_rowid()))
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
        Op::Admin(op, _) => super::admin::apply(conn, op, now, announced).map(Answer::Admin),
        Op::Media(op, _) => {
            media(conn, op, now)?;
            Ok(Answer::Done)
        }
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

/// An earlier delivery of the same incident on one channel.
pub(super) struct Prior {
    pub id: i64,
    pub kind: String,
    pub state: String,
    /// It may have gone out though not `sent` (see [`ReplyTarget::maybe_posted`]).
    pub maybe_posted: bool,
}

fn ingest_event(
    conn: &Connection,
    e: &NewEvent,
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<IngestOutcome, ApplyError> {
    let digest = e.lifecycle.snapshot.as_ref().map(|s| s.digest.as_str());
    let inserted: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO events (dedupe_key, incident_key, revision, format, event_type, msg_type, status, priority,
                                 disposition, topic, payload, payload_sha256, event_json, headline, sent_at, expires_at,
                                 received_at, message_key, digest)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17, ?18, ?19)
             ON CONFLICT (dedupe_key) DO NOTHING
             RETURNING id",
        )?
        .query_row(
            params![
                e.dedupe_key,
                e.incident_key,
                e.revision.and_then(|r| i64::try_from(r).ok()),
                e.format,
                e.event_type,
                e.msg_type,
                e.status,
                e.priority.rank(),
                e.disposition,
                e.topic,
                &e.payload[..],
                e.payload_sha256,
                e.event_json,
                e.headline,
                e.sent_at,
                e.expires_at,
                e.received_at,
                e.lifecycle.message_key,
                digest
            ],
            |r| r.get(0),
        )
        .optional()?;
    let Some(event_id) = inserted else {
        let (event_id, sha): (i64, String) = conn
            .prepare_cached("SELECT id, payload_sha256 FROM events WHERE dedupe_key = ?1")?
            .query_row([&e.dedupe_key], |r| Ok((r.get(0)?, r.get(1)?)))?;
        return Ok(IngestOutcome::Duplicate { event_id, same_payload: sha == e.payload_sha256 });
    };
    // Recorded, nothing to do: an Ack, an EIDO without an incident, an unmapped CAD type.
    if e.disposition == "ignored" {
        return Ok(IngestOutcome::Accepted { event_id, deliveries: 0, suppressed: 0 });
    }

    // A CAP message names the messages it updates or cancels: their incident is its own.
    let mut incident_key = e.incident_key.clone();
    if !e.lifecycle.references.is_empty() {
        let mut stmt = conn.prepare_cached("SELECT incident_key FROM events WHERE message_key = ?1")?;
        for reference in &e.lifecycle.references {
            if let Some(found) = stmt.query_row([reference], |r| r.get::<_, String>(0)).optional()? {
                incident_key = found;
                break;
            }
        }
        if incident_key != e.incident_key {
            conn.prepare_cached("UPDATE events SET incident_key = ?2 WHERE id = ?1")?
                .execute(params![event_id, incident_key])?;
        }
    }

    // The incident's earlier events, usually none. (Looked up once, by equality only, and
    // compared here: a MAX() or a join with a bound value makes SQLite re-prepare the
    // statement on every call.)
    let mut retracted = false;
    let earlier: Vec<(i64, Option<i64>, Option<String>)> = conn
        .prepare_cached("SELECT id, revision, digest, msg_type = 'retract' FROM events WHERE incident_key = ?1")?
        .query_map([&incident_key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get::<_, bool>(3)?)))?
        .filter(|row| row.as_ref().map_or(true, |(id, _, _, _)| *id != event_id))
        .map(|row| {
            row.map(|(id, rev, digest, retract)| {
                retracted |= retract;
                (id, rev, digest)
            })
        })
        .collect::<rusqlite::Result<_>>()?;
    // An operator retracted the incident: what comes later of it is recorded, not posted.
    if retracted {
        conn.prepare_cached("UPDATE events SET disposition = 'retracted' WHERE id = ?1")?.execute([event_id])?;
        return Ok(IngestOutcome::Accepted { event_id, deliveries: 0, suppressed: 0 });
    }
    if let Some(rev) = e.revision.and_then(|r| i64::try_from(r).ok())
        && earlier.iter().any(|(_, r, _)| r.is_some_and(|r| r > rev))
    {
        conn.prepare_cached("UPDATE events SET disposition = 'superseded' WHERE id = ?1")?.execute([event_id])?;
        return Ok(IngestOutcome::Superseded { event_id });
    }

    // What the event is on its incident.
    let msg_kind = match e.msg_type {
        "cancel" => DeliveryKind::Cancel,
        "update" => DeliveryKind::Update,
        _ => DeliveryKind::Post,
    };
    let kind = match &e.lifecycle.snapshot {
        // A message says what it is; an update of an incident never seen is a new alert.
        None if msg_kind == DeliveryKind::Update && earlier.is_empty() => DeliveryKind::Post,
        None => msg_kind,
        // A snapshot is compared with the incident's last: new, changed, unchanged, closed.
        Some(s) if earlier.is_empty() => {
            if s.closed {
                // Closed before anything was posted: nothing to say.
                return Ok(IngestOutcome::Accepted { event_id, deliveries: 0, suppressed: 0 });
            }
            DeliveryKind::Post
        }
        Some(s) if s.closed => DeliveryKind::Cancel,
        Some(s) => {
            let last = earlier.iter().max_by_key(|(id, _, _)| *id).and_then(|(_, _, d)| d.as_deref());
            if last == Some(s.digest.as_str()) {
                // No material change: nothing replaces what is queued, nothing is posted.
                conn.prepare_cached("UPDATE events SET disposition = 'unchanged' WHERE id = ?1")?
                    .execute([event_id])?;
                return Ok(IngestOutcome::Accepted { event_id, deliveries: 0, suppressed: 0 });
            }
            DeliveryKind::Update
        }
    };

    // Whatever of this incident has not gone out is stale now, on every channel: a newer
    // revision replaces it, a cancel stops it. What is in flight is withdrawn: if its
    // attempt fails, it is suppressed instead of retried. What went out is replied to.
    let reason = if kind == DeliveryKind::Cancel {
        format!("cancelled by event {event_id}")
    } else {
        format!("superseded by event {event_id}")
    };
    let mut suppressed = 0;
    for (earlier_id, _, _) in &earlier {
        suppressed += withdraw(conn, *earlier_id, &reason, now)?;
    }
    if e.disposition != "deliver" {
        return Ok(IngestOutcome::Accepted { event_id, deliveries: 0, suppressed });
    }

    let mut created = 0;
    for d in e.deliveries.iter().filter(|d| d.kind == kind) {
        let priors = if earlier.is_empty() {
            Vec::new()
        } else {
            let ids: Vec<(i64, Option<i64>)> = earlier.iter().map(|(id, r, _)| (*id, *r)).collect();
            priors(conn, &ids, &d.channel, &d.language)?
        };
        // What is or may be out: a cancellation reaches it (a standalone one is better than
        // none where the outcome was never known).
        let out = |p: &&Prior| p.state == "sent" || p.state == "in_flight" || p.maybe_posted;
        let original = priors.iter().filter(out).find(|p| p.kind == "post").or_else(|| priors.iter().find(out));
        if d.kind == DeliveryKind::Cancel && original.is_none() {
            // Nothing of this incident is out on the channel: there is nothing to cancel.
            continue;
        }
        let reply_to = original.map(|p| p.id);
        conn.prepare_cached(
            "INSERT INTO deliveries (event_id, channel, kind, language, state, priority, text, parts, render_note,
                                     reply_to, idem_key, created_at, updated_at, queued_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?12, CASE WHEN ?5 = 'queued' THEN ?12 END)",
        )?
        .execute(params![
            event_id,
            d.channel,
            d.kind.as_str(),
            d.language,
            if e.hold { "held" } else { "queued" },
            d.priority.rank(),
            d.text,
            (!d.parts.is_empty()).then(|| serde_json::to_string(&d.parts).unwrap_or_default()),
            d.render_note,
            reply_to,
            d.idem_key,
            now
        ])?;
        // A held delivery waits for approval; the workers hear of it only then.
        if !e.hold {
            announced.push(Queued {
                id: conn.last_insert_rowid(),
                channel: d.channel.clone(),
                priority: d.priority,
                reply_to,
            });
        }
        created += 1;
    }
    Ok(IngestOutcome::Accepted { event_id, deliveries: created, suppressed })
}

/// Stop what event `event_id` still has to post: queued and held deliveries close with
/// `reason` (as sent when a thread is part way out, so what went out can be replied to
/// and cancelled); one in flight is marked withdrawn and stops after its request.
/// Returns how many were closed.
pub(super) fn withdraw(conn: &Connection, event_id: i64, reason: &str, now: i64) -> rusqlite::Result<usize> {
    let closed = conn
        .prepare_cached(
            "UPDATE deliveries SET
                state = CASE WHEN post_id IS NULL THEN 'suppressed' ELSE 'sent' END,
                reason = CASE WHEN post_id IS NULL THEN ?2 ELSE 'stopped part way: ' || ?2 END,
                updated_at = ?3
             WHERE event_id = ?1 AND state IN ('queued', 'held')",
        )?
        .execute(params![event_id, reason, now])?;
    conn.prepare_cached(
        "UPDATE deliveries SET withdrawn = 1, updated_at = ?2 WHERE event_id = ?1 AND state = 'in_flight'",
    )?
    .execute(params![event_id, now])?;
    Ok(closed)
}

/// Earlier deliveries of the incident (of the `earlier` events) on `channel` in
/// `language`, oldest first: a reply goes to the post in its own language.
pub(super) fn priors(
    conn: &Connection,
    earlier: &[(i64, Option<i64>)],
    channel: &str,
    language: &str,
) -> rusqlite::Result<Vec<Prior>> {
    let mut stmt = conn.prepare_cached(
        "SELECT id, kind, state,
                post_id IS NOT NULL
                OR EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id AND a.outcome = 'unknown')
         FROM deliveries d WHERE event_id = ?1 AND channel = ?2 AND language = ?3",
    )?;
    let mut priors = Vec::new();
    for (event_id, _) in earlier {
        let rows = stmt.query_map(params![event_id, channel, language], |r| {
            Ok(Prior { id: r.get(0)?, kind: r.get(1)?, state: r.get(2)?, maybe_posted: r.get(3)? })
        })?;
        for p in rows {
            priors.push(p?);
        }
    }
    priors.sort_by_key(|p| p.id);
    Ok(priors)
}
