//! The kernel benchmark's floor for a captured SIP message: the three
//! primitives every copy to userspace needs on this kernel and CPU — the
//! arrival time, a ring record of the SIP path's size, the copy of the
//! frame into it — and nothing else (no header walk, no decision, no
//! counters). The SIP row's cost above this floor is sipscope's own.
//! Loaded only by the benchmark.

use aya_ebpf::{bindings::BPF_RB_NO_WAKEUP, helpers::bpf_ktime_get_ns};
use sipscope_common::CAPTURE_HEADER_LEN;

use crate::{
    capture::VLAN_SLACK,
    frame::{Frame, copy_len},
    maps::EVENTS,
};

/// The reservation the SIP path makes for a frame of up to 512 bytes.
const SIZE: usize = 512;

#[inline(always)]
pub fn capture<F: Frame>(frame: &F) {
    let Some(len) = copy_len::<SIZE>(frame.len()) else {
        return;
    };
    let Some(mut entry) = EVENTS.reserve_bytes(CAPTURE_HEADER_LEN + SIZE + VLAN_SLACK, 0) else {
        return;
    };
    let base = entry.as_mut_ptr();
    // SAFETY: the reservation holds the header, then SIZE bytes, which
    // bound both writes; the helper has no preconditions.
    unsafe {
        base.cast::<u64>().write_unaligned(bpf_ktime_get_ns());
        if !frame.load_raw(0, base.add(CAPTURE_HEADER_LEN), len) {
            entry.discard(0);
            return;
        }
    }
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
}
