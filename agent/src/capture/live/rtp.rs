//! RTP statistics the kernel keeps per flow (RFC 3550 A.1, A.3, A.8): the
//! configuration going in (port range, clocks) and owned snapshots coming
//! out. RTP packets are never copied to userspace; this module polls the
//! kernel's LRU map, converts each entry into an [`RtpFlowStats`], and
//! deletes flows idle for longer than the configured time (counted).
//!
//! Flows the kernel's LRU map evicts by itself (more flows than capacity)
//! are not reported one by one; their number is inferred as
//! `created - live - expired` ([`RtpCounters::flows_evicted`]).

use std::{net::SocketAddr, ops::RangeInclusive, time::Duration};

use aya::maps::{Array, HashMap, MapData, PerCpuArray};
use sipscope_common::{
    DEFAULT_RTP_CLOCK_RATE, DEFAULT_RTP_FLOWS, DEFAULT_RTP_PORT_MAX, DEFAULT_RTP_PORT_MIN,
    FIRST_DYNAMIC_PT, MAX_RTP_PORT_CLOCKS, RTP_FLOW_INITIALISED, RtpConfig, RtpCounter, RtpFlowKey,
    RtpPortClockKey, names,
};

#[path = "rtp_flow.rs"]
mod flow;
#[path = "rtp_flow_table.rs"]
mod flow_table;
pub use flow::{RtpCounters, RtpFlowStats, RtpPoll, flow_key};
use flow_table::FlowTable;

use super::{KtimeClock, LiveCapture, LiveError, LoadedObject, RtpKernelCounters, load::missing};
use crate::{analysis::media::ClockTable, packet::Direction};

/// RTP settings fixed when the object is loaded (the range can change at
/// run time through [`RtpMonitor::set_ports`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RtpSettings {
    /// UDP ports whose datagrams are checked for RTP (either end); an empty
    /// range ([`RTP_OFF`]) turns RTP statistics off.
    pub ports: RangeInclusive<u16>,
    /// Capacity of the kernel's flow map (LRU: the least recently updated
    /// flow makes room for a new one).
    pub max_flows: u32,
    /// Clock for payload types without a known one (Hz).
    pub default_clock_rate: u32,
}

impl Default for RtpSettings {
    fn default() -> Self {
        Self {
            ports: DEFAULT_RTP_PORT_MIN..=DEFAULT_RTP_PORT_MAX,
            max_flows: DEFAULT_RTP_FLOWS,
            default_clock_rate: DEFAULT_RTP_CLOCK_RATE,
        }
    }
}

impl RtpSettings {
    fn kernel_config(&self, port_clocks: u32) -> RtpConfig {
        let (port_min, port_max) = if self.ports.is_empty() {
            (1, 0)
        } else {
            (*self.ports.start(), *self.ports.end())
        };
        RtpConfig {
            port_min,
            port_max,
            default_clock_rate: self.default_clock_rate,
            port_clocks,
            _pad: 0,
        }
    }
}

/// The empty port range: RTP statistics off.
#[allow(clippy::reversed_empty_ranges)] // empty is the point
pub const RTP_OFF: RangeInclusive<u16> = 1..=0;

/// Parses `LO-HI` (e.g. `10000-20000`) or `off` ([`RTP_OFF`]).
pub fn parse_port_range(s: &str) -> Result<RangeInclusive<u16>, String> {
    if s == "off" {
        return Ok(RTP_OFF);
    }
    let (lo, hi) = s
        .split_once('-')
        .ok_or_else(|| format!("`{s}` is not a port range: write LO-HI, e.g. 10000-20000"))?;
    let parse = |p: &str| {
        p.trim()
            .parse::<u16>()
            .ok()
            .filter(|&v| v != 0)
            .ok_or_else(|| format!("`{p}` is not a port number (1-65535)"))
    };
    let (lo, hi) = (parse(lo)?, parse(hi)?);
    if lo > hi {
        return Err(format!("port range {lo}-{hi} is reversed: write {hi}-{lo}"));
    }
    Ok(lo..=hi)
}

impl LoadedObject {
    /// Writes the RTP range, default clock and the RFC 3551 static clocks
    /// into the kernel's maps (before the programs are attached).
    pub fn configure_rtp(&mut self, settings: &RtpSettings) -> Result<(), LiveError> {
        let map = self
            .ebpf
            .map_mut(names::RTP_PT_CLOCKS)
            .ok_or_else(|| missing(names::RTP_PT_CLOCKS))?;
        let mut clocks: Array<_, u32> =
            Array::try_from(map).map_err(|e| LiveError::kernel("opening the RTP clock map", e))?;
        let table = ClockTable::default();
        for pt in 0..128u8 {
            clocks
                .set(u32::from(pt), table.get(pt), 0)
                .map_err(|e| LiveError::kernel(format!("setting the clock of RTP PT {pt}"), e))?;
        }
        let map = self
            .ebpf
            .map_mut(names::RTP_CONFIG)
            .ok_or_else(|| missing(names::RTP_CONFIG))?;
        let mut config: Array<_, RtpConfig> =
            Array::try_from(map).map_err(|e| LiveError::kernel("opening the RTP config map", e))?;
        config
            .set(0, settings.kernel_config(0), 0)
            .map_err(|e| LiveError::kernel("setting the RTP port range", e))
    }
}

impl LiveCapture {
    /// Takes the RTP maps out of the running capture into a poller. Flows
    /// idle (no packet) for longer than `idle_timeout` are deleted on poll.
    /// Callable once (later calls fail: the maps are gone).
    pub fn rtp_monitor(&mut self, idle_timeout: Duration) -> Result<RtpMonitor, LiveError> {
        RtpMonitor::take(&mut self.object, self.clock, idle_timeout)
    }
}

/// Reads and maintains the kernel's RTP flow map.
pub struct RtpMonitor {
    flows: FlowTable,
    config: Array<MapData, RtpConfig>,
    port_clocks: HashMap<MapData, RtpPortClockKey, u32>,
    counters: PerCpuArray<MapData, u64>,
    current: RtpConfig,
    clock: KtimeClock,
    idle_timeout: Duration,
    expired: u64,
    evicted: u64,
}

fn monotonic_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out-pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    (ts.tv_sec as u64) * 1_000_000_000 + ts.tv_nsec as u64
}

impl RtpMonitor {
    /// Takes the RTP maps out of a loaded object (see
    /// [`LiveCapture::rtp_monitor`]; this form serves tests and benchmarks
    /// that drive the programs without attaching them).
    pub fn take(
        object: &mut LoadedObject,
        clock: KtimeClock,
        idle_timeout: Duration,
    ) -> Result<Self, LiveError> {
        let store = object.features.flow_store();
        let ebpf = &mut object.ebpf;
        let flows = FlowTable::take(ebpf, store)?;
        let mut take = |name: &str| ebpf.take_map(name).ok_or_else(|| missing(name));
        let config = Array::try_from(take(names::RTP_CONFIG)?)
            .map_err(|e| LiveError::kernel("opening the RTP config map", e))?;
        let port_clocks = HashMap::try_from(take(names::RTP_PORT_CLOCKS)?)
            .map_err(|e| LiveError::kernel("opening the RTP port clock map", e))?;
        let counters = PerCpuArray::try_from(take(names::RTP_COUNTERS)?)
            .map_err(|e| LiveError::kernel("opening the RTP counters", e))?;
        let current = config
            .get(&0, 0)
            .map_err(|e| LiveError::kernel("reading the RTP config", e))?;
        Ok(Self {
            flows,
            config,
            port_clocks,
            counters,
            current,
            clock,
            idle_timeout,
            expired: 0,
            evicted: 0,
        })
    }

    /// Changes the RTP port range at run time ([`RTP_OFF`]: off).
    pub fn set_ports(&mut self, ports: RangeInclusive<u16>) -> Result<(), LiveError> {
        let settings = RtpSettings {
            ports,
            max_flows: 0,
            default_clock_rate: self.current.default_clock_rate,
        };
        self.write_config(settings.kernel_config(self.current.port_clocks))
    }

    /// Sets the clock of `payload_type` on `port` as negotiated in SDP
    /// (`a=rtpmap`, RFC 4566 section 6); 0 = no usable clock
    /// (telephone-event), which keeps such packets out of the jitter.
    /// Only dynamic payload types (96-127) are negotiated: the kernel
    /// takes a static type's RFC 3551 clock without looking here.
    pub fn set_port_clock(
        &mut self,
        port: u16,
        payload_type: u8,
        clock_rate: u32,
    ) -> Result<(), LiveError> {
        if payload_type & 0x7f < FIRST_DYNAMIC_PT {
            return Err(LiveError::StaticPayloadType(payload_type & 0x7f));
        }
        let key = RtpPortClockKey {
            port,
            payload_type: payload_type & 0x7f,
            _pad: 0,
        };
        let new = self.port_clocks.get(&key, 0).is_err();
        if new && self.current.port_clocks >= MAX_RTP_PORT_CLOCKS {
            return Err(LiveError::Kernel {
                op: format!("adding the clock of port {port}"),
                source: format!(
                    "the port clock map is full ({MAX_RTP_PORT_CLOCKS} entries): remove clocks of ended calls"
                )
                .into(),
            });
        }
        self.port_clocks
            .insert(key, clock_rate, 0)
            .map_err(|e| LiveError::kernel(format!("adding the clock of port {port}"), e))?;
        if new {
            let mut c = self.current;
            c.port_clocks += 1;
            self.write_config(c)?;
        }
        Ok(())
    }

    /// Forgets a clock set by [`Self::set_port_clock`] (call ended).
    pub fn remove_port_clock(&mut self, port: u16, payload_type: u8) -> Result<(), LiveError> {
        let key = RtpPortClockKey {
            port,
            payload_type: payload_type & 0x7f,
            _pad: 0,
        };
        if self.port_clocks.remove(&key).is_ok() {
            let mut c = self.current;
            c.port_clocks = c.port_clocks.saturating_sub(1);
            self.write_config(c)?;
        }
        Ok(())
    }

    fn write_config(&mut self, c: RtpConfig) -> Result<(), LiveError> {
        self.config
            .set(0, c, 0)
            .map_err(|e| LiveError::kernel("updating the RTP config", e))?;
        self.current = c;
        Ok(())
    }

    /// The statistics of the flow `src -> dst` seen on `ifindex` in
    /// `direction` now, if the kernel has it (on demand, e.g. when a dialog
    /// ends and its SDP named the addresses).
    pub fn flow_between(
        &self,
        src: SocketAddr,
        dst: SocketAddr,
        ifindex: u32,
        direction: Direction,
    ) -> Option<RtpFlowStats> {
        self.flow(&flow_key(src, dst, ifindex, direction)?)
    }

    /// The statistics of one flow now, if the kernel has it.
    pub fn flow(&self, key: &RtpFlowKey) -> Option<RtpFlowStats> {
        let state = self.flows.get(key)?;
        Some(RtpFlowStats::from_kernel(key, state, self.clock))
    }

    /// Reads every flow, deletes those idle longer than the idle timeout
    /// (returning their final statistics), and reads the counters.
    pub fn poll(&mut self) -> Result<RtpPoll, LiveError> {
        // Counters first: a flow created during the walk then shows as live
        // but not yet as created, so the inferred eviction count can only
        // be too low for a moment, never too high.
        let mut counters = self.read_counters()?;
        let idle_ns = u64::try_from(self.idle_timeout.as_nanos()).unwrap_or(u64::MAX);
        let now = monotonic_ns();
        let mut poll = RtpPoll::default();
        let mut stale = Vec::new();
        let mut live = 0u64;
        for (key, state) in self.flows.read_all()? {
            live += 1;
            if state.flags & RTP_FLOW_INITIALISED == 0 {
                continue; // just created, its first update still in flight
            }
            let stats = RtpFlowStats::from_kernel(&key, state, self.clock);
            if now.saturating_sub(state.last_seen_ns) > idle_ns {
                stale.push(key);
                poll.expired.push(stats);
            } else {
                poll.active.push(stats);
            }
        }
        let mut removed = 0;
        for key in &stale {
            // Already gone (evicted by the LRU meanwhile) is fine.
            if self.flows.remove(key) {
                removed += 1;
            }
        }
        let created = counters.get(RtpCounter::FlowsCreated);
        self.evicted = self
            .evicted
            .max(created.saturating_sub(live + self.expired));
        self.expired += removed;
        counters.flows_live = live - removed;
        counters.flows_expired = self.expired;
        counters.flows_evicted = self.evicted;
        poll.counters = counters;
        Ok(poll)
    }

    /// The kernel counters, summed over CPUs, with the poller's own as of
    /// the last poll.
    pub fn read_counters(&self) -> Result<RtpCounters, LiveError> {
        Ok(RtpCounters {
            kernel: RtpKernelCounters::read(&self.counters)?,
            flows_expired: self.expired,
            flows_evicted: self.evicted,
            ..RtpCounters::default()
        })
    }
}

#[cfg(test)]
#[path = "rtp_tests.rs"]
mod tests;
