//! The pipeline's counters: nothing is dropped without a count.

use crate::analysis::calls::CallStats;
use crate::analysis::digest::exchanges::ExchangeStats;
use crate::analysis::flood_guard::FloodStats;
use crate::analysis::inbound::InboundStats;
use crate::analysis::reachability::ReachabilityStats;
use crate::analysis::registration::RegistrationStats;
use crate::packet::PacketStats;
use crate::sip::{MalformedCounts, TransactionStats};

/// Counters of the SIP stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SipStats {
    /// Messages parsed (requests + responses, retransmissions included).
    pub messages: u64,
    pub requests: u64,
    pub responses: u64,
    pub retransmissions: u64,
    /// Messages that parsed but have at least one defect.
    pub messages_with_defects: u64,
    /// Payloads rejected as unreadable (fatal defect).
    pub unreadable: u64,
    /// Per reason, fatal and non-fatal together.
    pub malformed: MalformedCounts,
}

/// Every counter of the pipeline: nothing is dropped without a count.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub packets: PacketStats,
    pub sip: SipStats,
    pub transactions: TransactionStats,
    pub registrations: RegistrationStats,
    pub reachability: ReachabilityStats,
    pub calls: CallStats,
    pub inbound: InboundStats,
    /// Digest authentication of requests other than REGISTER.
    pub auth: ExchangeStats,
    /// Findings shown and suppressed by the flood guard.
    pub findings: FloodStats,
}
