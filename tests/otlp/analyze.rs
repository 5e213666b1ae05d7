//! The `sipscope analyze` binary exporting a capture's traces to a real
//! OTLP receiver: spans carry the packets' capture times, deterministic
//! ids, parent links, attributes and status; the same over HTTP; two
//! agents (different host names) put their spans into the same traces;
//! and a dead collector costs nothing but counted drops.

use std::path::Path;
use std::process::{Command, Output};

use pcap_file::DataLink;
use pcap_file::TsResolution;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};

use super::*;

const PBX_IP: [u8; 4] = [192, 0, 2, 10];
const REG_IP: [u8; 4] = [198, 51, 100, 20];
const PHONE_IP: [u8; 4] = [203, 0, 113, 5];
const REG_CID: &str = "3848276298220188511@192.0.2.10";
const AOR: &str = "sip:1001@sip.provider.example";
/// The digest response in the second REGISTER: must never be exported.
const SECRET_RESPONSE: &str = "6629fae49393a05397450978507c4ef1";

fn ns(ms: u64) -> u64 {
    T0 + ms * MS
}

fn register(cseq: u32, branch: &str, auth: bool) -> String {
    let auth = if auth {
        format!(
            "Authorization: Digest username=\"1001\", realm=\"sip.provider.example\", nonce=\"n0nce\", uri=\"sip:sip.provider.example\", response=\"{SECRET_RESPONSE}\", algorithm=MD5\r\n"
        )
    } else {
        String::new()
    };
    format!(
        "REGISTER sip:sip.provider.example SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\nFrom: <{AOR}>;tag=f1\r\nTo: <{AOR}>\r\nCall-ID: {REG_CID}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:1001@192.0.2.10:5060>\r\n{auth}Expires: 3600\r\nContent-Length: 0\r\n\r\n"
    )
}

fn invite_like(method: &str, cseq: u32, branch: &str, cid: &str, to_tag: bool) -> String {
    let tag = if to_tag { ";tag=b1" } else { "" };
    format!(
        "{method} sip:bob@203.0.113.5 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\nFrom: <sip:1001@sip.provider.example>;tag=f2\r\nTo: <sip:bob@203.0.113.5>{tag}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\nContact: <sip:1001@192.0.2.10:5060>\r\nContent-Length: 0\r\n\r\n"
    )
}

/// A response copies From, To (adding its tag) and Call-ID from its
/// request (RFC 3261 §8.2.6.2).
fn response(status: &str, cseq: u32, method: &str, branch: &str, cid: &str, extra: &str) -> String {
    let (from, to) = if method == "REGISTER" {
        (format!("<{AOR}>;tag=f1"), format!("<{AOR}>;tag=t1"))
    } else {
        (
            "<sip:1001@sip.provider.example>;tag=f2".to_string(),
            "<sip:bob@203.0.113.5>;tag=b1".to_string(),
        )
    };
    format!(
        "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {cid}\r\nCSeq: {cseq} {method}\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

/// A PBX registers (challenged, then accepted), places an answered call
/// and a call that is refused busy. Times in ms after T0.
fn write_capture(path: &Path) {
    let challenge = "WWW-Authenticate: Digest realm=\"sip.provider.example\", nonce=\"n0nce\", algorithm=MD5\r\n";
    let msgs: Vec<Msg> = vec![
        (0, PBX_IP, REG_IP, register(1, "z9hG4bK-r1", false)),
        (
            20,
            REG_IP,
            PBX_IP,
            response(
                "401 Unauthorized",
                1,
                "REGISTER",
                "z9hG4bK-r1",
                REG_CID,
                challenge,
            ),
        ),
        (30, PBX_IP, REG_IP, register(2, "z9hG4bK-r2", true)),
        (
            61,
            REG_IP,
            PBX_IP,
            response(
                "200 OK",
                2,
                "REGISTER",
                "z9hG4bK-r2",
                REG_CID,
                "Expires: 3600\r\n",
            ),
        ),
        (
            1000,
            PBX_IP,
            PHONE_IP,
            invite_like("INVITE", 1, "z9hG4bK-i1", "call-1@pbx", false),
        ),
        (
            1010,
            PHONE_IP,
            PBX_IP,
            response("180 Ringing", 1, "INVITE", "z9hG4bK-i1", "call-1@pbx", ""),
        ),
        (
            1900,
            PHONE_IP,
            PBX_IP,
            response("200 OK", 1, "INVITE", "z9hG4bK-i1", "call-1@pbx", ""),
        ),
        (
            6000,
            PBX_IP,
            PHONE_IP,
            invite_like("BYE", 2, "z9hG4bK-b1", "call-1@pbx", true),
        ),
        (
            6020,
            PHONE_IP,
            PBX_IP,
            response("200 OK", 2, "BYE", "z9hG4bK-b1", "call-1@pbx", ""),
        ),
        (
            7000,
            PBX_IP,
            PHONE_IP,
            invite_like("INVITE", 1, "z9hG4bK-i2", "call-2@pbx", false),
        ),
        (
            7040,
            PHONE_IP,
            PBX_IP,
            response("486 Busy Here", 1, "INVITE", "z9hG4bK-i2", "call-2@pbx", ""),
        ),
    ];
    write_pcap(path, msgs);
}

/// One UDP frame per (ms after T0, source, destination, SIP text).
type Msg = (u64, [u8; 4], [u8; 4], String);

fn write_pcap(path: &Path, msgs: impl IntoIterator<Item = Msg>) {
    let file = std::fs::File::create(path).unwrap();
    let header = PcapHeader {
        datalink: DataLink::ETHERNET,
        ts_resolution: TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut w = PcapWriter::with_header(file, header).unwrap();
    for (ms, src, dst, text) in msgs {
        let mut frame = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4(src, dst, 64)
            .udp(5060, 5060)
            .write(&mut frame, text.as_bytes())
            .unwrap();
        let ts = Duration::from_nanos(ns(ms));
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))
            .unwrap();
    }
}

/// Runs the binary with a clean OTEL environment plus `env`.
async fn analyze(args: Vec<String>, env: Vec<(&'static str, String)>) -> Output {
    tokio::task::spawn_blocking(move || {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipscope"));
        cmd.arg("analyze").args(&args);
        for (k, _) in std::env::vars() {
            if k.starts_with("OTEL_") {
                cmd.env_remove(k);
            }
        }
        cmd.envs(env).output().expect("running sipscope")
    })
    .await
    .unwrap()
}

/// The run's stdout, once it is known to have succeeded.
fn succeeded(out: &Output) -> String {
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

fn capture() -> (tempfile::TempDir, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("trunk.pcap");
    write_capture(&path);
    (dir, path.to_str().unwrap().to_owned())
}

fn host(s: &ReceivedSpan) -> Option<&str> {
    attr_str(&s.resource.attributes, "host.name")
}

fn named<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.span.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no span {name}: {:?}",
                spans.iter().map(|s| &s.span.name).collect::<Vec<_>>()
            )
        })
}

const EXPECTED_SPANS: usize = 8;

/// A sum data point: (attribute key, debug-printed value) pairs and value.
type Point = (Vec<(String, String)>, i64);

async fn export_and_check(rx: Receiver, protocol: &str) {
    let (_dir, pcap) = capture();
    let out = analyze(
        vec![
            pcap,
            "--otlp-endpoint".into(),
            rx.endpoint(),
            "--otlp-protocol".into(),
            protocol.into(),
        ],
        vec![("OTEL_RESOURCE_ATTRIBUTES", "host.name=pbx1".into())],
    )
    .await;
    let stdout = succeeded(&out);
    assert!(
        stdout.contains(&format!("exported {EXPECTED_SPANS}, dropped 0")),
        "{stdout}"
    );
    let spans = rx.store.wait_for_spans(EXPECTED_SPANS, WAIT).await;
    assert_eq!(spans.len(), EXPECTED_SPANS);
    assert!(spans.iter().all(|s| host(s) == Some("pbx1")));

    // Registration: root + REGISTER 401 + REGISTER 200, one trace.
    let reg_trace = TraceId::for_registration(REG_CID, 1, AOR);
    let root = named(&spans, names::REGISTRATION);
    let r401 = named(&spans, "REGISTER 401");
    let r200 = named(&spans, "REGISTER 200");
    for s in [root, r401, r200] {
        assert_eq!(s.span.trace_id, reg_trace.0.to_vec());
    }
    assert!(root.span.parent_span_id.is_empty());
    assert_eq!(r401.span.parent_span_id, root.span.span_id);
    assert_eq!(r200.span.parent_span_id, root.span.span_id);
    // Capture times, to the nanosecond.
    assert_eq!(
        (r401.span.start_time_unix_nano, r401.span.end_time_unix_nano),
        (ns(0), ns(20))
    );
    assert_eq!(
        (r200.span.start_time_unix_nano, r200.span.end_time_unix_nano),
        (ns(30), ns(61))
    );
    assert_eq!(
        (root.span.start_time_unix_nano, root.span.end_time_unix_nano),
        (ns(0), ns(61))
    );
    let a = &r401.span.attributes;
    assert_eq!(attr_str(a, attr::SIP_METHOD), Some("REGISTER"));
    assert_eq!(attr_str(a, attr::SIP_CALL_ID), Some(REG_CID));
    assert_eq!(attr_int(a, attr::SIP_CSEQ), Some(1));
    assert_eq!(attr_int(a, attr::SIP_STATUS_CODE), Some(401));
    assert_eq!(
        attr_str(a, attr::NETWORK_PEER_ADDRESS),
        Some("198.51.100.20")
    );
    assert_eq!(attr_str(a, attr::NETWORK_TRANSPORT), Some("udp"));
    assert_eq!(
        attr_str(a, attr::SERVER_ADDRESS),
        Some("sip.provider.example")
    );
    assert!(attr_str(a, attr::SIP_FROM).unwrap().contains(AOR));
    assert!(attr_str(a, attr::SIP_TO).unwrap().contains(AOR));
    assert!(
        r401.span
            .events
            .iter()
            .any(|e| e.name == event::CHALLENGE && e.time_unix_nano == ns(20))
    );
    assert_eq!(
        attr_str(&root.span.attributes, attr::SIP_AUTH_USERNAME),
        Some("1001")
    );
    assert_eq!(
        root.span.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Ok as i32)
    );

    // The answered call: root from INVITE to the BYE's 200, two children.
    let call_trace = TraceId::for_call("call-1@pbx");
    let calls: Vec<&ReceivedSpan> = spans
        .iter()
        .filter(|s| s.span.trace_id == call_trace.0.to_vec())
        .collect();
    assert_eq!(calls.len(), 3);
    let call_root = calls
        .iter()
        .find(|s| s.span.parent_span_id.is_empty())
        .unwrap();
    assert_eq!(call_root.span.name, names::CALL);
    assert_eq!(
        (
            call_root.span.start_time_unix_nano,
            call_root.span.end_time_unix_nano
        ),
        (ns(1000), ns(6020))
    );
    let invite = calls.iter().find(|s| s.span.name == "INVITE 200").unwrap();
    assert_eq!(invite.span.parent_span_id, call_root.span.span_id);
    assert_eq!(
        (
            invite.span.start_time_unix_nano,
            invite.span.end_time_unix_nano
        ),
        (ns(1000), ns(1900))
    );
    assert!(
        invite
            .span
            .events
            .iter()
            .any(|e| e.name == event::PROVISIONAL && e.time_unix_nano == ns(1010))
    );
    assert!(calls.iter().any(|s| s.span.name == "BYE 200"));

    // The busy call: error on the transaction and the call.
    let busy = named(&spans, "INVITE 486");
    assert_eq!(
        busy.span.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );
    let busy_root = spans
        .iter()
        .find(|s| s.span.span_id == busy.span.parent_span_id)
        .expect("the busy call's root");
    assert_eq!(
        busy_root.span.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Error as i32)
    );

    // Metrics beside the traces: transactions by method and status,
    // registrations by outcome, capture counters.
    let deadline = std::time::Instant::now() + WAIT;
    let reqs = loop {
        let reqs = rx.store.metrics.lock().unwrap().clone();
        if !reqs.is_empty() || std::time::Instant::now() > deadline {
            break reqs;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let mut sums: HashMap<String, Vec<Point>> = HashMap::new();
    for r in &reqs {
        for rm in &r.resource_metrics {
            for sm in &rm.scope_metrics {
                for m in &sm.metrics {
                    if let Some(metric::Data::Sum(sum)) = &m.data {
                        for p in &sum.data_points {
                            let attrs = p
                                .attributes
                                .iter()
                                .map(|kv| (kv.key.clone(), format!("{:?}", kv.value)))
                                .collect();
                            let v = match p.value {
                                Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i,
                                _ => -1,
                            };
                            sums.entry(m.name.clone()).or_default().push((attrs, v));
                        }
                    }
                }
            }
        }
    }
    let tx = &sums["sipscope.sip.transactions"];
    assert_eq!(
        tx.len(),
        5,
        "REGISTER 401/200, INVITE 200/486, BYE 200: {tx:?}"
    );
    assert!(tx.iter().all(|(_, v)| *v == 1), "{tx:?}");
    let regs = &sums["sipscope.registrations"];
    assert_eq!(regs.len(), 1);
    assert!(
        format!("{:?}", regs[0].0).contains("registered"),
        "{regs:?}"
    );
    let seen = sums["sipscope.capture.packets"]
        .iter()
        .find(|(a, _)| format!("{a:?}").contains("seen"))
        .map(|(_, v)| *v);
    assert_eq!(seen, Some(11));

    // The digest response never left the host, under any key.
    for s in &spans {
        for kv in s
            .span
            .attributes
            .iter()
            .chain(s.span.events.iter().flat_map(|e| &e.attributes))
        {
            assert!(
                !format!("{:?}", kv.value).contains(SECRET_RESPONSE),
                "{kv:?}"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_exports_a_captures_traces_with_capture_times_over_grpc() {
    export_and_check(Receiver::grpc().await, "grpc").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_exports_a_captures_traces_with_capture_times_over_http() {
    export_and_check(Receiver::http().await, "http").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_agents_on_the_same_exchange_share_trace_ids_not_span_ids() {
    let rx = Receiver::grpc().await;
    let (_dir, pcap) = capture();
    for hostname in ["pbx1", "sbc1"] {
        let out = analyze(
            vec![pcap.clone(), "--otlp-endpoint".into(), rx.endpoint()],
            vec![(
                "OTEL_RESOURCE_ATTRIBUTES",
                format!("host.name={hostname},deployment.environment=test"),
            )],
        )
        .await;
        assert!(out.status.success());
    }
    let spans = rx.store.wait_for_spans(2 * EXPECTED_SPANS, WAIT).await;
    let of =
        |h: &str| -> Vec<&ReceivedSpan> { spans.iter().filter(|s| host(s) == Some(h)).collect() };
    let (pbx, sbc) = (of("pbx1"), of("sbc1"));
    assert_eq!((pbx.len(), sbc.len()), (EXPECTED_SPANS, EXPECTED_SPANS));
    let traces = |v: &[&ReceivedSpan]| -> std::collections::BTreeSet<Vec<u8>> {
        v.iter().map(|s| s.span.trace_id.clone()).collect()
    };
    assert_eq!(traces(&pbx), traces(&sbc));
    assert_eq!(
        traces(&pbx).len(),
        3,
        "registration, answered call, busy call"
    );
    for p in &pbx {
        let twin = sbc
            .iter()
            .find(|s| s.span.name == p.span.name && s.span.trace_id == p.span.trace_id)
            .unwrap();
        assert_ne!(
            twin.span.span_id, p.span.span_id,
            "each agent has its own spans"
        );
        assert_eq!(twin.span.start_time_unix_nano, p.span.start_time_unix_nano);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_with_the_collector_down_completes_and_counts_the_dropped_spans() {
    let (_socket, addr) = reserved_port();
    let (_dir, pcap) = capture();
    let out = analyze(
        vec![
            pcap,
            "--otlp-endpoint".into(),
            format!("http://{addr}"),
            "--otlp-timeout-ms".into(),
            "2000".into(),
        ],
        vec![],
    )
    .await;
    let stdout = succeeded(&out);
    // The findings are all there...
    assert!(
        stdout.contains("REGISTER sip:sip.provider.example SIP/2.0"),
        "{stdout}"
    );
    assert!(stdout.contains("SIP/2.0 486 Busy Here"), "{stdout}");
    // ... and every span is accounted for as dropped.
    assert!(
        stdout.contains(&format!("exported 0, dropped {EXPECTED_SPANS}")),
        "{stdout}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_json_without_an_endpoint_writes_spans_as_json_lines() {
    let (_dir, pcap) = capture();
    let out = analyze(
        vec![pcap, "--json".into()],
        vec![("OTEL_RESOURCE_ATTRIBUTES", "host.name=pbx1".into())],
    )
    .await;
    assert!(out.status.success());
    let stdout = String::from_utf8_lossy(&out.stdout);
    let mut spans = Vec::new();
    for line in stdout.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        if v.get("trace_id").is_some() {
            spans.push(v);
        }
    }
    assert_eq!(spans.len(), EXPECTED_SPANS, "{stdout}");
    let r401 = spans.iter().find(|s| s["name"] == "REGISTER 401").unwrap();
    assert_eq!(r401["start"], ns(0));
    assert_eq!(
        r401["trace_id"],
        TraceId::for_registration(REG_CID, 1, AOR).to_hex()
    );
    assert!(!stdout.contains(SECRET_RESPONSE));
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["type"], "export");
    assert_eq!(last["spans"]["exported"], EXPECTED_SPANS as u64);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_response_is_in_the_spans_only_with_the_flag() {
    let (_dir, pcap) = capture();
    let spans_of = |out: &Output| -> Vec<serde_json::Value> {
        assert!(out.status.success());
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .filter(|v| v.get("trace_id").is_some())
            .collect()
    };
    let response_of = |spans: &[serde_json::Value]| -> Option<String> {
        let r200 = spans.iter().find(|s| s["name"] == "REGISTER 200").unwrap();
        r200["attributes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|kv| kv[0] == attr::SIP_AUTH_RESPONSE)
            .map(|kv| kv[1].as_str().unwrap().to_owned())
    };
    let with = analyze(
        vec![
            pcap.clone(),
            "--json".into(),
            "--otlp-include-digest-response".into(),
        ],
        vec![],
    )
    .await;
    assert_eq!(
        response_of(&spans_of(&with)).as_deref(),
        Some(SECRET_RESPONSE)
    );
    let without = analyze(vec![pcap, "--json".into()], vec![]).await;
    assert_eq!(response_of(&spans_of(&without)), None);
    let stdout = String::from_utf8_lossy(&without.stdout);
    assert!(!stdout.contains(SECRET_RESPONSE));
    let last: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    assert_eq!(last["spans"]["redacted_attributes"], 1, "{last}");
}

/// `n` OPTIONS pings, each answered: `n` one-span traces.
fn write_pings(path: &Path, n: u64) {
    let msgs = (0..n).flat_map(|i| {
        let (branch, cid) = (format!("z9hG4bK-p{i}"), format!("ping-{i}@pbx"));
        [
            (
                10 * i,
                PBX_IP,
                PHONE_IP,
                invite_like("OPTIONS", 1, &branch, &cid, false),
            ),
            (
                10 * i + 5,
                PHONE_IP,
                PBX_IP,
                response("200 OK", 1, "OPTIONS", &branch, &cid, ""),
            ),
        ]
    });
    write_pcap(path, msgs);
}

/// Offline the export queue waits for the exporter: with room for one
/// span, every span of the file still reaches the receiver, the same
/// spans `--json` writes, and none is counted dropped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_with_a_one_span_queue_exports_every_span() {
    const PINGS: u64 = 300;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("pings.pcap");
    write_pings(&path, PINGS);
    let pcap = path.to_str().unwrap().to_owned();
    let key = |v: &serde_json::Value| {
        (
            v["trace_id"].as_str().unwrap().to_owned(),
            v["start"].as_u64().unwrap(),
        )
    };

    let json = analyze(vec![pcap.clone(), "--json".into()], vec![]).await;
    assert!(json.status.success());
    let mut written: Vec<(String, u64)> = String::from_utf8_lossy(&json.stdout)
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v.get("trace_id").is_some())
        .map(|v| key(&v))
        .collect();
    assert_eq!(written.len() as u64, PINGS);

    // Room for one span: every other one waits for the exporter.
    let rx = Receiver::grpc().await;
    let endpoint = rx.endpoint();
    let flags = ["--otlp-endpoint", &endpoint, "--otlp-queue", "1"];
    let args = std::iter::once(pcap).chain(flags.map(String::from));
    let stdout = succeeded(&analyze(args.collect(), vec![]).await);
    assert!(
        stdout.contains(&format!("exported {PINGS}, dropped 0")),
        "{stdout}"
    );
    let spans = rx.store.wait_for_spans(PINGS as usize, WAIT).await;
    let mut received: Vec<(String, u64)> = spans
        .iter()
        .map(|s| (hex(&s.span.trace_id), s.span.start_time_unix_nano))
        .collect();
    written.sort();
    received.sort();
    assert_eq!(received, written);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
