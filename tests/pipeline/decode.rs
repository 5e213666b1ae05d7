//! Link types and encapsulations built by hand, each carrying the same
//! SIP message: every one must yield it, or count why not.

use etherparse::{IpNumber, Ipv4Header, PacketBuilder};
use sipscope::pipeline::PipelineConfig;
use sipscope::{
    packet::{Direction, LinkType, Packet},
    time::Timestamp,
};

use crate::common::{messages, request, run_packets};

fn sip() -> Vec<u8> {
    request("OPTIONS", "z9hG4bKd1", 1, "decode@x", "")
}

fn pkt(link: LinkType, data: Vec<u8>) -> Packet {
    Packet {
        ts: Timestamp(1_000_000_000),
        ifindex: 3,
        direction: Direction::Ingress,
        link,
        orig_len: data.len() as u32,
        data,
    }
}

/// IPv4/UDP 10.0.0.1:5060 → 10.0.0.2:5060 carrying `payload`.
fn ipv4_udp(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(5060, 5060)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn ipv6_udp(payload: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    PacketBuilder::ipv6([0xfd; 16], [0xfe; 16], 64)
        .udp(5060, 5060)
        .write(&mut v, payload)
        .unwrap();
    v
}

fn ethernet(ether_type: u16, inner: &[u8]) -> Vec<u8> {
    let mut v = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
    v.extend_from_slice(&ether_type.to_be_bytes());
    v.extend_from_slice(inner);
    v
}

fn one_message(p: Packet) -> sipscope::pipeline::Stats {
    let (events, stats) = run_packets(&[p], PipelineConfig::default());
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 1, "{stats:?}");
    assert_eq!(&msgs[0].message.raw()[..], &sip()[..]);
    assert_eq!(msgs[0].meta.ifindex, 3);
    stats
}

#[test]
fn every_supported_link_type() {
    let ip = ipv4_udp(&sip());
    one_message(pkt(LinkType::Ethernet, ethernet(0x0800, &ip)));
    one_message(pkt(LinkType::RawIp, ip.clone()));
    one_message(pkt(LinkType::Ipv4, ip.clone()));
    one_message(pkt(LinkType::RawIp, ipv6_udp(&sip())));
    one_message(pkt(LinkType::Ipv6, ipv6_udp(&sip())));
    // Linux cooked v1: 16 bytes, protocol last.
    let mut sll = vec![0, 0, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0, 0x08, 0x00];
    sll.extend_from_slice(&ip);
    one_message(pkt(LinkType::LinuxSll, sll));
    // Linux cooked v2: 20 bytes, protocol first.
    let mut sll2 = vec![
        0x08, 0x00, 0, 0, 0, 0, 0, 3, 0, 1, 0, 6, 2, 0, 0, 0, 0, 1, 0, 0,
    ];
    sll2.extend_from_slice(&ip);
    one_message(pkt(LinkType::LinuxSll2, sll2));
    // NULL (host order) and LOOP (network order), IPv4 and IPv6 (BSD 24/28/30, Linux 10).
    for fam in [2u32.to_le_bytes(), 2u32.to_be_bytes()] {
        let mut d = fam.to_vec();
        d.extend_from_slice(&ip);
        one_message(pkt(LinkType::Null, d));
    }
    for af in [24u32, 28, 30] {
        let mut d = af.to_le_bytes().to_vec();
        d.extend_from_slice(&ipv6_udp(&sip()));
        one_message(pkt(LinkType::Null, d));
    }
}

#[test]
fn vlan_and_qinq_tags() {
    let ip = ipv4_udp(&sip());
    let mut vlan = vec![0x00, 0x64, 0x08, 0x00];
    vlan.extend_from_slice(&ip);
    one_message(pkt(LinkType::Ethernet, ethernet(0x8100, &vlan)));
    let mut qinq = vec![0x00, 0x0a, 0x81, 0x00, 0x00, 0x64, 0x08, 0x00];
    qinq.extend_from_slice(&ip);
    one_message(pkt(LinkType::Ethernet, ethernet(0x88a8, &qinq)));
}

#[test]
fn ipv4_options_and_ipv6_extension_headers() {
    let payload = sip();
    let mut udp = Vec::new();
    PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
        .udp(5060, 5060)
        .write(&mut udp, &payload)
        .unwrap();
    let udp_part = &udp[20..]; // UDP header + payload
    // IPv4 header with 8 bytes of options (NOP padding + record route stub).
    let mut h = Ipv4Header::new(
        udp_part.len() as u16,
        64,
        IpNumber::UDP,
        [10, 0, 0, 1],
        [10, 0, 0, 2],
    )
    .unwrap();
    h.options = [1u8, 1, 1, 1, 1, 1, 1, 0][..].try_into().unwrap();
    h.set_payload_len(udp_part.len()).unwrap();
    h.header_checksum = h.calc_header_checksum();
    let mut v4 = Vec::new();
    h.write(&mut v4).unwrap();
    v4.extend_from_slice(udp_part);
    one_message(pkt(LinkType::RawIp, v4));
    // IPv6 with a hop-by-hop options header before UDP.
    let v6 = ipv6_udp(&payload);
    let mut with_ext = v6[..40].to_vec();
    with_ext[6] = 0; // next header: hop-by-hop
    let plen = u16::from_be_bytes([v6[4], v6[5]]) + 8;
    with_ext[4..6].copy_from_slice(&plen.to_be_bytes());
    with_ext.extend_from_slice(&[17, 0, 1, 4, 0, 0, 0, 0]); // next UDP, len 0, PadN
    with_ext.extend_from_slice(&v6[40..]);
    one_message(pkt(LinkType::RawIp, with_ext));
}

/// IPv4 fragments of one UDP datagram (the gap the public captures leave).
fn ipv4_fragments(payload: &[u8], frag_size: usize, id: u16) -> Vec<Vec<u8>> {
    let whole = ipv4_udp(payload);
    let data = &whole[20..]; // UDP header + payload, fragmented as one
    let mut out = Vec::new();
    let mut off = 0;
    while off < data.len() {
        let end = (off + frag_size).min(data.len());
        let mut h = Ipv4Header::new(
            (end - off) as u16,
            64,
            IpNumber::UDP,
            [10, 0, 0, 1],
            [10, 0, 0, 2],
        )
        .unwrap();
        h.identification = id;
        h.more_fragments = end < data.len();
        h.fragment_offset = etherparse::IpFragOffset::try_new((off / 8) as u16).unwrap();
        h.header_checksum = h.calc_header_checksum();
        let mut f = Vec::new();
        h.write(&mut f).unwrap();
        f.extend_from_slice(&data[off..end]);
        out.push(f);
        off = end;
    }
    out
}

#[test]
fn ipv4_fragments_reassemble_in_any_order() {
    let body = "v=0\r\n".repeat(400); // ~2 KB: needs fragments at 1480
    let payload = request("INVITE", "z9hG4bKfrag", 1, "frag@x", &body);
    let mut frags = ipv4_fragments(&payload, 1480, 77);
    assert!(frags.len() >= 2);
    frags.reverse();
    let packets: Vec<_> = frags.into_iter().map(|f| pkt(LinkType::RawIp, f)).collect();
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 1);
    assert_eq!(&msgs[0].message.raw()[..], &payload[..]);
    assert_eq!(stats.packets.frag.reassembled, 1);
}

#[test]
fn fragment_table_bound_and_timeout_are_counted() {
    let mut config = PipelineConfig::default();
    config.decoder.frag.max_datagrams = 4;
    let payload = request("INVITE", "z9hG4bKf2", 1, "frag2@x", &"a=x\r\n".repeat(400));
    // Ten datagrams whose last fragment never arrives.
    let mut packets: Vec<Packet> = (0..10u16)
        .map(|id| {
            pkt(
                LinkType::RawIp,
                ipv4_fragments(&payload, 1480, id).remove(0),
            )
        })
        .collect();
    // One more, long after: the rest have timed out by then.
    let mut late = pkt(
        LinkType::RawIp,
        ipv4_fragments(&payload, 1480, 99).remove(0),
    );
    late.ts = Timestamp(100_000_000_000);
    packets.push(late);
    let (events, stats) = run_packets(&packets, config);
    assert!(messages(&events).is_empty());
    assert_eq!(stats.packets.frag.evicted, 6);
    assert_eq!(stats.packets.frag.timed_out, 4);
}

#[test]
fn tunnels_ipip_gre_pppoe() {
    let inner = ipv4_udp(&sip());
    // IP-in-IP (protocol 4).
    let mut outer = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut outer, IpNumber(4), &inner)
        .unwrap();
    let s = one_message(pkt(LinkType::RawIp, outer));
    assert_eq!(s.packets.tunnels_decoded, 1);
    // GRE (protocol 47) carrying IPv4.
    let mut gre = vec![0, 0, 0x08, 0x00];
    gre.extend_from_slice(&inner);
    let mut outer = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut outer, IpNumber(47), &gre)
        .unwrap();
    one_message(pkt(LinkType::RawIp, outer));
    // PPPoE session carrying IPv4.
    let mut pppoe = vec![0x11, 0x00, 0x00, 0x01];
    pppoe.extend_from_slice(&((inner.len() + 2) as u16).to_be_bytes());
    pppoe.extend_from_slice(&[0x00, 0x21]);
    pppoe.extend_from_slice(&inner);
    one_message(pkt(LinkType::Ethernet, ethernet(0x8864, &pppoe)));
    // GRE with an unknown protocol: counted, not decoded.
    let mut gre = vec![0, 0, 0x12, 0x34];
    gre.extend_from_slice(&inner);
    let mut outer = Vec::new();
    PacketBuilder::ipv4([192, 0, 2, 1], [192, 0, 2, 2], 64)
        .write(&mut outer, IpNumber(47), &gre)
        .unwrap();
    let (events, stats) = run_packets(&[pkt(LinkType::RawIp, outer)], PipelineConfig::default());
    assert!(messages(&events).is_empty());
    assert_eq!(stats.packets.tunnels_unsupported, 1);
}

#[test]
fn truncated_and_garbage_frames_are_counted() {
    let (_, stats) = run_packets(
        &[
            pkt(LinkType::Ethernet, vec![1, 2, 3]),
            pkt(LinkType::LinuxSll2, vec![0; 10]),
            pkt(LinkType::RawIp, vec![0x45, 0, 0]),
            pkt(LinkType::Ethernet, ethernet(0x0806, &[0; 28])), // ARP
        ],
        PipelineConfig::default(),
    );
    assert_eq!(stats.packets.packets, 4);
    assert_eq!(stats.packets.link_errors, 2);
    assert_eq!(stats.packets.not_ip, 1);
    assert!(
        stats.packets.ip_errors + stats.packets.not_ip >= 2,
        "{stats:?}"
    );
}
