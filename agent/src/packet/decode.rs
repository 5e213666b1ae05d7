//! Frame → IP → UDP/TCP decoding (etherparse for links and IPv4, our own
//! [`super::ipv6`] walk for IPv6), for every link type a
//! capture source delivers, plus the tunnels SIP captures commonly carry
//! (IP-in-IP, GRE incl. ERSPAN and PPTP/PPP, PPPoE). Anything not
//! decodable is counted by why.

use std::net::{IpAddr, SocketAddr};

use bytes::Bytes;
use etherparse::{EtherType, IpFragOffset, LaxNetSlice, LaxSlicedPacket, TcpSlice};

use super::frag::{Defragmenter, FragConfig, FragKey, FragStats};
use super::ipv6;
use super::tcp::{SegmentInfo, StreamKey, TcpConfig, TcpReassembler, TcpStats};
use super::{Datagram, IcmpUnreachable, Meta, Transport};
use crate::sip::message::looks_like_start_line;
use crate::{
    packet::{Direction, LinkType, Packet, Plaintext},
    time::Timestamp,
};

#[derive(Clone, Debug)]
pub struct DecoderConfig {
    /// Ports whose UDP/TCP traffic is SIP even when it does not start like
    /// SIP (keep-alives, mid-stream pickup). Other ports are SIP when the
    /// payload starts with a SIP start line.
    pub sip_ports: Vec<u16>,
    pub frag: FragConfig,
    pub tcp: TcpConfig,
    /// Hand out UDP datagrams that may be RTP ([`Decoder::take_media`]):
    /// both ports unprivileged, neither a SIP port, RTP version 2. Off for
    /// live capture, where the kernel keeps RTP statistics itself.
    pub media: bool,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        DecoderConfig {
            sip_ports: vec![5060, 5061, 5080],
            frag: FragConfig::default(),
            tcp: TcpConfig::default(),
            media: false,
        }
    }
}

/// Counters of the packet stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PacketStats {
    pub packets: u64,
    /// Captured shorter than on the wire (snap length).
    pub truncated: u64,
    /// Link header missing or cut short.
    pub link_errors: u64,
    /// ARP, LLDP, STP and other non-IP frames.
    pub not_ip: u64,
    /// IP/UDP/TCP headers unreadable.
    pub ip_errors: u64,
    pub tunnels_decoded: u64,
    /// GRE versions/protocols and other encapsulations not handled.
    pub tunnels_unsupported: u64,
    /// IP payloads other than UDP/TCP/tunnels (ICMP, SCTP, ...).
    pub other_protocols: u64,
    pub udp_datagrams: u64,
    /// ICMP/ICMPv6 destination unreachable quoting UDP to/from a SIP port.
    pub icmp_unreachable_sip: u64,
    /// UDP payloads on a SIP port that are not SIP (STUN, "hello" keep-alives).
    pub udp_not_sip: u64,
    /// Empty or CRLF-only UDP keep-alives on a SIP port.
    pub udp_keepalives: u64,
    pub frag: FragStats,
    pub tcp: TcpStats,
    /// SIP over TLS: the plaintext streams of TLS library calls.
    pub tls: TcpStats,
}

/// Where a frame came from, carried down the layers.
#[derive(Clone, Copy)]
struct Ctx {
    ts: Timestamp,
    direction: Direction,
    ifindex: u32,
}

/// Nested encapsulations followed at most this deep.
const MAX_DEPTH: u8 = 4;

const ETH_IPV4: u16 = 0x0800;
const ETH_IPV6: u16 = 0x86dd;
const ETH_PPPOE_SESSION: u16 = 0x8864;
const ETH_TEB: u16 = 0x6558;
const ETH_ERSPAN2: u16 = 0x88be;
const ETH_ERSPAN3: u16 = 0x22eb;
const ETH_PPP: u16 = 0x880b;

pub struct Decoder {
    config: DecoderConfig,
    frag: Defragmenter,
    tcp: TcpReassembler,
    /// Plaintext streams of TLS connections, apart from the wire's TCP
    /// streams (the same 4-tuple carries ciphertext there).
    tls: TcpReassembler,
    stats: PacketStats,
    tcp_out: Vec<Bytes>,
    /// ICMP unreachables of the frame being decoded; the pipeline drains
    /// them after every frame ([`Decoder::take_icmp`]).
    icmp: Vec<IcmpUnreachable>,
    /// RTP candidates of the frame being decoded ([`Decoder::take_media`]).
    media: Vec<Datagram>,
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

impl Decoder {
    /// The ports taken as SIP from now on (a configuration reload).
    pub fn set_sip_ports(&mut self, ports: &[u16]) {
        self.config.sip_ports = ports.to_vec();
    }

    pub fn new(config: DecoderConfig) -> Self {
        Decoder {
            frag: Defragmenter::new(config.frag),
            tcp: TcpReassembler::new(config.tcp),
            tls: TcpReassembler::new(config.tcp),
            config,
            stats: PacketStats::default(),
            tcp_out: Vec::new(),
            icmp: Vec::new(),
            media: Vec::new(),
        }
    }

    /// Counters, with the reassemblers' included.
    pub fn stats(&self) -> PacketStats {
        let mut s = self.stats.clone();
        s.frag = self.frag.stats.clone();
        s.tcp = self.tcp.stats.clone();
        s.tls = self.tls.stats.clone();
        s
    }

    /// Streams and fragment buffers in flight (for memory reporting).
    pub fn in_flight(&self) -> (usize, usize, usize) {
        (
            self.tcp.streams() + self.tls.streams(),
            self.tcp.buffered_bytes() + self.tls.buffered_bytes(),
            self.frag.in_flight(),
        )
    }

    /// Frames the plaintext of one TLS library call into SIP messages,
    /// with the same stream framer as SIP over TCP (RFC 3261 §18.3): a
    /// message split over several calls is joined, several in one call
    /// are split. Appended to `out` with transport TLS.
    pub fn decode_plaintext(&mut self, p: &Plaintext, out: &mut Vec<Datagram>) {
        let key = StreamKey {
            src: p.src,
            dst: p.dst,
        };
        let mut framed = std::mem::take(&mut self.tcp_out);
        self.tls
            .append(p.ts, key, &p.data, p.truncated, &mut framed);
        for payload in framed.drain(..) {
            out.push(Datagram {
                meta: Meta {
                    ts: p.ts,
                    src: p.src,
                    dst: p.dst,
                    transport: Transport::Tls,
                    direction: p.direction,
                    ifindex: 0,
                },
                payload,
            });
        }
        self.tcp_out = framed;
    }

    /// Decode one captured frame; SIP candidates are appended to `out`.
    pub fn decode(&mut self, pkt: &Packet, out: &mut Vec<Datagram>) {
        self.stats.packets += 1;
        if pkt.is_truncated() {
            self.stats.truncated += 1;
        }
        let ctx = Ctx {
            ts: pkt.ts,
            direction: pkt.direction,
            ifindex: pkt.ifindex,
        };
        let d = &pkt.data[..];
        match pkt.link {
            LinkType::Ethernet => self.ethernet(ctx, d, 0, out),
            LinkType::LinuxSll => match be16(d, 14) {
                Some(proto) => self.ether(ctx, proto, &d[16..], 0, out),
                None => self.stats.link_errors += 1,
            },
            LinkType::LinuxSll2 => match (be16(d, 0), d.get(20..)) {
                (Some(proto), Some(rest)) => self.ether(ctx, proto, rest, 0, out),
                _ => self.stats.link_errors += 1,
            },
            LinkType::Null => {
                let Some(fam) = d.get(..4) else {
                    self.stats.link_errors += 1;
                    return;
                };
                // Host byte order of the capturing machine (NULL) or network
                // order (LOOP): accept both. AF_INET6 differs per OS.
                let le = u32::from_le_bytes([fam[0], fam[1], fam[2], fam[3]]);
                let be = u32::from_be_bytes([fam[0], fam[1], fam[2], fam[3]]);
                match (le, be) {
                    (2, _) | (_, 2) => self.ether(ctx, ETH_IPV4, &d[4..], 0, out),
                    (10 | 24 | 28 | 30, _) | (_, 10 | 24 | 28 | 30) => {
                        self.ether(ctx, ETH_IPV6, &d[4..], 0, out)
                    }
                    _ => self.stats.not_ip += 1,
                }
            }
            LinkType::RawIp | LinkType::Ipv4 | LinkType::Ipv6 => self.ip(ctx, d, 0, out),
        }
    }

    fn ethernet(&mut self, ctx: Ctx, d: &[u8], depth: u8, out: &mut Vec<Datagram>) {
        match be16(d, 12) {
            Some(et) => self.ether(ctx, et, &d[14..], depth, out),
            None => self.stats.link_errors += 1,
        }
    }

    fn ip(&mut self, ctx: Ctx, d: &[u8], depth: u8, out: &mut Vec<Datagram>) {
        match d.first().map(|b| b >> 4) {
            Some(4) => self.ether(ctx, ETH_IPV4, d, depth, out),
            Some(6) => self.ether(ctx, ETH_IPV6, d, depth, out),
            _ => self.stats.ip_errors += 1,
        }
    }

    fn ether(&mut self, ctx: Ctx, ether_type: u16, d: &[u8], depth: u8, out: &mut Vec<Datagram>) {
        match ether_type {
            ETH_PPPOE_SESSION => return self.pppoe(ctx, d, depth, out),
            ETH_IPV6 => return self.ipv6(ctx, d, depth, out),
            _ => {}
        }
        let sliced = LaxSlicedPacket::from_ether_type(EtherType(ether_type), d);
        // etherparse walks VLAN tags and MACsec; IPv6 and PPPoE behind
        // them are decoded here like untagged ones.
        match sliced.ether_payload() {
            Some(p) if p.ether_type.0 == ETH_IPV6 => return self.ipv6(ctx, p.payload, depth, out),
            Some(p) if p.ether_type.0 == ETH_PPPOE_SESSION && depth < MAX_DEPTH => {
                return self.pppoe(ctx, p.payload, depth + 1, out);
            }
            _ => {}
        }
        let v4 = match &sliced.net {
            Some(LaxNetSlice::Ipv4(v4)) => v4,
            Some(_) => return self.stats.not_ip += 1,
            None => {
                match sliced.ether_payload() {
                    Some(p) if p.ether_type.0 == ETH_IPV4 => self.stats.ip_errors += 1,
                    _ => self.stats.not_ip += 1,
                }
                return;
            }
        };
        let h = v4.header();
        let (src, dst) = (
            IpAddr::V4(h.source_addr()),
            IpAddr::V4(h.destination_addr()),
        );
        let payload = v4.payload();
        let proto = payload.ip_number.0;
        if payload.fragmented {
            let frag = (
                u32::from(h.identification()),
                h.fragments_offset(),
                h.more_fragments(),
            );
            return self.defrag(ctx, src, dst, proto, frag, payload.payload, depth, out);
        }
        self.transport(ctx, src, dst, proto, payload.payload, depth, out);
    }

    /// IPv6 with its extension headers walked by [`ipv6::parse`]; a chain
    /// that does not fit in the captured bytes is an IP error.
    fn ipv6(&mut self, ctx: Ctx, d: &[u8], depth: u8, out: &mut Vec<Datagram>) {
        let Ok(v6) = ipv6::parse(d) else {
            self.stats.ip_errors += 1;
            return;
        };
        let (src, dst) = (IpAddr::V6(v6.src), IpAddr::V6(v6.dst));
        let Some(f) = v6.fragment else {
            return self.transport(ctx, src, dst, v6.protocol, v6.payload, depth, out);
        };
        match IpFragOffset::try_new(f.offset) {
            Ok(offset) => {
                let frag = (f.id, offset, f.more);
                self.defrag(ctx, src, dst, v6.protocol, frag, v6.payload, depth, out)
            }
            Err(_) => self.stats.ip_errors += 1,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn defrag(
        &mut self,
        ctx: Ctx,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        (id, offset, more): (u32, IpFragOffset, bool),
        data: &[u8],
        depth: u8,
        out: &mut Vec<Datagram>,
    ) {
        let key = FragKey {
            src,
            dst,
            id,
            proto,
        };
        let Some(whole) = self.frag.add(ctx.ts, key, offset, more, data) else {
            return;
        };
        if !src.is_ipv6() {
            return self.transport(ctx, src, dst, proto, &whole, depth, out);
        }
        // The fragmentable part may start with Destination Options or
        // Routing headers (RFC 8200 §4.5).
        match ipv6::skip_extensions(proto, &whole) {
            Ok((proto, payload)) => self.transport(ctx, src, dst, proto, payload, depth, out),
            Err(_) => self.stats.ip_errors += 1,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn transport(
        &mut self,
        ctx: Ctx,
        src: IpAddr,
        dst: IpAddr,
        proto: u8,
        d: &[u8],
        depth: u8,
        out: &mut Vec<Datagram>,
    ) {
        match proto {
            17 => self.udp(ctx, src, dst, d, out),
            1 | 58 if self.icmp_unreachable(ctx, src, proto == 58, d) => {}
            6 => self.tcp(ctx, src, dst, d, out),
            4 | 41 if depth < MAX_DEPTH => {
                self.stats.tunnels_decoded += 1;
                self.ip(ctx, d, depth + 1, out)
            }
            47 if depth < MAX_DEPTH => self.gre(ctx, d, depth + 1, out),
            4 | 41 | 47 => self.stats.tunnels_unsupported += 1,
            _ => self.stats.other_protocols += 1,
        }
    }

    /// ICMP unreachables seen since the last call, appended to `out`.
    /// The RTP candidates of the frames decoded since the last call (only
    /// with [`DecoderConfig::media`]).
    pub fn take_media(&mut self, out: &mut Vec<Datagram>) {
        out.append(&mut self.media);
    }

    pub fn take_icmp(&mut self, out: &mut Vec<IcmpUnreachable>) {
        out.append(&mut self.icmp);
    }

    /// RFC 792 type 3 / RFC 4443 §3.1 type 1: the quoted IP header and
    /// the first 8 bytes of its payload (the UDP ports). True when it was
    /// one about SIP (queued for the pipeline); other ICMP is counted as
    /// `other_protocols` by the caller.
    fn icmp_unreachable(&mut self, ctx: Ctx, from: IpAddr, v6: bool, d: &[u8]) -> bool {
        let (Some(&ty), Some(&code)) = (d.first(), d.get(1)) else {
            return false;
        };
        if ty != if v6 { 1 } else { 3 } {
            return false;
        }
        let Some(q) = d.get(8..) else { return false };
        let (qsrc, qdst, udp) = match (v6, q.first().map(|b| b >> 4)) {
            (false, Some(4)) => {
                let ihl = usize::from(q[0] & 0x0f) * 4;
                let (Some(s), Some(t), Some(&proto)) = (q.get(12..16), q.get(16..20), q.get(9))
                else {
                    return false;
                };
                if proto != 17 || ihl < 20 {
                    return false;
                }
                let s: [u8; 4] = s.try_into().expect("4 bytes");
                let t: [u8; 4] = t.try_into().expect("4 bytes");
                (IpAddr::from(s), IpAddr::from(t), q.get(ihl..))
            }
            (true, Some(6)) => {
                let (Some(s), Some(t), Some(&next)) = (q.get(8..24), q.get(24..40), q.get(6))
                else {
                    return false;
                };
                if next != 17 {
                    return false;
                }
                let s: [u8; 16] = s.try_into().expect("16 bytes");
                let t: [u8; 16] = t.try_into().expect("16 bytes");
                (IpAddr::from(s), IpAddr::from(t), q.get(40..))
            }
            _ => return false,
        };
        let Some((sport, dport)) = udp.and_then(|u| Some((be16(u, 0)?, be16(u, 2)?))) else {
            return false;
        };
        if !self.is_sip_port(sport, dport) {
            return false;
        }
        self.stats.icmp_unreachable_sip += 1;
        self.icmp.push(IcmpUnreachable {
            ts: ctx.ts,
            from,
            v6,
            code,
            quoted_src: SocketAddr::new(qsrc, sport),
            quoted_dst: SocketAddr::new(qdst, dport),
        });
        true
    }

    /// Whether either port is a configured SIP port.
    pub fn is_sip_port(&self, a: u16, b: u16) -> bool {
        self.config.sip_ports.contains(&a) || self.config.sip_ports.contains(&b)
    }

    fn udp(&mut self, ctx: Ctx, src: IpAddr, dst: IpAddr, d: &[u8], out: &mut Vec<Datagram>) {
        let (Some(sport), Some(dport), Some(len)) = (be16(d, 0), be16(d, 2), be16(d, 4)) else {
            self.stats.ip_errors += 1;
            return;
        };
        self.stats.udp_datagrams += 1;
        // UDP length 0 happens with jumbograms and some offloaded captures.
        let end = if len >= 8 {
            (len as usize).min(d.len())
        } else {
            d.len()
        };
        let payload = d.get(8..end).unwrap_or(&[]);
        // Skip CRLF keep-alives glued in front of a message.
        let lead = payload
            .iter()
            .take_while(|c| matches!(c, b'\r' | b'\n'))
            .count();
        let first_line = payload[lead..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(&payload[lead..], |n| &payload[lead..lead + n]);
        if looks_like_start_line(first_line) {
            out.push(Datagram {
                meta: meta(ctx, src, sport, dst, dport, Transport::Udp),
                payload: Bytes::copy_from_slice(payload),
            });
        } else if self.is_sip_port(sport, dport) {
            if payload.iter().all(|c| matches!(c, b'\r' | b'\n' | 0)) {
                self.stats.udp_keepalives += 1;
            } else {
                self.stats.udp_not_sip += 1;
            }
        } else if self.config.media
            && sport >= 1024
            && dport >= 1024
            && payload.first().is_some_and(|b| b >> 6 == 2)
        {
            self.media.push(Datagram {
                meta: meta(ctx, src, sport, dst, dport, Transport::Udp),
                payload: Bytes::copy_from_slice(payload),
            });
        }
    }

    fn tcp(&mut self, ctx: Ctx, src: IpAddr, dst: IpAddr, d: &[u8], out: &mut Vec<Datagram>) {
        let Ok(tcp) = TcpSlice::from_slice(d) else {
            self.stats.ip_errors += 1;
            return;
        };
        let (sport, dport) = (tcp.source_port(), tcp.destination_port());
        let payload = tcp.payload();
        let track_new = self.is_sip_port(sport, dport) || {
            let line = payload
                .iter()
                .position(|&c| c == b'\n')
                .map_or(payload, |n| &payload[..n]);
            looks_like_start_line(line)
        };
        let key = StreamKey {
            src: SocketAddr::new(src, sport),
            dst: SocketAddr::new(dst, dport),
        };
        let seg = SegmentInfo {
            seq: tcp.sequence_number(),
            syn: tcp.syn(),
            fin: tcp.fin(),
            rst: tcp.rst(),
            payload,
        };
        let mut framed = std::mem::take(&mut self.tcp_out);
        self.tcp.segment(ctx.ts, key, seg, track_new, &mut framed);
        for payload in framed.drain(..) {
            out.push(Datagram {
                meta: meta(ctx, src, sport, dst, dport, Transport::Tcp),
                payload,
            });
        }
        self.tcp_out = framed;
    }

    /// RFC 2516 PPPoE session: 6-byte header, then a PPP protocol field.
    fn pppoe(&mut self, ctx: Ctx, d: &[u8], depth: u8, out: &mut Vec<Datagram>) {
        match (be16(d, 6), d.get(8..)) {
            (Some(0x0021), Some(ip)) => self.ether(ctx, ETH_IPV4, ip, depth, out),
            (Some(0x0057), Some(ip)) => self.ether(ctx, ETH_IPV6, ip, depth, out),
            (Some(_), Some(_)) => self.stats.not_ip += 1,
            _ => self.stats.link_errors += 1,
        }
    }

    /// GRE (RFC 2784/2890), PPTP enhanced GRE (RFC 2637 §4.1) and ERSPAN
    /// type I/II/III (mirrored Ethernet).
    fn gre(&mut self, ctx: Ctx, d: &[u8], depth: u8, out: &mut Vec<Datagram>) {
        let (Some(flags), Some(proto)) = (be16(d, 0), be16(d, 2)) else {
            self.stats.ip_errors += 1;
            return;
        };
        let version = flags & 0x7;
        let mut hlen = 4;
        if flags & 0x8000 != 0 || (version == 0 && flags & 0x4000 != 0) {
            hlen += 4; // checksum (+ offset)
        }
        if flags & 0x2000 != 0 {
            hlen += 4; // key (PPTP: payload length + call id)
        }
        if flags & 0x1000 != 0 {
            hlen += 4; // sequence number
        }
        if version == 1 && flags & 0x0080 != 0 {
            hlen += 4; // PPTP acknowledgment number
        }
        let Some(inner) = d.get(hlen..) else {
            self.stats.ip_errors += 1;
            return;
        };
        self.stats.tunnels_decoded += 1;
        match (version, proto) {
            (0, ETH_IPV4 | ETH_IPV6) => self.ether(ctx, proto, inner, depth, out),
            (0, ETH_TEB) => self.ethernet(ctx, inner, depth, out),
            // ERSPAN type II carries an 8-byte header when the sequence
            // bit is set; type I has none.
            (0, ETH_ERSPAN2) if flags & 0x1000 != 0 => match inner.get(8..) {
                Some(e) => self.ethernet(ctx, e, depth, out),
                None => self.stats.ip_errors += 1,
            },
            (0, ETH_ERSPAN2) => self.ethernet(ctx, inner, depth, out),
            (0, ETH_ERSPAN3) => {
                let optional = inner.get(11).is_some_and(|b| b & 1 != 0);
                match inner.get(if optional { 20 } else { 12 }..) {
                    Some(e) => self.ethernet(ctx, e, depth, out),
                    None => self.stats.ip_errors += 1,
                }
            }
            (_, ETH_PPP) => self.ppp(ctx, inner, depth, out),
            _ => {
                self.stats.tunnels_decoded -= 1;
                self.stats.tunnels_unsupported += 1;
            }
        }
    }

    /// PPP frame (RFC 1661), optional HDLC address/control, possibly
    /// compressed protocol field (RFC 1661 §6.5).
    fn ppp(&mut self, ctx: Ctx, d: &[u8], depth: u8, out: &mut Vec<Datagram>) {
        let d = d.strip_prefix(&[0xff, 0x03]).unwrap_or(d);
        let (proto, rest) = match d.first() {
            Some(b) if b & 1 == 1 => (u16::from(*b), &d[1..]),
            Some(_) => match be16(d, 0) {
                Some(p) => (p, &d[2..]),
                None => return self.stats.link_errors += 1,
            },
            None => return self.stats.link_errors += 1,
        };
        match proto {
            0x21 => self.ether(ctx, ETH_IPV4, rest, depth, out),
            0x57 => self.ether(ctx, ETH_IPV6, rest, depth, out),
            _ => self.stats.not_ip += 1,
        }
    }

    /// Run the reassemblers' timers (packet clock).
    pub fn tick(&mut self, now: Timestamp) {
        self.tcp.sweep(now);
        self.tls.sweep(now);
        self.frag.maybe_expire(now);
    }

    /// End of input: drop (and count) whatever is still buffered.
    pub fn finish(&mut self) {
        self.tcp.finish();
        self.tls.finish();
    }
}

fn meta(ctx: Ctx, src: IpAddr, sport: u16, dst: IpAddr, dport: u16, transport: Transport) -> Meta {
    Meta {
        ts: ctx.ts,
        src: SocketAddr::new(src, sport),
        dst: SocketAddr::new(dst, dport),
        transport,
        direction: ctx.direction,
        ifindex: ctx.ifindex,
    }
}

#[cfg(test)]
mod plaintext_tests {
    use super::*;

    const REGISTER: &[u8] = b"REGISTER sip:sipscope.test SIP/2.0\r\nCall-ID: a\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";
    const OK: &[u8] =
        b"SIP/2.0 200 OK\r\nCall-ID: a\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";

    fn call(ms: u64, data: &[u8], truncated: bool) -> Plaintext {
        Plaintext {
            ts: Timestamp::from_nanos(ms * 1_000_000),
            src: "10.0.0.2:40000".parse().unwrap(),
            dst: "10.0.0.1:5061".parse().unwrap(),
            direction: Direction::Ingress,
            data: data.to_vec(),
            truncated,
        }
    }

    #[test]
    fn a_message_split_over_two_calls_is_joined_and_two_in_one_call_are_split() {
        let mut d = Decoder::new(DecoderConfig::default());
        let mut out = Vec::new();
        d.decode_plaintext(&call(1, &REGISTER[..20], false), &mut out);
        assert!(out.is_empty(), "half a message waits for the rest");
        d.decode_plaintext(&call(2, &REGISTER[20..], false), &mut out);
        assert_eq!(out.len(), 1);
        assert_eq!(&out[0].payload[..], REGISTER);
        assert_eq!(out[0].meta.transport, Transport::Tls);
        assert_eq!(out[0].meta.dst.port(), 5061);
        d.decode_plaintext(&call(3, &[REGISTER, OK].concat(), false), &mut out);
        assert_eq!(out.len(), 3);
        assert_eq!(&out[2].payload[..], OK);
        assert_eq!(
            d.stats().tcp.segments,
            0,
            "the wire's TCP streams are apart"
        );
    }

    #[test]
    fn a_truncated_call_drops_its_partial_message_and_the_stream_resynchronises() {
        let mut d = Decoder::new(DecoderConfig::default());
        let mut out = Vec::new();
        d.decode_plaintext(&call(1, &REGISTER[..30], true), &mut out);
        d.decode_plaintext(&call(2, b"tail of the long message\r\n", false), &mut out);
        d.decode_plaintext(&call(3, OK, false), &mut out);
        assert_eq!(out.len(), 1, "{out:?}");
        assert_eq!(&out[0].payload[..], OK);
        assert!(d.stats().tls.dropped_bytes >= 30);
    }
}
