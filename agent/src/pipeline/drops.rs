//! Packets this host's kernel dropped (live capture's drop monitor) that
//! are not SIP: the media flow a `fw.local_drop` names.

use crate::packet::{Decoder, Meta, Packet};

/// Addresses of a dropped UDP packet between unprivileged, non-SIP ports
/// (the RTP/RTCP ranges PBXs use), for `fw.local_drop` on media.
pub(super) fn media_meta(pkt: &Packet, decoder: &Decoder) -> Option<Meta> {
    let sliced = etherparse::LaxSlicedPacket::from_ip(&pkt.data).ok()?;
    let (src, dst) = match sliced.net.as_ref()? {
        etherparse::LaxNetSlice::Ipv4(v4) => (
            std::net::IpAddr::V4(v4.header().source_addr()),
            std::net::IpAddr::V4(v4.header().destination_addr()),
        ),
        etherparse::LaxNetSlice::Ipv6(v6) => (
            std::net::IpAddr::V6(v6.header().source_addr()),
            std::net::IpAddr::V6(v6.header().destination_addr()),
        ),
        etherparse::LaxNetSlice::Arp(_) => return None,
    };
    let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
        return None;
    };
    let (sport, dport) = (udp.source_port(), udp.destination_port());
    if sport < 1024 || dport < 1024 || decoder.is_sip_port(sport, dport) {
        return None;
    }
    Some(Meta {
        ts: pkt.ts,
        src: std::net::SocketAddr::new(src, sport),
        dst: std::net::SocketAddr::new(dst, dport),
        transport: crate::packet::Transport::Udp,
        direction: pkt.direction,
        ifindex: pkt.ifindex,
    })
}
