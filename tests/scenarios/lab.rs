//! The scenario lab: kamailio (registrar.cfg) in the registrar namespace,
//! SIPp as the PBX in the client namespace, the real agent and optionally
//! dumpcap on the registrar's veth. With `nat`, the PBX sits in a third
//! namespace behind a router doing nft masquerade, and the registrar and
//! the router's outside use public-scope addresses (198.51.100.0/24).

use std::path::PathBuf;
use std::time::Duration;

use crate::agent::{Agent, Dumpcap, START, wait_udp_listening};
use crate::require_root;
use crate::support::netns::{Netns, VethPair, run};
use crate::support::process::{NsProcess, free_udp_port};
use crate::support::{TempDir, fixture, unique_suffix, wait_for};

/// The PBX's private address in the NAT lab.
pub const PBX_V4: &str = "10.88.0.2";
const ROUTER_INSIDE_V4: &str = "10.88.0.1";
/// `pair.host`'s address in the NAT lab (public scope for sipscope).
pub const REGISTRAR_PUBLIC_V4: &str = "198.51.100.2";
/// The NAT router's outside address: what the far end sees.
pub const ROUTER_PUBLIC_V4: &str = "198.51.100.1";

/// The registering side: a SIPp scenario file and its keys.
pub struct Peer {
    pub file: &'static str,
    pub args: Vec<String>,
    pub expires: u32,
    /// SIP over TCP (SIPp `-t t1`, kamailio also listening on TCP).
    pub tcp: bool,
}

impl Peer {
    pub fn sipp(file: &'static str, args: &[&str]) -> Self {
        Self {
            file,
            args: args.iter().map(|s| s.to_string()).collect(),
            expires: 60,
            tcp: false,
        }
    }
}

pub struct Lab {
    // Processes before namespaces: dropped (killed) first.
    pbx_ns: Option<Netns>,
    pair: VethPair,
    dir: TempDir,
    registrar: String,
    pbx_addr: String,
    defines: Vec<String>,
}

/// What a scenario left behind; `dir` holds the captures and logs.
pub struct Run {
    pub agent_pcap: PathBuf,
    pub dumpcap_pcap: Option<PathBuf>,
    pub dir: TempDir,
}

impl Lab {
    pub fn new(nat: bool, kamailio_defines: &[&str]) -> Self {
        require_root();
        let pair = VethPair::new();
        let dir = TempDir::new("scenario");
        let defines = kamailio_defines.iter().map(|s| s.to_string()).collect();
        if !nat {
            return Self {
                pbx_ns: None,
                registrar: VethPair::HOST_V4.to_string(),
                pbx_addr: VethPair::PEER_V4.to_string(),
                pair,
                dir,
                defines,
            };
        }
        let pbx = behind_nat(&pair, &dir);
        Self {
            pbx_ns: Some(pbx),
            registrar: REGISTRAR_PUBLIC_V4.to_owned(),
            pbx_addr: PBX_V4.to_owned(),
            pair,
            dir,
            defines,
        }
    }

    /// The namespaces: the registrar's (and the agent's) is `pair().host`.
    pub fn pair(&self) -> &VethPair {
        &self.pair
    }

    /// The lab's files: captures, logs, configuration.
    pub fn dir(&self) -> &TempDir {
        &self.dir
    }

    /// Starts kamailio as the registrar, listening on UDP and TCP 5060.
    pub fn kamailio(&self) -> NsProcess {
        let listen = format!("udp:{}:5060", self.registrar);
        let listen_tcp = format!("tcp:{}:5060", self.registrar);
        let defines: Vec<&str> = self.defines.iter().map(String::as_str).collect();
        let p = crate::agent::spawn_kamailio(
            &self.pair.host,
            &self.dir,
            "scenarios/registrar.cfg",
            &[&listen, &listen_tcp],
            &defines,
        );
        wait_udp_listening(&self.pair.host, 5060);
        wait_for(START, "kamailio to listen on TCP 5060", || {
            let out = self
                .pair
                .host
                .exec_stdout("ss", &["-Hltn", "sport", "=", ":5060"]);
            (!out.trim().is_empty()).then_some(())
        });
        p
    }

    /// Runs `peer` once to completion with the agent (and dumpcap)
    /// capturing, then stops them.
    pub fn run(self, peer: &Peer, with_dumpcap: bool) -> Run {
        let _kamailio = self.kamailio();
        let mut agent = Agent::start(&self.pair, &self.dir, &[]);
        let mut dumpcap = with_dumpcap.then(|| Dumpcap::start(&self.pair, &self.dir));
        self.sipp(peer);
        let (_, _) = agent.stop();
        let sip_frames = crate::support::pcap::datagrams(
            &crate::support::pcap::read_frames(&agent.pcap),
            &[5060],
        )
        .len();
        assert!(
            sip_frames >= 2,
            "the agent captured {sip_frames} SIP datagrams"
        );
        let dumpcap_pcap = dumpcap.as_mut().map(|d| {
            d.wait_for_datagrams(&[5060], sip_frames);
            d.stop();
            d.pcap.clone()
        });
        Run {
            agent_pcap: agent.pcap.clone(),
            dumpcap_pcap,
            dir: self.dir,
        }
    }

    /// Runs `peer` (SIPp, from the PBX's namespace) once to completion.
    pub fn sipp(&self, peer: &Peer) {
        let ns = self.pbx_ns.as_ref().unwrap_or(&self.pair.peer);
        let mut sipp = spawn_sipp(ns, &self.dir, &self.registrar, &self.pbx_addr, peer);
        let status = sipp.wait_exit(Duration::from_secs(40));
        assert!(
            status.success(),
            "SIPp failed ({status})\nstdout:\n{}\nstderr:\n{}",
            sipp.stdout_text(),
            sipp.stderr_text()
        );
    }
}

/// SIPp running `peer` once from `pbx_addr` in `ns` against
/// `registrar:5060`; its logs in `dir`.
pub fn spawn_sipp(
    ns: &Netns,
    dir: &TempDir,
    registrar: &str,
    pbx_addr: &str,
    peer: &Peer,
) -> NsProcess {
    let scenario = fixture(&format!("scenarios/sipp/{}", peer.file));
    let local_port = free_udp_port().to_string();
    let remote = format!("{registrar}:5060");
    let expires = peer.expires.to_string();
    let mut args = vec![
        remote.as_str(),
        "-sf",
        scenario.to_str().unwrap(),
        "-i",
        pbx_addr,
        "-p",
        &local_port,
        "-m",
        "1",
        "-nostdin",
        "-timeout",
        "30s",
        "-key",
        "expires",
        &expires,
    ];
    if peer.tcp {
        args.extend(["-t", "t1"]);
    }
    args.extend(peer.args.iter().map(String::as_str));
    NsProcess::spawn(ns, &dir.path, "sipp", "sipp", &args)
}

/// The NAT topology: `pair.host` (registrar or PBX) gets the public-scope
/// address [`REGISTRAR_PUBLIC_V4`], `pair.peer` becomes a router
/// ([`ROUTER_PUBLIC_V4`] outside) doing nft masquerade for a third
/// namespace, returned, where [`PBX_V4`] sits behind it:
/// `pair.host <-> router (pair.peer) <-> returned namespace`.
pub fn behind_nat(pair: &VethPair, dir: &TempDir) -> Netns {
    pair.host.ip(&[
        "addr",
        "add",
        &format!("{REGISTRAR_PUBLIC_V4}/24"),
        "dev",
        &pair.host_if,
    ]);
    pair.peer.ip(&[
        "addr",
        "add",
        &format!("{ROUTER_PUBLIC_V4}/24"),
        "dev",
        &pair.peer_if,
    ]);
    let pbx = Netns::new("ssq");
    let sfx = unique_suffix();
    let (inside, pbx_if) = (format!("vr{sfx}"), format!("vq{sfx}"));
    run(
        "ip",
        &[
            "link",
            "add",
            &inside,
            "netns",
            &pair.peer.name,
            "type",
            "veth",
            "peer",
            "name",
            &pbx_if,
            "netns",
            &pbx.name,
        ],
    );
    pair.peer.ip(&[
        "addr",
        "add",
        &format!("{ROUTER_INSIDE_V4}/24"),
        "dev",
        &inside,
    ]);
    pair.peer.ip(&["link", "set", &inside, "up"]);
    pbx.ip(&["addr", "add", &format!("{PBX_V4}/24"), "dev", &pbx_if]);
    pbx.ip(&["link", "set", &pbx_if, "up"]);
    pbx.ip(&["route", "add", "default", "via", ROUTER_INSIDE_V4]);
    let fwd = pair.peer.exec("sysctl", &["-w", "net.ipv4.ip_forward=1"]);
    assert!(
        fwd.status.success(),
        "enabling forwarding in the router namespace"
    );
    let rules = dir.join("nat.nft");
    std::fs::write(
        &rules,
        format!(
            "table ip nat {{\n  chain post {{\n    type nat hook postrouting priority 100;\n    \
             oifname \"{}\" masquerade\n  }}\n}}\n",
            pair.peer_if
        ),
    )
    .unwrap();
    let nft = pair.peer.exec("nft", &["-f", rules.to_str().unwrap()]);
    assert!(
        nft.status.success(),
        "nft masquerade: {}",
        String::from_utf8_lossy(&nft.stderr)
    );
    pbx
}
