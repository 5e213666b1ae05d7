//! Reachability against real peers: SIPp registers from the agent's
//! namespace (the client side: `pair.host`, where `sipscope run --json`
//! captures and traces drops) to kamailio in `pair.peer`. Each case
//! asserts the exact set of reachability codes in the live agent's JSON
//! diagnosis records. `--transaction-timeout 3` stands in for Timer F.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::agent::{Agent, STOP, start_kamailio};
use crate::require_root;
use crate::support::netns::{Netns, VethPair};
use crate::support::process::{NsProcess, free_udp_port};
use crate::support::{TempDir, fixture};

const REACHABILITY: [&str; 3] = ["net.no_response", "net.icmp_unreachable", "fw.local_drop"];

/// One counted drop rule on `hook` in `ns`.
fn nft(ns: &Netns, dir: &TempDir, hook: &str, matcher: &str) {
    crate::support::nft::add_rule(ns, &dir.path, hook, &format!("{matcher} counter drop"));
}

/// One REGISTER attempt by SIPp from the agent's namespace, running.
fn register(pair: &VethPair, dir: &TempDir) -> NsProcess {
    let local_port = free_udp_port().to_string();
    let remote = format!("{}:5060", VethPair::PEER_V4);
    let scenario = fixture("sipp/uac_register.xml");
    NsProcess::spawn(
        &pair.host,
        &dir.path,
        "sipp",
        "sipp",
        &[
            "-sf",
            scenario.to_str().unwrap(),
            "-i",
            &VethPair::HOST_V4.to_string(),
            "-p",
            &local_port,
            "-s",
            "alice",
            "-m",
            "1",
            "-timeout",
            "6s",
            "-nostdin",
            &remote,
        ],
    )
}

struct Case {
    listener: bool,
    /// nft (namespace is peer = registrar, hook, match) drop rule.
    registrar_drop: Option<(&'static str, &'static str)>,
    client_drop: Option<(&'static str, &'static str)>,
    /// Wait for this code in the live output before stopping.
    wait_for: Option<&'static str>,
}

/// Runs one case; returns the agent's diagnosis records (reachability
/// codes only) and its whole stdout.
fn run(case: Case) -> (Vec<serde_json::Value>, String) {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("reach");
    let _kamailio = case
        .listener
        .then(|| start_kamailio(&pair.peer, &dir, VethPair::PEER_V4.into(), 5060));
    if let Some((hook, m)) = case.registrar_drop {
        nft(&pair.peer, &dir, hook, m);
    }
    if let Some((hook, m)) = case.client_drop {
        nft(&pair.host, &dir, hook, m);
    }
    let mut agent = Agent::start(&pair, &dir, &["--json", "--transaction-timeout", "3"]);
    let mut sipp = register(&pair, &dir);
    match case.wait_for {
        // SIPp is still retransmitting or waiting; dropping it kills it.
        Some(code) => agent.proc.wait_output(code, Duration::from_secs(20)),
        None => {
            let status = sipp.wait_exit(Duration::from_secs(20));
            assert!(
                status.success(),
                "SIPp failed ({status}): {}",
                sipp.stdout_text()
            );
        }
    }
    drop(sipp);
    let status = agent.proc.interrupt(STOP);
    let out = agent.proc.stdout_text();
    assert!(
        status.success(),
        "sipscope exited with {status}\nstdout:\n{out}\nstderr:\n{}",
        agent.proc.stderr_text()
    );
    let records = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "diagnosis")
        .filter(|v| REACHABILITY.contains(&v["code"].as_str().unwrap_or_default()))
        .collect();
    (records, out)
}

fn codes(records: &[serde_json::Value]) -> BTreeSet<String> {
    records
        .iter()
        .map(|r| r["code"].as_str().unwrap_or_default().to_owned())
        .collect()
}

fn find<'a>(records: &'a [serde_json::Value], code: &str) -> &'a serde_json::Value {
    records
        .iter()
        .find(|r| r["code"] == code)
        .unwrap_or_else(|| panic!("no {code} in {records:#?}"))
}

#[test]
fn registrar_firewall_dropping_sip_is_no_response_not_a_local_drop() {
    let (records, out) = run(Case {
        listener: true,
        registrar_drop: Some(("input", "udp dport 5060")),
        client_drop: None,
        wait_for: Some("net.no_response"),
    });
    assert_eq!(
        codes(&records),
        BTreeSet::from(["net.no_response".to_owned()]),
        "{out}"
    );
    let d = find(&records, "net.no_response");
    let text = d.to_string();
    assert!(text.contains("REGISTER"), "{text}");
    assert!(text.contains("10.77.0.2:5060"), "{text}");
    assert!(!text.contains("dropped_locally"), "{text}");
}

/// The client's own firewall drops the registrar's answers: XDP saw them,
/// netfilter dropped them, the UA never got them.
#[test]
fn client_firewall_dropping_responses_is_a_local_drop_and_explains_the_timeout() {
    let (records, out) = run(Case {
        listener: true,
        registrar_drop: None,
        client_drop: Some(("input", "udp sport 5060")),
        wait_for: Some("net.no_response"),
    });
    assert_eq!(
        codes(&records),
        BTreeSet::from(["fw.local_drop".to_owned(), "net.no_response".to_owned()]),
        "{out}"
    );
    let drop = find(&records, "fw.local_drop").to_string();
    assert!(drop.contains("from 10.77.0.2:5060"), "{drop}");
    assert!(drop.contains("netfilter_drop"), "{drop}");
    assert!(drop.contains("(CSeq 1 REGISTER)"), "{drop}");
    let timeout = find(&records, "net.no_response").to_string();
    assert!(timeout.contains("dropped_locally"), "{timeout}");
    assert!(timeout.contains("local firewall dropped it"), "{timeout}");
}

#[test]
fn no_listener_at_the_registrar_is_icmp_unreachable() {
    let (records, out) = run(Case {
        listener: false,
        registrar_drop: None,
        client_drop: None,
        wait_for: Some("net.icmp_unreachable"),
    });
    assert!(codes(&records).contains("net.icmp_unreachable"), "{out}");
    assert!(!codes(&records).contains("fw.local_drop"), "{out}");
    let text = find(&records, "net.icmp_unreachable").to_string();
    assert!(text.contains("port unreachable"), "{text}");
    assert!(text.contains("10.77.0.1"), "{text}");
}

#[test]
fn healthy_registration_raises_no_reachability_finding() {
    let (records, out) = run(Case {
        listener: true,
        registrar_drop: None,
        client_drop: None,
        wait_for: None,
    });
    assert!(records.is_empty(), "{records:#?}\n{out}");
    assert!(
        out.contains("\"type\":\"message\""),
        "nothing captured: {out}"
    );
}

/// (d) The host's firewall blocks the RTP range inbound: the media never
/// reaches the PBX, and the finding names the flow and the reason.
#[test]
fn local_firewall_blocking_the_rtp_range_is_a_local_drop() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("reach-rtp");
    nft(&pair.host, &dir, "input", "udp dport 10000-20000");
    let mut agent = Agent::start(&pair, &dir, &["--json"]);
    // Ten G.711 RTP packets (v2, PT 8, seq 1..10) from one peer socket
    // (one flow, as a phone sends them) to port 16000.
    let script = format!(
        "exec 3>/dev/udp/{}/16000; for i in 1 2 3 4 5 6 7 8 9 10; do \
         printf '\\x80\\x08\\x00'\"\\\\x$(printf %02x $i)\"'\\x00\\x00\\x00\\xa0\\x12\\x34\\x56\\x78%0160d' 0 >&3; \
         done",
        VethPair::HOST_V4
    );
    let sent = pair.peer.exec("bash", &["-c", &script]);
    assert!(
        sent.status.success(),
        "sending RTP failed: {}",
        String::from_utf8_lossy(&sent.stderr)
    );
    agent
        .proc
        .wait_output("fw.local_drop", Duration::from_secs(20));
    let status = agent.proc.interrupt(STOP);
    let out = agent.proc.stdout_text();
    assert!(status.success(), "sipscope exited with {status}\n{out}");
    let records: Vec<serde_json::Value> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|v| v["type"] == "diagnosis")
        .collect();
    assert_eq!(
        codes(&records),
        BTreeSet::from(["fw.local_drop".to_owned()]),
        "{out}"
    );
    let text = find(&records, "fw.local_drop").to_string();
    assert!(text.contains("to port 16000 (media range)"), "{text}");
    assert!(text.contains("netfilter_drop"), "{text}");
    // Raised once for the flow, not once per packet.
    assert_eq!(records.len(), 1, "{out}");
}
