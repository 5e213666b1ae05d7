//! HEP v3 export, end to end: `sipscope analyze --hep-endpoint` over the
//! loopback, the HEP stream captured by dumpcap and decoded by tshark
//! (with the spec-written dissector beside this file: Debian's Wireshark
//! 4.0 has none), by sngrep's own HEP parser, and by a decoder written
//! here from the specification. The SIP inside must be byte-identical to
//! the capture's, with its addresses, ports and times; RTCP, the call's
//! RTP report and the findings arrive correlated by Call-ID.
//!
//! dumpcap on `lo` needs root: run as root (CI does), these tests fail
//! loudly otherwise.

// Frame builders shared with the pipeline tests.
#[path = "../pipeline/common.rs"]
#[allow(dead_code)]
mod common;
mod decode;
mod outage;
mod redaction;
mod scenario;
mod tools;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;

use decode::Hep;
use scenario::{CALL_ID, Family, REG_CALL_ID, Sip};
use tools::{Collector, Dumpcap, Transport};

/// A TCP segment's capture time and payload.
type Segment = (u64, Vec<u8>);

/// One unit of SIP as the capture holds it: a UDP datagram, or the bytes
/// of a TCP stream with the time of the segment each byte came in.
#[derive(Debug)]
struct Reference {
    datagrams: Vec<(u64, SocketAddr, SocketAddr, Vec<u8>)>,
    /// (src, dst) → [(time, bytes of the segment)].
    streams: BTreeMap<(SocketAddr, SocketAddr), Vec<Segment>>,
}

fn reference(pcap: &Path) -> Reference {
    let rows = tools::tshark_fields(
        pcap,
        &[],
        "(udp.port == 5060) || (tcp.port == 5060 && tcp.len > 0)",
        &[
            &["frame.time_epoch"][..],
            &tools::ADDRESSES,
            &["udp.payload", "tcp.payload"],
        ]
        .concat(),
    );
    let mut r = Reference {
        datagrams: Vec::new(),
        streams: BTreeMap::new(),
    };
    for row in rows {
        let ts = tools::epoch_ns(&row[0]);
        let ip = |i: usize| {
            tools::either(&row[i], &row[i + 1])
                .parse::<std::net::IpAddr>()
                .unwrap()
        };
        let port = |i: usize| tools::either(&row[i], &row[i + 1]).parse::<u16>().unwrap();
        let src = SocketAddr::new(ip(1), port(5));
        let dst = SocketAddr::new(ip(3), port(7));
        if !row[9].is_empty() {
            r.datagrams.push((ts, src, dst, tools::unhex(&row[9])));
        } else {
            r.streams
                .entry((src, dst))
                .or_default()
                .push((ts, tools::unhex(&row[10])));
        }
    }
    r
}

/// The SIP packets of the export match the capture byte for byte: UDP one
/// datagram each; TCP the stream of each direction, cut where the HEP
/// messages say, each timed by the segment its last byte came in.
fn assert_sip_matches(sip: &[&Hep], r: &Reference, transport: Sip) {
    match transport {
        Sip::Udp => {
            assert_eq!(
                sip.len(),
                r.datagrams.len(),
                "one HEP packet per SIP datagram"
            );
            for (h, (ts, src, dst, payload)) in sip.iter().zip(&r.datagrams) {
                assert_eq!(h.ip_proto, 17);
                assert_eq!((h.src, h.dst), (*src, *dst));
                assert_eq!(h.time_ns(), *ts, "capture time of {src} → {dst}");
                assert_eq!(&h.payload, payload, "byte-identical SIP");
            }
        }
        Sip::Tcp | Sip::Tls => {
            assert!(r.datagrams.is_empty());
            let mut matched = 0;
            for ((src, dst), segments) in &r.streams {
                let stream: Vec<u8> = segments.iter().flat_map(|(_, b)| b.clone()).collect();
                let ours: Vec<&&Hep> = sip
                    .iter()
                    .filter(|h| (h.src, h.dst) == (*src, *dst))
                    .collect();
                let joined: Vec<u8> = ours.iter().flat_map(|h| h.payload.clone()).collect();
                assert_eq!(
                    joined, stream,
                    "{src} → {dst}: the TCP stream, byte for byte"
                );
                let mut end = 0;
                for h in ours {
                    assert_eq!(h.ip_proto, 6);
                    assert!(
                        h.payload.starts_with(b"SIP/2.0 ")
                            || h.payload[..3].iter().all(u8::is_ascii_uppercase)
                    );
                    end += h.payload.len();
                    let (mut seen, mut ts) = (0, 0);
                    for (t, b) in segments {
                        seen += b.len();
                        if seen >= end {
                            ts = *t;
                            break;
                        }
                    }
                    assert_eq!(
                        h.time_ns(),
                        ts,
                        "a TCP message is timed by its last segment"
                    );
                    matched += 1;
                }
            }
            assert_eq!(matched, sip.len());
        }
    }
}

/// tshark's view of the same HEP capture agrees with the spec decoder on
/// every chunk, and tshark's SIP dissector reads the SIP inside.
fn assert_tshark_agrees(hep_pcap: &Path, port: u16, transport: Transport, ours: &[Hep]) {
    let decode_as = format!("{}.port=={port},hep", transport.as_str());
    let rows = tools::tshark_fields(
        hep_pcap,
        &[
            "-X",
            &format!("lua_script:{}", tools::dissector().display()),
            "-d",
            &decode_as,
        ],
        "hep",
        &[
            "hep.ip_family",
            "hep.ip_proto",
            "hep.src_ip",
            "hep.src_ip6",
            "hep.dst_ip",
            "hep.dst_ip6",
            "hep.src_port",
            "hep.dst_port",
            "hep.time_sec",
            "hep.time_usec",
            "hep.proto_type",
            "hep.capture_id",
            "hep.auth_key",
            "hep.correlation_id",
            "hep.node_name",
            "hep.payload",
            "sip.Call-ID",
        ],
    );
    // A TCP segment may carry several HEP packets: tshark lists each
    // field's occurrences comma-separated; split them out.
    let mut theirs: Vec<Vec<String>> = Vec::new();
    for row in rows {
        let cols: Vec<Vec<&str>> = row
            .iter()
            .map(|c| {
                if c.is_empty() {
                    vec![]
                } else {
                    c.split(',').collect()
                }
            })
            .collect();
        let n = cols[0].len();
        let mut optional = [0usize; 17];
        for i in 0..n {
            let mut one = Vec::new();
            for (c, vals) in cols.iter().enumerate() {
                let v = match c {
                    // Present in every packet.
                    0 | 1 | 6..=11 | 15 => vals[i].to_string(),
                    // Present in some: take them in order.
                    _ => {
                        let fam = cols[0][i];
                        let wanted = match c {
                            2 | 4 => fam == "2",
                            3 | 5 => fam == "10",
                            12 | 14 => true,
                            // Correlation: every packet of these tests has one
                            // but malformed SIP; SIP Call-ID: type 1 only.
                            13 => true,
                            16 => cols[10][i] == "1",
                            _ => unreachable!(),
                        };
                        if wanted && optional[c] < vals.len() {
                            optional[c] += 1;
                            vals[optional[c] - 1].to_string()
                        } else {
                            String::new()
                        }
                    }
                };
                one.push(v);
            }
            theirs.push(one);
        }
    }
    assert_eq!(theirs.len(), ours.len(), "tshark decodes every HEP packet");
    for (t, h) in theirs.iter().zip(ours) {
        let (src_ip, dst_ip) = if h.family == 2 {
            (&t[2], &t[4])
        } else {
            (&t[3], &t[5])
        };
        let want = |s: &str| s.to_string();
        assert_eq!(t[0], h.family.to_string());
        assert_eq!(t[1], h.ip_proto.to_string());
        assert_eq!(src_ip.parse::<std::net::IpAddr>().unwrap(), h.src.ip());
        assert_eq!(dst_ip.parse::<std::net::IpAddr>().unwrap(), h.dst.ip());
        assert_eq!(t[6], h.src.port().to_string());
        assert_eq!(t[7], h.dst.port().to_string());
        assert_eq!(t[8], h.secs.to_string());
        assert_eq!(t[9], h.micros.to_string());
        assert_eq!(t[10], h.proto_type.to_string());
        assert_eq!(t[11], h.capture_id.to_string());
        assert_eq!(t[12], want("secret"));
        assert_eq!(t[14], want("pbx-test"));
        assert_eq!(tools::unhex(&t[15]), h.payload, "payload as tshark sees it");
        if h.proto_type == 1 {
            assert_eq!(
                Some(t[16].clone()),
                h.correlation(),
                "tshark's SIP dissector reads the Call-ID"
            );
        }
    }
}

fn exported(
    family: Family,
    sip: Sip,
    hep: Transport,
) -> (tempfile::TempDir, Vec<Hep>, Reference, u16) {
    let dir = tempfile::tempdir().unwrap();
    let input = dir.path().join("scenario.pcap");
    scenario::write(&input, family, sip);
    let collector = Collector::start(hep, family);
    let port = collector.port();
    let dump = Dumpcap::start(&dir.path().join("hep.pcap"), port);
    let out = tools::analyze(
        &input,
        &[
            "--json",
            "--hep-endpoint",
            &collector.url(),
            "--hep-capture-id",
            "4242",
            "--hep-password",
            "secret",
            "--hep-node-name",
            "pbx-test",
        ],
    );
    let hep_line = out
        .lines()
        .find(|l| l.contains(r#""type":"hep""#))
        .unwrap_or_else(|| panic!("no hep summary in {out}"));
    let stats: serde_json::Value = serde_json::from_str(hep_line).unwrap();
    assert_eq!(stats["dropped_queue_full"], 0, "{hep_line}");
    assert_eq!(stats["dropped_send_failed"], 0, "{hep_line}");
    let sent = stats["sent"].as_u64().unwrap() as usize;
    let packets = collector.wait_for(sent);
    dump.stop();
    let reference = reference(&input);
    (dir, packets, reference, port)
}

fn check(family: Family, sip: Sip, hep: Transport) {
    let (dir, packets, reference, port) = exported(family, sip, hep);
    for h in &packets {
        assert_eq!(h.capture_id, 4242);
        assert_eq!(h.auth_key.as_deref(), Some(&b"secret"[..]));
        assert_eq!(h.node_name.as_deref(), Some(&b"pbx-test"[..]));
        assert_eq!(h.family, if family == Family::V4 { 2 } else { 10 }, "{h:?}");
    }
    let sip_packets: Vec<&Hep> = packets.iter().filter(|h| h.proto_type == 1).collect();
    assert_sip_matches(&sip_packets, &reference, sip);
    for h in &sip_packets {
        let text = String::from_utf8_lossy(&h.payload);
        let call_id = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap();
        assert_eq!(
            h.correlation().as_deref(),
            Some(call_id),
            "SIP correlated by its Call-ID"
        );
    }
    // Both RTCP reports, as JSON, correlated with the call by their ports.
    let rtcp: Vec<&Hep> = packets.iter().filter(|h| h.proto_type == 5).collect();
    assert_eq!(rtcp.len(), 2, "{packets:#?}");
    for h in &rtcp {
        assert_eq!(h.correlation().as_deref(), Some(CALL_ID));
        let json: serde_json::Value = serde_json::from_slice(&h.payload).unwrap();
        assert_eq!(json["type"], 201);
        assert_eq!(json["report_blocks"][0]["packets_lost"], 1, "{json}");
    }
    // The call's RTP statistics at its end, one report per direction.
    let qos: Vec<&Hep> = packets.iter().filter(|h| h.proto_type == 0x23).collect();
    assert_eq!(qos.len(), 2, "{packets:#?}");
    for h in &qos {
        assert_eq!(h.correlation().as_deref(), Some(CALL_ID));
        let json: serde_json::Value = serde_json::from_slice(&h.payload).unwrap();
        assert_eq!(json["packets"], 50, "{json}");
        assert_eq!(json["lost"], 0, "{json}");
    }
    // The 403 to the REGISTER is a finding, logged with its Call-ID.
    let logs: Vec<serde_json::Value> = packets
        .iter()
        .filter(|h| h.proto_type == 100)
        .inspect(|h| assert!(h.correlation().is_some(), "{h:?}"))
        .map(|h| serde_json::from_slice(&h.payload).unwrap())
        .collect();
    assert!(
        packets
            .iter()
            .any(|h| h.proto_type == 100 && h.correlation().as_deref() == Some(REG_CALL_ID)),
        "{logs:#?}"
    );
    assert!(
        logs.iter().any(|l| l["code"] == "reg.rejected"),
        "{logs:#?}"
    );
    assert_tshark_agrees(&dir.path().join("hep.pcap"), port, hep, &packets);
    if hep == Transport::Udp {
        tools::assert_sngrep_agrees(&dir.path().join("hep.pcap"), port, &sip_packets);
    }
}

#[test]
fn ipv4_udp_sip_over_udp_hep() {
    check(Family::V4, Sip::Udp, Transport::Udp);
}

#[test]
fn ipv6_udp_sip_over_udp_hep() {
    check(Family::V6, Sip::Udp, Transport::Udp);
}

#[test]
fn ipv4_tcp_sip_over_udp_hep() {
    check(Family::V4, Sip::Tcp, Transport::Udp);
}

#[test]
fn ipv6_tcp_sip_over_tcp_hep() {
    check(Family::V6, Sip::Tcp, Transport::Tcp);
}

#[test]
fn ipv4_udp_sip_over_tcp_hep() {
    check(Family::V4, Sip::Udp, Transport::Tcp);
}
