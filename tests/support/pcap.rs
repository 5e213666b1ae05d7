//! Reading pcap files (ours and dumpcap's) and extracting SIP datagrams,
//! reassembling IP fragments, for byte-for-byte comparisons.

use std::{
    net::{IpAddr, SocketAddr},
    path::Path,
};

use std::collections::HashMap;

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use pcap_file::pcap::PcapReader;

/// One pcap record.
#[derive(Clone, Debug)]
pub struct Frame {
    pub ts_ns: u128,
    pub orig_len: u32,
    pub data: Vec<u8>,
}

pub fn read_frames(path: &Path) -> Vec<Frame> {
    read(path, false)
}

/// Like [`read_frames`] for a file another process is still writing: stops
/// at a missing header or a half-written last record instead of failing.
pub fn read_frames_so_far(path: &Path) -> Vec<Frame> {
    read(path, true)
}

fn read(path: &Path, partial: bool) -> Vec<Frame> {
    let file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(_) if partial => return Vec::new(),
        Err(e) => panic!("open {}: {e}", path.display()),
    };
    let mut reader = match PcapReader::new(file) {
        Ok(r) => r,
        Err(_) if partial => return Vec::new(),
        Err(e) => panic!("pcap {}: {e}", path.display()),
    };
    let mut frames = Vec::new();
    while let Some(pkt) = reader.next_packet() {
        let pkt = match pkt {
            Ok(p) => p,
            Err(_) if partial => break,
            Err(e) => panic!("pcap record in {}: {e}", path.display()),
        };
        frames.push(Frame {
            ts_ns: pkt.timestamp.as_nanos(),
            orig_len: pkt.orig_len,
            data: pkt.data.into_owned(),
        });
    }
    frames
}

/// A transport payload between two endpoints (a whole UDP datagram after
/// reassembly, or one TCP segment).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub tcp: bool,
    pub payload: Vec<u8>,
}

impl Datagram {
    pub fn first_line(&self) -> String {
        let end = self
            .payload
            .iter()
            .position(|&b| b == b'\r')
            .unwrap_or(self.payload.len());
        String::from_utf8_lossy(&self.payload[..end]).into_owned()
    }
}

fn ip_pair(net: &NetSlice<'_>) -> Option<(IpAddr, IpAddr)> {
    match net {
        NetSlice::Ipv4(v4) => Some((
            v4.header().source_addr().into(),
            v4.header().destination_addr().into(),
        )),
        NetSlice::Ipv6(v6) => Some((
            v6.header().source_addr().into(),
            v6.header().destination_addr().into(),
        )),
        _ => None,
    }
}

/// Fragmentation fields of an IP packet: (identification, byte offset, more).
///
/// IPv6 is read from the raw fragment header (RFC 8200 section 4.5):
/// etherparse 0.19 decodes its offset and M flag from the wrong bits, so its
/// `IpDefragPool` cannot reassemble IPv6.
fn fragment_of(net: &NetSlice<'_>) -> Option<(u32, usize, bool)> {
    match net {
        NetSlice::Ipv4(v4) => {
            let h = v4.header();
            let off = usize::from(h.fragments_offset().value()) * 8;
            (h.more_fragments() || off != 0)
                .then(|| (u32::from(h.identification()), off, h.more_fragments()))
        }
        NetSlice::Ipv6(v6) => {
            let exts = v6.extensions();
            ipv6_fragment_header(exts.first_header()?.0, exts.slice())
        }
        _ => None,
    }
}

/// The Fragment header among the extension headers `d` (the first of
/// type `next`), read with checked indexing rather than etherparse's extension
/// iterator, which reads past a chain its lax parser cut short.
fn ipv6_fragment_header(mut next: u8, mut d: &[u8]) -> Option<(u32, usize, bool)> {
    loop {
        let len = match next {
            0 | 43 | 60 => (usize::from(*d.get(1)?) + 1) * 8,
            51 => (usize::from(*d.get(1)?) + 2) * 4,
            44 => {
                let b = d.get(..8)?;
                let field = u16::from_be_bytes([b[2], b[3]]);
                let off = usize::from(field & 0xFFF8);
                let more = field & 1 == 1;
                let id = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
                return (more || off != 0).then_some((id, off, more));
            }
            _ => return None,
        };
        next = *d.first()?;
        d = d.get(len..)?;
    }
}

/// A datagram in reassembly: source, destination, identification.
type DatagramKey = (IpAddr, IpAddr, u32);

/// One fragment: byte offset, more-fragments flag, bytes.
type Piece = (usize, bool, Vec<u8>);

/// Reassembles IP fragments (test-only: no bounds, no overlap handling).
#[derive(Default)]
struct Reassembly {
    pending: HashMap<DatagramKey, Vec<Piece>>,
}

impl Reassembly {
    /// Adds a fragment; returns the whole IP payload once complete.
    fn add(
        &mut self,
        key: (IpAddr, IpAddr, u32),
        off: usize,
        more: bool,
        data: &[u8],
    ) -> Option<Vec<u8>> {
        let parts = self.pending.entry(key).or_default();
        parts.push((off, more, data.to_vec()));
        parts.sort_by_key(|p| p.0);
        let mut next = 0;
        for (o, m, d) in parts.iter() {
            if *o != next {
                return None;
            }
            next += d.len();
            if !m {
                let whole = parts.iter().flat_map(|p| p.2.iter().copied()).collect();
                self.pending.remove(&key);
                return Some(whole);
            }
        }
        None
    }
}

/// UDP datagrams (reassembled) and non-empty TCP segments with a port in
/// `ports`, in capture order (a fragmented datagram at its last fragment).
pub fn datagrams(frames: &[Frame], ports: &[u16]) -> Vec<Datagram> {
    let mut pool = Reassembly::default();
    let mut out = Vec::new();
    for f in frames {
        let Ok(sliced) = SlicedPacket::from_ethernet(&f.data) else {
            continue;
        };
        let Some(net) = sliced.net.as_ref() else {
            continue;
        };
        let Some((src_ip, dst_ip)) = ip_pair(net) else {
            continue;
        };
        let dg = if let Some((id, off, more)) = fragment_of(net) {
            let Some(ip) = net.ip_payload_ref() else {
                continue;
            };
            if ip.ip_number != etherparse::IpNumber::UDP {
                continue;
            }
            let Some(p) = pool.add((src_ip, dst_ip, id), off, more, ip.payload) else {
                continue;
            };
            if p.len() < 8 {
                continue;
            }
            Datagram {
                src: SocketAddr::new(src_ip, u16::from_be_bytes([p[0], p[1]])),
                dst: SocketAddr::new(dst_ip, u16::from_be_bytes([p[2], p[3]])),
                tcp: false,
                payload: p[8..].to_vec(),
            }
        } else {
            match &sliced.transport {
                Some(TransportSlice::Udp(u)) => Datagram {
                    src: SocketAddr::new(src_ip, u.source_port()),
                    dst: SocketAddr::new(dst_ip, u.destination_port()),
                    tcp: false,
                    payload: u.payload().to_vec(),
                },
                Some(TransportSlice::Tcp(t)) if !t.payload().is_empty() => Datagram {
                    src: SocketAddr::new(src_ip, t.source_port()),
                    dst: SocketAddr::new(dst_ip, t.destination_port()),
                    tcp: true,
                    payload: t.payload().to_vec(),
                },
                _ => continue,
            }
        };
        if ports.contains(&dg.src.port()) || ports.contains(&dg.dst.port()) {
            out.push(dg);
        }
    }
    out
}
