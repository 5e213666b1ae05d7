//! Per-source RTP reception statistics, RFC 3550 appendix A.1 (sequence
//! validation and extended highest sequence), A.3 (expected, lost, fraction
//! lost) and A.8 (interarrival jitter).
//!
//! # Same arithmetic as the kernel
//!
//! The eBPF program keeps these statistics per flow in an LRU hash map, so
//! the update path here ([`RtpStreamStats::update`]) uses only integer
//! add/sub/shift/compare, u64 division by a constant and fixed-size state:
//! it can be transcribed line by line into the eBPF crate and both sides give
//! identical numbers for the same packets.
//!
//! Fixed-point formats:
//! - *arrival* is kept in RTP timestamp units with 4 fractional bits (Q4):
//!   `arrival_q4 = (now - first_seen) * clock_rate * 16 / 1e9`, computed as
//!   whole seconds plus the nanosecond remainder so no intermediate exceeds
//!   2^54 for clocks up to [`MAX_CLOCK_RATE`]. Relative to the first packet,
//!   truncated to u32 (differences are taken with wrapping arithmetic, which
//!   is exact while one transit difference stays under 2^27 timestamp units:
//!   4.6 hours at 8 kHz).
//! - *transit* = `arrival_q4 - (rtp_timestamp << 4)`, wrapping u32.
//! - *jitter* is RFC 3550 A.8's integer form
//!   `jitter += |D| - ((jitter + 8) >> 4)`, i.e. the estimate scaled by 16;
//!   since D itself is Q4, the stored value is the jitter in timestamp units
//!   scaled by 256 (Q8), held in a u64 so no |D| can overflow it. The RFC's
//!   report value (an RR's interarrival jitter) is `jitter_q8 >> 8`. The four
//!   extra bits keep sub-sample resolution (7.8 µs at 8 kHz) where whole
//!   timestamp units would quantise every D to 125 µs.
//!
//! For the kernel map value, the state to mirror is (all integers):
//! `ssrc u32, base_seq u32, max_seq u16, cycles u32, bad_seq u32,
//! received u32, seen_window u64, transit_q4 u32, transit_clock u32,
//! jitter_q8 u64, packets u64, bytes u64, duplicates u64, reordered u64,
//! rejected u64, first_seen/last_seen u64 ns`, plus a `u8` initialised flag;
//! the clock comes from a 128-entry per-payload-type array (see
//! [`super::flow::ClockTable`]). Max/mean jitter and interval priors are
//! userspace-only reporting state.
//!
//! Deviations from the RFC text, on purpose: no probation (A.1 allows it to
//! be omitted; the first packet starts the source), and a 64-bit window of
//! recently seen sequence numbers so duplicates can be told apart from
//! reordered packets (the RFC counts both as received, and so do we: the
//! cumulative loss can go negative with duplicates, exactly as in A.3).

use super::rtp::RtpHeader;
use crate::capture::Timestamp;

/// RFC 3550 A.1: largest forward jump accepted as in order (with loss).
pub const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: how far behind the highest sequence a packet is still
/// counted as reordered/duplicated rather than as a restart.
pub const MAX_MISORDER: u16 = 100;
const RTP_SEQ_MOD: u32 = 1 << 16;
/// Width of the duplicate-detection window (bits in `seen_window`).
pub const SEEN_WINDOW: u16 = 64;
/// Largest RTP clock the fixed-point arrival time supports (2^20 Hz, far
/// above the 90 kHz video clock). A larger clock is treated as unknown.
pub const MAX_CLOCK_RATE: u32 = 1 << 20;

const NANOS_PER_SEC: u64 = 1_000_000_000;

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
    initialised: bool,
    ssrc: u32,
    payload_type: u8,
    // --- RFC 3550 A.1 ---
    base_seq: u32,
    max_seq: u16,
    /// Shifted count of sequence number cycles (multiples of 2^16), as in A.1.
    cycles: u32,
    bad_seq: u32,
    received: u32,
    expected_prior: u32,
    received_prior: u32,
    /// Bit i set: sequence `max_seq - i` was received.
    seen_window: u64,
    // --- RFC 3550 A.8 ---
    has_transit: bool,
    transit_clock: u32,
    transit_q4: u32,
    jitter_q8: u64,
    // --- counters (userspace reporting; the kernel keeps the same) ---
    packets: u64,
    bytes: u64,
    duplicates: u64,
    reordered: u64,
    rejected: u64,
    restarts: u64,
    ssrc_changes: u64,
    max_jitter_q8: u64,
    jitter_sum_q8: u64,
    jitter_samples: u64,
    first_seen: Timestamp,
    last_seen: Timestamp,
}

/// `delta` on the packet clock expressed in Q4 RTP timestamp units.
fn ticks_q4(delta_ns: u64, clock_rate: u32) -> u32 {
    let clock_q4 = u64::from(clock_rate) << 4;
    let secs = delta_ns / NANOS_PER_SEC;
    let rem = delta_ns % NANOS_PER_SEC;
    // Truncation to u32 is intended: transit is a wrapping quantity.
    secs.wrapping_mul(clock_q4)
        .wrapping_add(rem * clock_q4 / NANOS_PER_SEC) as u32
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
        if self.initialised && header.ssrc != self.ssrc {
            // A new source on the same 5-tuple (RFC 3550 8.2 collision, or a
            // restarted sender): its sequence and timestamps are unrelated.
            let changes = self.ssrc_changes + 1;
            *self = Self::default();
            self.ssrc_changes = changes;
        }
        if !self.initialised {
            self.initialised = true;
            self.ssrc = header.ssrc;
            self.first_seen = arrival;
            self.init_seq(header.sequence);
        }
        self.packets += 1;
        self.bytes += wire_len as u64;
        self.last_seen = self.last_seen.max(arrival);

        let verdict = if self.packets == 1 {
            self.received = 1;
            SeqVerdict::InOrder
        } else {
            self.update_seq(header.sequence)
        };
        if verdict == SeqVerdict::Rejected {
            return verdict;
        }
        self.payload_type = header.payload_type;
        let clock_rate = if clock_rate > MAX_CLOCK_RATE {
            0
        } else {
            clock_rate
        };
        if clock_rate != 0 {
            self.update_jitter(arrival, header.timestamp, clock_rate);
        }
        verdict
    }

    /// RFC 3550 A.1 `init_seq`.
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = u32::from(seq);
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.received = 0;
        self.received_prior = 0;
        self.expected_prior = 0;
        self.seen_window = 1;
    }

    /// RFC 3550 A.1 `update_seq` without probation, plus the seen-window.
    fn update_seq(&mut self, seq: u16) -> SeqVerdict {
        let udelta = seq.wrapping_sub(self.max_seq);
        let verdict = if udelta < MAX_DROPOUT {
            if udelta == 0 {
                self.duplicates += 1;
                SeqVerdict::Duplicate
            } else {
                if seq < self.max_seq {
                    self.cycles = self.cycles.wrapping_add(RTP_SEQ_MOD);
                }
                self.max_seq = seq;
                self.seen_window = if udelta >= SEEN_WINDOW {
                    1
                } else {
                    (self.seen_window << udelta) | 1
                };
                SeqVerdict::InOrder
            }
        } else if u32::from(udelta) <= RTP_SEQ_MOD - u32::from(MAX_MISORDER) {
            if u32::from(seq) == self.bad_seq {
                // Two sequential packets: the sender restarted its sequence.
                self.init_seq(seq);
                self.restarts += 1;
                SeqVerdict::Restarted
            } else {
                self.bad_seq = (u32::from(seq) + 1) & (RTP_SEQ_MOD - 1);
                self.rejected += 1;
                return SeqVerdict::Rejected;
            }
        } else {
            let behind = self.max_seq.wrapping_sub(seq);
            if behind < SEEN_WINDOW && self.seen_window & (1u64 << behind) != 0 {
                self.duplicates += 1;
                SeqVerdict::Duplicate
            } else {
                if behind < SEEN_WINDOW {
                    self.seen_window |= 1u64 << behind;
                }
                self.reordered += 1;
                SeqVerdict::Reordered
            }
        };
        self.received = self.received.wrapping_add(1);
        verdict
    }

    /// RFC 3550 A.8, integer form, with arrival in Q4 (see module docs).
    fn update_jitter(&mut self, arrival: Timestamp, rtp_timestamp: u32, clock_rate: u32) {
        let arrival_q4 = ticks_q4(
            arrival
                .as_nanos()
                .saturating_sub(self.first_seen.as_nanos()),
            clock_rate,
        );
        let transit = arrival_q4.wrapping_sub(rtp_timestamp.wrapping_shl(4));
        if self.has_transit && self.transit_clock == clock_rate {
            let d = u64::from((transit.wrapping_sub(self.transit_q4) as i32).unsigned_abs());
            // ((j + 8) >> 4) <= j for every j >= 0, so this never underflows
            // (the eBPF verifier and the reader can both rely on that).
            self.jitter_q8 = self.jitter_q8 + d - ((self.jitter_q8 + 8) >> 4);
            self.max_jitter_q8 = self.max_jitter_q8.max(self.jitter_q8);
            self.jitter_sum_q8 = self.jitter_sum_q8.saturating_add(self.jitter_q8);
            self.jitter_samples += 1;
        } else if self.has_transit {
            // The clock changed with the payload type: the old transit is in
            // other units, so start over rather than report a bogus D.
            self.jitter_q8 = 0;
        }
        self.has_transit = true;
        self.transit_clock = clock_rate;
        self.transit_q4 = transit;
    }

    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Payload type of the last accepted packet.
    pub fn payload_type(&self) -> u8 {
        self.payload_type
    }

    /// Every packet of this source, including duplicates and rejected ones.
    pub fn packets(&self) -> u64 {
        self.packets
    }

    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// RFC 3550 A.1 `received` (duplicates included, rejected excluded).
    pub fn received(&self) -> u32 {
        self.received
    }

    /// Extended highest sequence number received (A.1: cycles + max_seq).
    pub fn extended_max_seq(&self) -> u32 {
        self.cycles.wrapping_add(u32::from(self.max_seq))
    }

    /// A.3: `expected = extended_max - base_seq + 1`.
    pub fn expected(&self) -> u32 {
        if !self.initialised {
            return 0;
        }
        self.extended_max_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// A.3 cumulative number of packets lost: `expected - received`;
    /// negative when duplicates outnumber losses.
    pub fn cumulative_lost(&self) -> i64 {
        i64::from(self.expected()) - i64::from(self.received)
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
        let received_interval = self.received.wrapping_sub(self.received_prior);
        self.received_prior = self.received;
        let lost_interval = i64::from(expected_interval) - i64::from(received_interval);
        let fraction = if expected_interval == 0 || lost_interval <= 0 {
            0
        } else {
            ((lost_interval << 8) / i64::from(expected_interval)).min(255) as u8
        };
        (expected_interval, lost_interval, fraction)
    }

    pub fn duplicates(&self) -> u64 {
        self.duplicates
    }

    pub fn reordered(&self) -> u64 {
        self.reordered
    }

    /// Packets dropped by the A.1 large-jump check.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Sequence restarts accepted after a large jump (A.1 re-sync).
    pub fn restarts(&self) -> u64 {
        self.restarts
    }

    /// How often the SSRC on this flow changed (each change restarts stats).
    pub fn ssrc_changes(&self) -> u64 {
        self.ssrc_changes
    }

    /// Raw A.8 state: jitter in timestamp units × 256.
    pub fn jitter_q8(&self) -> u64 {
        self.jitter_q8
    }

    /// A.8 interarrival jitter in timestamp units, as an RR carries it.
    pub fn jitter_rtp_units(&self) -> u32 {
        (self.jitter_q8 >> 8).min(u64::from(u32::MAX)) as u32
    }

    /// Clock used for the last jitter update (0 if none yet).
    pub fn clock_rate(&self) -> u32 {
        self.transit_clock
    }

    fn q8_to_ms(&self, q8: u64) -> f64 {
        if self.transit_clock == 0 {
            return 0.0;
        }
        q8 as f64 * 1000.0 / (256.0 * f64::from(self.transit_clock))
    }

    /// Current jitter estimate in milliseconds (reporting only).
    pub fn jitter_ms(&self) -> f64 {
        self.q8_to_ms(self.jitter_q8)
    }

    /// Largest jitter estimate seen after any packet, in ms.
    pub fn max_jitter_ms(&self) -> f64 {
        self.q8_to_ms(self.max_jitter_q8)
    }

    /// Mean of the jitter estimate over all packets that updated it, in ms.
    pub fn mean_jitter_ms(&self) -> f64 {
        if self.jitter_samples == 0 {
            return 0.0;
        }
        self.q8_to_ms(self.jitter_sum_q8) / self.jitter_samples as f64
    }

    pub fn first_seen(&self) -> Timestamp {
        self.first_seen
    }

    pub fn last_seen(&self) -> Timestamp {
        self.last_seen
    }
}

#[cfg(test)]
#[path = "rtp_stats_tests.rs"]
mod tests;
