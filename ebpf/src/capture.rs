//! The capture decision and the copy into the ring buffer.
//!
//! A frame is captured when its source or destination port is in
//! `SIP_PORTS`, or when it is a later IP fragment of a UDP datagram whose
//! first fragment was captured (`SIP_FRAGMENTS`).
//!
//! Limitation: a later fragment that arrives *before* the first one (IP
//! allows any order) is not recognised and is not captured; userspace then
//! cannot reassemble that datagram. Linux senders emit fragments in order,
//! so this is rare; it is documented in the README.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    helpers::bpf_ktime_get_ns,
};
use sipscope_common::{
    CAPTURE_HEADER_LEN, CaptureCounter, CaptureHeader, Direction, FLAG_FRAGMENT, FLAG_RTCP,
    FLAG_TRUNCATED, FLAG_VLAN, FragmentKey, MAX_CAPTURE_LEN, READER_WAITING, RtpCounter,
    VLAN_TAG_LEN, VLAN_TAG_OFFSET,
};

use crate::{
    frame::{Frame, copy_len},
    maps::{EVENTS, EVENTS_READER, SIP_FRAGMENTS, SIP_PORTS, count},
    rtp::{self, FlowStore},
    walk::{Flow, Skip, walk},
};

const IPPROTO_UDP: u8 = 17;

/// Inspects one frame; captures it if it is SIP, accounts it in the flow
/// store `S` if it is RTP. Never fails: every outcome is a counter.
#[inline(always)]
pub fn inspect<F: Frame, S: FlowStore>(frame: &F, direction: Direction, ifindex: u32) {
    count(CaptureCounter::PacketsSeen);
    let flow = match walk(frame) {
        Ok(flow) => flow,
        Err(Skip::NotIp) => return,
        Err(Skip::Unparsed) => {
            count(CaptureCounter::Unparsed);
            return;
        }
    };
    let mut flags = flow.flags;
    match flow.fragment {
        Some(frag) if !frag.first => {
            // A later fragment: no ports, known only through its first fragment.
            if flow.protocol != IPPROTO_UDP {
                return;
            }
            let Some(key) = fragment_key(frame, &flow, frag.id) else {
                count(CaptureCounter::Unparsed);
                return;
            };
            if SIP_FRAGMENTS.get_ptr(key).is_none() {
                return;
            }
            flags |= FLAG_FRAGMENT;
        }
        fragment => {
            if !is_sip_port(flow.src_port) && !is_sip_port(flow.dst_port) {
                // Not SIP: RTP is aggregated in the kernel, never copied.
                if fragment.is_none()
                    && flow.protocol == IPPROTO_UDP
                    && let Some(config) = rtp::in_rtp_range(&flow)
                    && rtp::account::<F, S>(frame, &flow, &config, direction, ifindex)
                    && emit(frame, &flow, direction, ifindex, flags | FLAG_RTCP)
                {
                    rtp::count(RtpCounter::RtcpForwarded);
                }
                return;
            }
            if let Some(frag) = fragment {
                flags |= FLAG_FRAGMENT;
                if flow.protocol == IPPROTO_UDP
                    && let Some(key) = fragment_key(frame, &flow, frag.id)
                {
                    // Insert failure only means the later fragments are not
                    // recognised (and so not counted as forwarded either).
                    let _ = SIP_FRAGMENTS.insert(key, 1, 0);
                }
            }
        }
    }
    if emit(frame, &flow, direction, ifindex, flags) {
        count(CaptureCounter::SipCaptured);
        if flags & FLAG_FRAGMENT != 0 {
            count(CaptureCounter::FragmentsForwarded);
        }
    }
}

#[inline(always)]
pub fn is_sip_port(port: u16) -> bool {
    port != 0 && SIP_PORTS.get(u32::from(port)).is_some_and(|v| *v != 0)
}

#[inline(always)]
fn fragment_key<F: Frame>(frame: &F, flow: &Flow, id: u32) -> Option<FragmentKey> {
    let (src_addr, dst_addr) = flow.addresses(frame)?;
    Some(FragmentKey {
        src_addr,
        dst_addr,
        id,
        family: flow.family as u8,
        protocol: flow.protocol,
        _pad: [0; 2],
    })
}

/// Copies `len` bytes of the frame as it was on the wire to `dst`: the
/// frame itself, or with `tag` put back after the MAC addresses.
///
/// # Safety
/// `dst` must be valid for `len` bytes of writes, plus
/// `VLAN_TAG_OFFSET + VLAN_TAG_LEN` more when `tag` is set (the second
/// copy's length is bounded for the verifier by `SIZE`, which bounds `len`).
#[inline(always)]
unsafe fn copy_frame<F: Frame, const SIZE: usize>(
    frame: &F,
    dst: *mut u8,
    len: u32,
    tag: Option<[u8; 4]>,
) -> bool {
    const HEAD: u32 = (VLAN_TAG_OFFSET + VLAN_TAG_LEN) as u32;
    let Some(tag) = tag else {
        // SAFETY: the caller's bound.
        return unsafe { frame.load_raw(0, dst, len) };
    };
    if len <= HEAD {
        return false; // a tagged runt: nothing past the tag to copy
    }
    let Some(rest) = copy_len::<SIZE>(len - HEAD) else {
        return false;
    };
    // SAFETY: the caller's bound: 12 + 4 + rest bytes.
    unsafe {
        if !frame.load_raw(0, dst, VLAN_TAG_OFFSET as u32) {
            return false;
        }
        dst.add(VLAN_TAG_OFFSET)
            .cast::<[u8; 4]>()
            .write_unaligned(tag);
        frame.load_raw(VLAN_TAG_OFFSET as u32, dst.add(HEAD as usize), rest)
    }
}

/// Copies header + frame (from the Ethernet header, at most
/// `MAX_CAPTURE_LEN` bytes) into the ring buffer; true if it got there
/// (the caller counts what it was).
#[inline(always)]
fn emit<F: Frame>(
    frame: &F,
    flow: &Flow,
    direction: Direction,
    ifindex: u32,
    mut flags: u32,
) -> bool {
    let tag = frame.offloaded_vlan_tag();
    let mut orig_len = frame.len();
    if tag.is_some() {
        // The frame as it was on the wire, with its tag.
        orig_len += VLAN_TAG_LEN as u32;
        flags |= FLAG_VLAN;
    }
    let mut cap_len = orig_len;
    if cap_len > MAX_CAPTURE_LEN as u32 {
        cap_len = MAX_CAPTURE_LEN as u32;
        flags |= FLAG_TRUNCATED;
        count(CaptureCounter::Truncated);
    }
    let Some(endpoints) = flow.endpoints(frame, direction) else {
        count(CaptureCounter::Unparsed);
        return false;
    };
    let header = CaptureHeader {
        // SAFETY: the helper has no preconditions.
        ktime_ns: unsafe { bpf_ktime_get_ns() },
        ifindex,
        orig_len,
        cap_len,
        flags,
        endpoints,
    };
    // One arm per reservation size (see `emit_sized`).
    let outcome = if cap_len <= 512 {
        emit_sized::<F, 512>(frame, &header, tag)
    } else if cap_len <= 1024 {
        emit_sized::<F, 1024>(frame, &header, tag)
    } else if cap_len <= 2048 {
        emit_sized::<F, 2048>(frame, &header, tag)
    } else {
        emit_sized::<F, MAX_CAPTURE_LEN>(frame, &header, tag)
    };
    match outcome {
        Ok(()) => true,
        Err(lost) => {
            count(lost);
            false
        }
    }
}

/// Room after the frame bytes for the verifier's bound on the copy that
/// follows a put-back VLAN tag (it starts 16 bytes in, bounded by `SIZE`).
pub const VLAN_SLACK: usize = VLAN_TAG_OFFSET + VLAN_TAG_LEN;

/// Reserves header + `SIZE` frame bytes in the ring and copies the frame
/// straight into the reservation (at most `SIZE` bytes, a power of two).
///
/// The verifier accepts only a constant reservation size, hence a few
/// sizes rather than the exact length: a 400-byte REGISTER costs 512 bytes
/// of ring, not 8 KiB, and the frame is copied once. Assembling the event
/// in a per-CPU scratch buffer for `bpf_ringbuf_output` (which takes any
/// length) copied it twice; the kernel benchmark measured this as cheaper.
/// Userspace reads `cap_len` bytes and ignores the rest of the record.
#[inline(always)]
fn emit_sized<F: Frame, const SIZE: usize>(
    frame: &F,
    header: &CaptureHeader,
    tag: Option<[u8; 4]>,
) -> Result<(), CaptureCounter> {
    let Some(cap_len) = copy_len::<SIZE>(header.cap_len) else {
        return Err(CaptureCounter::Unparsed);
    };
    let Some(mut entry) = EVENTS.reserve_bytes(CAPTURE_HEADER_LEN + SIZE + VLAN_SLACK, 0) else {
        return Err(CaptureCounter::RingbufFull);
    };
    let base = entry.as_mut_ptr();
    // SAFETY: the reservation holds the header, then SIZE + VLAN_SLACK
    // bytes, which bound both copies (see copy_frame).
    unsafe {
        if !copy_frame::<F, SIZE>(frame, base.add(CAPTURE_HEADER_LEN), cap_len, tag) {
            // The frame is shorter than it claims: counted, never silent.
            entry.discard(0);
            return Err(CaptureCounter::Unparsed);
        }
        base.cast::<CaptureHeader>().write_unaligned(*header);
    }
    entry.submit(u64::from(BPF_RB_NO_WAKEUP));
    wake_waiting_reader();
    Ok(())
}

/// Wakes the ring's reader if it is blocked waiting (see
/// `sipscope_common::READER_WAITING`). Called after the commit: a reader
/// that announced itself before this program read the flag is woken here,
/// and one that announced itself later finds the record when it drains
/// once more after announcing (both sides' order is commit/announce, then
/// read the other's state; the ring's commit is a full barrier).
#[inline(always)]
fn wake_waiting_reader() {
    let Some(waiting) = EVENTS_READER.get_ptr_mut(0) else {
        return;
    };
    // SAFETY: the map's one value; a racing CPU at worst wakes it twice.
    unsafe {
        if *waiting != READER_WAITING {
            return;
        }
        // An empty record, discarded, carries the wake-up; the reader skips
        // discarded records. If even 8 bytes do not fit, the flag stays set
        // and the next record tries again.
        if let Some(kick) = EVENTS.reserve::<u64>(0) {
            *waiting = 0;
            kick.discard(u64::from(BPF_RB_FORCE_WAKEUP));
        }
    }
}
