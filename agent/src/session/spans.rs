//! The session's telemetry sink: pipeline events → [`TraceBuilder`] →
//! spans, metrics on the way. The spans go one of two ways:
//!
//! - into the bounded export queue ([`SpanSink`]; live it never blocks, a
//!   full queue is a counted drop; offline it waits for the exporter), a
//!   batch at a time: when [`HANDOFF`] spans are waiting or the driver
//!   flushes after a batch of input, so a busy core wakes the export task
//!   once per batch rather than once per span;
//! - offline `--json` without an endpoint, as JSON lines the session
//!   writes itself into its own output right after the records of the
//!   input that finished them: the same file gives the same bytes on
//!   every run, with no exporter thread racing the session for stdout.

use std::io::Write;

use crate::export::otel::{
    AttributeFilter, ExportStats, Metrics, SpanSink, Telemetry, write_span_lines,
};
use crate::export::spans::SpanRecord;
use crate::export::trace_builder::{TraceBuilder, TraceConfig, TraceStats};
use crate::pipeline::Event;

/// Spans that wait for the driver's flush at most, in the export queue's
/// case: enough that a wake-up of the export task carries many, few
/// enough that `analyze`, which flushes only at the end, holds little.
const HANDOFF: usize = 256;

enum Target {
    /// Nowhere to send spans (console without an endpoint): the call
    /// flow shows everything, so the core is spared the work.
    Nowhere,
    Queue(SpanSink),
    /// Written by the session into its output; `written` counts them.
    Lines {
        filter: AttributeFilter,
        written: u64,
    },
}

/// Lives beside the pipeline (same thread): builds spans, submits them.
pub struct Spans {
    builder: TraceBuilder,
    target: Target,
    buf: Vec<SpanRecord>,
}

impl Spans {
    /// Spans to the telemetry's export queue (none without one).
    pub fn new(telemetry: &Telemetry) -> Self {
        let target = match telemetry.span_sink() {
            Some(s) => Target::Queue(s),
            None => Target::Nowhere,
        };
        Self::with_target(telemetry, target)
    }

    /// Spans to the telemetry's OTLP export when an endpoint is
    /// configured, else as JSON lines in the session's output (secrets
    /// filtered as for OTLP; the digest response only when allowed).
    pub fn json_lines(telemetry: &Telemetry, include_digest_response: bool) -> Self {
        let target = match (&telemetry.config, telemetry.span_sink()) {
            (Some(_), Some(s)) => Target::Queue(s),
            _ => Target::Lines {
                filter: AttributeFilter::new(include_digest_response),
                written: 0,
            },
        };
        Self::with_target(telemetry, target)
    }

    fn with_target(telemetry: &Telemetry, target: Target) -> Self {
        Self {
            builder: TraceBuilder::new(
                telemetry.observer(),
                TraceConfig::default(),
                telemetry.metrics(),
            ),
            target,
            buf: Vec::new(),
        }
    }

    /// A reloaded OTLP configuration: spans finished from now on go to
    /// `sink` (nowhere without one) and metrics to `metrics`. Open traces
    /// are kept, so a call up across the reload reaches the new endpoint
    /// whole. Spans the session writes itself (`analyze --json`) stay so.
    pub(crate) fn retarget(&mut self, sink: Option<SpanSink>, metrics: Metrics) {
        if matches!(self.target, Target::Lines { .. }) {
            return;
        }
        // Spans finished before the reload go where they were headed.
        self.submit();
        self.target = sink.map_or(Target::Nowhere, Target::Queue);
        self.builder.set_metrics(metrics);
    }

    pub(crate) fn on_events(&mut self, events: &[Event]) {
        // With spans going nowhere the builder still runs when OTLP
        // metrics are on (OTEL_TRACES_EXPORTER=none): it records them.
        if matches!(self.target, Target::Nowhere) && !self.builder.records_metrics() {
            return;
        }
        for e in events {
            self.builder.on_event(e, &mut self.buf);
        }
        match self.target {
            Target::Queue(_) if self.buf.len() < HANDOFF => {}
            _ => self.submit(),
        }
    }

    /// Hands the spans built so far to the export queue (the driver calls
    /// it after each batch of input).
    pub(crate) fn flush(&mut self) {
        self.submit();
    }

    /// Writes the spans finished so far as JSON lines (only when the
    /// session writes them itself), in the order they were built.
    pub(crate) fn write_lines(&mut self, out: &mut impl Write) -> std::io::Result<()> {
        if let Target::Lines { filter, written } = &mut self.target
            && !self.buf.is_empty()
        {
            *written += self.buf.len() as u64;
            write_span_lines(out, self.buf.drain(..), filter)?;
        }
        Ok(())
    }

    pub(crate) fn finish(&mut self) -> TraceStats {
        self.builder.finish(&mut self.buf);
        self.submit();
        self.builder.stats()
    }

    /// Spans the session wrote itself, as export counters (`None` when
    /// they went to a queue, whose service has the counters).
    pub(crate) fn written(&self) -> Option<ExportStats> {
        match &self.target {
            Target::Lines { filter, written } => Some(ExportStats {
                exported: *written,
                redacted_attributes: filter.redacted(),
                ..ExportStats::default()
            }),
            _ => None,
        }
    }

    fn submit(&mut self) {
        match &self.target {
            // Dropped spans are counted by the sink.
            Target::Queue(s) => {
                if !self.buf.is_empty() {
                    s.submit_all(std::mem::take(&mut self.buf));
                }
            }
            // Kept for `write_lines`.
            Target::Lines { .. } => {}
            Target::Nowhere => self.buf.clear(),
        }
    }
}
