//! Per-source RTP reception statistics, RFC 3550 appendix A.1 (sequence
//! validation and extended highest sequence), A.3 (expected, lost, fraction
//! lost) and A.8 (interarrival jitter).
//!
//! # The kernel's arithmetic, not a copy of it
//!
//! The eBPF program keeps these statistics per flow in an LRU hash map. The
//! update itself is [`sipscope_common::RtpFlowState::update`], compiled into
//! both the eBPF object and this crate, so a flow measured in the kernel and
//! the same packets read from a pcap give identical numbers. This type adds
//! only userspace reporting state (interval priors for A.3 fraction lost,
//! mean jitter) and the per-packet [`SeqVerdict`].
//!
//! Fixed-point formats:
//! - *arrival* is kept in RTP timestamp units with 4 fractional bits (Q4):
//!   `arrival_q4 = now * clock_rate * 16 / 1e9` on the packet clock,
//!   computed as whole seconds plus the nanosecond remainder so no
//!   intermediate overflows for clocks up to [`MAX_CLOCK_RATE`], truncated
//!   to u32 (only differences count, taken with wrapping arithmetic, which
//!   is exact while one transit difference stays under 2^27 timestamp
//!   units: 4.6 hours at 8 kHz).
//! - *transit* = `arrival_q4 - (rtp_timestamp << 4)`, wrapping u32.
//! - *jitter* is RFC 3550 A.8's integer form
//!   `jitter += |D| - ((jitter + 8) >> 4)`, i.e. the estimate scaled by 16;
//!   since D itself is Q4, the stored value is the jitter in timestamp units
//!   scaled by 256 (Q8), in a u32: each |D| is capped at
//!   [`sipscope_common::MAX_TRANSIT_STEP_Q4`] (2^23 timestamp units, a
//!   timestamp jump rather than jitter), which keeps it at most 2^31. The RFC's
//!   report value (an RR's interarrival jitter) is `jitter_q8 >> 8`. The four
//!   extra bits keep sub-sample resolution (7.8 µs at 8 kHz) where whole
//!   timestamp units would quantise every D to 125 µs.
//!
//! Deviations from the RFC text, on purpose: no probation (A.1 allows it to
//! be omitted; the first packet starts the source), and a 64-bit window of
//! recently seen sequence numbers so duplicates can be told apart from
//! reordered packets (the RFC counts both as received, and so do we: the
//! cumulative loss can go negative with duplicates, exactly as in A.3).

pub(crate) use sipscope_common::MAX_CLOCK_RATE;
use sipscope_common::{RTP_FLOW_HAS_TRANSIT, RTP_FLOW_INITIALISED, RtpFlowState, RtpPacketFields};

use super::rtp::RtpHeader;
use crate::media_flow::{FlowKey, FlowSnapshot};
use crate::time::Timestamp;

/// What the sequence check made of one packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeqVerdict {
    /// Next in order (possibly after a gap of lost packets).
    InOrder,
    /// Arrived after a higher sequence number and was not seen before.
    Reordered,
    /// Sequence number already received.
    Duplicate,
    /// A jump larger than [`MAX_DROPOUT`]: not counted, unless the next
    /// packet follows it, which restarts the sequence (RFC 3550 A.1).
    Rejected,
    /// The packet after a rejected jump followed it: sequence restarted.
    Restarted,
}

/// RFC 3550 reception state and counters of one RTP source (SSRC).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RtpStreamStats {
    /// The state the kernel keeps per flow, updated by the same code.
    state: RtpFlowState,
    /// A.3 interval priors (userspace reporting only).
    expected_prior: u32,
    received_prior: u32,
    jitter_sum_q8: u64,
    jitter_samples: u64,
}

impl RtpStreamStats {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one packet that arrived at `arrival`. `wire_len` is the UDP
    /// payload length; `clock_rate` the RTP clock of its payload type in Hz
    /// (0 = unknown, e.g. a dynamic type without rtpmap, or
    /// telephone-event, whose timestamp stands still during a digit: such
    /// packets count for loss but do not touch the jitter estimate).
    pub fn update(
        &mut self,
        arrival: Timestamp,
        header: &RtpHeader,
        wire_len: usize,
        clock_rate: u32,
    ) -> SeqVerdict {
        let initialised = self.state.flags & RTP_FLOW_INITIALISED != 0;
        if initialised && header.ssrc != self.state.ssrc {
            // A new source on the same 5-tuple: the shared update resets the
            // kernel state; the reporting state starts over with it.
            *self = Self {
                state: self.state,
                ..Self::default()
            };
        }
        let before = if initialised && header.ssrc != self.state.ssrc {
            RtpFlowState::default()
        } else {
            self.state
        };
        self.state.update(
            arrival.as_nanos(),
            &RtpPacketFields {
                sequence: header.sequence,
                timestamp: header.timestamp,
                ssrc: header.ssrc,
                payload_type: header.payload_type,
            },
            u32::try_from(wire_len).unwrap_or(u32::MAX),
            clock_rate,
        );
        let after = &self.state;
        let verdict = if after.rejected > before.rejected {
            SeqVerdict::Rejected
        } else if after.restarts > before.restarts {
            SeqVerdict::Restarted
        } else if after.duplicates > before.duplicates {
            SeqVerdict::Duplicate
        } else if after.reordered > before.reordered {
            SeqVerdict::Reordered
        } else {
            SeqVerdict::InOrder
        };
        if matches!(verdict, SeqVerdict::Restarted) || before.flags & RTP_FLOW_INITIALISED == 0 {
            // A.1 init_seq starts the interval priors over.
            self.expected_prior = 0;
            self.received_prior = 0;
        }
        // The estimate moved iff the previous transit was taken with the
        // same (known) clock: count it for the mean.
        let clock = if clock_rate > MAX_CLOCK_RATE {
            0
        } else {
            clock_rate
        };
        if verdict != SeqVerdict::Rejected
            && clock != 0
            && before.flags & RTP_FLOW_HAS_TRANSIT != 0
            && before.transit_clock == clock
        {
            self.jitter_sum_q8 = self
                .jitter_sum_q8
                .saturating_add(u64::from(after.jitter_q8));
            self.jitter_samples += 1;
        }
        verdict
    }

    pub fn ssrc(&self) -> u32 {
        self.state.ssrc
    }

    /// Payload type of the last accepted packet.
    pub fn payload_type(&self) -> u8 {
        self.state.payload_type
    }

    /// Every packet of this source, including duplicates and rejected ones.
    pub fn packets(&self) -> u64 {
        self.state.packets
    }

    pub fn bytes(&self) -> u64 {
        self.state.bytes
    }

    /// RFC 3550 A.1 `received` (duplicates included, rejected excluded).
    pub fn received(&self) -> u32 {
        self.state.received()
    }

    /// Extended highest sequence number received (A.1: cycles + max_seq).
    pub fn extended_max_seq(&self) -> u32 {
        self.state.extended_max_seq()
    }

    /// A.3: `expected = extended_max - base_seq + 1`.
    pub fn expected(&self) -> u32 {
        self.state.expected()
    }

    /// A.3 cumulative number of packets lost: `expected - received`;
    /// negative when duplicates outnumber losses.
    pub fn cumulative_lost(&self) -> i64 {
        self.state.cumulative_lost()
    }

    /// Lost as a percentage of expected, floored at 0 (reporting only).
    pub fn loss_percent(&self) -> f64 {
        let expected = self.expected();
        if expected == 0 {
            return 0.0;
        }
        (self.cumulative_lost().max(0) as f64) * 100.0 / f64::from(expected)
    }

    /// A.3 interval loss since the previous call, as an RR would report it:
    /// `(expected_interval, lost_interval, fraction_lost)` with the
    /// fraction in Q8 (lost/expected × 256), 0 when nothing was lost.
    pub fn take_interval(&mut self) -> (u32, i64, u8) {
        let expected = self.expected();
        let expected_interval = expected.wrapping_sub(self.expected_prior);
        self.expected_prior = expected;
        let received = self.state.received();
        let received_interval = received.wrapping_sub(self.received_prior);
        self.received_prior = received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        (expected_interval, lost_interval, fraction)
    }

    pub fn duplicates(&self) -> u64 {
        self.state.duplicates
    }

    pub fn reordered(&self) -> u64 {
        self.state.reordered.into()
    }

    /// Packets dropped by the A.1 large-jump check.
    pub fn rejected(&self) -> u64 {
        self.state.rejected.into()
    }

    /// Sequence restarts accepted after a large jump (A.1 re-sync).
    pub fn restarts(&self) -> u64 {
        self.state.restarts.into()
    }

    /// How often the SSRC on this flow changed (each change restarts stats).
    pub fn ssrc_changes(&self) -> u64 {
        self.state.ssrc_changes.into()
    }

    /// Raw A.8 state: jitter in timestamp units × 256.
    pub fn jitter_q8(&self) -> u64 {
        self.state.jitter_q8.into()
    }

    /// A.8 interarrival jitter in timestamp units, as an RR carries it.
    pub fn jitter_rtp_units(&self) -> u32 {
        self.state.jitter_q8 >> 8
    }

    /// Clock used for the last jitter update (0 if none yet).
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

    /// Mean of the jitter estimate over all packets that updated it, in ms.
    pub fn mean_jitter_ms(&self) -> f64 {
        if self.jitter_samples == 0 {
            return 0.0;
        }
        self.state.q8_to_ms(self.jitter_sum_q8) / self.jitter_samples as f64
    }

    /// The RFC 3550 state shared with the kernel.
    pub fn state(&self) -> &RtpFlowState {
        &self.state
    }

    pub fn first_seen(&self) -> Timestamp {
        Timestamp::from_nanos(self.state.first_seen_ns)
    }

    pub fn last_seen(&self) -> Timestamp {
        Timestamp::from_nanos(self.state.last_seen_ns)
    }

    /// This flow's statistics as of its last packet, keyed `key`.
    pub fn snapshot(&self, key: FlowKey) -> FlowSnapshot {
        FlowSnapshot {
            key,
            state: self.state,
            first_seen: self.first_seen(),
            last_seen: self.last_seen(),
        }
    }
}

#[cfg(test)]
#[path = "rtp_stats_tests.rs"]
mod tests;
