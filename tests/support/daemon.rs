//! The bullhorn binary as a separate process, for tests that kill it with SIGKILL.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Daemon {
    config: PathBuf,
    log: PathBuf,
    env: Vec<(String, String)>,
    child: Option<Child>,
}

impl Daemon {
    pub fn start(config: &Path) -> Daemon {
        Self::start_with_env(config, Vec::new())
    }

    /// Start with these environment variables set (`NOTIFY_SOCKET`, say).
    pub fn start_with_env(config: &Path, env: Vec<(String, String)>) -> Daemon {
        let mut d = Daemon { config: config.to_path_buf(), log: config.with_extension("log"), env, child: None };
        d.spawn();
        d
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    fn spawn(&mut self) {
        let log = std::fs::OpenOptions::new().create(true).append(true).open(&self.log).expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_bullhorn"))
            .arg("--config")
            .arg(&self.config)
            .arg("run")
            .env("RUST_LOG", "info,bullhorn=debug")
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start bullhorn");
        self.child = Some(child);
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM and wait for a clean exit; returns whether it exited with success.
    pub fn terminate(&mut self) -> bool {
        let Some(mut c) = self.child.take() else {
            return false;
        };
        let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            if let Ok(Some(status)) = c.try_wait() {
                return status.success();
            }
            if Instant::now() > deadline {
                let _ = c.kill();
                let _ = c.wait();
                return false;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Send a signal by name (`HUP`, `TERM`, ...).
    pub fn signal(&self, name: &str) {
        if let Some(c) = &self.child {
            let _ = Command::new("kill").arg(format!("-{name}")).arg(c.id().to_string()).status();
        }
    }

    pub fn restart(&mut self) {
        self.kill9();
        self.spawn();
    }

    pub fn is_running(&mut self) -> bool {
        self.child.as_mut().is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Wait (at most 20 s) until the admin server on `admin` reports ready (`want`) or not.
    /// Ready means subscribed: a message published before that could miss a fresh session.
    pub async fn wait_ready(&self, admin: u16, want: bool) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
        while ready(admin).await != Some(want) {
            assert!(tokio::time::Instant::now() < deadline, "readyz never became {want}:\n{}", self.log());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// `GET /readyz` on the admin port: `None` when nothing answers.
pub async fn ready(admin: u16) -> Option<bool> {
    let client = bullhorn::channel::http::client().expect("client");
    let r = client.get(format!("http://127.0.0.1:{admin}/readyz")).send().await.ok()?;
    Some(r.status().is_success())
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.kill9();
    }
}
