//! Node-RED 4 as the comparison the issue asks for: `mqtt in` (QoS 1, a persistent
//! session) → `template` → `file` (a line per message), the flow an agency might build by
//! hand. It acknowledges each message when it arrives, before the line is written: it is
//! not durable, and that is the point of the comparison.
//!
//! Installed once from npm into a cache outside the repository (`BULLHORN_NODE_RED`, else
//! `$XDG_CACHE_HOME/bullhorn-node-red`, else `~/.cache/bullhorn-node-red`), run from there
//! with its own user directory per measurement.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::broker::free_port;

const VERSION: &str = "4";

/// Where Node-RED is installed.
fn install_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BULLHORN_NODE_RED") {
        return PathBuf::from(d);
    }
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(|| PathBuf::from("/tmp"));
    cache.join("bullhorn-node-red")
}

fn red_js(dir: &Path) -> PathBuf {
    dir.join("node_modules/node-red/red.js")
}

/// Install Node-RED unless it is there; `Err` says why it cannot be (no npm, no network).
pub fn install() -> Result<PathBuf, String> {
    let dir = install_dir();
    if red_js(&dir).is_file() {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    std::fs::write(dir.join("package.json"), "{\"private\": true}\n").map_err(|e| e.to_string())?;
    eprintln!("installing Node-RED {VERSION} into {}…", dir.display());
    let status = Command::new("npm")
        .args(["install", "--no-audit", "--no-fund", "--loglevel=error", &format!("node-red@{VERSION}")])
        .current_dir(&dir)
        .status()
        .map_err(|e| format!("npm: {e}"))?;
    if !status.success() || !red_js(&dir).is_file() {
        return Err(format!("npm install node-red@{VERSION} failed ({status})"));
    }
    Ok(dir)
}

/// A running Node-RED with the benchmark's flow.
pub struct NodeRed {
    child: Child,
}

impl NodeRed {
    /// Start Node-RED with `user_dir` (its flow and settings written there) subscribed to
    /// `topic` on the broker at `broker_port` as client `client_id`, appending each
    /// message's payload as a line to `out`.
    pub fn start(install: &Path, user_dir: &Path, broker_port: u16, topic: &str, out: &Path) -> NodeRed {
        std::fs::create_dir_all(user_dir).expect("node-red dir");
        // Ids must not equal any property value (Node-RED takes such a value for a
        // reference to that node): "template" for the template node is "circular".
        let flows = serde_json::json!([
            { "id": "bench.tab", "type": "tab", "label": "bench" },
            {
                "id": "bench.broker", "type": "mqtt-broker", "name": "mosquitto",
                "broker": "127.0.0.1", "port": broker_port.to_string(), "clientid": "nodered-bench",
                "usetls": false, "protocolVersion": "4", "keepalive": "60", "cleansession": false,
                "autoConnect": true
            },
            {
                "id": "bench.in", "type": "mqtt in", "z": "bench.tab", "topic": topic, "qos": "1",
                "datatype": "utf8", "broker": "bench.broker", "nl": false, "rap": true, "rh": 0,
                "wires": [["bench.template"]]
            },
            {
                "id": "bench.template", "type": "template", "z": "bench.tab", "field": "payload",
                "fieldType": "msg", "format": "handlebars", "syntax": "mustache",
                "template": "{{{payload}}}", "output": "str", "wires": [["bench.file"]]
            },
            {
                "id": "bench.file", "type": "file", "z": "bench.tab", "filename": out.display().to_string(),
                "filenameType": "str", "appendNewline": true, "createDir": true,
                "overwriteFile": "false", "encoding": "none", "wires": [[]]
            }
        ]);
        std::fs::write(user_dir.join("flows.json"), serde_json::to_vec(&flows).expect("json")).expect("flows");
        let port = free_port();
        let settings = format!(
            "module.exports = {{ uiHost: '127.0.0.1', uiPort: {port}, flowFile: 'flows.json', \
             credentialSecret: false, disableEditor: true, httpAdminRoot: false, \
             logging: {{ console: {{ level: 'error', metrics: false, audit: false }} }} }};\n"
        );
        std::fs::write(user_dir.join("settings.js"), settings).expect("settings");
        let child = Command::new("node")
            .arg(red_js(install))
            .arg("--userDir")
            .arg(user_dir)
            .arg("--settings")
            .arg(user_dir.join("settings.js"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node");
        NodeRed { child }
    }

    /// Kill it (SIGKILL). Stopped cleanly, Node-RED unsubscribes, and its persistent
    /// session then queues nothing; killed, the session keeps the subscription, which is
    /// how the backlog is made.
    pub fn kill(self) {
        drop(self);
    }

    /// Stop it the way a service manager would (SIGTERM), waiting at most 10 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill").arg(self.child.id().to_string()).status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn cpu_seconds(&self) -> f64 {
        crate::broker::cpu_seconds(self.child.id())
    }
}

impl Drop for NodeRed {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
