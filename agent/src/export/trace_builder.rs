//! Groups the pipeline's transactions into traces (docs/tracing.md):
//! one trace per call (INVITE dialog, RFC 3261 §12) with a root span, a
//! child per transaction and, from the call's closed report, a child per
//! media stream direction ([`super::media_spans`]); one trace per
//! registration attempt
//! ([`spans_for_registration`]); any other transaction is a one-span trace
//! of its own, keyed by its Call-ID.
//!
//! Sans-IO like the pipeline: events in, finished [`SpanRecord`]s out, time
//! is the packet clock. Every table is bounded and its evictions counted.
//! Metrics (transactions, response times, registrations, diagnoses) are
//! recorded on the way through the given [`Metrics`] (a no-op without an
//! OTLP endpoint).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;

use super::media_spans::{media_directions, media_span};
use super::otel::Metrics;
use super::sip_spans::{TransactionEnd, spans_for_registration_with, transaction_span};
use super::spans::{SpanId, SpanKind, SpanRecord, Status, TraceId, attr, names};
use crate::analysis::calls::Call;
use crate::analysis::media::MediaCheckConfig;
use crate::analysis::registration::RegistrationAttempt;
use crate::pipeline::Event;
use crate::sip::{Method, Transaction, TransactionId};
use crate::time::Timestamp;

/// Bounds and timers of the trace builder.
#[derive(Clone, Debug)]
pub struct TraceConfig {
    /// Open calls tracked at once; the oldest is closed (and counted) first.
    pub max_dialogs: usize,
    /// A call with no SIP message for this long (packet clock) is closed.
    pub dialog_idle_timeout: Duration,
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
            max_dialogs: 10_000,
            dialog_idle_timeout: Duration::from_secs(3600),
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
    /// Calls closed because the dialog table was full.
    pub dialogs_evicted: u64,
    /// Calls closed after `dialog_idle_timeout` without SIP.
    pub dialogs_idle: u64,
    /// Calls still open at the end of input.
    pub dialogs_open_at_end: u64,
    /// Retransmission times not kept (table full); the count attribute
    /// `sip.retransmissions` stays exact.
    pub retransmission_times_dropped: u64,
    /// Spans of media stream directions (RTP statistics).
    pub media_spans: u64,
    /// Media spans not built: past `max_media_spans_per_call`.
    pub media_spans_dropped: u64,
}

struct Dialog {
    trace: TraceId,
    /// Generation, to tell a stale entry of the eviction queue.
    generation: u64,
    invite_cseq: Option<u32>,
    started: Timestamp,
    last_activity: Timestamp,
    /// Final status of the initial INVITE.
    answer: Option<u16>,
    /// The initial INVITE drew 401/407 (`INVITE 407`): the call goes on
    /// with the authenticated retry (RFC 3261 §22.2), same Call-ID.
    challenged: Option<String>,
    failed: Option<String>,
    from: Option<String>,
    to: Option<String>,
}

/// See the module documentation.
pub struct TraceBuilder {
    observer: String,
    config: TraceConfig,
    metrics: Metrics,
    dialogs: HashMap<String, Dialog>,
    /// Call-IDs in order of creation (lazy deletion by generation).
    dialog_order: VecDeque<(String, u64)>,
    generation: u64,
    retransmissions: HashMap<TransactionId, Vec<Timestamp>>,
    next_idle_scan: Timestamp,
    stats: TraceStats,
}

/// Retransmission times kept per transaction (more are counted only).
const MAX_RETRANSMISSION_EVENTS: usize = 16;

impl TraceBuilder {
    /// `observer`: the agent's name in span ids (the exported host.name,
    /// see [`super::otel::Telemetry::observer`]).
    pub fn new(observer: impl Into<String>, config: TraceConfig, metrics: Metrics) -> Self {
        Self {
            observer: observer.into(),
            config,
            metrics,
            dialogs: HashMap::new(),
            dialog_order: VecDeque::new(),
            generation: 0,
            retransmissions: HashMap::new(),
            next_idle_scan: Timestamp(0),
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
                let Some(cid) = m.message.call_id() else {
                    return;
                };
                if let Some(d) = self.dialogs.get_mut(cid.as_ref()) {
                    d.last_activity = d.last_activity.max(ts);
                } else if m.message.method() == Some(&Method::Invite)
                    && m.message.is_request()
                    && m.message.to_tag().is_none()
                {
                    let cid = cid.into_owned();
                    let cseq = m.message.cseq().map(|c| c.number);
                    let from = m.message.header("From");
                    let to = m.message.header("To");
                    self.open_dialog(cid, ts, cseq, from, to, out);
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
            Event::Call(c) if c.closed => self.on_call_closed(c, out),
            Event::Malformed(_) | Event::Call(_) => {}
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

    /// Timers on the packet clock: idle calls and abandoned challenged
    /// registrations are closed. Cheap to call per packet (scans at most
    /// once per second of packet time).
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<SpanRecord>) {
        if now < self.next_idle_scan {
            return;
        }
        self.next_idle_scan = now + Duration::from_secs(1);
        let idle = self.config.dialog_idle_timeout;
        let expired: Vec<String> = self
            .dialogs
            .iter()
            .filter(|(_, d)| now.since(d.last_activity) >= idle && now > d.last_activity)
            .map(|(k, _)| k.clone())
            .collect();
        for cid in expired {
            self.stats.dialogs_idle += 1;
            self.close_dialog(&cid, "idle", out);
        }
    }

    /// End of input: close every open call and pending registration.
    pub fn finish(&mut self, out: &mut Vec<SpanRecord>) {
        let open: Vec<String> = self.dialogs.keys().cloned().collect();
        for cid in open {
            self.stats.dialogs_open_at_end += 1;
            self.close_dialog(&cid, "open_at_end", out);
        }
        self.retransmissions.clear();
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
        if !self.dialogs.contains_key(&cid) && t.method == Method::Invite {
            // The INVITE itself was not seen (capture started later, or
            // only responses were captured): open the call from here.
            let req = t.request.as_ref().map(|r| &r.message);
            let from = req.and_then(|m| m.header("From"));
            let to = req.and_then(|m| m.header("To"));
            self.open_dialog(cid.clone(), t.first_seen, Some(t.cseq), from, to, out);
        }
        let observer = self.observer.clone();
        let Some(d) = self.dialogs.get_mut(&cid) else {
            // Outside any call: a trace of its own (OPTIONS pings,
            // MESSAGE, out-of-dialog SUBSCRIBE, ...).
            let trace = TraceId::for_call(&cid);
            let span = transaction_span(t, end, trace, None, &observer, &retrans);
            self.emit_transaction(span, out);
            return;
        };
        let parent = SpanId::for_root(d.trace, &observer);
        let span = transaction_span(t, end, d.trace, Some(parent), &observer, &retrans);
        d.last_activity = d.last_activity.max(span.end);
        let status = t.final_status();
        let initial = t.method == Method::Invite && d.invite_cseq.is_none_or(|c| c == t.cseq);
        let mut close = None;
        if initial && d.answer.is_none() {
            match status {
                // Not the call's outcome: the retry (a new INVITE
                // transaction, higher CSeq) is, so it counts as initial.
                Some(401 | 407) => {
                    d.invite_cseq = None;
                    d.challenged = Some(span.name.to_string());
                }
                Some(code) => {
                    d.invite_cseq = Some(t.cseq);
                    d.answer = Some(code);
                    if code >= 300 {
                        d.failed = Some(format!("call failed: {}", span.name));
                        close = Some("failed");
                    }
                }
                None => {
                    d.invite_cseq = Some(t.cseq);
                    d.failed = Some("INVITE got no final response".into());
                    close = Some("no_answer");
                }
            }
        } else if t.method == Method::Bye {
            // RFC 3261 §15.1.1: the session ends with the BYE, whatever
            // the response; a 2xx is the normal case.
            close = Some("bye");
        } else if t.method == Method::Cancel && d.answer.is_none() {
            // The INVITE's 487 will close it; nothing to do here.
        }
        self.emit_transaction(span, out);
        if let Some(how) = close {
            self.close_dialog(&cid, how, out);
        }
    }

    fn emit_transaction(&mut self, span: SpanRecord, out: &mut Vec<SpanRecord>) {
        self.stats.transaction_spans += 1;
        self.stats.spans += 1;
        out.push(span);
    }

    fn open_dialog(
        &mut self,
        cid: String,
        ts: Timestamp,
        invite_cseq: Option<u32>,
        from: Option<String>,
        to: Option<String>,
        out: &mut Vec<SpanRecord>,
    ) {
        while self.dialogs.len() >= self.config.max_dialogs.max(1) {
            let Some((old, generation)) = self.dialog_order.pop_front() else {
                break;
            };
            if self
                .dialogs
                .get(&old)
                .is_some_and(|d| d.generation == generation)
            {
                self.stats.dialogs_evicted += 1;
                self.close_dialog(&old, "evicted", out);
            }
        }
        self.generation += 1;
        self.dialog_order.push_back((cid.clone(), self.generation));
        // Ended dialogs leave stale queue entries: compact now and then so
        // the queue stays within twice the table bound.
        if self.dialog_order.len() > 2 * self.config.max_dialogs.max(1) {
            let live = &self.dialogs;
            self.dialog_order
                .retain(|(k, g)| live.get(k).is_some_and(|d| d.generation == *g));
        }
        self.dialogs.insert(
            cid.clone(),
            Dialog {
                trace: TraceId::for_call(&cid),
                generation: self.generation,
                invite_cseq,
                started: ts,
                last_activity: ts,
                answer: None,
                challenged: None,
                failed: None,
                from,
                to,
            },
        );
    }

    /// The call tracker's last report: one span per media stream direction
    /// under the call's root, and RTP metrics. The root itself is not
    /// touched: it was emitted when the BYE completed (the report waits
    /// for the RTP statistics to settle) or will be when the dialog ends;
    /// its id is deterministic, so the order does not matter. A call
    /// whose INVITE was challenged and never retried ends here.
    fn on_call_closed(&mut self, call: &Arc<Call>, out: &mut Vec<SpanRecord>) {
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
        if let Some(d) = self.dialogs.get_mut(&call.call_id)
            && d.answer.is_none()
            && let Some(challenge) = &d.challenged
        {
            d.failed = Some(format!("call failed: {challenge}, not retried"));
            self.close_dialog(&call.call_id, "failed", out);
        }
    }

    /// The root span `SIP call` of a dialog, from the INVITE to how it
    /// ended (`sipscope.call.end`: bye, failed, no_answer, idle, evicted,
    /// open_at_end).
    fn close_dialog(&mut self, cid: &str, how: &'static str, out: &mut Vec<SpanRecord>) {
        let Some(d) = self.dialogs.remove(cid) else {
            return;
        };
        let id = SpanId::for_root(d.trace, &self.observer);
        let mut root = SpanRecord::new(
            d.trace,
            id,
            None,
            names::CALL,
            SpanKind::Internal,
            d.started,
            d.last_activity.max(d.started),
        )
        .with(attr::SIP_CALL_ID, cid)
        .with(attr::OBSERVER, self.observer.as_str())
        .with(CALL_END, how);
        if let Some(f) = d.from {
            root = root.with(attr::SIP_FROM, f);
        }
        if let Some(t) = d.to {
            root = root.with(attr::SIP_TO, t);
        }
        if let Some(code) = d.answer {
            root = root.with(attr::SIP_STATUS_CODE, code);
        }
        root.status = match (d.failed, d.answer) {
            (Some(why), _) => Status::Error(why),
            (None, Some(code)) if (200..300).contains(&code) => Status::Ok,
            _ => Status::Unset,
        };
        self.stats.call_traces += 1;
        self.stats.spans += 1;
        out.push(root);
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
