//! One RTP flow's RFC 3550 state at a moment, whatever measured it: the
//! kernel's flow map (live capture) or the userspace [`super::FlowTable`]
//! (a pcap). Both keep the same [`RtpFlowState`], updated by the same
//! code, so the call analysis reads one type.

use sipscope_common::RtpFlowState;

use super::flow::FlowKey;
use super::rtp_stats::RtpStreamStats;
use crate::time::Timestamp;

/// The statistics of one flow as of its last packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowSnapshot {
    pub key: FlowKey,
    /// RFC 3550 A.1/A.3/A.8 state; its own time fields are in the clock of
    /// whoever measured it (ktime in the kernel), so use the fields below.
    pub state: RtpFlowState,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
}

impl FlowSnapshot {
    pub fn from_stats(key: FlowKey, stats: &RtpStreamStats) -> Self {
        Self {
            key,
            state: *stats.state(),
            first_seen: stats.first_seen(),
            last_seen: stats.last_seen(),
        }
    }

    pub fn packets(&self) -> u64 {
        self.state.packets
    }

    /// RFC 3550 A.3 expected packets.
    pub fn expected(&self) -> u64 {
        u64::from(self.state.expected())
    }

    /// RFC 3550 A.3 cumulative lost (negative with duplicates).
    pub fn lost(&self) -> i64 {
        self.state.cumulative_lost()
    }

    /// Current RFC 3550 A.8 jitter estimate, ms.
    pub fn jitter_ms(&self) -> f64 {
        self.state.jitter_ms()
    }

    pub fn max_jitter_ms(&self) -> f64 {
        self.state.max_jitter_ms()
    }
}
