//! Human-readable call flow: messages grouped per Call-ID in capture order,
//! with retransmission marks and response times, then the counters.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;

use crate::export::calls::{CallsReport, call_line};
use crate::export::registrations::RegistrationReport;
use crate::packet::{Direction, Transport};
use crate::pipeline::{Event, MalformedMessage, Stats};
use crate::sip::{MessageRecord, TimeoutCause, Transaction};

/// Collects events and renders them as a call flow: the messages of each
/// Call-ID together, in order of first appearance.
///
/// Memory is bounded whatever the capture's size: messages are kept as
/// their rendered lines, one buffer per Call-ID, at most `max_bytes` of
/// them counted as allocated (capacity and per-group bookkeeping, not just
/// text: the window is what the process holds). Past that the groups seen
/// first are written out early ([`CallFlow::spill`]), a Call-ID that shows
/// up again starts a new group, and the end says how many groups were
/// written early. Unanswered transactions and unreadable payloads are
/// listed up to [`MAX_LISTED`] each, then counted.
pub(crate) struct CallFlow {
    /// Call-IDs in order of first appearance.
    order: VecDeque<String>,
    by_call: HashMap<String, Group>,
    held_bytes: usize,
    max_bytes: usize,
    /// Groups written out before the end to stay within `max_bytes`.
    written_early: u64,
    unreadable: Vec<String>,
    unanswered: Vec<String>,
    /// Lines not listed (past [`MAX_LISTED`]): unanswered, unreadable.
    not_listed: (u64, u64),
    registrations: RegistrationReport,
    calls: CallsReport,
}

/// One Call-ID's lines, each `  line\n`, in one buffer: a `String` per
/// line cost about twice its text in allocator and vector overhead.
#[derive(Default)]
struct Group {
    lines: String,
    messages: usize,
}

/// What a group costs beyond its lines: the Call-ID twice (map key and
/// order), the map entry and the queue slot.
const GROUP_OVERHEAD: usize = 128;

/// Unanswered transactions and unreadable payloads listed at most (each).
pub(crate) const MAX_LISTED: usize = 10_000;

const NO_CALL_ID: &str = "(no Call-ID)";

impl Default for CallFlow {
    fn default() -> Self {
        Self::new()
    }
}

impl CallFlow {
    /// A call flow holding up to 64 MB of lines.
    pub(crate) fn new() -> Self {
        Self::with_limit(64 << 20)
    }

    /// A call flow holding up to `max_bytes` of rendered lines.
    pub(crate) fn with_limit(max_bytes: usize) -> Self {
        CallFlow {
            order: VecDeque::new(),
            by_call: HashMap::new(),
            held_bytes: 0,
            max_bytes,
            written_early: 0,
            unreadable: Vec::new(),
            unanswered: Vec::new(),
            not_listed: (0, 0),
            registrations: RegistrationReport::default(),
            calls: CallsReport::default(),
        }
    }

    pub(crate) fn push(&mut self, event: &Event) {
        self.registrations.push(event);
        match event {
            Event::Message(m) => {
                let cid = m
                    .message
                    .call_id()
                    .map_or_else(|| NO_CALL_ID.to_string(), |c| c.into_owned());
                let group = match self.by_call.get_mut(&cid) {
                    Some(g) => g,
                    None => {
                        self.held_bytes += 2 * cid.len() + GROUP_OVERHEAD;
                        self.order.push_back(cid.clone());
                        self.by_call.entry(cid).or_default()
                    }
                };
                let before = group.lines.capacity();
                group.lines.push_str("  ");
                write_message_line(&mut group.lines, m, None);
                group.lines.push('\n');
                group.messages += 1;
                self.held_bytes += group.lines.capacity() - before;
            }
            Event::Malformed(m) => {
                if self.unreadable.len() < MAX_LISTED {
                    self.unreadable.push(unreadable_line(m));
                } else {
                    self.not_listed.1 += 1;
                }
            }
            Event::TransactionTimedOut { transaction, cause } => {
                if self.unanswered.len() < MAX_LISTED {
                    self.unanswered.push(unanswered_line(transaction, *cause));
                } else {
                    self.not_listed.0 += 1;
                }
            }
            Event::TransactionCompleted(_)
            | Event::Diagnosis(_)
            | Event::RegistrationAttempt(_)
            | Event::Rtcp(_) => {}
            Event::Call(_) => self.calls.push(event),
        }
    }

    /// Writes out the groups seen first while more than the limit is held.
    pub(crate) fn spill(&mut self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        while self.held_bytes > self.max_bytes {
            let Some(cid) = self.order.pop_front() else {
                break;
            };
            self.write_group(&cid, out)?;
            self.written_early += 1;
        }
        Ok(())
    }

    fn write_group(&mut self, cid: &str, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let group = self.by_call.remove(cid).unwrap_or_default();
        self.held_bytes = self
            .held_bytes
            .saturating_sub(2 * cid.len() + GROUP_OVERHEAD + group.lines.capacity());
        writeln!(out, "Call-ID: {cid}  ({} messages)", group.messages)?;
        out.write_all(group.lines.as_bytes())?;
        writeln!(out)
    }

    /// The rest of the call flow and the summary.
    pub(crate) fn finish(
        mut self,
        stats: &Stats,
        out: &mut impl std::io::Write,
    ) -> std::io::Result<()> {
        while let Some(cid) = self.order.pop_front() {
            self.write_group(&cid, out)?;
        }
        if self.written_early > 0 {
            writeln!(
                out,
                "({} Call-IDs were written out before the end to keep the call flow within {} MB; \
                 one seen again after that starts a new group)\n",
                self.written_early,
                self.max_bytes >> 20
            )?;
        }
        let (unanswered_more, unreadable_more) = self.not_listed;
        for (title, lines, more) in [
            (
                "Transactions without a final response:",
                &self.unanswered,
                unanswered_more,
            ),
            (
                "Unreadable SIP payloads:",
                &self.unreadable,
                unreadable_more,
            ),
        ] {
            if lines.is_empty() {
                continue;
            }
            writeln!(out, "{title}")?;
            for l in lines {
                writeln!(out, "  {l}")?;
            }
            if more > 0 {
                writeln!(out, "  ... and {more} more (counted in the summary)")?;
            }
            writeln!(out)?;
        }
        out.write_all(self.calls.render().as_bytes())?;
        out.write_all(self.registrations.render().as_bytes())?;
        out.write_all(summary(stats).as_bytes())
    }

    /// The call flow and summary as text (small captures and tests).
    #[cfg(test)]
    pub(crate) fn render(self, stats: &Stats) -> String {
        let mut out = Vec::new();
        self.finish(stats, &mut out).expect("writing to memory");
        String::from_utf8_lossy(&out).into_owned()
    }
}

fn unanswered_line(t: &Transaction, cause: TimeoutCause) -> String {
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

fn unreadable_line(m: &MalformedMessage) -> String {
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
fn write_message_line(line: &mut String, m: &MessageRecord, direction: Option<Direction>) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::test_sip::{Exchange, PBX, REGISTRAR};

    /// `n` unanswered OPTIONS, each with its own Call-ID, as events.
    fn options(n: usize) -> Vec<Event> {
        let mut x = Exchange::new();
        for i in 0..n {
            x.msg(
                i as u64,
                PBX,
                REGISTRAR,
                &format!(
                    "OPTIONS sip:r SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK{i}\n\
                     From: <sip:a@b>;tag=1\nTo: <sip:r>\nCall-ID: cid-{i}\nCSeq: 1 OPTIONS\n\
                     Content-Length: 0\n\n"
                ),
            );
        }
        x.finish();
        x.events.clone()
    }

    #[test]
    fn a_large_capture_is_written_out_as_it_goes_every_line_once() {
        let events = options(2_000);
        let mut flow = CallFlow::with_limit(20_000);
        let mut early = Vec::new();
        let mut most_held = 0;
        for e in &events {
            flow.push(e);
            flow.spill(&mut early).unwrap();
            most_held = most_held.max(flow.held_bytes);
        }
        // Bounded by the limit (plus the one group that crossed it).
        assert!(most_held <= 20_000 + 200, "{most_held}");
        assert!(!early.is_empty());
        let mut all = early;
        flow.finish(&Stats::default(), &mut all).unwrap();
        let text = String::from_utf8(all).unwrap();
        for i in [0, 1, 999, 1_999] {
            assert_eq!(
                text.matches(&format!("Call-ID: cid-{i}  (1 messages)"))
                    .count(),
                1,
                "cid-{i}"
            );
        }
        assert_eq!(text.matches("OPTIONS sip:r SIP/2.0").count(), 2_000);
        // The end says that groups left early, so a repeated Call-ID
        // further down is not mistaken for a second call.
        assert!(
            text.contains(
                "Call-IDs were written out before the end to keep the call flow within 0 MB;"
            ),
            "{}",
            &text[text.len() - 3000..]
        );
        assert_eq!(text.matches(" OPTIONS CSeq 1  Call-ID cid-").count(), 2_000);
    }

    #[test]
    fn unanswered_transactions_are_listed_up_to_a_bound_then_counted() {
        let events = options(MAX_LISTED + 5);
        let mut flow = CallFlow::new();
        for e in &events {
            flow.push(e);
        }
        let text = flow.render(&Stats::default());
        assert_eq!(
            text.matches("still open at end of capture").count(),
            MAX_LISTED
        );
        assert!(
            text.contains("... and 5 more (counted in the summary)"),
            "{}",
            &text[text.len() - 3000..]
        );
    }
}
