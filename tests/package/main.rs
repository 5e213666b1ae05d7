//! The Debian package, installed for real (docs/service.md): `dpkg -i`,
//! what it put where, the service user, the installed binary capturing a
//! real registration as that user with only the unit's capabilities, and
//! `dpkg --purge` leaving nothing behind. Root only; changes the system
//! while it runs (and purges the package also when an assertion fails).
//!
//! `cargo xtask test` builds the .deb once and passes it in SIPSCOPE_DEB;
//! without it the test builds it with `cargo xtask package`.

#[path = "../support/mod.rs"]
mod support;

// kamailio and SIPp drivers, shared with the kernel tests.
#[path = "../kernel/agent.rs"]
#[allow(dead_code)]
mod agent;

use std::{
    path::{Path, PathBuf},
    process::{Command, Output},
};

use agent::{START, STOP, register_alice, start_kamailio};
use support::{TempDir, netns::VethPair, process::NsProcess, wait_for};

const PACKAGE: &str = "sipscope";
const UNIT: &str = "/lib/systemd/system/sipscope.service";
const CONFIG: &str = "/etc/sipscope/sipscope.toml";
const STATE: &str = "/var/lib/sipscope";

fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "the package test installs a package: run as root");
}

fn run(program: &str, args: &[&str]) -> Output {
    Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot start {program}: {e}"))
}

fn ok(program: &str, args: &[&str]) -> String {
    let out = run(program, args);
    assert!(
        out.status.success(),
        "{program} {args:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The .deb to test: SIPSCOPE_DEB, or built now.
fn deb() -> PathBuf {
    if let Some(p) = std::env::var_os("SIPSCOPE_DEB") {
        return PathBuf::from(p);
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["run", "--quiet", "--package", "xtask", "--", "package"])
        .current_dir(root)
        .output()
        .expect("cargo xtask package");
    assert!(
        out.status.success(),
        "cargo xtask package: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    PathBuf::from(stdout.lines().last().expect("the .deb's path").trim())
}

/// Purges the package when the test ends, however it ends.
struct Installed;

impl Drop for Installed {
    fn drop(&mut self) {
        let _ = run("dpkg", &["--purge", PACKAGE]);
    }
}

fn exists(path: &str) -> bool {
    Path::new(path).exists()
}

#[test]
fn the_package_installs_a_working_service_and_purges_without_a_trace() {
    require_root();
    let deb = deb();
    // A leftover of an interrupted run would hide what this one does.
    let _ = run("dpkg", &["--purge", PACKAGE]);
    assert!(!run("getent", &["passwd", PACKAGE]).status.success());

    ok("dpkg", &["-i", deb.to_str().unwrap()]);
    let _installed = Installed;

    // The binary, its version, its manual.
    let version = ok("/usr/bin/sipscope", &["--version"]);
    assert_eq!(
        version.trim(),
        format!("sipscope {}", env!("CARGO_PKG_VERSION"))
    );
    let files = ok("dpkg-query", &["-L", PACKAGE]);
    for f in [
        "/usr/bin/sipscope",
        UNIT,
        CONFIG,
        "/usr/share/man/man1/sipscope.1.gz",
        "/usr/share/man/man1/sipscope-run.1.gz",
        "/usr/share/man/man1/sipscope-analyze.1.gz",
        "/usr/share/doc/sipscope/README.md",
        "/usr/share/doc/sipscope/service.md",
    ] {
        assert!(
            files.lines().any(|l| l == f),
            "{f} not in the package:\n{files}"
        );
    }
    let man = ok("sh", &["-c", "zcat /usr/share/man/man1/sipscope-run.1.gz"]);
    assert!(
        man.contains(".TH sipscope-run 1"),
        "{}",
        &man[..man.len().min(300)]
    );
    assert!(
        man.contains("pcap\\-rotate\\-size"),
        "the run page lists its flags"
    );

    // The unit as written in packaging/, and valid for systemd.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
    assert_eq!(
        std::fs::read_to_string(UNIT).unwrap(),
        std::fs::read_to_string(root.join("packaging/sipscope.service")).unwrap()
    );
    if which("systemd-analyze") {
        ok("systemd-analyze", &["verify", UNIT]);
    }

    // The configuration: a conffile (kept on upgrade when edited), read by
    // root and the service group only.
    let conffiles = ok("dpkg-query", &["-W", "-f=${Conffiles}", PACKAGE]);
    assert!(conffiles.contains(CONFIG), "{conffiles}");
    assert_eq!(
        ok("stat", &["-c", "%U:%G %a", CONFIG]).trim(),
        "root:sipscope 640"
    );

    // The service user: a system account that cannot log in.
    let passwd = ok("getent", &["passwd", PACKAGE]);
    let fields: Vec<&str> = passwd.trim().split(':').collect();
    assert_eq!(fields[5], STATE, "{passwd}");
    assert_eq!(fields[6], "/usr/sbin/nologin", "{passwd}");
    let uid: u32 = fields[2].parse().unwrap();
    assert!(uid < 1000, "a system uid: {passwd}");
    assert_eq!(
        ok("stat", &["-c", "%U:%G %a", STATE]).trim(),
        "sipscope:sipscope 700"
    );

    captures_a_registration_as_the_service_user();

    ok("dpkg", &["--purge", PACKAGE]);
    for gone in [
        "/usr/bin/sipscope",
        UNIT,
        "/etc/sipscope",
        STATE,
        "/usr/share/man/man1/sipscope.1.gz",
        "/usr/share/doc/sipscope",
    ] {
        assert!(!exists(gone), "{gone} left after purge");
    }
    assert!(
        !run("getent", &["passwd", PACKAGE]).status.success(),
        "user left"
    );
    assert!(
        !run("getent", &["group", PACKAGE]).status.success(),
        "group left"
    );
    let status = run("dpkg-query", &["-W", "-f=${db:Status-Abbrev}", PACKAGE]);
    assert!(
        !String::from_utf8_lossy(&status.stdout).starts_with("ii"),
        "still installed"
    );
}

fn which(program: &str) -> bool {
    run("sh", &["-c", &format!("command -v {program}")])
        .status
        .success()
}

/// The installed binary as the unit runs it: user `sipscope`, only the
/// capabilities the unit grants, its captures in /var/lib/sipscope;
/// then `analyze` of what it wrote tells the same registration.
fn captures_a_registration_as_the_service_user() {
    let pair = VethPair::new();
    let dir = TempDir::new("package");
    let _kamailio = start_kamailio(&pair.host, &dir, VethPair::HOST_V4.into(), 5060);
    let caps = unit_capabilities();
    let _run = RuntimeDirectory::new(&pair);
    let mut agent = NsProcess::spawn(
        &pair.host,
        &dir.path,
        "sipscope",
        "setpriv",
        &[
            "--reuid",
            PACKAGE,
            "--regid",
            PACKAGE,
            "--clear-groups",
            "--inh-caps",
            &caps,
            "--ambient-caps",
            &caps,
            "/usr/bin/sipscope",
            "run",
            "--iface",
            &pair.host_if,
            "--console",
            "events",
            "--tls",
            "off",
            "--write-pcap",
            STATE,
        ],
    );
    agent.wait_output("capturing on", START);
    register_alice(&pair, &dir, 1);
    wait_for(START, "the registration line", || {
        agent
            .stdout_text()
            .contains(" registration state=registered ")
            .then_some(())
    });
    let status = agent.interrupt(STOP);
    let out = agent.stdout_text();
    assert!(status.success(), "{status}\n{out}\n{}", agent.stderr_text());

    let written: Vec<PathBuf> = std::fs::read_dir(STATE)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(
        ok("stat", &["-c", "%U", written[0].to_str().unwrap()]).trim(),
        PACKAGE,
        "written by the service user"
    );
    let analysed = ok(
        "/usr/bin/sipscope",
        &["analyze", written[0].to_str().unwrap()],
    );
    assert!(
        analysed.contains("REGISTER sip:10.77.0.1:5060 SIP/2.0")
            && analysed.contains("SIP/2.0 200 OK"),
        "{analysed}"
    );
}

/// /run/sipscope (the interface locks) writable by the service user, as
/// the unit's RuntimeDirectory= makes it; given back to root afterwards,
/// as the agent creates it when root runs it.
///
/// Agents run as root (the other tests) leave their lock files behind, and
/// a namespace's inode, which names the file, is reused: one left for this
/// interface's name is handed to the service user too.
struct RuntimeDirectory {
    lock: String,
}

const RUN_DIR: &str = "/run/sipscope";

impl RuntimeDirectory {
    fn new(pair: &VethPair) -> Self {
        ok("install", &["-d", "-m", "0755", RUN_DIR]);
        let owner = format!("{PACKAGE}:{PACKAGE}");
        ok("chown", &[&owner, RUN_DIR]);
        let netns = ok(
            "stat",
            &["-L", "-c", "%i", &format!("/run/netns/{}", pair.host.name)],
        );
        let ifindex = pair.host.exec_stdout(
            "cat",
            &[&format!("/sys/class/net/{}/ifindex", pair.host_if)],
        );
        let lock = format!("{RUN_DIR}/{}-{}.lock", netns.trim(), ifindex.trim());
        if exists(&lock) {
            ok("chown", &[&owner, &lock]);
        }
        Self { lock }
    }
}

impl Drop for RuntimeDirectory {
    fn drop(&mut self) {
        let _ = run("chown", &["root:root", RUN_DIR, &self.lock]);
    }
}

/// `+cap_a,+cap_b` from the installed unit's AmbientCapabilities=.
fn unit_capabilities() -> String {
    let unit = std::fs::read_to_string(UNIT).unwrap();
    let caps: Vec<String> = unit
        .lines()
        .filter_map(|l| l.strip_prefix("AmbientCapabilities="))
        .flat_map(|v| v.split_whitespace())
        .map(|c| format!("+{}", c.trim_start_matches("CAP_").to_ascii_lowercase()))
        .collect();
    assert!(!caps.is_empty(), "no AmbientCapabilities= in {UNIT}");
    caps.join(",")
}
