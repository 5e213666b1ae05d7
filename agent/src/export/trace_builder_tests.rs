//! Calls and registrations grouped into traces, from exchanges run
//! through the real parser and transaction table.

use super::*;
use crate::export::spans::Value;
use crate::export::test_sip::{
    Exchange, MS, PBX, REGISTRAR, T0, challenged_registration, response,
};

const PHONE: &str = "203.0.113.5:5060";

fn request(method: &str, cseq: u32, branch: &str, cid: &str, to_tag: bool) -> String {
    let tag = if to_tag { ";tag=t1" } else { "" };
    format!(
        "{method} sip:bob@203.0.113.5 SIP/2.0\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\n\
From: <sip:1001@sip.provider.example>;tag=f1\n\
To: <sip:bob@203.0.113.5>{tag}\n\
Call-ID: {cid}\n\
CSeq: {cseq} {method}\n\
Content-Length: 0\n\n"
    )
}

fn build(x: &Exchange, config: TraceConfig) -> (Vec<SpanRecord>, TraceStats) {
    let mut b = TraceBuilder::new("pbx1", config, Metrics::noop());
    let mut out = Vec::new();
    for e in &x.events {
        b.on_event(e, &mut out);
    }
    b.finish(&mut out);
    (out, b.stats())
}

fn answered_call(x: &mut Exchange, cid: &str, at: u64) {
    x.msg(
        at,
        PBX,
        PHONE,
        &request("INVITE", 1, &format!("z9hG4bK-i-{cid}"), cid, false),
    )
    .msg(
        at + 10,
        PHONE,
        PBX,
        &response(
            "180 Ringing",
            1,
            "INVITE",
            &format!("z9hG4bK-i-{cid}"),
            cid,
            "",
        ),
    )
    .msg(
        at + 900,
        PHONE,
        PBX,
        &response("200 OK", 1, "INVITE", &format!("z9hG4bK-i-{cid}"), cid, ""),
    )
    .msg(
        at + 5000,
        PBX,
        PHONE,
        &request("BYE", 2, &format!("z9hG4bK-b-{cid}"), cid, true),
    )
    .msg(
        at + 5020,
        PHONE,
        PBX,
        &response("200 OK", 2, "BYE", &format!("z9hG4bK-b-{cid}"), cid, ""),
    );
}

#[test]
fn an_answered_call_is_one_trace_from_invite_to_the_bye_answer() {
    let mut x = Exchange::new();
    answered_call(&mut x, "call-1", 0);
    let (spans, stats) = build(&x, TraceConfig::default());
    assert_eq!(spans.len(), 3, "{spans:#?}");
    let trace = TraceId::for_call("call-1");
    let root = spans.iter().find(|s| s.parent.is_none()).unwrap();
    assert_eq!(root.name, names::CALL);
    assert_eq!(root.span_id, SpanId::for_root(trace, "pbx1"));
    assert_eq!(
        (root.start, root.end),
        (Timestamp(T0), Timestamp(T0 + 5020 * MS))
    );
    assert_eq!(root.status, Status::Ok);
    assert_eq!(root.attribute(CALL_END), Some(&Value::from("bye")));
    let invite = spans.iter().find(|s| s.name == "INVITE 200").unwrap();
    assert_eq!(invite.parent, Some(root.span_id));
    assert_eq!(invite.trace_id, trace);
    assert_eq!(invite.kind, SpanKind::Client);
    let ringing = &invite.events[0];
    assert_eq!(ringing.name, crate::export::spans::event::PROVISIONAL);
    assert_eq!(ringing.at, Timestamp(T0 + 10 * MS));
    let bye = spans.iter().find(|s| s.name == "BYE 200").unwrap();
    assert_eq!(bye.parent, Some(root.span_id));
    assert_eq!(stats.call_traces, 1);
    assert_eq!(stats.transaction_spans, 2);
    assert_eq!(stats.dialogs_open_at_end, 0);
}

#[test]
fn a_busy_call_ends_with_its_final_failure_and_is_an_error() {
    let mut x = Exchange::new();
    x.msg(
        0,
        PBX,
        PHONE,
        &request("INVITE", 1, "z9hG4bK-busy", "busy-1", false),
    )
    .msg(
        30,
        PHONE,
        PBX,
        &response("486 Busy Here", 1, "INVITE", "z9hG4bK-busy", "busy-1", ""),
    );
    let (spans, _) = build(&x, TraceConfig::default());
    let root = spans.iter().find(|s| s.parent.is_none()).unwrap();
    assert_eq!(root.end, Timestamp(T0 + 30 * MS));
    assert!(matches!(&root.status, Status::Error(m) if m.contains("INVITE 486")));
    let invite = spans.iter().find(|s| s.parent.is_some()).unwrap();
    assert_eq!(invite.status, Status::Error("486 Busy Here".into()));
}

#[test]
fn the_dialog_table_is_bounded_and_evictions_are_counted() {
    let mut x = Exchange::new();
    for i in 0..5 {
        let cid = format!("flood-{i}");
        x.msg(
            i,
            PBX,
            PHONE,
            &request("INVITE", 1, &format!("z9hG4bK-{i}"), &cid, false),
        );
    }
    let config = TraceConfig {
        max_dialogs: 2,
        ..TraceConfig::default()
    };
    let (spans, stats) = build(&x, config);
    assert_eq!(stats.dialogs_evicted, 3);
    assert_eq!(stats.dialogs_open_at_end, 2);
    // Every call still gets its root (and each INVITE its span, open at end).
    assert_eq!(spans.iter().filter(|s| s.name == names::CALL).count(), 5);
    let evicted = spans
        .iter()
        .filter(|s| s.attribute(CALL_END) == Some(&Value::from("evicted")))
        .count();
    assert_eq!(evicted, 3);
}

#[test]
fn an_idle_call_is_closed_on_the_packet_clock() {
    let mut x = Exchange::new();
    x.msg(
        0,
        PBX,
        PHONE,
        &request("INVITE", 1, "z9hG4bK-idle", "idle-1", false),
    )
    .msg(
        20,
        PHONE,
        PBX,
        &response("200 OK", 1, "INVITE", "z9hG4bK-idle", "idle-1", ""),
    );
    let mut b = TraceBuilder::new(
        "pbx1",
        TraceConfig {
            dialog_idle_timeout: Duration::from_secs(60),
            ..TraceConfig::default()
        },
        Metrics::noop(),
    );
    let mut out = Vec::new();
    for e in &x.events {
        b.on_event(e, &mut out);
    }
    b.tick(Timestamp(T0 + 30_000 * MS), &mut out);
    assert!(out.iter().all(|s| s.name != names::CALL), "not idle yet");
    b.tick(Timestamp(T0 + 61_000 * MS), &mut out);
    let root = out.iter().find(|s| s.name == names::CALL).expect("closed");
    assert_eq!(root.attribute(CALL_END), Some(&Value::from("idle")));
    assert_eq!(b.stats().dialogs_idle, 1);
}

#[test]
fn register_transactions_become_a_registration_trace() {
    let x = challenged_registration();
    let (spans, stats) = build(&x, TraceConfig::default());
    assert_eq!(stats.registration_traces, 1);
    assert_eq!(spans.len(), 3);
    let root = &spans[0];
    assert_eq!(root.name, names::REGISTRATION);
    assert_eq!(
        root.trace_id,
        TraceId::for_registration("reg-1@192.0.2.10", 1, "sip:1001@sip.provider.example")
    );
    assert_eq!(root.status, Status::Ok);
    assert_eq!(
        root.attribute(attr::SIP_AUTH_USERNAME),
        Some(&Value::from("1001"))
    );
    assert_eq!(spans[1].name, "REGISTER 401");
    assert_eq!(spans[2].name, "REGISTER 200");
    assert_eq!(
        spans[1].events[0].name,
        crate::export::spans::event::RETRANSMISSION
    );
    assert_eq!(spans[1].events[0].at, Timestamp(T0 + 500 * MS));
}

#[test]
fn a_challenge_never_answered_is_a_registration_that_gave_up() {
    let mut x = Exchange::new();
    x.msg(
        0,
        PBX,
        REGISTRAR,
        &crate::export::test_sip::register(1, "z9hG4bK-g", false),
    )
    .msg(
        20,
        REGISTRAR,
        PBX,
        &response(
            "401 Unauthorized",
            1,
            "REGISTER",
            "z9hG4bK-g",
            "reg-1@192.0.2.10",
            crate::export::test_sip::CHALLENGE,
        ),
    );
    // The tracker decides "gave up" when no answer came by the end.
    x.finish();
    let (spans, _) = build(&x, TraceConfig::default());
    assert_eq!(spans[0].name, names::REGISTRATION);
    assert_eq!(
        spans[0].attribute(attr::REGISTRATION_OUTCOME),
        Some(&Value::from("gave_up"))
    );
    assert!(matches!(spans[0].status, Status::Error(_)));
}

#[test]
fn an_options_ping_is_a_trace_of_its_own() {
    let mut x = Exchange::new();
    x.msg(
        0,
        PBX,
        PHONE,
        &request("OPTIONS", 1, "z9hG4bK-o", "ping-1", false),
    )
    .msg(
        5,
        PHONE,
        PBX,
        &response("200 OK", 1, "OPTIONS", "z9hG4bK-o", "ping-1", ""),
    );
    let (spans, stats) = build(&x, TraceConfig::default());
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].parent, None);
    assert_eq!(spans[0].trace_id, TraceId::for_call("ping-1"));
    assert_eq!(stats.call_traces, 0);
}

// ---- Media spans: a call with SDP and RTP through the real pipeline ----

mod media {
    use super::*;
    use crate::analysis::calls::{Call, DirectionReport};
    use crate::diagnosis::Code;
    use crate::export::test_call::{
        CALL_ID, CALLEE_SSRC, CALLER_SSRC, CallScript, PBX, PBX_RTP, PHONE_RTP,
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
        let invite = format!("INVITE sip:200@{PBX} SIP/2.0");
        s.sip(0, true, &invite, "1 INVITE", false);
        s.sip(
            10,
            false,
            "SIP/2.0 407 Proxy Authentication Required",
            "1 INVITE",
            true,
        );
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
        let invite = format!("INVITE sip:200@{PBX} SIP/2.0");
        s.sip(0, true, &invite, "1 INVITE", false);
        s.sip(10, false, "SIP/2.0 401 Unauthorized", "1 INVITE", true);
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
}
