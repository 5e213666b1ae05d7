//! The call tracker: follows INVITE dialogs through the messages and
//! transaction timeouts it is given (RFC 3261 §13-15), their offer/answer
//! exchanges (RFC 3264), and judges the RTP linked to each negotiated
//! stream.
//!
//! When findings are judged (packet clock, so live and offline agree):
//! - `nat.private_sdp` as soon as the SDP is seen;
//! - `media.no_rtp` / `media.one_way` once the grace period after the
//!   answer is covered by RTP statistics ([`RtpObservations::observed_until`]:
//!   the capture's own clock for a pcap, the last kernel poll live);
//! - `media.quality` when the call is over and its statistics complete.
//!
//! The tracker alone decides a call's lifecycle ([`CallEnd`]): the trace
//! builder turns its reports into the call's spans and keeps no timers or
//! table of its own. A call's first `Finding::Call` report is sent when its
//! initial INVITE is seen (state `calling`); it ends on BYE, a failed or
//! cancelled INVITE, a timeout, the idle timeout, eviction from the full
//! table, or the end of input; its last report has `closed` set.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};

use super::call::{Call, CallEnd, CallState, Party, StreamReport};
use super::judge::{self, Judged};
use super::negotiation::{Carrier, Exchange, Negotiation, Sdp};
use super::{CallConfig, CallStats};
use crate::analysis::finding::Finding;
use crate::analysis::media::{FlowSnapshot, RtpObservations, RtpSource, parse_sdp};
use crate::analysis::nat::{self, RequestAddresses};
use crate::diagnosis::{Code, Diagnosis, MessageRef};
use crate::sip::{MessageRecord, Method, Transaction, contact};
use crate::time::Timestamp;

struct OpenCall {
    call: Call,
    generation: u64,
    caller_tag: Option<Vec<u8>>,
    /// CSeq of the latest initial INVITE (a retry after 401/407 raises it).
    invite_cseq: u32,
    negotiation: Negotiation,
    /// Findings already raised: (code, m-line, detail).
    raised: HashSet<(Code, usize, String)>,
    grace_judged: bool,
    cancel_seen: bool,
    last_sip: Timestamp,
}

pub(crate) struct CallTracker {
    config: CallConfig,
    calls: HashMap<String, OpenCall>,
    /// Creation order, for eviction of the oldest when full.
    order: VecDeque<(u64, String)>,
    /// Answered calls waiting for their grace period to be covered.
    grace_due: BTreeSet<(Timestamp, String)>,
    /// Ended calls waiting for their statistics to be complete.
    closing: BTreeSet<(Timestamp, String)>,
    observations: RtpObservations,
    stats: CallStats,
    next_generation: u64,
    last_sweep: Timestamp,
}

/// How often idle and abandoned calls are looked for (packet clock).
const SWEEP_EVERY: std::time::Duration = std::time::Duration::from_secs(10);

impl CallTracker {
    /// A reloaded configuration's media grace and quality thresholds:
    /// calls answered from now on wait the new grace, every call ending
    /// from now on is judged by the new thresholds.
    pub(crate) fn retune(&mut self, config: &CallConfig) {
        self.config.checks.grace = config.checks.grace;
        self.config.checks.thresholds = config.checks.thresholds;
    }

    pub(crate) fn new(config: CallConfig) -> Self {
        Self {
            observations: RtpObservations::new(config.observations.clone()),
            config,
            calls: HashMap::new(),
            order: VecDeque::new(),
            grace_due: BTreeSet::new(),
            closing: BTreeSet::new(),
            stats: CallStats::default(),
            next_generation: 0,
            last_sweep: Timestamp(0),
        }
    }

    pub(crate) fn stats(&self) -> CallStats {
        CallStats {
            open: self.calls.len() as u64,
            rtp: self.observations.stats(),
            ..self.stats.clone()
        }
    }

    /// A UDP datagram of a capture that may be RTP.
    pub(crate) fn observe_rtp(
        &mut self,
        ts: Timestamp,
        src: std::net::SocketAddr,
        dst: std::net::SocketAddr,
        payload: &[u8],
    ) {
        self.observations.observe_packet(ts, src, dst, payload);
    }

    /// The kernel's RTP flows as of `now`.
    pub(crate) fn update_flows(
        &mut self,
        now: Timestamp,
        flows: &[FlowSnapshot],
        out: &mut Vec<Finding>,
    ) {
        self.observations.update_flows(now, flows);
        self.run_due(out);
    }

    /// A finding of another analysis about a call (its `call_id` evidence
    /// names it, e.g. `call.inbound_blocked`, `fw.local_drop`) joins the
    /// call's list of codes; others, and repeats, are ignored.
    pub(crate) fn note_finding(&mut self, d: &Diagnosis) {
        let Some(id) = d.evidence.iter().find(|e| e.name == "call_id") else {
            return;
        };
        if let Some(c) = self.calls.get_mut(id.value.as_str())
            && !c.call.diagnoses.contains(&d.code)
        {
            c.call.diagnoses.push(d.code);
        }
    }

    /// Every parsed message: an initial INVITE opens a call; the dialog's
    /// requests and responses move it on (RFC 3261 §13-15) and their SDP
    /// negotiates its media (RFC 3264). Retransmissions change nothing.
    pub(crate) fn on_message(&mut self, r: &MessageRecord, out: &mut Vec<Finding>) {
        if r.retransmission {
            return;
        }
        let m = &r.message;
        let (Some(call_id), Some(cseq)) = (m.call_id(), m.cseq()) else {
            return;
        };
        let initial_invite = m.method() == Some(&Method::Invite) && m.to_tag().is_none();
        if !self.calls.contains_key(call_id.as_ref()) {
            if !initial_invite {
                return;
            }
            self.open(call_id.to_string(), r, out);
        }
        let ts = r.meta.ts;
        // RTP still in flight after a pcap's BYE is waited for; a kernel
        // poll after the BYE already has it.
        let settle = match self.observations.source() {
            RtpSource::Kernel => std::time::Duration::ZERO,
            _ => self.config.settle,
        };
        let Some(c) = self.calls.get_mut(call_id.as_ref()) else {
            return;
        };
        c.last_sip = ts;
        let mut changed = false;
        let sender = if m.is_request() {
            party_of_request(c, m.from_tag())
        } else {
            party_of_request(c, m.from_tag()).other()
        };
        if m.is_request() {
            match m.method() {
                Some(Method::Invite) if initial_invite && cseq.number > c.invite_cseq => {
                    // The retry after a 401/407 challenge: same call
                    // (RFC 3261 §22.2). The challenge is answered: until
                    // the retry's own final response the call is not
                    // "challenged", so a long ring after it is no abandon.
                    c.invite_cseq = cseq.number;
                    if !c.call.state.is_terminal() && c.call.answered.is_none() {
                        c.call.status = None;
                    }
                }
                Some(Method::Bye) if !c.call.state.is_terminal() => {
                    c.call.state = CallState::Ended;
                    c.call.ended = Some(ts);
                    c.call.end_reason = Some(format!("BYE from the {}", sender.as_str()));
                    c.call.end = Some(CallEnd::Bye);
                    self.closing.insert((ts + settle, call_id.to_string()));
                    changed = true;
                }
                Some(Method::Cancel) => c.cancel_seen = true,
                _ => {}
            }
        } else if let Some(status) = m.status()
            && cseq.method == Method::Invite
            && cseq.number == c.invite_cseq
            && !c.call.state.is_terminal()
        {
            changed = on_invite_response(c, status, m.reason_phrase().as_deref(), ts);
            if c.call.state == CallState::Answered && changed {
                self.stats.answered += 1;
                self.grace_due
                    .insert((ts + self.config.checks.grace, call_id.to_string()));
            }
            if c.call.state.is_terminal() {
                self.closing.insert((ts + settle, call_id.to_string()));
            }
        } else if let Some(status) = m.status()
            && status >= 300
        {
            c.negotiation.on_failure(cseq.number);
        }
        // The offer/answer carried by this message.
        let carrier = match (m.method(), m.status()) {
            (Some(Method::Ack), _) => Some(Carrier::Ack),
            (Some(Method::Invite | Method::Update | Method::Prack), _) => Some(Carrier::Request),
            (None, Some(100..=299))
                if matches!(cseq.method, Method::Invite | Method::Update | Method::Prack) =>
            {
                Some(Carrier::Response)
            }
            _ => None,
        };
        if let Some(carrier) = carrier
            && is_sdp(m.content_type(), m.body())
        {
            match parse_sdp(m.body()) {
                Ok(session) => {
                    let sdp = Sdp {
                        session,
                        party: sender,
                        source: r.meta.src,
                    };
                    let mut found = Vec::new();
                    judge::private_sdp(&c.call.call_id, &sdp, &mut found);
                    raise(c, found, ts, out);
                    if let Some(ex) = c.negotiation.on_sdp(sdp, carrier, cseq.number) {
                        apply_exchange(c, ex);
                        changed = true;
                    }
                }
                Err(_) => self.stats.sdp_unreadable += 1,
            }
        }
        if changed {
            c.call.at = ts;
            out.push(Finding::Call(c.call.clone()));
        }
    }

    fn open(&mut self, call_id: String, r: &MessageRecord, out: &mut Vec<Finding>) {
        while self.calls.len() >= self.config.max_calls.max(1) {
            let Some((generation, id)) = self.order.pop_front() else {
                break;
            };
            if self
                .calls
                .get(&id)
                .is_some_and(|c| c.generation == generation)
            {
                self.stats.evicted += 1;
                self.close(&id, r.meta.ts, Some(CallEnd::Evicted), out);
            }
        }
        let m = &r.message;
        let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8_lossy(b).into_owned());
        self.next_generation += 1;
        self.stats.calls += 1;
        self.order
            .push_back((self.next_generation, call_id.clone()));
        // Closed calls leave their entry behind; drop those once they
        // outnumber the live ones, so the queue stays bounded.
        if self.order.len() > 2 * self.calls.len() + 64 {
            let calls = &self.calls;
            self.order.retain(|(g, id)| {
                calls.get(id).is_some_and(|c| c.generation == *g) || *g == self.next_generation
            });
        }
        let key = call_id.clone();
        self.calls.insert(
            call_id.clone(),
            OpenCall {
                call: Call {
                    call_id,
                    from: text(m.from_uri()).unwrap_or_default(),
                    to: text(m.to_uri()).unwrap_or_default(),
                    caller: r.meta.src,
                    callee: r.meta.dst,
                    state: CallState::Calling,
                    started: r.meta.ts,
                    answered: None,
                    ended: None,
                    status: None,
                    end_reason: None,
                    end: None,
                    streams: Vec::new(),
                    diagnoses: Vec::new(),
                    closed: false,
                    at: r.meta.ts,
                },
                generation: self.next_generation,
                caller_tag: m.from_tag().map(<[u8]>::to_vec),
                invite_cseq: m.cseq().map_or(0, |c| c.number),
                negotiation: Negotiation::default(),
                raised: HashSet::new(),
                grace_judged: false,
                cancel_seen: false,
                last_sip: r.meta.ts,
            },
        );
        // The caller's Contact is where the callee sends its BYE and
        // re-INVITEs: private behind a NAT, they go nowhere (RFC 3261
        // §12.1.2 remote target). The same check as for a REGISTER.
        let contacts = m.contacts();
        let found = nat::check_request(
            r.meta.ts,
            &RequestAddresses {
                method: "INVITE",
                source: r.meta.src,
                vias: &m.vias(),
                contacts: &contact::host_ports(&contacts),
            },
        );
        let here = MessageRef::of(r);
        let Some(c) = self.calls.get_mut(&key) else {
            return;
        };
        for d in found {
            c.call.diagnoses.push(d.code);
            let d = d
                .in_message(&here)
                .with_source(r.meta.src.ip())
                .about(Some(&c.call.call_id), None);
            out.push(Finding::Diagnosis(d));
        }
        // The call started: its trace's root opens here (RFC 3261 §13.2.1,
        // the initial INVITE), before any transaction of it completes.
        out.push(Finding::Call(c.call.clone()));
    }

    /// A transaction ended without a final response: an unanswered
    /// initial INVITE fails its call (RFC 3261 §17.1.1.2 Timer B).
    pub(crate) fn on_timed_out(&mut self, t: &Transaction, out: &mut Vec<Finding>) {
        if t.method != Method::Invite {
            return;
        }
        let Some(req) = &t.request else { return };
        let Some(call_id) = req.message.call_id() else {
            return;
        };
        let Some(c) = self.calls.get_mut(call_id.as_ref()) else {
            return;
        };
        if t.cseq != c.invite_cseq || c.call.answered.is_some() || c.call.state.is_terminal() {
            return;
        }
        let ts = t.last_seen;
        c.call.state = CallState::Failed;
        c.call.ended = Some(ts);
        c.call.end_reason = Some(reason(CallEnd::NoAnswer).into());
        c.call.end = Some(CallEnd::NoAnswer);
        c.call.at = ts;
        out.push(Finding::Call(c.call.clone()));
        self.closing.insert((ts, call_id.to_string()));
    }

    /// Timers up to `now` on the packet clock.
    pub(crate) fn tick(&mut self, now: Timestamp, out: &mut Vec<Finding>) {
        self.observations.advance(now);
        self.run_due(out);
        if now.since(self.last_sweep) >= SWEEP_EVERY {
            self.last_sweep = now;
            self.sweep(now, out);
        }
    }

    /// Judges what the RTP statistics now cover.
    fn run_due(&mut self, out: &mut Vec<Finding>) {
        let until = self.observations.observed_until();
        while let Some((due, id)) = self.grace_due.first().cloned() {
            if due > until {
                break;
            }
            self.grace_due.pop_first();
            self.judge_grace(&id, until, out);
        }
        while let Some((due, id)) = self.closing.first().cloned() {
            if due > until {
                break;
            }
            self.closing.pop_first();
            if self.calls.contains_key(&id) {
                self.close(&id, due, None, out);
            }
        }
    }

    fn sweep(&mut self, now: Timestamp, out: &mut Vec<Finding>) {
        let idle = self.config.idle_timeout;
        let challenge = self.config.challenge_timeout;
        let stale: Vec<(String, CallEnd)> = self
            .calls
            .iter()
            .filter(|(_, c)| !c.call.state.is_terminal())
            .filter_map(|(id, c)| {
                let silent = now.since(c.last_sip);
                if silent >= idle {
                    Some((id.clone(), CallEnd::Idle))
                } else if challenged(c) && silent >= challenge {
                    Some((id.clone(), CallEnd::ChallengeNotRetried))
                } else {
                    None
                }
            })
            .collect();
        for (id, end) in stale {
            self.stats.idle_closed += 1;
            self.close(&id, now, Some(end), out);
        }
    }

    fn judge_grace(&mut self, id: &str, until: Timestamp, out: &mut Vec<Finding>) {
        let Some(c) = self.calls.get_mut(id) else {
            return;
        };
        if c.grace_judged || c.call.state != CallState::Answered {
            return;
        }
        c.grace_judged = true;
        if !self.observations.measures_rtp() {
            return;
        }
        refresh_media(c, &self.observations, &self.config);
        let found = judge::flow_presence(&c.call, until, &self.config.checks, &self.observations);
        raise(c, found, until, out);
    }

    /// The last report of a call: final statistics and findings. `end`:
    /// why a call still up is ended now (ignored for one already over).
    fn close(&mut self, id: &str, at: Timestamp, end: Option<CallEnd>, out: &mut Vec<Finding>) {
        let Some(mut c) = self.calls.remove(id) else {
            return;
        };
        if !c.call.state.is_terminal() {
            c.call.ended = Some(at);
            c.call.end_reason = end.map(|e| reason(e).to_owned());
            c.call.end = end;
            if end == Some(CallEnd::ChallengeNotRetried) {
                // The 401/407 was the INVITE's last final response: the
                // call failed, as its trace has always said.
                c.call.state = CallState::Failed;
            } else if c.call.answered.is_some() && end != Some(CallEnd::CaptureEnded) {
                // The tracker ends it (idle, evicted). One still up when
                // the input ended stays answered: nobody hung up, and it
                // is counted as `open_at_end`.
                c.call.state = CallState::Ended;
            }
        }
        match c.call.state {
            CallState::Ended => self.stats.ended += 1,
            CallState::Failed => self.stats.failed += 1,
            CallState::Cancelled => self.stats.cancelled += 1,
            _ => {}
        }
        if self.observations.measures_rtp() {
            refresh_media(&mut c, &self.observations, &self.config);
            let end = c.call.ended.unwrap_or(at);
            let mut found = Vec::new();
            if !c.grace_judged && c.call.answered.is_some() {
                c.grace_judged = true;
                found = judge::flow_presence(&c.call, end, &self.config.checks, &self.observations);
            }
            found.extend(judge::quality(&c.call, end, &self.config.checks));
            raise(&mut c, found, at.max(end), out);
        } else if c.call.answered.is_some() {
            self.stats.media_not_judged += 1;
        }
        c.call.closed = true;
        c.call.at = at.max(c.call.ended.unwrap_or(at));
        out.push(Finding::Call(c.call));
    }

    /// Table sizes: (open calls, eviction-queue entries).
    pub(crate) fn in_flight(&self) -> (usize, usize) {
        (self.calls.len(), self.order.len())
    }

    /// The calls up now, with their media as measured so far and `at` set
    /// to `now` (for a live view; nothing is judged or emitted).
    pub(crate) fn calls_up(&self, now: Timestamp) -> Vec<Call> {
        let mut up: Vec<Call> = self
            .calls
            .values()
            .filter(|c| !c.call.state.is_terminal())
            .map(|c| {
                let mut call = c.call.clone();
                for s in &mut call.streams {
                    judge::link(
                        s,
                        &self.observations,
                        call.started,
                        None,
                        self.config.checks.assumptions,
                    );
                }
                call.at = now.max(call.at);
                call
            })
            .collect();
        up.sort_by_key(|c| c.started);
        up
    }

    /// End of input: every open call gets its last report.
    pub(crate) fn finish(&mut self, out: &mut Vec<Finding>) {
        let until = self.observations.observed_until();
        let due: Vec<(Timestamp, String)> =
            std::mem::take(&mut self.grace_due).into_iter().collect();
        for (_, id) in due {
            self.judge_grace(&id, until, out);
        }
        let mut ids: Vec<(Timestamp, String)> = self
            .calls
            .iter()
            .map(|(id, c)| (c.call.started, id.clone()))
            .collect();
        ids.sort();
        for (_, id) in ids {
            let Some(c) = self.calls.get(&id) else {
                continue;
            };
            // A challenge still unanswered when the input ends was given
            // up, like a registration's (RFC 3261 §22.2).
            let end = if challenged(c) {
                CallEnd::ChallengeNotRetried
            } else {
                CallEnd::CaptureEnded
            };
            if !c.call.state.is_terminal() && end == CallEnd::CaptureEnded {
                self.stats.open_at_end += 1;
            }
            let at = until.max(c.last_sip);
            self.close(&id, at, Some(end), out);
        }
        self.closing.clear();
    }
}

/// The latest initial INVITE drew 401/407 and was not retried yet.
fn challenged(c: &OpenCall) -> bool {
    !c.call.state.is_terminal() && matches!(c.call.status, Some(401 | 407))
}

/// `end_reason` of a call the tracker ends itself; where a message ends
/// it (BYE, a final response), the reason names that message instead.
fn reason(end: CallEnd) -> &'static str {
    match end {
        CallEnd::Idle => "idle: no SIP for the idle timeout",
        CallEnd::ChallengeNotRetried => "challenged and never retried",
        CallEnd::Evicted => "evicted: the call table is full",
        CallEnd::CaptureEnded => "capture ended",
        CallEnd::Bye => "BYE",
        CallEnd::Rejected => "rejected",
        CallEnd::NoAnswer => "no final response to the INVITE",
    }
}

fn party_of_request(c: &OpenCall, from_tag: Option<&[u8]>) -> Party {
    match (&c.caller_tag, from_tag) {
        (Some(caller), Some(tag)) if caller.as_slice() != tag => Party::Callee,
        _ => Party::Caller,
    }
}

/// Applies a response to the initial INVITE; returns whether the state
/// changed.
fn on_invite_response(c: &mut OpenCall, status: u16, reason: Option<&str>, ts: Timestamp) -> bool {
    let before = c.call.state;
    match status {
        100 => {}
        101..=199 => {
            if c.call.state == CallState::Calling {
                c.call.state = CallState::Ringing;
            }
        }
        200..=299 => {
            if c.call.answered.is_none() {
                c.call.answered = Some(ts);
                c.call.status = Some(status);
                c.call.state = CallState::Answered;
            }
        }
        401 | 407 => c.call.status = Some(status),
        _ => {
            c.call.status = Some(status);
            c.call.ended = Some(ts);
            c.call.end_reason = Some(format!("{status} {}", reason.unwrap_or_default()));
            c.call.end = Some(CallEnd::Rejected);
            c.call.state = if status == 487 || c.cancel_seen {
                CallState::Cancelled
            } else {
                CallState::Failed
            };
            c.negotiation.on_failure(c.invite_cseq);
        }
    }
    c.call.state != before
}

fn is_sdp(content_type: Option<&[u8]>, body: &[u8]) -> bool {
    if body.is_empty() {
        return false;
    }
    match content_type {
        Some(ct) => ct.to_ascii_lowercase().windows(3).any(|w| w == b"sdp"),
        // No Content-Type: sniff the SDP version line.
        None => body.starts_with(b"v=0"),
    }
}

/// Replaces the streams an exchange negotiated (by m-line index).
fn apply_exchange(c: &mut OpenCall, ex: Exchange) {
    if ex.answer.party == Party::Callee
        && ex.offer.party == Party::Caller
        && c.call.state == CallState::Ringing
    {
        c.call.state = CallState::EarlyMedia;
    }
    for n in crate::analysis::media::negotiated_streams(&ex.offer.session, &ex.answer.session) {
        let report = StreamReport::new(n, ex.offer.party);
        match c
            .call
            .streams
            .iter_mut()
            .find(|s| s.negotiated.index == report.negotiated.index)
        {
            Some(s) => *s = report,
            None => c.call.streams.push(report),
        }
    }
}

/// Links the current flows to each stream and fills its directions.
fn refresh_media(c: &mut OpenCall, observations: &RtpObservations, config: &CallConfig) {
    let window_start = c.call.started;
    let window_end = c.call.ended;
    for s in &mut c.call.streams {
        judge::link(
            s,
            observations,
            window_start,
            window_end,
            config.checks.assumptions,
        );
    }
}

fn raise(c: &mut OpenCall, found: Vec<Judged>, at: Timestamp, out: &mut Vec<Finding>) {
    for j in found {
        if !c.raised.insert((j.code, j.m_line, j.detail.clone())) {
            continue;
        }
        c.call.diagnoses.push(j.code);
        let d = j
            .into_diagnosis(at)
            .with_source(c.call.caller.ip())
            .about(Some(&c.call.call_id), None);
        out.push(Finding::Diagnosis(d));
    }
}
