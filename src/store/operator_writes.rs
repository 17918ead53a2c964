//! What operators do to the outbox (approve, reject, retry, pause, retract) and the staff
//! notices the daemon sends, applied by the writer like everything else: each checks
//! before it writes, commits with its audit row, and announces what it queued.

use rusqlite::{Connection, OptionalExtension, params};

use super::{ApplyError, NewDelivery, Queued, StoreError, incident};
use crate::digest::sha256_hex;
use crate::event::Priority;
use crate::lifecycle::{self, DeliveryKind, DeliveryState, IncidentState, Planned};
use crate::time::rfc3339;

/// What a pause covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize)]
#[serde(into = "String")]
pub enum Scope {
    /// Every public channel.
    All,
    Channel(String),
    /// One event type, on public channels.
    Type(String),
}

impl Scope {
    /// `all`, `channel:NAME` or `type:NAME`.
    pub fn parse(s: &str) -> Result<Scope, String> {
        let bad = || format!("{s:?} is not a pause scope: write all, channel:NAME or type:NAME");
        let word = |w: &str| !w.is_empty() && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        match s.split_once(':') {
            None if s == "all" => Ok(Scope::All),
            Some(("channel", n)) if word(n) => Ok(Scope::Channel(n.to_owned())),
            Some(("type", n)) if word(n) => Ok(Scope::Type(n.to_owned())),
            _ => Err(bad()),
        }
    }

    pub fn key(&self) -> String {
        match self {
            Scope::All => "all".to_owned(),
            Scope::Channel(n) => format!("channel:{n}"),
            Scope::Type(n) => format!("type:{n}"),
        }
    }
}

impl From<Scope> for String {
    fn from(s: Scope) -> String {
        s.key()
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.key())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkAction {
    Approve,
    Reject,
}

impl LinkAction {
    pub fn as_str(self) -> &'static str {
        match self {
            LinkAction::Approve => "approve",
            LinkAction::Reject => "reject",
        }
    }
}

/// A one-time approve/reject link; only the token's SHA-256 is stored.
#[derive(Debug, Clone)]
pub struct NewLink {
    pub token_sha256: String,
    pub action: LinkAction,
    pub expires_at: i64,
}

/// A message to staff channels, sent once per `key`.
#[derive(Debug, Clone)]
pub struct NewNotice {
    /// What makes it unique: `held:12`, `late:12`, `credentials:x:2026112114`.
    pub key: String,
    /// The event it is about.
    pub about: Option<i64>,
    pub headline: String,
    pub priority: Priority,
    pub deliveries: Vec<NewDelivery>,
    /// Links for `about`.
    pub links: Vec<NewLink>,
}

#[derive(Debug, Clone)]
pub enum AdminOp {
    Approve {
        event_id: i64,
        actor: String,
    },
    Reject {
        event_id: i64,
        actor: String,
        reason: String,
    },
    /// Queue dead-lettered deliveries of an event again (of one channel, or all).
    Retry {
        event_id: i64,
        channel: Option<String>,
        actor: String,
    },
    Pause {
        scope: Scope,
        actor: String,
        reason: Option<String>,
    },
    Resume {
        scope: Scope,
        actor: String,
    },
    /// Withdraw an incident: whatever of it is not out is stopped, and each channel where
    /// something is (or may be) out gets `deliveries`' text as a reply, ahead of its queue.
    /// `correction`: the new text of a correction (the incident goes on); `None`: a
    /// retraction (later messages of the incident are recorded, not posted).
    Retract {
        event_id: i64,
        actor: String,
        correction: Option<String>,
        deliveries: Vec<NewDelivery>,
    },
    Notice(NewNotice),
    /// A test message on one channel (`bullhorn test-channel`): queued like any delivery,
    /// so the pause, shadow mode and the rate limit apply to it.
    TestMessage {
        delivery: NewDelivery,
        actor: String,
    },
    /// A closed incident's cancellation or retraction for a channel that missed it (see
    /// `Reader::missing_closings`): added to the closing event, if still missing.
    Closing {
        closer: i64,
        reply_to: i64,
        delivery: NewDelivery,
    },
    /// Use a one-time link; `actor` says who (where the request came from).
    UseLink {
        token_sha256: String,
        actor: String,
    },
}

/// What an admin request did.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct AdminDone {
    /// The event it acted on (or created, for a retraction or notice).
    pub event_id: Option<i64>,
    /// Deliveries (or pauses) it changed.
    pub changed: usize,
    pub message: String,
    /// What it queued waits for a pause to be lifted.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub paused: bool,
}

fn denied(e: StoreError) -> ApplyError {
    ApplyError::Denied(e)
}

pub(super) fn apply(
    conn: &Connection,
    op: &AdminOp,
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<AdminDone, ApplyError> {
    match op {
        AdminOp::Approve { event_id, actor } => approve(conn, *event_id, actor, now, announced),
        AdminOp::Reject { event_id, actor, reason } => reject(conn, *event_id, actor, reason, now),
        AdminOp::Retry { event_id, channel, actor } => {
            retry(conn, *event_id, channel.as_deref(), actor, now, announced)
        }
        AdminOp::Pause { scope, actor, reason } => {
            conn.prepare_cached(
                "INSERT INTO pauses (scope, actor, at, reason) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (scope) DO UPDATE SET actor = excluded.actor, at = excluded.at, reason = excluded.reason",
            )?
            .execute(params![scope.key(), actor, now, reason])?;
            audit(conn, now, actor, "pause", &scope.key(), reason.as_deref())?;
            Ok(AdminDone { event_id: None, changed: 1, message: format!("paused {scope}"), paused: false })
        }
        AdminOp::Resume { scope, actor } => {
            let n = conn.prepare_cached("DELETE FROM pauses WHERE scope = ?1")?.execute([scope.key()])?;
            if n == 0 {
                return Err(denied(StoreError::Conflict(format!("{scope} is not paused"))));
            }
            audit(conn, now, actor, "resume", &scope.key(), None)?;
            Ok(AdminDone { event_id: None, changed: n, message: format!("resumed {scope}"), paused: false })
        }
        AdminOp::Retract { event_id, actor, correction, deliveries } => {
            retract(conn, *event_id, actor, correction.as_deref(), deliveries, now, announced)
        }
        AdminOp::Notice(n) => notice(conn, n, now, announced),
        AdminOp::TestMessage { delivery, actor } => test_message(conn, delivery, actor, now, announced),
        AdminOp::Closing { closer, reply_to, delivery } => closing(conn, *closer, *reply_to, delivery, now, announced),
        AdminOp::UseLink { token_sha256, actor } => use_link(conn, token_sha256, actor, now, announced),
    }
}

fn audit(
    conn: &Connection,
    at: i64,
    actor: &str,
    action: &str,
    target: &str,
    detail: Option<&str>,
) -> rusqlite::Result<()> {
    conn.prepare_cached("INSERT INTO audit (at, actor, action, target, detail) VALUES (?1, ?2, ?3, ?4, ?5)")?
        .execute(params![at, actor, action, target, detail])?;
    Ok(())
}

/// Why an event has nothing held: it does not exist, or what its deliveries are.
fn not_held(conn: &Connection, event_id: i64) -> Result<StoreError, ApplyError> {
    let exists: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE id = ?1)")?
        .query_row([event_id], |r| r.get(0))?;
    if !exists {
        return Ok(StoreError::NotFound(format!("no alert {event_id}")));
    }
    let decided: Option<(String, String, i64)> = conn
        .prepare_cached(
            "SELECT actor, action, at FROM audit WHERE target = ?1 AND action IN ('approve', 'reject')
             ORDER BY id DESC LIMIT 1",
        )?
        .query_row([format!("event:{event_id}")], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    Ok(StoreError::Conflict(match decided {
        Some((actor, action, at)) => {
            format!("alert {event_id} is not held: {action}d by {actor} at {}", rfc3339(at))
        }
        None => format!("alert {event_id} is not held for approval"),
    }))
}

/// Once an alert is decided, its links stop working.
fn close_links(conn: &Connection, event_id: i64, now: i64, how: &str) -> rusqlite::Result<()> {
    conn.prepare_cached("UPDATE links SET used_at = ?2, used_by = ?3 WHERE event_id = ?1 AND used_at IS NULL")?
        .execute(params![event_id, now, how])?;
    Ok(())
}

fn requeued(
    conn: &Connection,
    sql: &str,
    args: impl rusqlite::Params,
    announced: &mut Vec<Queued>,
) -> rusqlite::Result<usize> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(args, |r| {
        Ok(Queued { id: r.get(0)?, channel: r.get(1)?, priority: Priority::from_rank(r.get(2)?), reply_to: r.get(3)? })
    })?;
    let mut n = 0;
    for q in rows {
        announced.push(q?);
        n += 1;
    }
    Ok(n)
}

/// Why none of event `event_id`'s deliveries in `state` may be queued again, if that is
/// so for every one of them ([`lifecycle::still_valid`]): nothing of a cancelled,
/// retracted or superseded alert is posted by an approval or a retry.
fn invalid(conn: &Connection, event_id: i64, state: &str, channel: Option<&str>) -> Result<Option<String>, ApplyError> {
    let mut stmt = conn.prepare_cached(
        "SELECT d.kind, e.superseded_by, COALESCE(i.state, 'open')
         FROM deliveries d JOIN events e ON e.id = d.event_id LEFT JOIN incidents i ON i.key = e.incident_key
         WHERE d.event_id = ?1 AND d.state = ?2 AND (?3 IS NULL OR d.channel = ?3)",
    )?;
    let rows = stmt.query_map(params![event_id, state, channel], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, Option<i64>>(1)?, r.get::<_, String>(2)?))
    })?;
    let mut why = None;
    for row in rows {
        let (kind, superseded_by, incident) = row?;
        let kind = DeliveryKind::parse(&kind).unwrap_or(DeliveryKind::Post);
        match lifecycle::still_valid(kind, IncidentState::parse(&incident), superseded_by) {
            Ok(()) => return Ok(None),
            Err(e) => why = Some(e),
        }
    }
    Ok(why)
}

fn approve(
    conn: &Connection,
    event_id: i64,
    actor: &str,
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<AdminDone, ApplyError> {
    if let Some(why) = invalid(conn, event_id, "held", None)? {
        return Err(denied(StoreError::Conflict(format!("alert {event_id} cannot be approved: {why}"))));
    }
    let n = requeued(
        conn,
        "UPDATE deliveries SET state = 'queued', queued_at = ?2, updated_at = ?2
         WHERE event_id = ?1 AND state = 'held'
         RETURNING id, channel, priority, reply_to",
        params![event_id, now],
        announced,
    )?;
    if n == 0 {
        return Err(denied(not_held(conn, event_id)?));
    }
    audit(conn, now, actor, "approve", &format!("event:{event_id}"), Some(&format!("{n} deliveries queued")))?;
    close_links(conn, event_id, now, &format!("decided: approved by {actor}"))?;
    Ok(AdminDone {
        event_id: Some(event_id),
        changed: n,
        message: format!("approved: {n} deliveries queued"),
        paused: false,
    })
}

fn reject(conn: &Connection, event_id: i64, actor: &str, reason: &str, now: i64) -> Result<AdminDone, ApplyError> {
    let why = if reason.is_empty() { format!("rejected by {actor}") } else { format!("rejected by {actor}: {reason}") };
    let n = conn
        .prepare_cached(
            "UPDATE deliveries SET state = 'suppressed', reason = ?2, updated_at = ?3
             WHERE event_id = ?1 AND state = 'held'",
        )?
        .execute(params![event_id, why, now])?;
    if n == 0 {
        return Err(denied(not_held(conn, event_id)?));
    }
    let detail = (!reason.is_empty()).then_some(reason);
    audit(conn, now, actor, "reject", &format!("event:{event_id}"), detail)?;
    close_links(conn, event_id, now, &format!("decided: rejected by {actor}"))?;
    Ok(AdminDone {
        event_id: Some(event_id),
        changed: n,
        message: format!("rejected: {n} deliveries will not be posted"),
        paused: false,
    })
}

fn retry(
    conn: &Connection,
    event_id: i64,
    channel: Option<&str>,
    actor: &str,
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<AdminDone, ApplyError> {
    if let Some(why) = invalid(conn, event_id, "dead", channel)? {
        return Err(denied(StoreError::Conflict(format!("alert {event_id} is not sent again: {why}"))));
    }
    // Attempts start again from zero, and so does the time to give up.
    let n = requeued(
        conn,
        "UPDATE deliveries SET state = 'queued', attempts = 0, not_before = NULL, reason = NULL,
                               queued_at = ?2, updated_at = ?2
         WHERE event_id = ?1 AND state = 'dead' AND (?3 IS NULL OR channel = ?3)
         RETURNING id, channel, priority, reply_to",
        params![event_id, now, channel],
        announced,
    )?;
    if n == 0 {
        let exists: bool = conn
            .prepare_cached("SELECT EXISTS (SELECT 1 FROM events WHERE id = ?1)")?
            .query_row([event_id], |r| r.get(0))?;
        let on = channel.map(|c| format!(" on {c}")).unwrap_or_default();
        return Err(denied(if exists {
            StoreError::Conflict(format!("alert {event_id} has no dead-lettered delivery{on}"))
        } else {
            StoreError::NotFound(format!("no alert {event_id}"))
        }));
    }
    let target = format!("event:{event_id}");
    audit(conn, now, actor, "retry", &target, channel.map(|c| format!("channel {c}")).as_deref())?;
    Ok(AdminDone {
        event_id: Some(event_id),
        changed: n,
        message: format!("{n} dead-lettered deliveries queued again"),
        paused: false,
    })
}

struct Original {
    incident_key: String,
    event_type: String,
    status: String,
    event_json: String,
    headline: String,
}

fn retract(
    conn: &Connection,
    event_id: i64,
    actor: &str,
    correction: Option<&str>,
    deliveries: &[NewDelivery],
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<AdminDone, ApplyError> {
    let original = conn
        .prepare_cached(
            "SELECT incident_key, event_type, status, event_json, headline FROM events
             WHERE id = ?1 AND format NOT IN ('system', 'admin')",
        )?
        .query_row([event_id], |r| {
            Ok(Original {
                incident_key: r.get(0)?,
                event_type: r.get(1)?,
                status: r.get(2)?,
                event_json: r.get(3)?,
                headline: r.get(4)?,
            })
        })
        .optional()?
        .ok_or_else(|| denied(StoreError::NotFound(format!("no alert {event_id}"))))?;
    let Some(inc) = incident::load(conn, &original.incident_key, 0)? else {
        return Err(denied(StoreError::Conflict(format!(
            "alert {event_id} opened no incident (it was not posted anywhere): nothing to retract"
        ))));
    };
    let verb = if correction.is_some() { "correct" } else { "retract" };
    // The retraction is an event of its incident, so what it posts is in the incident's
    // history like everything else. It has no expiry: a correction of an expired alert
    // still goes out. Its id is needed for the verdict's reasons, so it is inserted
    // first; a refused retraction is denied before this.
    let planned: Vec<Planned> = deliveries
        .iter()
        .map(|d| Planned { channel: d.channel.clone(), kind: DeliveryKind::Retract, language: d.language.clone() })
        .collect();
    if let Err(why) = lifecycle::on_retract(&inc, 0, correction.is_some(), &planned) {
        return Err(denied(StoreError::Conflict(format!("alert {event_id}: {why}"))));
    }
    let dedupe_key = format!("{verb}:{}:{now}:{}", original.incident_key, inc.events.len());
    let headline = match correction {
        Some(_) => format!("CORRECTION of: {}", original.headline),
        None => format!("RETRACTION of: {}", original.headline),
    };
    let payload = correction.unwrap_or("").as_bytes();
    let new_id: i64 = conn
        .prepare_cached(
            "INSERT INTO events (dedupe_key, incident_key, format, event_type, msg_type, status, priority, disposition,
                                 topic, payload, payload_sha256, event_json, headline, received_at, trust)
             VALUES (?1, ?2, 'admin', ?3, ?4, ?5, ?6, 'deliver', '', ?7, ?8, ?9, ?10, ?11, ?12)
             RETURNING id",
        )?
        .query_row(
            params![
                dedupe_key,
                original.incident_key,
                original.event_type,
                verb,
                original.status,
                Priority::Retraction.rank(),
                payload,
                sha256_hex(payload),
                original.event_json,
                headline,
                now,
                lifecycle::Trust::Operator.rank()
            ],
            |r| r.get(0),
        )?;
    let verdict = lifecycle::on_retract(&inc, new_id, correction.is_some(), &planned)
        .map_err(|why| denied(StoreError::Conflict(why)))?;
    let recorded = (lifecycle::Disposition::Deliver, lifecycle::Effect::None);
    let applied =
        incident::apply(conn, new_id, recorded, &original.incident_key, None, &verdict, deliveries, now, announced)?;
    let mut channels: Vec<String> = verdict.create.iter().map(|c| deliveries[c.index].channel.clone()).collect();
    channels.dedup();
    let detail = match correction {
        Some(text) => format!("correction posted on {}: {text}", channels.join(", ")),
        None => format!("retraction posted on {}", channels.join(", ")),
    };
    audit(conn, now, actor, verb, &format!("event:{event_id}"), Some(&detail))?;
    let stopped = applied.stopped;
    let message = if channels.is_empty() {
        format!("{verb}ed: {stopped} deliveries stopped; nothing of the incident was out, so nothing is posted")
    } else {
        format!(
            "{verb}ed: {stopped} deliveries stopped; the {} goes out first on {}",
            if correction.is_some() { "correction" } else { "retraction" },
            channels.join(", ")
        )
    };
    Ok(AdminDone { event_id: Some(new_id), changed: channels.len(), message, paused: false })
}

fn notice(conn: &Connection, n: &NewNotice, now: i64, announced: &mut Vec<Queued>) -> Result<AdminDone, ApplyError> {
    let key = format!("notice:{}", n.key);
    let about = serde_json::json!({ "about": n.about }).to_string();
    let inserted: Option<i64> = conn
        .prepare_cached(
            "INSERT INTO events (dedupe_key, incident_key, format, event_type, msg_type, status, priority, disposition,
                                 topic, payload, payload_sha256, event_json, headline, received_at)
             VALUES (?1, ?1, 'system', 'notice', 'alert', 'system', ?2, 'deliver', '', x'', ?3, ?4, ?5, ?6)
             ON CONFLICT (dedupe_key) DO NOTHING
             RETURNING id",
        )?
        .query_row(params![key, n.priority.rank(), sha256_hex(b""), about, n.headline, now], |r| r.get(0))
        .optional()?;
    let Some(id) = inserted else {
        return Ok(AdminDone { event_id: None, changed: 0, message: "already sent".to_owned(), paused: false });
    };
    for d in &n.deliveries {
        let delivery = incident::insert_delivery(conn, id, d, DeliveryState::Queued, None, now)?;
        announced.push(Queued { id: delivery, channel: d.channel.clone(), priority: d.priority, reply_to: None });
    }
    if let Some(about) = n.about {
        for l in &n.links {
            conn.prepare_cached(
                "INSERT INTO links (token_sha256, event_id, action, created_at, expires_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![l.token_sha256, about, l.action.as_str(), now, l.expires_at])?;
        }
    }
    Ok(AdminDone {
        event_id: Some(id),
        changed: n.deliveries.len(),
        message: "notice queued".to_owned(),
        paused: false,
    })
}

fn test_message(
    conn: &Connection,
    d: &NewDelivery,
    actor: &str,
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<AdminDone, ApplyError> {
    let key = format!("test:{}:{}", d.channel, d.idem_key);
    let headline = format!("test message on {}", d.channel);
    let id: i64 = conn
        .prepare_cached(
            "INSERT INTO events (dedupe_key, incident_key, format, event_type, msg_type, status, priority, disposition,
                                 topic, payload, payload_sha256, event_json, headline, received_at, trust, effect)
             VALUES (?1, ?1, 'system', 'test_message', 'alert', 'test', ?2, 'deliver', '', ?3, ?4, '{}', ?5, ?6, ?7,
                     'post')
             RETURNING id",
        )?
        .query_row(
            params![
                key,
                d.priority.rank(),
                d.text.as_bytes(),
                sha256_hex(d.text.as_bytes()),
                headline,
                now,
                lifecycle::Trust::Operator.rank()
            ],
            |r| r.get(0),
        )?;
    let delivery = incident::insert_delivery(conn, id, d, DeliveryState::Queued, None, now)?;
    announced.push(Queued { id: delivery, channel: d.channel.clone(), priority: d.priority, reply_to: None });
    audit(conn, now, actor, "test", &format!("channel:{}", d.channel), Some(&d.text))?;
    Ok(AdminDone {
        event_id: Some(id),
        changed: 1,
        message: format!("test message queued on {}", d.channel),
        paused: false,
    })
}

fn closing(
    conn: &Connection,
    closer: i64,
    reply_to: i64,
    d: &NewDelivery,
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<AdminDone, ApplyError> {
    let missing: bool = conn
        .prepare_cached(
            "SELECT EXISTS (SELECT 1 FROM incidents i JOIN events c ON c.id = ?1 AND c.incident_key = i.key
                            WHERE i.closed_by = ?1)
                    AND NOT EXISTS (SELECT 1 FROM deliveries x JOIN events xe ON xe.id = x.event_id
                                    JOIN events c ON c.id = ?1
                                    WHERE xe.incident_key = c.incident_key AND x.channel = ?2 AND x.language = ?3
                                      AND x.kind IN ('cancel', 'retract'))",
        )?
        .query_row(params![closer, d.channel, d.language], |r| r.get(0))?;
    if !missing {
        return Ok(AdminDone {
            event_id: Some(closer),
            changed: 0,
            message: "already there".to_owned(),
            paused: false,
        });
    }
    let id = incident::insert_delivery(conn, closer, d, DeliveryState::Queued, Some(reply_to), now)?;
    announced.push(Queued { id, channel: d.channel.clone(), priority: d.priority, reply_to: Some(reply_to) });
    Ok(AdminDone {
        event_id: Some(closer),
        changed: 1,
        message: format!("{} queued on {}", d.kind.as_str(), d.channel),
        paused: false,
    })
}

fn use_link(
    conn: &Connection,
    token_sha256: &str,
    actor: &str,
    now: i64,
    announced: &mut Vec<Queued>,
) -> Result<AdminDone, ApplyError> {
    struct Link {
        id: i64,
        event_id: i64,
        action: String,
        expires_at: i64,
        used_at: Option<i64>,
        used_by: Option<String>,
    }
    let link = conn
        .prepare_cached("SELECT id, event_id, action, expires_at, used_at, used_by FROM links WHERE token_sha256 = ?1")?
        .query_row([token_sha256], |r| {
            Ok(Link {
                id: r.get(0)?,
                event_id: r.get(1)?,
                action: r.get(2)?,
                expires_at: r.get(3)?,
                used_at: r.get(4)?,
                used_by: r.get(5)?,
            })
        })
        .optional()?;
    let Some(Link { id: link_id, event_id, action, expires_at, used_at, used_by }) = link else {
        return Err(denied(StoreError::NotFound("this link is not valid".to_owned())));
    };
    if let Some(at) = used_at {
        let by = used_by.unwrap_or_default();
        return Err(denied(StoreError::Conflict(format!("this link was already used ({by}, {})", rfc3339(at)))));
    }
    if expires_at <= now {
        return Err(denied(StoreError::Conflict(format!("this link expired at {}", rfc3339(expires_at)))));
    }
    let who = format!("{actor} (link)");
    let done = match action.as_str() {
        "approve" => approve(conn, event_id, &who, now, announced)?,
        _ => reject(conn, event_id, &who, "", now)?,
    };
    conn.prepare_cached("UPDATE links SET used_at = ?2, used_by = ?3 WHERE id = ?1")?.execute(params![
        link_id,
        now,
        format!("{action}d by {who}")
    ])?;
    Ok(done)
}
