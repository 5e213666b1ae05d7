//! A HEP3 decoder written for the tests from the HEP3 Network Protocol
//! Specification (rev. 37), independently of the agent's encoder: it
//! checks every chunk against the spec's table (vendor 0, known type,
//! length of its payload type, no repeats) while decoding.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

#[derive(Clone, PartialEq, Eq)]
pub struct Hep {
    pub family: u8,
    pub ip_proto: u8,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub secs: u32,
    pub micros: u32,
    pub proto_type: u8,
    pub capture_id: u32,
    pub auth_key: Option<Vec<u8>>,
    pub correlation_id: Option<Vec<u8>>,
    pub node_name: Option<Vec<u8>>,
    pub payload: Vec<u8>,
}

impl std::fmt::Debug for Hep {
    /// Payloads as text: SIP and JSON read better than byte lists.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "HEP type {} {} → {} ({}) at {}.{:06} id {} corr {:?}: {}",
            self.proto_type,
            self.src,
            self.dst,
            self.ip_proto,
            self.secs,
            self.micros,
            self.capture_id,
            self.correlation(),
            String::from_utf8_lossy(&self.payload)
        )
    }
}

impl Hep {
    pub fn time_ns(&self) -> u64 {
        u64::from(self.secs) * 1_000_000_000 + u64::from(self.micros) * 1_000
    }

    pub fn correlation(&self) -> Option<String> {
        self.correlation_id
            .as_ref()
            .map(|c| String::from_utf8(c.clone()).expect("utf-8 correlation id"))
    }
}

/// One packet at the start of `buf`: the packet and the octets it took
/// (HEP over TCP is a stream of packets, framed by the length field).
pub fn decode(buf: &[u8]) -> Result<(Hep, usize), String> {
    if buf.len() < 6 || &buf[..4] != b"HEP3" {
        return Err(format!("no HEP3 header: {:02x?}", &buf[..buf.len().min(6)]));
    }
    let total = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
    if total < 6 || total > buf.len() {
        return Err(format!("total length {total} of {} octets", buf.len()));
    }
    let mut seen = std::collections::HashSet::new();
    let (mut family, mut ip_proto, mut proto_type) = (None, None, None);
    let (mut src4, mut dst4, mut src6, mut dst6) = (None, None, None, None);
    let (mut sport, mut dport, mut secs, mut micros, mut capture_id) =
        (None, None, None, None, None);
    let (mut auth_key, mut correlation_id, mut node_name, mut payload) = (None, None, None, None);
    let mut at = 6;
    while at < total {
        if total - at < 6 {
            return Err(format!("{} stray octets at the end", total - at));
        }
        let vendor = u16::from_be_bytes([buf[at], buf[at + 1]]);
        let kind = u16::from_be_bytes([buf[at + 2], buf[at + 3]]);
        let len = usize::from(u16::from_be_bytes([buf[at + 4], buf[at + 5]]));
        if len < 6 || at + len > total {
            return Err(format!(
                "chunk {kind:#06x}: length {len} at {at} of {total}"
            ));
        }
        if vendor != 0 {
            return Err(format!("chunk {kind:#06x}: vendor {vendor:#06x}"));
        }
        if !seen.insert(kind) {
            return Err(format!("chunk {kind:#06x} twice"));
        }
        let body = &buf[at + 6..at + len];
        let fixed = |n: usize| -> Result<(), String> {
            if body.len() == n {
                Ok(())
            } else {
                Err(format!(
                    "chunk {kind:#06x}: {} octets, the spec says {n}",
                    body.len()
                ))
            }
        };
        let be = |b: &[u8]| b.iter().fold(0u32, |a, &x| (a << 8) | u32::from(x));
        match kind {
            // uint8
            0x0001 | 0x0002 | 0x000b => {
                fixed(1)?;
                let v = Some(body[0]);
                match kind {
                    0x0001 => family = v,
                    0x0002 => ip_proto = v,
                    _ => proto_type = v,
                }
            }
            // inet4-addr
            0x0003 | 0x0004 => {
                fixed(4)?;
                let a = Ipv4Addr::new(body[0], body[1], body[2], body[3]);
                if kind == 3 {
                    src4 = Some(a)
                } else {
                    dst4 = Some(a)
                }
            }
            // inet6-addr
            0x0005 | 0x0006 => {
                fixed(16)?;
                let a = Ipv6Addr::from(<[u8; 16]>::try_from(body).unwrap());
                if kind == 5 {
                    src6 = Some(a)
                } else {
                    dst6 = Some(a)
                }
            }
            // uint16
            0x0007 | 0x0008 => {
                fixed(2)?;
                let p = be(body) as u16;
                if kind == 7 {
                    sport = Some(p)
                } else {
                    dport = Some(p)
                }
            }
            // uint32
            0x0009 | 0x000a | 0x000c => {
                fixed(4)?;
                let v = Some(be(body));
                match kind {
                    0x0009 => secs = v,
                    0x000a => micros = v,
                    _ => capture_id = v,
                }
            }
            // octet-string
            0x000e => auth_key = Some(body.to_vec()),
            0x000f => payload = Some(body.to_vec()),
            0x0011 => correlation_id = Some(body.to_vec()),
            0x0013 => node_name = Some(body.to_vec()),
            other => return Err(format!("chunk {other:#06x} is not one sipscope sends")),
        }
        at += len;
    }
    let family = family.ok_or("no IP family chunk")?;
    let (src_ip, dst_ip): (IpAddr, IpAddr) = match family {
        2 => {
            if src6.is_some() || dst6.is_some() {
                return Err("IPv6 chunks in an IPv4 packet".into());
            }
            (
                src4.ok_or("no 0x0003")?.into(),
                dst4.ok_or("no 0x0004")?.into(),
            )
        }
        10 => {
            if src4.is_some() || dst4.is_some() {
                return Err("IPv4 chunks in an IPv6 packet".into());
            }
            (
                src6.ok_or("no 0x0005")?.into(),
                dst6.ok_or("no 0x0006")?.into(),
            )
        }
        f => return Err(format!("IP family {f}")),
    };
    let micros = micros.ok_or("no 0x000a")?;
    if micros >= 1_000_000 {
        return Err(format!("microseconds {micros}"));
    }
    Ok((
        Hep {
            family,
            ip_proto: ip_proto.ok_or("no 0x0002")?,
            src: SocketAddr::new(src_ip, sport.ok_or("no 0x0007")?),
            dst: SocketAddr::new(dst_ip, dport.ok_or("no 0x0008")?),
            secs: secs.ok_or("no 0x0009")?,
            micros,
            proto_type: proto_type.ok_or("no 0x000b")?,
            capture_id: capture_id.ok_or("no 0x000c")?,
            auth_key,
            correlation_id,
            node_name,
            payload: payload.ok_or("no 0x000f")?,
        },
        total,
    ))
}
