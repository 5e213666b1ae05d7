//! Registration tracking (RFC 3261 §10): bindings, attempts, outcomes.
//!
//! The tracker consumes the pipeline's SIP events and emits
//! [`RegistrationAttempt`]s (one per attempt: first REGISTER through its
//! final outcome) together with the diagnoses raised on the way.

mod attempt;

pub use attempt::{Binding, Outcome, RegistrationAttempt};
