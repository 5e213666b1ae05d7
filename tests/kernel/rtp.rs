//! RTP statistics kept in the kernel: RTP streams with known loss,
//! reordering and a sequence wrap are sent across the veth in both
//! directions; the agent's per-flow figures must equal the truth (packets,
//! loss), the media core run over dumpcap's capture (jitter) and tshark's
//! `rtp,streams` (within a small tolerance). RTP never reaches the ring.

use std::{
    collections::BTreeMap,
    net::{IpAddr, SocketAddr, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use sipscope::{
    analysis::media::{RtpStreamStats, parse_rtp},
    time::Timestamp,
};

use crate::{
    agent::{Agent, Dumpcap},
    require_root,
    support::{
        TempDir,
        netns::{Netns, VethPair, in_netns},
        pcap::read_frames,
        wait_for,
    },
};

const WAIT: Duration = Duration::from_secs(20);

/// One flow line of the agent's exit summary
/// (`TS rtp final SRC -> DST DIR ssrc=0x.. pt=N packets=N lost=N ...`).
#[derive(Debug, Clone)]
struct FlowLine {
    direction: String,
    fields: BTreeMap<String, String>,
}

impl FlowLine {
    fn num(&self, name: &str) -> f64 {
        let v = &self.fields[name];
        v.trim_end_matches("ms").parse().unwrap()
    }
}

fn flow_lines(stdout: &str) -> BTreeMap<(SocketAddr, SocketAddr), FlowLine> {
    let mut out = BTreeMap::new();
    for line in stdout.lines() {
        let Some((_, rest)) = line.split_once(" rtp final ") else {
            continue;
        };
        let mut words = rest.split_whitespace();
        let src: SocketAddr = words.next().unwrap().parse().unwrap();
        assert_eq!(words.next(), Some("->"));
        let dst: SocketAddr = words.next().unwrap().parse().unwrap();
        let direction = words.next().unwrap().to_owned();
        let fields = words
            .map(|kv| {
                let (k, v) = kv.split_once('=').expect("name=value");
                (k.to_owned(), v.to_owned())
            })
            .collect();
        let previous = out.insert((src, dst), FlowLine { direction, fields });
        assert!(previous.is_none(), "one final line per flow:\n{stdout}");
    }
    out
}

fn rtp_counters(stdout: &str) -> BTreeMap<String, u64> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("rtp counters: "))
        .unwrap_or_else(|| panic!("no rtp counters line in:\n{stdout}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').unwrap();
            (k.to_owned(), v.parse().unwrap())
        })
        .collect()
}

/// A UDP socket in `ns` that counts what it receives.
fn counting_receiver(ns: &Netns, addr: SocketAddr) -> Arc<AtomicUsize> {
    let sock = in_netns(ns, move || UdpSocket::bind(addr).unwrap());
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while sock.recv(&mut buf).is_ok() {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    count
}

fn rtp_packet(pt: u8, seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, pt, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p[4..8].copy_from_slice(&ts.to_be_bytes());
    p[8..12].copy_from_slice(&ssrc.to_be_bytes());
    p.extend((0..160).map(|i| (i as u8) ^ 0x55)); // 20 ms of G.711
    p
}

/// What an RTP stream sends, and the truth about it.
struct Stream {
    pt: u8,
    ssrc: u32,
    first_seq: u16,
    /// Packets generated (sequence numbers first_seq .. first_seq + count).
    count: u16,
    /// Indices never sent: the known loss.
    skip: Vec<u16>,
    /// Index i is sent after index i + 1: the known reordering.
    swap: Vec<u16>,
}

impl Stream {
    /// The packets in sending order.
    fn packets(&self) -> Vec<Vec<u8>> {
        let mut order: Vec<u16> = (0..self.count).collect();
        for &i in &self.swap {
            order.swap(usize::from(i), usize::from(i) + 1);
        }
        order
            .into_iter()
            .filter(|i| !self.skip.contains(i))
            .map(|i| {
                rtp_packet(
                    self.pt,
                    self.first_seq.wrapping_add(i),
                    1_000 + u32::from(i) * 160,
                    self.ssrc,
                )
            })
            .collect()
    }

    fn sent(&self) -> usize {
        usize::from(self.count) - self.skip.len()
    }
}

/// Sends `stream` from `sock` to `dst`, one packet every ~2 ms (ten times
/// G.711's pace, so transit varies and jitter is far from zero).
fn send(sock: &UdpSocket, dst: SocketAddr, stream: &Stream) {
    for p in stream.packets() {
        sock.send_to(&p, dst).unwrap();
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// RTP per (src, dst) from a pcap through the media core, with the
/// capture's timestamps: what userspace computes from dumpcap's view.
fn media_core_on(pcap: &std::path::Path) -> BTreeMap<(SocketAddr, SocketAddr), RtpStreamStats> {
    let mut out: BTreeMap<_, RtpStreamStats> = BTreeMap::new();
    for f in read_frames(pcap) {
        let Ok(sliced) = SlicedPacket::from_ethernet(&f.data) else {
            continue;
        };
        let (src_ip, dst_ip): (IpAddr, IpAddr) = match &sliced.net {
            Some(NetSlice::Ipv4(v4)) => (
                v4.header().source_addr().into(),
                v4.header().destination_addr().into(),
            ),
            Some(NetSlice::Ipv6(v6)) => (
                v6.header().source_addr().into(),
                v6.header().destination_addr().into(),
            ),
            _ => continue,
        };
        let Some(TransportSlice::Udp(u)) = &sliced.transport else {
            continue;
        };
        let Ok(h) = parse_rtp(u.payload()) else {
            continue;
        };
        let key = (
            SocketAddr::new(src_ip, u.source_port()),
            SocketAddr::new(dst_ip, u.destination_port()),
        );
        out.entry(key).or_default().update(
            Timestamp::from_nanos(f.ts_ns as u64),
            &h,
            u.payload().len(),
            8_000,
        );
    }
    out
}

/// tshark's `rtp,streams` rows keyed by (src, dst): (packets, lost,
/// max jitter ms, mean jitter ms).
fn tshark_streams(pcap: &std::path::Path) -> BTreeMap<(SocketAddr, SocketAddr), [f64; 4]> {
    let out = std::process::Command::new("tshark")
        .args([
            "-r",
            pcap.to_str().unwrap(),
            "-q",
            "-o",
            "rtp.heuristic_rtp:TRUE",
        ])
        // 12000/12002 are registered to LLC-over-UDP: decode them as RTP.
        .args(["-d", "udp.port==12000,rtp", "-d", "udp.port==12002,rtp"])
        .args(["-z", "rtp,streams"])
        .output()
        .expect("running tshark");
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let mut rows = BTreeMap::new();
    for line in text.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        // Start End SrcIP SrcPort DstIP DstPort SSRC Payload Pkts Lost ...
        if cols.len() < 16 || !cols[6].starts_with("0x") {
            continue;
        }
        let ip = |s: &str| s.parse::<IpAddr>().ok();
        let (Some(src), Some(dst)) = (ip(cols[2]), ip(cols[4])) else {
            continue;
        };
        // The payload column may be several words ("g711U"): count from
        // the end instead. Last columns: ... Pkts Lost(pct) MinDelta
        // MeanDelta MaxDelta MinJitter MeanJitter MaxJitter Problem?
        let n = cols.len();
        let problem = usize::from(cols[n - 1] == "X" || cols[n - 1] == "-");
        let at = |k: usize| cols[n - problem - k];
        let lost = at(7).trim_start_matches('(').parse::<f64>();
        let (lost_col, pkts_col) = if lost.is_ok() { (7, 8) } else { (8, 9) };
        let pkts: f64 = at(pkts_col).parse().unwrap();
        let lost: f64 = at(lost_col).parse().unwrap();
        let mean_jitter: f64 = at(2).parse().unwrap();
        let max_jitter: f64 = at(1).parse().unwrap();
        rows.insert(
            (
                SocketAddr::new(src, cols[3].parse().unwrap()),
                SocketAddr::new(dst, cols[5].parse().unwrap()),
            ),
            [pkts, lost, max_jitter, mean_jitter],
        );
    }
    assert!(!rows.is_empty(), "no tshark RTP streams in:\n{text}");
    rows
}

fn close(kernel: f64, reference: f64, what: &str) {
    // XDP/TC and dumpcap timestamp the same packet microseconds apart;
    // the jitter over ~18 ms transit changes differs by far less than this.
    close_within(kernel, reference, 0.03, what);
}

fn close_within(kernel: f64, reference: f64, share: f64, what: &str) {
    let tolerance = 0.05 + reference.abs() * share;
    assert!(
        (kernel - reference).abs() <= tolerance,
        "{what}: kernel {kernel:.4} ms vs reference {reference:.4} ms (tolerance {tolerance:.4})"
    );
}

#[test]
fn rtp_in_both_directions_matches_the_truth_the_media_core_and_tshark() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("rtp");
    let mut dumpcap = Dumpcap::start(&pair, &dir);
    let mut agent = Agent::start(
        &pair,
        &dir,
        &["--rtp-ports", "12000-12999", "--rtp-interval", "3600"],
    );

    let host_rtp = SocketAddr::from((VethPair::HOST_V4, 12_000));
    let host_rtp6 = SocketAddr::from((VethPair::HOST_V6, 12_000));
    let peer_rtp = SocketAddr::from((VethPair::PEER_V4, 12_002));
    let host_other = SocketAddr::from((VethPair::HOST_V4, 30_000));
    let at_host = counting_receiver(&pair.host, host_rtp);
    let at_host6 = counting_receiver(&pair.host, host_rtp6);
    let at_peer = counting_receiver(&pair.peer, peer_rtp);
    let at_other = counting_receiver(&pair.host, host_other);

    // Ingress (XDP): loss of 3, one swap, the sequence wraps at 65535.
    let inbound = Stream {
        pt: 0,
        ssrc: 0xA1A1_0001,
        first_seq: 65_400,
        count: 300,
        skip: vec![10, 11, 150],
        swap: vec![200],
    };
    // Egress (TC): loss of 5, two swaps.
    let outbound = Stream {
        pt: 8,
        ssrc: 0xB2B2_0002,
        first_seq: 100,
        count: 200,
        skip: vec![39, 79, 119, 159, 198],
        swap: vec![20, 60],
    };
    // IPv6 ingress, clean.
    let inbound6 = Stream {
        pt: 0,
        ssrc: 0xC3C3_0003,
        first_seq: 7,
        count: 100,
        skip: vec![],
        swap: vec![],
    };
    let peer_src = SocketAddr::from((VethPair::PEER_V4, 12_010));
    let host_src = SocketAddr::from((VethPair::HOST_V4, 12_020));
    let peer_src6 = SocketAddr::from((VethPair::PEER_V6, 12_030));
    let peer_sock = in_netns(&pair.peer, move || UdpSocket::bind(peer_src).unwrap());
    let peer_sock6 = in_netns(&pair.peer, move || UdpSocket::bind(peer_src6).unwrap());
    let host_sock = in_netns(&pair.host, move || UdpSocket::bind(host_src).unwrap());

    let out_thread = {
        let sock = host_sock.try_clone().unwrap();
        let s = Stream { ..outbound };
        std::thread::spawn(move || {
            send(&sock, peer_rtp, &s);
            s
        })
    };
    send(&peer_sock, host_rtp, &inbound);
    send(&peer_sock6, host_rtp6, &inbound6);
    let outbound = out_thread.join().unwrap();

    // In range but not RTP: version 0, and too short for an RTP header.
    let peer_junk = in_netns(&pair.peer, || {
        UdpSocket::bind((VethPair::PEER_V4, 12_040)).unwrap()
    });
    for i in 0..10u8 {
        let mut junk = vec![0x00u8, i, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12];
        junk.extend([0x3c; 40]);
        peer_junk.send_to(&junk, host_rtp).unwrap();
    }
    for _ in 0..5 {
        peer_junk.send_to(&[0x80, 0, 1], host_rtp).unwrap();
    }
    // RTCP receiver reports multiplexed on the RTP port (RFC 5761).
    let rr = [0x81u8, 201, 0, 7, 0xA1, 0xA1, 0, 1]
        .into_iter()
        .chain([0u8; 24])
        .collect::<Vec<_>>();
    for _ in 0..4 {
        peer_junk.send_to(&rr, host_rtp).unwrap();
    }
    // Valid RTP outside the configured range: not tracked.
    let out_of_range = Stream {
        pt: 0,
        ssrc: 0xD4D4_0004,
        first_seq: 1,
        count: 20,
        skip: vec![],
        swap: vec![],
    };
    let peer_other = in_netns(&pair.peer, || {
        UdpSocket::bind((VethPair::PEER_V4, 0)).unwrap()
    });
    assert!(peer_other.local_addr().unwrap().port() > 12_999);
    send(&peer_other, host_other, &out_of_range);

    let in_total = inbound.sent() + 10 + 5 + 4;
    wait_for(WAIT, "every datagram to arrive", || {
        (at_host.load(Ordering::SeqCst) == in_total
            && at_host6.load(Ordering::SeqCst) == inbound6.sent()
            && at_peer.load(Ordering::SeqCst) == outbound.sent()
            && at_other.load(Ordering::SeqCst) == out_of_range.sent())
        .then_some(())
    });
    let rtp_frames = inbound.sent() + inbound6.sent() + outbound.sent();
    dumpcap.wait_for_datagrams(&[12_000, 12_002], rtp_frames + 19);
    let (stdout, counters) = agent.stop();
    dumpcap.stop();

    // The ring buffer got no SIP (none was sent) and no RTP (never
    // copied): only the four RTCP receiver reports, byte for byte, for
    // their report blocks (RFC 3550 6.4).
    assert_eq!(counters["sip_captured"], 0, "{stdout}");
    let forwarded = read_frames(&agent.pcap);
    assert_eq!(forwarded.len(), 4, "{stdout}");
    for f in &forwarded {
        let sliced = SlicedPacket::from_ethernet(&f.data).expect("an Ethernet frame");
        let Some(TransportSlice::Udp(u)) = &sliced.transport else {
            panic!("not UDP: {f:?}");
        };
        assert_eq!(u.payload(), rr.as_slice());
    }

    let flows = flow_lines(&stdout);
    assert_eq!(flows.len(), 3, "exactly the three RTP flows:\n{stdout}");
    // The per-CPU store (kernels without BPF atomics) is exact in packets
    // and loss; a flow whose packets land on several CPUs has jitter from
    // the runs of consecutive packets each CPU saw (within 15 % of the
    // reference here) and the reordering each CPU saw (README: kernels).
    let per_cpu = stdout.contains("rtp statistics: per CPU");
    let close = |kernel: f64, reference: f64, what: &str| {
        if per_cpu {
            close_within(kernel, reference, 0.25, what);
        } else {
            close(kernel, reference, what);
        }
    };
    let rtp = rtp_counters(&stdout);
    assert_eq!(rtp["rtp_packets"], rtp_frames as u64, "{stdout}");
    assert_eq!(rtp["rtcp_packets"], 4, "{stdout}");
    assert_eq!(rtp["rtcp_forwarded"], 4, "{stdout}");
    assert_eq!(rtp["rtp_not_rtp"], 15, "{stdout}");
    assert_eq!(rtp["rtp_flows_created"], 3, "{stdout}");
    assert_eq!(rtp["rtp_flows_evicted"], 0, "{stdout}");
    assert_eq!(rtp["rtp_lock_contended"], 0, "{stdout}");

    let core = media_core_on(&dumpcap.pcap);
    let tshark = tshark_streams(&dumpcap.pcap);
    for (src, dst, stream, dir) in [
        (peer_src, host_rtp, &inbound, "in"),
        (host_src, peer_rtp, &outbound, "out"),
        (peer_src6, host_rtp6, &inbound6, "in"),
    ] {
        let f = flows
            .get(&(src, dst))
            .unwrap_or_else(|| panic!("no flow {src} -> {dst}:\n{stdout}"));
        assert_eq!(f.direction, dir, "{src} -> {dst}");
        assert_eq!(f.fields["ssrc"], format!("0x{:08x}", stream.ssrc));
        assert_eq!(f.fields["pt"], stream.pt.to_string());
        // Truth.
        assert_eq!(f.num("packets") as usize, stream.sent(), "{src} -> {dst}");
        assert_eq!(f.num("lost") as usize, stream.skip.len(), "{src} -> {dst}");
        if per_cpu {
            assert!(f.num("reordered") as usize <= stream.swap.len());
        } else {
            assert_eq!(f.num("reordered") as usize, stream.swap.len());
        }
        // The media core over dumpcap's view of the same packets.
        let c = &core[&(src, dst)];
        assert_eq!(f.num("packets") as u64, c.packets());
        assert_eq!(f.num("lost") as i64, c.cumulative_lost());
        close(f.num("jitter"), c.jitter_ms(), "jitter vs media core");
        close(
            f.num("max_jitter"),
            c.max_jitter_ms(),
            "max jitter vs media core",
        );
        // tshark, the reference decoder.
        let [pkts, lost, max_jitter, _mean] = tshark[&(src, dst)];
        assert_eq!(
            pkts as usize,
            stream.sent(),
            "tshark packets {src} -> {dst}"
        );
        assert_eq!(
            lost as usize,
            stream.skip.len(),
            "tshark lost {src} -> {dst}"
        );
        close(f.num("max_jitter"), max_jitter, "max jitter vs tshark");
        assert!(f.num("jitter") > 1.0, "pacing makes jitter visible");
    }
}

#[test]
fn the_flow_map_stays_within_its_bound_and_counts_evictions() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("rtplru");
    const CAPACITY: usize = 32;
    const FLOWS: usize = 100;
    let mut agent = Agent::start(
        &pair,
        &dir,
        &["--rtp-ports", "12000-12999", "--rtp-flows", "32"],
    );
    let host_rtp = SocketAddr::from((VethPair::HOST_V4, 12_000));
    let received = counting_receiver(&pair.host, host_rtp);
    // FLOWS sources (ephemeral ports, outside the range) to one RTP port,
    // three packets each, one flow after the other.
    let socks: Vec<UdpSocket> = in_netns(&pair.peer, || {
        (0..FLOWS)
            .map(|_| UdpSocket::bind((VethPair::PEER_V4, 0)).unwrap())
            .collect()
    });
    for (i, sock) in socks.iter().enumerate() {
        for seq in 0..3u16 {
            let p = rtp_packet(0, seq, u32::from(seq) * 160, 0x5000_0000 + i as u32);
            sock.send_to(&p, host_rtp).unwrap();
        }
        // Keep within the receiver's socket buffer.
        wait_for(WAIT, "the flow's packets to arrive", || {
            (received.load(Ordering::SeqCst) == (i + 1) * 3).then_some(())
        });
    }
    let (stdout, _) = agent.stop();
    let rtp = rtp_counters(&stdout);
    assert_eq!(rtp["rtp_packets"], (FLOWS * 3) as u64, "{stdout}");
    assert_eq!(rtp["rtp_flows_created"], FLOWS as u64, "{stdout}");
    assert_eq!(rtp["rtp_flow_insert_failed"], 0, "{stdout}");
    let live = rtp["rtp_flows_live"];
    assert!(live as usize <= CAPACITY, "bound exceeded: {stdout}");
    assert!(live > 0);
    assert_eq!(
        rtp["rtp_flows_evicted"] + live,
        FLOWS as u64,
        "every flow is live or counted as evicted: {stdout}"
    );
    assert_eq!(flow_lines(&stdout).len() as u64, live);
    // The survivors are the most recent flows, each complete.
    for f in flow_lines(&stdout).values() {
        assert_eq!(f.num("packets"), 3.0);
        assert_eq!(f.num("lost"), 0.0);
    }
}

#[test]
fn idle_flows_are_reported_as_ended_and_removed() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("rtpidle");
    let mut agent = Agent::start(
        &pair,
        &dir,
        &[
            "--rtp-ports",
            "12000-12999",
            "--rtp-interval",
            "0.2",
            "--rtp-idle",
            "0.5",
        ],
    );
    let host_rtp = SocketAddr::from((VethPair::HOST_V4, 12_000));
    let received = counting_receiver(&pair.host, host_rtp);
    let peer = in_netns(&pair.peer, || {
        UdpSocket::bind((VethPair::PEER_V4, 12_010)).unwrap()
    });
    let stream = Stream {
        pt: 0,
        ssrc: 0xE5E5_0005,
        first_seq: 1,
        count: 50,
        skip: vec![5],
        swap: vec![],
    };
    send(&peer, host_rtp, &stream);
    wait_for(WAIT, "the stream to arrive", || {
        (received.load(Ordering::SeqCst) == stream.sent()).then_some(())
    });
    // While it runs the flow is reported periodically; once idle it is
    // reported once as ended and leaves the kernel map.
    agent
        .proc
        .wait_output("rtp ended 10.77.0.2:12010 -> 10.77.0.1:12000", WAIT);
    let (stdout, _) = agent.stop();
    let ended: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" rtp ended "))
        .collect();
    assert_eq!(ended.len(), 1, "{stdout}");
    assert!(ended[0].contains("packets=49 lost=1"), "{stdout}");
    assert!(
        flow_lines(&stdout).is_empty(),
        "gone from the map: {stdout}"
    );
    let rtp = rtp_counters(&stdout);
    assert_eq!(rtp["rtp_flows_expired"], 1, "{stdout}");
    assert_eq!(rtp["rtp_flows_live"], 0, "{stdout}");
    assert_eq!(rtp["rtp_flows_evicted"], 0, "{stdout}");
}
