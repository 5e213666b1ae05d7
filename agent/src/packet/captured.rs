//! What every capture source hands to the core: an owned frame with its
//! link type, direction and packet-clock time, and packets the kernel
//! dropped with the reason. The capture layer produces these; the core
//! owns their definition, so nothing downstream imports `capture`.

use std::fmt;

use crate::time::Timestamp;

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

/// The bytes one call of a TLS library moved (`SSL_read`/`SSL_write`),
/// with the connection's real addresses: what live capture hands over
/// for SIP over TLS, where the wire only carries ciphertext. `src` sent
/// `data` to `dst`; successive calls of a connection and direction are
/// consecutive bytes of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Plaintext {
    /// When the call returned (packet clock).
    pub ts: Timestamp,
    pub src: std::net::SocketAddr,
    pub dst: std::net::SocketAddr,
    /// [`Direction::Ingress`] for what this host read, else `Egress`.
    pub direction: Direction,
    pub data: Vec<u8>,
    /// The call moved more than `data` holds (the kernel's copy limit):
    /// the stream has a gap here.
    pub truncated: bool,
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
