//! The glue between the synchronous core and the export edge, shared by
//! `run` and `analyze`: pipeline events → [`TraceBuilder`] → spans into the
//! bounded export queue (never blocks; a full queue is a counted drop),
//! metrics on the way; and the export counters printed at exit.

use std::io::Write;

use sipscope::export::otel::{ExportStats, SpanSink, Telemetry};
use sipscope::export::spans::SpanRecord;
use sipscope::export::trace_builder::{TraceBuilder, TraceConfig, TraceStats};
use sipscope::pipeline::Event;

/// Lives beside the pipeline (same thread): builds spans, submits them.
pub struct SpanProducer {
    builder: TraceBuilder,
    sink: Option<SpanSink>,
    buf: Vec<SpanRecord>,
}

impl SpanProducer {
    pub fn new(telemetry: &Telemetry) -> Self {
        Self {
            builder: TraceBuilder::new(
                telemetry.observer(),
                TraceConfig::default(),
                telemetry.metrics(),
            ),
            sink: telemetry.span_sink(),
            buf: Vec::new(),
        }
    }

    pub fn on_events(&mut self, events: &[Event]) {
        // Nowhere to send spans (console without an endpoint): the call
        // flow shows everything, so spare the core the work.
        if self.sink.is_none() {
            return;
        }
        for e in events {
            self.builder.on_event(e, &mut self.buf);
        }
        self.submit();
    }

    pub fn finish(&mut self) -> TraceStats {
        self.builder.finish(&mut self.buf);
        self.submit();
        self.builder.stats()
    }

    fn submit(&mut self) {
        match &self.sink {
            // Dropped spans are counted by the sink.
            Some(s) => {
                for span in self.buf.drain(..) {
                    s.submit(span);
                }
            }
            None => self.buf.clear(),
        }
    }
}

/// Where spans went, one line for the console summary.
pub fn export_line(traces: &TraceStats, export: Option<&ExportStats>, target: &str) -> String {
    let mut s = format!(
        "  spans              {} (transactions {}, calls {}, media {}, registrations {}, dialogs evicted {}, idle {}, open at end {}, retransmission times dropped {}, media spans dropped {})",
        traces.spans,
        traces.transaction_spans,
        traces.call_traces,
        traces.media_spans,
        traces.registration_traces,
        traces.dialogs_evicted,
        traces.dialogs_idle,
        traces.dialogs_open_at_end,
        traces.retransmission_times_dropped,
        traces.media_spans_dropped,
    );
    match export {
        Some(e) => s.push_str(&format!(
            "\n  export             {target}: exported {}, dropped {}, failed batches {}, export errors {}, redacted attributes {}",
            e.exported, e.dropped, e.failed_batches, e.export_errors, e.redacted_attributes
        )),
        None => s = "  spans              none built (no OTLP endpoint; use --otlp-endpoint URL, or --json for spans as JSON lines)".into(),
    }
    s
}

/// The export counters as a JSON-lines record (`"type":"export"`).
pub fn write_export_json(
    out: &mut impl Write,
    traces: &TraceStats,
    export: Option<&ExportStats>,
) -> std::io::Result<()> {
    serde_json::to_writer(
        &mut *out,
        &serde_json::json!({ "type": "export", "traces": traces, "spans": export }),
    )?;
    out.write_all(b"\n")
}

/// `otlp grpc http://...` or `json lines` for the summary.
pub fn target(telemetry: &Telemetry) -> String {
    match &telemetry.config {
        Some(c) => format!(
            "OTLP/{} {}",
            format!("{:?}", c.protocol).to_lowercase(),
            c.traces_endpoint
        ),
        None => "JSON lines".into(),
    }
}
