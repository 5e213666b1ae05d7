//! packaging/sipscope.service as systemd reads it: `systemd-analyze
//! verify` without a warning, its `systemd-analyze security` exposure
//! (reported, and kept at or under 2.0), and the one capability set that
//! the unit, `sipscope run --help`, the capability error and the README
//! all name. (The unit's system call filter is checked against a real run
//! in tests/kernel/syscall_filter.rs.)

use std::process::Command;

/// The capability set, as the unit's AmbientCapabilities= spells it.
const THE_SET: &str = "CAP_BPF CAP_NET_ADMIN CAP_PERFMON";

fn repo_file(rel: &str) -> String {
    let path = format!("{}/../{rel}", env!("CARGO_MANIFEST_DIR"));
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The unit with ExecStart= on the binary under test: `verify` checks
/// that the command exists, and /usr/bin/sipscope is only there once the
/// package is installed.
fn unit_for_this_build(dir: &std::path::Path) -> std::path::PathBuf {
    let unit = repo_file("packaging/sipscope.service");
    assert!(unit.contains("ExecStart=/usr/bin/sipscope run"), "{unit}");
    let path = dir.join("sipscope.service");
    let local = unit.replace("/usr/bin/sipscope", env!("CARGO_BIN_EXE_sipscope"));
    std::fs::write(&path, local).unwrap();
    path
}

fn systemd_analyze(args: &[&str]) -> (bool, String, String) {
    let out = Command::new("systemd-analyze")
        .args(args)
        .output()
        .expect("systemd-analyze (Debian package systemd, see cargo xtask setup)");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn the_unit_verifies_without_a_warning() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let (ok, out, err) = systemd_analyze(&["verify", unit.to_str().unwrap()]);
    assert!(ok && err.is_empty(), "systemd-analyze verify:\n{out}{err}");
}

#[test]
fn the_units_security_exposure_is_reported_and_low() {
    let dir = tempfile::tempdir().unwrap();
    let unit = unit_for_this_build(dir.path());
    let (_, out, err) = systemd_analyze(&["security", "--offline=yes", unit.to_str().unwrap()]);
    // "→ Overall exposure level for sipscope.service: 1.7 OK 🙂"
    let score: f32 = out
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for sipscope.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure level in\n{out}{err}"));
    eprintln!("systemd-analyze security --offline=yes: exposure {score} (0 safest, 10 unsafe)");
    assert!(score <= 2.0, "exposure {score} rose above 2.0:\n{out}");
    let readme = repo_file("README.md");
    assert!(
        readme.contains(&format!("exposure level {score}")),
        "README does not report exposure level {score}"
    );
}

#[test]
fn unit_help_error_and_readme_name_the_same_capabilities() {
    let unit = repo_file("packaging/sipscope.service");
    for key in ["AmbientCapabilities=", "CapabilityBoundingSet="] {
        let value = unit
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key}"));
        assert_eq!(value, THE_SET, "{key}");
    }
    for line in [
        "Type=notify",
        "User=sipscope",
        "NoNewPrivileges=yes",
        "ProtectSystem=strict",
        "ReadWritePaths=/var/lib/sipscope",
        "RuntimeDirectory=sipscope",
        "Restart=on-failure",
    ] {
        assert!(unit.lines().any(|l| l == line), "unit lacks {line}");
    }
    let help = Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .args(["run", "--help"])
        .output()
        .unwrap();
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains(THE_SET), "{help}");
    let remedy = sipscope::capture::live::privilege::REMEDY;
    assert!(
        remedy.contains(&format!("AmbientCapabilities={THE_SET}")),
        "{remedy}"
    );
    assert!(
        remedy.contains("setcap cap_bpf,cap_net_admin,cap_perfmon+ep"),
        "{remedy}"
    );
    let readme = repo_file("README.md");
    assert!(readme.contains(THE_SET) && readme.contains("## Deploy on a fleet"));
}
