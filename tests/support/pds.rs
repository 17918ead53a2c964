//! The reference Bluesky PDS (`@atproto/pds`), started by a test on a free loopback port
//! with one account, killed when dropped. It validates records against the real
//! lexicons, so a post it accepts is one Bluesky would accept.
//!
//! `.ci/run` installs it into `$BULLHORN_ATPROTO_PDS` (default
//! `~/.cache/bullhorn-atproto-pds`, see `../shared/tools/atproto-pds/README.md`). A test
//! that needs it fails, never skips, when it is missing.

use std::io::{BufRead as _, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

#[derive(Debug)]
pub struct Pds {
    pub url: String,
    pub handle: String,
    pub password: String,
    pub did: String,
    child: Child,
}

impl Drop for Pds {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn install_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BULLHORN_ATPROTO_PDS").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache.join("bullhorn-atproto-pds")
}

impl Pds {
    /// Start a PDS; `rate_limits` turns on its real rate limiter.
    pub fn start(rate_limits: bool) -> Pds {
        let dir = install_dir();
        let script = dir.join("run-pds.js");
        assert!(
            script.is_file() && dir.join("node_modules/@atproto/pds").is_dir(),
            "the atproto PDS is not installed in {}: run `bash .ci/run` (it installs it) or follow ../shared/tools/atproto-pds/README.md",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(&script)
            .env("PDS_RATE_LIMITS", if rate_limits { "1" } else { "0" })
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start node (is Node.js installed?)");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let deadline = Instant::now() + Duration::from_secs(60);
        let line = rx.recv_timeout(deadline - Instant::now()).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("the PDS did not start within 60 s")
        });
        let v: serde_json::Value =
            serde_json::from_str(line.trim()).unwrap_or_else(|e| panic!("PDS said {line:?}: {e}"));
        let field = |k: &str| v[k].as_str().unwrap_or_else(|| panic!("PDS line lacks {k}: {line}")).to_owned();
        Pds { url: field("pds"), handle: field("handle"), password: field("password"), did: field("did"), child }
    }

    /// GET an XRPC query without auth.
    pub async fn query(&self, method: &str, params: &[(&str, &str)]) -> (u16, serde_json::Value) {
        let client = bullhorn::channel::http::client().expect("client");
        let r = client.get(format!("{}/xrpc/{method}", self.url)).query(params).send().await.expect("xrpc");
        let status = r.status().as_u16();
        (status, r.json().await.unwrap_or_default())
    }

    /// The post record at `uri`, if it exists.
    pub async fn record(&self, uri: &str) -> Option<serde_json::Value> {
        let rkey = uri.rsplit('/').next().expect("rkey");
        let (status, v) = self
            .query(
                "com.atproto.repo.getRecord",
                &[("repo", &self.did), ("collection", "app.bsky.feed.post"), ("rkey", rkey)],
            )
            .await;
        (status == 200).then(|| v["value"].clone())
    }
}
