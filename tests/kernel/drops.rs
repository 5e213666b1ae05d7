//! The drop tracer (`fw.local_drop` evidence): packets this host's kernel
//! dropped are reported with their reason, exactly for the watched
//! namespace and interface, and nothing else is.
//!
//! Each scenario drops with an nft rule that has a `counter`, and waits
//! until the counter reached the number of packets sent: then every drop
//! has passed the tracepoint and sits in the ring, which the agent drains
//! on SIGINT.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    time::Duration,
};

use crate::{
    agent::{Agent, Dumpcap, START, run_sipp_register, start_kamailio},
    require_root,
    support::{
        TempDir, fixture,
        netns::{Netns, VethPair, in_netns},
        nft,
        pcap::{Frame, datagrams, read_frames},
        process::{NsProcess, free_udp_port},
        wait_for,
    },
};

fn wait_nft_dropped(ns: &Netns, n: u64) {
    wait_for(START, &format!("nft to drop {n} packets"), || {
        (nft::counted(ns, "input") + nft::counted(ns, "output") >= n).then_some(())
    });
}

/// The agent with a drops pcap beside its capture pcap.
fn start_agent(pair: &VethPair, dir: &TempDir) -> (Agent, std::path::PathBuf) {
    let drops = dir.join("drops.pcap");
    let agent = Agent::start(pair, dir, &["--write-drops-pcap", drops.to_str().unwrap()]);
    (agent, drops)
}

/// A parsed `DROP` line: direction, src, dst, proto, reason, rest.
#[derive(Debug)]
struct DropLine {
    dir: String,
    src: SocketAddr,
    dst: SocketAddr,
    reason: String,
    what: String,
}

fn drop_lines(stdout: &str) -> Vec<DropLine> {
    stdout
        .lines()
        .filter_map(|l| {
            let rest = l.split_once(" DROP ")?.1;
            let mut w = rest.split_whitespace();
            let dir = w.next()?.to_owned();
            let src = w.next()?.parse().ok()?;
            w.next()?; // ->
            let dst = w.next()?.parse().ok()?;
            w.next()?; // proto
            let reason = w.next()?.to_owned();
            let what = w.collect::<Vec<_>>().join(" ");
            Some(DropLine {
                dir,
                src,
                dst,
                reason,
                what,
            })
        })
        .collect()
}

/// The drops pcap (raw IP) as UDP datagrams: wrapped in a dummy Ethernet
/// header so the shared pcap helpers read it.
fn dropped_datagrams(path: &std::path::Path, ports: &[u16]) -> Vec<crate::support::pcap::Datagram> {
    let frames: Vec<Frame> = read_frames(path)
        .into_iter()
        .map(|f| {
            let ethertype: [u8; 2] = if f.data.first().is_some_and(|b| b >> 4 == 6) {
                [0x86, 0xdd]
            } else {
                [0x08, 0x00]
            };
            let mut data = vec![0u8; 12];
            data.extend_from_slice(&ethertype);
            data.extend_from_slice(&f.data);
            Frame {
                ts_ns: f.ts_ns,
                orig_len: f.orig_len + 14,
                data,
            }
        })
        .collect();
    datagrams(&frames, ports)
}

fn counters_line_ok(c: &BTreeMap<String, u64>) {
    assert_eq!(c["drop_ringbuf_full"], 0, "{c:?}");
    assert_eq!(c["drop_unreadable"], 0, "{c:?}");
    assert_eq!(c["malformed_events"], 0, "{c:?}");
}

/// SIPp sends `calls` REGISTERs without retransmission and gives up after
/// a short receive timeout (the responses never reach it).
fn sipp_register_unanswered(
    ns: &Netns,
    dir: &TempDir,
    local: IpAddr,
    server: SocketAddr,
    calls: u32,
) {
    let local_port = free_udp_port().to_string();
    let scenario = fixture("sipp/uac_register.xml");
    let mut sipp = NsProcess::spawn(
        ns,
        &dir.path,
        "sipp-unanswered",
        "sipp",
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-i",
            &local.to_string(),
            "-p",
            &local_port,
            "-s",
            "alice",
            "-m",
            &calls.to_string(),
            "-r",
            "20",
            "-nr",
            "-recv_timeout",
            "2000",
            "-timeout",
            "15s",
            "-nostdin",
            &server.to_string(),
        ],
    );
    let status = sipp.wait_exit(Duration::from_secs(30));
    // Every call must have failed: a response got through otherwise.
    assert!(
        !status.success(),
        "SIPp succeeded although the firewall drops the responses\n{}",
        sipp.stdout_text()
    );
}

/// (a) The registrar answers, this host's input hook drops the answers:
/// the agent reports exactly the responses dumpcap saw arriving, with
/// reason netfilter_drop, byte for byte.
#[test]
fn inbound_responses_dropped_by_local_nft_are_reported_like_dumpcap_saw_them() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("drop-in");
    let host: IpAddr = VethPair::HOST_V4.into();
    let peer: IpAddr = VethPair::PEER_V4.into();
    // The registrar is the remote side; the agent watches the client host.
    let _kamailio = start_kamailio(&pair.peer, &dir, peer, 5060);
    nft::add_rule(
        &pair.host,
        &dir.path,
        "input",
        "udp sport 5060 counter drop",
    );
    let (mut agent, drops_pcap) = start_agent(&pair, &dir);
    let mut dumpcap = Dumpcap::start(&pair, &dir);

    const CALLS: u32 = 3;
    sipp_register_unanswered(&pair.host, &dir, host, SocketAddr::new(peer, 5060), CALLS);
    wait_nft_dropped(&pair.host, u64::from(CALLS));
    dumpcap.wait_for_datagrams(&[5060], 2 * CALLS as usize);
    let (stdout, counters) = agent.stop();
    dumpcap.stop();

    let arrived: Vec<_> = datagrams(&read_frames(&dumpcap.pcap), &[5060])
        .into_iter()
        .filter(|d| d.src.ip() == peer && d.src.port() == 5060)
        .collect();
    assert_eq!(
        arrived.len(),
        CALLS as usize,
        "dumpcap: one 200 OK per REGISTER"
    );
    let dropped = dropped_datagrams(&drops_pcap, &[5060]);
    assert_eq!(
        dropped, arrived,
        "dropped packets differ from what arrived\n{stdout}"
    );

    let lines = drop_lines(&stdout);
    assert_eq!(lines.len(), CALLS as usize, "{stdout}");
    for (l, d) in lines.iter().zip(&arrived) {
        assert_eq!(l.dir, "in");
        assert_eq!(l.reason, "netfilter_drop");
        assert_eq!((l.src, l.dst), (d.src, d.dst));
        assert_eq!(l.what, d.first_line(), "{stdout}");
    }
    assert!(lines[0].what.starts_with("SIP/2.0 200 OK"), "{stdout}");
    assert_eq!(counters["drops_reported"], u64::from(CALLS));
    counters_line_ok(&counters);
}

/// (b) The output hook drops this host's REGISTERs: reported on egress,
/// and never seen on the wire (TC egress runs after netfilter).
#[test]
fn outbound_sip_dropped_by_local_nft_is_reported_on_egress() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("drop-out");
    nft::add_rule(
        &pair.host,
        &dir.path,
        "output",
        "udp dport 5060 counter drop",
    );
    let (mut agent, drops_pcap) = start_agent(&pair, &dir);

    let sock = in_netns(&pair.host, || {
        UdpSocket::bind((VethPair::HOST_V4, 0)).unwrap()
    });
    let messages: Vec<String> = (0..3)
        .map(|i| {
            format!(
                "REGISTER sip:10.77.0.2 SIP/2.0\r\nCall-ID: out-{i}\r\nCSeq: {i} REGISTER\r\nContent-Length: 0\r\n\r\n"
            )
        })
        .collect();
    for m in &messages {
        // The firewall's verdict reaches the sender as EPERM.
        let err = sock
            .send_to(m.as_bytes(), (VethPair::PEER_V4, 5060))
            .expect_err("nft output drop");
        assert_eq!(err.raw_os_error(), Some(libc::EPERM), "{err}");
    }
    wait_nft_dropped(&pair.host, 3);
    let (stdout, counters) = agent.stop();

    let dropped = dropped_datagrams(&drops_pcap, &[5060]);
    let payloads: Vec<String> = dropped
        .iter()
        .map(|d| String::from_utf8_lossy(&d.payload).into_owned())
        .collect();
    assert_eq!(payloads, messages, "{stdout}");
    let lines = drop_lines(&stdout);
    assert_eq!(lines.len(), 3, "{stdout}");
    for l in &lines {
        assert_eq!(
            (l.dir.as_str(), l.reason.as_str()),
            ("out", "netfilter_drop")
        );
        assert_eq!(l.dst, SocketAddr::from((VethPair::PEER_V4, 5060)));
        assert_eq!(l.what, "REGISTER sip:10.77.0.2 SIP/2.0");
    }
    assert_eq!(counters["sip_captured"], 0, "dropped before TC egress");
    assert_eq!(counters["drops_reported"], 3);
    counters_line_ok(&counters);
}

fn send_from_peer(pair: &VethPair, port: u16, payload: &[u8], n: usize) -> UdpSocket {
    let sock = in_netns(&pair.peer, || {
        UdpSocket::bind((VethPair::PEER_V4, 0)).unwrap()
    });
    on_one_cpu(|| {
        for _ in 0..n {
            sock.send_to(payload, (VethPair::HOST_V4, port)).unwrap();
        }
    });
    sock
}

/// Runs `f` on a thread pinned to the CPU it starts on. A veth delivers
/// in the sender's context, so the receive path, the nft drop and its
/// report all run on the sender's CPU; the 5.10 programs keep flows (and
/// a flow's one drop report) per CPU, and a sender that migrated
/// mid-burst would split one flow's report in two.
fn on_one_cpu(f: impl FnOnce() + Send) {
    std::thread::scope(|s| {
        s.spawn(|| {
            // SAFETY: a zeroed cpu_set_t is an empty set; CPU_SET and
            // sched_setaffinity(0, ...) act on this thread only.
            unsafe {
                let mut set: libc::cpu_set_t = std::mem::zeroed();
                libc::CPU_SET(libc::sched_getcpu() as usize, &mut set);
                let rc = libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set);
                assert_eq!(
                    rc,
                    0,
                    "pinning the sender: {}",
                    std::io::Error::last_os_error()
                );
            }
            f();
        })
        .join()
        .unwrap()
    });
}

/// `n` copies of `payload` from the peer to this host's `port`, which an
/// input rule `matcher` drops; returns the agent's stdout, its counters and
/// its drops pcap once nft has dropped them all.
fn inbound_dropped(
    tag: &str,
    matcher: &str,
    port: u16,
    payload: &[u8],
    n: usize,
) -> (String, BTreeMap<String, u64>, std::path::PathBuf, TempDir) {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new(tag);
    nft::add_rule(
        &pair.host,
        &dir.path,
        "input",
        &format!("{matcher} counter drop"),
    );
    let (mut agent, drops_pcap) = start_agent(&pair, &dir);
    send_from_peer(&pair, port, payload, n);
    wait_nft_dropped(&pair.host, n as u64);
    let (stdout, counters) = agent.stop();
    (stdout, counters, drops_pcap, dir)
}

/// (c) Inbound RTP-range UDP dropped by the firewall: reported as RTP,
/// once per flow and second (a flood must not become a ring event per
/// packet); the flow's kernel RTP statistics count every drop.
#[test]
fn inbound_rtp_range_udp_dropped_by_local_nft_is_reported() {
    // RTP version 2, PT 0 (PCMU), 160 bytes of payload; one flow.
    let mut rtp = vec![0x80, 0x00, 0, 1, 0, 0, 0, 160, 0xde, 0xad, 0xbe, 0xef];
    rtp.extend_from_slice(&[0xff; 160]);
    let (stdout, counters, drops_pcap, _dir) =
        inbound_dropped("drop-rtp", "udp dport 10000-20000", 16_000, &rtp, 5);

    let lines = drop_lines(&stdout);
    assert_eq!(lines.len(), 1, "{stdout}");
    for l in &lines {
        assert_eq!(
            (l.dir.as_str(), l.reason.as_str()),
            ("in", "netfilter_drop")
        );
        assert_eq!(l.dst, SocketAddr::from((VethPair::HOST_V4, 16_000)));
        assert_eq!(l.what, "[rtp]");
    }
    let dropped = dropped_datagrams(&drops_pcap, &[16_000]);
    assert_eq!(dropped.len(), 1);
    assert!(dropped.iter().all(|d| d.payload == rtp));
    assert_eq!(counters["drops_reported"], 1);
    assert_eq!(counters["rtp_drops_suppressed"], 4);
    // All five on the flow's statistics, which XDP counted before the drop.
    let flow = stdout
        .lines()
        .find(|l| l.contains(" rtp final ") && l.contains(":16000 in "))
        .unwrap_or_else(|| panic!("no rtp final line for the flow:\n{stdout}"));
    assert!(flow.contains("packets=5"), "{flow}");
    assert!(flow.ends_with(" dropped_here=5"), "{flow}");
    counters_line_ok(&counters);
}

/// A flood at a closed RTP port range that is not RTP (so no flow holds
/// it): reports stay within the per-CPU budget, the rest are counted.
#[test]
fn a_non_rtp_flood_on_the_rtp_range_is_reported_within_budget() {
    const FLOOD: usize = 1000;
    let (stdout, counters, _, _dir) = inbound_dropped(
        "drop-rtp-flood",
        "udp dport 10000-20000",
        16_002,
        b"not rtp at all",
        FLOOD,
    );
    let reported = counters["drops_reported"];
    // 64 per CPU and second: two CPUs, and the flood may straddle a second.
    assert!((1..=256).contains(&reported), "{counters:?}");
    assert_eq!(
        reported + counters["rtp_drops_suppressed"],
        FLOOD as u64,
        "every drop is reported or counted: {counters:?}"
    );
    assert_eq!(drop_lines(&stdout).len() as u64, reported);
    counters_line_ok(&counters);
}

/// (d) The same drops in another namespace are not this agent's: it
/// reports only its own, and counts the others as filtered.
#[test]
fn drops_in_another_namespace_are_not_reported() {
    require_root();
    let ours = VethPair::new();
    let theirs = VethPair::new();
    let dir = TempDir::new("drop-netns");
    for pair in [&ours, &theirs] {
        nft::add_rule(
            &pair.host,
            &dir.path,
            "input",
            "udp sport 5060 counter drop",
        );
    }
    let (mut agent, _) = start_agent(&ours, &dir);
    let response = b"SIP/2.0 401 Unauthorized\r\nCall-ID: netns\r\nContent-Length: 0\r\n\r\n";
    let send = |pair: &VethPair, n: usize| {
        let sock = in_netns(&pair.peer, || {
            UdpSocket::bind((VethPair::PEER_V4, 5060)).unwrap()
        });
        for _ in 0..n {
            sock.send_to(response, (VethPair::HOST_V4, 5062)).unwrap();
        }
    };
    send(&theirs, 4);
    send(&ours, 2);
    wait_nft_dropped(&theirs.host, 4);
    wait_nft_dropped(&ours.host, 2);
    let (stdout, counters) = agent.stop();

    let lines = drop_lines(&stdout);
    assert_eq!(lines.len(), 2, "only this namespace's drops\n{stdout}");
    assert!(lines.iter().all(|l| l.what == "SIP/2.0 401 Unauthorized"));
    assert_eq!(counters["drops_reported"], 2);
    assert!(counters["drops_filtered_netns"] >= 4, "{counters:?}");
    counters_line_ok(&counters);
}

/// (e) A healthy registration: no drop is reported.
#[test]
fn healthy_registration_reports_no_drop() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("drop-healthy");
    let host: IpAddr = VethPair::HOST_V4.into();
    let peer: IpAddr = VethPair::PEER_V4.into();
    let _kamailio = start_kamailio(&pair.host, &dir, host, 5060);
    let (mut agent, _) = start_agent(&pair, &dir);
    run_sipp_register(
        &pair.peer,
        &dir,
        &fixture("sipp/uac_register.xml"),
        peer,
        host,
        5060,
        3,
    );
    wait_for(START, "the agent to print 6 SIP messages", || {
        let out = agent.proc.stdout_text();
        (out.lines().filter(|l| l.contains("  UDP  ")).count() >= 6).then_some(())
    });
    let (stdout, counters) = agent.stop();
    assert!(drop_lines(&stdout).is_empty(), "{stdout}");
    assert_eq!(counters["drops_reported"], 0);
    assert_eq!(counters["sip_captured"], 6);
    counters_line_ok(&counters);
}

/// (f) A flood of non-VoIP drops in the watched namespace: nothing is
/// reported, and the counters show every one seen and filtered.
#[test]
fn a_flood_of_non_voip_drops_is_counted_not_reported() {
    const FLOOD: usize = 5_000;
    let (stdout, counters, _, _dir) =
        inbound_dropped("drop-flood", "udp dport 9999", 9999, &[0u8; 64], FLOOD);
    assert!(drop_lines(&stdout).is_empty(), "{stdout}");
    assert_eq!(counters["drops_reported"], 0);
    // Other tests' drops run through the same host-wide tracepoint and
    // may add to the count, never take from it.
    assert!(
        counters["drops_filtered_not_voip"] >= FLOOD as u64,
        "{counters:?}"
    );
    assert!(counters["drops_seen"] >= FLOOD as u64);
    counters_line_ok(&counters);
}

/// Nothing listens on the SIP port: the kernel drops with no_socket (what
/// "the registrar is down" looks like on the registrar host).
#[test]
fn sip_to_a_port_without_listener_is_reported_as_no_socket() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("drop-nosock");
    let (mut agent, drops_pcap) = start_agent(&pair, &dir);
    let register =
        b"REGISTER sip:10.77.0.1 SIP/2.0\r\nCall-ID: nosock\r\nContent-Length: 0\r\n\r\n";
    send_from_peer(&pair, 5060, register, 3);
    wait_for(START, "three no_socket drops to be printed", || {
        let n = drop_lines(&agent.proc.stdout_text()).len();
        (n >= 3).then_some(())
    });
    let (stdout, counters) = agent.stop();
    let lines = drop_lines(&stdout);
    assert_eq!(lines.len(), 3, "{stdout}");
    for l in &lines {
        assert_eq!((l.dir.as_str(), l.reason.as_str()), ("in", "no_socket"));
        assert_eq!(l.what, "REGISTER sip:10.77.0.1 SIP/2.0");
    }
    let dropped = dropped_datagrams(&drops_pcap, &[5060]);
    assert!(dropped.iter().all(|d| d.payload == register));
    assert_eq!(counters["drops_reported"], 3);
    counters_line_ok(&counters);
}

/// IPv6: the same header walk finds the ports; addresses are reported v6.
#[test]
fn inbound_sip_over_ipv6_dropped_by_local_nft_is_reported() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("drop-v6");
    nft::add_rule(
        &pair.host,
        &dir.path,
        "input",
        "udp sport 5060 counter drop",
    );
    let (mut agent, drops_pcap) = start_agent(&pair, &dir);
    let response =
        b"SIP/2.0 407 Proxy Authentication Required\r\nCall-ID: v6\r\nContent-Length: 0\r\n\r\n";
    let sock = in_netns(&pair.peer, || {
        UdpSocket::bind((VethPair::PEER_V6, 5060)).unwrap()
    });
    for _ in 0..2 {
        sock.send_to(response, (VethPair::HOST_V6, 5062)).unwrap();
    }
    wait_nft_dropped(&pair.host, 2);
    let (stdout, counters) = agent.stop();
    let lines = drop_lines(&stdout);
    assert_eq!(lines.len(), 2, "{stdout}");
    for l in &lines {
        assert_eq!(l.src, SocketAddr::from((VethPair::PEER_V6, 5060)));
        assert_eq!(l.dst, SocketAddr::from((VethPair::HOST_V6, 5062)));
        assert_eq!(l.reason, "netfilter_drop");
        assert_eq!(l.what, "SIP/2.0 407 Proxy Authentication Required");
    }
    let dropped = dropped_datagrams(&drops_pcap, &[5060]);
    assert_eq!(dropped.len(), 2);
    assert!(dropped.iter().all(|d| d.payload == response));
    counters_line_ok(&counters);
}

/// `--no-drops`: no tracepoint, no DROP lines, no drop counters.
#[test]
fn no_drops_option_leaves_the_tracer_off() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("drop-off");
    nft::add_rule(
        &pair.host,
        &dir.path,
        "input",
        "udp sport 5060 counter drop",
    );
    let mut agent = Agent::start(&pair, &dir, &["--no-drops"]);
    let sock = in_netns(&pair.peer, || {
        UdpSocket::bind((VethPair::PEER_V4, 5060)).unwrap()
    });
    sock.send_to(b"SIP/2.0 200 OK\r\n\r\n", (VethPair::HOST_V4, 5062))
        .unwrap();
    wait_nft_dropped(&pair.host, 1);
    wait_for(START, "XDP to capture the response", || {
        agent
            .proc
            .stdout_text()
            .contains("SIP/2.0 200 OK")
            .then_some(())
    });
    let (stdout, counters) = agent.stop();
    assert!(drop_lines(&stdout).is_empty(), "{stdout}");
    assert!(!stdout.contains("tracing drops"), "{stdout}");
    assert!(!counters.contains_key("drops_seen"), "{counters:?}");
    assert_eq!(counters["sip_captured"], 1);
}
