//! A Mosquitto broker started by a test: free loopback port, persistence in a temp dir,
//! killed when dropped. `.ci/run` installs Mosquitto; a test fails (never skips) without it.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Mosquitto {
    pub port: u16,
    dir: PathBuf,
    /// Extra listener sections appended to the config (e.g. a TLS listener).
    extra: String,
    child: Option<Child>,
}

fn binary() -> PathBuf {
    for candidate in ["/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto", "/usr/bin/mosquitto"] {
        if Path::new(candidate).exists() {
            return PathBuf::from(candidate);
        }
    }
    which_in_path("mosquitto").unwrap_or_else(|| {
        panic!("mosquitto is not installed: run `bash .ci/run` (it installs it) or `apt-get install mosquitto`")
    })
}

fn which_in_path(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| std::env::split_paths(&p).map(|d| d.join(name)).find(|f| f.is_file()))
}

impl Mosquitto {
    /// Start on a free port with its persistence files in `dir`.
    pub fn start(dir: &Path) -> Mosquitto {
        Self::start_with(dir, "")
    }

    /// Start with `extra` appended to the config (more listeners).
    pub fn start_with(dir: &Path, extra: &str) -> Mosquitto {
        let mut m =
            Mosquitto { port: super::free_port(), dir: dir.to_path_buf(), extra: extra.to_owned(), child: None };
        m.spawn();
        m
    }

    fn spawn(&mut self) {
        std::fs::create_dir_all(&self.dir).expect("mosquitto dir");
        let conf = self.dir.join("mosquitto.conf");
        std::fs::write(
            &conf,
            format!(
                "listener {} 127.0.0.1\nallow_anonymous true\n# Started as root, Mosquitto would switch to its own user, which cannot write the\n# persistence file into our temp dir: sessions would silently not survive a restart.\n# (No effect when not root.)\nuser root\npersistence true\npersistence_location {}/\nautosave_interval 1\nmax_inflight_messages 20\nmax_queued_messages 100000\nlog_dest stderr\nlog_type error\n{}",
                self.port,
                self.dir.display(),
                self.extra
            ),
        )
        .expect("mosquitto.conf");
        let child = Command::new(binary())
            .arg("-c")
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start mosquitto");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
            assert!(Instant::now() < deadline, "mosquitto did not start on port {}", self.port);
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn url(&self) -> String {
        format!("mqtt://127.0.0.1:{}", self.port)
    }

    /// Stop cleanly (SIGTERM), so it saves its persistence file.
    pub fn stop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = Command::new("kill").arg("-TERM").arg(c.id().to_string()).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while c.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Start again on the same port with the same persistence.
    pub fn restart(&mut self) {
        self.stop();
        self.spawn();
    }
}

impl Drop for Mosquitto {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}
