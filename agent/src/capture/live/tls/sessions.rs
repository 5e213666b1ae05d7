//! TLS sessions to connections: which TCP connection an `SSL *` reads
//! from and writes to, learnt from the socket reads and writes of the
//! thread that called the library (see the kernel's `tls.rs`), and the
//! plaintext records turned into [`Plaintext`] with real addresses.
//!
//! The `SSL *` is the key on its own, not (process, `SSL *`): kamailio
//! keeps its sessions in shared memory, so one process may read a
//! session and another (tcp_main, on its own fd for the same socket)
//! write it. Bounded: at most [`MAX_SESSIONS`] sessions and
//! [`MAX_PENDING`] writes waiting for their socket; evictions counted.

use std::collections::{HashMap, VecDeque};
use std::path::PathBuf;
use std::time::Duration;

use sipscope_common::{
    TLS_FLAG_TRUNCATED, TLS_KIND_BIND, TLS_KIND_FREE, TLS_KIND_READ, TLS_KIND_WRITE, TLS_NO_FD,
    TlsHeader,
};

use super::sockets::{Connection, connection_of};
use crate::packet::{Direction, Plaintext};
use crate::time::Timestamp;

/// Sessions remembered at most (one per TLS connection of the PBXs).
pub(crate) const MAX_SESSIONS: usize = 16384;
/// Writes held until their session's socket is known.
pub(crate) const MAX_PENDING: usize = 256;
/// How long a write waits for its socket before it counts as unmapped.
pub(crate) const PENDING_FOR: Duration = Duration::from_secs(2);

/// What could not be turned into a message, by cause.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TlsMappingStats {
    /// Plaintext records whose connection could not be found (the fd was
    /// not a TCP socket, the process was gone, or no socket I/O was seen).
    pub unmapped: u64,
    /// Sessions forgotten to stay within [`MAX_SESSIONS`].
    pub sessions_evicted: u64,
    /// Records too short for their header (never expected).
    pub malformed: u64,
}

struct Pending {
    ts: Timestamp,
    ssl: u64,
    data: Vec<u8>,
    truncated: bool,
}

pub(crate) struct Sessions {
    proc_root: PathBuf,
    by_ssl: HashMap<u64, Connection>,
    pending: VecDeque<Pending>,
    pub(crate) stats: TlsMappingStats,
}

impl Sessions {
    pub(crate) fn new(proc_root: PathBuf) -> Self {
        Self {
            proc_root,
            by_ssl: HashMap::new(),
            pending: VecDeque::new(),
            stats: TlsMappingStats::default(),
        }
    }

    /// Handles one record (`header`, `data`) stamped `ts`; messages ready
    /// for the pipeline are appended to `out`.
    pub(crate) fn record(
        &mut self,
        header: &TlsHeader,
        data: &[u8],
        ts: Timestamp,
        out: &mut Vec<Plaintext>,
    ) {
        let truncated = header.flags & TLS_FLAG_TRUNCATED != 0;
        match header.kind {
            TLS_KIND_READ => {
                let conn = match self.by_ssl.get(&header.ssl) {
                    Some(c) => Some(*c),
                    None => self.learn(header.ssl, header.tgid, header.fd),
                };
                match conn {
                    Some(c) => out.push(plaintext(c, Direction::Ingress, ts, data, truncated)),
                    None => self.stats.unmapped += 1,
                }
            }
            TLS_KIND_WRITE => match self.by_ssl.get(&header.ssl) {
                Some(c) => out.push(plaintext(*c, Direction::Egress, ts, data, truncated)),
                None => {
                    if self.pending.len() >= MAX_PENDING {
                        self.pending.pop_front();
                        self.stats.unmapped += 1;
                    }
                    self.pending.push_back(Pending {
                        ts,
                        ssl: header.ssl,
                        data: data.to_vec(),
                        truncated,
                    });
                }
            },
            TLS_KIND_BIND => {
                if !self.by_ssl.contains_key(&header.ssl) {
                    // A write to a file or pipe names no connection.
                    let _ = self.learn(header.ssl, header.tgid, header.fd);
                }
                self.release_pending(header.ssl, out);
            }
            TLS_KIND_FREE => {
                self.by_ssl.remove(&header.ssl);
                let before = self.pending.len();
                self.pending.retain(|p| p.ssl != header.ssl);
                self.stats.unmapped += (before - self.pending.len()) as u64;
            }
            _ => self.stats.malformed += 1,
        }
    }

    /// Writes that waited longer than [`PENDING_FOR`] count as unmapped.
    pub(crate) fn expire(&mut self, now: Timestamp) {
        while let Some(p) = self.pending.front() {
            if now.since(p.ts) < PENDING_FOR {
                break;
            }
            self.pending.pop_front();
            self.stats.unmapped += 1;
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_ssl.len()
    }

    fn learn(&mut self, ssl: u64, tgid: u32, fd: i32) -> Option<Connection> {
        if fd == TLS_NO_FD {
            return None;
        }
        let conn = connection_of(&self.proc_root, tgid, fd)?;
        if self.by_ssl.len() >= MAX_SESSIONS
            && let Some(victim) = self.by_ssl.keys().next().copied()
        {
            self.by_ssl.remove(&victim);
            self.stats.sessions_evicted += 1;
        }
        self.by_ssl.insert(ssl, conn);
        Some(conn)
    }

    fn release_pending(&mut self, ssl: u64, out: &mut Vec<Plaintext>) {
        let Some(conn) = self.by_ssl.get(&ssl).copied() else {
            return;
        };
        let mut kept = VecDeque::with_capacity(self.pending.len());
        for p in self.pending.drain(..) {
            if p.ssl == ssl {
                out.push(plaintext(
                    conn,
                    Direction::Egress,
                    p.ts,
                    &p.data,
                    p.truncated,
                ));
            } else {
                kept.push_back(p);
            }
        }
        self.pending = kept;
    }
}

/// Received: the peer sent it to us; sent: we sent it to the peer.
fn plaintext(
    conn: Connection,
    direction: Direction,
    ts: Timestamp,
    data: &[u8],
    truncated: bool,
) -> Plaintext {
    let (src, dst) = match direction {
        Direction::Ingress => (conn.remote, conn.local),
        _ => (conn.local, conn.remote),
    };
    Plaintext {
        ts,
        src,
        dst,
        direction,
        data: data.to_vec(),
        truncated,
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write as _;
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd as _;

    use super::*;

    fn header(kind: u8, ssl: u64, fd: i32) -> TlsHeader {
        TlsHeader {
            ssl,
            tgid: std::process::id(),
            fd,
            kind,
            ..TlsHeader::default()
        }
    }

    fn ts(ms: u64) -> Timestamp {
        Timestamp::from_nanos(ms * 1_000_000)
    }

    #[test]
    fn a_read_names_the_session_and_later_writes_go_back_to_the_peer() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        client.write_all(b"x").unwrap();
        let (conn, peer) = server.accept().unwrap();
        let mut s = Sessions::new("/proc".into());
        let mut out = Vec::new();
        s.record(
            &header(TLS_KIND_READ, 7, conn.as_raw_fd()),
            b"REGISTER",
            ts(1),
            &mut out,
        );
        s.record(
            &header(TLS_KIND_WRITE, 7, TLS_NO_FD),
            b"SIP/2.0 401",
            ts(2),
            &mut out,
        );
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[0].src, out[0].dst),
            (peer, server.local_addr().unwrap())
        );
        assert_eq!(out[0].direction, Direction::Ingress);
        assert_eq!(
            (out[1].src, out[1].dst),
            (server.local_addr().unwrap(), peer)
        );
        assert_eq!(out[1].data, b"SIP/2.0 401");
        assert_eq!(s.stats, TlsMappingStats::default());
    }

    #[test]
    fn a_write_before_any_read_waits_for_its_socket() {
        let server = TcpListener::bind("127.0.0.1:0").unwrap();
        let client = TcpStream::connect(server.local_addr().unwrap()).unwrap();
        let mut s = Sessions::new("/proc".into());
        let mut out = Vec::new();
        s.record(
            &header(TLS_KIND_WRITE, 9, TLS_NO_FD),
            b"REGISTER",
            ts(1),
            &mut out,
        );
        assert!(out.is_empty(), "held until the socket is known");
        s.record(
            &header(TLS_KIND_BIND, 9, client.as_raw_fd()),
            b"",
            ts(2),
            &mut out,
        );
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].dst, server.local_addr().unwrap());
        assert_eq!(out[0].ts, ts(1), "stamped when the library was called");
    }

    #[test]
    fn what_cannot_be_mapped_is_counted_not_lost_silently() {
        let mut s = Sessions::new("/proc".into());
        let mut out = Vec::new();
        // fd 0 of the test is not a TCP socket; no fd at all.
        s.record(&header(TLS_KIND_READ, 1, 0), b"x", ts(1), &mut out);
        s.record(&header(TLS_KIND_READ, 2, TLS_NO_FD), b"x", ts(1), &mut out);
        s.record(&header(TLS_KIND_WRITE, 3, TLS_NO_FD), b"x", ts(1), &mut out);
        s.expire(ts(1) + Duration::from_secs(3));
        s.record(
            &header(TLS_KIND_WRITE, 4, TLS_NO_FD),
            b"x",
            ts(5000),
            &mut out,
        );
        s.record(
            &header(TLS_KIND_FREE, 4, TLS_NO_FD),
            b"",
            ts(5001),
            &mut out,
        );
        assert!(out.is_empty());
        assert_eq!(s.stats.unmapped, 4);
    }
}
