//! IPv4 (RFC 791) and IPv6 (RFC 8200 §4.5) fragment reassembly.
//!
//! etherparse's `IpDefragBuf` merges the fragment ranges of one datagram;
//! this module owns the table around it, which etherparse's pool leaves
//! unbounded: at most `max_datagrams` datagrams and `max_bytes` buffered
//! bytes in flight, each timed out `timeout` after its first fragment on the
//! packet clock. Every eviction, timeout and error is counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use etherparse::defrag::IpDefragBuf;
use etherparse::{IpFragOffset, IpNumber};

use crate::time::Timestamp;

/// Identifies the fragments of one datagram (RFC 791 §3.2: source,
/// destination, protocol, identification).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct FragKey {
    pub src: IpAddr,
    pub dst: IpAddr,
    pub id: u32,
    pub proto: u8,
}

#[derive(Clone, Copy, Debug)]
pub struct FragConfig {
    pub max_datagrams: usize,
    pub max_bytes: usize,
    /// RFC 8200 §4.5 suggests 60 s; Linux uses 30 s (ipfrag_time).
    pub timeout: Duration,
}

impl Default for FragConfig {
    fn default() -> Self {
        FragConfig {
            max_datagrams: 1024,
            max_bytes: 16 << 20,
            timeout: Duration::from_secs(30),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FragStats {
    pub fragments: u64,
    pub reassembled: u64,
    /// Fragments rejected by the reassembler (overlap conflicts, bad lengths).
    pub errors: u64,
    /// Incomplete datagrams dropped to respect the bounds.
    pub evicted: u64,
    /// Incomplete datagrams dropped because their timeout passed.
    pub timed_out: u64,
}

struct Pending {
    buf: IpDefragBuf,
    first: Timestamp,
}

pub(crate) struct Defragmenter {
    config: FragConfig,
    table: HashMap<FragKey, Pending>,
    bytes: usize,
    last_sweep: Timestamp,
    pub stats: FragStats,
}

impl Defragmenter {
    pub(crate) fn new(config: FragConfig) -> Self {
        Defragmenter {
            config,
            table: HashMap::new(),
            bytes: 0,
            last_sweep: Timestamp(0),
            stats: FragStats::default(),
        }
    }

    pub(crate) fn in_flight(&self) -> usize {
        self.table.len()
    }

    /// Add one fragment; returns the whole transport payload when this
    /// fragment completed it.
    pub(crate) fn add(
        &mut self,
        ts: Timestamp,
        key: FragKey,
        offset: IpFragOffset,
        more_fragments: bool,
        payload: &[u8],
    ) -> Option<Vec<u8>> {
        self.stats.fragments += 1;
        self.maybe_expire(ts);
        if !self.table.contains_key(&key) {
            while !self.table.is_empty()
                && (self.table.len() >= self.config.max_datagrams
                    || self.bytes + payload.len() > self.config.max_bytes)
            {
                self.evict_oldest();
            }
            if payload.len() > self.config.max_bytes {
                self.stats.evicted += 1;
                return None;
            }
            let buf = IpDefragBuf::new(IpNumber(key.proto), Vec::new(), Vec::new());
            self.table.insert(key, Pending { buf, first: ts });
        }
        let entry = self.table.get_mut(&key)?;
        let before = entry.buf.data().len();
        if entry.buf.add(offset, more_fragments, payload).is_err() {
            self.stats.errors += 1;
            let p = self.table.remove(&key)?;
            self.bytes -= p.buf.data().len().min(self.bytes);
            return None;
        }
        self.bytes += entry.buf.data().len().saturating_sub(before);
        if entry.buf.is_complete() {
            let p = self.table.remove(&key)?;
            self.bytes -= p.buf.data().len().min(self.bytes);
            self.stats.reassembled += 1;
            let (data, _) = p.buf.take_bufs();
            return Some(data);
        }
        if self.bytes > self.config.max_bytes {
            self.evict_oldest();
        }
        None
    }

    fn evict_oldest(&mut self) {
        if let Some(key) = self
            .table
            .iter()
            .min_by_key(|(_, p)| p.first)
            .map(|(k, _)| *k)
        {
            if let Some(p) = self.table.remove(&key) {
                self.bytes -= p.buf.data().len().min(self.bytes);
            }
            self.stats.evicted += 1;
        }
    }

    /// [`Defragmenter::expire`] at most every 100 ms of packet time, so a
    /// full table is not scanned for every packet.
    pub(crate) fn maybe_expire(&mut self, now: Timestamp) {
        if !self.table.is_empty()
            && now.since(self.last_sweep) >= std::time::Duration::from_millis(100)
        {
            self.last_sweep = now;
            self.expire(now);
        }
    }

    /// Drop datagrams whose first fragment is older than the timeout.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        let timeout = self.config.timeout;
        let before = self.table.len();
        let mut freed = 0;
        self.table.retain(|_, p| {
            let keep = now.since(p.first) < timeout;
            if !keep {
                freed += p.buf.data().len();
            }
            keep
        });
        self.bytes -= freed.min(self.bytes);
        self.stats.timed_out += (before - self.table.len()) as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(id: u32) -> FragKey {
        FragKey {
            src: "10.0.0.1".parse().unwrap(),
            dst: "10.0.0.2".parse().unwrap(),
            id,
            proto: 17,
        }
    }

    fn off(bytes: u16) -> IpFragOffset {
        IpFragOffset::try_new(bytes / 8).unwrap()
    }

    #[test]
    fn reassembles_out_of_order() {
        let mut d = Defragmenter::new(FragConfig::default());
        let data: Vec<u8> = (0..40u8).collect();
        assert!(
            d.add(Timestamp(1), key(1), off(16), true, &data[16..32])
                .is_none()
        );
        assert!(
            d.add(Timestamp(2), key(1), off(32), false, &data[32..])
                .is_none()
        );
        assert_eq!(
            d.add(Timestamp(3), key(1), off(0), true, &data[..16]),
            Some(data)
        );
        assert_eq!(d.in_flight(), 0);
        assert_eq!(d.stats.reassembled, 1);
    }

    #[test]
    fn bounded_and_timed_out_on_the_packet_clock() {
        let mut d = Defragmenter::new(FragConfig {
            max_datagrams: 2,
            ..FragConfig::default()
        });
        for id in 0..5 {
            d.add(Timestamp(id as u64), key(id), off(0), true, &[0; 8]);
        }
        assert_eq!(d.in_flight(), 2);
        assert_eq!(d.stats.evicted, 3);
        d.expire(Timestamp(31_000_000_000));
        assert_eq!(d.in_flight(), 0);
        assert_eq!(d.stats.timed_out, 2);
        assert_eq!(d.bytes, 0);
    }
}
