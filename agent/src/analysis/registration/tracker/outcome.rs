//! Ending attempts: the outcome, the granted registration it leaves,
//! re-arming findings after a success, and flapping.

use std::time::Duration;

use super::{MAX_HISTORY, RegistrationTracker, sticky};
use crate::analysis::digest;
use crate::analysis::finding::Finding;
use crate::analysis::registration::{Binding, Outcome, RegistrationAttempt, findings};
use crate::diagnosis::Code;
use crate::time::Timestamp;

impl RegistrationTracker {
    /// Ends the binding's open attempt by what was last seen: no final
    /// response → timed out; a challenge (or 423) → the client gave up.
    pub(super) fn end_open_attempt(
        &mut self,
        id: u64,
        at: Timestamp,
        timer: bool,
        out: &mut Vec<Finding>,
    ) {
        let Some(a) = self.bindings.get(&id).and_then(|b| b.attempt.as_ref()) else {
            return;
        };
        let outcome = match a.last_final {
            _ if a.in_flight => Outcome::TimedOut,
            Some((s @ (401 | 407), _)) => Outcome::GaveUp { status: s },
            Some((status, _)) => Outcome::Rejected {
                status,
                reason: String::new(),
            },
            None => Outcome::TimedOut,
        };
        let stale = a.pending_stale.is_some();
        let end = a.last_final.map_or(at, |(_, t)| t.min(at));
        if stale {
            if timer {
                self.resolve_stale(id, false, out);
            } else {
                // The capture ended right after the stale challenge.
                let b = self.bindings.get_mut(&id).expect("binding exists");
                if let Some((sat, ch)) = b.attempt.as_mut().and_then(|a| a.pending_stale.take())
                    && let Some(d) = digest::stale_nonce(sat, &ch, None)
                {
                    self.raise(id, d, out);
                }
            }
        }
        self.end_attempt(id, end, outcome, out);
    }

    pub(super) fn end_attempt(
        &mut self,
        id: u64,
        at: Timestamp,
        outcome: Outcome,
        out: &mut Vec<Finding>,
    ) {
        let success = outcome.is_success();
        {
            let b = self.bindings.get_mut(&id).expect("binding exists");
            match &outcome {
                Outcome::Registered { expires } => {
                    b.registered =
                        Some((at, *expires, at + Duration::from_secs(u64::from(*expires))));
                }
                Outcome::Deregistered => b.registered = None,
                _ => {}
            }
            b.history.push_back((at, success));
            while b.history.len() > MAX_HISTORY {
                b.history.pop_front();
            }
        }
        self.check_flapping(id, at, out);
        let b = self.bindings.get_mut(&id).expect("binding exists");
        if success {
            // A success re-arms the failure findings, so the next failure
            // is reported again; once flapping is known, it speaks for them.
            if !b.raised.contains(&Code::RegFlapping) {
                b.raised.retain(|c| sticky(*c));
            }
            b.rejections = 0;
            b.rejected_as = None;
        }
        let Some(a) = b.attempt.take() else { return };
        self.stats.count_outcome(&outcome);
        let attempt = RegistrationAttempt {
            binding: Binding {
                call_id: a.call_id,
                ..b.binding.clone()
            },
            client: b.client,
            registrar: b.registrar,
            first_cseq: a.first_cseq,
            started: a.started,
            ended: at,
            transactions: a.transactions,
            outcome,
            auth_username: a.auth_username,
            realm: a.realm,
            diagnoses: a.diagnoses,
        };
        out.push(Finding::RegistrationAttempt(attempt));
        self.reschedule(id);
    }

    /// `reg.flapping`: the outcome changed between success and failure at
    /// least `flapping_changes` times within `flapping_window`.
    pub(super) fn check_flapping(&mut self, id: u64, at: Timestamp, out: &mut Vec<Finding>) {
        let b = &self.bindings[&id];
        let window = self.config.flapping_window;
        let recent: Vec<&(Timestamp, bool)> = b
            .history
            .iter()
            .filter(|(t, _)| at.since(*t) <= window)
            .collect();
        let changes = recent.windows(2).filter(|w| w[0].1 != w[1].1).count() as u32;
        if changes < self.config.flapping_changes.max(1) {
            return;
        }
        let history = recent
            .iter()
            .map(|(t, ok)| format!("{t} {}", if *ok { "ok" } else { "failed" }))
            .collect::<Vec<_>>()
            .join(", ");
        let d = findings::flapping(&b.binding, at, changes, window, &history);
        self.raise(id, d, out);
    }
}
