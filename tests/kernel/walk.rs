//! The header walk on crafted frames, run in the kernel with
//! BPF_PROG_TEST_RUN: IPv4 options, IPv6 extension header chains, IPv6 and
//! IPv4 fragments (including a later fragment arriving first), TCP, and
//! frames the walk must give up on. SIPp and kamailio never send these, so
//! the live tests cannot cover them.

use aya::{
    maps::{MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use sipscope::capture::live::{
    CaptureCounters, KtimeClock, LiveFrame, LoadedObject, decode_event, load_object,
};
use sipscope::packet::Direction;
use sipscope_common::{CaptureCounter, DEFAULT_RING_SIZE, FLAG_FRAGMENT, Transport};

use crate::require_root;

const XDP_PASS: u32 = 2;
const TC_ACT_OK: u32 = 0;
const SIP: &[u8] =
    b"OPTIONS sip:walk@192.0.2.1 SIP/2.0\r\nCall-ID: walk\r\nContent-Length: 0\r\n\r\n";

struct Kernel {
    object: LoadedObject,
    ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
}

impl Kernel {
    fn new() -> Self {
        require_root();
        let mut object = load_object(DEFAULT_RING_SIZE).unwrap();
        object.set_sip_ports(&[5080]).unwrap();
        object.load_capture_programs().unwrap();
        let ring = object.take_ring().unwrap();
        let counters = object.take_counters().unwrap();
        Self {
            object,
            ring,
            counters,
        }
    }

    fn counters(&self) -> CaptureCounters {
        CaptureCounters::read(&self.counters).unwrap()
    }

    /// Runs the XDP (ingress) or TC (egress) program on `frame`; returns
    /// what it put in the ring and how each counter moved.
    fn run(
        &mut self,
        direction: Direction,
        frame: &[u8],
    ) -> (Vec<LiveFrame>, impl Fn(CaptureCounter) -> u64 + use<>) {
        let before = self.counters();
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat: 1,
            ..Default::default()
        };
        let name = match direction {
            Direction::Egress => self.object.egress_program(),
            _ => self.object.ingress_program(),
        };
        run_program(&self.object, name, opts);
        let clock = KtimeClock::new();
        let mut out = Vec::new();
        while let Some(item) = self.ring.next() {
            out.push(decode_event(&item, clock).expect("well-formed event"));
        }
        let after = self.counters();
        (out, move |c| after.get(c) - before.get(c))
    }
}

/// Runs one capture program (XDP or TC, whichever `name` is) once and
/// checks it let the frame pass.
pub fn run_program(object: &LoadedObject, name: &str, opts: TestRunOptions<'_>) {
    let prog = object.ebpf.program(name).unwrap();
    if let Ok(p) = <&Xdp>::try_from(prog) {
        let r = p.test_run(opts).unwrap().return_value;
        assert_eq!(r, XDP_PASS, "fail-open");
    } else {
        let p: &SchedClassifier = prog.try_into().unwrap();
        let r = p.test_run(opts).unwrap().return_value;
        assert_eq!(r, TC_ACT_OK, "fail-open");
    }
}

fn eth(ethertype: u16) -> Vec<u8> {
    let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    f.extend_from_slice(&ethertype.to_be_bytes());
    f
}

fn udp(src: u16, dst: u16, payload: &[u8]) -> Vec<u8> {
    let mut u = Vec::new();
    u.extend_from_slice(&src.to_be_bytes());
    u.extend_from_slice(&dst.to_be_bytes());
    u.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    u.extend_from_slice(&[0, 0]);
    u.extend_from_slice(payload);
    u
}

/// IPv4 header (RFC 791) with `options` (a multiple of 4 bytes).
fn ipv4(proto: u8, id: u16, frag_field: u16, options: &[u8], payload_len: usize) -> Vec<u8> {
    let ihl = 5 + options.len() / 4;
    let total = (ihl * 4 + payload_len) as u16;
    let mut h = vec![(4 << 4) | ihl as u8, 0];
    h.extend_from_slice(&total.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h.extend_from_slice(&frag_field.to_be_bytes());
    h.extend_from_slice(&[64, proto, 0, 0, 192, 0, 2, 10, 192, 0, 2, 1]);
    h.extend_from_slice(options);
    h
}

/// IPv6 header (RFC 8200) with next header `next`.
fn ipv6(next: u8, payload_len: usize) -> Vec<u8> {
    let mut h = vec![0x60, 0, 0, 0];
    h.extend_from_slice(&(payload_len as u16).to_be_bytes());
    h.extend_from_slice(&[next, 64]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
    h.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
    h
}

/// An 8-byte extension header (hop-by-hop, routing, destination options)
/// padded with PadN.
fn ext8(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

fn frag6(next: u8, offset_bytes: u16, more: bool, id: u32) -> Vec<u8> {
    let field = offset_bytes | u16::from(more);
    let mut h = vec![next, 0];
    h.extend_from_slice(&field.to_be_bytes());
    h.extend_from_slice(&id.to_be_bytes());
    h
}

#[test]
fn ipv4_with_options_is_walked_to_the_udp_ports() {
    let mut k = Kernel::new();
    let payload = udp(40000, 5060, SIP);
    // Options: Router Alert (4 bytes) + 4 NOPs = 8 bytes (IHL 7).
    let options = [0x94, 0x04, 0x00, 0x00, 0x01, 0x01, 0x01, 0x01];
    let frame = [
        eth(0x0800),
        ipv4(17, 1, 0, &options, payload.len()),
        payload,
    ]
    .concat();
    let (events, delta) = k.run(Direction::Ingress, &frame);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.header.endpoints.src_port, e.header.endpoints.dst_port),
        (40000, 5060)
    );
    assert_eq!(e.header.endpoints.transport, Transport::Udp as u8);
    assert_eq!(e.header.endpoints.src_ip().to_string(), "192.0.2.10");
    assert_eq!(e.packet.data, frame, "copied from the Ethernet header on");
    assert_eq!(e.packet.orig_len as usize, frame.len());
    assert_eq!(e.packet.direction, Direction::Ingress);
    assert_eq!(delta(CaptureCounter::SipCaptured), 1);
}

#[test]
fn ipv6_extension_header_chain_is_walked_on_egress() {
    let mut k = Kernel::new();
    let payload = udp(5080, 33000, SIP);
    // Hop-by-hop -> routing -> destination options -> UDP to the configured port 5080.
    let exts = [ext8(43), ext8(60), ext8(17)].concat();
    let frame = [
        eth(0x86DD),
        ipv6(0, exts.len() + payload.len()),
        exts,
        payload,
    ]
    .concat();
    let (events, delta) = k.run(Direction::Egress, &frame);
    assert_eq!(events.len(), 1);
    let e = &events[0];
    assert_eq!(
        (e.header.endpoints.src_port, e.header.endpoints.dst_port),
        (5080, 33000)
    );
    assert_eq!(e.header.endpoints.dst_ip().to_string(), "2001:db8::1");
    assert_eq!(e.packet.direction, Direction::Egress);
    assert_eq!(e.packet.data, frame);
    assert_eq!(delta(CaptureCounter::SipCaptured), 1);
}

#[test]
fn too_many_ipv6_extension_headers_are_counted_as_unparsed() {
    let mut k = Kernel::new();
    let payload = udp(40000, 5060, SIP);
    let mut exts = Vec::new();
    for i in 0..7 {
        exts.extend(ext8(if i < 6 { 60 } else { 17 }));
    }
    let frame = [
        eth(0x86DD),
        ipv6(60, exts.len() + payload.len()),
        exts,
        payload,
    ]
    .concat();
    let (events, delta) = k.run(Direction::Ingress, &frame);
    assert!(events.is_empty());
    assert_eq!(delta(CaptureCounter::Unparsed), 1);
    assert_eq!(delta(CaptureCounter::PacketsSeen), 1);
}

#[test]
fn ipv6_fragments_of_a_sip_datagram_are_forwarded_and_strangers_are_not() {
    let mut k = Kernel::new();
    let datagram = udp(40000, 5060, &[SIP, &[b'x'; 64]].concat());
    let (first, rest) = datagram.split_at(48);
    let f1 = frag6(17, 0, true, 0xDEAD_BEEF);
    let f2 = frag6(17, 48, false, 0xDEAD_BEEF);
    let stranger = frag6(17, 48, false, 0x0BAD_F00D);
    let frame1 = [eth(0x86DD), ipv6(44, 8 + first.len()), f1, first.to_vec()].concat();
    let frame2 = [eth(0x86DD), ipv6(44, 8 + rest.len()), f2, rest.to_vec()].concat();
    let frame3 = [
        eth(0x86DD),
        ipv6(44, 8 + rest.len()),
        stranger,
        rest.to_vec(),
    ]
    .concat();

    let (e1, d1) = k.run(Direction::Ingress, &frame1);
    assert_eq!(e1.len(), 1);
    assert!(e1[0].header.flags & FLAG_FRAGMENT != 0);
    assert_eq!(
        e1[0].header.endpoints.dst_port, 5060,
        "the first fragment carries the ports"
    );
    assert_eq!(d1(CaptureCounter::FragmentsForwarded), 1);

    let (e2, d2) = k.run(Direction::Ingress, &frame2);
    assert_eq!(
        e2.len(),
        1,
        "the later fragment of the same datagram follows"
    );
    assert_eq!(e2[0].header.endpoints.dst_port, 0);
    assert_eq!(e2[0].packet.data, frame2);
    assert_eq!(d2(CaptureCounter::FragmentsForwarded), 1);

    let (e3, d3) = k.run(Direction::Ingress, &frame3);
    assert!(
        e3.is_empty(),
        "a fragment of an unknown datagram is not SIP"
    );
    assert_eq!(d3(CaptureCounter::FragmentsForwarded), 0);
}

#[test]
fn ipv4_later_fragment_before_its_first_is_missed_as_documented() {
    let mut k = Kernel::new();
    let datagram = udp(40000, 5060, &[SIP, &[b'y'; 64]].concat());
    let (first, rest) = datagram.split_at(48);
    // Offset in 8-byte units; MF = 0x2000.
    let later = [
        eth(0x0800),
        ipv4(17, 77, 48 / 8, &[], rest.len()),
        rest.to_vec(),
    ]
    .concat();
    let head = [
        eth(0x0800),
        ipv4(17, 77, 0x2000, &[], first.len()),
        first.to_vec(),
    ]
    .concat();

    let (e, _) = k.run(Direction::Ingress, &later);
    assert!(
        e.is_empty(),
        "no ports and no first fragment yet: not recognisable"
    );
    let (e, _) = k.run(Direction::Ingress, &head);
    assert_eq!(e.len(), 1);
    let (e, d) = k.run(Direction::Ingress, &later);
    assert_eq!(
        e.len(),
        1,
        "once the first fragment was seen, retransmitted tails are forwarded"
    );
    assert_eq!(d(CaptureCounter::FragmentsForwarded), 1);
}

#[test]
fn qinq_tcp_sip_is_captured_and_non_sip_and_arp_are_not() {
    let mut k = Kernel::new();
    // 802.1ad + 802.1Q, IPv4, TCP to 5060 (20-byte header, PSH|ACK).
    let mut tcp = Vec::new();
    tcp.extend_from_slice(&40001u16.to_be_bytes());
    tcp.extend_from_slice(&5060u16.to_be_bytes());
    tcp.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1, 0x50, 0x18, 0xFF, 0xFF, 0, 0, 0, 0]);
    tcp.extend_from_slice(SIP);
    let mut frame = eth(0x88A8);
    frame.extend_from_slice(&[0x00, 0xC8, 0x81, 0x00, 0x01, 0x2C, 0x08, 0x00]);
    frame.extend(ipv4(6, 2, 0x4000, &[], tcp.len()));
    frame.extend(tcp);
    let (e, _) = k.run(Direction::Ingress, &frame);
    assert_eq!(e.len(), 1);
    assert_eq!(e[0].header.endpoints.transport, Transport::Tcp as u8);
    assert!(e[0].is_vlan_tagged());

    let dns = udp(40000, 53, b"not sip");
    let frame = [eth(0x0800), ipv4(17, 3, 0, &[], dns.len()), dns].concat();
    let (e, d) = k.run(Direction::Egress, &frame);
    assert!(e.is_empty());
    assert_eq!(
        (
            d(CaptureCounter::PacketsSeen),
            d(CaptureCounter::SipCaptured)
        ),
        (1, 0)
    );

    // An ARP request (RFC 826) for 192.0.2.1.
    let arp = [
        eth(0x0806),
        vec![0, 1, 8, 0, 6, 4, 0, 1, 2, 0, 0, 0, 0, 1, 192, 0, 2, 10],
        vec![0, 0, 0, 0, 0, 0, 192, 0, 2, 1],
    ]
    .concat();
    // BPF_PROG_TEST_RUN refuses a TC program an skb that is not IP or
    // whose IP header is cut short (EINVAL), so these run through XDP only;
    // on the wire TC sees them like XDP does.
    if k.object.ingress_program() != sipscope_common::names::XDP_INGRESS {
        return;
    }
    let (e, d) = k.run(Direction::Ingress, &arp);
    assert!(e.is_empty());
    assert_eq!(
        (d(CaptureCounter::PacketsSeen), d(CaptureCounter::Unparsed)),
        (1, 0),
        "ARP is not an error"
    );

    let runt = eth(0x0800);
    let (e, d) = k.run(Direction::Ingress, &runt);
    assert!(e.is_empty());
    assert_eq!(
        d(CaptureCounter::Unparsed),
        1,
        "a truncated IPv4 header is counted"
    );
}

#[test]
fn icmp_unreachable_quoting_sip_is_captured_and_quoting_other_is_not() {
    let mut k = Kernel::new();
    let quote = |dst_port: u16| {
        // The quoted datagram: IPv4 header + first 8 bytes of UDP.
        let inner_udp = udp(5060, dst_port, &[])[..8].to_vec();
        let inner = [ipv4(17, 9, 0, &[], 8), inner_udp].concat();
        let icmp = [vec![3, 3, 0, 0, 0, 0, 0, 0], inner].concat();
        [eth(0x0800), ipv4(1, 10, 0, &[], icmp.len()), icmp].concat()
    };
    let (e, _) = k.run(Direction::Ingress, &quote(5060));
    assert_eq!(
        e.len(),
        1,
        "port unreachable about a SIP message is forwarded"
    );
    assert_eq!(e[0].header.endpoints.transport, Transport::Icmp as u8);
    assert_eq!(
        (
            e[0].header.endpoints.src_port,
            e[0].header.endpoints.dst_port
        ),
        (5060, 5060)
    );
    let (e, _) = k.run(Direction::Ingress, &quote(53));
    assert_eq!(e.len(), 1, "the quoted source port 5060 alone makes it SIP");

    let inner_udp = udp(40000, 53, &[])[..8].to_vec();
    let inner6 = [ipv6(17, 8), inner_udp].concat();
    let icmp6 = [vec![1, 4, 0, 0, 0, 0, 0, 0], inner6].concat();
    let frame = [eth(0x86DD), ipv6(58, icmp6.len()), icmp6].concat();
    let (e, d) = k.run(Direction::Ingress, &frame);
    assert!(e.is_empty(), "ICMPv6 about DNS is not SIP");
    assert_eq!(d(CaptureCounter::PacketsSeen), 1);

    let inner_udp = udp(40000, 5080, &[])[..8].to_vec();
    let inner6 = [ipv6(17, 8), inner_udp].concat();
    let icmp6 = [vec![1, 4, 0, 0, 0, 0, 0, 0], inner6].concat();
    let frame = [eth(0x86DD), ipv6(58, icmp6.len()), icmp6].concat();
    let (e, _) = k.run(Direction::Egress, &frame);
    assert_eq!(
        e.len(),
        1,
        "ICMPv6 unreachable about SIP on 5080 is forwarded"
    );
    assert_eq!(e[0].header.endpoints.transport, Transport::Icmpv6 as u8);
    assert_eq!(e[0].header.endpoints.dst_port, 5080);
}
