//! Metrics over OTLP, gRPC and HTTP, checked on the received protobufs.

use super::*;

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
        // Two stream directions of a G.711 call; a codec name off the wire
        // is mapped to the E-model's fixed set.
        metrics.record_rtp("PCMA/8000", 950, 50, Some(3.2));
        metrics.record_rtp("PCMU/8000", 1000, 0, Some(4.4));
        metrics.record_rtp("X-FLOOD-1/8000", 10, 0, None);
        metrics.set_capture_counters(CaptureTotals {
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
        let rtp = sum_points("sipscope.rtp.packets");
        let rtp_of = |codec: &str, state: &str| {
            rtp.iter()
                .find(|p| {
                    attr_str(&p.attributes, attr::RTP_CODEC) == Some(codec)
                        && attr_str(&p.attributes, "state") == Some(state)
                })
                .map(as_int)
        };
        assert_eq!(rtp_of("G.711", "received"), Some(1950), "{rtp:?}");
        assert_eq!(rtp_of("G.711", "lost"), Some(50));
        assert_eq!(rtp_of("other", "received"), Some(10));
        match &found["sipscope.rtp.mos"] {
            metric::Data::Histogram(h) => {
                assert_eq!(h.data_points.len(), 1, "only G.711 had a MOS");
                let p = &h.data_points[0];
                assert_eq!(p.count, 2);
                assert!((p.sum.unwrap() - 7.6).abs() < 1e-9);
                assert_eq!(attr_str(&p.attributes, attr::RTP_CODEC), Some("G.711"));
            }
            other => panic!("{other:?}"),
        }
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
