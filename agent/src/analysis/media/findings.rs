//! Media findings as pure functions of a negotiated stream, the RTP linked
//! to it and the packet clock: `media.no_rtp`, `media.one_way`,
//! `media.quality` and `nat.private_sdp` (codes of the diagnosis catalogue,
//! DESIGN.md). The lead maps [`MediaFinding`] onto the catalogue type.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::codec::VoiceCodec;
use super::findings_remedy;
use super::matching::{MatchKind, StreamDirection};
use super::quality::{CodecImpairment, QualityAssumptions, QualityThresholds, estimate};
use super::rtp_stats::RtpStreamStats;
use super::sdp::{MediaDescription, NegotiatedStream};
use crate::media_flow::FlowKey;
use crate::media_flow::FlowSnapshot;
use crate::time::Timestamp;

pub const MEDIA_NO_RTP: &str = "media.no_rtp";
pub const MEDIA_ONE_WAY: &str = "media.one_way";
pub const MEDIA_QUALITY: &str = "media.quality";
pub const NAT_PRIVATE_SDP: &str = "nat.private_sdp";

/// One media finding with its evidence and a remedy for the common PBXs.
#[derive(Clone, Debug, PartialEq)]
pub struct MediaFinding {
    /// Exact catalogue code.
    pub code: &'static str,
    pub summary: String,
    pub evidence: Vec<(String, String)>,
    pub remedy: String,
}

/// Tunables of the media checks.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct MediaCheckConfig {
    /// How long after the answer RTP must have appeared (packet clock).
    pub grace: Duration,
    pub thresholds: QualityThresholds,
    pub assumptions: QualityAssumptions,
    /// Minimum packets in a direction before its quality is judged.
    pub min_packets_for_quality: u64,
}

impl Default for MediaCheckConfig {
    fn default() -> Self {
        Self {
            grace: Duration::from_secs(5),
            thresholds: QualityThresholds::default(),
            assumptions: QualityAssumptions::default(),
            min_packets_for_quality: 50,
        }
    }
}

/// What the receiving end reported about a direction in RTCP (RFC 3550
/// section 6.4): its own view of the loss and jitter, and the round trip.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FarEndReport {
    /// When the report was seen.
    pub at: Timestamp,
    /// Loss since the receiver's previous report.
    pub fraction_lost_percent: f64,
    pub cumulative_lost: i64,
    /// The receiver's jitter estimate in ms (when the clock is known).
    pub jitter_ms: Option<f64>,
    /// RFC 3550 6.4.1 round trip (LSR/DLSR), when the report carries it.
    pub round_trip_ms: Option<f64>,
}

/// RTP observed in one direction of a stream, summed over its linked flows.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectionObservation {
    pub flows: Vec<(FlowKey, MatchKind)>,
    pub ssrc: u32,
    pub payload_type: u8,
    pub packets: u64,
    pub expected: u64,
    pub lost: i64,
    /// Current RFC 3550 jitter estimate (largest over the flows), ms.
    pub jitter_ms: f64,
    pub max_jitter_ms: f64,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    /// Packets the capture saw that this host's kernel then dropped (its
    /// firewall): on the wire, but never delivered to the PBX.
    pub dropped_locally: u64,
    /// The receiver's latest RTCP report about this direction's source.
    pub far_end: Option<FarEndReport>,
}

impl DirectionObservation {
    pub fn from_stats(key: FlowKey, kind: MatchKind, stats: &RtpStreamStats) -> Self {
        Self::from_snapshot(&stats.snapshot(key), kind)
    }

    pub fn from_snapshot(flow: &FlowSnapshot, kind: MatchKind) -> Self {
        Self {
            flows: vec![(flow.key, kind)],
            ssrc: flow.state.ssrc,
            payload_type: flow.state.payload_type,
            packets: flow.packets(),
            expected: flow.expected(),
            lost: flow.lost(),
            jitter_ms: flow.jitter_ms(),
            max_jitter_ms: flow.max_jitter_ms(),
            first_seen: flow.first_seen,
            last_seen: flow.last_seen,
            // Counted by the kernel's drop tracer on the flow (0 in a pcap).
            dropped_locally: flow.state.local_drops,
            far_end: None,
        }
    }

    /// Packets that reached the receiving application (seen minus dropped
    /// by this host's kernel).
    pub fn delivered(&self) -> u64 {
        self.packets.saturating_sub(self.dropped_locally)
    }

    /// Adds another flow of the same direction (NAT rebinding, relays).
    pub fn merge(&mut self, other: &DirectionObservation) {
        self.flows.extend_from_slice(&other.flows);
        self.packets += other.packets;
        self.expected += other.expected;
        self.lost += other.lost;
        self.jitter_ms = self.jitter_ms.max(other.jitter_ms);
        self.max_jitter_ms = self.max_jitter_ms.max(other.max_jitter_ms);
        self.first_seen = self.first_seen.min(other.first_seen);
        self.last_seen = self.last_seen.max(other.last_seen);
        self.dropped_locally += other.dropped_locally;
        if other
            .far_end
            .is_some_and(|o| self.far_end.is_none_or(|s| o.at > s.at))
        {
            self.far_end = other.far_end;
        }
    }

    /// What the receiving application lost: lost on the wire (RFC 3550
    /// A.3) plus what reached this host and its kernel dropped (firewall,
    /// a full socket buffer), of the packets expected.
    pub fn loss_percent(&self) -> f64 {
        if self.expected == 0 {
            return 0.0;
        }
        let lost = self.lost.max(0) as u64 + self.dropped_locally;
        (lost.min(self.expected) as f64) * 100.0 / self.expected as f64
    }

    fn observed_path(&self) -> String {
        self.flows
            .iter()
            .map(|(k, kind)| format!("{k} ({})", kind.describe()))
            .collect::<Vec<_>>()
            .join(", ")
    }
}

/// Everything the checks need about one negotiated stream of a call.
#[derive(Clone, Copy, Debug)]
pub struct StreamCheck<'a> {
    pub call_id: &'a str,
    pub stream: &'a NegotiatedStream,
    /// When the final 2xx carrying (or following) the answer was seen.
    pub answered_at: Timestamp,
    /// The packet clock now (last packet, or a live tick).
    pub now: Timestamp,
    pub offerer_to_answerer: Option<&'a DirectionObservation>,
    pub answerer_to_offerer: Option<&'a DirectionObservation>,
}

impl StreamCheck<'_> {
    fn observed(&self, d: StreamDirection) -> Option<&DirectionObservation> {
        match d {
            StreamDirection::OffererToAnswerer => self.offerer_to_answerer,
            StreamDirection::AnswererToOfferer => self.answerer_to_offerer,
        }
        .filter(|o| o.delivered() > 0)
    }

    fn expected(&self, d: StreamDirection) -> bool {
        match d {
            StreamDirection::OffererToAnswerer => self.stream.offerer_sends(),
            StreamDirection::AnswererToOfferer => self.stream.answerer_sends(),
        }
    }

    fn grace_over(&self, cfg: &MediaCheckConfig) -> bool {
        self.now.since(self.answered_at) >= cfg.grace
    }

    fn base_evidence(&self) -> Vec<(String, String)> {
        let codec = self
            .stream
            .format()
            .map(|f| {
                format!(
                    "{} (PT {})",
                    f.encoding.as_deref().unwrap_or("unknown"),
                    f.payload_type
                )
            })
            .unwrap_or_else(|| "none in common".to_owned());
        vec![
            ("call_id".into(), self.call_id.to_owned()),
            ("m_line".into(), self.stream.index.to_string()),
            (
                "offer_rtp".into(),
                self.stream.offer.rtp_address().to_string(),
            ),
            (
                "answer_rtp".into(),
                self.stream.answer.rtp_address().to_string(),
            ),
            ("codec".into(), codec),
            ("answered_at".into(), self.answered_at.to_string()),
        ]
    }
}

fn direction_text(stream: &NegotiatedStream, d: StreamDirection) -> String {
    format!(
        "{} to {}",
        d.sender(stream).rtp_address(),
        d.receiver(stream).rtp_address()
    )
}

const DIRECTIONS: [StreamDirection; 2] = [
    StreamDirection::OffererToAnswerer,
    StreamDirection::AnswererToOfferer,
];

/// `media.no_rtp`: the call was answered, the stream expects RTP in at least
/// one direction, and none arrived in either within the grace period.
pub fn no_rtp(check: &StreamCheck<'_>, cfg: &MediaCheckConfig) -> Option<MediaFinding> {
    let expected_any = DIRECTIONS.iter().any(|&d| check.expected(d));
    let seen_any = DIRECTIONS.iter().any(|&d| check.observed(d).is_some());
    if !expected_any || seen_any || !check.grace_over(cfg) {
        return None;
    }
    let mut evidence = check.base_evidence();
    evidence.push((
        "grace_period_s".into(),
        format!("{:.1}", cfg.grace.as_secs_f64()),
    ));
    evidence.push((
        "silence_since_answer_s".into(),
        format!("{:.1}", check.now.since(check.answered_at).as_secs_f64()),
    ));
    Some(MediaFinding {
        code: MEDIA_NO_RTP,
        summary: format!(
            "call {} answered, but no RTP in either direction between {} and {} for {:.1} s",
            check.call_id,
            check.stream.offer.rtp_address(),
            check.stream.answer.rtp_address(),
            check.now.since(check.answered_at).as_secs_f64()
        ),
        evidence,
        remedy: findings_remedy::no_media(check.stream),
    })
}

/// RTP in one direction for this long (and [`ONE_WAY_CLEAR_PACKETS`]),
/// none in the other: one-way audio even on a call that ended within the
/// grace period.
pub const ONE_WAY_CLEAR_SPAN: Duration = Duration::from_secs(2);
/// 2 s of 20 ms packets is 100; a 40 ms ptime gives 50.
pub const ONE_WAY_CLEAR_PACKETS: u64 = 40;

/// `media.one_way`: both directions are negotiated to send, RTP flows in
/// one only. Hold (sendonly/inactive/0.0.0.0) is not one-way audio.
///
/// A call that ends within the grace period is judged too when the
/// evidence is clear: people hang up on one-way audio after a few
/// seconds, and a direction that carried [`ONE_WAY_CLEAR_SPAN`] of RTP
/// while the other carried none is that shape. A shorter call is too
/// short to tell and is not judged.
pub fn one_way(check: &StreamCheck<'_>, cfg: &MediaCheckConfig) -> Option<MediaFinding> {
    if !DIRECTIONS.iter().all(|&d| check.expected(d)) {
        return None;
    }
    let clear_before_grace = || {
        let o2a = check.observed(StreamDirection::OffererToAnswerer);
        let a2o = check.observed(StreamDirection::AnswererToOfferer);
        match (o2a, a2o) {
            (Some(o), None) | (None, Some(o)) => {
                o.last_seen.since(o.first_seen) >= ONE_WAY_CLEAR_SPAN
                    && o.packets >= ONE_WAY_CLEAR_PACKETS
            }
            _ => false,
        }
    };
    let early = !check.grace_over(cfg);
    if early && !clear_before_grace() {
        return None;
    }
    let (flowing, silent) = match (
        check.observed(StreamDirection::OffererToAnswerer),
        check.observed(StreamDirection::AnswererToOfferer),
    ) {
        (Some(_), None) => (
            StreamDirection::OffererToAnswerer,
            StreamDirection::AnswererToOfferer,
        ),
        (None, Some(_)) => (
            StreamDirection::AnswererToOfferer,
            StreamDirection::OffererToAnswerer,
        ),
        _ => return None,
    };
    let seen = check.observed(flowing).expect("matched above");
    let mut evidence = check.base_evidence();
    evidence.push(("flowing".into(), direction_text(check.stream, flowing)));
    evidence.push(("flowing_observed".into(), seen.observed_path()));
    evidence.push(("flowing_packets".into(), seen.packets.to_string()));
    evidence.push(("missing".into(), direction_text(check.stream, silent)));
    evidence.push((
        "flowing_for_s".into(),
        format!("{:.1}", seen.last_seen.since(seen.first_seen).as_secs_f64()),
    ));
    if early {
        evidence.push((
            "call_length_s".into(),
            format!(
                "{:.1} after the answer (ended within the {:.1} s grace period)",
                check.now.since(check.answered_at).as_secs_f64(),
                cfg.grace.as_secs_f64()
            ),
        ));
    }
    // The silent direction may have been on the wire and dropped here.
    let dropped = match silent {
        StreamDirection::OffererToAnswerer => check.offerer_to_answerer,
        StreamDirection::AnswererToOfferer => check.answerer_to_offerer,
    }
    .map_or(0, |o| o.dropped_locally);
    if dropped > 0 {
        evidence.push((
            "missing_dropped_locally".into(),
            format!("{dropped} packets had arrived by then, and this host's firewall dropped them"),
        ));
    }
    let role = |d: StreamDirection| match d {
        StreamDirection::OffererToAnswerer => "offerer to answerer",
        StreamDirection::AnswererToOfferer => "answerer to offerer",
    };
    Some(MediaFinding {
        code: MEDIA_ONE_WAY,
        summary: format!(
            "call {}: one-way audio, RTP flows {} ({}, {} packets) but nothing {} ({}){}",
            check.call_id,
            role(flowing),
            direction_text(check.stream, flowing),
            seen.packets,
            role(silent),
            direction_text(check.stream, silent),
            if dropped > 0 {
                format!(" reaches the PBX: {dropped} packets were dropped by this host's firewall")
            } else {
                String::new()
            },
        ),
        evidence,
        remedy: findings_remedy::one_way(check.stream, silent),
    })
}

/// What in a direction's loss, jitter and MOS is beyond the thresholds, as
/// `loss 5.00 % > 1.00 %`-style phrases (empty: good enough).
pub fn quality_reasons(
    loss_percent: f64,
    jitter_ms: f64,
    mos: Option<f64>,
    t: &QualityThresholds,
) -> Vec<String> {
    let mut reasons = Vec::new();
    if loss_percent > t.max_loss_percent {
        reasons.push(format!(
            "loss {loss_percent:.2} % > {:.2} %",
            t.max_loss_percent
        ));
    }
    if jitter_ms > t.max_jitter_ms {
        reasons.push(format!(
            "jitter {jitter_ms:.1} ms > {:.1} ms",
            t.max_jitter_ms
        ));
    }
    if let Some(mos) = mos.filter(|m| *m < t.min_mos) {
        reasons.push(format!("MOS {mos:.2} < {:.2}", t.min_mos));
    }
    reasons
}

/// `media.quality` for each direction whose loss, jitter or estimated MOS
/// is beyond the thresholds.
pub fn quality(check: &StreamCheck<'_>, cfg: &MediaCheckConfig) -> Vec<MediaFinding> {
    let fmt = check.stream.format();
    let codec = fmt
        .as_ref()
        .and_then(|f| f.encoding.as_deref())
        .map_or(VoiceCodec::Other, VoiceCodec::from_encoding_name);
    let impairment = CodecImpairment::for_codec(codec);
    let t = cfg.thresholds;
    let mut out = Vec::new();
    for d in DIRECTIONS {
        let Some(obs) = check.observed(d) else {
            continue;
        };
        if obs.packets < cfg.min_packets_for_quality {
            continue;
        }
        let loss = obs.loss_percent();
        let q = estimate(impairment, loss, obs.jitter_ms, cfg.assumptions);
        let reasons = quality_reasons(loss, obs.jitter_ms, Some(q.mos), &t);
        if reasons.is_empty() {
            continue;
        }
        let mut evidence = check.base_evidence();
        evidence.extend([
            ("direction".into(), direction_text(check.stream, d)),
            ("observed".into(), obs.observed_path()),
            ("ssrc".into(), format!("0x{:08X}", obs.ssrc)),
            ("packets".into(), obs.packets.to_string()),
            ("expected".into(), obs.expected.to_string()),
            ("lost".into(), obs.lost.to_string()),
            ("dropped_locally".into(), obs.dropped_locally.to_string()),
            ("loss_percent".into(), format!("{loss:.2}")),
            ("jitter_ms".into(), format!("{:.2}", obs.jitter_ms)),
            ("max_jitter_ms".into(), format!("{:.2}", obs.max_jitter_ms)),
            ("r_factor".into(), format!("{:.1}", q.r_factor)),
            ("mos_estimate".into(), format!("{:.2}", q.mos)),
            ("e_model_codec".into(), codec.name().to_owned()),
            (
                "assumed_mouth_to_ear_ms".into(),
                format!("{:.0}", q.mouth_to_ear_ms),
            ),
        ]);
        if let Some(far) = obs.far_end {
            evidence.push((
                "far_end_rtcp".into(),
                format!(
                    "the receiver reports {:.1} % lost lately, {} in all{}{}",
                    far.fraction_lost_percent,
                    far.cumulative_lost,
                    far.jitter_ms
                        .map(|j| format!(", jitter {j:.1} ms"))
                        .unwrap_or_default(),
                    far.round_trip_ms
                        .map(|r| format!(", round trip {r:.0} ms"))
                        .unwrap_or_default()
                ),
            ));
        }
        out.push(MediaFinding {
            code: MEDIA_QUALITY,
            summary: format!(
                "call {}: poor audio {}: {} (estimated MOS {:.2})",
                check.call_id,
                direction_text(check.stream, d),
                reasons.join(", "),
                q.mos
            ),
            evidence,
            remedy: findings_remedy::quality(),
        });
    }
    out
}

/// All media checks of one stream: `media.no_rtp` or else `media.one_way`,
/// plus `media.quality` per direction.
pub fn check_stream(check: &StreamCheck<'_>, cfg: &MediaCheckConfig) -> Vec<MediaFinding> {
    let mut out: Vec<MediaFinding> = no_rtp(check, cfg)
        .or_else(|| one_way(check, cfg))
        .into_iter()
        .collect();
    out.extend(quality(check, cfg));
    out
}

/// Addresses that cannot be reached from the public Internet: RFC 1918,
/// RFC 6598 shared (CGNAT) space, loopback, link-local, IPv6 ULA (RFC 4193)
/// and link-local, documentation ranges excluded (they are test addresses).
pub fn is_non_routable(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => {
            let o = v4.octets();
            v4.is_private()
                || v4.is_loopback()
                || v4.is_link_local()
                || (o[0] == 100 && (64..128).contains(&o[1]))
        }
        IpAddr::V6(v6) => {
            let s = v6.segments();
            v6.is_loopback() || (s[0] & 0xfe00) == 0xfc00 || (s[0] & 0xffc0) == 0xfe80
        }
    }
}

/// `nat.private_sdp`: the SDP (c=/m=) asks for RTP at a non-routable
/// address while the SIP message carrying it came from another address,
/// i.e. through a NAT that did not rewrite the SDP. `signalling_source` is
/// the observed source of that SIP message; `role` names its sender for the
/// summary ("offer from the phone", "answer from the trunk").
pub fn private_sdp(
    call_id: &str,
    media: &MediaDescription,
    signalling_source: SocketAddr,
    role: &str,
) -> Option<MediaFinding> {
    let sdp_ip = media.connection;
    if media.is_rejected()
        || sdp_ip.is_unspecified()
        || !is_non_routable(sdp_ip)
        || sdp_ip == signalling_source.ip()
    {
        return None;
    }
    Some(MediaFinding {
        code: NAT_PRIVATE_SDP,
        summary: format!(
            "call {call_id}: {role} asks for RTP at private {} but its SIP came from {}: \
             media will go nowhere unless the far end uses symmetric RTP",
            media.rtp_address(),
            signalling_source.ip()
        ),
        evidence: vec![
            ("call_id".into(), call_id.to_owned()),
            ("m_line".into(), media.index.to_string()),
            ("sdp_connection".into(), sdp_ip.to_string()),
            ("sdp_port".into(), media.port.to_string()),
            ("signalling_source".into(), signalling_source.to_string()),
        ],
        remedy: findings_remedy::private_sdp(media, signalling_source.ip()),
    })
}

#[cfg(test)]
#[path = "findings_tests.rs"]
mod tests;
