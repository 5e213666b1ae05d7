//! The system calls `sipscope run` makes are the ones
//! packaging/sipscope.service allows: the agent under `strace -f` from
//! start through a captured SIP message and a `/healthz` request to a
//! clean exit, every call
//! checked against the unit's SystemCallFilter= (expanded by
//! `systemd-analyze syscall-filter`) and the filters its other hardening
//! options imply, and the address family of every socket against
//! RestrictAddressFamilies=. A call outside would fail under systemd.

use std::{
    collections::BTreeSet,
    io::{Read as _, Write as _},
    net::{TcpStream, UdpSocket},
    process::Command,
};

use crate::{
    agent::{START, STOP},
    require_root,
    support::{
        TempDir,
        netns::{VethPair, in_netns},
        process::NsProcess,
        wait_for,
    },
};

/// Called at full speed, not stopped on (see the strace flags).
const UNTRACED: [&str; 2] = ["lseek", "read"];

/// The unit file in the source tree.
fn unit_text() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../packaging/sipscope.service");
    std::fs::read_to_string(path).unwrap()
}

/// The system calls of a `@group` (or a single call), groups expanded.
fn expand(entry: &str, out: &mut BTreeSet<String>) {
    if !entry.starts_with('@') {
        out.insert(entry.to_owned());
        return;
    }
    let listed = Command::new("systemd-analyze")
        .args(["syscall-filter", entry])
        .output()
        .expect("systemd-analyze (Debian package systemd, see cargo xtask setup)");
    assert!(listed.status.success(), "{entry}: {listed:?}");
    for line in String::from_utf8_lossy(&listed.stdout).lines().skip(1) {
        let item = line.trim();
        if !item.is_empty() && !item.starts_with('#') {
            expand(item, out);
        }
    }
}

/// (allowed, denied) by the unit: its SystemCallFilter= lines and the
/// filters systemd adds for its other options (systemd.exec(5)).
fn unit_filter(unit: &str) -> (BTreeSet<String>, BTreeSet<String>) {
    let (mut allowed, mut denied) = (BTreeSet::new(), BTreeSet::new());
    for value in unit
        .lines()
        .filter_map(|l| l.strip_prefix("SystemCallFilter="))
    {
        let (set, list) = match value.strip_prefix('~') {
            Some(rest) => (&mut denied, rest),
            None => (&mut allowed, value),
        };
        for entry in list.split_whitespace() {
            expand(entry, set);
        }
    }
    for (option, implied) in [
        ("PrivateDevices=yes", "@raw-io"),
        ("ProtectClock=yes", "@clock"),
        ("ProtectKernelModules=yes", "@module"),
        ("RestrictNamespaces=yes", "setns"),
        ("RestrictNamespaces=yes", "unshare"),
    ] {
        if unit.lines().any(|l| l == option) {
            expand(implied, &mut denied);
        }
    }
    assert!(allowed.contains("bpf"), "the unit must allow bpf(2)");
    (allowed, denied)
}

/// The unit's RestrictAddressFamilies= list.
fn unit_text_families(unit: &str) -> Vec<&str> {
    unit.lines()
        .find_map(|l| l.strip_prefix("RestrictAddressFamilies="))
        .expect("RestrictAddressFamilies= in the unit")
        .split_whitespace()
        .collect()
}

/// System call names in `strace -f -qq` output (`PID name(args...`).
fn calls_in(trace: &str) -> BTreeSet<String> {
    trace
        .lines()
        .filter_map(|l| l.split_once(' ').map(|(_, rest)| rest.trim_start()))
        .filter(|rest| !rest.starts_with('<') && !rest.starts_with("+++"))
        .filter_map(|rest| rest.split_once('(').map(|(name, _)| name.to_owned()))
        .filter(|name| name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        .collect()
}

#[test]
fn every_system_call_of_a_run_is_allowed_by_the_units_filter() {
    require_root();
    let unit = unit_text();
    let (allowed, denied) = unit_filter(&unit);
    let pair = VethPair::new();
    let dir = TempDir::new("syscalls");
    let trace = dir.join("strace.txt");
    let mut strace = NsProcess::spawn(
        &pair.host,
        &dir.path,
        "sipscope",
        "strace",
        &[
            "-f",
            "-qq",
            // Reading kernel BTF takes some 125 000 lseek(2) calls: stopping
            // on each would take minutes in the emulated guests. Untraced,
            // and checked below as if used.
            "--seccomp-bpf",
            "-e",
            &format!("trace=!{}", UNTRACED.join(",")),
            "-o",
            trace.to_str().unwrap(),
            env!("CARGO_BIN_EXE_sipscope"),
            "run",
            "--iface",
            &pair.host_if,
            "--metrics-listen",
            "127.0.0.1:9464",
        ],
    );
    strace.wait_output("capturing on", START);
    // One SIP message through the capture path.
    let host = VethPair::HOST_V4;
    in_netns(&pair.peer, move || {
        let s = UdpSocket::bind("0.0.0.0:0").unwrap();
        s.send_to(
            b"OPTIONS sip:probe@sipscope.test SIP/2.0\r\nVia: SIP/2.0/UDP 10.77.0.2:5099;branch=z9hG4bK-sc\r\nCall-ID: syscalls\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
            (host, 5060),
        )
        .unwrap();
    });
    strace.wait_output("OPTIONS sip:probe", START);
    // One scrape through the metrics server (the namespace's own port).
    let scrape = in_netns(&pair.host, || {
        let mut c = TcpStream::connect(("127.0.0.1", 9464)).unwrap();
        c.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut reply = String::new();
        c.read_to_string(&mut reply).unwrap();
        reply
    });
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    // SIGINT to the agent itself (strace's child), as systemd's stop would.
    let children = format!("/proc/{0}/task/{0}/children", strace.pid());
    let agent: i32 = wait_for(START, "the traced agent's pid", || {
        std::fs::read_to_string(&children)
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    });
    // SAFETY: kill(2) on the pid of the agent this test started.
    unsafe { libc::kill(agent, libc::SIGINT) };
    let status = strace.wait_exit(STOP);
    assert!(status.success(), "{status}\n{}", strace.stderr_text());

    let text = std::fs::read_to_string(&trace).unwrap();
    let mut used = calls_in(&text);
    used.extend(UNTRACED.map(str::to_owned));
    assert!(used.contains("bpf") && used.contains("capset"), "{used:?}");
    let refused: Vec<&String> = used
        .iter()
        .filter(|c| !allowed.contains(*c) || denied.contains(*c))
        .collect();
    assert!(
        refused.is_empty(),
        "system calls the unit's filter refuses: {refused:?}"
    );
    // RestrictAddressFamilies=: every socket the agent opens.
    let families: Vec<&str> = unit_text_families(&unit);
    for opened in text.split("socket(").skip(1) {
        let family = opened.split(',').next().unwrap_or_default();
        assert!(
            families.contains(&family),
            "socket({family}, ...) is outside RestrictAddressFamilies={families:?}"
        );
    }
    // MemoryDenyWriteExecute=yes: no writable and executable mapping.
    assert!(
        !text.contains("PROT_WRITE|PROT_EXEC"),
        "a W+X mapping would fail under MemoryDenyWriteExecute=yes"
    );
    eprintln!(
        "{} distinct system calls, all allowed by the unit",
        used.len()
    );
}
