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
    run_sipp_register(
        &pair.peer,
        &dir,
        &fixture("sipp/uac_register.xml"),
        peer,
        host,
        5060,
        2,
    );
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
