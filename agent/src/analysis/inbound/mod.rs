//! `call.inbound_blocked`: the registration works, but calls to it fail.
//!
//! The classic support case "we are registered but inbound calls do not
//! work": the provider's INVITE goes to the registered Contact (RFC 3261
//! §10.3, §16.5) and either never arrives, is dropped by the PBX host's
//! own firewall, or is refused by the PBX. This analysis learns the live
//! bindings from the registration tracker's outcomes
//! ([`bindings::BindingTable`]), follows every initial INVITE (no To tag,
//! §12.1) sent towards one ([`invites::InviteTable`]) and raises
//! `call.inbound_blocked` ([`findings`]) when:
//!
//! 1. the INVITE transaction gets no response at all before Timer B
//!    (§17.1.1.2) — with the local firewall drop or the ICMP unreachable
//!    that explains it, when one was seen;
//! 2. the contact answers with a status that means "this host will not
//!    take calls" (403, 404, 480, 484, 488, 500, 502, 503; not 486 busy,
//!    487 cancelled, 603 decline or a redirect);
//! 3. a copy of the INVITE was dropped by this host's kernel (live
//!    capture's drop monitor) — raised at once, while the transaction is
//!    still open;
//! 4. the PBX challenged the INVITE (401/407) and the caller did not retry
//!    with credentials within `challenge_wait` ([`challenges`]): the PBX
//!    did not recognise its own trunk's INVITE.
//!
//! A finding is raised once per (binding, reason) per window; repeats are
//! counted. Every table is bounded and its evictions counted.

pub(crate) mod bindings;
pub(crate) mod challenges;
pub(crate) mod findings;
pub(crate) mod invites;

use std::sync::Arc;
use std::time::Duration;

use crate::analysis::finding::Finding;
use crate::analysis::once_per_window::OncePerWindow;
use crate::analysis::registration::RegistrationAttempt;
use crate::analysis::unanswered;
use crate::diagnosis::MessageRef;
use crate::packet::IcmpUnreachable;
use crate::sip::{MessageRecord, Method, TimeoutCause, Transaction};
use crate::{packet::DropReason, time::Timestamp};

use bindings::{BindingTable, MatchedBy, RegisteredContact};
use challenges::ChallengeTable;
use findings::{DropNote, Failure, IcmpNote, blocking_status};
use invites::{InviteTable, NotedDrop};

/// Limits of the inbound analysis.
#[derive(Clone, Debug)]
pub struct InboundConfig {
    /// The same (binding, reason) is raised at most once per window.
    pub window: Duration,
    /// Live bindings kept; at the limit the one closest to its expiry is
    /// evicted (counted).
    pub max_bindings: usize,
    /// INVITEs followed at once; more are counted in `invites_untracked`.
    pub max_open: usize,
    /// Send times kept per INVITE (first send + retransmissions).
    pub max_sends: usize,
    /// Drops kept while waiting for their INVITE (live capture ordering).
    pub max_early_drops: usize,
    /// Suppression entries kept; the oldest is forgotten at the limit.
    pub max_suppressions: usize,
    /// How long after a 401/407 to an INVITE the caller may take to retry
    /// with credentials before the challenge counts as unanswered.
    pub challenge_wait: Duration,
    /// Challenged INVITEs waiting at once; the oldest is forgotten
    /// (counted) at the limit.
    pub max_challenges: usize,
}

impl Default for InboundConfig {
    fn default() -> Self {
        Self {
            window: Duration::from_secs(300),
            max_bindings: 100_000,
            max_open: 50_000,
            max_sends: 12,
            max_early_drops: 1_024,
            max_suppressions: 10_000,
            // A UA that has the credentials retries at once (RFC 3261
            // §22.2); 5 s is generous and still ends within Timer B.
            challenge_wait: Duration::from_secs(5),
            max_challenges: 10_000,
        }
    }
}

/// Counters of the inbound analysis: nothing is forgotten uncounted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct InboundStats {
    /// Live bindings now.
    pub bindings: u64,
    /// Successful registrations applied (new or refreshed bindings).
    pub bindings_learned: u64,
    pub bindings_expired: u64,
    pub bindings_deregistered: u64,
    /// Pushed out of the full binding table.
    pub bindings_evicted: u64,
    /// Initial INVITEs towards a live binding.
    pub invites_tracked: u64,
    /// Not followed because `max_open` was reached.
    pub invites_untracked: u64,
    /// Ended without a verdict: capture ended, or evicted from the
    /// transaction table.
    pub invites_unresolved: u64,
    /// `call.inbound_blocked` raised.
    pub blocked: u64,
    /// Not raised again within the window.
    pub suppressed: u64,
    pub suppressions_evicted: u64,
    /// Drops forgotten before their INVITE arrived.
    pub early_drops_evicted: u64,
    /// Challenged INVITEs the caller retried (with or without
    /// credentials): judged as new INVITEs.
    pub challenges_retried: u64,
    /// Challenge waits forgotten at `max_challenges`.
    pub challenges_evicted: u64,
}

/// See the module documentation.
pub(crate) struct Inbound {
    bindings: BindingTable,
    invites: InviteTable,
    challenges: ChallengeTable,
    /// (binding key, reason key) → when last raised.
    raised: OncePerWindow<(String, String)>,
    stats: InboundStats,
}

impl Inbound {
    pub(crate) fn new(config: InboundConfig) -> Self {
        Self {
            bindings: BindingTable::new(config.max_bindings),
            invites: InviteTable::new(config.max_open, config.max_sends, config.max_early_drops),
            challenges: ChallengeTable::new(config.max_challenges, config.challenge_wait),
            raised: OncePerWindow::new(config.window, config.max_suppressions),
            stats: InboundStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> InboundStats {
        let mut s = self.stats.clone();
        s.bindings = self.bindings.len() as u64;
        s.suppressed = self.raised.suppressed;
        s.suppressions_evicted = self.raised.evicted;
        s
    }

    /// Learns a binding from a registration attempt's outcome (RFC 3261
    /// §10.3: a 2xx installs or refreshes the Contact, `Expires: 0` or
    /// `Contact: *` removes it).
    pub(crate) fn learn(&mut self, a: &RegistrationAttempt) {
        let applied = self.bindings.apply(a);
        self.stats.bindings_learned += u64::from(applied.learned);
        self.stats.bindings_evicted += u64::from(applied.evicted);
        self.stats.bindings_deregistered += u64::from(applied.removed);
    }

    /// A transaction ended without a final response: an initial INVITE to
    /// a live binding that nothing answered before Timer B (RFC 3261
    /// §17.1.1.2) raises `call.inbound_blocked`.
    pub(crate) fn on_timed_out(
        &mut self,
        transaction: &Transaction,
        cause: TimeoutCause,
        out: &mut Vec<Finding>,
    ) {
        let Some(open) = self.invites.close(transaction.id) else {
            return;
        };
        let answered = !transaction.provisionals.is_empty();
        // Still open when the capture ended: judged when the capture shows
        // a retransmitted INVITE nothing answered (no ICMP either, which
        // would name another reason; see [`unanswered`]).
        let capture_ended = cause == TimeoutCause::EndOfCapture
            && open.icmp.is_none()
            && unanswered::judged_at_end_of_capture(&open.sends, open.sends_dropped);
        if (cause != TimeoutCause::NoFinalResponse && !capture_ended) || answered {
            // A 1xx means the INVITE arrived (the call rang out or
            // the capture ended): not a blocked path.
            self.stats.invites_unresolved += u64::from(!answered);
            return;
        }
        let retransmissions = (open.sends.len() as u32 - 1 + open.sends_dropped)
            .max(transaction.request_retransmissions);
        let failure = Failure::Unanswered {
            sends: open.sends.clone(),
            retransmissions,
            local_drop: open.local_drop.clone(),
            icmp: open.icmp.clone(),
            capture_ended,
        };
        let at = transaction.last_seen.max(open.request.meta.ts);
        self.raise(&open.binding, open.matched, &open.request, failure, at, out);
    }

    /// Every parsed message: an initial INVITE (no To tag, RFC 3261
    /// §12.1) towards a live binding is followed; its retransmissions are
    /// counted.
    pub(crate) fn on_message(&mut self, r: &Arc<MessageRecord>) {
        let m = &r.message;
        if m.method() != Some(&Method::Invite) || !m.is_request() {
            return;
        }
        let Some(id) = r.transaction else { return };
        if self.invites.contains(id) {
            self.invites.resent(id, r.meta.ts);
            return;
        }
        // Re-INVITEs (To tag) belong to an established dialog; a
        // retransmission after completion must not reopen it.
        if m.to_tag().is_some() || r.retransmission {
            return;
        }
        if let Some(call_id) = m.call_id()
            && self.challenges.retried(&call_id)
        {
            self.stats.challenges_retried += 1;
        }
        let Some((binding, matched)) = self.bindings.find(r, r.meta.ts) else {
            return;
        };
        match self.invites.track(id, r.clone(), binding, matched) {
            Ok(()) => self.stats.invites_tracked += 1,
            Err(_) => self.stats.invites_untracked += 1,
        }
    }

    /// A transaction got its first final response: a blocking status
    /// from the contact, or a challenge to wait on.
    pub(crate) fn on_completed(&mut self, t: &Transaction, out: &mut Vec<Finding>) {
        let Some(open) = self.invites.close(t.id) else {
            return;
        };
        let (Some(status), Some(response)) = (t.final_status(), t.final_response.clone()) else {
            return;
        };
        if matches!(status, 401 | 407) {
            self.stats.challenges_evicted += self.challenges.challenged(
                open.binding,
                open.matched,
                open.request,
                response,
                status,
            );
            return;
        }
        let Some(meaning) = blocking_status(status) else {
            return;
        };
        let failure = Failure::Rejected {
            response: response.clone(),
            status,
            meaning,
        };
        let at = response.meta.ts;
        self.raise(&open.binding, open.matched, &open.request, failure, at, out);
    }

    /// Timers: bindings whose registration ran out stop receiving calls;
    /// challenges nobody answered in time are findings.
    pub(crate) fn tick(&mut self, now: Timestamp, out: &mut Vec<Finding>) {
        let waited = self.challenges.wait();
        for c in self.challenges.expired(now) {
            let failure = Failure::ChallengeUnanswered {
                response: c.response.clone(),
                status: c.status,
                waited,
            };
            self.raise(&c.binding, c.matched, &c.request, failure, c.deadline, out);
        }
        self.stats.bindings_expired += self.bindings.expire(now);
    }

    /// End of input: open INVITEs will get no verdict (the transaction
    /// table reports them as `EndOfCapture` first).
    pub(crate) fn finish(&mut self) {
        self.stats.invites_unresolved += self.invites.clear() + self.challenges.clear();
    }

    /// A SIP message this host's kernel dropped. An initial INVITE towards
    /// a live binding raises at once: the call cannot reach the PBX.
    pub(crate) fn on_dropped_sip(
        &mut self,
        record: &MessageRecord,
        reason: &DropReason,
        out: &mut Vec<Finding>,
    ) {
        let m = &record.message;
        if m.method() != Some(&Method::Invite) || !m.is_request() || m.to_tag().is_some() {
            return;
        }
        let now = record.meta.ts;
        let Some((binding, matched)) = self.bindings.find(record, now) else {
            return;
        };
        let note = DropNote {
            at: now,
            reason: reason.clone(),
            what: format!("{} from {}", MessageRef::of(record).label, record.meta.src),
            from: record.meta.src,
            port: record.meta.dst.port(),
            count: 1,
        };
        match self.invites.note_drop(record, note.clone()) {
            NotedDrop::First { evicted } => self.stats.early_drops_evicted += evicted,
            NotedDrop::Repeat => return,
        }
        self.raise(
            &binding,
            matched,
            record,
            Failure::DroppedLocally(note),
            now,
            out,
        );
    }

    /// An ICMP destination-unreachable quoting a SIP datagram: kept on the
    /// INVITE it refused, for the reason of its timeout.
    pub(crate) fn on_icmp(&mut self, icmp: &IcmpUnreachable) {
        let describe = icmp.describe();
        let kind = describe
            .split_once('(')
            .map_or(describe.as_str(), |(_, k)| k.trim_end_matches(')'))
            .to_owned();
        self.invites.note_icmp(
            (icmp.quoted_src, icmp.quoted_dst),
            IcmpNote {
                at: icmp.ts,
                from: icmp.from,
                describe,
                kind,
            },
        );
    }

    fn raise(
        &mut self,
        binding: &RegisteredContact,
        matched: MatchedBy,
        invite: &MessageRecord,
        failure: Failure,
        at: Timestamp,
        out: &mut Vec<Finding>,
    ) {
        if !self.first_in_window((binding.key(), failure.key()), at) {
            return;
        }
        self.stats.blocked += 1;
        let d = findings::diagnosis(binding, matched, invite, &failure, at);
        out.push(Finding::Diagnosis(d));
    }

    /// True when `key` was not raised within the window (and records it).
    fn first_in_window(&mut self, key: (String, String), now: Timestamp) -> bool {
        self.raised.first(key, now)
    }
}
