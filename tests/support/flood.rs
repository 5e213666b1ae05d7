//! An RTP flood for the benchmarks: valid G.711 RTP headers spread round
//! robin over many flows (one destination port each), sent in `sendmmsg`
//! batches as fast as the machine allows.

use std::{net::UdpSocket, os::fd::AsRawFd, time::Instant};

/// Datagrams per sendmmsg call.
const BATCH: usize = 64;
/// RTP header and 20 ms of G.711.
const RTP_LEN: usize = 12 + 160;

/// Sends RTP from `sock` to ports `first_port..first_port + flows` of
/// `dst`, round robin, until `until`; returns the datagrams sent.
pub fn blast_rtp(
    sock: &UdpSocket,
    dst: std::net::Ipv4Addr,
    flows: u16,
    first_port: u16,
    until: Instant,
) -> u64 {
    let mut seqs = vec![0u16; usize::from(flows)];
    let mut bufs = vec![[0u8; RTP_LEN]; BATCH];
    let mut addrs: Vec<libc::sockaddr_in> = Vec::with_capacity(BATCH);
    let mut iov: Vec<libc::iovec> = Vec::with_capacity(BATCH);
    // SAFETY: plain C structs; zeroed is a valid initial value.
    let mut msgs: Vec<libc::mmsghdr> = (0..BATCH).map(|_| unsafe { std::mem::zeroed() }).collect();
    let mut flow = 0usize;
    let mut sent = 0u64;
    while Instant::now() < until {
        addrs.clear();
        iov.clear();
        for buf in bufs.iter_mut() {
            let seq = seqs[flow];
            seqs[flow] = seq.wrapping_add(1);
            buf[0] = 0x80;
            buf[1] = 0;
            buf[2..4].copy_from_slice(&seq.to_be_bytes());
            buf[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
            buf[8..12].copy_from_slice(&(0x7700_0000 + flow as u32).to_be_bytes());
            addrs.push(libc::sockaddr_in {
                sin_family: libc::AF_INET as u16,
                sin_port: (first_port + flow as u16).to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from(dst).to_be(),
                },
                sin_zero: [0; 8],
            });
            flow = (flow + 1) % usize::from(flows);
        }
        for (i, buf) in bufs.iter_mut().enumerate() {
            iov.push(libc::iovec {
                iov_base: buf.as_mut_ptr().cast(),
                iov_len: RTP_LEN,
            });
            msgs[i].msg_hdr.msg_name = std::ptr::from_mut(&mut addrs[i]).cast();
            msgs[i].msg_hdr.msg_namelen = std::mem::size_of::<libc::sockaddr_in>() as u32;
            msgs[i].msg_hdr.msg_iov = std::ptr::from_mut(&mut iov[i]);
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        // SAFETY: msgs points at BATCH initialised headers whose buffers
        // and addresses outlive the call.
        let n = unsafe { libc::sendmmsg(sock.as_raw_fd(), msgs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent += n as u64;
        }
    }
    sent
}

/// The start of a flood benchmark: exits with a message unless root, then
/// turns bpf_stats on for as long as the returned fd lives
/// ([`bpf_stats_on`]).
pub fn bench_start(name: &str) -> std::os::fd::OwnedFd {
    require_bench_root(name);
    bpf_stats_on()
}

/// Exits with a message unless root (namespaces, BPF).
pub fn require_bench_root(name: &str) {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("the {name} benchmark needs root (namespaces, BPF): `cargo xtask bench {name}`");
        std::process::exit(1);
    }
}

/// Turns bpf_stats on for as long as the returned fd lives
/// (BPF_ENABLE_STATS, 5.8+). While on, the kernel reads its clock twice
/// around every BPF program run, socket filters included.
pub fn bpf_stats_on() -> std::os::fd::OwnedFd {
    aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("enabling bpf_stats")
}

/// `tcpdump -w /dev/null 'udp portrange 10000-20000'` on the host end of
/// `pair`, the capture a user would otherwise run, once it listens.
pub fn tcpdump_rtp(
    pair: &super::netns::VethPair,
    dir: &std::path::Path,
) -> super::process::NsProcess {
    let mut tcpdump = super::process::NsProcess::spawn(
        &pair.host,
        dir,
        "tcpdump",
        "tcpdump",
        &[
            "-i",
            &pair.host_if,
            "-n",
            "-w",
            "/dev/null",
            "udp portrange 10000-20000",
        ],
    );
    tcpdump.wait_output("listening on", std::time::Duration::from_secs(30));
    tcpdump
}
