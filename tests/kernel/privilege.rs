//! Least privilege (issue #15): `sipscope run` as an unprivileged system
//! user holding exactly CAP_BPF, CAP_NET_ADMIN and CAP_PERFMON (given by
//! `setpriv`, as systemd's AmbientCapabilities= does) captures a real
//! digest registration and, once attached, holds no capability a later
//! step does not need; without any one of the three it names it, says
//! what to do, and attaches nothing.

use std::{net::IpAddr, sync::Mutex};

use sipscope::capture::live::privilege::REMEDY;

use crate::{
    agent::{START, STOP, lock_file_name, run_sipp, spawn_kamailio, wait_udp_listening},
    lifecycle::hooks,
    require_root,
    support::{
        TempDir, fixture,
        netns::{VethPair, run},
        process::NsProcess,
        unique_suffix,
    },
};

// Bit numbers from linux/capability.h.
const CAP_NET_ADMIN: u32 = 12;
const CAP_PERFMON: u32 = 38;
const CAP_BPF: u32 = 39;
const THE_THREE: [(&str, u32); 3] = [
    ("bpf", CAP_BPF),
    ("net_admin", CAP_NET_ADMIN),
    ("perfmon", CAP_PERFMON),
];

/// `useradd` and `userdel` lock /etc/passwd: one at a time in this process.
static USER_DB: Mutex<()> = Mutex::new(());

/// A system user (and its group) made for one test, removed on drop.
struct SystemUser {
    name: String,
}

impl SystemUser {
    fn create() -> Self {
        let _db = USER_DB.lock().unwrap_or_else(|e| e.into_inner());
        let name = format!("sipscope-t{}", unique_suffix());
        run(
            "useradd",
            &[
                "--system",
                "--no-create-home",
                "--user-group",
                "--shell",
                "/usr/sbin/nologin",
                &name,
            ],
        );
        Self { name }
    }

    /// Makes `path` this user's (the agent writes its lock files there).
    fn owns(&self, path: &std::path::Path) {
        let owner = format!("{0}:{0}", self.name);
        run("chown", &[&owner, path.to_str().unwrap()]);
    }
}

impl Drop for SystemUser {
    fn drop(&mut self) {
        let _db = USER_DB.lock().unwrap_or_else(|e| e.into_inner());
        let _ = std::process::Command::new("userdel")
            .arg(&self.name)
            .output();
    }
}

/// `setpriv` capability list: `-all,+bpf,...` for those of the three
/// not in `without`.
fn cap_list(without: Option<&str>) -> String {
    let mut list = "-all".to_owned();
    for (name, _) in THE_THREE.iter().filter(|(n, _)| Some(*n) != without) {
        list.push_str(&format!(",+{name}"));
    }
    list
}

/// The agent as `user`, with the three capabilities (less `without`) as
/// its inheritable, ambient and bounding sets, and its lock files in a
/// folder of its own (what RuntimeDirectory= gives the unit).
fn start_as(
    user: &SystemUser,
    without: Option<&str>,
    pair: &VethPair,
    dir: &TempDir,
    lock_dir: &std::path::Path,
) -> NsProcess {
    user.owns(&dir.path);
    let caps = cap_list(without);
    let runtime_dir = format!("RUNTIME_DIRECTORY={}", lock_dir.display());
    NsProcess::spawn(
        &pair.host,
        &dir.path,
        "sipscope",
        "setpriv",
        &[
            "--reuid",
            &user.name,
            "--regid",
            &user.name,
            "--init-groups",
            "--inh-caps",
            &caps,
            "--ambient-caps",
            &caps,
            "--bounding-set",
            &caps,
            "env",
            &runtime_dir,
            env!("CARGO_BIN_EXE_sipscope"),
            "run",
            "--iface",
            &pair.host_if,
            // The TLS tracer keeps CAP_PERFMON for its rescans (and would
            // scan the host's /proc): these tests are about the three.
            "--tls",
            "off",
        ],
    )
}

/// `CapEff:\t0000...` of a /proc status file, as a bit set.
fn cap_field(status: &str, field: &str) -> u64 {
    let hex = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .unwrap_or_else(|| panic!("no {field} in\n{status}"));
    u64::from_str_radix(hex.trim(), 16).unwrap()
}

/// The capabilities the agent's start-up line says it kept, as a bit set.
fn kept_mask(line: &str) -> u64 {
    let kept = line
        .strip_prefix("capabilities: kept ")
        .and_then(|l| l.split(", dropped").next())
        .unwrap_or_else(|| panic!("not a capabilities line: {line}"));
    let mut mask = 0;
    for (name, bit) in THE_THREE {
        if kept.contains(&format!("CAP_{}", name.to_uppercase())) {
            mask |= 1 << bit;
        }
    }
    mask
}

#[test]
fn an_unprivileged_user_with_the_three_capabilities_captures_a_registration_and_keeps_only_what_it_needs()
 {
    require_root();
    let user = SystemUser::create();
    let pair = VethPair::new();
    let dir = TempDir::new("privilege");
    let host: IpAddr = VethPair::HOST_V4.into();
    let _kamailio = spawn_kamailio(
        &pair.host,
        &dir,
        "scenarios/registrar.cfg",
        &[&format!("udp:{host}:5060")],
        &[],
    );
    wait_udp_listening(&pair.host, 5060);
    // The interface's lock file as an agent run as root left it (a debug
    // run before the service, or one killed): root's, the user can only
    // read it, and a read-only open is enough to lock it.
    let stale = dir.join(&lock_file_name(&pair));
    std::fs::write(&stale, "1\n").unwrap();
    std::fs::set_permissions(&stale, std::os::unix::fs::PermissionsExt::from_mode(0o644)).unwrap();
    let mut agent = start_as(&user, None, &pair, &dir, &dir.path);
    agent.wait_output("capturing on", START);
    let out = agent.stdout_text();
    let line = out
        .lines()
        .find(|l| l.starts_with("capabilities: kept"))
        .unwrap_or_else(|| panic!("no capabilities line in\n{out}"));
    eprintln!("{line}");
    let kept = kept_mask(line);
    // CAP_PERFMON is for the verifier only; CAP_NET_ADMIN stays exactly
    // when a netlink filter must be removed at exit.
    assert!(
        line.contains("CAP_PERFMON") && kept & (1 << CAP_PERFMON) == 0,
        "{line}"
    );
    let netlink = out
        .lines()
        .any(|l| l.starts_with("capturing on") && l.contains("clsact"));
    assert_eq!(kept & (1 << CAP_NET_ADMIN) != 0, netlink, "{out}");
    assert!(line.contains("no_new_privs set"), "{line}");

    // Every thread: nothing beyond what the line says; the main thread
    // (which the core inherits from) exactly that.
    let three: u64 = THE_THREE.iter().map(|(_, b)| 1u64 << b).sum();
    let pid = agent.pid();
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).unwrap();
    let mut threads = 0;
    for task in tasks {
        let status = std::fs::read_to_string(task.unwrap().path().join("status")).unwrap();
        for field in ["CapEff:", "CapPrm:"] {
            assert_eq!(
                cap_field(&status, field) & !kept,
                0,
                "{field} beyond {line}\n{status}"
            );
        }
        assert_eq!(cap_field(&status, "CapInh:"), 0, "{status}");
        assert_eq!(cap_field(&status, "CapAmb:"), 0, "{status}");
        assert_eq!(cap_field(&status, "CapBnd:") & !three, 0, "{status}");
        assert!(status.contains("NoNewPrivs:\t1"), "{status}");
        threads += 1;
    }
    let main = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert_eq!(cap_field(&main, "CapEff:"), kept, "{line}\n{main}");
    assert_eq!(cap_field(&main, "CapPrm:"), kept, "{line}\n{main}");
    assert!(threads >= 3, "the agent runs {threads} threads");

    // A real digest registration after the drop: REGISTER, 401,
    // REGISTER with credentials, 200.
    run_sipp(
        &pair.peer,
        &dir,
        &fixture("scenarios/sipp/register.xml"),
        (VethPair::PEER_V4.into(), host, 5060),
        1,
        crate::support::sipp::ACCOUNT_1001,
    );
    agent.wait_output("SIP/2.0 200 OK", START);
    let status = agent.interrupt(STOP);
    let out = agent.stdout_text();
    assert!(status.success(), "{status}\n{out}\n{}", agent.stderr_text());
    let count = |needle: &str| out.lines().filter(|l| l.contains(needle)).count();
    assert!(count("UDP  REGISTER sip:") >= 2, "{out}");
    assert!(count("SIP/2.0 401") >= 1, "{out}");
    assert!(count("SIP/2.0 200 OK") >= 1, "{out}");
    assert_eq!(
        hooks(&pair.host, &pair.host_if),
        [0, 0, 0],
        "left attached after exit"
    );
}

/// Without `missing`, the agent exits before touching the kernel with one
/// error naming that capability (and no other) and the remedy.
fn refused_without(missing: &str) {
    require_root();
    let user = SystemUser::create();
    let pair = VethPair::new();
    let dir = TempDir::new("privilege");
    let mut agent = start_as(&user, Some(missing), &pair, &dir, &dir.path);
    let status = agent.wait_exit(START);
    let err = agent.stderr_text();
    assert!(!status.success(), "started without {missing}\n{err}");
    let lacks = err
        .split("lacks ")
        .nth(1)
        .and_then(|r| r.split(';').next())
        .unwrap_or_else(|| panic!("no 'lacks' in\n{err}"));
    for (name, _) in THE_THREE {
        let cap = format!("CAP_{}", name.to_uppercase());
        assert_eq!(lacks.contains(&cap), name == missing, "{cap}: {err}");
    }
    assert!(err.contains(REMEDY), "{err}");
    assert!(
        err.contains("setcap cap_bpf,cap_net_admin,cap_perfmon+ep")
            && err.contains("AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON"),
        "{err}"
    );
    assert_eq!(hooks(&pair.host, &pair.host_if), [0, 0, 0], "{err}");
}

#[test]
fn without_cap_bpf_the_agent_names_it_and_attaches_nothing() {
    refused_without("bpf");
}

#[test]
fn without_cap_net_admin_the_agent_names_it_and_attaches_nothing() {
    refused_without("net_admin");
}

#[test]
fn without_cap_perfmon_the_agent_names_it_and_attaches_nothing() {
    refused_without("perfmon");
}

/// The lock folder must be writable by the user: a root-owned one is
/// refused with what to do (systemd's RuntimeDirectory=), before any
/// program is attached.
#[test]
fn a_lock_folder_the_user_cannot_write_is_named_with_the_remedy() {
    require_root();
    let user = SystemUser::create();
    let pair = VethPair::new();
    let dir = TempDir::new("privilege");
    let root_owned = dir.join("root-owned");
    std::fs::create_dir(&root_owned).unwrap();
    let mut agent = start_as(&user, None, &pair, &dir, &root_owned);
    let status = agent.wait_exit(START);
    let err = agent.stderr_text();
    assert!(!status.success(), "{err}");
    assert!(
        err.contains(&format!(
            "locking {} in {}",
            pair.host_if,
            root_owned.display()
        )) && err.contains("RuntimeDirectory=sipscope")
            && err.contains("Permission denied"),
        "{err}"
    );
    assert_eq!(hooks(&pair.host, &pair.host_if), [0, 0, 0], "{err}");
}

/// Root of a user namespace (a rootless container) holds every capability
/// there, and none counts for BPF: the error says so instead of asking
/// for capabilities the process appears to have.
#[test]
fn in_a_user_namespace_the_error_says_its_capabilities_do_not_count() {
    require_root();
    let out = std::process::Command::new("unshare")
        .args(["--user", "--map-root-user"])
        .arg(env!("CARGO_BIN_EXE_sipscope"))
        .args(["run", "--iface", "lo"])
        .output()
        .expect("unshare (util-linux)");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("runs in a user namespace") && !err.contains("lacks CAP_"),
        "{err}"
    );
}
