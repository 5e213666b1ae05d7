use std::net::{IpAddr, SocketAddr};

use super::*;
use crate::sip::{HostPort, Rport, SipTransport, Via};

const T: Timestamp = Timestamp::from_nanos(42);

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn scope(s: &str) -> AddressScope {
    AddressScope::of(ip(s))
}

#[test]
fn ipv4_ranges_and_their_edges() {
    use AddressScope::*;
    let cases = [
        ("0.0.0.0", Unspecified),
        ("0.255.255.255", Unspecified),
        ("1.0.0.0", Public),
        ("9.255.255.255", Public),
        ("10.0.0.0", Private),
        ("10.255.255.255", Private),
        ("11.0.0.0", Public),
        ("100.63.255.255", Public),
        ("100.64.0.0", SharedCgnat),
        ("100.127.255.255", SharedCgnat),
        ("100.128.0.0", Public),
        ("126.255.255.255", Public),
        ("127.0.0.0", Loopback),
        ("127.0.0.1", Loopback),
        ("127.255.255.255", Loopback),
        ("128.0.0.0", Public),
        ("169.253.255.255", Public),
        ("169.254.0.0", LinkLocal),
        ("169.254.255.255", LinkLocal),
        ("169.255.0.0", Public),
        ("172.15.255.255", Public),
        ("172.16.0.0", Private),
        ("172.31.255.255", Private),
        ("172.32.0.0", Public),
        ("192.167.255.255", Public),
        ("192.168.0.0", Private),
        ("192.168.255.255", Private),
        ("192.169.0.0", Public),
        ("8.8.8.8", Public),
        ("80.230.219.70", Public),
    ];
    for (addr, want) in cases {
        assert_eq!(scope(addr), want, "{addr}");
    }
}

#[test]
fn ipv6_ranges_and_their_edges() {
    use AddressScope::*;
    let cases = [
        ("::", Unspecified),
        ("::1", Loopback),
        ("fbff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
        ("fc00::", UniqueLocal),
        ("fd17:625c:f037:2::1", UniqueLocal),
        ("fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", UniqueLocal),
        ("fe00::", Public),
        ("fe7f:ffff:ffff:ffff:ffff:ffff:ffff:ffff", Public),
        ("fe80::", LinkLocal),
        ("febf:ffff:ffff:ffff:ffff:ffff:ffff:ffff", LinkLocal),
        ("fec0::", SiteLocal),
        ("feff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", SiteLocal),
        ("2001:db8::10", Public),
        ("2a00:1450:4001::1", Public),
    ];
    for (addr, want) in cases {
        assert_eq!(scope(addr), want, "{addr}");
    }
}

#[test]
fn ipv4_mapped_ipv6_is_classified_by_its_ipv4() {
    use AddressScope::*;
    assert_eq!(scope("::ffff:192.168.1.1"), Private);
    assert_eq!(scope("::ffff:100.64.0.1"), SharedCgnat);
    assert_eq!(scope("::ffff:127.0.0.1"), Loopback);
    assert_eq!(scope("::ffff:169.254.1.1"), LinkLocal);
    assert_eq!(scope("::ffff:0.0.0.0"), Unspecified);
    assert_eq!(scope("::ffff:8.8.8.8"), Public);
}

// Host literals (`[::ffff:10.0.0.1]`, `2001:db8::1`, hostnames) are read by
// sip::host_port::ip_literal and tested there.

#[test]
fn local_network_names_the_block() {
    assert_eq!(local_network(ip("10.1.2.3")), Some("10.0.0.0/8"));
    assert_eq!(local_network(ip("172.20.0.1")), Some("172.16.0.0/12"));
    assert_eq!(local_network(ip("192.168.1.2")), Some("192.168.0.0/16"));
    assert_eq!(local_network(ip("100.100.0.1")), Some("100.64.0.0/10"));
    assert_eq!(local_network(ip("fd00::1")), Some("fc00::/7"));
    assert_eq!(local_network(ip("fe80::1")), Some("fe80::/10"));
    assert_eq!(local_network(ip("8.8.8.8")), None);
    assert_eq!(local_network(ip("127.0.0.1")), None);
}

fn via(transport: SipTransport, host: &str, port: Option<u16>) -> Via {
    Via {
        transport,
        sent_by: HostPort::new(host, port),
        received: None,
        rport: Rport::Absent,
    }
}

fn sock(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn codes(found: &[Diagnosis]) -> Vec<Code> {
    found.iter().map(|d| d.code).collect()
}

#[test]
fn registrar_sees_softphone_behind_nat_aaa_pcap() {
    // sngrep aaa.pcap: Via and Contact say 192.168.1.2, the packet came
    // from 80.230.219.70:5060.
    let vias = [via(SipTransport::Udp, "192.168.1.2", None)];
    let contacts = [HostPort::new("192.168.1.2", None)];
    let req = RequestAddresses {
        method: "REGISTER",
        source: sock("80.230.219.70:5060"),
        vias: &vias,
        contacts: &contacts,
    };
    let found = check_request(T, &req);
    assert_eq!(codes(&found), [Code::NatPrivateContact]);
    let d = &found[0];
    assert!(
        d.summary.contains("private (RFC 1918) address 192.168.1.2"),
        "{}",
        d.summary
    );
    assert!(d.summary.contains("80.230.219.70:5060"));
    let ev: Vec<_> = d
        .evidence
        .iter()
        .map(|e| (e.name.as_ref(), e.value.as_str()))
        .collect();
    assert_eq!(
        ev,
        [
            ("Via sent-by", "192.168.1.2"),
            ("Contact", "192.168.1.2"),
            ("observed source", "80.230.219.70:5060")
        ]
    );
    assert!(
        d.remedy
            .pjsip
            .contains("external_signaling_address=80.230.219.70")
    );
    assert!(d.remedy.pjsip.contains("local_net=192.168.0.0/16"));
    assert!(d.remedy.kamailio.contains("fix_nated_register"));
}

// A bug the refactor exposed: registration's own Via reader kept an
// unbracketed IPv6 sent-by whole, port included (`fe80:...:32e0:5060`), as
// the host, which is no IP, so a link-local sent-by behind a NAT went
// unflagged. sip/ reads it per RFC 5118 §4.2 leniency.
#[test]
fn unbracketed_link_local_ipv6_sent_by_is_flagged() {
    let m = crate::sip::SipMessage::from_lines(
        "REGISTER sip:example.com SIP/2.0\n\
         Via: SIP/2.0/UDP fe80:0:0:0:21a:a0ff:fe07:32e0:5060;branch=z9hG4bKk\n\
         Call-ID: a\nCSeq: 1 REGISTER\nFrom: <sip:1@x>;tag=1\nTo: <sip:1@x>\n\n",
    );
    let req = RequestAddresses {
        method: "REGISTER",
        source: sock("[2001:db8::77]:5060"),
        vias: &m.vias(),
        contacts: &[],
    };
    let found = check_request(T, &req);
    assert_eq!(codes(&found), [Code::NatPrivateContact]);
    assert_eq!(
        found[0].evidence[0].value, "[fe80:0:0:0:21a:a0ff:fe07:32e0]:5060",
        "the evidence shows where the port starts"
    );
}

#[test]
fn carrier_nat_between_two_private_ranges_ndpi_sip_hello() {
    // nDPI sip_hello: Via/Contact 10.231.142.84, packets from 172.29.38.91.
    let vias = [via(SipTransport::Udp, "10.231.142.84", Some(5060))];
    let contacts = [HostPort::new("10.231.142.84", Some(5060))];
    let req = RequestAddresses {
        method: "REGISTER",
        source: sock("172.29.38.91:5060"),
        vias: &vias,
        contacts: &contacts,
    };
    let found = check_request(T, &req);
    assert_eq!(codes(&found), [Code::NatPrivateContact]);
    assert!(
        found[0].remedy.pjsip.contains("<public IP>"),
        "no public address was seen"
    );
    assert!(found[0].remedy.pjsip.contains("local_net=10.0.0.0/8"));
}

#[test]
fn direct_lan_registration_raises_nothing() {
    let vias = [via(SipTransport::Udp, "192.168.1.10", Some(5060))];
    let contacts = [HostPort::new("192.168.1.10", Some(5060))];
    let req = RequestAddresses {
        method: "REGISTER",
        source: sock("192.168.1.10:5060"),
        vias: &vias,
        contacts: &contacts,
    };
    assert!(check_request(T, &req).is_empty());
    // Same over an IPv4-mapped socket address.
    let req = RequestAddresses {
        source: sock("[::ffff:192.168.1.10]:5060"),
        ..req
    };
    assert!(check_request(T, &req).is_empty());
}

#[test]
fn hostname_contacts_are_not_flagged() {
    let vias = [via(SipTransport::Udp, "pbx.example.com", None)];
    let contacts = [HostPort::new("pbx.example.com", Some(5060))];
    let req = RequestAddresses {
        method: "REGISTER",
        source: sock("203.0.113.5:5060"),
        vias: &vias,
        contacts: &contacts,
    };
    assert!(check_request(T, &req).is_empty());
}

#[test]
fn contact_port_differs_from_udp_source_port() {
    let vias = [via(SipTransport::Udp, "203.0.113.5", Some(5060))];
    let contacts = [HostPort::new("203.0.113.5", None)];
    let req = RequestAddresses {
        method: "REGISTER",
        source: sock("203.0.113.5:34567"),
        vias: &vias,
        contacts: &contacts,
    };
    let found = check_request(T, &req);
    assert_eq!(codes(&found), [Code::NatContactPortMismatch]);
    assert!(found[0].summary.contains("UDP port 34567") && found[0].summary.contains("port 5060"));
    // Over TCP the source port is ephemeral: no finding.
    let tcp_vias = [via(SipTransport::Tcp, "203.0.113.5", Some(5060))];
    let req = RequestAddresses {
        vias: &tcp_vias,
        ..req
    };
    assert!(check_request(T, &req).is_empty());
    // Default port matches: no finding.
    let req = RequestAddresses {
        source: sock("203.0.113.5:5060"),
        vias: &vias,
        ..req
    };
    assert!(check_request(T, &req).is_empty());
}

#[test]
fn proxied_request_is_judged_by_the_first_proxys_view() {
    // The edge proxy (198.51.100.1) forwarded the REGISTER; it recorded the
    // UA's real source in the bottom Via.
    let mut ua = via(SipTransport::Udp, "192.168.0.5", Some(5060));
    ua.received = Some("203.0.113.9".into());
    ua.rport = Rport::Value(40000);
    let vias = [via(SipTransport::Udp, "198.51.100.1", Some(5060)), ua];
    let contacts = [HostPort::new("192.168.0.5", Some(5060))];
    let req = RequestAddresses {
        method: "REGISTER",
        source: sock("198.51.100.1:5060"),
        vias: &vias,
        contacts: &contacts,
    };
    let found = check_request(T, &req);
    assert_eq!(codes(&found), [Code::NatPrivateContact]);
    assert!(
        found[0].summary.contains("203.0.113.9:40000"),
        "{}",
        found[0].summary
    );
    assert_eq!(
        found[0].evidence.last().unwrap().name,
        "origin recorded by the first proxy (bottom Via)"
    );
    // A public UA whose Contact is its own address is fine.
    let mut ua = via(SipTransport::Udp, "203.0.113.9", Some(5060));
    ua.rport = Rport::Value(5060);
    let vias = [via(SipTransport::Udp, "198.51.100.1", Some(5060)), ua];
    let contacts = [HostPort::new("203.0.113.9", Some(5060))];
    let req = RequestAddresses {
        vias: &vias,
        contacts: &contacts,
        ..req
    };
    assert!(check_request(T, &req).is_empty());
}

#[test]
fn private_via_without_contact_is_still_reported() {
    let vias = [via(SipTransport::Udp, "10.0.0.7", Some(5060))];
    let req = RequestAddresses {
        method: "OPTIONS",
        source: sock("198.51.100.20:5060"),
        vias: &vias,
        contacts: &[],
    };
    let found = check_request(T, &req);
    assert_eq!(codes(&found), [Code::NatPrivateContact]);
    assert_eq!(found[0].evidence[0].name, "Via sent-by");
}

#[test]
fn pbx_learns_its_nat_from_the_response_via() {
    // aaa.pcap from the softphone's side: the response echoes
    // Via: SIP/2.0/UDP 192.168.1.2;received=80.230.219.70;rport=5060.
    let mut v = via(SipTransport::Udp, "192.168.1.2", None);
    v.received = Some("80.230.219.70".into());
    v.rport = Rport::Value(5060);
    let d = check_response_via(T, &v, &[HostPort::new("192.168.1.2", None)]).unwrap();
    assert_eq!(
        (d.code, d.severity),
        (Code::NatRewrittenByPeer, Severity::Warning)
    );
    assert!(d.summary.contains("80.230.219.70:5060"), "{}", d.summary);
    assert!(d.summary.contains("Contact still advertises 192.168.1.2"));
    assert!(
        d.remedy
            .pjsip
            .contains("external_signaling_address=80.230.219.70")
    );
    assert!(d.remedy.pjsip.contains("local_net=192.168.0.0/16"));
    // Contact already public: informational only.
    let d = check_response_via(T, &v, &[HostPort::new("80.230.219.70", None)]).unwrap();
    assert_eq!(d.severity, Severity::Info);
}

#[test]
fn port_only_translation_is_seen_through_rport() {
    // heplify ERSPAN capture: 192.168.8.53:5860;rport=53221;received=180.173.83.248.
    let mut v = via(SipTransport::Udp, "192.168.8.53", Some(5860));
    v.received = Some("180.173.83.248".into());
    v.rport = Rport::Value(53221);
    let d = check_response_via(T, &v, &[]).unwrap();
    assert!(d.summary.contains("180.173.83.248:53221"));
    let names: Vec<_> = d.evidence.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(names, ["Via sent-by", "received", "rport"]);
    // Same IP, only the port changed.
    let mut v = via(SipTransport::Udp, "203.0.113.5", Some(5060));
    v.rport = Rport::Value(61000);
    assert!(check_response_via(T, &v, &[]).is_some());
}

#[test]
fn response_via_without_translation_raises_nothing() {
    let mut v = via(SipTransport::Udp, "10.231.142.84", Some(5060));
    v.rport = Rport::Value(5060);
    assert!(check_response_via(T, &v, &[]).is_none());
    // received equal to sent-by.
    v.received = Some("10.231.142.84".into());
    assert!(check_response_via(T, &v, &[]).is_none());
    // A hostname sent-by always gets received= (RFC 3261 18.2.1).
    let mut v = via(SipTransport::Udp, "pbx.example.com", None);
    v.received = Some("203.0.113.5".into());
    assert!(check_response_via(T, &v, &[]).is_none());
    // TCP: rport is the ephemeral connection port, not a NAT signal.
    let mut v = via(SipTransport::Tcp, "203.0.113.5", Some(5060));
    v.rport = Rport::Value(49152);
    assert!(check_response_via(T, &v, &[]).is_none());
    // rport requested but not filled.
    let mut v = via(SipTransport::Udp, "192.168.1.2", None);
    v.rport = Rport::Requested;
    assert!(check_response_via(T, &v, &[]).is_none());
}

#[test]
fn private_sdp_behind_nat() {
    let d = check_sdp(T, "192.168.1.2", Some(30000), ip("80.230.219.70")).unwrap();
    assert_eq!(
        (d.code, d.severity),
        (Code::NatPrivateSdp, Severity::Warning)
    );
    let ev: Vec<_> = d
        .evidence
        .iter()
        .map(|e| (e.name.as_ref(), e.value.as_str()))
        .collect();
    assert_eq!(
        ev,
        [
            ("SDP c=", "192.168.1.2"),
            ("SDP m= port", "30000"),
            ("signalling source", "80.230.219.70")
        ]
    );
    assert!(
        d.remedy
            .pjsip
            .contains("external_media_address=80.230.219.70")
    );
    assert!(d.remedy.freeswitch.contains("ext-rtp-ip"));
    assert!(d.remedy.kamailio.contains("rtpengine"));
    let v6 = check_sdp(T, "fd17:625c:f037:2::5", None, ip("2001:db8::1")).unwrap();
    assert!(v6.summary.contains("unique local"));
}

#[test]
fn sdp_that_is_fine_or_on_hold_raises_nothing() {
    assert!(
        check_sdp(T, "0.0.0.0", Some(30000), ip("80.230.219.70")).is_none(),
        "hold"
    );
    assert!(
        check_sdp(T, "::", None, ip("2001:db8::1")).is_none(),
        "hold"
    );
    assert!(check_sdp(T, "media.biloxi.com", Some(49170), ip("80.230.219.70")).is_none());
    assert!(
        check_sdp(T, "200.57.7.196", Some(40376), ip("200.57.7.195")).is_none(),
        "public media host"
    );
    assert!(
        check_sdp(T, "10.33.6.100", Some(6000), ip("10.33.6.100")).is_none(),
        "same LAN host"
    );
    assert!(check_sdp(T, "10.33.6.100", Some(6000), ip("::ffff:10.33.6.100")).is_none());
}

proptest::proptest! {
    #[test]
    fn host_parsing_and_checks_never_panic(host in "\\PC{0,40}", port in proptest::option::of(proptest::num::u16::ANY)) {
        let _ = ip_literal(&host);
        let vias = [via(SipTransport::Udp, &host, port)];
        let contacts = [HostPort::new(host.clone(), port)];
        let req = RequestAddresses { method: "REGISTER", source: sock("203.0.113.1:5060"), vias: &vias, contacts: &contacts };
        let _ = check_request(T, &req);
        let _ = check_response_via(T, &vias[0], &contacts);
        let _ = check_sdp(T, &host, port, ip("203.0.113.1"));
    }

    #[test]
    fn ipv4_mapped_matches_plain_ipv4(a in proptest::num::u32::ANY) {
        let v4 = std::net::Ipv4Addr::from(a);
        proptest::prop_assert_eq!(AddressScope::of(IpAddr::V4(v4)), AddressScope::of(IpAddr::V6(v4.to_ipv6_mapped())));
    }
}
