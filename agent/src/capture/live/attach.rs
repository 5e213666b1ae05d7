//! Attaching the capture programs to an interface.
//!
//! Ingress: XDP in the driver where the kernel and driver run it natively
//! and it costs less than TC (not on a veth, see [`super::ingress`]);
//! otherwise TC ingress, which sees the same frames a little later and,
//! unlike generic (SKB-mode) XDP, costs little. Egress: TC. TC programs
//! attach through tcx links (Linux 6.6+) or, before that, as netlink
//! clsact filters.
//!
//! XDP and tcx are bpf links: nothing stays attached when the agent dies,
//! even by `kill -9`. A netlink filter does stay; so before attaching one,
//! the agent removes the filters an earlier sipscope left on that hook
//! (matched by program name, never anyone else's), under a lock file per
//! interface that a running agent holds, so it never removes the filters
//! of an agent that is still alive. The lock is held whatever the hooks:
//! tcx would let a second agent attach beside the first.

use std::{fmt, fs::File, io::Write as _, os::unix::fs::OpenOptionsExt as _};

use aya::{
    Ebpf,
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::LinkOrder,
        tc::{self, NlOptions, TcAttachOptions},
    },
};
use log::{info, warn};
use sipscope_common::names;

use super::{
    error::{LiveError, errno_of},
    ingress::{self, IngressChoice},
    kernel_features::{FeatureLine, KernelFeatures, Support},
};

/// How a TC program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcAttachMode {
    /// tcx bpf link: detached when the agent exits, however it exits.
    Tcx,
    /// netlink clsact filter (kernel < 6.6): survives `kill -9`, removed
    /// by the next start.
    Netlink,
}

/// Which hook sees received frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IngressHook {
    /// XDP in the driver, before any skb is allocated.
    XdpNative,
    /// TC ingress.
    Tc(TcAttachMode),
}

/// Where the programs are attached on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    pub ingress: IngressHook,
    pub egress: TcAttachMode,
    /// What runs and why, one line per hook (start-up output).
    pub lines: Vec<FeatureLine>,
}

impl fmt::Display for TcAttachMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Tcx => "tcx",
            Self::Netlink => "clsact",
        })
    }
}

impl fmt::Display for IngressHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::XdpNative => f.write_str("xdp native"),
            Self::Tc(mode) => write!(f, "tc {mode}"),
        }
    }
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (ifindex {}, ingress {}, egress tc {})",
            self.iface, self.ifindex, self.ingress, self.egress
        )
    }
}

/// The interface index of `iface`, or the "no such interface" error.
pub fn ifindex(iface: &str) -> Result<u32, LiveError> {
    let name =
        std::ffi::CString::new(iface).map_err(|_| LiveError::UnknownInterface(iface.to_owned()))?;
    // SAFETY: valid NUL-terminated string.
    let idx = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if idx == 0 {
        return Err(LiveError::UnknownInterface(iface.to_owned()));
    }
    Ok(idx)
}

/// Attaches the ingress and egress programs to `iface`, ingress on the
/// hook `choice` and the driver call for (see [`super::ingress`]); the
/// returned lock must be held while they are attached.
pub(super) fn attach(
    ebpf: &mut Ebpf,
    features: &KernelFeatures,
    iface: &str,
    choice: IngressChoice,
) -> Result<(Attachment, InterfaceLock), LiveError> {
    let ifindex = ifindex(iface)?;
    let mut lines = Vec::new();
    // tcx, like netlink filters, would let a second agent attach beside
    // this one: one agent per interface, whatever the hooks.
    let lock = InterfaceLock::take(iface, ifindex)?;
    let mut cleaned = false;
    let (tc_in, tc_out) = features.tc_programs();
    let native = match (features.xdp(), choice) {
        // Said once in the kernel-wide lines.
        (false, IngressChoice::Auto | IngressChoice::Tc) => Err(None),
        (false, IngressChoice::Xdp) => {
            let why = features
                .xdp_load_bytes
                .reason("bpf_xdp_load_bytes")
                .or_else(|| features.atomics.reason("BPF_CMPXCHG"))
                .unwrap_or_default();
            return Err(ingress::xdp_forced_but(iface, why));
        }
        (true, _) => match ingress::wants_xdp(choice, iface) {
            Ok(()) => attach_xdp(ebpf, iface)?.map_err(Some),
            Err(why) => Err(Some(why)),
        },
    };
    let ingress = match native {
        Ok(()) => {
            let why = (choice == IngressChoice::Xdp).then(|| "--ingress xdp".to_owned());
            lines.push(FeatureLine::new(
                format!("ingress on {iface}"),
                "xdp native",
                why,
            ));
            IngressHook::XdpNative
        }
        Err(why) => {
            if choice == IngressChoice::Xdp
                && let Some(why) = why
            {
                return Err(ingress::xdp_forced_but(iface, why));
            }
            if let Some(why) = why {
                lines.push(FeatureLine::new(
                    format!("ingress on {iface}"),
                    "tc",
                    Some(why),
                ));
            }
            let (mode, why) = attach_tc(
                ebpf,
                features,
                iface,
                tc_in,
                TcAttachType::Ingress,
                &mut cleaned,
            )?;
            lines.push(FeatureLine::new(
                format!("tc ingress on {iface}"),
                mode.to_string(),
                why,
            ));
            IngressHook::Tc(mode)
        }
    };
    let (egress, why) = attach_tc(
        ebpf,
        features,
        iface,
        tc_out,
        TcAttachType::Egress,
        &mut cleaned,
    )?;
    lines.push(FeatureLine::new(
        format!("tc egress on {iface}"),
        egress.to_string(),
        why,
    ));
    Ok((
        Attachment {
            iface: iface.to_owned(),
            ifindex,
            ingress,
            egress,
            lines,
        },
        lock,
    ))
}

/// Native XDP; `Ok(Err(why))` when the driver or kernel cannot run it
/// natively (the caller falls back to TC ingress).
fn attach_xdp(ebpf: &mut Ebpf, iface: &str) -> Result<Result<(), String>, LiveError> {
    let prog: &mut Xdp = program(ebpf, names::XDP_INGRESS)?;
    match prog.attach(iface, XdpMode::Driver) {
        Ok(_) => Ok(Ok(())),
        Err(err) if matches!(errno_of(&err), Some(libc::EBUSY | libc::EEXIST)) => {
            Err(LiveError::XdpAlreadyAttached {
                iface: iface.to_owned(),
            })
        }
        Err(err) => Ok(Err(match errno_of(&err) {
            Some(libc::EOPNOTSUPP | libc::EINVAL) => {
                format!("the driver of {iface} has no native XDP; tc costs less than generic XDP")
            }
            _ => format!("native XDP failed: {err}: {}", os_error(&err)),
        })),
    }
}

/// Attaches one TC program: tcx, else a netlink clsact filter.
fn attach_tc(
    ebpf: &mut Ebpf,
    features: &KernelFeatures,
    iface: &str,
    name: &str,
    hook: TcAttachType,
    cleaned: &mut bool,
) -> Result<(TcAttachMode, Option<String>), LiveError> {
    let prog: &mut SchedClassifier = program(ebpf, name)?;
    let why = if features.try_tcx() {
        let tcx =
            prog.attach_with_options(iface, hook, TcAttachOptions::TcxOrder(LinkOrder::default()));
        match tcx {
            Ok(_) => return Ok((TcAttachMode::Tcx, None)),
            // The kernel does not know the tcx attach types.
            Err(err) if matches!(errno_of(&err), Some(libc::EINVAL)) => {
                Support::Missing { needs: "6.6" }.reason("tcx")
            }
            Err(err) => Some(format!("tcx failed: {err}: {}", os_error(&err))),
        }
    } else {
        Support::Forced.reason("tcx")
    };
    if !*cleaned {
        *cleaned = true;
        remove_leftover_filters(iface);
        warn!(
            "{iface}: TC programs attached as netlink clsact filters stay attached if sipscope \
             is killed with -9; the next start removes them (or `tc filter del dev {iface} \
             ingress` and `egress`)"
        );
    }
    // An existing clsact qdisc is fine.
    if let Err(e) = tc::qdisc_add_clsact(iface)
        && errno_of(&e) != Some(libc::EEXIST)
    {
        return Err(LiveError::kernel(
            format!("adding clsact qdisc to {iface}"),
            e,
        ));
    }
    let direction = if hook == TcAttachType::Ingress {
        "ingress"
    } else {
        "egress"
    };
    prog.attach_with_options(iface, hook, TcAttachOptions::Netlink(NlOptions::default()))
        .map_err(|e| LiveError::kernel(format!("attaching TC {direction} to {iface}"), e))?;
    Ok((TcAttachMode::Netlink, why))
}

/// Removes the clsact filters that carry a sipscope capture program's
/// name: left by an agent that was killed (netlink filters outlive their
/// process). Only called under the interface lock, so no live agent owns
/// them.
fn remove_leftover_filters(iface: &str) {
    let mut removed = Vec::new();
    for hook in [TcAttachType::Ingress, TcAttachType::Egress] {
        for name in names::TC_PROGRAMS {
            // NotFound (nothing of ours) and "no clsact qdisc" are the
            // normal cases; anything else only means nothing was removed.
            if tc::qdisc_detach_program(iface, hook, name).is_ok() {
                removed.push(name);
            }
        }
    }
    if !removed.is_empty() {
        info!(
            "{iface}: removed TC filters left by an earlier sipscope that did not exit cleanly: {}",
            removed.join(", ")
        );
    }
}

/// An exclusive `flock` on `<dir>/<netns>-<ifindex>.lock`, held while
/// this agent has programs on the interface (so no second agent attaches
/// beside it, and no start removes the netlink filters of an agent still
/// running). `<dir>` is `$RUNTIME_DIRECTORY` where systemd made one
/// (`RuntimeDirectory=sipscope`: `/run/sipscope`, owned by the unit's
/// user), else `/run/sipscope`. The file is removed at a clean exit, so
/// the folder does not fill with one file per interface ever watched.
#[derive(Debug)]
pub(super) struct InterfaceLock {
    _file: File,
    path: String,
}

impl InterfaceLock {
    const DIR: &'static str = "/run/sipscope";

    /// systemd's first `RuntimeDirectory=` (the variable lists them
    /// separated by `:`), else [`Self::DIR`].
    fn dir() -> String {
        std::env::var("RUNTIME_DIRECTORY")
            .ok()
            .and_then(|v| v.split(':').next().map(str::to_owned))
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| Self::DIR.to_owned())
    }

    fn take(iface: &str, ifindex: u32) -> Result<Self, LiveError> {
        // The same ifindex exists in every namespace: the namespace's
        // inode tells them apart.
        let netns = std::fs::metadata("/proc/self/ns/net")
            .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
            .unwrap_or(0);
        let dir = Self::dir();
        let io = |e: std::io::Error| LiveError::Kernel {
            op: format!(
                "locking {iface} in {dir} (sipscope needs a directory it can write there: \
                 run as root, or RuntimeDirectory=sipscope in the unit)"
            ),
            source: Box::new(e),
        };
        std::fs::create_dir_all(&dir).map_err(io)?;
        let path = format!("{dir}/{netns}-{ifindex}.lock");
        // The holder removes the file as it exits: a file locked after
        // that is no longer the one at the path, so open it again (a few
        // times: each retry means another agent just exited).
        let mut attempts = 0;
        let (file, writable) = loop {
            let (file, writable) = Self::open(&path).map_err(io)?;
            use std::os::fd::AsRawFd as _;
            // SAFETY: a valid open fd.
            if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
                let pid = std::fs::read_to_string(&path).unwrap_or_default();
                return Err(LiveError::InterfaceBusy {
                    iface: iface.to_owned(),
                    pid: pid.trim().to_owned(),
                });
            }
            if Self::same_file(&file, &path) {
                break (file, writable);
            }
            attempts += 1;
            if attempts == 3 {
                // Never hold a lock on a file no longer at the path: it
                // would exclude nobody.
                return Err(io(std::io::Error::other(
                    "the lock file kept being replaced while locking it; try again",
                )));
            }
        };
        if writable {
            let mut file = &file;
            file.set_len(0).map_err(io)?;
            writeln!(file, "{}", std::process::id()).map_err(io)?;
        }
        Ok(Self { _file: file, path })
    }

    /// Opens (or creates) the lock file; whether it could be written.
    fn open(path: &str) -> std::io::Result<(File, bool)> {
        // Readable by all: a file another user's agent left (a root run
        // before the service, or one killed) is still locked through a
        // read-only open (flock needs no write access), so the lock stays
        // one per interface whoever made the file.
        match std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o644)
            .open(path)
        {
            Ok(f) => Ok((f, true)),
            Err(e) if e.kind() == std::io::ErrorKind::PermissionDenied => {
                File::open(path).map(|f| (f, false)).map_err(|_| e)
            }
            Err(e) => Err(e),
        }
    }

    /// `file` is still the one at `path` (not removed by its last holder).
    fn same_file(file: &File, path: &str) -> bool {
        use std::os::unix::fs::MetadataExt as _;
        match (file.metadata(), std::fs::metadata(path)) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        }
    }
}

impl Drop for InterfaceLock {
    fn drop(&mut self) {
        // Removed while still locked (the fd closes after this): an agent
        // that opened it meanwhile sees it gone once it locks (see take).
        // A file this user may not remove (another user's folder) stays;
        // it is harmless, the next start locks it.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The OS error inside an aya error, for log lines ("Operation not supported").
fn os_error(err: &aya::programs::ProgramError) -> String {
    errno_of(err).map_or_else(
        || "no OS error".to_owned(),
        |e| std::io::Error::from_raw_os_error(e).to_string(),
    )
}

/// Looks up a program by name and converts it to its concrete type.
pub(crate) fn program<'a, T>(ebpf: &'a mut Ebpf, name: &str) -> Result<&'a mut T, LiveError>
where
    &'a mut T: TryFrom<&'a mut aya::programs::Program, Error = aya::programs::ProgramError>,
{
    let prog = ebpf.program_mut(name).ok_or_else(|| LiveError::Kernel {
        op: format!("finding program {name} in the eBPF object"),
        source: "program missing from the object (stale build?)".into(),
    })?;
    prog.try_into()
        .map_err(|e| LiveError::kernel(format!("program {name} has an unexpected type"), e))
}
