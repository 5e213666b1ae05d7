//! What the server did with the credentials: a fresh challenge, a
//! rejection (and a loop of them), a stale nonce; the digest module words
//! the findings, this decides when they apply.

use std::sync::Arc;

use super::{LastChallenge, RegistrationTracker};
use crate::analysis::digest::{self, Credentials, challenge_loop, rechallenged};
use crate::analysis::finding::Finding;
use crate::analysis::registration::exchange;
use crate::diagnosis::MessageRef;
use crate::sip::{MessageRecord, SipUri};
use crate::time::Timestamp;

impl RegistrationTracker {
    pub(super) fn on_challenge(
        &mut self,
        id: u64,
        resp: &Arc<MessageRecord>,
        creds: Option<&Credentials>,
        here: MessageRef,
        out: &mut Vec<Finding>,
    ) {
        let at = resp.meta.ts;
        let challenges = exchange::challenges(&resp.message);
        let answered = self.bindings[&id]
            .attempt
            .as_ref()
            .is_some_and(|a| a.challenged);
        if let Some(c) = creds {
            self.resolve_stale(id, false, out);
            let next = digest::select_challenge(&challenges, c).cloned();
            match next {
                Some(next) if next.stale => {
                    let b = self.bindings.get_mut(&id).expect("binding exists");
                    if let Some(a) = b.attempt.as_mut() {
                        a.pending_stale = Some((at, next));
                    }
                }
                Some(next) if answered => {
                    let d = rechallenged(at, c, &next);
                    self.raise(id, d, out);
                    self.count_rejection(id, at, c, out);
                    self.maybe_username_is_did(id, at, Some(c), out);
                }
                _ => {}
            }
        }
        let b = self.bindings.get_mut(&id).expect("binding exists");
        if let Some(a) = b.attempt.as_mut() {
            a.challenged = true;
        }
        if !challenges.is_empty() {
            let call_id = resp.message.call_id().unwrap_or_default().into_owned();
            b.challenges.retain(|c| c.call_id != call_id);
            if b.challenges.len() >= super::MAX_CALL_IDS {
                b.challenges.pop_front();
            }
            b.challenges.push_back(LastChallenge {
                call_id,
                challenges,
                message: here,
            });
        }
        self.reschedule(id);
    }

    pub(super) fn count_rejection(
        &mut self,
        id: u64,
        at: Timestamp,
        c: &Credentials,
        out: &mut Vec<Finding>,
    ) {
        let b = self.bindings.get_mut(&id).expect("binding exists");
        let who = (c.username.clone(), c.realm.clone());
        if b.rejected_as.as_ref() == Some(&who) {
            b.rejections += 1;
        } else {
            b.rejected_as = Some(who);
            b.rejections = 1;
        }
        if b.rejections >= self.config.challenge_loop_after.max(1) {
            let d = challenge_loop(at, c, b.rejections);
            self.raise(id, d, out);
        }
    }

    pub(super) fn maybe_username_is_did(
        &mut self,
        id: u64,
        at: Timestamp,
        creds: Option<&Credentials>,
        out: &mut Vec<Finding>,
    ) {
        let Some(c) = creds else { return };
        let Some(user) =
            SipUri::parse(self.bindings[&id].binding.aor.as_bytes()).and_then(|u| u.user)
        else {
            return;
        };
        if let Some(d) = digest::username_is_did(at, &c.username, &user) {
            self.raise(id, d, out);
        }
    }

    /// The stale challenge of the open attempt, if any, is reported now
    /// that it is known whether the client recovered.
    pub(super) fn resolve_stale(&mut self, id: u64, recovered: bool, out: &mut Vec<Finding>) {
        let b = self.bindings.get_mut(&id).expect("binding exists");
        let Some((at, ch)) = b.attempt.as_mut().and_then(|a| a.pending_stale.take()) else {
            return;
        };
        if let Some(d) = digest::stale_nonce(at, &ch, Some(recovered)) {
            self.raise(id, d, out);
        }
    }
}
