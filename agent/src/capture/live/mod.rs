//! Live capture: load the eBPF programs, attach them (XDP ingress, TC
//! egress), and read the ring buffer into [`Packet`]s.
//!
//! The kernel copies every frame whose source or destination port is a SIP
//! port, plus the later IP fragments of such UDP datagrams, starting at the
//! Ethernet header, so a live [`Packet`] decodes exactly like a pcap record.
//! Loss is never silent: ring-buffer reserve failures, truncations and
//! unparsed frames are per-CPU counters ([`CaptureCounters`]).
//!
//! Alongside, a `kfree_skb` raw tracepoint reports SIP and RTP packets the
//! kernel dropped on the watched interfaces ([`LiveDrop`], see [`drops`]);
//! when the kernel cannot support it, capture carries on without it.
//!
//! Known limitation: a later IP fragment that arrives before the first
//! fragment of its datagram is not captured (it carries no ports, and the
//! kernel has not yet seen the first fragment that names the datagram).

mod attach;
mod clock;
mod counters;
pub(crate) mod drops;
mod error;
mod ingress;
pub(crate) mod kernel_btf;
pub(crate) mod kernel_features;
mod load;
mod map_batch;
pub mod privilege;
mod record;
pub mod rtp;
pub mod tls;

use std::collections::HashMap;

use aya::maps::{MapData, PerCpuArray, RingBuf};
use log::Log;
use sipscope_common::{CaptureHeader, FLAG_FRAGMENT, FLAG_TRUNCATED, FLAG_VLAN};
use tokio::io::unix::AsyncFd;

pub use attach::{Attachment, IngressHook, TcAttachMode, ifindex};
pub use clock::KtimeClock;
pub(crate) use counters::RtpKernelCounters;
pub use counters::{CaptureCounters, DropCounters, KernelCounters};
pub use drops::{DropsUnavailable, LiveDrop, decode_drop};
pub use error::LiveError;
pub use ingress::IngressChoice;
pub use kernel_btf::ReasonName;
pub use kernel_features::{CompatMode, FeatureLine, FlowStoreKind, KernelFeatures, Support};
pub use load::{
    LoadedObject, ebpf_object, load_object, load_object_for, load_object_with, validate_ring_size,
};
pub use rtp::{RtpCounters, RtpFlowStats, RtpMonitor, RtpPoll, RtpSettings};

use crate::packet::{LinkType, Packet, Plaintext};
pub use tls::{TlsCounters, TlsMappingStats, TlsMode};

/// What to capture where.
#[derive(Clone, Debug)]
pub struct LiveConfig {
    pub interfaces: Vec<String>,
    /// SIP ports; [`sipscope_common::DEFAULT_SIP_PORT`] is always included.
    pub sip_ports: Vec<u16>,
    /// Ring buffer size in bytes (power of two, multiple of the page size).
    pub ring_size: u32,
    /// Report packets the kernel drops (`kfree_skb`) on the interfaces.
    pub trace_drops: bool,
    /// Drop reasons to report, by kernel name.
    pub drop_reasons: Vec<String>,
    /// RTP statistics in the kernel (port range, flow capacity, clock).
    pub rtp: RtpSettings,
    /// Which hook captures received frames (`--ingress`).
    pub ingress: IngressChoice,
    /// Whose TLS plaintext is read (`--tls`, docs/tls.md).
    pub tls: TlsMode,
}

impl Default for LiveConfig {
    fn default() -> Self {
        Self {
            interfaces: Vec::new(),
            sip_ports: Vec::new(),
            ring_size: sipscope_common::DEFAULT_RING_SIZE,
            trace_drops: true,
            drop_reasons: drops::DEFAULT_DROP_REASONS
                .iter()
                .map(|s| (*s).to_owned())
                .collect(),
            rtp: RtpSettings::default(),
            ingress: IngressChoice::Auto,
            // Library users opt in; `sipscope run` defaults to auto.
            tls: TlsMode::Off,
        }
    }
}

/// Whether drop tracing runs.
#[derive(Debug)]
pub enum DropTracing {
    /// Attached; these reasons are reported.
    On(Vec<ReasonName>),
    /// Turned off in the configuration.
    Off,
    /// The kernel cannot support it (said once at start; capture runs on).
    Unavailable(DropsUnavailable),
}

/// Cumulative kernel accounting of one program (BPF_ENABLE_STATS).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProgramRunStats {
    /// Program name in the object (`sipscope_common::names`).
    pub name: String,
    pub run_time: std::time::Duration,
    pub run_count: u64,
}

/// The drop ring and what is needed to decode it.
struct DropSource {
    ring: AsyncFd<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    reasons: HashMap<u32, String>,
}

/// One captured frame with the kernel's metadata.
#[derive(Clone, Debug)]
pub struct LiveFrame {
    pub packet: Packet,
    pub header: CaptureHeader,
}

/// Addresses and ports: `header.endpoints` (`src()`, `dst()`).
impl LiveFrame {
    pub fn is_truncated(&self) -> bool {
        self.header.flags & FLAG_TRUNCATED != 0
    }
    pub fn is_fragment(&self) -> bool {
        self.header.flags & FLAG_FRAGMENT != 0
    }
    pub fn is_vlan_tagged(&self) -> bool {
        self.header.flags & FLAG_VLAN != 0
    }
}

/// An attached capture. Dropping it detaches every program (bpf links).
pub struct LiveCapture {
    // Field order is drop order: the programs (and their links) go first,
    // the logger last, so it outlives the object that writes to its map.
    object: LoadedObject,
    ring: AsyncFd<RingBuf<MapData>>,
    counters: PerCpuArray<MapData, u64>,
    logger: Option<AsyncFd<aya_log::EbpfLogger<&'static dyn Log>>>,
    clock: KtimeClock,
    attachments: Vec<Attachment>,
    /// One per interface, held while our programs are attached (see attach).
    _locks: Vec<attach::InterfaceLock>,
    drops: Option<DropSource>,
    drop_tracing: DropTracing,
    /// Ring entries too short for their own header (never expected).
    malformed: u64,
    /// SIP over TLS from the PBXs' TLS library (`None`: off or refused).
    tls: Option<tls::TlsTracer>,
    /// Why TLS is not read, when it was asked for and could not start.
    tls_refused: Option<String>,
    /// TLS plaintext read by [`Self::next_batch`], for [`Self::take_plaintext`].
    plaintext: Vec<Plaintext>,
    last_tls_scan: Option<std::time::Instant>,
}

impl LiveCapture {
    /// Loads, configures and attaches. Must run inside a tokio runtime.
    pub fn start(config: &LiveConfig) -> Result<Self, LiveError> {
        // Check every interface before touching the kernel.
        for iface in &config.interfaces {
            ifindex(iface)?;
        }
        // One error naming every missing capability, before any of them
        // fails half-way through loading.
        privilege::check()?;
        let mut object = load_object_with(config.ring_size, config.rtp.max_flows)?;
        object.set_sip_ports(&config.sip_ports)?;
        object.configure_rtp(&config.rtp)?;
        object.load_capture_programs()?;
        let mut attachments = Vec::new();
        let mut locks = Vec::new();
        for iface in &config.interfaces {
            let (a, lock) =
                attach::attach(&mut object.ebpf, &object.features, iface, config.ingress)?;
            attachments.push(a);
            locks.push(lock);
        }
        let (drops, drop_tracing) = if config.trace_drops {
            let filter = drops::DropFilter {
                ifindexes: attachments.iter().map(|a| a.ifindex).collect(),
                rtp_ports: config.rtp.ports.clone(),
                reasons: config.drop_reasons.clone(),
            };
            match drops::DropTracer::start(&mut object, &filter) {
                Ok(t) => (
                    Some(DropSource {
                        ring: readable(t.ring)?,
                        counters: t.counters,
                        reasons: t.reasons,
                    }),
                    DropTracing::On(t.reported),
                ),
                Err(e) => {
                    log::warn!("{e}; SIP capture continues without it");
                    (None, DropTracing::Unavailable(e))
                }
            }
        } else {
            (None, DropTracing::Off)
        };
        let (tls, tls_refused) = match &config.tls {
            TlsMode::Off => (None, None),
            mode => match tls::TlsTracer::start(&mut object.ebpf, mode) {
                Ok(t) => (Some(t), None),
                Err(e) => {
                    // The cause too: "loading X" alone says nothing.
                    let mut why = e.to_string();
                    let mut source = std::error::Error::source(&e);
                    while let Some(s) = source {
                        why = format!("{why}: {s}");
                        source = s.source();
                    }
                    log::warn!("{why}; capturing without SIP over TLS");
                    (None, Some(why))
                }
            },
        };
        let ring = object.take_ring()?;
        let ring = readable(ring)?;
        let counters = object.take_counters()?;
        let logger = match object.logger.take() {
            Some(l) => Some(readable(l)?),
            None => None,
        };
        Ok(Self {
            object,
            ring,
            counters,
            logger,
            clock: KtimeClock::new(),
            attachments,
            _locks: locks,
            drops,
            drop_tracing,
            malformed: 0,
            tls,
            tls_refused,
            plaintext: Vec::new(),
            last_tls_scan: None,
        })
    }

    /// The SIP ports captured from now on: the default port plus `extra`
    /// (a configuration reload; a map update, so no capability it gave up
    /// is needed, see [`Self::drop_privileges`]).
    pub fn set_sip_ports(&mut self, extra: &[u16]) -> Result<(), LiveError> {
        self.object.set_sip_ports(extra)
    }

    /// Drops every capability (on this thread, and so on the threads it
    /// starts later) but those a later step needs, once everything is
    /// attached: CAP_NET_ADMIN while a netlink clsact filter must be
    /// removed at exit (tcx and XDP links detach when their fd closes),
    /// and CAP_BPF where the kernel refuses `bpf(2)` map reads without it
    /// (before 6.5 with `kernel.unprivileged_bpf_disabled` set) — probed
    /// by reading the counters with it lowered. CAP_PERFMON was for the
    /// verifier only, unless the TLS tracer runs (then what its rescans
    /// need stays, see below). Reloads that only
    /// update maps keep working; a new interface needs a restart.
    pub fn drop_privileges(&mut self) -> Result<privilege::CapabilityDrop, LiveError> {
        use caps::Capability::{
            CAP_BPF, CAP_NET_ADMIN, CAP_PERFMON, CAP_SYS_ADMIN, CAP_SYS_PTRACE,
        };
        let mut keep = Vec::new();
        let netlink = self.attachments.iter().any(|a| {
            a.egress == TcAttachMode::Netlink || a.ingress == IngressHook::Tc(TcAttachMode::Netlink)
        });
        if netlink {
            keep.push(privilege::Kept {
                capability: CAP_NET_ADMIN,
                reason: "remove the clsact filters at exit",
            });
        }
        // CAP_SYS_ADMIN also passes the kernel's bpf_capable() check.
        let lowered: Vec<_> = [CAP_BPF, CAP_SYS_ADMIN]
            .into_iter()
            .filter(|c| privilege::has(*c))
            .collect();
        for c in &lowered {
            privilege::lower(*c)?;
        }
        let gated = matches!(self.counters(), Err(e) if e.is_eperm());
        for c in &lowered {
            privilege::raise(*c)?;
        }
        if gated {
            keep.push(privilege::Kept {
                capability: CAP_BPF,
                reason: "map reads: this kernel gates bpf() on it",
            });
        }
        if self.tls.is_some() {
            // Rescans attach uprobes to PBX processes that start later and
            // read their /proc maps, fds and root. Measured on 6.18: a
            // uprobe's perf_event_open(2) fails with EACCES unless
            // CAP_SYS_ADMIN is held (CAP_PERFMON is not enough), and another
            // user's /proc entries need CAP_SYS_PTRACE.
            for (capability, reason) in [
                (CAP_BPF, "uprobes on PBXs started later, --tls"),
                (CAP_PERFMON, "uprobes on PBXs started later, --tls"),
                (CAP_SYS_ADMIN, "uprobe perf events, --tls"),
                (CAP_SYS_PTRACE, "other users' PBX processes in /proc, --tls"),
            ] {
                let known = keep.iter().any(|k| k.capability == capability);
                if !known && privilege::has(capability) {
                    keep.push(privilege::Kept { capability, reason });
                }
            }
        }
        privilege::drop_after_attach(&keep)
    }

    /// Looks for PBX processes to probe and releases those that exited,
    /// at most every [`tls::RESCAN`] (call it often: the first call scans
    /// at once). Returns one console line per change.
    pub fn tls_rescan(&mut self) -> Vec<String> {
        let due = self
            .last_tls_scan
            .is_none_or(|t| t.elapsed() >= tls::RESCAN);
        let Some(tracer) = self.tls.as_mut().filter(|_| due) else {
            return Vec::new();
        };
        self.last_tls_scan = Some(std::time::Instant::now());
        tracer.rescan(&mut self.object.ebpf, self.clock.now())
    }

    /// The TLS tracer, when it runs (its counters and probed processes).
    pub fn tls(&self) -> Option<&tls::TlsTracer> {
        self.tls.as_ref()
    }

    /// Why SIP over TLS is not read although it was asked for.
    pub fn tls_refused(&self) -> Option<&str> {
        self.tls_refused.as_deref()
    }

    /// Moves the TLS plaintext read so far (by [`Self::next_batch`] and
    /// [`Self::drain_now`]) to `out`, in the order it was read.
    pub fn take_plaintext(&mut self, out: &mut Vec<Plaintext>) {
        out.append(&mut self.plaintext);
    }

    /// Whether the drop tracer runs, and for which reasons.
    pub fn drop_tracing(&self) -> &DropTracing {
        &self.drop_tracing
    }

    /// What runs for each kernel feature and why, one line each: kernel
    /// wide choices, then each interface's hooks, then drop tracing
    /// (printed at start, also as JSON).
    pub fn feature_lines(&self) -> Vec<FeatureLine> {
        let mut lines = self.object.features.lines();
        lines.extend(
            self.attachments
                .iter()
                .flat_map(|a| a.lines.iter().cloned()),
        );
        lines.push(match &self.drop_tracing {
            DropTracing::On(_) => FeatureLine::new("drop tracing", "kfree_skb", None),
            DropTracing::Off => FeatureLine::new("drop tracing", "off", Some("--no-drops".into())),
            DropTracing::Unavailable(e) => {
                FeatureLine::new("drop tracing", "off", Some(e.0.clone()))
            }
        });
        lines
    }

    /// Which program variants run (see [`kernel_features`]).
    pub fn features(&self) -> &KernelFeatures {
        &self.object.features
    }

    /// Where the programs are attached, one entry per interface.
    pub fn attachments(&self) -> &[Attachment] {
        &self.attachments
    }

    /// Waits until at least one captured frame or dropped packet is
    /// available and appends everything available to `frames` and `drops`.
    /// Cancel-safe (nothing is lost when the future is dropped: entries stay
    /// in the rings until read).
    pub async fn next_batch(
        &mut self,
        frames: &mut Vec<LiveFrame>,
        drops: &mut Vec<LiveDrop>,
    ) -> Result<(), LiveError> {
        loop {
            let Self {
                ring,
                logger,
                clock,
                malformed,
                drops: drop_source,
                tls,
                plaintext,
                ..
            } = self;
            let tls_ready = async {
                match tls {
                    Some(t) => {
                        let tls::TlsTracer { ring, sessions, .. } = t;
                        ring.readable_mut().await.map(|g| (g, sessions))
                    }
                    None => std::future::pending().await,
                }
            };
            let log_ready = async {
                match logger {
                    Some(l) => l.readable_mut().await,
                    None => std::future::pending().await,
                }
            };
            let drop_ready = async {
                match drop_source {
                    Some(d) => d.ring.readable_mut().await.map(|g| (g, &d.reasons)),
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                guard = ring.readable_mut() => {
                    let mut guard = guard.map_err(LiveError::Read)?;
                    let mut n = drain(guard.get_inner_mut(), *clock, malformed, frames);
                    guard.clear_ready();
                    // A record that landed between the drain and clear_ready
                    // would otherwise wait for the next wake-up.
                    n += drain(guard.get_inner_mut(), *clock, malformed, frames);
                    if n > 0 {
                        return Ok(());
                    }
                }
                r = drop_ready => {
                    let (mut guard, reasons) = r.map_err(LiveError::Read)?;
                    let mut n = drain_drops(guard.get_inner_mut(), *clock, reasons, malformed, drops);
                    guard.clear_ready();
                    n += drain_drops(guard.get_inner_mut(), *clock, reasons, malformed, drops);
                    if n > 0 {
                        return Ok(());
                    }
                }
                r = tls_ready => {
                    let (mut guard, sessions) = r.map_err(LiveError::Read)?;
                    let mut n = tls::drain(guard.get_inner_mut(), sessions, *clock, plaintext);
                    guard.clear_ready();
                    n += tls::drain(guard.get_inner_mut(), sessions, *clock, plaintext);
                    if n > 0 {
                        return Ok(());
                    }
                }
                guard = log_ready => {
                    let mut guard = guard.map_err(LiveError::Read)?;
                    guard.get_inner_mut().flush();
                    guard.clear_ready();
                }
            }
        }
    }

    /// Appends whatever is in the rings now, without waiting (the final
    /// drain before detaching).
    pub fn drain_now(&mut self, frames: &mut Vec<LiveFrame>, drops: &mut Vec<LiveDrop>) -> usize {
        let mut n = drain(self.ring.get_mut(), self.clock, &mut self.malformed, frames);
        if let Some(d) = &mut self.drops {
            n += drain_drops(
                d.ring.get_mut(),
                self.clock,
                &d.reasons,
                &mut self.malformed,
                drops,
            );
        }
        if let Some(t) = &mut self.tls {
            let tls::TlsTracer { ring, sessions, .. } = t;
            n += tls::drain(ring.get_mut(), sessions, self.clock, &mut self.plaintext);
        }
        if let Some(l) = &mut self.logger {
            l.get_mut().flush();
        }
        n
    }

    /// Run time and run count of every loaded program, as the kernel
    /// accounts them while BPF statistics are enabled (`sysctl
    /// kernel.bpf_stats_enabled=1`, or `aya::sys::enable_stats`); zero
    /// otherwise. For the benchmarks and `bpftool prog`-style reports.
    pub fn program_stats(&self) -> Result<Vec<ProgramRunStats>, LiveError> {
        let mut out = Vec::new();
        for (name, prog) in self.object.ebpf.programs() {
            let Ok(info) = prog.info() else {
                continue; // not loaded (e.g. the benchmark's empty program)
            };
            out.push(ProgramRunStats {
                name: name.to_owned(),
                run_time: info.run_time(),
                run_count: info.run_count(),
            });
        }
        Ok(out)
    }

    /// Attaches the do-nothing `kfree_skb` program beside the drop tracer:
    /// the baseline of the drops benchmark (not used by the agent).
    pub fn attach_kfree_skb_baseline(&mut self) -> Result<(), LiveError> {
        let prog: &mut aya::programs::RawTracePoint = attach::program(
            &mut self.object.ebpf,
            sipscope_common::names::KFREE_SKB_EMPTY,
        )?;
        prog.load()
            .map_err(|e| LiveError::kernel("loading the kfree_skb baseline", e))?;
        prog.attach(sipscope_common::names::KFREE_SKB_TRACEPOINT)
            .map_err(|e| LiveError::kernel("attaching the kfree_skb baseline", e))?;
        Ok(())
    }

    /// Drop tracer counters, summed over CPUs (`None` when it is not running).
    pub fn drop_counters(&self) -> Result<Option<DropCounters>, LiveError> {
        self.drops
            .as_ref()
            .map(|d| DropCounters::read(&d.counters))
            .transpose()
    }

    /// Now on the clock the frames are stamped with ([`KtimeClock::now`]).
    pub fn now(&self) -> crate::time::Timestamp {
        self.clock.now()
    }

    /// Current kernel counters, summed over CPUs.
    pub fn counters(&self) -> Result<CaptureCounters, LiveError> {
        CaptureCounters::read(&self.counters)
    }

    /// Ring entries that were too short to hold their header (a bug if
    /// ever non-zero; reported beside the kernel counters).
    pub fn malformed_events(&self) -> u64 {
        self.malformed
    }

    /// Detaches the programs but keeps the maps, so a final
    /// [`Self::drain_now`] and the counters read after it agree exactly: no
    /// frame can be counted after the last drain.
    pub fn detach(&mut self) {
        use sipscope_common::names;
        let ebpf = &mut self.object.ebpf;
        if let Ok(p) = attach::program::<aya::programs::Xdp>(ebpf, names::XDP_INGRESS) {
            let _ = p.unload(); // not loaded: nothing attached
        }
        for name in names::TC_PROGRAMS {
            if let Ok(p) = attach::program::<aya::programs::SchedClassifier>(ebpf, name) {
                let _ = p.unload();
            }
        }
        if let Ok(p) = attach::program::<aya::programs::RawTracePoint>(ebpf, names::KFREE_SKB) {
            let _ = p.unload();
        }
        if let Ok(p) = attach::program::<aya::programs::RawTracePoint>(ebpf, names::TLS_SYS_ENTER) {
            let _ = p.unload();
        }
        for name in [
            names::TLS_ENTRY,
            names::TLS_ENTRY_EX,
            names::TLS_READ_RET,
            names::TLS_WRITE_RET,
            names::TLS_FREE,
        ] {
            if let Ok(p) = attach::program::<aya::programs::UProbe>(ebpf, name) {
                let _ = p.unload();
            }
        }
    }

    /// Detaches everything now (also happens on drop).
    pub fn stop(self) {
        drop(self.object);
    }
}

/// Registers a map's fd with the tokio reactor for readability.
fn readable<T: std::os::fd::AsRawFd>(inner: T) -> Result<AsyncFd<T>, LiveError> {
    // SAFETY: `inner` (an aya ring buffer) owns its map fd, keeps it open
    // and returns the same fd for as long as it lives, i.e. as long as the
    // AsyncFd that owns it.
    unsafe { AsyncFd::register_with_interest(inner, tokio::io::Interest::READABLE) }
        .map_err(|e| LiveError::Read(e.into()))
}

fn drain(
    ring: &mut RingBuf<MapData>,
    clock: KtimeClock,
    malformed: &mut u64,
    out: &mut Vec<LiveFrame>,
) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        match decode_event(&item, clock) {
            Some(frame) => {
                out.push(frame);
                n += 1;
            }
            None => *malformed += 1,
        }
    }
    n
}

fn drain_drops(
    ring: &mut RingBuf<MapData>,
    clock: KtimeClock,
    reasons: &HashMap<u32, String>,
    malformed: &mut u64,
    out: &mut Vec<LiveDrop>,
) -> usize {
    let mut n = 0;
    while let Some(item) = ring.next() {
        match decode_drop(&item, clock, reasons) {
            Some(d) => {
                out.push(d);
                n += 1;
            }
            None => *malformed += 1,
        }
    }
    n
}

/// Parses one ring entry: [`CaptureHeader`] then `cap_len` frame bytes.
pub fn decode_event(bytes: &[u8], clock: KtimeClock) -> Option<LiveFrame> {
    let (header, data) = record::split::<CaptureHeader>(bytes)?;
    Some(LiveFrame {
        packet: Packet {
            ts: clock.to_timestamp(header.ktime_ns),
            ifindex: header.ifindex,
            direction: record::direction(header.endpoints.direction),
            link: LinkType::Ethernet,
            data: data.to_vec(),
            orig_len: header.orig_len,
        },
        header,
    })
}

#[cfg(test)]
mod tests {
    use sipscope_common::{Direction::Egress, FLAG_FRAGMENT};

    use super::*;
    use crate::packet::Direction;

    fn header(cap_len: u32) -> CaptureHeader {
        CaptureHeader {
            ktime_ns: 1_000,
            ifindex: 7,
            orig_len: 9000,
            cap_len,
            flags: FLAG_TRUNCATED | FLAG_FRAGMENT,
            endpoints: record::endpoints("192.0.2.10:5060", "192.0.2.20:5080", Egress),
        }
    }

    #[test]
    fn event_becomes_an_ethernet_packet_with_its_metadata() {
        let bytes = record::encode(&header(4), &[1, 2, 3, 4, 0xEE]);
        let frame = decode_event(&bytes, KtimeClock::new()).expect("valid event");
        assert_eq!(frame.packet.data, [1, 2, 3, 4], "exactly cap_len bytes");
        assert_eq!(frame.packet.orig_len, 9000);
        assert!(frame.packet.is_truncated() && frame.is_truncated() && frame.is_fragment());
        assert_eq!(frame.packet.direction, Direction::Egress);
        assert_eq!(frame.packet.link, LinkType::Ethernet);
        assert_eq!(frame.packet.ifindex, 7);
        assert_eq!(frame.header.endpoints.src_ip().to_string(), "192.0.2.10");
        assert_eq!(frame.header.endpoints.dst().to_string(), "192.0.2.20:5080");
    }

    #[test]
    fn short_or_inconsistent_events_are_rejected_not_panicked_on() {
        let clock = KtimeClock::new();
        assert!(decode_event(&[0u8; 10], clock).is_none());
        let claims_more = record::encode(&header(100), &[0u8; 10]);
        assert!(decode_event(&claims_more, clock).is_none());
    }
}
