//! Attaching the capture programs to an interface with bpf links, so that
//! nothing stays attached when the agent dies, even by `kill -9`: XDP through
//! `bpf_link_create` (aya 0.14 uses it whenever the kernel supports it), TC
//! egress through a tcx link (kernel >= 6.6). A netlink-attached TC filter
//! would outlive the process, so that path is only a logged fallback for old
//! kernels.

use std::fmt;

use aya::{
    Ebpf,
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::LinkOrder,
        tc::{self, TcAttachOptions},
    },
};
use log::warn;
use sipscope_common::names;

use super::error::{LiveError, errno_of};

/// How XDP ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum XdpAttachMode {
    /// In the driver, before any skb is allocated.
    Native,
    /// Generic (SKB) mode: the driver lacks native XDP; slower, still correct.
    Generic,
}

/// How the TC egress program ended up attached.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TcAttachMode {
    /// tcx bpf link: detached when the agent exits, however it exits.
    Tcx,
    /// netlink clsact filter (kernel < 6.6): survives `kill -9`.
    Netlink,
}

/// Where the programs are attached on one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attachment {
    pub iface: String,
    pub ifindex: u32,
    pub xdp: XdpAttachMode,
    pub tc: TcAttachMode,
}

impl fmt::Display for Attachment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let xdp = match self.xdp {
            XdpAttachMode::Native => "native",
            XdpAttachMode::Generic => "generic",
        };
        let tc = match self.tc {
            TcAttachMode::Tcx => "tcx",
            TcAttachMode::Netlink => "netlink",
        };
        write!(
            f,
            "{} (ifindex {}, xdp {xdp}, tc egress {tc})",
            self.iface, self.ifindex
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

/// Attaches XDP (ingress) and TC (egress) to `iface`.
pub fn attach(ebpf: &mut Ebpf, iface: &str) -> Result<Attachment, LiveError> {
    let ifindex = ifindex(iface)?;
    let xdp = attach_xdp(ebpf, iface)?;
    let tc = attach_tc(ebpf, iface)?;
    Ok(Attachment {
        iface: iface.to_owned(),
        ifindex,
        xdp,
        tc,
    })
}

fn attach_xdp(ebpf: &mut Ebpf, iface: &str) -> Result<XdpAttachMode, LiveError> {
    let prog: &mut Xdp = program(ebpf, names::XDP_INGRESS)?;
    let busy = |err: &aya::programs::ProgramError| {
        matches!(errno_of(err), Some(libc::EBUSY | libc::EEXIST))
    };
    match prog.attach(iface, XdpMode::Driver) {
        Ok(_) => return Ok(XdpAttachMode::Native),
        Err(err) if busy(&err) => {
            return Err(LiveError::XdpAlreadyAttached {
                iface: iface.to_owned(),
            });
        }
        Err(err) => warn!(
            "{iface}: native XDP not available ({err}: {}); falling back to generic (SKB) \
             mode, which costs more CPU per packet",
            os_error(&err)
        ),
    }
    match prog.attach(iface, XdpMode::Skb) {
        Ok(_) => Ok(XdpAttachMode::Generic),
        Err(err) if busy(&err) => Err(LiveError::XdpAlreadyAttached {
            iface: iface.to_owned(),
        }),
        Err(err) => Err(LiveError::kernel(format!("attaching XDP to {iface}"), err)),
    }
}

fn attach_tc(ebpf: &mut Ebpf, iface: &str) -> Result<TcAttachMode, LiveError> {
    let prog: &mut SchedClassifier = program(ebpf, names::TC_EGRESS)?;
    let tcx = prog.attach_with_options(
        iface,
        TcAttachType::Egress,
        TcAttachOptions::TcxOrder(LinkOrder::default()),
    );
    match tcx {
        Ok(_) => Ok(TcAttachMode::Tcx),
        Err(err) => {
            warn!(
                "{iface}: tcx link not available ({err}: {}); attaching TC egress through a \
                 netlink clsact filter, which stays attached if sipscope is killed with -9 \
                 (remove with `tc filter del dev {iface} egress`)",
                os_error(&err)
            );
            // An existing clsact qdisc is fine.
            if let Err(e) = tc::qdisc_add_clsact(iface)
                && errno_of(&e) != Some(libc::EEXIST)
            {
                return Err(LiveError::kernel(
                    format!("adding clsact qdisc to {iface}"),
                    e,
                ));
            }
            prog.attach(iface, TcAttachType::Egress)
                .map_err(|e| LiveError::kernel(format!("attaching TC egress to {iface}"), e))?;
            Ok(TcAttachMode::Netlink)
        }
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
