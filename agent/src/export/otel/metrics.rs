//! Metrics beside traces (DESIGN "Trace model"): registrations by outcome,
//! diagnoses by code, SIP transactions and their response times, capture
//! counters. [`Metrics`] is the facade the pipeline calls; it exports over
//! OTLP (MetricsService) when an endpoint is configured and is a cheap
//! no-op otherwise.
//!
//! Attribute values that come off the wire (the SIP method) are mapped to a
//! fixed set, so a flood of invented methods cannot grow the number of
//! time series (the SDK's per-metric cardinality limit is the backstop).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Histogram, MeterProvider as _};
use opentelemetry_sdk::metrics::SdkMeterProvider;
use opentelemetry_sdk::metrics::periodic_reader_with_async_runtime::PeriodicReader;
use opentelemetry_sdk::runtime;

use super::build::{self, OtlpError};
use super::config::OtlpConfig;
use super::queue::SpanSink;
use crate::export::spans::attr;

/// What the capture metric reports, cumulative since start (DESIGN:
/// "capture counters (seen, captured, lost)"): from the kernel's
/// `CaptureCounters` live, from the packet count of a file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CaptureTotals {
    /// SIP packets the kernel program saw.
    pub seen: u64,
    /// Copied to userspace.
    pub captured: u64,
    /// Lost on the way (ring buffer full, truncation, evictions).
    pub lost: u64,
}

const KNOWN_METHODS: &[&str] = &[
    "REGISTER",
    "INVITE",
    "ACK",
    "BYE",
    "CANCEL",
    "OPTIONS",
    "PRACK",
    "SUBSCRIBE",
    "NOTIFY",
    "PUBLISH",
    "INFO",
    "REFER",
    "MESSAGE",
    "UPDATE",
];

fn method_label(method: &str) -> &'static str {
    KNOWN_METHODS
        .iter()
        .find(|m| m.eq_ignore_ascii_case(method))
        .copied()
        .unwrap_or("other")
}

/// MOS buckets (ITU-T G.107 scale 1..4.5): 3.6 is the `media.quality`
/// threshold, 4.0/4.3 the usual "good"/"toll quality" lines.
pub(crate) const MOS_BOUNDS: &[f64] = &[1.5, 2.0, 2.5, 3.0, 3.3, 3.6, 3.8, 4.0, 4.2, 4.3, 4.4];

/// A codec name off the wire mapped to the E-model's fixed set, so SDP
/// cannot grow the number of time series.
fn codec_label(codec: &str) -> &'static str {
    let encoding = codec.split('/').next().unwrap_or_default();
    crate::analysis::media::codec::VoiceCodec::from_encoding_name(encoding).name()
}

/// Response-time buckets in seconds: SIP timer T1 is 500 ms, timer F/B
/// 32 s; anything past that is a timeout anyway.
const RESPONSE_TIME_BOUNDS: &[f64] = &[
    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 16.0, 32.0,
];

/// What became of the periodic metric exports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct MetricExportStats {
    /// Batches the endpoint accepted.
    pub exported: u64,
    /// Batches that failed (unreachable, refused, timed out).
    pub failed: u64,
    /// Batches not sent because the endpoint accepts no metrics (a
    /// traces-only backend such as Jaeger): the first refusal is logged
    /// once, then metric export stops.
    pub not_accepted: u64,
}

impl std::ops::AddAssign for MetricExportStats {
    fn add_assign(&mut self, o: Self) {
        self.exported += o.exported;
        self.failed += o.failed;
        self.not_accepted += o.not_accepted;
    }
}

#[derive(Debug, Default)]
struct ExportCounters {
    exported: AtomicU64,
    failed: AtomicU64,
    not_accepted: AtomicU64,
    /// The endpoint said it has no metrics service: stop sending.
    refused_for_good: std::sync::atomic::AtomicBool,
}

/// A metric export's counters apart from its provider: holding them does
/// not keep the export alive (`/metrics` sums every export of the run).
#[derive(Clone, Debug)]
pub struct MetricExportCounters(Arc<ExportCounters>);

impl MetricExportCounters {
    pub fn stats(&self) -> MetricExportStats {
        let c = &self.0;
        MetricExportStats {
            exported: c.exported.load(Ordering::Relaxed),
            failed: c.failed.load(Ordering::Relaxed),
            not_accepted: c.not_accepted.load(Ordering::Relaxed),
        }
    }
}

/// Does this export error say the endpoint has no metrics service at all
/// (gRPC UNIMPLEMENTED for MetricsService/Export, HTTP 404 on
/// /v1/metrics; Jaeger v2 answers either way), as opposed to a passing
/// failure? Matched on the exporter's message (opentelemetry-otlp 0.33
/// keeps the status in its text only).
fn endpoint_takes_no_metrics(error: &str) -> bool {
    error.contains("gRPC code: Unimplemented") || error.contains("status code: 404")
}

/// The OTLP metric exporter, counting its batches and giving up for good
/// on an endpoint that takes no metrics (instead of an error every
/// interval).
struct CountingExporter {
    inner: opentelemetry_otlp::MetricExporter,
    counters: Arc<ExportCounters>,
    endpoint: String,
}

impl opentelemetry_sdk::metrics::exporter::PushMetricExporter for CountingExporter {
    async fn export(
        &self,
        metrics: &opentelemetry_sdk::metrics::data::ResourceMetrics,
    ) -> opentelemetry_sdk::error::OTelSdkResult {
        let c = &self.counters;
        if c.refused_for_good.load(Ordering::Relaxed) {
            c.not_accepted.fetch_add(1, Ordering::Relaxed);
            return Ok(());
        }
        match self.inner.export(metrics).await {
            Ok(()) => {
                c.exported.fetch_add(1, Ordering::Relaxed);
                Ok(())
            }
            Err(e) if endpoint_takes_no_metrics(&e.to_string()) => {
                c.not_accepted.fetch_add(1, Ordering::Relaxed);
                if !c.refused_for_good.swap(true, Ordering::Relaxed) {
                    log::warn!(
                        "OTLP endpoint {} accepts no metrics ({e}); metric export stopped, traces go on. Set OTEL_METRICS_EXPORTER=none to skip it, or --metrics-listen for Prometheus",
                        self.endpoint
                    );
                }
                Ok(())
            }
            Err(e) => {
                c.failed.fetch_add(1, Ordering::Relaxed);
                Err(e)
            }
        }
    }

    fn force_flush(&self) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> opentelemetry_sdk::error::OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn temporality(&self) -> opentelemetry_sdk::metrics::Temporality {
        self.inner.temporality()
    }
}

struct Instruments {
    transactions: Counter<u64>,
    response_time: Histogram<f64>,
    registrations: Counter<u64>,
    diagnoses: Counter<u64>,
    rtp_packets: Counter<u64>,
    rtp_mos: Histogram<f64>,
    capture: Arc<[AtomicU64; 3]>,
}

/// The metrics facade. Cheap to clone; every method is a no-op when
/// metrics export is off.
#[derive(Clone, Default)]
pub struct Metrics {
    inner: Option<Arc<Instruments>>,
    provider: Option<SdkMeterProvider>,
    exports: Arc<ExportCounters>,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics")
            .field("enabled", &self.inner.is_some())
            .finish()
    }
}

impl Metrics {
    /// Metrics that go nowhere.
    pub fn noop() -> Self {
        Self::default()
    }

    /// Export over OTLP every `interval` (the spec default is 60 s). Call
    /// from inside the tokio runtime. `spans`, if given, also exports the
    /// span-export counters (exported/dropped), so span loss is visible in
    /// the metrics backend.
    pub fn otlp(
        cfg: &OtlpConfig,
        interval: Duration,
        spans: Option<SpanSink>,
    ) -> Result<Self, OtlpError> {
        let exports = Arc::new(ExportCounters::default());
        let exporter = CountingExporter {
            inner: build::metric_exporter(cfg)?,
            counters: exports.clone(),
            endpoint: cfg.metrics_endpoint.clone(),
        };
        let reader = PeriodicReader::builder(exporter, runtime::Tokio)
            .with_interval(interval)
            .with_timeout(cfg.timeout)
            .build();
        let provider = SdkMeterProvider::builder()
            .with_reader(reader)
            .with_resource(super::resource::resource(cfg))
            .build();
        let meter = provider.meter_with_scope(super::convert::scope());
        let capture: Arc<[AtomicU64; 3]> = Arc::new(Default::default());
        let c = capture.clone();
        // Observable instruments live as long as the provider; the handle
        // itself need not be kept.
        let _ = meter
            .u64_observable_counter("sipscope.capture.packets")
            .with_description("SIP packets by capture state (seen by the kernel, captured, lost)")
            .with_unit("{packet}")
            .with_callback(move |obs| {
                for (i, state) in ["seen", "captured", "lost"].into_iter().enumerate() {
                    obs.observe(
                        c[i].load(Ordering::Relaxed),
                        &[KeyValue::new("state", state)],
                    );
                }
            })
            .build();
        if let Some(sink) = spans {
            let _ = meter
                .u64_observable_counter("sipscope.export.spans")
                .with_description("Spans handed to the exporter, by result")
                .with_unit("{span}")
                .with_callback(move |obs| {
                    let s = sink.stats();
                    obs.observe(s.exported, &[KeyValue::new("result", "exported")]);
                    obs.observe(s.dropped, &[KeyValue::new("result", "dropped")]);
                })
                .build();
        }
        let inner = Instruments {
            transactions: meter
                .u64_counter("sipscope.sip.transactions")
                .with_description(
                    "Completed SIP transactions by method and final status (0 = no response)",
                )
                .with_unit("{transaction}")
                .build(),
            response_time: meter
                .f64_histogram("sipscope.sip.response_time")
                .with_description("Time from a request to its final response")
                .with_unit("s")
                .with_boundaries(RESPONSE_TIME_BOUNDS.to_vec())
                .build(),
            registrations: meter
                .u64_counter("sipscope.registrations")
                .with_description("Finished registration attempts by outcome")
                .with_unit("{attempt}")
                .build(),
            diagnoses: meter
                .u64_counter("sipscope.diagnoses")
                .with_description("Diagnoses raised, by catalogue code")
                .with_unit("{diagnosis}")
                .build(),
            rtp_packets: meter
                .u64_counter("sipscope.rtp.packets")
                .with_description(
                    "RTP packets of finished calls by state (received, lost), per stream direction",
                )
                .with_unit("{packet}")
                .build(),
            rtp_mos: meter
                .f64_histogram("sipscope.rtp.mos")
                .with_description("E-model MOS estimate (ITU-T G.107) per call stream direction")
                .with_unit("1")
                .with_boundaries(MOS_BOUNDS.to_vec())
                .build(),
            capture,
        };
        Ok(Self {
            inner: Some(Arc::new(inner)),
            provider: Some(provider),
            exports,
        })
    }

    pub fn is_enabled(&self) -> bool {
        self.inner.is_some()
    }

    /// What became of the periodic exports so far.
    pub fn export_stats(&self) -> MetricExportStats {
        self.export_counters().stats()
    }

    /// This export's counters, readable while and after it runs.
    pub fn export_counters(&self) -> MetricExportCounters {
        MetricExportCounters(self.exports.clone())
    }

    /// A finished transaction: `status` is the final response code, `None`
    /// when it timed out; `response_time` from request to final response.
    pub fn record_transaction(
        &self,
        method: &str,
        status: Option<u16>,
        response_time: Option<Duration>,
    ) {
        let Some(i) = &self.inner else { return };
        let method = method_label(method);
        let status = status
            .filter(|s| (100..700).contains(s))
            .map(i64::from)
            .unwrap_or(0);
        i.transactions.add(
            1,
            &[
                KeyValue::new(attr::SIP_METHOD, method),
                KeyValue::new(attr::SIP_STATUS_CODE, status),
            ],
        );
        if let Some(rt) = response_time {
            i.response_time
                .record(rt.as_secs_f64(), &[KeyValue::new(attr::SIP_METHOD, method)]);
        }
    }

    /// A finished registration attempt; `outcome` is one of the analysis's
    /// fixed outcome names (e.g. `registered`, `rejected`, `timeout`).
    pub fn record_registration(&self, outcome: &'static str) {
        if let Some(i) = &self.inner {
            i.registrations
                .add(1, &[KeyValue::new(attr::REGISTRATION_OUTCOME, outcome)]);
        }
    }

    /// A diagnosis raised; `code` is a catalogue code (`auth.rejected`, ...).
    pub fn record_diagnosis(&self, code: &'static str) {
        if let Some(i) = &self.inner {
            i.diagnoses
                .add(1, &[KeyValue::new(attr::DIAGNOSIS_CODE, code)]);
        }
    }

    /// One stream direction of a finished call: packets delivered and
    /// lost (RFC 3550), and its MOS estimate when RTP arrived. `codec` is
    /// the negotiated format (`PCMA/8000`), mapped to a fixed set.
    pub fn record_rtp(&self, codec: &str, received: u64, lost: u64, mos: Option<f64>) {
        let Some(i) = &self.inner else { return };
        let codec = KeyValue::new(attr::RTP_CODEC, codec_label(codec));
        i.rtp_packets.add(
            received,
            &[codec.clone(), KeyValue::new("state", "received")],
        );
        i.rtp_packets
            .add(lost, &[codec.clone(), KeyValue::new("state", "lost")]);
        if let Some(mos) = mos {
            i.rtp_mos.record(mos, &[codec]);
        }
    }

    /// The latest cumulative capture counters (reported at the next export).
    pub fn set_capture_counters(&self, c: CaptureTotals) {
        if let Some(i) = &self.inner {
            i.capture[0].store(c.seen, Ordering::Relaxed);
            i.capture[1].store(c.captured, Ordering::Relaxed);
            i.capture[2].store(c.lost, Ordering::Relaxed);
        }
    }

    /// Export what has been recorded now. Blocks until the export finished
    /// or failed; run it off the runtime's worker threads.
    pub fn force_flush_blocking(&self) -> Result<(), String> {
        match &self.provider {
            Some(p) => p.force_flush().map_err(|e| e.to_string()),
            None => Ok(()),
        }
    }

    /// Final export and shutdown. Safe to call from async code.
    pub async fn shutdown(self) {
        if let Some(p) = self.provider {
            // The SDK blocks on the export's completion: keep that off the
            // runtime's worker threads, which must drive the export itself.
            let r = tokio::task::spawn_blocking(move || p.shutdown()).await;
            if let Ok(Err(e)) = r {
                log::warn!("metrics export shutdown: {e}");
            }
        }
    }
}
