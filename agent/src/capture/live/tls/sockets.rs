//! A process's file descriptor to the TCP connection behind it: the
//! socket inode (`/proc/PID/fd/N` -> `socket:[INODE]`), then that inode's
//! addresses in the process's own network namespace (`/proc/PID/net/tcp`
//! and `tcp6`). Read once per TLS session, then cached by the caller.

use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::Path;

/// Both ends of a TCP connection, as the probed process sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Connection {
    pub local: SocketAddr,
    pub remote: SocketAddr,
}

/// The connection behind `fd` of `pid`; `None` when the fd is gone or
/// not a TCP socket.
pub(crate) fn connection_of(proc_root: &Path, pid: u32, fd: i32) -> Option<Connection> {
    let link = fs::read_link(proc_root.join(format!("{pid}/fd/{fd}"))).ok()?;
    let inode: u64 = link
        .to_str()?
        .strip_prefix("socket:[")?
        .strip_suffix(']')?
        .parse()
        .ok()?;
    ["tcp", "tcp6"].iter().find_map(|table| {
        let text = fs::read_to_string(proc_root.join(format!("{pid}/net/{table}"))).ok()?;
        find_inode(&text, inode)
    })
}

/// The line of `/proc/net/tcp{,6}` whose inode column is `inode`.
pub(crate) fn find_inode(table: &str, inode: u64) -> Option<Connection> {
    table.lines().skip(1).find_map(|line| {
        // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.get(9)?.parse::<u64>().ok()? != inode {
            return None;
        }
        Some(Connection {
            local: address(cols.get(1)?)?,
            remote: address(cols.get(2)?)?,
        })
    })
}

/// `0100007F:13C5` (IPv4) or 32 hex digits `:PORT` (IPv6): the address
/// is 32-bit words in the kernel's (host) byte order, the port big-endian
/// hex. IPv4-mapped IPv6 addresses become IPv4.
fn address(field: &str) -> Option<SocketAddr> {
    let (addr, port) = field.split_once(':')?;
    let port = u16::from_str_radix(port, 16).ok()?;
    let word = |i: usize| -> Option<[u8; 4]> {
        let w = u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok()?;
        Some(w.to_ne_bytes())
    };
    let ip = match addr.len() {
        8 => IpAddr::V4(Ipv4Addr::from(word(0)?)),
        32 => {
            let mut b = [0u8; 16];
            for i in 0..4 {
                b[i * 4..i * 4 + 4].copy_from_slice(&word(i)?);
            }
            let v6 = Ipv6Addr::from(b);
            match v6.to_ipv4_mapped() {
                Some(v4) => IpAddr::V4(v4),
                None => IpAddr::V6(v6),
            }
        }
        _ => return None,
    };
    Some(SocketAddr::new(ip, port))
}

#[cfg(test)]
mod tests {
    use super::*;

    // Little-endian host (x86_64, aarch64), as the kernel prints it.
    const TCP: &str = "\
  sl  local_address rem_address   st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0A00000A:13C5 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 1111 1 0000000000000000 100 0 0 10 0
   1: 0A00000A:13C5 1400000A:D431 01 00000000:00000000 00:00000000 00000000     0        0 2222 1 0000000000000000 20 4 30 10 -1
";
    const TCP6: &str = "\
  sl  local_address                         remote_address                        st tx_queue rx_queue tr tm->when retrnsmt   uid  timeout inode
   0: 0000000000000000FFFF00000A00000A:13C5 0000000000000000FFFF00001400000A:D432 01 00000000:00000000 00:00000000 00000000     0        0 3333 1
   1: B80D0120000000000000000001000000:13C5 B80D0120000000000000000002000000:D433 01 00000000:00000000 00:00000000 00000000     0        0 4444 1
";

    #[test]
    fn an_ipv4_connection_is_found_by_its_inode() {
        let c = find_inode(TCP, 2222).expect("inode 2222");
        assert_eq!(c.local, "10.0.0.10:5061".parse().unwrap());
        assert_eq!(c.remote, "10.0.0.20:54321".parse().unwrap());
        assert!(find_inode(TCP, 9).is_none());
    }

    #[test]
    fn ipv6_and_mapped_ipv4_connections_are_read() {
        let mapped = find_inode(TCP6, 3333).expect("inode 3333");
        assert_eq!(mapped.remote, "10.0.0.20:54322".parse().unwrap());
        let v6 = find_inode(TCP6, 4444).expect("inode 4444");
        assert_eq!(v6.local, "[2001:db8::1]:5061".parse().unwrap());
        assert_eq!(v6.remote, "[2001:db8::2]:54323".parse().unwrap());
    }

    #[test]
    fn a_real_socket_of_this_process_is_resolved() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let client = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        use std::os::fd::AsRawFd as _;
        let c = connection_of(Path::new("/proc"), std::process::id(), client.as_raw_fd())
            .expect("a TCP socket");
        assert_eq!(c.remote, listener.local_addr().unwrap());
        assert_eq!(c.local, client.local_addr().unwrap());
    }
}
