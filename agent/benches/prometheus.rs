//! Cost of the Prometheus view on the analysis core
//! (`cargo bench -p sipscope --bench prometheus`, or `cargo xtask bench
//! prometheus`): the same generated SIP traffic through a session with
//! and without `--metrics-listen`'s per-event updates, as a ratio measured
//! in the same run; then the size and encode time of one scrape, with and
//! without a flood of invented methods (the label sets are closed, so the
//! exposition must not grow).

use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use sipscope::export::otel::{OtlpArgs, Telemetry};
use sipscope::export::prometheus::PrometheusMetrics;
use sipscope::packet::{Direction, LinkType, Packet};
use sipscope::pipeline::PipelineConfig;
use sipscope::session::{Format, Input, Session, SessionConfig, Spans};
use sipscope::time::Timestamp;

const EXCHANGES: usize = 50_000;
const ROUNDS: usize = 3;

fn frame(ts: u64, from_phone: bool, sip: &str) -> Packet {
    let (src, dst) = if from_phone {
        (([10, 0, 0, 2], 5062), ([10, 0, 0, 1], 5060))
    } else {
        (([10, 0, 0, 1], 5060), ([10, 0, 0, 2], 5062))
    };
    let mut data = Vec::new();
    PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut data, sip.as_bytes())
        .unwrap();
    Packet {
        ts: Timestamp::from_nanos(ts),
        ifindex: 1,
        direction: if from_phone {
            Direction::Ingress
        } else {
            Direction::Egress
        },
        link: LinkType::Ethernet,
        orig_len: data.len() as u32,
        data,
    }
}

/// A request and its final response per exchange, each with its own
/// Call-ID; `invented` makes every method a new extension method.
fn traffic(invented: bool) -> Vec<Packet> {
    let mut out = Vec::with_capacity(EXCHANGES * 2);
    let mut ts = 1_764_072_000_000_000_000u64;
    for i in 0..EXCHANGES {
        let method = match (invented, i % 3) {
            (true, _) => format!("FLOOD{i}"),
            (false, 0) => "OPTIONS".to_owned(),
            (false, 1) => "REGISTER".to_owned(),
            (false, _) => "MESSAGE".to_owned(),
        };
        let h = format!(
            "Via: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-{i}\r\nFrom: <sip:a@pbx>;tag={i}\r\n\
             To: <sip:pbx>\r\nCall-ID: bench-{i}\r\nCSeq: 1 {method}\r\nContent-Length: 0\r\n\r\n"
        );
        ts += 1_000_000;
        out.push(frame(ts, true, &format!("{method} sip:pbx SIP/2.0\r\n{h}")));
        let status = if i % 5 == 0 {
            "404 Not Found"
        } else {
            "200 OK"
        };
        ts += 1_000_000;
        out.push(frame(ts, false, &format!("SIP/2.0 {status}\r\n{h}")));
    }
    out
}

fn run(packets: &[Packet], metrics: Option<&PrometheusMetrics>) -> Duration {
    let telemetry = Telemetry::start_with(None, &OtlpArgs::default(), None).unwrap();
    let config = SessionConfig {
        pipeline: PipelineConfig::default(),
        format: Format::Json,
        rtp_interval: None,
    };
    let session = Session::new(config, std::io::sink(), Spans::new(&telemetry));
    let mut session = match metrics {
        Some(m) => session.with_prometheus(m.clone()),
        None => session,
    };
    let t = Instant::now();
    for (i, packet) in packets.iter().enumerate() {
        session.feed(Input::Frame { packet, note: None }).unwrap();
        if i % 1000 == 999 {
            // The live core's tick (every 500 ms live; here far more often).
            session.feed(Input::Tick(packet.ts)).unwrap();
        }
    }
    session.finish(None).unwrap();
    t.elapsed()
}

fn main() {
    let packets = traffic(false);
    let (mut without, mut with) = (Duration::MAX, Duration::MAX);
    let metrics = PrometheusMetrics::new();
    for _ in 0..ROUNDS {
        without = without.min(run(&packets, None));
        with = with.min(run(&packets, Some(&metrics)));
    }
    let n = packets.len() as f64;
    println!(
        "session, {} messages: without /metrics {:.0} ns/message, with {:.0} ns/message: ratio {:.3}",
        packets.len(),
        without.as_nanos() as f64 / n,
        with.as_nanos() as f64 / n,
        with.as_secs_f64() / without.as_secs_f64()
    );
    let t = Instant::now();
    let normal = metrics.encode();
    let encode = t.elapsed();
    let flooded = PrometheusMetrics::new();
    run(&traffic(true), Some(&flooded));
    let flood = flooded.encode();
    println!(
        "one scrape: {} bytes, encoded in {:.0} µs; after {EXCHANGES} invented methods: {} bytes (ratio {:.2})",
        normal.len(),
        encode.as_secs_f64() * 1e6,
        flood.len(),
        flood.len() as f64 / normal.len() as f64
    );
}
