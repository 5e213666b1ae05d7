//! One call to set up span and metric export as the flags ask, and one to
//! shut it down: what `sipscope run` and `sipscope analyze` use.

use std::io::Write;

use super::build::OtlpError;
use super::config::{OtlpArgs, OtlpConfig};
use super::metrics::Metrics;
use super::queue::{ExportStats, QueueOptions, SpanExportService, SpanSink, WhenFull};

/// The export edge of one agent run.
pub struct Telemetry {
    /// The resolved OTLP configuration; `None`: no endpoint configured.
    pub config: Option<OtlpConfig>,
    spans: Option<SpanExportService>,
    metrics: Metrics,
}

impl Telemetry {
    /// OTLP traces and metrics when an endpoint is configured (flag or
    /// OTEL_* variables); otherwise spans as JSON lines to `json_out` when
    /// given (`--json`), else no export. Call inside the tokio runtime.
    /// Errors are configuration errors (a malformed endpoint, an unreadable
    /// CA file); an unreachable collector is not an error.
    pub fn start(
        args: &OtlpArgs,
        json_out: Option<Box<dyn Write + Send>>,
    ) -> Result<Self, OtlpError> {
        let config = OtlpConfig::from_args(args)?;
        Self::start_with(config, args, json_out)
    }

    /// Offline analysis (`analyze`): OTLP traces and metrics when an
    /// endpoint is configured, with a queue that makes the core wait
    /// rather than drop ([`WhenFull::Wait`]): the same file must give the
    /// same spans however busy the machine is. No JSON-lines exporter: the
    /// session writes JSON spans itself, in pipeline order
    /// ([`crate::session::Spans::json_lines`]).
    pub fn start_offline(args: &OtlpArgs) -> Result<Self, OtlpError> {
        let config = OtlpConfig::from_args(args)?;
        Self::start_full(config, args, None, WhenFull::Wait)
    }

    /// As [`Telemetry::start`], with an already resolved configuration.
    pub fn start_with(
        config: Option<OtlpConfig>,
        args: &OtlpArgs,
        json_out: Option<Box<dyn Write + Send>>,
    ) -> Result<Self, OtlpError> {
        Self::start_full(config, args, json_out, WhenFull::Drop)
    }

    fn start_full(
        config: Option<OtlpConfig>,
        args: &OtlpArgs,
        json_out: Option<Box<dyn Write + Send>>,
        when_full: WhenFull,
    ) -> Result<Self, OtlpError> {
        let (spans, metrics) = match &config {
            Some(cfg) => {
                let spans = cfg
                    .export_traces
                    .then(|| SpanExportService::otlp(cfg, when_full))
                    .transpose()?;
                let metrics = if cfg.export_metrics {
                    Metrics::otlp(
                        cfg,
                        cfg.metrics_interval,
                        spans.as_ref().map(SpanExportService::sink),
                    )?
                } else {
                    Metrics::noop()
                };
                (spans, metrics)
            }
            None => {
                let opts = QueueOptions {
                    when_full,
                    queue_capacity: args.queue_capacity.max(1),
                    ..QueueOptions::default()
                };
                let spans = json_out.map(|out| {
                    SpanExportService::json_lines(out, opts, args.include_digest_response)
                });
                (spans, Metrics::noop())
            }
        };
        Ok(Self {
            config,
            spans,
            metrics,
        })
    }

    /// The observer name for span ids ([`crate::export::spans::SpanId::for_root`]):
    /// the exported `host.name`, so ids and resource agree.
    pub fn observer(&self) -> String {
        self.config
            .as_ref()
            .map(|c| c.resource.host_name.clone())
            .unwrap_or_else(super::resource::local_host_name)
    }

    /// Where the core hands finished spans; `None` when spans go nowhere.
    pub fn span_sink(&self) -> Option<SpanSink> {
        self.spans.as_ref().map(SpanExportService::sink)
    }

    pub fn metrics(&self) -> Metrics {
        self.metrics.clone()
    }

    pub fn span_stats(&self) -> Option<ExportStats> {
        self.spans.as_ref().map(SpanExportService::stats)
    }

    /// Flush spans and metrics and stop; returns the final span counters.
    pub async fn shutdown(self) -> Option<ExportStats> {
        let stats = match self.spans {
            Some(s) => Some(s.shutdown().await),
            None => None,
        };
        self.metrics.shutdown().await;
        stats
    }
}
