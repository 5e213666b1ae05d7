//! Which hook sees received frames, chosen by what it costs.
//!
//! Native XDP runs in the driver before any skb exists, which is the
//! cheapest place to look at a frame. Where the "native" XDP of a driver
//! works on an skb anyway it costs far more than TC: a veth with an XDP
//! program moves every frame through its own NAPI poll and rebuilds the
//! skb (measured on a veth, per packet system-wide: an empty XDP program
//! +678 ns, an empty TC program +133 ns; `cargo xtask bench live`).
//! Generic (SKB-mode) XDP is never used: where the driver has no native
//! XDP, ingress runs on TC.

use std::fmt;

use super::error::LiveError;

/// `--ingress`: which hook captures received frames.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum IngressChoice {
    /// Native XDP where the driver really runs it in the driver; TC ingress
    /// on a veth, where XDP costs more, and where the driver has no native
    /// XDP (generic XDP costs more than TC).
    #[default]
    Auto,
    /// Native XDP whatever it costs; fails where the kernel or the driver
    /// cannot run it.
    Xdp,
    /// TC ingress.
    Tc,
}

impl fmt::Display for IngressChoice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Xdp => "xdp",
            Self::Tc => "tc",
        })
    }
}

/// Drivers whose native XDP works on skbs and costs more than TC ingress.
const XDP_DEARER_THAN_TC: &[&str] = &["veth"];

/// What `auto` and the interface's driver say before anything is attached:
/// `Err(why)` means TC ingress, for the start-up line.
pub(crate) fn wants_xdp(choice: IngressChoice, iface: &str) -> Result<(), String> {
    match choice {
        IngressChoice::Xdp => Ok(()),
        IngressChoice::Tc => Err("--ingress tc".to_owned()),
        IngressChoice::Auto => match driver_of(iface) {
            Some(driver) if XDP_DEARER_THAN_TC.contains(&driver.as_str()) => Err(format!(
                "xdp on a {driver} costs more than tc; --ingress xdp to force"
            )),
            _ => Ok(()),
        },
    }
}

/// The error for `--ingress xdp` where native XDP cannot run.
pub(crate) fn xdp_forced_but(iface: &str, why: String) -> LiveError {
    LiveError::XdpUnavailable {
        iface: iface.to_owned(),
        why,
    }
}

/// The kernel driver of `iface` (ETHTOOL_GDRVINFO), e.g. `veth`; `None`
/// when the device does not say.
pub(crate) fn driver_of(iface: &str) -> Option<String> {
    /// `struct ethtool_drvinfo` (linux/ethtool.h).
    #[repr(C)]
    struct DrvInfo {
        cmd: u32,
        driver: [u8; 32],
        version: [u8; 32],
        fw_version: [u8; 32],
        bus_info: [u8; 32],
        erom_version: [u8; 32],
        reserved2: [u8; 12],
        n_priv_flags: u32,
        n_stats: u32,
        testinfo_len: u32,
        eedump_len: u32,
        regdump_len: u32,
    }
    const ETHTOOL_GDRVINFO: u32 = 0x0000_0003;
    if iface.len() >= libc::IFNAMSIZ {
        return None;
    }
    // SAFETY: all-zero is a valid value of these plain C structs.
    let mut info: DrvInfo = unsafe { std::mem::zeroed() };
    info.cmd = ETHTOOL_GDRVINFO;
    // SAFETY: as above.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(iface.bytes()) {
        *dst = src as libc::c_char;
    }
    req.ifr_ifru.ifru_data = std::ptr::from_mut(&mut info).cast();
    // SAFETY: a plain socket call; the fd is closed below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return None;
    }
    // SAFETY: req names the interface and points at info, both alive
    // for the call; SIOCETHTOOL only writes within info.
    let rc = unsafe { libc::ioctl(fd, libc::SIOCETHTOOL, &mut req) };
    // SAFETY: fd is ours.
    unsafe { libc::close(fd) };
    if rc != 0 {
        return None;
    }
    let len = info.driver.iter().position(|&b| b == 0).unwrap_or(32);
    Some(String::from_utf8_lossy(&info.driver[..len]).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tc_and_xdp_are_taken_as_said() {
        assert_eq!(wants_xdp(IngressChoice::Xdp, "lo"), Ok(()));
        assert_eq!(
            wants_xdp(IngressChoice::Tc, "lo"),
            Err("--ingress tc".to_owned())
        );
    }

    #[test]
    fn auto_keeps_xdp_where_the_driver_is_not_a_veth() {
        // lo has no ethtool driver info; an unknown name has none either.
        assert_eq!(wants_xdp(IngressChoice::Auto, "lo"), Ok(()));
        assert_eq!(wants_xdp(IngressChoice::Auto, "nosuchif0"), Ok(()));
        assert_eq!(driver_of("a-name-longer-than-ifnamsiz"), None);
    }
}
