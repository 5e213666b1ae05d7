//! One analysis session, the same for `run` and `analyze`: inputs on the
//! packet clock in ([`Input`]), rendered output, spans and kernel requests
//! out. Sans-IO in the quinn-proto sense: the session writes only to the
//! output it was given and to the span queue, never reads a clock (time
//! comes from frames and ticks), and never touches the kernel: what it
//! needs from there (read the RTP flow map, set a payload clock) it asks
//! for with a [`Request`], which the driver executes and answers with an
//! [`Input`]. That keeps everything between capture and output testable
//! in-process with offline frames, ticks and made-up RTP polls.
//!
//! The driver's loop:
//! ```text
//! session.feed(Input::Frame { .. })?;          // or Drop, Tick
//! while let Some(r) = session.poll_request() { // answer what it asked
//!     match r { Request::PollRtp => session.feed(Input::RtpFlows(&monitor.poll()?))?, .. }
//! }
//! let done = session.finish(last_poll.as_ref())?;
//! ```

mod rtp;
mod spans;
#[cfg(test)]
mod tests;

use std::collections::VecDeque;
use std::io::Write;
use std::time::Duration;

use crate::capture::live::RtpPoll;
use crate::export::calls::{CallsReport, table};
use crate::export::console::{self, CallFlow};
use crate::export::hep::{HepSink, HepStats};
use crate::export::json;
use crate::export::otel::{ExportStats, Metrics, SpanSink};
use crate::export::prometheus::{CounterGroup, PrometheusMetrics};
use crate::export::registrations::RegistrationReport;
use crate::export::service_log::{LogFormat, LogLine, ServiceLog};
use crate::export::trace_builder::TraceStats;
use crate::packet::{DroppedPacket, Packet, Plaintext};
use crate::pipeline::{Event, Pipeline, PipelineConfig, Stats};
use crate::time::Timestamp;

pub use spans::Spans;

/// How often the table of calls up is printed (live console), and its rows.
const CALLS_VIEW: Duration = Duration::from_secs(10);
const CALLS_VIEW_ROWS: usize = 50;

/// How the session renders what the pipeline tells.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// One JSON object per line (`--json`); the summary is the driver's,
    /// after the span exporter has flushed. Offline the session writes
    /// the span lines itself ([`Spans::json_lines`]).
    Json,
    /// `run`: a line per event as it happens, the calls up every
    /// [`CALLS_VIEW`], the calls and registrations tables and the summary
    /// at the end.
    Live,
    /// `analyze`: messages grouped per Call-ID, holding at most
    /// `max_bytes` of lines (older groups are written out early).
    CallFlow { max_bytes: usize },
    /// `run` under a service manager: one log line per finding and per
    /// call or registration state change, no tables, no periodic output
    /// ([`crate::export::service_log`]); one summary line at the end.
    Events(LogFormat),
}

pub struct SessionConfig {
    pub pipeline: PipelineConfig,
    pub format: Format,
    /// Kernel RTP statistics are read (live, RTP on): print the flows
    /// this often. `None`: the session never asks for a poll.
    pub rtp_interval: Option<Duration>,
}

/// What the driver feeds the session. Time is the packet clock of each.
pub enum Input<'a> {
    /// A captured frame; `note` is a line the capture layer wants shown
    /// before it (an ICMP error or a truncated copy, live console only).
    Frame {
        packet: &'a Packet,
        note: Option<&'a str>,
    },
    /// A packet this host's kernel dropped.
    Drop(&'a DroppedPacket),
    /// What a PBX's TLS library read or wrote (SIP over TLS).
    Plaintext(&'a Plaintext),
    /// The capture clock, periodically: packet-clock timers fire when
    /// traffic stops, and RTP polls and the calls view are scheduled.
    Tick(Timestamp),
    /// The answer to [`Request::PollRtp`].
    RtpFlows(&'a RtpPoll),
    /// The answer to a [`Request::SetPortClock`] the kernel refused.
    PortClockRefused {
        call_id: &'a str,
        port: u16,
        payload_type: u8,
    },
}

/// What the session asks of the kernel-facing driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request {
    /// Read the RTP flow map now and feed [`Input::RtpFlows`] before any
    /// other input (the tick's calls view waits for it).
    PollRtp,
    /// SDP negotiated a dynamic payload type: tell the kernel its clock.
    SetPortClock {
        call_id: String,
        port: u16,
        payload_type: u8,
        clock_rate: u32,
    },
    /// The call that negotiated it closed.
    RemovePortClock { port: u16, payload_type: u8 },
}

/// What is left when the input ends.
pub struct Finished<W> {
    pub stats: Stats,
    pub traces: TraceStats,
    /// HEP export's counters, when it was on ([`Session::with_hep`]).
    pub hep: Option<HepStats>,
    /// Spans the session wrote into its output itself
    /// ([`Spans::json_lines`]), as export counters.
    pub spans_written: Option<ExportStats>,
    pub out: W,
}

enum View {
    Json,
    Live {
        /// The `pjsip show registrations`-style table printed at exit.
        registrations: RegistrationReport,
        /// Calls up every [`CALLS_VIEW`], all calls at exit.
        calls: CallsReport,
        last_view: Option<Timestamp>,
    },
    Flow(Box<CallFlow>),
    Events(ServiceLog, LogFormat),
}

pub struct Session<W: Write> {
    pipeline: Pipeline,
    out: W,
    view: View,
    spans: Spans,
    /// The HOMER sink: every event, encoded on this thread, sent on the
    /// sender's (never waits for the collector in `run`).
    hep: Option<HepSink>,
    /// The `/metrics` view: updated per event, counters published per tick.
    prometheus: Option<PrometheusMetrics>,
    rtp: Option<rtp::RtpSchedule>,
    requests: VecDeque<Request>,
    events: Vec<Event>,
    /// The live console's line, reused from event to event.
    line: String,
    now: Timestamp,
    /// A tick whose calls view waits for its RTP poll.
    tick_waiting: bool,
}

impl<W: Write> Session<W> {
    pub fn new(config: SessionConfig, out: W, spans: Spans) -> Self {
        let view = match config.format {
            Format::Json => View::Json,
            Format::Live => View::Live {
                registrations: RegistrationReport::new(),
                calls: CallsReport::new(),
                last_view: None,
            },
            Format::CallFlow { max_bytes } => View::Flow(Box::new(CallFlow::with_limit(max_bytes))),
            Format::Events(format) => View::Events(ServiceLog::new(), format),
        };
        Self {
            pipeline: Pipeline::new(config.pipeline),
            out,
            view,
            spans,
            hep: None,
            prometheus: None,
            rtp: config.rtp_interval.map(rtp::RtpSchedule::new),
            requests: VecDeque::new(),
            events: Vec::new(),
            line: String::new(),
            now: Timestamp(0),
            tick_waiting: false,
        }
    }

    /// Also exports every event over HEP (`--hep-endpoint`).
    pub fn with_hep(mut self, hep: HepSink) -> Self {
        self.hep = Some(hep);
        self
    }

    /// Exports over HEP to `hep` from now on (`None`: no more); returns
    /// the sink replaced, for the caller to finish off this thread (its
    /// queue may take a while to drain). The new sink follows calls from
    /// their next INVITE on.
    pub fn replace_hep(&mut self, hep: Option<HepSink>) -> Option<HepSink> {
        std::mem::replace(&mut self.hep, hep)
    }

    /// A reloaded OTLP configuration: spans and metrics go to the new
    /// export from the next event on ([`Spans`] keeps its open traces).
    pub fn retarget_spans(&mut self, sink: Option<SpanSink>, metrics: Metrics) {
        self.spans.retarget(sink, metrics);
    }

    /// A reloaded configuration's live settings ([`Pipeline::retune`]).
    pub fn retune(&mut self, config: &PipelineConfig) {
        self.pipeline.retune(config);
    }

    /// Also keeps the Prometheus view (`--metrics-listen`) up to date.
    pub fn with_prometheus(mut self, metrics: PrometheusMetrics) -> Self {
        self.prometheus = Some(metrics);
        self
    }

    /// Publishes the counters to the Prometheus view (on each tick and at
    /// the end): the same `Stats` the summary prints.
    fn publish_counters(&self) {
        let Some(p) = &self.prometheus else { return };
        p.publish_pipeline(&self.pipeline.stats(), self.pipeline.calls_in_flight().0);
        if let Some(h) = &self.hep {
            p.publish(CounterGroup::from_serialize(
                "export_hep",
                "HEP export to HOMER: packets by kind, sent, dropped (queue full, send failed, too long), send errors, reconnects",
                "counter",
                &h.stats(),
            ));
        }
    }

    /// The kernel's RTP counters of a poll (the `rtp counters:` line), to
    /// the Prometheus view.
    fn publish_rtp_counters(&self, poll: &RtpPoll) {
        use sipscope_common::RtpCounter;
        let Some(p) = &self.prometheus else { return };
        let c = &poll.counters;
        let mut values: Vec<(String, u64)> = RtpCounter::ALL
            .iter()
            .map(|&k| (k.name().to_owned(), c.get(k)))
            .collect();
        values.extend([
            ("flows_expired".to_owned(), c.flows_expired),
            ("flows_evicted".to_owned(), c.flows_evicted),
        ]);
        p.publish(CounterGroup {
            name: "kernel_rtp",
            help: "The RTP programs' per-CPU counters summed, and flows the poller expired and the kernel's LRU evicted (the rtp counters line)",
            label: "counter",
            values,
            gauge: false,
        });
        p.publish(CounterGroup {
            name: "kernel_rtp_flows",
            help: "RTP flows in the kernel's flow map at the last poll",
            label: "state",
            values: vec![("live".to_owned(), c.flows_live)],
            gauge: true,
        });
    }

    /// Whether RTP flow summaries are printed (the consoles for people).
    fn console(&self) -> bool {
        matches!(self.view, View::Live { .. } | View::Flow(_))
    }

    pub fn feed(&mut self, input: Input<'_>) -> std::io::Result<()> {
        match input {
            Input::Frame { packet, note } => {
                if let Some(n) = note
                    && matches!(self.view, View::Live { .. })
                {
                    writeln!(self.out, "{n}")?;
                }
                self.now = self.now.max(packet.ts);
                let mut events = std::mem::take(&mut self.events);
                self.pipeline.ingest_into(packet, &mut events);
                self.emit(&mut events)?;
                self.events = events;
            }
            Input::Plaintext(p) => {
                self.now = self.now.max(p.ts);
                let mut events = std::mem::take(&mut self.events);
                self.pipeline.ingest_plaintext_into(p, &mut events);
                self.emit(&mut events)?;
                self.events = events;
            }
            Input::Drop(dropped) => {
                let mut events = self.pipeline.ingest_drop(dropped);
                self.emit(&mut events)?;
            }
            Input::Tick(t) => {
                self.now = self.now.max(t);
                let mut events = self.pipeline.tick(self.now);
                self.emit(&mut events)?;
                self.publish_counters();
                let calls_up = self.pipeline.calls_in_flight().0 > 0;
                let poll = self
                    .rtp
                    .as_mut()
                    .is_some_and(|r| r.poll_due(self.now, calls_up));
                if poll {
                    self.requests.push_back(Request::PollRtp);
                    self.tick_waiting = true;
                } else {
                    self.after_tick()?;
                }
            }
            Input::RtpFlows(poll) => {
                self.publish_rtp_counters(poll);
                let print = self.console();
                let Some(r) = self.rtp.as_mut() else {
                    return Ok(());
                };
                let flows = r.on_poll(poll, false, &mut self.out, print)?;
                let mut events = self.pipeline.ingest_rtp_flows(self.now, &flows);
                self.emit(&mut events)?;
                if std::mem::take(&mut self.tick_waiting) {
                    self.after_tick()?;
                }
            }
            Input::PortClockRefused {
                call_id,
                port,
                payload_type,
            } => {
                if let Some(r) = self.rtp.as_mut() {
                    r.clock_refused(call_id, port, payload_type);
                }
            }
        }
        Ok(())
    }

    /// The next thing the session needs from the kernel, oldest first.
    pub fn poll_request(&mut self) -> Option<Request> {
        self.requests.pop_front()
    }

    /// Hands buffered output and spans on (after a batch of inputs).
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.spans.flush();
        self.out.flush()
    }

    /// End of input: `last_rtp` is a final read of the RTP flow map (live
    /// with RTP on), so the calls' last reports have the last statistics.
    /// Writes what the console shows at the end (the rest of the call
    /// flow, the tables, the summary); with JSON the summary is the
    /// driver's, after the span exporter has flushed.
    pub fn finish(mut self, last_rtp: Option<&RtpPoll>) -> std::io::Result<Finished<W>> {
        let print = self.console();
        if let (Some(r), Some(poll)) = (self.rtp.as_mut(), last_rtp) {
            let flows = r.on_poll(poll, true, &mut self.out, print)?;
            let mut events = self.pipeline.ingest_rtp_flows(self.now, &flows);
            self.emit(&mut events)?;
        }
        let mut rest = self.pipeline.finish();
        self.emit(&mut rest)?;
        self.publish_counters();
        let traces = self.spans.finish();
        self.spans.write_lines(&mut self.out)?;
        // What is still queued goes out (a dead collector's is counted).
        let hep = self.hep.take().map(HepSink::finish);
        let stats = self.pipeline.stats();
        match self.view {
            View::Json => {}
            View::Live {
                registrations,
                calls,
                ..
            } => {
                write!(self.out, "{}", calls.render())?;
                if !registrations.is_empty() {
                    write!(self.out, "{}", registrations.render())?;
                }
                write!(self.out, "{}", console::summary(&stats))?;
            }
            View::Flow(flow) => flow.finish(&stats, &mut self.out)?,
            View::Events(log, format) => {
                let line = LogLine::at(self.now, "info", "summary")
                    .field("packets", stats.packets.packets)
                    .field("sip_messages", stats.sip.messages)
                    .field("transactions", stats.transactions.created)
                    .field("transactions_timed_out", stats.transactions.timed_out)
                    .field("calls", stats.calls.calls)
                    .field("findings_shown", stats.findings.shown)
                    .field("findings_suppressed", stats.findings.suppressed)
                    .field("log_state_evicted", log.evicted());
                writeln!(self.out, "{}", line.render(format))?;
            }
        }
        self.out.flush()?;
        Ok(Finished {
            stats,
            traces,
            hep,
            spans_written: self.spans.written(),
            out: self.out,
        })
    }

    /// Every event to the spans, HEP, the RTP schedule and the view.
    fn emit(&mut self, events: &mut Vec<Event>) -> std::io::Result<()> {
        self.spans.on_events(events);
        if let Some(p) = &self.prometheus {
            p.on_events(events);
        }
        if let Some(h) = self.hep.as_mut() {
            h.on_events(events);
        }
        for e in events.drain(..) {
            if let Some(r) = self.rtp.as_mut() {
                r.on_event(&e, &mut self.requests);
            }
            match &mut self.view {
                View::Json => json::write_event(&mut self.out, &e)?,
                View::Live {
                    registrations,
                    calls,
                    ..
                } => {
                    registrations.push(&e);
                    calls.push(&e);
                    if console::write_live_line(&mut self.line, &e) {
                        self.line.push('\n');
                        self.out.write_all(self.line.as_bytes())?;
                    }
                }
                View::Flow(flow) => flow.push(&e),
                View::Events(log, format) => {
                    if let Some(line) = log.line(&e) {
                        writeln!(self.out, "{}", line.render(*format))?;
                    }
                }
            }
        }
        // Spans after the records of the input that finished them.
        self.spans.write_lines(&mut self.out)?;
        if let View::Flow(flow) = &mut self.view {
            flow.spill(&mut self.out)?;
        }
        Ok(())
    }

    /// The rest of a tick once its RTP statistics are in: the calls view
    /// (live console, while calls are up).
    fn after_tick(&mut self) -> std::io::Result<()> {
        if let View::Live { last_view, .. } = &mut self.view {
            let last = *last_view.get_or_insert(self.now);
            if self.pipeline.calls_in_flight().0 > 0 && self.now.since(last) >= CALLS_VIEW {
                *last_view = Some(self.now);
                let up = self.pipeline.calls_up(self.now);
                let rows: Vec<&_> = up.iter().take(CALLS_VIEW_ROWS).collect();
                write!(self.out, "{}", table("Calls up", &rows))?;
                if up.len() > rows.len() {
                    writeln!(self.out, "  ({} more calls up)\n", up.len() - rows.len())?;
                }
            }
        }
        Ok(())
    }
}
