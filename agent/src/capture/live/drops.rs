//! The drop tracer's userspace half: configure the `kfree_skb` program
//! from the kernel's BTF, attach it, and turn its ring entries into
//! [`DroppedPacket`]s.
//!
//! Kernel requirements: the `kfree_skb` tracepoint carries a drop reason
//! since Linux 5.17, and netfilter drops are reported with
//! `SKB_DROP_REASON_NETFILTER_DROP` since then; raw tracepoint programs
//! and `bpf_probe_read_kernel` are older. On a kernel without the enum in
//! its BTF the tracer is reported unavailable and capture carries on.

use std::{collections::HashMap, ops::RangeInclusive, os::unix::fs::MetadataExt as _, path::Path};

use aya::{
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf},
    programs::RawTracePoint,
};
use sipscope_common::{
    DROP_FLAG_RTP, DROP_FLAG_TRUNCATED, DROP_REASON_SLOTS, DropConfig, DropHeader, names,
};

use super::{
    attach::program,
    clock::KtimeClock,
    kernel_btf::{KernelBtf, ReasonName},
    load::LoadedObject,
    record,
};
use crate::packet::{DropReason, DroppedPacket, LinkType, Packet};

/// Drop reasons reported by default, by kernel name (lower case). Each
/// says something an operator can act on for SIP/RTP; names this kernel
/// does not have are skipped. Left out on purpose: `not_specified` and
/// the many header-validation reasons (malformed packets, not a
/// configuration problem), `otherhost` (not for us).
pub(crate) const DEFAULT_DROP_REASONS: &[&str] = &[
    // The local firewall.
    "netfilter_drop",
    // Nothing listens on the port: a registrar or PBX that is down, or a
    // peer sending to the wrong port.
    "no_socket",
    // The application is not reading fast enough (overload).
    "socket_rcvbuff",
    "socket_backlog",
    "proto_mem",
    // A socket filter (BPF/cBPF on the socket) rejected it.
    "socket_filter",
    // Reverse-path filter: asymmetric routing (multi-homed SBCs).
    "ip_rpfilter",
    // IPsec policy, routing and neighbour failures on the way out.
    "xfrm_policy",
    "ip_outnoroutes",
    "ip_innoroutes",
    "neigh_failed",
    "neigh_queuefull",
    // Checksum errors (a broken NIC offload or a middlebox).
    "udp_csum",
    "tcp_csum",
    // Queues overflowing.
    "qdisc_drop",
    "cpu_backlog",
    "full_ring",
    // A tc/cgroup BPF program (another tool) dropped it.
    "tc_ingress",
    "tc_egress",
    "bpf_cgroup_egress",
];

/// What the drop tracer reports and where.
#[derive(Clone, Debug)]
pub(crate) struct DropFilter {
    /// Interfaces whose drops are reported (the capture interfaces).
    pub ifindexes: Vec<u32>,
    /// RTP port range (inclusive); SIP ports come from the capture config.
    pub rtp_ports: RangeInclusive<u16>,
    /// Reason names to report (see [`DEFAULT_DROP_REASONS`]).
    pub reasons: Vec<String>,
}

/// The attached tracer: its ring, its counters, and the reason names.
pub(super) struct DropTracer {
    pub ring: RingBuf<MapData>,
    pub counters: PerCpuArray<MapData, u64>,
    pub reasons: HashMap<u32, String>,
    /// The reasons actually reported on this kernel.
    pub reported: Vec<ReasonName>,
}

/// Why drop tracing is not running (capture carries on without it).
#[derive(Debug, thiserror::Error)]
#[error("drop tracing unavailable: {0}")]
pub struct DropsUnavailable(pub String);

/// The inode number identifying this process's network namespace.
pub(crate) fn current_netns_inum() -> std::io::Result<u32> {
    let ino = std::fs::metadata("/proc/self/ns/net")?.ino();
    u32::try_from(ino).map_err(|_| std::io::Error::other("namespace inode beyond 32 bits"))
}

impl DropTracer {
    /// Configures and attaches the `kfree_skb` program. Errors are for the
    /// operator: they say which kernel feature is missing.
    pub(super) fn start(
        object: &mut LoadedObject,
        filter: &DropFilter,
    ) -> Result<Self, DropsUnavailable> {
        let btf = KernelBtf::open(Path::new(KernelBtf::PATH))
            .map_err(|e| DropsUnavailable(e.to_string()))?;
        let all = btf
            .drop_reasons()
            .map_err(|e| DropsUnavailable(e.to_string()))?;
        let mut cfg = DropConfig::default();
        btf.fill_offsets(&mut cfg)
            .map_err(|e| DropsUnavailable(format!("{e} (unsupported kernel layout)")))?;
        cfg.netns_inum = current_netns_inum()
            .map_err(|e| DropsUnavailable(format!("reading /proc/self/ns/net: {e}")))?;
        cfg.rtp_min = *filter.rtp_ports.start();
        cfg.rtp_max = *filter.rtp_ports.end();
        cfg.enabled = 1;

        let reported: Vec<ReasonName> = all
            .iter()
            .filter(|r| filter.reasons.contains(&r.name))
            .filter(|r| r.code < DROP_REASON_SLOTS)
            .cloned()
            .collect();
        let kernel = |op: &str, e: &dyn std::error::Error| DropsUnavailable(format!("{op}: {e}"));
        {
            let map = object.ebpf.map_mut(names::DROP_REASONS).ok_or_else(|| {
                DropsUnavailable("map DROP_REASONS missing (stale build?)".into())
            })?;
            let mut arr: Array<_, u8> =
                Array::try_from(map).map_err(|e| kernel("opening DROP_REASONS", &e))?;
            for r in &reported {
                arr.set(r.code, 1, 0)
                    .map_err(|e| kernel("setting a drop reason", &e))?;
            }
        }
        {
            let map = object
                .ebpf
                .map_mut(names::DROP_IFACES)
                .ok_or_else(|| DropsUnavailable("map DROP_IFACES missing (stale build?)".into()))?;
            let mut ifaces: BpfHashMap<_, u32, u8> =
                BpfHashMap::try_from(map).map_err(|e| kernel("opening DROP_IFACES", &e))?;
            for &i in &filter.ifindexes {
                ifaces
                    .insert(i, 1, 0)
                    .map_err(|e| kernel("adding a watched interface", &e))?;
            }
        }
        {
            // Written last: the program ignores everything until enabled.
            let map = object
                .ebpf
                .map_mut(names::DROP_CONFIG)
                .ok_or_else(|| DropsUnavailable("map DROP_CONFIG missing (stale build?)".into()))?;
            let mut arr: Array<_, DropConfig> =
                Array::try_from(map).map_err(|e| kernel("opening DROP_CONFIG", &e))?;
            arr.set(0, cfg, 0)
                .map_err(|e| kernel("writing the drop config", &e))?;
        }
        let prog: &mut RawTracePoint = program(&mut object.ebpf, names::KFREE_SKB)
            .map_err(|e| DropsUnavailable(e.to_string()))?;
        prog.load()
            .map_err(|e| kernel("loading the kfree_skb program (verifier)", &e))?;
        prog.attach(names::KFREE_SKB_TRACEPOINT)
            .map_err(|e| kernel("attaching to the kfree_skb raw tracepoint", &e))?;

        let ring = object
            .ebpf
            .take_map(names::DROP_EVENTS)
            .ok_or_else(|| DropsUnavailable("map DROP_EVENTS missing".into()))?;
        let ring = RingBuf::try_from(ring).map_err(|e| kernel("opening the drop ring", &e))?;
        let counters = object
            .ebpf
            .take_map(names::DROP_COUNTERS)
            .ok_or_else(|| DropsUnavailable("map DROP_COUNTERS missing".into()))?;
        let counters =
            PerCpuArray::try_from(counters).map_err(|e| kernel("opening drop counters", &e))?;
        Ok(Self {
            ring,
            counters,
            reasons: all.into_iter().map(|r| (r.code, r.name)).collect(),
            reported,
        })
    }
}

/// One dropped packet with the kernel's metadata.
#[derive(Clone, Debug)]
pub struct LiveDrop {
    pub dropped: DroppedPacket,
    pub header: DropHeader,
}

/// Addresses and ports: `header.endpoints` (`src()`, `dst()`).
impl LiveDrop {
    /// Matched the RTP port range rather than a SIP port.
    pub fn is_rtp(&self) -> bool {
        self.header.flags & DROP_FLAG_RTP != 0
    }
    pub fn is_truncated(&self) -> bool {
        self.header.flags & DROP_FLAG_TRUNCATED != 0
    }
}

/// Parses one drop ring entry: [`DropHeader`] then `cap_len` IP bytes.
pub fn decode_drop(
    bytes: &[u8],
    clock: KtimeClock,
    reasons: &HashMap<u32, String>,
) -> Option<LiveDrop> {
    let (header, data) = record::split::<DropHeader>(bytes)?;
    let name = reasons
        .get(&header.reason)
        .cloned()
        .unwrap_or_else(|| format!("reason_{}", header.reason));
    Some(LiveDrop {
        dropped: DroppedPacket {
            packet: Packet {
                ts: clock.to_timestamp(header.ktime_ns),
                ifindex: header.ifindex,
                direction: record::direction(header.endpoints.direction),
                link: LinkType::RawIp,
                data: data.to_vec(),
                orig_len: header.l3_len.max(ip_total_len(data)),
            },
            reason: DropReason {
                code: header.reason,
                name,
            },
        },
        header,
    })
}

/// The IP packet's length from its own header (IPv4 total length, IPv6
/// payload length + 40), 0 if unreadable. The kernel copies only the skb's
/// linear part; when the rest sits in page fragments this is how the
/// truncation shows (`Packet::is_truncated`).
fn ip_total_len(ip: &[u8]) -> u32 {
    match ip.first().map(|b| b >> 4) {
        Some(4) if ip.len() >= 4 => u32::from(u16::from_be_bytes([ip[2], ip[3]])),
        Some(6) if ip.len() >= 6 => u32::from(u16::from_be_bytes([ip[4], ip[5]])) + 40,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use sipscope_common::Direction::Ingress;

    use super::*;
    use crate::packet::Direction;

    fn header(cap_len: u32) -> DropHeader {
        DropHeader {
            ktime_ns: 5,
            ifindex: 3,
            reason: 12,
            skb_len: 400,
            l3_len: 420,
            cap_len,
            flags: DROP_FLAG_TRUNCATED,
            endpoints: record::endpoints("10.0.0.1:5060", "10.0.0.2:5062", Ingress),
        }
    }

    #[test]
    fn a_drop_event_becomes_a_raw_ip_packet_with_its_named_reason() {
        let reasons = HashMap::from([(12, "netfilter_drop".to_owned())]);
        let d = decode_drop(
            &record::encode(&header(3), &[0x45, 0, 1, 9]),
            KtimeClock::new(),
            &reasons,
        )
        .expect("valid event");
        assert_eq!(d.dropped.packet.data, [0x45, 0, 1]);
        assert_eq!(d.dropped.packet.link, LinkType::RawIp);
        assert_eq!(d.dropped.packet.direction, Direction::Ingress);
        assert!(d.dropped.packet.is_truncated() && d.is_truncated());
        assert!(d.dropped.reason.is_netfilter());
        assert_eq!(d.header.endpoints.src().to_string(), "10.0.0.1:5060");
        assert_eq!(d.header.endpoints.dst().to_string(), "10.0.0.2:5062");
    }

    #[test]
    fn a_packet_partly_in_page_fragments_shows_as_truncated() {
        // IPv4 header claiming 1200 bytes, only 20 of them linear.
        let mut ip = vec![0x45, 0, 0, 0];
        ip[2..4].copy_from_slice(&1200u16.to_be_bytes());
        ip.resize(20, 0);
        let mut h = header(20);
        h.l3_len = 20;
        h.flags = 0;
        let d = decode_drop(&record::encode(&h, &ip), KtimeClock::new(), &HashMap::new()).unwrap();
        assert_eq!(d.dropped.packet.orig_len, 1200);
        assert!(d.dropped.packet.is_truncated());
        // IPv6: payload length + the fixed header.
        assert_eq!(ip_total_len(&[0x60, 0, 0, 0, 0, 100]), 140);
        assert_eq!(ip_total_len(&[0x45]), 0, "too short to tell");
    }

    #[test]
    fn an_unknown_reason_number_keeps_its_number() {
        let mut h = header(0);
        h.reason = 999;
        let d = decode_drop(&record::encode(&h, &[]), KtimeClock::new(), &HashMap::new()).unwrap();
        assert_eq!(d.dropped.reason.name, "reason_999");
    }

    #[test]
    fn short_drop_events_are_rejected_not_panicked_on() {
        let none = HashMap::new();
        assert!(decode_drop(&[0u8; 8], KtimeClock::new(), &none).is_none());
        assert!(
            decode_drop(
                &record::encode(&header(50), &[1, 2]),
                KtimeClock::new(),
                &none
            )
            .is_none()
        );
    }
}
