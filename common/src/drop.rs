//! Types of the drop tracer: the `kfree_skb` raw tracepoint program that
//! reports SIP and RTP packets the kernel dropped (netfilter, no socket,
//! full socket buffer, ...).
//!
//! The program reads `struct sk_buff` and friends with
//! `bpf_probe_read_kernel` at offsets userspace resolved from the running
//! kernel's BTF ([`DropConfig`]), so one object runs on many kernels
//! without CO-RE relocations.

/// Entries of the drop-reason filter: reason numbers at or above it
/// (subsystem-encoded reasons, `SKB_DROP_REASON_SUBSYS_MASK`) are not
/// reported and count as `filtered_reason`.
pub const DROP_REASON_SLOTS: u32 = 1024;

/// Most interfaces one agent watches for drops.
pub const MAX_DROP_IFACES: u32 = 64;

/// Default size of the drop ring buffer (drops are rare; each costs its
/// copied length plus the header).
pub const DEFAULT_DROP_RING_SIZE: u32 = 256 << 10;

/// Most L3 bytes copied per dropped packet (the same limit as capture).
pub const MAX_DROP_CAPTURE_LEN: usize = crate::MAX_CAPTURE_LEN;

/// Offsets into kernel structures (bytes; from BTF) plus the filter.
/// All zero (`enabled == 0`) means "not configured": the program counts
/// the call as seen and returns.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DropConfig {
    /// 1 once userspace filled the offsets.
    pub enabled: u32,
    /// Inode number of the network namespace to report (`/proc/self/ns/net`).
    pub netns_inum: u32,
    /// `sk_buff.head` (`unsigned char *`).
    pub skb_head: u32,
    /// `sk_buff.network_header` (`__u16`, offset from `head`).
    pub skb_network_header: u32,
    /// `sk_buff.tail` (`sk_buff_data_t`: a `u32` offset from `head` on
    /// 64-bit kernels): end of the linear data.
    pub skb_tail: u32,
    /// `sk_buff.len` (`unsigned int`).
    pub skb_len: u32,
    /// `sk_buff.dev` (`struct net_device *`).
    pub skb_dev: u32,
    /// `sk_buff.protocol` (`__be16`).
    pub skb_protocol: u32,
    /// `sk_buff.skb_iif` (`int`): non-zero on the receive path only.
    pub skb_iif: u32,
    /// `sk_buff._skb_refdst` (`unsigned long`, low bit a flag): the route,
    /// whose device is the output interface before `skb.dev` is set.
    pub skb_refdst: u32,
    /// `sk_buff.sk` (`struct sock *`).
    pub skb_sk: u32,
    /// `dst_entry.dev`.
    pub dst_dev: u32,
    /// `net_device.ifindex` (`int`).
    pub dev_ifindex: u32,
    /// `net_device.nd_net` (`possible_net_t`: one `struct net *`).
    pub dev_nd_net: u32,
    /// `sock.__sk_common.skc_net` (`possible_net_t`).
    pub sk_net: u32,
    /// `net.ns.inum` (`unsigned int`).
    pub net_inum: u32,
    /// RTP port range, inclusive, host byte order; `rtp_min > rtp_max`
    /// disables RTP matching.
    pub rtp_min: u16,
    pub rtp_max: u16,
}
const _: () = assert!(core::mem::size_of::<DropConfig>() == 68);

/// [`DropHeader::flags`]: more L3 bytes were in the skb than were copied.
pub const DROP_FLAG_TRUNCATED: u32 = 1 << 0;
/// [`DropHeader::flags`]: the packet matched an RTP-range port (not SIP).
pub const DROP_FLAG_RTP: u32 = 1 << 1;

/// Metadata in front of every dropped packet in the drop ring. The IP
/// packet (`cap_len` bytes from the network header) follows.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DropHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ktime_ns: u64,
    /// Receiving interface (ingress) or output interface (egress; 0 when
    /// the route was not yet chosen).
    pub ifindex: u32,
    /// `enum skb_drop_reason` number on the running kernel.
    pub reason: u32,
    /// `skb->len` at the drop (from wherever `skb->data` pointed then).
    pub skb_len: u32,
    /// IP bytes available in the skb's linear part.
    pub l3_len: u32,
    /// IP bytes following this header (`<= MAX_DROP_CAPTURE_LEN`).
    pub cap_len: u32,
    /// `DROP_FLAG_*` bits.
    pub flags: u32,
    /// The direction is ingress if the skb was received on an interface
    /// (`skb_iif != 0`), else egress (locally generated).
    pub endpoints: crate::Endpoints,
}

pub const DROP_HEADER_LEN: usize = core::mem::size_of::<DropHeader>();
const _: () = assert!(DROP_HEADER_LEN == 72);
const _: () = assert!(core::mem::offset_of!(DropHeader, endpoints) == 32);

/// Size of the per-CPU drop scratch buffer.
pub const DROP_SCRATCH_LEN: usize = DROP_HEADER_LEN + MAX_DROP_CAPTURE_LEN;

crate::counter::counter_slots! {
    /// Indices into the per-CPU drop counter array. Every `kfree_skb` call is
    /// `DropsSeen`, and ends in exactly one of the others.
    pub enum DropCounter {
        /// Every `kfree_skb` the program ran for (host-wide).
        DropsSeen = 0 => "drops_seen",
        /// Reason not among those reported (or the tracer is unconfigured).
        FilteredReason = 1 => "drops_filtered_reason",
        /// SIP/RTP, but in another network namespace or on an interface not
        /// watched (checked after the ports, which are cheaper to read).
        FilteredNamespace = 2 => "drops_filtered_netns",
        /// Not IP, or no SIP/RTP port (in any namespace).
        FilteredNotVoip = 3 => "drops_filtered_not_voip",
        /// Sent to userspace.
        DropsReported = 4 => "drops_reported",
        /// Matched, but the drop ring was full: lost.
        DropRingbufFull = 5 => "drop_ringbuf_full",
        /// The skb could not be read (headers not in the linear part, fault).
        DropUnreadable = 6 => "drop_unreadable",
        /// An RTP-range drop not sent to userspace: its flow had one reported
        /// within the last second (the flow's RTP statistics count every one),
        /// or the per-CPU budget of RTP drop reports was spent.
        RtpDropsSuppressed = 7 => "rtp_drops_suppressed",
    }
}
