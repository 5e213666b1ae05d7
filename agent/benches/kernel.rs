//! Cost of each capture program variant per packet, measured in the kernel
//! with BPF_PROG_TEST_RUN (through aya's `TestRun`, which issues the bpf
//! syscall on the program fd) beside the do-nothing program of the same
//! type in the same run: XDP ingress, TC ingress and egress with the
//! shared RTP flow store, and the Linux 5.10 TC variants with the per-CPU
//! store. Absolute times on shared machines are noise; the difference to
//! the empty program is the figure to watch.
//!
//! The SIP frame also runs through the capture floor (`floor` in the eBPF
//! crate): an XDP and a TC program that only timestamp the frame, reserve the SIP
//! path's ring record and copy the frame into it. What any capture of a
//! message costs here; the SIP rows' cost above it is sipscope's own.
//!
//! Run as root: `cargo xtask bench kernel` (= `cargo bench -p sipscope --bench kernel`).

use std::time::Duration;

use aya::{
    maps::{MapData, PerCpuArray},
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use etherparse::PacketBuilder;
use sipscope::capture::live::{
    CaptureCounters, CompatMode, KernelCounters, KernelFeatures, KtimeClock, LoadedObject,
    RtpCounters, RtpMonitor, RtpSettings, Support, load_object_for,
};
use sipscope_common::{CaptureCounter, CounterSlot, DEFAULT_RING_SIZE, RtpCounter, names};

/// What every run of a frame must have done (its counter grew by one).
#[derive(Clone, Copy)]
enum Outcome {
    /// Not SIP, not RTP: nothing to count.
    Passed,
    Captured,
    RtpAccounted,
    /// The capture floor: one ring record per run, no counter.
    Recorded,
}

/// Packets per program per frame kind (`BENCH_PACKETS` overrides it, for
/// a run long enough to profile under `perf record`).
const TOTAL: u32 = 1_000_000;
/// Runs per BPF_PROG_TEST_RUN call; the ring buffer is drained between
/// calls so SIP frames take the real capture path, not the "ring full" one.
const BATCH: u32 = 2_000;
/// Interleaved rounds (empty, capture, empty, capture, ...); the median
/// round is reported, which damps other load on the machine.
const ROUNDS: u32 = 5;
const XDP_PASS: u32 = 2;
const TC_ACT_OK: u32 = 0;

const SIP: &str = "REGISTER sip:pbx.example.com SIP/2.0\r\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK776asdhds;rport\r\n\
Max-Forwards: 70\r\n\
From: <sip:1001@pbx.example.com>;tag=1928301774\r\n\
To: <sip:1001@pbx.example.com>\r\n\
Call-ID: a84b4c76e66710@192.0.2.10\r\n\
CSeq: 314159 REGISTER\r\n\
Contact: <sip:1001@192.0.2.10:5060>\r\n\
Expires: 3600\r\n\
User-Agent: bench\r\n\
Content-Length: 0\r\n\r\n";

fn udp_frame(dst_port: u16, payload: &[u8]) -> Vec<u8> {
    let mut frame = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4([192, 0, 2, 10], [192, 0, 2, 1], 64)
        .udp(40_000, dst_port)
        .write(&mut frame, payload)
        .expect("building a frame");
    frame
}

/// An RTP packet of `payload_type` (the same one every run: after the
/// first, each is accounted as a duplicate, which takes the full update
/// path).
fn rtp_payload(payload_type: u8) -> Vec<u8> {
    let mut p = vec![
        0x80,
        payload_type,
        0,
        1,
        0,
        0,
        0,
        160,
        0x12,
        0x34,
        0x56,
        0x78,
    ];
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// Port and payload type of the "SDP-negotiated clock" case: opus on a
/// port whose clock userspace set from SDP, as on a PBX with opus calls.
const SDP_PORT: u16 = 16_386;
const OPUS_PT: u8 = 111;

fn ns_per_packet(
    object: &mut LoadedObject,
    ring: &mut aya::maps::RingBuf<aya::maps::MapData>,
    prog: &str,
    frame: &[u8],
    packets: u32,
) -> (f64, u64) {
    let program = object.ebpf.program(prog).expect("program in object");
    let run = |repeat: u32| {
        let opts = TestRunOptions {
            data_in: Some(frame),
            repeat,
            ..Default::default()
        };
        if let Ok(xdp) = <&Xdp>::try_from(program) {
            let r = xdp.test_run(opts).expect("BPF_PROG_TEST_RUN");
            assert_eq!(r.return_value, XDP_PASS, "{prog} must always pass");
            r.duration
        } else {
            let tc: &SchedClassifier = program.try_into().expect("a TC program");
            let r = tc.test_run(opts).expect("BPF_PROG_TEST_RUN");
            assert_eq!(r.return_value, TC_ACT_OK, "{prog} must always pass");
            r.duration
        }
    };
    let mut total = Duration::ZERO;
    let (mut done, mut records) = (0, 0);
    while done < packets {
        let repeat = BATCH.min(packets - done);
        // The kernel reports the mean duration of one run.
        total += run(repeat) * repeat;
        done += repeat;
        while ring.next().is_some() {
            records += 1;
        }
    }
    (total.as_nanos() as f64 / f64::from(packets), records)
}

fn read_counters<C: CounterSlot, const N: usize>(
    map: &PerCpuArray<MapData, u64>,
) -> KernelCounters<C, N> {
    KernelCounters::read(map).expect("reading the kernel counters")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!(
            "the kernel benchmark needs root (BPF_PROG_TEST_RUN): run `cargo xtask bench kernel` as root"
        );
        std::process::exit(1);
    }
    let oldest = KernelFeatures {
        mode: CompatMode::Oldest,
        xdp_load_bytes: Support::Forced,
        atomics: Support::Forced,
    };
    // (variant, its baseline, object features): every variant is measured
    // on this kernel, whatever the agent would pick here.
    let variants = [
        (names::XDP_INGRESS, names::XDP_EMPTY, KernelFeatures::all()),
        (names::TC_INGRESS, names::TC_EMPTY, KernelFeatures::all()),
        (names::TC_EGRESS, names::TC_EMPTY, KernelFeatures::all()),
        (names::TC_INGRESS_510, names::TC_EMPTY, oldest.clone()),
        (names::TC_EGRESS_510, names::TC_EMPTY, oldest),
        (
            names::XDP_CAPTURE_FLOOR,
            names::XDP_EMPTY,
            KernelFeatures::all(),
        ),
        (
            names::TC_CAPTURE_FLOOR,
            names::TC_EMPTY,
            KernelFeatures::all(),
        ),
    ];
    let sip = udp_frame(5060, SIP.as_bytes());
    // Each case with the counter every one of its runs must bump: the
    // figure is only the success path's cost if, say, no SIP frame met a
    // full ring (that path skips the copy and is far cheaper).
    let cases = [
        (
            "non-VoIP UDP (DNS, 53)",
            udp_frame(53, &[0u8; 40]),
            Outcome::Passed,
        ),
        ("SIP REGISTER (UDP 5060, captured)", sip, Outcome::Captured),
        (
            "RTP (16384, G.711, stats in kernel)",
            udp_frame(16_384, &rtp_payload(0)),
            Outcome::RtpAccounted,
        ),
        (
            "RTP (opus, clock from SDP)",
            udp_frame(SDP_PORT, &rtp_payload(OPUS_PT)),
            Outcome::RtpAccounted,
        ),
    ];
    let total = std::env::var("BENCH_PACKETS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(TOTAL);
    let per_round = total / ROUNDS;
    // `BENCH_ONLY=text` keeps the variant/frame rows containing it (for
    // profiling one case under `perf record`).
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    println!(
        "kernel bench: each capture variant vs the empty program of its type, {total} packets \
         each, median of {ROUNDS} rounds"
    );
    println!(
        "{:<16} {:<36} {:>9} {:>9} {:>8} {:>7}",
        "variant", "frame", "empty ns", "ns", "+ns", "ratio"
    );
    for (variant, baseline, features) in variants {
        if !cases
            .iter()
            .any(|(label, ..)| format!("{variant} {label}").contains(&only))
        {
            continue;
        }
        let mut object =
            load_object_for(DEFAULT_RING_SIZE, 16_384, features).expect("loading the eBPF object");
        object.set_sip_ports(&[]).expect("SIP ports");
        object
            .configure_rtp(&RtpSettings::default())
            .expect("RTP settings");
        object.load_all_variants().expect("verifier");
        object.load_bench_programs().expect("empty programs");
        let mut ring = object.take_ring().expect("ring buffer");
        let counters = object.take_counters().expect("capture counters");
        let mut rtp = RtpMonitor::take(&mut object, KtimeClock::new(), Duration::from_secs(3600))
            .expect("RTP maps");
        // Other calls' clocks are in the map too: G.711 (static) must not
        // pay for them.
        for port in 20_000 - 64..20_000 {
            rtp.set_port_clock(port, OPUS_PT, 48_000)
                .expect("port clock");
        }
        rtp.set_port_clock(SDP_PORT, OPUS_PT, 48_000)
            .expect("port clock");
        let read = |rtp: &RtpMonitor| -> (CaptureCounters, RtpCounters) {
            let rtp = rtp.read_counters().expect("reading the RTP counters");
            (read_counters(&counters), rtp)
        };
        for (label, frame, outcome) in &cases {
            if !format!("{variant} {label}").contains(&only) {
                continue;
            }
            // The floor is the SIP path's alone.
            let floor = [names::XDP_CAPTURE_FLOOR, names::TC_CAPTURE_FLOOR].contains(&variant);
            if floor && !matches!(outcome, Outcome::Captured) {
                continue;
            }
            let outcome = if floor { &Outcome::Recorded } else { outcome };
            let before = read(&rtp);
            let (mut empty, mut capture, mut records) = (Vec::new(), Vec::new(), 0);
            for _ in 0..ROUNDS {
                empty.push(ns_per_packet(&mut object, &mut ring, baseline, frame, per_round).0);
                let (ns, n) = ns_per_packet(&mut object, &mut ring, variant, frame, per_round);
                capture.push(ns);
                records += n;
            }
            let after = read(&rtp);
            let grew = match outcome {
                Outcome::Passed => None,
                Outcome::Captured => Some(
                    after.0.get(CaptureCounter::SipCaptured)
                        - before.0.get(CaptureCounter::SipCaptured),
                ),
                Outcome::RtpAccounted => {
                    Some(after.1.get(RtpCounter::Packets) - before.1.get(RtpCounter::Packets))
                }
                Outcome::Recorded => Some(records),
            };
            if let Some(grew) = grew {
                assert_eq!(
                    grew,
                    u64::from(per_round * ROUNDS),
                    "{variant} {label}: not every run took the success path ({} ring full)",
                    after.0.get(CaptureCounter::RingbufFull)
                );
            }
            let (e, c) = (median(empty), median(capture));
            println!(
                "{variant:<16} {label:<36} {e:>9.1} {c:>9.1} {:>+8.1} {:>6.1}x",
                c - e,
                c / e.max(0.1)
            );
        }
    }
}
