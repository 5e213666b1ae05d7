//! The agent's capture equals dumpcap's: SIPp registers with kamailio
//! across the veth pair, the agent and dumpcap watch the host end, and the
//! SIP payloads (reassembled when fragmented) must match byte for byte in
//! both directions.

use std::net::IpAddr;

use sipscope::capture::live::{IngressChoice, LiveCapture, LiveConfig};

use crate::{
    agent::{Agent, Dumpcap, run_sipp_register, start_kamailio},
    require_root,
    support::{
        TempDir, fixture,
        netns::{VethPair, in_netns},
        pcap::{Datagram, Frame, datagrams, read_frames},
    },
};

struct Scenario {
    v6: bool,
    port: u16,
    /// Bytes of padding header added to the REGISTER (past the MTU: IP fragments).
    pad: usize,
    calls: u32,
    /// `--ingress` (the default `auto` takes TC on a veth).
    ingress: &'static str,
}

struct Outcome {
    agent_frames: Vec<Frame>,
    dumpcap_frames: Vec<Frame>,
    counters: std::collections::BTreeMap<String, u64>,
    stdout: String,
}

fn is_ip_fragment(frame: &Frame) -> bool {
    etherparse::SlicedPacket::from_ethernet(&frame.data)
        .ok()
        .and_then(|s| {
            s.net
                .as_ref()
                .and_then(|n| n.ip_payload_ref().map(|p| p.fragmented))
        })
        .unwrap_or(false)
}

fn split_by_direction(dgs: Vec<Datagram>, host: IpAddr) -> (Vec<Datagram>, Vec<Datagram>) {
    dgs.into_iter().partition(|d| d.dst.ip() == host)
}

fn register_capture_matches_dumpcap(s: Scenario) -> Outcome {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("capture");
    let (host, peer): (IpAddr, IpAddr) = if s.v6 {
        (VethPair::HOST_V6.into(), VethPair::PEER_V6.into())
    } else {
        (VethPair::HOST_V4.into(), VethPair::PEER_V4.into())
    };
    let _kamailio = start_kamailio(&pair.host, &dir, host, s.port);
    let port_arg = s.port.to_string();
    let mut extra: Vec<&str> = vec!["--ingress", s.ingress];
    if s.port != 5060 {
        extra.extend(["--sip-port", &port_arg]);
    }
    let mut agent = Agent::start(&pair, &dir, &extra);
    let mut dumpcap = Dumpcap::start(&pair, &dir);

    let mut scenario = fixture("sipp/uac_register.xml");
    if s.pad > 0 {
        let xml = std::fs::read_to_string(&scenario).unwrap();
        let padded = xml.replace(
            "      User-Agent: sipscope-test\n",
            &format!(
                "      User-Agent: sipscope-test\n      X-Padding: {}\n",
                "p".repeat(s.pad)
            ),
        );
        assert_ne!(
            xml, padded,
            "padding insertion point missing from the scenario"
        );
        scenario = dir.join("uac_register_large.xml");
        std::fs::write(&scenario, padded).unwrap();
    }
    run_sipp_register(&pair.peer, &dir, &scenario, peer, host, s.port, s.calls);

    let (stdout, counters) = agent.stop();
    let agent_frames = read_frames(&agent.pcap);
    let ours = datagrams(&agent_frames, &[s.port]);
    dumpcap.wait_for_datagrams(&[s.port], ours.len().max(2 * s.calls as usize));
    dumpcap.stop();
    let dumpcap_frames = read_frames(&dumpcap.pcap);

    let theirs = datagrams(&dumpcap_frames, &[s.port]);
    let requests = theirs
        .iter()
        .filter(|d| d.first_line().starts_with("REGISTER "))
        .count();
    let responses = theirs
        .iter()
        .filter(|d| d.first_line().starts_with("SIP/2.0 200"))
        .count();
    assert!(
        requests >= s.calls as usize && responses >= s.calls as usize,
        "dumpcap saw {requests} REGISTER and {responses} 200 OK, expected {} each",
        s.calls
    );
    let (ours_in, ours_out) = split_by_direction(ours, host);
    let (theirs_in, theirs_out) = split_by_direction(theirs, host);
    assert_eq!(ours_in, theirs_in, "ingress SIP differs from dumpcap");
    assert_eq!(ours_out, theirs_out, "egress SIP differs from dumpcap");

    // Every frame the agent wrote is byte-identical to one dumpcap saw, and
    // stamped within a few milliseconds of it (ktime converted to wall time).
    for f in &agent_frames {
        let twin = dumpcap_frames
            .iter()
            .find(|d| d.data == f.data)
            .unwrap_or_else(|| {
                panic!(
                    "agent frame of {} bytes not in dumpcap's capture",
                    f.data.len()
                )
            });
        let skew_ms = f.ts_ns.abs_diff(twin.ts_ns) / 1_000_000;
        assert!(
            skew_ms < 50,
            "agent and dumpcap timestamps differ by {skew_ms} ms"
        );
        assert_eq!(
            f.orig_len as usize,
            f.data.len(),
            "SIP frames here are never truncated"
        );
    }
    assert_eq!(counters["sip_captured"], agent_frames.len() as u64);
    assert_eq!(counters["ringbuf_full"], 0);
    assert_eq!(counters["truncated"], 0);
    assert_eq!(counters["malformed_events"], 0);
    assert!(counters["packets_seen"] >= counters["sip_captured"]);
    Outcome {
        agent_frames,
        dumpcap_frames,
        counters,
        stdout,
    }
}

#[test]
fn register_over_ipv4_is_captured_like_dumpcap() {
    let o = register_capture_matches_dumpcap(Scenario {
        v6: false,
        port: 5060,
        pad: 0,
        calls: 3,
        ingress: "auto",
    });
    assert_eq!(o.agent_frames.len(), 6, "3 REGISTER + 3 200 OK");
    assert_eq!(
        o.stdout
            .lines()
            .filter(|l| l.contains(" in ") && l.contains("REGISTER sip:"))
            .count(),
        3
    );
    assert_eq!(
        o.stdout
            .lines()
            .filter(|l| l.contains(" out ") && l.contains("SIP/2.0 200 OK"))
            .count(),
        3
    );
    assert_eq!(o.counters["fragments_forwarded"], 0);
}

/// The XDP program on the wire: native XDP forced on the veth (where the
/// kernel has it; the oldest variants have no XDP).
#[test]
fn register_with_ingress_xdp_is_captured_like_dumpcap() {
    if !crate::ingress::xdp_variant() {
        return; // refused: tests/kernel/ingress.rs
    }
    for v6 in [false, true] {
        let o = register_capture_matches_dumpcap(Scenario {
            v6,
            port: 5060,
            pad: 0,
            calls: 2,
            ingress: "xdp",
        });
        assert!(
            o.stdout.contains(": xdp native (--ingress xdp)"),
            "{}",
            o.stdout
        );
        assert_eq!(o.agent_frames.len(), 4, "2 REGISTER + 2 200 OK");
    }
}

#[test]
fn register_over_ipv6_is_captured_like_dumpcap() {
    let o = register_capture_matches_dumpcap(Scenario {
        v6: true,
        port: 5060,
        pad: 0,
        calls: 3,
        ingress: "auto",
    });
    assert_eq!(o.agent_frames.len(), 6, "3 REGISTER + 3 200 OK");
}

#[test]
fn configured_sip_port_5080_is_captured() {
    let o = register_capture_matches_dumpcap(Scenario {
        v6: false,
        port: 5080,
        pad: 0,
        calls: 2,
        ingress: "auto",
    });
    assert_eq!(
        o.agent_frames.len(),
        4,
        "2 REGISTER + 2 200 OK on port 5080"
    );
}

#[test]
fn register_larger_than_mtu_is_captured_as_fragments_over_ipv4() {
    let o = register_capture_matches_dumpcap(Scenario {
        v6: false,
        port: 5060,
        pad: 3000,
        calls: 2,
        ingress: "auto",
    });
    let ours = o.agent_frames.iter().filter(|f| is_ip_fragment(f)).count();
    let theirs = o
        .dumpcap_frames
        .iter()
        .filter(|f| is_ip_fragment(f))
        .count();
    assert!(
        theirs >= 2 * 3,
        "a 3 KB REGISTER over a 1500 MTU is at least 3 fragments; dumpcap saw {theirs}"
    );
    assert_eq!(ours, theirs, "every fragment forwarded");
    assert_eq!(o.counters["fragments_forwarded"], ours as u64);
    assert_eq!(first_fragments_printed(&o.stdout), 2);
}

#[test]
fn register_larger_than_mtu_is_captured_as_fragments_over_ipv6() {
    let o = register_capture_matches_dumpcap(Scenario {
        v6: true,
        port: 5060,
        pad: 3000,
        calls: 2,
        ingress: "auto",
    });
    let ours = o.agent_frames.iter().filter(|f| is_ip_fragment(f)).count();
    let theirs = o
        .dumpcap_frames
        .iter()
        .filter(|f| is_ip_fragment(f))
        .count();
    assert!(theirs >= 2 * 3, "dumpcap saw {theirs} fragments");
    assert_eq!(ours, theirs);
    assert_eq!(o.counters["fragments_forwarded"], ours as u64);
    assert_eq!(first_fragments_printed(&o.stdout), 2);
}

/// Call-flow lines of REGISTERs that arrived fragmented: the pipeline
/// reassembles the fragments (RFC 791 / RFC 8200 §4.5) and prints each
/// REGISTER once, and its summary counts the reassemblies.
fn first_fragments_printed(stdout: &str) -> usize {
    let printed = stdout
        .lines()
        .filter(|l| l.contains(" in ") && l.contains("UDP  REGISTER sip:"))
        .count();
    let reassembled = stdout
        .lines()
        .find_map(|l| l.trim_start().strip_prefix("IP fragments"))
        .and_then(|l| l.split("reassembled ").nth(1))
        .and_then(|l| l.split(',').next())
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or_else(|| panic!("no reassembly counter in:\n{stdout}"));
    assert_eq!(
        reassembled, printed,
        "each printed REGISTER was reassembled"
    );
    printed
}

#[test]
fn port_unreachable_answering_sip_is_captured() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("icmp");
    let mut agent = Agent::start(&pair, &dir, &[]);
    // Nobody listens on 5060 in the host namespace: the kernel answers with
    // ICMP port unreachable, quoting the SIP datagram.
    let sock = crate::support::netns::in_netns(&pair.peer, || {
        std::net::UdpSocket::bind((VethPair::PEER_V4, 5062)).unwrap()
    });
    sock.send_to(
        b"OPTIONS sip:x@10.77.0.1 SIP/2.0\r\nContent-Length: 0\r\n\r\n",
        (VethPair::HOST_V4, 5060),
    )
    .unwrap();
    crate::support::wait_for(
        std::time::Duration::from_secs(10),
        "the ICMP error to be printed",
        || agent.proc.stdout_text().contains(" icmp ").then_some(()),
    );
    let (stdout, counters) = agent.stop();
    let frames = read_frames(&agent.pcap);
    assert_eq!(frames.len(), 2, "{stdout}");
    let icmp = etherparse::SlicedPacket::from_ethernet(&frames[1].data).unwrap();
    assert!(
        matches!(icmp.transport, Some(etherparse::TransportSlice::Icmpv4(_))),
        "second frame is the ICMP error"
    );
    assert!(
        stdout.contains("out 10.77.0.1 -> 10.77.0.2 icmp unreachable, about port 5062 -> 5060"),
        "{stdout}"
    );
    assert_eq!(counters["sip_captured"], 2);
}

/// The programs commit records without waking the reader unless it
/// announced that it waits (capture/live/reader_flag.rs): a lone message
/// at idle must still wake a reader blocked in `next_batch`, not wait for
/// the next packet. (The agent's loop would also find it at its next
/// 500 ms tick, so this drives `LiveCapture` itself, with no tick.) Each
/// message is sent only once `next_batch` is blocked: the current-thread
/// runtime polls the wait before the send. Three in a row: the first meets
/// the reader's first wait, the others its waits after a wake-up.
#[test]
fn a_lone_sip_message_at_idle_wakes_the_blocked_reader() {
    require_root();
    // The XDP program where the kernel has it (not the oldest variants).
    let hooks = if crate::ingress::xdp_variant() {
        &[IngressChoice::Auto, IngressChoice::Xdp][..]
    } else {
        &[IngressChoice::Auto][..]
    };
    for &ingress in hooks {
        let pair = VethPair::new();
        let socket = in_netns(&pair.peer, || {
            std::net::UdpSocket::bind((VethPair::PEER_V4, 0)).expect("peer socket")
        });
        let config = LiveConfig {
            interfaces: vec![pair.host_if.clone()],
            trace_drops: false,
            ingress,
            ..LiveConfig::default()
        };
        in_netns(&pair.host, move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime");
            runtime.block_on(async {
                let mut capture = LiveCapture::start(&config).expect("starting the capture");
                for n in 1..=3 {
                    let call_id = format!("idle-{n}@sipscope.test");
                    let (mut frames, mut drops) = (Vec::new(), Vec::new());
                    let send = async {
                        socket
                            .send_to(options(&call_id).as_bytes(), (VethPair::HOST_V4, 5060))
                            .expect("sending OPTIONS");
                    };
                    let wait = tokio::time::timeout(
                        crate::agent::START,
                        capture.next_batch(&mut frames, &mut drops),
                    );
                    let (woken, ()) = tokio::join!(wait, send);
                    woken
                        .unwrap_or_else(|_| panic!("{ingress:?}: {call_id} never woke the reader"))
                        .expect("reading the ring");
                    let payloads: Vec<String> = frames
                        .iter()
                        .map(|f| String::from_utf8_lossy(&f.packet.data).into_owned())
                        .collect();
                    assert!(
                        payloads.iter().any(|p| p.contains(&call_id)),
                        "{ingress:?}: woken without {call_id}: {payloads:?}"
                    );
                }
            });
        });
    }
}

fn options(call_id: &str) -> String {
    let (host, peer) = (VethPair::HOST_V4, VethPair::PEER_V4);
    format!(
        "OPTIONS sip:idle@{host} SIP/2.0\r\n\
         Via: SIP/2.0/UDP {peer}:5060;branch=z9hG4bK-{call_id}\r\n\
         From: <sip:probe@{peer}>;tag=idle\r\n\
         To: <sip:idle@{host}>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: 1 OPTIONS\r\n\
         Content-Length: 0\r\n\r\n"
    )
}
