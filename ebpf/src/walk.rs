//! The one bounded header walk shared by XDP and TC: Ethernet, up to two
//! VLAN tags (802.1Q, 802.1ad QinQ), IPv4 with options, IPv6 with
//! hop-by-hop / routing / destination-options / fragment / AH extension
//! headers, then the UDP or TCP ports (or, for ICMP destination
//! unreachable errors, the ports of the datagram they quote).
//!
//! Every loop has a constant bound; a frame needing more (a third VLAN tag,
//! more than `MAX_IPV6_EXT` extension headers) is reported as `None` and
//! passed uninspected (counted as `Unparsed`).

use sipscope_common::{Direction, Endpoints, FLAG_VLAN, Family, Transport};

use crate::frame::Frame;

const ETH_HLEN: u32 = 14;
const ETH_P_IP: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

const IPPROTO_HOPOPTS: u8 = 0;
const IPPROTO_ICMP: u8 = 1;
const IPPROTO_ICMPV6: u8 = 58;
const ICMP_DEST_UNREACH: u8 = 3;
const ICMPV6_DEST_UNREACH: u8 = 1;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_ROUTING: u8 = 43;
const IPPROTO_FRAGMENT: u8 = 44;
const IPPROTO_AH: u8 = 51;
const IPPROTO_DSTOPTS: u8 = 60;

/// Most VLAN tags walked: QinQ (802.1ad outer + 802.1Q inner).
const MAX_VLAN_TAGS: usize = 2;
/// Most IPv6 extension headers walked before the transport header.
const MAX_IPV6_EXT: usize = 6;

/// IP fragmentation state of the frame (RFC 791 section 3.1, RFC 8200
/// section 4.5).
#[derive(Clone, Copy)]
pub struct Fragment {
    /// Identification (IPv4: 16 bits, IPv6: 32 bits).
    pub id: u32,
    /// Offset zero: this fragment carries the transport header.
    pub first: bool,
}

/// What the walk found out about a frame. The addresses stay in the
/// frame until a SIP or RTP packet needs them ([`Flow::endpoints`]): most
/// packets are neither, and copying 32 bytes of addresses out of every one
/// was most of the walk's cost.
pub struct Flow {
    pub family: Family,
    /// IP protocol number of the transport (after extension headers).
    pub protocol: u8,
    /// Offset of the IP header in the frame.
    pub l3_off: u32,
    /// Zero when the frame carries no UDP/TCP header (later fragments).
    pub src_port: u16,
    pub dst_port: u16,
    /// `Some` when the frame is an IP fragment.
    pub fragment: Option<Fragment>,
    /// `FLAG_*` bits learnt from the headers (VLAN).
    pub flags: u32,
    /// Offset of the transport header in the frame.
    pub l4_off: u32,
}

impl Flow {
    /// Source and destination address (IPv4 in the first 4 bytes), read
    /// from the frame the walk went over.
    #[inline(always)]
    pub fn addresses<F: Frame>(&self, frame: &F) -> Option<([u8; 16], [u8; 16])> {
        match self.family {
            Family::Ipv4 => {
                let a: [u8; 8] = frame.read(self.l3_off + 12)?;
                Some((
                    ipv4_slot([a[0], a[1], a[2], a[3]]),
                    ipv4_slot([a[4], a[5], a[6], a[7]]),
                ))
            }
            Family::Ipv6 => {
                let a: [u8; 32] = frame.read(self.l3_off + 8)?;
                let (mut src, mut dst) = ([0u8; 16], [0u8; 16]);
                src.copy_from_slice(&a[..16]);
                dst.copy_from_slice(&a[16..]);
                Some((src, dst))
            }
        }
    }

    /// Who sent to whom, as the capture and drop records carry it (`None`
    /// only if the frame no longer holds the addresses the walk passed).
    #[inline(always)]
    pub fn endpoints<F: Frame>(&self, frame: &F, direction: Direction) -> Option<Endpoints> {
        let (src_addr, dst_addr) = self.addresses(frame)?;
        Some(Endpoints {
            src_addr,
            dst_addr,
            src_port: self.src_port,
            dst_port: self.dst_port,
            direction: direction as u8,
            family: self.family as u8,
            transport: Transport::from_u8(self.protocol) as u8,
            _pad: 0,
        })
    }
}

/// An IPv4 address in a 16-byte address slot: its 4 bytes, then zeros.
/// Built as one 128-bit value because zeroing the tail of a byte array
/// compiled to a call of a byte-at-a-time `memset` loop, twice per SIP or
/// RTP packet (the kernel benchmark saw it).
#[inline(always)]
fn ipv4_slot(addr: [u8; 4]) -> [u8; 16] {
    u128::from(u32::from_le_bytes(addr)).to_le_bytes()
}

#[inline(always)]
fn be16(b: [u8; 2]) -> u16 {
    u16::from_be_bytes(b)
}

/// Why a frame was not walked to its transport header.
pub enum Skip {
    /// ARP, LLDP, ...: nothing to inspect.
    NotIp,
    /// IP, but truncated, malformed or beyond the walk's bounds (counted).
    Unparsed,
}

/// Walks the headers of `frame`.
#[inline(always)]
pub fn walk<F: Frame>(frame: &F) -> Result<Flow, Skip> {
    walk_ip(frame).unwrap_or(Err(Skip::Unparsed))
}

/// `None`: unparsed; `Some(Err(NotIp))`: not IP.
#[inline(always)]
fn walk_ip<F: Frame>(frame: &F) -> Option<Result<Flow, Skip>> {
    let eth: [u8; 2] = frame.read(12)?;
    let mut ethertype = be16(eth);
    let mut off = ETH_HLEN;
    let mut flags = 0;
    for _ in 0..MAX_VLAN_TAGS {
        if ethertype != ETH_P_8021Q && ethertype != ETH_P_8021AD {
            break;
        }
        // Tag: TCI (2 bytes) then the encapsulated ethertype.
        let tag: [u8; 4] = frame.read(off)?;
        ethertype = be16([tag[2], tag[3]]);
        off += 4;
        flags |= FLAG_VLAN;
    }
    let mut flow = match ethertype {
        ETH_P_IP => ipv4(frame, &mut off)?,
        ETH_P_IPV6 => ipv6(frame, &mut off)?,
        _ => return Some(Err(Skip::NotIp)),
    };
    flow.flags = flags;
    flow.l4_off = off;
    let carries_ports = match flow.fragment {
        Some(f) => f.first,
        None => true,
    };
    if carries_ports && (flow.protocol == IPPROTO_UDP || flow.protocol == IPPROTO_TCP) {
        // Both UDP and TCP start with source and destination port.
        let ports: [u8; 4] = frame.read(off)?;
        flow.src_port = be16([ports[0], ports[1]]);
        flow.dst_port = be16([ports[2], ports[3]]);
    } else if flow.fragment.is_none()
        && let Some((src, dst)) = icmp_quoted_ports(frame, &flow, off)
    {
        flow.src_port = src;
        flow.dst_port = dst;
    }
    Some(Ok(flow))
}

/// Ports of the datagram quoted by an ICMP "destination unreachable"
/// (RFC 792; RFC 4443 section 3.1): such an error about a SIP message is
/// forwarded like SIP, so the agent sees a peer refusing or not reachable.
/// The quoted header is walked without options/extensions beyond IHL.
#[inline(always)]
fn icmp_quoted_ports<F: Frame>(frame: &F, flow: &Flow, off: u32) -> Option<(u16, u16)> {
    let inner = off + 8;
    let ports_at = match (flow.family, flow.protocol) {
        (Family::Ipv4, IPPROTO_ICMP) => {
            let icmp: [u8; 2] = frame.read(off)?;
            if icmp[0] != ICMP_DEST_UNREACH {
                return None;
            }
            let h: [u8; 10] = frame.read(inner)?;
            if h[0] >> 4 != 4 || h[0] & 0x0F < 5 || (h[9] != IPPROTO_UDP && h[9] != IPPROTO_TCP) {
                return None;
            }
            inner + u32::from(h[0] & 0x0F) * 4
        }
        (Family::Ipv6, IPPROTO_ICMPV6) => {
            let icmp: [u8; 2] = frame.read(off)?;
            if icmp[0] != ICMPV6_DEST_UNREACH {
                return None;
            }
            let h: [u8; 7] = frame.read(inner)?;
            if h[0] >> 4 != 6 || (h[6] != IPPROTO_UDP && h[6] != IPPROTO_TCP) {
                return None;
            }
            inner + 40
        }
        _ => return None,
    };
    let ports: [u8; 4] = frame.read(ports_at)?;
    Some((be16([ports[0], ports[1]]), be16([ports[2], ports[3]])))
}

/// IPv4 (RFC 791 section 3.1); `off` moves past the options.
#[inline(always)]
fn ipv4<F: Frame>(frame: &F, off: &mut u32) -> Option<Flow> {
    let l3_off = *off;
    let h: [u8; 20] = frame.read(*off)?;
    let ihl = u32::from(h[0] & 0x0F);
    if h[0] >> 4 != 4 || ihl < 5 {
        return None;
    }
    *off += ihl * 4;
    let frag_field = be16([h[6], h[7]]);
    let more_fragments = frag_field & 0x2000 != 0;
    let frag_offset = frag_field & 0x1FFF;
    let fragment = if more_fragments || frag_offset != 0 {
        Some(Fragment {
            id: u32::from(be16([h[4], h[5]])),
            first: frag_offset == 0,
        })
    } else {
        None
    };
    Some(Flow {
        family: Family::Ipv4,
        protocol: h[9],
        l3_off,
        src_port: 0,
        dst_port: 0,
        fragment,
        flags: 0,
        l4_off: 0,
    })
}

/// IPv6 (RFC 8200 sections 3 and 4); `off` moves past the extension headers.
#[inline(always)]
fn ipv6<F: Frame>(frame: &F, off: &mut u32) -> Option<Flow> {
    let l3_off = *off;
    let h: [u8; 40] = frame.read(*off)?;
    if h[0] >> 4 != 6 {
        return None;
    }
    *off += 40;
    let mut next = h[6];
    let mut fragment = None;
    let mut done = false;
    for _ in 0..MAX_IPV6_EXT {
        match next {
            IPPROTO_HOPOPTS | IPPROTO_ROUTING | IPPROTO_DSTOPTS => {
                // Next Header, Hdr Ext Len in 8-octet units not counting the first.
                let e: [u8; 2] = frame.read(*off)?;
                next = e[0];
                *off += (u32::from(e[1]) + 1) * 8;
            }
            IPPROTO_AH => {
                // RFC 4302 section 2.2: Payload Len in 4-octet units, minus 2.
                let e: [u8; 2] = frame.read(*off)?;
                next = e[0];
                *off += (u32::from(e[1]) + 2) * 4;
            }
            IPPROTO_FRAGMENT => {
                // Next Header, reserved, offset (13 bits) + M flag, Identification.
                let e: [u8; 8] = frame.read(*off)?;
                next = e[0];
                let offset = be16([e[2], e[3]]) >> 3;
                fragment = Some(Fragment {
                    id: u32::from_be_bytes([e[4], e[5], e[6], e[7]]),
                    first: offset == 0,
                });
                *off += 8;
            }
            _ => {
                done = true;
                break;
            }
        }
    }
    if !done {
        return None;
    }
    Some(Flow {
        family: Family::Ipv6,
        protocol: next,
        l3_off,
        src_port: 0,
        dst_port: 0,
        fragment,
        flags: 0,
        l4_off: 0,
    })
}
