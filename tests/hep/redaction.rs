//! Secrets never leave the host (DESIGN): the digest `response` of every
//! Authorization/Proxy-Authorization a real client (PJSIP) sent reaches
//! the collector as `"redacted"`, the rest of the message byte for byte;
//! `--hep-include-digest-response` sends it as captured.

use std::path::Path;

use crate::{
    reference,
    scenario::Family,
    tools::{self, Collector, Transport},
};

/// PJSIP answering a 407 with (wrong) credentials: real Proxy-Authorization.
const CAPTURE: &str = "tests/fixtures/clients/pjsip-invite-407-wrong-password.pcap";

/// The quoted `response` value of a credentials header, if the message has one.
fn response_value(message: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(message);
    let (head, _) = text.split_once("\r\n\r\n")?;
    head.lines()
        .filter(|l| l.to_ascii_lowercase().contains("authorization:"))
        .find_map(|l| {
            let (_, after) = l.split_once("response=\"")?;
            Some(after.split('"').next()?.to_owned())
        })
}

/// The SIP payloads the collector got, in order, and the `"type":"hep"` summary.
fn export(input: &Path, extra: &[&str]) -> (Vec<Vec<u8>>, serde_json::Value) {
    let collector = Collector::start(Transport::Udp, Family::V4);
    let url = collector.url();
    let out = tools::analyze(
        input,
        &[&["--json", "--hep-endpoint", &url][..], extra].concat(),
    );
    let line = out
        .lines()
        .find(|l| l.contains(r#""type":"hep""#))
        .unwrap_or_else(|| panic!("no hep summary in {out}"));
    let stats: serde_json::Value = serde_json::from_str(line).unwrap();
    let sent = stats["sent"].as_u64().unwrap() as usize;
    let sip = collector
        .wait_for(sent)
        .into_iter()
        .filter(|h| h.proto_type == 1)
        .map(|h| h.payload)
        .collect();
    (sip, stats)
}

#[test]
fn digest_responses_are_redacted_unless_asked_for() {
    let input = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(CAPTURE);
    let captured: Vec<Vec<u8>> = reference(&input)
        .datagrams
        .into_iter()
        .map(|(_, _, _, payload)| payload)
        .collect();
    let with_credentials = captured
        .iter()
        .filter(|m| response_value(m).is_some())
        .count();
    assert!(with_credentials > 0, "the capture holds credentials");

    let (sent, stats) = export(&input, &[]);
    assert_eq!(sent.len(), captured.len(), "one HEP packet per message");
    assert_eq!(stats["redacted"], with_credentials as u64, "{stats}");
    for (ours, theirs) in sent.iter().zip(&captured) {
        match response_value(theirs) {
            Some(secret) => {
                let text = String::from_utf8_lossy(ours);
                assert!(!text.contains(&secret), "response sent: {text}");
                assert_eq!(response_value(ours).as_deref(), Some("redacted"));
                let expected = String::from_utf8_lossy(theirs).replacen(
                    &format!("\"{secret}\""),
                    "\"redacted\"",
                    1,
                );
                assert_eq!(text, expected, "only the response changes");
            }
            None => assert_eq!(ours, theirs, "byte for byte"),
        }
    }

    let (sent, stats) = export(&input, &["--hep-include-digest-response"]);
    assert_eq!(stats["redacted"], 0, "{stats}");
    assert_eq!(sent, captured, "as captured when asked for");
}
