//! OpenTelemetry export: spans over OTLP (gRPC or HTTP/protobuf) or as JSON
//! lines, and metrics over OTLP. Everything that depends on the
//! opentelemetry crates lives in this module, so a version bump touches
//! one place.
//!
//! Wiring (the async edge; the core only sees [`SpanSink`] and [`Metrics`]):
//!
//! ```ignore
//! let cfg = OtlpConfig::from_args(&args.otlp)?;           // None: no endpoint
//! let spans = match &cfg {
//!     Some(cfg) => SpanExportService::otlp(cfg)?,
//!     None if args.json => SpanExportService::json_lines(Box::new(std::io::stdout()), QueueOptions::default(), false),
//!     None => /* no span export */,
//! };
//! let metrics = match &cfg { Some(c) => Metrics::otlp(c, Duration::from_secs(60), Some(spans.sink()))?, None => Metrics::noop() };
//! core.on_span(|s| { spans_sink.submit(s); });            // never blocks
//! ...
//! let stats = spans.shutdown().await; metrics.shutdown().await;
//! ```

mod build;
pub mod config;
pub mod convert;
pub mod metrics;
pub mod queue;

pub use build::{OtlpError, resource};
pub use config::{ConfigError, OtlpArgs, OtlpConfig, Protocol, ResourceConfig, local_host_name};
pub use convert::AttributeFilter;
pub use metrics::{CaptureCounters, Metrics};
pub use queue::{ExportStats, QueueOptions, SpanExportService, SpanSink, write_json_lines};
