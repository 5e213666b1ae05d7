//! Live SIP under sustained load (issue 14, goal 4): SIPp drives
//! registrations with digest challenges and calls, with retransmissions,
//! through a veth at a fixed message rate while `sipscope run` captures on
//! the receiving end with findings and OTLP export on. Reported: the
//! message rate the agent saw, every loss counter (kernel ring, core
//! queue, OTLP span queue; the target is zero of each) and the agent's
//! CPU per SIP message.
//!
//! The peer namespace holds two SIPp clients: `register.xml` (REGISTER,
//! 401, REGISTER with credentials, 200: four messages) and SIPp's built-in
//! `uac` (INVITE, 180, 200, ACK, BYE, 200: six; the built-in `uas` sends
//! no 100, which `uac` takes as optional). The host namespace
//! holds the SIPp servers (`bench-registrar.xml`, built-in `uas`) on two
//! addresses, the agent, and a counting OTLP/gRPC receiver. The clients
//! lose 1 % of their messages on purpose (`-lost 1`), so SIPp's timers
//! retransmit them: retransmissions are part of the load.
//!
//! `SIPSCOPE_BENCH_SECS` (default 60) and `SIPSCOPE_BENCH_MSGS` (SIP
//! messages per second, default 20,000: three fifths calls, two fifths
//! registrations) size the load; `SIPSCOPE_AGENT_BIN` runs another build
//! of the agent (to compare two). Run as root: `cargo xtask bench sipp`.

#[path = "../../tests/support/mod.rs"]
mod support;

use std::{
    collections::BTreeMap,
    net::Ipv4Addr,
    time::{Duration, Instant},
};

use support::{
    TempDir, env_u64, fixture,
    flood::bench_start,
    netns::{VethPair, in_netns},
    otlp_counter::CountingReceiver,
    process::{NsProcess, agent_bin, free_udp_port},
    sipp::{ACCOUNT_1001, sipp_count},
    wait_for,
};

/// The call server's address beside the registrar's (`HOST_V4`).
const CALLS_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 11);
const START: Duration = Duration::from_secs(30);
/// Messages per call of SIPp's built-in uac/uas (`sipp -sd uas`: no 100
/// Trying) and per registration. Counting a 100 here planned 1,714 calls
/// a second for 20,000 messages, which put 18,286 on the wire.
const CALL_MSGS: u64 = 6;
const REGISTER_MSGS: u64 = 4;

/// Starts the counting receiver on 127.0.0.1 of the host namespace
/// (where the agent runs); returns its endpoint.
fn start_receiver(pair: &VethPair, receiver: &CountingReceiver) -> String {
    receiver.serve(in_netns(&pair.host, || {
        std::net::TcpListener::bind("127.0.0.1:0").expect("binding the OTLP receiver")
    }))
}

/// The peak resident set of `pid` so far, in kB (VmHWM).
fn peak_rss_kb(pid: i32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

/// CPU time of every thread of `pid` in ns (schedstat: exact).
fn process_cpu_ns(pid: i32) -> u64 {
    std::fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|t| {
            let text = std::fs::read_to_string(t.path().join("schedstat")).ok()?;
            text.split_whitespace().next()?.parse::<u64>().ok()
        })
        .sum()
}

/// Packets received plus sent on the servers' veth (one SIP message
/// each), from the namespace's own /proc/net/dev.
fn veth_packets(pair: &VethPair) -> u64 {
    let iface = format!("{}:", pair.host_if);
    let dev = in_netns(&pair.host, || {
        std::fs::read_to_string("/proc/thread-self/net/dev").unwrap_or_default()
    });
    dev.lines()
        .find_map(|l| {
            let rest = l.trim_start().strip_prefix(&iface)?;
            let f: Vec<u64> = rest
                .split_whitespace()
                .filter_map(|v| v.parse().ok())
                .collect();
            // rx: bytes packets ... (8 fields), then tx: bytes packets ...
            Some(f.get(1)? + f.get(9)?)
        })
        .unwrap_or(0)
}

/// When SIPp had sent 99 % of all it sent (the rest is the tail of
/// retransmissions and failed calls timing out, up to 32 s, which would
/// dilute the rate): seconds since the start, messages by then, agent CPU
/// ns by then, from samples taken while the clients ran.
fn sustained(samples: &[(f64, u64, u64)]) -> Option<(f64, u64, u64)> {
    let &(_, total, _) = samples.last()?;
    let first = samples.first()?;
    samples
        .iter()
        .find(|(_, n, _)| *n * 100 >= total * 99)
        .map(|&(t, n, cpu)| (t - first.0, n - first.1, cpu - first.2))
}

/// What the agent reported at exit.
#[derive(Default)]
struct Figures {
    messages: u64,
    retransmissions: u64,
    /// Kernel ring buffer full (`ringbuf_full`).
    ring: u64,
    /// Frames the analysis thread could not take (`core_queue_full`).
    queue: u64,
    exported: u64,
    spans_dropped: u64,
    findings: BTreeMap<String, u64>,
}

impl Figures {
    fn from_json(out: &str) -> Self {
        let mut f = Self::default();
        for line in out.lines() {
            let v: serde_json::Value = serde_json::from_str(line).unwrap_or_default();
            let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
            match v["type"].as_str() {
                Some("diagnosis") => {
                    *f.findings
                        .entry(v["code"].as_str().unwrap_or("?").into())
                        .or_default() += 1;
                }
                Some("summary") => {
                    f.messages = n(&v["sip"]["messages"]);
                    f.retransmissions = n(&v["sip"]["retransmissions"]);
                }
                Some("capture") => {
                    f.ring = n(&v["ringbuf_full"]);
                    f.queue = n(&v["core_queue_full"]);
                }
                Some("export") => {
                    f.exported = n(&v["spans"]["exported"]);
                    f.spans_dropped = n(&v["spans"]["dropped"]);
                }
                _ => {}
            }
        }
        f
    }

    /// From the console summary: `SIP messages N (... retransmissions R,
    /// ...)`, `export ...: exported N, dropped N, ...`, `capture counters:
    /// ... ringbuf_full=N ... core_queue_full=N`; findings by the codes
    /// their lines start with.
    fn from_console(out: &str) -> Self {
        let after = |line: &str, key: &str| -> u64 {
            line.split(key)
                .nth(1)
                .and_then(|rest| {
                    rest.trim_start_matches([' ', '='])
                        .split(|c: char| !c.is_ascii_digit())
                        .next()?
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        let mut f = Self::default();
        for line in out.lines() {
            let t = line.trim_start();
            if t.starts_with("SIP messages") {
                f.messages = after(t, "SIP messages");
                f.retransmissions = after(t, "retransmissions");
            } else if t.starts_with("export ") {
                f.exported = after(t, "exported");
                f.spans_dropped = after(t, "dropped");
            } else if t.starts_with("capture counters:") {
                f.ring = after(t, "ringbuf_full");
                f.queue = after(t, "core_queue_full");
            } else if let Some(code) = t.split_whitespace().find(|w| {
                w.split_once('.').is_some_and(|(area, rest)| {
                    ["auth", "nat", "net", "fw", "reg", "media", "call"].contains(&area)
                        && !rest.is_empty()
                        && rest.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
                })
            }) {
                *f.findings.entry(code.to_owned()).or_default() += 1;
            }
        }
        f
    }
}

fn spawn_sipp(ns: &support::netns::Netns, dir: &TempDir, name: &str, args: &[&str]) -> NsProcess {
    NsProcess::spawn(ns, &dir.path, name, "sipp", args)
}

fn main() {
    let _stats = bench_start("sipp");
    let secs = env_u64("SIPSCOPE_BENCH_SECS", 60);
    let msgs = env_u64("SIPSCOPE_BENCH_MSGS", 20_000);
    let json = env_u64("SIPSCOPE_BENCH_JSON", 0) == 1;
    let call_rate = (msgs * 3 / 5 / CALL_MSGS).max(1);
    let register_rate = (msgs * 2 / 5 / REGISTER_MSGS).max(1);

    let pair = VethPair::new();
    let dir = TempDir::new("bench-sipp");
    pair.host
        .add_address(&pair.host_if, &format!("{CALLS_V4}/24"));
    let receiver = CountingReceiver::default();
    let endpoint = start_receiver(&pair, &receiver);

    let mut agent = NsProcess::spawn(
        &pair.host,
        &dir.path,
        "sipscope",
        &agent_bin(),
        &[
            &[
                "run",
                "--iface",
                &pair.host_if,
                "--otlp-endpoint",
                &endpoint,
                // The TLS probes watch every process of the host: off, as
                // in the tests, so only this load is measured.
                "--tls",
                "off",
            ][..],
            if json { &["--json"][..] } else { &[] },
        ]
        .concat(),
    );
    agent.wait_output("capturing on", START);

    let registrar_sf = fixture("scenarios/sipp/bench-registrar.xml");
    let registrar_v4 = VethPair::HOST_V4.to_string();
    let calls_v4 = CALLS_V4.to_string();
    let mut servers = [
        spawn_sipp(
            &pair.host,
            &dir,
            "registrar",
            &[
                "-sf",
                registrar_sf.to_str().unwrap(),
                "-i",
                &registrar_v4,
                "-p",
                "5060",
                "-nostdin",
            ],
        ),
        spawn_sipp(
            &pair.host,
            &dir,
            "pbx",
            &["-sn", "uas", "-i", &calls_v4, "-p", "5060", "-nostdin"],
        ),
    ];
    wait_for(START, "both SIPp servers to listen", || {
        let out = pair
            .host
            .exec_stdout("ss", &["-Hlun", "sport", "=", ":5060"]);
        (out.lines().count() >= 2).then_some(())
    });

    let register_sf = fixture("scenarios/sipp/register.xml");
    let timeout = format!("{}s", secs + 60);
    let (register_port, call_port) = (free_udp_port().to_string(), free_udp_port().to_string());
    let (register_total, call_total) = (
        (register_rate * secs).to_string(),
        (call_rate * secs).to_string(),
    );
    let (register_rate_s, call_rate_s) = (register_rate.to_string(), call_rate.to_string());
    let peer_v4 = VethPair::PEER_V4.to_string();
    let cpu0 = process_cpu_ns(agent.pid());
    let started = Instant::now();
    let mut clients = [
        spawn_sipp(
            &pair.peer,
            &dir,
            "phones",
            &[
                &[
                    &format!("{registrar_v4}:5060"),
                    "-sf",
                    register_sf.to_str().unwrap(),
                    "-i",
                    &peer_v4,
                    "-p",
                    &register_port,
                ][..],
                ACCOUNT_1001,
                &[
                    "-r",
                    &register_rate_s,
                    "-m",
                    &register_total,
                    "-lost",
                    "1",
                    "-nostdin",
                    "-timeout",
                    &timeout,
                ],
            ]
            .concat(),
        ),
        spawn_sipp(
            &pair.peer,
            &dir,
            "callers",
            &[
                &format!("{calls_v4}:5060"),
                "-sn",
                "uac",
                "-i",
                &peer_v4,
                "-p",
                &call_port,
                "-r",
                &call_rate_s,
                "-m",
                &call_total,
                "-lost",
                "1",
                "-nostdin",
                "-timeout",
                &timeout,
            ],
        ),
    ];
    let deadline = Duration::from_secs(secs + 90);
    // (seconds since start, veth packets, agent CPU ns) every 250 ms.
    let mut samples = vec![(0.0, veth_packets(&pair), cpu0)];
    wait_for(deadline, "the SIPp clients to finish", || {
        let t = started.elapsed().as_secs_f64();
        if t - samples.last().map_or(0.0, |s| s.0) >= 0.25 {
            samples.push((t, veth_packets(&pair), process_cpu_ns(agent.pid())));
        }
        clients
            .iter_mut()
            .all(|c| c.try_exit().is_some())
            .then_some(())
    });
    samples.push((
        started.elapsed().as_secs_f64(),
        veth_packets(&pair),
        process_cpu_ns(agent.pid()),
    ));
    let elapsed = started.elapsed().as_secs_f64();
    let agent_ns = process_cpu_ns(agent.pid()) - cpu0;
    let agent_peak_kb = peak_rss_kb(agent.pid());
    for server in &mut servers {
        server.interrupt(Duration::from_secs(10));
    }
    let status = agent.interrupt(Duration::from_secs(60));
    assert!(status.success(), "agent: {status}\n{}", agent.stderr_text());

    let out = std::fs::read_to_string(&agent.stdout).expect("agent output");
    let figures = if json {
        Figures::from_json(&out)
    } else {
        Figures::from_console(&out)
    };
    let (phones, callers) = (clients[0].stdout_text(), clients[1].stdout_text());
    let registrations = sipp_count(&phones, "Successful call");
    let calls = sipp_count(&callers, "Successful call");
    let failed = sipp_count(&phones, "Failed call") + sipp_count(&callers, "Failed call");

    println!(
        "sipp bench: {secs} s at {msgs} SIP messages/s planned ({register_rate} registrations/s \
         with a challenge, {call_rate} calls/s), clients losing 1 % for retransmissions; \
         sipscope run --otlp-endpoint (counting receiver) on the servers' veth"
    );
    println!(
        "  SIPp: {registrations} registrations and {calls} calls completed, {failed} failed, \
         in {elapsed:.1} s"
    );
    let Figures {
        messages,
        retransmissions,
        ring,
        queue,
        exported,
        spans_dropped,
        findings,
    } = figures;
    println!(
        "  agent ({}): {messages} SIP messages ({:.0}/s, {retransmissions} retransmissions)",
        if json { "--json" } else { "console" },
        messages as f64 / elapsed,
    );
    if let Some((t, n, cpu)) = sustained(&samples) {
        println!(
            "  sustained: 99 % of the messages on the veth ({n}) in {t:.1} s = {:.0}/s, \
             agent CPU meanwhile {:.0} ns per message, {:.0} % of one core",
            n as f64 / t.max(1e-9),
            cpu as f64 / n.max(1) as f64,
            cpu as f64 / 1e9 / t.max(1e-9) * 100.0
        );
    }
    println!(
        "  loss (target 0 each): kernel ring {ring}, core queue {queue}, OTLP spans dropped \
         {spans_dropped}{}",
        if ring + queue + spans_dropped == 0 {
            ""
        } else {
            " (missed)"
        }
    );
    println!(
        "  OTLP: {exported} spans exported, {} received by the collector",
        receiver.spans()
    );
    println!(
        "  agent CPU: {:.0} ns per SIP message, {:.0} % of one core",
        agent_ns as f64 / messages.max(1) as f64,
        agent_ns as f64 / 1e9 / elapsed * 100.0
    );
    println!(
        "  agent peak RSS: {:.1} MB (the tables are bounded: it must not grow with the run's length)",
        agent_peak_kb as f64 / 1024.0
    );
    // The load is healthy but for SIPp's own failed calls, whose lost
    // answers can be a true net.no_response: any other finding is a false
    // one.
    println!(
        "  findings by code (target: none but net.no_response where SIPp calls failed): \
         {findings:?}"
    );
}
