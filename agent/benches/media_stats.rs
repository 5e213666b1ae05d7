//! Cost of RTP accounting per packet, as ratios against a baseline measured
//! in the same run (parsing the RTP header only), so the figures compare
//! across machines. Run: `cargo bench -p sipscope --bench media_stats`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use sipscope::analysis::media::{FlowTable, RtpStreamStats, parse_rtp};
use sipscope::time::Timestamp;

const PACKETS: usize = 50_000;
/// Only the 12-byte header is stored (the payload is never read), so the
/// input stays in cache and the ratios measure computation, not memory.
const WIRE_LEN: usize = 172;
const FLOWS: usize = 500;

fn packets() -> Vec<(Timestamp, SocketAddr, SocketAddr, Vec<u8>)> {
    let dst: SocketAddr = "10.0.0.1:10000".parse().unwrap();
    (0..PACKETS)
        .map(|i| {
            let flow = i % FLOWS;
            let n = (i / FLOWS) as u32;
            let mut p = vec![0x80, 8];
            p.extend_from_slice(&(n as u16).to_be_bytes());
            p.extend_from_slice(&(n * 160).to_be_bytes());
            p.extend_from_slice(&(flow as u32).to_be_bytes());
            let src = SocketAddr::new(
                std::net::Ipv4Addr::from(0x0a01_0000 + flow as u32).into(),
                20000,
            );
            let ts =
                Timestamp(1_000_000_000 + u64::from(n) * 20_000_000 + (i % 7) as u64 * 100_000);
            (ts, src, dst, p)
        })
        .collect()
}

fn time<F: FnMut()>(mut f: F) -> f64 {
    // Best of 20 to damp noise from other processes on a shared machine.
    (0..20)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_nanos() as f64 / PACKETS as f64
        })
        .fold(f64::INFINITY, f64::min)
}

fn main() {
    let input = packets();
    let baseline = time(|| {
        for (_, _, _, p) in &input {
            black_box(parse_rtp(black_box(p)).ok());
        }
    });
    let single = time(|| {
        let mut stats = RtpStreamStats::new();
        for (ts, _, _, p) in &input {
            if let Ok(mut h) = parse_rtp(p) {
                // All packets into one accumulator: the update's cost alone.
                h.ssrc = 0;
                black_box(stats.update(*ts, &h, WIRE_LEN, 8000));
            }
        }
        black_box(stats.jitter_q8());
    });
    let table = time(|| {
        let mut t = FlowTable::new(FLOWS * 2);
        for (ts, src, dst, p) in &input {
            black_box(t.observe(*ts, *src, *dst, p).ok());
            black_box(WIRE_LEN);
        }
        black_box(t.len());
    });
    println!("RTP accounting, {PACKETS} packets over {FLOWS} flows (best of 20):");
    println!("  parse_rtp (baseline)       {baseline:7.1} ns/pkt  1.00x");
    println!(
        "  parse + RtpStreamStats     {single:7.1} ns/pkt  {:.2}x",
        single / baseline
    );
    println!(
        "  FlowTable::observe         {table:7.1} ns/pkt  {:.2}x",
        table / baseline
    );
}
