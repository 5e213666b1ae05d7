//! SIP-over-TCP framing cost on hostile streams (`cargo bench -p sipscope
//! --bench framing`, or `cargo xtask bench framing`).
//!
//! Framing must be linear in the bytes received whatever they are (issue
//! 12: a stream without a line feed once took 30 s for 20,000 segments).
//! Each stream is run through the whole pipeline at N and at 10 N bytes;
//! the ratio of the two times is printed (linear ≈ 10; quadratic ≈ 100).
//! Streams: no line feed at all (in MSS-sized segments and in one large
//! GRO segment), a header block that never ends, a large body trickling
//! in, and as the baseline the same bytes as the first with a CRLF per
//! segment. Nothing here asserts a time: the machines are noisy; the
//! ratios are for a reader.
//!
//! SIPSCOPE_BENCH_SEGMENTS sets N for the MSS-sized streams (default 2000
//! segments of 1460 bytes).

use std::hint::black_box;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use sipscope::pipeline::{Pipeline, PipelineConfig};
use sipscope::{
    packet::{Direction, LinkType, Packet},
    time::Timestamp,
};

/// One TCP connection to port 5060: a SYN (the only empty segment), then
/// `bytes` bytes of the endless `stream` in segments of `seg` bytes.
fn connection(bytes: usize, seg: usize, stream: &dyn Fn(usize) -> u8) -> Vec<Packet> {
    let packet = |i: usize, seq: u32, payload: &[u8]| {
        let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4([198, 51, 100, 7], [10, 0, 0, 5], 64)
            .tcp(40_000, 5060, seq, 65535);
        if payload.is_empty() {
            b = b.syn();
        }
        let mut data = Vec::with_capacity(payload.len() + 60);
        b.write(&mut data, payload).expect("build frame");
        Packet {
            ts: Timestamp(1_700_000_000_000_000_000 + i as u64 * 1_000_000),
            ifindex: 0,
            direction: Direction::Ingress,
            link: LinkType::Ethernet,
            orig_len: data.len() as u32,
            data,
        }
    };
    let seg = seg.clamp(1, bytes.max(1));
    // The SYN takes sequence number 1000; data starts at 1001.
    let mut packets = vec![packet(0, 1000, &[])];
    for (i, at) in (0..bytes).step_by(seg).enumerate() {
        let payload: Vec<u8> = (at..(at + seg).min(bytes)).map(stream).collect();
        packets.push(packet(i + 1, 1001 + at as u32, &payload));
    }
    packets
}

/// Best of three runs of the pipeline over `packets`; also the junk bytes
/// it counted (the proof it looked at them).
fn time(packets: &[Packet]) -> (Duration, u64) {
    let mut best = Duration::MAX;
    let mut junk = 0;
    for _ in 0..3 {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut events = Vec::new();
        let t = Instant::now();
        for pkt in packets {
            p.ingest_into(black_box(pkt), &mut events);
            events.clear();
        }
        p.finish();
        best = best.min(t.elapsed());
        junk = p.stats().packets.tcp.junk_bytes;
    }
    (best, junk)
}

/// A hostile stream: how it is cut, how many bytes at N (10 N is the
/// other run), and its bytes.
struct Case {
    name: &'static str,
    segment: usize,
    bytes: usize,
    stream: Box<dyn Fn(usize) -> u8>,
}

fn main() {
    let n: usize = std::env::var("SIPSCOPE_BENCH_SEGMENTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(2000);
    let letters = |i: usize| b'A' + (i % 26) as u8;
    let invite = |i: usize| {
        const HEAD: &[u8] = b"INVITE sip:x@y SIP/2.0\r\n";
        const FILLER: &[u8] = b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n";
        match HEAD.get(i) {
            Some(&c) => c,
            None => FILLER[(i - HEAD.len()) % FILLER.len()],
        }
    };
    let body = |i: usize| {
        const HEAD: &[u8] = b"MESSAGE sip:x@y SIP/2.0\r\nContent-Length: 240000\r\n\r\n";
        HEAD.get(i).copied().unwrap_or(b'b')
    };
    let cases = [
        Case {
            name: "no line feed, 1460-byte segments",
            segment: 1460,
            bytes: n * 1460,
            stream: Box::new(letters),
        },
        Case {
            name: "no line feed, in one segment (GRO)",
            segment: usize::MAX,
            bytes: 6_400,
            stream: Box::new(letters),
        },
        Case {
            name: "header block never ends, 100-byte segments",
            segment: 100,
            bytes: 20_000,
            stream: Box::new(invite),
        },
        Case {
            name: "240 KB body in 10-byte segments",
            segment: 10,
            bytes: 24_000,
            stream: Box::new(body),
        },
        Case {
            name: "baseline: a CRLF every 1460 bytes",
            segment: 1460,
            bytes: n * 1460,
            stream: Box::new(|i| match i % 1460 {
                1458 => b'\r',
                1459 => b'\n',
                _ => b'A' + (i % 26) as u8,
            }),
        },
    ];
    println!(
        "SIP over TCP framing through the whole pipeline (best of 3): time for N bytes and for 10 N"
    );
    for c in &cases {
        let small = connection(c.bytes, c.segment, c.stream.as_ref());
        let big = connection(10 * c.bytes, c.segment, c.stream.as_ref());
        let (t1, j1) = time(&small);
        let (t10, j10) = time(&big);
        println!(
            "{:<44} {:>9} B {:>9.3} ms | {:>9} B {:>9.3} ms | ratio {:>5.1} (linear ≈ 10) | junk bytes {j1} / {j10}",
            c.name,
            c.bytes,
            t1.as_secs_f64() * 1e3,
            10 * c.bytes,
            t10.as_secs_f64() * 1e3,
            t10.as_secs_f64() / t1.as_secs_f64()
        );
    }
}
