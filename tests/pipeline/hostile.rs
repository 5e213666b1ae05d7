//! Hostile inputs found by an adversarial run (issue 12): each is a
//! capture that once crashed the agent or burnt its CPU, kept as a
//! fixture; each must now be analysed to the end, exit 0, with the defect
//! counted.

use std::process::Command;

use sipscope::pipeline::PipelineConfig;

use crate::common::{fixtures, run_file};

/// `sipscope analyze FILE`: (exit status, stdout).
fn analyze(path: &std::path::Path) -> (std::process::ExitStatus, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .arg("analyze")
        .arg(path)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status,
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

/// 106 bytes: Ethernet, IPv6 with Next Header 60, a Destination Options
/// header whose Next Header is 44 (Fragment), then only 4 of the
/// Fragment header's 8 bytes (Payload Length 12). etherparse 0.19's
/// extension iterator read past the frame here (invalid read, SIGSEGV).
#[test]
fn ipv6_chain_ending_in_a_truncated_fragment_header_is_an_ip_error() {
    let path = fixtures().join("pcap/crafted_ipv6_truncated_fragment_header.pcap");
    assert_eq!(std::fs::metadata(&path).unwrap().len(), 106);
    let (_, stats) = run_file(&path, PipelineConfig::default());
    assert_eq!(stats.packets.packets, 1);
    assert_eq!(stats.packets.ip_errors, 1, "{stats:?}");
    assert_eq!(stats.packets.frag.fragments, 0, "{stats:?}");
    let (status, out) = analyze(&path);
    assert_eq!(status.code(), Some(0), "{out}");
    assert!(out.contains("IP errors 1"), "{out}");
}
