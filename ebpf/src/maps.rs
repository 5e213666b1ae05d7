//! The maps shared with userspace; names are in `sipscope_common::names`.

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, LruHashMap, PerCpuArray, RingBuf},
};
use sipscope_common::{
    CaptureCounter, CounterSlot, DEFAULT_DROP_RING_SIZE, DEFAULT_RING_SIZE, DROP_REASON_SLOTS,
    DROP_SCRATCH_LEN, DropConfig, DropCounter, FragmentKey, MAX_DROP_IFACES, MAX_TRACKED_FRAGMENTS,
    PORT_COUNT,
};

/// Captured frames: `CaptureHeader` followed by `cap_len` frame bytes.
/// Userspace resizes it at load time (`--ring-size`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_SIZE, 0);

/// Entry 0 is `READER_WAITING` while userspace waits on `EVENTS` for a
/// wake-up, 0 while it reads the ring on its own schedule.
#[map]
pub static EVENTS_READER: Array<u32> = Array::with_max_entries(1, 0);

/// Counters indexed by `CaptureCounter`, one slot per CPU so no atomics are needed.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(CaptureCounter::COUNT, 0);

/// SIP port set: index = port (host byte order), value 1 = SIP. Filled by
/// userspace. An array rather than a hash map because the verifier inlines
/// array lookups: measured 20 ns less per packet (two lookups, every
/// UDP/TCP packet) in the kernel benchmark, for 64 KiB of memory.
#[map]
pub static SIP_PORTS: Array<u8> = Array::with_max_entries(PORT_COUNT, 0);

/// Datagrams whose first fragment matched a SIP port: later fragments of
/// the same datagram carry no ports and are recognised by this key. LRU, so
/// it is bounded and stale entries are evicted by themselves.
#[map]
pub static SIP_FRAGMENTS: LruHashMap<FragmentKey, u8> =
    LruHashMap::with_max_entries(MAX_TRACKED_FRAGMENTS, 0);

/// Adds one to `counter`'s slot of a per-CPU counter array.
#[inline(always)]
pub fn increment<C: CounterSlot>(map: &PerCpuArray<u64>, counter: C) {
    if let Some(slot) = map.get_ptr_mut(counter.index()) {
        // SAFETY: per-CPU slot; programs do not migrate CPUs mid-run.
        unsafe { *slot += 1 };
    }
}

#[inline(always)]
pub fn count(counter: CaptureCounter) {
    increment(&COUNTERS, counter);
}

/// Dropped packets: `DropHeader` followed by `cap_len` IP bytes. Separate
/// from `EVENTS` so a burst of drops cannot crowd out captured SIP (and
/// the capture event format stays as it is).
#[map]
pub static DROP_EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_DROP_RING_SIZE, 0);

/// Drop tracer counters indexed by `DropCounter`.
#[map]
pub static DROP_COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(DropCounter::COUNT, 0);

/// Kernel structure offsets and the filter, from userspace (one entry).
#[map]
pub static DROP_CONFIG: Array<DropConfig> = Array::with_max_entries(1, 0);

/// Drop reasons to report: index = `enum skb_drop_reason` value, 1 = yes.
/// Userspace resolves the numbers from BTF (they differ between kernels).
#[map]
pub static DROP_REASONS: Array<u8> = Array::with_max_entries(DROP_REASON_SLOTS, 0);

/// Watched interfaces (ifindex -> 1).
#[map]
pub static DROP_IFACES: HashMap<u32, u8> = HashMap::with_max_entries(MAX_DROP_IFACES, 0);

/// Per-CPU scratch space a drop event is assembled in (read with
/// `bpf_probe_read_kernel`, then output at its exact length).
#[map]
pub static DROP_SCRATCH: PerCpuArray<[u8; DROP_SCRATCH_LEN]> = PerCpuArray::with_max_entries(1, 0);

/// Per CPU: start of the current second and RTP drop reports sent in it
/// for flows the RTP map does not hold (see `drops::within_budget`).
#[map]
pub static DROP_RTP_BUDGET: PerCpuArray<[u64; 2]> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn count_drop(counter: DropCounter) {
    increment(&DROP_COUNTERS, counter);
}
