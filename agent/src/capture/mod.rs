//! Where packets come from: the live eBPF ring buffer ([`live`]) or a
//! pcap/pcapng file ([`file`]). Both produce the same owned [`Packet`], so
//! everything downstream is identical for live capture and offline analysis.
//! Live capture also reports packets this host's kernel dropped
//! ([`DroppedPacket`]), which no capture file can show.

pub mod file;
pub mod live;

use std::fmt;

/// Capture time on the packet clock, in nanoseconds since the Unix epoch.
///
/// Live capture converts the kernel's monotonic `ktime` to wall-clock time
/// with an offset taken at start-up; files carry it directly. The analysis
/// core never reads the system clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_nanos(ns: u64) -> Self {
        Self(ns)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self - earlier`, saturating at zero.
    pub const fn since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<std::time::Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturating: the packet clock never wraps.
    fn add(self, d: std::time::Duration) -> Timestamp {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ns))
    }
}

impl fmt::Display for Timestamp {
    /// UTC, `HH:MM:SS.mmmmmm`: the format of a call-flow line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000_000;
        let micros = (self.0 % 1_000_000_000) / 1_000;
        let day = secs % 86_400;
        write!(
            f,
            "{:02}:{:02}:{:02}.{:06}",
            day / 3600,
            (day / 60) % 60,
            day % 60,
            micros
        )
    }
}

/// Which way a packet crossed the interface it was captured on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Received (XDP).
    Ingress,
    /// Sent (TC egress).
    Egress,
    /// Not known (capture files).
    Unknown,
}

/// How [`Packet::data`] is framed, i.e. which header comes first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize)]
pub enum LinkType {
    Ethernet,
    /// Raw IP: version taken from the first nibble.
    RawIp,
    Ipv4,
    Ipv6,
    /// Linux cooked capture v1 (DLT_LINUX_SLL).
    LinuxSll,
    /// Linux cooked capture v2 (DLT_LINUX_SLL2).
    LinuxSll2,
    /// BSD loopback (DLT_NULL): 4-byte host-order address family.
    Null,
}

/// One captured frame, owned, as every source delivers it to the pipeline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet {
    pub ts: Timestamp,
    /// Interface index (live) or 0 (files).
    pub ifindex: u32,
    pub direction: Direction,
    pub link: LinkType,
    /// The captured bytes, starting at the `link` header.
    pub data: Vec<u8>,
    /// Length on the wire; larger than `data.len()` when the capture was
    /// truncated (snap length, or the kernel's copy limit).
    pub orig_len: u32,
}

impl Packet {
    pub fn is_truncated(&self) -> bool {
        (self.data.len() as u64) < u64::from(self.orig_len)
    }
}

/// Why the kernel dropped a packet: `enum skb_drop_reason` of the running
/// kernel (include/net/dropreason-core.h). The number differs between
/// kernel versions; the name is stable.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct DropReason {
    /// The value on the kernel that reported it.
    pub code: u32,
    /// Lower case without the `SKB_DROP_REASON_` prefix, e.g.
    /// `netfilter_drop` (a netfilter rule, i.e. the local firewall,
    /// dropped it), `no_socket` (nothing listens on the port),
    /// `socket_rcvbuff` (the application did not read fast enough).
    pub name: String,
}

impl DropReason {
    /// The local firewall (nftables/iptables) dropped the packet.
    pub fn is_netfilter(&self) -> bool {
        self.name == "netfilter_drop"
    }
}

impl fmt::Display for DropReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name)
    }
}

/// A packet this host's kernel dropped (the `fw.local_drop` evidence): the
/// IP packet as it was when dropped, and why. An inbound packet dropped by
/// the input hook was also captured by XDP before it: both views exist,
/// and the drop says the application never got it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DroppedPacket {
    /// `link` is [`LinkType::RawIp`]: `data` starts at the IP header (a
    /// locally generated packet dropped on output has no link header yet).
    /// `direction` is a hint: [`Direction::Ingress`] if the packet was
    /// received on an interface, else [`Direction::Egress`]. `ifindex` is
    /// the receiving or the output interface (0 if no route was chosen).
    pub packet: Packet,
    pub reason: DropReason,
}
