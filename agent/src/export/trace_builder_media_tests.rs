//! Media spans: a call with SDP and RTP scripted as raw IP packets
//! through the real pipeline, its events through the trace builder.

use super::*;
use crate::analysis::calls::{Call, DirectionReport};
use crate::diagnosis::Code;
use crate::export::spans::Value;
use crate::pipeline::tests::call_script::{
    CALL_ID, CALLEE_SSRC, CALLER_SSRC, CallScript, MS, PBX, PBX_RTP, PHONE_RTP, T0,
};

fn spans_of(s: &CallScript, config: TraceConfig) -> (Vec<SpanRecord>, TraceStats) {
    let mut b = TraceBuilder::new("pbx1", config, Metrics::noop());
    let mut out = Vec::new();
    for e in &s.events {
        b.on_event(e, &mut out);
    }
    b.finish(&mut out);
    (out, b.stats())
}

fn named<'a>(spans: &'a [SpanRecord], name: &str) -> &'a SpanRecord {
    let found: Vec<&SpanRecord> = spans.iter().filter(|s| s.name == name).collect();
    assert_eq!(found.len(), 1, "one {name}: {spans:#?}");
    found[0]
}

fn report(call: &Call, sender_is_caller: bool) -> &DirectionReport {
    // The caller offers in these scripts: offerer to answerer is
    // caller to callee.
    &call.streams[0].directions[usize::from(!sender_is_caller)]
}

/// Every RTP attribute equals the call report's figure.
fn assert_figures(span: &SpanRecord, call: &Call, r: &DirectionReport) {
    let o = r.observed.as_ref().expect("RTP linked");
    let a = |k: &str| span.attribute(k).cloned();
    assert_eq!(a(attr::RTP_PACKETS), Some(Value::from(o.packets)));
    assert_eq!(a(attr::RTP_EXPECTED), Some(Value::from(o.expected)));
    assert_eq!(a(attr::RTP_LOST), Some(Value::from(o.lost)));
    assert_eq!(
        a(attr::RTP_LOSS_PERCENT),
        Some(Value::from(o.loss_percent()))
    );
    assert_eq!(a(attr::RTP_JITTER_MS), Some(Value::from(o.jitter_ms)));
    assert_eq!(
        a(attr::RTP_MAX_JITTER_MS),
        Some(Value::from(o.max_jitter_ms))
    );
    assert_eq!(a(attr::RTP_MOS), Some(Value::from(r.mos.unwrap())));
    assert_eq!(
        a(attr::RTP_SSRC),
        Some(Value::from(format!("0x{:08X}", o.ssrc)))
    );
    assert_eq!(a(attr::RTP_PAYLOAD_TYPE), Some(Value::from(8u8)));
    assert_eq!(a(attr::RTP_CODEC), Some(Value::from("PCMA/8000")));
    assert_eq!(a(attr::RTP_SRC), Some(Value::from(r.from.to_string())));
    assert_eq!(a(attr::RTP_DST), Some(Value::from(r.to.to_string())));
    assert_eq!(a(attr::RTP_DROPPED_LOCALLY), Some(Value::from(0u64)));
    assert_eq!(
        a(attr::SIP_CALL_ID),
        Some(Value::from(call.call_id.as_str()))
    );
    assert_eq!((span.start, span.end), (o.first_seen, o.last_seen));
}

#[test]
fn a_calls_media_spans_join_its_trace_under_the_root_emitted_before_them() {
    let mut s = CallScript::new();
    s.answered_at(0, 1);
    // Caller to callee loses every 20th packet: 5 %, media.quality.
    let lossy = |i: u16| i % 20 == 7;
    let none = |_: u16| false;
    s.media(1020, 1000, Some(&lossy), Some(&none));
    s.bye(21100, 2);
    s.finish();
    let call = s.closed();
    assert_eq!(call.diagnoses, vec![Code::MediaQuality]);
    let (spans, stats) = spans_of(&s, TraceConfig::default());

    let trace = TraceId::for_call(CALL_ID);
    let roots: Vec<&SpanRecord> = spans.iter().filter(|s| s.name == names::CALL).collect();
    assert_eq!(roots.len(), 1, "the root once: {spans:#?}");
    let root = roots[0];
    assert_eq!(root.span_id, SpanId::for_root(trace, "pbx1"));
    let up = named(&spans, names::RTP_CALLER_TO_CALLEE);
    let down = named(&spans, names::RTP_CALLEE_TO_CALLER);
    // The order problem: the BYE closed the root before the report
    // with the settled RTP statistics arrived.
    let pos = |x: &SpanRecord| spans.iter().position(|s| s == x).unwrap();
    assert!(pos(root) < pos(up) && pos(root) < pos(down));
    for (span, label) in [(up, "caller_to_callee"), (down, "callee_to_caller")] {
        assert_eq!(span.trace_id, trace);
        assert_eq!(span.parent, Some(root.span_id));
        assert_eq!(span.kind, SpanKind::Internal);
        assert_eq!(span.span_id, SpanId::for_media(trace, "pbx1", 0, label));
        assert_eq!(
            span.attribute(attr::RTP_DIRECTION),
            Some(&Value::from(label))
        );
        assert_eq!(span.attribute(attr::RTP_M_LINE), Some(&Value::from(0usize)));
    }
    assert_figures(up, &call, report(&call, true));
    assert_figures(down, &call, report(&call, false));
    assert_eq!(up.attribute(attr::RTP_LOST), Some(&Value::from(50i64)));
    assert_eq!(up.attribute(attr::RTP_SRC), Some(&Value::from(PHONE_RTP)));
    assert_eq!(up.attribute(attr::RTP_DST), Some(&Value::from(PBX_RTP)));
    assert_eq!(
        up.attribute(attr::RTP_SSRC),
        Some(&Value::from(format!("0x{CALLER_SSRC:08X}")))
    );
    assert_eq!(
        down.attribute(attr::RTP_SSRC),
        Some(&Value::from(format!("0x{CALLEE_SSRC:08X}")))
    );
    assert!(
        matches!(&up.status, Status::Error(m) if m.starts_with("media.quality: loss 5.00 %")),
        "{:?}",
        up.status
    );
    assert_eq!(down.status, Status::Ok);
    assert_eq!((stats.media_spans, stats.media_spans_dropped), (2, 0));
    assert_eq!(stats.spans, spans.len() as u64);
}

#[test]
fn one_way_audio_is_an_error_on_the_silent_direction_over_the_talk_time() {
    let mut s = CallScript::new();
    s.answered_at(0, 1);
    let none = |_: u16| false;
    s.media(1020, 400, Some(&none), None);
    s.bye(9100, 2);
    s.finish();
    let call = s.closed();
    assert_eq!(call.diagnoses, vec![Code::MediaOneWay]);
    let (spans, _) = spans_of(&s, TraceConfig::default());
    let up = named(&spans, names::RTP_CALLER_TO_CALLEE);
    let down = named(&spans, names::RTP_CALLEE_TO_CALLER);
    assert_eq!(up.status, Status::Ok);
    assert_figures(up, &call, report(&call, true));
    assert!(
        matches!(&down.status, Status::Error(m) if m.starts_with("media.one_way: no RTP")
            && m.contains(&format!("{PBX}:20000"))),
        "{:?}",
        down.status
    );
    // Nothing measured: from the answer to the BYE, no statistics.
    assert_eq!(
        (down.start, down.end),
        (call.answered.unwrap(), call.ended.unwrap())
    );
    assert_eq!(down.attribute(attr::RTP_PACKETS), None);
    assert_eq!(
        down.attribute(attr::RTP_NEGOTIATED),
        Some(&Value::from(true))
    );
}

#[test]
fn no_rtp_marks_both_directions_and_a_sip_only_capture_judges_neither() {
    // RTP of the same ports before the call: the capture does carry
    // media (so it is judged), this call got none.
    let mut s = CallScript::new();
    let none = |_: u16| false;
    s.media(0, 10, Some(&none), None);
    s.answered_at(60_000, 1);
    s.bye(69_100, 2);
    s.finish();
    assert_eq!(s.closed().diagnoses, vec![Code::MediaNoRtp]);
    let (spans, _) = spans_of(&s, TraceConfig::default());
    for name in [names::RTP_CALLER_TO_CALLEE, names::RTP_CALLEE_TO_CALLER] {
        let span = named(&spans, name);
        assert!(
            matches!(&span.status, Status::Error(m) if m.starts_with("media.no_rtp")),
            "{name}: {:?}",
            span.status
        );
    }

    let mut sip_only = CallScript::new();
    sip_only.answered_at(0, 1);
    sip_only.bye(9100, 2);
    sip_only.finish();
    assert_eq!(sip_only.closed().diagnoses, vec![]);
    let (spans, _) = spans_of(&sip_only, TraceConfig::default());
    for name in [names::RTP_CALLER_TO_CALLEE, names::RTP_CALLEE_TO_CALLER] {
        let span = named(&spans, name);
        assert_eq!(span.status, Status::Unset, "{name}: nothing measured");
        assert_eq!(span.attribute(attr::RTP_PACKETS), None);
    }
}

#[test]
fn a_challenged_invite_retried_is_one_call_with_one_root() {
    let mut s = CallScript::new();
    s.challenged(0, 1, "SIP/2.0 407 Proxy Authentication Required");
    s.answered_at(20, 2);
    let none = |_: u16| false;
    s.media(1040, 100, Some(&none), Some(&none));
    s.bye(4000, 3);
    s.finish();
    let (spans, stats) = spans_of(&s, TraceConfig::default());
    let root = named(&spans, names::CALL);
    assert_eq!(root.status, Status::Ok, "{spans:#?}");
    assert_eq!(root.attribute(CALL_END), Some(&Value::from("bye")));
    assert_eq!(
        (root.start, root.end),
        (Timestamp(T0), Timestamp(T0 + 4005 * MS))
    );
    for name in [
        "INVITE 407",
        "INVITE 200",
        "BYE 200",
        names::RTP_CALLER_TO_CALLEE,
        names::RTP_CALLEE_TO_CALLER,
    ] {
        assert_eq!(named(&spans, name).parent, Some(root.span_id), "{name}");
    }
    assert_eq!(stats.call_traces, 1);
}

#[test]
fn a_challenge_never_retried_ends_the_call_as_failed_when_the_report_closes() {
    let mut s = CallScript::new();
    s.challenged(0, 1, "SIP/2.0 401 Unauthorized");
    s.finish();
    let (spans, stats) = spans_of(&s, TraceConfig::default());
    let root = named(&spans, names::CALL);
    assert_eq!(root.attribute(CALL_END), Some(&Value::from("failed")));
    assert_eq!(
        root.status,
        Status::Error("call failed: INVITE 401, not retried".into())
    );
    assert_eq!(stats.dialogs_open_at_end, 0);
    assert_eq!(stats.media_spans, 0, "never answered: no media expected");
}

#[test]
fn media_spans_per_call_are_bounded_and_the_excess_counted() {
    let mut s = CallScript::new();
    s.answered_at(0, 1);
    let none = |_: u16| false;
    s.media(1020, 100, Some(&none), Some(&none));
    s.bye(4000, 2);
    s.finish();
    let config = TraceConfig {
        max_media_spans_per_call: 1,
        ..TraceConfig::default()
    };
    let (spans, stats) = spans_of(&s, config);
    let media = spans
        .iter()
        .filter(|s| s.attribute(attr::RTP_DIRECTION).is_some())
        .count();
    assert_eq!(media, 1);
    assert_eq!((stats.media_spans, stats.media_spans_dropped), (1, 1));
}
