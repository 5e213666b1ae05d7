//! `sipscope analyze` on a capture of a call with RTP: the receiver gets
//! one span per stream direction under the call's trace, child of the
//! call's root, with the RTP statistics as attributes and the
//! `media.quality` finding as the lossy direction's status; and the RTP
//! metrics beside them.

use std::net::SocketAddr;

use opentelemetry_proto::tonic::common::v1::any_value;
use opentelemetry_proto::tonic::metrics::v1::number_data_point;
use sipscope::export::spans::SpanId;
use sipscope::time::Timestamp;

use super::*;

#[allow(dead_code)] // the reader half is for the media tests
#[path = "../media/pcap_io.rs"]
mod pcap_io;

use pcap_io::{UdpDatagram, write_udp};

const CALL_ID: &str = "rtp-call-1@192.0.2.10";
const PBX_SIP: &str = "192.0.2.10:5060";
const PHONE_SIP: &str = "203.0.113.5:5060";
/// SDP addresses: the PBX offers, the phone answers.
const PBX_RTP: &str = "192.0.2.10:10000";
const PHONE_RTP: &str = "203.0.113.5:20000";
/// RTP packets each way; the PBX's direction loses every 20th (5 %).
const PACKETS: u64 = 100;
const LOST: u64 = 5;
const FIRST_RTP_MS: u64 = 1020;

fn ns(ms: u64) -> u64 {
    T0 + ms * MS
}

fn sdp(addr: &str) -> String {
    let (ip, port) = addr.split_once(':').unwrap();
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n"
    )
}

/// A SIP message of the call; the PBX (caller) sent the requests.
fn sip(start: &str, cseq: &str, to_tag: bool, body: &str) -> Vec<u8> {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{start}\r\nVia: SIP/2.0/UDP {PBX_SIP};branch=z9hG4bK-{}\r\n\
         From: <sip:1001@192.0.2.10>;tag=pbx\r\nTo: <sip:bob@203.0.113.5>{}\r\n\
         Call-ID: {CALL_ID}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        cseq.split(' ').next().unwrap(),
        if to_tag { ";tag=phone" } else { "" },
        body.len()
    )
    .into_bytes()
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

fn datagram(ms: u64, src: &str, dst: &str, payload: Vec<u8>) -> UdpDatagram {
    UdpDatagram {
        ts: Timestamp(ns(ms)),
        src: src.parse().unwrap(),
        dst: dst.parse().unwrap(),
        payload,
    }
}

/// INVITE with an offer, 200 with the answer, ACK, 2 s of RTP both ways,
/// BYE.
fn call_capture() -> Vec<UdpDatagram> {
    let invite = "INVITE sip:bob@203.0.113.5 SIP/2.0";
    let mut d = vec![
        datagram(
            0,
            PBX_SIP,
            PHONE_SIP,
            sip(invite, "1 INVITE", false, &sdp(PBX_RTP)),
        ),
        datagram(
            1000,
            PHONE_SIP,
            PBX_SIP,
            sip("SIP/2.0 200 OK", "1 INVITE", true, &sdp(PHONE_RTP)),
        ),
        datagram(
            1010,
            PBX_SIP,
            PHONE_SIP,
            sip("ACK sip:bob@203.0.113.5 SIP/2.0", "1 ACK", true, ""),
        ),
    ];
    for i in 0..PACKETS as u16 {
        let ms = FIRST_RTP_MS + u64::from(i) * 20;
        if i % 20 != 7 {
            d.push(datagram(ms, PBX_RTP, PHONE_RTP, rtp(i, 0xAAAA_0001)));
        }
        d.push(datagram(ms, PHONE_RTP, PBX_RTP, rtp(i, 0xBBBB_0002)));
    }
    let bye = "BYE sip:bob@203.0.113.5 SIP/2.0";
    d.push(datagram(
        4000,
        PBX_SIP,
        PHONE_SIP,
        sip(bye, "2 BYE", true, ""),
    ));
    d.push(datagram(
        4005,
        PHONE_SIP,
        PBX_SIP,
        sip("SIP/2.0 200 OK", "2 BYE", true, ""),
    ));
    d
}

fn attr_f64(attrs: &[opentelemetry_proto::tonic::common::v1::KeyValue], key: &str) -> f64 {
    match receiver::attr(attrs, key) {
        Some(any_value::Value::DoubleValue(v)) => *v,
        other => panic!("{key}: {other:?}"),
    }
}

/// Root, INVITE 200, BYE 200 and the two media directions.
const CALL_SPANS: usize = 5;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn analyze_exports_a_calls_rtp_as_media_spans_under_its_trace() {
    let rx = Receiver::grpc().await;
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("call-rtp.pcap");
    write_udp(&pcap, &call_capture());
    let out = tokio::task::spawn_blocking({
        let endpoint = rx.endpoint();
        move || {
            let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_sipscope"));
            cmd.arg("analyze")
                .arg(&pcap)
                .args(["--otlp-endpoint", &endpoint]);
            for (k, _) in std::env::vars() {
                if k.starts_with("OTEL_") {
                    cmd.env_remove(k);
                }
            }
            cmd.env("OTEL_RESOURCE_ATTRIBUTES", "host.name=pbx1")
                .output()
                .expect("running sipscope")
        }
    })
    .await
    .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("media.quality"), "{stdout}");
    assert!(
        stdout.contains(&format!("exported {CALL_SPANS}, dropped 0")),
        "{stdout}"
    );
    let spans = rx.store.wait_for_spans(CALL_SPANS, WAIT).await;
    assert_eq!(spans.len(), CALL_SPANS);

    let trace = TraceId::for_call(CALL_ID);
    // The ids of the sample trace in docs/tracing.md and the README.
    assert_eq!(trace.to_hex(), "f732e80cff5c5fb1a17ef04cf5f96927");
    assert!(spans.iter().all(|s| s.span.trace_id == trace.0.to_vec()));
    let root = by_name(&spans, names::CALL);
    assert_eq!(
        root.span.span_id,
        SpanId::for_root(trace, "pbx1").0.to_vec()
    );
    let sent = by_name(&spans, names::RTP_CALLER_TO_CALLEE);
    let received = by_name(&spans, names::RTP_CALLEE_TO_CALLER);
    for (s, label) in [(sent, "caller_to_callee"), (received, "callee_to_caller")] {
        assert_eq!(s.span.parent_span_id, root.span.span_id, "{label}");
        assert_eq!(
            s.span.span_id,
            SpanId::for_media(trace, "pbx1", 0, label).0.to_vec()
        );
        assert_eq!(s.span.kind, span::SpanKind::Internal as i32);
        let a = &s.span.attributes;
        assert_eq!(attr_str(a, attr::RTP_DIRECTION), Some(label));
        assert_eq!(attr_str(a, attr::RTP_CODEC), Some("PCMA/8000"));
        assert_eq!(attr_str(a, attr::SIP_CALL_ID), Some(CALL_ID));
        assert_eq!(attr_int(a, attr::RTP_PAYLOAD_TYPE), Some(8));
        assert_eq!(attr_int(a, attr::RTP_EXPECTED), Some(PACKETS as i64));
        assert_eq!(
            attr_f64(a, attr::RTP_JITTER_MS),
            0.0,
            "a perfect 20 ms clock"
        );
        // The last packet of both directions is the 100th (the PBX's
        // losses are never the last).
        assert_eq!(
            (s.span.start_time_unix_nano, s.span.end_time_unix_nano),
            (ns(FIRST_RTP_MS), ns(FIRST_RTP_MS + (PACKETS - 1) * 20))
        );
    }

    assert_eq!(hex::encode(&root.span.span_id), "ce3c4b9e7c14fb7e");
    assert_eq!(hex::encode(&sent.span.span_id), "460f896f21e4a508");
    assert_eq!(hex::encode(&received.span.span_id), "25626c45515ef9d4");
    let a = &sent.span.attributes;
    assert_eq!(attr_str(a, attr::RTP_SRC), Some(PBX_RTP));
    assert_eq!(attr_str(a, attr::RTP_DST), Some(PHONE_RTP));
    assert_eq!(attr_str(a, attr::RTP_SSRC), Some("0xAAAA0001"));
    assert_eq!(
        attr_int(a, attr::RTP_PACKETS),
        Some((PACKETS - LOST) as i64)
    );
    assert_eq!(attr_int(a, attr::RTP_LOST), Some(LOST as i64));
    assert!((attr_f64(a, attr::RTP_LOSS_PERCENT) - 5.0).abs() < 1e-9);
    let lossy_mos = attr_f64(a, attr::RTP_MOS);
    let status = sent.span.status.as_ref().unwrap();
    assert_eq!(status.code, status::StatusCode::Error as i32);
    assert!(
        status.message.starts_with("media.quality: loss 5.00 %"),
        "{}",
        status.message
    );

    let a = &received.span.attributes;
    assert_eq!(attr_str(a, attr::RTP_SRC), Some(PHONE_RTP));
    assert_eq!(attr_str(a, attr::RTP_DST), Some(PBX_RTP));
    assert_eq!(attr_str(a, attr::RTP_SSRC), Some("0xBBBB0002"));
    assert_eq!(attr_int(a, attr::RTP_PACKETS), Some(PACKETS as i64));
    assert_eq!(attr_int(a, attr::RTP_LOST), Some(0));
    let clean_mos = attr_f64(a, attr::RTP_MOS);
    assert!(
        clean_mos > 4.0 && lossy_mos < clean_mos,
        "{clean_mos} {lossy_mos}"
    );
    assert_eq!(
        received.span.status.as_ref().map(|s| s.code),
        Some(status::StatusCode::Ok as i32)
    );
    let flows = attr_str(a, attr::RTP_FLOWS).unwrap();
    let flow: SocketAddr = PHONE_RTP.parse().unwrap();
    assert!(
        flows.starts_with(&format!("{flow} -> {PBX_RTP}")),
        "{flows}"
    );

    // RTP metrics beside the spans (exported at shutdown).
    let deadline = std::time::Instant::now() + WAIT;
    let points = loop {
        let mut points = Vec::new();
        for r in rx.store.metrics.lock().unwrap().iter() {
            for rm in &r.resource_metrics {
                for sm in &rm.scope_metrics {
                    for m in sm
                        .metrics
                        .iter()
                        .filter(|m| m.name == "sipscope.rtp.packets")
                    {
                        if let Some(metric::Data::Sum(sum)) = &m.data {
                            points.extend(sum.data_points.clone());
                        }
                    }
                }
            }
        }
        if !points.is_empty() || std::time::Instant::now() > deadline {
            break points;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let value = |state: &str| {
        points
            .iter()
            .find(|p| attr_str(&p.attributes, "state") == Some(state))
            .and_then(|p| match p.value {
                Some(number_data_point::Value::AsInt(i)) => Some(i),
                _ => None,
            })
    };
    assert_eq!(value("received"), Some((2 * PACKETS - LOST) as i64));
    assert_eq!(value("lost"), Some(LOST as i64));
}
