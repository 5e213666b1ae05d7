//! The HEP collector of the tests, dumpcap, tshark and sngrep.

use std::io::Read as _;
use std::net::{SocketAddr, TcpListener, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::decode::{self, Hep};
use crate::scenario::Family;

pub use sipscope::packet::Transport;

/// The spec-written tshark dissector beside this file.
pub fn dissector() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/hep/hep.lua")
}

/// A HEP collector on the loopback that decodes what it receives with
/// the spec decoder (a UDP datagram or TCP stream that does not decode
/// fails the test).
pub struct Collector {
    transport: Transport,
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Hep>>>,
    errors: Arc<Mutex<Vec<String>>>,
}

impl Collector {
    pub fn start(transport: Transport, family: Family) -> Self {
        let bind = match family {
            Family::V4 => "127.0.0.1:0",
            Family::V6 => "[::1]:0",
        };
        let received = Arc::new(Mutex::new(Vec::new()));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let (r, e) = (received.clone(), errors.clone());
        let addr = match transport {
            Transport::Udp => {
                let s = UdpSocket::bind(bind).unwrap();
                let addr = s.local_addr().unwrap();
                std::thread::spawn(move || {
                    let mut buf = vec![0u8; 65536];
                    while let Ok(n) = s.recv(&mut buf) {
                        match decode::decode(&buf[..n]) {
                            Ok((h, used)) if used == n => r.lock().unwrap().push(h),
                            Ok((_, used)) => {
                                e.lock().unwrap().push(format!("{} stray octets", n - used))
                            }
                            Err(err) => e.lock().unwrap().push(err),
                        }
                    }
                });
                addr
            }
            Transport::Tcp | Transport::Tls => {
                let l = TcpListener::bind(bind).unwrap();
                let addr = l.local_addr().unwrap();
                std::thread::spawn(move || serve_tcp(l, r, e));
                addr
            }
        };
        Self {
            transport,
            addr,
            received,
            errors,
        }
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn url(&self) -> String {
        format!("{}://{}", self.transport.as_str(), self.addr)
    }

    /// Waits until `n` packets have arrived; panics on a decode error.
    pub fn wait_for(&self, n: usize) -> Vec<Hep> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let errors = self.errors.lock().unwrap().clone();
            assert!(errors.is_empty(), "collector: {errors:?}");
            let got = self.received.lock().unwrap().clone();
            if got.len() >= n {
                assert_eq!(got.len(), n, "more HEP packets than the agent says it sent");
                return got;
            }
            assert!(
                Instant::now() < deadline,
                "{} of {n} HEP packets arrived",
                got.len()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Accepts connections one after the other (a reconnect is a new one) and
/// decodes each stream.
pub fn serve_tcp(l: TcpListener, r: Arc<Mutex<Vec<Hep>>>, e: Arc<Mutex<Vec<String>>>) {
    for conn in l.incoming() {
        let Ok(mut conn) = conn else { return };
        let (r, e) = (r.clone(), e.clone());
        std::thread::spawn(move || {
            let mut pending = Vec::new();
            let mut buf = vec![0u8; 65536];
            while let Ok(n) = conn.read(&mut buf) {
                if n == 0 {
                    break;
                }
                pending.extend_from_slice(&buf[..n]);
                loop {
                    if pending.len() < 6 {
                        break;
                    }
                    let total = usize::from(u16::from_be_bytes([pending[4], pending[5]]));
                    if pending.len() < total.max(6) {
                        break;
                    }
                    match decode::decode(&pending) {
                        Ok((h, used)) => {
                            r.lock().unwrap().push(h);
                            pending.drain(..used);
                        }
                        Err(err) => {
                            e.lock().unwrap().push(err);
                            return;
                        }
                    }
                }
            }
        });
    }
}

/// dumpcap on the loopback, HEP's port only (root).
pub struct Dumpcap {
    child: Child,
    path: PathBuf,
}

impl Dumpcap {
    pub fn start(path: &Path, port: u16) -> Self {
        // SAFETY: geteuid has no preconditions.
        let euid = unsafe { libc::geteuid() };
        assert!(
            euid == 0,
            "the HEP tests capture the loopback with dumpcap: run them as root"
        );
        let child = Command::new("dumpcap")
            .args(["-q", "-P", "-i", "lo", "-f"])
            .arg(format!("port {port}"))
            .arg("-w")
            .arg(path)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("dumpcap (cargo xtask setup installs tshark)");
        // Ready once the file has its header.
        let deadline = Instant::now() + Duration::from_secs(10);
        while std::fs::metadata(path).map_or(true, |m| m.len() < 24) {
            assert!(Instant::now() < deadline, "dumpcap did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        std::thread::sleep(Duration::from_millis(200));
        Self {
            child,
            path: path.to_owned(),
        }
    }

    pub fn stop(mut self) -> PathBuf {
        // Let the last packets reach the capture buffer.
        std::thread::sleep(Duration::from_millis(300));
        // SAFETY: a signal to our own child, which has not been waited for.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
        self.path.clone()
    }
}

/// `sipscope analyze FILE ARGS...`; its stdout.
pub fn analyze(input: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .arg("analyze")
        .arg(input)
        .args(args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "sipscope analyze: {}\n{stdout}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// tshark `-T fields`, one row per frame matching `filter`.
pub fn tshark_fields(
    pcap: &Path,
    extra: &[&str],
    filter: &str,
    fields: &[&str],
) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-n").arg("-r").arg(pcap).args(extra);
    cmd.args([
        "-o",
        "tcp.desegment_tcp_streams:TRUE",
        "-Y",
        filter,
        "-T",
        "fields",
        "-E",
        "separator=|",
    ]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark (cargo xtask setup installs it)");
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

/// Source and destination address and port, each as the IPv4/IPv6 or
/// UDP/TCP pair of tshark fields of which one is set ([`either`]).
pub const ADDRESSES: [&str; 8] = [
    "ip.src",
    "ipv6.src",
    "ip.dst",
    "ipv6.dst",
    "udp.srcport",
    "tcp.srcport",
    "udp.dstport",
    "tcp.dstport",
];

/// The one of two tshark columns that is set (ip.src or ipv6.src, ...).
pub fn either<'a>(a: &'a str, b: &'a str) -> &'a str {
    if a.is_empty() { b } else { a }
}

/// tshark's hex bytes (with or without colons).
pub fn unhex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| *c != ':').collect();
    hex::decode(s).unwrap_or_else(|e| panic!("hex {e}"))
}

/// `frame.time_epoch` ("1700000000.001000000") as nanoseconds, exactly.
pub fn epoch_ns(s: &str) -> u64 {
    let (secs, frac) = s.split_once('.').unwrap_or((s, "0"));
    let frac = format!("{frac:0<9}");
    secs.parse::<u64>().unwrap() * 1_000_000_000 + frac[..9].parse::<u64>().unwrap()
}

/// sngrep, with its own HEP (EEP) parser, reads the HEP capture and writes
/// the SIP it found to a pcap: the same messages, addresses and ports.
pub fn assert_sngrep_agrees(hep_pcap: &Path, port: u16, sip: &[&Hep]) {
    let dir = hep_pcap.parent().unwrap();
    let out = dir.join("sngrep.pcap");
    let status = Command::new("sngrep")
        .args(["-N", "-q", "-E", "-I"])
        .arg(hep_pcap)
        .arg("-O")
        .arg(&out)
        .arg(format!("udp port {port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("sngrep (cargo xtask setup installs it)");
    assert!(status.success(), "sngrep failed");
    // sngrep keeps every HEP packet it reads; the SIP ones are those
    // tshark's SIP dissector reads a Call-ID from.
    let rows = tshark_fields(
        &out,
        &[],
        "sip.Call-ID",
        &[&ADDRESSES[..], &["sip.Call-ID"]].concat(),
    );
    let theirs: Vec<(String, String, String, String, String)> = rows
        .iter()
        .map(|r| {
            let pick = |a: &str, b: &str| {
                if a.is_empty() {
                    b.to_owned()
                } else {
                    a.to_owned()
                }
            };
            (
                pick(&r[0], &r[1]),
                pick(&r[2], &r[3]),
                pick(&r[4], &r[5]),
                pick(&r[6], &r[7]),
                r[8].clone(),
            )
        })
        .collect();
    // sngrep 1.6 writes the packets it got over HEP with IPv6 addresses
    // as 0.0.0.0 (its pcap writer builds IPv4 headers): for IPv6 it
    // vouches for ports and Call-IDs only.
    let v6 = sip.iter().any(|h| h.src.is_ipv6());
    let ip = |a: std::net::IpAddr| {
        if v6 {
            "0.0.0.0".to_owned()
        } else {
            a.to_string()
        }
    };
    let ours: Vec<(String, String, String, String, String)> = sip
        .iter()
        .map(|h| {
            (
                ip(h.src.ip()),
                ip(h.dst.ip()),
                h.src.port().to_string(),
                h.dst.port().to_string(),
                h.correlation().unwrap_or_default(),
            )
        })
        .collect();
    assert_eq!(theirs, ours, "sngrep's reading of the HEP stream");
}
