//! `call.inbound_blocked` on synthetic Ethernet/IPv4/UDP exchanges fed
//! through the real pipeline: a PBX registers to its provider, then the
//! provider calls it. Each test states exactly which codes it must raise.

use std::collections::BTreeSet;
use std::sync::Arc;

use etherparse::PacketBuilder;

use crate::analysis::inbound::InboundConfig;
use crate::diagnosis::{Code, Diagnosis};
use crate::pipeline::{Event, Pipeline, PipelineConfig};
use crate::{
    packet::{Direction, DropReason, DroppedPacket, LinkType, Packet},
    time::Timestamp,
};

type Addr = ([u8; 4], u16);
const T0: u64 = 1_700_000_000_000_000_000;
/// The PBX: registers from and receives calls on this socket.
const PBX: Addr = ([10, 0, 0, 2], 5062);
/// The provider: registrar and the proxy that sends the calls.
const PROVIDER: Addr = ([10, 0, 0, 1], 5060);

fn at(ms: u64) -> Timestamp {
    Timestamp(T0 + ms * 1_000_000)
}

fn ip(a: [u8; 4]) -> String {
    format!("{}.{}.{}.{}", a[0], a[1], a[2], a[3])
}

fn hp(a: Addr) -> String {
    format!("{}:{}", ip(a.0), a.1)
}

/// IP/UDP bytes (no link header) of `text` from `from` to `to`.
fn ip_udp(from: Addr, to: Addr, text: &str) -> Vec<u8> {
    let mut data = Vec::new();
    PacketBuilder::ipv4(from.0, to.0, 64)
        .udp(from.1, to.1)
        .write(&mut data, text.replace('\n', "\r\n").as_bytes())
        .unwrap();
    data
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

fn frame(ms: u64, from: Addr, to: Addr, text: &str) -> Packet {
    let mut data = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1, 0x08, 0x00];
    data.extend(ip_udp(from, to, text));
    packet(ms, LinkType::Ethernet, data)
}

fn dropped(ms: u64, from: Addr, to: Addr, text: &str, reason: &str) -> DroppedPacket {
    DroppedPacket {
        packet: packet(ms, LinkType::RawIp, ip_udp(from, to, text)),
        reason: DropReason {
            code: 0,
            name: reason.into(),
        },
    }
}

/// ICMP port unreachable from `from` quoting `quoted` (IP/UDP bytes).
fn icmp_port_unreachable(ms: u64, from: Addr, to: Addr, quoted: &[u8]) -> Packet {
    let mut data = Vec::new();
    PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(from.0, to.0, 64)
        .icmpv4_raw(3, 3, [0; 4])
        .write(&mut data, &quoted[..quoted.len().min(48)])
        .unwrap();
    packet(ms, LinkType::Ethernet, data)
}

fn register(contact: &str) -> String {
    format!(
        "REGISTER sip:{provider} SIP/2.0\nVia: SIP/2.0/UDP {pbx};branch=z9hG4bKreg1\n\
         Max-Forwards: 70\nFrom: <sip:1001@provider.test>;tag=rf\nTo: <sip:1001@provider.test>\n\
         Call-ID: reg-1\nCSeq: 1 REGISTER\nContact: <{contact}>\nExpires: 60\n\
         Content-Length: 0\n\n",
        provider = hp(PROVIDER),
        pbx = hp(PBX),
    )
}

fn registered(contact: &str) -> String {
    format!(
        "SIP/2.0 200 OK\nVia: SIP/2.0/UDP {pbx};branch=z9hG4bKreg1\n\
         From: <sip:1001@provider.test>;tag=rf\nTo: <sip:1001@provider.test>;tag=rt\n\
         Call-ID: reg-1\nCSeq: 1 REGISTER\nContact: <{contact}>;expires=60\n\
         Content-Length: 0\n\n",
        pbx = hp(PBX),
    )
}

/// An INVITE from `from` to `to` with this Request-URI and Call-ID.
fn invite(from: Addr, ruri: &str, call: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\nVia: SIP/2.0/UDP {src};branch=z9hG4bK{call}\nMax-Forwards: 69\n\
         From: <sip:+15550001@provider.test>;tag=cf{call}\nTo: <sip:15551230007@provider.test>\n\
         Call-ID: {call}\nCSeq: 10 INVITE\nContact: <sip:+15550001@{src}>\nContent-Length: 0\n\n",
        src = hp(from),
    )
}

fn answer(from: Addr, status: &str, call: &str) -> String {
    format!(
        "SIP/2.0 {status}\nVia: SIP/2.0/UDP {src};branch=z9hG4bK{call}\n\
         From: <sip:+15550001@provider.test>;tag=cf{call}\nTo: <sip:15551230007@provider.test>;tag=pt\n\
         Call-ID: {call}\nCSeq: 10 INVITE\nContent-Length: 0\n\n",
        src = hp(from),
    )
}

const CONTACT: &str = "sip:1001@10.0.0.2:5062";

struct Run {
    p: Pipeline,
    events: Vec<Event>,
}

impl Run {
    /// The PBX registered with `contact`; the provider granted 60 s.
    fn registered(contact: &str) -> Self {
        let mut r = Run {
            p: Pipeline::new(PipelineConfig::default()),
            events: Vec::new(),
        };
        r.send(0, PBX, PROVIDER, &register(contact));
        r.send(20, PROVIDER, PBX, &registered(contact));
        assert_eq!(r.p.stats().inbound.bindings, 1, "binding learned");
        r
    }

    fn send(&mut self, ms: u64, from: Addr, to: Addr, text: &str) {
        let e = self.p.ingest(&frame(ms, from, to, text));
        self.events.extend(e);
    }

    /// A call from the provider to the PBX answered with `statuses`.
    fn call(&mut self, ms: u64, call: &str, statuses: &[&str]) {
        self.send(ms, PROVIDER, PBX, &invite(PROVIDER, CONTACT, call));
        for (i, s) in statuses.iter().enumerate() {
            self.send(
                ms + 10 * (i as u64 + 1),
                PBX,
                PROVIDER,
                &answer(PROVIDER, s, call),
            );
        }
    }

    fn drop(&mut self, ms: u64, from: Addr, to: Addr, text: &str, reason: &str) {
        let e = self.p.ingest_drop(&dropped(ms, from, to, text, reason));
        self.events.extend(e);
    }

    fn tick(&mut self, ms: u64) {
        let e = self.p.tick(at(ms));
        self.events.extend(e);
    }

    fn diagnoses(&self) -> Vec<Arc<Diagnosis>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::Diagnosis(d) => Some(d.clone()),
                _ => None,
            })
            .collect()
    }

    fn codes(&self) -> BTreeSet<&'static str> {
        self.diagnoses().iter().map(|d| d.code.as_str()).collect()
    }

    /// The one `call.inbound_blocked` of an INVITE nobody answered (with
    /// its `net.no_response`, and nothing else).
    fn blocked_unanswered(&self) -> Arc<Diagnosis> {
        assert_eq!(
            self.codes(),
            set(&["call.inbound_blocked", "net.no_response"]),
            "{:#?}",
            self.diagnoses()
        );
        self.blocked()[0].clone()
    }

    fn blocked(&self) -> Vec<Arc<Diagnosis>> {
        self.diagnoses()
            .into_iter()
            .filter(|d| d.code == Code::CallInboundBlocked)
            .collect()
    }
}

fn set(c: &[&'static str]) -> BTreeSet<&'static str> {
    c.iter().copied().collect()
}

fn evidence<'a>(d: &'a Diagnosis, name: &str) -> &'a str {
    &d.evidence
        .iter()
        .find(|e| e.name == name)
        .unwrap_or_else(|| panic!("no evidence {name} in {d}"))
        .value
}

#[test]
fn healthy_inbound_call_raises_nothing() {
    let mut r = Run::registered(CONTACT);
    r.call(1000, "ok1", &["100 Trying", "180 Ringing", "200 OK"]);
    r.tick(40_000);
    assert_eq!(r.codes(), set(&[]), "{:#?}", r.diagnoses());
    assert_eq!(r.p.stats().inbound.invites_tracked, 1);
}

#[test]
fn not_found_from_the_pbx_names_the_status_and_the_inbound_context() {
    let mut r = Run::registered(CONTACT);
    r.call(1000, "nf1", &["404 Not Found"]);
    assert_eq!(r.codes(), set(&["call.inbound_blocked"]));
    let d = &r.blocked()[0];
    assert!(
        d.summary.contains("answered 404 Not Found"),
        "{}",
        d.summary
    );
    assert!(d.summary.contains("context="), "{}", d.summary);
    assert!(
        d.summary.starts_with(
            "sip:1001@provider.test is registered at 10.0.0.1:5060 with Contact \
             sip:1001@10.0.0.2:5062"
        ),
        "{}",
        d.summary
    );
    assert_eq!(evidence(d, "aor"), "sip:1001@provider.test");
    assert_eq!(evidence(d, "contact"), CONTACT);
    assert_eq!(evidence(d, "registrar"), "10.0.0.1:5060");
    assert_eq!(evidence(d, "call_id"), "nf1");
    assert_eq!(evidence(d, "from"), "sip:+15550001@provider.test");
    assert_eq!(evidence(d, "to"), "sip:15551230007@provider.test");
    assert_eq!(evidence(d, "status"), "404");
    assert_eq!(evidence(d, "invite"), "10.0.0.1:5060 -> 10.0.0.2:5062");
    assert_eq!(
        evidence(d, "matched"),
        "destination is the registered Contact address"
    );
}

#[test]
fn each_blocking_status_raises_and_normal_endings_do_not() {
    for (status, hint) in [
        ("403 Forbidden", "permit="),
        ("480 Temporarily Unavailable", "no registered endpoint"),
        ("484 Address Incomplete", "number format"),
        ("488 Not Acceptable Here", "codec mismatch"),
        ("500 Server Internal Error", "failed"),
        ("502 Bad Gateway", "gateway"),
        ("503 Service Unavailable", "not taking calls"),
    ] {
        let mut r = Run::registered(CONTACT);
        r.call(1000, "s1", &[status]);
        assert_eq!(r.codes(), set(&["call.inbound_blocked"]), "{status}");
        let d = &r.blocked()[0];
        assert!(d.summary.contains(hint), "{status}: {}", d.summary);
    }
    for status in [
        "486 Busy Here",
        "487 Request Terminated",
        "603 Decline",
        "302 Moved Temporarily",
    ] {
        let mut r = Run::registered(CONTACT);
        r.call(1000, "n1", &["100 Trying", status]);
        r.tick(40_000);
        assert_eq!(r.codes(), set(&[]), "{status}: {:#?}", r.diagnoses());
    }
}

/// Asterisk answers an INVITE from an address no `identify` matches with
/// 401; the provider has no credentials for its customer and gives up.
#[test]
fn challenge_the_caller_never_answers_is_an_unrecognised_trunk() {
    let mut r = Run::registered(CONTACT);
    r.call(1000, "ch1", &["401 Unauthorized"]);
    r.tick(5_000);
    assert_eq!(r.codes(), set(&[]), "the caller may still authenticate");
    r.tick(6_100);
    assert_eq!(r.codes(), set(&["call.inbound_blocked"]));
    let d = &r.blocked()[0];
    assert!(
        d.summary.contains(
            "the PBX challenged the INVITE from 10.0.0.1:5060 (401 Unauthorized) and the caller \
             did not retry with credentials within 5 s"
        ),
        "{}",
        d.summary
    );
    assert!(d.summary.contains("`match=10.0.0.1`"), "{}", d.summary);
    assert_eq!(evidence(d, "status"), "401");
    assert_eq!(evidence(d, "retried_with_credentials"), "no (waited 5 s)");
}

#[test]
fn challenge_answered_with_credentials_is_a_normal_call() {
    let mut r = Run::registered(CONTACT);
    r.call(1000, "ch2", &["407 Proxy Authentication Required"]);
    let retry = |text: String| {
        text.replace("CSeq: 10", "CSeq: 11")
            .replace("z9hG4bKch2", "z9hG4bKch2b")
    };
    let authenticated = retry(invite(PROVIDER, CONTACT, "ch2")).replace(
        "Content-Length: 0",
        "Proxy-Authorization: Digest username=\"provider\", realm=\"pbx\", nonce=\"n\", \
         uri=\"sip:1001@10.0.0.2:5062\", response=\"00000000000000000000000000000000\"\n\
         Content-Length: 0",
    );
    r.send(1100, PROVIDER, PBX, &authenticated);
    r.send(
        1120,
        PBX,
        PROVIDER,
        &retry(answer(PROVIDER, "200 OK", "ch2")),
    );
    r.tick(40_000);
    assert_eq!(r.codes(), set(&[]), "{:#?}", r.diagnoses());
    let s = r.p.stats().inbound;
    assert_eq!((s.challenges_retried, s.invites_tracked), (1, 2));
}

#[test]
fn unanswered_invite_is_blocked_with_its_send_schedule() {
    let mut r = Run::registered(CONTACT);
    let text = invite(PROVIDER, CONTACT, "to1");
    for ms in [1000, 1500, 2500, 4500] {
        r.send(ms, PROVIDER, PBX, &text);
    }
    assert_eq!(r.codes(), set(&[]), "nothing before Timer B");
    r.tick(34_000);
    let d = &r.blocked_unanswered();
    assert!(
        d.summary
            .contains("was never answered: it was sent 4 time(s)"),
        "{}",
        d.summary
    );
    assert_eq!(
        evidence(d, "send_schedule"),
        "+0.000s +0.500s +1.500s +3.500s"
    );
    assert_eq!(evidence(d, "retransmissions"), "3");
}

#[test]
fn invite_retransmitted_until_a_short_capture_ends_is_blocked() {
    let mut r = Run::registered(CONTACT);
    let text = invite(PROVIDER, CONTACT, "short1");
    for ms in [1000, 1500, 2500, 4500, 8500] {
        r.send(ms, PROVIDER, PBX, &text);
    }
    let e = r.p.finish();
    r.events.extend(e);
    let d = &r.blocked_unanswered();
    assert!(
        d.summary.contains("sent 5 time(s) over 7.5 s"),
        "{}",
        d.summary
    );
    assert!(evidence(d, "capture_ended").contains("Timer B"));
    // Sent once just before the end: it may still be answered.
    let mut r = Run::registered(CONTACT);
    r.send(1000, PROVIDER, PBX, &invite(PROVIDER, CONTACT, "short2"));
    let e = r.p.finish();
    r.events.extend(e);
    assert_eq!(r.codes(), set(&[]));
}

#[test]
fn icmp_port_unreachable_from_the_contact_is_the_reason_of_the_timeout() {
    let mut r = Run::registered(CONTACT);
    let text = invite(PROVIDER, CONTACT, "ic1");
    r.send(1000, PROVIDER, PBX, &text);
    let icmp = icmp_port_unreachable(1001, PBX, PROVIDER, &ip_udp(PROVIDER, PBX, &text));
    r.events.extend(r.p.ingest(&icmp));
    r.tick(34_000);
    assert_eq!(
        r.codes(),
        set(&[
            "call.inbound_blocked",
            "net.icmp_unreachable",
            "net.no_response"
        ])
    );
    let d = &r.blocked()[0];
    assert!(
        d.summary
            .contains("ICMP port unreachable from the contact (10.0.0.2)"),
        "{}",
        d.summary
    );
    assert_eq!(
        evidence(d, "icmp"),
        "ICMP type 3 code 3 (port unreachable) from 10.0.0.2"
    );
}

#[test]
fn invite_dropped_by_the_local_firewall_raises_at_once_and_once() {
    let mut r = Run::registered(CONTACT);
    let text = invite(PROVIDER, CONTACT, "fw1");
    for ms in [1000, 1500, 2500] {
        r.send(ms, PROVIDER, PBX, &text);
        r.drop(ms, PROVIDER, PBX, &text, "netfilter_drop");
    }
    assert_eq!(
        r.codes(),
        set(&["call.inbound_blocked", "fw.local_drop"]),
        "raised while the transaction is still open"
    );
    let d = &r.blocked()[0];
    assert_eq!(
        d.summary,
        "sip:1001@provider.test is registered at 10.0.0.1:5060 with Contact \
         sip:1001@10.0.0.2:5062, but the INVITE from 10.0.0.1:5060 reached this host and was \
         dropped by the local firewall (netfilter_drop): inbound calls cannot reach the PBX."
    );
    assert_eq!(
        evidence(d, "dropped_locally"),
        "INVITE (CSeq 10) from 10.0.0.1:5060 (netfilter_drop, 1 time(s))"
    );
    r.tick(34_000);
    assert_eq!(
        r.codes(),
        set(&["call.inbound_blocked", "fw.local_drop", "net.no_response"])
    );
    // The timeout has the same reason: counted, not raised again.
    assert_eq!(r.blocked().len(), 1);
    assert_eq!(r.p.stats().inbound.blocked, 1);
    assert_eq!(r.p.stats().inbound.suppressed, 1);
}

/// Live capture: the drop monitor may report before the frame arrives.
#[test]
fn drop_reported_before_the_captured_invite_still_explains_the_timeout() {
    let mut r = Run::registered(CONTACT);
    let text = invite(PROVIDER, CONTACT, "fw2");
    r.drop(1000, PROVIDER, PBX, &text, "no_socket");
    assert_eq!(r.codes(), set(&["call.inbound_blocked"]));
    assert!(
        r.blocked()[0]
            .summary
            .contains("nothing listens on port 5062 (no_socket)"),
        "{}",
        r.blocked()[0].summary
    );
    r.send(1000, PROVIDER, PBX, &text);
    r.tick(34_000);
    assert_eq!(r.blocked().len(), 1, "{:#?}", r.diagnoses());
    assert_eq!(r.p.stats().inbound.suppressed, 1);
}

#[test]
fn repeated_failures_of_one_binding_raise_once() {
    let mut r = Run::registered(CONTACT);
    r.call(1000, "r1", &["404 Not Found"]);
    r.call(2000, "r2", &["404 Not Found"]);
    r.call(3000, "r3", &["488 Not Acceptable Here"]);
    let statuses: Vec<String> = r
        .blocked()
        .iter()
        .map(|d| evidence(d, "status").to_owned())
        .collect();
    assert_eq!(statuses, ["404", "488"], "one per reason");
    assert_eq!(r.p.stats().inbound.suppressed, 1);
}

#[test]
fn invite_to_an_unregistered_address_is_not_inbound() {
    let mut r = Run::registered(CONTACT);
    let other: Addr = ([10, 0, 0, 3], 5060);
    r.send(
        1000,
        PROVIDER,
        other,
        &invite(PROVIDER, "sip:2002@10.0.0.3", "u1"),
    );
    r.send(
        1010,
        other,
        PROVIDER,
        &answer(PROVIDER, "404 Not Found", "u1"),
    );
    r.send(
        2000,
        PROVIDER,
        other,
        &invite(PROVIDER, "sip:2002@10.0.0.3", "u2"),
    );
    r.tick(40_000);
    assert_eq!(r.codes(), set(&["net.no_response"]));
    assert_eq!(r.p.stats().inbound.invites_tracked, 0);
}

#[test]
fn outbound_invite_from_the_registered_host_is_not_inbound() {
    let mut r = Run::registered(CONTACT);
    let out = invite(PBX, "sip:+15550001@provider.test", "o1");
    r.send(1000, PBX, PROVIDER, &out);
    r.send(1010, PROVIDER, PBX, &answer(PBX, "404 Not Found", "o1"));
    r.send(
        2000,
        PBX,
        PROVIDER,
        &invite(PBX, "sip:+15550002@provider.test", "o2"),
    );
    r.tick(40_000);
    assert_eq!(r.codes(), set(&["net.no_response"]));
    assert_eq!(r.p.stats().inbound.invites_tracked, 0);
}

#[test]
fn expired_or_deregistered_bindings_receive_no_calls() {
    let mut r = Run::registered(CONTACT);
    r.tick(61_000);
    assert_eq!(r.p.stats().inbound.bindings, 0);
    assert_eq!(r.p.stats().inbound.bindings_expired, 1);
    r.call(62_000, "e1", &["404 Not Found"]);
    assert!(r.blocked().is_empty(), "{:#?}", r.diagnoses());

    let mut r = Run::registered(CONTACT);
    let unregister = register(CONTACT)
        .replace("Expires: 60", "Expires: 0")
        .replace("CSeq: 1", "CSeq: 2")
        .replace("bKreg1", "bKreg2");
    let done = registered(CONTACT)
        .replace(";expires=60", ";expires=0")
        .replace("CSeq: 1", "CSeq: 2")
        .replace("bKreg1", "bKreg2");
    r.send(1000, PBX, PROVIDER, &unregister);
    r.send(1010, PROVIDER, PBX, &done);
    assert_eq!(r.p.stats().inbound.bindings_deregistered, 1);
    r.call(2000, "d1", &["404 Not Found"]);
    assert!(r.blocked().is_empty(), "{:#?}", r.diagnoses());
}

/// Behind a NAT the Contact is private; the provider sends the call to
/// where the REGISTER came from.
#[test]
fn call_to_the_registered_source_address_behind_nat_is_matched() {
    let private = "sip:1001@192.168.1.10:5060";
    let mut r = Run::registered(private);
    r.send(1000, PROVIDER, PBX, &invite(PROVIDER, private, "nat1"));
    r.send(
        1010,
        PBX,
        PROVIDER,
        &answer(PROVIDER, "480 Temporarily Unavailable", "nat1"),
    );
    let blocked = r.blocked();
    assert_eq!(blocked.len(), 1, "{:#?}", r.diagnoses());
    assert_eq!(
        evidence(&blocked[0], "matched"),
        "destination is the address the REGISTER came from"
    );
    assert_eq!(evidence(&blocked[0], "registered_from"), "10.0.0.2:5062");
}

/// An INVITE through a proxy on this host, with the Contact as
/// Request-URI, belongs to the binding too.
#[test]
fn request_uri_equal_to_the_contact_is_matched() {
    let mut r = Run::registered(CONTACT);
    let proxy: Addr = ([10, 0, 0, 9], 5060);
    r.send(1000, PROVIDER, proxy, &invite(PROVIDER, CONTACT, "ru1"));
    r.send(
        1010,
        proxy,
        PROVIDER,
        &answer(PROVIDER, "503 Service Unavailable", "ru1"),
    );
    let blocked = r.blocked();
    assert_eq!(blocked.len(), 1, "{:#?}", r.diagnoses());
    assert_eq!(
        evidence(&blocked[0], "matched"),
        "Request-URI is the registered Contact URI"
    );
}

#[test]
fn binding_table_is_bounded_and_counts_evictions() {
    let mut p = Pipeline::new(PipelineConfig {
        inbound: InboundConfig {
            max_bindings: 2,
            ..Default::default()
        },
        ..Default::default()
    });
    for (i, user) in ["a", "b", "c"].into_iter().enumerate() {
        let contact = format!("sip:{user}@10.0.0.2:5062");
        let reg = register(&contact)
            .replace("1001@", &format!("{user}@"))
            .replace("reg-1", &format!("reg-{user}"))
            .replace("bKreg1", &format!("bKreg{user}"));
        let ok = registered(&contact)
            .replace("1001@", &format!("{user}@"))
            .replace("reg-1", &format!("reg-{user}"))
            .replace("bKreg1", &format!("bKreg{user}"));
        let ms = i as u64 * 100;
        p.ingest(&frame(ms, PBX, PROVIDER, &reg));
        p.ingest(&frame(ms + 10, PROVIDER, PBX, &ok));
    }
    let s = p.stats().inbound;
    assert_eq!(
        (s.bindings, s.bindings_learned, s.bindings_evicted),
        (2, 3, 1)
    );
}

#[test]
fn open_invites_and_early_drops_are_bounded_and_counted() {
    let mut r = Run::registered(CONTACT);
    r.p = Pipeline::new(PipelineConfig {
        inbound: InboundConfig {
            max_open: 1,
            max_early_drops: 1,
            ..Default::default()
        },
        ..Default::default()
    });
    r.send(0, PBX, PROVIDER, &register(CONTACT));
    r.send(20, PROVIDER, PBX, &registered(CONTACT));
    // Two drops reported before their INVITEs: the first is forgotten.
    r.drop(
        900,
        PROVIDER,
        PBX,
        &invite(PROVIDER, CONTACT, "b1"),
        "netfilter_drop",
    );
    r.drop(
        950,
        PROVIDER,
        PBX,
        &invite(PROVIDER, CONTACT, "b2"),
        "netfilter_drop",
    );
    // Two INVITEs open at once: the second is not followed.
    r.send(1000, PROVIDER, PBX, &invite(PROVIDER, CONTACT, "b3"));
    r.send(1100, PROVIDER, PBX, &invite(PROVIDER, CONTACT, "b4"));
    let s = r.p.stats().inbound;
    assert_eq!(s.early_drops_evicted, 1);
    assert_eq!((s.invites_tracked, s.invites_untracked), (1, 1));
    // The drops raised once for the binding; the second is a repeat.
    assert_eq!((s.blocked, s.suppressed), (1, 1));
}
