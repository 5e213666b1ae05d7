//! SIP over TLS in clear, without keys: uprobes on the TLS library of
//! running PBX processes (docs/tls.md).
//!
//! Every [`RESCAN`] the tracer looks for PBX processes (or the PIDs the
//! operator named), finds the OpenSSL libssl each maps and attaches the
//! probes to it for that process only (a process-scoped uprobe puts its
//! breakpoint in that process's memory alone: other programs using the
//! same libssl pay nothing), and releases what exited. `TLS_PROCESSES`
//! also tells the `sys_enter` tracepoint whose socket I/O to follow. The
//! records become [`Plaintext`] through [`sessions`].

mod discovery;
mod sessions;
mod sockets;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use aya::Ebpf;
use aya::maps::{HashMap as BpfHashMap, MapData, PerCpuArray, RingBuf};
use aya::programs::{
    RawTracePoint, UProbe,
    raw_trace_point::RawTracePointLinkId,
    uprobe::{UProbeLinkId, UProbeScope},
};
use sipscope_common::{TlsCounter, TlsHeader, names};
use tokio::io::unix::AsyncFd;

use super::{KernelCounters, LiveError, attach::program, record};
use crate::packet::Plaintext;
use crate::time::Timestamp;

use discovery::TlsProcess;
pub use sessions::TlsMappingStats;

/// The TLS tracer's kernel counters ([`TlsCounter`]).
pub type TlsCounters = KernelCounters<TlsCounter, { TlsCounter::COUNT as usize }>;

/// How often `/proc` is scanned for PBX processes that started or exited.
pub const RESCAN: Duration = Duration::from_secs(1);

/// Which processes' TLS is read (`--tls`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// Not at all.
    Off,
    /// Every asterisk, freeswitch, kamailio and opensips process, also
    /// those started later.
    #[default]
    Auto,
    /// Exactly these processes.
    Pids(Vec<u32>),
}

impl FromStr for TlsMode {
    type Err = String;
    /// `off`, `auto`, or PIDs separated by commas.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "off" => Ok(Self::Off),
            "auto" => Ok(Self::Auto),
            _ => s
                .split(',')
                .map(|p| {
                    p.trim().parse::<u32>().ok().filter(|p| *p > 0).ok_or_else(|| {
                        format!("`{p}` is not a process id; say off, auto, or PIDs such as 1234,5678")
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Self::Pids),
        }
    }
}

/// (function, program) pairs attached to each library; the `_ex`
/// functions are optional (OpenSSL 1.1.1 and later).
const PROBES: [(&str, &str, bool); 9] = [
    ("SSL_read", names::TLS_ENTRY, true),
    ("SSL_read", names::TLS_READ_RET, true),
    ("SSL_write", names::TLS_ENTRY, true),
    ("SSL_write", names::TLS_WRITE_RET, true),
    ("SSL_free", names::TLS_FREE, true),
    ("SSL_read_ex", names::TLS_ENTRY_EX, false),
    ("SSL_read_ex", names::TLS_READ_RET, false),
    ("SSL_write_ex", names::TLS_ENTRY_EX, false),
    ("SSL_write_ex", names::TLS_WRITE_RET, false),
];

const UPROBES: [&str; 5] = [
    names::TLS_ENTRY,
    names::TLS_ENTRY_EX,
    names::TLS_READ_RET,
    names::TLS_WRITE_RET,
    names::TLS_FREE,
];

/// A probed process and its uprobe links (one set per process: a
/// process-scoped uprobe puts its breakpoint in that process's memory
/// only, so other users of the same libssl pay nothing).
struct Probed {
    process: TlsProcess,
    links: Vec<(&'static str, UProbeLinkId)>,
}

/// The running TLS tracer (see the module docs).
pub struct TlsTracer {
    pids: Vec<u32>,
    proc_root: PathBuf,
    processes: BpfHashMap<MapData, u32, u8>,
    counters: PerCpuArray<MapData, u64>,
    pub(super) ring: AsyncFd<RingBuf<MapData>>,
    probed: BTreeMap<u32, Probed>,
    sys_enter: Option<RawTracePointLinkId>,
    pub(super) sessions: sessions::Sessions,
    /// PIDs that could not be probed, so it is said once.
    refused: BTreeMap<u32, ()>,
}

impl TlsTracer {
    /// Loads the TLS programs and takes their maps; attaches nothing yet
    /// (the first [`Self::rescan`] does).
    pub(crate) fn start(ebpf: &mut Ebpf, mode: &TlsMode) -> Result<Self, LiveError> {
        let pids = match mode {
            TlsMode::Pids(p) => p.clone(),
            _ => Vec::new(),
        };
        if !cfg!(target_arch = "x86_64") {
            return Err(LiveError::Kernel {
                op: "reading SIP over TLS".into(),
                source: "the socket tracking reads x86_64 syscall registers; use --tls off".into(),
            });
        }
        for name in UPROBES {
            let p: &mut UProbe = program(ebpf, name)?;
            p.load()
                .map_err(|e| LiveError::kernel(format!("loading {name}"), e))?;
        }
        let p: &mut RawTracePoint = program(ebpf, names::TLS_SYS_ENTER)?;
        p.load()
            .map_err(|e| LiveError::kernel(format!("loading {}", names::TLS_SYS_ENTER), e))?;
        let take = |ebpf: &mut Ebpf, name: &str| {
            ebpf.take_map(name).ok_or_else(|| LiveError::Kernel {
                op: format!("finding map {name}"),
                source: "map missing from the object (stale build?)".into(),
            })
        };
        let processes = BpfHashMap::try_from(take(ebpf, names::TLS_PROCESSES)?)
            .map_err(|e| LiveError::kernel("opening the TLS process map", e))?;
        let counters = PerCpuArray::try_from(take(ebpf, names::TLS_COUNTERS)?)
            .map_err(|e| LiveError::kernel("opening the TLS counters", e))?;
        let ring = RingBuf::try_from(take(ebpf, names::TLS_EVENTS)?)
            .map_err(|e| LiveError::kernel("opening the TLS ring buffer", e))?;
        Ok(Self {
            pids,
            proc_root: PathBuf::from("/proc"),
            processes,
            counters,
            ring: super::readable(ring)?,
            probed: BTreeMap::new(),
            sys_enter: None,
            sessions: sessions::Sessions::new(PathBuf::from("/proc")),
            refused: BTreeMap::new(),
        })
    }

    /// Probes PBX processes that appeared, releases those that exited;
    /// returns what changed, one console line each.
    pub(crate) fn rescan(&mut self, ebpf: &mut Ebpf, now: Timestamp) -> Vec<String> {
        self.sessions.expire(now);
        let mut lines = Vec::new();
        let candidates = discovery::candidate_pids(&self.proc_root, &self.pids);
        let alive: BTreeMap<u32, String> = candidates.into_iter().collect();
        let gone: Vec<u32> = self
            .probed
            .keys()
            .filter(|pid| !alive.contains_key(pid))
            .copied()
            .collect();
        for pid in gone {
            if let Some(p) = self.probed.remove(&pid) {
                let _ = self.processes.remove(&pid);
                lines.push(format!("tls: released {}[{pid}] (exited)", p.process.comm));
                self.release(ebpf, p.links);
            }
        }
        self.refused.retain(|pid, ()| alive.contains_key(pid));
        for (pid, comm) in alive {
            if self.probed.contains_key(&pid) || self.refused.contains_key(&pid) {
                continue;
            }
            let Some(process) = discovery::tls_library(&self.proc_root, pid, comm.clone()) else {
                // Not (yet) using OpenSSL: asked again at the next scan
                // only when named explicitly.
                if !self.pids.is_empty() {
                    lines.push(format!(
                        "tls: {comm}[{pid}] maps no OpenSSL libssl; not probed"
                    ));
                    self.refused.insert(pid, ());
                }
                continue;
            };
            match self.probe(ebpf, &process) {
                Ok(links) => {
                    lines.push(format!(
                        "tls: probing {comm}[{pid}] {} ({})",
                        process.library.display(),
                        discovery::library_version(&process)
                    ));
                    self.probed.insert(pid, Probed { process, links });
                }
                Err(e) => {
                    lines.push(format!("tls: cannot probe {comm}[{pid}]: {e}"));
                    self.refused.insert(pid, ());
                }
            }
        }
        lines
    }

    fn probe(
        &mut self,
        ebpf: &mut Ebpf,
        process: &TlsProcess,
    ) -> Result<Vec<(&'static str, UProbeLinkId)>, LiveError> {
        if self.sys_enter.is_none() {
            let p: &mut RawTracePoint = program(ebpf, names::TLS_SYS_ENTER)?;
            self.sys_enter = Some(
                p.attach(names::SYS_ENTER_TRACEPOINT)
                    .map_err(|e| LiveError::kernel("attaching the sys_enter tracepoint", e))?,
            );
        }
        // In the set before the breakpoints exist: no call is half seen.
        self.processes
            .insert(process.pid, 1, 0)
            .map_err(|e| LiveError::kernel("adding a process to the TLS process map", e))?;
        attach_process(ebpf, process).inspect_err(|_| {
            let _ = self.processes.remove(&process.pid);
        })
    }

    /// An exited process's probes go; the syscall tracepoint goes with
    /// the last process.
    fn release(&mut self, ebpf: &mut Ebpf, links: Vec<(&'static str, UProbeLinkId)>) {
        detach_links(ebpf, links);
        if self.probed.is_empty()
            && let Some(link) = self.sys_enter.take()
            && let Ok(p) = program::<RawTracePoint>(ebpf, names::TLS_SYS_ENTER)
        {
            let _ = p.detach(link);
        }
    }

    /// Processes probed now (pid, command).
    pub fn probed(&self) -> Vec<(u32, String)> {
        self.probed
            .iter()
            .map(|(p, t)| (*p, t.process.comm.clone()))
            .collect()
    }

    /// Kernel counters, summed over CPUs.
    pub fn counters(&self) -> Result<TlsCounters, LiveError> {
        TlsCounters::read(&self.counters)
    }

    /// What userspace could not map, and the sessions it knows now.
    pub fn mapping(&self) -> (TlsMappingStats, usize) {
        (self.sessions.stats, self.sessions.len())
    }
}

/// Reads every record in `ring`; messages ready are appended to `out`.
/// Returns the number of records read.
pub(super) fn drain(
    ring: &mut RingBuf<MapData>,
    sessions: &mut sessions::Sessions,
    clock: super::KtimeClock,
    out: &mut Vec<Plaintext>,
) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        n += 1;
        match record::split::<TlsHeader>(&item) {
            Some((h, data)) => sessions.record(&h, data, clock.to_timestamp(h.ktime_ns), out),
            None => sessions.stats.malformed += 1,
        }
    }
    n
}

fn attach_process(
    ebpf: &mut Ebpf,
    process: &TlsProcess,
) -> Result<Vec<(&'static str, UProbeLinkId)>, LiveError> {
    let mut links = Vec::new();
    for (function, name, required) in PROBES {
        let p: &mut UProbe = program(ebpf, name)?;
        let Some(pid) = std::num::NonZeroU32::new(process.pid) else {
            break;
        };
        match p.attach(
            function,
            &process.library_here,
            UProbeScope::OneProcess(pid),
        ) {
            Ok(link) => links.push((name, link)),
            Err(_) if !required => {}
            Err(e) => {
                detach_links(ebpf, links);
                return Err(LiveError::kernel(
                    format!("attaching to {function} in {}", process.library.display()),
                    e,
                ));
            }
        }
    }
    Ok(links)
}

fn detach_links(ebpf: &mut Ebpf, links: Vec<(&'static str, UProbeLinkId)>) {
    for (name, link) in links {
        if let Ok(p) = program::<UProbe>(ebpf, name) {
            let _ = p.detach(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tls_option_takes_off_auto_or_pids() {
        assert_eq!("off".parse::<TlsMode>(), Ok(TlsMode::Off));
        assert_eq!("auto".parse::<TlsMode>(), Ok(TlsMode::Auto));
        assert_eq!("12,34".parse::<TlsMode>(), Ok(TlsMode::Pids(vec![12, 34])));
        let err = "12,kamailio".parse::<TlsMode>().unwrap_err();
        assert!(err.contains("`kamailio` is not a process id"), "{err}");
        assert!("0".parse::<TlsMode>().is_err());
    }
}
