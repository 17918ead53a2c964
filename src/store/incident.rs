//! An incident in the store: its snapshot loaded for the lifecycle core, and the core's
//! verdict applied, in the writer's transaction. The rules themselves are in
//! [`crate::lifecycle`]; this file only reads rows into its types and writes its verdicts
//! back.

use rusqlite::{Connection, OptionalExtension, params};

use super::{ApplyError, NewDelivery, Queued};
use crate::lifecycle::{
    DeliveryKind, DeliveryState, Disposition, Effect, Incident, IncidentState, PriorDelivery, PriorEvent, StatusClass,
    StopHow, Trust, Verdict,
};

/// The incident `key` without event `except` (the one being recorded), if it was opened.
pub(super) fn load(conn: &Connection, key: &str, except: i64) -> rusqlite::Result<Option<Incident>> {
    let head: Option<(String, i64, String, String)> = conn
        .prepare_cached("SELECT class, trust, event_type, state FROM incidents WHERE key = ?1")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .optional()?;
    let Some((class, trust, event_type, state)) = head else { return Ok(None) };
    let events: Vec<PriorEvent> = conn
        .prepare_cached(
            "SELECT id, revision, effect, digest, superseded_by IS NOT NULL, trust FROM events WHERE incident_key = ?1",
        )?
        .query_map([key], |r| {
            Ok(PriorEvent {
                id: r.get(0)?,
                revision: r.get(1)?,
                effect: Effect::parse(&r.get::<_, String>(2)?),
                trust: Trust::from_rank(r.get(5)?),
                digest: r.get(3)?,
                superseded: r.get(4)?,
            })
        })?
        .filter(|e| e.as_ref().map_or(true, |e| e.id != except))
        .collect::<rusqlite::Result<_>>()?;
    let mut deliveries = Vec::new();
    let mut stmt = conn.prepare_cached(
        "SELECT id, channel, language, kind, state, post_id IS NOT NULL,
                post_id IS NOT NULL
                OR EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id AND a.outcome = 'unknown')
         FROM deliveries d WHERE event_id = ?1",
    )?;
    for e in events.iter().filter(|e| e.effect != Effect::None) {
        let rows = stmt.query_map([e.id], |r| {
            let kind: String = r.get(3)?;
            let state: String = r.get(4)?;
            Ok(PriorDelivery {
                id: r.get(0)?,
                event_id: e.id,
                channel: r.get(1)?,
                language: r.get(2)?,
                kind: DeliveryKind::parse(&kind).unwrap_or(DeliveryKind::Post),
                // An unknown state is treated as finished: nothing stops or replies to it.
                state: DeliveryState::parse(&state).unwrap_or(DeliveryState::Suppressed),
                posted: r.get(5)?,
                maybe_posted: r.get(6)?,
            })
        })?;
        for d in rows {
            deliveries.push(d?);
        }
    }
    deliveries.sort_by_key(|d| d.id);
    Ok(Some(Incident {
        class: StatusClass::parse(&class).unwrap_or(StatusClass::Actual),
        trust: Trust::from_rank(trust),
        event_type,
        state: IncidentState::parse(&state),
        events,
        deliveries,
    }))
}

/// How an incident was opened, for the event that opens it.
pub(super) struct Opener<'a> {
    pub class: StatusClass,
    pub trust: Trust,
    pub event_type: &'a str,
}

/// What applying a verdict did.
pub(super) struct Applied {
    pub created: usize,
    pub stopped: usize,
}

/// Apply `verdict` for event `event_id` of incident `key`: open or close the incident,
/// mark what it supersedes, stop what it stops and create its deliveries (from
/// `deliveries`, by index). `opener`: the incident is new and this event opens it.
/// `recorded`: the disposition and effect the event row has now (rewritten only if the
/// verdict differs, which for a new alert it does not).
#[expect(clippy::too_many_arguments, reason = "one transaction's worth of context")]
pub(super) fn apply(
    conn: &Connection,
    event_id: i64,
    recorded: (Disposition, Effect),
    key: &str,
    opener: Option<Opener<'_>>,
    verdict: &Verdict,
    deliveries: &[NewDelivery],
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<Applied, ApplyError> {
    if recorded != (verdict.disposition, verdict.effect) {
        conn.prepare_cached("UPDATE events SET disposition = ?2, effect = ?3 WHERE id = ?1")?.execute(params![
            event_id,
            verdict.disposition.as_str(),
            verdict.effect.as_str()
        ])?;
    }
    if let Some(o) = opener.filter(|_| verdict.effect != Effect::None) {
        let state = verdict.closes.unwrap_or(IncidentState::Open);
        conn.prepare_cached(
            "INSERT INTO incidents (key, class, trust, event_type, state, opened_by, closed_by)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, CASE WHEN ?5 = 'open' THEN NULL ELSE ?6 END)",
        )?
        .execute(params![key, o.class.as_str(), o.trust.rank(), o.event_type, state.as_str(), event_id])?;
    } else if let Some(state) = verdict.closes {
        // Reopened (taken over by a more trusted source): nothing closes it any more.
        let closer = (state != IncidentState::Open).then_some(event_id);
        conn.prepare_cached("UPDATE incidents SET state = ?2, closed_by = ?3 WHERE key = ?1")?.execute(params![
            key,
            state.as_str(),
            closer
        ])?;
    }
    if let Some(trust) = verdict.trust {
        conn.prepare_cached("UPDATE incidents SET trust = ?2 WHERE key = ?1")?.execute(params![key, trust.rank()])?;
    }
    if !verdict.supersedes.is_empty() {
        let mut stmt =
            conn.prepare_cached("UPDATE events SET superseded_by = ?2 WHERE id = ?1 AND superseded_by IS NULL")?;
        for id in &verdict.supersedes {
            stmt.execute(params![id, event_id])?;
        }
    }
    let mut stopped = 0;
    for s in &verdict.stop {
        stopped += match s.how {
            StopHow::Suppress => conn
                .prepare_cached(
                    "UPDATE deliveries SET state = 'suppressed', reason = ?2, closed_by = ?3, updated_at = ?4
                     WHERE id = ?1 AND state IN ('queued', 'held')",
                )?
                .execute(params![s.delivery, verdict.reason, event_id, now])?,
            StopHow::KeepPartial => conn
                .prepare_cached(
                    "UPDATE deliveries SET state = 'sent', reason = 'stopped part way: ' || ?2, closed_by = ?3,
                                           updated_at = ?4
                     WHERE id = ?1 AND state IN ('queued', 'held')",
                )?
                .execute(params![s.delivery, verdict.reason, event_id, now])?,
            StopHow::Withdraw => {
                conn.prepare_cached(
                    "UPDATE deliveries SET withdrawn = 1, closed_by = ?2, updated_at = ?3
                     WHERE id = ?1 AND state = 'in_flight'",
                )?
                .execute(params![s.delivery, event_id, now])?;
                0
            }
        };
    }
    let mut created = 0;
    for c in &verdict.create {
        let Some(d) = deliveries.get(c.index) else { continue };
        let standin;
        let d = match &c.language {
            // Another language's text for this one: its own key, so a receiver that
            // drops repeats does not drop it.
            Some(language) => {
                standin = NewDelivery {
                    language: language.clone(),
                    idem_key: format!("{}-{language}", d.idem_key),
                    ..d.clone()
                };
                &standin
            }
            None => d,
        };
        let id = insert_delivery(conn, event_id, d, c.state, c.reply_to, now)?;
        // A held delivery waits for approval; the workers hear of it only then.
        if c.state == DeliveryState::Queued {
            announced.push(Queued { id, channel: d.channel.clone(), priority: d.priority, reply_to: c.reply_to });
        }
        created += 1;
    }
    Ok(Applied { created, stopped })
}

/// Insert one delivery of event `event_id`; returns its id.
pub(super) fn insert_delivery(
    conn: &Connection,
    event_id: i64,
    d: &NewDelivery,
    state: DeliveryState,
    reply_to: Option<i64>,
    now: i64,
) -> rusqlite::Result<i64> {
    conn.prepare_cached(
        "INSERT INTO deliveries (event_id, channel, kind, language, state, priority, text, parts, render_note,
                                 reply_to, idem_key, audience, created_at, updated_at, queued_at, subject, html)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?13, CASE WHEN ?5 = 'queued' THEN ?13 END, ?14, ?15)",
    )?
    .execute(params![
        event_id,
        d.channel,
        d.kind.as_str(),
        d.language,
        state.as_str(),
        d.priority.rank(),
        d.text,
        (!d.parts.is_empty()).then(|| serde_json::to_string(&d.parts).unwrap_or_default()),
        d.render_note,
        reply_to,
        d.idem_key,
        d.audience.as_str(),
        now,
        d.subject,
        d.html
    ])?;
    Ok(conn.last_insert_rowid())
}
