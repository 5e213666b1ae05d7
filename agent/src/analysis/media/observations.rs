//! What the pipeline knows of the RTP on the wire, whoever measured it:
//! a pcap's packets go through a userspace [`FlowTable`]; live capture hands
//! in the kernel flow map's snapshots (which also count, per flow, the
//! packets this host's kernel then dropped: seen, but never delivered).
//!
//! Bounded: flows idle for [`ObservationConfig::retention`] are forgotten,
//! and at capacity the least recently active flow goes; both are counted.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::ops::RangeInclusive;
use std::time::Duration;

use serde::Serialize;

use super::flow::FlowTable;
use super::rtcp::{ReceptionReport, reception_reports};
use crate::media_flow::FlowKey;
use crate::media_flow::FlowSnapshot;
use crate::time::Timestamp;

/// Where RTP statistics come from.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RtpSource {
    /// RTP packets in the capture itself (`analyze`).
    #[default]
    Packets,
    /// Snapshots of the kernel's flow map (`run`).
    Kernel,
    /// Nothing measures RTP: no media finding can be judged.
    None,
}

#[derive(Clone, Debug)]
pub struct ObservationConfig {
    pub source: RtpSource,
    /// Flows kept at once.
    pub max_flows: usize,
    /// A flow silent this long (packet clock) is forgotten.
    pub retention: Duration,
    /// Ports whose RTP is measured (the kernel's `--rtp-ports`): a stream
    /// negotiated outside cannot be judged.
    pub ports: RangeInclusive<u16>,
}

impl Default for ObservationConfig {
    fn default() -> Self {
        Self {
            source: RtpSource::Packets,
            max_flows: 65_536,
            retention: Duration::from_secs(300),
            ports: 1024..=u16::MAX,
        }
    }
}

/// Counters: nothing is forgotten without a count.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct ObservationStats {
    /// UDP datagrams offered as RTP candidates (pcap source).
    pub rtp_candidates: u64,
    pub rtp_packets: u64,
    pub rtcp_packets: u64,
    pub not_rtp: u64,
    /// Kernel snapshots taken in.
    pub kernel_snapshots: u64,
    pub flows_evicted: u64,
    pub flows_expired: u64,
    /// RTCP reception report blocks read (the far end's view).
    pub rtcp_reports: u64,
    /// Report blocks not kept because the report table was full.
    pub rtcp_reports_untracked: u64,
}

pub struct RtpObservations {
    config: ObservationConfig,
    table: FlowTable,
    kernel: HashMap<FlowKey, FlowSnapshot>,
    /// The latest reception report about each source SSRC by each
    /// reporting host, and when it was seen. The host matters: a B2BUA
    /// relays one SSRC onto two legs, each with its own receiver.
    reports: HashMap<(u32, IpAddr), (ReceptionReport, Timestamp)>,
    /// Up to when the statistics are complete (packet clock).
    observed_until: Timestamp,
    last_sweep: Timestamp,
    stats: ObservationStats,
}

const SWEEP_EVERY: Duration = Duration::from_secs(10);

impl RtpObservations {
    pub fn new(config: ObservationConfig) -> Self {
        Self {
            table: FlowTable::new(config.max_flows),
            config,
            kernel: HashMap::new(),
            reports: HashMap::new(),
            observed_until: Timestamp(0),
            last_sweep: Timestamp(0),
            stats: ObservationStats::default(),
        }
    }

    pub fn source(&self) -> RtpSource {
        self.config.source
    }

    /// Whether anything measured RTP at all: a SIP-only capture (`tcpdump
    /// port 5060`) cannot tell a silent call from an unseen one.
    pub fn measures_rtp(&self) -> bool {
        match self.config.source {
            RtpSource::Packets => self.stats.rtp_packets > 0,
            RtpSource::Kernel => self.stats.kernel_snapshots > 0 || self.observed_until.0 > 0,
            RtpSource::None => false,
        }
    }

    /// Whether RTP to or from `port` is measured at all.
    pub fn measures_port(&self, port: u16) -> bool {
        self.config.ports.contains(&port)
    }

    /// Statistics are complete up to this time.
    pub fn observed_until(&self) -> Timestamp {
        self.observed_until
    }

    /// One UDP datagram that may be RTP or RTCP: from a capture, or an
    /// RTCP report the kernel forwarded.
    pub fn observe_packet(
        &mut self,
        ts: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) {
        // RFC 5761 section 4: 192..=223 in the second octet is RTCP.
        if payload.get(1).is_some_and(|pt| (192..=223).contains(pt)) {
            self.observe_rtcp(ts, src.ip(), payload);
        }
        if self.config.source != RtpSource::Packets {
            return;
        }
        self.stats.rtp_candidates += 1;
        match self.table.observe(ts, src, dst, payload) {
            Ok(_) => self.stats.rtp_packets += 1,
            Err(super::RtpError::Rtcp(_)) => self.stats.rtcp_packets += 1,
            Err(_) => self.stats.not_rtp += 1,
        }
    }

    fn observe_rtcp(&mut self, ts: Timestamp, reporter: IpAddr, payload: &[u8]) {
        for r in reception_reports(payload) {
            self.stats.rtcp_reports += 1;
            let key = (r.ssrc, reporter);
            if self.reports.len() >= self.config.max_flows && !self.reports.contains_key(&key) {
                self.stats.rtcp_reports_untracked += 1;
                continue;
            }
            self.reports.insert(key, (r, ts));
        }
    }

    /// The latest reception report about source `ssrc` sent from
    /// `receiver` (the host the direction's RTP goes to), and when it was
    /// seen.
    pub fn report_about(
        &self,
        ssrc: u32,
        receiver: IpAddr,
    ) -> Option<(ReceptionReport, Timestamp)> {
        self.reports.get(&(ssrc, receiver)).copied()
    }

    /// The kernel's flows as of `now` (live capture's poll). Snapshots of
    /// the same flow on two interfaces keep the fuller one.
    pub fn update_flows(&mut self, now: Timestamp, flows: &[FlowSnapshot]) {
        if self.config.source != RtpSource::Kernel {
            return;
        }
        for f in flows {
            self.stats.kernel_snapshots += 1;
            let fuller = self
                .kernel
                .get(&f.key)
                .is_none_or(|old| old.first_seen != f.first_seen || f.packets() >= old.packets());
            if !fuller {
                continue;
            }
            if self.kernel.len() >= self.config.max_flows && !self.kernel.contains_key(&f.key) {
                self.evict_oldest();
            }
            self.kernel.insert(f.key, *f);
        }
        self.observed_until = self.observed_until.max(now);
    }

    fn evict_oldest(&mut self) {
        let oldest = self
            .kernel
            .values()
            .min_by_key(|f| f.last_seen)
            .map(|f| f.key);
        if let Some(k) = oldest {
            self.kernel.remove(&k);
            self.stats.flows_evicted += 1;
        }
    }

    /// The packet clock moved to `now`: pcap statistics are complete up to
    /// it; forget flows idle beyond the retention.
    pub fn advance(&mut self, now: Timestamp) {
        if self.config.source != RtpSource::Kernel {
            self.observed_until = self.observed_until.max(now);
        }
        if now.since(self.last_sweep) < SWEEP_EVERY {
            return;
        }
        self.last_sweep = now;
        let retention = self.config.retention;
        let expired = self.table.expire_idle(now, retention).len();
        let before = self.kernel.len();
        self.kernel
            .retain(|_, f| now.since(f.last_seen) < retention);
        self.stats.flows_expired += (expired + before - self.kernel.len()) as u64;
        // Reports about sources silent this long describe no live call.
        self.reports.retain(|_, (_, at)| now.since(*at) < retention);
    }

    /// Flows touching any of `ports` (as source or destination port): the
    /// candidates of a stream negotiated on those ports.
    pub fn flows_on_ports(&self, ports: &[u16]) -> Vec<FlowSnapshot> {
        let hit = |k: &FlowKey| ports.contains(&k.src.port()) || ports.contains(&k.dst.port());
        match self.config.source {
            RtpSource::Packets => self
                .table
                .iter()
                .filter(|(k, _)| hit(k))
                .map(|(k, s)| s.snapshot(*k))
                .collect(),
            RtpSource::Kernel => self
                .kernel
                .values()
                .filter(|f| hit(&f.key))
                .copied()
                .collect(),
            RtpSource::None => Vec::new(),
        }
    }

    pub fn stats(&self) -> ObservationStats {
        let mut s = self.stats.clone();
        let c = self.table.counters();
        s.flows_evicted += c.flows_evicted;
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16) -> Vec<u8> {
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p[4..8].copy_from_slice(&(u32::from(seq) * 160).to_be_bytes());
        p.extend_from_slice(&[0xff; 160]);
        p
    }

    const MS: u64 = 1_000_000;

    #[test]
    fn packets_are_counted_per_flow_and_found_by_port() {
        let mut o = RtpObservations::new(ObservationConfig::default());
        let (a, b) = (
            "10.0.0.1:10000".parse().unwrap(),
            "10.0.0.2:20000".parse().unwrap(),
        );
        for i in 0..10u16 {
            o.observe_packet(Timestamp(u64::from(i) * 20 * MS), a, b, &rtp(i));
        }
        o.observe_packet(
            Timestamp(0),
            a,
            b,
            &[0x80, 200, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0],
        );
        assert!(o.measures_rtp());
        let flows = o.flows_on_ports(&[20000]);
        assert_eq!(flows.len(), 1);
        assert_eq!(flows[0].packets(), 10);
        assert!(o.flows_on_ports(&[30000]).is_empty());
        assert_eq!(o.stats().rtcp_packets, 1);
    }

    #[test]
    fn a_sip_only_capture_measures_no_rtp() {
        let o = RtpObservations::new(ObservationConfig::default());
        assert!(!o.measures_rtp());
    }

    #[test]
    fn kernel_snapshots_are_bounded_and_evictions_counted() {
        let mut o = RtpObservations::new(ObservationConfig {
            source: RtpSource::Kernel,
            max_flows: 2,
            ..ObservationConfig::default()
        });
        let snap = |port: u16, t: u64| FlowSnapshot {
            key: FlowKey::new(
                "10.0.0.1:10000".parse().unwrap(),
                SocketAddr::new("10.0.0.2".parse().unwrap(), port),
            ),
            state: Default::default(),
            first_seen: Timestamp(t),
            last_seen: Timestamp(t),
        };
        o.update_flows(
            Timestamp(5),
            &[snap(20000, 1), snap(20002, 2), snap(20004, 3)],
        );
        assert_eq!(o.stats().flows_evicted, 1);
        assert!(o.flows_on_ports(&[20000]).is_empty(), "oldest evicted");
        assert_eq!(o.observed_until(), Timestamp(5));
    }
}
