//! `run --metrics-listen`: binds the `/metrics` endpoint before anything
//! is attached, and publishes the edge's own counters (the kernel's, the
//! core queue's) beside the session's.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use sipscope::capture::live::KernelCounters;
use sipscope::export::otel::{
    ExportStats, MetricExportCounters, MetricExportStats, SpanExportCounters, Telemetry,
};
use sipscope::export::prometheus::server::MetricsServer;
use sipscope::export::prometheus::{CounterGroup, Health, LiveGroup, PrometheusMetrics};
use sipscope_common::CounterSlot;

pub struct MetricsEndpoint {
    pub metrics: PrometheusMetrics,
    pub health: Arc<Health>,
    exports: Arc<Mutex<Exports>>,
}

/// The OTLP exports of the run: the one it started with and each one a
/// reload started. `/metrics` counts them together, so its export
/// counters only grow, as a Prometheus counter must.
#[derive(Default)]
struct Exports {
    spans: Vec<SpanExportCounters>,
    metric_batches: Vec<MetricExportCounters>,
}

/// Binds `addr` and serves; the export counters are read at each scrape.
pub fn start(addr: SocketAddr, telemetry: &Telemetry) -> anyhow::Result<MetricsEndpoint> {
    let server = MetricsServer::bind(addr)?;
    let metrics = PrometheusMetrics::new();
    let exports = Arc::new(Mutex::new(Exports::default()));
    metrics.add_live(summed(
        &exports,
        "export_spans",
        "Spans handed to the OTLP exporter: exported, dropped, failed_batches, export_errors, redacted_attributes",
        |e| e.spans.iter().map(SpanExportCounters::stats).collect::<Vec<ExportStats>>(),
    ));
    metrics.add_live(summed(
        &exports,
        "export_metric_batches",
        "OTLP metric exports: exported, failed, not_accepted (the endpoint takes no metrics, e.g. Jaeger; export stopped)",
        |e| {
            e.metric_batches
                .iter()
                .map(MetricExportCounters::stats)
                .collect::<Vec<MetricExportStats>>()
        },
    ));
    let health = Arc::new(Health::default());
    let local = server.local_addr();
    server.spawn(metrics.clone(), health.clone())?;
    log::info!("serving /metrics and /healthz on http://{local}");
    let endpoint = MetricsEndpoint {
        metrics,
        health,
        exports,
    };
    endpoint.count_exports_of(telemetry);
    Ok(endpoint)
}

/// A live group: the sum of `stats` over the run's exports, read at each
/// scrape. With no export of its kind it has no values, and so shows
/// nothing (empty groups are not encoded).
fn summed<S>(
    exports: &Arc<Mutex<Exports>>,
    name: &'static str,
    help: &'static str,
    stats: fn(&Exports) -> Vec<S>,
) -> LiveGroup
where
    S: Default + std::ops::AddAssign + serde::Serialize + 'static,
{
    let exports = exports.clone();
    Box::new(move || {
        let each = exports.lock().map(|e| stats(&e)).unwrap_or_default();
        let mut sum = S::default();
        let any = !each.is_empty();
        for s in each {
            sum += s;
        }
        let mut group = CounterGroup::from_serialize(name, help, "result", &sum);
        if !any {
            group.values.clear();
        }
        group
    })
}

impl MetricsEndpoint {
    /// Counts `telemetry`'s exports from now on too (at start, and for the
    /// export a reload starts; the replaced one's counts stay in).
    pub fn count_exports_of(&self, telemetry: &Telemetry) {
        let Ok(mut e) = self.exports.lock() else {
            return;
        };
        if let Some(sink) = telemetry.span_sink() {
            e.spans.push(sink.counters());
        }
        let m = telemetry.metrics();
        if m.is_enabled() {
            e.metric_batches.push(m.export_counters());
        }
    }

    /// The kernel's counter arrays and the edge's losses, as of now.
    pub fn publish_capture<C: CounterSlot, const N: usize, D: CounterSlot, const M: usize>(
        &self,
        capture: &KernelCounters<C, N>,
        drops: Option<&KernelCounters<D, M>>,
        malformed_events: u64,
        core_queue_full: u64,
    ) {
        self.metrics.publish(kernel_group(
            "kernel_capture",
            "The capture programs' per-CPU counters summed: packets_seen, sip_captured, fragments_forwarded, truncated, ringbuf_full (lost), unparsed",
            capture,
        ));
        if let Some(d) = drops {
            self.metrics.publish(kernel_group(
                "kernel_drops",
                "The kernel drop tracer's counters (kfree_skb): seen, filtered, reported, lost (drop_ringbuf_full)",
                d,
            ));
        }
        self.metrics.publish(CounterGroup {
            name: "agent_losses",
            help: "Lost between kernel and core: core_queue_full (frames the core could not take), malformed_events (unreadable ring records)",
            label: "counter",
            values: vec![
                ("core_queue_full".into(), core_queue_full),
                ("malformed_events".into(), malformed_events),
            ],
            gauge: false,
        });
    }
}

fn kernel_group<C: CounterSlot, const N: usize>(
    name: &'static str,
    help: &'static str,
    c: &KernelCounters<C, N>,
) -> CounterGroup {
    CounterGroup {
        name,
        help,
        label: "counter",
        values: C::ALL
            .iter()
            .map(|&s| (s.name().to_owned(), c.get(s)))
            .collect(),
        gauge: false,
    }
}
