//! Setting export up: JSON-lines fallback, TLS with a private CA, and the
//! errors a user sees for a bad configuration.

use super::*;

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
async fn http_over_tls_trusts_the_configured_ca_and_only_that() {
    let pki = tls::Pki::new();
    let rx = Receiver::https(pki.server_cert_der.clone(), pki.server_key_pkcs8.clone()).await;
    let endpoint = format!("https://localhost:{}", rx.addr.port());
    let proto = Protocol::HttpProtobuf;

    let untrusted =
        SpanExportService::otlp_with(&config(&endpoint, proto, "pbx1", |_| {}), fast()).unwrap();
    for s in PBX.successful_attempt() {
        untrusted.sink().submit(s);
    }
    let stats = untrusted.shutdown().await;
    assert_eq!((stats.exported, stats.dropped), (0, 3), "{stats:?}");
    assert!(rx.store.spans().is_empty());

    let ca = pki.ca_path.clone();
    let cfg = config(&endpoint, proto, "pbx1", |a| a.ca_cert = Some(ca));
    let trusted = SpanExportService::otlp_with(&cfg, fast()).unwrap();
    for s in PBX.successful_attempt() {
        trusted.sink().submit(s);
    }
    let stats = trusted.shutdown().await;
    assert_eq!((stats.exported, stats.dropped), (3, 0), "{stats:?}");
    let spans = rx.store.wait_for_spans(3, WAIT).await;
    assert_eq!(spans.len(), 3);
    assert!(
        rx.store
            .tenants
            .lock()
            .unwrap()
            .iter()
            .all(|t| t.as_deref() == Some("acme"))
    );
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
