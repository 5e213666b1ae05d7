//! Calls and registrations grouped into traces, from exchanges run
//! through the real parser and transaction table.

use super::*;
use crate::analysis::calls::CallConfig;
use crate::export::spans::Value;
use crate::export::test_sip::{
    Exchange, MS, PBX, PHONE, REGISTRAR, T0, challenged_registration, request, response,
};
use std::time::Duration;

/// The exchange to its end (the pipeline's `finish`), through a builder.
fn build(x: &mut Exchange, config: TraceConfig) -> (Vec<SpanRecord>, TraceStats) {
    x.finish();
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
    let (spans, stats) = build(&mut x, TraceConfig::default());
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
    let (spans, _) = build(&mut x, TraceConfig::default());
    let root = spans.iter().find(|s| s.parent.is_none()).unwrap();
    assert_eq!(root.end, Timestamp(T0 + 30 * MS));
    assert!(matches!(&root.status, Status::Error(m) if m.contains("INVITE 486")));
    let invite = spans.iter().find(|s| s.parent.is_some()).unwrap();
    assert_eq!(invite.status, Status::Error("486 Busy Here".into()));
}

#[test]
fn the_dialog_table_is_bounded_and_evictions_are_counted() {
    let mut x = Exchange::with_calls(CallConfig {
        max_calls: 2,
        ..CallConfig::default()
    });
    for i in 0..5 {
        let cid = format!("flood-{i}");
        x.msg(
            i,
            PBX,
            PHONE,
            &request("INVITE", 1, &format!("z9hG4bK-{i}"), &cid, false),
        );
    }
    let (spans, stats) = build(&mut x, TraceConfig::default());
    assert_eq!(stats.dialogs_evicted, 3);
    assert_eq!(x.call_stats().evicted, 3, "one table: the call tracker's");
    // Every call gets one root (and each INVITE its span); the two left
    // end with their INVITEs, unanswered when the capture ended.
    assert_eq!(spans.iter().filter(|s| s.name == names::CALL).count(), 5);
    let ended = |how: &str| {
        spans
            .iter()
            .filter(|s| s.attribute(CALL_END) == Some(&Value::from(how)))
            .count()
    };
    assert_eq!((ended("evicted"), ended("no_answer")), (3, 2));
}

#[test]
fn an_idle_call_is_closed_on_the_packet_clock() {
    let mut x = Exchange::with_calls(CallConfig {
        idle_timeout: Duration::from_secs(60),
        ..CallConfig::default()
    });
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
    let mut b = TraceBuilder::new("pbx1", TraceConfig::default(), Metrics::noop());
    let mut out = Vec::new();
    x.tick(30_000);
    for e in &x.events {
        b.on_event(e, &mut out);
    }
    assert!(out.iter().all(|s| s.name != names::CALL), "not idle yet");
    let seen = x.events.len();
    x.tick(61_000);
    for e in &x.events[seen..] {
        b.on_event(e, &mut out);
    }
    let root = out.iter().find(|s| s.name == names::CALL).expect("closed");
    assert_eq!(root.attribute(CALL_END), Some(&Value::from("idle")));
    assert_eq!(root.end, Timestamp(T0 + 20 * MS), "its last SIP");
    assert_eq!(b.stats().dialogs_idle, 1);
}

#[test]
fn register_transactions_become_a_registration_trace() {
    let mut x = challenged_registration();
    let (spans, stats) = build(&mut x, TraceConfig::default());
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
    let (spans, _) = build(&mut x, TraceConfig::default());
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
    let (spans, stats) = build(&mut x, TraceConfig::default());
    assert_eq!(spans.len(), 1);
    assert_eq!(spans[0].parent, None);
    assert_eq!(spans[0].trace_id, TraceId::for_call("ping-1"));
    assert_eq!(stats.call_traces, 0);
}
