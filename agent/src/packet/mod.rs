//! Packet stage: link/IP/transport decoding (etherparse), IPv4/IPv6
//! fragment reassembly and SIP-over-TCP framing. Turns captured frames
//! into [`Datagram`]s, each the bytes of one SIP message candidate with its
//! addresses, whatever the capture source.

mod decode;
pub mod frag;
pub mod tcp;

use std::net::SocketAddr;

use bytes::Bytes;

use crate::capture::{Direction, Timestamp};

pub use decode::{Decoder, DecoderConfig, PacketStats};

/// The transport a SIP message travelled over.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Transport {
    Udp,
    Tcp,
}

impl Transport {
    pub fn as_str(self) -> &'static str {
        match self {
            Transport::Udp => "udp",
            Transport::Tcp => "tcp",
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

/// One unit of transport payload for the SIP parser: a whole UDP datagram
/// (after IP reassembly), or exactly one message framed out of a TCP
/// stream (timestamp of the segment that completed it).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub meta: Meta,
    pub payload: Bytes,
}
