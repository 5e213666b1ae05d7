//! The call tracker through the real pipeline: SIP and RTP as raw IP
//! packets on the packet clock.

use crate::analysis::calls::CallState;
use crate::analysis::media::RtpSource;
use crate::diagnosis::Code;
use crate::pipeline::{Event, PipelineConfig};
use crate::{
    packet::{DropReason, DroppedPacket},
    time::Timestamp,
};

use super::call_script::{CallScript as Script, MS, PBX, PHONE, T0, rtp, sdp};

/// Loses nothing.
const NONE: fn(u16) -> bool = |_| false;

fn phone_media() -> String {
    format!("{PHONE}:10000")
}

fn pbx_media() -> String {
    format!("{PBX}:20000")
}

#[test]
fn healthy_call_reports_both_directions_and_raises_nothing() {
    let mut s = Script::new();
    s.answered_with(0, 1, &sdp(PHONE, 10000), &sdp(PBX, 20000));
    s.media_between(
        1020,
        400,
        (&phone_media(), &pbx_media()),
        Some(&NONE),
        Some(&NONE),
    );
    s.bye(9100, 2);
    s.finish();
    assert_eq!(s.codes(), vec![]);
    let c = s.closed();
    assert_eq!(c.state, CallState::Ended);
    assert_eq!(c.end_reason.as_deref(), Some("BYE from the caller"));
    let d = c.duration().unwrap().as_millis();
    assert_eq!(d, 8100);
    let dirs = &c.streams[0].directions;
    for d in dirs {
        let o = d.observed.as_ref().expect("RTP linked");
        assert_eq!((o.packets, o.lost), (400, 0));
        assert!(d.mos.unwrap() > 4.3, "{:?}", d.mos);
    }
    // Calling, ringing, answered, ended, then the closed report.
    let states: Vec<CallState> = s
        .events
        .iter()
        .filter_map(|e| match e {
            Event::Call(c) => Some(c.state),
            _ => None,
        })
        .collect();
    assert_eq!(
        states,
        [
            CallState::Calling,
            CallState::Ringing,
            CallState::Answered,
            CallState::Ended,
            CallState::Ended
        ]
    );
}

#[test]
fn rtp_in_one_direction_only_is_one_way_audio() {
    let mut s = Script::new();
    s.answered_with(0, 1, &sdp(PHONE, 10000), &sdp(PBX, 20000));
    s.media_between(1020, 400, (&phone_media(), &pbx_media()), Some(&NONE), None);
    s.bye(9100, 2);
    s.finish();
    assert_eq!(s.codes(), vec![Code::MediaOneWay]);
    assert_eq!(s.closed().diagnoses, vec![Code::MediaOneWay]);
}

#[test]
fn a_call_without_rtp_in_a_capture_with_rtp_is_no_rtp() {
    let mut s = Script::new();
    // Some other RTP in the capture: the capture does carry media.
    s.media_between(
        0,
        10,
        ("203.0.113.1:30000", "203.0.113.2:30002"),
        Some(&NONE),
        None,
    );
    s.answered_with(0, 1, &sdp(PHONE, 10000), &sdp(PBX, 20000));
    s.bye(9100, 2);
    s.finish();
    assert_eq!(s.codes(), vec![Code::MediaNoRtp]);
}

#[test]
fn a_sip_only_capture_judges_no_media() {
    let mut s = Script::new();
    s.answered_with(0, 1, &sdp(PHONE, 10000), &sdp(PBX, 20000));
    s.bye(9100, 2);
    s.finish();
    assert_eq!(s.codes(), vec![]);
    assert_eq!(s.pipeline.stats().calls.media_not_judged, 1);
}

#[test]
fn five_percent_loss_is_poor_quality_with_the_loss_measured() {
    let mut s = Script::new();
    s.answered_with(0, 1, &sdp(PHONE, 10000), &sdp(PBX, 20000));
    let every_20th = |i: u16| i % 20 == 7;
    s.media_between(
        1020,
        1000,
        (&phone_media(), &pbx_media()),
        Some(&every_20th),
        Some(&NONE),
    );
    s.bye(21100, 2);
    s.finish();
    assert_eq!(s.codes(), vec![Code::MediaQuality]);
    let c = s.closed();
    let lossy = c.streams[0].directions[0].observed.as_ref().unwrap();
    assert_eq!((lossy.packets, lossy.lost), (950, 50));
    assert!((lossy.loss_percent() - 5.0).abs() < 0.01);
}

#[test]
fn private_sdp_from_a_public_source_is_nat_private_sdp_once() {
    let mut s = Script::new();
    s.answered_with(0, 1, &sdp("192.168.1.10", 10000), &sdp(PBX, 20000));
    s.media_between(
        1020,
        100,
        (&phone_media(), &pbx_media()),
        Some(&NONE),
        Some(&NONE),
    );
    s.bye(4000, 2);
    s.finish();
    assert_eq!(s.codes(), vec![Code::NatPrivateSdp]);
}

#[test]
fn private_sdp_from_a_private_address_is_not_nat() {
    // Its own address; and a media server on another private address
    // than the signalling (rtpengine, a FreeSWITCH behind Kamailio).
    for media_at in ["192.168.1.10", "10.1.2.3"] {
        let mut s = Script::new();
        s.phone = "192.168.1.10:5060".parse().unwrap();
        s.answered_with(0, 1, &sdp(media_at, 10000), &sdp(PBX, 20000));
        s.bye(2000, 2);
        s.finish();
        assert_eq!(s.codes(), vec![], "media at {media_at}");
    }
}

#[test]
fn late_offer_in_the_200_is_answered_in_the_ack() {
    let mut s = Script::new();
    s.sip_with(
        0,
        true,
        &format!("INVITE sip:200@{PBX} SIP/2.0"),
        "1 INVITE",
        false,
        "",
    );
    s.sip_with(
        1000,
        false,
        "SIP/2.0 200 OK",
        "1 INVITE",
        true,
        &sdp(PBX, 20000),
    );
    let ack = format!("ACK sip:200@{PBX} SIP/2.0");
    s.sip_with(1010, true, &ack, "1 ACK", true, &sdp(PHONE, 10000));
    s.media_between(
        1020,
        300,
        (&phone_media(), &pbx_media()),
        Some(&NONE),
        Some(&NONE),
    );
    s.bye(7100, 2);
    s.finish();
    assert_eq!(s.codes(), vec![]);
    let c = s.closed();
    assert_eq!(c.streams[0].offerer, crate::analysis::calls::Party::Callee);
    assert!(c.streams[0].directions.iter().all(|d| d.observed.is_some()));
}

#[test]
fn cancel_busy_and_challenge_retry_end_as_they_should() {
    let mut s = Script::new();
    let invite = format!("INVITE sip:200@{PBX} SIP/2.0");
    s.sip_with(0, true, &invite, "1 INVITE", false, &sdp(PHONE, 10000));
    s.sip_with(10, false, "SIP/2.0 180 Ringing", "1 INVITE", true, "");
    s.sip_with(
        500,
        true,
        &format!("CANCEL sip:200@{PBX} SIP/2.0"),
        "1 CANCEL",
        false,
        "",
    );
    s.sip_with(
        510,
        false,
        "SIP/2.0 487 Request Terminated",
        "1 INVITE",
        true,
        "",
    );
    s.finish();
    assert_eq!(s.closed().state, CallState::Cancelled);

    let mut s = Script::new();
    s.sip_with(0, true, &invite, "1 INVITE", false, &sdp(PHONE, 10000));
    s.sip_with(10, false, "SIP/2.0 486 Busy Here", "1 INVITE", true, "");
    s.finish();
    let c = s.closed();
    assert_eq!((c.state, c.status), (CallState::Failed, Some(486)));

    // 407 then the authenticated INVITE: one call, answered.
    let mut s = Script::new();
    s.sip_with(0, true, &invite, "1 INVITE", false, &sdp(PHONE, 10000));
    s.sip_with(
        10,
        false,
        "SIP/2.0 407 Proxy Authentication Required",
        "1 INVITE",
        true,
        "",
    );
    s.sip_with(20, true, &invite, "2 INVITE", false, &sdp(PHONE, 10000));
    s.sip_with(
        1000,
        false,
        "SIP/2.0 200 OK",
        "2 INVITE",
        true,
        &sdp(PBX, 20000),
    );
    s.finish();
    let c = s.closed();
    // No BYE before the input ends: still answered, open at the end.
    assert_eq!((c.state, c.status), (CallState::Answered, Some(200)));
    let stats = s.pipeline.stats().calls;
    assert_eq!((stats.calls, stats.ended, stats.open_at_end), (1, 0, 1));
}

/// What the kernel's flow map holds after 400 packets (8 s from 1020 ms)
/// of `ssrc` from `src` to `dst`.
fn kernel_flow(src: &str, dst: &str, ssrc: u32) -> crate::analysis::media::FlowSnapshot {
    use crate::analysis::media::{FlowKey, RtpStreamStats, parse_rtp};
    let mut stats = RtpStreamStats::new();
    for i in 0..400u16 {
        let p = rtp(i, ssrc);
        let ts = Timestamp(T0 + (1020 + u64::from(i) * 20) * MS);
        stats.update(ts, &parse_rtp(&p).unwrap(), p.len(), 8000);
    }
    stats.snapshot(FlowKey::new(src.parse().unwrap(), dst.parse().unwrap()))
}

/// `n` packets of `src -> dst`, `every_ms` apart from 1020 ms, reported
/// by the drop monitor as dropped here for `reason`.
fn drop_reports(s: &mut Script, (src, dst): (&str, &str), n: u64, every_ms: u64, reason: &str) {
    for i in 0..n {
        let p = Script::packet(
            1020 + i * every_ms,
            src.parse().unwrap(),
            dst.parse().unwrap(),
            &rtp(0, 1),
        );
        let mut ev = s.pipeline.ingest_drop(&DroppedPacket {
            packet: p,
            reason: DropReason {
                code: 0,
                name: reason.into(),
            },
        });
        s.events.append(&mut ev);
    }
}

fn kernel_config() -> PipelineConfig {
    let mut c = PipelineConfig::default();
    c.calls.observations.source = RtpSource::Kernel;
    c
}

/// Live capture: XDP counts RTP that this host's firewall then drops; the
/// drop tracer counts the drops on the same flow, which makes that
/// direction silent, and its reports raise fw.local_drop.
#[test]
fn rtp_dropped_by_this_hosts_firewall_is_one_way() {
    let mut s = Script::with_config(kernel_config());
    s.answered_with(0, 1, &sdp(PHONE, 10000), &sdp(PBX, 20000));
    // What the kernel map would hold after 8 s of RTP both ways, every
    // packet towards the PBX dropped by its firewall.
    let mut flows = [
        kernel_flow(&phone_media(), &pbx_media(), 0x99),
        kernel_flow(&pbx_media(), &phone_media(), 0x99),
    ];
    flows[0].state.local_drops = 400;
    drop_reports(
        &mut s,
        (&phone_media(), &pbx_media()),
        1,
        20,
        "netfilter_drop",
    );
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 9000 * MS), &flows);
    s.events.append(&mut ev);
    s.bye(9100, 2);
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 9200 * MS), &flows);
    s.events.append(&mut ev);
    let codes = s.codes();
    assert!(codes.contains(&Code::MediaOneWay), "{codes:?}");
    assert!(codes.contains(&Code::FwLocalDrop), "{codes:?}");
    assert!(!codes.contains(&Code::MediaQuality), "{codes:?}");
    let c = s.closed();
    let to_pbx = c.streams[0].directions[0].observed.as_ref().unwrap();
    assert_eq!((to_pbx.packets, to_pbx.dropped_locally), (400, 400));
}

/// Live capture judges the grace period only once a poll covers it.
#[test]
fn kernel_source_waits_for_a_poll_that_covers_the_grace_period() {
    let mut s = Script::with_config(kernel_config());
    s.answered_with(0, 1, &sdp(PHONE, 10000), &sdp(PBX, 20000));
    let mut ev = s.pipeline.tick(Timestamp(T0 + 30_000 * MS));
    s.events.append(&mut ev);
    assert_eq!(s.codes(), vec![], "no poll yet: nothing judged");
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 30_000 * MS), &[]);
    s.events.append(&mut ev);
    assert_eq!(s.codes(), vec![Code::MediaNoRtp]);
}

/// A stream outside the kernel's RTP range cannot be judged: silence there
/// is not evidence.
#[test]
fn a_stream_outside_the_measured_ports_is_not_judged() {
    let mut config = kernel_config();
    config.calls.observations.ports = 10_000..=10_999;
    let mut s = Script::with_config(config);
    s.answered_with(0, 1, &sdp(PHONE, 30000), &sdp(PBX, 30002));
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 30_000 * MS), &[]);
    s.events.append(&mut ev);
    assert_eq!(s.codes(), vec![]);
    // The same call on measured ports is no_rtp.
    let mut s = Script::with_config(kernel_config());
    s.answered_with(0, 1, &sdp(PHONE, 10000), &sdp(PBX, 10002));
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 30_000 * MS), &[]);
    s.events.append(&mut ev);
    assert_eq!(s.codes(), vec![Code::MediaNoRtp]);
}

/// An RTCP receiver report (RFC 3550 6.4.2) from `reporter` about `ssrc`:
/// `fraction`/256 lost lately, `cumulative` in all, jitter in timestamp
/// units.
fn receiver_report(
    reporter: u32,
    ssrc: u32,
    fraction: u8,
    cumulative: u32,
    jitter: u32,
) -> Vec<u8> {
    let mut p = vec![0x81, 201, 0, 7];
    p.extend_from_slice(&reporter.to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&((u32::from(fraction) << 24) | cumulative).to_be_bytes());
    p.extend_from_slice(&400u32.to_be_bytes());
    p.extend_from_slice(&jitter.to_be_bytes());
    p.extend_from_slice(&[0; 8]);
    p
}

/// The far end's RTCP report joins the direction it describes (by the
/// SSRC it reports on), from a capture and from the kernel's forwarded
/// copy alike.
#[test]
fn the_receivers_rtcp_report_joins_its_direction() {
    use super::call_script::{CALLER_SSRC, PBX_RTP, PHONE_RTP};
    for config in [PipelineConfig::default(), kernel_config()] {
        let kernel = config.calls.observations.source == RtpSource::Kernel;
        let mut s = Script::with_config(config);
        s.answered_at(0, 1);
        if !kernel {
            s.media(1020, 400, Some(&NONE), Some(&NONE));
        }
        // The PBX reports on the phone's stream: 13/256 lost lately, 20 in
        // all, jitter 80 units (10 ms at 8 kHz), sent from its RTCP port.
        let rr = receiver_report(0x5678, CALLER_SSRC, 13, 20, 80);
        s.send(
            8000,
            "198.51.100.20:20001".parse().unwrap(),
            "192.0.2.10:10001".parse().unwrap(),
            &rr,
        );
        if kernel {
            let snap = kernel_flow(PHONE_RTP, PBX_RTP, CALLER_SSRC);
            let mut ev = s
                .pipeline
                .ingest_rtp_flows(Timestamp(T0 + 8100 * MS), &[snap]);
            s.events.append(&mut ev);
        }
        s.bye(9100, 2);
        s.finish();
        let c = s.closed();
        let far = c.streams[0].directions[0]
            .observed
            .as_ref()
            .and_then(|o| o.far_end)
            .unwrap_or_else(|| panic!("kernel={kernel}: no far-end report in {c:#?}"));
        assert!((far.fraction_lost_percent - 5.08).abs() < 0.01, "{far:?}");
        assert_eq!(far.cumulative_lost, 20);
        assert_eq!(far.jitter_ms, Some(10.0));
        assert_eq!(far.round_trip_ms, None, "no LSR in the report");
        assert_eq!(s.pipeline.stats().calls.rtp.rtcp_reports, 1);
    }
}

/// Packets that reached this host but were dropped before the PBX read
/// them (a full socket buffer) are lost to the call: quality, not one-way.
#[test]
fn rtp_dropped_by_a_full_socket_buffer_counts_as_loss() {
    use super::call_script::{PBX_RTP, PHONE_RTP};
    let mut s = Script::with_config(kernel_config());
    s.answered_at(0, 1);
    let mut flows = [
        kernel_flow(PHONE_RTP, PBX_RTP, 0x99),
        kernel_flow(PBX_RTP, PHONE_RTP, 0x99),
    ];
    // The kernel counted 100 of them dropped: the socket buffer was full.
    flows[0].state.local_drops = 100;
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 9000 * MS), &flows);
    s.events.append(&mut ev);
    s.bye(9100, 2);
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 9200 * MS), &flows);
    s.events.append(&mut ev);
    assert_eq!(s.codes(), vec![Code::MediaQuality]);
    let to_pbx = s.closed().streams[0].directions[0]
        .observed
        .clone()
        .unwrap();
    assert_eq!((to_pbx.lost, to_pbx.dropped_locally), (0, 100));
    assert_eq!(to_pbx.loss_percent(), 25.0);
}

/// A caller behind a NAT that advertises its private Contact: the callee's
/// BYE and re-INVITEs would go nowhere (nat.private_contact, once).
#[test]
fn a_private_contact_in_an_invite_from_a_public_source_is_nat() {
    let invite = |contact: &str| {
        format!(
            "INVITE sip:200@{PBX} SIP/2.0\r\nVia: SIP/2.0/UDP 192.168.1.10:5060;branch=z9hG4bK-n1\r\n\
             From: <sip:100@{PHONE}>;tag=caller\r\nTo: <sip:200@{PBX}>\r\nCall-ID: nat-1\r\n\
             CSeq: 1 INVITE\r\nContact: <sip:100@{contact}:5060>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let pbx = format!("{PBX}:5060").parse().unwrap();
    let mut s = Script::new();
    s.send(0, s.phone, pbx, invite("192.168.1.10").as_bytes());
    s.send(500, s.phone, pbx, invite("192.168.1.10").as_bytes());
    assert_eq!(s.codes(), vec![Code::NatPrivateContact]);
    // Its own public address in Contact and Via: nothing to say.
    let mut s = Script::new();
    let clean = invite(PHONE).replace("192.168.1.10", PHONE);
    s.send(0, s.phone, pbx, clean.as_bytes());
    assert_eq!(s.codes(), vec![]);
}

/// Calls that end normally leave nothing behind: the tables stay bounded
/// by the calls up, however many calls went through.
#[test]
fn ended_calls_leave_no_state_behind() {
    let mut s = Script::new();
    let pbx = format!("{PBX}:5060").parse().unwrap();
    for i in 0..500u64 {
        let t = i * 2000;
        let msg = |start: &str, cseq: &str, to_tag: bool| {
            format!(
                "{start}\r\nVia: SIP/2.0/UDP {PHONE}:5060;branch=z9hG4bK-{i}-{cseq}\r\n\
                 From: <sip:100@{PHONE}>;tag=caller\r\nTo: <sip:200@{PBX}>{}\r\n\
                 Call-ID: bulk-{i}\r\nCSeq: {cseq}\r\nContent-Length: 0\r\n\r\n",
                if to_tag { ";tag=callee" } else { "" }
            )
        };
        let phone = s.phone;
        s.send(
            t,
            phone,
            pbx,
            msg(&format!("INVITE sip:200@{PBX} SIP/2.0"), "1 INVITE", false).as_bytes(),
        );
        s.send(
            t + 10,
            pbx,
            phone,
            msg("SIP/2.0 200 OK", "1 INVITE", true).as_bytes(),
        );
        s.send(
            t + 20,
            phone,
            pbx,
            msg(&format!("BYE sip:200@{PBX} SIP/2.0"), "2 BYE", true).as_bytes(),
        );
    }
    let (open, queued) = s.pipeline.calls_in_flight();
    assert!(open <= 1, "{open} calls still open");
    assert!(
        queued <= 2 * open + 65,
        "{queued} queue entries for {open} open calls"
    );
    assert_eq!(s.pipeline.stats().calls.ended, 499);
}
