//! The store's schema as an ordered list of migrations. `PRAGMA user_version` records how
//! many have been applied; each runs in its own transaction. Never edit a released
//! migration: append a new one.

use rusqlite::Connection;

/// Migration `i` (0-based) moves the schema from version `i` to `i + 1`.
pub const MIGRATIONS: &[&str] = &[
    // 1: the outbox, the send log and the dead-letter records.
    r"
CREATE TABLE events (
    id             INTEGER PRIMARY KEY,
    dedupe_key     TEXT    NOT NULL UNIQUE,
    incident_key   TEXT    NOT NULL,
    revision       INTEGER,
    format         TEXT    NOT NULL,
    event_type     TEXT    NOT NULL,
    msg_type       TEXT    NOT NULL,
    status         TEXT    NOT NULL,
    priority       INTEGER NOT NULL,
    -- deliver | expired | stale | superseded
    disposition    TEXT    NOT NULL,
    topic          TEXT    NOT NULL,
    payload        BLOB    NOT NULL,
    payload_sha256 TEXT    NOT NULL,
    -- the normalised event (docs/event.schema.json)
    event_json     TEXT    NOT NULL,
    headline       TEXT    NOT NULL,
    sent_at        INTEGER,
    expires_at     INTEGER,
    received_at    INTEGER NOT NULL
) STRICT;
CREATE INDEX events_incident ON events(incident_key, id);

CREATE TABLE deliveries (
    id          INTEGER PRIMARY KEY,
    event_id    INTEGER NOT NULL REFERENCES events(id),
    channel     TEXT    NOT NULL,
    -- post | update | cancel
    kind        TEXT    NOT NULL,
    -- BCP 47 tag of this post's language, '' when the event gives none
    language    TEXT    NOT NULL DEFAULT '',
    -- held (waiting for approval) | queued | in_flight | sent | dead | expired | suppressed
    state       TEXT    NOT NULL,
    priority    INTEGER NOT NULL,
    text        TEXT    NOT NULL,
    -- a thread's parts as a JSON array of strings, when the text was split
    parts       TEXT,
    -- the template error when the fallback text was used
    render_note TEXT,
    -- the delivery this one replies to (the channel's original post of the incident)
    reply_to    INTEGER REFERENCES deliveries(id),
    -- stable across retries: webhook-id, Idempotency-Key, rkey seed
    idem_key    TEXT    NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    -- set when a cancel or newer revision arrives while this is in flight: a failed
    -- attempt then suppresses it instead of retrying
    withdrawn   INTEGER NOT NULL DEFAULT 0,
    not_before  INTEGER,
    post_id     TEXT,
    post_url    TEXT,
    reason      TEXT,
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    UNIQUE (event_id, channel, kind, language)
) STRICT;
CREATE INDEX deliveries_open ON deliveries(channel, state) WHERE state IN ('queued', 'in_flight');

-- One row per request, committed before the request leaves.
CREATE TABLE attempts (
    id           INTEGER PRIMARY KEY,
    delivery_id  INTEGER NOT NULL REFERENCES deliveries(id),
    channel      TEXT    NOT NULL,
    started_at   INTEGER NOT NULL,
    -- what resolves an unknown outcome (JSON; e.g. a container id)
    resolve_data TEXT,
    finished_at  INTEGER,
    http_status  INTEGER,
    -- sent | retry | throttled | dead | unknown
    outcome      TEXT,
    detail       TEXT
) STRICT;
CREATE INDEX attempts_window ON attempts(channel, started_at);
CREATE INDEX attempts_delivery ON attempts(delivery_id);

-- Dead letters for bad input.
CREATE TABLE rejects (
    id             INTEGER PRIMARY KEY,
    received_at    INTEGER NOT NULL,
    topic          TEXT    NOT NULL,
    format         TEXT,
    kind           TEXT    NOT NULL,
    reason         TEXT    NOT NULL,
    payload_len    INTEGER NOT NULL,
    payload_sha256 TEXT    NOT NULL,
    payload_head   BLOB    NOT NULL
) STRICT;

-- Who did what, append-only.
CREATE TABLE audit (
    id     INTEGER PRIMARY KEY,
    at     INTEGER NOT NULL,
    actor  TEXT    NOT NULL,
    action TEXT    NOT NULL,
    target TEXT,
    detail TEXT
) STRICT;

-- A row the writer rewrites to prove the store takes writes again after a failure.
CREATE TABLE probe (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    at INTEGER NOT NULL
) STRICT;
",
    // 2: multi-step deliveries (threads, several recipients, delete after cancel) and what
    // a channel needs to reply to a post (a Bluesky cid).
    r"
-- JSON: {done, posted: [{id, url, data}], scratch: {key: value}} (store::Progress)
ALTER TABLE deliveries ADD COLUMN progress TEXT;
-- channel-specific facts about the post, JSON (e.g. Bluesky's cid and thread root)
ALTER TABLE deliveries ADD COLUMN post_data TEXT;
",
    // 3: standard inputs. CAP messages name earlier ones by sender,identifier,sent; CAD
    // snapshots (EIDO, mapped JSON) are compared with the incident's last by a digest of
    // what a post may say.
    r"
ALTER TABLE events ADD COLUMN message_key TEXT;
ALTER TABLE events ADD COLUMN digest TEXT;
CREATE INDEX events_message ON events(message_key) WHERE message_key IS NOT NULL;
",
    // 4: operations. Approvals move held deliveries to the queue (queued_at: since when it
    // counts as waiting, for give-up and lateness); pauses outlive a restart; staff notices
    // are events of format 'system' (dedupe key 'notice:...') with one-time links.
    r"
ALTER TABLE deliveries ADD COLUMN queued_at INTEGER;
CREATE INDEX deliveries_held ON deliveries(event_id) WHERE state = 'held';
CREATE INDEX deliveries_urgent ON deliveries(queued_at) WHERE state IN ('queued', 'in_flight') AND priority <= 0;
CREATE INDEX deliveries_dead ON deliveries(event_id) WHERE state = 'dead';

-- all | channel:NAME | type:NAME
CREATE TABLE pauses (
    scope  TEXT    PRIMARY KEY,
    actor  TEXT    NOT NULL,
    at     INTEGER NOT NULL,
    reason TEXT
) STRICT;

-- Approve/reject links in staff notices: only the token's hash is kept.
CREATE TABLE links (
    id           INTEGER PRIMARY KEY,
    token_sha256 TEXT    NOT NULL UNIQUE,
    event_id     INTEGER NOT NULL REFERENCES events(id),
    -- approve | reject
    action       TEXT    NOT NULL,
    created_at   INTEGER NOT NULL,
    expires_at   INTEGER NOT NULL,
    used_at      INTEGER,
    used_by      TEXT
) STRICT;
CREATE INDEX links_event ON links(event_id);
CREATE INDEX audit_target ON audit(target);
CREATE INDEX attempts_refused ON attempts(started_at) WHERE outcome = 'credentials';
",
    // 5: media. Each image an event names, as fetched (the audit trail keeps the
    // original), or why there is none; and what was published for platforms that fetch
    // images by URL, until the cleanup removes it.
    r"
CREATE TABLE media (
    id         INTEGER PRIMARY KEY,
    event_id   INTEGER NOT NULL REFERENCES events(id),
    idx        INTEGER NOT NULL,
    -- the URL, or 'inline'
    source     TEXT    NOT NULL,
    fetched_at INTEGER NOT NULL,
    mime       TEXT,
    sha256     TEXT,
    bytes      BLOB,
    -- why there is no image
    error      TEXT,
    UNIQUE (event_id, idx)
) STRICT;

CREATE TABLE published (
    id           INTEGER PRIMARY KEY,
    name         TEXT    NOT NULL UNIQUE,
    url          TEXT    NOT NULL,
    event_id     INTEGER,
    published_at INTEGER NOT NULL,
    removed_at   INTEGER
) STRICT;
CREATE INDEX published_live ON published(published_at) WHERE removed_at IS NULL;
",
    // 6: the lifecycle as typed state. An incident row says how it was opened (status
    // class, trust, type) and whether it goes on; each event says what it did to it and
    // whether a later one replaced it; each delivery who may see it; each attempt what
    // the store held when it began (for the audit trail: nothing of an incident begins
    // after its cancellation, nothing public after a pause).
    r"
ALTER TABLE events ADD COLUMN trust INTEGER NOT NULL DEFAULT 0;
-- the event's own id (CAP identifier, JSON id): what operators name alerts by
ALTER TABLE events ADD COLUMN ident TEXT;
-- post | update | cancel | retract | correct | none
ALTER TABLE events ADD COLUMN effect TEXT NOT NULL DEFAULT 'none';
ALTER TABLE events ADD COLUMN superseded_by INTEGER REFERENCES events(id);
-- a CAD snapshot that closed its incident without a word (its rule does not post on
-- close): no channel is owed a cancellation for it
ALTER TABLE events ADD COLUMN silent INTEGER NOT NULL DEFAULT 0;
UPDATE events SET ident = json_extract(event_json, '$.id') WHERE format NOT IN ('system', 'admin');
UPDATE events SET effect = CASE
    WHEN format = 'admin' THEN msg_type
    WHEN format = 'system' THEN 'post'
    WHEN disposition IN ('deliver', 'expired', 'stale') THEN CASE msg_type WHEN 'alert' THEN 'post' ELSE msg_type END
    ELSE 'none' END;
CREATE INDEX events_ident ON events(ident) WHERE ident IS NOT NULL;
UPDATE events SET silent = 1
WHERE digest IS NOT NULL AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.event_id = events.id);

-- The messages a CAP message names as earlier (its references), so one that arrives
-- after a message naming it is known to be older.
CREATE TABLE event_refs (
    message_key TEXT    NOT NULL,
    event_id    INTEGER NOT NULL REFERENCES events(id),
    PRIMARY KEY (message_key, event_id)
) STRICT, WITHOUT ROWID;

CREATE TABLE incidents (
    key        TEXT    PRIMARY KEY,
    -- actual | practice
    class      TEXT    NOT NULL,
    -- 0 unsigned, 1 signed, 2 operator
    trust      INTEGER NOT NULL,
    event_type TEXT    NOT NULL,
    -- open | cancelled | retracted
    state      TEXT    NOT NULL,
    opened_by  INTEGER NOT NULL REFERENCES events(id),
    closed_by  INTEGER REFERENCES events(id)
) STRICT;
INSERT INTO incidents (key, class, trust, event_type, state, opened_by)
SELECT incident_key, CASE WHEN status = 'actual' THEN 'actual' ELSE 'practice' END, 0, event_type, 'open', MIN(id)
FROM events WHERE format NOT IN ('system', 'admin') AND disposition != 'ignored' GROUP BY incident_key;
-- Closed by a retraction, or by a cancel of the incident's own class (earlier versions
-- filed a drill that named a real alert under the real incident: it closes nothing).
UPDATE incidents SET closed_by = (
    SELECT MAX(c.id) FROM events c
    WHERE c.incident_key = incidents.key
      AND (c.effect = 'retract'
           OR (c.effect = 'cancel' AND (CASE WHEN c.status = 'actual' THEN 'actual' ELSE 'practice' END) = incidents.class)));
UPDATE incidents SET state = CASE
    WHEN EXISTS (SELECT 1 FROM events r WHERE r.incident_key = incidents.key AND r.effect = 'retract') THEN 'retracted'
    ELSE 'cancelled' END
WHERE closed_by IS NOT NULL;

-- public | staff: staff deliveries (tests, exercises, restricted alerts, staff notices)
-- never go out on a public channel, checked again when each request begins
ALTER TABLE deliveries ADD COLUMN audience TEXT NOT NULL DEFAULT 'public';
UPDATE deliveries SET audience = 'staff' WHERE event_id IN (
    SELECT id FROM events
    WHERE format = 'system' OR status != 'actual' OR json_extract(event_json, '$.restricted') IS NOT NULL);
-- the event that stopped it (a cancel, a newer revision, a retraction)
ALTER TABLE deliveries ADD COLUMN closed_by INTEGER REFERENCES events(id);

-- what the store held when the attempt began: the newest event and audit row
ALTER TABLE attempts ADD COLUMN after_event INTEGER;
ALTER TABLE attempts ADD COLUMN after_audit INTEGER;

-- an image's working copy (decoded once, at most 4096 px, JPEG), so a restart does not
-- decode a huge original again
ALTER TABLE media ADD COLUMN work BLOB;
",
    // 7: email. A message's subject and HTML alternative, rendered when the alert is
    // accepted like its text.
    r"
ALTER TABLE deliveries ADD COLUMN subject TEXT;
ALTER TABLE deliveries ADD COLUMN html TEXT;
",
];

/// Bring `conn` up to the latest schema.
pub fn migrate(conn: &mut Connection) -> rusqlite::Result<Result<(), String>> {
    let current: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0))?;
    let latest = MIGRATIONS.len();
    let current = usize::try_from(current).unwrap_or(usize::MAX);
    if current > latest {
        return Ok(Err(format!(
            "the store has schema version {current}, newer than this bullhorn knows ({latest}); run the newer version or restore a backup"
        )));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
        let tx = conn.transaction()?;
        tx.execute_batch(sql)?;
        tx.pragma_update(None, "user_version", i64::try_from(i + 1).unwrap_or(i64::MAX))?;
        tx.commit()?;
    }
    Ok(Ok(()))
}
