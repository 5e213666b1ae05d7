use super::*;
use std::net::Ipv6Addr;

const OFFER: &str = "v=0\r\n\
o=alice 2890844526 2890844526 IN IP4 192.168.1.20\r\n\
s=-\r\n\
c=IN IP4 192.168.1.20\r\n\
t=0 0\r\n\
m=audio 49170 RTP/AVP 8 0 101\r\n\
a=rtpmap:8 PCMA/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\n\
a=fmtp:101 0-16\r\n\
a=sendrecv\r\n\
m=video 51372 RTP/AVP 96\r\n\
a=rtpmap:96 H264/90000\r\n";

const ANSWER: &str = "v=0\r\n\
o=bob 1 1 IN IP4 203.0.113.5\r\n\
s=-\r\n\
t=0 0\r\n\
m=audio 20000 RTP/AVP 0 8\r\n\
c=IN IP4 203.0.113.5\r\n\
a=rtcp:20011\r\n\
m=video 0 RTP/AVP 96\r\n";

#[test]
fn offer_resolves_session_connection_static_and_dynamic_clocks() {
    let offer = parse_sdp(OFFER.as_bytes()).unwrap();
    assert_eq!(offer.media.len(), 2);
    let audio = &offer.media[0];
    assert_eq!(audio.kind, MediaKind::Audio);
    assert_eq!(audio.protocol, TransportProtocol::RtpAvp);
    assert_eq!(audio.connection, "192.168.1.20".parse::<IpAddr>().unwrap());
    assert_eq!(audio.port, 49170);
    assert_eq!(audio.rtcp_port, Some(49171), "RFC 3550: RTCP on port + 1");
    assert_eq!(audio.payload_types, vec![8, 0, 101]);
    assert_eq!(audio.clock_rate, Some(8000));
    assert_eq!(audio.direction, MediaDirection::SendRecv);
    // PT 0 has no rtpmap: RFC 3551 static table.
    assert_eq!(audio.format(0).unwrap().encoding.as_deref(), Some("PCMU"));
    assert_eq!(
        audio.format(101).unwrap().encoding.as_deref(),
        Some("telephone-event")
    );
    assert_eq!(offer.media[1].clock_rate, Some(90000));
    assert_eq!(offer.media[1].kind, MediaKind::Video);
}

#[test]
fn answer_pairs_by_index_with_rejected_video_and_rtcp_attribute() {
    let offer = parse_sdp(OFFER.as_bytes()).unwrap();
    let answer = parse_sdp(ANSWER.as_bytes()).unwrap();
    let streams = negotiated_streams(&offer, &answer);
    assert_eq!(streams.len(), 2);
    let audio = &streams[0];
    assert_eq!(audio.answer.rtcp_port, Some(20011));
    // Answerer's preference among the offered types (RFC 3264 6.1).
    assert_eq!(audio.payload_type(), Some(0));
    let fmt = audio.format().unwrap();
    assert_eq!(fmt.encoding.as_deref(), Some("PCMU"));
    assert_eq!(fmt.clock_rate, Some(8000));
    assert!(audio.offerer_sends() && audio.answerer_sends());
    assert_eq!(
        audio.answer.rtp_address(),
        "203.0.113.5:20000".parse().unwrap()
    );
    let video = &streams[1];
    assert!(video.is_rejected());
    assert!(video.answer.is_rejected());
    assert!(!video.offerer_sends() && !video.answerer_sends());
    assert_eq!(video.answer.rtcp_port, None);
}

#[test]
fn ipv6_connection_and_lf_only_line_ends() {
    let sdp = "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nt=0 0\nm=audio 5004 RTP/AVP 0\nc=IN IP6 2001:db8::1\n";
    let parsed = parse_sdp(sdp.as_bytes()).unwrap();
    assert_eq!(
        parsed.media[0].connection,
        IpAddr::V6("2001:db8::1".parse::<Ipv6Addr>().unwrap())
    );
}

#[test]
fn media_connection_overrides_session_and_multicast_ttl_is_stripped() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
               m=audio 5004 RTP/AVP 0\r\nc=IN IP4 224.2.1.1/127\r\nm=audio 5006 RTP/AVP 0\r\n";
    let parsed = parse_sdp(sdp.as_bytes()).unwrap();
    assert_eq!(parsed.media[0].connection.to_string(), "224.2.1.1");
    assert_eq!(parsed.media[1].connection.to_string(), "10.0.0.1");
}

#[test]
fn hold_by_sendonly_and_by_zero_address() {
    let sendonly = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\na=sendonly\r\nm=audio 5004 RTP/AVP 0\r\n";
    let m = &parse_sdp(sendonly.as_bytes()).unwrap().media[0];
    assert_eq!(
        m.direction,
        MediaDirection::SendOnly,
        "session-level default"
    );
    assert!(m.is_hold());

    let zero = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 0.0.0.0\r\nt=0 0\r\nm=audio 5004 RTP/AVP 0\r\n";
    let offer = parse_sdp(zero.as_bytes()).unwrap();
    assert!(offer.media[0].is_hold());
    let answer = parse_sdp(ANSWER.as_bytes()).unwrap();
    let stream = &negotiated_streams(&offer, &answer)[0];
    assert!(stream.offerer_sends(), "the holding side may still send");
    assert!(
        !stream.answerer_sends(),
        "nobody sends to 0.0.0.0 (RFC 2543 hold)"
    );
}

#[test]
fn inactive_and_recvonly_directions() {
    let sdp = "v=0\r\no=- 1 2 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
               m=audio 5004 RTP/AVP 0\r\na=inactive\r\nm=audio 5006 RTP/AVP 0\r\na=recvonly\r\n";
    let p = parse_sdp(sdp.as_bytes()).unwrap();
    assert_eq!(p.media[0].direction, MediaDirection::Inactive);
    assert!(!p.media[0].direction.sends() && !p.media[0].direction.receives());
    assert_eq!(p.media[1].direction, MediaDirection::RecvOnly);
    assert!(!p.media[1].is_hold());
}

#[test]
fn dynamic_payload_type_without_rtpmap_has_no_clock() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\nm=audio 5004 RTP/AVP 97 0\r\n";
    let m = &parse_sdp(sdp.as_bytes()).unwrap().media[0];
    assert_eq!(m.format(97).unwrap().clock_rate, None);
    assert_eq!(m.format(97).unwrap().encoding, None);
    assert_eq!(m.clock_rate, None, "preferred type 97 has no known clock");
}

#[test]
fn savp_and_t38_image_lines() {
    let sdp = "v=0\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1\r\nt=0 0\r\n\
               m=audio 5004 RTP/SAVP 0\r\nm=image 6000 udptl t38\r\n";
    let p = parse_sdp(sdp.as_bytes()).unwrap();
    assert_eq!(p.media[0].protocol, TransportProtocol::RtpSavp);
    assert_eq!(p.media[1].kind, MediaKind::Image);
    assert!(!p.media[1].protocol.is_rtp());
    assert!(p.media[1].payload_types.is_empty());
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    let cases: &[&[u8]] = &[
        b"",
        b"garbage",
        b"v=1\r\n",
        b"v=0\r\nm=audio notaport RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/AVP PCMA\r\n",
        b"v=0\r\nm=audio 5004 RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4 pbx.example.com\r\nm=audio 5004 RTP/AVP 0\r\n",
        b"v=0\r\nc=IN IP4 10.0.0.1\r\nm=audio 5004 RTP/AVP 300\r\n",
        b"v=0\r\nthis line has no equals\r\n",
    ];
    for case in cases {
        assert!(
            parse_sdp(case).is_err(),
            "{:?} should be rejected",
            String::from_utf8_lossy(case)
        );
    }
    let missing = parse_sdp(b"v=0\r\nm=audio 5004 RTP/AVP 0\r\n").unwrap_err();
    assert!(matches!(missing, SdpError::MissingConnection { index: 0 }));
    let fqdn = parse_sdp(b"v=0\r\nc=IN IP4 pbx.example.com\r\nm=audio 5004 RTP/AVP 0\r\n");
    assert!(matches!(
        fqdn,
        Err(SdpError::UnsupportedSessionAddress { .. })
    ));
    let media_fqdn = parse_sdp(b"v=0\r\nm=audio 5004 RTP/AVP 0\r\nc=IN IP4 pbx.example.com\r\n");
    assert!(matches!(
        media_fqdn,
        Err(SdpError::UnsupportedAddress { index: 0, .. })
    ));
}

#[test]
fn bounds_reject_oversized_bodies_and_too_many_media() {
    let big = vec![b'a'; MAX_SDP_LEN + 1];
    assert!(matches!(parse_sdp(&big), Err(SdpError::TooLarge { .. })));
    let mut many = String::from("v=0\r\nc=IN IP4 10.0.0.1\r\n");
    for i in 0..=MAX_MEDIA {
        many.push_str(&format!("m=audio {} RTP/AVP 0\r\n", 5000 + 2 * i));
    }
    assert!(matches!(
        parse_sdp(many.as_bytes()),
        Err(SdpError::TooManyMedia { .. })
    ));
}

#[test]
fn trailing_whitespace_blank_lines_and_bad_rtpmap_are_tolerated() {
    let sdp = "v=0 \r\n\r\no=- 1 1 IN IP4 10.0.0.1\r\ns=-\r\nc=IN IP4 10.0.0.1  \r\nt=0 0\r\n\
               m=audio 5004 RTP/AVP 96\r\na=rtpmap:96 broken\r\n\r\n";
    let m = &parse_sdp(sdp.as_bytes()).unwrap().media[0];
    assert_eq!(m.format(96).unwrap().clock_rate, None);
}

#[test]
fn answer_with_fewer_lines_pairs_only_what_exists() {
    let offer = parse_sdp(OFFER.as_bytes()).unwrap();
    let one = "v=0\r\no=- 1 1 IN IP4 10.0.0.9\r\ns=-\r\nc=IN IP4 10.0.0.9\r\nt=0 0\r\nm=audio 7000 RTP/AVP 8\r\n";
    let answer = parse_sdp(one.as_bytes()).unwrap();
    let streams = negotiated_streams(&offer, &answer);
    assert_eq!(streams.len(), 1);
    assert_eq!(streams[0].payload_type(), Some(8));
}

proptest::proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..512)) {
        let _ = parse_sdp(&bytes);
    }

    #[test]
    fn sdp_like_lines_never_panic(lines in proptest::collection::vec("[vocmta]=[ -~]{0,40}", 0..20)) {
        let body = format!("v=0\r\n{}", lines.join("\r\n"));
        let _ = parse_sdp(body.as_bytes());
    }
}
