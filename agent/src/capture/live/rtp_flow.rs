//! What the poller hands out: one owned snapshot per RTP flow
//! ([`RtpFlowStats`], RFC 3550 A.1/A.3/A.8 figures with Unix timestamps),
//! the counters, and the kernel's flow key built from socket addresses.

use std::{
    fmt,
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
};

use sipscope_common::{Family, RtpCounter, RtpFlowKey, RtpFlowState};

use crate::{capture::live::KtimeClock, packet::Direction, time::Timestamp};

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
    /// The raw kernel state (RFC 3550 A.1/A.8 fields, ktime stamps).
    pub state: RtpFlowState,
}

impl RtpFlowStats {
    /// Converts one map entry; ktime stamps become Unix time via `clock`.
    pub fn from_kernel(key: &RtpFlowKey, state: RtpFlowState, clock: KtimeClock) -> Self {
        let addr = |raw: [u8; 16]| {
            if key.family == Family::Ipv4 as u8 {
                IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
            } else {
                IpAddr::V6(Ipv6Addr::from(raw))
            }
        };
        let direction = match key.direction {
            d if d == sipscope_common::Direction::Ingress as u8 => Direction::Ingress,
            d if d == sipscope_common::Direction::Egress as u8 => Direction::Egress,
            _ => Direction::Unknown,
        };
        Self {
            src: SocketAddr::new(addr(key.src_addr), key.src_port),
            dst: SocketAddr::new(addr(key.dst_addr), key.dst_port),
            ifindex: key.ifindex,
            direction,
            first_seen: clock.to_timestamp(state.first_seen_ns),
            last_seen: clock.to_timestamp(state.last_seen_ns),
            state,
        }
    }

    /// The flow as the call analysis reads it (interface and direction
    /// dropped: a call's flow is the same wherever it was seen).
    pub fn snapshot(&self) -> crate::analysis::media::FlowSnapshot {
        crate::analysis::media::FlowSnapshot {
            key: crate::analysis::media::FlowKey::new(self.src, self.dst),
            state: self.state,
            first_seen: self.first_seen,
            last_seen: self.last_seen,
        }
    }

    pub fn ssrc(&self) -> u32 {
        self.state.ssrc
    }

    /// Payload type of the last accepted packet.
    pub fn payload_type(&self) -> u8 {
        self.state.payload_type
    }

    /// Every packet, duplicates and rejected ones included.
    pub fn packets(&self) -> u64 {
        self.state.packets
    }

    /// UDP payload bytes.
    pub fn bytes(&self) -> u64 {
        self.state.bytes
    }

    /// RFC 3550 A.3 expected packets.
    pub fn expected(&self) -> u32 {
        self.state.expected()
    }

    /// RFC 3550 A.3 cumulative lost (negative with duplicates).
    pub fn lost(&self) -> i64 {
        self.state.cumulative_lost()
    }

    pub fn reordered(&self) -> u64 {
        self.state.reordered
    }

    pub fn duplicates(&self) -> u64 {
        self.state.duplicates
    }

    /// RTP clock of the last jitter update (0: none yet).
    pub fn clock_rate(&self) -> u32 {
        self.state.transit_clock
    }

    /// Current RFC 3550 A.8 jitter estimate in milliseconds.
    pub fn jitter_ms(&self) -> f64 {
        self.state.jitter_ms()
    }

    /// Largest jitter estimate the flow had, in milliseconds.
    pub fn max_jitter_ms(&self) -> f64 {
        self.state.max_jitter_ms()
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
            self.ssrc(),
            self.payload_type(),
            self.packets(),
            self.lost(),
            self.reordered(),
            self.jitter_ms(),
            self.max_jitter_ms()
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
    pub(super) kernel: [u64; RtpCounter::COUNT as usize],
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
        self.kernel[counter as usize]
    }
}

impl fmt::Display for RtpCounters {
    /// `name=value` pairs separated by spaces (stable, parsed by tests).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for c in RtpCounter::ALL {
            write!(f, "{}={} ", c.name(), self.get(c))?;
        }
        write!(
            f,
            "rtp_flows_live={} rtp_flows_expired={} rtp_flows_evicted={}",
            self.flows_live, self.flows_expired, self.flows_evicted
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
    let (family, src_addr, dst_addr) = match (src.ip(), dst.ip()) {
        (IpAddr::V4(s), IpAddr::V4(d)) => {
            let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
            a[..4].copy_from_slice(&s.octets());
            b[..4].copy_from_slice(&d.octets());
            (Family::Ipv4, a, b)
        }
        (IpAddr::V6(s), IpAddr::V6(d)) => (Family::Ipv6, s.octets(), d.octets()),
        _ => return None,
    };
    let direction = match direction {
        Direction::Ingress => sipscope_common::Direction::Ingress,
        Direction::Egress => sipscope_common::Direction::Egress,
        Direction::Unknown => return None,
    };
    Some(RtpFlowKey {
        src_addr,
        dst_addr,
        src_port: src.port(),
        dst_port: dst.port(),
        ifindex,
        family: family as u8,
        direction: direction as u8,
        _pad: [0; 2],
    })
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
