//! Where packets come from: the live eBPF ring buffer ([`live`]) or a
//! pcap/pcapng file ([`file`]). Both produce the same owned [`Packet`](crate::packet::Packet), so
//! everything downstream is identical for live capture and offline analysis.
//! Live capture also reports packets this host's kernel dropped
//! ([`DroppedPacket`](crate::packet::DroppedPacket)), which no capture file can show.

pub mod file;
pub mod live;
