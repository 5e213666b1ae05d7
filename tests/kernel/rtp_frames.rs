//! The RTP path of the ingress program on crafted frames (BPF_PROG_TEST_RUN):
//! which clock each flow gets (SDP per port, then the RFC 3551 static
//! table, then the default), what counts as RTP, RTCP or neither, and
//! that the port range can be changed at run time.

use std::{net::SocketAddr, time::Duration};

use aya::programs::TestRunOptions;
use etherparse::PacketBuilder;
use sipscope::capture::live::{
    KtimeClock, LiveError, LoadedObject, RtpMonitor, RtpPoll, RtpSettings, load_object_with,
    rtp::RTP_OFF,
};
use sipscope_common::{DEFAULT_RING_SIZE, RtpCounter};

use crate::require_root;

fn frame(src_port: u16, dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 10], [192, 0, 2, 1], 64)
        .udp(src_port, dst_port)
        .write(&mut out, payload)
        .unwrap();
    out
}

fn rtp(first: u8, pt: u8, seq: u16, tail: &[u8]) -> Vec<u8> {
    let mut p = vec![first, pt, 0, 0, 0, 0, 0x10, 0, 0xca, 0xfe, 0, 1];
    p[2..4].copy_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(tail);
    p
}

/// Runs the ingress program this kernel gets (XDP, or TC ingress).
fn run(object: &LoadedObject, frame: &[u8]) {
    let opts = TestRunOptions {
        data_in: Some(frame),
        repeat: 1,
        ..Default::default()
    };
    crate::walk::run_program(object, object.ingress_program(), opts);
}

fn clock_of(poll: &RtpPoll, src_port: u16) -> Option<u32> {
    poll.active
        .iter()
        .find(|f| f.src.port() == src_port)
        .map(|f| f.state.transit_clock)
}

/// The capture programs loaded with the default RTP settings (not
/// attached: the tests run them on frames), and their RTP maps.
fn rtp_object() -> (LoadedObject, RtpMonitor) {
    let mut object = load_object_with(DEFAULT_RING_SIZE, 64).expect("loading");
    object.set_sip_ports(&[]).unwrap();
    object.configure_rtp(&RtpSettings::default()).unwrap();
    object.load_capture_programs().expect("verifier");
    let monitor =
        RtpMonitor::take(&mut object, KtimeClock::new(), Duration::from_secs(3600)).unwrap();
    (object, monitor)
}

#[test]
fn clocks_come_from_sdp_then_payload_type_and_only_rtp_makes_flows() {
    require_root();
    let (object, mut monitor) = rtp_object();
    // SDP said: port 16000 carries opus (PT 111, 48 kHz) and
    // telephone-event (PT 101, whose timestamp stands still: no clock).
    monitor.set_port_clock(16_000, 111, 48_000).unwrap();
    monitor.set_port_clock(16_000, 101, 0).unwrap();
    // Static types keep their RFC 3551 clock: the kernel never looks
    // them up per port, so they cannot be set.
    let static_type = monitor.set_port_clock(16_000, 9, 16_000).unwrap_err();
    assert!(
        matches!(static_type, LiveError::StaticPayloadType(9))
            && static_type.to_string().contains("is static"),
        "{static_type}"
    );

    let g711 = [0xd5u8; 160];
    run(&object, &frame(40_000, 16_000, &rtp(0x80, 111, 1, &g711)));
    run(&object, &frame(40_001, 16_000, &rtp(0x80, 101, 1, &[0; 4])));
    run(&object, &frame(40_002, 16_002, &rtp(0x80, 96, 1, &g711)));
    run(&object, &frame(40_003, 16_004, &rtp(0x80, 14, 1, &g711)));
    run(&object, &frame(40_004, 16_006, &rtp(0x80, 0, 1, &g711)));
    // Not RTP: version 1; CSRC list longer than the packet; a header
    // extension longer than the packet; shorter than an RTP header.
    run(&object, &frame(40_010, 16_000, &rtp(0x40, 0, 1, &g711)));
    run(&object, &frame(40_011, 16_000, &rtp(0x8f, 0, 1, &[0; 8])));
    run(
        &object,
        &frame(40_012, 16_000, &rtp(0x90, 0, 1, &[0xbe, 0xde, 0, 50])),
    );
    run(&object, &frame(40_013, 16_000, &[0x80, 0, 0, 1]));
    // RTCP sender report (RFC 3550 6.4.1, 28 bytes: length 6) on the RTP
    // port, and one whose length field overruns the datagram.
    let mut sr = vec![0x80u8, 200, 0, 6];
    sr.extend_from_slice(&[0; 24]);
    run(&object, &frame(40_020, 16_000, &sr));
    sr[3] = 60;
    run(&object, &frame(40_021, 16_000, &sr));
    // RTP outside the range.
    run(&object, &frame(40_030, 9_000, &rtp(0x80, 0, 1, &g711)));

    let poll = monitor.poll().unwrap();
    assert_eq!(poll.active.len(), 5, "{:?}", poll.active);
    assert_eq!(
        clock_of(&poll, 40_000),
        Some(48_000),
        "SDP clock for PT 111"
    );
    assert_eq!(clock_of(&poll, 40_001), Some(0), "SDP: telephone-event");
    assert_eq!(clock_of(&poll, 40_002), Some(8_000), "default clock");
    assert_eq!(clock_of(&poll, 40_003), Some(90_000), "RFC 3551 MPA");
    assert_eq!(clock_of(&poll, 40_004), Some(8_000), "RFC 3551 PCMU");
    let c = poll.counters;
    assert_eq!(c.get(RtpCounter::Packets), 5);
    assert_eq!(c.get(RtpCounter::FlowsCreated), 5);
    assert_eq!(c.get(RtpCounter::NotRtp), 5, "{c}");
    assert_eq!(c.get(RtpCounter::RtcpPackets), 1, "{c}");
    // An SR without report blocks tells nothing about reception: kept in.
    assert_eq!(c.get(RtpCounter::RtcpForwarded), 0, "{c}");
    let opus = poll.active.iter().find(|f| f.src.port() == 40_000).unwrap();
    assert_eq!(
        opus.dst,
        "192.0.2.1:16000".parse::<SocketAddr>().unwrap(),
        "key in host byte order"
    );
    assert_eq!(
        (opus.state.ssrc, opus.state.payload_type),
        (0xcafe_0001, 111)
    );

    // Turned off at run time: the next packet is not looked at.
    monitor.set_ports(RTP_OFF).unwrap();
    run(&object, &frame(40_000, 16_000, &rtp(0x80, 111, 2, &g711)));
    let poll = monitor.poll().unwrap();
    assert_eq!(poll.counters.get(RtpCounter::Packets), 5);
    // And back on: the flow continues where it was.
    monitor.set_ports(16_000..=16_000).unwrap();
    run(&object, &frame(40_000, 16_000, &rtp(0x80, 111, 3, &g711)));
    let poll = monitor.poll().unwrap();
    let opus = poll.active.iter().find(|f| f.src.port() == 40_000).unwrap();
    assert_eq!(
        (opus.state.packets, opus.state.cumulative_lost()),
        (2, 1),
        "seq 2 never counted"
    );
}

/// A flow keeps the clock SDP negotiated for its stream and payload type
/// (one lookup per stream, not two per packet): it stays when the port's
/// entry leaves the map mid-stream, and a new SSRC looks up again.
#[test]
fn a_flow_keeps_its_negotiated_clock_until_its_stream_changes() {
    require_root();
    let (object, mut monitor) = rtp_object();
    monitor.set_port_clock(16_000, 111, 48_000).unwrap();
    let opus = [0u8; 80];
    run(&object, &frame(40_000, 16_000, &rtp(0x80, 111, 1, &opus)));
    // The call's clock leaves the map (so a lookup would now find the
    // 8 kHz default) while the same stream goes on.
    monitor.remove_port_clock(16_000, 111).unwrap();
    run(&object, &frame(40_000, 16_000, &rtp(0x80, 111, 2, &opus)));
    let poll = monitor.poll().unwrap();
    let flow = poll.active.iter().find(|f| f.src.port() == 40_000).unwrap();
    assert_eq!(
        (flow.state.packets, flow.state.transit_clock),
        (2, 48_000),
        "the kept clock"
    );
    // Another source on the same 5-tuple: looked up again, default now.
    let mut other = rtp(0x80, 111, 3, &opus);
    other[11] = 2;
    run(&object, &frame(40_000, 16_000, &other));
    let poll = monitor.poll().unwrap();
    let flow = poll.active.iter().find(|f| f.src.port() == 40_000).unwrap();
    assert_eq!(
        (flow.state.ssrc, flow.state.transit_clock),
        (0xcafe_0002, 8_000)
    );
}
