//! Minimal pcap reading and writing for the media tests, with pcap-file and
//! etherparse, so these tests do not wait for the pipeline's reader.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use etherparse::{NetSlice, PacketBuilder, SlicedPacket, TransportSlice};
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapReader, PcapWriter};
use sipscope::time::Timestamp;

/// One UDP datagram out of a capture.
pub struct UdpDatagram {
    pub ts: Timestamp,
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub payload: Vec<u8>,
}

/// Every UDP datagram of a pcap (Ethernet, Linux SLL or raw IP). Frames
/// that do not decode are counted in the second value, not hidden.
pub fn read_udp(path: &Path) -> (Vec<UdpDatagram>, usize) {
    let file = File::open(path).unwrap_or_else(|e| panic!("open {}: {e}", path.display()));
    let mut reader = PcapReader::new(file).expect("pcap header");
    let link = reader.header().datalink;
    let (mut out, mut undecoded) = (Vec::new(), 0);
    while let Some(packet) = reader.next_packet() {
        let packet = packet.expect("pcap record");
        let sliced = match link {
            DataLink::ETHERNET => SlicedPacket::from_ethernet(&packet.data),
            DataLink::LINUX_SLL => SlicedPacket::from_linux_sll(&packet.data),
            DataLink::RAW | DataLink::IPV4 | DataLink::IPV6 => SlicedPacket::from_ip(&packet.data),
            other => panic!("{}: unsupported link type {other:?}", path.display()),
        };
        let Ok(sliced) = sliced else {
            undecoded += 1;
            continue;
        };
        let (src_ip, dst_ip): (IpAddr, IpAddr) = match &sliced.net {
            Some(NetSlice::Ipv4(v4)) => (
                v4.header().source_addr().into(),
                v4.header().destination_addr().into(),
            ),
            Some(NetSlice::Ipv6(v6)) => (
                v6.header().source_addr().into(),
                v6.header().destination_addr().into(),
            ),
            _ => continue,
        };
        let Some(TransportSlice::Udp(udp)) = &sliced.transport else {
            continue;
        };
        out.push(UdpDatagram {
            ts: Timestamp(packet.timestamp.as_nanos() as u64),
            src: SocketAddr::new(src_ip, udp.source_port()),
            dst: SocketAddr::new(dst_ip, udp.destination_port()),
            payload: udp.payload().to_vec(),
        });
    }
    (out, undecoded)
}

/// Writes IPv4/UDP datagrams as Ethernet frames, in the order given.
pub fn write_udp(path: &Path, datagrams: &[UdpDatagram]) {
    let file = File::create(path).unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut writer = PcapWriter::with_header(file, header).expect("pcap writer");
    for d in datagrams {
        let (IpAddr::V4(s), IpAddr::V4(t)) = (d.src.ip(), d.dst.ip()) else {
            panic!("test writer only builds IPv4");
        };
        let builder = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(s.octets(), t.octets(), 64)
            .udp(d.src.port(), d.dst.port());
        let mut frame = Vec::with_capacity(builder.size(d.payload.len()));
        builder.write(&mut frame, &d.payload).expect("build frame");
        let ts = Duration::from_nanos(d.ts.as_nanos());
        writer
            .write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))
            .expect("write packet");
    }
}
