//! Cost of the `kfree_skb` drop tracer per event, measured by the kernel
//! itself (BPF_ENABLE_STATS: run_time_ns / run_cnt of each program) while a
//! real flood of packets is dropped by nft in a network namespace, beside
//! the XDP capture program's per-packet cost on the same packets in the
//! same run.
//!
//! The do-nothing program on the same tracepoint is the baseline for the
//! tracer: its run time is the cost of the call and of the statistics
//! themselves.
//!
//! Two floods: non-VoIP UDP (port 9999: the tracer rejects it after the
//! namespace and port checks, the common case on a busy host) and SIP
//! (port 5060: reported, i.e. copied into the drop ring).
//!
//! Note: the tracepoint is host-wide, so its run count also includes any
//! other drop on the machine during the run (their cost is in the same
//! average; the reason check rejects most of them earlier and cheaper).
//!
//! Run as root: `cargo xtask bench drops` (= `cargo bench -p sipscope --bench drops`).

use std::{
    net::UdpSocket,
    process::Command,
    time::{Duration, Instant},
};

use sipscope::capture::live::{LiveCapture, LiveConfig, ProgramRunStats};
use sipscope_common::names;

const ROUNDS: u32 = 5;
const PER_ROUND: u64 = 40_000;
/// Datagrams sent before the main thread drains the drop ring (SIP flood).
const BURST: u64 = 500;

fn sh(args: &[&str]) -> String {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {}: {e}", args[0]));
    assert!(
        out.status.success(),
        "{} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Two namespaces and a veth pair; removed on drop.
struct Topology {
    host: String,
    peer: String,
    host_if: String,
}

impl Topology {
    fn new() -> Self {
        let id = std::process::id();
        let t = Self {
            host: format!("sbdh{id}"),
            peer: format!("sbdp{id}"),
            host_if: format!("vbdh{id}"),
        };
        let peer_if = format!("vbdp{id}");
        sh(&["ip", "netns", "add", &t.host]);
        sh(&["ip", "netns", "add", &t.peer]);
        sh(&[
            "ip", "link", "add", &t.host_if, "netns", &t.host, "type", "veth", "peer", "name",
            &peer_if, "netns", &t.peer,
        ]);
        for (ns, ifname, addr) in [
            (&t.host, &t.host_if, "10.78.0.1/24"),
            (&t.peer, &peer_if, "10.78.0.2/24"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", addr, "dev", ifname]);
            sh(&["ip", "-n", ns, "link", "set", ifname, "up"]);
        }
        let nft = |cmd: &str| sh(&["ip", "netns", "exec", &t.host, "nft", cmd]);
        nft("add table inet sipscope_bench");
        nft("add chain inet sipscope_bench c { type filter hook input priority 0; }");
        nft("add rule inet sipscope_bench c udp dport { 5060, 9999 } counter drop");
        t
    }

    fn dropped(&self) -> u64 {
        let out = sh(&[
            "ip",
            "netns",
            "exec",
            &self.host,
            "nft",
            "list",
            "table",
            "inet",
            "sipscope_bench",
        ]);
        out.split_whitespace()
            .skip_while(|w| *w != "packets")
            .nth(1)
            .and_then(|n| n.parse().ok())
            .unwrap_or(0)
    }
}

impl Drop for Topology {
    fn drop(&mut self) {
        for ns in [&self.host, &self.peer] {
            let _ = Command::new("ip").args(["netns", "del", ns]).output();
        }
    }
}

fn enter_netns(name: &str) {
    use std::os::fd::AsRawFd;
    let f = std::fs::File::open(format!("/var/run/netns/{name}")).expect("netns file");
    // SAFETY: valid namespace fd; affects the calling thread only.
    let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
}

fn peer_socket(peer: &str) -> UdpSocket {
    let peer = peer.to_owned();
    std::thread::spawn(move || {
        enter_netns(&peer);
        UdpSocket::bind("10.78.0.2:0").expect("peer socket")
    })
    .join()
    .expect("peer thread")
}

fn stats_of(capture: &LiveCapture, name: &str) -> (Duration, u64) {
    let all: Vec<ProgramRunStats> = capture.program_stats().expect("program info");
    let s = all
        .iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("program {name} not loaded"));
    (s.run_time, s.run_count)
}

/// Sends `n` datagrams to `port`, draining the drop ring every `BURST`;
/// returns ns/event of (kfree_skb, XDP) over the round.
fn round(
    topo: &Topology,
    capture: &mut LiveCapture,
    sock: &UdpSocket,
    port: u16,
    payload: &[u8],
    n: u64,
) -> (f64, f64, f64, u64) {
    let before_empty = stats_of(capture, names::KFREE_SKB_EMPTY);
    let before_drop = stats_of(capture, names::KFREE_SKB);
    let before_xdp = stats_of(capture, names::XDP_INGRESS);
    let dropped_before = topo.dropped();
    let (mut frames, mut drops) = (Vec::new(), Vec::new());
    let mut sent = 0;
    while sent < n {
        for _ in 0..BURST.min(n - sent) {
            sock.send_to(payload, ("10.78.0.1", port)).expect("send");
            sent += 1;
        }
        capture.drain_now(&mut frames, &mut drops);
        frames.clear();
        drops.clear();
    }
    let deadline = Instant::now() + Duration::from_secs(30);
    while topo.dropped() < dropped_before + n {
        assert!(Instant::now() < deadline, "nft did not drop the flood");
        std::thread::sleep(Duration::from_millis(10));
        capture.drain_now(&mut frames, &mut drops);
    }
    let after_empty = stats_of(capture, names::KFREE_SKB_EMPTY);
    let after_drop = stats_of(capture, names::KFREE_SKB);
    let after_xdp = stats_of(capture, names::XDP_INGRESS);
    let per = |b: (Duration, u64), a: (Duration, u64)| {
        let runs = a.1 - b.1;
        ((a.0 - b.0).as_nanos() as f64 / runs.max(1) as f64, runs)
    };
    let (d, runs) = per(before_drop, after_drop);
    let (x, _) = per(before_xdp, after_xdp);
    let (e, _) = per(before_empty, after_empty);
    (d, e, x, runs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "the drops benchmark needs root (namespaces, BPF): run `cargo xtask bench drops` as root"
        );
        std::process::exit(1);
    }
    let topo = Topology::new();
    // Keep the fd: statistics are collected while it is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    enter_netns(&topo.host);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let _guard = runtime.enter();
    let mut capture = LiveCapture::start(&LiveConfig {
        interfaces: vec![topo.host_if.clone()],
        ..LiveConfig::default()
    })
    .expect("starting live capture with the drop tracer");
    capture
        .attach_kfree_skb_baseline()
        .expect("attaching the empty kfree_skb program");
    let sock = peer_socket(&topo.peer);
    let sip = b"SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 10.78.0.1:5060;branch=z9hG4bK-b\r\nCall-ID: bench\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";

    println!(
        "drops bench: kernel-accounted ns per run (bpf_stats), {PER_ROUND} dropped datagrams per round, median of {ROUNDS} rounds"
    );
    println!(
        "{:<32} {:>10} {:>10} {:>10} {:>9} {:>9}",
        "flood (dropped by nft input)", "XDP ns", "empty tp", "tracer", "vs XDP", "vs empty"
    );
    for (label, port, payload) in [
        ("non-VoIP UDP 9999 (filtered)", 9999u16, &[0u8; 64][..]),
        ("SIP UDP 5060 (reported)", 5060, &sip[..]),
    ] {
        let (mut d, mut e, mut x) = (Vec::new(), Vec::new(), Vec::new());
        let mut runs = 0;
        for _ in 0..ROUNDS {
            let (dd, ee, xx, r) = round(&topo, &mut capture, &sock, port, payload, PER_ROUND);
            d.push(dd);
            e.push(ee);
            x.push(xx);
            runs += r;
        }
        let (d, e, x) = (median(d), median(e), median(x));
        println!(
            "{label:<32} {x:>10.1} {e:>10.1} {d:>10.1} {:>8.2}x {:>8.2}x  ({runs} kfree_skb runs)",
            d / x.max(0.1),
            d / e.max(0.1)
        );
    }
    let c = capture
        .drop_counters()
        .expect("drop counters")
        .expect("drop tracer running");
    println!("drop counters: {c}");
}
