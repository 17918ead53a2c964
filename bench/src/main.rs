//! bullhorn's benchmark: measures the daemon against the targets in SPEC section 7, on
//! loopback, with a Mosquitto it starts itself and a fake platform that records what it
//! receives. Run with `bench/run.sh` (it builds the release binaries first).
//!
//! 1. Broker baseline: a backlog of N QoS 1 messages drained by a bare subscriber.
//! 2. Durable ingest: the same backlog drained by bullhorn into committed events and
//!    deliveries, for in-flight windows of 20 and 1000.
//! 3. End-to-end latency, publish to the request arriving at the platform.
//! 4. Priority: one critical alert behind 10,000 queued routine posts.
//! 5. Memory: RSS idle and with 100,000 deliveries queued.
//! 6. Rate-limit accuracy: requests in any window at the platform vs the quota.
//! 7. Drain end to end: the same backlog through bullhorn into a file channel (durable),
//!    beside Node-RED 4 doing mqtt in → template → file (not durable).

mod broker;
mod daemon;
mod mqtt;
mod nodered;
mod platform;

use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use serde::Serialize;

use broker::Mosquitto;
use daemon::{Daemon, Setup};
use platform::{Platform, now_ns};

static UNIQUE: AtomicU64 = AtomicU64::new(0);

pub fn unique() -> u64 {
    UNIQUE.fetch_add(1, Ordering::Relaxed)
}

const TOPIC: &str = "cad/bench/events";

fn event(id: &str, event_type: &str) -> Vec<u8> {
    serde_json::json!({
        "id": id, "revision": 1, "type": event_type, "status": "actual",
        "headline": format!("{id}: SH-358 eastbound closed at Airline Rd after a crash"),
        "instruction": "Avoid the area and use alternate routes.",
        "web": "https://sheriff.example/traffic",
        "fields": { "published_ns": now_ns().to_string() }
    })
    .to_string()
    .into_bytes()
}

fn events(prefix: &str, n: usize, event_type: &str) -> Vec<Vec<u8>> {
    (0..n).map(|i| event(&format!("{prefix}-{i}"), event_type)).collect()
}

fn hooks(url: &str, names: &[&str], extra: &str) -> String {
    names.iter().map(|n| format!("[channels.{n}]\nkind = \"webhook\"\nurl = \"{url}\"\n{extra}\n")).collect()
}

fn wait_until(timeout: Duration, mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    while !f() {
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    true
}

#[derive(Debug, Serialize)]
struct Results {
    machine: String,
    events: usize,
    baseline: Vec<Rate>,
    ingest: Vec<Rate>,
    latency_ms: Latency,
    priority: Vec<Priority>,
    memory: Memory,
    rate_limit: RateLimit,
    /// End to end into a file: bullhorn, then Node-RED when it could be installed.
    drain: Vec<Rate>,
    /// Requests per second to a platform answering in 100 ms, by concurrency.
    window: Vec<Window>,
    sms: Sms,
}

#[derive(Debug, Serialize)]
struct Window {
    concurrency: usize,
    requests: usize,
    per_second: f64,
    /// 0.8 × concurrency / latency.
    target: f64,
}

#[derive(Debug, Serialize)]
struct Sms {
    recipients: usize,
    rate: String,
    latency_ms: u64,
    /// From the publish to the last message at the provider.
    seconds: f64,
}

#[derive(Debug, Serialize)]
struct Rate {
    label: String,
    window: u32,
    per_second: f64,
    seconds: f64,
    /// CPU time per event, microseconds: bullhorn's and the broker's.
    #[serde(skip_serializing_if = "Option::is_none")]
    cpu_us_per_event: Option<(f64, f64)>,
}

#[derive(Debug, Serialize)]
struct Latency {
    samples: usize,
    p50: f64,
    p95: f64,
    p99: f64,
    max: f64,
}

#[derive(Debug, Serialize)]
struct Priority {
    reserve: String,
    token_interval_ms: f64,
    wait_ms: f64,
    routine_sent_before: usize,
}

#[derive(Debug, Serialize)]
struct Memory {
    idle_mib: f64,
    queued_mib: f64,
    queued_deliveries: i64,
}

#[derive(Debug, Serialize)]
struct RateLimit {
    quota: String,
    requests: usize,
    max_in_any_window: usize,
    over: usize,
}

async fn baseline(dir: &Path, n: usize, window: u32) -> Rate {
    let b = Mosquitto::start(dir, window);
    mqtt::create_session(b.port, "bare", "cad/#").await;
    mqtt::publish_all(b.port, TOPIC, events("BASE", n, "road_closure")).await;
    let t = mqtt::drain(b.port, "bare", n).await;
    Rate {
        label: format!("broker → bare QoS 1 subscriber (window {window})"),
        window,
        per_second: n as f64 / t.as_secs_f64(),
        seconds: t.as_secs_f64(),
        cpu_us_per_event: None,
    }
}

async fn ingest(dir: &Path, n: usize, window: u32, protocol: &str) -> Rate {
    let dir = dir.join(format!("ingest-{window}-{protocol}"));
    let b = Mosquitto::start(&dir, window);
    let platform = Platform::default();
    let url = platform.start().await;
    // Two channels held by a tiny quota: deliveries are created, hardly any sent.
    let channels = hooks(&url, &["a", "b"], "rate = \"1/1h\"\nreserve = 0");
    let rm = u16::try_from(window.clamp(1, 65_535)).unwrap_or(u16::MAX);
    let setup = Setup { dir: &dir, broker_port: b.port, protocol, receive_maximum: rm, channels: &channels };
    // First run creates the persistent session, then the backlog is published.
    Daemon::start(&setup).stop();
    mqtt::publish_all(b.port, TOPIC, events("ING", n, "road_closure")).await;
    let d = Daemon::spawn(&setup);
    assert!(wait_until(Duration::from_secs(60), || d.events() >= 1), "no event committed");
    let t0 = Instant::now();
    let (cpu0, broker_cpu0) = (d.cpu_seconds(), b.cpu_seconds());
    let all = i64::try_from(n).unwrap_or(i64::MAX);
    assert!(wait_until(Duration::from_secs(600), || d.events() >= all), "backlog not drained");
    let t = t0.elapsed();
    let per_event = |s: f64| s * 1e6 / n as f64;
    let cpu = (per_event(d.cpu_seconds() - cpu0), per_event(b.cpu_seconds() - broker_cpu0));
    assert_eq!(d.deliveries(), 2 * all, "a delivery per channel for every event");
    d.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Rate {
        label: format!("bullhorn durable ingest, {protocol} (window {window})"),
        window,
        per_second: (n - 1) as f64 / t.as_secs_f64(),
        seconds: t.as_secs_f64(),
        cpu_us_per_event: Some(cpu),
    }
}

/// Counts the lines appended to a file, reading only what is new since the last call.
struct Lines {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    count: usize,
}

impl Lines {
    fn new(path: &Path) -> Lines {
        Lines { path: path.to_path_buf(), file: None, count: 0 }
    }

    fn count(&mut self) -> usize {
        use std::io::Read as _;
        if self.file.is_none() {
            self.file = std::fs::File::open(&self.path).ok();
        }
        if let Some(f) = self.file.as_mut() {
            let mut buf = Vec::new();
            if f.read_to_end(&mut buf).is_ok() {
                self.count += buf.iter().filter(|&&b| b == b'\n').count();
            }
        }
        self.count
    }
}

/// Time from the first of `n` lines of a backlog to the last, and the CPU `cpu` reports
/// meanwhile.
fn time_lines(lines: &mut Lines, before: usize, n: usize, cpu: impl Fn() -> f64) -> (Duration, f64) {
    assert!(wait_until(Duration::from_secs(120), || lines.count() > before), "nothing arrived");
    let (t0, cpu0) = (Instant::now(), cpu());
    assert!(wait_until(Duration::from_secs(1200), || lines.count() >= before + n), "backlog not drained");
    (t0.elapsed(), cpu() - cpu0)
}

/// bullhorn end to end: a backlog in a persistent session drained into committed events
/// and deliveries, each posted to a file channel (no rate limit) and its outcome committed.
async fn drain_file(dir: &Path, n: usize) -> Rate {
    let dir = dir.join("drain-file");
    let b = Mosquitto::start(&dir, 1000);
    let out = dir.join("out.jsonl");
    let channels = format!("[channels.out]\nkind = \"file\"\npath = \"{}\"\n", out.display());
    let setup = Setup { dir: &dir, broker_port: b.port, protocol: "v5", receive_maximum: 1000, channels: &channels };
    Daemon::start(&setup).stop();
    mqtt::publish_all(b.port, TOPIC, events("DRAIN", n, "road_closure")).await;
    let d = Daemon::spawn(&setup);
    let mut lines = Lines::new(&out);
    let (t, cpu) = time_lines(&mut lines, 0, n, || d.cpu_seconds());
    d.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Rate {
        label: "bullhorn end to end into a file channel (durable, MQTT 5, window 1000)".to_owned(),
        window: 1000,
        per_second: (n - 1) as f64 / t.as_secs_f64(),
        seconds: t.as_secs_f64(),
        cpu_us_per_event: Some((cpu * 1e6 / n as f64, 0.0)),
    }
}

/// Node-RED 4 on the same backlog: mqtt in (QoS 1, persistent session) → template → file.
/// `None` when it cannot be installed (no npm or no registry), said on stderr.
async fn drain_nodered(dir: &Path, n: usize) -> Option<Rate> {
    let install = match nodered::install() {
        Ok(d) => d,
        Err(e) => {
            eprintln!("Node-RED left out: {e}");
            return None;
        }
    };
    let dir = dir.join("drain-nodered");
    let b = Mosquitto::start(&dir, 1000);
    let out = dir.join("out.txt");
    let user = dir.join("node-red");
    // The first run makes the persistent session: probe until a line shows it subscribed.
    let nr = nodered::NodeRed::start(&install, &user, b.port, "cad/#", &out);
    let mut lines = Lines::new(&out);
    let deadline = Instant::now() + Duration::from_secs(120);
    while lines.count() == 0 {
        assert!(Instant::now() < deadline, "Node-RED did not subscribe");
        mqtt::publish_all(b.port, TOPIC, [event("PROBE", "road_closure")]).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;
    nr.kill();
    let before = lines.count();
    mqtt::publish_all(b.port, TOPIC, events("NR", n, "road_closure")).await;
    let nr = nodered::NodeRed::start(&install, &user, b.port, "cad/#", &out);
    let (t, cpu) = time_lines(&mut lines, before, n, || nr.cpu_seconds());
    nr.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Some(Rate {
        label: "Node-RED 4: mqtt in → template → file (not durable, window 1000)".to_owned(),
        window: 1000,
        per_second: (n - 1) as f64 / t.as_secs_f64(),
        seconds: t.as_secs_f64(),
        cpu_us_per_event: Some((cpu * 1e6 / n as f64, 0.0)),
    })
}

async fn latency(dir: &Path, n: usize, every: Duration) -> Latency {
    let dir = dir.join("latency");
    let b = Mosquitto::start(&dir, 20);
    let platform = Platform::default();
    let url = platform.start().await;
    let channels = hooks(&url, &["hook"], "");
    let d = Daemon::start(&Setup {
        dir: &dir,
        broker_port: b.port,
        protocol: "v5",
        receive_maximum: 1000,
        channels: &channels,
    });
    let pub_client = mqtt::Steady::connect(b.port).await;
    for i in 0..n {
        pub_client.publish(TOPIC, event(&format!("LAT-{i}"), "road_closure")).await;
        tokio::time::sleep(every).await;
    }
    assert!(wait_until(Duration::from_secs(30), || platform.hits().len() >= n), "not all delivered");
    d.stop();
    let mut ms: Vec<f64> = platform
        .hits()
        .iter()
        .filter_map(|h| h.published_ns.map(|p| (h.at_ns.saturating_sub(p)) as f64 / 1e6))
        .collect();
    ms.sort_by(f64::total_cmp);
    let pct = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    Latency { samples: ms.len(), p50: pct(0.50), p95: pct(0.95), p99: pct(0.99), max: *ms.last().unwrap_or(&0.0) }
}

async fn priority(dir: &Path, backlog: usize, reserve: &str) -> Priority {
    let dir = dir.join(format!("priority-{}", reserve.replace('%', "pct").replace('"', "")));
    let b = Mosquitto::start(&dir, 1000);
    let platform = Platform::default();
    let url = platform.start().await;
    let (limit, window_s) = (100u32, 10u32);
    let channels = hooks(&url, &["hook"], &format!("rate = \"{limit}/{window_s}s\"\nreserve = {reserve}"));
    let d = Daemon::start(&Setup {
        dir: &dir,
        broker_port: b.port,
        protocol: "v5",
        receive_maximum: 1000,
        channels: &channels,
    });
    mqtt::publish_all(b.port, TOPIC, events("NORM", backlog, "road_closure")).await;
    let all = i64::try_from(backlog).unwrap_or(i64::MAX);
    assert!(wait_until(Duration::from_secs(120), || d.events() >= all), "backlog not committed");
    std::thread::sleep(Duration::from_millis(500));
    let routine_sent_before = platform.hits().len();
    mqtt::publish_all(b.port, TOPIC, [event("CRIT-1", "missing_child")]).await;
    let found = wait_until(Duration::from_secs(u64::from(window_s) * 2), || {
        platform.hits().iter().any(|h| h.event_type == "missing_child")
    });
    d.stop();
    let wait_ms = if found {
        let h = platform.hits().into_iter().find(|h| h.event_type == "missing_child").expect("hit");
        (h.at_ns - h.published_ns.unwrap_or(h.at_ns)) as f64 / 1e6
    } else {
        f64::INFINITY
    };
    Priority {
        reserve: reserve.trim_matches('"').to_owned(),
        token_interval_ms: f64::from(window_s) * 1000.0 / f64::from(limit),
        wait_ms,
        routine_sent_before,
    }
}

async fn memory(dir: &Path, events_n: usize) -> Memory {
    let dir = dir.join("memory");
    let b = Mosquitto::start(&dir, 1000);
    let platform = Platform::default();
    let url = platform.start().await;
    let channels = hooks(&url, &["a", "b"], "rate = \"1/1h\"\nreserve = 0");
    let d = Daemon::start(&Setup {
        dir: &dir,
        broker_port: b.port,
        protocol: "v5",
        receive_maximum: 1000,
        channels: &channels,
    });
    std::thread::sleep(Duration::from_secs(2));
    let idle = d.rss_kib();
    mqtt::publish_all(b.port, TOPIC, events("MEM", events_n, "road_closure")).await;
    let all = i64::try_from(events_n).unwrap_or(i64::MAX);
    assert!(wait_until(Duration::from_secs(300), || d.events() >= all), "not committed");
    std::thread::sleep(Duration::from_secs(2));
    let queued = d.rss_kib();
    let deliveries = d.deliveries();
    d.stop();
    Memory { idle_mib: idle as f64 / 1024.0, queued_mib: queued as f64 / 1024.0, queued_deliveries: deliveries - 2 }
}

async fn rate_limit(dir: &Path, n: usize) -> RateLimit {
    let dir = dir.join("rate");
    let b = Mosquitto::start(&dir, 1000);
    let platform = Platform::default();
    let url = platform.start().await;
    let (limit, window) = (50usize, Duration::from_secs(2));
    let channels = hooks(&url, &["hook"], "rate = \"50/2s\"\nreserve = 0");
    let d = Daemon::start(&Setup {
        dir: &dir,
        broker_port: b.port,
        protocol: "v5",
        receive_maximum: 1000,
        channels: &channels,
    });
    mqtt::publish_all(b.port, TOPIC, events("RATE", n, "road_closure")).await;
    assert!(wait_until(Duration::from_secs(60), || platform.hits().len() >= n), "not all delivered");
    d.stop();
    let mut at: Vec<u128> = platform.hits().iter().map(|h| h.at_ns).collect();
    at.sort_unstable();
    let w = window.as_nanos();
    let mut max = 0;
    let mut lo = 0;
    for hi in 0..at.len() {
        while at[hi] - at[lo] >= w {
            lo += 1;
        }
        max = max.max(hi - lo + 1);
    }
    RateLimit { quota: "50/2s".to_owned(), requests: at.len(), max_in_any_window: max, over: max.saturating_sub(limit) }
}

/// Requests per second through one webhook channel of concurrency `c` to a platform that
/// answers in `latency`, no quota: the window's use.
async fn window(dir: &Path, c: usize, latency: Duration) -> Window {
    let dir = dir.join(format!("window-{c}"));
    let b = Mosquitto::start(&dir, 1000);
    let platform = Platform { delay: latency, ..Platform::default() };
    let url = platform.start().await;
    let channels = hooks(&url, &["hook"], &format!("concurrency = {c}"));
    let d = Daemon::start(&Setup {
        dir: &dir,
        broker_port: b.port,
        protocol: "v5",
        receive_maximum: 1000,
        channels: &channels,
    });
    // About four seconds of requests at the target rate.
    let n = (c * 40).max(40);
    mqtt::publish_all(b.port, TOPIC, events("WIN", n, "road_closure")).await;
    assert!(wait_until(Duration::from_secs(600), || platform.hits().len() >= n), "not all delivered");
    d.stop();
    let mut at: Vec<u128> = platform.hits().iter().map(|h| h.at_ns).collect();
    at.sort_unstable();
    // From the first arrival to the last answer.
    let span = (at[n - 1] - at[0]) as f64 / 1e9 + latency.as_secs_f64();
    let _ = std::fs::remove_dir_all(&dir);
    Window { concurrency: c, requests: n, per_second: n as f64 / span, target: 0.8 * c as f64 / latency.as_secs_f64() }
}

/// One critical alert by SMS to `recipients` numbers at a rate of 100/s, the provider
/// answering in `latency`: how long until the last message reaches it.
async fn sms(dir: &Path, recipients: usize, latency: Duration) -> Sms {
    let dir = dir.join("sms");
    let b = Mosquitto::start(&dir, 1000);
    let platform = Platform { delay: latency, ..Platform::default() };
    let url = platform.start().await;
    let base = url.trim_end_matches("/hook");
    let to: Vec<String> = (0..recipients).map(|i| format!("\"+1555{i:07}\"")).collect();
    let rate = "100/1s";
    let channels = format!(
        "[channels.sms]\nkind = \"sms\"\nbase_url = \"{base}\"\naccount_sid = \"AC0123456789abcdef0123456789abcdef\"\n\
         auth_token = \"bench-token\"\nfrom = \"+15550000000\"\nrate = \"{rate}\"\nto = [{}]\n",
        to.join(", ")
    );
    let d = Daemon::start(&Setup {
        dir: &dir,
        broker_port: b.port,
        protocol: "v5",
        receive_maximum: 1000,
        channels: &channels,
    });
    let t0 = Instant::now();
    mqtt::publish_all(b.port, TOPIC, [event("SMS-AMBER", "missing_child")]).await;
    assert!(wait_until(Duration::from_secs(600), || platform.hits().len() >= recipients), "not all sent");
    let seconds = t0.elapsed().as_secs_f64();
    d.stop();
    let _ = std::fs::remove_dir_all(&dir);
    Sms { recipients, rate: rate.to_owned(), latency_ms: u64::try_from(latency.as_millis()).unwrap_or(0), seconds }
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("model name")).map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_default();
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .next()
                .map(|l| l.split_whitespace().nth(1).unwrap_or("0").parse::<u64>().unwrap_or(0) / 1024 / 1024)
        })
        .unwrap_or(0);
    format!("{cores} cores, {mem} GiB, {cpu}")
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let quick = args.iter().any(|a| a == "--quick");
    let n = if quick { 10_000 } else { 100_000 };
    let out = args
        .windows(2)
        .find(|w| w[0] == "--out")
        .map(|w| w[1].clone())
        .unwrap_or_else(|| "bench/results.json".to_owned());
    let only = args.windows(2).find(|w| w[0] == "--only").map(|w| w[1].clone());
    if only.as_deref() == Some("drain") {
        let tmp = std::env::temp_dir().join(format!("bullhorn-bench-{}", std::process::id()));
        let base = baseline(&tmp.join("base"), n, 1000).await;
        let ing = ingest(&tmp, n, 1000, "v5").await;
        let mut drains = vec![drain_file(&tmp, n).await];
        drains.extend(drain_nodered(&tmp, n).await);
        for r in [&base, &ing].into_iter().chain(&drains) {
            println!("{}: {:.0}/s ({:.2} s)", r.label, r.per_second, r.seconds);
        }
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(());
    }
    if only.as_deref() == Some("window") {
        let tmp = std::env::temp_dir().join(format!("bullhorn-bench-{}", std::process::id()));
        for c in [1, 8, 32] {
            let w = window(&tmp, c, Duration::from_millis(100)).await;
            println!("window {c}: {:.1} requests/s (target {:.0})", w.per_second, w.target);
        }
        let s = sms(&tmp, 1000, Duration::from_millis(100)).await;
        println!("SMS to {} at {}: {:.2} s", s.recipients, s.rate, s.seconds);
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(());
    }
    if only.as_deref() == Some("ingest") {
        let tmp = std::env::temp_dir().join(format!("bullhorn-bench-{}", std::process::id()));
        let r = ingest(&tmp, n, 20, "v311").await;
        println!("{} {:.0}/s ({:.2} s) cpu µs/event {:?}", r.label, r.per_second, r.seconds, r.cpu_us_per_event);
        let _ = std::fs::remove_dir_all(&tmp);
        return Ok(());
    }
    let tmp = std::env::temp_dir().join(format!("bullhorn-bench-{}", std::process::id()));
    std::fs::create_dir_all(&tmp)?;
    eprintln!("bullhorn benchmark: {n} events per drain, on {}", machine());

    let mut baselines = Vec::new();
    let mut ingests = Vec::new();
    for window in [20, 1000] {
        eprintln!("broker baseline, window {window}…");
        baselines.push(baseline(&tmp.join(format!("base-{window}")), n, window).await);
        eprintln!("durable ingest, window {window}…");
        ingests.push(ingest(&tmp, n, window, "v311").await);
    }
    eprintln!("durable ingest, MQTT 5…");
    ingests.push(ingest(&tmp, n, 1000, "v5").await);
    eprintln!("latency…");
    let lat = latency(&tmp, if quick { 500 } else { 2000 }, Duration::from_millis(10)).await;
    eprintln!("priority…");
    let prio = vec![priority(&tmp, 10_000, "\"10%\"").await, priority(&tmp, 10_000, "0").await];
    eprintln!("memory…");
    let mem = memory(&tmp, if quick { 10_000 } else { 50_000 }).await;
    eprintln!("rate-limit accuracy…");
    let rate = rate_limit(&tmp, 300).await;
    eprintln!("drain end to end, bullhorn and Node-RED…");
    let mut drain = vec![drain_file(&tmp, n).await];
    drain.extend(drain_nodered(&tmp, n).await);
    eprintln!("concurrent requests to a platform answering in 100 ms…");
    let mut windows = Vec::new();
    for c in [1, 8, 32] {
        windows.push(window(&tmp, c, Duration::from_millis(100)).await);
    }
    eprintln!("SMS to 1,000 numbers…");
    let sms = sms(&tmp, 1000, Duration::from_millis(100)).await;
    let _ = std::fs::remove_dir_all(&tmp);

    let results = Results {
        machine: machine(),
        events: n,
        baseline: baselines,
        ingest: ingests,
        latency_ms: lat,
        priority: prio,
        memory: mem,
        rate_limit: rate,
        drain,
        window: windows,
        sms,
    };
    println!("{}", table(&results));
    std::fs::write(&out, serde_json::to_string_pretty(&results)? + "\n")?;
    eprintln!("written to {out}");
    Ok(())
}

fn table(r: &Results) -> String {
    let mut t = String::from("| measurement | result | SPEC target |\n|---|---|---|\n");
    for b in &r.baseline {
        t += &format!(
            "| {} | {:.0} msg/s ({:.2} s for {}) | the physical limit |\n",
            b.label, b.per_second, b.seconds, r.events
        );
    }
    for i in &r.ingest {
        let base = r.baseline.iter().find(|b| b.window == i.window).map_or(0.0, |b| b.per_second);
        let cpu = i
            .cpu_us_per_event
            .map(|(d, b)| format!("; CPU per event: bullhorn {d:.1} µs, broker {b:.1} µs"))
            .unwrap_or_default();
        t += &format!(
            "| {} | {:.0} events/s ({:.0}% of the broker{cpu}) | ≥ 20,000/s and ≥ 50% |\n",
            i.label,
            i.per_second,
            100.0 * i.per_second / base
        );
    }
    let l = &r.latency_ms;
    t += &format!(
        "| latency publish → platform ({} events) | p50 {:.2} ms, p95 {:.2} ms, p99 {:.2} ms, max {:.2} ms | p99 ≤ 10 ms |\n",
        l.samples, l.p50, l.p95, l.p99, l.max
    );
    for p in &r.priority {
        t += &format!(
            "| critical behind 10,000 queued (reserve {}) | first request after {:.1} ms ({} routine sent before) | ≤ {:.0} ms (token interval + 10 ms) |\n",
            p.reserve,
            p.wait_ms,
            p.routine_sent_before,
            p.token_interval_ms + 10.0
        );
    }
    let m = &r.memory;
    t += &format!("| RSS idle | {:.1} MiB | ≤ 20 MB |\n", m.idle_mib);
    t += &format!("| RSS with {} deliveries queued | {:.1} MiB | ≤ 64 MB |\n", m.queued_deliveries, m.queued_mib);
    let own_ingest = r.ingest.iter().filter(|i| i.window == 1000).map(|i| i.per_second).fold(0.0, f64::max);
    let nodered = r.drain.iter().find(|d| d.label.starts_with("Node-RED")).map(|d| d.per_second);
    for d in &r.drain {
        let cpu = d.cpu_us_per_event.map(|(c, _)| format!("; CPU {c:.1} µs/event")).unwrap_or_default();
        let (vs, target) = if d.label.starts_with("Node-RED") {
            (String::new(), "the comparison")
        } else {
            let nr = nodered.map(|x| format!(", {:.1}× Node-RED", d.per_second / x)).unwrap_or_default();
            (
                format!(" ({:.0}% of its own ingest{nr})", 100.0 * d.per_second / own_ingest),
                "≥ 2× Node-RED, ≥ 50% of ingest",
            )
        };
        t += &format!("| {} | {:.0} events/s{vs} ({:.2} s{cpu}) | {target} |\n", d.label, d.per_second, d.seconds);
    }
    for w in &r.window {
        t += &format!(
            "| webhook answering in 100 ms, concurrency {} ({} requests, no quota) | {:.1} requests/s | ≥ {:.0}/s (0.8 × c / 0.1 s) |\n",
            w.concurrency, w.requests, w.per_second, w.target
        );
    }
    let s = &r.sms;
    t += &format!(
        "| SMS to {} numbers at {}, provider answering in {} ms | done in {:.2} s | ≤ 12 s |\n",
        s.recipients, s.rate, s.latency_ms, s.seconds
    );
    let q = &r.rate_limit;
    t += &format!(
        "| rate limit {} ({} requests) | at most {} in any window, {} over | 0 over |\n",
        q.quota, q.requests, q.max_in_any_window, q.over
    );
    t
}
