//! Live capture through the SIP pipeline: SIPp registers with kamailio,
//! the agent prints call-flow lines for the real exchange and delivers
//! its transaction spans, stamped with the capture times, to an OTLP
//! receiver.

use std::time::Duration;

use crate::{
    agent::{Agent, register_alice, start_kamailio},
    receiver::{Receiver, attr_int, attr_str},
    require_root,
    support::{
        TempDir,
        netns::{VethPair, in_netns},
        pcap::{datagrams, read_frames},
    },
};

#[test]
fn live_register_flows_through_the_pipeline_and_exports_spans() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("livepipe");
    let _kamailio = start_kamailio(&pair.host, &dir, VethPair::HOST_V4.into(), 5060);
    // The receiver listens inside the agent's namespace (its loopback).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    let listener = in_netns(&pair.host, || {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.set_nonblocking(true).unwrap();
        l
    });
    let rx = runtime.block_on(async {
        Receiver::grpc_on(tokio::net::TcpListener::from_std(listener).unwrap())
    });
    let endpoint = rx.endpoint();
    let mut agent = Agent::start(&pair, &dir, &["--otlp-endpoint", &endpoint]);
    register_alice(&pair, &dir, 2);
    let (stdout, counters) = agent.stop();
    assert_eq!(counters["sip_captured"], 4, "{stdout}");
    assert_eq!(counters["core_queue_full"], 0);

    // Call-flow lines: time, direction, src → dst, start line, Call-ID,
    // CSeq and response time on the answer.
    let requests: Vec<&str> = stdout
        .lines()
        .filter(|l| l.contains(" in  10.77.0.2:") && l.contains("UDP  REGISTER sip:"))
        .collect();
    assert_eq!(requests.len(), 2, "{stdout}");
    let answers: Vec<&str> = stdout
        .lines()
        .filter(|l| {
            l.contains(" out 10.77.0.1:5060 → 10.77.0.2:")
                && l.contains("SIP/2.0 200 OK  (CSeq 1 REGISTER)")
                && l.contains(" ms]")
        })
        .collect();
    assert_eq!(answers.len(), 2, "{stdout}");
    for (req, ans) in requests.iter().zip(&answers) {
        let cid = req.split("Call-ID ").nth(1).expect("Call-ID on the line");
        assert!(ans.ends_with(&format!("Call-ID {cid}")), "{req}\n{ans}");
    }
    assert!(
        stdout.contains("transactions       2 (completed 2"),
        "{stdout}"
    );

    // Spans: per registration a root and its REGISTER 200 child, delivered.
    assert!(stdout.contains("exported 4, dropped 0"), "{stdout}");
    let spans = runtime.block_on(rx.store.wait_for_spans(4, Duration::from_secs(20)));
    let children: Vec<_> = spans
        .iter()
        .filter(|s| s.span.name == "REGISTER 200")
        .collect();
    assert_eq!(children.len(), 2);
    // The start of each span is the capture time of its REGISTER as the
    // agent wrote it to its pcap, to the nanosecond.
    let frames = read_frames(&agent.pcap);
    let mut register_times: Vec<u64> = frames
        .iter()
        .filter(|f| {
            datagrams(std::slice::from_ref(f), &[5060])
                .first()
                .is_some_and(|d| d.first_line().starts_with("REGISTER "))
        })
        .map(|f| f.ts_ns as u64)
        .collect();
    register_times.sort();
    let mut starts: Vec<u64> = children
        .iter()
        .map(|s| s.span.start_time_unix_nano)
        .collect();
    starts.sort();
    assert_eq!(starts, register_times);
    for c in &children {
        let a = &c.span.attributes;
        assert_eq!(attr_str(a, "sip.method"), Some("REGISTER"));
        assert_eq!(attr_int(a, "sip.status_code"), Some(200));
        assert_eq!(attr_str(a, "network.peer.address"), Some("10.77.0.2"));
        // The host received the request: server side.
        assert_eq!(
            c.span.kind,
            opentelemetry_proto::tonic::trace::v1::span::SpanKind::Server as i32
        );
        let root = spans
            .iter()
            .find(|s| s.span.span_id == c.span.parent_span_id)
            .expect("the registration root");
        assert_eq!(root.span.name, "SIP registration");
        assert_eq!(root.span.trace_id, c.span.trace_id);
    }
}

/// `run --json` without an endpoint: stdout is JSON lines only — the
/// pipeline's records and the spans, none cut into another — ending with
/// the summary, export and capture records.
#[test]
fn live_json_mode_writes_records_and_spans_as_json_lines() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("livejson");
    let _kamailio = start_kamailio(&pair.host, &dir, VethPair::HOST_V4.into(), 5060);
    let mut agent = Agent::start(&pair, &dir, &["--json"]);
    register_alice(&pair, &dir, 2);
    let status = agent.proc.interrupt(crate::agent::STOP);
    let stdout = agent.proc.stdout_text();
    assert!(status.success(), "{stdout}\n{}", agent.proc.stderr_text());
    let mut types = Vec::new();
    let mut spans = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}\n{stdout}"));
        if v.get("trace_id").is_some() {
            spans.push(v["name"].as_str().unwrap().to_owned());
        } else {
            types.push(v["type"].as_str().unwrap().to_owned());
        }
    }
    let count = |t: &str| types.iter().filter(|x| *x == t).count();
    assert_eq!((count("message"), count("transaction")), (4, 2), "{stdout}");
    assert_eq!(
        &types[types.len() - 3..],
        ["summary", "export", "capture"],
        "{stdout}"
    );
    spans.sort();
    assert_eq!(
        spans,
        [
            "REGISTER 200",
            "REGISTER 200",
            "SIP registration",
            "SIP registration"
        ]
    );
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["sip_captured"], 4);
    assert_eq!(last["core_queue_full"], 0);
    // --write-pcap's counters ride in the capture record.
    assert_eq!(last["pcap"]["written"], 4, "{last}");
    assert_eq!(last["pcap"]["not_written"], 0);
}
