//! INVITEs to a registered contact that the PBX challenged (401/407,
//! RFC 3261 §22.2-22.3), waiting to see whether the caller answers the
//! challenge with a new INVITE in the same Call-ID (§22.2: "the client
//! SHOULD retry the request with credentials", same Call-ID, CSeq + 1).
//!
//! A provider does not authenticate towards its customer's PBX: a PBX
//! that challenges the provider's INVITE has not recognised the trunk
//! (Asterisk challenges every INVITE from an address no `type=identify`
//! section matches), and the call is lost. A challenge nobody answers
//! within the wait is that finding; a retry with credentials is a normal
//! authenticated call and ends the wait.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use crate::sip::MessageRecord;
use crate::time::Timestamp;

use super::bindings::{MatchedBy, RegisteredContact};

/// One challenged INVITE.
#[derive(Debug)]
pub(crate) struct Challenged {
    pub binding: Arc<RegisteredContact>,
    pub matched: MatchedBy,
    pub request: Arc<MessageRecord>,
    pub response: Arc<MessageRecord>,
    pub status: u16,
    pub deadline: Timestamp,
}

/// The challenged INVITEs by Call-ID, bounded, in deadline order (the
/// wait is constant and the packet clock does not go back).
pub(crate) struct ChallengeTable {
    max: usize,
    wait: Duration,
    by_call: HashMap<String, Challenged>,
    order: VecDeque<(Timestamp, String)>,
}

impl ChallengeTable {
    pub(crate) fn new(max: usize, wait: Duration) -> Self {
        Self {
            max: max.max(1),
            wait,
            by_call: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    pub(crate) fn wait(&self) -> Duration {
        self.wait
    }

    /// Starts waiting for the caller to answer the challenge `response`;
    /// returns how many waits were forgotten to make room (at most one).
    pub(crate) fn challenged(
        &mut self,
        binding: Arc<RegisteredContact>,
        matched: MatchedBy,
        request: Arc<MessageRecord>,
        response: Arc<MessageRecord>,
        status: u16,
    ) -> u64 {
        let Some(call_id) = request.message.call_id().map(|c| c.into_owned()) else {
            return 0;
        };
        let mut evicted = 0;
        if !self.by_call.contains_key(&call_id) && self.by_call.len() >= self.max {
            while let Some((_, old)) = self.order.pop_front() {
                if self.by_call.remove(&old).is_some() {
                    evicted = 1;
                    break;
                }
            }
        }
        let deadline = response.meta.ts + self.wait;
        self.order.push_back((deadline, call_id.clone()));
        // Retried waits leave their order entry behind: compact when they
        // outnumber the live ones, so the queue stays bounded too.
        if self.order.len() > 2 * self.max {
            let live = &self.by_call;
            self.order
                .retain(|(d, c)| live.get(c).is_some_and(|x| x.deadline == *d) || *c == call_id);
        }
        self.by_call.insert(
            call_id,
            Challenged {
                binding,
                matched,
                request,
                response,
                status,
                deadline,
            },
        );
        evicted
    }

    /// A new INVITE in the Call-ID: the caller answered the challenge (or
    /// retried); it is judged on its own.
    pub(crate) fn retried(&mut self, call_id: &str) -> bool {
        self.by_call.remove(call_id).is_some()
    }

    /// Challenges nobody answered by `now`.
    pub(crate) fn expired(&mut self, now: Timestamp) -> Vec<Challenged> {
        let mut due = Vec::new();
        while let Some((deadline, _)) = self.order.front() {
            if *deadline > now {
                break;
            }
            let (deadline, call_id) = self.order.pop_front().expect("front exists");
            // A stale order entry (retried, or re-challenged with a later
            // deadline) is skipped.
            if self
                .by_call
                .get(&call_id)
                .is_some_and(|c| c.deadline == deadline)
                && let Some(c) = self.by_call.remove(&call_id)
            {
                due.push(c);
            }
        }
        due
    }

    /// Forgets everything (end of input); returns how many were waiting.
    pub(crate) fn clear(&mut self) -> u64 {
        let n = self.by_call.len() as u64;
        self.by_call.clear();
        self.order.clear();
        n
    }
}
