//! Real clients nobody here wrote, against kamailio (registrar.cfg): PJSIP
//! through its Python bindings (tests/fixtures/scenarios/pjsua.py, null
//! audio device), baresip, sipsak. The agent (`sipscope run --json`)
//! captures on the host's veth and dumpcap beside it; each test asserts
//! the EXACT set of codes both live (the agent's own findings) and
//! offline (the library pipeline on dumpcap's capture).
//!
//! Topology: kamailio listens on `pair.host` (10.77.0.1), where the agent
//! runs, unless a test puts the client there and the registrar across the
//! link; clients run in `pair.peer` (10.77.0.2).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::agent::{Agent, Dumpcap, STOP, wait_udp_listening};
use crate::support::netns::{Netns, VethPair};
use crate::support::process::NsProcess;
use crate::support::{TempDir, fixture};
use crate::{analyse, codes, require_root, set};

const HOST: &str = "10.77.0.1";
const PEER: &str = "10.77.0.2";

/// Fails (never skips) when a real peer is missing.
fn require_peer(program: &str, probe: &[&str]) {
    let ok = std::process::Command::new(program)
        .args(probe)
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        ok,
        "`{program} {}` failed: the real peer is missing; run `cargo xtask setup`",
        probe.join(" ")
    );
}

fn require_pjsua() {
    require_peer("python3", &["-c", "import pjsua2"]);
}

fn require_baresip() {
    require_peer("sh", &["-c", "command -v baresip"]);
}

/// What one scenario left behind: the codes each way.
struct Found {
    live_records: Vec<serde_json::Value>,
    live: BTreeSet<String>,
    offline: BTreeSet<String>,
    live_text: String,
    offline_text: String,
}

impl Found {
    fn assert_codes(&self, expected: &[&'static str]) {
        let want: BTreeSet<String> = set(expected).into_iter().map(String::from).collect();
        assert_eq!(self.live, want, "live findings:\n{}", self.live_text);
        assert_eq!(
            self.offline, want,
            "offline findings:\n{}",
            self.offline_text
        );
    }
}

/// kamailio (with `defines`) in `registrar_ns` on `registrar`, the agent
/// (`--json`, and `agent_args`) and dumpcap on `pair.host`.
struct ClientLab {
    // Processes before the namespaces: dropped (killed) first.
    kamailio: Option<NsProcess>,
    agent: Agent,
    dumpcap: Dumpcap,
    pair: VethPair,
    dir: TempDir,
}

impl ClientLab {
    fn start(defines: &[&str], registrar_on_peer: bool, agent_args: &[&str]) -> Self {
        require_root();
        let pair = VethPair::new();
        let dir = TempDir::new("clients");
        let (ns, addr) = if registrar_on_peer {
            (&pair.peer, PEER)
        } else {
            (&pair.host, HOST)
        };
        let listen = format!("udp:{addr}:5060");
        let mut args = Vec::new();
        for d in defines {
            args.extend(["-A", d]);
        }
        let kamailio =
            crate::agent::spawn_kamailio(ns, &dir, "scenarios/registrar.cfg", &[&listen], &args);
        wait_udp_listening(ns, 5060);
        let mut all = vec!["--json"];
        all.extend_from_slice(agent_args);
        let agent = Agent::start(&pair, &dir, &all);
        let dumpcap = Dumpcap::start(&pair, &dir);
        Self {
            kamailio: Some(kamailio),
            agent,
            dumpcap,
            pair,
            dir,
        }
    }

    /// pjsua.py in `ns` bound to `bind`, as `user` with `password`
    /// (registering to, and calling through, `registrar`), with `args`.
    #[allow(clippy::too_many_arguments)]
    fn pjsua(
        &self,
        ns: &Netns,
        name: &str,
        bind: &str,
        registrar: &str,
        (user, password): (&str, &str),
        args: &[&str],
    ) -> NsProcess {
        require_pjsua();
        let script = fixture("scenarios/pjsua.py");
        let mut all = vec![
            script.to_str().unwrap(),
            "--bind",
            bind,
            "--registrar",
            registrar,
            "--user",
            user,
            "--password",
            password,
        ];
        all.extend_from_slice(args);
        NsProcess::spawn(ns, &self.dir.path, name, "python3", &all)
    }

    /// PJSIP as 1001 on the agent's host, with `registrar`.
    fn pjsua_on_host(&self, name: &str, registrar: &str, args: &[&str]) -> NsProcess {
        let who = ("1001", "secret1001");
        self.pjsua(&self.pair.host, name, HOST, registrar, who, args)
    }

    /// PJSIP as 1001 on the peer, registering to the host's kamailio.
    fn pjsua_1001(&self, password: &str, args: &[&str]) -> NsProcess {
        self.pjsua(
            &self.pair.peer,
            "pjsua",
            PEER,
            HOST,
            ("1001", password),
            args,
        )
    }

    /// baresip for account `user` (password `secret<user>`) on `ip`,
    /// through the proxy at `proxy`, auto-answering; it quits after `secs`
    /// (hanging up its call). `dial`: a URI to call at start.
    #[allow(clippy::too_many_arguments)]
    fn baresip(
        &self,
        ns: &Netns,
        user: &str,
        ip: &str,
        iface: &str,
        rtp_ports: &str,
        proxy: &str,
        secs: u32,
        dial: Option<&str>,
    ) -> NsProcess {
        require_baresip();
        let conf = self.dir.join(&format!("baresip-{user}"));
        std::fs::create_dir_all(&conf).unwrap();
        let out = conf.join("out.wav");
        // ausine generates 48 kHz stereo; baresip resamples to PCMU.
        std::fs::write(
            conf.join("config"),
            format!(
                "poll_method epoll\nsip_listen {ip}:5064\nsip_trans_def udp\n\
                 audio_player aufile,{out}\naudio_source ausine,440\n\
                 audio_alert aufile,{alert}\nausrc_srate 48000\nauplay_srate 48000\n\
                 ausrc_channels 2\nauplay_channels 1\nrtp_ports {rtp_ports}\n\
                 net_interface {iface}\nmodule_path /usr/lib/baresip/modules\n\
                 module g711.so\nmodule ausine.so\nmodule aufile.so\n\
                 module_app account.so\nmodule_app menu.so\n",
                out = out.display(),
                alert = conf.join("alert.wav").display(),
            ),
        )
        .unwrap();
        std::fs::write(
            conf.join("accounts"),
            format!(
                "<sip:{user}@sipscope.test>;auth_pass=secret{user};\
                 outbound=\"sip:{proxy};lr\";regint=60;answermode=auto;audio_codecs=PCMU\n"
            ),
        )
        .unwrap();
        let secs = secs.to_string();
        let mut args = vec!["-f", conf.to_str().unwrap(), "-t", &secs];
        let cmd;
        if let Some(uri) = dial {
            cmd = format!("d {uri}");
            args.extend(["-e", &cmd]);
        }
        NsProcess::spawn(
            ns,
            &self.dir.path,
            &format!("baresip-{user}"),
            "baresip",
            &args,
        )
    }

    /// Stops kamailio, the agent and dumpcap; the findings each way.
    fn finish(mut self) -> Found {
        std::thread::sleep(Duration::from_millis(500));
        let sip = crate::support::pcap::datagrams(
            &crate::support::pcap::read_frames_so_far(&self.agent.pcap),
            &[5060],
        )
        .len();
        self.dumpcap.wait_for_datagrams(&[5060], sip);
        self.kamailio.take();
        let status = self.agent.proc.interrupt(STOP);
        let out = self.agent.proc.stdout_text();
        assert!(
            status.success(),
            "sipscope exited with {status}\n{out}\n{}",
            self.agent.proc.stderr_text()
        );
        self.dumpcap.stop();
        let live_records: Vec<serde_json::Value> = out
            .lines()
            .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
            .filter(|v| v["type"] == "diagnosis")
            .collect();
        let live = live_records
            .iter()
            .map(|v| v["code"].as_str().unwrap_or_default().to_owned())
            .collect();
        let offline_ds = analyse(&self.dumpcap.pcap, None);
        let offline = codes(&offline_ds).into_iter().map(String::from).collect();
        let _ = &self.pair;
        Found {
            live_records: live_records.clone(),
            live,
            offline,
            live_text: format!("{live_records:#?}"),
            offline_text: format!("{offline_ds:#?}"),
        }
    }
}

/// A dropping nft rule on `ns`'s input for UDP to `port` (the far end's
/// firewall: nothing ever answers).
fn drop_input(ns: &Netns, dir: &Path, port: u16) {
    crate::support::nft::add_rule(ns, dir, "input", &format!("udp dport {port} counter drop"));
}

#[test]
fn pjsip_healthy_registration_raises_nothing() {
    let lab = ClientLab::start(&[], false, &[]);
    let mut ua = lab.pjsua_1001("secret1001", &["--run", "3"]);
    ua.wait_success(Duration::from_secs(30));
    assert!(
        ua.stdout_text().contains("reg state 200"),
        "{}",
        ua.stdout_text()
    );
    lab.finish().assert_codes(&[]);
}

#[test]
fn pjsip_wrong_password_on_an_outbound_call_is_auth_rejected() {
    // INVITE, 407, INVITE with Proxy-Authorization, 407: PJSIP gives up.
    let lab = ClientLab::start(&["WITH_INBOUND", "WITH_CALL_AUTH"], false, &[]);
    let mut ua = lab.pjsua_1001(
        "Wr0ngPw",
        &[
            "--no-register",
            "--call",
            "sip:1002@sipscope.test",
            "--run",
            "3",
        ],
    );
    ua.wait_success(Duration::from_secs(30));
    assert!(
        ua.stdout_text().contains("DISCONNECTED 407"),
        "{}",
        ua.stdout_text()
    );
    lab.finish().assert_codes(&["auth.rejected"]);
}

#[test]
fn pjsip_register_to_a_silent_registrar_in_a_short_capture_is_no_response() {
    // The PBX (PJSIP, on the agent's host) registers out; the registrar's
    // firewall drops everything; the capture ends after ~9 s, long before
    // Timer F: five sends, no answer.
    let lab = ClientLab::start(&[], true, &[]);
    drop_input(&lab.pair.peer, &lab.dir.path, 5060);
    let mut ua = lab.pjsua_on_host("pjsua", PEER, &["--run", "9"]);
    ua.wait_success(Duration::from_secs(30));
    let found = lab.finish();
    found.assert_codes(&["net.no_response"]);
    assert!(
        found
            .live_text
            .contains("capture ended before the client gave up"),
        "{}",
        found.live_text
    );
}

#[test]
fn pjsip_registrar_alternating_200_and_503_is_flapping_across_call_ids() {
    // PJSIP takes a new Call-ID after each 503: one binding all the same.
    // Refresh 5 s before the 10 s expiry, retry 1 s after a 503 (no
    // random extra): by 16 s ok, 503, ok, 503, ok (4 changes), no lapse.
    let lab = ClientLab::start(&["WITH_FLAP"], false, &[]);
    let mut ua = lab.pjsua_1001(
        "secret1001",
        &["--expires", "10", "--retry", "1", "--run", "16"],
    );
    ua.wait_success(Duration::from_secs(50));
    let out = ua.stdout_text();
    assert!(
        out.matches("reg state 200").count() >= 3 && out.contains("reg state 503"),
        "{out}"
    );
    lab.finish().assert_codes(&["reg.flapping", "reg.rejected"]);
}

#[test]
fn baresip_call_through_kamailio_with_two_way_rtp_raises_nothing() {
    // 1002 on the proxy's host, 1001 across the link calls it; both
    // register, the INVITE is proxy-authenticated, 8 s of two-way PCMU.
    baresip_call(None, 8).assert_codes(&[]);
}

#[test]
fn pjsip_registering_a_domain_the_registrar_does_not_serve_is_reg_rejected() {
    // 403 without a challenge, with a Warning naming the domain.
    let lab = ClientLab::start(&["WITH_DOMAIN_CHECK"], false, &[]);
    let mut ua = lab.pjsua_1001("secret1001", &["--domain", "other.example", "--run", "3"]);
    ua.wait_success(Duration::from_secs(30));
    assert!(
        ua.stdout_text().contains("reg state 403"),
        "{}",
        ua.stdout_text()
    );
    let found = lab.finish();
    found.assert_codes(&["reg.rejected"]);
    assert!(
        found.live_text.contains("not served here"),
        "{}",
        found.live_text
    );
}

#[test]
fn pjsip_behind_a_port_translating_firewall_is_contact_port_mismatch() {
    // The phone's own firewall rewrites its source port (same address):
    // the REGISTER comes from :40000, its Contact says :5062.
    let lab = ClientLab::start(&[], false, &[]);
    let rules = lab.dir.join("snat.nft");
    std::fs::write(
        &rules,
        format!(
            "table ip sipscope_snat {{\n  chain post {{\n    \
             type nat hook postrouting priority 100;\n    \
             udp sport 5062 snat to {PEER}:40000\n  }}\n}}\n"
        ),
    )
    .unwrap();
    let nft = lab.pair.peer.exec("nft", &["-f", rules.to_str().unwrap()]);
    assert!(
        nft.status.success(),
        "nft snat: {}",
        String::from_utf8_lossy(&nft.stderr)
    );
    let mut ua = lab.pjsua_1001("secret1001", &["--run", "3"]);
    ua.wait_success(Duration::from_secs(30));
    lab.finish()
        .assert_codes(&["nat.contact_port_mismatch", "nat.rewritten_by_peer"]);
}

/// sipsak registering `user` with `password` from the peer (usrloc mode,
/// register only); `symmetric`: send from the port it listens on (-S).
fn sipsak_register(lab: &ClientLab, password: &str, symmetric: bool) -> NsProcess {
    require_peer("sipsak", &["-V"]);
    let uri = format!("sip:1001@{HOST}");
    let mut args = vec![
        "-U", "-s", &uri, "-a", password, "-u", "1001", "-x", "60", "-H", PEER,
    ];
    if symmetric {
        args.push("-S");
    }
    NsProcess::spawn(&lab.pair.peer, &lab.dir.path, "sipsak", "sipsak", &args)
}

#[test]
fn sipsak_healthy_registration_raises_nothing() {
    let lab = ClientLab::start(&[], false, &[]);
    let mut c = sipsak_register(&lab, "secret1001", true);
    c.wait_success(Duration::from_secs(20));
    lab.finish().assert_codes(&[]);
}

#[test]
fn sipsak_sending_from_another_port_than_its_contact_is_contact_port_mismatch() {
    // Without -S sipsak sends from one socket and advertises another in
    // Via and Contact: exactly what a port-translating NAT looks like.
    let lab = ClientLab::start(&[], false, &[]);
    let mut c = sipsak_register(&lab, "secret1001", false);
    c.wait_success(Duration::from_secs(20));
    lab.finish()
        .assert_codes(&["nat.contact_port_mismatch", "nat.rewritten_by_peer"]);
}

#[test]
fn sipsak_wrong_password_is_auth_rejected() {
    let lab = ClientLab::start(&[], false, &[]);
    let mut c = sipsak_register(&lab, "Wr0ngPw", true);
    let _ = c.wait_exit(Duration::from_secs(20));
    lab.finish().assert_codes(&["auth.rejected"]);
}

/// 1002 (baresip) on the proxy's host, 1001 (baresip) across the link
/// calls it through kamailio, with `rule` (nft, on the caller's output)
/// in the way; the caller hangs up after `secs`.
fn baresip_call(rule: Option<&str>, secs: u32) -> Found {
    let lab = ClientLab::start(&["WITH_INBOUND", "WITH_CALL_AUTH"], false, &[]);
    if let Some(rule) = rule {
        crate::support::nft::add_rule(&lab.pair.peer, &lab.dir.path, "output", rule);
    }
    let mut callee = lab.baresip(
        &lab.pair.host,
        "1002",
        HOST,
        &lab.pair.host_if,
        "10020-10030",
        HOST,
        secs + 4,
        None,
    );
    std::thread::sleep(Duration::from_millis(1500));
    let mut caller = lab.baresip(
        &lab.pair.peer,
        "1001",
        PEER,
        &lab.pair.peer_if,
        "10000-10010",
        HOST,
        secs,
        Some("sip:1002@sipscope.test"),
    );
    caller.wait_success(Duration::from_secs(40));
    callee.wait_success(Duration::from_secs(40));
    lab.finish()
}

#[test]
fn baresip_call_hung_up_after_seconds_of_one_way_audio_is_one_way() {
    // The caller's RTP never leaves its host; the caller hangs up after
    // about 4 s, within the 5 s media grace: still one-way audio.
    let found = baresip_call(Some("udp dport 10020-10030 counter drop"), 4);
    found.assert_codes(&["media.one_way"]);
}

#[test]
fn baresip_call_losing_five_percent_one_way_is_media_quality_on_that_direction_only() {
    let found = baresip_call(
        Some("udp dport 10020-10030 numgen random mod 100 < 5 counter drop"),
        12,
    );
    found.assert_codes(&["media.quality"]);
    // One finding, about the caller's direction (10.77.0.2 → 10.77.0.1).
    let directions: Vec<String> = found
        .live_records
        .iter()
        .filter(|r| r["code"] == "media.quality")
        .flat_map(|r| r["evidence"].as_array().cloned().unwrap_or_default())
        .filter(|e| e["name"] == "direction")
        .map(|e| e["value"].as_str().unwrap_or_default().to_owned())
        .collect();
    assert_eq!(directions.len(), 1, "{}", found.live_text);
    assert!(
        directions[0].starts_with(&format!("{PEER}:")),
        "{directions:?}"
    );
}

#[test]
fn invite_to_a_registered_pjsip_dropped_by_its_firewall_in_a_short_capture_is_inbound_blocked() {
    // 1002 (PJSIP, across the link) registers; then its firewall drops
    // SIP. 1001 (PJSIP on the proxy's host) calls it: kamailio's INVITE to
    // the registered contact is retransmitted and never answered; the
    // capture ends after ~8 s, long before Timer B.
    let lab = ClientLab::start(&["WITH_INBOUND"], false, &[]);
    let mut callee = lab.pjsua(
        &lab.pair.peer,
        "callee",
        PEER,
        HOST,
        ("1002", "secret1002"),
        &["--run", "14"],
    );
    crate::support::wait_for(Duration::from_secs(10), "1002 to register", || {
        callee.stdout_text().contains("reg state 200").then_some(())
    });
    drop_input(&lab.pair.peer, &lab.dir.path, 5062);
    let mut caller = lab.pjsua_on_host(
        "caller",
        HOST,
        &[
            "--port",
            "5070",
            "--no-register",
            "--call",
            "sip:1002@sipscope.test",
            "--run",
            "8",
        ],
    );
    caller.wait_success(Duration::from_secs(30));
    let _ = callee.wait_exit(Duration::from_secs(20));
    let found = lab.finish();
    found.assert_codes(&["call.inbound_blocked", "net.no_response"]);
    assert!(
        found.live_text.contains("capture ended before"),
        "{}",
        found.live_text
    );
}
