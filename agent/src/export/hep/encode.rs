//! HEP3 encoding, written from the *HEP3 Network Protocol Specification*
//! (rev. 37, 2025-06-25, `docs/HEP3_Network_Protocol_Specification_REV_37.pdf`
//! in github.com/sipcapture/HEP). No HEP crate was worth depending on: the
//! one on crates.io (`hep` 0.1) only parses, and the encoder is this file.
//!
//! The wire format (spec, "General protocol structure"):
//!
//! ```text
//! 0      4        6
//! +------+--------+-------+-------+-----+
//! | HEP3 | length | chunk | chunk | ... |     length: u16, the whole packet
//! +------+--------+-------+-------+-----+     including "HEP3" and itself
//!
//! chunk: +-----------+---------+--------+---------+
//!        | vendor id | type id | length | payload |   u16 each, network order;
//!        +-----------+---------+--------+---------+   length includes the 6
//! ```                                                  header octets
//!
//! Generic chunk types (vendor 0x0000) used here, from the spec's table:
//!
//! | type   | payload      | meaning                                      |
//! |--------|--------------|----------------------------------------------|
//! | 0x0001 | uint8        | IP protocol family                           |
//! | 0x0002 | uint8        | IP protocol ID                               |
//! | 0x0003 | inet4-addr   | IPv4 source address                          |
//! | 0x0004 | inet4-addr   | IPv4 destination address                     |
//! | 0x0005 | inet6-addr   | IPv6 source address                          |
//! | 0x0006 | inet6-addr   | IPv6 destination address                     |
//! | 0x0007 | uint16       | protocol source port                         |
//! | 0x0008 | uint16       | protocol destination port                    |
//! | 0x0009 | uint32       | timestamp, seconds since the epoch           |
//! | 0x000a | uint32       | timestamp microseconds offset                |
//! | 0x000b | uint8        | protocol type (SIP, RTCP, ...)               |
//! | 0x000c | uint32       | capture agent ID                             |
//! | 0x000e | octet-string | authenticate key                             |
//! | 0x000f | octet-string | captured packet payload                      |
//! | 0x0011 | octet-string | internal correlation id                      |
//! | 0x0013 | octet-string | capture agent ID as a name ("node1")         |
//!
//! The spec's worked example gives family 2 for IPv4 (`AF_INET`); IPv6 is
//! `AF_INET6` = 10, the value HEP receivers compare against. Protocol IDs
//! are IANA's (6 TCP, 17 UDP). The payload chunk comes last, as in the
//! example, so a collector reading the fixed chunks first never has to
//! skip it.

use std::net::{IpAddr, SocketAddr};

use crate::packet::Transport;
use crate::time::Timestamp;

/// `"HEP3"`, the protocol identifier (0x48455033).
pub(crate) const MAGIC: [u8; 4] = *b"HEP3";
/// A chunk's own header: vendor id, type id, length.
pub(crate) const CHUNK_HEADER_LEN: usize = 6;
/// The total length is a u16: no HEP3 packet is longer.
pub(crate) const MAX_PACKET: usize = u16::MAX as usize;

/// Generic chunk type ids (vendor 0x0000), spec "Generic chunk types".
pub(crate) mod chunk {
    pub(crate) const IP_FAMILY: u16 = 0x0001;
    pub(crate) const IP_PROTOCOL: u16 = 0x0002;
    pub(crate) const IPV4_SRC: u16 = 0x0003;
    pub(crate) const IPV4_DST: u16 = 0x0004;
    pub(crate) const IPV6_SRC: u16 = 0x0005;
    pub(crate) const IPV6_DST: u16 = 0x0006;
    pub(crate) const SRC_PORT: u16 = 0x0007;
    pub(crate) const DST_PORT: u16 = 0x0008;
    pub(crate) const TIME_SECONDS: u16 = 0x0009;
    pub(crate) const TIME_MICROS: u16 = 0x000a;
    pub(crate) const PROTOCOL_TYPE: u16 = 0x000b;
    pub(crate) const CAPTURE_ID: u16 = 0x000c;
    pub(crate) const AUTH_KEY: u16 = 0x000e;
    pub(crate) const PAYLOAD: u16 = 0x000f;
    pub(crate) const CORRELATION_ID: u16 = 0x0011;
    pub(crate) const NODE_NAME: u16 = 0x0013;
}

/// `AF_INET` and `AF_INET6` as chunk 0x0001 carries them.
pub(crate) const FAMILY_IPV4: u8 = 2;
pub(crate) const FAMILY_IPV6: u8 = 10;

/// What the payload is (chunk 0x000b).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum ProtocolType {
    /// 0x01: a SIP message as captured.
    Sip,
    /// 0x05: an RTCP report as JSON ("RTCP JSON" in the spec's table),
    /// stored by HOMER beside the call's messages (its QoS view).
    RtcpJson,
    /// 0x23: a media quality report as JSON; HOMER keeps these in its
    /// report table (`hep_proto_35`) and shows them in the call's QoS view.
    QosReport,
    /// 100: a log line correlated with a call. Not in the spec's table;
    /// it is the value HOMER's collectors store as logs (`hep_proto_100`)
    /// and show in the call's log view.
    Log,
}

impl ProtocolType {
    pub(crate) const fn code(self) -> u8 {
        match self {
            Self::Sip => 0x01,
            Self::RtcpJson => 0x05,
            Self::QosReport => 0x23,
            Self::Log => 100,
        }
    }
}

/// Who sends: constant for an agent.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Agent {
    /// Chunk 0x000c.
    pub capture_id: u32,
    /// Chunk 0x000e, when the collector wants one.
    pub auth_key: Option<String>,
    /// Chunk 0x0013, when set.
    pub node_name: Option<String>,
}

/// One captured unit and where it was seen.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Record<'a> {
    pub(crate) ts: Timestamp,
    pub(crate) src: SocketAddr,
    pub(crate) dst: SocketAddr,
    pub(crate) transport: Transport,
    pub(crate) protocol: ProtocolType,
    /// Chunk 0x0011: the Call-ID for everything about a call.
    pub(crate) correlation_id: Option<&'a [u8]>,
    pub(crate) payload: &'a [u8],
}

/// Why a record cannot be one HEP3 packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum EncodeError {
    #[error("HEP3 packet would be {0} octets; the length field holds at most 65535")]
    TooLong(usize),
}

/// Encodes `record` as one HEP3 packet into `out` (cleared first).
pub(crate) fn encode(
    agent: &Agent,
    record: &Record<'_>,
    out: &mut Vec<u8>,
) -> Result<(), EncodeError> {
    out.clear();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0, 0]); // total length, set at the end
    // Both addresses in the source's family: a mapped pair is written as
    // the family of the source, which is how it was captured.
    let (src_ip, dst_ip) = (canonical(record.src.ip()), canonical(record.dst.ip()));
    let family = match (src_ip, dst_ip) {
        (IpAddr::V4(_), IpAddr::V4(_)) => FAMILY_IPV4,
        _ => FAMILY_IPV6,
    };
    push_u8(out, chunk::IP_FAMILY, family);
    push_u8(
        out,
        chunk::IP_PROTOCOL,
        match record.transport {
            Transport::Udp => 17,
            // HEP has no TLS protocol id: the plaintext rode on TCP.
            Transport::Tcp | Transport::Tls => 6,
        },
    );
    match (src_ip, dst_ip) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            push(out, chunk::IPV4_SRC, &s.octets());
            push(out, chunk::IPV4_DST, &d.octets());
        }
        (s, d) => {
            push(out, chunk::IPV6_SRC, &v6(s).octets());
            push(out, chunk::IPV6_DST, &v6(d).octets());
        }
    }
    push_u16(out, chunk::SRC_PORT, record.src.port());
    push_u16(out, chunk::DST_PORT, record.dst.port());
    let ns = record.ts.as_nanos();
    // Seconds fit a u32 until 2106.
    push_u32(
        out,
        chunk::TIME_SECONDS,
        u32::try_from(ns / 1_000_000_000).unwrap_or(u32::MAX),
    );
    push_u32(
        out,
        chunk::TIME_MICROS,
        ((ns % 1_000_000_000) / 1_000) as u32,
    );
    push_u8(out, chunk::PROTOCOL_TYPE, record.protocol.code());
    push_u32(out, chunk::CAPTURE_ID, agent.capture_id);
    if let Some(key) = &agent.auth_key {
        push(out, chunk::AUTH_KEY, key.as_bytes());
    }
    if let Some(id) = record.correlation_id {
        push(out, chunk::CORRELATION_ID, id);
    }
    if let Some(name) = &agent.node_name {
        push(out, chunk::NODE_NAME, name.as_bytes());
    }
    let total = out.len() + CHUNK_HEADER_LEN + record.payload.len();
    if total > MAX_PACKET {
        out.clear();
        return Err(EncodeError::TooLong(total));
    }
    push(out, chunk::PAYLOAD, record.payload);
    let len = (out.len() as u16).to_be_bytes();
    out[4..6].copy_from_slice(&len);
    Ok(())
}

/// An IPv4-mapped IPv6 address is the IPv4 address it maps.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn v6(ip: IpAddr) -> std::net::Ipv6Addr {
    match ip {
        IpAddr::V4(v) => v.to_ipv6_mapped(),
        IpAddr::V6(v) => v,
    }
}

/// One generic chunk; a payload too long for its u16 length is cut off by
/// the caller's [`EncodeError::TooLong`] check before it gets here.
fn push(out: &mut Vec<u8>, type_id: u16, payload: &[u8]) {
    out.extend_from_slice(&0u16.to_be_bytes()); // vendor: generic
    out.extend_from_slice(&type_id.to_be_bytes());
    out.extend_from_slice(&((CHUNK_HEADER_LEN + payload.len()) as u16).to_be_bytes());
    out.extend_from_slice(payload);
}

fn push_u8(out: &mut Vec<u8>, type_id: u16, v: u8) {
    push(out, type_id, &[v]);
}

fn push_u16(out: &mut Vec<u8>, type_id: u16, v: u16) {
    push(out, type_id, &v.to_be_bytes());
}

fn push_u32(out: &mut Vec<u8>, type_id: u16, v: u32) {
    push(out, type_id, &v.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The spec's own example packet ("Example HEP3 packet"), octet for
    /// octet: 212.202.0.1:12010 → 82.116.0.211:5060 over UDP at
    /// 1313440459.120000, SIP, capture id 228, payload "INVITE sip:bob".
    #[test]
    fn the_specifications_example_packet() {
        let spec: &[u8] = &[
            0x48, 0x45, 0x50, 0x33, // HEP3
            0x00, 0x71, // total length 113
            0x00, 0x00, 0x00, 0x01, 0x00, 0x07, 0x02, // family 2 (IPv4)
            0x00, 0x00, 0x00, 0x02, 0x00, 0x07, 0x11, // protocol 17 (UDP)
            0x00, 0x00, 0x00, 0x03, 0x00, 0x0a, 0xd4, 0xca, 0x00, 0x01, // 212.202.0.1
            0x00, 0x00, 0x00, 0x04, 0x00, 0x0a, 0x52, 0x74, 0x00, 0xd3, // 82.116.0.211
            0x00, 0x00, 0x00, 0x07, 0x00, 0x08, 0x2e, 0xea, // 12010
            0x00, 0x00, 0x00, 0x08, 0x00, 0x08, 0x13, 0xc4, // 5060
            0x00, 0x00, 0x00, 0x09, 0x00, 0x0a, 0x4e, 0x49, 0x82, 0xcb, // 1313440459
            0x00, 0x00, 0x00, 0x0a, 0x00, 0x0a, 0x00, 0x01, 0xd4, 0xc0, // 120000 µs
            0x00, 0x00, 0x00, 0x0b, 0x00, 0x07, 0x01, // SIP
            0x00, 0x00, 0x00, 0x0c, 0x00, 0x0a, 0x00, 0x00, 0x00, 0xe4, // capture id 228
            0x00, 0x00, 0x00, 0x0f, 0x00, 0x14, // payload, 6 + 14
            b'I', b'N', b'V', b'I', b'T', b'E', b' ', b's', b'i', b'p', b':', b'b', b'o', b'b',
        ];
        let agent = Agent {
            capture_id: 228,
            ..Agent::default()
        };
        let record = Record {
            ts: Timestamp(1_313_440_459_120_000_000),
            src: "212.202.0.1:12010".parse().unwrap(),
            dst: "82.116.0.211:5060".parse().unwrap(),
            transport: Transport::Udp,
            protocol: ProtocolType::Sip,
            correlation_id: None,
            payload: b"INVITE sip:bob",
        };
        let mut out = Vec::new();
        encode(&agent, &record, &mut out).unwrap();
        assert_eq!(spec.len(), 113);
        assert_eq!(out, spec);
    }

    /// IPv6 over TCP, with the optional chunks: family 10, 16-octet
    /// addresses in 0x0005/0x0006, auth key, correlation id and node name
    /// before the payload.
    #[test]
    fn ipv6_tcp_with_key_correlation_and_node_name() {
        let agent = Agent {
            capture_id: 0x0102_0304,
            auth_key: Some("pw".into()),
            node_name: Some("pbx1".into()),
        };
        let record = Record {
            ts: Timestamp(1_700_000_000_000_001_999),
            src: "[2001:db8::1]:5060".parse().unwrap(),
            dst: "[2001:db8::2]:5062".parse().unwrap(),
            transport: Transport::Tcp,
            protocol: ProtocolType::Sip,
            correlation_id: Some(b"abc@h"),
            payload: b"X",
        };
        let mut out = Vec::new();
        encode(&agent, &record, &mut out).unwrap();
        let mut expected = b"HEP3".to_vec();
        expected.extend_from_slice(&[0, 0]);
        expected.extend_from_slice(&[0, 0, 0, 1, 0, 7, 10]);
        expected.extend_from_slice(&[0, 0, 0, 2, 0, 7, 6]);
        let mut a = vec![0, 0, 0, 5, 0, 22, 0x20, 0x01, 0x0d, 0xb8];
        a.extend_from_slice(&[0; 11]);
        a.push(1);
        expected.extend_from_slice(&a);
        let mut b = vec![0, 0, 0, 6, 0, 22, 0x20, 0x01, 0x0d, 0xb8];
        b.extend_from_slice(&[0; 11]);
        b.push(2);
        expected.extend_from_slice(&b);
        expected.extend_from_slice(&[0, 0, 0, 7, 0, 8, 0x13, 0xc4]);
        expected.extend_from_slice(&[0, 0, 0, 8, 0, 8, 0x13, 0xc6]);
        // 1700000000 = 0x6553F100; 1 µs (the nanoseconds below are cut).
        expected.extend_from_slice(&[0, 0, 0, 9, 0, 10, 0x65, 0x53, 0xf1, 0x00]);
        expected.extend_from_slice(&[0, 0, 0, 0x0a, 0, 10, 0, 0, 0, 1]);
        expected.extend_from_slice(&[0, 0, 0, 0x0b, 0, 7, 1]);
        expected.extend_from_slice(&[0, 0, 0, 0x0c, 0, 10, 1, 2, 3, 4]);
        expected.extend_from_slice(&[0, 0, 0, 0x0e, 0, 8, b'p', b'w']);
        expected.extend_from_slice(&[0, 0, 0, 0x11, 0, 11, b'a', b'b', b'c', b'@', b'h']);
        expected.extend_from_slice(&[0, 0, 0, 0x13, 0, 10, b'p', b'b', b'x', b'1']);
        expected.extend_from_slice(&[0, 0, 0, 0x0f, 0, 7, b'X']);
        let len = expected.len() as u16;
        expected[4..6].copy_from_slice(&len.to_be_bytes());
        assert_eq!(out, expected);
    }

    #[test]
    fn a_mapped_address_is_sent_as_ipv4_and_an_oversized_payload_is_refused() {
        let payload = vec![b'a'; 70_000];
        let mut record = Record {
            ts: Timestamp(0),
            src: "[::ffff:10.0.0.1]:5060".parse().unwrap(),
            dst: "10.0.0.2:5060".parse().unwrap(),
            transport: Transport::Udp,
            protocol: ProtocolType::Log,
            correlation_id: None,
            payload: b"x",
        };
        let mut out = Vec::new();
        encode(&Agent::default(), &record, &mut out).unwrap();
        assert_eq!(&out[6..13], &[0, 0, 0, 1, 0, 7, FAMILY_IPV4]);
        assert_eq!(&out[20..30], &[0, 0, 0, 3, 0, 10, 10, 0, 0, 1]);
        record.payload = &payload;
        assert!(matches!(
            encode(&Agent::default(), &record, &mut out),
            Err(EncodeError::TooLong(_))
        ));
        assert!(out.is_empty());
    }
}
