//! The bullhorn release binary as its own process, configured for one measurement.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    pub child: Child,
    pub db: PathBuf,
    pub admin: u16,
    /// A read connection for progress probes, opened once the store exists.
    probe: std::cell::RefCell<Option<rusqlite::Connection>>,
}

pub struct Setup<'a> {
    pub dir: &'a Path,
    pub broker_port: u16,
    pub protocol: &'a str,
    pub receive_maximum: u16,
    /// `[channels.*]` sections.
    pub channels: &'a str,
}

fn binary() -> PathBuf {
    let exe = std::env::current_exe().expect("exe");
    exe.with_file_name("bullhorn")
}

impl Daemon {
    /// Start and wait until ready (connected, subscribed).
    pub fn start(s: &Setup<'_>) -> Daemon {
        let d = Daemon::spawn(s);
        d.wait_ready();
        d
    }

    /// Start without waiting.
    pub fn spawn(s: &Setup<'_>) -> Daemon {
        std::fs::create_dir_all(s.dir.join("templates")).expect("dir");
        std::fs::write(s.dir.join("templates/default.txt"), "{{ headline }}\n{{ instruction }}\n{{ web }}")
            .expect("template");
        let admin = super::broker::free_port();
        let db = s.dir.join("bullhorn.db");
        let config = s.dir.join("bullhorn.toml");
        std::fs::write(
            &config,
            format!(
                r#"
[log]
level = "warn"
[mqtt]
url = "mqtt://127.0.0.1:{port}"
client_id = "bullhorn-bench"
protocol = "{protocol}"
receive_maximum = {rm}
[[mqtt.subscribe]]
topic = "cad/+/events"
format = "json"
[store]
path = "{db}"
[admin]
listen = "127.0.0.1:{admin}"
[events.missing_child]
priority = "critical"
[events.road_closure]
priority = "normal"
{channels}
"#,
                port = s.broker_port,
                protocol = s.protocol,
                rm = s.receive_maximum,
                db = db.display(),
                channels = s.channels
            ),
        )
        .expect("config");
        // BENCH_WRAP="perf record -g -o /tmp/perf.data --" runs the daemon under a profiler.
        let wrap: Vec<String> =
            std::env::var("BENCH_WRAP").unwrap_or_default().split_whitespace().map(str::to_owned).collect();
        let mut cmd = match wrap.split_first() {
            Some((first, rest)) => {
                let mut c = Command::new(first);
                c.args(rest).arg(binary());
                c
            }
            None => Command::new(binary()),
        };
        let child = cmd
            .arg("--config")
            .arg(&config)
            .arg("run")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e} (run bench/run.sh, which builds it)", binary().display()));
        Daemon { child, db, admin, probe: std::cell::RefCell::new(None) }
    }

    fn query(&self, sql: &str) -> i64 {
        let mut probe = self.probe.borrow_mut();
        if probe.is_none() && self.db.exists() {
            *probe = rusqlite::Connection::open_with_flags(&self.db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY).ok();
        }
        probe.as_ref().and_then(|c| c.query_row(sql, [], |r| r.get(0)).ok()).unwrap_or(0)
    }

    /// CPU seconds (user + system) the daemon has used so far.
    pub fn cpu_seconds(&self) -> f64 {
        super::broker::cpu_seconds(self.child.id())
    }

    fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.ready() {
            assert!(Instant::now() < deadline, "bullhorn did not become ready");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// `GET /readyz` over a bare TCP connection.
    pub fn ready(&self) -> bool {
        use std::io::{Read as _, Write as _};
        let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", self.admin)) else { return false };
        let _ = s.write_all(b"GET /readyz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        out.starts_with("HTTP/1.1 200")
    }

    pub fn rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }

    /// The highest committed event id (a cheap progress probe).
    pub fn events(&self) -> i64 {
        self.query("SELECT COALESCE(MAX(id), 0) FROM events")
    }

    pub fn deliveries(&self) -> i64 {
        self.query("SELECT COALESCE(MAX(id), 0) FROM deliveries")
    }

    pub fn stop(mut self) {
        let _ = Command::new("kill").arg("-TERM").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while self.child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
