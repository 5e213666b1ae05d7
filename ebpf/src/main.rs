//! sipscope kernel programs. This file holds only the entry points; the
//! header walk is in `walk`, the capture decision and copy in `capture`,
//! the drop tracer in `drops`, the maps in `maps`.
//!
//! Every program is fail-open: whatever happens inside, the verdict is
//! `XDP_PASS` / `TC_ACT_OK`. A PBX must never lose a call because of its
//! monitor.
#![no_std]
#![no_main]
// BPF_CMPXCHG for the per-flow lock in `rtp` (see there).
#![allow(internal_features)]
#![feature(core_intrinsics)]

mod capture;
mod drops;
mod frame;
mod maps;
mod rtp;
mod walk;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, raw_tracepoint, xdp},
    programs::{RawTracePointContext, TcContext, XdpContext},
};
use sipscope_common::Direction;

use crate::frame::{SkbFrame, XdpFrame};

/// Ingress: every frame received on the interface, before the stack.
#[xdp]
pub fn sipscope_ingress(ctx: XdpContext) -> u32 {
    let frame = XdpFrame(&ctx);
    // SAFETY: ctx points at the kernel's xdp_md for this invocation.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    capture::inspect(&ctx, &frame, Direction::Ingress, ifindex);
    xdp_action::XDP_PASS
}

/// Egress: every frame the stack sends on the interface (tcx/clsact).
#[classifier]
pub fn sipscope_egress(ctx: TcContext) -> i32 {
    let frame = SkbFrame(&ctx);
    // SAFETY: ctx points at the kernel's __sk_buff for this invocation.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    capture::inspect(&ctx, &frame, Direction::Egress, ifindex);
    TC_ACT_OK
}

/// Every freed-with-a-drop-reason skb on the host (`kfree_skb(skb,
/// location, reason, ...)`): reports dropped SIP and RTP packets of the
/// watched namespace. Observes only; the return value is ignored.
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn sipscope_kfree_skb(ctx: RawTracePointContext) -> i32 {
    drops::on_kfree_skb(&ctx);
    0
}

/// Does nothing on `kfree_skb`: the drop benchmark's baseline (the cost
/// of the raw tracepoint call itself, measured on the same events).
#[raw_tracepoint(tracepoint = "kfree_skb")]
pub fn sipscope_kfree_skb_empty(_ctx: RawTracePointContext) -> i32 {
    0
}

/// Does nothing but pass: the baseline the benchmark compares against.
#[xdp]
pub fn sipscope_xdp_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
