//! Least privilege for live capture: the capabilities loading and
//! attaching need, checked before the kernel is touched, and dropped once
//! every program is attached.
//!
//! What each step of `sipscope run` needs (capabilities(7), measured on
//! 6.18 by running the agent under `setpriv` without each one):
//!
//! | step | needs |
//! |---|---|
//! | create maps, load programs (`bpf(2)`) | `CAP_BPF` |
//! | load XDP/TC programs, attach XDP, tcx, netlink clsact filters | `CAP_NET_ADMIN` |
//! | pass the verifier: pointer arithmetic on packets and the `kfree_skb` raw tracepoint are refused to a loader without it | `CAP_PERFMON` |
//! | BPF maps on kernels before 5.11 (charged to `RLIMIT_MEMLOCK`) | `CAP_SYS_RESOURCE`, or `LimitMEMLOCK=infinity` |
//!
//! The raw tracepoint needs no tracefs, BTF is read from the world-readable
//! `/sys/kernel/btf/vmlinux`, and the interface lock lives in
//! `$RUNTIME_DIRECTORY` (systemd's `RuntimeDirectory=`) or `/run/sipscope`.
//!
//! After attaching, only what later steps need is kept (see [`drop_after_attach`]).

use std::io;

use caps::{CapSet, Capability, CapsHashSet};

use super::error::LiveError;

/// The capabilities `sipscope run` needs to start, in the order the
/// messages name them.
pub const REQUIRED: [Capability; 3] = [
    Capability::CAP_BPF,
    Capability::CAP_NET_ADMIN,
    Capability::CAP_PERFMON,
];

/// The remedy every capability error ends with: the same set as
/// `sipscope run --help` and the README.
pub const REMEDY: &str = "run as root, or grant CAP_BPF CAP_NET_ADMIN CAP_PERFMON: \
     `setcap cap_bpf,cap_net_admin,cap_perfmon+ep /usr/bin/sipscope`, or \
     AmbientCapabilities=CAP_BPF CAP_NET_ADMIN CAP_PERFMON in the systemd unit \
     (packaging/sipscope.service)";

/// Why each required capability is needed, for the error that names it.
fn purpose(cap: Capability) -> &'static str {
    match cap {
        Capability::CAP_BPF => "to create maps and load programs",
        Capability::CAP_NET_ADMIN => "to load and attach XDP and TC programs",
        Capability::CAP_PERFMON => {
            "for the verifier to accept the programs' packet pointer arithmetic \
             and the kfree_skb tracepoint"
        }
        _ => "",
    }
}

/// `CAP_BPF (to create maps ...)`, for the missing ones.
pub(crate) fn describe_missing(missing: &[Capability]) -> String {
    missing
        .iter()
        .map(|c| format!("{c} ({})", purpose(*c)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The required capabilities missing from this thread's effective set.
pub(crate) fn missing() -> Result<Vec<Capability>, LiveError> {
    Ok(missing_from(&read(CapSet::Effective)?))
}

/// The required capabilities `effective` does not grant. CAP_SYS_ADMIN
/// stands in for CAP_BPF and CAP_PERFMON (the kernel's `bpf_capable()`
/// and `perfmon_capable()`), not for CAP_NET_ADMIN.
fn missing_from(effective: &CapsHashSet) -> Vec<Capability> {
    let sys_admin = effective.contains(&Capability::CAP_SYS_ADMIN);
    REQUIRED
        .into_iter()
        .filter(|c| {
            let stood_in = sys_admin && matches!(c, Capability::CAP_BPF | Capability::CAP_PERFMON);
            !(effective.contains(c) || stood_in)
        })
        .collect()
}

/// Fails with one error naming every missing capability and the remedy,
/// before anything touches the kernel. One that is permitted but not
/// effective (`setcap ...+p`) is raised first.
pub(crate) fn check() -> Result<(), LiveError> {
    let permitted = read(CapSet::Permitted)?;
    for cap in missing()? {
        if permitted.contains(&cap) {
            let _ = caps::raise(None, CapSet::Effective, cap);
        }
    }
    let missing = missing()?;
    if missing.is_empty() {
        return Ok(());
    }
    Err(LiveError::MissingCapabilities {
        missing: describe_missing(&missing),
    })
}

/// Why a step still got EPERM: the capabilities the process lacks, or, if
/// it holds them all, what else refuses BPF to a capable process.
pub(crate) fn explain_eperm() -> String {
    match missing() {
        Ok(m) if !m.is_empty() => format!("this process lacks {}", describe_missing(&m)),
        _ if in_user_namespace() => "this process runs in a user namespace (a rootless \
             container?), where capabilities do not count for BPF: run it in the host's"
            .to_owned(),
        _ if !memlock_unlimited() => format!(
            "the locked-memory limit is finite and kernels before 5.11 charge BPF maps to \
             it: set LimitMEMLOCK=infinity in the unit, or grant CAP_SYS_RESOURCE; on newer \
             kernels{OTHER_CAUSES}"
        ),
        _ => format!("the process holds CAP_BPF CAP_NET_ADMIN CAP_PERFMON, so{OTHER_CAUSES}"),
    }
}

const OTHER_CAUSES: &str = " a security module (SELinux, AppArmor), kernel lockdown, or a \
     user namespace (capabilities there do not count for BPF; run in the host's) refuses it";

/// Whether this process is outside the initial user namespace: there the
/// uid map is the identity over all 2^32 ids (user_namespaces(7)).
fn in_user_namespace() -> bool {
    std::fs::read_to_string("/proc/self/uid_map").is_ok_and(|map| !is_initial_uid_map(&map))
}

fn is_initial_uid_map(map: &str) -> bool {
    map.split_whitespace().collect::<Vec<_>>() == ["0", "0", "4294967295"]
}

/// Whether `RLIMIT_MEMLOCK` is unlimited (the agent raises the soft limit
/// to the hard one at start).
fn memlock_unlimited() -> bool {
    let mut rlim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: valid pointer to a local struct.
    let ok = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut rlim) } == 0;
    ok && rlim.rlim_cur == libc::RLIM_INFINITY
}

/// A capability kept after attaching and the later step that needs it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Kept {
    pub capability: Capability,
    pub reason: &'static str,
}

/// What [`drop_after_attach`] did, for the one start-up line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CapabilityDrop {
    pub kept: Vec<Kept>,
    pub dropped: Vec<Capability>,
    /// The bounding set could not be cleared (no CAP_SETPCAP): harmless
    /// with no_new_privs set, which stops any exec from regaining more.
    pub bounding_kept: bool,
}

impl std::fmt::Display for CapabilityDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("capabilities: kept ")?;
        if self.kept.is_empty() {
            f.write_str("none")?;
        }
        for (i, k) in self.kept.iter().enumerate() {
            let sep = if i == 0 { "" } else { ", " };
            write!(f, "{sep}{} ({})", k.capability, k.reason)?;
        }
        let mut dropped: Vec<String> = self.dropped.iter().map(ToString::to_string).collect();
        dropped.sort();
        write!(f, ", dropped {}", dropped.join(" "))?;
        if self.dropped.is_empty() {
            f.write_str("none")?;
        }
        f.write_str("; no_new_privs set")?;
        if self.bounding_kept {
            f.write_str("; bounding set left as given (no CAP_SETPCAP)")?;
        }
        Ok(())
    }
}

/// Drops, on the calling thread, every capability but `keep`: the
/// bounding set as far as CAP_SETPCAP allows, the ambient and inheritable
/// sets, then the permitted and effective sets; and sets no_new_privs so
/// no exec can regain any. Capabilities are per thread: threads created
/// afterwards by this one inherit the result; threads that exist already
/// must drop their own ([`drop_all_on_this_thread`]).
pub fn drop_after_attach(keep: &[Kept]) -> Result<CapabilityDrop, LiveError> {
    let keep_set: CapsHashSet = keep.iter().map(|k| k.capability).collect();
    let before = read(CapSet::Permitted)?;
    set_no_new_privs()?;
    let mut bounding_kept = false;
    for cap in read(CapSet::Bounding)? {
        if !keep_set.contains(&cap) && caps::drop(None, CapSet::Bounding, cap).is_err() {
            bounding_kept = true;
        }
    }
    caps_op(
        "clearing the ambient set",
        caps::clear(None, CapSet::Ambient),
    )?;
    caps_op(
        "clearing the inheritable set",
        caps::clear(None, CapSet::Inheritable),
    )?;
    let kept: CapsHashSet = keep_set.intersection(&before).copied().collect();
    caps_op(
        "reducing the effective set",
        caps::set(None, CapSet::Effective, &kept),
    )?;
    caps_op(
        "reducing the permitted set",
        caps::set(None, CapSet::Permitted, &kept),
    )?;
    Ok(CapabilityDrop {
        kept: keep
            .iter()
            .filter(|k| kept.contains(&k.capability))
            .copied()
            .collect(),
        dropped: before.difference(&kept).copied().collect(),
        bounding_kept,
    })
}

/// Drops every capability of the calling thread: for the async runtime's
/// threads, which never touch the kernel's BPF objects themselves.
pub fn drop_all_on_this_thread() {
    // Best effort: a thread that fails keeps what it had, and the test
    // that reads every thread's /proc status says so.
    let _ = drop_after_attach(&[]);
}

/// Whether the effective set holds `cap` (for the probes that decide what
/// is kept).
pub(crate) fn has(cap: Capability) -> bool {
    caps::has_cap(None, CapSet::Effective, cap).unwrap_or(false)
}

/// Lowers `cap` from the effective set only, so it can be raised again.
pub(crate) fn lower(cap: Capability) -> Result<(), LiveError> {
    caps_op(
        "lowering a capability",
        caps::drop(None, CapSet::Effective, cap),
    )
}

/// Raises `cap` again (it is still permitted).
pub(crate) fn raise(cap: Capability) -> Result<(), LiveError> {
    caps_op(
        "raising a capability",
        caps::raise(None, CapSet::Effective, cap),
    )
}

fn set_no_new_privs() -> Result<(), LiveError> {
    // SAFETY: PR_SET_NO_NEW_PRIVS takes integer arguments only.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(LiveError::Capabilities {
            op: "setting no_new_privs",
            reason: io::Error::last_os_error().to_string(),
        });
    }
    Ok(())
}

fn read(set: CapSet) -> Result<CapsHashSet, LiveError> {
    caps_op("reading the capability sets", caps::read(None, set))
}

fn caps_op<T>(op: &'static str, r: Result<T, caps::errors::CapsError>) -> Result<T, LiveError> {
    r.map_err(|e| LiveError::Capabilities {
        op,
        reason: e.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_missing_capabilities_are_named_with_what_each_is_for() {
        let text = describe_missing(&[Capability::CAP_NET_ADMIN, Capability::CAP_PERFMON]);
        assert_eq!(
            text,
            "CAP_NET_ADMIN (to load and attach XDP and TC programs), CAP_PERFMON (for the \
             verifier to accept the programs' packet pointer arithmetic and the kfree_skb \
             tracepoint)"
        );
        let err = LiveError::MissingCapabilities { missing: text };
        let msg = err.to_string();
        assert!(msg.contains("lacks CAP_NET_ADMIN"), "{msg}");
        assert!(msg.ends_with(REMEDY), "{msg}");
    }

    #[test]
    fn each_missing_capability_is_found_and_cap_sys_admin_stands_in_for_bpf_and_perfmon() {
        use Capability::*;
        let set = |caps: &[Capability]| caps.iter().copied().collect::<CapsHashSet>();
        assert_eq!(missing_from(&set(&REQUIRED)), vec![]);
        assert_eq!(missing_from(&set(&[])), REQUIRED.to_vec());
        assert_eq!(
            missing_from(&set(&[CAP_BPF, CAP_PERFMON])),
            vec![CAP_NET_ADMIN]
        );
        assert_eq!(
            missing_from(&set(&[CAP_NET_ADMIN, CAP_BPF])),
            vec![CAP_PERFMON]
        );
        assert_eq!(missing_from(&set(&[CAP_SYS_ADMIN, CAP_NET_ADMIN])), vec![]);
        assert_eq!(missing_from(&set(&[CAP_SYS_ADMIN])), vec![CAP_NET_ADMIN]);
    }

    #[test]
    fn only_the_identity_map_over_all_ids_is_the_initial_user_namespace() {
        assert!(is_initial_uid_map("         0          0 4294967295\n"));
        assert!(!is_initial_uid_map("         0     100000      65536\n"));
        assert!(!is_initial_uid_map("0 1000 1\n"));
    }

    #[test]
    fn the_drop_line_names_what_is_kept_and_why() {
        let drop = CapabilityDrop {
            kept: vec![Kept {
                capability: Capability::CAP_NET_ADMIN,
                reason: "detach at exit",
            }],
            dropped: vec![Capability::CAP_PERFMON, Capability::CAP_BPF],
            bounding_kept: true,
        };
        assert_eq!(
            drop.to_string(),
            "capabilities: kept CAP_NET_ADMIN (detach at exit), dropped CAP_BPF CAP_PERFMON; \
             no_new_privs set; bounding set left as given (no CAP_SETPCAP)"
        );
        let none = CapabilityDrop {
            kept: vec![],
            dropped: vec![],
            bounding_kept: false,
        };
        assert_eq!(
            none.to_string(),
            "capabilities: kept none, dropped none; no_new_privs set"
        );
    }
}
