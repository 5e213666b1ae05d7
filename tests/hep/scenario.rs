//! The capture every HEP test exports: a REGISTER refused with 403 (a
//! finding), then a call with SDP, RTP both ways, an RTCP receiver report
//! on the RTP port + 1 (RFC 3550 §11) and a BYE; over IPv4 or IPv6, SIP
//! over UDP or TCP. Over TCP the INVITE is split across two segments and
//! the 180 and 200 share one, so framing is part of what is checked.

use std::fs::File;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use etherparse::PacketBuilder;
use pcap_file::DataLink;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

/// The transport SIP travels over in the scenario.
pub type Sip = sipscope::packet::Transport;

/// 2023-11-14 22:13:20 UTC, microseconds only (pcap and HEP precision).
pub const T0_US: u64 = 1_700_000_000_000_000;
pub const CALL_ID: &str = "hep-call-1@phone";
pub const REG_CALL_ID: &str = "hep-reg-1@phone";

pub struct Hosts {
    pub phone: IpAddr,
    pub pbx: IpAddr,
}

impl Hosts {
    pub fn of(family: Family) -> Self {
        match family {
            Family::V4 => Self {
                phone: "192.0.2.10".parse().unwrap(),
                pbx: "192.0.2.20".parse().unwrap(),
            },
            Family::V6 => Self {
                phone: "2001:db8::10".parse().unwrap(),
                pbx: "2001:db8::20".parse().unwrap(),
            },
        }
    }

    fn host(ip: IpAddr) -> String {
        match ip {
            IpAddr::V4(v) => v.to_string(),
            IpAddr::V6(v) => format!("[{v}]"),
        }
    }
}

struct Frame {
    us: u64,
    data: Vec<u8>,
}

struct Builder {
    family: Family,
    frames: Vec<Frame>,
    /// Next sequence number per direction (phone→pbx, pbx→phone).
    seq: [u32; 2],
}

impl Builder {
    fn l3(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
    ) -> etherparse::PacketBuilderStep<etherparse::IpHeaders> {
        let eth = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
        match (self.family, src.ip(), dst.ip()) {
            (Family::V4, IpAddr::V4(s), IpAddr::V4(d)) => eth.ipv4(s.octets(), d.octets(), 64),
            (Family::V6, IpAddr::V6(s), IpAddr::V6(d)) => eth.ipv6(s.octets(), d.octets(), 64),
            _ => unreachable!("addresses of the scenario's family"),
        }
    }

    fn udp(&mut self, ms: u64, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let b = self.l3(src, dst).udp(src.port(), dst.port());
        let mut data = Vec::new();
        b.write(&mut data, payload).unwrap();
        self.frames.push(Frame {
            us: T0_US + ms * 1000,
            data,
        });
    }

    fn tcp(
        &mut self,
        ms: u64,
        src: SocketAddr,
        dst: SocketAddr,
        dir: usize,
        syn: bool,
        payload: &[u8],
    ) {
        let mut b = self
            .l3(src, dst)
            .tcp(src.port(), dst.port(), self.seq[dir], 65535);
        if syn {
            b = b.syn();
        } else {
            b = b.ack(self.seq[1 - dir]);
        }
        let mut data = Vec::new();
        b.write(&mut data, payload).unwrap();
        self.seq[dir] = self.seq[dir].wrapping_add(payload.len() as u32 + u32::from(syn));
        self.frames.push(Frame {
            us: T0_US + ms * 1000,
            data,
        });
    }
}

fn message(
    start: &str,
    sip: Sip,
    hosts: &Hosts,
    call_id: &str,
    cseq: &str,
    extra: &str,
    body: &str,
) -> String {
    let via = match sip {
        Sip::Udp => "UDP",
        Sip::Tcp => "TCP",
        Sip::Tls => "TLS",
    };
    format!(
        "{start}\r\nVia: SIP/2.0/{via} {}:5062;branch=z9hG4bK-{cseq_n}\r\n\
         From: <sip:100@pbx.example>;tag=f1\r\nTo: <sip:{to}@pbx.example>{extra}\r\n\
         Call-ID: {call_id}\r\nCSeq: {cseq}\r\nContact: <sip:100@{}:5062>\r\n\
         User-Agent: hep-test\r\nContent-Length: {}\r\n\r\n{body}",
        Hosts::host(hosts.phone),
        Hosts::host(hosts.phone),
        body.len(),
        cseq_n = cseq.replace(' ', "-"),
        to = if call_id == REG_CALL_ID { "100" } else { "200" },
    )
}

fn sdp(ip: IpAddr, port: u16) -> String {
    let (kind, addr) = match ip {
        IpAddr::V4(v) => ("IP4", v.to_string()),
        IpAddr::V6(v) => ("IP6", v.to_string()),
    };
    format!(
        "v=0\r\no=- 1 1 IN {kind} {addr}\r\ns=-\r\nc=IN {kind} {addr}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n"
    )
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 0];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xff; 160]);
    p
}

/// RFC 3550 §6.4.2: an RR from `reporter` about `ssrc`, 1 lost.
fn receiver_report(reporter: u32, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&reporter.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[2, 0, 0, 1]);
    p.extend_from_slice(&60u32.to_be_bytes());
    p.extend_from_slice(&40u32.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p.extend_from_slice(&0u32.to_be_bytes());
    p
}

/// A message: start line, Call-ID, CSeq, To tag parameter, body.
type Msg<'a> = (&'a str, &'a str, &'a str, &'a str, &'a str);

/// Writes the scenario to `path` (pcap, microsecond timestamps).
pub fn write(path: &Path, family: Family, sip: Sip) {
    let hosts = Hosts::of(family);
    let phone = SocketAddr::new(hosts.phone, 5062);
    let pbx = SocketAddr::new(hosts.pbx, 5060);
    let mut b = Builder {
        family,
        frames: Vec::new(),
        seq: [1000, 9000],
    };
    // (ms, direction 0 phone→pbx / 1 pbx→phone, [(start line, Call-ID,
    // CSeq, To tag, body)]): one TCP segment or one datagram each.
    let (reg, call) = (REG_CALL_ID, CALL_ID);
    let offer = sdp(hosts.phone, 40000);
    let answer = sdp(hosts.pbx, 50000);
    #[rustfmt::skip]
    let signalling: Vec<(u64, usize, Vec<Msg>)> = vec![
        (0, 0, vec![("REGISTER sip:pbx.example SIP/2.0", reg, "1 REGISTER", "", "")]),
        (5, 1, vec![("SIP/2.0 403 Forbidden", reg, "1 REGISTER", ";tag=t9", "")]),
        (1000, 0, vec![("INVITE sip:200@pbx.example SIP/2.0", call, "1 INVITE", "", &offer)]),
        (1050, 1, vec![
            ("SIP/2.0 180 Ringing", call, "1 INVITE", ";tag=t1", ""),
            ("SIP/2.0 200 OK", call, "1 INVITE", ";tag=t1", &answer),
        ]),
        (1100, 0, vec![("ACK sip:200@pbx.example SIP/2.0", call, "1 ACK", ";tag=t1", "")]),
        (2300, 0, vec![("BYE sip:200@pbx.example SIP/2.0", call, "2 BYE", ";tag=t1", "")]),
        (2310, 1, vec![("SIP/2.0 200 OK", call, "2 BYE", ";tag=t1", "")]),
    ];
    if sip == Sip::Tcp {
        b.tcp(0, phone, pbx, 0, true, &[]);
        b.tcp(0, pbx, phone, 1, true, &[]);
    }
    for (ms, dir, msgs) in &signalling {
        let (s, d) = if *dir == 0 {
            (phone, pbx)
        } else {
            (pbx, phone)
        };
        let msgs: Vec<Vec<u8>> = msgs
            .iter()
            .map(|(start, id, cseq, tag, body)| {
                message(start, sip, &hosts, id, cseq, tag, body).into_bytes()
            })
            .collect();
        match sip {
            Sip::Udp => {
                for (i, m) in msgs.iter().enumerate() {
                    b.udp(ms + i as u64, s, d, m);
                }
            }
            // Split: the INVITE completes in the second segment.
            Sip::Tcp if msgs[0].starts_with(b"INVITE") => {
                let (a, rest) = msgs[0].split_at(300);
                b.tcp(*ms, s, d, *dir, false, a);
                b.tcp(ms + 3, s, d, *dir, false, rest);
            }
            Sip::Tcp | Sip::Tls => b.tcp(*ms, s, d, *dir, false, &msgs.concat()),
        }
    }
    // 50 packets of RTP each way, 20 ms apart, and one RTCP RR each way.
    let phone_rtp = SocketAddr::new(hosts.phone, 40000);
    let pbx_rtp = SocketAddr::new(hosts.pbx, 50000);
    for i in 0..50u16 {
        let ms = 1200 + u64::from(i) * 20;
        b.udp(ms, phone_rtp, pbx_rtp, &rtp(i, 0x1111));
        b.udp(ms + 1, pbx_rtp, phone_rtp, &rtp(i, 0x2222));
    }
    let phone_rtcp = SocketAddr::new(hosts.phone, 40001);
    let pbx_rtcp = SocketAddr::new(hosts.pbx, 50001);
    b.udp(2000, pbx_rtcp, phone_rtcp, &receiver_report(0x2222, 0x1111));
    b.udp(2010, phone_rtcp, pbx_rtcp, &receiver_report(0x1111, 0x2222));
    b.frames.sort_by_key(|f| f.us);
    let file = File::create(path).unwrap();
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: pcap_file::TsResolution::MicroSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).unwrap();
    for f in &b.frames {
        w.write_packet(&PcapPacket::new(
            Duration::from_micros(f.us),
            f.data.len() as u32,
            &f.data,
        ))
        .unwrap();
    }
}
