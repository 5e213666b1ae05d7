//! Signal routing (OpenTelemetry "Exporter Selection"):
//! OTEL_TRACES_EXPORTER / OTEL_METRICS_EXPORTER, and an endpoint that takes
//! traces only (Jaeger v2: gRPC UNIMPLEMENTED, HTTP 404 on /v1/metrics).

use std::sync::{Mutex, OnceLock};

use super::*;

/// The agent's log lines, kept for counting (installed once per test
/// binary; other tests' lines are told apart by the endpoint they name).
struct Captured(Mutex<Vec<String>>);

impl log::Log for Captured {
    fn enabled(&self, m: &log::Metadata<'_>) -> bool {
        m.level() <= log::Level::Warn
    }
    fn log(&self, r: &log::Record<'_>) {
        if self.enabled(r.metadata()) {
            self.0.lock().unwrap().push(r.args().to_string());
        }
    }
    fn flush(&self) {}
}

fn captured() -> &'static Captured {
    static LOG: OnceLock<&'static Captured> = OnceLock::new();
    LOG.get_or_init(|| {
        let c: &'static Captured = Box::leak(Box::new(Captured(Mutex::new(Vec::new()))));
        log::set_logger(c).expect("no other logger in this test binary");
        log::set_max_level(log::LevelFilter::Warn);
        c
    })
}

fn with_env(
    endpoint: &str,
    protocol: Protocol,
    vars: &'static [(&'static str, &'static str)],
) -> Result<Option<OtlpConfig>, sipscope::export::otel::ConfigError> {
    let args = OtlpArgs {
        endpoint: Some(endpoint.to_owned()),
        protocol: Some(protocol),
        queue_capacity: 1024,
        timeout_ms: Some(5_000),
        ..OtlpArgs::default()
    };
    OtlpConfig::resolve(&args, &move |name| {
        vars.iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.to_string())
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_traces_only_endpoint_gets_traces_and_one_no_metrics_line() {
    let log = captured();
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let rx = match protocol {
            Protocol::Grpc => Receiver::grpc_traces_only().await,
            Protocol::HttpProtobuf => Receiver::http_traces_only().await,
        };
        // Export metrics every 50 ms, so many intervals pass.
        let cfg = with_env(
            &rx.endpoint(),
            protocol,
            &[("OTEL_METRIC_EXPORT_INTERVAL", "50")],
        )
        .unwrap()
        .unwrap();
        let telemetry = Telemetry::start_with(Some(cfg.clone()), &OtlpArgs::default(), None)
            .expect("telemetry");
        let metrics = telemetry.metrics();
        metrics.record_registration("registered");
        let sink = telemetry.span_sink().expect("traces go over OTLP");
        let produced = PBX.successful_attempt();
        for s in &produced {
            assert!(sink.submit(s.clone()));
        }
        let spans = rx.store.wait_for_spans(produced.len(), WAIT).await;
        assert_eq!(spans.len(), produced.len(), "{protocol:?}: traces arrive");
        // At least three intervals refused or skipped.
        let deadline = std::time::Instant::now() + WAIT;
        while metrics.export_stats().not_accepted < 3 {
            assert!(
                std::time::Instant::now() < deadline,
                "{protocol:?}: {:?}",
                metrics.export_stats()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let stats = metrics.export_stats();
        assert_eq!((stats.exported, stats.failed), (0, 0), "{protocol:?}");
        telemetry.shutdown().await;
        let lines: Vec<String> = log
            .0
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.contains(&cfg.metrics_endpoint))
            .cloned()
            .collect();
        assert_eq!(lines.len(), 1, "{protocol:?}: {lines:#?}");
        assert!(lines[0].contains("accepts no metrics"), "{}", lines[0]);
        assert!(rx.store.metrics.lock().unwrap().is_empty());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_traces_exporter_none_sends_no_traces_but_metrics() {
    let rx = Receiver::grpc().await;
    let cfg = with_env(
        &rx.endpoint(),
        Protocol::Grpc,
        &[("OTEL_TRACES_EXPORTER", "none")],
    )
    .unwrap()
    .unwrap();
    let telemetry =
        Telemetry::start_with(Some(cfg), &OtlpArgs::default(), None).expect("telemetry");
    assert!(telemetry.span_sink().is_none(), "no span queue at all");
    let metrics = telemetry.metrics();
    metrics.record_registration("registered");
    let m = metrics.clone();
    tokio::task::spawn_blocking(move || m.force_flush_blocking())
        .await
        .unwrap()
        .expect("flush");
    assert_eq!(telemetry.shutdown().await, None);
    assert!(!rx.store.metrics.lock().unwrap().is_empty());
    assert!(rx.store.traces.lock().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otel_metrics_exporter_none_sends_no_metrics_but_traces() {
    let rx = Receiver::http().await;
    let cfg = with_env(
        &rx.endpoint(),
        Protocol::HttpProtobuf,
        &[("OTEL_METRICS_EXPORTER", "none")],
    )
    .unwrap()
    .unwrap();
    let telemetry =
        Telemetry::start_with(Some(cfg), &OtlpArgs::default(), None).expect("telemetry");
    assert!(!telemetry.metrics().is_enabled());
    let sink = telemetry.span_sink().expect("traces on");
    let produced = PBX.successful_attempt();
    for s in &produced {
        assert!(sink.submit(s.clone()));
    }
    let stats = telemetry.shutdown().await.expect("span stats");
    assert_eq!(stats.exported, produced.len() as u64);
    assert!(rx.store.metrics.lock().unwrap().is_empty());
}

#[test]
fn an_unknown_exporter_name_is_refused_with_the_accepted_values() {
    for (name, vars) in [
        (
            "OTEL_TRACES_EXPORTER",
            &[("OTEL_TRACES_EXPORTER", "zipkin")] as &'static [_],
        ),
        (
            "OTEL_METRICS_EXPORTER",
            &[("OTEL_METRICS_EXPORTER", "prometheus")],
        ),
    ] {
        let e = with_env("http://127.0.0.1:4317", Protocol::Grpc, vars).unwrap_err();
        let msg = e.to_string();
        assert!(msg.starts_with(name), "{msg}");
        assert!(msg.contains("use otlp or none"), "{msg}");
    }
    // Case and blanks as people write them are fine.
    let cfg = with_env(
        "http://127.0.0.1:4317",
        Protocol::Grpc,
        &[
            ("OTEL_TRACES_EXPORTER", " OTLP "),
            ("OTEL_METRICS_EXPORTER", "None"),
        ],
    )
    .unwrap()
    .unwrap();
    assert!(cfg.export_traces && !cfg.export_metrics);
}
