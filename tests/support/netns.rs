//! Network namespaces and a veth pair between two of them.

use std::{
    net::{Ipv4Addr, Ipv6Addr},
    process::{Command, Output},
};

use super::unique_suffix;

/// Runs a command, panicking with its stderr if it fails.
pub fn run(program: &str, args: &[&str]) -> Output {
    let out = Command::new(program)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}"));
    assert!(
        out.status.success(),
        "{program} {} failed: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// A network namespace, deleted on drop.
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(prefix: &str) -> Self {
        let name = format!("{prefix}{}", unique_suffix());
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// `ip -n NAME ARGS...`
    pub fn ip(&self, args: &[&str]) -> Output {
        let mut full = vec!["-n", self.name.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Adds `cidr` (`10.77.0.3/24`) to interface `ifname` in this namespace.
    pub fn add_address(&self, ifname: &str, cidr: &str) -> Output {
        self.ip(&["addr", "add", cidr, "dev", ifname])
    }

    /// Runs a command inside the namespace and returns its output (not
    /// asserting success).
    pub fn exec(&self, program: &str, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name, program])
            .args(args)
            .output()
            .unwrap_or_else(|e| panic!("cannot run {program} in {}: {e}", self.name))
    }

    /// Like [`Self::exec`] but returns stdout as a string.
    pub fn exec_stdout(&self, program: &str, args: &[&str]) -> String {
        String::from_utf8_lossy(&self.exec(program, args).stdout).into_owned()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

/// Two namespaces joined by a veth pair: `host` (where the agent and the
/// PBX/registrar run) and `peer` (the remote side: SIPp, traffic sources).
pub struct VethPair {
    // Declared first, dropped first; the namespaces follow (deleting a
    // namespace also removes its veth end).
    pub host_if: String,
    pub peer_if: String,
    pub host: Netns,
    pub peer: Netns,
}

impl VethPair {
    pub const HOST_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
    pub const PEER_V4: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
    pub const HOST_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 1);
    pub const PEER_V6: Ipv6Addr = Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, 2);

    /// Creates both namespaces and the link, with IPv4 /24 and IPv6 /64
    /// addresses (no duplicate address detection, so v6 is usable at once).
    pub fn new() -> Self {
        let host = Netns::new("ssh");
        let peer = Netns::new("ssp");
        let sfx = unique_suffix();
        let host_if = format!("vh{sfx}");
        let peer_if = format!("vp{sfx}");
        run(
            "ip",
            &[
                "link", "add", &host_if, "netns", &host.name, "type", "veth", "peer", "name",
                &peer_if, "netns", &peer.name,
            ],
        );
        for (ns, ifname, v4, v6) in [
            (&host, &host_if, Self::HOST_V4, Self::HOST_V6),
            (&peer, &peer_if, Self::PEER_V4, Self::PEER_V6),
        ] {
            ns.ip(&["addr", "add", &format!("{v4}/24"), "dev", ifname]);
            ns.ip(&[
                "-6",
                "addr",
                "add",
                &format!("{v6}/64"),
                "dev",
                ifname,
                "nodad",
            ]);
            ns.ip(&["link", "set", ifname, "up"]);
        }
        Self {
            host_if,
            peer_if,
            host,
            peer,
        }
    }

    /// MAC address of an interface in a namespace.
    pub fn mac(ns: &Netns, ifname: &str) -> [u8; 6] {
        let out = ns.exec_stdout("cat", &[&format!("/sys/class/net/{ifname}/address")]);
        let mut mac = [0u8; 6];
        for (i, part) in out.trim().split(':').enumerate().take(6) {
            mac[i] = u8::from_str_radix(part, 16).expect("mac address");
        }
        mac
    }
}

/// Runs `f` on a new thread that has entered `ns` (setns affects only the
/// calling thread). Sockets created there stay in `ns` when returned.
pub fn in_netns<T: Send + 'static>(ns: &Netns, f: impl FnOnce() -> T + Send + 'static) -> T {
    use std::os::fd::AsRawFd;
    let path = format!("/var/run/netns/{}", ns.name);
    std::thread::spawn(move || {
        let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("open {path}: {e}"));
        // SAFETY: valid namespace fd; only this thread changes namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns {path}: {}", std::io::Error::last_os_error());
        f()
    })
    .join()
    .expect("thread inside the namespace panicked")
}

/// An AF_PACKET socket bound to an interface, for sending hand-built
/// Ethernet frames (e.g. VLAN-tagged ones this kernel cannot make itself).
pub struct RawSocket {
    fd: std::os::fd::OwnedFd,
    ifindex: i32,
}

impl RawSocket {
    pub fn open(ns: &Netns, ifname: &str) -> Self {
        let ifname = ifname.to_owned();
        in_netns(ns, move || {
            use std::os::fd::FromRawFd;
            let cname = std::ffi::CString::new(ifname.clone()).unwrap();
            // SAFETY: plain syscalls with valid arguments.
            unsafe {
                let ifindex = libc::if_nametoindex(cname.as_ptr()) as i32;
                assert!(ifindex > 0, "no interface {ifname}");
                let fd = libc::socket(
                    libc::AF_PACKET,
                    libc::SOCK_RAW,
                    (libc::ETH_P_ALL as u16).to_be() as i32,
                );
                assert!(
                    fd >= 0,
                    "AF_PACKET socket: {}",
                    std::io::Error::last_os_error()
                );
                RawSocket {
                    fd: std::os::fd::OwnedFd::from_raw_fd(fd),
                    ifindex,
                }
            }
        })
    }

    /// Sends one complete Ethernet frame.
    pub fn send(&self, frame: &[u8]) {
        use std::os::fd::AsRawFd;
        // SAFETY: sockaddr_ll is plain data; zeroed is a valid start.
        let mut addr: libc::sockaddr_ll = unsafe { std::mem::zeroed() };
        addr.sll_family = libc::AF_PACKET as u16;
        addr.sll_ifindex = self.ifindex;
        addr.sll_halen = 6;
        addr.sll_addr[..6].copy_from_slice(&frame[..6]);
        // SAFETY: valid fd, buffer and address of the right size.
        let n = unsafe {
            libc::sendto(
                self.fd.as_raw_fd(),
                frame.as_ptr().cast(),
                frame.len(),
                0,
                std::ptr::from_ref(&addr).cast(),
                std::mem::size_of::<libc::sockaddr_ll>() as u32,
            )
        };
        assert_eq!(
            n,
            frame.len() as isize,
            "sendto: {}",
            std::io::Error::last_os_error()
        );
    }
}
