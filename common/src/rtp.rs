//! RTP statistics kept in the kernel: the flow key, the map value and the
//! per-packet update (RFC 3550 appendix A.1, A.3, A.8).
//!
//! The update lives here, in the crate both sides compile, so the eBPF
//! program and userspace run the very same code: a unit test in the agent
//! feeds [`RtpFlowState::update`] and the media core's `RtpStreamStats`
//! the same packets and asserts identical numbers. It is written for the
//! verifier: integer add/sub/shift/compare, u64 division by a constant, no
//! loops, no indexing, nothing that can panic.
//!
//! Fixed point (same as `analysis::media::rtp_stats`): arrival in Q4 RTP
//! timestamp units of the packet clock (wrapping u32), jitter in Q8
//! (`jitter_q8 >> 8` is the RFC 3550 A.8 value an RR would carry).

/// RTP port range used when none is configured (the range Asterisk ships
/// in rtp.conf).
pub const DEFAULT_RTP_PORT_MIN: u16 = 10_000;
pub const DEFAULT_RTP_PORT_MAX: u16 = 20_000;
/// RTP clock assumed when neither the port nor the payload type gives one
/// (G.711, RFC 3551 section 4.5.14).
pub const DEFAULT_RTP_CLOCK_RATE: u32 = 8_000;
/// The first dynamic RTP payload type (RFC 3551 section 3: 96-127), the
/// only ones whose clock SDP negotiates per port; below it the static
/// table's clock holds.
pub const FIRST_DYNAMIC_PT: u8 = 96;
/// Flows in the kernel's LRU map unless configured otherwise.
pub const DEFAULT_RTP_FLOWS: u32 = 16_384;
/// Entries of the per-port clock override map (ports negotiated in SDP).
pub const MAX_RTP_PORT_CLOCKS: u32 = 4_096;

/// RFC 3550 A.1: largest forward jump accepted as in order (with loss).
pub const MAX_DROPOUT: u16 = 3000;
/// RFC 3550 A.1: how far behind the highest sequence a packet is still
/// taken as late rather than as a restart.
pub const MAX_MISORDER: u16 = 100;
/// Width of the duplicate-detection window (bits in `seen_window`).
pub const SEEN_WINDOW: u16 = 64;
/// Largest RTP clock the fixed-point arrival supports; above: unknown.
pub const MAX_CLOCK_RATE: u32 = 1 << 20;
const RTP_SEQ_MOD: u32 = 1 << 16;
const NANOS_PER_SEC: u64 = 1_000_000_000;

/// `RtpFlowState::flags`: the first packet was seen.
pub const RTP_FLOW_INITIALISED: u8 = 1 << 0;
/// `RtpFlowState::flags`: `transit_q4` holds a previous transit time.
pub const RTP_FLOW_HAS_TRANSIT: u8 = 1 << 1;
/// The state is one CPU's share of a flow (the per-CPU store): the A.8
/// transit difference is taken only between consecutive sequence numbers,
/// since a packet after a gap may follow packets another CPU saw, and the
/// difference across them holds the sender's clock drift, not jitter.
pub const RTP_FLOW_PER_CPU: u8 = 1 << 2;
/// `RtpFlowState::flags`: `transit_clock` was negotiated in SDP for the
/// flow's current SSRC and payload type, so its next packets of both may
/// reuse it ([`RtpFlowState::negotiated_clock`]).
pub const RTP_FLOW_CLOCK_NEGOTIATED: u8 = 1 << 3;

/// Run-time RTP configuration (one-entry array map). A range with
/// `port_min > port_max`, or all zero (never written), tracks nothing.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RtpConfig {
    pub port_min: u16,
    pub port_max: u16,
    /// Clock used when neither port nor payload type gives one (Hz).
    pub default_clock_rate: u32,
    /// Entries userspace put into the per-port clock map; 0 skips that
    /// lookup on the hot path.
    pub port_clocks: u32,
    pub _pad: u32,
}
const _: () = assert!(core::mem::size_of::<RtpConfig>() == 16);

impl RtpConfig {
    /// True if `port` is in the configured range.
    #[inline(always)]
    pub fn in_range(&self, port: u16) -> bool {
        port != 0 && port >= self.port_min && port <= self.port_max
    }
}

/// Key of one RTP flow: one direction of a UDP 5-tuple as seen on one
/// interface (so a forwarded stream seen on two interfaces is two flows).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RtpFlowKey {
    /// IPv4 addresses occupy the first 4 bytes, the rest is zero.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// Host byte order.
    pub src_port: u16,
    pub dst_port: u16,
    pub ifindex: u32,
    /// [`crate::Family`] as u8.
    pub family: u8,
    /// [`crate::Direction`] as u8.
    pub direction: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<RtpFlowKey>() == 44);

impl RtpFlowKey {
    /// The flow of a packet with these endpoints, seen on `ifindex`.
    #[inline(always)]
    pub const fn of(packet: &crate::Endpoints, ifindex: u32) -> Self {
        Self {
            src_addr: packet.src_addr,
            dst_addr: packet.dst_addr,
            src_port: packet.src_port,
            dst_port: packet.dst_port,
            ifindex,
            family: packet.family,
            direction: packet.direction,
            _pad: [0; 2],
        }
    }
}

/// Key of one IPv4 RTP flow: what [`RtpFlowKey`] says, in 16 bytes. The
/// kernel hashes (jhash) and compares the key of every RTP packet; the
/// 44-byte form took about three times the work for an IPv4 flow, whose
/// addresses fill 8 of its 32 address bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RtpFlowKeyV4 {
    /// Network byte order, as in the IPv4 header.
    pub src_addr: [u8; 4],
    pub dst_addr: [u8; 4],
    /// Host byte order.
    pub src_port: u16,
    pub dst_port: u16,
    /// `ifindex << 1 | direction` ([`crate::Direction`]: 0 or 1; an
    /// ifindex is a positive C `int`, so the shift loses nothing).
    pub ifindex_direction: u32,
}
const _: () = assert!(core::mem::size_of::<RtpFlowKeyV4>() == 16);

impl RtpFlowKeyV4 {
    #[inline(always)]
    pub const fn pack(ifindex: u32, direction: u8) -> u32 {
        (ifindex << 1) | (direction as u32 & 1)
    }

    /// The compact form of an IPv4 `key` (`None` for IPv6).
    pub fn of(key: &RtpFlowKey) -> Option<Self> {
        if key.family != crate::Family::Ipv4 as u8 {
            return None;
        }
        let a = |s: [u8; 16]| [s[0], s[1], s[2], s[3]];
        Some(Self {
            src_addr: a(key.src_addr),
            dst_addr: a(key.dst_addr),
            src_port: key.src_port,
            dst_port: key.dst_port,
            ifindex_direction: Self::pack(key.ifindex, key.direction),
        })
    }

    /// The general form of this key.
    pub fn widen(&self) -> RtpFlowKey {
        let slot = |a: [u8; 4]| {
            let mut s = [0u8; 16];
            s[..4].copy_from_slice(&a);
            s
        };
        RtpFlowKey {
            src_addr: slot(self.src_addr),
            dst_addr: slot(self.dst_addr),
            src_port: self.src_port,
            dst_port: self.dst_port,
            ifindex: self.ifindex_direction >> 1,
            family: crate::Family::Ipv4 as u8,
            direction: (self.ifindex_direction & 1) as u8,
            _pad: [0; 2],
        }
    }
}

/// Per-port clock override key: a port negotiated in SDP and a payload
/// type with its `a=rtpmap` clock (RFC 4566 section 6).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct RtpPortClockKey {
    pub port: u16,
    pub payload_type: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<RtpPortClockKey>() == 4);

/// One RTP packet's header fields as the update needs them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtpPacketFields {
    pub sequence: u16,
    pub timestamp: u32,
    pub ssrc: u32,
    pub payload_type: u8,
}

/// The RFC 3550 reception state of one flow: the value of the kernel's
/// LRU map, a line-by-line mirror of the media core's `RtpStreamStats`.
///
/// # Layout: one cache line per packet
///
/// With thousands of flows the per-packet update misses the cache, so the
/// fields it reads or writes for an ordinary packet fill the first 64
/// bytes (the hot line) and everything else (first seen, rare events,
/// A.1 restart state, the drop tracer's fields) the second. The value is
/// exactly two cache lines: the kernel's hash map element is a 48-byte
/// header, the key rounded up to 8 bytes, then the value, so with the
/// 16-byte [`RtpFlowKeyV4`] an element is 192 bytes and, in the
/// preallocated (page-aligned) element array of an LRU map, every value
/// starts on a cache line; header and key share the element's first
/// line. A per-CPU map (the 5.10 store) keeps its values in the per-CPU
/// allocator, 8-byte aligned, where the hot part may straddle two lines.
///
/// To fit: A.1 `received` is not counted per packet but derived as
/// `packets - unreceived` ([`Self::received`]), where `unreceived` (cold)
/// changes only on a rejected jump or a restart; the jitter is 32-bit
/// (each step capped at [`MAX_TRANSIT_STEP_Q4`], which bounds it to
/// 2^31); the counters of rare events (reordered, rejected, restarts,
/// SSRC changes) are 32-bit and wrap after 2^32 such events in one flow.
/// `packets`, `bytes` and `duplicates` stay 64-bit (they grow with the
/// traffic: a video flow passes 4 GB in an hour). The lock word is 64-bit
/// because the eBPF object is built for BPF cpu v1, whose only
/// compare-and-swap is 64-bit.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct RtpFlowState {
    // Hot: every packet.
    /// Taken (1) while a CPU updates the value (see the eBPF `rtp` module).
    pub lock: u64,
    /// `RTP_FLOW_*` bits.
    pub flags: u8,
    pub payload_type: u8,
    pub max_seq: u16,
    pub ssrc: u32,
    /// Every packet (duplicates and rejected ones included).
    pub packets: u64,
    /// UDP payload bytes.
    pub bytes: u64,
    /// `bpf_ktime_get_ns()` of the last packet.
    pub last_seen_ns: u64,
    /// Bit i set: sequence `max_seq - i` was received.
    pub seen_window: u64,
    /// A.8 state: previous transit (Q4) and the clock it was taken with.
    pub transit_q4: u32,
    pub transit_clock: u32,
    /// A.8 jitter in timestamp units x 256, and the largest value it had.
    pub jitter_q8: u32,
    pub max_jitter_q8: u32,
    // Cold: the first packet, rare events, the drop tracer.
    /// `bpf_ktime_get_ns()` of the first packet.
    pub first_seen_ns: u64,
    /// Packets of this flow that this host's kernel then dropped (the
    /// drop tracer adds them atomically; `update` never touches them).
    pub local_drops: u64,
    /// `bpf_ktime_get_ns()` when the drop tracer last sent one of this
    /// flow's drops to userspace (it sends at most one a second).
    pub drop_reported_ns: u64,
    pub duplicates: u64,
    /// Packets not in A.1 `received` (wrapping): rejected by the
    /// large-jump check, or before the last restart.
    pub unreceived: u32,
    /// A.1 state.
    pub base_seq: u32,
    pub cycles: u32,
    pub bad_seq: u32,
    pub reordered: u32,
    /// Dropped by the A.1 large-jump check.
    pub rejected: u32,
    pub restarts: u32,
    pub ssrc_changes: u32,
}
const _: () = assert!(core::mem::size_of::<RtpFlowState>() == 128);
/// Where the hot line ends: the per-packet fields all lie before it.
pub const RTP_FLOW_HOT_LEN: usize = 64;
const _: () = assert!(core::mem::offset_of!(RtpFlowState, max_jitter_q8) + 4 == RTP_FLOW_HOT_LEN);
const _: () = assert!(core::mem::offset_of!(RtpFlowState, first_seen_ns) == RTP_FLOW_HOT_LEN);
// The lock and the drop tracer's atomics need natural alignment.
const _: () = assert!(core::mem::offset_of!(RtpFlowState, lock) == 0);
const _: () = assert!(core::mem::offset_of!(RtpFlowState, local_drops) % 8 == 0);
const _: () = assert!(core::mem::offset_of!(RtpFlowState, drop_reported_ns) % 8 == 0);

/// Largest transit difference |D| (Q4 timestamp units) one packet adds to
/// the A.8 jitter: 2^23 timestamp units, 17 minutes at 8 kHz, 93 s at
/// 90 kHz. A larger step is a timestamp jump, not network jitter; capping
/// it keeps `jitter_q8 <= 2^31` (the estimate converges to 16 |D|), so the
/// 32-bit state cannot overflow, while the spike it causes is still
/// reported.
pub const MAX_TRANSIT_STEP_Q4: u32 = (1 << 27) - 1;

/// `delta_ns` on the packet clock in Q4 RTP timestamp units (wrapping u32).
#[inline(always)]
pub fn ticks_q4(delta_ns: u64, clock_rate: u32) -> u32 {
    let clock_q4 = (clock_rate as u64) << 4;
    let secs = delta_ns / NANOS_PER_SEC;
    let rem = delta_ns % NANOS_PER_SEC;
    secs.wrapping_mul(clock_q4)
        .wrapping_add(rem * clock_q4 / NANOS_PER_SEC) as u32
}

impl RtpFlowState {
    /// Accounts one RTP packet that arrived at `now_ns` with `wire_len`
    /// UDP payload bytes; `clock_rate` 0 = unknown (no jitter update).
    /// RFC 3550 A.1 `update_seq` without probation, A.8 jitter.
    #[inline(always)]
    pub fn update(&mut self, now_ns: u64, pkt: &RtpPacketFields, wire_len: u32, clock_rate: u32) {
        self.update_clocked(now_ns, pkt, wire_len, clock_rate, false);
    }

    /// [`Self::update`] with a clock negotiated in SDP for this packet's
    /// port and payload type (`negotiated`), which the flow keeps for its
    /// next packets ([`Self::negotiated_clock`]).
    #[inline(always)]
    pub fn update_clocked(
        &mut self,
        now_ns: u64,
        pkt: &RtpPacketFields,
        wire_len: u32,
        clock_rate: u32,
        negotiated: bool,
    ) {
        if self.flags & RTP_FLOW_INITIALISED != 0 && pkt.ssrc != self.ssrc {
            // A new source on the same 5-tuple: its sequence and timestamps
            // are unrelated to the old one's.
            // Lock and drop accounting belong to the flow, not the source.
            let changes = self.ssrc_changes.wrapping_add(1);
            let (lock, drops, reported) = (self.lock, self.local_drops, self.drop_reported_ns);
            let per_cpu = self.flags & RTP_FLOW_PER_CPU;
            *self = Self::default();
            self.flags = per_cpu;
            self.lock = lock;
            self.local_drops = drops;
            self.drop_reported_ns = reported;
            self.ssrc_changes = changes;
        }
        if self.flags & RTP_FLOW_INITIALISED == 0 {
            self.flags |= RTP_FLOW_INITIALISED;
            self.ssrc = pkt.ssrc;
            self.first_seen_ns = now_ns;
            self.init_seq(pkt.sequence);
        }
        let successor = pkt.sequence == self.max_seq.wrapping_add(1);
        self.packets += 1;
        self.bytes += wire_len as u64;
        if now_ns > self.last_seen_ns {
            self.last_seen_ns = now_ns;
        }
        // The first packet is received (`unreceived` is 0 on a new state).
        if self.packets != 1 && !self.update_seq(pkt.sequence) {
            return;
        }
        self.payload_type = pkt.payload_type;
        let clock_rate = if clock_rate > MAX_CLOCK_RATE {
            0
        } else {
            clock_rate
        };
        if clock_rate != 0 {
            if self.flags & RTP_FLOW_PER_CPU != 0 && !successor {
                // Start over from this packet (see RTP_FLOW_PER_CPU).
                self.flags &= !RTP_FLOW_HAS_TRANSIT;
            }
            self.update_jitter(now_ns, pkt.timestamp, clock_rate);
        }
        if negotiated && clock_rate != 0 {
            self.flags |= RTP_FLOW_CLOCK_NEGOTIATED;
        } else {
            // Also a clock-less type (telephone-event): its packets stay
            // out of the jitter, so `transit_clock` is not theirs.
            self.flags &= !RTP_FLOW_CLOCK_NEGOTIATED;
        }
    }

    /// The clock a packet of this flow may take without looking it up: the
    /// one negotiated in SDP for the flow's last accepted packet, when
    /// `pkt` has the same SSRC and payload type. RFC 3264 section 8.3.2:
    /// within a session the mapping of a dynamic payload type to its codec
    /// (and so its clock) must not change, and a new stream has a new SSRC.
    #[inline(always)]
    pub fn negotiated_clock(&self, pkt: &RtpPacketFields) -> Option<u32> {
        const KEPT: u8 = RTP_FLOW_INITIALISED | RTP_FLOW_HAS_TRANSIT | RTP_FLOW_CLOCK_NEGOTIATED;
        if self.flags & KEPT == KEPT
            && self.ssrc == pkt.ssrc
            && self.payload_type == pkt.payload_type
        {
            Some(self.transit_clock)
        } else {
            None
        }
    }

    /// RFC 3550 A.1 `init_seq`.
    #[inline(always)]
    fn init_seq(&mut self, seq: u16) {
        self.base_seq = seq as u32;
        self.max_seq = seq;
        self.bad_seq = RTP_SEQ_MOD + 1;
        self.cycles = 0;
        self.seen_window = 1;
    }

    /// RFC 3550 A.1 `update_seq`; false if the packet was rejected.
    #[inline(always)]
    fn update_seq(&mut self, seq: u16) -> bool {
        let udelta = seq.wrapping_sub(self.max_seq);
        if udelta < MAX_DROPOUT {
            if udelta == 0 {
                self.duplicates += 1;
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
            }
        } else if udelta as u32 <= RTP_SEQ_MOD - MAX_MISORDER as u32 {
            if seq as u32 == self.bad_seq {
                // Two sequential packets after a jump: the sender restarted.
                // A.1 starts `received` over: from this packet on.
                self.init_seq(seq);
                self.unreceived = (self.packets - 1) as u32;
                self.restarts = self.restarts.wrapping_add(1);
            } else {
                self.bad_seq = (seq as u32 + 1) & (RTP_SEQ_MOD - 1);
                self.rejected = self.rejected.wrapping_add(1);
                self.unreceived = self.unreceived.wrapping_add(1);
                return false;
            }
        } else {
            let behind = self.max_seq.wrapping_sub(seq);
            if behind < SEEN_WINDOW && self.seen_window & (1u64 << behind) != 0 {
                self.duplicates += 1;
            } else {
                if behind < SEEN_WINDOW {
                    self.seen_window |= 1u64 << behind;
                }
                self.reordered = self.reordered.wrapping_add(1);
            }
        }
        true
    }

    /// RFC 3550 A.8 in integer form (arrival and transit in Q4).
    #[inline(always)]
    fn update_jitter(&mut self, now_ns: u64, rtp_timestamp: u32, clock_rate: u32) {
        // Arrival on the packet clock itself, not since the first packet:
        // only differences of transit count, and the wrapped tick count is
        // exact (see `ticks_q4`), so the update needs no cold field.
        let arrival_q4 = ticks_q4(now_ns, clock_rate);
        let transit = arrival_q4.wrapping_sub(rtp_timestamp.wrapping_shl(4));
        if self.flags & RTP_FLOW_HAS_TRANSIT != 0 && self.transit_clock == clock_rate {
            let d = (transit.wrapping_sub(self.transit_q4) as i32)
                .unsigned_abs()
                .min(MAX_TRANSIT_STEP_Q4);
            // ((j + 8) >> 4) <= j for every j, so this never underflows;
            // with j <= 2^31 and d < 2^27, j + d < 2^32 and the new j is
            // at most 15/16 j + d <= 2^31 (MAX_TRANSIT_STEP_Q4).
            self.jitter_q8 = self.jitter_q8 + d - ((self.jitter_q8 + 8) >> 4);
            if self.jitter_q8 > self.max_jitter_q8 {
                self.max_jitter_q8 = self.jitter_q8;
            }
        } else if self.flags & RTP_FLOW_HAS_TRANSIT != 0 {
            // The clock changed with the payload type: start over.
            self.jitter_q8 = 0;
        }
        self.flags |= RTP_FLOW_HAS_TRANSIT;
        self.transit_clock = clock_rate;
        self.transit_q4 = transit;
    }

    /// A.1 `received`: packets accepted since the sequence (re)started,
    /// duplicates included (wrapping, as a 32-bit counter would).
    pub fn received(&self) -> u32 {
        (self.packets as u32).wrapping_sub(self.unreceived)
    }

    /// A.1 extended highest sequence number received.
    pub fn extended_max_seq(&self) -> u32 {
        self.cycles.wrapping_add(self.max_seq as u32)
    }

    /// A.3 `expected = extended_max - base_seq + 1` (0 before any packet).
    pub fn expected(&self) -> u32 {
        if self.flags & RTP_FLOW_INITIALISED == 0 {
            return 0;
        }
        self.extended_max_seq()
            .wrapping_sub(self.base_seq)
            .wrapping_add(1)
    }

    /// A.3 cumulative lost: `expected - received` (negative with duplicates).
    pub fn cumulative_lost(&self) -> i64 {
        self.expected() as i64 - self.received() as i64
    }

    /// One flow's state from its per-CPU states (the store for kernels
    /// without BPF atomics). A flow seen on one CPU comes back unchanged.
    /// Split over CPUs, each CPU saw a subset of the packets: counts are
    /// summed, the A.3 sequence extent spans every CPU's (so a packet one
    /// CPU saw is not lost to another), and the jitter is the estimate of
    /// the CPU that saw most packets. States of another SSRC than that
    /// CPU's (a source change seen on one CPU only) count only their
    /// local drops.
    pub fn merge_cpus<'a>(states: impl Iterator<Item = &'a Self> + Clone) -> Self {
        let initialised = |s: &Self| s.flags & RTP_FLOW_INITIALISED != 0;
        let main = states
            .clone()
            .enumerate()
            .filter(|(_, s)| initialised(s))
            .max_by_key(|(_, s)| s.packets);
        let (main_cpu, mut out) = match main {
            Some((cpu, s)) => (Some(cpu), *s),
            None => (None, Self::default()),
        };
        out.local_drops = 0;
        out.drop_reported_ns = 0;
        // Sequence extent as offsets from main's base.
        let (mut lo, mut hi) = (0i64, i64::from(out.expected()) - 1);
        for (cpu, s) in states.enumerate() {
            out.local_drops += s.local_drops;
            out.drop_reported_ns = out.drop_reported_ns.max(s.drop_reported_ns);
            if Some(cpu) == main_cpu || !initialised(s) || s.ssrc != out.ssrc {
                continue;
            }
            // RTP sequence numbers are 16 bits: the nearest distance (a CPU
            // that took over the flow after a wrap starts just "below").
            let base = i64::from(s.base_seq.wrapping_sub(out.base_seq) as u16 as i16);
            lo = lo.min(base);
            hi = hi.max(base + i64::from(s.expected()) - 1);
            // `received` follows: the sums of packets and unreceived.
            out.unreceived = out.unreceived.wrapping_add(s.unreceived);
            out.packets += s.packets;
            out.bytes += s.bytes;
            out.duplicates += s.duplicates;
            out.reordered = out.reordered.wrapping_add(s.reordered);
            out.rejected = out.rejected.wrapping_add(s.rejected);
            out.restarts = out.restarts.wrapping_add(s.restarts);
            out.first_seen_ns = out.first_seen_ns.min(s.first_seen_ns);
            out.last_seen_ns = out.last_seen_ns.max(s.last_seen_ns);
        }
        if main_cpu.is_some() {
            let ext_max = out.base_seq.wrapping_add(hi as u32);
            out.base_seq = out.base_seq.wrapping_add(lo as u32);
            out.cycles = ext_max & !0xffff;
            out.max_seq = ext_max as u16;
        }
        out
    }
}

crate::counter::counter_slots! {
    /// Indices into the per-CPU RTP counter array.
    pub enum RtpCounter {
        /// RTP packets accounted to a flow.
        Packets = 0 => "rtp_packets",
        /// RTCP packets (RFC 5761 section 4: second octet 192..=223) on RTP
        /// range ports; counted only, not kept per flow.
        RtcpPackets = 1 => "rtcp_packets",
        /// UDP datagrams on RTP range ports that are neither RTP v2 nor RTCP.
        NotRtp = 2 => "rtp_not_rtp",
        /// New flows inserted into the LRU map.
        FlowsCreated = 3 => "rtp_flows_created",
        /// A flow could not be inserted (map error): its packet is lost to
        /// the statistics, counted here.
        FlowInsertFailed = 4 => "rtp_flow_insert_failed",
        /// Another CPU held the flow for longer than the bounded wait: the
        /// packet is counted here instead of in the flow.
        LockContended = 5 => "rtp_lock_contended",
        /// RTCP SR/RR with report blocks copied to userspace (the far end's
        /// view of the stream); a ring buffer full is `ringbuf_full`.
        RtcpForwarded = 6 => "rtcp_forwarded",
    }
}

#[cfg(feature = "user")]
mod user {
    // SAFETY (each): plain #[repr(C)] data with explicit padding, no
    // pointers; every bit pattern is a valid value.
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RtpConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RtpFlowKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RtpFlowKeyV4 {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RtpPortClockKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::RtpFlowState {}

    /// Reporting in milliseconds: userspace only (the kernel has no floats).
    impl super::RtpFlowState {
        /// A jitter value in timestamp units x 256 as milliseconds at the
        /// clock of the last jitter update (0 before any).
        pub fn q8_to_ms(&self, q8: u64) -> f64 {
            if self.transit_clock == 0 {
                return 0.0;
            }
            q8 as f64 * 1000.0 / (256.0 * f64::from(self.transit_clock))
        }

        /// RFC 3550 A.8 interarrival jitter now, in milliseconds.
        pub fn jitter_ms(&self) -> f64 {
            self.q8_to_ms(self.jitter_q8.into())
        }

        /// Largest jitter estimate the flow had, in milliseconds.
        pub fn max_jitter_ms(&self) -> f64 {
            self.q8_to_ms(self.max_jitter_q8.into())
        }
    }
}
