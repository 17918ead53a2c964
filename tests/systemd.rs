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
