//! What an RTP flow is, shared by the layer that measures flows (the
//! kernel's flow map read by `capture::live`) and the media analysis that
//! reads them (`analysis::media`, which also measures flows of a pcap):
//! the flow's key and its RFC 3550 state at a moment. Vocabulary only; the
//! arithmetic is `sipscope_common::RtpFlowState`'s.

use std::net::SocketAddr;

use sipscope_common::RtpFlowState;

use crate::time::Timestamp;

/// A UDP flow: source and destination address and port (the protocol of
/// the 5-tuple is always UDP here; RTP over TCP, RFC 4571, is not tracked).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FlowKey {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

impl FlowKey {
    pub fn new(src: SocketAddr, dst: SocketAddr) -> Self {
        Self { src, dst }
    }

    /// The flow in the opposite direction.
    pub fn reversed(self) -> Self {
        Self {
            src: self.dst,
            dst: self.src,
        }
    }
}

impl std::fmt::Display for FlowKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} -> {}", self.src, self.dst)
    }
}

/// One RTP flow's RFC 3550 state at a moment, whatever measured it: the
/// kernel's flow map (live capture) or the userspace flow table (a pcap).
/// Both keep the same [`RtpFlowState`], updated by the same code, so the
/// call analysis reads one type. As of the flow's last packet.
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
