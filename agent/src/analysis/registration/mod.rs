//! Registration tracking (RFC 3261 §10): bindings, attempts, outcomes.
//!
//! The tracker ([`RegistrationTracker`]) takes parsed messages and
//! completed or timed-out transactions and emits [`RegistrationAttempt`]s
//! (one per attempt: first REGISTER through its final outcome) together
//! with the diagnoses raised on the way: the digest checks on every
//! answered challenge, `auth.rejected`, `auth.challenge_loop`,
//! `auth.stale_nonce`, `auth.forbidden_after_auth`, `auth.username_is_did`,
//! the NAT checks, `reg.rejected`, `reg.expired` and `reg.flapping`. The
//! pipeline drives it, so every consumer (analyze, run) gets the same
//! findings.

mod attempt;
// Its digest readers are shared with `digest::exchanges` (other requests).
pub(crate) mod exchange;
mod findings;
mod tracker;

use std::sync::Arc;
use std::time::Duration;

use crate::analysis::credentials::CredentialStore;

pub use attempt::{Binding, Outcome, RegistrationAttempt};
pub use tracker::RegistrationTracker;

/// Limits and thresholds of the tracker.
#[derive(Clone, Debug)]
pub struct TrackerConfig {
    /// Bindings tracked at once; the least recently active one is evicted
    /// (and counted) when a new one arrives at the limit.
    pub max_bindings: usize,
    /// REGISTER transactions kept per attempt (more are counted, not kept).
    pub max_transactions_per_attempt: usize,
    /// `auth.challenge_loop` after this many consecutive rejections of the
    /// same username and realm.
    pub challenge_loop_after: u32,
    /// An attempt whose last response was a challenge ends as given up
    /// when no further REGISTER follows within this time.
    pub give_up_after: Duration,
    /// `reg.flapping` after `flapping_changes` success/failure alternations
    /// within `flapping_window`.
    pub flapping_window: Duration,
    pub flapping_changes: u32,
    /// `reg.expired` only when no refresh arrived within this time after
    /// the granted expiry.
    pub expiry_grace: Duration,
    /// A binding with no registration and no activity for this long is
    /// forgotten (counted in `bindings_idle_removed`).
    pub idle_binding_timeout: Duration,
    /// Known secrets (`--credentials FILE`) for the password verdict.
    pub credentials: Option<Arc<CredentialStore>>,
}

impl Default for TrackerConfig {
    fn default() -> Self {
        Self {
            max_bindings: 100_000,
            max_transactions_per_attempt: 32,
            challenge_loop_after: 3,
            // 64*T1 (RFC 3261 Timer F): a client still trying answers long before.
            give_up_after: Duration::from_secs(32),
            flapping_window: Duration::from_secs(600),
            flapping_changes: 4,
            idle_binding_timeout: Duration::from_secs(3600),
            expiry_grace: Duration::from_secs(1),
            credentials: None,
        }
    }
}

/// Counters of the registration stage: nothing is dropped uncounted.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct RegistrationStats {
    /// Bindings tracked now.
    pub bindings: u64,
    pub attempts: u64,
    pub registered: u64,
    pub deregistered: u64,
    pub rejected: u64,
    pub gave_up: u64,
    pub timed_out: u64,
    /// `reg.expired` raised.
    pub expired: u64,
    /// Findings raised, and those suppressed as repeats for their binding.
    pub diagnoses: u64,
    pub diagnoses_suppressed: u64,
    /// Pushed out of the full binding table (and attempts open in them).
    pub bindings_evicted: u64,
    pub attempts_evicted: u64,
    pub bindings_idle_removed: u64,
    /// Transactions beyond `max_transactions_per_attempt`.
    pub transactions_dropped: u64,
    /// REGISTER messages without Call-ID or To.
    pub unmatchable: u64,
    /// REGISTER transactions that timed out for a binding no longer
    /// tracked (evicted or idle-removed).
    pub timeouts_unknown_binding: u64,
}

impl RegistrationStats {
    fn count_outcome(&mut self, o: &Outcome) {
        match o {
            Outcome::Registered { .. } => self.registered += 1,
            Outcome::Deregistered => self.deregistered += 1,
            Outcome::Rejected { .. } => self.rejected += 1,
            Outcome::GaveUp { .. } => self.gave_up += 1,
            Outcome::TimedOut => self.timed_out += 1,
        }
    }
}
