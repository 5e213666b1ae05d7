//! Reachability: requests nobody answered (`net.no_response`), ICMP
//! destination-unreachable for SIP (`net.icmp_unreachable`) and SIP/RTP
//! the local firewall dropped (`fw.local_drop`).
//!
//! A client transaction that gets no final response before Timer B/F
//! (RFC 3261 §17.1.1.2, §17.1.2.2: 64*T1) on the packet clock is the
//! observable symptom; the retransmission schedule (Timer A/E) is the
//! evidence that the sender really tried. Findings are raised once per
//! (destination, method) or (flow, reason) per window; repeats are
//! counted, not raised. Every table is bounded and evictions counted.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::finding::Finding;
use crate::analysis::once_per_window::OncePerWindow;
use crate::analysis::unanswered;
use crate::diagnosis::{Code, Diagnosis, Evidence, MessageRef};
use crate::packet::{IcmpUnreachable, Meta};
use crate::sip::{MessageRecord, TimeoutCause, Transaction, TransactionId};
use crate::{packet::DropReason, time::Timestamp};

/// Limits of the reachability analysis.
#[derive(Clone, Debug)]
pub struct ReachabilityConfig {
    /// A finding for the same (destination, method) or (flow, reason) is
    /// raised at most once per window; repeats are counted.
    pub window: Duration,
    /// Open client requests tracked at once (for the send schedule, ICMP
    /// and drop matching); further ones are counted in `untracked`.
    pub max_open: usize,
    /// Send times kept per request (first send + retransmissions).
    pub max_sends: usize,
    /// Suppression entries kept; the oldest is forgotten at the limit.
    pub max_suppressions: usize,
    /// How long a UA waits for a final response (Timer B/F). A completed
    /// transaction is kept this long after its first request so a final
    /// response dropped by the local firewall after the capture point saw
    /// it still explains why the UA gave up. The pipeline sets it from
    /// the transaction timeout.
    pub answer_timeout: Duration,
    /// The source reports packets this host's kernel dropped (live
    /// capture with the drop monitor). Only then does a completed
    /// transaction linger for `answer_timeout`: in a capture file nothing
    /// can later turn an answered request into a finding, and at a busy
    /// PBX's rate the lingering requests and their responses were half of
    /// `analyze`'s memory (12,000 of them at 400 transactions a second).
    pub sees_local_drops: bool,
}

impl Default for ReachabilityConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            max_open: 50_000,
            max_sends: 12,
            max_suppressions: 10_000,
            answer_timeout: Duration::from_secs(32),
            sees_local_drops: true,
        }
    }
}

/// Counters of the reachability analysis.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ReachabilityStats {
    pub no_response: u64,
    pub icmp_unreachable: u64,
    pub local_drops: u64,
    /// Findings not raised because the same one was raised in the window.
    pub suppressed: u64,
    /// Requests not tracked because `max_open` was reached.
    pub untracked: u64,
    /// Suppression entries forgotten at `max_suppressions`.
    pub suppressions_evicted: u64,
    /// ICMP unreachable quoting a SIP datagram no open request matched.
    pub icmp_unmatched: u64,
    /// Dropped SIP messages no open transaction matched.
    pub drops_unmatched: u64,
}

/// What the local firewall did to a transaction's messages.
#[derive(Clone, Debug)]
struct LocalDrop {
    at: Timestamp,
    what: String,
    reason: String,
    /// A firewall rule dropped it (else the kernel for its own reason,
    /// e.g. a full socket receive buffer).
    netfilter: bool,
    count: u32,
    /// A final response was among what was dropped.
    final_response: bool,
}

/// One request this host (or a peer) sent and is waiting on.
#[derive(Debug)]
struct Open {
    request: Arc<MessageRecord>,
    sends: Vec<Timestamp>,
    sends_dropped: u32,
    local_drop: Option<LocalDrop>,
    /// Set when the capture saw the final response (it may still have
    /// been dropped before the UA got it).
    completed: Option<Arc<Transaction>>,
    /// An ICMP unreachable quoted this request: that finding explains it.
    icmp: bool,
}

pub(crate) struct Reachability {
    config: ReachabilityConfig,
    open: HashMap<TransactionId, Open>,
    /// (src, dst) of a request → its transaction, for ICMP matching.
    by_flow: HashMap<(SocketAddr, SocketAddr), TransactionId>,
    /// Finding key → when it was last raised.
    raised: OncePerWindow<String>,
    /// Completed transactions lingering, in completion order, with the
    /// time the UA would give up.
    lingering: VecDeque<(Timestamp, TransactionId)>,
    stats: ReachabilityStats,
}

impl Reachability {
    pub(crate) fn new(config: ReachabilityConfig) -> Self {
        Self {
            raised: OncePerWindow::new(config.window, config.max_suppressions),
            config,
            open: HashMap::new(),
            by_flow: HashMap::new(),
            lingering: VecDeque::new(),
            stats: ReachabilityStats::default(),
        }
    }

    /// Requests tracked now, open or lingering after their answer.
    #[cfg(test)]
    pub(crate) fn tracked(&self) -> usize {
        self.open.len()
    }

    pub(crate) fn stats(&self) -> ReachabilityStats {
        ReachabilityStats {
            suppressed: self.raised.suppressed,
            suppressions_evicted: self.raised.evicted,
            ..self.stats.clone()
        }
    }

    /// A transaction got its first final response: its request lingers
    /// until the UA would have given up, in case this host drops the
    /// response after the capture point saw it; without drops to see, it
    /// is released now.
    pub(crate) fn on_completed(&mut self, t: &Arc<Transaction>) {
        if !self.config.sees_local_drops {
            self.close(t.id);
            return;
        }
        if let Some(open) = self.open.get_mut(&t.id) {
            let give_up = open.request.meta.ts + self.config.answer_timeout;
            open.completed = Some(t.clone());
            self.lingering.push_back((give_up, t.id));
        }
    }

    /// A transaction ended without a final response: `net.no_response`
    /// when its timer ran out (RFC 3261 §17.1.1.2 Timer B, §17.1.2.2
    /// Timer F), not when the capture ended or the table evicted it.
    pub(crate) fn on_timed_out(
        &mut self,
        t: &Transaction,
        cause: TimeoutCause,
        out: &mut Vec<Finding>,
    ) {
        let open = self.close(t.id);
        match cause {
            TimeoutCause::NoFinalResponse => self.no_response(t, open, false, out),
            TimeoutCause::EndOfCapture => {
                // Judged on what the capture shows: retransmitted for
                // seconds, no response at all, no ICMP ([`unanswered`]).
                let clear = open.as_ref().is_some_and(|o| {
                    !o.icmp
                        && o.local_drop.is_none()
                        && unanswered::judged_at_end_of_capture(&o.sends, o.sends_dropped)
                });
                if clear && t.provisionals.is_empty() {
                    self.no_response(t, open, true, out);
                }
            }
            TimeoutCause::Evicted => {}
        }
    }

    /// Every parsed message: a request opens (or, retransmitted, adds a
    /// send to) the entry its response and ICMP are matched against.
    pub(crate) fn on_message(&mut self, r: &Arc<MessageRecord>) {
        let Some(id) = r.transaction else { return };
        if !r.message.is_request() || r.message.method() == Some(&crate::sip::Method::Ack) {
            return;
        }
        if let Some(open) = self.open.get_mut(&id) {
            if open.sends.len() < self.config.max_sends {
                open.sends.push(r.meta.ts);
            } else {
                open.sends_dropped += 1;
            }
            return;
        }
        // Only a first copy opens an entry: a retransmission after the
        // transaction completed must not resurrect it.
        if r.retransmission {
            return;
        }
        let flow = (r.meta.src, r.meta.dst);
        self.release_superseded(flow);
        if self.open.len() >= self.config.max_open {
            self.stats.untracked += 1;
            return;
        }
        self.by_flow.insert(flow, id);
        self.open.insert(
            id,
            Open {
                request: r.clone(),
                sends: vec![r.meta.ts],
                sends_dropped: 0,
                local_drop: None,
                completed: None,
                icmp: false,
            },
        );
    }

    /// Ends the lingering of completed transactions whose UA gave up by
    /// `now`; one whose final response this host dropped raises
    /// `net.no_response` (the UA never got the answer).
    pub(crate) fn tick(&mut self, now: Timestamp, out: &mut Vec<Finding>) {
        while let Some(&(until, id)) = self.lingering.front() {
            if until > now {
                break;
            }
            self.lingering.pop_front();
            self.expire(id, out);
        }
    }

    /// End of input: nothing more will arrive for lingering transactions.
    pub(crate) fn finish(&mut self, out: &mut Vec<Finding>) {
        while let Some((_, id)) = self.lingering.pop_front() {
            self.expire(id, out);
        }
    }

    fn expire(&mut self, id: TransactionId, out: &mut Vec<Finding>) {
        let Some(open) = self.close(id) else { return };
        let Some(t) = open.completed.clone() else {
            return;
        };
        let final_dropped = open.local_drop.as_ref().is_some_and(|l| l.final_response);
        if final_dropped {
            self.no_response(&t, Some(open), false, out);
        }
    }

    /// A new request on `flow` takes over its drop matching (drops are
    /// matched by flow, to the newest request): an answered request it
    /// supersedes can no longer be matched to a drop, so unless one
    /// already was, its lingering cannot come to anything and it is
    /// released now. Live, a busy flow (a trunk, a load generator) keeps
    /// one answered request lingering instead of every one of the last
    /// 32 s, which at a few thousand transactions a second filled
    /// `max_open` and left new requests untracked.
    fn release_superseded(&mut self, flow: (SocketAddr, SocketAddr)) {
        let Some(&prev) = self.by_flow.get(&flow) else {
            return;
        };
        let idle = self
            .open
            .get(&prev)
            .is_some_and(|o| o.completed.is_some() && o.local_drop.is_none());
        if idle {
            self.close(prev);
        }
    }

    fn close(&mut self, id: TransactionId) -> Option<Open> {
        let open = self.open.remove(&id)?;
        let flow = (open.request.meta.src, open.request.meta.dst);
        if self.by_flow.get(&flow) == Some(&id) {
            self.by_flow.remove(&flow);
        }
        Some(open)
    }

    /// True when `key` was not raised within the window (and records it).
    fn first_in_window(&mut self, key: String, now: Timestamp) -> bool {
        self.raised.first(key, now)
    }

    /// `net.no_response` for `t`; `capture_ended`: judged when the capture
    /// ended before the UA gave up ([`unanswered`]).
    fn no_response(
        &mut self,
        t: &Transaction,
        open: Option<Open>,
        capture_ended: bool,
        out: &mut Vec<Finding>,
    ) {
        let Some(request) = t
            .request
            .clone()
            .or_else(|| open.as_ref().map(|o| o.request.clone()))
        else {
            return;
        };
        let meta = request.meta;
        let now = t.last_seen.max(meta.ts);
        let key = format!(
            "no_response {} {} {}",
            meta.transport.as_str(),
            meta.dst,
            t.method
        );
        if !self.first_in_window(key, now) {
            return;
        }
        self.stats.no_response += 1;
        let reference = MessageRef::of(&request);
        let sends = open
            .as_ref()
            .map_or_else(|| vec![meta.ts], |o| o.sends.clone());
        let schedule = sends
            .iter()
            .map(|s| format!("+{:.3}s", s.since(meta.ts).as_secs_f64()))
            .collect::<Vec<_>>()
            .join(" ");
        let local = open.as_ref().and_then(|o| o.local_drop.clone());
        // The transaction snapshot stops counting at completion; the
        // tracked sends go on while the UA retransmits.
        let retransmissions = open.as_ref().map_or(t.request_retransmissions, |o| {
            (o.sends.len() as u32 - 1 + o.sends_dropped).max(t.request_retransmissions)
        });
        let summary = match &local {
            Some(d) => format!(
                "{} to {} ({}) got no final response at the UA: {} reached this host and {} \
                 dropped it ({}).",
                t.method,
                meta.dst,
                meta.transport.as_str(),
                d.what,
                // Not every drop is a rule's: a full socket receive buffer
                // (an overloaded UA) loses the answer just as surely.
                if d.netfilter {
                    "the local firewall"
                } else {
                    "its kernel"
                },
                d.reason
            ),
            None if capture_ended => format!(
                "{} to {} ({}) was {}: nothing answers there (remote firewall, wrong address \
                 or outbound proxy, host down).",
                t.method,
                meta.dst,
                meta.transport.as_str(),
                unanswered::capture_ended_clause(
                    &open
                        .as_ref()
                        .map_or_else(|| vec![meta.ts], |o| o.sends.clone()),
                    open.as_ref().map_or(0, |o| o.sends_dropped)
                )
            ),
            None => format!(
                "{} to {} ({}) was sent {} time(s) and never answered.",
                t.method,
                meta.dst,
                meta.transport.as_str(),
                retransmissions + 1
            ),
        };
        let mut d = Diagnosis::new(Code::NetNoResponse, now, summary)
            .with_evidence(
                Evidence::new("method", t.method.to_string())
                    .in_message(reference.at, reference.label.clone()),
            )
            .with_evidence(Evidence::new("destination", meta.dst.to_string()))
            .with_evidence(Evidence::new("source", meta.src.to_string()))
            .with_evidence(Evidence::new("transport", meta.transport.as_str()))
            .with_evidence(Evidence::new("cseq", t.cseq.to_string()))
            .with_evidence(Evidence::new(
                "retransmissions",
                retransmissions.to_string(),
            ))
            .with_evidence(Evidence::new("send_schedule", schedule));
        if let Some(cid) = t.call_id() {
            d = d.about(Some(&cid), None);
            d = d.with_evidence(Evidence::new("call_id", cid));
        }
        if capture_ended {
            d = d.with_evidence(Evidence::new(
                "capture_ended",
                format!(
                    "before the client gave up (Timer B/F, {} s)",
                    unanswered::CLIENT_TIMEOUT.as_secs()
                ),
            ));
        }
        if let Some(l) = local {
            d = d.with_evidence(
                Evidence::new(
                    "dropped_locally",
                    format!("{} ({}, {} time(s))", l.what, l.reason, l.count),
                )
                .in_message(l.at, l.what.clone()),
            );
        }
        out.push(Finding::Diagnosis(d));
    }

    /// An ICMP destination-unreachable quoting a SIP datagram
    /// (RFC 792 type 3, RFC 4443 type 1).
    pub(crate) fn on_icmp(&mut self, icmp: &IcmpUnreachable, out: &mut Vec<Finding>) {
        let flow = (icmp.quoted_src, icmp.quoted_dst);
        let request = self
            .by_flow
            .get(&flow)
            .and_then(|id| self.open.get_mut(id))
            .map(|o| {
                o.icmp = true;
                o.request.clone()
            });
        if request.is_none() {
            self.stats.icmp_unmatched += 1;
        }
        let key = format!("icmp {} {}", icmp.quoted_dst, icmp.code);
        if !self.first_in_window(key, icmp.ts) {
            return;
        }
        self.stats.icmp_unreachable += 1;
        let what = match &request {
            Some(r) => format!(
                "{} from {} to {}",
                r.message
                    .method()
                    .map_or_else(String::new, |m| m.to_string()),
                icmp.quoted_src,
                icmp.quoted_dst
            ),
            None => format!("SIP/UDP from {} to {}", icmp.quoted_src, icmp.quoted_dst),
        };
        let mut d = Diagnosis::new(
            Code::NetIcmpUnreachable,
            icmp.ts,
            format!(
                "{} answered {what} with ICMP destination unreachable ({}).",
                icmp.from,
                icmp.describe()
            ),
        )
        .with_evidence(Evidence::new("icmp", icmp.describe()))
        .with_evidence(Evidence::new("icmp_sender", icmp.from.to_string()))
        .with_evidence(Evidence::new(
            "quoted",
            format!("udp {} -> {}", icmp.quoted_src, icmp.quoted_dst),
        ));
        if let Some(r) = request {
            let reference = MessageRef::of(&r);
            d = d.with_evidence(
                Evidence::new("request", reference.label.clone())
                    .in_message(reference.at, reference.label),
            );
            if let Some(cid) = r.message.call_id() {
                d = d.about(Some(&cid), None);
                d = d.with_evidence(Evidence::new("call_id", cid.into_owned()));
            }
        }
        out.push(Finding::Diagnosis(d));
    }

    /// A SIP message this host's kernel dropped (`fw.local_drop` when a
    /// netfilter rule did it). It is matched to the open request of its
    /// flow: a dropped response to the request in the opposite direction.
    pub(crate) fn on_dropped_sip(
        &mut self,
        record: &MessageRecord,
        reason: &DropReason,
        out: &mut Vec<Finding>,
    ) {
        let reference = MessageRef::of(record);
        let meta = record.meta;
        let flow = if record.message.is_request() {
            (meta.src, meta.dst)
        } else {
            (meta.dst, meta.src)
        };
        let id = self.by_flow.get(&flow).copied();
        let is_final = record.message.status().is_some_and(|s| s >= 200);
        match id.and_then(|id| self.open.get_mut(&id)) {
            Some(open) => match &mut open.local_drop {
                Some(l) => {
                    l.count += 1;
                    l.final_response |= is_final;
                }
                None => {
                    open.local_drop = Some(LocalDrop {
                        at: meta.ts,
                        what: format!("{} from {}", reference.label, meta.src),
                        reason: reason.name.clone(),
                        netfilter: reason.is_netfilter(),
                        count: 1,
                        final_response: is_final,
                    })
                }
            },
            None => self.stats.drops_unmatched += 1,
        }
        if !reason.is_netfilter() {
            return;
        }
        let summary = format!(
            "{} from {} to {} reached this host and was dropped by the local firewall ({}).",
            reference.label, meta.src, meta.dst, reason.name
        );
        let call_id = record.message.call_id();
        self.local_drop(
            meta,
            reason,
            summary,
            Some((reference, call_id.as_deref())),
            out,
        );
    }

    /// A non-SIP packet (RTP range) the local firewall dropped.
    pub(crate) fn on_dropped_media(
        &mut self,
        meta: Meta,
        reason: &DropReason,
        out: &mut Vec<Finding>,
    ) {
        if !reason.is_netfilter() {
            return;
        }
        let summary = format!(
            "UDP from {} to port {} (media range) was dropped by the local firewall ({}).",
            meta.src,
            meta.dst.port(),
            reason.name
        );
        self.local_drop(meta, reason, summary, None, out);
    }

    fn local_drop(
        &mut self,
        meta: Meta,
        reason: &DropReason,
        summary: String,
        message: Option<(MessageRef, Option<&str>)>,
        out: &mut Vec<Finding>,
    ) {
        let key = format!(
            "drop {} {} {} {}",
            meta.transport.as_str(),
            meta.src,
            meta.dst,
            reason.name
        );
        if !self.first_in_window(key, meta.ts) {
            return;
        }
        self.stats.local_drops += 1;
        let mut d = Diagnosis::new(Code::FwLocalDrop, meta.ts, summary)
            .with_evidence(Evidence::new("drop_reason", reason.name.clone()))
            .with_evidence(Evidence::new(
                "flow",
                format!("{} {} -> {}", meta.transport.as_str(), meta.src, meta.dst),
            ))
            .with_evidence(Evidence::new("port", meta.dst.port().to_string()));
        if let Some((m, call_id)) = message {
            d = d
                .with_evidence(Evidence::new("message", m.label.clone()).in_message(m.at, m.label))
                .about(call_id, None);
        }
        out.push(Finding::Diagnosis(d));
    }
}
