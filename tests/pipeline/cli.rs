//! `sipscope analyze` as a user runs it.

use std::process::Command;

use crate::common::fixtures;

fn analyze(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .arg("analyze")
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    fixtures()
        .join("pcap")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn call_flow_groups_by_call_id_and_ends_with_counters() {
    let (ok, out, _) = analyze(&[&fixture("suricata-verify_public-cloudshark-sip-s0.pcap")]);
    assert!(ok);
    assert!(out.contains("Call-ID: 12013223@200.57.7.195"), "{out}");
    assert!(
        out.contains("200.57.7.195:5060 → 200.57.7.204:5061  UDP  INVITE sip:francisco@bestel.com:55060 SIP/2.0"),
        "{out}"
    );
    // INVITE at 17:58:02.965944, 200 at 17:58:11.443869.
    assert!(
        out.contains("SIP/2.0 200 Ok  (CSeq 1 INVITE)  [8477.9 ms]"),
        "{out}"
    );
    assert!(
        out.contains("Summary") && out.contains("SIP messages       10"),
        "{out}"
    );
    assert!(
        out.contains("Transactions without a final response"),
        "{out}"
    );
}

#[test]
fn json_lines_are_one_object_each() {
    let (ok, out, _) = analyze(&["--json", &fixture("suricata-verify_sip-tcp.pcap")]);
    assert!(ok);
    let mut types = Vec::new();
    let mut spans = Vec::new();
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        // Without an OTLP endpoint the spans share the stream (they carry
        // a trace id instead of a type; the export task writes them).
        if v.get("trace_id").is_some() {
            spans.push(v["name"].as_str().unwrap().to_string());
            continue;
        }
        types.push(v["type"].as_str().unwrap().to_string());
        if v["type"] == "transaction" {
            assert_eq!(v["method"], "REGISTER");
            assert_eq!(v["final_status"], 200);
            assert_eq!(v["outcome"], "completed");
        }
        if v["type"] == "registration" {
            assert_eq!(v["outcome"]["kind"], "registered");
            assert_eq!(v["outcome"]["expires"], 600);
        }
        if v["type"] == "message" {
            assert_eq!(v["transport"], "tcp");
            assert!(v["call_id"].is_string());
        }
    }
    // The capture is a loopback replay of a phone whose Contact is a LAN
    // address: the registration tracker reports it and the attempt.
    assert_eq!(
        types,
        vec![
            "message",
            "diagnosis",
            "transaction",
            "message",
            "registration",
            "summary",
            "export"
        ]
    );
    spans.sort();
    assert_eq!(spans, vec!["REGISTER 200", "SIP registration"]);
}

#[test]
fn unreadable_and_non_capture_files_fail_with_a_clear_message() {
    let (ok, _, err) = analyze(&["/nonexistent/x.pcap"]);
    assert!(!ok);
    assert!(err.contains("cannot open /nonexistent/x.pcap"), "{err}");
    let text = fixtures().join("rfc4475/wsinv.dat");
    let (ok, _, err) = analyze(&[&text.to_string_lossy()]);
    assert!(!ok);
    assert!(err.contains("not a pcap or pcapng capture file"), "{err}");
}

#[test]
fn truncated_capture_is_analysed_up_to_the_damage() {
    let full = std::fs::read(fixture("suricata-verify_public-cloudshark-sip-s0.pcap")).unwrap();
    let path = std::env::temp_dir().join(format!("sipscope-truncated-{}.pcap", std::process::id()));
    std::fs::write(&path, &full[..full.len() - 100]).unwrap();
    let (ok, out, err) = analyze(&[&path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    assert!(ok);
    assert!(err.contains("truncated"), "{err}");
    assert!(out.contains("SIP messages       9"), "{out}");
    assert!(out.contains("damaged capture files 1"), "{out}");
}
