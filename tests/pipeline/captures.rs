//! Real captures through the whole pipeline, checked against tshark (the
//! reference decoder) when it is installed, and against what each capture
//! is documented to contain (tests/fixtures/ATTRIBUTION.md, SOURCES.md).

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use sipscope::pipeline::{Event, PipelineConfig};
use sipscope::sip::{MalformedReason, TimeoutCause};

use crate::common::{fixtures, run_file, shared_external};

/// One SIP message as tshark decoded it (first occurrence of each field in
/// the message's `sip` PDU: the top Via).
#[derive(Debug, Default, Clone)]
struct RefMessage {
    start_line: String,
    is_request: bool,
    status: Option<u16>,
    call_id: Option<String>,
    cseq: Option<String>,
    cseq_method: Option<String>,
    branch: Option<String>,
    host: Option<String>,
    port: Option<String>,
    from_tag: Option<String>,
    to_tag: Option<String>,
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"")
        .replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&apos;", "'")
        .replace("&amp;", "&")
}

/// `show="..."` of the first `<field name="NAME"` in `seg`.
fn field(seg: &str, name: &str) -> Option<String> {
    let at = seg.find(&format!("<field name=\"{name}\""))?;
    let rest = &seg[at..];
    let rest = &rest[..rest.find('>')?];
    let s = rest.find(" show=\"")? + 7;
    let e = rest[s..].find('"')? + s;
    Some(unescape(&rest[s..e]))
}

/// Whether tshark can be run here.
fn tshark_available() -> bool {
    Command::new("tshark")
        .arg("-v")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// tshark's view of every SIP message of a capture, except in packets
/// carried over transports the pipeline does not decode (SCTP, WebSocket).
fn tshark_messages(path: &Path, decode_as: &[&str]) -> Vec<RefMessage> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r").arg(path);
    for d in decode_as {
        cmd.args(["-d", d]);
    }
    let out = cmd
        .args(["-Y", "sip", "-T", "pdml"])
        .output()
        .expect("tshark runs");
    assert!(out.status.success(), "tshark failed on {}", path.display());
    let pdml = String::from_utf8_lossy(&out.stdout);
    let mut msgs = Vec::new();
    for packet in pdml.split("<packet>").skip(1) {
        if packet.contains("<proto name=\"sctp\"") || packet.contains("<proto name=\"websocket\"") {
            continue;
        }
        for seg in packet.split("<proto name=\"sip\"").skip(1) {
            let request = field(seg, "sip.Request-Line");
            let status = field(seg, "sip.Status-Line");
            let Some(start_line) = request.clone().or(status.clone()) else {
                continue;
            };
            msgs.push(RefMessage {
                is_request: request.is_some(),
                status: field(seg, "sip.Status-Code").and_then(|c| c.parse().ok()),
                start_line,
                call_id: field(seg, "sip.Call-ID"),
                cseq: field(seg, "sip.CSeq.seq"),
                cseq_method: field(seg, "sip.CSeq.method"),
                branch: field(seg, "sip.Via.branch"),
                host: field(seg, "sip.Via.sent-by.address"),
                port: field(seg, "sip.Via.sent-by.port"),
                from_tag: field(seg, "sip.from.tag"),
                to_tag: field(seg, "sip.to.tag"),
            });
        }
    }
    msgs
}

#[derive(Debug, Default, PartialEq, Eq)]
struct Counts {
    messages: u64,
    transactions: u64,
    completed: u64,
    request_retransmissions: u64,
    response_retransmissions: u64,
}

/// Transaction counts derived from tshark's fields by the RFC 3261 §17
/// matching rules, written independently of the pipeline's table.
fn reference_counts(msgs: &[RefMessage]) -> Counts {
    let mut c = Counts {
        messages: msgs.len() as u64,
        ..Counts::default()
    };
    let mut transactions = HashSet::new();
    let mut requests = HashSet::new();
    let mut responses = HashSet::new();
    let mut completed = HashSet::new();
    for m in msgs {
        let (Some(method), Some(_)) = (&m.cseq_method, &m.host) else {
            continue;
        };
        let method = if method == "ACK" {
            "INVITE"
        } else {
            method.as_str()
        };
        let key = match &m.branch {
            Some(b) if b.starts_with("z9hG4bK") => {
                format!("B|{b}|{:?}|{:?}|{method}", m.host, m.port)
            }
            _ => {
                let Some(cid) = &m.call_id else { continue };
                format!(
                    "L|{cid}|{:?}|{method}|{:?}|{:?}|{:?}",
                    m.cseq, m.from_tag, m.host, m.port
                )
            }
        };
        if m.is_request {
            if m.cseq_method.as_deref() == Some("ACK") {
                continue;
            }
            transactions.insert(key.clone());
            if !requests.insert(key) {
                c.request_retransmissions += 1;
            }
        } else {
            transactions.insert(key.clone());
            let status = m.status.unwrap_or(0);
            if !responses.insert((key.clone(), status, m.to_tag.clone())) {
                c.response_retransmissions += 1;
            } else if status >= 200 {
                completed.insert(key);
            }
        }
    }
    c.transactions = transactions.len() as u64;
    c.completed = completed.len() as u64;
    c
}

/// Captures to compare, with the tshark decode-as options they need.
fn comparable_captures() -> (Vec<(PathBuf, Vec<&'static str>)>, Option<String>) {
    let mut files: Vec<PathBuf> = std::fs::read_dir(fixtures().join("pcap"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    let skipped = match shared_external() {
        Some(shared) => {
            let copied: HashSet<_> = files
                .iter()
                .map(|p| p.file_name().unwrap().to_owned())
                .collect();
            for e in std::fs::read_dir(shared.join("pcap")).unwrap() {
                let p = e.unwrap().path();
                if !copied.contains(p.file_name().unwrap()) {
                    files.push(p);
                }
            }
            None
        }
        None => {
            Some("../shared/testdata/external not present: copyleft captures skipped".to_string())
        }
    };
    files.sort();
    let list = files
        .into_iter()
        // The fuzzed capture is for robustness only (see fuzzed_capture_...).
        .filter(|p| !p.to_string_lossy().contains("fuzz"))
        .map(|p| {
            let decode_as = if p.to_string_lossy().contains("tcp_fragmented") {
                // tshark takes port 6060 for X11 unless told otherwise.
                vec!["tcp.port==6060,sip"]
            } else {
                vec![]
            };
            (p, decode_as)
        })
        .collect();
    (list, skipped)
}

fn long_timers() -> PipelineConfig {
    // No expiry during the comparison: tshark has no timers, so a response
    // arriving after Timer F (or, in heplify_sip_ipv6_udp.pcap, clocks that
    // jump by years between packets) would otherwise open a second one.
    let mut c = PipelineConfig::default();
    c.transactions.timeout = Duration::MAX;
    c.transactions.invite_proceeding_timeout = Duration::MAX;
    c
}

#[test]
fn messages_and_transactions_match_tshark_on_every_capture() {
    if !tshark_available() {
        eprintln!("SKIPPED: tshark not installed (apt-get install tshark) - nothing compared");
        return;
    }
    let (files, skipped) = comparable_captures();
    if let Some(why) = skipped {
        eprintln!("note: {why}");
    }
    let mut failures = Vec::new();
    let mut compared = 0;
    for (path, decode_as) in &files {
        let reference = tshark_messages(path, decode_as);
        let expected = reference_counts(&reference);
        let (events, stats) = run_file(path, long_timers());
        let got = Counts {
            messages: stats.sip.messages,
            transactions: stats.transactions.created,
            completed: stats.transactions.completed,
            request_retransmissions: stats.transactions.request_retransmissions,
            response_retransmissions: stats.transactions.response_retransmissions,
        };
        let name = path.file_name().unwrap().to_string_lossy();
        if got != expected {
            failures.push(format!(
                "{name}: tshark {expected:?}\n{:>width$}  ours {got:?}",
                "",
                width = name.len()
            ));
        }
        // The same start lines, in the same order.
        let ours: Vec<String> = events
            .iter()
            .filter_map(|e| match e {
                Event::Message(m) => Some(m.message.start_line().into_owned()),
                _ => None,
            })
            .collect();
        let theirs: Vec<String> = reference.iter().map(|m| m.start_line.clone()).collect();
        if ours != theirs {
            let mut a = ours.clone();
            let mut b = theirs.clone();
            a.sort();
            b.sort();
            if a != b {
                failures.push(format!(
                    "{name}: start lines differ\n ours {ours:?}\n tshark {theirs:?}"
                ));
            }
        }
        compared += 1;
    }
    assert!(compared >= 8, "only {compared} captures compared");
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

fn shared_capture(name: &str) -> Option<PathBuf> {
    match shared_external() {
        Some(s) => Some(s.join("pcap").join(name)),
        None => {
            eprintln!(
                "SKIPPED {name}: ../shared/testdata/external not present (copyleft capture, not copied)"
            );
            None
        }
    }
}

fn completed(events: &[Event]) -> Vec<(String, u16)> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::TransactionCompleted(t) => Some((t.method.to_string(), t.final_status()?)),
            _ => None,
        })
        .collect()
}

#[test]
fn register_over_tcp_split_across_segments_completes_with_200() {
    let (events, stats) = run_file(
        &fixtures().join("pcap/suricata-verify_sip-tcp.pcap"),
        PipelineConfig::default(),
    );
    assert_eq!(completed(&events), vec![("REGISTER".to_string(), 200)]);
    assert_eq!(stats.packets.tcp.messages, 2);
    assert_eq!(stats.packets.tcp.dropped_bytes, 0);
    let t = events
        .iter()
        .find_map(|e| match e {
            Event::TransactionCompleted(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    assert!(t.response_time.is_some() && t.request.is_some());
}

#[test]
fn non_numeric_content_length_is_malformed_but_kept() {
    let (events, stats) = run_file(
        &fixtures().join("pcap/zeek_invalid-content-length.pcap"),
        PipelineConfig::default(),
    );
    assert_eq!(stats.sip.messages, 2);
    assert_eq!(
        stats.sip.malformed.get(MalformedReason::BadContentLength),
        2
    );
    assert_eq!(completed(&events), vec![("INVITE".to_string(), 200)]);
}

#[test]
fn junk_datagram_is_counted_and_headerless_register_is_unmatchable() {
    let (_, stats) = run_file(
        &fixtures().join("pcap/zeek_sip-junk-before-request.pcap"),
        PipelineConfig::default(),
    );
    assert_eq!(stats.packets.udp_keepalives + stats.packets.udp_not_sip, 1);
    assert_eq!(stats.sip.messages, 1);
    for r in [
        MalformedReason::MissingCallId,
        MalformedReason::MissingCseq,
        MalformedReason::MissingVia,
    ] {
        assert_eq!(stats.sip.malformed.get(r), 1, "{r}");
    }
    assert_eq!(stats.transactions.unmatchable_messages, 1);
    assert_eq!(stats.transactions.created, 0);
}

#[test]
fn responses_without_requests_still_form_transactions() {
    let (events, stats) = run_file(
        &fixtures().join("pcap/pcapplusplus_sip_resp.pcap"),
        PipelineConfig::default(),
    );
    assert_eq!(stats.sip.responses, 7);
    assert_eq!(stats.sip.requests, 0);
    assert!(stats.transactions.responses_without_request >= 4);
    // No request, so no response time can be claimed.
    for e in &events {
        if let Event::TransactionCompleted(t) = e {
            assert!(t.request.is_none() && t.response_time.is_none());
        }
    }
}

#[test]
fn large_body_over_tcp_on_loopback_null_link() {
    let (events, stats) = run_file(
        &fixtures().join("pcap/suricata-verify_sip-body-large.pcap"),
        PipelineConfig::default(),
    );
    assert_eq!(stats.sip.messages, 2);
    let invite = events
        .iter()
        .find_map(|e| match e {
            Event::Message(m) if m.message.is_request() => Some(m.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(
        invite.message.body().len() as u32,
        invite.message.content_length().unwrap()
    );
    assert!(invite.message.body().len() > 10_000);
}

#[test]
fn compact_headers_fill_the_hot_fields() {
    let (events, _) = run_file(
        &fixtures().join("pcap/suricata-verify_sip_compact_form.pcap"),
        PipelineConfig::default(),
    );
    let Some(Event::Message(m)) = events.iter().find(|e| matches!(e, Event::Message(_))) else {
        panic!("no message")
    };
    let msg = &m.message;
    assert_eq!(
        msg.call_id().as_deref(),
        Some("105090259-446faf7a@192.168.1.2")
    );
    assert_eq!(
        msg.branch(),
        Some(&b"z9hG4bKnp104984053-44ce4a41192.168.1.2"[..])
    );
    // `f: \"arik\" <sip:...>;tag=...`: backslashes outside quotes break the
    // grammar; the tag is still recovered and the defect recorded.
    assert_eq!(msg.from_tag(), Some(&b"6433ef9"[..]));
    assert!(msg.defects.contains(MalformedReason::BadNameAddr));
    assert_eq!(msg.to_uri(), Some(&b"sip:97239287044@voip.brujula.net"[..]));
    assert_eq!(msg.content_type(), Some(&b"application/sdp"[..]));
    assert_eq!(msg.body().len() as u32, msg.content_length().unwrap());
}

#[test]
fn ipv6_fragments_are_reassembled() {
    let Some(path) = shared_capture("sngrep_ipv6frag.pcap") else {
        return;
    };
    let (_, stats) = run_file(&path, PipelineConfig::default());
    assert_eq!(stats.packets.frag.fragments, 4);
    assert_eq!(stats.packets.frag.reassembled, 2);
    assert_eq!(stats.packets.frag.errors, 0);
    assert_eq!(stats.sip.messages, 32);
}

#[test]
fn tunnels_ipip_gre_erspan_ppp_are_decoded() {
    for name in [
        "sngrep_ipip.pcap",
        "heplify_erspan_sip_ipv4_udp.pcapng",
        "ndpi_gre_ppp_sip.pcapng",
    ] {
        let Some(path) = shared_capture(name) else {
            return;
        };
        let (_, stats) = run_file(&path, PipelineConfig::default());
        assert!(stats.packets.tunnels_decoded > 0, "{name}");
        assert!(stats.sip.messages > 0, "{name}");
    }
}

#[test]
fn repeated_401_registrations_over_raw_ip() {
    let Some(path) = shared_capture("heplify_ipip0_rawip.pcap") else {
        return;
    };
    let (events, _) = run_file(&path, PipelineConfig::default());
    let done = completed(&events);
    assert_eq!(
        done.iter()
            .filter(|(m, s)| m == "REGISTER" && *s == 401)
            .count(),
        3,
        "{done:?}"
    );
    assert!(done.contains(&("INVITE".to_string(), 403)));
}

#[test]
fn unanswered_invite_is_reported_at_end_of_capture() {
    let Some(path) = shared_capture("heplify_rtp_rtcp_sip_ipv4_udp.pcap") else {
        return;
    };
    let (events, _) = run_file(&path, PipelineConfig::default());
    let open: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            Event::TransactionTimedOut { transaction, cause } => {
                Some((transaction.method.to_string(), *cause))
            }
            _ => None,
        })
        .collect();
    // The second INVITE gets 100/180 only (Timer C keeps it open).
    assert!(
        open.contains(&("INVITE".to_string(), TimeoutCause::EndOfCapture)),
        "{open:?}"
    );
}

#[test]
fn sctp_is_ignored_and_counted() {
    let Some(path) = shared_capture("heplify_sip_sctp.pcap") else {
        return;
    };
    let (_, stats) = run_file(&path, PipelineConfig::default());
    assert_eq!(stats.sip.messages, 0);
    assert_eq!(stats.packets.other_protocols, 5);
}

#[test]
fn fuzzed_capture_never_panics_and_counters_add_up() {
    let Some(path) = shared_capture("ndpi_fuzz-2006-06-26-2594_fuzzed_aaa.pcap") else {
        return;
    };
    let (events, stats) = run_file(&path, PipelineConfig::default());
    assert_eq!(stats.packets.packets, 691);
    assert_eq!(stats.sip.messages, stats.sip.requests + stats.sip.responses);
    let messages = events
        .iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .count() as u64;
    let unreadable = events
        .iter()
        .filter(|e| matches!(e, Event::Malformed(_)))
        .count() as u64;
    assert_eq!(messages, stats.sip.messages);
    assert_eq!(unreadable, stats.sip.unreadable);
    assert!(stats.sip.messages > 40);
}
