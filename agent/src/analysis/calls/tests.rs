//! The call tracker through the real pipeline: SIP and RTP as raw IP
//! packets on the packet clock.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::analysis::media::RtpSource;
use crate::capture::{Direction, DropReason, DroppedPacket, LinkType, Packet, Timestamp};
use crate::diagnosis::Code;
use crate::pipeline::{Event, Pipeline, PipelineConfig};

use super::{Call, CallState};

const T0: u64 = 1_764_072_000_000_000_000;
const MS: u64 = 1_000_000;
/// Caller (phone) and callee (PBX) signalling and media addresses.
const PHONE: &str = "192.0.2.10";
const PBX: &str = "198.51.100.20";

fn ip_packet(ms: u64, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Packet {
    let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
        unreachable!("IPv4 test addresses")
    };
    let mut data = Vec::new();
    etherparse::PacketBuilder::ipv4(s.octets(), d.octets(), 64)
        .udp(src.port(), dst.port())
        .write(&mut data, payload)
        .unwrap();
    Packet {
        ts: Timestamp(T0 + ms * MS),
        ifindex: 1,
        direction: Direction::Unknown,
        link: LinkType::RawIp,
        orig_len: data.len() as u32,
        data,
    }
}

fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n"
    )
}

fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

/// A call scripted message by message.
struct Script {
    pipeline: Pipeline,
    events: Vec<Event>,
    call_id: String,
    phone: SocketAddr,
    pbx: SocketAddr,
}

impl Script {
    fn new(config: PipelineConfig) -> Self {
        Self {
            pipeline: Pipeline::new(config),
            events: Vec::new(),
            call_id: "call-1@phone".into(),
            phone: format!("{PHONE}:5060").parse().unwrap(),
            pbx: format!("{PBX}:5060").parse().unwrap(),
        }
    }

    fn send(&mut self, ms: u64, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let p = ip_packet(ms, src, dst, payload);
        self.pipeline.ingest_into(&p, &mut self.events);
    }

    /// One SIP message; `from_caller` picks direction and tags.
    fn sip(
        &mut self,
        ms: u64,
        from_caller: bool,
        start: &str,
        cseq: &str,
        to_tag: bool,
        body: &str,
    ) {
        let (src, dst) = if from_caller {
            (self.phone, self.pbx)
        } else {
            (self.pbx, self.phone)
        };
        let ct = if body.is_empty() {
            String::new()
        } else {
            "Content-Type: application/sdp\r\n".into()
        };
        let text = format!(
            "{start}\r\nVia: SIP/2.0/UDP {PHONE}:5060;branch=z9hG4bK-{}\r\n\
             From: <sip:100@{PHONE}>;tag=caller\r\nTo: <sip:200@{PBX}>{}\r\n\
             Call-ID: {}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            cseq.split(' ').next().unwrap_or("1"),
            if to_tag { ";tag=callee" } else { "" },
            self.call_id,
            body.len()
        );
        self.send(ms, src, dst, text.as_bytes());
    }

    /// INVITE with `offer`, 180, 200 with `answer`, ACK.
    fn answered(&mut self, offer: &str, answer: &str) {
        self.sip(
            0,
            true,
            &format!("INVITE sip:200@{PBX} SIP/2.0"),
            "1 INVITE",
            false,
            offer,
        );
        self.sip(10, false, "SIP/2.0 180 Ringing", "1 INVITE", true, "");
        self.sip(1000, false, "SIP/2.0 200 OK", "1 INVITE", true, answer);
        self.sip(
            1010,
            true,
            &format!("ACK sip:200@{PBX} SIP/2.0"),
            "1 ACK",
            true,
            "",
        );
    }

    /// `n` RTP packets each way every 20 ms from `start_ms`, interleaved
    /// as on the wire; `None` sends nothing that way, else packet `i` is
    /// lost when the function says so.
    fn media(
        &mut self,
        start_ms: u64,
        n: u16,
        (a, b): (&str, &str),
        a_to_b: Option<&dyn Fn(u16) -> bool>,
        b_to_a: Option<&dyn Fn(u16) -> bool>,
    ) {
        let (a, b): (SocketAddr, SocketAddr) = (a.parse().unwrap(), b.parse().unwrap());
        for i in 0..n {
            let ms = start_ms + u64::from(i) * 20;
            if a_to_b.is_some_and(|lose| !lose(i)) {
                self.send(ms, a, b, &rtp(i, 0x1234));
            }
            if b_to_a.is_some_and(|lose| !lose(i)) {
                self.send(ms, b, a, &rtp(i, 0x5678));
            }
        }
    }

    fn bye(&mut self, ms: u64) {
        self.sip(
            ms,
            true,
            &format!("BYE sip:200@{PBX} SIP/2.0"),
            "2 BYE",
            true,
            "",
        );
        self.sip(ms + 5, false, "SIP/2.0 200 OK", "2 BYE", true, "");
    }

    fn finish(&mut self) {
        let mut rest = self.pipeline.finish();
        self.events.append(&mut rest);
    }

    fn codes(&self) -> Vec<Code> {
        let mut c: Vec<Code> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Diagnosis(d) => Some(d.code),
                _ => None,
            })
            .collect();
        c.sort();
        c
    }

    fn closed(&self) -> Arc<Call> {
        let closed: Vec<&Arc<Call>> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Call(c) if c.closed => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(closed.len(), 1, "exactly one closed report");
        closed[0].clone()
    }
}

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
    let mut s = Script::new(PipelineConfig::default());
    s.answered(&sdp(PHONE, 10000), &sdp(PBX, 20000));
    s.media(
        1020,
        400,
        (&phone_media(), &pbx_media()),
        Some(&NONE),
        Some(&NONE),
    );
    s.bye(9100);
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
            CallState::Ringing,
            CallState::Answered,
            CallState::Ended,
            CallState::Ended
        ]
    );
}

#[test]
fn rtp_in_one_direction_only_is_one_way_audio() {
    let mut s = Script::new(PipelineConfig::default());
    s.answered(&sdp(PHONE, 10000), &sdp(PBX, 20000));
    s.media(1020, 400, (&phone_media(), &pbx_media()), Some(&NONE), None);
    s.bye(9100);
    s.finish();
    assert_eq!(s.codes(), vec![Code::MediaOneWay]);
    assert_eq!(s.closed().diagnoses, vec![Code::MediaOneWay]);
}

#[test]
fn a_call_without_rtp_in_a_capture_with_rtp_is_no_rtp() {
    let mut s = Script::new(PipelineConfig::default());
    // Some other RTP in the capture: the capture does carry media.
    s.media(
        0,
        10,
        ("203.0.113.1:30000", "203.0.113.2:30002"),
        Some(&NONE),
        None,
    );
    s.answered(&sdp(PHONE, 10000), &sdp(PBX, 20000));
    s.bye(9100);
    s.finish();
    assert_eq!(s.codes(), vec![Code::MediaNoRtp]);
}

#[test]
fn a_sip_only_capture_judges_no_media() {
    let mut s = Script::new(PipelineConfig::default());
    s.answered(&sdp(PHONE, 10000), &sdp(PBX, 20000));
    s.bye(9100);
    s.finish();
    assert_eq!(s.codes(), vec![]);
    assert_eq!(s.pipeline.stats().calls.media_not_judged, 1);
}

#[test]
fn five_percent_loss_is_poor_quality_with_the_loss_measured() {
    let mut s = Script::new(PipelineConfig::default());
    s.answered(&sdp(PHONE, 10000), &sdp(PBX, 20000));
    let every_20th = |i: u16| i % 20 == 7;
    s.media(
        1020,
        1000,
        (&phone_media(), &pbx_media()),
        Some(&every_20th),
        Some(&NONE),
    );
    s.bye(21100);
    s.finish();
    assert_eq!(s.codes(), vec![Code::MediaQuality]);
    let c = s.closed();
    let lossy = c.streams[0].directions[0].observed.as_ref().unwrap();
    assert_eq!((lossy.packets, lossy.lost), (950, 50));
    assert!((lossy.loss_percent() - 5.0).abs() < 0.01);
}

#[test]
fn private_sdp_from_a_public_source_is_nat_private_sdp_once() {
    let mut s = Script::new(PipelineConfig::default());
    s.answered(&sdp("192.168.1.10", 10000), &sdp(PBX, 20000));
    s.media(
        1020,
        100,
        (&phone_media(), &pbx_media()),
        Some(&NONE),
        Some(&NONE),
    );
    s.bye(4000);
    s.finish();
    assert_eq!(s.codes(), vec![Code::NatPrivateSdp]);
}

#[test]
fn private_sdp_from_its_own_address_is_not_nat() {
    let mut s = Script::new(PipelineConfig::default());
    s.phone = "192.168.1.10:5060".parse().unwrap();
    s.answered(&sdp("192.168.1.10", 10000), &sdp(PBX, 20000));
    s.bye(2000);
    s.finish();
    assert_eq!(s.codes(), vec![]);
}

#[test]
fn late_offer_in_the_200_is_answered_in_the_ack() {
    let mut s = Script::new(PipelineConfig::default());
    s.sip(
        0,
        true,
        &format!("INVITE sip:200@{PBX} SIP/2.0"),
        "1 INVITE",
        false,
        "",
    );
    s.sip(
        1000,
        false,
        "SIP/2.0 200 OK",
        "1 INVITE",
        true,
        &sdp(PBX, 20000),
    );
    let ack = format!("ACK sip:200@{PBX} SIP/2.0");
    s.sip(1010, true, &ack, "1 ACK", true, &sdp(PHONE, 10000));
    s.media(
        1020,
        300,
        (&phone_media(), &pbx_media()),
        Some(&NONE),
        Some(&NONE),
    );
    s.bye(7100);
    s.finish();
    assert_eq!(s.codes(), vec![]);
    let c = s.closed();
    assert_eq!(c.streams[0].offerer, super::Party::Callee);
    assert!(c.streams[0].directions.iter().all(|d| d.observed.is_some()));
}

#[test]
fn cancel_busy_and_challenge_retry_end_as_they_should() {
    let mut s = Script::new(PipelineConfig::default());
    let invite = format!("INVITE sip:200@{PBX} SIP/2.0");
    s.sip(0, true, &invite, "1 INVITE", false, &sdp(PHONE, 10000));
    s.sip(10, false, "SIP/2.0 180 Ringing", "1 INVITE", true, "");
    s.sip(
        500,
        true,
        &format!("CANCEL sip:200@{PBX} SIP/2.0"),
        "1 CANCEL",
        false,
        "",
    );
    s.sip(
        510,
        false,
        "SIP/2.0 487 Request Terminated",
        "1 INVITE",
        true,
        "",
    );
    s.finish();
    assert_eq!(s.closed().state, CallState::Cancelled);

    let mut s = Script::new(PipelineConfig::default());
    s.sip(0, true, &invite, "1 INVITE", false, &sdp(PHONE, 10000));
    s.sip(10, false, "SIP/2.0 486 Busy Here", "1 INVITE", true, "");
    s.finish();
    let c = s.closed();
    assert_eq!((c.state, c.status), (CallState::Failed, Some(486)));

    // 407 then the authenticated INVITE: one call, answered.
    let mut s = Script::new(PipelineConfig::default());
    s.sip(0, true, &invite, "1 INVITE", false, &sdp(PHONE, 10000));
    s.sip(
        10,
        false,
        "SIP/2.0 407 Proxy Authentication Required",
        "1 INVITE",
        true,
        "",
    );
    s.sip(20, true, &invite, "2 INVITE", false, &sdp(PHONE, 10000));
    s.sip(
        1000,
        false,
        "SIP/2.0 200 OK",
        "2 INVITE",
        true,
        &sdp(PBX, 20000),
    );
    s.finish();
    let c = s.closed();
    assert_eq!((c.state, c.status), (CallState::Ended, Some(200)));
    assert_eq!(s.pipeline.stats().calls.calls, 1);
}

fn kernel_config() -> PipelineConfig {
    let mut c = PipelineConfig::default();
    c.calls.observations.source = RtpSource::Kernel;
    c
}

/// Live capture: the kernel counts RTP that this host's firewall then
/// drops; the drop monitor's reports make that direction silent.
#[test]
fn rtp_dropped_by_this_hosts_firewall_is_one_way() {
    use crate::analysis::media::{FlowKey, FlowSnapshot, RtpStreamStats, parse_rtp};
    let mut s = Script::new(kernel_config());
    s.answered(&sdp(PHONE, 10000), &sdp(PBX, 20000));
    // What the kernel map would hold after 8 s of RTP both ways.
    let snapshot = |src: &str, dst: &str| {
        let mut stats = RtpStreamStats::new();
        for i in 0..400u16 {
            let p = rtp(i, 0x99);
            let ts = Timestamp(T0 + (1020 + u64::from(i) * 20) * MS);
            stats.update(ts, &parse_rtp(&p).unwrap(), p.len(), 8000);
        }
        FlowSnapshot::from_stats(
            FlowKey::new(src.parse().unwrap(), dst.parse().unwrap()),
            &stats,
        )
    };
    let flows = [
        snapshot(&phone_media(), &pbx_media()),
        snapshot(&pbx_media(), &phone_media()),
    ];
    // Every packet towards the PBX was dropped by its firewall.
    for i in 0..400u64 {
        let p = ip_packet(
            1020 + i * 20,
            phone_media().parse().unwrap(),
            pbx_media().parse().unwrap(),
            &rtp(0, 1),
        );
        let mut ev = s.pipeline.ingest_drop(&DroppedPacket {
            packet: p,
            reason: DropReason {
                code: 0,
                name: "netfilter_drop".into(),
            },
        });
        s.events.append(&mut ev);
    }
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 9000 * MS), &flows);
    s.events.append(&mut ev);
    s.bye(9100);
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
    let mut s = Script::new(kernel_config());
    s.answered(&sdp(PHONE, 10000), &sdp(PBX, 20000));
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
    let mut s = Script::new(config);
    s.answered(&sdp(PHONE, 30000), &sdp(PBX, 30002));
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 30_000 * MS), &[]);
    s.events.append(&mut ev);
    assert_eq!(s.codes(), vec![]);
    // The same call on measured ports is no_rtp.
    let mut s = Script::new(kernel_config());
    s.answered(&sdp(PHONE, 10000), &sdp(PBX, 10002));
    let mut ev = s
        .pipeline
        .ingest_rtp_flows(Timestamp(T0 + 30_000 * MS), &[]);
    s.events.append(&mut ev);
    assert_eq!(s.codes(), vec![Code::MediaNoRtp]);
}
