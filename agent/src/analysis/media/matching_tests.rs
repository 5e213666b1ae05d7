use super::*;
use crate::analysis::media::sdp::{negotiated_streams, parse_sdp};

/// The PBX 192.0.2.10 offers port 10000; the phone behind NAT answers with
/// its private address 192.168.1.50:4000 and is really 198.51.100.7.
fn stream() -> NegotiatedStream {
    let offer = parse_sdp(
        b"v=0\r\no=- 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\nm=audio 10000 RTP/AVP 8\r\n",
    )
    .unwrap();
    let answer = parse_sdp(
        b"v=0\r\no=- 1 1 IN IP4 192.168.1.50\r\ns=-\r\nc=IN IP4 192.168.1.50\r\nt=0 0\r\nm=audio 4000 RTP/AVP 8\r\n",
    )
    .unwrap();
    negotiated_streams(&offer, &answer).remove(0)
}

fn flow(src: &str, dst: &str, ssrc: u32, first: u64, last: u64) -> ObservedFlow {
    ObservedFlow {
        key: FlowKey::new(src.parse().unwrap(), dst.parse().unwrap()),
        ssrc,
        first_seen: Timestamp(first),
        last_seen: Timestamp(last),
        packets: 50,
    }
}

const WINDOW: TimeWindow = TimeWindow {
    start: Timestamp(100),
    end: None,
};

#[test]
fn nat_phone_is_linked_by_exact_destination_and_symmetric_source() {
    let flows = [
        // Phone's NAT mapping → PBX's SDP address.
        flow("198.51.100.7:32000", "192.0.2.10:10000", 1, 200, 900),
        // PBX latched onto the NAT mapping (rtp_symmetric=yes).
        flow("192.0.2.10:10000", "198.51.100.7:32000", 2, 210, 900),
    ];
    let m = link_flows(&stream(), &flows, WINDOW);
    assert_eq!(m.len(), 2);
    assert_eq!(
        (m[0].direction, m[0].kind),
        (StreamDirection::AnswererToOfferer, MatchKind::Exact)
    );
    assert_eq!(
        (m[1].direction, m[1].kind),
        (
            StreamDirection::OffererToAnswerer,
            MatchKind::SymmetricSource
        )
    );
}

#[test]
fn local_port_matches_when_sdp_names_another_address() {
    // Seen on the phone's side of its NAT: packets reach 192.168.1.60:4000
    // (DNAT) although the SDP said 192.168.1.50.
    let flows = [flow("192.0.2.10:10002", "192.168.1.60:4000", 3, 200, 900)];
    let m = link_flows(&stream(), &flows, WINDOW);
    assert_eq!(m.len(), 1);
    assert_eq!(m[0].kind, MatchKind::ReceiverPort);
    assert_eq!(m[0].direction, StreamDirection::OffererToAnswerer);
}

#[test]
fn rebinding_keeps_the_stream_through_the_ssrc() {
    let flows = [
        flow("198.51.100.7:32000", "192.0.2.10:10000", 7, 200, 500),
        // NAT rebinding: new source port and, seen behind a load balancer,
        // a different destination port; same sender host and SSRC.
        flow("198.51.100.7:32010", "192.0.2.10:10500", 7, 510, 900),
        // Another leg relayed by a B2BUA with the same SSRC, other hosts.
        flow("203.0.113.1:5000", "203.0.113.2:6000", 7, 510, 900),
    ];
    let m = link_flows(&stream(), &flows, WINDOW);
    assert_eq!(m.len(), 2, "{m:?}");
    assert_eq!(
        (m[1].flow, m[1].kind, m[1].direction),
        (1, MatchKind::SameSsrc, StreamDirection::AnswererToOfferer)
    );
}

#[test]
fn flows_outside_the_window_or_unrelated_are_ignored() {
    let flows = [
        // Earlier call on the same ports.
        flow("198.51.100.7:32000", "192.0.2.10:10000", 1, 10, 90),
        // Unrelated ports.
        flow("198.51.100.9:1000", "192.0.2.10:12000", 9, 200, 900),
    ];
    assert!(link_flows(&stream(), &flows, WINDOW).is_empty());
    let ended = TimeWindow {
        start: Timestamp(0),
        end: Some(Timestamp(5)),
    };
    assert!(link_flows(&stream(), &flows[..1], ended).is_empty());
}

#[test]
fn rejected_stream_links_nothing() {
    let mut s = stream();
    s.answer.port = 0;
    let flows = [flow("198.51.100.7:32000", "192.0.2.10:10000", 1, 200, 900)];
    assert!(link_flows(&s, &flows, WINDOW).is_empty());
}
