//! What the running kernel can do, probed at start-up by loading and
//! seeing (never by parsing `uname`: distributions backport features), and
//! which program variants follow from it.
//!
//! | feature                | first in | without it                          |
//! |------------------------|----------|-------------------------------------|
//! | `bpf_xdp_load_bytes`   | 5.18     | ingress on TC instead of XDP        |
//! | BPF atomics (cmpxchg)  | 5.12     | per-CPU RTP flow state, no lock     |
//! | tcx links              | 6.6      | netlink clsact filters (see attach) |
//! | drop reasons, BTF      | 5.17     | drop tracing off (see drops)        |
//!
//! `SIPSCOPE_KERNEL_COMPAT=oldest` picks the variants for the oldest
//! supported kernel (5.10) on any kernel, so the old-kernel paths run in
//! every test run.

use std::{fmt, io};

use aya::{
    programs::ProgramType,
    sys::{BpfHelper, is_helper_supported},
};

use super::error::LiveError;

/// The environment variable of the forced-compatibility switch.
pub(crate) const COMPAT_ENV: &str = "SIPSCOPE_KERNEL_COMPAT";

/// Which program variants to consider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CompatMode {
    /// Probe the kernel and use the best it supports.
    Auto,
    /// The Linux 5.10 variants whatever the kernel supports.
    Oldest,
}

impl CompatMode {
    /// From [`COMPAT_ENV`]: unset, empty or `auto`, or `oldest`.
    pub fn from_env() -> Result<Self, LiveError> {
        match std::env::var(COMPAT_ENV) {
            Err(_) => Ok(Self::Auto),
            Ok(v) if v.is_empty() || v == "auto" => Ok(Self::Auto),
            Ok(v) if v == "oldest" => Ok(Self::Oldest),
            Ok(v) => Err(LiveError::InvalidCompatMode(v)),
        }
    }
}

/// Where the RTP flow statistics live in the kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowStoreKind {
    /// One state per flow under an atomic lock (5.12+).
    Shared,
    /// One state per flow and CPU, merged by the agent.
    PerCpu,
}

/// Whether a feature is used, and if not, why not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Support {
    Yes,
    /// Not in this kernel: `needs` names the kernel that has it.
    Missing {
        needs: &'static str,
    },
    /// Available, but `SIPSCOPE_KERNEL_COMPAT=oldest` says not to use it.
    Forced,
}

impl Support {
    pub fn is_yes(&self) -> bool {
        matches!(self, Self::Yes)
    }

    /// Why the feature is not used, for a start-up line (`None`: it is).
    pub fn reason(&self, feature: &str) -> Option<String> {
        match self {
            Self::Yes => None,
            Self::Missing { needs } => Some(format!("{feature} needs Linux {needs}")),
            Self::Forced => Some(format!("{COMPAT_ENV}=oldest")),
        }
    }
}

/// The probed kernel capabilities that choose the program variants.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelFeatures {
    pub mode: CompatMode,
    /// `bpf_xdp_load_bytes` from XDP programs: the XDP capture program.
    pub xdp_load_bytes: Support,
    /// BPF_CMPXCHG: the shared RTP flow store.
    pub atomics: Support,
}

impl KernelFeatures {
    /// Probes the running kernel (needs the privileges of a program load).
    pub fn probe(mode: CompatMode) -> Result<Self, LiveError> {
        let xdp = is_helper_supported(ProgramType::Xdp, BpfHelper::BPF_FUNC_xdp_load_bytes)
            .map_err(|e| LiveError::kernel("probing for bpf_xdp_load_bytes", e))?;
        let atomics = atomics_supported()
            .map_err(|e| LiveError::kernel("probing for BPF atomic instructions", e))?;
        let support = |available: bool, needs| match (available, mode) {
            (false, _) => Support::Missing { needs },
            (true, CompatMode::Oldest) => Support::Forced,
            (true, CompatMode::Auto) => Support::Yes,
        };
        Ok(Self {
            mode,
            xdp_load_bytes: support(xdp, "5.18"),
            atomics: support(atomics, "5.12"),
        })
    }

    /// Every feature used, as on a current kernel.
    pub fn all() -> Self {
        Self {
            mode: CompatMode::Auto,
            xdp_load_bytes: Support::Yes,
            atomics: Support::Yes,
        }
    }

    pub fn flow_store(&self) -> FlowStoreKind {
        if self.atomics.is_yes() {
            FlowStoreKind::Shared
        } else {
            FlowStoreKind::PerCpu
        }
    }

    /// Whether the XDP ingress program may be used at all.
    pub fn xdp(&self) -> bool {
        self.xdp_load_bytes.is_yes() && self.atomics.is_yes()
    }

    /// Whether to try tcx links before netlink (the oldest variants use
    /// netlink, as 5.10 must).
    pub fn try_tcx(&self) -> bool {
        self.mode == CompatMode::Auto
    }

    /// The TC programs: (ingress, egress).
    pub fn tc_programs(&self) -> (&'static str, &'static str) {
        use sipscope_common::names;
        match self.flow_store() {
            FlowStoreKind::Shared => (names::TC_INGRESS, names::TC_EGRESS),
            FlowStoreKind::PerCpu => (names::TC_INGRESS_510, names::TC_EGRESS_510),
        }
    }

    /// Start-up lines for the kernel-wide choices (interfaces and drop
    /// tracing add their own).
    pub fn lines(&self) -> Vec<FeatureLine> {
        let xdp_reason = self
            .xdp_load_bytes
            .reason("bpf_xdp_load_bytes")
            .or_else(|| self.atomics.reason("BPF_CMPXCHG"));
        let rtp = match self.flow_store() {
            FlowStoreKind::Shared => FeatureLine::new("rtp statistics", "shared per flow", None),
            FlowStoreKind::PerCpu => FeatureLine::new(
                "rtp statistics",
                "per CPU, merged by the agent",
                self.atomics.reason("BPF_CMPXCHG"),
            ),
        };
        vec![
            match xdp_reason {
                None => FeatureLine::new("ingress", "xdp where the driver runs it natively", None),
                Some(why) => FeatureLine::new("ingress", "tc", Some(why)),
            },
            rtp,
        ]
    }
}

/// One start-up line: what runs for a feature and, if it is not the best
/// the agent has, why (`tc egress: clsact (tcx needs Linux 6.6)`).
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct FeatureLine {
    pub feature: String,
    pub mode: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl FeatureLine {
    pub fn new(
        feature: impl Into<String>,
        mode: impl Into<String>,
        reason: Option<String>,
    ) -> Self {
        Self {
            feature: feature.into(),
            mode: mode.into(),
            reason,
        }
    }
}

impl fmt::Display for FeatureLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.feature, self.mode)?;
        if let Some(r) = &self.reason {
            write!(f, " ({r})")?;
        }
        Ok(())
    }
}

/// `BPF_PROG_LOAD` of a four-instruction socket filter doing a 64-bit
/// compare-and-exchange on the stack: the verifier accepts it from Linux
/// 5.12 on (BPF_ATOMIC with BPF_CMPXCHG), and rejects it with EINVAL
/// before. EPERM (no CAP_BPF) is an error, not a "no".
fn atomics_supported() -> io::Result<bool> {
    const BPF_PROG_LOAD: libc::c_long = 5;
    const BPF_PROG_TYPE_SOCKET_FILTER: u32 = 1;
    // Opcodes (include/uapi/linux/bpf.h, bpf_common.h).
    const ST_DW: u8 = 0x7a; // BPF_ST | BPF_MEM | BPF_DW
    const ATOMIC_DW: u8 = 0xdb; // BPF_STX | BPF_ATOMIC | BPF_DW
    const MOV64_IMM: u8 = 0xb7; // BPF_ALU64 | BPF_MOV | BPF_K
    const EXIT: u8 = 0x95; // BPF_JMP | BPF_EXIT
    const BPF_CMPXCHG: i32 = 0xf0 | 0x01; // BPF_CMPXCHG includes BPF_FETCH
    const R0: u8 = 0;
    const R1: u8 = 1;
    const R10: u8 = 10;
    let insn = |code: u8, dst: u8, src: u8, off: i16, imm: i32| -> u64 {
        u64::from(code)
            | u64::from(dst & 0xf) << 8
            | u64::from(src & 0xf) << 12
            | u64::from(off as u16) << 16
            | u64::from(imm as u32) << 32
    };
    let insns = [
        insn(ST_DW, R10, 0, -8, 0),                // *(u64 *)(r10 - 8) = 0
        insn(MOV64_IMM, R0, 0, 0, 0),              // r0 = 0 (expected)
        insn(MOV64_IMM, R1, 0, 0, 1),              // r1 = 1 (new)
        insn(ATOMIC_DW, R10, R1, -8, BPF_CMPXCHG), // cmpxchg(r10 - 8, r0, r1)
        insn(MOV64_IMM, R0, 0, 0, 0),              // r0 = 0
        insn(EXIT, 0, 0, 0, 0),                    // exit
    ];
    let license = c"GPL";
    // The leading fields of `union bpf_attr` for BPF_PROG_LOAD.
    #[repr(C)]
    struct ProgLoadAttr {
        prog_type: u32,
        insn_cnt: u32,
        insns: u64,
        license: u64,
        log_level: u32,
        log_size: u32,
        log_buf: u64,
        kern_version: u32,
        prog_flags: u32,
    }
    let attr = ProgLoadAttr {
        prog_type: BPF_PROG_TYPE_SOCKET_FILTER,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level: 0,
        log_size: 0,
        log_buf: 0,
        kern_version: 0,
        prog_flags: 0,
    };
    // SAFETY: attr is a valid prefix of bpf_attr for this command, its
    // pointers live for the call; the returned fd is closed right away.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_PROG_LOAD,
            std::ptr::from_ref(&attr),
            std::mem::size_of::<ProgLoadAttr>(),
        )
    };
    if fd >= 0 {
        // SAFETY: a program fd this function owns.
        unsafe { libc::close(fd as libc::c_int) };
        return Ok(true);
    }
    let err = io::Error::last_os_error();
    match err.raw_os_error() {
        // The verifier's "invalid BPF_ATOMIC"/"reserved fields": not here.
        Some(libc::EINVAL | libc::EACCES) => Ok(false),
        _ => Err(err),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_say_what_runs_and_why() {
        let old = KernelFeatures {
            mode: CompatMode::Auto,
            xdp_load_bytes: Support::Missing { needs: "5.18" },
            atomics: Support::Missing { needs: "5.12" },
        };
        let lines: Vec<String> = old.lines().iter().map(ToString::to_string).collect();
        assert_eq!(
            lines,
            [
                "ingress: tc (bpf_xdp_load_bytes needs Linux 5.18)",
                "rtp statistics: per CPU, merged by the agent (BPF_CMPXCHG needs Linux 5.12)",
            ]
        );
        assert_eq!(old.flow_store(), FlowStoreKind::PerCpu);
        assert_eq!(old.tc_programs().0, sipscope_common::names::TC_INGRESS_510);
        let all = KernelFeatures::all();
        assert!(all.xdp() && all.try_tcx());
        assert_eq!(all.tc_programs().1, sipscope_common::names::TC_EGRESS);
    }

    #[test]
    fn forced_mode_names_the_switch() {
        let forced = KernelFeatures {
            mode: CompatMode::Oldest,
            xdp_load_bytes: Support::Forced,
            atomics: Support::Forced,
        };
        assert!(!forced.xdp() && !forced.try_tcx());
        assert_eq!(
            forced.lines()[0].to_string(),
            "ingress: tc (SIPSCOPE_KERNEL_COMPAT=oldest)"
        );
    }
}
