//! The binding table on its own: which INVITE addresses and
//! Request-URIs belong to a registered Contact.

use super::BindingTable;
use crate::analysis::registration::{Binding, Outcome, RegistrationAttempt};
use crate::sip::{Framing, MessageRecord, SipMessage};
use crate::{packet::Direction, time::Timestamp};

fn at(ms: u64) -> Timestamp {
    Timestamp(1_700_000_000_000_000_000 + ms * 1_000_000)
}

fn invite(ruri: &str) -> String {
    format!(
        "INVITE {ruri} SIP/2.0\r\nVia: SIP/2.0/UDP [2001:db8::1]:5060;branch=z9hG4bKv6\r\n\
         From: <sip:+15550001@provider.test>;tag=f\r\nTo: <sip:1001@provider.test>\r\n\
         Call-ID: v6\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn contacts_by_ip_literal_default_port_and_ipv6() {
    let attempt = |contact: &str| RegistrationAttempt {
        binding: Binding {
            aor: "sip:1001@provider.test".into(),
            contact: Some(contact.into()),
            call_id: "c".into(),
        },
        client: "[2001:db8::2]:40000".parse().unwrap(),
        registrar: "[2001:db8::1]:5060".parse().unwrap(),
        first_cseq: 1,
        started: at(0),
        ended: at(0),
        transactions: Vec::new(),
        outcome: Outcome::Registered { expires: 60 },
        auth_username: None,
        realm: None,
        diagnoses: Vec::new(),
    };
    let invite_to = |dst: &str, ruri: &str| MessageRecord {
        meta: crate::packet::Meta {
            ts: at(1000),
            src: "[2001:db8::1]:5060".parse().unwrap(),
            dst: dst.parse().unwrap(),
            transport: crate::packet::Transport::Udp,
            direction: Direction::Unknown,
            ifindex: 0,
        },
        message: SipMessage::parse(invite(ruri).into_bytes().into(), Framing::Datagram).unwrap(),
        transaction: None,
        retransmission: false,
        response_time: None,
    };
    let mut t = BindingTable::new(10);
    t.apply(&attempt("sip:1001@[2001:db8::2]"));
    t.apply(&attempt("sips:1002@[2001:db8::2]"));
    let found = |dst: &str, ruri: &str| {
        t.find(&invite_to(dst, ruri), at(1000))
            .map(|(b, _)| b.contact.clone())
    };
    // No port: 5060 for sip, 5061 for sips (RFC 3261 §19.1.2).
    assert_eq!(
        found("[2001:db8::2]:5060", "sip:x@h").as_deref(),
        Some("sip:1001@[2001:db8::2]")
    );
    assert_eq!(
        found("[2001:db8::2]:5061", "sip:x@h").as_deref(),
        Some("sips:1002@[2001:db8::2]")
    );
    // The registered-from socket, and the Contact as Request-URI.
    assert!(found("[2001:db8::2]:40000", "sip:x@h").is_some());
    // Hosts compare case-insensitively (RFC 3261 §19.1.4).
    assert_eq!(
        found("[2001:db8::9]:5060", "sip:1001@[2001:DB8::2]:5060").as_deref(),
        Some("sip:1001@[2001:db8::2]")
    );
    assert_eq!(
        found("[2001:db8::9]:5060", "sip:1001@[2001:db8::2]:5070"),
        None
    );
    assert_eq!(found("[2001:db8::3]:5060", "sip:1001@h"), None);
}
