//! The systemd unit, checked by systemd's own tools (`.ci/run` installs them): it parses,
//! every command it names exists, and its sandbox keeps the exposure under 2.0.

use std::path::Path;
use std::process::Command;

/// The unit with this build's binary in place of `/usr/bin/bullhorn`.
fn unit_here(dir: &Path) -> std::path::PathBuf {
    let unit = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/systemd/bullhorn.service")).expect("unit");
    let path = dir.join("bullhorn.service");
    std::fs::write(&path, unit.replace("/usr/bin/bullhorn", env!("CARGO_BIN_EXE_bullhorn"))).expect("write unit");
    path
}

fn analyze(args: &[&str], unit: &Path) -> (bool, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .arg(unit)
        .output()
        .expect("systemd-analyze (apt-get install systemd; .ci/run installs it)");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[test]
fn the_unit_file_verifies() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_here(dir.path());
    let (ok, text) = analyze(&["verify"], &unit);
    assert!(ok, "systemd-analyze verify failed:\n{text}");
    assert!(!text.contains("bullhorn.service:"), "warnings about the unit:\n{text}");
    let source = std::fs::read_to_string(&unit).expect("unit");
    for line in
        ["Type=notify", "ExecStartPre=", "ExecReload=", "WatchdogSec=", "DynamicUser=yes", "StateDirectory=bullhorn"]
    {
        assert!(source.contains(line), "the unit lacks {line}");
    }
}

#[test]
fn the_sandbox_keeps_exposure_under_two() {
    let dir = tempfile::tempdir().expect("tempdir");
    let unit = unit_here(dir.path());
    let (_, text) = analyze(&["security", "--offline=true"], &unit);
    let level: f64 = text
        .lines()
        .find_map(|l| l.split("Overall exposure level for bullhorn.service:").nth(1))
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in:\n{text}"));
    assert!(level < 2.0, "exposure {level} (want below 2.0):\n{text}");
}

/// The daemon speaks sd_notify: READY once the store and workers are up, even with the
/// broker down (a broker down at boot must not restart-loop it), RELOADING then READY
/// around a SIGHUP, WATCHDOG pings while `WATCHDOG_USEC` is set, STOPPING at the end.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readiness_reload_and_watchdog_reach_systemd() {
    use std::time::{Duration, Instant};
    let dir = tempfile::tempdir().expect("tempdir");
    let socket_path = dir.path().join("notify.sock");
    let socket = std::os::unix::net::UnixDatagram::bind(&socket_path).expect("notify socket");
    socket.set_read_timeout(Some(Duration::from_millis(200))).expect("timeout");
    // Nothing listens on the broker's port.
    let closed = crate::support::free_port();
    let cfg = crate::support::write_config(
        dir.path(),
        &format!("url = \"mqtt://127.0.0.1:{closed}\""),
        "[channels.log]\nkind = \"console\"\n",
    );
    let env = vec![
        ("NOTIFY_SOCKET".to_owned(), socket_path.display().to_string()),
        ("WATCHDOG_USEC".to_owned(), "400000".to_owned()),
    ];
    let mut daemon = crate::support::daemon::Daemon::start_with_env(&cfg, env);
    let mut seen = String::new();
    let wait_for = |what: &str, seen: &mut String| {
        let deadline = Instant::now() + Duration::from_secs(15);
        let mut buf = [0u8; 4096];
        while !seen.contains(what) {
            assert!(Instant::now() < deadline, "no {what} from the daemon; got:\n{seen}");
            if let Ok(n) = socket.recv(&mut buf) {
                seen.push_str(&String::from_utf8_lossy(&buf[..n]));
                seen.push('\n');
            }
        }
    };
    wait_for("READY=1", &mut seen);
    assert!(seen.contains("STATUS=running"), "{seen}");
    wait_for("WATCHDOG=1", &mut seen);
    seen.clear();
    daemon.signal("HUP");
    wait_for("RELOADING=1", &mut seen);
    assert!(seen.contains("MONOTONIC_USEC="), "systemd 253+ wants the time with RELOADING: {seen}");
    wait_for("READY=1", &mut seen);
    assert!(seen.contains("config reloaded"), "{seen}");
    seen.clear();
    daemon.signal("TERM");
    wait_for("STOPPING=1", &mut seen);
    assert!(daemon.terminate() || !daemon.is_running(), "stopped");
}
