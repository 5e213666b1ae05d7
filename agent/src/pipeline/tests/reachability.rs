//! Reachability on synthetic Ethernet/IPv4/UDP frames fed through the
//! real pipeline: each test states exactly which codes it must raise.

use std::sync::Arc;

use etherparse::PacketBuilder;

use crate::diagnosis::{Code, Diagnosis};
use crate::pipeline::{Event, Pipeline, PipelineConfig};
use crate::{
    packet::{Direction, DropReason, DroppedPacket, LinkType, Packet},
    time::Timestamp,
};

const T0: u64 = 1_700_000_000_000_000_000;
const UA: ([u8; 4], u16) = ([10, 0, 0, 2], 5062);
const REGISTRAR: ([u8; 4], u16) = ([10, 0, 0, 1], 5060);

fn at(ms: u64) -> Timestamp {
    Timestamp(T0 + ms * 1_000_000)
}

fn register(cseq: u32, branch: &str) -> String {
    format!(
        "REGISTER sip:10.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK{branch}\r\n\
         Max-Forwards: 70\r\nFrom: <sip:alice@test>;tag=ft\r\nTo: <sip:alice@test>\r\n\
         Call-ID: call-{branch}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@10.0.0.2:5062>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

fn response(status: &str, cseq: u32, branch: &str) -> String {
    format!(
        "SIP/2.0 {status}\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK{branch}\r\n\
         From: <sip:alice@test>;tag=ft\r\nTo: <sip:alice@test>;tag=tt\r\n\
         Call-ID: call-{branch}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:alice@10.0.0.2:5062>\r\n\
         Content-Length: 0\r\n\r\n"
    )
}

/// IP/UDP bytes (no link header) of `text` from `from` to `to`.
fn ip_udp(from: ([u8; 4], u16), to: ([u8; 4], u16), text: &str) -> Vec<u8> {
    let mut data = Vec::new();
    PacketBuilder::ipv4(from.0, to.0, 64)
        .udp(from.1, to.1)
        .write(&mut data, text.as_bytes())
        .unwrap();
    data
}

fn frame(ms: u64, from: ([u8; 4], u16), to: ([u8; 4], u16), text: &str) -> Packet {
    let mut data = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    data.extend(ip_udp(from, to, text));
    packet(ms, LinkType::Ethernet, data)
}

fn packet(ms: u64, link: LinkType, data: Vec<u8>) -> Packet {
    Packet {
        ts: at(ms),
        ifindex: 0,
        direction: Direction::Unknown,
        link,
        orig_len: data.len() as u32,
        data,
    }
}

fn dropped(ms: u64, data: Vec<u8>, reason: &str) -> DroppedPacket {
    DroppedPacket {
        packet: packet(ms, LinkType::RawIp, data),
        reason: DropReason {
            code: 0,
            name: reason.into(),
        },
    }
}

fn diagnoses(events: &[Event]) -> Vec<Arc<Diagnosis>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Diagnosis(d) => Some(d.clone()),
            _ => None,
        })
        .collect()
}

fn evidence<'a>(d: &'a Diagnosis, name: &str) -> &'a str {
    &d.evidence
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no evidence {name} in {d}"))
        .value
}

fn pipeline() -> Pipeline {
    Pipeline::new(PipelineConfig::default())
}

/// REGISTER retransmitted on Timer E's schedule (0.5, 1, 2 s) and never
/// answered.
fn unanswered(p: &mut Pipeline, start: u64, cseq: u32, branch: &str, out: &mut Vec<Event>) {
    for offset in [0, 500, 1500, 3500] {
        out.extend(p.ingest(&frame(
            start + offset,
            UA,
            REGISTRAR,
            &register(cseq, branch),
        )));
    }
}

#[test]
fn unanswered_register_raises_no_response_with_its_schedule() {
    let mut p = pipeline();
    let mut events = Vec::new();
    unanswered(&mut p, 0, 1, "a1", &mut events);
    assert!(diagnoses(&events).is_empty(), "nothing before Timer F");
    events.extend(p.tick(at(33_000)));
    let found = diagnoses(&events);
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(d.code, Code::NetNoResponse);
    assert_eq!(evidence(d, "method"), "REGISTER");
    assert_eq!(evidence(d, "destination"), "10.0.0.1:5060");
    assert_eq!(evidence(d, "transport"), "udp");
    assert_eq!(evidence(d, "call_id"), "call-a1");
    assert_eq!(evidence(d, "cseq"), "1");
    assert_eq!(evidence(d, "retransmissions"), "3");
    assert_eq!(
        evidence(d, "send_schedule"),
        "+0.000s +0.500s +1.500s +3.500s"
    );
    assert!(d.evidence.iter().all(|e| e.name != "dropped_locally"));
    assert!(d.summary.contains("sent 4 time(s)"), "{}", d.summary);
}

#[test]
fn repeated_timeouts_to_one_destination_raise_once_and_count_the_rest() {
    let mut p = pipeline();
    let mut events = Vec::new();
    unanswered(&mut p, 0, 1, "b1", &mut events);
    unanswered(&mut p, 40_000, 2, "b2", &mut events);
    events.extend(p.tick(at(80_000)));
    let found = diagnoses(&events);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(p.stats().reachability.no_response, 1);
    assert_eq!(p.stats().reachability.suppressed, 1);
    assert_eq!(p.stats().transactions.timed_out, 2);
}

/// Live, an answered request stays tracked until its UA would have
/// given up (a drop of the response at this host may follow); from a
/// capture file no drop can, and it is released with its answer, so that
/// memory follows the requests in flight, not those of the last 32 s.
#[test]
fn answered_requests_are_released_at_once_when_no_drops_can_arrive() {
    for (sees_local_drops, tracked_after_answer) in [(true, 1), (false, 0)] {
        let mut config = PipelineConfig::default();
        config.reachability.sees_local_drops = sees_local_drops;
        let mut p = Pipeline::new(config);
        let mut events = p.ingest(&frame(0, UA, REGISTRAR, &register(1, "r1")));
        assert_eq!(p.analyses.reachability.tracked(), 1, "open request");
        events.extend(p.ingest(&frame(20, REGISTRAR, UA, &response("200 OK", 1, "r1"))));
        assert_eq!(
            p.analyses.reachability.tracked(),
            tracked_after_answer,
            "sees_local_drops {sees_local_drops}"
        );
        events.extend(p.tick(at(32_001)));
        assert_eq!(
            p.analyses.reachability.tracked(),
            0,
            "gone once the UA gave up"
        );
        // Released early or late, an unanswered request after it is
        // judged the same.
        unanswered(&mut p, 40_000, 2, "r2", &mut events);
        events.extend(p.tick(at(80_000)));
        let found = diagnoses(&events);
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(evidence(&found[0], "call_id"), "call-r2");
        assert_eq!(evidence(&found[0], "retransmissions"), "3");
    }
}

/// Live, answered requests on one busy flow (a trunk, a load generator)
/// do not pile up for 32 s each: a new request on the flow takes over
/// drop matching, and the answered one it supersedes is released unless a
/// drop was already matched to it. Such a one still explains its UA's
/// timeout.
#[test]
fn answered_requests_superseded_on_their_flow_are_released_unless_a_drop_matched() {
    let mut p = pipeline();
    let mut events = Vec::new();
    for cseq in 1..=50 {
        let branch = format!("s{cseq}");
        let ms = u64::from(cseq) * 100;
        events.extend(p.ingest(&frame(ms, UA, REGISTRAR, &register(cseq, &branch))));
        events.extend(p.ingest(&frame(
            ms + 20,
            REGISTRAR,
            UA,
            &response("200 OK", cseq, &branch),
        )));
    }
    assert_eq!(
        p.analyses.reachability.tracked(),
        1,
        "only the newest lingers"
    );
    // A final response dropped here after the capture saw it, then a new
    // request on the flow: the dropped one stays, and is judged.
    let challenge = response("401 Unauthorized", 51, "s51");
    events.extend(p.ingest(&frame(6000, UA, REGISTRAR, &register(51, "s51"))));
    events.extend(p.ingest(&frame(6020, REGISTRAR, UA, &challenge)));
    events.extend(p.ingest_drop(&dropped(
        6020,
        ip_udp(REGISTRAR, UA, &challenge),
        "netfilter_drop",
    )));
    events.extend(p.ingest(&frame(7000, UA, REGISTRAR, &register(52, "s52"))));
    events.extend(p.ingest(&frame(7020, REGISTRAR, UA, &response("200 OK", 52, "s52"))));
    assert_eq!(p.analyses.reachability.tracked(), 2);
    events.extend(p.tick(at(40_000)));
    assert_eq!(p.analyses.reachability.tracked(), 0);
    let found = diagnoses(&events);
    assert_eq!(
        found.iter().map(|d| d.code).collect::<Vec<_>>(),
        vec![Code::FwLocalDrop, Code::NetNoResponse],
        "{found:?}"
    );
    assert_eq!(evidence(&found[1], "cseq"), "51");
}

#[test]
fn answered_and_end_of_capture_transactions_raise_nothing() {
    let mut p = pipeline();
    let mut events = Vec::new();
    events.extend(p.ingest(&frame(0, UA, REGISTRAR, &register(1, "c1"))));
    events.extend(p.ingest(&frame(20, REGISTRAR, UA, &response("200 OK", 1, "c1"))));
    // Open when the capture ends: may have been answered later.
    events.extend(p.ingest(&frame(1000, UA, REGISTRAR, &register(2, "c2"))));
    events.extend(p.tick(at(40_000)));
    events.extend(p.ingest(&frame(41_000, UA, REGISTRAR, &register(3, "c3"))));
    events.extend(p.finish());
    assert_eq!(
        diagnoses(&events)
            .iter()
            .map(|d| d.code)
            .collect::<Vec<_>>(),
        vec![Code::NetNoResponse],
        "only c2 timed out on the packet clock"
    );
    let d = &diagnoses(&events)[0];
    assert_eq!(evidence(d, "call_id"), "call-c2");
    assert_eq!(p.stats().transactions.open_at_end, 1);
}

/// ICMP port unreachable from the registrar quoting the REGISTER.
fn icmp_port_unreachable(ms: u64, quoted: &[u8]) -> Packet {
    let mut data = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(REGISTRAR.0, UA.0, 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut data, &quoted[..quoted.len().min(48)])
        .unwrap();
    packet(ms, LinkType::Ethernet, data)
}

#[test]
fn icmp_port_unreachable_names_the_refused_request() {
    let mut p = pipeline();
    let mut events = Vec::new();
    let text = register(1, "d1");
    events.extend(p.ingest(&frame(0, UA, REGISTRAR, &text)));
    events.extend(p.ingest(&icmp_port_unreachable(1, &ip_udp(UA, REGISTRAR, &text))));
    // A second refusal of the same destination is a repeat.
    events.extend(p.ingest(&icmp_port_unreachable(501, &ip_udp(UA, REGISTRAR, &text))));
    let found = diagnoses(&events);
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(d.code, Code::NetIcmpUnreachable);
    assert_eq!(evidence(d, "icmp"), "ICMP type 3 code 3 (port unreachable)");
    assert_eq!(evidence(d, "icmp_sender"), "10.0.0.1");
    assert_eq!(evidence(d, "quoted"), "udp 10.0.0.2:5062 -> 10.0.0.1:5060");
    assert_eq!(evidence(d, "request"), "REGISTER (CSeq 1)");
    assert_eq!(evidence(d, "call_id"), "call-d1");
    let stats = p.stats();
    assert_eq!(stats.packets.icmp_unreachable_sip, 2);
    assert_eq!(stats.reachability.suppressed, 1);
}

#[test]
fn icmp_about_other_ports_is_ignored() {
    let mut p = pipeline();
    let quoted = ip_udp(([10, 0, 0, 2], 40000), ([10, 0, 0, 1], 53), "dns?");
    let events = p.ingest(&icmp_port_unreachable(0, &quoted));
    assert!(diagnoses(&events).is_empty());
    assert_eq!(p.stats().packets.icmp_unreachable_sip, 0);
    assert_eq!(p.stats().packets.other_protocols, 1);
}

#[test]
fn locally_dropped_response_raises_fw_local_drop_and_explains_the_timeout() {
    let mut p = pipeline();
    let mut events = Vec::new();
    let challenge = response("401 Unauthorized", 1, "e1");
    events.extend(p.ingest(&frame(0, UA, REGISTRAR, &register(1, "e1"))));
    for ms in [10, 510] {
        events.extend(p.ingest_drop(&dropped(
            ms,
            ip_udp(REGISTRAR, UA, &challenge),
            "netfilter_drop",
        )));
    }
    events.extend(p.ingest(&frame(500, UA, REGISTRAR, &register(1, "e1"))));
    events.extend(p.tick(at(33_000)));
    let found = diagnoses(&events);
    assert_eq!(
        found.iter().map(|d| d.code).collect::<Vec<_>>(),
        vec![Code::FwLocalDrop, Code::NetNoResponse],
        "{found:?}"
    );
    let drop = &found[0];
    assert_eq!(
        drop.summary,
        "401 Unauthorized (CSeq 1 REGISTER) from 10.0.0.1:5060 to 10.0.0.2:5062 reached this \
         host and was dropped by the local firewall (netfilter_drop)."
    );
    assert_eq!(evidence(drop, "drop_reason"), "netfilter_drop");
    let timeout = &found[1];
    assert_eq!(
        evidence(timeout, "dropped_locally"),
        "401 Unauthorized (CSeq 1 REGISTER) from 10.0.0.1:5060 (netfilter_drop, 2 time(s))"
    );
    assert!(
        timeout.summary.contains("local firewall dropped it"),
        "{}",
        timeout.summary
    );
    assert_eq!(p.stats().reachability.suppressed, 1);
    // The dropped copies are not SIP traffic the PBX saw.
    assert_eq!(p.stats().sip.responses, 0);
}

#[test]
fn dropped_rtp_names_the_port_and_other_drop_reasons_raise_nothing() {
    let mut p = pipeline();
    let rtp = ip_udp(([10, 0, 0, 9], 30000), ([10, 0, 0, 2], 10004), "\u{80}rtp");
    let found = diagnoses(&p.ingest_drop(&dropped(0, rtp.clone(), "netfilter_drop")));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].code, Code::FwLocalDrop);
    assert_eq!(evidence(&found[0], "port"), "10004");
    assert_eq!(
        evidence(&found[0], "flow"),
        "udp 10.0.0.9:30000 -> 10.0.0.2:10004"
    );
    let other = ip_udp(([10, 0, 0, 9], 30002), ([10, 0, 0, 2], 10006), "\u{80}rtp");
    assert!(diagnoses(&p.ingest_drop(&dropped(1, other, "no_socket"))).is_empty());
    let dns = ip_udp(([10, 0, 0, 9], 53), ([10, 0, 0, 2], 40000), "dns");
    assert!(diagnoses(&p.ingest_drop(&dropped(2, dns, "netfilter_drop"))).is_empty());
}

/// Inbound: the capture point (XDP) sees the answer before netfilter drops
/// it, so the transaction completes; the UA still never gets it.
#[test]
fn answer_seen_by_the_capture_but_dropped_locally_is_still_no_response() {
    let mut p = pipeline();
    let mut events = Vec::new();
    let challenge = response("401 Unauthorized", 1, "f1");
    events.extend(p.ingest(&frame(0, UA, REGISTRAR, &register(1, "f1"))));
    for ms in [10, 510, 1510] {
        if ms > 10 {
            events.extend(p.ingest(&frame(ms - 10, UA, REGISTRAR, &register(1, "f1"))));
        }
        events.extend(p.ingest(&frame(ms, REGISTRAR, UA, &challenge)));
        events.extend(p.ingest_drop(&dropped(
            ms,
            ip_udp(REGISTRAR, UA, &challenge),
            "netfilter_drop",
        )));
    }
    assert_eq!(
        diagnoses(&events)
            .iter()
            .map(|d| d.code)
            .collect::<Vec<_>>(),
        vec![Code::FwLocalDrop],
        "the UA may still be retransmitting"
    );
    events.extend(p.tick(at(33_000)));
    let found = diagnoses(&events);
    assert_eq!(
        found.iter().map(|d| d.code).collect::<Vec<_>>(),
        vec![Code::FwLocalDrop, Code::NetNoResponse],
        "{found:?}"
    );
    let timeout = &found[1];
    assert_eq!(evidence(timeout, "retransmissions"), "2");
    assert_eq!(
        evidence(timeout, "dropped_locally"),
        "401 Unauthorized (CSeq 1 REGISTER) from 10.0.0.1:5060 (netfilter_drop, 3 time(s))"
    );
    assert_eq!(p.stats().transactions.completed, 1);
}

/// An answer the UA's own socket dropped (its receive buffer full, as an
/// overloaded UA's is) is lost as surely as one a rule dropped: the
/// request is still unanswered at the UA, and the summary says the kernel,
/// not the firewall, dropped it. No firewall finding.
#[test]
fn answer_dropped_by_a_full_socket_buffer_is_no_response_without_a_firewall_finding() {
    let mut p = pipeline();
    let ok = response("200 OK", 1, "q1");
    let mut events = p.ingest(&frame(0, UA, REGISTRAR, &register(1, "q1")));
    events.extend(p.ingest(&frame(10, REGISTRAR, UA, &ok)));
    events.extend(p.ingest_drop(&dropped(10, ip_udp(REGISTRAR, UA, &ok), "socket_rcvbuff")));
    events.extend(p.tick(at(33_000)));
    let found = diagnoses(&events);
    assert_eq!(
        found.iter().map(|d| d.code).collect::<Vec<_>>(),
        vec![Code::NetNoResponse],
        "{found:?}"
    );
    assert!(
        found[0]
            .summary
            .contains("its kernel dropped it (socket_rcvbuff)"),
        "{}",
        found[0].summary
    );
}

#[test]
fn icmpv6_port_unreachable_quoting_sip_is_reported() {
    let (ua, registrar) = (
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        [0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
    );
    let mut quoted = Vec::new();
    PacketBuilder::ipv6(ua, registrar, 64)
        .udp(5062, 5060)
        .write(&mut quoted, register(1, "g1").as_bytes())
        .unwrap();
    let mut data = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv6(registrar, ua, 64)
        .icmpv6_raw(1, 4, [0; 4])
        .write(&mut data, &quoted[..96])
        .unwrap();
    let mut p = pipeline();
    let found = diagnoses(&p.ingest(&packet(0, LinkType::Ethernet, data)));
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].code, Code::NetIcmpUnreachable);
    assert_eq!(
        evidence(&found[0], "icmp"),
        "ICMPv6 type 1 code 4 (port unreachable)"
    );
    assert_eq!(
        evidence(&found[0], "quoted"),
        "udp [fd00::2]:5062 -> [fd00::1]:5060"
    );
    // No REGISTER was captured: unmatched, counted, still reported.
    assert_eq!(p.stats().reachability.icmp_unmatched, 1);
}

#[test]
fn register_retransmitted_until_a_short_capture_ends_is_judged_no_response() {
    // tcpdump for ten seconds: five sends on Timer E, no response, no
    // ICMP; the client would give up only at 32 s.
    let mut p = pipeline();
    let mut events = Vec::new();
    for offset in [0, 500, 1500, 3500, 7500] {
        events.extend(p.ingest(&frame(offset, UA, REGISTRAR, &register(1, "e1"))));
    }
    events.extend(p.finish());
    let found = diagnoses(&events);
    assert_eq!(found.len(), 1, "{found:?}");
    let d = &found[0];
    assert_eq!(d.code, Code::NetNoResponse);
    assert!(
        d.summary.contains("sent 5 time(s) over 7.5 s"),
        "{}",
        d.summary
    );
    assert!(
        d.summary
            .contains("capture ended before the client gave up"),
        "{}",
        d.summary
    );
    assert!(evidence(d, "capture_ended").contains("32 s"));
    assert_eq!(evidence(d, "retransmissions"), "4");
}

#[test]
fn short_capture_with_icmp_or_a_provisional_is_not_no_response() {
    // The ICMP says why: no second finding.
    let mut p = pipeline();
    let mut events = Vec::new();
    let text = register(1, "f1");
    for offset in [0, 500, 1500, 3500] {
        events.extend(p.ingest(&frame(offset, UA, REGISTRAR, &text)));
    }
    events.extend(p.ingest(&icmp_port_unreachable(3501, &ip_udp(UA, REGISTRAR, &text))));
    events.extend(p.finish());
    let codes: Vec<_> = diagnoses(&events).iter().map(|d| d.code).collect();
    assert_eq!(codes, vec![Code::NetIcmpUnreachable]);
    // A 100 Trying: the server is there, only slow.
    let mut p = pipeline();
    let mut events = Vec::new();
    let text = register(1, "g1");
    for offset in [0, 500, 1500, 3500] {
        events.extend(p.ingest(&frame(offset, UA, REGISTRAR, &text)));
    }
    events.extend(p.ingest(&frame(
        3600,
        REGISTRAR,
        UA,
        &response("100 Trying", 1, "g1"),
    )));
    events.extend(p.finish());
    assert!(diagnoses(&events).is_empty());
}
