//! Byte access to the frame under inspection, the same for XDP and TC, so
//! both programs share one header walk.
//!
//! Headers are read with direct packet access (the offset bounded by
//! `MAX_HEADER_OFFSET` so the verifier can follow it): the kernel benchmark
//! measured helper calls at ~35 ns per packet more. TC falls back to
//! `bpf_skb_load_bytes` for headers outside the skb's linear part. The
//! frame copy into the ring uses the load-bytes helpers, which handle any
//! length the verifier can bound.

use aya_ebpf::{
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};

/// `len` as a copy length every verifier can bound on both sides, for a
/// helper whose size argument must be at least 1 (`ARG_CONST_SIZE`), or
/// `None` when it is 0 or above `MAX` (a power of two).
///
/// Verifiers before about 6.8 learn no lower bound from `len != 0`
/// (Debian 12's 6.1 rejected the copy: "R3 min value is outside of the
/// allowed memory range"), and LLVM drops a mask it can prove redundant.
/// So the value goes through an optimisation barrier and is then masked:
/// `((len - 1) & (MAX - 1)) + 1` lies in `[1, MAX]` for any input, which
/// the verifier follows through plain ALU ops, and equals `len` for every
/// `len` that passed the check.
#[inline(always)]
pub fn copy_len<const MAX: usize>(len: u32) -> Option<u32> {
    const { assert!(MAX.is_power_of_two()) };
    if len == 0 || len > MAX as u32 {
        return None;
    }
    let below = core::hint::black_box(len - 1);
    Some((below & (MAX as u32 - 1)) + 1)
}

#[repr(C, align(8))]
struct Aligned<const N: usize>([u8; N]);

pub trait Frame {
    /// Length of the whole frame in bytes.
    fn len(&self) -> u32;
    /// Copies `n` bytes at `off` into `dst`; false if the frame is shorter.
    ///
    /// # Safety
    /// `dst` must be valid for `n` bytes of writes.
    unsafe fn load_raw(&self, off: u32, dst: *mut u8, n: u32) -> bool;

    /// A VLAN tag (TPID, TCI; network order) the kernel took out of the
    /// frame into packet metadata (TC: hardware offload, or the stack's
    /// untagging before TC ingress). XDP sees the frame as the driver hands
    /// it: a tag the NIC stripped is not recoverable there before 6.8's
    /// metadata kfuncs (README: known limits).
    #[inline(always)]
    fn offloaded_vlan_tag(&self) -> Option<[u8; 4]> {
        None
    }

    /// Reads `N` bytes at `off` onto the stack.
    #[inline(always)]
    fn read<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        // Zeroed (uninitialised stack makes LLVM leave registers undefined,
        // which the verifier rejects) but 8-byte aligned, so the zeroing is
        // a few 64-bit stores instead of a byte loop.
        let mut buf = Aligned([0u8; N]);
        // SAFETY: buf is N bytes long.
        if unsafe { self.load_raw(off, buf.0.as_mut_ptr(), N as u32) } {
            Some(buf.0)
        } else {
            None
        }
    }
}

pub struct XdpFrame<'a>(pub &'a XdpContext);

impl Frame for XdpFrame<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        // Without the xdp.frags flag the whole frame is linear.
        (self.0.data_end() - self.0.data()) as u32
    }

    #[inline(always)]
    unsafe fn load_raw(&self, off: u32, dst: *mut u8, n: u32) -> bool {
        // SAFETY: the caller guarantees `dst` is writable for `n` bytes;
        // the helper checks `off + n` against the frame.
        unsafe { bpf_xdp_load_bytes(self.0.ctx, off, dst.cast(), n) == 0 }
    }

    /// Headers are read with direct packet access: several times cheaper
    /// than a helper call per header, and the XDP frame is linear.
    /// (N >= 2: a one-byte read compiles to `start >= end`, from which the
    /// verifier learns no readable range.)
    #[inline(always)]
    fn read<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let off = off as usize;
        // Bound the variable offset so the verifier can track the pointer.
        if off > MAX_HEADER_OFFSET {
            return None;
        }
        let start = self.0.data() + off;
        if start + N > self.0.data_end() {
            return None;
        }
        // SAFETY: [start, start + N) was just checked to lie in the frame.
        Some(unsafe { (start as *const [u8; N]).read_unaligned() })
    }
}

/// Deepest header offset the walk reads at (VLAN tags + IPv4 options or
/// IPv6 extension headers stay far below it).
const MAX_HEADER_OFFSET: usize = 1024;

pub struct SkbFrame<'a>(pub &'a TcContext);

impl Frame for SkbFrame<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        self.0.len()
    }

    #[inline(always)]
    unsafe fn load_raw(&self, off: u32, dst: *mut u8, n: u32) -> bool {
        // SAFETY: the caller guarantees `dst` is writable for `n` bytes;
        // the helper checks `off + n` against the skb.
        unsafe { bpf_skb_load_bytes(self.0.skb.skb.cast_const().cast(), off, dst.cast(), n) == 0 }
    }

    #[inline(always)]
    fn offloaded_vlan_tag(&self) -> Option<[u8; 4]> {
        let skb = self.0.skb.skb;
        // SAFETY: ctx fields of this invocation's __sk_buff.
        let (present, proto, tci) =
            unsafe { ((*skb).vlan_present, (*skb).vlan_proto, (*skb).vlan_tci) };
        if present == 0 {
            return None;
        }
        // vlan_proto is in network order in the low 16 bits.
        let tpid = (proto as u16).to_ne_bytes();
        let tci = (tci as u16).to_be_bytes();
        Some([tpid[0], tpid[1], tci[0], tci[1]])
    }

    /// Direct access to the linear part of the skb (where the headers
    /// normally are), the helper for anything beyond it.
    #[inline(always)]
    fn read<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let o = off as usize;
        if o <= MAX_HEADER_OFFSET {
            let start = self.0.data() + o;
            if start + N <= self.0.data_end() {
                // SAFETY: [start, start + N) lies in the linear data.
                return Some(unsafe { (start as *const [u8; N]).read_unaligned() });
            }
        }
        let mut buf = Aligned([0u8; N]);
        // SAFETY: buf is N bytes long.
        if unsafe { self.load_raw(off, buf.0.as_mut_ptr(), N as u32) } {
            Some(buf.0)
        } else {
            None
        }
    }
}
