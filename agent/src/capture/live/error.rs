//! Errors of live capture, phrased for the operator: each says what to do.

use std::{error::Error as StdError, io};

/// Why live capture could not start or stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LiveError {
    #[error(
        "sipscope was built without its eBPF programs (AYA_BUILD_SKIP was set); \
         rebuild with the eBPF toolchain (`cargo xtask setup`, then `cargo build`)"
    )]
    BuiltWithoutEbpf,

    #[error("no such interface: {0}; see `ip link`")]
    UnknownInterface(String),

    #[error("sipscope run lacks {missing}; {}", super::privilege::REMEDY)]
    MissingCapabilities {
        /// Each missing capability with what it is needed for.
        missing: String,
    },

    #[error("permission denied while {op}: {why}")]
    PermissionDenied {
        op: &'static str,
        /// The capability it needs, or what else refuses it.
        why: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    #[error("{op}: {reason}")]
    Capabilities { op: &'static str, reason: String },

    #[error(
        "this kernel exposes no BTF (/sys/kernel/btf/vmlinux is missing); sipscope needs a \
         kernel built with CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoKernelBtf,

    #[error(
        "interface {iface} already has an XDP program attached; see `ip -d link show {iface}` \
         and detach it (`ip link set dev {iface} xdp off`) or run sipscope on another interface"
    )]
    XdpAlreadyAttached { iface: String },

    #[error("--ingress xdp: native XDP cannot run on {iface} ({why}); use --ingress auto or tc")]
    XdpUnavailable { iface: String, why: String },

    #[error(
        "invalid ring buffer size {0}: it must be a power of two and a multiple of the page \
         size ({1} bytes), e.g. 4194304"
    )]
    InvalidRingSize(u32, usize),

    /// RFC 3551 section 3: types below 96 have fixed clocks.
    #[error(
        "RTP payload type {0} is static (RFC 3551): its clock is fixed; only types 96-127 are \
         negotiated per port"
    )]
    StaticPayloadType(u8),

    #[error(
        "SIPSCOPE_KERNEL_COMPAT={0:?} is not a compatibility mode; use `oldest` (the Linux 5.10 \
         program variants on any kernel) or `auto` (probe the kernel; the default)"
    )]
    InvalidCompatMode(String),

    #[error(
        "another sipscope (pid {pid}) is capturing on {iface}; stop it first, or capture on \
         another interface"
    )]
    InterfaceBusy { iface: String, pid: String },

    #[error(
        "this kernel's BPF verifier rejected {program} ({errno}). sipscope supports Linux 5.10 \
         and later; try SIPSCOPE_KERNEL_COMPAT=oldest (the programs for the oldest kernels) and \
         report the verifier log (`sipscope run --verbose` prints it) with `uname -r`"
    )]
    VerifierRejected {
        program: String,
        errno: String,
        /// The verifier's log: long, for `--verbose` and bug reports.
        log: String,
    },

    #[error("{op}")]
    Kernel {
        op: String,
        #[source]
        source: Box<dyn StdError + Send + Sync>,
    },

    #[error("reading the capture ring buffer")]
    Read(#[source] io::Error),
}

impl LiveError {
    /// Classifies an aya error: permission problems get their own message,
    /// everything else keeps the aya error (and its verifier log) as source.
    pub(crate) fn kernel(
        op: impl Into<String>,
        err: impl StdError + Send + Sync + 'static,
    ) -> Self {
        let op = op.into();
        // EPERM only: the verifier rejects programs with EACCES, and that
        // must surface with its log, not as a privilege problem.
        if errno_of(&err) == Some(libc::EPERM) {
            let op: &'static str = if op.contains("attach") {
                "attaching the capture programs"
            } else {
                "loading the capture programs"
            };
            return Self::PermissionDenied {
                op,
                why: super::privilege::explain_eperm(),
                source: Box::new(err),
            };
        }
        Self::Kernel {
            op,
            source: Box::new(err),
        }
    }
}

impl LiveError {
    /// Refused for lack of privilege (EPERM from the kernel).
    pub(crate) fn is_eperm(&self) -> bool {
        match self {
            Self::PermissionDenied { .. } => true,
            Self::Kernel { source, .. } => errno_of(source.as_ref()) == Some(libc::EPERM),
            _ => false,
        }
    }
}

/// The OS error number somewhere in `err`'s source chain.
pub(crate) fn errno_of(err: &(dyn StdError + 'static)) -> Option<i32> {
    let mut cur: Option<&(dyn StdError + 'static)> = Some(err);
    while let Some(e) = cur {
        if let Some(io) = e.downcast_ref::<io::Error>()
            && let Some(code) = io.raw_os_error()
        {
            return Some(code);
        }
        cur = e.source();
    }
    None
}

#[cfg(test)]
mod tests {
    use super::LiveError;

    /// Issue #11: a rejection is one sentence naming the program and what
    /// to try; the verifier's log is kept for `--verbose`, not printed.
    #[test]
    fn a_verifier_rejection_names_the_program_not_the_log() {
        let err = LiveError::VerifierRejected {
            program: "sipscope_in_tc".into(),
            errno: "Permission denied (os error 13)".into(),
            log: "1474: (85) call bpf_xdp_load_bytes#189\nR3 min value is outside".into(),
        };
        let text = format!("{:#}", anyhow::Error::new(err));
        assert!(text.contains("rejected sipscope_in_tc"), "{text}");
        assert!(text.contains("SIPSCOPE_KERNEL_COMPAT=oldest"), "{text}");
        assert!(text.contains("--verbose"), "{text}");
        assert!(
            !text.contains("R3 min value") && !text.contains('\n'),
            "{text}"
        );
    }
}
