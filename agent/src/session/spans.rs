//! The session's telemetry sink: pipeline events → [`TraceBuilder`] →
//! spans into the bounded export queue (never blocks; a full queue is a
//! counted drop), metrics on the way.

use crate::export::otel::{SpanSink, Telemetry};
use crate::export::spans::SpanRecord;
use crate::export::trace_builder::{TraceBuilder, TraceConfig, TraceStats};
use crate::pipeline::Event;

/// Lives beside the pipeline (same thread): builds spans, submits them.
pub struct Spans {
    builder: TraceBuilder,
    sink: Option<SpanSink>,
    buf: Vec<SpanRecord>,
}

impl Spans {
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

    pub(crate) fn on_events(&mut self, events: &[Event]) {
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

    pub(crate) fn finish(&mut self) -> TraceStats {
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
