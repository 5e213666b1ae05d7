//! Human-readable lines: a message with its retransmission mark and
//! response time, the live console's line per event, and the counters
//! (the summary). `analyze` groups the message lines per Call-ID
//! ([`CallFlow`]).

use std::fmt::Write as _;

use crate::export::calls::call_line;
use crate::packet::{Direction, Transport};
use crate::pipeline::{Event, MalformedMessage, Stats};
use crate::sip::{MessageRecord, TimeoutCause, Transaction};

pub(crate) use super::call_flow::CallFlow;

pub(super) const NO_CALL_ID: &str = "(no Call-ID)";

pub(super) fn unanswered_line(t: &Transaction, cause: TimeoutCause) -> String {
    let when = t.request.as_ref().map_or(t.first_seen, |r| r.meta.ts);
    format!(
        "{when}  {} CSeq {}  Call-ID {}  {}{}",
        t.method,
        t.cseq,
        t.call_id().unwrap_or_else(|| NO_CALL_ID.into()),
        match cause {
            TimeoutCause::NoFinalResponse => "timed out",
            TimeoutCause::EndOfCapture => "still open at end of capture",
            TimeoutCause::Evicted => "evicted (table full)",
        },
        if t.request_retransmissions > 0 {
            format!(", request sent {} times", t.request_retransmissions + 1)
        } else {
            String::new()
        }
    )
}

pub(super) fn unreadable_line(m: &MalformedMessage) -> String {
    let first = m.raw.split(|&c| c == b'\n').next().unwrap_or(&[]);
    let first = String::from_utf8_lossy(&first[..first.len().min(80)]);
    format!(
        "{}  {} → {}  {}  {:?}",
        m.meta.ts,
        m.meta.src,
        m.meta.dst,
        m.reason,
        first.trim_end()
    )
}

/// `time  src → dst  PROTO  start line  [details]` onto `line`; live,
/// the `direction` goes between the time and the addresses
/// (`time in  src → dst ...`).
pub(super) fn write_message_line(
    line: &mut String,
    m: &MessageRecord,
    direction: Option<Direction>,
) {
    let msg = &m.message;
    let dir = match direction {
        None => " ",
        Some(Direction::Ingress) => " in ",
        Some(Direction::Egress) => " out",
        Some(Direction::Unknown) => " ?  ",
    };
    let proto = match m.meta.transport {
        Transport::Udp => "UDP",
        Transport::Tcp => "TCP",
        Transport::Tls => "TLS",
    };
    let _ = write!(
        line,
        "{}{dir} {} → {}  {proto}  {}",
        m.meta.ts,
        m.meta.src,
        m.meta.dst,
        msg.start_line()
    );
    if !msg.is_request()
        && let Some(c) = msg.cseq()
    {
        let _ = write!(line, "  (CSeq {} {})", c.number, c.method);
    }
    if let Some(rt) = m.response_time {
        let _ = write!(line, "  [{:.1} ms]", rt.as_secs_f64() * 1000.0);
    }
    if m.retransmission {
        line.push_str("  [retransmission]");
    }
    if !msg.defects.is_empty() {
        let reasons: Vec<&str> = msg.defects.iter().map(|r| r.as_str()).collect();
        let _ = write!(line, "  [malformed: {}]", reasons.join(","));
    }
}

/// The counters block printed after the call flow.
pub(crate) fn summary(stats: &Stats) -> String {
    let p = &stats.packets;
    let sip = &stats.sip;
    let t = &stats.transactions;
    let mut s = String::new();
    let _ = writeln!(s, "Summary");
    let _ = writeln!(
        s,
        "  packets            {} (truncated {}, not IP {}, link errors {}, IP errors {}, other protocols {})",
        p.packets, p.truncated, p.not_ip, p.link_errors, p.ip_errors, p.other_protocols
    );
    let _ = writeln!(
        s,
        "  tunnels            decoded {}, unsupported {}",
        p.tunnels_decoded, p.tunnels_unsupported
    );
    let _ = writeln!(
        s,
        "  UDP                datagrams {}, not SIP on SIP port {}, keep-alives {}",
        p.udp_datagrams, p.udp_not_sip, p.udp_keepalives
    );
    let _ = writeln!(
        s,
        "  IP fragments       {} (reassembled {}, errors {}, evicted {}, timed out {})",
        p.frag.fragments, p.frag.reassembled, p.frag.errors, p.frag.evicted, p.frag.timed_out
    );
    let _ = writeln!(
        s,
        "  TCP                segments {}, streams {}, messages {}, retransmitted {}, out of order {}, junk bytes {}, dropped bytes {}, oversized {}, streams evicted {}",
        p.tcp.segments,
        p.tcp.streams_opened,
        p.tcp.messages,
        p.tcp.retransmitted_segments,
        p.tcp.out_of_order_segments,
        p.tcp.junk_bytes,
        p.tcp.dropped_bytes,
        p.tcp.oversized_messages,
        p.tcp.evicted_streams
    );
    let _ = writeln!(
        s,
        "  SIP messages       {} (requests {}, responses {}, retransmissions {}, with defects {}, unreadable {})",
        sip.messages,
        sip.requests,
        sip.responses,
        sip.retransmissions,
        sip.messages_with_defects,
        sip.unreadable
    );
    for (reason, n) in sip.malformed.iter() {
        let _ = writeln!(s, "    malformed {reason:<28} {n}");
    }
    let _ = writeln!(
        s,
        "  transactions       {} (completed {}, timed out {}, evicted {}, open at end {}, responses without request {}, unmatchable messages {})",
        t.created,
        t.completed,
        t.timed_out,
        t.evicted,
        t.open_at_end,
        t.responses_without_request,
        t.unmatchable_messages
    );
    let r = &stats.registrations;
    let _ = writeln!(
        s,
        "  registrations      attempts {} (registered {}, deregistered {}, rejected {}, gave up {}, timed out {}), expired {}, findings {} (repeats suppressed {}), bindings evicted {}, attempts evicted {}",
        r.attempts,
        r.registered,
        r.deregistered,
        r.rejected,
        r.gave_up,
        r.timed_out,
        r.expired,
        r.diagnoses,
        r.diagnoses_suppressed,
        r.bindings_evicted,
        r.attempts_evicted
    );
    let f = &stats.findings;
    let _ = writeln!(
        s,
        "  flood guard        findings shown {}, repeats suppressed {} (same code about the same source, or a code's budget for the window spent), sources tracked {}, evicted {}",
        f.shown, f.suppressed, f.sources, f.evicted
    );
    let n = &stats.reachability;
    let _ = writeln!(
        s,
        "  reachability       no response {}, ICMP unreachable {}, local drops {}, repeats suppressed {} (evicted {}), untracked {}, ICMP unmatched {}, drops unmatched {}",
        n.no_response,
        n.icmp_unreachable,
        n.local_drops,
        n.suppressed,
        n.suppressions_evicted,
        n.untracked,
        n.icmp_unmatched,
        n.drops_unmatched
    );
    let i = &stats.inbound;
    let _ = writeln!(
        s,
        "  inbound calls      blocked {} (repeats suppressed {}, evicted {}), bindings {} (learned {}, expired {}, deregistered {}, evicted {}), INVITEs tracked {} (untracked {}, unresolved {}), early drops evicted {}, challenges retried {} (evicted {})",
        i.blocked,
        i.suppressed,
        i.suppressions_evicted,
        i.bindings,
        i.bindings_learned,
        i.bindings_expired,
        i.bindings_deregistered,
        i.bindings_evicted,
        i.invites_tracked,
        i.invites_untracked,
        i.invites_unresolved,
        i.early_drops_evicted,
        i.challenges_retried,
        i.challenges_evicted
    );
    let c = &stats.calls;
    let _ = writeln!(
        s,
        "  calls              {} (answered {}, ended {}, failed {}, cancelled {}), open {}, open at end {}, evicted {}, idle closed {}, unreadable SDP {}, media not judged {}",
        c.calls,
        c.answered,
        c.ended,
        c.failed,
        c.cancelled,
        c.open,
        c.open_at_end,
        c.evicted,
        c.idle_closed,
        c.sdp_unreadable,
        c.media_not_judged
    );
    let m = &c.rtp;
    let _ = writeln!(
        s,
        "  RTP                in the capture {} (RTCP {} with {} reception reports, {} not kept; not RTP {}), kernel flow snapshots {}, flows evicted {}, expired {}",
        m.rtp_packets,
        m.rtcp_packets,
        m.rtcp_reports,
        m.rtcp_reports_untracked,
        m.not_rtp,
        m.kernel_snapshots,
        m.flows_evicted,
        m.flows_expired
    );
    s
}

/// One line per event for live capture (`sipscope run`), printed as it
/// happens: a message as in the call flow, with its direction (`in`/`out`
/// as seen by the capturing host) and its Call-ID; a transaction that got
/// no final response; an unreadable payload. `None` for events that add
/// nothing to the flow (a completed transaction: its messages are shown).
///
/// Written onto `line` (cleared first; a message, the line a second, is
/// formatted in place); `false` when the event has no line.
pub(crate) fn write_live_line(line: &mut String, event: &Event) -> bool {
    line.clear();
    match event {
        Event::Message(m) => {
            write_message_line(line, m, Some(m.meta.direction));
            line.push_str("  Call-ID ");
            line.push_str(m.message.call_id().as_deref().unwrap_or(NO_CALL_ID));
            true
        }
        other => match live_line(other) {
            Some(l) => {
                line.push_str(&l);
                true
            }
            None => false,
        },
    }
}

/// [`write_live_line`] for the events other than messages.
fn live_line(event: &Event) -> Option<String> {
    match event {
        Event::Message(_) => None,
        Event::TransactionTimedOut {
            transaction: t,
            cause,
        } => {
            let when = t.request.as_ref().map_or(t.first_seen, |r| r.meta.ts);
            let what = match cause {
                TimeoutCause::NoFinalResponse => "no final response (timed out)",
                TimeoutCause::EndOfCapture => "still open at end of capture",
                TimeoutCause::Evicted => "evicted (table full)",
            };
            Some(format!(
                "{when} !   {} CSeq {}  {what}, request sent {} times  Call-ID {}",
                t.method,
                t.cseq,
                t.request_retransmissions + 1,
                t.call_id().unwrap_or_else(|| NO_CALL_ID.into())
            ))
        }
        Event::Malformed(m) => Some(format!(
            "{} ?   {} → {}  unreadable SIP payload: {}",
            m.meta.ts, m.meta.src, m.meta.dst, m.reason
        )),
        // A finding as it is raised: headline, evidence, remedy.
        Event::Diagnosis(d) => Some(d.to_string()),
        Event::RegistrationAttempt(a) => Some(format!(
            "{} REG {} via {} (client {}): {}{}",
            a.ended,
            a.binding.aor,
            a.registrar,
            a.client,
            a.outcome.label(),
            match &a.outcome {
                crate::analysis::registration::Outcome::Registered { expires } => {
                    format!(", expires in {expires} s")
                }
                crate::analysis::registration::Outcome::Rejected { status, reason } => {
                    format!(" with {status} {reason}")
                }
                _ => String::new(),
            }
        )),
        Event::Call(c) => Some(call_line(c)),
        Event::TransactionCompleted(_) | Event::Rtcp(_) => None,
    }
}
