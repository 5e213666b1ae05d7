//! OTLP export tests against real receivers (tonic servers generated from
//! the OTLP protos, and an OTLP/HTTP server decoding the same protobufs):
//! what arrives is exactly what Jaeger or the collector would get.

mod receiver;
mod scenario;
mod tls;

use std::collections::HashMap;
use std::io::Write;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use opentelemetry_proto::tonic::metrics::v1::metric;
use opentelemetry_proto::tonic::trace::v1::{span, status};
use receiver::{ReceivedSpan, Receiver, attr_int, attr_str, reserved_port};
use scenario::{MS, PBX, SBC, T0};
use sipscope::export::otel::Telemetry;
use sipscope::export::otel::{
    CaptureCounters, Metrics, OtlpArgs, OtlpConfig, Protocol, QueueOptions, SpanExportService,
};
use sipscope::export::spans::{SpanRecord, TraceId, attr, event, names};

const WAIT: Duration = Duration::from_secs(20);

/// A config as the CLI would resolve it, with a fixed environment so the
/// test does not depend on the machine's OTEL_* variables.
fn config(
    endpoint: &str,
    protocol: Protocol,
    host: &str,
    extra: impl FnOnce(&mut OtlpArgs),
) -> OtlpConfig {
    let mut args = OtlpArgs {
        endpoint: Some(endpoint.to_owned()),
        protocol: Some(protocol),
        headers: vec!["x-tenant=acme".into()],
        queue_capacity: 1024,
        timeout_ms: Some(5_000),
        ..OtlpArgs::default()
    };
    extra(&mut args);
    let attrs = format!("host.name={host},deployment.environment=test");
    OtlpConfig::resolve(&args, &move |name| {
        (name == "OTEL_RESOURCE_ATTRIBUTES").then(|| attrs.clone())
    })
    .expect("valid config")
    .expect("endpoint configured")
}

fn fast() -> QueueOptions {
    QueueOptions {
        queue_capacity: 1024,
        max_batch: 64,
        linger: Duration::from_millis(20),
        export_timeout: Duration::from_secs(5),
        retry_for: Duration::from_secs(30),
    }
}

fn by_name<'a>(spans: &'a [ReceivedSpan], name: &str) -> &'a ReceivedSpan {
    spans
        .iter()
        .find(|s| s.span.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no span named {name:?} in {:?}",
                spans.iter().map(|s| &s.span.name).collect::<Vec<_>>()
            )
        })
}

/// Export the PBX's view of both attempts and check every field that
/// matters on the received protobufs.
async fn export_registration_and_check(protocol: Protocol, rx: &Receiver) {
    let cfg = config(&rx.endpoint(), protocol, "pbx1", |_| {});
    let svc = SpanExportService::otlp_with(&cfg, fast()).expect("exporter");
    let sink = svc.sink();
    let mut produced: Vec<SpanRecord> = PBX.successful_attempt();
    produced.extend(PBX.forbidden_attempt());
    for s in &produced {
        assert!(sink.submit(s.clone()));
    }
    let stats = svc.shutdown().await;
    assert_eq!(stats.exported, produced.len() as u64, "{stats:?}");
    assert_eq!((stats.dropped, stats.failed_batches), (0, 0));
    assert_eq!(
        stats.redacted_attributes, 2,
        "digest response and password removed"
    );

    let spans = rx.store.wait_for_spans(produced.len(), WAIT).await;
    assert_eq!(spans.len(), produced.len());
    assert!(
        rx.store
            .tenants
            .lock()
            .unwrap()
            .iter()
            .all(|t| t.as_deref() == Some("acme"))
    );

    // Resource: service, host, version and OTEL_RESOURCE_ATTRIBUTES extras.
    let res = &spans[0].resource.attributes;
    assert_eq!(attr_str(res, "service.name"), Some("sipscope"));
    assert_eq!(attr_str(res, "host.name"), Some("pbx1"));
    assert_eq!(
        attr_str(res, "service.version"),
        Some(env!("CARGO_PKG_VERSION"))
    );
    assert_eq!(attr_str(res, "deployment.environment"), Some("test"));

    // Span tree of the successful attempt: two transactions under one root.
    let expected_trace = TraceId::for_registration(scenario::CALL_ID, 1, scenario::AOR);
    let ok_roots: Vec<_> = spans
        .iter()
        .filter(|s| s.span.name == names::REGISTRATION && s.span.trace_id == expected_trace.0)
        .collect();
    assert_eq!(ok_roots.len(), 1);
    let root = &ok_roots[0].span;
    assert!(root.parent_span_id.is_empty(), "root has no parent");
    assert_eq!(root.kind, span::SpanKind::Internal as i32);
    assert_eq!(root.start_time_unix_nano, T0);
    assert_eq!(root.end_time_unix_nano, T0 + 561 * MS);
    assert_eq!(
        root.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Ok as i32)
    );
    assert_eq!(
        attr_str(&root.attributes, attr::REGISTRATION_OUTCOME),
        Some("registered")
    );
    assert_eq!(
        attr_str(&root.attributes, attr::SIP_CONTACT),
        Some("<sip:1001@192.0.2.10:5060>")
    );
    assert_eq!(
        attr_str(&root.attributes, attr::NETWORK_PEER_ADDRESS),
        Some("198.51.100.20")
    );

    let t401 = &by_name(&spans, "REGISTER 401").span;
    let t200 = &by_name(&spans, "REGISTER 200").span;
    for t in [t401, t200] {
        assert_eq!(t.trace_id, root.trace_id);
        assert_eq!(t.parent_span_id, root.span_id);
        assert_eq!(t.kind, span::SpanKind::Client as i32);
        assert_eq!(attr_str(&t.attributes, attr::SIP_METHOD), Some("REGISTER"));
    }
    assert_ne!(t401.span_id, t200.span_id);
    assert_eq!(
        (t401.start_time_unix_nano, t401.end_time_unix_nano),
        (T0, T0 + 520 * MS)
    );
    assert_eq!(
        (t200.start_time_unix_nano, t200.end_time_unix_nano),
        (T0 + 530 * MS, T0 + 561 * MS)
    );
    assert_eq!(attr_int(&t401.attributes, attr::SIP_STATUS_CODE), Some(401));
    assert_eq!(attr_int(&t200.attributes, attr::SIP_CSEQ), Some(2));
    assert_eq!(
        attr_str(&t200.attributes, attr::SIP_AUTH_USERNAME),
        Some("1001")
    );

    // Events on the challenged transaction, at their capture times.
    let ev: HashMap<&str, _> = t401.events.iter().map(|e| (e.name.as_str(), e)).collect();
    assert_eq!(ev.len(), 2);
    assert_eq!(ev[event::RETRANSMISSION].time_unix_nano, T0 + 500 * MS);
    let challenge = ev[event::CHALLENGE];
    assert_eq!(challenge.time_unix_nano, T0 + 520 * MS);
    assert_eq!(
        attr_str(&challenge.attributes, attr::SIP_AUTH_REALM),
        Some(scenario::REALM)
    );

    // The refused refresh: its own trace, Error status, diagnosis event.
    let bad_trace = TraceId::for_registration(scenario::CALL_ID, 3, scenario::AOR);
    let bad: Vec<_> = spans
        .iter()
        .filter(|s| s.span.trace_id == bad_trace.0)
        .collect();
    assert_eq!(bad.len(), 2);
    let bad_root = &bad
        .iter()
        .find(|s| s.span.parent_span_id.is_empty())
        .unwrap()
        .span;
    let st = bad_root.status.as_ref().unwrap();
    assert_eq!(st.code, status::StatusCode::Error as i32);
    assert_eq!(st.message, "403 Forbidden after authentication");
    let diag = &bad_root.events[0];
    assert_eq!(diag.name, event::DIAGNOSIS);
    assert_eq!(
        attr_str(&diag.attributes, attr::DIAGNOSIS_CODE),
        Some("auth.forbidden_after_auth")
    );
    let t403 = &by_name(&spans, "REGISTER 403").span;
    assert_eq!(t403.parent_span_id, bad_root.span_id);
    assert_eq!(
        t403.status.as_ref().unwrap().code,
        status::StatusCode::Error as i32
    );

    // No secrets anywhere in what was received.
    assert_no_secrets(&spans);
}

fn assert_no_secrets(spans: &[ReceivedSpan]) {
    for s in spans {
        let all = s
            .span
            .attributes
            .iter()
            .chain(s.span.events.iter().flat_map(|e| e.attributes.iter()));
        for kv in all {
            assert!(
                kv.key != attr::SIP_AUTH_RESPONSE && !kv.key.contains("password"),
                "{} leaked",
                kv.key
            );
            let v = format!("{:?}", kv.value);
            assert!(
                !v.contains(scenario::DIGEST_RESPONSE) && !v.contains("hunter2"),
                "{v} leaked"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_export_delivers_the_registration_tree_with_capture_times() {
    let rx = Receiver::grpc().await;
    export_registration_and_check(Protocol::Grpc, &rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_protobuf_export_delivers_the_same_tree() {
    let rx = Receiver::http().await;
    export_registration_and_check(Protocol::HttpProtobuf, &rx).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pbx_and_sbc_agents_put_the_same_exchange_into_one_trace() {
    let rx = Receiver::grpc().await;
    // Two independent agents: own exporter, own resource, own view (the
    // SBC sees the requests later and writes the AOR differently).
    let pbx = SpanExportService::otlp_with(
        &config(&rx.endpoint(), Protocol::Grpc, "pbx1", |_| {}),
        fast(),
    )
    .unwrap();
    let sbc = SpanExportService::otlp_with(
        &config(&rx.endpoint(), Protocol::Grpc, "sbc1", |_| {}),
        fast(),
    )
    .unwrap();
    for s in PBX.successful_attempt() {
        pbx.sink().submit(s);
    }
    for s in SBC.successful_attempt() {
        sbc.sink().submit(s);
    }
    assert_eq!(pbx.shutdown().await.exported, 3);
    assert_eq!(sbc.shutdown().await.exported, 3);
    let spans = rx.store.wait_for_spans(6, WAIT).await;
    assert_eq!(spans.len(), 6);

    let host = |s: &ReceivedSpan| {
        attr_str(&s.resource.attributes, "host.name")
            .unwrap()
            .to_owned()
    };
    let roots: HashMap<String, &ReceivedSpan> = spans
        .iter()
        .filter(|s| s.span.name == names::REGISTRATION)
        .map(|s| (host(s), s))
        .collect();
    let (p, s) = (&roots["pbx1"].span, &roots["sbc1"].span);
    assert_eq!(p.trace_id, s.trace_id, "same exchange, same trace");
    // The ids docs/tracing.md shows for this exchange (computed there from
    // the documented derivation, independently of this code).
    assert_eq!(hex::encode(&p.trace_id), "fbaca1a8667789d620a3147864ac4f5d");
    assert_eq!(hex::encode(&p.span_id), "d53566a3ad9a4f89");
    assert_eq!(hex::encode(&s.span_id), "83d6d3ae6ed826a3");
    assert_ne!(p.span_id, s.span_id, "each agent contributes its own spans");
    assert_eq!(
        p.start_time_unix_nano + SBC.offset_ns,
        s.start_time_unix_nano
    );
    for sp in &spans {
        assert_eq!(sp.span.trace_id, p.trace_id);
        let own_root = &roots[&host(sp)].span;
        if sp.span.name != names::REGISTRATION {
            assert_eq!(sp.span.parent_span_id, own_root.span_id);
        }
    }
    let server_kinds = spans
        .iter()
        .filter(|s| host(s) == "sbc1" && s.span.kind == span::SpanKind::Server as i32)
        .count();
    assert_eq!(server_kinds, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_outage_never_blocks_bounds_the_queue_and_delivers_what_fit() {
    let (socket, addr) = reserved_port();
    let opts = QueueOptions {
        queue_capacity: 32,
        max_batch: 8,
        linger: Duration::from_millis(5),
        export_timeout: Duration::from_secs(2),
        retry_for: Duration::from_secs(60),
    };
    let cfg = config(&format!("http://{addr}"), Protocol::Grpc, "pbx1", |_| {});
    let svc = SpanExportService::otlp_with(&cfg, opts)
        .expect("an unreachable endpoint is not a setup error");
    let sink = svc.sink();

    // Collector down: the producer keeps going, the queue never exceeds its bound.
    let mut produced = 0u32;
    for i in 0..500 {
        sink.submit(scenario::filler(i));
        produced += 1;
        assert!(sink.queued() <= opts.queue_capacity);
    }
    // Wait until the exporter has tried and failed at least once.
    let deadline = std::time::Instant::now() + WAIT;
    while sink.stats().export_errors == 0 {
        assert!(
            std::time::Instant::now() < deadline,
            "export never failed: {:?}",
            sink.stats()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let during = sink.stats();
    assert_eq!(during.exported, 0);
    // What fit: the full queue plus the one batch the exporter holds.
    let accepted = 500 - during.dropped;
    assert!(
        (opts.queue_capacity as u64..=(opts.queue_capacity + opts.max_batch) as u64)
            .contains(&accepted),
        "{during:?}"
    );

    // Collector comes up on the reserved port: everything that fit arrives.
    let rx = Receiver::grpc_on(socket.listen(64).expect("listen"));
    let received = rx.store.wait_for_spans(accepted as usize, WAIT).await;
    assert_eq!(received.len() as u64, accepted, "{:?}", sink.stats());
    // And the agent carries on normally.
    for _ in 0..20 {
        assert!(sink.submit(scenario::filler(produced)));
        produced += 1;
    }
    let stats = svc.shutdown().await;
    // Submitting after shutdown is a counted drop, not a panic.
    assert!(!sink.submit(scenario::filler(produced)));
    produced += 1;
    let after = sink.stats();
    assert_eq!(
        after.exported + after.dropped,
        u64::from(produced),
        "{after:?}"
    );
    assert_eq!(stats.exported, accepted + 20, "{stats:?}");
    assert_eq!(stats.failed_batches, 0, "retried, not given up: {stats:?}");
    assert_eq!(rx.store.spans().len() as u64, stats.exported);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batch_failing_past_the_retry_window_is_given_up_and_counted() {
    let (_socket, addr) = reserved_port(); // never listens
    let opts = QueueOptions {
        retry_for: Duration::from_millis(300),
        ..fast()
    };
    let cfg = config(&format!("http://{addr}"), Protocol::Grpc, "pbx1", |_| {});
    let svc = SpanExportService::otlp_with(&cfg, opts).unwrap();
    let sink = svc.sink();
    for s in PBX.successful_attempt() {
        assert!(sink.submit(s));
    }
    // Without any shutdown: the worker gives the batch up on its own.
    let deadline = std::time::Instant::now() + WAIT;
    while sink.stats().failed_batches == 0 {
        assert!(std::time::Instant::now() < deadline, "{:?}", sink.stats());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let s = sink.stats();
    assert_eq!(
        (s.exported, s.dropped, s.failed_batches),
        (0, 3, 1),
        "{s:?}"
    );
    assert!(s.export_errors >= 2, "retried before giving up: {s:?}");
    svc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_response_is_exported_only_when_explicitly_enabled_and_passwords_never() {
    let rx = Receiver::grpc().await;
    let cfg = config(&rx.endpoint(), Protocol::Grpc, "pbx1", |a| {
        a.include_digest_response = true
    });
    let svc = SpanExportService::otlp_with(&cfg, fast()).unwrap();
    for s in PBX.successful_attempt() {
        svc.sink().submit(s);
    }
    let stats = svc.shutdown().await;
    assert_eq!(stats.redacted_attributes, 1, "only the password");
    let spans = rx.store.wait_for_spans(3, WAIT).await;
    let t200 = &by_name(&spans, "REGISTER 200").span;
    assert_eq!(
        attr_str(&t200.attributes, attr::SIP_AUTH_RESPONSE),
        Some(scenario::DIGEST_RESPONSE)
    );
    assert!(
        t200.attributes
            .iter()
            .all(|kv| !kv.key.contains("password"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_reach_the_collector_over_grpc_and_http() {
    for protocol in [Protocol::Grpc, Protocol::HttpProtobuf] {
        let rx = match protocol {
            Protocol::Grpc => Receiver::grpc().await,
            Protocol::HttpProtobuf => Receiver::http().await,
        };
        let cfg = config(&rx.endpoint(), protocol, "pbx1", |_| {});
        // Long interval: only the explicit flush exports.
        let metrics = Metrics::otlp(&cfg, Duration::from_secs(3600), None).unwrap();
        metrics.record_transaction("REGISTER", Some(401), Some(Duration::from_millis(520)));
        metrics.record_transaction("REGISTER", Some(200), Some(Duration::from_millis(31)));
        metrics.record_transaction("FLOOD-1234", None, None);
        metrics.record_registration("registered");
        metrics.record_diagnosis("auth.forbidden_after_auth");
        metrics.set_capture_counters(CaptureCounters {
            seen: 10,
            captured: 9,
            lost: 1,
        });
        let m = metrics.clone();
        tokio::task::spawn_blocking(move || m.force_flush_blocking())
            .await
            .unwrap()
            .expect("flush");

        let reqs = rx.store.metrics.lock().unwrap().clone();
        assert!(!reqs.is_empty(), "{protocol:?}: no metrics arrived");
        let mut found: HashMap<String, metric::Data> = HashMap::new();
        for r in &reqs {
            let res = r.resource_metrics[0].resource.as_ref().unwrap();
            assert_eq!(attr_str(&res.attributes, "service.name"), Some("sipscope"));
            for sm in &r.resource_metrics[0].scope_metrics {
                for m in &sm.metrics {
                    found.insert(m.name.clone(), m.data.clone().unwrap());
                }
            }
        }
        let sum_points = |name: &str| match &found[name] {
            metric::Data::Sum(s) => s.data_points.clone(),
            other => panic!("{name}: {other:?}"),
        };
        let as_int = |p: &opentelemetry_proto::tonic::metrics::v1::NumberDataPoint| match p.value {
            Some(opentelemetry_proto::tonic::metrics::v1::number_data_point::Value::AsInt(i)) => i,
            other => panic!("{other:?}"),
        };
        let tx = sum_points("sipscope.sip.transactions");
        assert_eq!(tx.len(), 3, "{tx:?}");
        assert!(tx.iter().any(
            |p| attr_str(&p.attributes, attr::SIP_METHOD) == Some("other")
                && attr_int(&p.attributes, attr::SIP_STATUS_CODE) == Some(0)
        ));
        let regs = sum_points("sipscope.registrations");
        assert_eq!(
            attr_str(&regs[0].attributes, attr::REGISTRATION_OUTCOME),
            Some("registered")
        );
        assert_eq!(as_int(&regs[0]), 1);
        let diags = sum_points("sipscope.diagnoses");
        assert_eq!(
            attr_str(&diags[0].attributes, attr::DIAGNOSIS_CODE),
            Some("auth.forbidden_after_auth")
        );
        let cap = sum_points("sipscope.capture.packets");
        let lost = cap
            .iter()
            .find(|p| attr_str(&p.attributes, "state") == Some("lost"))
            .unwrap();
        assert_eq!(as_int(lost), 1);
        match &found["sipscope.sip.response_time"] {
            metric::Data::Histogram(h) => {
                let p = &h.data_points[0];
                assert_eq!(p.count, 2);
                assert!((p.sum.unwrap() - 0.551).abs() < 1e-9);
            }
            other => panic!("{other:?}"),
        }
        metrics.shutdown().await;
    }
}

#[derive(Clone, Default)]
struct SharedBuf(Arc<Mutex<Vec<u8>>>);
impl Write for SharedBuf {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_lines_fallback_writes_one_filtered_span_per_line() {
    let buf = SharedBuf::default();
    let svc = SpanExportService::json_lines(Box::new(buf.clone()), fast(), false);
    let produced = PBX.successful_attempt();
    for s in &produced {
        svc.sink().submit(s.clone());
    }
    let stats = svc.shutdown().await;
    assert_eq!(
        (stats.exported, stats.dropped, stats.redacted_attributes),
        (3, 0, 2)
    );
    let text = String::from_utf8(buf.0.lock().unwrap().clone()).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 3);
    for (line, rec) in lines.iter().zip(&produced) {
        assert_eq!(line["trace_id"], rec.trace_id.to_hex());
        assert_eq!(line["span_id"], rec.span_id.to_hex());
        assert_eq!(line["start"], rec.start.as_nanos());
        assert_eq!(line["name"], rec.name.as_ref());
    }
    assert_eq!(lines[0]["parent"], produced[2].span_id.to_hex());
    assert!(!text.contains(scenario::DIGEST_RESPONSE) && !text.contains("hunter2"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unresolvable_collector_host_is_counted_not_fatal() {
    // .invalid never resolves (RFC 6761 §6.4).
    let cfg = config(
        "http://collector.invalid:4317",
        Protocol::Grpc,
        "pbx1",
        |_| {},
    );
    let svc = SpanExportService::otlp_with(&cfg, fast()).expect("setup does not touch the network");
    for s in PBX.successful_attempt() {
        svc.sink().submit(s);
    }
    let stats = svc.shutdown().await;
    assert_eq!(
        (stats.exported, stats.dropped, stats.failed_batches),
        (0, 3, 1),
        "{stats:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grpc_over_tls_trusts_the_configured_ca_and_only_that() {
    let pki = tls::Pki::new();
    let rx = Receiver::grpc_tls(&pki.server_cert_pem, &pki.server_key_pem).await;
    let endpoint = format!("https://localhost:{}", rx.addr.port());

    // Without our CA the collector's certificate is not trusted: counted failure.
    let untrusted =
        SpanExportService::otlp_with(&config(&endpoint, Protocol::Grpc, "pbx1", |_| {}), fast())
            .unwrap();
    for s in PBX.successful_attempt() {
        untrusted.sink().submit(s);
    }
    let stats = untrusted.shutdown().await;
    assert_eq!((stats.exported, stats.dropped), (0, 3), "{stats:?}");
    assert!(rx.store.spans().is_empty());

    let ca = pki.ca_path.clone();
    let cfg = config(&endpoint, Protocol::Grpc, "pbx1", |a| a.ca_cert = Some(ca));
    let trusted = SpanExportService::otlp_with(&cfg, fast()).unwrap();
    for s in PBX.successful_attempt() {
        trusted.sink().submit(s);
    }
    let stats = trusted.shutdown().await;
    assert_eq!((stats.exported, stats.dropped), (3, 0), "{stats:?}");
    assert_eq!(rx.store.wait_for_spans(3, WAIT).await.len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn telemetry_setup_errors_are_clear_and_json_is_the_fallback() {
    let bad = OtlpArgs {
        endpoint: Some("collector:4317".into()),
        queue_capacity: 16,
        ..OtlpArgs::default()
    };
    let err = Telemetry::start(&bad, None)
        .err()
        .expect("malformed endpoint is an error")
        .to_string();
    assert!(
        err.contains("--otlp-endpoint") && err.contains("http://collector:4317"),
        "{err}"
    );

    let missing_ca = OtlpArgs {
        endpoint: Some("https://collector.invalid:4317".into()),
        ca_cert: Some("/nonexistent/ca.pem".into()),
        queue_capacity: 16,
        ..OtlpArgs::default()
    };
    let err = Telemetry::start(&missing_ca, None)
        .err()
        .expect("unreadable CA is an error")
        .to_string();
    assert!(
        err.contains("/nonexistent/ca.pem") && err.contains("--otlp-ca-cert"),
        "{err}"
    );

    // No endpoint: JSON lines when asked, nothing otherwise; metrics are a no-op.
    let plain = OtlpArgs {
        queue_capacity: 16,
        ..OtlpArgs::default()
    };
    let none = Telemetry::start_with(None, &plain, None).unwrap();
    assert!(none.span_sink().is_none() && !none.metrics().is_enabled());
    assert_eq!(none.shutdown().await, None);
    let buf = SharedBuf::default();
    let json = Telemetry::start_with(None, &plain, Some(Box::new(buf.clone()))).unwrap();
    let sink = json.span_sink().unwrap();
    for s in PBX.forbidden_attempt() {
        assert!(sink.submit(s));
    }
    json.metrics().record_diagnosis("auth.forbidden_after_auth");
    let stats = json.shutdown().await.unwrap();
    assert_eq!(stats.exported, 2);
    assert_eq!(
        String::from_utf8(buf.0.lock().unwrap().clone())
            .unwrap()
            .lines()
            .count(),
        2
    );
}
