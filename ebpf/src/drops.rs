//! The drop tracer: on every `kfree_skb` (host-wide), report the packet if
//! its drop reason is one userspace asked for (`DROP_REASONS`), it belongs
//! to the watched network namespace and interfaces, and a UDP/TCP port is
//! SIP (`SIP_PORTS`) or in the RTP range. Everything is read with
//! `bpf_probe_read_kernel` at offsets from `DROP_CONFIG`, which userspace
//! fills from the running kernel's BTF.
//!
//! Order of the checks: cheapest first. The reason is an argument (no
//! memory read) and rejects almost every call on a busy host (most frees
//! are not drops of interest); the ports need four skb reads and two
//! header reads; the namespace and interface (up to seven dependent
//! pointer reads) come last, for SIP/RTP only. So a non-VoIP drop in
//! another namespace counts as `filtered_not_voip`, not `filtered_netns`.
//!
//! Observe only: the program cannot change the drop, and any read failure
//! is a counter.

use core::{
    intrinsics::{AtomicOrdering, atomic_cxchg, atomic_xadd},
    ptr::{addr_of, addr_of_mut},
};

use aya_ebpf::{
    helpers::{bpf_ktime_get_ns, generated::bpf_probe_read_kernel},
    programs::RawTracePointContext,
};
use sipscope_common::{
    DROP_FLAG_RTP, DROP_FLAG_TRUNCATED, DROP_HEADER_LEN, DROP_REASON_SLOTS, Direction, DropConfig,
    DropCounter, DropHeader, MAX_DROP_CAPTURE_LEN,
};

use crate::{
    capture::is_sip_port,
    frame::{Frame, copy_len},
    maps::{
        DROP_CONFIG, DROP_EVENTS, DROP_IFACES, DROP_REASONS, DROP_RTP_BUDGET, DROP_SCRATCH,
        count_drop,
    },
    rtp,
    walk::{Flow, walk},
};

/// An RTP flow's drops reach userspace at most this often; the flow's
/// statistics count every one (`local_drops`).
const RTP_REPORT_EVERY_NS: u64 = 1_000_000_000;
/// RTP-range drops reported per CPU and second at most: a flood at a
/// closed port range (many flows, or UDP that is not RTP and so held by no
/// flow) costs a counter, not a ring event per packet.
const RTP_REPORT_BUDGET: u64 = 64;

const ETH_HLEN: u32 = 14;
const IPPROTO_UDP: u8 = 17;
const IPPROTO_TCP: u8 = 6;

/// Reads a `T` at `base + off` from kernel memory.
#[inline(always)]
fn read<T: Copy + Default>(base: u64, off: u32) -> Option<T> {
    if base == 0 {
        return None;
    }
    let mut v = T::default();
    // SAFETY: the helper checks the source address; v is a local T.
    let rc = unsafe {
        bpf_probe_read_kernel(
            (&raw mut v).cast(),
            core::mem::size_of::<T>() as u32,
            (base + u64::from(off)) as *const core::ffi::c_void,
        )
    };
    (rc == 0).then_some(v)
}

/// The dropped packet seen as a frame for the shared header walk: a
/// synthetic Ethernet header (only its ethertype, from `skb->protocol`, is
/// ever read) followed by the IP packet at `head + network_header`.
struct DroppedFrame {
    l3: u64,
    l3_len: u32,
    ethertype: [u8; 2],
}

impl Frame for DroppedFrame {
    #[inline(always)]
    fn len(&self) -> u32 {
        ETH_HLEN + self.l3_len
    }

    #[inline(always)]
    unsafe fn load_raw(&self, off: u32, dst: *mut u8, n: u32) -> bool {
        if off == 12 && n == 2 {
            // SAFETY: the caller guarantees dst is valid for n = 2 bytes.
            unsafe {
                *dst = self.ethertype[0];
                *dst.add(1) = self.ethertype[1];
            }
            return true;
        }
        if off < ETH_HLEN || off - ETH_HLEN + n > self.l3_len {
            return false;
        }
        // SAFETY: dst is valid for n bytes; the helper checks the source.
        unsafe {
            bpf_probe_read_kernel(
                dst.cast(),
                n,
                (self.l3 + u64::from(off - ETH_HLEN)) as *const core::ffi::c_void,
            ) == 0
        }
    }
}

/// One `kfree_skb` call. Never fails: every outcome is a counter.
#[inline(always)]
pub fn on_kfree_skb(ctx: &RawTracePointContext) {
    count_drop(DropCounter::DropsSeen);
    let skb: u64 = ctx.arg(0);
    let reason: u64 = ctx.arg(2);
    let Some(cfg) = DROP_CONFIG.get(0) else {
        return;
    };
    if cfg.enabled == 0 || reason >= u64::from(DROP_REASON_SLOTS) {
        count_drop(DropCounter::FilteredReason);
        return;
    }
    let reason = reason as u32;
    if !DROP_REASONS.get(reason).is_some_and(|v| *v != 0) {
        count_drop(DropCounter::FilteredReason);
        return;
    }
    let outcome = inspect(cfg, skb, reason);
    count_drop(outcome);
}

#[inline(always)]
fn inspect(cfg: &DropConfig, skb: u64, reason: u32) -> DropCounter {
    // Ports first: on a busy host most drops are not VoIP, and this
    // needs fewer reads than the namespace check (measured by the drops
    // benchmark).
    let (Some(head), Some(nh), Some(tail), Some(proto)) = (
        read::<u64>(skb, cfg.skb_head),
        read::<u16>(skb, cfg.skb_network_header),
        read::<u32>(skb, cfg.skb_tail),
        read::<[u8; 2]>(skb, cfg.skb_protocol),
    ) else {
        return DropCounter::DropUnreadable;
    };
    let nh = u32::from(nh);
    if head == 0 || tail <= nh {
        return DropCounter::DropUnreadable;
    }
    let frame = DroppedFrame {
        l3: head + u64::from(nh),
        l3_len: tail - nh,
        ethertype: proto,
    };
    let Ok(flow) = walk(&frame) else {
        return DropCounter::FilteredNotVoip;
    };
    if flow.protocol != IPPROTO_UDP && flow.protocol != IPPROTO_TCP {
        return DropCounter::FilteredNotVoip;
    }
    let mut flags = 0;
    if !is_sip_port(flow.src_port) && !is_sip_port(flow.dst_port) {
        if !in_rtp_range(cfg, flow.src_port) && !in_rtp_range(cfg, flow.dst_port) {
            return DropCounter::FilteredNotVoip;
        }
        flags |= DROP_FLAG_RTP;
    }

    let Some(iif) = read::<u32>(skb, cfg.skb_iif) else {
        return DropCounter::DropUnreadable;
    };
    let direction = if iif != 0 {
        Direction::Ingress
    } else {
        Direction::Egress
    };
    // The device: skb->dev, or (locally generated, before the route's
    // device is put in skb->dev) the route's device.
    let mut dev = read::<u64>(skb, cfg.skb_dev).unwrap_or(0);
    if dev == 0 {
        let refdst = read::<u64>(skb, cfg.skb_refdst).unwrap_or(0) & !1u64;
        dev = read::<u64>(refdst, cfg.dst_dev).unwrap_or(0);
    }
    let ifindex = if iif != 0 {
        iif
    } else {
        read::<u32>(dev, cfg.dev_ifindex).unwrap_or(0)
    };
    // The namespace: of the device, else of the sending socket.
    let net = match read::<u64>(dev, cfg.dev_nd_net) {
        Some(n) if n != 0 => n,
        _ => {
            let sk = read::<u64>(skb, cfg.skb_sk).unwrap_or(0);
            read::<u64>(sk, cfg.sk_net).unwrap_or(0)
        }
    };
    let Some(inum) = read::<u32>(net, cfg.net_inum) else {
        return DropCounter::FilteredNamespace;
    };
    if inum != cfg.netns_inum {
        return DropCounter::FilteredNamespace;
    }
    // Ifindex 0: dropped before any interface was chosen (e.g. an output
    // hook with no route yet); it is in our namespace, so it is ours.
    if ifindex != 0 && DROP_IFACES.get_ptr(ifindex).is_none() {
        return DropCounter::FilteredNamespace;
    }
    if flags & DROP_FLAG_RTP != 0 && !rtp_report_due(&frame, &flow, ifindex, direction) {
        return DropCounter::RtpDropsSuppressed;
    }
    let Some(endpoints) = flow.endpoints(&frame, direction) else {
        return DropCounter::DropUnreadable;
    };
    let skb_len = read::<u32>(skb, cfg.skb_len).unwrap_or(0);
    let header = DropHeader {
        ktime_ns: 0,
        ifindex,
        reason,
        skb_len,
        l3_len: frame.l3_len,
        cap_len: 0,
        flags,
        endpoints,
    };
    emit(&frame, header)
}

/// Counts an RTP-range drop on its flow's statistics (the same key XDP/TC
/// accounted the packet under) and says whether to report it: the first
/// of the flow each second, within the per-CPU budget.
#[inline(always)]
fn rtp_report_due(frame: &DroppedFrame, flow: &Flow, ifindex: u32, direction: Direction) -> bool {
    // SAFETY: the helper has no preconditions.
    let now = unsafe { bpf_ktime_get_ns() };
    let Some(state) = rtp::flow_state_of(frame, flow, ifindex, direction) else {
        return within_budget(now);
    };
    // SAFETY: `state` points at a live map value (RCU keeps it valid for
    // this run); both fields are naturally aligned u64s that only this
    // program writes, atomically (XDP/TC's update leaves them alone).
    unsafe {
        atomic_xadd::<u64, u64, { AtomicOrdering::SeqCst }>(addr_of_mut!((*state).local_drops), 1);
        let last = core::ptr::read_volatile(addr_of!((*state).drop_reported_ns));
        if last != 0 && now.wrapping_sub(last) < RTP_REPORT_EVERY_NS {
            return false;
        }
        // One CPU wins the report when two drop the same flow at once.
        let (_, won) = atomic_cxchg::<u64, { AtomicOrdering::SeqCst }, { AtomicOrdering::SeqCst }>(
            addr_of_mut!((*state).drop_reported_ns),
            last,
            now,
        );
        // Thousands of flows dropping at once still share the budget.
        won && within_budget(now)
    }
}

#[inline(always)]
fn within_budget(now: u64) -> bool {
    let Some(b) = DROP_RTP_BUDGET.get_ptr_mut(0) else {
        return false;
    };
    // SAFETY: per-CPU slot; programs do not migrate CPUs mid-run.
    unsafe {
        let [start, used] = &mut *b;
        if now.wrapping_sub(*start) >= RTP_REPORT_EVERY_NS {
            *start = now;
            *used = 0;
        }
        if *used >= RTP_REPORT_BUDGET {
            return false;
        }
        *used += 1;
    }
    true
}

#[inline(always)]
fn in_rtp_range(cfg: &DropConfig, port: u16) -> bool {
    port != 0 && port >= cfg.rtp_min && port <= cfg.rtp_max
}

/// Copies header + IP bytes into the drop ring.
#[inline(always)]
fn emit(frame: &DroppedFrame, mut h: DropHeader) -> DropCounter {
    let Some(scratch) = DROP_SCRATCH.get_ptr_mut(0) else {
        return DropCounter::DropUnreadable;
    };
    let mut cap_len = frame.l3_len;
    if cap_len > MAX_DROP_CAPTURE_LEN as u32 {
        cap_len = MAX_DROP_CAPTURE_LEN as u32;
        h.flags |= DROP_FLAG_TRUNCATED;
    }
    let Some(cap_len) = copy_len::<MAX_DROP_CAPTURE_LEN>(cap_len) else {
        return DropCounter::DropUnreadable;
    };
    h.cap_len = cap_len;
    // SAFETY: scratch is a per-CPU map value of DROP_SCRATCH_LEN bytes:
    // the header at its start, cap_len <= MAX_DROP_CAPTURE_LEN after it.
    unsafe {
        let base = scratch.cast::<u8>();
        if bpf_probe_read_kernel(
            base.add(DROP_HEADER_LEN).cast(),
            cap_len,
            frame.l3 as *const core::ffi::c_void,
        ) != 0
        {
            return DropCounter::DropUnreadable;
        }
        h.ktime_ns = bpf_ktime_get_ns();
        base.cast::<DropHeader>().write_unaligned(h);
        let bytes = core::slice::from_raw_parts(base, DROP_HEADER_LEN + cap_len as usize);
        if DROP_EVENTS.output::<[u8]>(bytes, 0).is_err() {
            return DropCounter::DropRingbufFull;
        }
    }
    DropCounter::DropsReported
}
