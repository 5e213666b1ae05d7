//! What the poller hands out: one owned snapshot per RTP flow
//! ([`RtpFlowStats`], RFC 3550 A.1/A.3/A.8 figures with Unix timestamps),
//! the counters, and the kernel's flow key built from socket addresses.

use std::{fmt, net::SocketAddr};

use sipscope_common::{RtpCounter, RtpFlowKey, RtpFlowState};

use super::super::{KtimeClock, RtpKernelCounters, record};
use crate::{
    media_flow::{FlowKey, FlowSnapshot},
    packet::Direction,
    time::Timestamp,
};

/// One RTP flow as the kernel accounted it, converted for reporting.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpFlowStats {
    pub src: SocketAddr,
    pub dst: SocketAddr,
    pub ifindex: u32,
    /// Ingress (XDP) or egress (TC) on `ifindex`.
    pub direction: Direction,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// The raw kernel state (RFC 3550 A.1/A.8 fields, ktime stamps): SSRC,
    /// payload type, counts, and loss and jitter through its methods.
    pub state: RtpFlowState,
}

impl RtpFlowStats {
    /// Converts one map entry; ktime stamps become Unix time via `clock`.
    pub fn from_kernel(key: &RtpFlowKey, state: RtpFlowState, clock: KtimeClock) -> Self {
        Self {
            src: key.src(),
            dst: key.dst(),
            ifindex: key.ifindex,
            direction: record::direction(key.direction),
            first_seen: clock.to_timestamp(state.first_seen_ns),
            last_seen: clock.to_timestamp(state.last_seen_ns),
            state,
        }
    }

    /// The flow as the call analysis reads it (interface and direction
    /// dropped: a call's flow is the same wherever it was seen).
    pub fn snapshot(&self) -> FlowSnapshot {
        FlowSnapshot {
            key: FlowKey::new(self.src, self.dst),
            state: self.state,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
        }
    }
}

impl fmt::Display for RtpFlowStats {
    /// `src -> dst dir ssrc=0x.. pt=N packets=N lost=N reordered=N
    /// jitter=X.XXXms max_jitter=X.XXXms [dropped_here=N]` (stable, parsed
    /// by tests).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dir = match self.direction {
            Direction::Ingress => "in",
            Direction::Egress => "out",
            Direction::Unknown => "?",
        };
        write!(
            f,
            "{} -> {} {dir} ssrc=0x{:08x} pt={} packets={} lost={} reordered={} jitter={:.3}ms max_jitter={:.3}ms",
            self.src,
            self.dst,
            self.state.ssrc,
            self.state.payload_type,
            self.state.packets,
            self.state.cumulative_lost(),
            self.state.reordered,
            self.state.jitter_ms(),
            self.state.max_jitter_ms()
        )?;
        // Only when the firewall dropped some: the line stays as it was.
        if self.state.local_drops > 0 {
            write!(f, " dropped_here={}", self.state.local_drops)?;
        }
        Ok(())
    }
}

/// Kernel RTP counters (summed over CPUs) and the poller's own.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RtpCounters {
    pub(super) kernel: RtpKernelCounters,
    /// Flows in the map at the last poll.
    pub flows_live: u64,
    /// Flows deleted by the poller after being idle.
    pub flows_expired: u64,
    /// Flows the kernel's LRU evicted to make room (inferred:
    /// created - live - expired; exact once traffic is quiet).
    pub flows_evicted: u64,
}

impl RtpCounters {
    pub fn get(&self, counter: RtpCounter) -> u64 {
        self.kernel.get(counter)
    }
}

impl fmt::Display for RtpCounters {
    /// `name=value` pairs separated by spaces (stable, parsed by tests).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} rtp_flows_live={} rtp_flows_expired={} rtp_flows_evicted={}",
            self.kernel, self.flows_live, self.flows_expired, self.flows_evicted
        )
    }
}

/// The kernel's key for `src -> dst` on `ifindex` in `direction`; `None`
/// when the families differ or the direction is unknown.
pub fn flow_key(
    src: SocketAddr,
    dst: SocketAddr,
    ifindex: u32,
    direction: Direction,
) -> Option<RtpFlowKey> {
    RtpFlowKey::new(src, dst, ifindex, record::kernel_direction(direction)?)
}

/// What one poll found.
#[derive(Clone, Debug, Default)]
pub struct RtpPoll {
    /// Flows still in the map, in key order of the map walk.
    pub active: Vec<RtpFlowStats>,
    /// Flows deleted by this poll for being idle: their final statistics.
    pub expired: Vec<RtpFlowStats>,
    pub counters: RtpCounters,
}
