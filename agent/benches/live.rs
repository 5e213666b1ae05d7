//! What live capture costs the whole machine per received packet, against
//! tcpdump and against empty programs, all in the same run.
//!
//! A sender in one namespace floods 2000 RTP flows over a veth (as fast as
//! it can, closed ports) into the other, where each mode in turn is
//! attached to the receiving end: nothing, an empty TC ingress program, an
//! empty XDP program, `tcpdump -w /dev/null 'udp portrange 10000-20000'`,
//! `sipscope run --no-drops` with `--ingress auto` and with `--ingress
//! xdp`. Measured per mode, divided by the packets the receiving veth
//! counted: busy CPU of all cores (user, system, irq and softirq from
//! /proc/stat) over the flood; the CPU spent on the flood itself (the
//! sender thread, which runs the receive softirq on its way out of the
//! kernel, ksoftirqd and the capturing process, from schedstat), which
//! other load on a shared machine barely touches; and, in a shorter
//! flood after it, each BPF program's run time (bpf_stats). The CPU is
//! measured with bpf_stats off: on, the kernel reads its clock twice
//! around every program run (tcpdump's socket filter too), about 30 ns a
//! packet in a KVM guest that production does not pay. Modes are interleaved and repeated; the median
//! round is reported with the spread of the rounds (lowest–highest), and
//! the differences between modes, taken within each round (the load
//! drifts less within a round than between rounds) and then the median
//! of the rounds, are the figures to read.
//! The load average before and after is printed with them.
//!
//! `SIPSCOPE_BENCH_ROUNDS` (default 5) sets the rounds,
//! `SIPSCOPE_BENCH_FLOWS` (default 2000, at most 10,001) the flows;
//! `SIPSCOPE_BENCH_BASELINE_BIN=PATH` adds another build of the agent
//! (e.g. the previous commit's) as one more interleaved mode, so a change
//! is judged against its predecessor within one run.
//!
//! Run as root: `cargo xtask bench live`.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    net::{SocketAddr, UdpSocket},
    time::{Duration, Instant},
};

use aya::programs::{SchedClassifier, TcAttachType, Xdp, XdpMode, tc};
use sipscope::capture::live::{KernelFeatures, LoadedObject, load_object_for};
use sipscope_common::{DEFAULT_RING_SIZE, names};
use support::{
    TempDir,
    flood::{blast_rtp, bpf_stats_on, require_bench_root, tcpdump_rtp},
    netns::{VethPair, in_netns},
    process::NsProcess,
};

/// How long each mode is flooded per round for its CPU.
const LOAD: Duration = Duration::from_secs(3);
/// How long each mode is flooded after that with bpf_stats on, for its
/// programs' run time.
const PROGRAM_LOAD: Duration = Duration::from_secs(1);
/// Rounds unless `SIPSCOPE_BENCH_ROUNDS` says otherwise.
const ROUNDS: usize = 5;
/// Flows unless `SIPSCOPE_BENCH_FLOWS` says otherwise (at most 10,001: one
/// destination port each, inside the RTP range 10000-20000).
const FLOWS: u16 = 2_000;
const FIRST_PORT: u16 = 10_000;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Mode {
    Nothing,
    EmptyTc,
    EmptyXdp,
    Tcpdump,
    SipscopeAuto,
    SipscopeXdp,
    /// `SIPSCOPE_BENCH_BASELINE_BIN run --ingress auto`.
    BaselineAuto,
}

impl Mode {
    const ALL: [Self; 6] = [
        Self::Nothing,
        Self::EmptyTc,
        Self::EmptyXdp,
        Self::Tcpdump,
        Self::SipscopeAuto,
        Self::SipscopeXdp,
    ];

    fn label(self) -> &'static str {
        match self {
            Self::Nothing => "nothing attached",
            Self::EmptyTc => "empty TC ingress program",
            Self::EmptyXdp => "empty XDP program",
            Self::Tcpdump => "tcpdump -w /dev/null",
            Self::SipscopeAuto => "sipscope run --ingress auto",
            Self::SipscopeXdp => "sipscope run --ingress xdp",
            Self::BaselineAuto => "baseline build, --ingress auto",
        }
    }
}

/// The agent build `SIPSCOPE_BENCH_BASELINE_BIN` names, if any.
fn baseline_bin() -> Option<String> {
    std::env::var("SIPSCOPE_BENCH_BASELINE_BIN")
        .ok()
        .filter(|p| !p.is_empty())
}

/// The modes of this run, in the order each round measures them.
fn modes() -> Vec<Mode> {
    let mut modes = Mode::ALL.to_vec();
    if baseline_bin().is_some() {
        modes.push(Mode::BaselineAuto);
    }
    modes
}

/// What is attached for one mode; dropping it detaches.
enum Attached {
    Nothing,
    /// The empty program, attached while its object lives.
    Program {
        _object: Box<LoadedObject>,
        id: u32,
    },
    Process(NsProcess),
}

impl Attached {
    /// Ids of the BPF programs of this mode (bpf_stats).
    fn program_ids(&self) -> Vec<u32> {
        match self {
            Self::Nothing => Vec::new(),
            Self::Program { id, .. } => vec![*id],
            Self::Process(p) => program_ids_of(p.pid()),
        }
    }

    /// CPU time of the capturing process's threads in ns (0 without one).
    fn process_cpu_ns(&self) -> u64 {
        let Self::Process(p) = self else { return 0 };
        let mut ns = 0;
        for task in std::fs::read_dir(format!("/proc/{}/task", p.pid()))
            .into_iter()
            .flatten()
        {
            let path = task.unwrap().path().join("schedstat");
            ns += std::fs::read_to_string(path)
                .ok()
                .and_then(|t| t.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0);
        }
        ns
    }
}

fn attach(mode: Mode, pair: &VethPair, dir: &TempDir) -> Attached {
    let iface = pair.host_if.clone();
    let empty = |xdp: bool| {
        let iface = iface.clone();
        in_netns(&pair.host, move || {
            let mut object = load_object_for(DEFAULT_RING_SIZE, 1, KernelFeatures::all())
                .expect("loading the eBPF object");
            object.load_bench_programs().expect("empty programs");
            let id = if xdp {
                let prog: &mut Xdp = program(&mut object, names::XDP_EMPTY);
                prog.attach(&iface, XdpMode::Driver).expect("attaching XDP");
                prog.info().unwrap().id()
            } else {
                let _ = tc::qdisc_add_clsact(&iface);
                let prog: &mut SchedClassifier = program(&mut object, names::TC_EMPTY);
                prog.attach(&iface, TcAttachType::Ingress)
                    .expect("attaching TC");
                prog.info().unwrap().id()
            };
            Attached::Program {
                _object: Box::new(object),
                id,
            }
        })
    };
    let process = |name: &str, program: &str, args: &[&str], ready: &str| {
        let mut p = NsProcess::spawn(&pair.host, &dir.path, name, program, args);
        p.wait_output(ready, Duration::from_secs(30));
        Attached::Process(p)
    };
    let sipscope = |name: &str, ingress: &str, bin: &str| {
        process(
            name,
            bin,
            &[
                "run",
                "--iface",
                &pair.host_if,
                "--no-drops",
                "--ingress",
                ingress,
                "--rtp-ports",
                "10000-20000",
            ],
            "capturing on",
        )
    };
    match mode {
        Mode::Nothing => Attached::Nothing,
        Mode::EmptyTc => empty(false),
        Mode::EmptyXdp => empty(true),
        Mode::Tcpdump => Attached::Process(tcpdump_rtp(pair, &dir.path)),
        Mode::SipscopeAuto => sipscope("sipscope-auto", "auto", env!("CARGO_BIN_EXE_sipscope")),
        Mode::SipscopeXdp => sipscope("sipscope-xdp", "xdp", env!("CARGO_BIN_EXE_sipscope")),
        Mode::BaselineAuto => sipscope(
            "baseline-auto",
            "auto",
            &baseline_bin().expect("only measured with a baseline build"),
        ),
    }
}

/// CPU time of every thread of `pid` in ns.
fn process_cpu_ns(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .map(|t| thread_cpu_ns(&t.path().to_string_lossy()))
        .sum()
}

/// CPU time of one thread (`/proc/.../task/TID`) in ns, from schedstat:
/// exact, where /proc/stat counts ticks. Without IRQ time accounting,
/// softirq work a thread runs is its own time.
fn thread_cpu_ns(dir: &str) -> u64 {
    std::fs::read_to_string(format!("{dir}/schedstat"))
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// The pids of the ksoftirqd threads.
fn ksoftirqd_pids() -> Vec<i32> {
    std::fs::read_dir("/proc")
        .expect("reading /proc")
        .flatten()
        .filter_map(|e| {
            let pid: i32 = e.file_name().to_str()?.parse().ok()?;
            let comm = std::fs::read_to_string(e.path().join("comm")).ok()?;
            comm.starts_with("ksoftirqd/").then_some(pid)
        })
        .collect()
}

/// Program `name` of `object` as its concrete type.
fn program<'a, T>(object: &'a mut LoadedObject, name: &str) -> &'a mut T
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = object
        .ebpf
        .program_mut(name)
        .expect("program in the object");
    prog.try_into().expect("program type")
}

/// BPF program ids a process holds open (/proc/PID/fdinfo).
fn program_ids_of(pid: i32) -> Vec<u32> {
    let mut ids = Vec::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/fdinfo"))
        .expect("reading fdinfo")
        .flatten()
    {
        let info = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(id) = info
            .lines()
            .find_map(|l| l.strip_prefix("prog_id:"))
            .and_then(|v| v.trim().parse().ok())
        {
            ids.push(id);
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// (name, run time ns, run count) of the given programs.
fn prog_stats(ids: &[u32]) -> BTreeMap<u32, (String, u64, u64)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .filter(|p| ids.contains(&p.id()))
        .map(|p| {
            let name = p.name_as_str().unwrap_or("?").to_owned();
            (
                p.id(),
                (name, p.run_time().as_nanos() as u64, p.run_count()),
            )
        })
        .collect()
}

/// (busy, total) jiffies of all cores from /proc/stat's `cpu` line: busy
/// is user + nice + system + irq + softirq + steal.
fn cpu_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").expect("reading /proc/stat");
    let line = stat.lines().next().expect("cpu line");
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .map(|f| f.parse().unwrap_or(0))
        .collect();
    let (idle, iowait) = (v[3], v[4]);
    let total: u64 = v.iter().take(8).sum();
    (total - idle - iowait, total)
}

fn rx_packets(pair: &VethPair) -> u64 {
    pair.host
        .exec_stdout(
            "cat",
            &[&format!(
                "/sys/class/net/{}/statistics/rx_packets",
                pair.host_if
            )],
        )
        .trim()
        .parse()
        .expect("rx_packets")
}

/// One mode's round.
struct Sample {
    /// Busy CPU of all cores per received packet.
    ns_per_packet: f64,
    /// CPU spent on the flood per received packet: the sender thread
    /// (with the softirq work it runs on its way out of the kernel),
    /// ksoftirqd, and the capturing process.
    attributed_ns: f64,
    packets_per_second: f64,
    /// The capturing process's own CPU per received packet.
    process_ns: f64,
    /// Program name → (ns per run, ns per received packet).
    programs: Vec<(String, f64, f64)>,
}

fn measure(
    pair: &VethPair,
    sock: &UdpSocket,
    attached: &Attached,
    ksoftirqd: &[i32],
    flows: u16,
) -> Sample {
    let ids = attached.program_ids();
    let ours = || {
        thread_cpu_ns("/proc/thread-self")
            + ksoftirqd.iter().map(|p| process_cpu_ns(*p)).sum::<u64>()
    };
    let hz = clock_ticks();
    let proc0 = attached.process_cpu_ns();
    let rx0 = rx_packets(pair);
    let ours0 = ours();
    let (busy0, _) = cpu_jiffies();
    let start = Instant::now();
    blast_rtp(sock, VethPair::HOST_V4, flows, FIRST_PORT, start + LOAD);
    let (busy1, _) = cpu_jiffies();
    let ours1 = ours();
    let elapsed = start.elapsed().as_secs_f64();
    let rx = rx_packets(pair) - rx0;
    let process = attached.process_cpu_ns() - proc0;
    let process_ns = process as f64 / rx.max(1) as f64;
    let busy_ns = (busy1 - busy0) as f64 / hz * 1e9;
    let stats_on = bpf_stats_on();
    let stats0 = prog_stats(&ids);
    let rx0 = rx_packets(pair);
    blast_rtp(
        sock,
        VethPair::HOST_V4,
        flows,
        FIRST_PORT,
        Instant::now() + PROGRAM_LOAD,
    );
    let stats1 = prog_stats(&ids);
    let program_rx = rx_packets(pair) - rx0;
    drop(stats_on);
    let programs = stats1
        .iter()
        .filter_map(|(id, (name, ns1, cnt1))| {
            let (_, ns0, cnt0) = stats0.get(id)?;
            let runs = cnt1 - cnt0;
            (runs > 0).then(|| {
                let ns = (ns1 - ns0) as f64;
                (
                    name.clone(),
                    ns / runs as f64,
                    ns / program_rx.max(1) as f64,
                )
            })
        })
        .collect();
    Sample {
        ns_per_packet: busy_ns / rx.max(1) as f64,
        attributed_ns: (ours1 - ours0 + process) as f64 / rx.max(1) as f64,
        packets_per_second: rx as f64 / elapsed,
        process_ns,
        programs,
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    unsafe { libc::sysconf(libc::_SC_CLK_TCK) as f64 }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// `lowest–highest` of the rounds, to judge a median by.
fn spread(v: &[f64]) -> String {
    let lo = v.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = v.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    format!("{lo:.0}–{hi:.0}")
}

/// The first three fields of /proc/loadavg.
fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn flows() -> u16 {
    std::env::var("SIPSCOPE_BENCH_FLOWS")
        .ok()
        .and_then(|f| f.parse().ok())
        .filter(|&f| f > 0 && f <= 10_001)
        .unwrap_or(FLOWS)
}

fn rounds() -> usize {
    std::env::var("SIPSCOPE_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .filter(|&r| r > 0)
        .unwrap_or(ROUNDS)
}

fn main() {
    require_bench_root("live");
    if std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|v| v.trim() != "0")
    {
        println!(
            "note: sysctl kernel.bpf_stats_enabled is on: every mode's CPU carries the kernel's \
             timing of its programs"
        );
    }
    let flows = flows();
    let pair = VethPair::new();
    let dir = TempDir::new("bench-live");
    let sock = in_netns(&pair.peer, || {
        UdpSocket::bind(SocketAddr::from((VethPair::PEER_V4, 40_000))).unwrap()
    });
    // Warm-up: neighbour entries, caches.
    blast_rtp(
        &sock,
        VethPair::HOST_V4,
        flows,
        FIRST_PORT,
        Instant::now() + LOAD / 3,
    );

    let ksoftirqd = ksoftirqd_pids();
    let (modes, rounds) = (modes(), rounds());
    let load_before = load_average();
    let mut samples: BTreeMap<Mode, Vec<Sample>> = BTreeMap::new();
    let mut lines = BTreeMap::new();
    for round in 0..rounds {
        for &mode in &modes {
            let attached = attach(mode, &pair, &dir);
            if let Attached::Process(p) = &attached
                && round == 0
                && mode == Mode::SipscopeAuto
            {
                lines.insert(mode, ingress_line(&p.stdout_text()));
            }
            let s = measure(&pair, &sock, &attached, &ksoftirqd, flows);
            if let Attached::Process(mut p) = attached {
                p.interrupt(Duration::from_secs(20));
            }
            samples.entry(mode).or_default().push(s);
        }
    }

    let system = |m: Mode| median(samples[&m].iter().map(|s| s.ns_per_packet).collect());
    let attributed = |m: Mode| median(samples[&m].iter().map(|s| s.attributed_ns).collect());
    // Differences are taken within each round, then the median of the
    // rounds: the machine's load drifts between rounds more than within
    // one (a round measures every mode back to back).
    let per_round = |m: Mode, base: Mode, f: fn(&Sample) -> f64| -> Vec<f64> {
        samples[&m]
            .iter()
            .zip(&samples[&base])
            .map(|(a, b)| f(a) - f(b))
            .collect()
    };
    let system_ns: fn(&Sample) -> f64 = |s| s.ns_per_packet;
    let attributed_ns: fn(&Sample) -> f64 = |s| s.attributed_ns;
    println!(
        "live bench: {flows} RTP flows flooded over a veth, {}s per mode (bpf_stats off, then \
         {}s on for the programs), median of {rounds} interleaved rounds, CPU per received \
         packet in ns; load average {load_before} before, {} after:",
        LOAD.as_secs(),
        PROGRAM_LOAD.as_secs(),
        load_average()
    );
    println!(
        "  system: busy CPU of all cores incl. softirq (/proc/stat ticks); carries every other \
         load on the machine"
    );
    println!(
        "  ours:   sender thread (and the softirq work it runs), ksoftirqd, capturing process \
         (schedstat)"
    );
    println!(
        "{:<31} {:>8} {:>7} {:>7} {:>7} {:>9} {:>8} {:>6}   programs (bpf_stats: ns/run \
         [rounds' spread], ns/pkt)",
        "attached to the receiving veth",
        "system",
        "+ns",
        "ours",
        "+ns",
        "ours: all",
        "pkts/s",
        "proc"
    );
    for &mode in &modes {
        let s = &samples[&mode];
        let pps = median(s.iter().map(|s| s.packets_per_second).collect());
        let process = median(s.iter().map(|s| s.process_ns).collect());
        let mut progs: BTreeMap<&str, (Vec<f64>, Vec<f64>)> = BTreeMap::new();
        for (name, run, pkt) in s.iter().flat_map(|s| &s.programs) {
            let e = progs.entry(name).or_default();
            e.0.push(*run);
            e.1.push(*pkt);
        }
        let progs: Vec<String> = progs
            .into_iter()
            .map(|(n, (run, pkt))| {
                format!(
                    "{n} {:.0} [{}], {:.1}",
                    median(run.clone()),
                    spread(&run),
                    median(pkt)
                )
            })
            .collect();
        let ours: Vec<f64> = s.iter().map(|s| s.attributed_ns).collect();
        println!(
            "{:<31} {:>8.0} {:>+7.0} {:>7.0} {:>+7.0} {:>9} {:>8.0} {:>6.0}   {}",
            mode.label(),
            system(mode),
            median(per_round(mode, Mode::Nothing, system_ns)),
            attributed(mode),
            median(per_round(mode, Mode::Nothing, attributed_ns)),
            spread(&ours),
            pps,
            process,
            progs.join("; ")
        );
    }
    if let Some(line) = lines.get(&Mode::SipscopeAuto) {
        println!("sipscope --ingress auto chose: {line}");
    }
    for (measure, ns) in [("ours", attributed_ns), ("system", system_ns)] {
        let extra = |m: Mode| median(per_round(m, Mode::Nothing, ns));
        for (mode, empty) in [
            (Mode::SipscopeAuto, auto_empty(&lines)),
            (Mode::SipscopeXdp, Mode::EmptyXdp),
            (Mode::BaselineAuto, auto_empty(&lines)),
        ] {
            if !modes.contains(&mode) {
                continue;
            }
            let ratio = extra(mode) / extra(Mode::Tcpdump);
            let rounds_over = per_round(mode, empty, ns);
            let over_empty = median(rounds_over.clone());
            println!(
                "{measure:>6}: {}: {ratio:.2}x tcpdump's extra (target <= 0.5{}), \
                 {over_empty:+.0} ns [rounds {}] over the {} (target <= 100{})",
                mode.label(),
                if (0.0..=0.5).contains(&ratio) {
                    ""
                } else {
                    ", missed"
                },
                spread(&rounds_over),
                empty.label(),
                if over_empty <= 100.0 { "" } else { ", missed" },
            );
        }
    }
}

/// The start-up line that says which ingress hook auto chose.
fn ingress_line(stdout: &str) -> String {
    stdout
        .lines()
        .find(|l| l.starts_with("ingress on "))
        .unwrap_or("?")
        .to_owned()
}

/// The empty program of the hook `--ingress auto` chose.
fn auto_empty(lines: &BTreeMap<Mode, String>) -> Mode {
    match lines.get(&Mode::SipscopeAuto) {
        Some(l) if l.contains(": xdp") => Mode::EmptyXdp,
        _ => Mode::EmptyTc,
    }
}
