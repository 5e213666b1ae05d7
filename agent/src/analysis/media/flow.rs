//! Userspace table of RTP flows: the same per-flow statistics the kernel's
//! LRU map keeps, fed from a pcap (or from packets the pipeline hands over).
//! Bounded: at capacity the least recently active flow is evicted and
//! counted; nothing grows with traffic.

use std::collections::hash_map::Entry;
use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use super::codec::static_clock_rate;
use super::rtp::{RtpError, parse_rtp};
use super::rtp_stats::{RtpStreamStats, SeqVerdict};
use crate::media_flow::FlowKey;
use crate::time::Timestamp;

/// RTP clock per payload type: RFC 3551 static types by default, dynamic
/// types as negotiated (a=rtpmap). A flat 128-entry array so the kernel can
/// hold the same thing in an array map.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClockTable([u32; 128]);

impl Default for ClockTable {
    fn default() -> Self {
        let mut rates = [0u32; 128];
        for (pt, rate) in rates.iter_mut().enumerate() {
            *rate = static_clock_rate(pt as u8).unwrap_or(0);
        }
        Self(rates)
    }
}

impl ClockTable {
    /// Clock of `payload_type` in Hz; 0 when unknown.
    pub fn get(&self, payload_type: u8) -> u32 {
        self.0[usize::from(payload_type & 0x7f)]
    }

    /// Sets the clock of a (dynamic) payload type; 0 marks it as having no
    /// usable clock (telephone-event, whose timestamp stands still).
    pub fn set(&mut self, payload_type: u8, clock_rate: u32) {
        self.0[usize::from(payload_type & 0x7f)] = clock_rate;
    }
}

/// Counters of a [`FlowTable`]: every packet not accounted to a flow, and
/// every flow dropped, is counted here.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FlowTableCounters {
    pub packets: u64,
    pub not_rtp: u64,
    pub rtcp: u64,
    pub flows_created: u64,
    /// Flows dropped because the table was full (least recently active).
    pub flows_evicted: u64,
    /// Flows removed by [`FlowTable::expire_idle`].
    pub flows_expired: u64,
}

#[derive(Clone, Debug)]
struct FlowEntry {
    stats: RtpStreamStats,
    /// The last-seen time under which the flow is filed in the LRU index.
    indexed_at: Timestamp,
}

/// The LRU index is refreshed at most this often per flow, so a busy flow
/// costs one BTreeSet update per second rather than one per packet. The
/// eviction order is therefore exact to within this granularity ("LRU-ish").
const INDEX_GRANULARITY: Duration = Duration::from_secs(1);

/// Bounded table of RTP flows keyed by 5-tuple.
#[derive(Debug)]
pub struct FlowTable {
    capacity: usize,
    clocks: ClockTable,
    flows: HashMap<FlowKey, FlowEntry>,
    lru: BTreeSet<(Timestamp, FlowKey)>,
    counters: FlowTableCounters,
}

impl FlowTable {
    /// A table holding at most `capacity` flows (at least 1).
    pub fn new(capacity: usize) -> Self {
        Self::with_clocks(capacity, ClockTable::default())
    }

    pub fn with_clocks(capacity: usize, clocks: ClockTable) -> Self {
        Self {
            capacity: capacity.max(1),
            clocks,
            flows: HashMap::new(),
            lru: BTreeSet::new(),
            counters: FlowTableCounters::default(),
        }
    }

    pub fn clocks_mut(&mut self) -> &mut ClockTable {
        &mut self.clocks
    }

    /// Accounts one UDP datagram. Returns the sequence verdict, or why the
    /// payload is not RTP (counted, not stored).
    pub fn observe(
        &mut self,
        ts: Timestamp,
        src: SocketAddr,
        dst: SocketAddr,
        payload: &[u8],
    ) -> Result<SeqVerdict, RtpError> {
        self.counters.packets += 1;
        let header = match parse_rtp(payload) {
            Ok(h) => h,
            Err(e) => {
                if matches!(e, RtpError::Rtcp(_)) {
                    self.counters.rtcp += 1;
                } else {
                    self.counters.not_rtp += 1;
                }
                return Err(e);
            }
        };
        let key = FlowKey::new(src, dst);
        if self.flows.len() >= self.capacity && !self.flows.contains_key(&key) {
            self.evict_one();
        }
        // One hash lookup per packet on the common path (known flow).
        let entry = match self.flows.entry(key) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(v) => {
                self.counters.flows_created += 1;
                self.lru.insert((ts, key));
                v.insert(FlowEntry {
                    stats: RtpStreamStats::new(),
                    indexed_at: ts,
                })
            }
        };
        let clock = self.clocks.get(header.payload_type);
        let verdict = entry.stats.update(ts, &header, payload.len(), clock);
        let last = entry.stats.last_seen();
        if last.since(entry.indexed_at) >= INDEX_GRANULARITY {
            self.lru.remove(&(entry.indexed_at, key));
            entry.indexed_at = last;
            self.lru.insert((last, key));
        }
        Ok(verdict)
    }

    fn evict_one(&mut self) {
        if let Some((_, key)) = self.lru.pop_first() {
            self.flows.remove(&key);
            self.counters.flows_evicted += 1;
        }
    }

    /// Removes and returns flows silent for at least `idle` on the packet
    /// clock (the poller's "call is over" path; counted as expired).
    pub fn expire_idle(
        &mut self,
        now: Timestamp,
        idle: Duration,
    ) -> Vec<(FlowKey, RtpStreamStats)> {
        let mut out = Vec::new();
        while let Some(&(indexed, key)) = self.lru.first() {
            if now.since(indexed) < idle {
                break;
            }
            self.lru.pop_first();
            let entry = self.flows.remove(&key).expect("index and map agree");
            if now.since(entry.stats.last_seen()) >= idle {
                out.push((key, entry.stats));
                self.counters.flows_expired += 1;
            } else {
                // Active within the index granularity: file it again.
                let last = entry.stats.last_seen();
                self.lru.insert((last, key));
                self.flows.insert(
                    key,
                    FlowEntry {
                        indexed_at: last,
                        ..entry
                    },
                );
            }
        }
        out
    }

    pub fn get(&self, key: &FlowKey) -> Option<&RtpStreamStats> {
        self.flows.get(key).map(|e| &e.stats)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&FlowKey, &RtpStreamStats)> {
        self.flows.iter().map(|(k, e)| (k, &e.stats))
    }

    pub fn len(&self) -> usize {
        self.flows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.flows.is_empty()
    }

    pub fn counters(&self) -> &FlowTableCounters {
        &self.counters
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rtp(seq: u16, ts: u32, ssrc: u32) -> Vec<u8> {
        let mut p = vec![0x80, 8];
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&ssrc.to_be_bytes());
        p.extend_from_slice(&[0xd5; 160]);
        p
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const S: u64 = 1_000_000_000;

    #[test]
    fn flows_are_keyed_by_direction_and_count_packets() {
        let mut t = FlowTable::new(16);
        let (a, b) = (addr("10.0.0.1:10000"), addr("10.0.0.2:20000"));
        for i in 0..5u16 {
            t.observe(
                Timestamp(S + u64::from(i) * 20_000_000),
                a,
                b,
                &rtp(i, u32::from(i) * 160, 1),
            )
            .unwrap();
        }
        t.observe(Timestamp(S), b, a, &rtp(7, 0, 2)).unwrap();
        assert_eq!(t.len(), 2);
        let fwd = t.get(&FlowKey::new(a, b)).unwrap();
        assert_eq!((fwd.packets(), fwd.ssrc(), fwd.clock_rate()), (5, 1, 8000));
        assert_eq!(t.get(&FlowKey::new(a, b).reversed()).unwrap().ssrc(), 2);
    }

    #[test]
    fn non_rtp_and_rtcp_are_counted_not_stored() {
        let mut t = FlowTable::new(4);
        let (a, b) = (addr("10.0.0.1:10001"), addr("10.0.0.2:20001"));
        assert!(t.observe(Timestamp(S), a, b, b"hello").is_err());
        let rr = [0x81, 201, 0, 7, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0];
        assert!(matches!(
            t.observe(Timestamp(S), a, b, &rr),
            Err(RtpError::Rtcp(201))
        ));
        assert!(t.is_empty());
        let c = t.counters();
        assert_eq!((c.packets, c.not_rtp, c.rtcp), (2, 1, 1));
    }

    #[test]
    fn full_table_evicts_the_least_recently_active_flow() {
        let mut t = FlowTable::new(2);
        let dst = addr("10.0.0.9:30000");
        let (f1, f2, f3) = (
            addr("10.0.0.1:1000"),
            addr("10.0.0.2:1000"),
            addr("10.0.0.3:1000"),
        );
        t.observe(Timestamp(S), f1, dst, &rtp(1, 0, 1)).unwrap();
        t.observe(Timestamp(2 * S), f2, dst, &rtp(1, 0, 2)).unwrap();
        // f1 becomes active again later than f2.
        t.observe(Timestamp(4 * S), f1, dst, &rtp(2, 160, 1))
            .unwrap();
        t.observe(Timestamp(5 * S), f3, dst, &rtp(1, 0, 3)).unwrap();
        assert_eq!(t.len(), 2);
        assert!(
            t.get(&FlowKey::new(f2, dst)).is_none(),
            "f2 was idle longest"
        );
        assert!(t.get(&FlowKey::new(f1, dst)).is_some());
        assert_eq!(t.counters().flows_evicted, 1);
    }

    #[test]
    fn flood_of_new_flows_stays_bounded_and_counted() {
        let mut t = FlowTable::new(100);
        let dst = addr("10.0.0.9:30000");
        for i in 0..10_000u32 {
            let src = SocketAddr::new(std::net::Ipv4Addr::from(0x0a00_0000 + i).into(), 4000);
            t.observe(Timestamp(S + u64::from(i)), src, dst, &rtp(1, 0, i))
                .unwrap();
        }
        assert_eq!(t.len(), 100);
        assert_eq!(t.counters().flows_created, 10_000);
        assert_eq!(t.counters().flows_evicted, 9_900);
    }

    #[test]
    fn idle_flows_expire_on_the_packet_clock() {
        let mut t = FlowTable::new(8);
        let dst = addr("10.0.0.9:30000");
        let (f1, f2) = (addr("10.0.0.1:1000"), addr("10.0.0.2:1000"));
        t.observe(Timestamp(S), f1, dst, &rtp(1, 0, 1)).unwrap();
        t.observe(Timestamp(S), f2, dst, &rtp(1, 0, 2)).unwrap();
        // f2 keeps talking, within the index granularity of its first packet.
        t.observe(Timestamp(S + S / 2), f2, dst, &rtp(2, 160, 2))
            .unwrap();
        let gone = t.expire_idle(
            Timestamp(S + 10 * S),
            Duration::from_secs(9) + Duration::from_millis(700),
        );
        assert_eq!(gone.len(), 1);
        assert_eq!(gone[0].0.src, f1);
        assert_eq!(t.len(), 1, "f2 was active 9.5 s ago: kept");
        assert_eq!(t.counters().flows_expired, 1);
    }

    #[test]
    fn dynamic_payload_clock_comes_from_the_clock_table() {
        let mut clocks = ClockTable::default();
        assert_eq!(clocks.get(96), 0);
        clocks.set(96, 48_000);
        let mut t = FlowTable::with_clocks(4, clocks);
        let mut p = rtp(1, 0, 5);
        p[1] = 96;
        let (a, b) = (addr("[2001:db8::1]:4000"), addr("[2001:db8::2]:5000"));
        t.observe(Timestamp(S), a, b, &p).unwrap();
        let mut p2 = rtp(2, 960, 5);
        p2[1] = 96;
        t.observe(Timestamp(S + 20_000_000), a, b, &p2).unwrap();
        assert_eq!(t.get(&FlowKey::new(a, b)).unwrap().clock_rate(), 48_000);
    }
}
