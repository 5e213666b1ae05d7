//! A call's media as spans: one span per direction of each negotiated
//! stream (RFC 3264 m-line), under the call's root span, carrying the RTP
//! statistics of the call's final report (RFC 3550 §6.4.1 loss and
//! jitter, ITU-T G.107 MOS estimate). docs/tracing.md, "Trace model".
//!
//! Pure: the closed [`Call`] in, spans out. The root span is the call's
//! deterministic [`SpanId::for_root`], so these spans join the trace
//! whether the root was exported before them (the usual case: the BYE
//! completes before the RTP statistics settle) or after.

use crate::analysis::calls::{Call, DirectionReport, Party, StreamReport};
use crate::analysis::media::sdp::MediaKind;
use crate::analysis::media::{MediaCheckConfig, StreamDirection};
use crate::diagnosis::Code;
use crate::export::spans::{SpanId, SpanKind, SpanRecord, Status, TraceId, attr, names};

/// One direction of a stream: who sends, and the report.
pub(crate) struct MediaDirection<'a> {
    pub stream: &'a StreamReport,
    pub report: &'a DirectionReport,
    pub sender: Party,
}

impl MediaDirection<'_> {
    /// `caller_to_callee` or `callee_to_caller`: the `rtp.direction`
    /// attribute and part of the span id.
    pub(crate) fn label(&self) -> &'static str {
        match self.sender {
            Party::Caller => "caller_to_callee",
            Party::Callee => "callee_to_caller",
        }
    }

    fn name(&self) -> &'static str {
        match self.sender {
            Party::Caller => names::RTP_CALLER_TO_CALLEE,
            Party::Callee => names::RTP_CALLEE_TO_CALLER,
        }
    }

    fn delivered(&self) -> u64 {
        self.report.observed.as_ref().map_or(0, |o| o.delivered())
    }
}

/// The stream directions of `call` that get a span: those RTP was linked
/// to, and those the SDP negotiated to carry RTP on an answered call
/// (early media that never came on a call that failed is not a finding,
/// and not a span). Non-RTP streams (T.38 over UDPTL) only when observed.
pub(crate) fn media_directions(call: &Call) -> Vec<MediaDirection<'_>> {
    let mut out = Vec::new();
    for stream in &call.streams {
        let rtp = stream.negotiated.offer.protocol.is_rtp();
        for report in &stream.directions {
            let expected = report.expected && rtp && call.answered.is_some();
            if report.observed.is_none() && !expected {
                continue;
            }
            let sender = match report.direction {
                StreamDirection::OffererToAnswerer => stream.offerer,
                StreamDirection::AnswererToOfferer => stream.offerer.other(),
            };
            out.push(MediaDirection {
                stream,
                report,
                sender,
            });
        }
    }
    out
}

/// The span of one stream direction, child of the call's root.
pub(crate) fn media_span(
    call: &Call,
    d: &MediaDirection<'_>,
    observer: &str,
    checks: &MediaCheckConfig,
) -> SpanRecord {
    let trace = TraceId::for_call(&call.call_id);
    let root = SpanId::for_root(trace, observer);
    let m_line = d.stream.negotiated.index;
    // Without RTP: from the answer (or the INVITE) to the call's end.
    let call_start = call.answered.unwrap_or(call.started);
    let call_end = call.ended.unwrap_or(call.at);
    let (start, end) = match &d.report.observed {
        Some(o) => (o.first_seen, o.last_seen.max(o.first_seen)),
        None => (call_start, call_end.max(call_start)),
    };
    let mut span = SpanRecord::new(
        trace,
        SpanId::for_media(trace, observer, m_line, d.label()),
        Some(root),
        d.name(),
        SpanKind::Internal,
        start,
        end,
    )
    .with(attr::SIP_CALL_ID, call.call_id.as_str())
    .with(attr::OBSERVER, observer)
    .with(attr::RTP_DIRECTION, d.label())
    .with(attr::RTP_M_LINE, m_line)
    .with(attr::RTP_MEDIA, media_kind(&d.stream.negotiated.kind))
    .with(attr::RTP_CODEC, d.stream.codec())
    .with(attr::RTP_SRC, d.report.from.to_string())
    .with(attr::RTP_DST, d.report.to.to_string())
    .with(attr::RTP_NEGOTIATED, d.report.expected);
    if let Some(o) = &d.report.observed {
        span = span
            .with(attr::RTP_PACKETS, o.packets)
            .with(attr::RTP_EXPECTED, o.expected)
            .with(attr::RTP_LOST, o.lost)
            .with(attr::RTP_LOSS_PERCENT, o.loss_percent())
            .with(attr::RTP_JITTER_MS, o.jitter_ms)
            .with(attr::RTP_MAX_JITTER_MS, o.max_jitter_ms)
            .with(attr::RTP_SSRC, format!("0x{:08X}", o.ssrc))
            .with(attr::RTP_PAYLOAD_TYPE, o.payload_type)
            .with(attr::RTP_DROPPED_LOCALLY, o.dropped_locally)
            .with(
                attr::RTP_FLOWS,
                o.flows
                    .iter()
                    .map(|(k, kind)| format!("{k} ({})", kind.describe()))
                    .collect::<Vec<_>>()
                    .join(", "),
            );
    }
    if let Some(far) = d.report.observed.as_ref().and_then(|o| o.far_end) {
        span = span.with(attr::RTP_FAR_END_LOSS_PERCENT, far.fraction_lost_percent);
        if let Some(j) = far.jitter_ms {
            span = span.with(attr::RTP_FAR_END_JITTER_MS, j);
        }
        if let Some(r) = far.round_trip_ms {
            span = span.with(attr::RTP_ROUND_TRIP_MS, r);
        }
    }
    if let Some(mos) = d.report.mos {
        span = span.with(attr::RTP_MOS, mos);
    }
    span.status = status(call, d, checks);
    span
}

/// `Error` when one of the call's media diagnoses concerns this direction.
/// The call's report lists codes, not their stream and direction, so the
/// attribution repeats the checks' conditions (analysis/media/findings.rs)
/// on this direction: `media.no_rtp` marks expected directions of a
/// stream where nothing arrived either way; `media.one_way` the silent
/// direction of a stream that flows the other way; `media.quality` the
/// directions past the thresholds. `Ok` for RTP delivered without a
/// finding, `Unset` when nothing was measured.
fn status(call: &Call, d: &MediaDirection<'_>, checks: &MediaCheckConfig) -> Status {
    let has = |c: Code| call.diagnoses.contains(&c);
    let delivered = |r: &DirectionReport| r.observed.as_ref().map_or(0, |o| o.delivered());
    let stream = &d.stream.directions;
    if d.report.expected && d.delivered() == 0 {
        if has(Code::MediaNoRtp) && stream.iter().all(|r| delivered(r) == 0) {
            return Status::Error(format!(
                "media.no_rtp: no RTP in either direction between {} and {}",
                d.report.from, d.report.to
            ));
        }
        let flows_back = stream
            .iter()
            .any(|r| r.direction != d.report.direction && r.expected && delivered(r) > 0);
        if has(Code::MediaOneWay) && flows_back {
            let dropped = d.report.observed.as_ref().map_or(0, |o| o.dropped_locally);
            let why = if dropped > 0 {
                format!(": {dropped} packets dropped by this host's firewall")
            } else {
                String::new()
            };
            return Status::Error(format!(
                "media.one_way: no RTP {} to {} while the other direction flows{why}",
                d.report.from, d.report.to
            ));
        }
    }
    let Some(o) = d.report.observed.as_ref().filter(|o| o.delivered() > 0) else {
        return Status::Unset;
    };
    if has(Code::MediaQuality) && o.packets >= checks.min_packets_for_quality {
        let reasons = crate::analysis::media::findings::quality_reasons(
            o.loss_percent(),
            o.jitter_ms,
            d.report.mos,
            &checks.thresholds,
        );
        if !reasons.is_empty() {
            return Status::Error(format!("media.quality: {}", reasons.join(", ")));
        }
    }
    Status::Ok
}

fn media_kind(k: &MediaKind) -> String {
    match k {
        MediaKind::Audio => "audio".into(),
        MediaKind::Video => "video".into(),
        MediaKind::Image => "image".into(),
        MediaKind::Other(s) => s.clone(),
    }
}
