//! The maps shared with userspace; names are in `sipscope_common::names`.

use aya_ebpf::{
    macros::map,
    maps::{Array, LruHashMap, PerCpuArray, RingBuf},
};
use sipscope_common::{
    Counter, DEFAULT_RING_SIZE, FragmentKey, MAX_TRACKED_FRAGMENTS, PORT_COUNT, SCRATCH_LEN,
};

/// Captured frames: `CaptureHeader` followed by `cap_len` frame bytes.
/// Userspace resizes it at load time (`--ring-size`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(DEFAULT_RING_SIZE, 0);

/// Counters indexed by `Counter`, one slot per CPU so no atomics are needed.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(Counter::COUNT, 0);

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

/// Per-CPU scratch space the event is assembled in: the ring buffer's
/// reserve needs a constant size, `bpf_ringbuf_output` takes a variable one,
/// so a 300-byte REGISTER costs 300 bytes of ring and not 8 KiB.
#[map]
pub static SCRATCH: PerCpuArray<[u8; SCRATCH_LEN]> = PerCpuArray::with_max_entries(1, 0);

#[inline(always)]
pub fn count(counter: Counter) {
    if let Some(slot) = COUNTERS.get_ptr_mut(counter as u32) {
        // SAFETY: per-CPU slot; programs do not migrate CPUs mid-run.
        unsafe { *slot += 1 };
    }
}
