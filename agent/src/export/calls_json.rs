//! A call report as a JSON line (`"type":"call"`): state, times, and per
//! stream direction the RTP statistics and MOS estimate.

use std::net::SocketAddr;

use serde::Serialize;

use crate::analysis::calls::{Call, CallState, DirectionReport, StreamReport};
use crate::analysis::media::StreamDirection;
use crate::diagnosis::Code;
use crate::time::Timestamp;

#[derive(Serialize)]
pub(crate) struct CallJson<'a> {
    r#type: &'static str,
    call_id: &'a str,
    from: &'a str,
    to: &'a str,
    caller: SocketAddr,
    callee: SocketAddr,
    state: CallState,
    /// The last report of the call: statistics are final.
    r#final: bool,
    status: Option<u16>,
    started: Timestamp,
    answered: Option<Timestamp>,
    ended: Option<Timestamp>,
    duration_s: Option<f64>,
    end_reason: Option<&'a str>,
    at: Timestamp,
    streams: Vec<StreamJson>,
    diagnoses: &'a [Code],
}

#[derive(Serialize)]
struct StreamJson {
    m_line: usize,
    codec: String,
    offerer: &'static str,
    offer: SocketAddr,
    answer: SocketAddr,
    directions: Vec<DirectionJson>,
}

#[derive(Serialize)]
struct DirectionJson {
    direction: &'static str,
    from: SocketAddr,
    to: SocketAddr,
    expected: bool,
    packets: u64,
    expected_packets: u64,
    lost: i64,
    loss_percent: f64,
    jitter_ms: f64,
    max_jitter_ms: f64,
    mos: Option<f64>,
    ssrc: Option<String>,
    dropped_locally: u64,
    /// The wire flows linked to this direction and how.
    flows: Vec<FlowJson>,
    /// The receiver's RTCP reception report (RFC 3550 6.4), if seen.
    far_end_report: Option<FarEndJson>,
}

#[derive(Serialize)]
struct FlowJson {
    src: SocketAddr,
    dst: SocketAddr,
    /// `exact`, `symmetric_source`, `receiver_port` or `same_ssrc`.
    r#match: &'static str,
}

#[derive(Serialize)]
struct FarEndJson {
    at: Timestamp,
    fraction_lost_percent: f64,
    cumulative_lost: i64,
    jitter_ms: Option<f64>,
    round_trip_ms: Option<f64>,
}

fn direction_json(d: &DirectionReport) -> DirectionJson {
    let o = d.observed.as_ref();
    DirectionJson {
        direction: match d.direction {
            StreamDirection::OffererToAnswerer => "offerer_to_answerer",
            StreamDirection::AnswererToOfferer => "answerer_to_offerer",
        },
        from: d.from,
        to: d.to,
        expected: d.expected,
        packets: o.map_or(0, |o| o.packets),
        expected_packets: o.map_or(0, |o| o.expected),
        lost: o.map_or(0, |o| o.lost),
        loss_percent: o.map_or(0.0, |o| o.loss_percent()),
        jitter_ms: o.map_or(0.0, |o| o.jitter_ms),
        max_jitter_ms: o.map_or(0.0, |o| o.max_jitter_ms),
        mos: d.mos,
        ssrc: o.map(|o| format!("0x{:08X}", o.ssrc)),
        dropped_locally: o.map_or(0, |o| o.dropped_locally),
        flows: o.map_or_else(Vec::new, |o| {
            o.flows
                .iter()
                .map(|(k, kind)| FlowJson {
                    src: k.src,
                    dst: k.dst,
                    r#match: kind.name(),
                })
                .collect()
        }),
        far_end_report: o.and_then(|o| o.far_end).map(|f| FarEndJson {
            at: f.at,
            fraction_lost_percent: f.fraction_lost_percent,
            cumulative_lost: f.cumulative_lost,
            jitter_ms: f.jitter_ms,
            round_trip_ms: f.round_trip_ms,
        }),
    }
}

fn stream_json(s: &StreamReport) -> StreamJson {
    StreamJson {
        m_line: s.negotiated.index,
        codec: s.codec(),
        offerer: s.offerer.as_str(),
        offer: s.negotiated.offer.rtp_address(),
        answer: s.negotiated.answer.rtp_address(),
        directions: s.directions.iter().map(direction_json).collect(),
    }
}

pub(crate) fn call_json(c: &Call) -> CallJson<'_> {
    CallJson {
        r#type: "call",
        call_id: &c.call_id,
        from: &c.from,
        to: &c.to,
        caller: c.caller,
        callee: c.callee,
        state: c.state,
        r#final: c.closed,
        status: c.status,
        started: c.started,
        answered: c.answered,
        ended: c.ended,
        duration_s: c.duration().map(|d| d.as_secs_f64()),
        end_reason: c.end_reason.as_deref(),
        at: c.at,
        streams: c.streams.iter().map(stream_json).collect(),
        diagnoses: &c.diagnoses,
    }
}
