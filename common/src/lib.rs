//! Types shared between the eBPF programs (`sipscope-ebpf`) and the agent.
//!
//! Everything here is `#[repr(C)]` and plain data: the kernel writes it into
//! maps and the ring buffer, userspace reads the same bytes back.
#![no_std]
