//! Loading, clear errors, and detaching: nothing stays attached after the
//! agent dies, even by SIGKILL.

use std::time::Duration;

use sipscope::capture::live::{LiveError, load_object};
use sipscope_common::DEFAULT_RING_SIZE;

use crate::{
    agent::{Agent, START},
    require_root,
    support::{TempDir, netns::VethPair, process::NsProcess, wait_for},
};

#[test]
fn programs_pass_the_verifier_with_default_and_minimal_ring_sizes() {
    require_root();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
    for size in [DEFAULT_RING_SIZE, page] {
        let mut obj = load_object(size).unwrap_or_else(|e| panic!("ring {size}: {e:?}"));
        obj.set_sip_ports(&[5080]).unwrap();
        obj.load_capture_programs()
            .unwrap_or_else(|e| panic!("ring {size}: {e:?}"));
        obj.load_empty_program().unwrap();
    }
}

#[test]
fn invalid_ring_size_is_a_clear_error() {
    require_root();
    let err = load_object(5000).err().expect("5000 is not a power of two");
    assert!(
        matches!(err, LiveError::InvalidRingSize(5000, _)),
        "{err:?}"
    );
    assert!(err.to_string().contains("power of two"));
}

#[test]
fn unknown_interface_fails_with_a_clear_message() {
    require_root();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .args(["run", "--iface", "nosuchif0"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("no such interface: nosuchif0; see `ip link`"),
        "{stderr}"
    );
}

#[test]
fn second_agent_on_the_same_interface_is_told_xdp_is_taken() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("busy");
    let _first = Agent::start(&pair, &dir, &[]);
    let mut second = NsProcess::spawn(
        &pair.host,
        &dir.path,
        "second",
        env!("CARGO_BIN_EXE_sipscope"),
        &["run", "--iface", &pair.host_if],
    );
    let status = second.wait_exit(START);
    assert!(!status.success());
    let err = second.stderr_text();
    assert!(err.contains("already has an XDP program attached"), "{err}");
}

/// bpf link ids held by a process, from /proc/PID/fdinfo.
fn link_ids_of(pid: i32) -> Vec<(u32, String)> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .unwrap()
        .flatten()
    {
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .map(|v| v.trim().to_owned())
        };
        if let (Some(kind), Some(id)) = (field("link_type:"), field("link_id:")) {
            out.push((id.parse().unwrap(), kind));
        }
    }
    out
}

fn live_link_ids() -> Vec<u32> {
    aya::programs::loaded_links()
        .filter_map(Result::ok)
        .map(|l| l.id())
        .collect()
}

#[test]
fn sigkill_leaves_nothing_attached() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("sigkill");
    let mut agent = Agent::start(&pair, &dir, &[]);
    let links = link_ids_of(agent.proc.pid());
    let kinds: Vec<&str> = links.iter().map(|(_, k)| k.as_str()).collect();
    assert!(
        kinds.contains(&"xdp") && kinds.contains(&"tcx") && kinds.contains(&"raw_tracepoint"),
        "agent holds links {links:?}"
    );
    let shown = pair
        .host
        .exec_stdout("ip", &["-d", "link", "show", "dev", &pair.host_if]);
    assert!(
        shown.contains("xdp"),
        "XDP attached while running:\n{shown}"
    );

    agent.proc.signal(libc::SIGKILL);
    agent.proc.wait_exit(Duration::from_secs(10));

    wait_for(
        Duration::from_secs(10),
        "the agent's bpf links to be released",
        || {
            let live = live_link_ids();
            links.iter().all(|(id, _)| !live.contains(id)).then_some(())
        },
    );
    let shown = pair
        .host
        .exec_stdout("ip", &["-d", "link", "show", "dev", &pair.host_if]);
    assert!(
        !shown.contains("xdp"),
        "XDP still attached after SIGKILL:\n{shown}"
    );
    let filters = pair
        .host
        .exec_stdout("tc", &["filter", "show", "dev", &pair.host_if, "egress"]);
    assert!(
        filters.trim().is_empty(),
        "tc egress filters left behind:\n{filters}"
    );
}

#[test]
fn sigterm_detaches_and_reports_counters() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("sigterm");
    let mut agent = Agent::start(&pair, &dir, &[]);
    let links = link_ids_of(agent.proc.pid());
    let mut kinds: Vec<&str> = links.iter().map(|(_, k)| k.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        ["raw_tracepoint", "tcx", "xdp"],
        "one XDP, one tcx and the kfree_skb drop tracer link: {links:?}"
    );
    agent.proc.signal(libc::SIGTERM);
    let status = agent.proc.wait_exit(Duration::from_secs(10));
    assert!(status.success(), "SIGTERM is a clean stop: {status}");
    assert!(
        agent
            .proc
            .stdout_text()
            .contains("capture counters: packets_seen=")
    );
    wait_for(Duration::from_secs(10), "the links to be released", || {
        let live = live_link_ids();
        links.iter().all(|(id, _)| !live.contains(id)).then_some(())
    });
}

#[test]
fn several_interfaces_are_attached_by_one_agent() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("multi");
    // A second link inside the host namespace, both ends local.
    let (a, b) = (format!("{}a", pair.host_if), format!("{}b", pair.host_if));
    pair.host
        .ip(&["link", "add", &a, "type", "veth", "peer", "name", &b]);
    pair.host.ip(&["link", "set", &a, "up"]);
    pair.host.ip(&["link", "set", &b, "up"]);
    let agent = Agent::start(&pair, &dir, &["--iface", &a]);
    let out = agent.proc.stdout_text();
    assert!(
        out.contains(&format!("capturing on {} ", pair.host_if)),
        "{out}"
    );
    assert!(out.contains(&format!("capturing on {a} ")), "{out}");
    let kinds: Vec<String> = link_ids_of(agent.proc.pid())
        .into_iter()
        .map(|(_, k)| k)
        .collect();
    assert_eq!(kinds.iter().filter(|k| *k == "xdp").count(), 2, "{kinds:?}");
    assert_eq!(kinds.iter().filter(|k| *k == "tcx").count(), 2, "{kinds:?}");
}

#[test]
fn unprivileged_user_is_told_which_capabilities_are_missing() {
    require_root();
    // `nobody` with no capabilities; the interface exists (lo).
    let out = std::process::Command::new("setpriv")
        .args([
            "--reuid",
            "65534",
            "--regid",
            "65534",
            "--clear-groups",
            "--inh-caps=-all",
        ])
        .arg(env!("CARGO_BIN_EXE_sipscope"))
        .args(["run", "--iface", "lo"])
        .output()
        .expect("setpriv (util-linux)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("permission denied") && stderr.contains("CAP_BPF"),
        "{stderr}"
    );
}

#[test]
fn device_without_native_xdp_falls_back_to_generic_mode_and_says_so() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("generic");
    // A bridge has no native XDP support.
    let bridge = format!("br{}", crate::support::unique_suffix());
    pair.host.ip(&["link", "add", &bridge, "type", "bridge"]);
    pair.host.ip(&["link", "set", &bridge, "up"]);
    let mut agent = NsProcess::spawn(
        &pair.host,
        &dir.path,
        "sipscope",
        env!("CARGO_BIN_EXE_sipscope"),
        &["run", "--iface", &bridge],
    );
    agent.wait_output("capturing on", START);
    assert!(agent.stdout_text().contains("xdp generic"));
    assert!(
        agent
            .stderr_text()
            .contains("falling back to generic (SKB) mode"),
        "{}",
        agent.stderr_text()
    );
    assert!(agent.interrupt(Duration::from_secs(10)).success());
}
