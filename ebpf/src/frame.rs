//! Byte access to the frame under inspection, the same for XDP and TC, so
//! both programs share one header walk.
//!
//! All reads go through the kernel's `bpf_xdp_load_bytes` /
//! `bpf_skb_load_bytes` helpers: they bounds-check against the real frame
//! (including non-linear skb data) and keep the verifier's job trivial,
//! whereas direct packet access with variable offsets (IPv4 options, IPv6
//! extension headers) needs fragile bound proofs.

use aya_ebpf::{
    helpers::generated::{bpf_skb_load_bytes, bpf_xdp_load_bytes},
    programs::{TcContext, XdpContext},
};

pub trait Frame {
    /// Length of the whole frame in bytes.
    fn len(&self) -> u32;
    /// Copies `n` bytes at `off` into `dst`; false if the frame is shorter.
    ///
    /// # Safety
    /// `dst` must be valid for `n` bytes of writes.
    unsafe fn load_raw(&self, off: u32, dst: *mut u8, n: u32) -> bool;

    /// Reads `N` bytes at `off` onto the stack.
    #[inline(always)]
    fn read<const N: usize>(&self, off: u32) -> Option<[u8; N]> {
        let mut buf = [0u8; N];
        // SAFETY: buf is N bytes long.
        if unsafe { self.load_raw(off, buf.as_mut_ptr(), N as u32) } {
            Some(buf)
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
        unsafe { bpf_xdp_load_bytes(self.0.ctx, off, dst.cast(), n) == 0 }
    }
}

pub struct SkbFrame<'a>(pub &'a TcContext);

impl Frame for SkbFrame<'_> {
    #[inline(always)]
    fn len(&self) -> u32 {
        self.0.len()
    }

    #[inline(always)]
    unsafe fn load_raw(&self, off: u32, dst: *mut u8, n: u32) -> bool {
        unsafe { bpf_skb_load_bytes(self.0.skb.skb.cast_const().cast(), off, dst.cast(), n) == 0 }
    }
}
