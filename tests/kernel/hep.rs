//! Live HEP export (#17): `sipscope run --hep-endpoint` on the host end of
//! a veth pair while SIPp registers with kamailio, dumpcap on the same
//! interface. Every SIP message dumpcap saw arrives at the HEP collector
//! (in the agent's namespace, on its loopback) byte-identical, with the
//! original addresses and ports, stamped within a few milliseconds of
//! dumpcap's time (the agent's clock is the kernel's, converted), and
//! correlated by its Call-ID.

use std::net::{IpAddr, UdpSocket};
use std::time::Duration;

use crate::{
    agent::{Agent, Dumpcap, run_sipp_register, start_kamailio},
    require_root,
    support::{
        TempDir, fixture,
        netns::{VethPair, in_netns},
        pcap::{datagrams, read_frames},
    },
};

/// The spec-written decoder of the HEP tests; not every field is read here.
#[path = "../hep/decode.rs"]
#[allow(dead_code)]
mod decode;

fn live_register_is_exported_over_hep(v6: bool) {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("hep");
    let (host, peer): (IpAddr, IpAddr) = if v6 {
        (VethPair::HOST_V6.into(), VethPair::PEER_V6.into())
    } else {
        (VethPair::HOST_V4.into(), VethPair::PEER_V4.into())
    };
    let _kamailio = start_kamailio(&pair.host, &dir, host, 5060);
    let collector = in_netns(&pair.host, || UdpSocket::bind("127.0.0.1:0").unwrap());
    collector
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let url = format!("udp://{}", collector.local_addr().unwrap());
    let mut agent = Agent::start(
        &pair,
        &dir,
        &["--hep-endpoint", &url, "--hep-capture-id", "99"],
    );
    let mut dumpcap = Dumpcap::start(&pair, &dir);
    let register = fixture("sipp/uac_register.xml");
    run_sipp_register(&pair.peer, &dir, &register, peer, host, 5060, 2);
    let (stdout, counters) = agent.stop();
    let sent_line = stdout
        .lines()
        .find(|l| l.trim_start().starts_with("HEP "))
        .unwrap_or_else(|| panic!("no HEP summary line:\n{stdout}"));
    assert!(sent_line.contains("dropped 0"), "{sent_line}");
    dumpcap.wait_for_datagrams(&[5060], 4);
    dumpcap.stop();
    let theirs = datagrams(&read_frames(&dumpcap.pcap), &[5060]);
    let times: Vec<u128> = read_frames(&dumpcap.pcap)
        .iter()
        .filter(|f| !datagrams(std::slice::from_ref(f), &[5060]).is_empty())
        .map(|f| f.ts_ns)
        .collect();
    assert_eq!(theirs.len(), 4, "2 REGISTER and 2 200 OK");

    let mut buf = vec![0u8; 65536];
    let mut received = Vec::new();
    while let Ok(n) = collector.recv(&mut buf) {
        let (h, used) = decode::decode(&buf[..n]).expect("a HEP3 packet by the spec");
        assert_eq!(used, n);
        received.push(h);
    }
    let sip: Vec<&decode::Hep> = received.iter().filter(|h| h.proto_type == 1).collect();
    assert_eq!(
        sip.len() as u64,
        counters["sip_captured"],
        "one HEP packet per SIP message"
    );
    assert_eq!(sip.len(), theirs.len(), "{received:#?}");
    for ((h, d), ts) in sip.iter().zip(&theirs).zip(&times) {
        assert_eq!(h.capture_id, 99);
        assert_eq!(h.family, if v6 { 10 } else { 2 });
        assert_eq!(h.ip_proto, 17);
        assert_eq!(
            (h.src, h.dst),
            (d.src, d.dst),
            "original addresses and ports"
        );
        assert_eq!(h.payload, d.payload, "byte-identical to dumpcap's capture");
        let skew_ms = u128::from(h.time_ns()).abs_diff(*ts) / 1_000_000;
        assert!(skew_ms < 50, "HEP time {skew_ms} ms from dumpcap's");
        let text = String::from_utf8_lossy(&h.payload);
        let call_id = text
            .lines()
            .find_map(|l| l.strip_prefix("Call-ID: "))
            .unwrap();
        assert_eq!(h.correlation().as_deref(), Some(call_id));
    }
}

#[test]
fn live_ipv4_register_is_exported_over_hep() {
    live_register_is_exported_over_hep(false);
}

#[test]
fn live_ipv6_register_is_exported_over_hep() {
    live_register_is_exported_over_hep(true);
}

/// SIP for the live call, phone (peer) ↔ PBX (host).
fn sip(start: &str, cseq: &str, to_tag: &str, body: &str) -> Vec<u8> {
    format!(
        "{start}\r\nVia: SIP/2.0/UDP 10.77.0.2:5062;branch=z9hG4bK-{}\r\n\
         From: <sip:100@pbx>;tag=f1\r\nTo: <sip:200@pbx>{to_tag}\r\nCall-ID: {CALL_ID}\r\n\
         CSeq: {cseq}\r\nContact: <sip:100@10.77.0.2:5062>\r\nContent-Length: {}\r\n\r\n{body}",
        cseq.replace(' ', "-"),
        body.len()
    )
    .into_bytes()
}

const CALL_ID: &str = "hep-live-call@phone";

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

/// RFC 3550 §6.4.2: an RR from `reporter` about `ssrc`.
fn receiver_report(reporter: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&reporter.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0; 20]);
    p
}

/// A call with RTP both ways and an RTCP report each way, live: the
/// kernel's RTP statistics at call end arrive as one HEP QoS report per
/// direction, and the RTCP the kernel forwards as HEP RTCP, all
/// correlated with the call's Call-ID.
#[test]
fn live_call_rtp_statistics_and_rtcp_go_to_hep() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("hep-call");
    let collector = in_netns(&pair.host, || UdpSocket::bind("127.0.0.1:0").unwrap());
    collector
        .set_read_timeout(Some(Duration::from_millis(500)))
        .unwrap();
    let url = format!("udp://{}", collector.local_addr().unwrap());
    let mut agent = Agent::start(&pair, &dir, &["--hep-endpoint", &url]);
    let bind = |ns, port: u16, ip: std::net::Ipv4Addr| {
        in_netns(ns, move || UdpSocket::bind((ip, port)).unwrap())
    };
    let (phone, pbx) = (VethPair::PEER_V4, VethPair::HOST_V4);
    let phone_sip = bind(&pair.peer, 5062, phone);
    let pbx_sip = bind(&pair.host, 5060, pbx);
    let phone_rtp = bind(&pair.peer, 16000, phone);
    let pbx_rtp = bind(&pair.host, 18000, pbx);
    let phone_rtcp = bind(&pair.peer, 16001, phone);
    let pbx_rtcp = bind(&pair.host, 18001, pbx);
    let to_pbx = |s: &UdpSocket, port, m: &[u8]| s.send_to(m, (pbx, port)).unwrap();
    let to_phone = |s: &UdpSocket, port, m: &[u8]| s.send_to(m, (phone, port)).unwrap();
    let offer = sdp("10.77.0.2", 16000);
    let answer = sdp("10.77.0.1", 18000);
    to_pbx(
        &phone_sip,
        5060,
        &sip("INVITE sip:200@pbx SIP/2.0", "1 INVITE", "", &offer),
    );
    to_phone(
        &pbx_sip,
        5062,
        &sip("SIP/2.0 200 OK", "1 INVITE", ";tag=t1", &answer),
    );
    to_pbx(
        &phone_sip,
        5060,
        &sip("ACK sip:200@pbx SIP/2.0", "1 ACK", ";tag=t1", ""),
    );
    for seq in 0..50u16 {
        let rtp = |ssrc: u32| {
            let mut p = vec![0x80, 0];
            p.extend_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            p.extend_from_slice(&ssrc.to_be_bytes());
            p.extend_from_slice(&[0x55; 160]);
            p
        };
        to_pbx(&phone_rtp, 18000, &rtp(0x1111));
        to_phone(&pbx_rtp, 16000, &rtp(0x2222));
        std::thread::sleep(Duration::from_millis(20));
    }
    to_phone(&pbx_rtcp, 16001, &receiver_report(0x2222, 0x1111));
    to_pbx(&phone_rtcp, 18001, &receiver_report(0x1111, 0x2222));
    std::thread::sleep(Duration::from_millis(200));
    to_pbx(
        &phone_sip,
        5060,
        &sip("BYE sip:200@pbx SIP/2.0", "2 BYE", ";tag=t1", ""),
    );
    to_phone(
        &pbx_sip,
        5062,
        &sip("SIP/2.0 200 OK", "2 BYE", ";tag=t1", ""),
    );
    std::thread::sleep(Duration::from_millis(1500));
    let (stdout, _) = agent.stop();

    let mut buf = vec![0u8; 65536];
    let mut received = Vec::new();
    while let Ok(n) = collector.recv(&mut buf) {
        received.push(decode::decode(&buf[..n]).expect("a HEP3 packet").0);
    }
    let of =
        |t: u8| -> Vec<&decode::Hep> { received.iter().filter(|h| h.proto_type == t).collect() };
    assert_eq!(of(1).len(), 5, "{stdout}\n{received:#?}");
    let rtcp = of(5);
    assert_eq!(rtcp.len(), 2, "the RTCP the kernel forwards\n{stdout}");
    let qos = of(0x23);
    assert_eq!(qos.len(), 2, "one report per direction\n{stdout}");
    for h in rtcp.iter().chain(&qos) {
        assert_eq!(h.correlation().as_deref(), Some(CALL_ID), "{h:?}");
    }
    for h in qos {
        let json: serde_json::Value = serde_json::from_slice(&h.payload).unwrap();
        assert_eq!(json["packets"], 50, "the kernel's count: {json}");
        assert_eq!(json["lost"], 0, "{json}");
    }
}
