//! What an analysis hands back to its caller: a catalogue finding, or a
//! report of its own. Every analysis appends to a caller-given
//! `Vec<Finding>` in the order it concluded things, so the caller (the
//! pipeline) can both show them and hand them on to the analyses that
//! learn from them, without any analysis knowing the others.

use crate::analysis::calls::Call;
use crate::analysis::registration::RegistrationAttempt;
use crate::diagnosis::Diagnosis;

#[derive(Clone, Debug)]
pub(crate) enum Finding {
    /// A catalogue finding ([`crate::diagnosis`]).
    Diagnosis(Diagnosis),
    /// A registration attempt reached its outcome (RFC 3261 §10).
    RegistrationAttempt(RegistrationAttempt),
    /// A call changed state or negotiated media (RFC 3261 §13, RFC 3264);
    /// its last report is `closed`.
    Call(Call),
}
