//! Export edge benchmark (`cargo bench -p sipscope --bench export`).
//!
//! What matters for an always-on agent is the cost the core pays per span
//! (the hand-over) and how many spans per second the edge can ship. Both
//! are reported as ratios against baselines measured in the same run:
//! - hand-over: `SpanSink::submit` vs cloning the record (the copy any
//!   hand-over needs);
//! - throughput: OTLP/gRPC to a local receiver vs JSON lines to a null
//!   writer (serialisation alone).

#[path = "../../tests/otlp/receiver.rs"]
#[allow(dead_code)]
mod receiver;
#[path = "../../tests/otlp/scenario.rs"]
#[allow(dead_code)]
mod scenario;

use std::hint::black_box;
use std::time::{Duration, Instant};

use sipscope::export::otel::{
    OtlpArgs, OtlpConfig, Protocol, QueueOptions, SpanExportService, WhenFull,
};
use sipscope::export::spans::SpanRecord;

const N: usize = 100_000;

fn spans() -> Vec<SpanRecord> {
    let attempt = scenario::PBX.successful_attempt();
    (0..N).map(|i| attempt[i % attempt.len()].clone()).collect()
}

fn opts() -> QueueOptions {
    QueueOptions {
        when_full: WhenFull::Drop,
        queue_capacity: N,
        max_batch: 512,
        linger: Duration::from_millis(5),
        export_timeout: Duration::from_secs(30),
        retry_for: Duration::ZERO,
    }
}

async fn ship(svc: SpanExportService, spans: Vec<SpanRecord>) -> (Duration, u64) {
    let sink = svc.sink();
    let t = Instant::now();
    for s in spans {
        sink.submit(s);
    }
    let stats = svc.shutdown().await;
    (t.elapsed(), stats.exported)
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let input = spans();

        // Hand-over cost on the core's side.
        let t = Instant::now();
        // Same work minus the channel: clone each record and move it into a
        // preallocated buffer.
        let mut cloned: Vec<SpanRecord> = Vec::with_capacity(N);
        for s in input.iter() {
            cloned.push(s.clone());
        }
        let clone_time = t.elapsed();
        black_box(&cloned);
        let svc = SpanExportService::json_lines(Box::new(std::io::sink()), opts(), false);
        let sink = svc.sink();
        let t = Instant::now();
        for s in input.iter() {
            sink.submit(s.clone());
        }
        let submit_time = t.elapsed();
        let stats = svc.shutdown().await;
        assert_eq!(stats.exported + stats.dropped, N as u64);
        println!(
            "hand-over: submit+clone {:.0} ns/span, clone alone {:.0} ns/span, ratio {:.2}",
            submit_time.as_nanos() as f64 / N as f64,
            clone_time.as_nanos() as f64 / N as f64,
            submit_time.as_secs_f64() / clone_time.as_secs_f64()
        );

        // Throughput of the edge.
        let json = SpanExportService::json_lines(Box::new(std::io::sink()), opts(), false);
        let (json_time, json_n) = ship(json, input.clone()).await;
        let rx = receiver::Receiver::grpc().await;
        let args = OtlpArgs {
            endpoint: Some(rx.endpoint()),
            protocol: Some(Protocol::Grpc),
            queue_capacity: N,
            ..OtlpArgs::default()
        };
        let cfg = OtlpConfig::resolve(&args, &|_| None).unwrap().unwrap();
        let grpc = SpanExportService::otlp_with(&cfg, opts()).unwrap();
        let (grpc_time, grpc_n) = ship(grpc, input).await;
        assert_eq!((json_n, grpc_n), (N as u64, N as u64));
        let rate = |d: Duration| N as f64 / d.as_secs_f64();
        println!(
            "throughput: OTLP/gRPC {:.0} spans/s, JSON lines {:.0} spans/s, ratio {:.2}",
            rate(grpc_time),
            rate(json_time),
            grpc_time.as_secs_f64() / json_time.as_secs_f64()
        );
    });
}
