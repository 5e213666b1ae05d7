//! Kernel integration tests: the real programs attached in network
//! namespaces, real peers (SIPp, kamailio), dumpcap as the reference.
//! Run as root: `cargo test -p sipscope --test kernel`.

#[path = "../support/mod.rs"]
mod support;

mod agent;
mod capture;
mod config;
mod drops;
mod hep;
mod ingress;
mod lifecycle;
mod live_pipeline;
mod losses;
mod object;
mod privilege;
mod rawframes;
mod readiness;
mod rtp;
mod rtp_frames;
mod service;
mod syscall_filter;
mod walk;

// The OTLP test receiver, shared with the otlp tests.
#[path = "../otlp/receiver.rs"]
#[allow(dead_code)]
mod receiver;

/// Kernel tests need root (namespaces, BPF). Fail loudly, never skip
/// silently: a skipped kernel test would read as a pass.
pub fn require_root() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(
        euid, 0,
        "kernel tests must run as root (CAP_BPF, CAP_NET_ADMIN, netns)"
    );
}
