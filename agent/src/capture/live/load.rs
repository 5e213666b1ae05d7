//! Loading the embedded eBPF object and configuring its maps.

use std::path::Path;

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, MapData, PerCpuArray, RingBuf},
    programs::{SchedClassifier, Xdp},
};
use log::{Log, warn};
use sipscope_common::{DEFAULT_SIP_PORT, names};

use super::{attach::program, error::LiveError};

/// The eBPF object built by `build.rs`; empty when built with AYA_BUILD_SKIP.
static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/sipscope"));

const KERNEL_BTF: &str = "/sys/kernel/btf/vmlinux";

/// The loaded (not yet attached) object and its log reader.
pub struct LoadedObject {
    pub ebpf: Ebpf,
    /// Must live as long as `ebpf`: dropping it closes the log map.
    pub(super) logger: Option<aya_log::EbpfLogger<&'static dyn Log>>,
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

/// Parses the object with the given ring size and creates its maps.
pub fn load_object(ring_size: u32) -> Result<LoadedObject, LiveError> {
    load_object_with(ring_size, sipscope_common::DEFAULT_RTP_FLOWS)
}

/// Like [`load_object`], with the capacity of the RTP flow map.
pub fn load_object_with(ring_size: u32, rtp_flows: u32) -> Result<LoadedObject, LiveError> {
    if EBPF_OBJECT.is_empty() {
        return Err(LiveError::BuiltWithoutEbpf);
    }
    if !Path::new(KERNEL_BTF).exists() {
        return Err(LiveError::NoKernelBtf);
    }
    validate_ring_size(ring_size)?;
    raise_memlock_limit();
    let mut ebpf = EbpfLoader::new()
        .map_max_entries(names::EVENTS, ring_size)
        .map_max_entries(names::RTP_FLOWS, rtp_flows.max(1))
        .load(EBPF_OBJECT)
        .map_err(|e| LiveError::kernel("loading the eBPF object", e))?;
    let logger = match aya_log::EbpfLogger::init(&mut ebpf) {
        Ok(l) => Some(l),
        Err(e) => {
            warn!("kernel-side logging unavailable: {e}");
            None
        }
    };
    Ok(LoadedObject { ebpf, logger })
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
    /// Fills the SIP port set: the default port plus `extra`.
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
        Ok(())
    }

    /// Runs the verifier on the capture programs (XDP ingress, TC egress).
    pub fn load_capture_programs(&mut self) -> Result<(), LiveError> {
        let xdp: &mut Xdp = program(&mut self.ebpf, names::XDP_INGRESS)?;
        xdp.load().map_err(|e| {
            LiveError::kernel(format!("loading {} (verifier)", names::XDP_INGRESS), e)
        })?;
        let tc: &mut SchedClassifier = program(&mut self.ebpf, names::TC_EGRESS)?;
        tc.load().map_err(|e| {
            LiveError::kernel(format!("loading {} (verifier)", names::TC_EGRESS), e)
        })?;
        Ok(())
    }

    /// Loads the do-nothing XDP program (benchmark baseline).
    pub fn load_empty_program(&mut self) -> Result<(), LiveError> {
        let xdp: &mut Xdp = program(&mut self.ebpf, names::XDP_EMPTY)?;
        xdp.load()
            .map_err(|e| LiveError::kernel(format!("loading {}", names::XDP_EMPTY), e))
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
        let map = self
            .ebpf
            .take_map(names::COUNTERS)
            .ok_or_else(|| missing(names::COUNTERS))?;
        PerCpuArray::try_from(map).map_err(|e| LiveError::kernel("opening the counters", e))
    }
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
