//! Inbound calls to a registered PBX against real peers. kamailio
//! (registrar.cfg with `WITH_INBOUND`) in `pair.peer` is the provider:
//! registrar and the proxy that relays a call for the AOR to the
//! registered contact. SIPp in `pair.host` is the PBX: it registers
//! (register.xml, digest auth) from port P with Contact port P, then
//! answers calls on P (inbound-pbx-*.xml). A SIPp caller in `pair.peer`
//! calls the AOR through kamailio (inbound-caller.xml). The real agent
//! (`sipscope run --json --transaction-timeout 3`) runs on the PBX side;
//! each case asserts the exact set of diagnosis codes it printed.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::agent::{Agent, START, STOP, wait_udp_listening};
use crate::require_root;
use crate::support::netns::{Netns, VethPair};
use crate::support::process::{NsProcess, free_udp_port};
use crate::support::{TempDir, fixture, wait_for};

/// How long a real peer may take to finish its part.
const PEER: Duration = Duration::from_secs(20);

/// kamailio as registrar + proxy on PEER_V4:5060.
fn provider(pair: &VethPair, dir: &TempDir) -> NsProcess {
    let listen = format!("udp:{}:5060", VethPair::PEER_V4);
    let p = crate::agent::spawn_kamailio(
        &pair.peer,
        dir,
        "scenarios/registrar.cfg",
        &[&listen],
        &["-A", "WITH_INBOUND"],
    );
    wait_udp_listening(&pair.peer, 5060);
    p
}

fn sipp(ns: &Netns, dir: &TempDir, name: &str, file: &str, args: &[&str]) -> NsProcess {
    let scenario = fixture(&format!("scenarios/sipp/{file}"));
    let mut full = vec!["-sf", scenario.to_str().unwrap(), "-m", "1", "-nostdin"];
    full.extend_from_slice(args);
    NsProcess::spawn(ns, &dir.path, name, "sipp", &full)
}

fn succeeded(p: &mut NsProcess) {
    p.wait_success(PEER);
}

/// Drops inbound UDP to `port` whose payload starts with `INVITE`: the
/// registrar's answers to REGISTER (and the REGISTER flow's conntrack
/// state, which lets the provider's INVITE in otherwise) are untouched.
fn drop_invites(ns: &Netns, dir: &TempDir, port: u16) {
    // `@ih,0,48`: the first six payload bytes are "INVITE".
    let rule = format!("udp dport {port} @ih,0,48 0x494e56495445 counter drop");
    crate::support::nft::add_rule(ns, &dir.path, "input", &rule);
}

#[derive(Clone, Copy, PartialEq)]
enum Pbx {
    Answers,
    NotFound,
    /// Challenges the INVITE (401), as Asterisk does when no `identify`
    /// matches the provider's address.
    Challenges,
    /// Answers, but its host's firewall drops the INVITEs.
    Firewalled,
    /// Registered, then stopped listening on the contact's port.
    Gone,
}

/// What a case left behind.
struct Outcome {
    /// The live agent's diagnosis records.
    records: Vec<serde_json::Value>,
    /// Its whole stdout.
    out: String,
    /// Its `--write-pcap` capture, for the offline analysis.
    pcap: std::path::PathBuf,
    _dir: TempDir,
}

/// The PBX registers, then the caller calls it.
fn inbound_call(pbx: Pbx) -> Outcome {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("inbound");
    let _kamailio = provider(&pair, &dir);
    let mut agent = Agent::start(&pair, &dir, &["--json", "--transaction-timeout", "3"]);
    let port = free_udp_port().to_string();
    let (pbx_ip, provider_ip) = (VethPair::HOST_V4.to_string(), VethPair::PEER_V4.to_string());
    let registrar = format!("{provider_ip}:5060");
    let mut register = sipp(
        &pair.host,
        &dir,
        "sipp-register",
        "register.xml",
        &[
            &[&registrar, "-i", &pbx_ip, "-p", &port][..],
            crate::ACCOUNT_1001,
            &["-timeout", "15s"],
        ]
        .concat(),
    );
    succeeded(&mut register);
    // The agent knows the binding before the call comes.
    agent
        .proc
        .wait_output("\"outcome\":{\"kind\":\"registered\"", START);
    if pbx == Pbx::Firewalled {
        drop_invites(&pair.host, &dir, port.parse().unwrap());
    }
    let file = match pbx {
        Pbx::NotFound => Some("inbound-pbx-404.xml"),
        Pbx::Challenges => Some("inbound-pbx-401.xml"),
        Pbx::Answers | Pbx::Firewalled => Some("inbound-pbx-answer.xml"),
        Pbx::Gone => None,
    };
    let uas = file.map(|file| {
        let p = sipp(
            &pair.host,
            &dir,
            "sipp-pbx",
            file,
            &["-i", &pbx_ip, "-p", &port, "-s", "1001", "-timeout", "30s"],
        );
        wait_udp_listening(&pair.host, port.parse().unwrap());
        p
    });
    let caller_port = free_udp_port().to_string();
    let mut caller = sipp(
        &pair.peer,
        &dir,
        "sipp-caller",
        "inbound-caller.xml",
        &[
            &registrar,
            "-i",
            &provider_ip,
            "-p",
            &caller_port,
            "-s",
            "1001",
            "-timeout",
            "30s",
        ],
    );
    match (pbx, uas) {
        (Pbx::Answers | Pbx::NotFound | Pbx::Challenges, Some(mut uas)) => {
            succeeded(&mut caller);
            succeeded(&mut uas);
            // The agent has seen the end of the exchange: the BYE's 200,
            // or the INVITE's final status.
            let (status, method) = match pbx {
                Pbx::Answers => (200, "BYE"),
                Pbx::Challenges => (401, "INVITE"),
                _ => (404, "INVITE"),
            };
            wait_for(
                START,
                &format!("the agent to print {status} ({method})"),
                || {
                    records(&agent.proc.stdout_text(), "message")
                        .iter()
                        .any(|m| m["status"] == status && m["cseq_method"] == method)
                        .then_some(())
                },
            );
            if pbx == Pbx::Challenges {
                // Judged once the caller had its chance to authenticate.
                agent.proc.wait_output("call.inbound_blocked", PEER);
            }
        }
        (_, uas) => {
            // Raised at the drop; the timeout follows after 3 s.
            agent.proc.wait_output("call.inbound_blocked", PEER);
            agent.proc.wait_output("net.no_response", PEER);
            drop(uas);
        }
    }
    drop(caller);
    let status = agent.proc.interrupt(STOP);
    let out = agent.proc.stdout_text();
    assert!(
        status.success(),
        "sipscope exited with {status}\nstdout:\n{out}\nstderr:\n{}",
        agent.proc.stderr_text()
    );
    Outcome {
        records: records(&out, "diagnosis"),
        out,
        pcap: agent.pcap.clone(),
        _dir: dir,
    }
}

fn records(out: &str, kind: &str) -> Vec<serde_json::Value> {
    out.lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == kind)
        .collect()
}

fn codes(records: &[serde_json::Value]) -> BTreeSet<&str> {
    records
        .iter()
        .map(|r| r["code"].as_str().unwrap_or_default())
        .collect()
}

fn find<'a>(records: &'a [serde_json::Value], code: &str) -> Vec<&'a serde_json::Value> {
    records.iter().filter(|r| r["code"] == code).collect()
}

fn evidence(d: &serde_json::Value, name: &str) -> String {
    d["evidence"]
        .as_array()
        .and_then(|es| es.iter().find(|e| e["name"] == name))
        .and_then(|e| e["value"].as_str())
        .unwrap_or_else(|| panic!("no evidence {name} in {d:#}"))
        .to_owned()
}

#[test]
fn healthy_inbound_call_raises_nothing() {
    let Outcome { records, out, .. } = inbound_call(Pbx::Answers);
    assert_eq!(codes(&records), BTreeSet::new(), "{out}");
    // The call really went through the registered contact.
    let invites = self::records(&out, "message")
        .into_iter()
        .filter(|m| {
            m["start_line"]
                .as_str()
                .is_some_and(|l| l.starts_with("INVITE sip:1001@10.77.0.1:"))
        })
        .count();
    assert_eq!(invites, 1, "{out}");
    // ... and the analysis followed it as a call to the binding.
    let summary = &self::records(&out, "summary")[0]["inbound"];
    assert_eq!(summary["bindings"], 1, "{summary}");
    assert_eq!(summary["invites_tracked"], 1, "{summary}");
}

#[test]
fn pbx_answering_404_is_inbound_blocked_naming_the_status() {
    // `_dir` bound: it keeps the capture until the end of the test.
    let Outcome {
        records,
        out,
        pcap,
        _dir,
    } = inbound_call(Pbx::NotFound);
    assert_eq!(
        codes(&records),
        BTreeSet::from(["call.inbound_blocked"]),
        "{out}"
    );
    let blocked = find(&records, "call.inbound_blocked");
    assert_eq!(blocked.len(), 1, "{out}");
    let d = blocked[0];
    let summary = d["summary"].as_str().unwrap();
    assert!(summary.contains("answered 404 Not Found"), "{summary}");
    assert!(summary.contains("context="), "{summary}");
    assert_eq!(evidence(d, "aor"), "sip:1001@sipscope.test");
    assert_eq!(evidence(d, "registrar"), "10.77.0.2:5060");
    assert_eq!(evidence(d, "status"), "404");
    assert_eq!(evidence(d, "to"), "sip:1001@sipscope.test");
    // The call's own report lists it, and says how the call ended.
    let calls = self::records(&out, "call");
    let last = calls
        .iter()
        .rfind(|c| c["final"] == true)
        .unwrap_or_else(|| panic!("no final call record: {out}"));
    assert_eq!(last["state"], "failed", "{last:#}");
    assert_eq!(last["status"], 404, "{last:#}");
    assert_eq!(
        last["diagnoses"],
        serde_json::json!(["call.inbound_blocked"]),
        "{last:#}"
    );
    // The same finding from the agent's capture, offline.
    let offline = crate::analyse(&pcap, None);
    assert_eq!(
        crate::codes(&offline),
        crate::set(&["call.inbound_blocked"])
    );
    assert_eq!(offline[0].summary, summary);
}

#[test]
fn pbx_firewall_dropping_invites_is_inbound_blocked_with_the_local_drop() {
    let Outcome { records, out, .. } = inbound_call(Pbx::Firewalled);
    assert_eq!(
        codes(&records),
        BTreeSet::from(["call.inbound_blocked", "fw.local_drop", "net.no_response"]),
        "{out}"
    );
    let blocked = find(&records, "call.inbound_blocked");
    // The timeout repeats the drop's reason: raised once.
    assert_eq!(blocked.len(), 1, "{out}");
    let summary = blocked[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains(
            "the INVITE from 10.77.0.2:5060 reached this host and was dropped by the local \
             firewall (netfilter_drop)"
        ),
        "{summary}"
    );
    assert!(
        evidence(blocked[0], "dropped_locally").starts_with("INVITE (CSeq 1) from 10.77.0.2:5060")
    );
    assert_eq!(
        evidence(blocked[0], "matched"),
        "destination is the registered Contact address"
    );
    let drop = find(&records, "fw.local_drop");
    assert!(drop[0].to_string().contains("INVITE (CSeq 1)"), "{out}");
    let summary = &self::records(&out, "summary")[0]["inbound"];
    assert_eq!(summary["blocked"], 1, "{summary}");
    assert_eq!(summary["invites_tracked"], 1, "{summary}");
    assert!(summary["suppressed"].as_u64() >= Some(1), "{summary}");
}

/// The PBX registered from the port, then stopped listening on it: the
/// kernel drops the INVITE (`no_socket`) and answers ICMP port unreachable.
#[test]
fn nothing_listening_on_the_contact_is_inbound_blocked_naming_the_port() {
    let Outcome { records, out, .. } = inbound_call(Pbx::Gone);
    assert_eq!(
        codes(&records),
        BTreeSet::from([
            "call.inbound_blocked",
            "net.icmp_unreachable",
            "net.no_response"
        ]),
        "{out}"
    );
    let blocked = find(&records, "call.inbound_blocked");
    assert_eq!(blocked.len(), 1, "{out}");
    let summary = blocked[0]["summary"].as_str().unwrap();
    assert!(
        summary.contains("reached this host but nothing listens on port"),
        "{summary}"
    );
    assert!(summary.contains("(no_socket)"), "{summary}");
}

/// The PBX challenges the provider's INVITE and the provider, which has no
/// credentials for its customer, gives up.
#[test]
fn pbx_challenging_the_providers_invite_is_inbound_blocked() {
    let Outcome { records, out, .. } = inbound_call(Pbx::Challenges);
    assert_eq!(
        codes(&records),
        BTreeSet::from(["call.inbound_blocked"]),
        "{out}"
    );
    let d = find(&records, "call.inbound_blocked")[0];
    let summary = d["summary"].as_str().unwrap();
    assert!(
        summary.contains("the PBX challenged the INVITE from 10.77.0.2:5060 (401 Unauthorized)"),
        "{summary}"
    );
    assert!(summary.contains("`match=10.77.0.2`"), "{summary}");
    assert_eq!(evidence(d, "retried_with_credentials"), "no (waited 5 s)");
}
