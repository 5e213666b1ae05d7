//! Packet stage: link/IP/transport decoding (etherparse), IPv4/IPv6
//! fragment reassembly and SIP-over-TCP framing. Turns captured frames
//! into [`Datagram`]s, each the bytes of one SIP message candidate with its
//! addresses, whatever the capture source.

mod captured;
mod decode;
pub(crate) mod frag;
pub(crate) mod ipv6;
pub(crate) mod tcp;

use std::net::SocketAddr;

use bytes::Bytes;

use crate::time::Timestamp;

pub use captured::{Direction, DropReason, DroppedPacket, LinkType, Packet, Plaintext};
pub use decode::{Decoder, DecoderConfig, PacketStats};

/// The transport a SIP message travelled over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
    /// TLS over TCP (RFC 3261 §26.2): the plaintext as the PBX's TLS
    /// library read or wrote it ([`Plaintext`]).
    Tls,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
            Transport::Tls => "tls",
        }
    }

    /// OpenTelemetry's `network.transport` (OSI layer 4: `tcp`, `udp`);
    /// TLS rides on TCP.
    pub fn network_transport(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp | Transport::Tls => "tcp",
        }
    }
}

/// Where and when a unit of SIP bytes was seen: the metadata every event
/// downstream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
pub struct Meta {
    pub ts: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub transport: Transport,
    pub direction: Direction,
    pub ifindex: u32,
}

/// An ICMP (RFC 792 type 3) or ICMPv6 (RFC 4443 type 1) destination
/// unreachable whose quoted datagram is UDP to or from a SIP port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IcmpUnreachable {
    pub ts: Timestamp,
    /// Who sent the ICMP message (the host or router that refused).
    pub from: std::net::IpAddr,
    pub v6: bool,
    pub code: u8,
    /// The quoted datagram's addresses: what was sent and refused.
    pub quoted_src: SocketAddr,
    pub quoted_dst: SocketAddr,
}

impl IcmpUnreachable {
    /// `type 3 code 3 (port unreachable)` and the like.
    pub fn describe(&self) -> String {
        let (ty, name) = if self.v6 {
            (
                1,
                match self.code {
                    0 => "no route",
                    1 => "administratively prohibited",
                    3 => "address unreachable",
                    4 => "port unreachable",
                    5 => "source address failed policy",
                    6 => "reject route",
                    _ => "unreachable",
                },
            )
        } else {
            (
                3,
                match self.code {
                    0 => "net unreachable",
                    1 => "host unreachable",
                    2 => "protocol unreachable",
                    3 => "port unreachable",
                    9 | 10 | 13 => "administratively prohibited",
                    _ => "unreachable",
                },
            )
        };
        let family = if self.v6 { "ICMPv6" } else { "ICMP" };
        format!("{family} type {ty} code {} ({name})", self.code)
    }
}

/// One unit of transport payload for the SIP parser: a whole UDP datagram
/// (after IP reassembly), or exactly one message framed out of a TCP
/// stream (timestamp of the segment that completed it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub meta: Meta,
    pub payload: Bytes,
}
