//! Driving the real `sipscope` binary, dumpcap, kamailio and SIPp inside the
//! test namespaces.

use std::{collections::BTreeMap, net::IpAddr, path::PathBuf, time::Duration};

use crate::support::{
    TempDir, fixture,
    netns::{Netns, VethPair, in_netns},
    process::NsProcess,
    wait_for,
};

pub const START: Duration = Duration::from_secs(20);
pub const STOP: Duration = Duration::from_secs(10);

/// `sipscope run` attached to the host end of the veth pair.
pub struct Agent {
    pub proc: NsProcess,
    pub pcap: PathBuf,
}

impl Agent {
    pub fn start(pair: &VethPair, dir: &TempDir, extra: &[&str]) -> Self {
        let pcap = dir.join("agent.pcap");
        let pcap_s = pcap.to_str().unwrap().to_owned();
        let mut args = vec![
            "run",
            "--iface",
            pair.host_if.as_str(),
            "--write-pcap",
            pcap_s.as_str(),
        ];
        args.extend_from_slice(extra);
        // TLS probing is host-wide (it follows PBX processes, not the
        // interface): only the tests about it turn it on, so another
        // test's kamailio never shows up in this agent's output.
        if !extra.contains(&"--tls") {
            args.extend(["--tls", "off"]);
        }
        let mut proc = NsProcess::spawn(
            &pair.host,
            &dir.path,
            "sipscope",
            env!("CARGO_BIN_EXE_sipscope"),
            &args,
        );
        proc.wait_output("capturing on", START);
        Self { proc, pcap }
    }

    /// SIGINT; returns stdout and the parsed counters.
    pub fn stop(&mut self) -> (String, BTreeMap<String, u64>) {
        let status = self.proc.interrupt(STOP);
        let out = self.proc.stdout_text();
        assert!(
            status.success(),
            "sipscope exited with {status}\nstdout:\n{out}\nstderr:\n{}",
            self.proc.stderr_text()
        );
        let counters = parse_counters(&out);
        (out, counters)
    }
}

/// Parses `capture counters: a=1 b=2 ...`.
pub fn parse_counters(stdout: &str) -> BTreeMap<String, u64> {
    let line = stdout
        .lines()
        .find_map(|l| l.strip_prefix("capture counters: "))
        .unwrap_or_else(|| panic!("no counters line in:\n{stdout}"));
    line.split_whitespace()
        .map(|kv| {
            let (k, v) = kv.split_once('=').expect("name=value");
            (k.to_owned(), v.parse().expect("counter value"))
        })
        .collect()
}

/// RFC 863 discard port: probe traffic that is certainly not SIP.
const DISCARD_PORT: u16 = 9;

/// dumpcap on the same interface: the reference capture.
pub struct Dumpcap {
    pub proc: NsProcess,
    pub pcap: PathBuf,
}

impl Dumpcap {
    /// Starts dumpcap on the host end of `pair` and returns once it is
    /// really capturing: "Capturing on" is printed before the capture
    /// socket sees traffic, so probe datagrams (to the discard port, never
    /// SIP) are sent from the peer until one shows up in dumpcap's file.
    pub fn start(pair: &VethPair, dir: &TempDir) -> Self {
        let pcap = dir.join("dumpcap.pcap");
        let mut proc = NsProcess::spawn(
            &pair.host,
            &dir.path,
            "dumpcap",
            "dumpcap",
            &["-i", &pair.host_if, "-P", "-w", pcap.to_str().unwrap()],
        );
        proc.wait_output("Capturing on", START);
        let probe = in_netns(&pair.peer, || {
            std::net::UdpSocket::bind((VethPair::PEER_V4, 0)).expect("probe socket")
        });
        wait_for(START, "dumpcap to capture a probe datagram", || {
            let _ = probe.send_to(b"probe", (VethPair::HOST_V4, DISCARD_PORT));
            let frames = crate::support::pcap::read_frames_so_far(&pcap);
            let seen = crate::support::pcap::datagrams(&frames, &[DISCARD_PORT]);
            (!seen.is_empty()).then_some(())
        });
        Self { proc, pcap }
    }

    /// Waits until dumpcap's file holds `n` SIP datagrams on `ports`:
    /// libpcap hands packets over in blocks, up to a block timeout later,
    /// and anything not handed over when dumpcap is stopped is lost.
    pub fn wait_for_datagrams(&self, ports: &[u16], n: usize) {
        wait_for(
            START,
            &format!("dumpcap to write {n} SIP datagrams"),
            || {
                let frames = crate::support::pcap::read_frames_so_far(&self.pcap);
                (crate::support::pcap::datagrams(&frames, ports).len() >= n).then_some(())
            },
        );
    }

    pub fn stop(&mut self) {
        let status = self.proc.interrupt(STOP);
        assert!(
            status.success(),
            "dumpcap: {status}\n{}",
            self.proc.stderr_text()
        );
    }
}

/// Waits until something in `ns` listens on UDP `port`.
pub fn wait_udp_listening(ns: &Netns, port: u16) {
    wait_for(START, &format!("UDP port {port} to listen"), || {
        let out = ns.exec_stdout("ss", &["-Hlun", "sport", "=", &format!(":{port}")]);
        (!out.trim().is_empty()).then_some(())
    });
}

/// kamailio as a registrar on `addr:port` in the host namespace.
pub fn start_kamailio(ns: &Netns, dir: &TempDir, addr: IpAddr, port: u16) -> NsProcess {
    let listen = match addr {
        IpAddr::V4(a) => format!("udp:{a}:{port}"),
        IpAddr::V6(a) => format!("udp:[{a}]:{port}"),
    };
    let proc = spawn_kamailio(ns, dir, "kamailio/registrar.cfg", &[&listen], &[]);
    wait_udp_listening(ns, port);
    proc
}

/// kamailio in `ns` with the fixture config `cfg`, listening on each of
/// `listen` (`udp:IP:PORT`), with `args` added (`-A NAME` defines); its
/// run directory is in `dir`. The caller waits for it to listen.
pub fn spawn_kamailio(
    ns: &Netns,
    dir: &TempDir,
    cfg: &str,
    listen: &[&str],
    args: &[&str],
) -> NsProcess {
    let cfg = fixture(cfg);
    let rundir = dir.join("kamailio");
    std::fs::create_dir_all(&rundir).unwrap();
    let rundir = rundir.to_str().unwrap().to_owned();
    let mut all = vec![
        "-f",
        cfg.to_str().unwrap(),
        "-DD",
        "-E",
        "-Y",
        &rundir,
        "-w",
        &rundir,
    ];
    for l in listen {
        all.extend(["-l", l]);
    }
    all.extend_from_slice(args);
    NsProcess::spawn(ns, &dir.path, "kamailio", "kamailio", &all)
}

/// SIPp registers `alice` `times` times from the peer end of `pair` with
/// the registrar on the host end (port 5060), to completion.
pub fn register_alice(pair: &VethPair, dir: &TempDir, times: u32) {
    run_sipp_register(
        &pair.peer,
        dir,
        &fixture("sipp/uac_register.xml"),
        VethPair::PEER_V4.into(),
        VethPair::HOST_V4.into(),
        5060,
        times,
    );
}

/// Runs SIPp's REGISTER scenario `calls` times from the peer namespace
/// against `server:port`, to completion.
pub fn run_sipp_register(
    ns: &Netns,
    dir: &TempDir,
    scenario: &std::path::Path,
    local: IpAddr,
    server: IpAddr,
    port: u16,
    calls: u32,
) {
    run_sipp(
        ns,
        dir,
        scenario,
        (local, server, port),
        calls,
        &["-s", "alice"],
    );
}

/// Runs a SIPp client scenario `calls` times from `local` against
/// `server:port` with `keys` (`-s`, `-au`, `-key ...`), to completion.
pub fn run_sipp(
    ns: &Netns,
    dir: &TempDir,
    scenario: &std::path::Path,
    (local, server, port): (IpAddr, IpAddr, u16),
    calls: u32,
    keys: &[&str],
) {
    let remote = match server {
        IpAddr::V4(a) => format!("{a}:{port}"),
        IpAddr::V6(a) => format!("[{a}]:{port}"),
    };
    let local_port = crate::support::process::free_udp_port().to_string();
    let calls = calls.to_string();
    let local = local.to_string();
    let mut args = vec![
        "-sf",
        scenario.to_str().unwrap(),
        "-i",
        &local,
        "-p",
        &local_port,
        "-m",
        &calls,
        "-r",
        "20",
        "-timeout",
        "15s",
        "-nostdin",
    ];
    args.extend_from_slice(keys);
    args.push(&remote);
    let mut sipp = NsProcess::spawn(ns, &dir.path, "sipp", "sipp", &args);
    let status = sipp.wait_exit(Duration::from_secs(30));
    assert!(
        status.success(),
        "SIPp failed ({status}): the registrar did not answer\nstdout:\n{}\nstderr:\n{}",
        sipp.stdout_text(),
        sipp.stderr_text()
    );
}

/// The name of the interface lock file of an agent on `pair`'s host side
/// (`<netns inode>-<ifindex>.lock`, in `$RUNTIME_DIRECTORY` or
/// `/run/sipscope`).
pub fn lock_file_name(pair: &VethPair) -> String {
    let iface = pair.host_if.clone();
    let (netns, ifindex) = in_netns(&pair.host, move || {
        let ns = std::fs::metadata("/proc/thread-self/ns/net").unwrap();
        let name = std::ffi::CString::new(iface).unwrap();
        // SAFETY: a valid C string.
        let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
        (std::os::unix::fs::MetadataExt::ino(&ns), index)
    });
    format!("{netns}-{ifindex}.lock")
}
