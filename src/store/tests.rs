use super::*;
use crate::event::{MsgType, Status};
use crate::lifecycle::{Audience, Disposition, Known as _, StatusClass, Trust};

struct Fixture {
    _dir: tempfile::TempDir,
    path: PathBuf,
    store: Store,
    announced: mpsc::UnboundedReceiver<Queued>,
    health: Arc<Health>,
    writer: Option<WriterThread>,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        // Replace the handle so the writer's queue closes, then wait for it.
        let (tx, _) = mpsc::channel(1);
        self.store.tx = tx;
        if let Some(w) = self.writer.take() {
            w.join();
        }
    }
}

fn open(busy: Duration) -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("sub/bullhorn.db");
    let (tx, announced) = mpsc::unbounded_channel();
    let health = Arc::new(Health::default());
    let opened = Store::open(&path, busy, None, tx, Arc::clone(&health), Arc::new(Metrics::new()), Default::default())
        .expect("open");
    Fixture { _dir: dir, path, store: opened.store, announced, health, writer: Some(opened.writer) }
}

fn event(id: &str, revision: u64, msg_type: &'static str, channels: &[&str]) -> NewEvent {
    let msg_type = MsgType::parse(msg_type).unwrap_or(MsgType::Alert);
    let kind = DeliveryKind::for_msg_type(msg_type);
    NewEvent {
        dedupe_key: format!("json:{id}#r{revision}"),
        incident_key: format!("json:{id}"),
        ident: id.to_owned(),
        revision: Some(revision),
        format: "json",
        event_type: "missing_child".to_owned(),
        msg_type,
        status: Status::Actual,
        trust: Trust::Unsigned,
        priority: Priority::Critical,
        disposition: Disposition::Deliver,
        topic: "cad/a/events".to_owned(),
        payload: Bytes::from(format!("{id}/{revision}")),
        payload_sha256: format!("sha-{id}-{revision}"),
        event_json: "{}".to_owned(),
        headline: "h".to_owned(),
        sent_at: None,
        expires_at: None,
        received_at: 1,
        hold: false,
        lifecycle: NewLifecycle::default(),
        deliveries: channels
            .iter()
            .map(|c| NewDelivery {
                language: String::new(),
                parts: Vec::new(),
                channel: (*c).to_owned(),
                kind,
                audience: Audience::Public,
                priority: Priority::Critical,
                text: format!("{} on {c}", msg_type.as_str()),
                subject: None,
                html: None,
                render_note: None,
                idem_key: format!("k-{id}-{revision}-{c}"),
            })
            .collect(),
    }
}

async fn ingest(f: &Fixture, e: NewEvent) -> Result<IngestOutcome, StoreError> {
    f.store.submit_ingest(IngestRecord::Event(Box::new(e))).await.expect("submit").await
}

fn state(f: &Fixture, id: i64) -> String {
    let conn = Connection::open(&f.path).expect("open");
    conn.query_row("SELECT state FROM deliveries WHERE id = ?1", [id], |r| r.get(0)).expect("row")
}

/// Begin an attempt for delivery `id` on a public channel; its attempt id.
async fn begin(f: &Fixture, id: i64, channel: &str, at: i64, resolve: Option<String>) -> i64 {
    match f.store.begin_attempt(id, channel, true, at, resolve).await.expect("begin") {
        Begun::Attempt(a) => a,
        other => panic!("not begun: {other:?}"),
    }
}

async fn send_ok(f: &Fixture, id: i64, post: &str) {
    let a = begin(f, id, "c", crate::time::now_ms(), None).await;
    let result = AttemptResult {
        end: AttemptEnd::Sent { post: PostRef::id(post), progress: None },
        outcome: "sent",
        http_status: Some(200),
        detail: String::new(),
        note: None,
    };
    f.store.finish_attempt(a, id, crate::time::now_ms(), result).await.expect("finish");
}

#[tokio::test]
async fn schema_is_created_in_wal_with_full_sync_and_reopens() {
    let f = open(Duration::from_secs(1));
    let conn = Connection::open(&f.path).expect("open");
    let mode: String = conn.pragma_query_value(None, "journal_mode", |r| r.get(0)).expect("mode");
    assert_eq!(mode, "wal");
    let version: i64 = conn.pragma_query_value(None, "user_version", |r| r.get(0)).expect("version");
    assert_eq!(version, i64::try_from(schema::MIGRATIONS.len()).expect("len"));
    drop(conn);
    drop(f);
}

#[tokio::test]
async fn a_newer_schema_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("b.db");
    Connection::open(&path).expect("open").pragma_update(None, "user_version", 999).expect("set");
    let (tx, _rx) = mpsc::unbounded_channel();
    let err = Store::open(&path, Duration::from_secs(1), None, tx, Arc::default(), Arc::default(), Default::default())
        .expect_err("newer");
    assert!(err.to_string().contains("newer than this bullhorn knows"), "{err}");
}

#[tokio::test]
async fn accepted_event_announces_its_deliveries_after_commit() {
    let mut f = open(Duration::from_secs(1));
    let out = ingest(&f, event("A", 1, "alert", &["c", "d"])).await.expect("ingest");
    assert_eq!(
        out,
        IngestOutcome::Accepted { event_id: 1, disposition: Disposition::Deliver, deliveries: 2, suppressed: 0 }
    );
    let q = f.announced.recv().await.expect("announced");
    assert_eq!((q.id, q.channel.as_str(), q.priority, q.reply_to), (1, "c", Priority::Critical, None));
    assert_eq!(f.announced.recv().await.map(|q| q.channel), Some("d".to_owned()));
}

#[tokio::test]
async fn duplicates_are_recognised_by_key_and_compared_by_payload() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c"])).await.expect("first");
    assert_eq!(
        ingest(&f, event("A", 1, "alert", &["c"])).await,
        Ok(IngestOutcome::Duplicate { event_id: 1, same_payload: true })
    );
    let mut changed = event("A", 1, "alert", &["c"]);
    changed.payload_sha256 = "other".to_owned();
    assert_eq!(ingest(&f, changed).await, Ok(IngestOutcome::Duplicate { event_id: 1, same_payload: false }));
    let rejects: i64 = Connection::open(&f.path)
        .expect("o")
        .query_row("SELECT COUNT(*) FROM rejects WHERE kind = 'conflicting_duplicate'", [], |r| r.get(0))
        .expect("n");
    assert_eq!(rejects, 1, "the different message is on file, not posted");
    let n: i64 = Connection::open(&f.path)
        .expect("o")
        .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
        .expect("n");
    assert_eq!(n, 1, "a duplicate queues nothing");
}

#[tokio::test]
async fn an_older_revision_after_a_newer_one_is_superseded() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 3, "alert", &["c"])).await.expect("r3");
    assert_eq!(
        ingest(&f, event("A", 2, "alert", &["c"])).await,
        Ok(IngestOutcome::Accepted { event_id: 2, disposition: Disposition::Superseded, deliveries: 0, suppressed: 0 })
    );
}

#[tokio::test]
async fn a_cancel_suppresses_queued_posts_and_replies_only_where_something_went_out() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c", "d"])).await.expect("alert");
    send_ok(&f, 1, "post-1").await; // out on c; still queued on d
    let out = ingest(&f, event("A", 2, "cancel", &["c", "d"])).await.expect("cancel");
    assert_eq!(
        out,
        IngestOutcome::Accepted { event_id: 2, disposition: Disposition::Deliver, deliveries: 1, suppressed: 1 }
    );
    assert_eq!(state(&f, 2), "suppressed", "the queued post on d never goes out");
    let conn = Connection::open(&f.path).expect("o");
    let (channel, kind, reply_to): (String, String, i64) = conn
        .query_row("SELECT channel, kind, reply_to FROM deliveries WHERE event_id = 2", [], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
        })
        .expect("cancel row");
    assert_eq!((channel.as_str(), kind.as_str(), reply_to), ("c", "cancel", 1));
}

#[tokio::test]
async fn an_update_replies_to_the_sent_original_and_replaces_a_queued_one() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c", "d"])).await.expect("alert");
    send_ok(&f, 1, "post-1").await;
    ingest(&f, event("A", 2, "update", &["c", "d"])).await.expect("update");
    let conn = Connection::open(&f.path).expect("o");
    let rows: Vec<(String, Option<i64>)> = conn
        .prepare("SELECT channel, reply_to FROM deliveries WHERE event_id = 2 ORDER BY channel")
        .expect("prep")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("q")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows, [("c".to_owned(), Some(1)), ("d".to_owned(), None)]);
    assert_eq!(state(&f, 2), "suppressed", "d's unsent original is replaced by the update");
}

#[tokio::test]
async fn attempts_are_committed_before_sending_and_refused_once_suppressed() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c"])).await.expect("alert");
    let a = begin(&f, 1, "c", 5, Some("{\"rkey\":\"x\"}".to_owned())).await;
    assert_eq!(state(&f, 1), "in_flight");
    let reader = f.store.reader().expect("reader");
    let pending = reader.pending("c").await.expect("pending");
    assert_eq!(pending[0].open_attempt, Some(a), "an unfinished attempt is visible as unknown");
    let retry = AttemptResult {
        end: AttemptEnd::Retry { not_before: 99 },
        outcome: "retry",
        http_status: Some(500),
        detail: "500".to_owned(),
        note: None,
    };
    f.store.finish_attempt(a, 1, 6, retry).await.expect("finish");
    let pending = reader.pending("c").await.expect("pending");
    assert_eq!((pending[0].open_attempt, pending[0].not_before), (None, Some(99)));
    assert_eq!(reader.sends_since("c", 0).await.expect("log"), [5]);

    f.store.close(1, Closing::Suppressed, "test".to_owned()).await.expect("close");
    assert!(matches!(f.store.begin_attempt(1, "c", true, 7, None).await, Err(StoreError::NotQueued(1))));
    let job = reader.job(1).await.expect("job").expect("exists");
    assert_eq!((job.state.as_str(), job.attempts), ("suppressed", 1));
}

#[tokio::test]
async fn rejects_keep_the_head_of_the_payload() {
    let f = open(Duration::from_secs(1));
    let payload = Bytes::from(vec![b'x'; REJECT_HEAD_BYTES * 2]);
    let r = NewReject {
        received_at: 1,
        topic: "t".to_owned(),
        format: Some("json"),
        kind: "malformed",
        reason: "bad".to_owned(),
        payload,
    };
    let out = f.store.submit_ingest(IngestRecord::Reject(r)).await.expect("submit").await;
    assert_eq!(out, Ok(IngestOutcome::Rejected { reject_id: 1 }));
    let (len, head): (i64, Vec<u8>) = Connection::open(&f.path)
        .expect("o")
        .query_row("SELECT payload_len, payload_head FROM rejects", [], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("row");
    assert_eq!((len, head.len()), (i64::try_from(REJECT_HEAD_BYTES * 2).expect("n"), REJECT_HEAD_BYTES));
}

#[tokio::test]
async fn a_locked_store_fails_the_whole_batch_then_recovers() {
    let f = open(Duration::from_millis(100));
    let locker = Connection::open(&f.path).expect("open");
    locker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let err = ingest(&f, event("A", 1, "alert", &["c"])).await.expect_err("locked");
    assert!(matches!(&err, StoreError::Write(m) if m.contains("locked")), "{err}");
    assert!(!f.health.store_writable(), "readiness reports the failure");
    assert!(f.store.probe().await.is_err());
    locker.execute_batch("ROLLBACK").expect("unlock");
    f.store.probe().await.expect("probe after unlock");
    assert!(f.health.store_writable());
    assert!(
        matches!(ingest(&f, event("A", 1, "alert", &["c"])).await, Ok(IngestOutcome::Accepted { .. })),
        "nothing of the failed batch was kept"
    );
}

#[tokio::test]
async fn a_cancel_while_the_original_is_in_flight_stops_its_retry() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c"])).await.expect("alert");
    let a = begin(&f, 1, "c", 5, None).await;
    // The cancel lands while the request is out: it may have posted, so a cancel is queued
    // to reply to it.
    let out = ingest(&f, event("A", 2, "cancel", &["c"])).await.expect("cancel");
    assert_eq!(
        out,
        IngestOutcome::Accepted { event_id: 2, disposition: Disposition::Deliver, deliveries: 1, suppressed: 0 }
    );
    // The request failed after all: the original is not retried.
    let retry = AttemptResult {
        end: AttemptEnd::Retry { not_before: 0 },
        outcome: "retry",
        http_status: Some(503),
        detail: "503".to_owned(),
        note: None,
    };
    f.store.finish_attempt(a, 1, 6, retry).await.expect("finish");
    assert_eq!(state(&f, 1), "suppressed");
    let reader = f.store.reader().expect("reader");
    assert_eq!(reader.pending("c").await.expect("pending").iter().map(|p| p.id).collect::<Vec<_>>(), [2]);
}

#[tokio::test]
async fn a_newer_revision_suppresses_queued_work_on_every_channel() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c", "d"])).await.expect("r1");
    // Revision 2 routes to c only; d's queued r1 must not go out either.
    let out = ingest(&f, event("A", 2, "alert", &["c"])).await.expect("r2");
    assert_eq!(
        out,
        IngestOutcome::Accepted { event_id: 2, disposition: Disposition::Deliver, deliveries: 1, suppressed: 2 }
    );
    assert_eq!((state(&f, 1), state(&f, 2)), ("suppressed".to_owned(), "suppressed".to_owned()));
}

#[tokio::test]
async fn an_expired_revision_still_suppresses_what_is_queued() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c"])).await.expect("r1");
    let mut r2 = event("A", 2, "alert", &["c"]);
    r2.disposition = Disposition::Expired;
    assert_eq!(
        ingest(&f, r2).await,
        Ok(IngestOutcome::Accepted { event_id: 2, disposition: Disposition::Expired, deliveries: 0, suppressed: 1 })
    );
    assert_eq!(state(&f, 1), "suppressed");
}

#[tokio::test]
async fn finishing_an_attempt_twice_is_refused() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c"])).await.expect("alert");
    send_ok(&f, 1, "p").await;
    let again = AttemptResult {
        end: AttemptEnd::Retry { not_before: 0 },
        outcome: "retry",
        http_status: None,
        detail: String::new(),
        note: None,
    };
    assert_eq!(f.store.finish_attempt(1, 1, 9, again).await, Err(StoreError::NotQueued(1)));
    assert_eq!(state(&f, 1), "sent", "a sent delivery is never put back");
}

#[tokio::test]
async fn held_deliveries_wait_unannounced_and_a_cancel_suppresses_them() {
    let mut f = open(Duration::from_secs(1));
    let mut e = event("H", 1, "alert", &["c"]);
    e.hold = true;
    assert!(matches!(ingest(&f, e).await, Ok(IngestOutcome::Accepted { deliveries: 1, .. })));
    assert_eq!(state(&f, 1), "held");
    assert!(f.announced.try_recv().is_err(), "workers do not hear of a held delivery");
    assert!(f.store.reader().expect("reader").pending("c").await.expect("pending").is_empty());
    ingest(&f, event("H", 2, "cancel", &["c"])).await.expect("cancel");
    assert_eq!(state(&f, 1), "suppressed");
}

#[tokio::test]
async fn a_reply_goes_to_the_original_in_its_own_language() {
    let f = open(Duration::from_secs(1));
    let mut e = event("L", 1, "alert", &["c"]);
    let mut es = e.deliveries[0].clone();
    es.language = "es".to_owned();
    es.idem_key.push_str("-es");
    e.deliveries.push(es);
    ingest(&f, e).await.expect("alert");
    send_ok(&f, 1, "en-post").await;
    send_ok(&f, 2, "es-post").await;
    let mut u = event("L", 2, "update", &["c"]);
    let mut es = u.deliveries[0].clone();
    es.language = "es".to_owned();
    es.idem_key.push_str("-es");
    u.deliveries.push(es);
    ingest(&f, u).await.expect("update");
    let conn = Connection::open(&f.path).expect("o");
    let rows: Vec<(String, i64)> = conn
        .prepare("SELECT language, reply_to FROM deliveries WHERE event_id = 2 ORDER BY language")
        .expect("prep")
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .expect("q")
        .collect::<Result<_, _>>()
        .expect("rows");
    assert_eq!(rows, [(String::new(), 1), ("es".to_owned(), 2)]);
}

fn step(done: usize, posted: &[&str]) -> AttemptResult {
    let posted: Vec<PostRef> = posted.iter().map(|p| PostRef::id(*p)).collect();
    AttemptResult {
        end: AttemptEnd::Step { post: posted.first().cloned(), done, posted, notes: Vec::new() },
        outcome: "sent",
        http_status: Some(200),
        detail: String::new(),
        note: None,
    }
}

#[tokio::test]
async fn a_thread_goes_out_step_by_step_and_a_cancel_keeps_what_went_out() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("T", 1, "alert", &["x"])).await.expect("ingest");
    let reader = f.store.reader().expect("reader");

    // Part 1 of 3 out: queued again for the next part, its post on record, failures reset.
    let a = begin(&f, 1, "x", 1, Some("{\"step\":0}".to_owned())).await;
    f.store.save_scratch(1, "container:0", "c-17").await.expect("scratch");
    f.store.finish_attempt(a, 1, 2, step(1, &["p1"])).await.expect("step");
    assert_eq!(state(&f, 1), "queued");
    let job = reader.job(1).await.expect("read").expect("job");
    assert_eq!(job.progress.done, 1);
    assert_eq!(job.progress.posted, [PostRef::id("p1")]);
    assert_eq!(job.progress.scratch.get("container:0").map(String::as_str), Some("c-17"), "scratch survives a step");
    assert_eq!(job.attempts, 0);
    assert!(f.store.save_scratch(1, "bad key'", "x").await.is_err(), "keys are plain words");

    // A cancel arrives between parts: the thread stops, and what went out counts as sent,
    // so the cancellation is queued as a reply to it.
    let out = ingest(&f, event("T", 2, "cancel", &["x"])).await.expect("cancel");
    assert!(matches!(out, IngestOutcome::Accepted { deliveries: 1, .. }), "{out:?}");
    assert_eq!(state(&f, 1), "sent");
    let target = reader.reply_target(1).await.expect("read").expect("target");
    assert_eq!(target.post, PostRef::id("p1"));
    assert_eq!(target.posts(), [PostRef::id("p1")]);
    let cancel = reader.job(2).await.expect("read").expect("job");
    assert_eq!(cancel.reply_to, Some(1));
}

#[tokio::test]
async fn the_last_step_records_every_post_and_a_withdrawn_thread_stops_as_sent() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("W", 1, "alert", &["x", "y"])).await.expect("ingest");
    // Channel x: two parts, then done; the delivery's post is the thread's first.
    let a = begin(&f, 1, "x", 1, None).await;
    f.store.finish_attempt(a, 1, 2, step(1, &["p1"])).await.expect("step");
    let b = begin(&f, 1, "x", 3, None).await;
    let progress = Progress { done: 2, posted: vec![PostRef::id("p1"), PostRef::id("p2")], ..Progress::default() };
    let sent = AttemptResult {
        end: AttemptEnd::Sent { post: PostRef::id("p1"), progress: Some(progress) },
        outcome: "sent",
        http_status: Some(200),
        detail: String::new(),
        note: Some("posted without its image".to_owned()),
    };
    f.store.finish_attempt(b, 1, 4, sent).await.expect("sent");
    let reader = f.store.reader().expect("reader");
    let target = reader.reply_target(1).await.expect("read").expect("target");
    assert_eq!((target.state.as_str(), target.post.id.as_deref()), ("sent", Some("p1")));
    assert_eq!(target.posts(), [PostRef::id("p1"), PostRef::id("p2")]);
    let conn = Connection::open(&f.path).expect("open");
    let reason: Option<String> =
        conn.query_row("SELECT reason FROM deliveries WHERE id = 1", [], |r| r.get(0)).expect("row");
    assert_eq!(reason.as_deref(), Some("posted without its image"));

    // Channel y: a cancel comes in while part 1 is in flight; when it lands, the rest stops.
    let c = begin(&f, 2, "y", 5, None).await;
    ingest(&f, event("W", 2, "cancel", &["x", "y"])).await.expect("cancel");
    f.store.finish_attempt(c, 2, 6, step(1, &["q1"])).await.expect("step");
    assert_eq!(state(&f, 2), "sent");
    let target = reader.reply_target(2).await.expect("read").expect("target");
    assert_eq!(target.post, PostRef::id("q1"));
}

#[tokio::test]
async fn a_cancel_still_reaches_an_original_whose_outcome_was_never_known() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("U", 1, "alert", &["x"])).await.expect("ingest");
    // The request timed out and the platform could not say: back to the queue, unknown.
    let a = begin(&f, 1, "x", 1, None).await;
    let unknown = AttemptResult {
        end: AttemptEnd::Retry { not_before: 0 },
        outcome: "unknown",
        http_status: None,
        detail: "no response in time".to_owned(),
        note: None,
    };
    f.store.finish_attempt(a, 1, 2, unknown).await.expect("finish");
    let reader = f.store.reader().expect("reader");
    assert!(reader.reply_target(1).await.expect("read").expect("target").maybe_posted);

    // A cancel: the retry is stopped, but the alert may be out, so the cancellation is
    // queued for it all the same.
    let out = ingest(&f, event("U", 2, "cancel", &["x"])).await.expect("cancel");
    assert!(matches!(out, IngestOutcome::Accepted { deliveries: 1, .. }), "{out:?}");
    assert_eq!(state(&f, 1), "suppressed");
    assert_eq!(reader.job(2).await.expect("read").expect("job").reply_to, Some(1));

    // Nothing unknown, nothing out: no cancellation.
    ingest(&f, event("V", 1, "alert", &["x"])).await.expect("ingest");
    let out = ingest(&f, event("V", 2, "cancel", &["x"])).await.expect("cancel");
    assert!(matches!(out, IngestOutcome::Accepted { deliveries: 0, .. }), "{out:?}");
}

/// `e` with deliveries of each of `kinds` (what the pipeline renders when the store is to
/// decide).
fn with_kinds(mut e: NewEvent, kinds: &[DeliveryKind]) -> NewEvent {
    let base = e.deliveries.clone();
    e.deliveries = kinds
        .iter()
        .flat_map(|k| {
            base.iter().map(move |d| NewDelivery {
                kind: *k,
                idem_key: format!("{}-{}", d.idem_key, k.as_str()),
                text: format!("{} {}", k.as_str(), d.channel),
                ..d.clone()
            })
        })
        .collect();
    e
}

fn kinds_of(f: &Fixture, event_id: i64) -> Vec<String> {
    let conn = Connection::open(&f.path).expect("open");
    let mut stmt = conn.prepare("SELECT kind FROM deliveries WHERE event_id = ?1 ORDER BY id").expect("prepare");
    stmt.query_map([event_id], |r| r.get(0)).expect("query").collect::<Result<_, _>>().expect("rows")
}

fn accepted(out: IngestOutcome) -> i64 {
    match out {
        IngestOutcome::Accepted { event_id, .. } => event_id,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn cap_references_tie_a_message_to_its_incident() {
    let f = open(Duration::from_secs(1));
    let mut alert = event("KAR-1", 1, "alert", &["x"]);
    alert.revision = None;
    alert.lifecycle.message_key = Some("ca@doj,KAR-1,2026-11-21T10:00:00-08:00".to_owned());
    let first = accepted(ingest(&f, alert).await.expect("alert"));
    send_ok(&f, 1, "p1").await;

    // The update has its own identifier; its reference names the alert.
    let mut update = with_kinds(event("KAR-2", 1, "update", &["x"]), &[DeliveryKind::Update, DeliveryKind::Post]);
    update.revision = None;
    update.lifecycle.message_key = Some("ca@doj,KAR-2,2026-11-21T11:00:00-08:00".to_owned());
    update.lifecycle.references = vec!["ca@doj,KAR-1,2026-11-21T10:00:00-08:00".to_owned()];
    // The pipeline places it in the incident of the message it names.
    update.incident_key = "json:KAR-1".to_owned();
    let second = accepted(ingest(&f, update).await.expect("update"));
    assert_eq!(kinds_of(&f, second), ["update"], "an update of a known incident replies");
    let reader = f.store.reader().expect("reader");
    let job = reader.job(2).await.expect("read").expect("job");
    assert_eq!(job.reply_to, Some(1));
    assert_eq!(job.incident_key, "json:KAR-1", "the referenced message's incident");
    let _ = first;

    // An update of messages never seen is a new alert.
    let mut orphan = with_kinds(event("KAR-9", 1, "update", &["x"]), &[DeliveryKind::Update, DeliveryKind::Post]);
    orphan.lifecycle.references = vec!["ca@doj,NEVER,2026-11-21T09:00:00-08:00".to_owned()];
    let third = accepted(ingest(&f, orphan).await.expect("orphan"));
    assert_eq!(kinds_of(&f, third), ["post"]);
}

/// Snapshot `n` of incident `id` (each a different payload).
fn snapshot(id: &str, n: u32, digest: &str, closed: bool) -> NewEvent {
    let kinds: &[DeliveryKind] =
        if closed { &[DeliveryKind::Cancel] } else { &[DeliveryKind::Post, DeliveryKind::Update] };
    let mut e = with_kinds(event(id, 1, "alert", &["x"]), kinds);
    e.revision = None;
    e.dedupe_key = format!("eido:{id}#h{n}");
    e.lifecycle.snapshot = Some(Snapshot { digest: digest.to_owned(), closed });
    e
}

#[tokio::test]
async fn cad_snapshots_post_update_on_change_and_close() {
    let f = open(Duration::from_secs(1));
    let first = accepted(ingest(&f, snapshot("INC", 1, "d1", false)).await.expect("first"));
    assert_eq!(kinds_of(&f, first), ["post"], "a new incident is a post");
    send_ok(&f, 1, "p1").await;

    let same = accepted(ingest(&f, snapshot("INC", 2, "d1", false)).await.expect("same"));
    assert!(kinds_of(&f, same).is_empty(), "no material change, no post");
    let conn = Connection::open(&f.path).expect("open");
    let disposition: String =
        conn.query_row("SELECT disposition FROM events WHERE id = ?1", [same], |r| r.get(0)).expect("row");
    assert_eq!(disposition, "unchanged");

    let changed = accepted(ingest(&f, snapshot("INC", 3, "d2", false)).await.expect("changed"));
    assert_eq!(kinds_of(&f, changed), ["update"]);

    let closed = accepted(ingest(&f, snapshot("INC", 4, "d2", true)).await.expect("closed"));
    assert_eq!(kinds_of(&f, closed), ["cancel"], "closing replies where the rule posts on close");
    assert_eq!(state(&f, 2), "suppressed", "the unsent update is stopped");

    // Closed before anything was posted: nothing.
    let quiet = accepted(ingest(&f, snapshot("OTHER", 1, "d9", true)).await.expect("quiet"));
    assert!(kinds_of(&f, quiet).is_empty());
}

#[tokio::test]
async fn after_a_failed_write_no_later_message_commits_before_a_probe() {
    let f = open(Duration::from_millis(100));
    let locker = Connection::open(&f.path).expect("open");
    locker.execute_batch("BEGIN IMMEDIATE").expect("lock");
    // The alert fails (the store is locked)...
    assert!(ingest(&f, event("A", 1, "alert", &["c"])).await.is_err());
    locker.execute_batch("ROLLBACK").expect("unlock");
    // ...and its cancel, right behind it, must not commit ahead of it: refused until the
    // ingest task's probe says the store is back (the broker then redelivers both).
    let err = ingest(&f, event("A", 2, "cancel", &["c"])).await.expect_err("refused");
    assert!(matches!(&err, StoreError::Write(m) if m.contains("earlier write failed")), "{err}");
    assert_eq!(count(&f, "SELECT COUNT(*) FROM events"), 0);
    f.store.probe().await.expect("probe");
    assert!(matches!(ingest(&f, event("A", 1, "alert", &["c"])).await, Ok(IngestOutcome::Accepted { .. })));
    assert!(matches!(ingest(&f, event("A", 2, "cancel", &["c"])).await, Ok(IngestOutcome::Accepted { .. })));
}

fn count(f: &Fixture, sql: &str) -> i64 {
    Connection::open(&f.path).expect("open").query_row(sql, [], |r| r.get(0)).expect("count")
}

async fn kill(f: &Fixture, id: i64) {
    let a = begin(f, id, "c", 1, None).await;
    let dead = AttemptResult {
        end: AttemptEnd::Dead { reason: "400".to_owned() },
        outcome: "dead",
        http_status: Some(400),
        detail: "400".to_owned(),
        note: None,
    };
    f.store.finish_attempt(a, id, 2, dead).await.expect("finish");
}

#[tokio::test]
async fn retry_does_not_queue_again_what_a_cancel_or_a_newer_revision_ended() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c"])).await.expect("alert");
    kill(&f, 1).await;
    ingest(&f, event("A", 2, "cancel", &["c"])).await.expect("cancel");
    let retry = AdminOp::Retry { event_id: 1, channel: None, actor: "t".to_owned() };
    let err = f.store.admin(retry).await.expect_err("refused");
    assert!(matches!(&err, StoreError::Conflict(m) if m.contains("cancelled")), "{err}");
    assert_eq!(state(&f, 1), "dead", "left as it was");

    ingest(&f, event("B", 1, "alert", &["c"])).await.expect("alert");
    kill(&f, 2).await;
    ingest(&f, event("B", 2, "update", &["c"])).await.expect("update");
    let err = f.store.admin(AdminOp::Retry { event_id: 3, channel: None, actor: "t".to_owned() }).await;
    assert!(matches!(&err, Err(StoreError::Conflict(m)) if m.contains("superseded")), "{err:?}");
}

#[tokio::test]
async fn a_pause_committed_before_the_attempt_stops_it_in_that_transaction() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("A", 1, "alert", &["c"])).await.expect("alert");
    let pause = AdminOp::Pause { scope: Scope::All, actor: "t".to_owned(), reason: None };
    f.store.admin(pause).await.expect("pause");
    // The worker had not heard of the pause yet: the store has.
    assert_eq!(f.store.begin_attempt(1, "c", true, 1, None).await, Ok(Begun::Paused));
    assert_eq!(state(&f, 1), "queued", "kept for later");
    // The kill switch covers public channels only; a staff channel goes on.
    assert!(matches!(f.store.begin_attempt(1, "c", false, 1, None).await, Ok(Begun::Attempt(_))));
}

#[tokio::test]
async fn a_staff_delivery_is_closed_when_its_channel_is_public_at_send_time() {
    let f = open(Duration::from_secs(1));
    let mut drill = event("D", 1, "alert", &["c"]);
    drill.status = Status::Exercise;
    drill.deliveries[0].audience = Audience::Staff;
    ingest(&f, drill).await.expect("drill");
    // The channel was staff when it was queued, and is public now.
    let begun = f.store.begin_attempt(1, "c", true, 1, None).await.expect("answer");
    assert!(matches!(&begun, Begun::Closed(why) if why.contains("public")), "{begun:?}");
    assert_eq!(state(&f, 1), "suppressed");
}

#[tokio::test]
async fn alerts_are_named_by_number_or_own_id_and_never_guessed() {
    let f = open(Duration::from_secs(1));
    ingest(&f, event("SAME-1", 1, "alert", &["c"])).await.expect("real");
    let mut drill = event("SAME-1", 1, "alert", &["c"]);
    drill.status = Status::Exercise;
    drill.dedupe_key = "json:exercise:SAME-1#r1".to_owned();
    drill.incident_key = "json:exercise:SAME-1".to_owned();
    ingest(&f, drill).await.expect("drill");
    ingest(&f, event("OTHER", 1, "alert", &["c"])).await.expect("other");
    ingest(&f, event("OTHER", 2, "update", &["c"])).await.expect("other r2");
    let r = f.store.reader().expect("reader");
    assert_eq!(r.find_alert("#2").await, Ok(2));
    assert_eq!(r.find_alert("OTHER").await, Ok(4), "one incident: its newest event");
    let err = r.find_alert("SAME-1").await.expect_err("ambiguous");
    assert!(
        matches!(&err, StoreError::Conflict(m) if m.contains("#1") && m.contains("#2") && m.contains("exercise")),
        "{err}"
    );
    let err = r.find_alert("3").await.expect_err("a bare number is an id");
    assert!(matches!(&err, StoreError::NotFound(m) if m.contains("write #3")), "{err}");
    assert!(matches!(r.find_alert("#99").await, Err(StoreError::NotFound(_))));
}

#[tokio::test]
async fn only_a_channel_owed_a_cancellation_is_given_one_later() {
    let f = open(Duration::from_secs(1));
    // Posted on c, then cancelled while c had no worker (disabled): nothing was made for c.
    ingest(&f, event("A", 1, "alert", &["c"])).await.expect("alert");
    send_ok(&f, 1, "p1").await;
    ingest(&f, event("A", 2, "cancel", &[])).await.expect("cancel");
    // A CAD incident posted on c, then closed quietly (its rule does not post on close).
    ingest(&f, snapshot("CAD", 1, "d1", false)).await.expect("cad");
    send_ok(&f, 2, "p2").await;
    let mut quiet = snapshot("CAD", 2, "d1", true);
    quiet.deliveries.clear();
    quiet.lifecycle.silent = true;
    ingest(&f, quiet).await.expect("closed");
    let missing = f.store.reader().expect("reader").missing_closings("c").await.expect("read");
    assert_eq!(missing.len(), 1, "{missing:?}");
    assert_eq!((missing[0].closer, missing[0].reply_to, missing[0].retraction), (2, 1, false));
    let quietly = f.store.reader().expect("reader").missing_closings("x").await.expect("read");
    assert!(quietly.is_empty(), "a quiet close owes nothing: {quietly:?}");
    // The same close, had its rule posted on close, would be owed.
    let mut conn = Connection::open(&f.path).expect("open");
    conn.execute("UPDATE events SET silent = 0", []).expect("update");
    drop(conn.transaction().expect("tx"));
    assert_eq!(f.store.reader().expect("reader").missing_closings("x").await.expect("read").len(), 1);
}

#[test]
fn a_version_5_store_is_migrated_with_its_incidents_and_audiences() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = Connection::open(dir.path().join("old.db")).expect("open");
    for (i, sql) in schema::MIGRATIONS.iter().take(5).enumerate() {
        conn.execute_batch(sql).expect("old migration");
        conn.pragma_update(None, "user_version", i64::try_from(i + 1).expect("n")).expect("version");
    }
    conn.execute_batch(
        r#"
INSERT INTO events (id, dedupe_key, incident_key, format, event_type, msg_type, status, priority, disposition, topic,
                    payload, payload_sha256, event_json, headline, received_at)
VALUES (1, 'json:A#r1', 'json:A', 'json', 'missing_child', 'alert', 'actual', 0, 'deliver', 't', x'', '', '{"id":"A"}', 'h', 1),
       (2, 'json:A#r2', 'json:A', 'json', 'missing_child', 'cancel', 'actual', 0, 'deliver', 't', x'', '', '{"id":"A"}', 'h', 2),
       (3, 'json:exercise:B#r1', 'json:exercise:B', 'json', 'road_closure', 'alert', 'exercise', 2, 'deliver', 't', x'', '',
        '{"id":"B"}', 'h', 3),
       (4, 'notice:held:3', 'notice:held:3', 'system', 'notice', 'alert', 'system', 1, 'deliver', '', x'', '', '{}', 'h', 4),
       (5, 'cap:R#m1', 'cap:R', 'cap', 'missing_child', 'alert', 'actual', 0, 'deliver', 't', x'', '', '{"id":"R"}', 'h', 5),
       (6, 'cap:exercise:X#m1', 'cap:R', 'cap', 'missing_child', 'cancel', 'exercise', 0, 'deliver', 't', x'', '',
        '{"id":"X"}', 'h', 6);
INSERT INTO deliveries (id, event_id, channel, kind, state, priority, text, idem_key, created_at, updated_at)
VALUES (1, 1, 'c', 'post', 'sent', 0, 't', 'k1', 1, 1),
       (2, 3, 'staff', 'post', 'queued', 2, 't', 'k2', 3, 3),
       (3, 4, 'staff', 'post', 'queued', 1, 't', 'k3', 4, 4);
"#,
    )
    .expect("v5 rows");
    schema::migrate(&mut conn).expect("sql").expect("migrated");
    let row = |sql: &str| -> String { conn.query_row(sql, [], |r| r.get(0)).expect(sql) };
    assert_eq!(row("SELECT state || ' by ' || closed_by FROM incidents WHERE key = 'json:A'"), "cancelled by 2");
    // Filed under the real alert's incident by the old drill bug: it closes nothing.
    assert_eq!(row("SELECT state FROM incidents WHERE key = 'cap:R'"), "open");
    assert_eq!(row("SELECT class FROM incidents WHERE key = 'json:exercise:B'"), "practice");
    assert_eq!(row("SELECT group_concat(audience, ',') FROM deliveries ORDER BY id"), "public,staff,staff");
    assert_eq!(row("SELECT group_concat(COALESCE(ident, '-'), ',') FROM events ORDER BY id"), "A,A,B,-,R,X");
    assert_eq!(row("SELECT group_concat(effect, ',') FROM events ORDER BY id"), "post,cancel,post,post,post,cancel");
    let n: i64 = conn.query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0)).expect("n");
    assert_eq!(n, 3, "notices open no incident");
}

#[tokio::test]
async fn a_message_sent_ahead_by_a_less_trusted_source_does_not_take_the_signed_ones_place() {
    let f = open(Duration::from_secs(1));
    // Unsigned, with the signed alert's id and revision, and closing the incident.
    let spoof = event("INC-1", 1, "cancel", &["c"]);
    ingest(&f, spoof).await.expect("spoof");
    let mut real = event("INC-1", 1, "alert", &["c"]);
    real.trust = Trust::Signed;
    real.payload_sha256 = "real".to_owned();
    let out = ingest(&f, real).await.expect("real");
    assert!(
        matches!(out, IngestOutcome::Accepted { event_id: 2, disposition: Disposition::Deliver, deliveries: 1, .. }),
        "recorded under its own key, and posted: {out:?}"
    );
    let conn = Connection::open(&f.path).expect("open");
    let incident: String =
        conn.query_row("SELECT state || ':' || trust FROM incidents", [], |r| r.get(0)).expect("incident");
    assert_eq!(incident, "open:1", "taken over by the signed source");
    assert_eq!(state(&f, 1), "queued", "the signed alert goes out");
    // Now an unsigned cancel changes nothing.
    let out = ingest(&f, event("INC-1", 2, "cancel", &["c"])).await.expect("cancel");
    assert!(matches!(out, IngestOutcome::Accepted { disposition: Disposition::Untrusted, .. }), "{out:?}");
}

#[tokio::test]
async fn a_late_alert_is_placed_by_the_real_cancel_that_names_it_not_by_a_drill() {
    let f = open(Duration::from_secs(1));
    let alert_key = "s,A,2026-11-21T10:00:00Z";
    let mut cancel = event("C1", 1, "cancel", &["c"]);
    cancel.lifecycle.references = vec![alert_key.to_owned()];
    cancel.incident_key = "cap:s/C1".to_owned();
    ingest(&f, cancel).await.expect("real cancel");
    let mut drill = event("C2", 1, "cancel", &["c"]);
    drill.status = Status::Exercise;
    drill.lifecycle.references = vec![alert_key.to_owned()];
    drill.incident_key = "cap:exercise:s/C2".to_owned();
    drill.dedupe_key = "cap:exercise:C2#m".to_owned();
    ingest(&f, drill).await.expect("drill");
    let reader = f.store.reader().expect("reader");
    let found = reader.referencing(alert_key, StatusClass::Actual, Trust::Unsigned).expect("the real cancel");
    assert_eq!(found.incident_key, "cap:s/C1");
    assert!(reader.referencing(alert_key, StatusClass::Actual, Trust::Signed).is_none(), "not as trusted");
}

/// The SQL of every statement the store caches (`prepare_cached("...")` in its source),
/// and how many are cached from SQL built at run time (which this cannot check).
fn cached_statements() -> (Vec<String>, usize) {
    let sources = [
        include_str!("mod.rs"),
        include_str!("read.rs"),
        include_str!("writer.rs"),
        include_str!("incident.rs"),
        include_str!("operator_reads.rs"),
        include_str!("operator_writes.rs"),
        include_str!("lock.rs"),
    ];
    let mut out = Vec::new();
    let mut computed = 0;
    for src in sources {
        for (at, _) in src.match_indices("prepare_cached(") {
            let rest = src[at + "prepare_cached(".len()..].trim_start();
            let raw =
                rest.strip_prefix("r#\"").map(|r| (r, "\"#")).or_else(|| rest.strip_prefix("r\"").map(|r| (r, "\"")));
            if let Some((raw, end)) = raw {
                out.extend(raw.split_once(end).map(|(sql, _)| sql.to_owned()));
                continue;
            }
            let Some(lit) = rest.strip_prefix('"') else {
                computed += 1;
                continue;
            };
            // A plain literal: escapes, and a backslash ending a line continues it.
            let mut sql = String::new();
            let mut chars = lit.chars().peekable();
            while let Some(c) = chars.next() {
                match c {
                    '"' => break,
                    '\\' => match chars.next() {
                        Some('n') => sql.push('\n'),
                        Some('t') => sql.push('\t'),
                        Some('\r' | '\n') => {
                            while chars.peek().is_some_and(|c| c.is_whitespace()) {
                                chars.next();
                            }
                        }
                        Some(c @ ('"' | '\\' | '\'')) => sql.push(c),
                        other => panic!("an escape this test does not read: \\{other:?} in {sql}"),
                    },
                    c => sql.push(c),
                }
            }
            out.push(sql);
        }
    }
    (out, computed)
}

/// SQLite marks a statement whose plan looked at a bound value (an equality the index
/// does not serve, a partial index's condition) and expires it when its bindings are
/// cleared, which rusqlite does each time a statement goes back to its cache: without
/// the query planner stability guarantee (`keep_plans`) every call parsed it again, a
/// quarter of the daemon's CPU on the delivery path. Every statement the store caches is
/// run five times here, on a connection configured as the store's, and must be
/// prepared once.
#[test]
fn no_cached_statement_is_prepared_again_on_each_use() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut conn = Connection::open(dir.path().join("s.db")).expect("open");
    schema::migrate(&mut conn).expect("migrate").expect("migrate");
    keep_plans(&conn).expect("configure");
    let (statements, computed) = cached_statements();
    assert!(statements.len() > 50, "the store's statements were found: {}", statements.len());
    // `requeued()` caches its UPDATE from a variable; a new one needs a look by hand.
    assert_eq!(computed, 1, "a statement cached from SQL built at run time: check it runs prepared once");
    let mut again = Vec::new();
    for sql in &statements {
        let params = conn.prepare(sql).unwrap_or_else(|e| panic!("{e}: {sql}")).parameter_count();
        for i in 0..5i64 {
            let mut stmt = conn.prepare_cached(sql).expect("prepare");
            for p in 1..=params {
                stmt.raw_bind_parameter(p, i).expect("bind");
            }
            let mut rows = stmt.raw_query();
            let _ = rows.next();
        }
        let stmt = conn.prepare_cached(sql).expect("prepare");
        if stmt.get_status(rusqlite::StatementStatus::RePrepare) > 1 {
            again.push(sql.split_whitespace().collect::<Vec<_>>().join(" "));
        }
    }
    assert!(again.is_empty(), "prepared again on each use: {again:#?}");
}
