//! The fault suite: no loss and no needless duplicates under repeated crashes, a platform
//! outage and a full disk, against a real Mosquitto and the daemon as a process.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::support::daemon::Daemon;
use crate::support::mosquitto::Mosquitto;
use crate::support::publisher::Publisher;
use crate::support::webhook::{FakeWebhook, Reply};
use crate::support::*;

const WAIT: Duration = Duration::from_secs(30);

fn config(dir: &Path, broker: &Mosquitto, hook_url: &str, store: Option<&Path>) -> (PathBuf, u16) {
    let admin = free_port();
    let path = write_config(
        dir,
        &format!("url = \"{}\"\nclient_id = \"bullhorn-faults\"", broker.url()),
        &format!(
            "[channels.hook]\nkind = \"webhook\"\nurl = \"{hook_url}\"\n[channels.log]\nkind = \"file\"\npath = \"{}\"\n",
            dir.join("posts.jsonl").display()
        ),
    );
    let mut text = std::fs::read_to_string(&path)
        .expect("read")
        .replace("listen = \"127.0.0.1:0\"", &format!("listen = \"127.0.0.1:{admin}\""));
    if let Some(store) = store {
        text = text.replace(
            &format!("path = \"{}\"", dir.join("bullhorn.db").display()),
            &format!("path = \"{}\"", store.display()),
        );
        text = text.replace("[store]\n", "[store]\nbusy_timeout = \"200ms\"\n");
    }
    std::fs::write(&path, text).expect("write");
    (path, admin)
}

fn lines(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("posts.jsonl"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_sigkills_during_a_burst_lose_nothing_and_duplicate_nothing() {
    let seed = fastrand::u64(..);
    let mut rng = fastrand::Rng::with_seed(seed);
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let hook = FakeWebhook::start(vec![]).await;
    let (config, admin) = config(dir.path(), &broker, &hook.url, None);
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, true).await;

    const N: usize = 300;
    let port = broker.port;
    let burst = tokio::spawn(async move {
        let mut p = Publisher::new(port, "burst");
        for i in 0..N {
            let kind = if i % 10 == 0 { "missing_child" } else { "road_closure" };
            p.publish("cad/a/events", event(&format!("K-{i}"), 1, kind, &format!("burst {i}")), WAIT).await;
            tokio::time::sleep(Duration::from_millis(8)).await;
        }
    });
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(rng.u64(150..700))).await;
        daemon.kill9();
        daemon.restart();
    }
    burst.await.expect("burst published");

    let all = eventually(Duration::from_secs(60), || (lines(dir.path()).len() >= N).then_some(())).await;
    assert!(all.is_some(), "seed {seed}: {} of {N} in the file channel\n{}", lines(dir.path()).len(), daemon.log());
    tokio::time::sleep(Duration::from_secs(1)).await;
    let mut incidents: Vec<String> =
        lines(dir.path()).iter().map(|l| l["incident"].as_str().unwrap_or("").to_owned()).collect();
    let total = incidents.len();
    incidents.sort();
    incidents.dedup();
    assert_eq!((total, incidents.len()), (N, N), "seed {seed}: the file channel has every event exactly once");

    let reqs = hook.requests();
    let mut ids: Vec<String> = reqs.iter().map(|r| r.id()).collect();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), N, "seed {seed}: every event reached the webhook");
    // A resend after a kill mid-request carries the same webhook-id: receivers drop it.
    // At most one resend per request in flight (the window, 8) per kill.
    assert!(reqs.len() - N <= 5 * 8, "seed {seed}: at most a window of resends per kill, got {}", reqs.len() - N);
    assert!(daemon.terminate(), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sigkill_with_a_full_window_in_flight_loses_nothing_and_posts_nothing_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    // The first eight requests are taken and answered only after the kill.
    let slow = Reply::Delayed(Duration::from_secs(20), Box::new(Reply::ok()));
    let hook = FakeWebhook::start(vec![slow; 8]).await;
    let (config, admin) = config(dir.path(), &broker, &hook.url, None);
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, true).await;
    const N: usize = 20;
    let mut p = Publisher::new(broker.port, "window");
    for i in 0..N {
        let kind = if i == 5 { "missing_child" } else { "road_closure" };
        p.publish("cad/a/events", event(&format!("W-{i}"), 1, kind, &format!("window {i}")), WAIT).await;
    }
    hook.wait_for(8, WAIT).await;
    let db = dir.path().join("bullhorn.db");
    let open = "SELECT COUNT(*) FROM attempts WHERE channel = 'hook' AND finished_at IS NULL";
    let full = eventually(WAIT, || (count(&db, open) == 8).then_some(())).await;
    assert!(full.is_some(), "a full window of 8 in flight: {} open", count(&db, open));
    daemon.kill9();
    assert_eq!(count(&db, open), 8, "the kill left the window's attempts open");

    daemon.restart();
    let reqs = eventually(Duration::from_secs(60), || {
        let r = hook.requests();
        let mut ids: Vec<String> = r.iter().map(|r| r.id()).collect();
        ids.sort();
        ids.dedup();
        (ids.len() >= N).then_some(r)
    })
    .await
    .unwrap_or_else(|| panic!("not every event reached the webhook: {}\n{}", hook.requests().len(), daemon.log()));
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(count(&db, open), 0, "every open attempt resolved");
    assert_eq!(count(&db, "SELECT COUNT(*) FROM deliveries WHERE channel = 'hook' AND state = 'sent'"), N as i64);
    // Each delivery under one webhook-id, so the receiver drops the resends of the eight.
    let mut by_delivery: std::collections::HashMap<i64, std::collections::BTreeSet<String>> = Default::default();
    for r in &reqs {
        by_delivery.entry(r.json()["data"]["delivery_id"].as_i64().unwrap_or(-1)).or_default().insert(r.id());
    }
    assert_eq!(by_delivery.len(), N);
    assert!(by_delivery.values().all(|ids| ids.len() == 1), "{by_delivery:?}");
    assert!(hook.requests().len() <= N + 8, "at most the window resent: {}", hook.requests().len());
    // The file channel, which reads back, has each exactly once.
    let all = eventually(WAIT, || (lines(dir.path()).len() >= N).then_some(())).await;
    assert!(all.is_some(), "{} lines", lines(dir.path()).len());
    let mut incidents: Vec<String> =
        lines(dir.path()).iter().map(|l| l["incident"].as_str().unwrap_or("").to_owned()).collect();
    incidents.sort();
    incidents.dedup();
    assert_eq!((lines(dir.path()).len(), incidents.len()), (N, N), "each event once in the file");
    assert!(daemon.terminate(), "{}", daemon.log());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_platform_outage_then_recovery_delivers_everything_in_priority_order_without_a_tight_loop() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    // Down: nothing listens on the platform's port.
    let port = free_port();
    let (config, admin) = config(dir.path(), &broker, &format!("http://127.0.0.1:{port}/hook"), None);
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, true).await;
    let mut p = Publisher::new(broker.port, "outage");
    for i in 0..6 {
        p.publish("cad/a/events", event(&format!("O-{i}"), 1, "road_closure", &format!("routine {i}")), WAIT).await;
    }
    p.publish("cad/a/events", event("O-AMBER", 1, "missing_child", "AMBER during the outage"), WAIT).await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    let db = dir.path().join("bullhorn.db");
    let refused = count(&db, "SELECT COUNT(*) FROM attempts WHERE channel = 'hook'");

    // Then it answers, but with 503s for a while; then it is back.
    let hook = FakeWebhook::start_on(port, vec![Reply::status(503, "maintenance"); 4]).await;
    let reqs = hook.wait_for(4 + 7, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let attempts = count(&db, "SELECT COUNT(*) FROM attempts WHERE channel = 'hook'");
    assert!(daemon.terminate(), "{}", daemon.log());

    // The channel backed off as a whole: a handful of attempts in 2 s, not one per
    // delivery per retry (a tight loop would make thousands).
    assert!((3..=40).contains(&refused), "{refused} attempts while the platform refused connections");
    assert_eq!(hook.requests().len(), 11, "nothing lost, nothing sent twice");
    // The channel probes with one request (the most urgent) until the platform takes
    // one: the critical alert arrives first.
    let delivered: Vec<String> = reqs[4..].iter().map(|r| r.text()).collect();
    assert_eq!(
        delivered[0], "AMBER during the outage",
        "the critical alert first once the platform is back: {delivered:?}"
    );
    // Then the rest, begun oldest first (several in flight at once may arrive in any order).
    let begun = begun_in_order(&db, "hook");
    assert_eq!(begun[0], "AMBER during the outage");
    let routine: Vec<&String> = begun[1..].iter().collect();
    let mut sorted = routine.clone();
    sorted.sort();
    assert_eq!(routine, sorted, "then the rest, oldest first: {begun:?}");
    assert!(attempts <= refused + 11 + 1, "{attempts} attempts in all");
}

/// A tmpfs of `size`, unmounted when dropped. Needs root (CI runs as root).
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        std::fs::create_dir_all(dir).expect("dir");
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("mount");
        assert!(
            out.status.success(),
            "this test mounts a small tmpfs to fill it, which needs root: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        Tmpfs(dir.to_path_buf())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.0).status();
    }
}

/// Fill the file system under `dir` with `filler`; returns once a write fails.
fn fill(filler: &Path) {
    use std::io::Write as _;
    let mut f = std::fs::File::create(filler).expect("filler");
    let chunk = vec![0u8; 64 * 1024];
    while f.write_all(&chunk).is_ok() {}
    let _ = f.sync_all();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_stops_acks_and_everything_arrives_once_space_returns() {
    let dir = tempfile::tempdir().expect("tempdir");
    let fs = Tmpfs::mount(&dir.path().join("store"), "4m");
    let broker = Mosquitto::start(&dir.path().join("mosquitto"));
    let hook = FakeWebhook::start(vec![]).await;
    let (config, admin) = config(dir.path(), &broker, &hook.url, Some(&fs.0.join("bullhorn.db")));
    let mut daemon = Daemon::start(&config);
    daemon.wait_ready(admin, true).await;

    let filler = fs.0.join("filler");
    fill(&filler);
    let mut p = Publisher::new(broker.port, "full");
    for i in 0..20 {
        p.publish("cad/a/events", event(&format!("F-{i}"), 1, "road_closure", &format!("full {i}")), WAIT).await;
    }
    daemon.wait_ready(admin, false).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let before = hook.requests().len();

    // Space returns: the daemon probes, reconnects, the broker redelivers.
    std::fs::remove_file(&filler).expect("free space");
    daemon.wait_ready(admin, true).await;
    let reqs = hook.wait_for(20, WAIT).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(daemon.terminate(), "{}", daemon.log());
    let mut texts: Vec<String> = reqs.iter().map(|r| r.text()).collect();
    texts.sort();
    texts.dedup();
    assert_eq!(texts.len(), 20, "every message once");
    assert_eq!(hook.requests().len(), 20);
    assert!(before < 20, "the full disk held things up");
    assert!(daemon.log().contains("store write failed"), "{}", daemon.log());
}
