//! A real SMTP server for the email channel's tests: aiosmtpd, run by
//! `support/smtp_server.py` on a free loopback port (with STARTTLS, implicit TLS or none,
//! with or without AUTH), killed when dropped. Each message it accepts is one JSON line:
//! the envelope, the threading headers and every MIME part, parsed by Python's email
//! package rather than by us.
//!
//! `.ci/run` installs aiosmtpd into a virtualenv at `$BULLHORN_AIOSMTPD` (default
//! `~/.cache/bullhorn-aiosmtpd`). A test that needs it fails, never skips, without it.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How the server secures its sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Security {
    None,
    StartTls,
    Implicit,
}

#[derive(Debug, Clone)]
pub struct Options {
    pub tls: Security,
    /// The server's certificate and key (PEM), for TLS.
    pub cert: Option<(String, String)>,
    /// The user and password AUTH must give.
    pub auth: Option<(String, String)>,
    /// Refuse the first N messages with 451 at the end of DATA.
    pub fail_data: u32,
}

impl Options {
    pub fn plain() -> Options {
        Options { tls: Security::None, cert: None, auth: None, fail_data: 0 }
    }
}

#[derive(Debug)]
pub struct Smtp {
    pub port: u16,
    out: PathBuf,
    child: Child,
}

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn python() -> PathBuf {
    let dir = std::env::var_os("BULLHORN_AIOSMTPD").filter(|d| !d.is_empty()).map(PathBuf::from).unwrap_or_else(|| {
        std::env::var_os("XDG_CACHE_HOME")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
            .unwrap_or_else(|| PathBuf::from("/tmp"))
            .join("bullhorn-aiosmtpd")
    });
    let python = dir.join("bin/python");
    assert!(
        python.is_file(),
        "aiosmtpd is not installed in {}: run `bash .ci/run` (it installs it) or `python3 -m venv {0} && {0}/bin/pip install aiosmtpd`",
        dir.display()
    );
    python
}

impl Smtp {
    /// Start a server writing what it accepts under `dir`.
    pub fn start(dir: &Path, opts: &Options) -> Smtp {
        let port = super::free_port();
        let out = dir.join(format!("smtp-{port}.jsonl"));
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/support/smtp_server.py");
        let mut cmd = Command::new(python());
        cmd.arg(&script).arg("--port").arg(port.to_string()).arg("--out").arg(&out);
        if let Some((cert, key)) = &opts.cert {
            let (c, k) = (dir.join(format!("smtp-{port}.pem")), dir.join(format!("smtp-{port}.key")));
            std::fs::write(&c, cert).expect("cert");
            std::fs::write(&k, key).expect("key");
            cmd.arg("--cert").arg(c).arg("--key").arg(k);
        }
        assert_eq!(opts.tls == Security::None, opts.cert.is_none(), "TLS needs a certificate, and only TLS");
        if opts.tls == Security::Implicit {
            cmd.arg("--implicit");
        }
        if let Some((user, password)) = &opts.auth {
            cmd.arg("--auth").arg(format!("{user}:{password}"));
        }
        cmd.arg("--fail-data").arg(opts.fail_data.to_string());
        let mut child = cmd.stdout(Stdio::piped()).stderr(Stdio::null()).spawn().expect("start the SMTP server");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if line.trim() == "ready" {
                    let _ = tx.send(());
                }
            }
        });
        let smtp = Smtp { port, out, child };
        rx.recv_timeout(Duration::from_secs(20)).unwrap_or_else(|_| panic!("the SMTP server did not start on {port}"));
        smtp
    }

    /// Every message accepted so far, oldest first.
    pub fn messages(&self) -> Vec<serde_json::Value> {
        let text = std::fs::read_to_string(&self.out).unwrap_or_default();
        text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect()
    }

    /// Wait until at least `n` messages were accepted (at most `timeout`).
    pub async fn wait_for(&self, n: usize, timeout: Duration) -> Vec<serde_json::Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let got = self.messages();
            if got.len() >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The parts of `message` of MIME type `ty`.
pub fn parts<'a>(message: &'a serde_json::Value, ty: &str) -> Vec<&'a serde_json::Value> {
    message["parts"].as_array().into_iter().flatten().filter(|p| p["type"] == ty).collect()
}
