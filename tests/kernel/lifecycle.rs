//! Loading, clear errors, and detaching: nothing stays attached after the
//! agent dies, even by SIGKILL.

use std::time::Duration;

use aya::programs::{SchedClassifier, TcAttachType};
use sipscope::capture::live::{LiveError, load_object};
use sipscope_common::{DEFAULT_RING_SIZE, names};

use crate::{
    agent::{Agent, START, lock_file_name},
    require_root,
    support::{
        TempDir,
        netns::{Netns, VethPair, in_netns},
        process::NsProcess,
        wait_for,
    },
};

#[test]
fn programs_pass_the_verifier_with_default_and_minimal_ring_sizes() {
    require_root();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
    for size in [DEFAULT_RING_SIZE, page] {
        let mut obj = load_object(size).unwrap_or_else(|e| panic!("ring {size}: {e:?}"));
        obj.set_sip_ports(&[5080]).unwrap();
        let loaded = obj
            .load_all_variants()
            .unwrap_or_else(|e| panic!("ring {size}: {e:?}"));
        // The oldest kernels' variants load everywhere; the others where
        // the kernel has what they need.
        assert!(loaded.contains(&names::TC_INGRESS_510) && loaded.contains(&names::TC_EGRESS_510));
        assert_eq!(loaded.contains(&names::XDP_INGRESS), obj.features.xdp());
        obj.load_bench_programs().unwrap();
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
fn second_agent_on_the_same_interface_is_refused() {
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
    // The interface lock refuses it (XDP would too).
    assert!(
        err.contains("already has an XDP program attached")
            || err.contains("another sipscope (pid"),
        "{err}"
    );
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

/// Programs of ours attached to each hook of `iface` in `ns`:
/// `[xdp, tc ingress, tc egress]`, tcx links and netlink filters alike.
pub(crate) fn hooks(ns: &Netns, iface: &str) -> [usize; 3] {
    let xdp = ns
        .exec_stdout("ip", &["-d", "link", "show", "dev", iface])
        .matches("prog/xdp id")
        .count();
    let mut tc = [0usize; 2];
    for (i, (hook, attach)) in [
        ("ingress", TcAttachType::Ingress),
        ("egress", TcAttachType::Egress),
    ]
    .into_iter()
    .enumerate()
    {
        let filters = ns.exec_stdout("tc", &["filter", "show", "dev", iface, hook]);
        let netlink = filters.matches(" name sipscope_").count();
        let name = iface.to_owned();
        // tcx links do not show as filters; the kernel lists them (6.6+).
        let tcx = in_netns(ns, move || {
            SchedClassifier::query_tcx(&name, attach).map_or(0, |(_, progs)| {
                progs
                    .iter()
                    .filter(|p| p.name_as_str().is_some_and(|n| n.starts_with("sipscope")))
                    .count()
            })
        });
        tc[i] = netlink + tcx;
    }
    [xdp, tc[0], tc[1]]
}

/// Exactly one capture program per direction.
fn one_per_hook(h: [usize; 3]) -> bool {
    h[0] + h[1] == 1 && h[2] == 1
}

/// The bpf link kinds an agent that printed `stdout` must hold: its
/// ingress and egress hooks (netlink filters are no links) and the drop
/// tracer's raw tracepoint.
fn expected_link_kinds(stdout: &str) -> Vec<&'static str> {
    let line = stdout
        .lines()
        .find(|l| l.starts_with("capturing on"))
        .expect("capturing on line");
    let mut kinds = vec!["raw_tracepoint"];
    if line.contains("ingress xdp native") {
        kinds.push("xdp");
    }
    kinds.extend(std::iter::repeat_n("tcx", line.matches(" tcx").count()));
    kinds.sort_unstable();
    kinds
}

#[test]
fn sigkill_leaves_nothing_attached_or_the_next_start_removes_it() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("sigkill");
    let mut agent = Agent::start(&pair, &dir, &[]);
    let attached = hooks(&pair.host, &pair.host_if);
    assert!(one_per_hook(attached), "while running: {attached:?}");
    let links = link_ids_of(agent.proc.pid());
    let mut kinds: Vec<&str> = links.iter().map(|(_, k)| k.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        expected_link_kinds(&agent.proc.stdout_text()),
        "agent holds links {links:?}"
    );
    let netlink = agent.proc.stdout_text().contains("clsact");

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
    let left = hooks(&pair.host, &pair.host_if);
    if netlink {
        // Netlink filters outlive their process: exactly what it attached.
        assert_eq!(left[1..], attached[1..], "netlink filters after SIGKILL");
    } else {
        assert_eq!(left, [0, 0, 0], "links outlived SIGKILL");
    }

    // The next start removes what the killed one left: one program per hook.
    let mut again = Agent::start(&pair, &dir, &[]);
    let h = hooks(&pair.host, &pair.host_if);
    assert_eq!(h, attached, "after a restart: one program per hook");
    again.stop();
    assert_eq!(
        hooks(&pair.host, &pair.host_if),
        [0, 0, 0],
        "a clean exit leaves nothing"
    );
}

#[test]
fn sigterm_detaches_and_reports_counters() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("sigterm");
    let mut agent = Agent::start(&pair, &dir, &[]);
    let lock = format!("/run/sipscope/{}", lock_file_name(&pair));
    let pid = std::fs::read_to_string(&lock).unwrap_or_else(|e| panic!("{lock}: {e}"));
    assert_eq!(pid.trim(), agent.proc.pid().to_string(), "{lock}");
    let links = link_ids_of(agent.proc.pid());
    let mut kinds: Vec<&str> = links.iter().map(|(_, k)| k.as_str()).collect();
    kinds.sort_unstable();
    assert_eq!(
        kinds,
        expected_link_kinds(&agent.proc.stdout_text()),
        "the ingress and egress hooks and the kfree_skb drop tracer: {links:?}"
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
    assert_eq!(hooks(&pair.host, &pair.host_if), [0, 0, 0]);
    assert!(
        !std::path::Path::new(&lock).exists(),
        "a clean exit removes its lock file {lock}"
    );
}
