//! Always-on RTP statistics under sustained load, against the pcap way.
//!
//! A sender in one namespace blasts valid RTP over a veth (as fast as the
//! machine allows, spread over many flows) for a bounded time while, on the
//! receiving end, `sipscope run` keeps per-flow RTP statistics in the
//! kernel and `tcpdump -w /dev/null udp portrange 10000-20000` captures the
//! same packets — in the same run, so the two compare directly. Reported:
//! the in-kernel cost per packet of the XDP program (bpf_stats run time /
//! run count, from its prog info), each process's CPU time
//! (/proc/PID/stat utime + stime) over the load, their ratio (target
//! < 0.1), and the packet rate achieved.
//!
//! Run as root: `cargo xtask bench media`.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::{
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use support::{
    TempDir,
    flood::{bench_start, blast_rtp, tcpdump_rtp},
    netns::{Netns, VethPair, in_netns},
    process::NsProcess,
};

/// How long the load runs.
const LOAD: Duration = Duration::from_secs(5);
/// Streams (one direction each) the packets are spread over: at 50 pps a
/// stream, the rate achieved below corresponds to rate / 50 such streams.
const FLOWS: u16 = 2_000;
const FIRST_PORT: u16 = 10_000;

/// CPU time of every thread of `pid` in seconds, from
/// /proc/PID/task/*/schedstat (nanoseconds). utime + stime in /proc/PID/stat
/// count 10 ms ticks, coarser than the agent's whole use over the run, so
/// they are printed beside it only as a cross-check.
fn cpu_seconds(pid: i32) -> f64 {
    let mut ns = 0u64;
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).expect("reading /proc tasks") {
        let path = task.unwrap().path().join("schedstat");
        if let Ok(text) = std::fs::read_to_string(path) {
            ns += text
                .split_whitespace()
                .next()
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0);
        }
    }
    ns as f64 / 1e9
}

/// utime + stime of `pid` (all threads) in seconds, 10 ms resolution.
fn stat_cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("reading /proc stat");
    // Fields after the parenthesised command name; utime and stime are the
    // 14th and 15th fields of the whole line.
    let rest = &stat[stat.rfind(')').expect("stat format") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap();
    // SAFETY: sysconf has no preconditions.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    ticks as f64 / hz
}

/// Id of the XDP program attached to `iface` in `ns` (from `ip -d link`).
fn xdp_prog_id(ns: &Netns, iface: &str) -> u32 {
    let out = String::from_utf8_lossy(&ns.ip(&["-d", "link", "show", iface]).stdout).into_owned();
    let after = out
        .split("prog/xdp id ")
        .nth(1)
        .unwrap_or_else(|| panic!("no XDP program on {iface}:\n{out}"));
    after
        .split_whitespace()
        .next()
        .and_then(|id| id.parse().ok())
        .expect("program id")
}

/// (run time ns, run count) of program `id`.
fn prog_stats(id: u32) -> (u64, u64) {
    for info in aya::programs::loaded_programs() {
        let Ok(info) = info else { continue };
        if info.id() == id {
            return (info.run_time().as_nanos() as u64, info.run_count());
        }
    }
    panic!("program {id} is gone");
}

fn line_value(text: &str, prefix: &str, name: &str) -> Option<u64> {
    let line = text.lines().find_map(|l| l.strip_prefix(prefix))?;
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('=')?.parse().ok())
}

fn main() {
    let _stats = bench_start("media");
    let pair = VethPair::new();
    let dir = TempDir::new("bench-media");
    let mut agent = NsProcess::spawn(
        &pair.host,
        &dir.path,
        "sipscope",
        env!("CARGO_BIN_EXE_sipscope"),
        &[
            "run",
            "--iface",
            &pair.host_if,
            "--rtp-ports",
            "10000-20000",
            "--rtp-interval",
            "2",
        ],
    );
    agent.wait_output("capturing on", Duration::from_secs(20));
    let mut tcpdump = tcpdump_rtp(&pair, &dir.path);
    let prog = xdp_prog_id(&pair.host, &pair.host_if);

    let sock = in_netns(&pair.peer, || {
        let s = UdpSocket::bind(SocketAddr::from((VethPair::PEER_V4, 40_000))).unwrap();
        s.set_nonblocking(false).unwrap();
        s
    });
    let (agent_cpu0, tcpdump_cpu0) = (cpu_seconds(agent.pid()), cpu_seconds(tcpdump.pid()));
    let (agent_tick0, tcpdump_tick0) = (
        stat_cpu_seconds(agent.pid()),
        stat_cpu_seconds(tcpdump.pid()),
    );
    let (run_ns0, run_cnt0) = prog_stats(prog);
    let start = Instant::now();
    let sent = blast_rtp(&sock, VethPair::HOST_V4, FLOWS, FIRST_PORT, start + LOAD);
    let elapsed = start.elapsed().as_secs_f64();
    let (run_ns1, run_cnt1) = prog_stats(prog);
    let (agent_cpu1, tcpdump_cpu1) = (cpu_seconds(agent.pid()), cpu_seconds(tcpdump.pid()));
    let (agent_tick1, tcpdump_tick1) = (
        stat_cpu_seconds(agent.pid()),
        stat_cpu_seconds(tcpdump.pid()),
    );

    let status = agent.interrupt(Duration::from_secs(20));
    assert!(status.success(), "sipscope: {}", agent.stderr_text());
    tcpdump.interrupt(Duration::from_secs(20));
    let out = agent.stdout_text();
    let rtp_packets = line_value(&out, "rtp counters: ", "rtp_packets").unwrap_or(0);
    let flows = line_value(&out, "rtp counters: ", "rtp_flows_live").unwrap_or(0);
    // The bench's ports have no listener: every packet is a kernel drop
    // (no_socket), which the drop tracer reports within its budget.
    let drop_count = |name| line_value(&out, "capture counters: ", name).unwrap_or(0);
    let (reported, suppressed) = (
        drop_count("drops_reported"),
        drop_count("rtp_drops_suppressed"),
    );
    let tcpdump_err = tcpdump.stderr_text();
    let captured = tcpdump_err
        .lines()
        .find(|l| l.contains("packets captured"))
        .unwrap_or("?")
        .to_owned();
    let dropped = tcpdump_err
        .lines()
        .find(|l| l.contains("dropped by kernel"))
        .unwrap_or("?")
        .to_owned();

    let runs = run_cnt1 - run_cnt0;
    let ns_per_packet = (run_ns1 - run_ns0) as f64 / runs.max(1) as f64;
    let agent_cpu = agent_cpu1 - agent_cpu0;
    let tcpdump_cpu = tcpdump_cpu1 - tcpdump_cpu0;
    let pps = runs as f64 / elapsed;
    println!(
        "media bench: {FLOWS} RTP flows over a veth for {elapsed:.1} s (2 cores shared; absolute figures are noisy, the ratio is the figure)"
    );
    println!(
        "  load:       {sent} RTP datagrams sent, XDP ran {runs} times: {pps:.0} packets/s (= {:.0} G.711 streams at 50 pps)",
        pps / 50.0
    );
    println!("  kernel:     {ns_per_packet:.1} ns per packet in the XDP program (bpf_stats)");
    println!(
        "  sipscope:   {agent_cpu:.4} s CPU (utime+stime {:.2} s), {rtp_packets} RTP packets accounted in {flows} flows",
        agent_tick1 - agent_tick0
    );
    println!(
        "  drops:      every RTP packet hit a closed port (no_socket): {reported} reported to the agent, {suppressed} counted only (one per flow and second, 64 per CPU and second)"
    );
    println!(
        "  tcpdump:    {tcpdump_cpu:.4} s CPU (utime+stime {:.2} s), {captured}, {dropped}",
        tcpdump_tick1 - tcpdump_tick0
    );
    let ratio = agent_cpu / tcpdump_cpu.max(0.001);
    println!(
        "  ratio sipscope CPU / tcpdump CPU: {ratio:.3} (target < 0.1){}",
        if ratio < 0.1 {
            ""
        } else {
            "  ** above target **"
        }
    );
}
