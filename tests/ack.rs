//! PUBACKs leave in arrival order, rejected messages included, and only after their
//! record is committed.

use std::time::Duration;

use crate::support::session_broker::SessionBroker;
use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pubacks_leave_in_arrival_order_while_the_store_is_slow() {
    let broker = SessionBroker::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(
        dir.path(),
        &format!("url = \"mqtt://127.0.0.1:{}\"\nprotocol = \"v311\"", broker.port),
        &format!("[channels.log]\nkind = \"file\"\npath = \"{}\"\n", dir.path().join("posts.jsonl").display()),
    );
    let app = start_app(&config).await;
    eventually(Duration::from_secs(10), || broker.subscribed().then_some(())).await.expect("daemon subscribed");

    // Another connection holds the write lock: the writer waits (busy timeout 5 s).
    let lock = rusqlite::Connection::open(dir.path().join("bullhorn.db")).expect("open");
    lock.execute_batch("BEGIN IMMEDIATE").expect("lock");
    let messages = [
        event("A-1", 1, "road_closure", "valid 1"),
        "{not json".to_owned(),
        event("A-2", 1, "road_closure", "valid 2"),
        event("A-3", 1, "alien_invasion", "unknown type"),
        event("A-4", 1, "road_closure", "valid 3"),
        "\u{0}".to_owned(),
    ];
    for m in &messages {
        broker.publish("cad/x/events", m.as_bytes().to_vec());
    }
    tokio::time::sleep(Duration::from_millis(700)).await;
    assert_eq!(broker.ack_ids(), Vec::<u16>::new(), "nothing is acked before its commit, rejects included");

    lock.execute_batch("COMMIT").expect("unlock");
    let acks = eventually(Duration::from_secs(10), || {
        let a = broker.ack_ids();
        (a.len() >= messages.len()).then_some(a)
    })
    .await
    .expect("all acked");
    assert_eq!(acks, [1, 2, 3, 4, 5, 6], "PUBACKs in arrival order");
    app.stop().await;
    let db = dir.path().join("bullhorn.db");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM events"), 3);
    assert_eq!(count(&db, "SELECT COUNT(*) FROM rejects"), 3);
}
