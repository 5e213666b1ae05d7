//! Loading the embedded eBPF object and configuring its maps.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{Program, ProgramError},
};
use log::{Log, warn};
use sipscope_common::{DEFAULT_SIP_PORT, names};

use super::{
    error::LiveError,
    kernel_features::{CompatMode, FlowStoreKind, KernelFeatures},
};

/// The eBPF object built by `build.rs`; empty when built with AYA_BUILD_SKIP.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipscope"));

const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The embedded eBPF object (ELF), for tests that inspect its programs.
pub fn ebpf_object() -> &'static [u8] {
    EBPF_OBJECT
}

/// The loaded (not yet attached) object and its log reader.
pub struct LoadedObject {
    pub ebpf: Ebpf,
    /// What the kernel can do: which program variants this object runs.
    pub features: KernelFeatures,
    /// Must live as long as `ebpf`: dropping it closes the log map.
    pub(super) logger: Option<aya_log::EbpfLogger<&'static dyn Log>>,
    /// The SIP ports in the kernel's port set besides the default one.
    extra_sip_ports: Vec<u16>,
}

/// Checks the kernel's constraint on ring buffer sizes.
pub fn validate_ring_size(size: u32) -> Result<(), LiveError> {
    // SAFETY: sysconf has no preconditions.
    let page = usize::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    if size == 0 || !size.is_power_of_two() || !(size as usize).is_multiple_of(page) {
        return Err(LiveError::InvalidRingSize(size, page));
    }
    Ok(())
}

/// Parses the object with the given ring size and creates its maps, for
/// the program variants the running kernel supports (see
/// [`KernelFeatures::probe`] and [`super::kernel_features::COMPAT_ENV`]).
pub fn load_object(ring_size: u32) -> Result<LoadedObject, LiveError> {
    load_object_with(ring_size, sipscope_common::DEFAULT_RTP_FLOWS)
}

/// Like [`load_object`], with the capacity of the RTP flow map.
pub fn load_object_with(ring_size: u32, rtp_flows: u32) -> Result<LoadedObject, LiveError> {
    preflight()?;
    let features = KernelFeatures::probe(CompatMode::from_env()?)?;
    load_object_for(ring_size, rtp_flows, features)
}

/// Like [`load_object_with`], for the given features (tests pick the
/// oldest variants on any kernel this way).
pub fn load_object_for(
    ring_size: u32,
    rtp_flows: u32,
    features: KernelFeatures,
) -> Result<LoadedObject, LiveError> {
    preflight()?;
    validate_ring_size(ring_size)?;
    // The store not used gets one entry: an LRU map cannot be empty, and a
    // per-CPU map of full size would cost rtp_flows x CPUs values.
    let (shared, per_cpu) = match features.flow_store() {
        FlowStoreKind::Shared => (rtp_flows.max(1), 1),
        FlowStoreKind::PerCpu => (1, rtp_flows.max(1)),
    };
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(names::EVENTS, ring_size)
        .map_max_entries(names::RTP_FLOWS_V4, shared)
        .map_max_entries(names::RTP_FLOWS, shared)
        .map_max_entries(names::RTP_FLOWS_V4_PERCPU, per_cpu)
        .map_max_entries(names::RTP_FLOWS_PERCPU, per_cpu)
        .load(EBPF_OBJECT)
        .map_err(|e| LiveError::kernel("loading the eBPF object", e))?;
    // The programs log nothing today; an object without the log map is
    // not a fault worth a warning at every start.
    let logger = match ebpf.map("AYA_LOGS") {
        None => None,
        Some(_) => match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(l) => Some(l),
            Err(e) => {
                warn!("kernel-side logging unavailable: {e}");
                None
            }
        },
    };
    Ok(LoadedObject {
        ebpf,
        features,
        logger,
        extra_sip_ports: Vec::new(),
    })
}

/// What must hold before anything touches the kernel.
fn preflight() -> Result<(), LiveError> {
    if EBPF_OBJECT.is_empty() {
        return Err(LiveError::BuiltWithoutEbpf);
    }
    if !Path::new(KERNEL_BTF).exists() {
        return Err(LiveError::NoKernelBtf);
    }
    raise_memlock_limit();
    Ok(())
}

/// Before 5.11 the kernel charged BPF memory to RLIMIT_MEMLOCK; later
/// kernels use memcg and ignore it. Best effort.
fn raise_memlock_limit() {
    let rlim = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: valid pointer to a local struct.
    let _ = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &rlim) };
}

impl LoadedObject {
    /// Sets the SIP port set to the default port plus `extra` (at start,
    /// and again at a configuration reload while attached: the programs
    /// read the map per packet, so the change applies at once).
    pub fn set_sip_ports(&mut self, extra: &[u16]) -> Result<(), LiveError> {
        let map = self
            .ebpf
            .map_mut(names::SIP_PORTS)
            .ok_or_else(|| missing(names::SIP_PORTS))?;
        let mut ports: Array<_, u8> =
            Array::try_from(map).map_err(|e| LiveError::kernel("opening the SIP port map", e))?;
        for port in std::iter::once(DEFAULT_SIP_PORT).chain(extra.iter().copied()) {
            ports
                .set(u32::from(port), 1, 0)
                .map_err(|e| LiveError::kernel(format!("adding SIP port {port}"), e))?;
        }
        let gone = self
            .extra_sip_ports
            .iter()
            .filter(|p| **p != DEFAULT_SIP_PORT && !extra.contains(p));
        for &port in gone {
            ports
                .set(u32::from(port), 0, 0)
                .map_err(|e| LiveError::kernel(format!("removing SIP port {port}"), e))?;
        }
        self.extra_sip_ports = extra.to_vec();
        Ok(())
    }

    /// Runs the verifier on the capture programs this kernel gets: XDP
    /// ingress where it can run, TC ingress (the fallback) and TC egress.
    pub fn load_capture_programs(&mut self) -> Result<(), LiveError> {
        let (tc_in, tc_out) = self.features.tc_programs();
        if self.features.xdp() {
            load_program(&mut self.ebpf, names::XDP_INGRESS)?;
        }
        load_program(&mut self.ebpf, tc_in)?;
        load_program(&mut self.ebpf, tc_out)
    }

    /// Runs the verifier on every capture program variant this kernel can
    /// run, used or not (the kernel matrix tests).
    pub fn load_all_variants(&mut self) -> Result<Vec<&'static str>, LiveError> {
        let mut loaded = Vec::new();
        if self.features.xdp() {
            load_program(&mut self.ebpf, names::XDP_INGRESS)?;
            loaded.push(names::XDP_INGRESS);
        }
        let mut tc = vec![names::TC_INGRESS_510, names::TC_EGRESS_510];
        if self.features.flow_store() == FlowStoreKind::Shared {
            tc.extend([names::TC_INGRESS, names::TC_EGRESS]);
        }
        for name in tc {
            load_program(&mut self.ebpf, name)?;
            loaded.push(name);
        }
        Ok(loaded)
    }

    /// The program that sees received frames when not attached by XDP.
    pub fn ingress_program(&self) -> &'static str {
        if self.features.xdp() {
            names::XDP_INGRESS
        } else {
            self.features.tc_programs().0
        }
    }

    /// The program that sees sent frames.
    pub fn egress_program(&self) -> &'static str {
        self.features.tc_programs().1
    }

    /// Loads the benchmarks' baselines: the do-nothing XDP and TC
    /// programs, and the TC capture floor (timestamp, ring record, copy),
    /// and XDP's where the kernel has `bpf_xdp_load_bytes`.
    pub fn load_bench_programs(&mut self) -> Result<(), LiveError> {
        load_program(&mut self.ebpf, names::XDP_EMPTY)?;
        load_program(&mut self.ebpf, names::TC_EMPTY)?;
        load_program(&mut self.ebpf, names::TC_CAPTURE_FLOOR)?;
        if self.features.xdp() {
            load_program(&mut self.ebpf, names::XDP_CAPTURE_FLOOR)?;
        }
        Ok(())
    }

    /// Takes the ring buffer out of the object to read it.
    pub fn take_ring(&mut self) -> Result<RingBuf<MapData>, LiveError> {
        let map = self
            .ebpf
            .take_map(names::EVENTS)
            .ok_or_else(|| missing(names::EVENTS))?;
        RingBuf::try_from(map).map_err(|e| LiveError::kernel("opening the capture ring buffer", e))
    }

    /// Takes the per-CPU counters out of the object to read them.
    pub fn take_counters(&mut self) -> Result<PerCpuArray<MapData, u64>, LiveError> {
        self.take_counter_map(names::COUNTERS, "opening the counters")
    }

    /// Takes the per-CPU RTP counters out of the object (the kernel
    /// benchmark checks that every RTP frame it runs was accounted).
    pub fn take_rtp_counters(&mut self) -> Result<PerCpuArray<MapData, u64>, LiveError> {
        self.take_counter_map(names::RTP_COUNTERS, "opening the RTP counters")
    }

    fn take_counter_map(
        &mut self,
        name: &str,
        op: &'static str,
    ) -> Result<PerCpuArray<MapData, u64>, LiveError> {
        let map = self.ebpf.take_map(name).ok_or_else(|| missing(name))?;
        PerCpuArray::try_from(map).map_err(|e| LiveError::kernel(op, e))
    }
}

/// Loads (verifies) one XDP or TC program; a verifier rejection becomes
/// [`LiveError::VerifierRejected`] with the log kept for `--verbose`.
fn load_program(ebpf: &mut Ebpf, name: &str) -> Result<(), LiveError> {
    let loaded = match ebpf.program_mut(name) {
        Some(Program::Xdp(p)) => p.load(),
        Some(Program::SchedClassifier(p)) => p.load(),
        _ => {
            return Err(LiveError::Kernel {
                op: format!("finding program {name} in the eBPF object"),
                source: "no XDP or TC program of that name (stale build?)".into(),
            });
        }
    };
    loaded.map_err(|e| match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } if io_error.raw_os_error() != Some(libc::EPERM) => LiveError::VerifierRejected {
            program: name.to_owned(),
            errno: io_error.to_string(),
            log: verifier_log.to_string(),
        },
        e => LiveError::kernel(format!("loading {name}"), e),
    })
}

pub(super) fn missing(name: &str) -> LiveError {
    LiveError::Kernel {
        op: format!("finding map {name} in the eBPF object"),
        source: "map missing from the object (stale build?)".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ring_sizes_must_be_page_multiples_and_powers_of_two() {
        // SAFETY: sysconf has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as u32;
        assert!(validate_ring_size(page).is_ok());
        assert!(validate_ring_size(sipscope_common::DEFAULT_RING_SIZE).is_ok());
        for bad in [0, page / 2, page * 3, 5000] {
            let err = validate_ring_size(bad).expect_err("invalid size accepted");
            assert!(err.to_string().contains("power of two"), "{err}");
        }
    }
}
