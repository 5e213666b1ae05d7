//! A capture as a PBX's `tcpdump -w` holds it: mostly RTP. `calls`
//! answered G.711 calls (INVITE with SDP, 200 with SDP, ACK), each with
//! 20 ms packets both ways for `secs` seconds, started 10 ms apart and
//! interleaved in time as on the wire.

use std::{fs::File, io::BufWriter, path::Path, time::Duration};

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

/// What was written.
pub struct MediaCapture {
    pub sip: u64,
    pub rtp: u64,
}

const PBX: [u8; 4] = [10, 0, 0, 5];
const PTIME: Duration = Duration::from_millis(20);
const PAYLOAD: usize = 160;

struct Call {
    phone: [u8; 4],
    phone_port: u16,
    pbx_port: u16,
    start: Duration,
}

pub fn generate(path: &Path, calls: u32, secs: u32) -> MediaCapture {
    let file = BufWriter::with_capacity(1 << 20, File::create(path).expect("create capture"));
    let header = PcapHeader {
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).expect("pcap header");
    let mut frame = Vec::with_capacity(2048);
    let mut write = |ts: Duration, from: ([u8; 4], u16), to: ([u8; 4], u16), payload: &[u8]| {
        frame.clear();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(from.0, to.0, 64)
            .udp(from.1, to.1)
            .write(&mut frame, payload)
            .expect("build frame");
        let len = frame.len() as u32;
        w.write_packet(&PcapPacket::new(ts, len, &frame))
            .expect("write packet");
    };
    let t0 = Duration::from_secs(1_700_000_000);
    let table: Vec<Call> = (0..calls)
        .map(|c| Call {
            phone: [10, 1, (c / 250) as u8, (c % 250 + 1) as u8],
            phone_port: 10_000 + 2 * (c % 5000) as u16,
            pbx_port: 20_000 + 2 * (c % 5000) as u16,
            start: t0 + Duration::from_millis(10) * c,
        })
        .collect();
    let mut written = MediaCapture { sip: 0, rtp: 0 };
    // Signalling of every call first (all within calls × 10 ms), then the
    // media tick by tick, each call's packets at its own phase.
    for (c, call) in table.iter().enumerate() {
        for (i, (from, to, msg)) in signalling(c, call).into_iter().enumerate() {
            write(
                call.start + Duration::from_micros(i as u64 * 500),
                from,
                to,
                msg.as_bytes(),
            );
            written.sip += 1;
        }
    }
    let mut packet = [0u8; 12 + PAYLOAD];
    packet[12..].fill(0xff);
    for tick in 0..secs * 50 {
        for (c, call) in table.iter().enumerate() {
            let at = call.start + Duration::from_millis(10) + PTIME * tick;
            let phone = (call.phone, call.phone_port);
            let pbx = (PBX, call.pbx_port);
            for (dir, (from, to)) in [(phone, pbx), (pbx, phone)].into_iter().enumerate() {
                let ssrc = (c as u32) << 1 | dir as u32;
                packet[..12].copy_from_slice(&rtp_header(tick, ssrc));
                write(
                    at + Duration::from_micros(dir as u64 * 500),
                    from,
                    to,
                    &packet,
                );
                written.rtp += 1;
            }
        }
    }
    written
}

/// RFC 3550 5.1: version 2, PT 0 (PCMU), 160 samples a packet.
fn rtp_header(tick: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[2..4].copy_from_slice(&(tick as u16).to_be_bytes());
    h[4..8].copy_from_slice(&(tick * PAYLOAD as u32).to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

type Endpoint = ([u8; 4], u16);

fn signalling(c: usize, call: &Call) -> [(Endpoint, Endpoint, String); 3] {
    let ip = |a: [u8; 4]| format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3]);
    let (phone, pbx) = (ip(call.phone), ip(PBX));
    let sdp = |addr: &str, port: u16| {
        format!(
            "v=0\r\no=- {c} 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=ptime:20\r\n"
        )
    };
    let common = |branch: &str, cseq: &str, to_tag: &str| {
        format!(
            "Via: SIP/2.0/UDP {phone}:5060;branch=z9hG4bK{c}{branch}\r\n\
             From: <sip:{c}@{pbx}>;tag=f{c}\r\nTo: <sip:3000@{pbx}>{to_tag}\r\n\
             Call-ID: media-{c}@{phone}\r\nCSeq: {cseq}\r\n"
        )
    };
    let offer = sdp(&phone, call.phone_port);
    let answer = sdp(&pbx, call.pbx_port);
    let invite = format!(
        "INVITE sip:3000@{pbx} SIP/2.0\r\n{}Contact: <sip:{c}@{phone}:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{offer}",
        common("a", "1 INVITE", ""),
        offer.len()
    );
    let ok = format!(
        "SIP/2.0 200 OK\r\n{}Contact: <sip:3000@{pbx}:5060>\r\n\
         Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{answer}",
        common("a", "1 INVITE", ";tag=t"),
        answer.len()
    );
    let ack = format!(
        "ACK sip:3000@{pbx}:5060 SIP/2.0\r\n{}Content-Length: 0\r\n\r\n",
        common("b", "1 ACK", ";tag=t")
    );
    let (p, x) = ((call.phone, 5060), (PBX, 5060));
    [(p, x, invite), (x, p, ok), (p, x, ack)]
}
