//! What the admin API, the CLI and the staff-notice timers read: alerts with their
//! per-channel state, held alerts, late critical deliveries, pauses, refused credentials.

use rusqlite::{Connection, OptionalExtension, params};
use serde::Serialize;

use super::{PostRef, Progress, Reader, StoreError};
use crate::event::Priority;

/// One alert (an accepted event) as the admin API lists it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertSummary {
    /// The store's id: what `approve`, `retract` and the API take.
    pub id: i64,
    pub incident: String,
    pub format: String,
    pub event_type: String,
    pub msg_type: String,
    pub status: String,
    pub priority: &'static str,
    /// deliver | expired | stale | superseded | ignored | unchanged | retracted
    pub disposition: String,
    pub headline: String,
    pub received_at: String,
    pub deliveries: Vec<AlertDelivery>,
}

/// One delivery of an alert.
#[derive(Debug, Clone, Serialize)]
pub struct AlertDelivery {
    pub id: i64,
    pub channel: String,
    pub kind: String,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub language: String,
    /// held | queued | in_flight | sent | dead | expired | suppressed | shadow
    pub state: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_url: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub post_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub attempts: u32,
    pub updated_at: String,
    /// The text (in an alert's detail).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text: Option<String>,
}

/// One alert with everything recorded about it.
#[derive(Debug, Clone, Serialize)]
pub struct AlertDetail {
    #[serde(flatten)]
    pub summary: AlertSummary,
    /// The normalised event.
    pub event: serde_json::Value,
    pub audit: Vec<AuditRow>,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditRow {
    pub at: String,
    pub actor: String,
    pub action: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// An alert waiting for approval, with what each channel would post.
#[derive(Debug, Clone)]
pub struct HeldEvent {
    pub event_id: i64,
    pub event_type: String,
    pub status: String,
    pub headline: String,
    pub priority: Priority,
    pub received_at: i64,
    /// Staff were told (the `held:` notice exists).
    pub noticed: bool,
    /// The `escalate:` notice exists.
    pub escalated: bool,
    /// (channel, text) of each held delivery.
    pub previews: Vec<(String, String)>,
}

/// A critical delivery still not out.
#[derive(Debug, Clone)]
pub struct LateDelivery {
    pub event_id: i64,
    pub event_type: String,
    pub headline: String,
    pub channel: String,
    pub state: String,
    pub queued_at: i64,
    /// What its last attempt said.
    pub last: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PauseRow {
    pub scope: String,
    pub actor: String,
    pub at: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone)]
pub struct CredentialFailure {
    pub channel: String,
    pub at: i64,
    pub detail: String,
}

/// A closed incident's cancellation or retraction missing on a channel.
#[derive(Debug, Clone)]
pub struct MissingClosing {
    /// The event that closed the incident.
    pub closer: i64,
    /// A retraction (else a cancellation).
    pub retraction: bool,
    /// The closing event, normalised.
    pub event_json: String,
    /// A retraction's own words.
    pub text: Option<String>,
    pub language: String,
    /// The channel's original post of the incident.
    pub reply_to: i64,
}

/// A one-time link and the alert it decides.
#[derive(Debug, Clone)]
pub struct LinkInfo {
    pub event_id: i64,
    pub action: String,
    pub expires_at: i64,
    pub used: Option<String>,
    pub headline: String,
    pub event_type: String,
    pub status: String,
    /// (channel, state, text) of the alert's deliveries.
    pub deliveries: Vec<(String, String, String)>,
}

fn ts(ms: i64) -> String {
    crate::time::rfc3339(ms)
}

const STATUS_STATES: &str = "'held', 'queued', 'in_flight', 'dead'";

fn deliveries(c: &Connection, event_id: i64, with_text: bool) -> rusqlite::Result<Vec<AlertDelivery>> {
    let mut stmt = c.prepare_cached(
        "SELECT id, channel, kind, language, state, post_url, post_id, reason, attempts, updated_at, text
         FROM deliveries WHERE event_id = ?1 ORDER BY channel, id",
    )?;
    let rows = stmt.query_map([event_id], |r| {
        Ok(AlertDelivery {
            id: r.get(0)?,
            channel: r.get(1)?,
            kind: r.get(2)?,
            language: r.get(3)?,
            state: r.get(4)?,
            post_url: r.get(5)?,
            post_id: r.get(6)?,
            reason: r.get(7)?,
            attempts: r.get(8)?,
            updated_at: ts(r.get(9)?),
            text: if with_text { r.get(10)? } else { None },
        })
    })?;
    rows.collect()
}

const SUMMARY_COLUMNS: &str = "id, incident_key, format, event_type, msg_type, status, priority, disposition, headline,
                               received_at";

fn summary(r: &rusqlite::Row<'_>) -> rusqlite::Result<AlertSummary> {
    Ok(AlertSummary {
        id: r.get(0)?,
        incident: r.get(1)?,
        format: r.get(2)?,
        event_type: r.get(3)?,
        msg_type: r.get(4)?,
        status: r.get(5)?,
        priority: Priority::from_rank(r.get(6)?).as_str(),
        disposition: r.get(7)?,
        headline: r.get(8)?,
        received_at: ts(r.get(9)?),
        deliveries: Vec::new(),
    })
}

impl Reader {
    /// The latest alerts, newest first; `held`: only those waiting for approval. Staff
    /// notices are left out.
    pub async fn alerts(&self, limit: usize, held: bool) -> Result<Vec<AlertSummary>, StoreError> {
        let limit = i64::try_from(limit.clamp(1, 1000)).unwrap_or(50);
        self.with(move |c| {
            let sql = if held {
                format!(
                    "SELECT {SUMMARY_COLUMNS} FROM events e
                     WHERE EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = e.id AND d.state = 'held')
                     ORDER BY id DESC LIMIT ?1"
                )
            } else {
                format!("SELECT {SUMMARY_COLUMNS} FROM events WHERE format != 'system' ORDER BY id DESC LIMIT ?1")
            };
            let mut list: Vec<AlertSummary> =
                c.prepare(&sql)?.query_map([limit], summary)?.collect::<Result<_, _>>()?;
            for a in &mut list {
                a.deliveries = deliveries(c, a.id, false)?;
            }
            Ok(list)
        })
        .await
    }

    /// One alert with its deliveries' texts and its audit trail.
    pub async fn alert(&self, event_id: i64) -> Result<Option<AlertDetail>, StoreError> {
        self.with(move |c| {
            let sql = format!("SELECT {SUMMARY_COLUMNS}, event_json FROM events WHERE id = ?1");
            let found =
                c.prepare(&sql)?.query_row([event_id], |r| Ok((summary(r)?, r.get::<_, String>(10)?))).optional()?;
            let Some((mut summary, json)) = found else { return Ok(None) };
            summary.deliveries = deliveries(c, event_id, true)?;
            let audit = c
                .prepare_cached("SELECT at, actor, action, detail FROM audit WHERE target = ?1 ORDER BY id")?
                .query_map([format!("event:{event_id}")], |r| {
                    Ok(AuditRow { at: ts(r.get(0)?), actor: r.get(1)?, action: r.get(2)?, detail: r.get(3)? })
                })?
                .collect::<Result<_, _>>()?;
            let event = serde_json::from_str(&json).unwrap_or(serde_json::Value::Null);
            Ok(Some(AlertDetail { summary, event, audit }))
        })
        .await
    }

    /// The alert `ident` names: `#N` is the store's number; anything else is the event's
    /// own id (a CAP identifier, a JSON `id`). An id carried by events of several
    /// incidents (an exercise and a real alert, two formats, two sources) is refused with
    /// the list, never guessed; of the events of one incident (a JSON incident's
    /// revisions) the newest is meant.
    pub async fn find_alert(&self, ident: &str) -> Result<i64, StoreError> {
        let ident = ident.trim().to_owned();
        self.with(move |c| {
            if let Some(n) = ident.strip_prefix('#') {
                let id: Option<i64> = match n.trim().parse::<i64>() {
                    Ok(id) => c
                        .prepare_cached("SELECT id FROM events WHERE id = ?1")?
                        .query_row([id], |r| r.get(0))
                        .optional()?,
                    Err(_) => None,
                };
                return Ok(id.ok_or_else(|| StoreError::NotFound(format!("no alert {ident}"))));
            }
            let mut stmt = c.prepare_cached(
                "SELECT id, incident_key, format, status, event_type, msg_type, headline FROM events
                 WHERE ident = ?1 AND format NOT IN ('system', 'admin') ORDER BY id",
            )?;
            let rows: Vec<(i64, String, String, String, String, String, String)> = stmt
                .query_map([&ident], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?))
                })?
                .collect::<rusqlite::Result<_>>()?;
            // The newest event of each incident, in order of first appearance.
            let mut incidents: Vec<(String, (i64, String))> = Vec::new();
            for (id, incident, format, status, event_type, msg_type, headline) in rows {
                let headline: String = headline.chars().take(60).collect();
                let line = format!("#{id}: {format} {status} {event_type} {msg_type} \"{headline}\"");
                match incidents.iter_mut().find(|(k, _)| *k == incident) {
                    Some((_, newest)) => *newest = (id, line),
                    None => incidents.push((incident, (id, line))),
                }
            }
            Ok(match incidents.as_slice() {
                [] if ident.parse::<i64>().is_ok() => Err(StoreError::NotFound(format!(
                    "no alert with the id {ident:?} (for the store's number, write #{ident})"
                ))),
                [] => Err(StoreError::NotFound(format!("no alert with the id {ident:?}"))),
                [(_, (id, _))] => Ok(*id),
                many => {
                    let list: Vec<&str> = many.iter().map(|(_, (_, line))| line.as_str()).collect();
                    Err(StoreError::Conflict(format!(
                        "{ident:?} names {} different alerts; name one by its number: {}",
                        many.len(),
                        list.join("; ")
                    )))
                }
            })
        })
        .await?
    }

    /// Closed incidents whose news is (or may be) out on `channel` with no cancellation or
    /// retraction there: a channel that was disabled or removed when its incident ended
    /// (the pipeline renders only for the channels configured then). One per incident
    /// and language, with the delivery to reply to.
    pub async fn missing_closings(&self, channel: &str) -> Result<Vec<MissingClosing>, StoreError> {
        let channel = channel.to_owned();
        self.with(move |c| {
            c.prepare(
                "SELECT i.closed_by, c.effect, c.event_json, c.payload, d.language, MIN(d.id)
                 FROM incidents i
                 JOIN events c ON c.id = i.closed_by
                 JOIN events e ON e.incident_key = i.key
                 JOIN deliveries d ON d.event_id = e.id AND d.channel = ?1 AND d.kind IN ('post', 'update')
                 WHERE i.state != 'open' AND c.effect IN ('cancel', 'retract') AND c.silent = 0
                   AND (d.post_id IS NOT NULL OR d.state IN ('sent', 'in_flight')
                        OR EXISTS (SELECT 1 FROM attempts a WHERE a.delivery_id = d.id AND a.outcome = 'unknown'))
                   AND NOT EXISTS (SELECT 1 FROM deliveries x JOIN events xe ON xe.id = x.event_id
                                   WHERE xe.incident_key = i.key AND x.channel = ?1 AND x.language = d.language
                                     AND x.kind IN ('cancel', 'retract'))
                 GROUP BY i.key, d.language
                 ORDER BY i.closed_by",
            )?
            .query_map([channel], |r| {
                let effect: String = r.get(1)?;
                let payload: Vec<u8> = r.get(3)?;
                Ok(MissingClosing {
                    closer: r.get(0)?,
                    retraction: effect == "retract",
                    event_json: r.get(2)?,
                    text: String::from_utf8(payload).ok().filter(|t| !t.is_empty()),
                    language: r.get(4)?,
                    reply_to: r.get(5)?,
                })
            })?
            .collect()
        })
        .await
    }

    /// Deliveries not finished, by channel and state, and the dead-lettered ones.
    pub async fn delivery_counts(&self) -> Result<Vec<(String, String, i64)>, StoreError> {
        self.with(|c| {
            let sql = format!(
                "SELECT channel, state, COUNT(*) FROM deliveries WHERE state IN ({STATUS_STATES})
                 GROUP BY channel, state ORDER BY channel, state"
            );
            c.prepare(&sql)?.query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?.collect()
        })
        .await
    }

    /// Alerts waiting for approval, oldest first.
    pub async fn held_events(&self) -> Result<Vec<HeldEvent>, StoreError> {
        self.with(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT e.id, e.event_type, e.status, e.headline, e.priority, e.received_at,
                        EXISTS (SELECT 1 FROM events n WHERE n.dedupe_key = 'notice:held:' || e.id),
                        EXISTS (SELECT 1 FROM events n WHERE n.dedupe_key = 'notice:escalate:' || e.id)
                 FROM events e WHERE e.id IN (SELECT event_id FROM deliveries WHERE state = 'held')
                 ORDER BY e.id",
            )?;
            let mut held: Vec<HeldEvent> = stmt
                .query_map([], |r| {
                    Ok(HeldEvent {
                        event_id: r.get(0)?,
                        event_type: r.get(1)?,
                        status: r.get(2)?,
                        headline: r.get(3)?,
                        priority: Priority::from_rank(r.get(4)?),
                        received_at: r.get(5)?,
                        noticed: r.get(6)?,
                        escalated: r.get(7)?,
                        previews: Vec::new(),
                    })
                })?
                .collect::<Result<_, _>>()?;
            let mut texts = c.prepare_cached(
                "SELECT channel, text FROM deliveries WHERE event_id = ?1 AND state = 'held' ORDER BY channel, id",
            )?;
            for h in &mut held {
                h.previews =
                    texts.query_map([h.event_id], |r| Ok((r.get(0)?, r.get(1)?)))?.collect::<Result<_, _>>()?;
            }
            Ok(held)
        })
        .await
    }

    /// Critical (and retraction) deliveries queued before `cutoff` (Unix ms) and still not
    /// out, of events no `late:` notice was sent for.
    pub async fn late_critical(&self, cutoff: i64) -> Result<Vec<LateDelivery>, StoreError> {
        self.with(move |c| {
            c.prepare_cached(
                "SELECT e.id, e.event_type, e.headline, d.channel, d.state, d.queued_at,
                        (SELECT a.outcome || ': ' || COALESCE(a.detail, '') FROM attempts a
                         WHERE a.delivery_id = d.id ORDER BY a.id DESC LIMIT 1)
                 FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE d.state IN ('queued', 'in_flight') AND d.priority <= 0 AND d.queued_at < ?1
                   AND e.format != 'system'
                   AND NOT EXISTS (SELECT 1 FROM events n WHERE n.dedupe_key = 'notice:late:' || e.id)
                 ORDER BY e.id, d.channel",
            )?
            .query_map([cutoff], |r| {
                Ok(LateDelivery {
                    event_id: r.get(0)?,
                    event_type: r.get(1)?,
                    headline: r.get(2)?,
                    channel: r.get(3)?,
                    state: r.get(4)?,
                    queued_at: r.get(5)?,
                    last: r.get(6)?,
                })
            })?
            .collect()
        })
        .await
    }

    pub async fn pauses(&self) -> Result<Vec<PauseRow>, StoreError> {
        self.with(|c| {
            c.prepare_cached("SELECT scope, actor, at, reason FROM pauses ORDER BY scope")?
                .query_map([], |r| {
                    Ok(PauseRow { scope: r.get(0)?, actor: r.get(1)?, at: ts(r.get(2)?), reason: r.get(3)? })
                })?
                .collect()
        })
        .await
    }

    /// The latest refusal of each channel's credentials since `since` (Unix ms).
    pub async fn credential_failures(&self, since: i64) -> Result<Vec<CredentialFailure>, StoreError> {
        self.with(move |c| {
            c.prepare_cached(
                "SELECT channel, MAX(started_at), detail FROM attempts
                 WHERE outcome = 'credentials' AND started_at >= ?1 GROUP BY channel",
            )?
            .query_map([since], |r| {
                Ok(CredentialFailure {
                    channel: r.get(0)?,
                    at: r.get(1)?,
                    detail: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                })
            })?
            .collect()
        })
        .await
    }

    /// The link with this token hash, with the alert it decides.
    pub async fn link(&self, token_sha256: &str) -> Result<Option<LinkInfo>, StoreError> {
        let token = token_sha256.to_owned();
        self.with(move |c| {
            let found = c
                .prepare_cached(
                    "SELECT l.event_id, l.action, l.expires_at, l.used_by, e.headline, e.event_type, e.status
                     FROM links l JOIN events e ON e.id = l.event_id WHERE l.token_sha256 = ?1",
                )?
                .query_row([token], |r| {
                    Ok(LinkInfo {
                        event_id: r.get(0)?,
                        action: r.get(1)?,
                        expires_at: r.get(2)?,
                        used: r.get(3)?,
                        headline: r.get(4)?,
                        event_type: r.get(5)?,
                        status: r.get(6)?,
                        deliveries: Vec::new(),
                    })
                })
                .optional()?;
            let Some(mut link) = found else { return Ok(None) };
            link.deliveries = c
                .prepare_cached("SELECT channel, state, text FROM deliveries WHERE event_id = ?1 ORDER BY channel, id")?
                .query_map([link.event_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?
                .collect::<Result<_, _>>()?;
            Ok(Some(link))
        })
        .await
    }

    /// The channels (and languages) an alert's incident has deliveries on: where a
    /// retraction may have to go.
    pub async fn incident_channels(&self, event_id: i64) -> Result<Vec<(String, String)>, StoreError> {
        self.with(move |c| {
            c.prepare_cached(
                "SELECT DISTINCT d.channel, d.language FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE e.incident_key = (SELECT incident_key FROM events WHERE id = ?1) AND d.kind != 'retract'
                 ORDER BY d.channel, d.language",
            )?
            .query_map([event_id], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect()
        })
        .await
    }

    /// Every post of an incident on one channel in one language, oldest first (a
    /// thread's every part): what a retraction deletes.
    /// `news_only`: only the alert and its updates (what a correction replaces), not a
    /// cancellation.
    pub async fn incident_posts(
        &self,
        incident_key: &str,
        channel: &str,
        language: &str,
        news_only: bool,
    ) -> Result<Vec<PostRef>, StoreError> {
        let (incident_key, channel, language) = (incident_key.to_owned(), channel.to_owned(), language.to_owned());
        self.with(move |c| {
            let mut stmt = c.prepare_cached(
                "SELECT d.post_id, d.post_url, d.post_data, d.progress FROM deliveries d JOIN events e ON e.id = d.event_id
                 WHERE e.incident_key = ?1 AND d.channel = ?2 AND d.language = ?3 AND d.kind != 'retract'
                   AND (?4 = 0 OR d.kind IN ('post', 'update'))
                   AND d.post_id IS NOT NULL
                 ORDER BY d.id",
            )?;
            let rows = stmt.query_map(params![incident_key, channel, language, news_only], |r| {
                let post = PostRef { id: r.get(0)?, url: r.get(1)?, data: r.get(2)? };
                let progress: Option<String> = r.get(3)?;
                Ok((post, Progress::parse(progress.as_deref())))
            })?;
            let mut posts = Vec::new();
            for row in rows {
                let (post, progress) = row?;
                if progress.posted.is_empty() {
                    posts.push(post);
                } else {
                    posts.extend(progress.posted.into_iter().filter(|p| p.id.is_some()));
                }
            }
            Ok(posts)
        })
        .await
    }
}
