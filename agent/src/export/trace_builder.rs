//! Groups the pipeline's transactions into traces (docs/tracing.md):
//! one trace per call (INVITE dialog, RFC 3261 §12) with a root span, a
//! child per transaction and, from the call's closed report, a child per
//! media stream direction ([`super::media_spans`]); one trace per
//! registration attempt
//! ([`spans_for_registration`]); any other transaction is a one-span trace
//! of its own, keyed by its Call-ID.
//!
//! A call's lifecycle is the call tracker's ([`crate::analysis::calls`]):
//! its first report opens the root, its closed report ends it with the
//! tracker's [`CallEnd`]. Nothing here tracks INVITE CSeqs, challenges,
//! timers or a table bound: the root ends exactly when the call report
//! does, and the open roots are bounded by the tracker's call table.
//!
//! Sans-IO like the pipeline: events in, finished [`SpanRecord`]s out, time
//! is the packet clock. Every table is bounded and its evictions counted.
//! Metrics (transactions, response times, registrations, diagnoses) are
//! recorded on the way through the given [`Metrics`] (a no-op without an
//! OTLP endpoint).

use std::collections::HashMap;
use std::sync::Arc;

use serde::Serialize;

use super::media_spans::{media_directions, media_span};
use super::otel::Metrics;
use super::sip_spans::{TransactionEnd, spans_for_registration_with, transaction_span};
use super::spans::{SpanId, SpanKind, SpanRecord, Status, TraceId, attr, names};
use crate::analysis::calls::{Call, CallEnd};
use crate::analysis::media::MediaCheckConfig;
use crate::analysis::registration::RegistrationAttempt;
use crate::pipeline::Event;
use crate::sip::{Method, Transaction, TransactionId};
use crate::time::Timestamp;

/// Bounds of the trace builder. A call's timers and table bound are the
/// call tracker's (`CallConfig::idle_timeout`, `CallConfig::max_calls`).
#[derive(Clone, Debug)]
pub struct TraceConfig {
    /// Transactions whose retransmission times are remembered at once.
    pub max_retransmission_entries: usize,
    /// Media spans of one call (two per m-line); more are counted only.
    pub max_media_spans_per_call: usize,
    /// Thresholds that attribute a call's `media.quality` to directions
    /// (the call tracker's, see `CallConfig::checks`).
    pub media_checks: MediaCheckConfig,
}

impl Default for TraceConfig {
    fn default() -> Self {
        Self {
            max_retransmission_entries: 10_000,
            max_media_spans_per_call: 16,
            media_checks: MediaCheckConfig::default(),
        }
    }
}

/// Counters of the trace builder: what was built and what was cut short.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct TraceStats {
    pub spans: u64,
    pub transaction_spans: u64,
    pub call_traces: u64,
    pub registration_traces: u64,
    /// Call roots ended because the call tracker's table was full (its
    /// `evicted` counter counts the calls).
    pub dialogs_evicted: u64,
    /// Call roots ended by the call tracker's idle timeout.
    pub dialogs_idle: u64,
    /// Call roots still open at the end of input.
    pub dialogs_open_at_end: u64,
    /// Retransmission times not kept (table full); the count attribute
    /// `sip.retransmissions` stays exact.
    pub retransmission_times_dropped: u64,
    /// Spans of media stream directions (RTP statistics).
    pub media_spans: u64,
    /// Media spans not built: past `max_media_spans_per_call`.
    pub media_spans_dropped: u64,
}

/// The root span of a call the tracker has open: what it covers so far.
struct CallRoot {
    trace: TraceId,
    /// The tracker's latest report of the call.
    report: Arc<Call>,
    /// The last SIP of the call, and the end of its latest child span.
    last_activity: Timestamp,
    /// The tracker reported the call over (BYE, final failure, INVITE
    /// timeout). Its closed report follows once RTP settled; until then
    /// messages (the ACK of a failure, retransmissions) no longer stretch
    /// the root, a transaction completing under it (the BYE's 200) does.
    over: bool,
    /// From and To as sent in the call's first INVITE.
    from: Option<String>,
    to: Option<String>,
}

/// See the module documentation.
pub struct TraceBuilder {
    observer: String,
    config: TraceConfig,
    metrics: Metrics,
    /// Bounded by the call tracker's table: every call it opens gets a
    /// closed report, eviction included.
    calls: HashMap<String, CallRoot>,
    retransmissions: HashMap<TransactionId, Vec<Timestamp>>,
    stats: TraceStats,
}

/// Retransmission times kept per transaction (more are counted only).
const MAX_RETRANSMISSION_EVENTS: usize = 16;

impl TraceBuilder {
    /// Metrics recorded from now on go to `metrics` (an OTLP reload).
    pub(crate) fn set_metrics(&mut self, metrics: Metrics) {
        self.metrics = metrics;
    }

    /// `observer`: the agent's name in span ids (the exported host.name,
    /// see [`super::otel::Telemetry::observer`]).
    pub fn new(observer: impl Into<String>, config: TraceConfig, metrics: Metrics) -> Self {
        Self {
            observer: observer.into(),
            config,
            metrics,
            calls: HashMap::new(),
            retransmissions: HashMap::new(),
            stats: TraceStats::default(),
        }
    }

    pub fn observer(&self) -> &str {
        &self.observer
    }

    pub fn stats(&self) -> TraceStats {
        self.stats.clone()
    }

    /// Feed one pipeline event; finished spans are appended to `out`.
    pub fn on_event(&mut self, event: &Event, out: &mut Vec<SpanRecord>) {
        match event {
            Event::Message(m) => {
                let ts = m.meta.ts;
                if let (true, true, Some(id)) =
                    (m.retransmission, m.message.is_request(), m.transaction)
                {
                    self.note_retransmission(id, ts);
                }
                if let Some(cid) = m.message.call_id()
                    && let Some(root) = self.calls.get_mut(cid.as_ref())
                    && !root.over
                {
                    root.last_activity = root.last_activity.max(ts);
                }
            }
            Event::TransactionCompleted(t) => {
                self.on_transaction(t, TransactionEnd::Completed, out)
            }
            Event::TransactionTimedOut { transaction, cause } => {
                self.on_transaction(transaction, TransactionEnd::TimedOut(*cause), out)
            }
            Event::RegistrationAttempt(a) => self.on_registration_attempt(a, out),
            // Counted here once; an attempt's copies are not counted again.
            Event::Diagnosis(d) => self.metrics.record_diagnosis(d.code.as_str()),
            Event::Call(c) => self.on_call(c, out),
            Event::Malformed(_) | Event::Rtcp(_) => {}
        }
    }

    /// A registration attempt from the registration tracker: its trace,
    /// and the registration and diagnosis metrics.
    pub fn on_registration_attempt(&mut self, a: &RegistrationAttempt, out: &mut Vec<SpanRecord>) {
        self.metrics.record_registration(a.outcome.label());
        let retrans = &self.retransmissions;
        let spans = spans_for_registration_with(a, &self.observer, &|id| {
            retrans.get(&id).map_or(&[][..], Vec::as_slice)
        });
        for t in &a.transactions {
            self.retransmissions.remove(&t.id);
        }
        self.stats.registration_traces += 1;
        self.stats.spans += spans.len() as u64;
        self.stats.transaction_spans += spans.len().saturating_sub(1) as u64;
        out.extend(spans);
    }

    /// End of input. The call tracker closed every call already
    /// (`Pipeline::finish`); a root still open had its input cut short
    /// before the last report and is ended `open_at_end`.
    pub fn finish(&mut self, out: &mut Vec<SpanRecord>) {
        let mut open: Vec<(Timestamp, String)> = self
            .calls
            .iter()
            .map(|(cid, r)| (r.report.started, cid.clone()))
            .collect();
        open.sort();
        for (_, cid) in open {
            if let Some(root) = self.calls.remove(&cid) {
                self.emit_root(&cid, root, out);
            }
        }
        self.retransmissions.clear();
    }

    /// Whether the OTLP metrics it records go anywhere.
    pub(crate) fn records_metrics(&self) -> bool {
        self.metrics.is_enabled()
    }

    fn note_retransmission(&mut self, id: TransactionId, ts: Timestamp) {
        let full = self.retransmissions.len() >= self.config.max_retransmission_entries;
        match self.retransmissions.get_mut(&id) {
            Some(v) if v.len() < MAX_RETRANSMISSION_EVENTS => v.push(ts),
            None if !full => {
                self.retransmissions.insert(id, vec![ts]);
            }
            _ => self.stats.retransmission_times_dropped += 1,
        }
    }

    fn on_transaction(
        &mut self,
        t: &Arc<Transaction>,
        end: TransactionEnd,
        out: &mut Vec<SpanRecord>,
    ) {
        self.metrics
            .record_transaction(t.method.as_str(), t.final_status(), t.response_time);
        let cid = t.call_id().unwrap_or_default();
        if t.method == Method::Register {
            // A registration attempt's child: its retransmission times stay
            // until the tracker's attempt arrives (Event::RegistrationAttempt).
            return;
        }
        let retrans = self.retransmissions.remove(&t.id).unwrap_or_default();
        let Some(root) = self.calls.get_mut(&cid) else {
            // Outside any call the tracker has open: a trace of its own
            // (OPTIONS pings, MESSAGE, out-of-dialog SUBSCRIBE, ...).
            let trace = TraceId::for_call(&cid);
            let span = transaction_span(t, end, trace, None, &self.observer, &retrans);
            self.emit_transaction(span, out);
            return;
        };
        let parent = SpanId::for_root(root.trace, &self.observer);
        let span = transaction_span(t, end, root.trace, Some(parent), &self.observer, &retrans);
        root.last_activity = root.last_activity.max(span.end);
        if t.method == Method::Invite
            && root.from.is_none()
            && let Some(req) = &t.request
        {
            // The first INVITE of the call is its initial one: the root
            // carries its From and To as sent.
            root.from = req.message.header("From");
            root.to = req.message.header("To");
        }
        self.emit_transaction(span, out);
    }

    fn emit_transaction(&mut self, span: SpanRecord, out: &mut Vec<SpanRecord>) {
        self.stats.transaction_spans += 1;
        self.stats.spans += 1;
        out.push(span);
    }

    /// A report of the call tracker: the first one opens the call's root,
    /// a terminal one stops messages from stretching it, the closed one
    /// ends it and adds the media spans.
    fn on_call(&mut self, call: &Arc<Call>, out: &mut Vec<SpanRecord>) {
        if !call.closed && !self.calls.contains_key(&call.call_id) {
            self.calls.insert(
                call.call_id.clone(),
                CallRoot {
                    trace: TraceId::for_call(&call.call_id),
                    report: call.clone(),
                    last_activity: call.started,
                    over: false,
                    from: None,
                    to: None,
                },
            );
        }
        if let Some(root) = self.calls.get_mut(&call.call_id) {
            root.report = call.clone();
            root.over |= call.state.is_terminal();
        }
        if call.closed {
            self.on_call_closed(call, out);
        }
    }

    /// The call tracker's last report: the call's root, then one span per
    /// media stream direction under it, and RTP metrics. The report waits
    /// for the RTP statistics to settle, so the root ends here rather than
    /// at the BYE; its end is still the call's last SIP.
    fn on_call_closed(&mut self, call: &Arc<Call>, out: &mut Vec<SpanRecord>) {
        if let Some(root) = self.calls.remove(&call.call_id) {
            self.emit_root(&call.call_id, root, out);
        }
        for (i, d) in media_directions(call).iter().enumerate() {
            if let Some(o) = &d.report.observed {
                self.metrics.record_rtp(
                    &d.stream.codec(),
                    o.delivered(),
                    u64::try_from(o.lost).unwrap_or(0),
                    d.report.mos,
                );
            }
            if i >= self.config.max_media_spans_per_call {
                self.stats.media_spans_dropped += 1;
                continue;
            }
            out.push(media_span(
                call,
                d,
                &self.observer,
                &self.config.media_checks,
            ));
            self.stats.media_spans += 1;
            self.stats.spans += 1;
        }
    }

    /// The root span `SIP call`, from the INVITE to the call's last SIP
    /// (the response to its BYE, its final failure, ...);
    /// `sipscope.call.end` is the tracker's [`CallEnd`] (`open_at_end`
    /// when the input stopped before the call's last report).
    fn emit_root(&mut self, cid: &str, root: CallRoot, out: &mut Vec<SpanRecord>) {
        let call = &root.report;
        let end = call.end.unwrap_or(CallEnd::CaptureEnded);
        let id = SpanId::for_root(root.trace, &self.observer);
        let mut span = SpanRecord::new(
            root.trace,
            id,
            None,
            names::CALL,
            SpanKind::Internal,
            call.started,
            root.last_activity.max(call.started),
        )
        .with(attr::SIP_CALL_ID, cid)
        .with(attr::OBSERVER, self.observer.as_str())
        .with(CALL_END, end.label());
        if let Some(f) = root.from {
            span = span.with(attr::SIP_FROM, f);
        }
        if let Some(t) = root.to {
            span = span.with(attr::SIP_TO, t);
        }
        let decided = call.decided_status();
        if let Some(code) = decided {
            span = span.with(attr::SIP_STATUS_CODE, code);
        }
        let challenge = call.status.unwrap_or_default();
        span.status = match (end, decided) {
            (CallEnd::Rejected, Some(code)) => Status::Error(format!("call failed: INVITE {code}")),
            (CallEnd::NoAnswer, _) => Status::Error("INVITE got no final response".into()),
            (CallEnd::ChallengeNotRetried, _) => {
                Status::Error(format!("call failed: INVITE {challenge}, not retried"))
            }
            (_, Some(code)) if (200..300).contains(&code) => Status::Ok,
            _ => Status::Unset,
        };
        match end {
            CallEnd::Evicted => self.stats.dialogs_evicted += 1,
            CallEnd::Idle => self.stats.dialogs_idle += 1,
            CallEnd::CaptureEnded => self.stats.dialogs_open_at_end += 1,
            _ => {}
        }
        self.stats.call_traces += 1;
        self.stats.spans += 1;
        out.push(span);
    }
}

/// Attribute on a call's root span: how the call trace ended.
pub const CALL_END: &str = "sipscope.call.end";

#[cfg(test)]
#[path = "trace_builder_tests.rs"]
mod tests;

#[cfg(test)]
#[path = "trace_builder_media_tests.rs"]
mod media_tests;

#[cfg(test)]
#[path = "trace_builder_lifecycle_tests.rs"]
mod lifecycle_tests;
