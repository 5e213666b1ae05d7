use super::*;
use crate::analysis::media::sdp::{negotiated_streams, parse_sdp};

const S: u64 = 1_000_000_000;

fn sdp(addr: &str, port: u16, extra: &str) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {addr}\r\ns=-\r\nc=IN IP4 {addr}\r\nt=0 0\r\nm=audio {port} RTP/AVP 8 101\r\n\
         a=rtpmap:8 PCMA/8000\r\na=rtpmap:101 telephone-event/8000\r\n{extra}"
    )
}

fn stream(answer_extra: &str) -> NegotiatedStream {
    let offer = parse_sdp(sdp("192.0.2.10", 10000, "").as_bytes()).unwrap();
    let answer = parse_sdp(sdp("198.51.100.7", 4000, answer_extra).as_bytes()).unwrap();
    negotiated_streams(&offer, &answer).remove(0)
}

fn obs(
    src: &str,
    dst: &str,
    packets: u64,
    expected: u64,
    lost: i64,
    jitter_ms: f64,
) -> DirectionObservation {
    DirectionObservation {
        flows: vec![(
            FlowKey::new(src.parse().unwrap(), dst.parse().unwrap()),
            MatchKind::Exact,
        )],
        ssrc: 0xabcd,
        payload_type: 8,
        packets,
        expected,
        lost,
        jitter_ms,
        max_jitter_ms: jitter_ms,
        first_seen: Timestamp(S),
        last_seen: Timestamp(20 * S),
        dropped_locally: 0,
        far_end: None,
    }
}

fn check<'a>(
    stream: &'a NegotiatedStream,
    now_s: u64,
    o2a: Option<&'a DirectionObservation>,
    a2o: Option<&'a DirectionObservation>,
) -> StreamCheck<'a> {
    StreamCheck {
        call_id: "call-1@pbx",
        stream,
        answered_at: Timestamp(S),
        now: Timestamp(now_s * S),
        offerer_to_answerer: o2a,
        answerer_to_offerer: a2o,
    }
}

fn ev<'a>(f: &'a MediaFinding, key: &str) -> &'a str {
    f.evidence
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
        .unwrap_or_else(|| panic!("no evidence {key} in {:?}", f.evidence))
}

#[test]
fn answered_call_without_rtp_after_grace_is_no_rtp_and_nothing_else() {
    let s = stream("");
    let cfg = MediaCheckConfig::default();
    assert!(
        check_stream(&check(&s, 3, None, None), &cfg).is_empty(),
        "still in grace"
    );
    let found = check_stream(&check(&s, 10, None, None), &cfg);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, "media.no_rtp");
    assert_eq!(ev(&found[0], "silence_since_answer_s"), "9.0");
    assert_eq!(ev(&found[0], "codec"), "PCMA (PT 8)");
    assert!(found[0].remedy.contains("external_media_address"));
    assert!(found[0].remedy.contains("nft add rule"));
}

#[test]
fn rtp_in_one_direction_is_one_way_naming_the_missing_direction() {
    let s = stream("");
    let a2o = obs("198.51.100.7:4000", "192.0.2.10:10000", 500, 500, 0, 1.0);
    let found = check_stream(
        &check(&s, 12, None, Some(&a2o)),
        &MediaCheckConfig::default(),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.code, "media.one_way");
    assert_eq!(ev(f, "flowing"), "198.51.100.7:4000 to 192.0.2.10:10000");
    assert_eq!(ev(f, "missing"), "192.0.2.10:10000 to 198.51.100.7:4000");
    assert!(
        f.summary.contains("nothing offerer to answerer"),
        "{}",
        f.summary
    );
    assert!(f.remedy.contains("rtp_symmetric=yes") && f.remedy.contains("direct_media=no"));
    assert!(f.remedy.contains("ext-rtp-ip") && f.remedy.contains("rtpengine"));
}

#[test]
fn hanging_up_on_one_way_audio_within_the_grace_is_still_one_way() {
    // Answered at 1 s, hung up at 4 s: 3 s of RTP one way, none back.
    let s = stream("");
    let cfg = MediaCheckConfig::default();
    let mut a2o = obs("198.51.100.7:4000", "192.0.2.10:10000", 150, 150, 0, 1.0);
    a2o.first_seen = Timestamp(S + S / 10);
    a2o.last_seen = Timestamp(4 * S);
    let found = check_stream(&check(&s, 4, None, Some(&a2o)), &cfg);
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0].code, "media.one_way");
    assert!(ev(&found[0], "call_length_s").contains("grace"));
    // Too short to tell: half a second of RTP before the hang-up.
    let mut brief = a2o.clone();
    brief.last_seen = Timestamp(S + 6 * S / 10);
    brief.packets = 25;
    assert!(check_stream(&check(&s, 2, None, Some(&brief)), &cfg).is_empty());
    // Both directions flowing on a short call: nothing.
    let o2a = obs("192.0.2.10:10000", "198.51.100.7:4000", 150, 150, 0, 1.0);
    assert!(check_stream(&check(&s, 4, Some(&o2a), Some(&a2o)), &cfg).is_empty());
    // Nothing at all on a short call is not judged either.
    assert!(check_stream(&check(&s, 4, None, None), &cfg).is_empty());
}

#[test]
fn hold_is_not_one_way_nor_no_rtp() {
    let s = stream("a=recvonly\r\n");
    let o2a = obs("192.0.2.10:10000", "198.51.100.7:4000", 500, 500, 0, 1.0);
    // Answerer only receives: RTP one way is what was negotiated.
    assert!(
        check_stream(
            &check(&s, 12, Some(&o2a), None),
            &MediaCheckConfig::default()
        )
        .is_empty()
    );
    let inactive = stream("a=inactive\r\n");
    assert!(
        check_stream(
            &check(&inactive, 12, None, None),
            &MediaCheckConfig::default()
        )
        .is_empty()
    );
}

#[test]
fn healthy_two_way_call_raises_nothing() {
    let s = stream("");
    let o2a = obs("192.0.2.10:10000", "198.51.100.7:4000", 1000, 1000, 0, 2.0);
    let a2o = obs("198.51.100.7:4000", "192.0.2.10:10000", 1000, 1002, 2, 3.0);
    assert!(
        check_stream(
            &check(&s, 30, Some(&o2a), Some(&a2o)),
            &MediaCheckConfig::default()
        )
        .is_empty()
    );
}

#[test]
fn loss_and_jitter_beyond_thresholds_raise_quality_with_numbers() {
    let s = stream("");
    let o2a = obs("192.0.2.10:10000", "198.51.100.7:4000", 1000, 1000, 0, 2.0);
    let a2o = obs("198.51.100.7:4000", "192.0.2.10:10000", 950, 1000, 50, 45.0);
    let found = check_stream(
        &check(&s, 30, Some(&o2a), Some(&a2o)),
        &MediaCheckConfig::default(),
    );
    assert_eq!(found.len(), 1, "{found:?}");
    let f = &found[0];
    assert_eq!(f.code, "media.quality");
    assert_eq!(ev(f, "loss_percent"), "5.00");
    assert_eq!(ev(f, "jitter_ms"), "45.00");
    assert_eq!(ev(f, "direction"), "198.51.100.7:4000 to 192.0.2.10:10000");
    assert!(f.summary.contains("loss 5.00 % > 1.00 %") && f.summary.contains("jitter 45.0 ms"));
    // 5 % loss on G.711/PLC plus a 90 ms jitter buffer: Ta = 150 ms.
    assert_eq!(ev(f, "assumed_mouth_to_ear_ms"), "150");
    let mos: f64 = ev(f, "mos_estimate").parse().unwrap();
    assert!(mos < 4.0 && mos > 3.0, "{mos}");

    // Raising the thresholds silences it: they are configurable.
    let lax = MediaCheckConfig {
        thresholds: QualityThresholds {
            max_loss_percent: 10.0,
            max_jitter_ms: 100.0,
            min_mos: 2.0,
        },
        ..MediaCheckConfig::default()
    };
    assert!(quality(&check(&s, 30, Some(&o2a), Some(&a2o)), &lax).is_empty());
}

#[test]
fn too_few_packets_are_not_judged_for_quality() {
    let s = stream("");
    let short = obs("198.51.100.7:4000", "192.0.2.10:10000", 10, 20, 10, 80.0);
    let both = obs("192.0.2.10:10000", "198.51.100.7:4000", 10, 10, 0, 1.0);
    assert!(
        quality(
            &check(&s, 30, Some(&both), Some(&short)),
            &MediaCheckConfig::default()
        )
        .is_empty()
    );
}

#[test]
fn merged_observations_sum_counts_and_keep_worst_jitter() {
    let mut a = obs("198.51.100.7:4000", "192.0.2.10:10000", 100, 100, 0, 1.0);
    let b = obs("198.51.100.7:4010", "192.0.2.10:10000", 90, 100, 10, 7.0);
    a.merge(&b);
    assert_eq!(
        (a.packets, a.expected, a.lost, a.flows.len()),
        (190, 200, 10, 2)
    );
    assert_eq!(a.jitter_ms, 7.0);
    assert!((a.loss_percent() - 5.0).abs() < 1e-12);
}

#[test]
fn private_sdp_behind_nat_is_flagged_with_both_addresses() {
    let answer = parse_sdp(sdp("192.168.1.50", 4000, "").as_bytes()).unwrap();
    let m = &answer.media[0];
    let f = private_sdp(
        "c1",
        m,
        "198.51.100.7:5060".parse().unwrap(),
        "answer from the phone",
    )
    .unwrap();
    assert_eq!(f.code, "nat.private_sdp");
    assert_eq!(ev(&f, "sdp_connection"), "192.168.1.50");
    assert_eq!(ev(&f, "signalling_source"), "198.51.100.7:5060");
    assert!(f.remedy.contains("local_net") && f.remedy.contains("198.51.100.7"));
    // Same host signalling from its private address: a LAN call, fine.
    assert!(private_sdp("c1", m, "192.168.1.50:5060".parse().unwrap(), "x").is_none());
    // Public SDP address: nothing to say.
    let public = parse_sdp(sdp("198.51.100.7", 4000, "").as_bytes()).unwrap();
    assert!(
        private_sdp(
            "c1",
            &public.media[0],
            "198.51.100.9:5060".parse().unwrap(),
            "x"
        )
        .is_none()
    );
}

#[test]
fn non_routable_ranges() {
    for ip in [
        "10.1.2.3",
        "172.16.0.1",
        "192.168.0.1",
        "100.64.0.1",
        "169.254.1.1",
        "127.0.0.1",
        "fd00::1",
        "fe80::1",
        "::1",
    ] {
        assert!(is_non_routable(ip.parse().unwrap()), "{ip}");
    }
    for ip in [
        "8.8.8.8",
        "100.128.0.1",
        "172.32.0.1",
        "2001:db8::1",
        "2a00::1",
    ] {
        assert!(!is_non_routable(ip.parse().unwrap()), "{ip}");
    }
}
