//! One registration attempt: the unit of a registration trace.

use std::{net::SocketAddr, sync::Arc};

use crate::diagnosis::Diagnosis;
use crate::sip::Transaction;
use crate::time::Timestamp;

/// What is being registered (RFC 3261 §10.2): the address of record, the
/// contact it is bound to, and the Call-ID a UA keeps across refreshes
/// (§10.2.4).
#[derive(Clone, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub struct Binding {
    /// To URI of the REGISTER, e.g. `sip:1001@pbx.example`.
    pub aor: String,
    /// First Contact URI (None for a binding query without Contact).
    pub contact: Option<String>,
    pub call_id: String,
}

/// How an attempt ended.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Outcome {
    /// 2xx with a non-zero granted expiry (seconds).
    Registered { expires: u32 },
    /// 2xx to `Expires: 0` (or all contacts removed).
    Deregistered,
    /// A final error other than a challenge (403, 404, 423, 5xx, ...).
    Rejected { status: u16, reason: String },
    /// The client stopped answering challenges (last final was 401/407).
    GaveUp { status: u16 },
    /// The last REGISTER got no final response (timer F, end of capture).
    TimedOut,
}

impl Outcome {
    pub fn is_success(&self) -> bool {
        matches!(self, Outcome::Registered { .. } | Outcome::Deregistered)
    }

    /// Stable label for metrics: `registered`, `deregistered`, `rejected`,
    /// `gave_up`, `timed_out`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Registered { .. } => "registered",
            Outcome::Deregistered => "deregistered",
            Outcome::Rejected { .. } => "rejected",
            Outcome::GaveUp { .. } => "gave_up",
            Outcome::TimedOut => "timed_out",
        }
    }
}

/// One attempt: the first REGISTER (initial or refresh) through the
/// challenges it drew to its final outcome.
#[derive(Clone, Debug)]
pub struct RegistrationAttempt {
    pub binding: Binding,
    /// The UA that sends REGISTER (a PBX trunk or a phone).
    pub client: SocketAddr,
    /// The registrar it sends to.
    pub registrar: SocketAddr,
    /// CSeq of the first REGISTER of the attempt: with the Call-ID it
    /// identifies the attempt across hosts (deterministic trace id).
    pub first_cseq: u32,
    pub started: Timestamp,
    pub ended: Timestamp,
    /// The REGISTER transactions in order (REGISTER→401, REGISTER→200).
    pub transactions: Vec<Arc<Transaction>>,
    pub outcome: Outcome,
    /// Digest username and realm of the last credentials sent, if any.
    pub auth_username: Option<String>,
    pub realm: Option<String>,
    /// Everything raised about this attempt, in packet-clock order.
    pub diagnoses: Vec<Diagnosis>,
}
