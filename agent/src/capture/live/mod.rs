//! Live capture: load the eBPF programs, attach them, and read the ring
//! buffer into [`Packet`](super::Packet)s.
