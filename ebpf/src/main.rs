//! sipscope kernel programs. This file holds only the entry points; the
//! header walk is in `walk`, the capture decision and copy in `capture`,
//! the drop tracer in `drops`, the maps in `maps`.
//!
//! Every program is fail-open: whatever happens inside, the verdict is
//! `XDP_PASS` / `TC_ACT_OK`. A PBX must never lose a call because of its
//! monitor.
#![no_std]
#![no_main]
// BPF_CMPXCHG for the per-flow lock in `rtp`, and a compiler barrier
// before its release (see there).
#![allow(internal_features)]
#![feature(core_intrinsics)]
#![cfg_attr(bpf_target_arch = "x86_64", feature(asm_experimental_arch))]

mod capture;
mod drops;
mod floor;
mod frame;
mod maps;
mod rtp;
mod tls;
mod walk;

use aya_ebpf::{
    bindings::{TC_ACT_OK, xdp_action},
    macros::{classifier, raw_tracepoint, uprobe, uretprobe, xdp},
    programs::{ProbeContext, RawTracePointContext, RetProbeContext, TcContext, XdpContext},
};
use sipscope_common::{Direction, TLS_KIND_READ, TLS_KIND_WRITE};

use crate::{
    frame::{SkbFrame, XdpFrame},
    rtp::{FlowStore, PerCpuFlows, SharedFlows},
};

// Capture programs, one per hook and flow store. The agent picks, per
// kernel feature, which ones it loads (see the agent's
// capture/live/kernel_features.rs); the `*_510` ones use only helpers and
// instructions Linux 5.10 has (a test reads the object to check).

/// Ingress in the driver: every frame received, before the stack. Needs
/// `bpf_xdp_load_bytes` (5.18) and BPF atomics (5.12).
#[xdp]
pub fn sipscope_ingress(ctx: XdpContext) -> u32 {
    let frame = XdpFrame(&ctx);
    // SAFETY: ctx points at the kernel's xdp_md for this invocation.
    let ifindex = unsafe { (*ctx.ctx).ingress_ifindex };
    capture::inspect::<_, SharedFlows>(&frame, Direction::Ingress, ifindex);
    xdp_action::XDP_PASS
}

/// Ingress on TC (tcx/clsact): where XDP cannot load or attach, or would
/// only run in generic mode.
#[classifier]
pub fn sipscope_in_tc(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Ingress, SharedFlows)
}

/// Egress: every frame the stack sends on the interface (tcx/clsact).
#[classifier]
pub fn sipscope_egress(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Egress, SharedFlows)
}

/// TC ingress for kernels without BPF atomics (5.10, 5.11): per-CPU flows.
#[classifier]
pub fn sipscope_in_510(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Ingress, PerCpuFlows)
}

/// TC egress for kernels without BPF atomics (5.10, 5.11): per-CPU flows.
#[classifier]
pub fn sipscope_eg_510(ctx: TcContext) -> i32 {
    tc(&ctx, Direction::Egress, PerCpuFlows)
}

#[inline(always)]
fn tc<S: FlowStore>(ctx: &TcContext, direction: Direction, _store: S) -> i32 {
    let frame = SkbFrame(ctx);
    // SAFETY: ctx points at the kernel's __sk_buff for this invocation.
    let ifindex = unsafe { (*ctx.skb.skb).ifindex };
    capture::inspect::<_, S>(&frame, direction, ifindex);
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

// TLS plaintext (see `tls`): attached by userspace to the TLS library of
// PBX processes. The return value of a uprobe program is ignored.

/// Entry of `SSL_read(ssl, buf, num)` and `SSL_write(ssl, buf, num)`.
#[uprobe]
pub fn sipscope_ssl_entry(ctx: ProbeContext) -> u32 {
    tls::on_entry(&ctx, false);
    0
}

/// Entry of `SSL_read_ex(ssl, buf, num, &readbytes)` and `SSL_write_ex`.
#[uprobe]
pub fn sipscope_ssl_entry_ex(ctx: ProbeContext) -> u32 {
    tls::on_entry(&ctx, true);
    0
}

/// Return of `SSL_read`/`SSL_read_ex`: copies the plaintext received.
#[uretprobe]
pub fn sipscope_ssl_read_ret(ctx: RetProbeContext) -> u32 {
    tls::on_return(&ctx, TLS_KIND_READ);
    0
}

/// Return of `SSL_write`/`SSL_write_ex`: copies the plaintext sent.
#[uretprobe]
pub fn sipscope_ssl_write_ret(ctx: RetProbeContext) -> u32 {
    tls::on_return(&ctx, TLS_KIND_WRITE);
    0
}

/// `SSL_free(ssl)`: the session is gone.
#[uprobe]
pub fn sipscope_ssl_free(ctx: ProbeContext) -> u32 {
    tls::on_free(&ctx);
    0
}

/// Every syscall entry on the host: socket reads and writes of probed
/// threads tie TLS sessions to their sockets.
#[raw_tracepoint(tracepoint = "sys_enter")]
pub fn sipscope_tls_sys_enter(ctx: RawTracePointContext) -> i32 {
    tls::on_sys_enter(&ctx);
    0
}

/// Does nothing but pass: the baseline the benchmark compares against.
#[xdp]
pub fn sipscope_xdp_empty(_ctx: XdpContext) -> u32 {
    xdp_action::XDP_PASS
}

/// The TC programs' baseline in the benchmark.
#[classifier]
pub fn sipscope_tc_empty(_ctx: TcContext) -> i32 {
    TC_ACT_OK
}

/// Timestamp, ring record and frame copy only: the benchmark's floor
/// for the SIP rows of TC (see `floor`).
#[classifier]
pub fn sipscope_tc_floor(ctx: TcContext) -> i32 {
    floor::capture(&SkbFrame(&ctx));
    TC_ACT_OK
}

/// The same floor for XDP.
#[xdp]
pub fn sipscope_xdp_floor(ctx: XdpContext) -> u32 {
    floor::capture(&XdpFrame(&ctx));
    xdp_action::XDP_PASS
}

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
