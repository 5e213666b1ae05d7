//! From a call's streams and the RTP linked to them to catalogue findings:
//! the glue between [`crate::analysis::media::findings`] (pure checks on
//! one stream) and [`crate::diagnosis::Diagnosis`].

use std::collections::HashMap;
use std::str::FromStr;

use super::call::{Call, StreamReport};
use super::negotiation::Sdp;
use crate::analysis::media::findings::{
    self, DirectionObservation, FarEndReport, MediaFinding, StreamCheck,
};
use crate::analysis::media::quality::QualityAssumptions;
use crate::analysis::media::{
    MediaCheckConfig, ObservedFlow, RtpObservations, StreamDirection, TimeWindow, link_flows,
};
use crate::diagnosis::{Code, Diagnosis, Evidence};
use crate::time::Timestamp;

/// A finding of one stream, before it becomes a [`Diagnosis`].
pub(crate) struct Judged {
    pub code: Code,
    pub m_line: usize,
    /// Tells findings of the same code on one m-line apart (direction,
    /// party), so each is raised once.
    pub detail: String,
    finding: MediaFinding,
}

impl Judged {
    fn new(finding: MediaFinding, m_line: usize, detail: String) -> Option<Self> {
        // Every media finding code is in the catalogue (tested below).
        let code = Code::from_str(finding.code).ok()?;
        Some(Self {
            code,
            m_line,
            detail,
            finding,
        })
    }

    pub(crate) fn into_diagnosis(self, at: Timestamp) -> Diagnosis {
        let f = self.finding;
        let mut d = Diagnosis::new(self.code, at, f.summary);
        d.remedy.general = f.remedy.into();
        for (name, value) in f.evidence {
            d = d.with_evidence(Evidence::new(name, value));
        }
        d
    }
}

/// `nat.private_sdp` for each m= line of one SDP body that came from a
/// public address. From a private one it proves nothing about NAT: a
/// proxy and its phones share a LAN, and a PBX whose media server sits on
/// another private address (rtpengine, a FreeSWITCH behind Kamailio) is
/// normal.
pub(crate) fn private_sdp(call_id: &str, sdp: &Sdp, out: &mut Vec<Judged>) {
    if findings::is_non_routable(sdp.source.ip()) {
        return;
    }
    let role = format!("the SDP from the {}", sdp.party.as_str());
    for m in &sdp.session.media {
        if let Some(f) = findings::private_sdp(call_id, m, sdp.source, &role) {
            out.extend(Judged::new(f, m.index, sdp.party.as_str().to_owned()));
        }
    }
}

fn check<'a>(call: &'a Call, s: &'a StreamReport, now: Timestamp) -> Option<StreamCheck<'a>> {
    let observed = |d: StreamDirection| {
        s.directions
            .iter()
            .find(|r| r.direction == d)
            .and_then(|r| r.observed.as_ref())
    };
    Some(StreamCheck {
        call_id: &call.call_id,
        stream: &s.negotiated,
        answered_at: call.answered?,
        now,
        offerer_to_answerer: observed(StreamDirection::OffererToAnswerer),
        answerer_to_offerer: observed(StreamDirection::AnswererToOfferer),
    })
}

/// `media.no_rtp` or `media.one_way` per stream, as of `now`. Streams on
/// ports nothing measures (outside the kernel's RTP range) are skipped.
pub(crate) fn flow_presence(
    call: &Call,
    now: Timestamp,
    cfg: &MediaCheckConfig,
    observations: &RtpObservations,
) -> Vec<Judged> {
    let mut out = Vec::new();
    let measured = |s: &&StreamReport| {
        let n = &s.negotiated;
        n.offer.protocol.is_rtp()
            && (observations.measures_port(n.offer.port)
                || observations.measures_port(n.answer.port))
    };
    for s in call.streams.iter().filter(measured) {
        let Some(check) = check(call, s, now) else {
            continue;
        };
        if let Some(f) = findings::no_rtp(&check, cfg).or_else(|| findings::one_way(&check, cfg)) {
            out.extend(Judged::new(f, s.negotiated.index, String::new()));
        }
    }
    out
}

/// `media.quality` per stream direction, on the call's final statistics.
pub(crate) fn quality(call: &Call, now: Timestamp, cfg: &MediaCheckConfig) -> Vec<Judged> {
    let mut out = Vec::new();
    for s in &call.streams {
        let Some(check) = check(call, s, now) else {
            continue;
        };
        for f in findings::quality(&check, cfg) {
            let detail = f
                .evidence
                .iter()
                .find(|(k, _)| k == "direction")
                .map(|(_, v)| v.clone())
                .unwrap_or_default();
            out.extend(Judged::new(f, s.negotiated.index, detail));
        }
    }
    out
}

/// Links the flows on the stream's ports to its two directions (symmetric
/// RTP and NAT included, see [`link_flows`]) and sums them per direction.
pub(crate) fn link(
    s: &mut StreamReport,
    observations: &RtpObservations,
    start: Timestamp,
    end: Option<Timestamp>,
    assumptions: QualityAssumptions,
) {
    let n = &s.negotiated;
    let flows = observations.flows_on_ports(&[n.offer.port, n.answer.port]);
    let observed: Vec<ObservedFlow> = flows.iter().map(ObservedFlow::from_snapshot).collect();
    let mut per_direction: HashMap<StreamDirection, DirectionObservation> = HashMap::new();
    for m in link_flows(n, &observed, TimeWindow { start, end }) {
        let flow = &flows[m.flow];
        let o = DirectionObservation::from_snapshot(flow, m.kind);
        per_direction
            .entry(m.direction)
            .and_modify(|d| d.merge(&o))
            .or_insert(o);
    }
    let clock = n.format().and_then(|f| f.clock_rate).filter(|&c| c > 0);
    for d in [
        StreamDirection::OffererToAnswerer,
        StreamDirection::AnswererToOfferer,
    ] {
        let mut o = per_direction.remove(&d);
        // The receiver reports from the host the RTP went to.
        if let Some(o) = o.as_mut()
            && let Some(receiver) = o.flows.first().map(|(k, _)| k.dst.ip())
            && let Some((report, at)) = observations.report_about(o.ssrc, receiver)
        {
            o.far_end = Some(FarEndReport {
                at,
                fraction_lost_percent: report.fraction_lost_percent(),
                cumulative_lost: i64::from(report.cumulative_lost),
                jitter_ms: clock.map(|c| f64::from(report.jitter) * 1000.0 / f64::from(c)),
                round_trip_ms: report.round_trip(at).map(|d| d.as_secs_f64() * 1000.0),
            });
        }
        s.set_observed(d, o, assumptions);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::media::findings::{
        MEDIA_NO_RTP, MEDIA_ONE_WAY, MEDIA_QUALITY, NAT_PRIVATE_SDP,
    };

    #[test]
    fn every_media_finding_code_is_in_the_catalogue() {
        for code in [MEDIA_NO_RTP, MEDIA_ONE_WAY, MEDIA_QUALITY, NAT_PRIVATE_SDP] {
            assert!(Code::from_str(code).is_ok(), "{code}");
        }
    }
}
