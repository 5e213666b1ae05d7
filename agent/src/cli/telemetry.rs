//! The export counters printed at exit by `run` and `analyze` (the spans
//! themselves are built by the session, [`sipscope::session::Spans`]).

use std::io::Write;

use sipscope::export::otel::{ExportStats, MetricExportStats, Telemetry};
use sipscope::export::trace_builder::TraceStats;

use super::records::{Sorted, write_record};

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
        None => s = "  spans              none exported (no OTLP endpoint, or OTEL_TRACES_EXPORTER=none; use --otlp-endpoint URL, or --json for spans as JSON lines)".into(),
    }
    s
}

/// Where OTLP metrics went (only when they were on).
pub fn metrics_line(m: &MetricExportStats) -> String {
    format!(
        "  metric exports     exported {}, failed {}, not accepted by the endpoint {}",
        m.exported, m.failed, m.not_accepted
    )
}

/// The export counters as a JSON-lines record (`"type":"export"`).
pub fn write_export_json(
    out: &mut impl Write,
    traces: &TraceStats,
    export: Option<&ExportStats>,
) -> std::io::Result<()> {
    write_record(
        out,
        &Sorted(ExportRecord {
            r#type: "export",
            traces,
            spans: export,
        }),
    )
}

#[derive(serde::Serialize)]
struct ExportRecord<'a> {
    r#type: &'static str,
    traces: &'a TraceStats,
    spans: Option<&'a ExportStats>,
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
