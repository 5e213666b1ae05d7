//! `analyze`'s call flow: the messages of each Call-ID together, then the
//! calls and registrations tables and the counters.
//!
//! What it holds is bounded by what is in progress, not by the length of
//! the capture: a group whose Call-ID is finished is written out as it
//! finishes, and the rest within a byte limit ([`CallFlow::with_limit`]).

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasher, RandomState};
use std::sync::Arc;
use std::time::Duration;

use super::console::{NO_CALL_ID, summary, unanswered_line, unreadable_line, write_message_line};
use crate::analysis::registration::RegistrationAttempt;
use crate::export::calls::CallsReport;
use crate::export::registrations::RegistrationReport;
use crate::pipeline::{Event, Stats};
use crate::sip::Method;
use crate::time::Timestamp;

/// A Call-ID without a message for this long (packet clock) is finished,
/// unless it carries what outlives its transactions: 64*T1, after which
/// no retransmission of its last transaction can come (RFC 3261 §17.1.2.2
/// Timer F, §17.2.2 Timer J).
const FINISHED_AFTER: Duration = Duration::from_secs(32);

/// Collects events and renders them as a call flow: the messages of each
/// Call-ID together, in order of first appearance.
///
/// A group is written out before the end in two cases, and a Call-ID that
/// shows up again after that starts a new group (the end says how many
/// left early, and why):
/// - it is finished: no message for [`FINISHED_AFTER`], no REGISTER or
///   SUBSCRIBE in it (refreshed under the same Call-ID, RFC 3261 §10.2.4,
///   RFC 6665 §4.1.2.1) unless its binding has registered under a newer
///   Call-ID since, and no call up under it. Finished groups leave
///   as they finish, so on a long capture they come out roughly in order
///   of their last message, ahead of the lasting ones;
/// - more than `max_bytes` is held (capacity and per-group bookkeeping,
///   not just text: the window is what the process holds): the groups
///   seen first leave ([`CallFlow::spill`]).
///
/// Unanswered transactions and unreadable payloads are listed up to
/// [`MAX_LISTED`] each, then counted.
pub(crate) struct CallFlow {
    /// Call-IDs in order of first appearance, with their group's
    /// generation (an entry of a group written early is stale).
    order: VecDeque<(u64, Arc<str>)>,
    by_call: HashMap<Arc<str>, Group>,
    /// Groups that may finish, by the time of their last message:
    /// (that time, generation, Call-ID). Lasting groups are not in it,
    /// and a group with a call up leaves it until the call ends.
    idle: BTreeSet<(Timestamp, u64, Arc<str>)>,
    /// The latest registration Call-ID of each binding (AOR and Contact,
    /// hashed) among the groups held: a client that registers its binding
    /// under a new Call-ID does not refresh the old one (RFC 3261
    /// §10.2.4), so that group is no longer lasting.
    bindings: HashMap<u64, Arc<str>>,
    binding_hasher: RandomState,
    /// The packet clock: the latest message's time.
    clock: Timestamp,
    next_generation: u64,
    held_bytes: usize,
    max_bytes: usize,
    /// Groups written out before the end to stay within `max_bytes`.
    written_early: u64,
    /// Groups written out before the end because they were finished.
    finished_early: u64,
    unreadable: Vec<String>,
    unanswered: Vec<String>,
    /// Lines not listed (past [`MAX_LISTED`]): unanswered, unreadable.
    not_listed: (u64, u64),
    registrations: RegistrationReport,
    calls: CallsReport,
}

/// One Call-ID's lines, each `  line\n`, in one buffer: a `String` per
/// line cost about twice its text in allocator and vector overhead.
struct Group {
    key: Arc<str>,
    lines: String,
    messages: usize,
    generation: u64,
    last: Timestamp,
    /// Its entry is in `idle`.
    in_idle: bool,
    /// A REGISTER or SUBSCRIBE was seen: refreshes may come much later.
    lasting: bool,
    /// The binding it registered (its key in `bindings`).
    binding: Option<u64>,
    /// The call tracker has a call up under this Call-ID.
    call_up: bool,
}

/// What a group costs beyond its lines: the Call-ID (shared by the map
/// key, the order and the idle queue), the map entry and the queue slots.
const GROUP_OVERHEAD: usize = 160;

/// Unanswered transactions and unreadable payloads listed at most (each).
pub(crate) const MAX_LISTED: usize = 10_000;

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
            idle: BTreeSet::new(),
            bindings: HashMap::new(),
            binding_hasher: RandomState::new(),
            clock: Timestamp(0),
            next_generation: 0,
            held_bytes: 0,
            max_bytes,
            written_early: 0,
            finished_early: 0,
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
                let ts = m.meta.ts;
                self.clock = self.clock.max(ts);
                let cid = m.message.call_id();
                let cid = cid.as_deref().unwrap_or(NO_CALL_ID);
                if !self.by_call.contains_key(cid) {
                    self.open_group(cid, ts);
                }
                let group = self.by_call.get_mut(cid).expect("opened above");
                let before = group.lines.capacity();
                group.lines.push_str("  ");
                write_message_line(&mut group.lines, m, None);
                group.lines.push('\n');
                group.messages += 1;
                self.held_bytes += group.lines.capacity() - before;
                let last = group.last.max(ts);
                group.lasting |= m
                    .message
                    .cseq()
                    .is_some_and(|c| matches!(c.method, Method::Register | Method::Subscribe));
                if group.in_idle && (group.lasting || last != group.last) {
                    self.idle
                        .remove(&(group.last, group.generation, group.key.clone()));
                    group.in_idle = !group.lasting;
                    if group.in_idle {
                        self.idle
                            .insert((last, group.generation, group.key.clone()));
                    }
                }
                group.last = last;
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
            Event::RegistrationAttempt(a) => self.registered(a),
            Event::TransactionCompleted(_) | Event::Diagnosis(_) | Event::Rtcp(_) => {}
            Event::Call(c) => {
                self.calls.push(event);
                if let Some(g) = self.by_call.get_mut(c.call_id.as_str()) {
                    g.call_up = !c.closed;
                    if c.closed && !g.in_idle && !g.lasting {
                        // Finishes once idle long enough.
                        g.in_idle = true;
                        self.idle.insert((g.last, g.generation, g.key.clone()));
                    }
                }
            }
        }
    }

    /// A registration attempt ended: its Call-ID is now its binding's
    /// latest, and the binding's previous one, if held, may finish.
    fn registered(&mut self, a: &RegistrationAttempt) {
        let binding = self
            .binding_hasher
            .hash_one((&a.binding.aor, &a.binding.contact));
        let Some(g) = self.by_call.get_mut(a.binding.call_id.as_str()) else {
            return;
        };
        g.binding = Some(binding);
        let Some(previous) = self.bindings.insert(binding, g.key.clone()) else {
            return;
        };
        if *previous == *a.binding.call_id {
            return;
        }
        if let Some(old) = self.by_call.get_mut(&previous)
            && old.binding == Some(binding)
        {
            old.binding = None;
            old.lasting = false;
            if !old.in_idle && !old.call_up {
                old.in_idle = true;
                self.idle
                    .insert((old.last, old.generation, old.key.clone()));
            }
        }
    }

    fn open_group(&mut self, cid: &str, ts: Timestamp) {
        let key: Arc<str> = Arc::from(cid);
        self.next_generation += 1;
        let generation = self.next_generation;
        self.held_bytes += cid.len() + GROUP_OVERHEAD;
        self.order.push_back((generation, key.clone()));
        self.idle.insert((ts, generation, key.clone()));
        self.by_call.insert(
            key.clone(),
            Group {
                key,
                lines: String::new(),
                messages: 0,
                generation,
                last: ts,
                in_idle: true,
                lasting: false,
                binding: None,
                call_up: false,
            },
        );
    }

    /// Writes out the groups that are finished, then the groups seen first
    /// while more than the limit is held.
    pub(crate) fn spill(&mut self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        while let Some((last, ..)) = self.idle.first()
            && self.clock.since(*last) >= FINISHED_AFTER
        {
            let Some((_, _, cid)) = self.idle.pop_first() else {
                break;
            };
            let Some(g) = self.by_call.get_mut(&cid) else {
                continue;
            };
            g.in_idle = false;
            if g.call_up {
                continue; // the call's end puts it back
            }
            self.write_group(&cid, out)?;
            self.finished_early += 1;
        }
        while self.held_bytes > self.max_bytes {
            let Some(cid) = self.next_in_order() else {
                break;
            };
            self.write_group(&cid, out)?;
            self.written_early += 1;
        }
        self.compact_order();
        Ok(())
    }

    /// The Call-ID seen first of the groups still held.
    fn next_in_order(&mut self) -> Option<Arc<str>> {
        while let Some((generation, cid)) = self.order.pop_front() {
            if self
                .by_call
                .get(&cid)
                .is_some_and(|g| g.generation == generation)
            {
                return Some(cid);
            }
        }
        None
    }

    /// Drops the order entries of groups written out as finished once
    /// they outnumber the groups held, so the queue stays bounded.
    fn compact_order(&mut self) {
        if self.order.len() > 2 * self.by_call.len() + 64 {
            let by_call = &self.by_call;
            self.order.retain(|(generation, cid)| {
                by_call
                    .get(cid)
                    .is_some_and(|g| g.generation == *generation)
            });
        }
    }

    fn write_group(&mut self, cid: &str, out: &mut impl std::io::Write) -> std::io::Result<()> {
        let Some(group) = self.by_call.remove(cid) else {
            return Ok(());
        };
        if group.in_idle {
            self.idle
                .remove(&(group.last, group.generation, group.key.clone()));
        }
        if let Some(binding) = group.binding
            && self.bindings.get(&binding) == Some(&group.key)
        {
            self.bindings.remove(&binding);
        }
        self.held_bytes = self
            .held_bytes
            .saturating_sub(cid.len() + GROUP_OVERHEAD + group.lines.capacity());
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
        while let Some(cid) = self.next_in_order() {
            self.write_group(&cid, out)?;
        }
        if self.finished_early > 0 {
            writeln!(
                out,
                "({} Call-IDs were written out as they finished, {} s after their last message \
                 with no registration, subscription or call up; one seen again after that \
                 starts a new group)\n",
                self.finished_early,
                FINISHED_AFTER.as_secs()
            )?;
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::test_sip::{
        Exchange, PBX, PHONE, REGISTRAR, challenged_registration, register, request, response,
    };

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

    /// Over a long capture the group of a finished Call-ID leaves 32 s
    /// after its last message, so what is held follows what is in
    /// progress; a registration (refreshed under its Call-ID) and a call
    /// up for minutes stay whole, and every line is written once.
    #[test]
    fn finished_call_ids_leave_as_they_finish_lasting_ones_stay_whole() {
        let mut x = challenged_registration();
        let contact = "Contact: <sip:bob@203.0.113.5>\n";
        x.msg(
            1_000,
            PBX,
            PHONE,
            &request("INVITE", 1, "z9hG4bK-i1", "call-1", false),
        )
        .msg(
            1_050,
            PHONE,
            PBX,
            &response("200 OK", 1, "INVITE", "z9hG4bK-i1", "call-1", contact),
        )
        .msg(
            1_060,
            PBX,
            PHONE,
            &request("ACK", 1, "z9hG4bK-a1", "call-1", true),
        );
        // An OPTIONS ping with its own Call-ID every second for 150 s; the
        // call hangs up after 100 s.
        for i in 0..150u64 {
            let (cid, branch) = (format!("ping-{i}"), format!("z9hG4bK-o{i}"));
            let t = 2_000 + i * 1_000;
            x.msg(t, PBX, PHONE, &request("OPTIONS", 1, &branch, &cid, false))
                .msg(
                    t + 10,
                    PHONE,
                    PBX,
                    &response("200 OK", 1, "OPTIONS", &branch, &cid, ""),
                );
            if i == 100 {
                x.msg(
                    t + 500,
                    PBX,
                    PHONE,
                    &request("BYE", 2, "z9hG4bK-b1", "call-1", true),
                )
                .msg(
                    t + 520,
                    PHONE,
                    PBX,
                    &response("200 OK", 2, "BYE", "z9hG4bK-b1", "call-1", ""),
                );
            }
        }
        x.msg(160_000, PBX, REGISTRAR, &register(3, "z9hG4bK-r3", true))
            .msg(
                160_030,
                REGISTRAR,
                PBX,
                &response(
                    "200 OK",
                    3,
                    "REGISTER",
                    "z9hG4bK-r3",
                    "reg-1@192.0.2.10",
                    "Expires: 3600\n",
                ),
            );
        x.finish();
        let mut flow = CallFlow::new();
        let mut early = Vec::new();
        let mut most_groups = 0;
        for e in &x.events {
            flow.push(e);
            flow.spill(&mut early).unwrap();
            most_groups = most_groups.max(flow.by_call.len());
        }
        // 32 s of pings (plus the one being looked at), the registration
        // and the call.
        assert!(most_groups <= 36, "{most_groups}");
        assert!(flow.order.len() <= 2 * flow.by_call.len() + 64);
        let early = String::from_utf8(early).unwrap();
        assert!(
            early.starts_with("Call-ID: ping-0  (2 messages)"),
            "{}",
            &early[..early.len().min(500)]
        );
        // The call left whole, 32 s after it ended; the registration waits.
        assert!(early.contains("Call-ID: call-1  (5 messages)"), "{early}");
        assert!(!early.contains("reg-1"), "{early}");
        let mut all = early.into_bytes();
        flow.finish(&Stats::default(), &mut all).unwrap();
        let text = String::from_utf8(all).unwrap();
        assert_eq!(
            text.matches("Call-ID: reg-1@192.0.2.10  (7 messages)")
                .count(),
            1,
            "{text}"
        );
        assert_eq!(
            text.matches("Call-ID: call-1  (5 messages)").count(),
            1,
            "{text}"
        );
        for i in 0..150 {
            assert_eq!(
                text.matches(&format!("Call-ID: ping-{i}  (2 messages)\n"))
                    .count(),
                1,
                "ping-{i}"
            );
        }
        assert!(text.contains("Call-IDs were written out as they finished, 32 s after"));
        assert!(!text.contains("to keep the call flow within"));
    }

    /// A binding registered again under a new Call-ID (PJSIP takes one
    /// after a failure) will not refresh the old Call-ID: its group
    /// finishes like any other, the newest stays whole to the end.
    #[test]
    fn a_registration_moved_to_a_new_call_id_lets_the_old_one_finish() {
        let mut x = challenged_registration();
        let moved = register(1, "z9hG4bK-n1", true).replace("reg-1@", "reg-2@");
        x.msg(60_000, PBX, REGISTRAR, &moved).msg(
            60_030,
            REGISTRAR,
            PBX,
            &response(
                "200 OK",
                1,
                "REGISTER",
                "z9hG4bK-n1",
                "reg-2@192.0.2.10",
                "Expires: 3600\n",
            ),
        );
        for i in 0..100u64 {
            let (cid, branch) = (format!("ping-{i}"), format!("z9hG4bK-o{i}"));
            x.msg(
                61_000 + i * 1_000,
                PBX,
                PHONE,
                &request("OPTIONS", 1, &branch, &cid, false),
            );
        }
        x.finish();
        let mut flow = CallFlow::new();
        let mut early = Vec::new();
        for e in &x.events {
            flow.push(e);
            flow.spill(&mut early).unwrap();
        }
        let early = String::from_utf8(early).unwrap();
        assert!(
            early.contains("Call-ID: reg-1@192.0.2.10  (5 messages)"),
            "{early}"
        );
        assert!(!early.contains("reg-2@"), "{early}");
        let mut all = early.into_bytes();
        flow.finish(&Stats::default(), &mut all).unwrap();
        let text = String::from_utf8(all).unwrap();
        assert_eq!(text.matches("Call-ID: reg-1@").count(), 1, "{text}");
        assert_eq!(
            text.matches("Call-ID: reg-2@192.0.2.10  (2 messages)")
                .count(),
            1,
            "{text}"
        );
    }
}
