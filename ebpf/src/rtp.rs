//! RTP statistics in the kernel: UDP datagrams on RTP range ports that
//! look like RTP v2 are aggregated per flow in an LRU hash map and never
//! copied to userspace. The per-packet arithmetic is
//! `sipscope_common::RtpFlowState::update`, shared with (and tested
//! against) the agent's media core.
//!
//! # Two flow stores, chosen per kernel
//!
//! [`SharedFlows`] (kernels with BPF atomics, 5.12+): a plain `LRU_HASH`
//! whose values carry a small lock word taken with an atomic
//! compare-and-swap (and released by a plain store on x86-64, see
//! [`unlock`]). RFC 3550 sequence tracking and jitter need every
//! packet of a flow, in order, in one state; with a per-CPU map a flow
//! whose packets land on two CPUs (egress from a media thread that
//! migrates, RPS, a NIC without flow hashing) splits into two partial
//! streams. `bpf_spin_lock` is not an option: the kernel refuses it in
//! LRU maps, and it needs BTF-described map values that aya's legacy map
//! definitions do not emit. In practice one flow is updated from one CPU
//! at a time (NAPI serialises a receive queue, RSS keeps a 5-tuple on one
//! queue, a stream is sent by one thread), so the CAS almost never fails;
//! when it does after a bounded number of tries, the packet is counted in
//! `LockContended` instead of being lost silently.
//!
//! [`PerCpuFlows`] (older kernels: no compare-and-exchange before 5.12): an
//! `LRU_PERCPU_HASH`, one state per CPU and no lock. A flow seen on one
//! CPU is exact; a flow split over CPUs is merged by userspace (packets
//! summed, the sequence extent taken over all CPUs, see
//! `RtpFlowState::merge_cpus`).

use core::{
    intrinsics::{AtomicOrdering, atomic_cxchg},
    ptr::addr_of_mut,
};

use aya_ebpf::{
    helpers::bpf_ktime_get_ns,
    macros::map,
    maps::{Array, HashMap, LruHashMap, LruPerCpuHashMap, PerCpuArray},
};
use sipscope_common::{
    DEFAULT_RTP_FLOWS, Direction, FIRST_DYNAMIC_PT, Family, MAX_RTP_PORT_CLOCKS, RTP_FLOW_PER_CPU,
    RtpConfig, RtpCounter, RtpFlowKey, RtpFlowKeyV4, RtpFlowState, RtpPacketFields,
    RtpPortClockKey,
};

use crate::{frame::Frame, walk::Flow};

// One map per family and store: IPv4 flows (nearly all RTP) under a
// 16-byte key, IPv6 flows under the 44-byte one. Userspace sets each
// store's capacity at load time (one entry in the store not used) and
// deletes idle flows.

/// IPv4 flows ([`SharedFlows`]).
#[map]
pub static RTP_FLOWS_V4: LruHashMap<RtpFlowKeyV4, RtpFlowState> =
    LruHashMap::with_max_entries(DEFAULT_RTP_FLOWS, 0);

/// IPv6 flows ([`SharedFlows`]).
#[map]
pub static RTP_FLOWS: LruHashMap<RtpFlowKey, RtpFlowState> =
    LruHashMap::with_max_entries(DEFAULT_RTP_FLOWS, 0);

/// IPv4 flows ([`PerCpuFlows`]).
#[map]
pub static RTP_FLOWS_V4_PERCPU: LruPerCpuHashMap<RtpFlowKeyV4, RtpFlowState> =
    LruPerCpuHashMap::with_max_entries(1, 0);

/// IPv6 flows ([`PerCpuFlows`]).
#[map]
pub static RTP_FLOWS_PERCPU: LruPerCpuHashMap<RtpFlowKey, RtpFlowState> =
    LruPerCpuHashMap::with_max_entries(1, 0);

/// One entry: the port range and default clock (all zero: RTP off).
#[map]
pub static RTP_CONFIG: Array<RtpConfig> = Array::with_max_entries(1, 0);

/// RTP clock by payload type (RFC 3551 static types; 0 = unknown).
#[map]
pub static RTP_PT_CLOCKS: Array<u32> = Array::with_max_entries(128, 0);

/// Clocks negotiated in SDP for (port, payload type); 0 = no clock.
#[map]
pub static RTP_PORT_CLOCKS: HashMap<RtpPortClockKey, u32> =
    HashMap::with_max_entries(MAX_RTP_PORT_CLOCKS, 0);

#[map]
pub static RTP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(RtpCounter::COUNT, 0);

const UDP_HLEN: u32 = 8;
const RTP_HLEN: u32 = 12;
/// Tries of the per-flow lock before the packet is counted as contended.
const LOCK_TRIES: usize = 16;
const BPF_NOEXIST: u64 = 1;

#[inline(always)]
pub fn count(counter: RtpCounter) {
    crate::maps::increment(&RTP_COUNTERS, counter);
}

/// A flow key type and the maps its flows live in (one per store).
pub trait FlowKey: Sized + 'static {
    fn shared() -> &'static LruHashMap<Self, RtpFlowState>;
    fn per_cpu() -> &'static LruPerCpuHashMap<Self, RtpFlowState>;
}

impl FlowKey for RtpFlowKeyV4 {
    #[inline(always)]
    fn shared() -> &'static LruHashMap<Self, RtpFlowState> {
        &RTP_FLOWS_V4
    }
    #[inline(always)]
    fn per_cpu() -> &'static LruPerCpuHashMap<Self, RtpFlowState> {
        &RTP_FLOWS_V4_PERCPU
    }
}

impl FlowKey for RtpFlowKey {
    #[inline(always)]
    fn shared() -> &'static LruHashMap<Self, RtpFlowState> {
        &RTP_FLOWS
    }
    #[inline(always)]
    fn per_cpu() -> &'static LruPerCpuHashMap<Self, RtpFlowState> {
        &RTP_FLOWS_PERCPU
    }
}

/// The key of the IPv4 `flow` as seen on `ifindex` in `direction` (the
/// drop tracer finds the same flow by it).
#[inline(always)]
pub fn v4_key<F: Frame>(
    frame: &F,
    flow: &Flow,
    ifindex: u32,
    direction: Direction,
) -> Option<RtpFlowKeyV4> {
    // Source then destination address (RFC 791 section 3.1).
    let a: [u8; 8] = frame.read(flow.l3_off + 12)?;
    Some(RtpFlowKeyV4 {
        src_addr: [a[0], a[1], a[2], a[3]],
        dst_addr: [a[4], a[5], a[6], a[7]],
        src_port: flow.src_port,
        dst_port: flow.dst_port,
        ifindex_direction: RtpFlowKeyV4::pack(ifindex, direction as u8),
    })
}

/// The key of the IPv6 `flow` (see [`v4_key`]).
#[inline(always)]
pub fn v6_key<F: Frame>(
    frame: &F,
    flow: &Flow,
    ifindex: u32,
    direction: Direction,
) -> Option<RtpFlowKey> {
    Some(RtpFlowKey::of(&flow.endpoints(frame, direction)?, ifindex))
}

/// The state this CPU sees for the flow of `flow` in whichever store
/// holds it (the drop tracer counts local drops on it).
#[inline(always)]
pub fn flow_state_of<F: Frame>(
    frame: &F,
    flow: &Flow,
    ifindex: u32,
    direction: Direction,
) -> Option<*mut RtpFlowState> {
    // Each family on its own path: one key type per branch keeps LLVM
    // from merging the two key layouts into stores the verifier rejects.
    match flow.family {
        Family::Ipv4 => flow_state(&v4_key(frame, flow, ifindex, direction)?),
        Family::Ipv6 => flow_state(&v6_key(frame, flow, ifindex, direction)?),
    }
}

/// True if the UDP datagram `flow` has a port in the configured RTP range.
#[inline(always)]
pub fn in_rtp_range(flow: &Flow) -> Option<RtpConfig> {
    let config = *RTP_CONFIG.get(0)?;
    (config.in_range(flow.src_port) || config.in_range(flow.dst_port)).then_some(config)
}

/// Accounts one UDP datagram on an RTP range port (not a fragment: its
/// UDP header is at `flow.l4_off`). Never fails: every outcome is counted.
/// True for an RTCP SR/RR carrying report blocks, which the caller copies
/// to userspace (the far end's reception report, RFC 3550 6.4; one every
/// few seconds per stream, so cheap).
#[inline(always)]
pub fn account<F: Frame, S: FlowStore>(
    frame: &F,
    flow: &Flow,
    config: &RtpConfig,
    direction: Direction,
    ifindex: u32,
) -> bool {
    // UDP length and checksum, then the 12-byte RTP header, in one read:
    // a datagram too short for either is not RTP either way.
    let Some(b) = frame.read::<16>(flow.l4_off + 4) else {
        count(RtpCounter::NotRtp);
        return false;
    };
    // UDP length (RFC 768) covers header and payload; the payload is what
    // RTP accounts as bytes, like the media core.
    let udp_len = u32::from(u16::from_be_bytes([b[0], b[1]]));
    if udp_len < UDP_HLEN + RTP_HLEN {
        count(RtpCounter::NotRtp);
        return false;
    }
    let payload_len = udp_len - UDP_HLEN;
    let rtp_off = flow.l4_off + UDP_HLEN;
    let h = [
        b[4], b[5], b[6], b[7], b[8], b[9], b[10], b[11], b[12], b[13], b[14], b[15],
    ];
    if h[0] >> 6 != 2 {
        count(RtpCounter::NotRtp);
        return false;
    }
    // RFC 5761 section 4: a second octet of 192..=223 is an RTCP packet
    // type. Its length field (32-bit words minus one) must fit.
    if (192..=223).contains(&h[1]) {
        let words = u32::from(u16::from_be_bytes([h[2], h[3]]));
        if (words + 1) * 4 <= payload_len {
            count(RtpCounter::RtcpPackets);
            return (h[1] == 200 || h[1] == 201) && h[0] & 0x1f != 0;
        }
        count(RtpCounter::NotRtp);
        return false;
    }
    if !header_fits(frame, rtp_off, h[0], payload_len) {
        count(RtpCounter::NotRtp);
        return false;
    }
    let pkt = RtpPacketFields {
        sequence: u16::from_be_bytes([h[2], h[3]]),
        timestamp: u32::from_be_bytes([h[4], h[5], h[6], h[7]]),
        ssrc: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
        payload_type: h[1] & 0x7f,
    };
    // No closures here: LLVM keeps them as bpf-to-bpf calls, which cost a
    // call per packet and leak the shared store's atomics into the 5.10
    // programs' reachable code. Hence `match`, not `Option::map`.
    #[allow(clippy::manual_map)]
    let updated = match flow.family {
        Family::Ipv4 => match v4_key(frame, flow, ifindex, direction) {
            Some(key) => Some(update::<_, S>(&key, config, flow, &pkt, payload_len)),
            None => None,
        },
        Family::Ipv6 => match v6_key(frame, flow, ifindex, direction) {
            Some(key) => Some(update::<_, S>(&key, config, flow, &pkt, payload_len)),
            None => None,
        },
    };
    match updated {
        Some(true) => count(RtpCounter::Packets),
        Some(false) => {} // counted by the store
        None => count(RtpCounter::NotRtp),
    }
    false
}

/// Accounts the packet `pkt` to its flow `key` in the store `S`.
#[inline(always)]
fn update<K: FlowKey, S: FlowStore>(
    key: &K,
    config: &RtpConfig,
    flow: &Flow,
    pkt: &RtpPacketFields,
    payload_len: u32,
) -> bool {
    let clocks = ClockQuery {
        config,
        src_port: flow.src_port,
        dst_port: flow.dst_port,
    };
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    S::update(key, now, pkt, payload_len, &clocks)
}

/// Where per-flow state lives; `update` accounts one packet and says
/// whether it reached the flow (every failure is counted).
pub trait FlowStore {
    fn update<K: FlowKey>(
        key: &K,
        now: u64,
        pkt: &RtpPacketFields,
        payload_len: u32,
        clocks: &ClockQuery<'_>,
    ) -> bool;
}

/// One state per flow shared by all CPUs, under a compare-and-swap lock
/// (BPF_CMPXCHG, Linux 5.12+).
pub struct SharedFlows;

/// One state per flow and CPU, no atomics (any kernel with LRU maps).
pub struct PerCpuFlows;

impl FlowStore for SharedFlows {
    #[inline(always)]
    fn update<K: FlowKey>(
        key: &K,
        now: u64,
        pkt: &RtpPacketFields,
        payload_len: u32,
        clocks: &ClockQuery<'_>,
    ) -> bool {
        let Some(state) = get_or_create(K::shared(), key) else {
            return false;
        };
        // SAFETY: `state` points at a live map value (RCU keeps it valid for
        // this run even if it is deleted or evicted meanwhile); `lock` is a
        // naturally aligned u64 in it (its first word, on the cache line of
        // the fields the update touches), accessed only atomically. The Rust
        // bpf target has no atomic compare-and-swap in `core::sync` (its
        // spec says no CAS, for old kernels); the intrinsic emits
        // BPF_CMPXCHG (5.12+).
        unsafe {
            let lock = addr_of_mut!((*state).lock);
            let mut locked = false;
            for _ in 0..LOCK_TRIES {
                let (_, ok) =
                    atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
                        lock, 0, 1,
                    );
                if ok {
                    locked = true;
                    break;
                }
            }
            if !locked {
                count(RtpCounter::LockContended);
                return false;
            }
            // We hold the flow's lock: no other CPU writes its fields.
            clocks.account(&mut *state, now, pkt, payload_len);
            unlock(lock);
        }
        true
    }
}

/// Releases a flow's lock taken by a compare-and-swap.
///
/// BPF has no store-release before cpu v4. On x86-64 every store is a
/// release (TSO: a store is never reordered with earlier loads or
/// stores), so a plain store does, once a compiler barrier keeps the
/// update's reads and writes before it (an empty `asm!`, which may touch
/// any memory: LLVM's BPF backend selects neither an atomic store-release
/// nor a fence). That saves a locked instruction per packet, which drains
/// the store buffer: 4 to 8 ns in the kernel benchmark. Elsewhere (the
/// object is built for the host's architecture, `bpf_target_arch`) the
/// release stays a CAS, a full barrier.
///
/// # Safety
/// `lock` points at the naturally aligned lock word of a live flow value
/// that this CPU holds.
#[inline(always)]
unsafe fn unlock(lock: *mut u64) {
    #[cfg(bpf_target_arch = "x86_64")]
    // SAFETY: the caller's.
    unsafe {
        core::arch::asm!("", options(nostack, preserves_flags));
        lock.write_volatile(0);
    }
    #[cfg(not(bpf_target_arch = "x86_64"))]
    // SAFETY: the caller's.
    unsafe {
        let _ =
            atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(lock, 1, 0);
    }
}

impl FlowStore for PerCpuFlows {
    #[inline(always)]
    fn update<K: FlowKey>(
        key: &K,
        now: u64,
        pkt: &RtpPacketFields,
        payload_len: u32,
        clocks: &ClockQuery<'_>,
    ) -> bool {
        let Some(state) = get_or_create(K::per_cpu(), key) else {
            return false;
        };
        // SAFETY: this CPU's slot of a live map value; programs do not
        // migrate CPUs mid-run and no other CPU writes this slot.
        unsafe {
            (*state).flags |= RTP_FLOW_PER_CPU;
            clocks.account(&mut *state, now, pkt, payload_len);
        }
        true
    }
}

/// The flow's state, inserted on its first packet.
#[inline(always)]
fn get_or_create<K, M: FlowMap<K>>(map: &M, key: &K) -> Option<*mut RtpFlowState> {
    if let Some(s) = map.state(key) {
        return Some(s);
    }
    // Two CPUs may race to create the flow: NOEXIST lets one win, the
    // other finds the winner's entry below.
    if map.create(key) {
        count(RtpCounter::FlowsCreated);
    }
    let state = map.state(key);
    if state.is_none() {
        count(RtpCounter::FlowInsertFailed);
    }
    state
}

/// The two LRU map kinds behind one lookup/insert interface.
trait FlowMap<K> {
    fn state(&self, key: &K) -> Option<*mut RtpFlowState>;
    fn create(&self, key: &K) -> bool;
}

/// Both map kinds have the same lookup and insert, as inherent methods.
macro_rules! flow_map {
    ($map:ident) => {
        impl<K> FlowMap<K> for $map<K, RtpFlowState> {
            #[inline(always)]
            fn state(&self, key: &K) -> Option<*mut RtpFlowState> {
                self.get_ptr_mut(key)
            }
            #[inline(always)]
            fn create(&self, key: &K) -> bool {
                self.insert(key, RtpFlowState::default(), BPF_NOEXIST)
                    .is_ok()
            }
        }
    };
}
flow_map!(LruHashMap);
flow_map!(LruPerCpuHashMap);

/// The state this CPU sees for `key` in whichever store holds it.
#[inline(always)]
fn flow_state<K: FlowKey>(key: &K) -> Option<*mut RtpFlowState> {
    K::shared()
        .get_ptr_mut(key)
        .or_else(|| K::per_cpu().get_ptr_mut(key))
}

/// RFC 3550 5.1/5.3.1: the CSRC list and header extension fit the payload.
/// (Padding is checked in userspace only: its count is the last octet, at
/// a variable offset past what the header walk reads directly.)
#[inline(always)]
fn header_fits<F: Frame>(frame: &F, rtp_off: u32, first: u8, payload_len: u32) -> bool {
    let mut header_len = RTP_HLEN + u32::from(first & 0x0f) * 4;
    if header_len > payload_len {
        return false;
    }
    if first & 0x10 != 0 {
        let Some(ext) = frame.read::<4>(rtp_off + header_len) else {
            return false;
        };
        header_len += 4 + u32::from(u16::from_be_bytes([ext[2], ext[3]])) * 4;
        if header_len > payload_len {
            return false;
        }
    }
    true
}

/// What a packet's clock depends on: the configuration and the flow's
/// ports (SDP negotiates clocks per port).
pub struct ClockQuery<'a> {
    config: &'a RtpConfig,
    src_port: u16,
    dst_port: u16,
}

impl ClockQuery<'_> {
    /// Updates `state` with the packet, timed with its clock: the one the
    /// flow kept from SDP (no lookup), else negotiated for either port,
    /// else the static table, else the configured default.
    #[inline(always)]
    fn account(&self, state: &mut RtpFlowState, now: u64, pkt: &RtpPacketFields, payload_len: u32) {
        let (clock, negotiated) = match state.negotiated_clock(pkt) {
            Some(clock) => (clock, true),
            None => self.clock_rate(pkt.payload_type),
        };
        state.update_clocked(now, pkt, payload_len, clock, negotiated);
    }

    /// The clock of this payload type and whether SDP negotiated it.
    /// Userspace puts only dynamic types (96-127, RFC 3551 section 3) into
    /// the port map (the static ones' clocks are fixed), so a G.711 packet
    /// on a host where other calls negotiated opus looks up nothing there.
    #[inline(always)]
    fn clock_rate(&self, payload_type: u8) -> (u32, bool) {
        if self.config.port_clocks != 0 && payload_type >= FIRST_DYNAMIC_PT {
            for port in [self.dst_port, self.src_port] {
                let key = RtpPortClockKey {
                    port,
                    payload_type,
                    _pad: 0,
                };
                // SAFETY: read-only lookup of a plain u32 value.
                if let Some(rate) = unsafe { RTP_PORT_CLOCKS.get(key) } {
                    return (*rate, true);
                }
            }
        }
        match RTP_PT_CLOCKS.get(u32::from(payload_type)) {
            Some(&rate) if rate != 0 => (rate, false),
            _ => (self.config.default_clock_rate, false),
        }
    }
}
