//! Hostile inputs found by an adversarial run (issue 12): each is a
//! capture that once crashed the agent or burnt its CPU, kept as a
//! fixture; each must now be analysed to the end, exit 0, with the defect
//! counted.

use std::process::Command;

use sipscope::pipeline::PipelineConfig;

use crate::common::{CLIENT, SERVER, fixtures, messages, request, run_file};

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

/// `segments` TCP segments of 1460 bytes without a line feed to port
/// 5060 (after a SYN when `syn`), then a CRLF and a REGISTER on the same
/// connection, written as a pcap file.
fn newline_free_tcp_capture(path: &std::path::Path, segments: u32, syn: bool) -> Vec<u8> {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    let mut write = |i: u32, seq: u32, syn: bool, payload: &[u8]| {
        let mut b = etherparse::PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(CLIENT.0, SERVER.0, 64)
            .tcp(CLIENT.1, SERVER.1, seq, 65535);
        if syn {
            b = b.syn();
        }
        let mut frame = Vec::new();
        b.write(&mut frame, payload).unwrap();
        let ts = std::time::Duration::from_millis(1_700_000_000_000 + u64::from(i));
        w.write_packet(&PcapPacket::new(ts, frame.len() as u32, &frame))
            .unwrap();
    };
    if syn {
        write(0, 999, true, &[]);
    }
    let flood: Vec<u8> = (0..1460u32).map(|i| b'A' + (i % 26) as u8).collect();
    for i in 0..segments {
        write(i + 1, 1000 + i * 1460, false, &flood);
    }
    let register = request("REGISTER", "z9hG4bKflood", 1, "after-flood@x", "");
    let last = [&b"\r\n"[..], &register].concat();
    write(segments + 1, 1000 + segments * 1460, false, &last);
    register
}

/// 2000 segments (2.9 MB) of TCP bytes without a line feed to port 5060,
/// then a REGISTER: the framer once dropped one byte per pass and
/// rescanned the buffer (30 s for 20,000 segments). The bytes are counted
/// as junk, the REGISTER after them is still framed. Linear time is shown
/// by `cargo xtask bench framing` (N vs 10 N), not timed here.
#[test]
fn newline_free_tcp_is_junk_and_the_message_after_it_is_framed() {
    let dir = tempfile::tempdir().unwrap();
    for syn in [true, false] {
        let path = dir.path().join(format!("newline-free-{syn}.pcap"));
        let register = newline_free_tcp_capture(&path, 2000, syn);
        let (events, stats) = run_file(&path, PipelineConfig::default());
        let msgs = messages(&events);
        assert_eq!(msgs.len(), 1, "syn {syn}: {stats:?}");
        assert_eq!(&msgs[0].message.raw()[..], &register[..]);
        let tcp = &stats.packets.tcp;
        // Every flood byte and the CRLF ending the line: junk, or (while
        // the stream had no SYN to anchor it) held and dropped.
        assert_eq!(
            tcp.junk_bytes + tcp.dropped_bytes,
            2000 * 1460 + 2,
            "syn {syn}: {tcp:?}"
        );
        if syn {
            assert_eq!(tcp.junk_bytes, 2000 * 1460 + 2);
            let (status, out) = analyze(&path);
            assert_eq!(status.code(), Some(0), "{out}");
            assert!(out.contains("junk bytes 2920002"), "{out}");
            assert!(out.contains("REGISTER sip:bob@example.com"), "{out}");
        }
    }
}
