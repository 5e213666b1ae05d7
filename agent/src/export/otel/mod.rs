//! OpenTelemetry export: spans over OTLP (gRPC or HTTP/protobuf) or as JSON
//! lines, and metrics over OTLP. Everything that depends on the
//! opentelemetry crates lives in this module, so a version bump touches
//! one place.
//!
//! Wiring (the async edge; the core only sees [`SpanSink`] and [`Metrics`]):
//!
//! ```ignore
//! // in `run`/`analyze`, inside the tokio runtime; `args.otlp: OtlpArgs` (flattened)
//! let json = args.json.then(|| Box::new(std::io::stdout()) as Box<dyn std::io::Write + Send>);
//! let telemetry = Telemetry::start(&args.otlp, json).context("OTLP export")?;
//! let sink = telemetry.span_sink();          // Option<SpanSink>: give to the core
//! let metrics = telemetry.metrics();         // no-op without an endpoint
//! // core: if let Some(s) = &sink { s.submit(span); }   never blocks; full = counted drop
//! // core: metrics.record_registration("registered"); ...
//! let stats = telemetry.shutdown().await;    // flushes; Some(ExportStats) if spans were exported
//! ```

mod build;
pub(crate) mod config;
pub(crate) mod convert;
pub(crate) mod metrics;
pub(crate) mod queue;
pub(crate) mod resource;
mod telemetry;

pub use build::OtlpError;
pub use config::{ConfigError, OtlpArgs, OtlpConfig, Protocol};
pub use convert::AttributeFilter;
pub use metrics::{CaptureTotals, MetricExportCounters, MetricExportStats, Metrics};
pub use queue::{
    ExportStats, QueueOptions, SpanExportCounters, SpanExportService, SpanSink, WhenFull,
    write_json_lines, write_span_lines,
};
pub use resource::{ResourceConfig, local_host_name, resource};
pub use telemetry::Telemetry;
