//! The wiring's order where it changes what is reported
//! (pipeline/wiring.rs): inbound learns a registration before it looks at
//! the next message of the same packet, and a call notes the findings of
//! the other analyses in the same ingest that raised them.

use std::net::SocketAddr;

use etherparse::PacketBuilder;

use super::call_script::{CallScript as Script, MS, PBX, PHONE, T0, sdp};
use crate::diagnosis::Code;
use crate::pipeline::{Event, Pipeline, PipelineConfig};
use crate::{packet::Packet, time::Timestamp};

fn codes(events: &[Event]) -> Vec<Code> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Diagnosis(d) => Some(d.code),
            _ => None,
        })
        .collect()
}

fn pbx() -> SocketAddr {
    format!("{PBX}:5060").parse().unwrap()
}

/// An ICMP port unreachable (RFC 792 type 3 code 3) from the PBX quoting
/// the start of `quoted`, a raw IPv4 datagram the phone sent it.
fn icmp_port_unreachable(ms: u64, quoted: &[u8]) -> Packet {
    let [a, b, c, d] = PBX.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let phone = PHONE.parse::<std::net::Ipv4Addr>().unwrap().octets();
    let mut data = Vec::new();
    PacketBuilder::ipv4([a, b, c, d], phone, 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut data, &quoted[..quoted.len().min(48)])
        .unwrap();
    Script::raw_ip(ms, data)
}

#[test]
fn reachability_finding_is_on_the_call_after_the_same_ingest() {
    let mut s = Script::new();
    let invite = format!("INVITE sip:200@{PBX} SIP/2.0");
    s.sip_with(0, true, &invite, "1 INVITE", false, &sdp(PHONE, 10000));
    let quoted = Script::packet(0, s.phone, pbx(), b"INVITE").data;

    let events = s.pipeline.ingest(&icmp_port_unreachable(5, &quoted));

    assert_eq!(codes(&events), [Code::NetIcmpUnreachable]);
    let up = s.pipeline.calls_up(Timestamp(T0 + 5 * MS));
    assert_eq!(up.len(), 1);
    assert_eq!(up[0].diagnoses, [Code::NetIcmpUnreachable]);
}

type Addr = ([u8; 4], u16);
/// The PBX registers over TCP and takes calls on the same connection.
const TRUNK_PBX: Addr = ([10, 0, 0, 2], 5062);
const PROVIDER: Addr = ([10, 0, 0, 1], 5060);

fn tcp(ms: u64, from: Addr, to: Addr, seq: u32, text: &str) -> Packet {
    let mut data = Vec::new();
    PacketBuilder::ipv4(from.0, to.0, 64)
        .tcp(from.1, to.1, seq, 65535)
        .ack(1)
        .psh()
        .write(&mut data, text.replace('\n', "\r\n").as_bytes())
        .unwrap();
    Script::raw_ip(ms, data)
}

const REGISTER: &str = "REGISTER sip:10.0.0.1:5060 SIP/2.0\n\
    Via: SIP/2.0/TCP 10.0.0.2:5062;branch=z9hG4bKreg1\nMax-Forwards: 70\n\
    From: <sip:1001@provider.test>;tag=rf\nTo: <sip:1001@provider.test>\n\
    Call-ID: reg-1\nCSeq: 1 REGISTER\nContact: <sip:1001@10.0.0.2:5062;transport=tcp>\n\
    Expires: 60\nContent-Length: 0\n\n";
const REGISTERED: &str = "SIP/2.0 200 OK\n\
    Via: SIP/2.0/TCP 10.0.0.2:5062;branch=z9hG4bKreg1\n\
    From: <sip:1001@provider.test>;tag=rf\nTo: <sip:1001@provider.test>;tag=rt\n\
    Call-ID: reg-1\nCSeq: 1 REGISTER\n\
    Contact: <sip:1001@10.0.0.2:5062;transport=tcp>;expires=60\nContent-Length: 0\n\n";
const INVITE: &str = "INVITE sip:1001@10.0.0.2:5062;transport=tcp SIP/2.0\n\
    Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKinv1\nMax-Forwards: 69\n\
    From: <sip:+15550001@provider.test>;tag=cf\nTo: <sip:15551230007@provider.test>\n\
    Call-ID: inbound-1\nCSeq: 10 INVITE\nContact: <sip:+15550001@10.0.0.1:5060>\n\
    Content-Length: 0\n\n";
const NOT_FOUND: &str = "SIP/2.0 404 Not Found\n\
    Via: SIP/2.0/TCP 10.0.0.1:5060;branch=z9hG4bKinv1\n\
    From: <sip:+15550001@provider.test>;tag=cf\nTo: <sip:15551230007@provider.test>;tag=pt\n\
    Call-ID: inbound-1\nCSeq: 10 INVITE\nContent-Length: 0\n\n";

/// The provider's 200 to the REGISTER and its INVITE to the new binding
/// arrive in one TCP segment: inbound must learn the binding from the
/// registration before it looks at the INVITE, or the refused call goes
/// unreported.
#[test]
fn inbound_learns_the_registration_before_the_invite_in_the_same_segment() {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut events = Vec::new();
    p.ingest_into(&tcp(0, TRUNK_PBX, PROVIDER, 1000, REGISTER), &mut events);
    let both = format!("{REGISTERED}{INVITE}");
    p.ingest_into(&tcp(20, PROVIDER, TRUNK_PBX, 5000, &both), &mut events);
    assert_eq!(p.stats().inbound.invites_tracked, 1, "INVITE followed");
    let seq = 1000 + REGISTER.replace('\n', "\r\n").len() as u32;
    p.ingest_into(&tcp(30, TRUNK_PBX, PROVIDER, seq, NOT_FOUND), &mut events);

    assert_eq!(codes(&events), [Code::CallInboundBlocked]);
    let call = events.iter().rev().find_map(|e| match e {
        Event::Call(c) => Some(c.clone()),
        _ => None,
    });
    let call = call.expect("the call is reported");
    assert_eq!(call.call_id, "inbound-1");
    p.finish();
}

/// A finding raised on a timer (here inbound's unanswered challenge,
/// RFC 3261 §22.2) about a call still open is noted by the call like any
/// other: its closing report lists it.
#[test]
fn finding_raised_on_a_timer_is_on_the_call() {
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut events = Vec::new();
    p.ingest_into(&tcp(0, TRUNK_PBX, PROVIDER, 1000, REGISTER), &mut events);
    let seq = 1000 + REGISTER.replace('\n', "\r\n").len() as u32;
    p.ingest_into(&tcp(20, PROVIDER, TRUNK_PBX, 5000, REGISTERED), &mut events);
    let seq_in = 5000 + REGISTERED.replace('\n', "\r\n").len() as u32;
    p.ingest_into(&tcp(100, PROVIDER, TRUNK_PBX, seq_in, INVITE), &mut events);
    let challenge = NOT_FOUND
        .replace("404 Not Found", "401 Unauthorized")
        .replace(
            "Content-Length: 0",
            "WWW-Authenticate: Digest realm=\"pbx\", nonce=\"n1\"\nContent-Length: 0",
        );
    p.ingest_into(&tcp(110, TRUNK_PBX, PROVIDER, seq, &challenge), &mut events);
    // Past inbound's challenge wait (5 s), before the call's own
    // challenge timeout (32 s) closes it.
    events.extend(p.tick(Timestamp(T0 + 10_000 * MS)));
    assert_eq!(codes(&events), [Code::CallInboundBlocked]);
    assert_eq!(
        p.calls_up(Timestamp(T0 + 10_000 * MS))
            .iter()
            .map(|c| c.diagnoses.clone())
            .collect::<Vec<_>>(),
        [[Code::CallInboundBlocked]],
        "noted by the open call"
    );
    events.extend(p.finish());
    let closed = events.iter().rev().find_map(|e| match e {
        Event::Call(c) if c.closed => Some(c.clone()),
        _ => None,
    });
    assert_eq!(
        closed.expect("closing report").diagnoses,
        [Code::CallInboundBlocked]
    );
}
