//! Call scenarios against real peers (issue #7, media): a SIPp phone
//! (call-uac.xml) calls a SIPp PBX (call-uas.xml) across a veth pair; the
//! test itself sends the RTP both ways from sockets bound to the SDP ports
//! (symmetric RTP, tests/support/rtp.rs), so every packet count is known.
//! The real agent (`sipscope run --json --media-grace 2`) runs on the PBX
//! side, dumpcap beside it; each test asserts the EXACT set of diagnosis
//! codes and the final `call` record's per-direction RTP statistics, live
//! and (where a pcap can tell) offline with `sipscope analyze --json` on
//! dumpcap's capture, and tshark as the reference for packets and loss.
//!
//! | case | network | expected codes (and no other) |
//! |---|---|---|
//! | healthy | nothing in the way | none |
//! | far-side egress drop | phone's nft output drops its RTP | media.one_way (live and offline) |
//! | PBX firewall drop | PBX's nft input drops its inbound RTP | media.one_way, fw.local_drop (live); none offline (dumpcap sees the packets before netfilter) |
//! | 5 % loss | phone's nft output drops 5 % at random | media.quality, loss within 1 pp of nft's counter |
//! | phone behind NAT | phone's c= is private, RTP latched (comedia) | nat.private_sdp, media healthy |
//! | no RTP at all | nobody sends media | media.no_rtp (live); offline not judged (no RTP in the file at all) |

mod lab;
mod report;

#[allow(dead_code)] // mean jitter: our JSON has max and current
#[path = "../media/tshark.rs"]
mod tshark;

use std::net::SocketAddr;
use std::time::Duration;

use crate::support::rtp::RtpSpec;

use lab::{CallLab, Media};
use report::{
    ANSWERER_TO_OFFERER, Leg, OFFERER_TO_ANSWERER, analyze, assert_agrees_with_tshark,
    assert_call_ended, codes, direction, evidence, final_call, num, packets, set,
};

/// The PBX's RTP port (its SDP answer), inside the agent's default range.
const PBX_RTP_PORT: u16 = 16000;
/// The phone's RTP port (its SDP offer).
const PHONE_RTP_PORT: u16 = 12000;
const PHONE_SSRC: u32 = 0x0a11_ce01;
const PBX_SSRC: u32 = 0x5b0c_0002;
/// 3 s of 20 ms G.711 each way: enough for the quality checks (>= 50
/// packets per direction) and short enough to keep each test ~10 s.
const CALL_PACKETS: u32 = 150;
/// The agent's `--media-grace`: RTP must appear within 2 s of the answer.
/// Every call stays up longer, so one-way and no-RTP are judged while it
/// is up, as on a real PBX.
const MEDIA_GRACE: Duration = Duration::from_secs(2);

#[test]
fn healthy_two_way_call_raises_nothing_and_counts_every_packet() {
    let lab = CallLab::new(false);
    let (phone, pbx) = (lab.phone_rtp(), lab.pbx_rtp());
    let run = lab.call(Media::pcmu(CALL_PACKETS));
    assert_eq!(
        run.phone_sent.refused_locally + run.pbx_sent.refused_locally,
        0
    );
    run.assert_delivered(run.phone_sent.sent.into(), run.pbx_sent.sent.into());
    let clean = [
        Leg::direct(OFFERER_TO_ANSWERER, phone, pbx, run.phone_sent.sent),
        Leg::direct(ANSWERER_TO_OFFERER, pbx, phone, run.pbx_sent.sent),
    ];

    assert_eq!(codes(&run.live), set(&[]), "{}", run.live_text);
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(&live, &clean);
    // The Prometheus view: one observation per direction at call end,
    // no loss, a good MOS; the INVITE counted.
    let m = |series: &str| crate::metrics::sample(&run.metrics, series);
    for dir in ["caller_to_callee", "callee_to_caller"] {
        let d = format!("{{direction=\"{dir}\"}}");
        let zero_loss = format!("{{le=\"0.0\",direction=\"{dir}\"}}");
        assert_eq!(
            m(&format!("sipscope_rtp_loss_ratio_count{d}")),
            Some(1.0),
            "{}",
            run.metrics
        );
        assert_eq!(
            m(&format!("sipscope_rtp_loss_ratio_bucket{zero_loss}")),
            Some(1.0),
            "{}",
            run.metrics
        );
        assert_eq!(
            m(&format!("sipscope_rtp_jitter_seconds_count{d}")),
            Some(1.0)
        );
        assert_eq!(m(&format!("sipscope_rtp_mos_count{d}")), Some(1.0));
        assert!(
            m(&format!("sipscope_rtp_mos_sum{d}")).unwrap() > 4.0,
            "{}",
            run.metrics
        );
    }
    // Every RTP packet crossed the PBX's veth once, accounted to a flow by
    // the kernel (the RTP counters of the last poll before the record).
    assert_eq!(
        m(r#"sipscope_kernel_rtp_total{counter="rtp_packets"}"#),
        Some(f64::from(run.phone_sent.sent + run.pbx_sent.sent)),
        "{}",
        run.metrics
    );
    assert_eq!(
        m(
            r#"sipscope_sip_messages_total{method="INVITE",kind="request",status_class="none",direction="in"}"#
        ),
        Some(1.0),
        "{}",
        run.metrics
    );

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(codes(&offline_records), set(&[]), "{offline_text}");
    let offline = final_call(&offline_records, &offline_text);
    assert_call_ended(&offline, &clean);

    // The same file through tshark: the offline figures are computed on
    // the same timestamps (RFC 3550 estimator, Q4 fixed point vs float);
    // the live ones on the XDP timestamps of the same packets.
    assert_agrees_with_tshark(&offline, &run.dumpcap_pcap, 0.01);
    assert_agrees_with_tshark(&live, &run.dumpcap_pcap, 0.5);
}

#[test]
fn far_side_egress_firewall_dropping_its_rtp_is_one_way_audio() {
    let lab = CallLab::new(false);
    lab.nft(
        lab.phone(),
        "output",
        &format!("udp dport {PBX_RTP_PORT} counter drop"),
    );
    let (phone, pbx) = (lab.phone_rtp(), lab.pbx_rtp());
    let run = lab.call(Media::pcmu(CALL_PACKETS));
    assert_eq!(run.phone_sent.refused_locally, run.phone_sent.sent);
    run.assert_delivered(0, run.pbx_sent.sent.into());
    let clean = [Leg::direct(
        ANSWERER_TO_OFFERER,
        pbx,
        phone,
        run.pbx_sent.sent,
    )];

    assert_eq!(
        codes(&run.live),
        set(&["media.one_way"]),
        "{}",
        run.live_text
    );
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(&live, &clean);
    assert_eq!(packets(&live, OFFERER_TO_ANSWERER), 0, "{live:#}");
    let missing = format!("{phone} to {pbx}");
    assert_eq!(
        evidence(&run.live, "media.one_way", "missing"),
        Some(missing.clone())
    );
    // Never on this host's wire: not a local drop.
    assert_eq!(
        evidence(&run.live, "media.one_way", "missing_dropped_locally"),
        None
    );

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(
        codes(&offline_records),
        set(&["media.one_way"]),
        "{offline_text}"
    );
    let offline = final_call(&offline_records, &offline_text);
    assert_call_ended(&offline, &clean);
    assert_eq!(packets(&offline, OFFERER_TO_ANSWERER), 0, "{offline:#}");
    assert_eq!(
        evidence(&offline_records, "media.one_way", "missing"),
        Some(missing)
    );
}

/// The PBX's own firewall drops the inbound RTP: XDP sees every packet,
/// netfilter drops them before the PBX's socket, and the kfree_skb tracer
/// tells the agent so. A pcap (dumpcap, AF_PACKET) sees them too and
/// cannot know: offline the call looks healthy.
#[test]
fn pbx_firewall_dropping_inbound_rtp_is_one_way_audio_and_a_local_drop() {
    let lab = CallLab::new(false);
    lab.nft(
        lab.pbx(),
        "input",
        &format!("udp dport {PBX_RTP_PORT} counter drop"),
    );
    let (phone, pbx) = (lab.phone_rtp(), lab.pbx_rtp());
    let run = lab.call(Media::pcmu(CALL_PACKETS));
    assert_eq!(run.phone_sent.refused_locally, 0);
    assert_eq!(
        lab.nft_counter(lab.pbx(), "input"),
        u64::from(run.phone_sent.sent),
        "the PBX's firewall dropped every inbound RTP packet"
    );
    run.assert_delivered(0, run.pbx_sent.sent.into());

    assert_eq!(
        codes(&run.live),
        set(&["media.one_way", "fw.local_drop"]),
        "{}",
        run.live_text
    );
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(
        &live,
        &[Leg::direct(
            ANSWERER_TO_OFFERER,
            pbx,
            phone,
            run.pbx_sent.sent,
        )],
    );
    let inbound = direction(&live, OFFERER_TO_ANSWERER)
        .unwrap_or_else(|| panic!("the dropped direction is listed: {live:#}"));
    // Seen by XDP, every one dropped before the socket.
    assert_eq!(num(inbound, "packets"), f64::from(run.phone_sent.sent));
    assert_eq!(
        num(inbound, "dropped_locally"),
        f64::from(run.phone_sent.sent),
        "{inbound:#}"
    );
    assert_eq!(
        evidence(&run.live, "media.one_way", "missing"),
        Some(format!("{phone} to {pbx}"))
    );
    // Judged when the grace period ran out, while the call was up: the
    // count is what had been dropped by then.
    let dropped = evidence(&run.live, "media.one_way", "missing_dropped_locally")
        .expect("one_way names the local drops");
    let by_then: u32 = dropped
        .strip_suffix(" packets had arrived by then, and this host's firewall dropped them")
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("{dropped}"));
    assert!((1..=run.phone_sent.sent).contains(&by_then), "{dropped}");
    assert_eq!(
        evidence(&run.live, "fw.local_drop", "drop_reason"),
        Some("netfilter_drop".into())
    );

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(codes(&offline_records), set(&[]), "{offline_text}");
    let offline = final_call(&offline_records, &offline_text);
    assert_call_ended(
        &offline,
        &[
            Leg::direct(OFFERER_TO_ANSWERER, phone, pbx, run.phone_sent.sent),
            Leg::direct(ANSWERER_TO_OFFERER, pbx, phone, run.pbx_sent.sent),
        ],
    );
}

/// 5 % random loss on the phone's way out (nft `numgen random`, with a
/// counter for the truth), 1500 packets each way at 5 ms spacing (the
/// RTP timestamps advance by 5 ms too, so jitter stays near zero).
#[test]
fn five_percent_loss_is_media_quality_with_the_true_loss_rate() {
    let lab = CallLab::new(false);
    lab.nft(
        lab.phone(),
        "output",
        &format!("udp dport {PBX_RTP_PORT} numgen random mod 100 < 5 counter drop"),
    );
    let fast = Duration::from_millis(5);
    let media = Media {
        codec: (crate::support::rtp::PCMU, "PCMU/8000"),
        phone: RtpSpec::pcmu(PHONE_SSRC, 1500).with_interval(fast),
        pbx: RtpSpec::pcmu(PBX_SSRC, 1500).with_interval(fast),
        pbx_rtcp: None,
    };
    let (phone, pbx) = (lab.phone_rtp(), lab.pbx_rtp());
    let run = lab.call(media);
    let dropped = lab.nft_counter(lab.phone(), "output");
    // The rule matches only the phone's RTP, so its counter is the truth.
    assert_eq!(u64::from(run.phone_sent.refused_locally), dropped);
    run.assert_delivered(
        u64::from(run.phone_sent.sent) - dropped,
        run.pbx_sent.sent.into(),
    );
    let truth = dropped as f64 / f64::from(run.phone_sent.sent) * 100.0;
    println!(
        "nft dropped {dropped} of {} ({truth:.2} %)",
        run.phone_sent.sent
    );

    let (offline, offline_text) = analyze(&run.dumpcap_pcap);
    // Jitter tolerance against tshark: see the healthy call.
    for (records, text, jitter_tolerance_ms) in [
        (&run.live, &run.live_text, 0.5),
        (&offline, &offline_text, 0.01),
    ] {
        assert_eq!(codes(records), set(&["media.quality"]), "{text}");
        let call = final_call(records, text);
        assert_call_ended(
            &call,
            &[Leg::direct(
                ANSWERER_TO_OFFERER,
                pbx,
                phone,
                run.pbx_sent.sent,
            )],
        );
        let lossy = direction(&call, OFFERER_TO_ANSWERER).expect("lossy direction");
        assert_eq!(lossy["from"], phone.to_string());
        // Exactly the packets that got through, whatever the estimate.
        assert_eq!(
            num(lossy, "packets") as u64,
            u64::from(run.phone_sent.sent) - dropped,
            "{lossy:#}"
        );
        let ours = num(lossy, "loss_percent");
        println!("{lossy}");
        assert!(
            (ours - truth).abs() <= 1.0,
            "loss {ours:.2} % vs {truth:.2} % dropped by nft: {lossy:#}"
        );
        assert_agrees_with_tshark(&call, &run.dumpcap_pcap, jitter_tolerance_ms);
    }
    // The Prometheus view: the lossy direction's one observation is the
    // true loss rate; the finding is counted once.
    let m = |series: &str| crate::metrics::sample(&run.metrics, series);
    let d = r#"{direction="caller_to_callee"}"#;
    assert_eq!(m(&format!("sipscope_rtp_loss_ratio_count{d}")), Some(1.0));
    let ratio = m(&format!("sipscope_rtp_loss_ratio_sum{d}")).unwrap();
    assert!(
        (ratio * 100.0 - truth).abs() <= 1.0,
        "loss ratio {ratio} vs {truth:.2} %\n{}",
        run.metrics
    );
    assert_eq!(
        m(r#"sipscope_findings_total{code="media.quality"}"#),
        Some(1.0),
        "{}",
        run.metrics
    );
}

/// Answered, and nobody sends RTP (media never set up): after the grace
/// period the live agent (which measures RTP in the kernel) raises
/// media.no_rtp and nothing else. Offline, a capture without a single RTP
/// packet cannot tell a silent call from a SIP-only capture (`tcpdump
/// port 5060`): the media is not judged, and the summary says so.
#[test]
fn answered_call_without_any_rtp_is_no_rtp() {
    let lab = CallLab::new(false);
    let run = lab.call(Media::pcmu(0));
    run.assert_delivered(0, 0);
    assert_eq!(
        codes(&run.live),
        set(&["media.no_rtp"]),
        "{}",
        run.live_text
    );
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(&live, &[]);
    for which in [OFFERER_TO_ANSWERER, ANSWERER_TO_OFFERER] {
        assert_eq!(packets(&live, which), 0, "{live:#}");
    }

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(codes(&offline_records), set(&[]), "{offline_text}");
    assert_call_ended(&final_call(&offline_records, &offline_text), &[]);
    let summary = offline_records
        .iter()
        .find(|r| r["type"] == "summary")
        .unwrap_or_else(|| panic!("no summary in:\n{offline_text}"));
    assert_eq!(summary["calls"]["media_not_judged"], 1, "{offline_text}");
}

/// The phone sits behind a masquerading router and advertises its private
/// address in SDP `c=` (and SIP Contact/Via); the PBX sends its RTP where
/// the phone's RTP comes from (symmetric RTP), so audio flows both ways.
/// The risks are still worth reporting: nat.private_sdp, and
/// nat.private_contact (the PBX's BYE would go to the private Contact);
/// nothing about the media.
#[test]
fn phone_behind_nat_with_private_sdp_address() {
    let lab = CallLab::new(true);
    let phone_private = lab.phone_rtp();
    let phone_public = SocketAddr::new(lab.phone_seen_ip(), PHONE_RTP_PORT);
    let pbx = lab.pbx_rtp();
    let run = lab.call(Media::pcmu(CALL_PACKETS));
    run.assert_delivered(run.phone_sent.sent.into(), run.pbx_sent.sent.into());
    // Directions name the SDP's addresses; the flows show where the
    // packets really went (the NAT's public side).
    let clean = [
        Leg {
            which: OFFERER_TO_ANSWERER,
            sdp: (phone_private, pbx),
            wire: (phone_public, pbx),
            sent: run.phone_sent.sent,
        },
        Leg {
            which: ANSWERER_TO_OFFERER,
            sdp: (pbx, phone_private),
            wire: (pbx, phone_public),
            sent: run.pbx_sent.sent,
        },
    ];
    assert_eq!(
        codes(&run.live),
        set(&["nat.private_contact", "nat.private_sdp"]),
        "{}",
        run.live_text
    );
    let contact = evidence(&run.live, "nat.private_contact", "Contact").expect("Contact");
    assert!(
        contact.starts_with(&phone_private.ip().to_string()),
        "{contact}"
    );
    // The phone's private c= and port, against where its SIP came from.
    let private_sdp = |name| evidence(&run.live, "nat.private_sdp", name);
    assert_eq!(
        private_sdp("sdp_connection"),
        Some(phone_private.ip().to_string())
    );
    assert_eq!(private_sdp("sdp_port"), Some(PHONE_RTP_PORT.to_string()));
    let source = private_sdp("signalling_source").expect("signalling_source");
    assert!(
        source.starts_with(&format!("{}:", phone_public.ip())),
        "{source}"
    );
    let live = final_call(&run.live, &run.live_text);
    assert_call_ended(&live, &clean);

    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(
        codes(&offline_records),
        set(&["nat.private_contact", "nat.private_sdp"]),
        "{offline_text}"
    );
    assert_call_ended(&final_call(&offline_records, &offline_text), &clean);
}

/// The PBX's RTCP receiver report about the phone's stream (RFC 3550
/// 6.4.2) reaches the agent (the kernel forwards SR/RR, never RTP) and is
/// in the call record as the far end's view of that direction, live and
/// offline; our own figures still judge the call (healthy).
#[test]
fn the_receivers_rtcp_report_is_the_far_end_view_of_its_direction() {
    let lab = CallLab::new(false);
    // 26/256 lost lately, 15 in all, jitter 160 units (20 ms at 8 kHz).
    let mut rr = vec![0x81u8, 201, 0, 7];
    rr.extend_from_slice(&PBX_SSRC.to_be_bytes());
    rr.extend_from_slice(&PHONE_SSRC.to_be_bytes());
    rr.extend_from_slice(&((26u32 << 24) | 15).to_be_bytes());
    rr.extend_from_slice(&150u32.to_be_bytes());
    rr.extend_from_slice(&160u32.to_be_bytes());
    rr.extend_from_slice(&[0; 8]);
    let mut media = Media::pcmu(CALL_PACKETS);
    media.pbx_rtcp = Some(rr);
    let run = lab.call(media);

    assert_eq!(codes(&run.live), set(&[]), "{}", run.live_text);
    let (offline_records, offline_text) = analyze(&run.dumpcap_pcap);
    assert_eq!(codes(&offline_records), set(&[]), "{offline_text}");
    let offline = final_call(&offline_records, &offline_text);
    for (call, text) in [
        (final_call(&run.live, &run.live_text), &run.live_text),
        (offline, &offline_text),
    ] {
        let to_pbx = direction(&call, OFFERER_TO_ANSWERER).expect("phone to PBX");
        let far = &to_pbx["far_end_report"];
        assert!(
            (num(far, "fraction_lost_percent") - 10.156).abs() < 0.01,
            "{far:#}\n{text}"
        );
        assert_eq!(far["cumulative_lost"], 15, "{far:#}");
        assert_eq!(num(far, "jitter_ms"), 20.0, "{far:#}");
        // Nobody reported on the PBX's stream.
        let to_phone = direction(&call, ANSWERER_TO_OFFERER).expect("PBX to phone");
        assert!(to_phone["far_end_report"].is_null(), "{to_phone:#}");
    }
}

/// A codec on a dynamic payload type (Opus, PT 111, 48 kHz per its
/// rtpmap): the agent writes the SDP's clock into the kernel, so the
/// jitter of a clean stream stays near zero. With the 8 kHz default the
/// 960-tick steps would read as ~100 ms of jitter.
#[test]
fn a_dynamic_codecs_clock_comes_from_the_sdp() {
    let lab = CallLab::new(false);
    let media = Media {
        codec: (crate::support::rtp::OPUS, "opus/48000/2"),
        phone: RtpSpec::opus(PHONE_SSRC, CALL_PACKETS),
        pbx: RtpSpec::opus(PBX_SSRC, CALL_PACKETS),
        pbx_rtcp: None,
    };
    let run = lab.call(media);
    run.assert_delivered(run.phone_sent.sent.into(), run.pbx_sent.sent.into());
    assert_eq!(codes(&run.live), set(&[]), "{}", run.live_text);
    let live = final_call(&run.live, &run.live_text);
    assert_eq!(live["streams"][0]["codec"], "opus/48000", "{live:#}");
    for which in [OFFERER_TO_ANSWERER, ANSWERER_TO_OFFERER] {
        let d = direction(&live, which).expect("direction");
        assert_eq!(d["packets"], CALL_PACKETS, "{d:#}");
        assert!(
            num(d, "max_jitter_ms") < 5.0,
            "clock not from the SDP: {d:#}"
        );
    }
}
