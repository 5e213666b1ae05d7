//! Types shared between the eBPF programs (`sipscope-ebpf`) and the agent.
//!
//! Everything here is `#[repr(C)]` and plain data: the kernel writes it into
//! maps and the ring buffer, userspace reads the same bytes back. Sizes are
//! asserted at compile time so both sides agree on the layout, and map and
//! program names live here so the two crates never disagree on a string.
#![no_std]

/// Program and map names, as the eBPF object exports them.
pub mod names {
    /// XDP program: ingress SIP capture.
    pub const XDP_INGRESS: &str = "sipscope_ingress";
    /// TC (tcx/clsact) program: egress SIP capture.
    pub const TC_EGRESS: &str = "sipscope_egress";
    /// TC program: ingress SIP capture where XDP cannot run.
    pub const TC_INGRESS: &str = "sipscope_in_tc";
    /// TC ingress for kernels without BPF atomics (per-CPU RTP flows).
    pub const TC_INGRESS_510: &str = "sipscope_in_510";
    /// TC egress for kernels without BPF atomics (per-CPU RTP flows).
    pub const TC_EGRESS_510: &str = "sipscope_eg_510";
    /// Every TC capture program. Netlink (clsact) filters left by an
    /// earlier run that was killed are found by these names, which stay
    /// within the 15 bytes the kernel keeps of a program name.
    pub const TC_PROGRAMS: [&str; 4] = [TC_INGRESS, TC_EGRESS, TC_INGRESS_510, TC_EGRESS_510];
    /// IPv6 RTP flows on kernels without atomics
    /// (`LruPerCpuHashMap<RtpFlowKey, RtpFlowState>`).
    pub const RTP_FLOWS_PERCPU: &str = "RTP_FLOWS_PERCPU";
    /// IPv4 RTP flows on kernels without atomics
    /// (`LruPerCpuHashMap<RtpFlowKeyV4, RtpFlowState>`).
    pub const RTP_FLOWS_V4_PERCPU: &str = "RTP_FLOWS_V4_PERCPU";
    /// XDP program that only returns `XDP_PASS`: the benchmark baseline.
    pub const XDP_EMPTY: &str = "sipscope_xdp_empty";
    /// TC program that only returns `TC_ACT_OK`: the TC baseline.
    pub const TC_EMPTY: &str = "sipscope_tc_empty";
    /// TC program that only timestamps, reserves and copies a frame into
    /// the ring: the floor under the benchmark's SIP row.
    pub const TC_CAPTURE_FLOOR: &str = "sipscope_tc_floor";
    /// The same for XDP.
    pub const XDP_CAPTURE_FLOOR: &str = "sipscope_xdp_floor";
    /// IPv6 RTP flows (`LruHashMap<RtpFlowKey, RtpFlowState>`), never
    /// copied out.
    pub const RTP_FLOWS: &str = "RTP_FLOWS";
    /// IPv4 RTP flows (`LruHashMap<RtpFlowKeyV4, RtpFlowState>`): a 16-byte
    /// key hashes and compares faster than the 44-byte one.
    pub const RTP_FLOWS_V4: &str = "RTP_FLOWS_V4";
    /// `Array<RtpConfig>` with one entry: port range, default clock.
    pub const RTP_CONFIG: &str = "RTP_CONFIG";
    /// `Array<u32>` of 128 entries: RTP clock (Hz) by payload type.
    pub const RTP_PT_CLOCKS: &str = "RTP_PT_CLOCKS";
    /// `HashMap<RtpPortClockKey, u32>`: clocks negotiated per port in SDP.
    pub const RTP_PORT_CLOCKS: &str = "RTP_PORT_CLOCKS";
    /// Per-CPU counters indexed by [`super::RtpCounter`].
    pub const RTP_COUNTERS: &str = "RTP_COUNTERS";
    /// Ring buffer carrying [`super::CaptureHeader`] + frame bytes.
    pub const EVENTS: &str = "EVENTS";
    /// Per-CPU counters indexed by [`super::CaptureCounter`].
    pub const COUNTERS: &str = "COUNTERS";
    /// SIP port set (`Array<u8>` indexed by port in host byte order; 1 = SIP).
    pub const SIP_PORTS: &str = "SIP_PORTS";
    /// Fragments of SIP datagrams seen so far (`LruHashMap<FragmentKey, u8>`).
    pub const SIP_FRAGMENTS: &str = "SIP_FRAGMENTS";
    /// `Array<u32>` with one entry: 1 while the reader of `EVENTS` waits
    /// for a wake-up (see [`super::READER_WAITING`]).
    pub const EVENTS_READER: &str = "EVENTS_READER";
    /// Raw tracepoint program on `kfree_skb`: packets the kernel dropped.
    pub const KFREE_SKB: &str = "sipscope_kfree_skb";
    /// Raw tracepoint program on `kfree_skb` that does nothing: the drop
    /// benchmark's baseline.
    pub const KFREE_SKB_EMPTY: &str = "sipscope_kfree_skb_empty";
    /// The raw tracepoint they attach to.
    pub const KFREE_SKB_TRACEPOINT: &str = "kfree_skb";
    /// Ring buffer carrying [`super::DropHeader`] + L3 bytes.
    pub const DROP_EVENTS: &str = "DROP_EVENTS";
    /// Per-CPU counters indexed by [`super::DropCounter`].
    pub const DROP_COUNTERS: &str = "DROP_COUNTERS";
    /// `Array<DropConfig>` with one entry: offsets, namespace, RTP range.
    pub const DROP_CONFIG: &str = "DROP_CONFIG";
    /// `Array<u8>` indexed by drop reason number; 1 = report.
    pub const DROP_REASONS: &str = "DROP_REASONS";
    /// `HashMap<u32, u8>`: interfaces (ifindex) whose drops are reported.
    pub const DROP_IFACES: &str = "DROP_IFACES";
    /// Per-CPU scratch buffer a drop event is assembled in.
    pub const DROP_SCRATCH: &str = "DROP_SCRATCH";
    /// Uprobe on `SSL_read(ssl, buf, num)` and `SSL_write` entry.
    pub const TLS_ENTRY: &str = "sipscope_ssl_entry";
    /// Uprobe on `SSL_read_ex(ssl, buf, num, &n)` and `SSL_write_ex` entry.
    pub const TLS_ENTRY_EX: &str = "sipscope_ssl_entry_ex";
    /// Uretprobe on `SSL_read`/`SSL_read_ex`: copies what was read.
    pub const TLS_READ_RET: &str = "sipscope_ssl_read_ret";
    /// Uretprobe on `SSL_write`/`SSL_write_ex`: copies what was written.
    pub const TLS_WRITE_RET: &str = "sipscope_ssl_write_ret";
    /// Uprobe on `SSL_free(ssl)`.
    pub const TLS_FREE: &str = "sipscope_ssl_free";
    /// Raw tracepoint on `sys_enter`: which socket a probed thread reads
    /// and writes.
    pub const TLS_SYS_ENTER: &str = "sipscope_tls_sys_enter";
    /// The raw tracepoint `TLS_SYS_ENTER` attaches to.
    pub const SYS_ENTER_TRACEPOINT: &str = "sys_enter";
    /// Ring buffer carrying [`super::TlsHeader`] + plaintext.
    pub const TLS_EVENTS: &str = "TLS_EVENTS";
    /// Per-CPU counters indexed by [`super::TlsCounter`].
    pub const TLS_COUNTERS: &str = "TLS_COUNTERS";
    /// `HashMap<u32, u8>`: process ids whose TLS calls are copied.
    pub const TLS_PROCESSES: &str = "TLS_PROCESSES";
}

/// The SIP port used when none is configured (RFC 3261 section 19.1.2).
pub const DEFAULT_SIP_PORT: u16 = 5060;

mod counter;
pub use counter::CounterSlot;

pub mod rtp;
pub use rtp::*;

/// Most frame bytes copied per event. Larger frames (jumbo frames, TCP
/// segments before GSO on egress) are truncated, flagged and counted.
pub const MAX_CAPTURE_LEN: usize = 8192;

/// Default ring buffer size in bytes (a power of two multiple of the page
/// size, as the kernel requires).
pub const DEFAULT_RING_SIZE: u32 = 4 << 20;

/// Value of the `EVENTS_READER` entry while the ring's reader is blocked
/// waiting for a wake-up; 0 while it reads on its own schedule. Records are
/// committed without a wake-up (`BPF_RB_NO_WAKEUP`): the kernel's default
/// queues irq_work for the first record after the reader caught up, which
/// cost about 10 µs each in a KVM guest, once per reader cycle. A program
/// that finds the reader waiting, after committing its record, clears the
/// flag and wakes it (`BPF_RB_FORCE_WAKEUP` on a discarded 8-byte record).
pub const READER_WAITING: u32 = 1;

/// Entries of the SIP port array: one per port number.
pub const PORT_COUNT: u32 = 65536;

/// Entries in the fragment-tracking LRU map (datagrams in flight).
pub const MAX_TRACKED_FRAGMENTS: u32 = 4096;

/// Which way the frame crossed the interface.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// XDP, received.
    Ingress = 0,
    /// TC egress, sent.
    Egress = 1,
}

/// Layer 3 family of the captured frame.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    Ipv4 = 4,
    Ipv6 = 6,
}

/// Transport protocol, IANA protocol numbers.
#[repr(u8)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Unknown (a later IP fragment carries no transport header).
    Unknown = 0,
    Icmp = 1,
    Tcp = 6,
    Udp = 17,
    Icmpv6 = 58,
}

impl Transport {
    pub const fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::Icmp,
            6 => Self::Tcp,
            17 => Self::Udp,
            58 => Self::Icmpv6,
            _ => Self::Unknown,
        }
    }
}

/// [`CaptureHeader::flags`]: the frame was longer than [`MAX_CAPTURE_LEN`].
pub const FLAG_TRUNCATED: u32 = 1 << 0;
/// [`CaptureHeader::flags`]: the frame is an IP fragment of a SIP datagram.
pub const FLAG_FRAGMENT: u32 = 1 << 1;
/// [`CaptureHeader::flags`]: the frame carried at least one VLAN tag.
pub const FLAG_VLAN: u32 = 1 << 2;
/// [`CaptureHeader::flags`]: an RTCP SR/RR from the RTP range, forwarded
/// for its reception report blocks (RFC 3550 6.4); not SIP.
pub const FLAG_RTCP: u32 = 1 << 3;

/// Metadata in front of every captured frame in the ring buffer. The frame
/// itself (`cap_len` bytes, starting at the Ethernet header) follows
/// immediately, so userspace decodes it exactly like a pcap record.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CaptureHeader {
    /// `bpf_ktime_get_ns()`: CLOCK_MONOTONIC nanoseconds.
    pub ktime_ns: u64,
    pub ifindex: u32,
    /// Frame length on the wire.
    pub orig_len: u32,
    /// Frame bytes following this header (`<= MAX_CAPTURE_LEN`).
    pub cap_len: u32,
    /// `FLAG_*` bits.
    pub flags: u32,
    /// Ports are zero for later fragments. For ICMP destination
    /// unreachable errors: the ports of the quoted datagram.
    pub endpoints: Endpoints,
}

pub const CAPTURE_HEADER_LEN: usize = core::mem::size_of::<CaptureHeader>();
const _: () = assert!(CAPTURE_HEADER_LEN == 64);
const _: () = assert!(core::mem::offset_of!(CaptureHeader, endpoints) == 24);

/// Who sent a packet to whom and which way it crossed the interface: the
/// tail of every ring-buffer record ([`CaptureHeader`], [`DropHeader`]),
/// filled from the same header walk and decoded by one function.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Endpoints {
    /// IPv4 addresses occupy the first 4 bytes, the rest is zero.
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    /// Host byte order.
    pub src_port: u16,
    pub dst_port: u16,
    /// [`Direction`] as u8.
    pub direction: u8,
    /// [`Family`] as u8.
    pub family: u8,
    /// [`Transport`] as u8 (the IP protocol number).
    pub transport: u8,
    pub _pad: u8,
}
const _: () = assert!(core::mem::size_of::<Endpoints>() == 40);

/// Where a VLAN tag the kernel holds as skb metadata is put back into the
/// copied frame: after the two MAC addresses.
pub const VLAN_TAG_OFFSET: usize = 12;
/// Bytes of an 802.1Q/802.1ad tag (TPID + TCI).
pub const VLAN_TAG_LEN: usize = 4;

/// Key of the fragment-tracking map: an IP datagram in flight
/// (RFC 791 section 3.2: source, destination, protocol, identification;
/// RFC 8200 section 4.5: source, destination, identification).
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FragmentKey {
    pub src_addr: [u8; 16],
    pub dst_addr: [u8; 16],
    pub id: u32,
    pub family: u8,
    pub protocol: u8,
    pub _pad: [u8; 2],
}
const _: () = assert!(core::mem::size_of::<FragmentKey>() == 40);

counter::counter_slots! {
    /// Indices into the per-CPU capture counter array.
    pub enum CaptureCounter {
        /// Every frame the programs looked at.
        PacketsSeen = 0 => "packets_seen",
        /// Frames copied to the ring buffer (including fragments).
        SipCaptured = 1 => "sip_captured",
        /// IP fragments of SIP datagrams copied (a subset of `SipCaptured`;
        /// a fragment lost to a full ring counts as `RingbufFull` only).
        FragmentsForwarded = 2 => "fragments_forwarded",
        /// Frames longer than `MAX_CAPTURE_LEN`, copied truncated.
        Truncated = 3 => "truncated",
        /// Frames that matched but found the ring buffer full: lost.
        RingbufFull = 4 => "ringbuf_full",
        /// IP frames whose headers could not be walked (too short, too many
        /// extension headers): passed without inspection.
        Unparsed = 5 => "unparsed",
    }
}

pub mod drop;
pub use drop::*;

pub mod tls;
pub use tls::*;

#[cfg(feature = "user")]
mod user {
    use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

    use super::{Direction, Endpoints, Family, RtpFlowKey, Transport};

    /// An address as a kernel record holds it (IPv4 in the first 4 bytes).
    fn ip(family: u8, raw: [u8; 16]) -> IpAddr {
        if family == Family::Ipv4 as u8 {
            IpAddr::V4(Ipv4Addr::new(raw[0], raw[1], raw[2], raw[3]))
        } else {
            IpAddr::V6(Ipv6Addr::from(raw))
        }
    }

    /// Both addresses the way a kernel record holds them; `None` when the
    /// families differ.
    fn raw_pair(src: IpAddr, dst: IpAddr) -> Option<(Family, [u8; 16], [u8; 16])> {
        match (src, dst) {
            (IpAddr::V4(s), IpAddr::V4(d)) => {
                let (mut a, mut b) = ([0u8; 16], [0u8; 16]);
                a[..4].copy_from_slice(&s.octets());
                b[..4].copy_from_slice(&d.octets());
                Some((Family::Ipv4, a, b))
            }
            (IpAddr::V6(s), IpAddr::V6(d)) => Some((Family::Ipv6, s.octets(), d.octets())),
            _ => None,
        }
    }

    impl Direction {
        /// The direction a record's `direction` byte names, if any.
        pub const fn from_u8(v: u8) -> Option<Self> {
            match v {
                0 => Some(Self::Ingress),
                1 => Some(Self::Egress),
                _ => None,
            }
        }
    }

    impl Endpoints {
        /// Endpoints of a packet from `src` to `dst`; `None` when the
        /// address families differ.
        pub fn new(
            src: SocketAddr,
            dst: SocketAddr,
            direction: Direction,
            transport: Transport,
        ) -> Option<Self> {
            let (family, src_addr, dst_addr) = raw_pair(src.ip(), dst.ip())?;
            Some(Self {
                src_addr,
                dst_addr,
                src_port: src.port(),
                dst_port: dst.port(),
                direction: direction as u8,
                family: family as u8,
                transport: transport as u8,
                _pad: 0,
            })
        }
        pub fn src_ip(&self) -> IpAddr {
            ip(self.family, self.src_addr)
        }
        pub fn dst_ip(&self) -> IpAddr {
            ip(self.family, self.dst_addr)
        }
        pub fn src(&self) -> SocketAddr {
            SocketAddr::new(self.src_ip(), self.src_port)
        }
        pub fn dst(&self) -> SocketAddr {
            SocketAddr::new(self.dst_ip(), self.dst_port)
        }
        pub const fn transport(&self) -> Transport {
            Transport::from_u8(self.transport)
        }
    }

    impl RtpFlowKey {
        /// The kernel's key for `src -> dst` on `ifindex` in `direction`;
        /// `None` when the address families differ.
        pub fn new(
            src: SocketAddr,
            dst: SocketAddr,
            ifindex: u32,
            direction: Direction,
        ) -> Option<Self> {
            let packet = Endpoints::new(src, dst, direction, Transport::Udp)?;
            Some(Self::of(&packet, ifindex))
        }
        pub fn src(&self) -> SocketAddr {
            SocketAddr::new(ip(self.family, self.src_addr), self.src_port)
        }
        pub fn dst(&self) -> SocketAddr {
            SocketAddr::new(ip(self.family, self.dst_addr), self.dst_port)
        }
    }

    // SAFETY (each): plain #[repr(C)] data with explicit padding, no
    // pointers; every bit pattern is a valid value.
    // SAFETY: as above.
    unsafe impl aya::Pod for super::CaptureHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::Endpoints {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::FragmentKey {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DropHeader {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::DropConfig {}
    // SAFETY: as above.
    unsafe impl aya::Pod for super::TlsHeader {}
}

// The counter arrays' sizes are part of the ABI (map max_entries).
const _: () = assert!(CaptureCounter::COUNT == 6);
const _: () = assert!(DropCounter::COUNT == 8);
const _: () = assert!(RtpCounter::COUNT == 7);
