//! The last word on whether a finding is shown: repeats of one code about
//! one source address are suppressed under a flood, and counted.
//!
//! The analyses deduplicate per binding or per call, which is right for
//! real traffic but not under a scan: a REGISTER flood with a new AOR in
//! every packet (sipvicious svwar) makes a new binding, and so a new
//! `nat.contact_port_mismatch`, per packet. Here, per (code, source IP),
//! the first [`FloodConfig::per_source`] findings of a window are shown
//! and the rest counted; and per code at most [`FloodConfig::per_code`]
//! in a window, whatever the sources (spoofed or many-host floods).
//! Findings that name no source are left alone (the analyses that raise
//! them keep their own once-per-window suppression).
//!
//! A source that registered successfully within [`REGISTERED_TRUST`] is a
//! working UA host, not a scanner: a PBX with fifty trunks, a few of them
//! failing, sends every failing AOR's finding from one address, and each
//! must be shown (once: the analyses deduplicate per binding). Its
//! findings skip the per-source limit; the per-code limit still holds.
//!
//! Memory is bounded: at most [`FloodConfig::max_sources`] keys; when
//! full, those whose window is over go first, then the least recently
//! started sixteenth (one O(n) pass pays for n/16 insertions), counted.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::Duration;

use crate::diagnosis::{Code, Diagnosis};
use crate::time::Timestamp;

/// Limits of the flood guard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FloodConfig {
    /// Length of a window (packet clock).
    pub window: Duration,
    /// Findings of one code about one source shown per window.
    pub per_source: u32,
    /// Findings of one code shown per window, all sources together.
    pub per_code: u32,
    /// (code, source) keys remembered.
    pub max_sources: usize,
}

impl Default for FloodConfig {
    fn default() -> Self {
        FloodConfig {
            window: Duration::from_secs(60),
            per_source: 3,
            per_code: 100,
            max_sources: 4096,
        }
    }
}

/// Counters of the flood guard.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct FloodStats {
    /// Findings shown (with a source; those without are not counted here).
    pub shown: u64,
    /// Repeats not shown: same code and source, or the code's budget for
    /// the window spent.
    pub suppressed: u64,
    /// (code, source) keys remembered now.
    pub sources: u64,
    /// Keys forgotten while their window was still open (table full): a
    /// repeat after that is shown again.
    pub evicted: u64,
}

/// A window of one key: when it started, findings shown in it.
#[derive(Clone, Copy)]
struct Window {
    start: Timestamp,
    shown: u32,
}

impl Window {
    /// Counts one more finding in the window open at `now` (a new one if
    /// the last is over); true when it may be shown within `limit`.
    fn admit(&mut self, now: Timestamp, window: Duration, limit: u32) -> bool {
        if now.since(self.start) >= window {
            *self = Window {
                start: now,
                shown: 0,
            };
        }
        if self.shown >= limit {
            return false;
        }
        self.shown += 1;
        true
    }
}

/// See the module documentation.
pub(crate) struct FloodGuard {
    config: FloodConfig,
    by_source: HashMap<(Code, IpAddr), Window>,
    by_code: HashMap<Code, Window>,
    /// Sources with a successful registration → when last seen.
    registered: HashMap<IpAddr, Timestamp>,
    stats: FloodStats,
}

/// How long a successful registration vouches for its source.
pub(crate) const REGISTERED_TRUST: Duration = Duration::from_secs(3600);

impl FloodGuard {
    pub(crate) fn new(config: FloodConfig) -> Self {
        FloodGuard {
            config: FloodConfig {
                max_sources: config.max_sources.max(16),
                ..config
            },
            by_source: HashMap::new(),
            by_code: HashMap::new(),
            registered: HashMap::new(),
            stats: FloodStats::default(),
        }
    }

    pub(crate) fn stats(&self) -> FloodStats {
        FloodStats {
            sources: self.by_source.len() as u64,
            ..self.stats.clone()
        }
    }

    /// `source` registered successfully at `at`: see the module
    /// documentation. Bounded like the windows (`max_sources`).
    pub(crate) fn note_registered(&mut self, source: IpAddr, at: Timestamp) {
        if !self.registered.contains_key(&source)
            && self.registered.len() >= self.config.max_sources
        {
            self.registered
                .retain(|_, t| at.since(*t) < REGISTERED_TRUST);
            if self.registered.len() >= self.config.max_sources {
                self.stats.evicted += 1;
                return;
            }
        }
        let t = self.registered.entry(source).or_insert(at);
        *t = (*t).max(at);
    }

    fn trusted(&self, source: IpAddr, now: Timestamp) -> bool {
        self.registered
            .get(&source)
            .is_some_and(|t| now.since(*t) < REGISTERED_TRUST)
    }

    /// Whether `d` is shown; a suppressed one is counted.
    pub(crate) fn admit(&mut self, d: &Diagnosis) -> bool {
        let Some(source) = d.source else {
            return true;
        };
        let window = self.config.window;
        let fresh = Window {
            start: d.at,
            shown: 0,
        };
        if self.trusted(source, d.at) {
            let ok = self.by_code.entry(d.code).or_insert(fresh).admit(
                d.at,
                window,
                self.config.per_code,
            );
            return self.tally(ok);
        }
        let key = (d.code, source);
        if !self.by_source.contains_key(&key) && self.by_source.len() >= self.config.max_sources {
            self.make_room(d.at);
        }
        let ok =
            self.by_source
                .entry(key)
                .or_insert(fresh)
                .admit(d.at, window, self.config.per_source)
                && self.by_code.entry(d.code).or_insert(fresh).admit(
                    d.at,
                    window,
                    self.config.per_code,
                );
        self.tally(ok)
    }

    /// Counts a finding shown (`ok`) or suppressed; returns `ok`.
    fn tally(&mut self, ok: bool) -> bool {
        if ok {
            self.stats.shown += 1;
        } else {
            self.stats.suppressed += 1;
        }
        ok
    }

    /// Forget keys whose window is over; if that frees nothing, the
    /// sixteenth started longest ago (counted as evicted).
    fn make_room(&mut self, now: Timestamp) {
        let window = self.config.window;
        self.by_source.retain(|_, w| now.since(w.start) < window);
        if self.by_source.len() < self.config.max_sources {
            return;
        }
        let n = (self.by_source.len() / 16).max(1);
        let mut by_age: Vec<(Timestamp, (Code, IpAddr))> =
            self.by_source.iter().map(|(k, w)| (w.start, *k)).collect();
        by_age.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        for (_, k) in by_age.into_iter().take(n) {
            self.by_source.remove(&k);
            self.stats.evicted += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    fn finding(code: Code, source: &str, at_s: u64) -> Diagnosis {
        Diagnosis::new(code, Timestamp(at_s * S), "x").with_source(source.parse().unwrap())
    }

    fn config() -> FloodConfig {
        FloodConfig {
            window: Duration::from_secs(60),
            per_source: 3,
            per_code: 10,
            max_sources: 64,
        }
    }

    #[test]
    fn a_registered_source_shows_each_failing_binding_a_scanner_does_not() {
        // A PBX with many trunks: once one registered, its failing trunks
        // are each shown.
        let mut g = FloodGuard::new(config());
        g.note_registered("198.51.100.9".parse().unwrap(), Timestamp(0));
        let shown = (0..8)
            .filter(|i| g.admit(&finding(Code::AuthRejected, "198.51.100.9", 1 + i)))
            .count();
        assert_eq!(shown, 8);
        // A source that never registered is held to three.
        let shown = (0..8)
            .filter(|i| g.admit(&finding(Code::RegRejected, "198.51.100.7", 1 + i)))
            .count();
        assert_eq!(shown, 3);
    }

    #[test]
    fn a_source_repeating_one_code_is_shown_three_times_a_window() {
        let mut g = FloodGuard::new(config());
        let shown: Vec<bool> = (0..10)
            .map(|i| g.admit(&finding(Code::NatContactPortMismatch, "198.51.100.7", i)))
            .collect();
        assert_eq!(shown.iter().filter(|s| **s).count(), 3);
        assert!(shown[..3].iter().all(|s| *s));
        // Another code from the same source, and the same code from
        // another source, are not held back.
        assert!(g.admit(&finding(Code::NatPrivateContact, "198.51.100.7", 10)));
        assert!(g.admit(&finding(Code::NatContactPortMismatch, "198.51.100.8", 10)));
        // A new window.
        assert!(g.admit(&finding(Code::NatContactPortMismatch, "198.51.100.7", 60)));
        assert_eq!(
            g.stats(),
            FloodStats {
                shown: 6,
                suppressed: 7,
                sources: 3,
                evicted: 0
            }
        );
    }

    #[test]
    fn many_sources_share_the_code_budget() {
        let mut g = FloodGuard::new(config());
        let shown = (0..50u8)
            .filter(|i| g.admit(&finding(Code::AuthRejected, &format!("203.0.113.{i}"), 1)))
            .count();
        assert_eq!(shown, 10);
        assert_eq!(g.stats().suppressed, 40);
    }

    #[test]
    fn findings_without_a_source_always_pass() {
        let mut g = FloodGuard::new(config());
        for i in 0..100 {
            assert!(g.admit(&Diagnosis::new(Code::NetNoResponse, Timestamp(i), "x")));
        }
        assert_eq!(g.stats(), FloodStats::default());
    }

    #[test]
    fn the_table_is_bounded_and_forgets_expired_keys_before_evicting() {
        let mut g = FloodGuard::new(FloodConfig {
            per_code: u32::MAX,
            ..config()
        });
        // 64 sources fill the table at t = 0..; at t = 100 s their windows
        // are over: room is made without eviction.
        for i in 0..64u32 {
            let ip = std::net::Ipv4Addr::from(0x0a00_0000 + i).to_string();
            assert!(g.admit(&finding(Code::AuthRejected, &ip, 0)));
        }
        assert!(g.admit(&finding(Code::AuthRejected, "192.0.2.1", 100)));
        assert_eq!((g.stats().sources, g.stats().evicted), (1, 0));
        // 10,000 sources within one window: bounded, evictions counted.
        for i in 0..10_000u32 {
            let ip = std::net::Ipv4Addr::from(0x0b00_0000 + i).to_string();
            g.admit(&finding(Code::AuthRejected, &ip, 101));
        }
        let s = g.stats();
        assert!(s.sources <= 64, "{s:?}");
        assert!(s.evicted >= 10_000 - 64, "{s:?}");
    }
}
