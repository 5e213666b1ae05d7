//! `sipscope run --metrics-listen` scraped by a real Prometheus (Debian
//! package `prometheus`) while kamailio and SIPp exchange a known set of
//! REGISTERs: PromQL through Prometheus's HTTP API returns the counts
//! SIPp sent and the one finding. Agent and Prometheus share the
//! registrar's namespace (scrape over its loopback).

use std::time::{Duration, Instant};

use crate::agent::{Agent, START, spawn_kamailio, wait_udp_listening};
use crate::lab::{Peer, spawn_sipp};
use crate::require_root;
use crate::support::netns::{Netns, VethPair};
use crate::support::process::NsProcess;
use crate::support::{TempDir, time_scale, wait_for};

pub const METRICS_ADDR: &str = "127.0.0.1:9464";
const PROMETHEUS_ADDR: &str = "127.0.0.1:9090";

pub use crate::support::http::{http_get, sample};

/// The value of an instant PromQL query with one result, once Prometheus
/// has it.
fn promql(ns: &Netns, query: &str) -> Option<f64> {
    let q = url_encode(query);
    let (code, _, body) = http_get(ns, PROMETHEUS_ADDR, format!("/api/v1/query?query={q}"))?;
    if code != 200 {
        return None;
    }
    let v: serde_json::Value = serde_json::from_str(&body).ok()?;
    v["data"]["result"][0]["value"][1].as_str()?.parse().ok()
}

fn url_encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Polls until `query` equals `want` (Prometheus scrapes every second).
fn wait_for_value(ns: &Netns, query: &str, want: f64) {
    let deadline = Instant::now() + START * time_scale();
    loop {
        let last = promql(ns, query);
        if last == Some(want) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{query}: wanted {want}, Prometheus says {last:?}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn sipp_register(pair: &VethPair, dir: &TempDir, user: &str, password: &str) {
    let peer = Peer::sipp("register.xml", &["-s", user, "-au", user, "-ap", password]);
    let registrar = VethPair::HOST_V4.to_string();
    let local = VethPair::PEER_V4.to_string();
    let mut sipp = spawn_sipp(&pair.peer, dir, &registrar, &local, &peer);
    // The 403 of a suspended account ends SIPp's call as failed; either
    // way every message of the scenario was sent by then.
    sipp.wait_exit(Duration::from_secs(40));
}

#[test]
fn prometheus_scrapes_the_counts_sipp_sent_and_the_finding() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("prometheus");
    let listen = format!("udp:{}:5060", VethPair::HOST_V4);
    let _kamailio = spawn_kamailio(&pair.host, &dir, "scenarios/registrar.cfg", &[&listen], &[]);
    wait_udp_listening(&pair.host, 5060);
    let mut agent = Agent::start(&pair, &dir, &["--metrics-listen", METRICS_ADDR]);

    // The agent's own endpoint first: healthy once attached, OpenMetrics.
    let (code, _, body) = wait_for(START, "/healthz", || {
        http_get(&pair.host, METRICS_ADDR, "/healthz".into())
    });
    assert_eq!((code, body.as_str()), (200, "ok\n"));
    let (code, head, body) = http_get(&pair.host, METRICS_ADDR, "/metrics".into()).unwrap();
    assert_eq!(code, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/openmetrics-text; version=1.0.0"),
        "{head}"
    );
    assert!(body.contains("sipscope_build_info{version="), "{body}");

    let config = dir.join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: sipscope\n    static_configs:\n      - targets: ['{METRICS_ADDR}']\n"
        ),
    )
    .unwrap();
    let tsdb = dir.join("tsdb");
    let _prometheus = NsProcess::spawn(
        &pair.host,
        &dir.path,
        "prometheus",
        "prometheus",
        &[
            &format!("--config.file={}", config.display()),
            &format!("--storage.tsdb.path={}", tsdb.display()),
            &format!("--web.listen-address={PROMETHEUS_ADDR}"),
        ],
    );
    // Prometheus parsed a scrape of the agent (an unparsable exposition
    // gives up == 0).
    wait_for_value(&pair.host, r#"up{job="sipscope"}"#, 1.0);

    // A healthy registration (REGISTER, 401, REGISTER with credentials,
    // 200) and a suspended account (REGISTER, 401, REGISTER with
    // credentials, 403: auth.forbidden_after_auth).
    sipp_register(&pair, &dir, "1001", "secret1001");
    sipp_register(&pair, &dir, "suspended", "pw-s");

    for (query, want) in [
        (
            r#"sum(sipscope_sip_messages_total{method="REGISTER",kind="request"})"#,
            4.0,
        ),
        (
            r#"sum(sipscope_sip_messages_total{method="REGISTER",status_class="4xx"})"#,
            3.0,
        ),
        (
            r#"sum(sipscope_sip_messages_total{method="REGISTER",status_class="2xx"})"#,
            1.0,
        ),
        (
            r#"sum(sipscope_sip_transactions_total{method="REGISTER"})"#,
            4.0,
        ),
        (r#"sipscope_registrations_total{outcome="registered"}"#, 1.0),
        (
            r#"sipscope_findings_total{code="auth.forbidden_after_auth"}"#,
            1.0,
        ),
        (r#"sum(sipscope_findings_total)"#, 1.0),
        (
            r#"sipscope_kernel_capture_total{counter="ringbuf_full"}"#,
            0.0,
        ),
    ] {
        wait_for_value(&pair.host, query, want);
    }
    // What the agent captured agrees with what Prometheus counted.
    let (out, _) = agent.stop();
    let registers =
        crate::support::pcap::datagrams(&crate::support::pcap::read_frames(&agent.pcap), &[5060])
            .iter()
            .filter(|d| d.first_line().starts_with("REGISTER "))
            .count();
    assert_eq!(registers, 4, "{out}");
}
