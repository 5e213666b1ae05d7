//! One call lifecycle: a call's root span ends when, and as, the call
//! tracker's report says. Each test names the case where the builder's
//! own lifecycle (before #13) and the call report disagreed.

use std::time::Duration;

use super::*;
use crate::analysis::calls::{CallConfig, CallState};
use crate::export::spans::Value;
use crate::export::test_sip::{Exchange, MS, PBX, PHONE, T0, request, response};
use crate::pipeline::tests::call_script::CallScript;

/// `method` from the PBX to the phone at `ms` (branch from Call-ID and
/// CSeq, so its response finds it).
fn send(x: &mut Exchange, ms: u64, method: &str, cseq: u32, cid: &str, to_tag: bool) {
    let branch = format!("z9hG4bK-{cid}-{cseq}");
    x.msg(ms, PBX, PHONE, &request(method, cseq, &branch, cid, to_tag));
}

/// The phone's `status` to the PBX's request `cseq` `method`.
fn reply(x: &mut Exchange, ms: u64, status: &str, cseq: u32, method: &str, cid: &str) {
    let branch = format!("z9hG4bK-{cid}-{cseq}");
    x.msg(
        ms,
        PHONE,
        PBX,
        &response(status, cseq, method, &branch, cid, ""),
    );
}

fn invite(x: &mut Exchange, ms: u64, cid: &str) {
    send(x, ms, "INVITE", 1, cid, false);
}

fn answer(x: &mut Exchange, ms: u64, cid: &str) {
    reply(x, ms, "200 OK", 1, "INVITE", cid);
}

/// The events through one builder; each span with the index of the event
/// that produced it.
fn spans_by_event(events: &[Event]) -> Vec<(usize, SpanRecord)> {
    let mut b = TraceBuilder::new("pbx1", TraceConfig::default(), Metrics::noop());
    let mut all = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let mut out = Vec::new();
        b.on_event(e, &mut out);
        all.extend(out.into_iter().map(|s| (i, s)));
    }
    let mut rest = Vec::new();
    b.finish(&mut rest);
    all.extend(rest.into_iter().map(|s| (events.len(), s)));
    all
}

/// Every call has one root, emitted by the event that is the call's
/// closed report and ended as that report says; no other root.
fn assert_roots_follow_reports(events: &[Event]) -> Vec<(Arc<Call>, SpanRecord)> {
    let spans = spans_by_event(events);
    let roots: Vec<&(usize, SpanRecord)> = spans
        .iter()
        .filter(|(_, s)| s.name == names::CALL)
        .collect();
    let mut pairs = Vec::new();
    for (i, e) in events.iter().enumerate() {
        let Event::Call(c) = e else { continue };
        if !c.closed {
            continue;
        }
        let trace = TraceId::for_call(&c.call_id);
        let mine: Vec<&&(usize, SpanRecord)> =
            roots.iter().filter(|(_, s)| s.trace_id == trace).collect();
        assert_eq!(mine.len(), 1, "one root for {}: {roots:#?}", c.call_id);
        let (at, root) = mine[0];
        assert_eq!(
            *at, i,
            "{}: the root ends with the closed report",
            c.call_id
        );
        let end = c.end.expect("a closed report says how the call ended");
        assert_eq!(root.attribute(CALL_END), Some(&Value::from(end.label())));
        assert!(
            root.end <= c.at,
            "{}: the root ends by the report",
            c.call_id
        );
        pairs.push((c.clone(), root.clone()));
    }
    assert_eq!(pairs.len(), roots.len(), "no root without a call report");
    pairs
}

#[test]
fn calls_the_tracker_evicts_ends_or_times_out_end_their_roots_with_the_report() {
    // One call at a time: the second INVITE evicts the first, the third
    // the second (after its answer); the third idles out.
    let mut x = Exchange::with_calls(CallConfig {
        max_calls: 1,
        idle_timeout: Duration::from_secs(60),
        ..CallConfig::default()
    });
    invite(&mut x, 0, "a");
    invite(&mut x, 10, "b");
    answer(&mut x, 20, "b");
    invite(&mut x, 30, "c");
    answer(&mut x, 40, "c");
    x.tick(120_000);
    x.finish();
    let pairs = assert_roots_follow_reports(&x.events);
    let how: Vec<(&str, &str)> = pairs
        .iter()
        .map(|(c, r)| {
            let Some(Value::Str(v)) = r.attribute(CALL_END) else {
                panic!("no end")
            };
            (c.call_id.as_str(), v.as_str())
        })
        .collect();
    assert_eq!(how, [("a", "evicted"), ("b", "evicted"), ("c", "idle")]);
    assert_eq!(x.call_stats().evicted, 2);
    assert_eq!(x.call_stats().idle_closed, 1);
}

/// Before: the builder forgot an evicted call, then reopened it from its
/// INVITE's late final response: a second root with the same span id,
/// while the call report had closed the call once.
#[test]
fn an_evicted_calls_late_answer_opens_no_second_root() {
    let mut x = Exchange::with_calls(CallConfig {
        max_calls: 1,
        ..CallConfig::default()
    });
    invite(&mut x, 0, "a");
    invite(&mut x, 10, "b");
    answer(&mut x, 20, "a");
    x.finish();
    let pairs = assert_roots_follow_reports(&x.events);
    assert_eq!(pairs.len(), 2);
    let spans = spans_by_event(&x.events);
    let late = spans
        .iter()
        .find(|(_, s)| s.name == "INVITE 200")
        .map(|(_, s)| s)
        .unwrap();
    assert_eq!(
        late.trace_id,
        TraceId::for_call("a"),
        "still the call's trace"
    );
    assert_eq!(late.parent, None, "its root ended with the eviction");
}

/// Before: a re-INVITE (capture started mid-call) or an INVITE seen only
/// by its responses opened a `SIP call` root, though the call tracker
/// never saw the call start and reported none.
#[test]
fn a_reinvite_without_its_dialog_is_no_call_in_either_view() {
    let mut x = Exchange::new();
    send(&mut x, 0, "INVITE", 7, "mid-call", true);
    reply(&mut x, 15, "200 OK", 7, "INVITE", "mid-call");
    x.finish();
    assert!(!x.events.iter().any(|e| matches!(e, Event::Call(_))));
    let spans = spans_by_event(&x.events);
    assert_eq!(spans.len(), 1, "{spans:#?}");
    assert_eq!(spans[0].1.name, "INVITE 200");
    assert_eq!(spans[0].1.parent, None);
}

/// Before: the builder closed a call after 1 h without SIP, the call
/// tracker after 2 h. A call whose BYE came 90 minutes after the answer
/// (no session timer) had its root end `idle` and the BYE orphaned in a
/// trace of its own, while the call report ended it with the BYE. Now
/// there is one timeout, the tracker's.
#[test]
fn a_long_silent_call_is_one_root_ended_by_its_bye_not_a_second_timeout() {
    let silence = Duration::from_secs(90 * 60);
    assert!(silence < CallConfig::default().idle_timeout);
    let mut s = CallScript::new();
    s.answered_at(0, 1);
    let bye_ms = 1010 + silence.as_millis() as u64;
    s.bye(bye_ms, 2);
    s.finish();
    let pairs = assert_roots_follow_reports(&s.events);
    let (call, root) = &pairs[0];
    assert_eq!(call.end, Some(CallEnd::Bye));
    assert_eq!(root.end, Timestamp(T0 + (bye_ms + 5) * MS), "the BYE's 200");
    let spans = spans_by_event(&s.events);
    let bye = spans.iter().find(|(_, s)| s.name == "BYE 200").unwrap();
    assert_eq!(bye.1.parent, Some(root.span_id));

    // Past the tracker's own timeout both end it as idle, together.
    let mut idle = CallScript::new();
    idle.answered_at(0, 1);
    let past = CallConfig::default().idle_timeout + Duration::from_secs(20);
    idle.events
        .extend(idle.pipeline.tick(Timestamp(T0 + past.as_nanos() as u64)));
    let pairs = assert_roots_follow_reports(&idle.events);
    assert_eq!(pairs[0].0.end, Some(CallEnd::Idle));
}

/// Before: when the input ended right after a 401, the span said `failed`
/// ("not retried") while the call report said state `calling`, ended by
/// "capture ended", counted open at end.
#[test]
fn a_challenge_unanswered_at_the_end_is_a_failed_call_in_both_views() {
    let mut s = CallScript::new();
    s.challenged(0, 1, "SIP/2.0 401 Unauthorized");
    s.finish();
    let call = s.closed();
    assert_eq!(call.state, CallState::Failed);
    assert_eq!(call.end, Some(CallEnd::ChallengeNotRetried));
    assert_eq!(
        call.end_reason.as_deref(),
        Some("challenged and never retried")
    );
    let stats = s.pipeline.stats().calls;
    assert_eq!((stats.failed, stats.open_at_end), (1, 0));
    let (_, root) = &assert_roots_follow_reports(&s.events)[0];
    assert!(matches!(&root.status, Status::Error(m) if m.contains("not retried")));
}

/// Before, in both views: after the retry with credentials the call kept
/// the 407 as its status, so a callee ringing longer than the challenge
/// timeout (32 s) got the call closed as "challenged and never retried"
/// before its answer.
#[test]
fn a_retried_call_that_rings_past_the_challenge_timeout_is_answered() {
    let mut s = CallScript::new();
    s.challenged(0, 1, "SIP/2.0 407 Proxy Authentication Required");
    let invite = format!(
        "INVITE sip:200@{} SIP/2.0",
        crate::pipeline::tests::call_script::PBX
    );
    s.sip(20, true, &invite, "2 INVITE", false);
    s.sip(30, false, "SIP/2.0 180 Ringing", "2 INVITE", true);
    s.sip(45_000, false, "SIP/2.0 200 OK", "2 INVITE", true);
    s.bye(50_000, 3);
    s.finish();
    let call = s.closed();
    assert_eq!(call.end, Some(CallEnd::Bye));
    assert_eq!(call.answered, Some(Timestamp(T0 + 45_000 * MS)));
    let (_, root) = &assert_roots_follow_reports(&s.events)[0];
    assert_eq!(root.status, Status::Ok);
}

/// The ACK of a failed INVITE (RFC 3261 §17.1.1.3) comes after the call
/// is over: the root ends with the failure, as it did when the builder
/// closed it on the final response.
#[test]
fn a_failed_calls_root_ends_with_the_failure_not_its_ack() {
    let mut x = Exchange::new();
    invite(&mut x, 0, "busy");
    reply(&mut x, 30, "486 Busy Here", 1, "INVITE", "busy");
    send(&mut x, 35, "ACK", 1, "busy", true);
    x.tick(2_000);
    x.finish();
    let (call, root) = &assert_roots_follow_reports(&x.events)[0];
    assert_eq!(call.end, Some(CallEnd::Rejected));
    assert_eq!(root.end, Timestamp(T0 + 30 * MS));
    assert_eq!(
        root.attribute(attr::SIP_STATUS_CODE),
        Some(&Value::from(486u16))
    );
}

/// The pipeline's finish closes every call first; a builder whose input
/// stopped before the last report still ends the root, `open_at_end`.
#[test]
fn a_root_whose_input_stopped_before_the_last_report_ends_open_at_end() {
    let mut x = Exchange::new();
    invite(&mut x, 0, "cut");
    answer(&mut x, 20, "cut");
    let spans = spans_by_event(&x.events);
    let (at, root) = spans.iter().find(|(_, s)| s.name == names::CALL).unwrap();
    assert_eq!(*at, x.events.len(), "from the builder's finish");
    assert_eq!(root.attribute(CALL_END), Some(&Value::from("open_at_end")));
    assert_eq!(root.status, Status::Ok);
    assert_eq!(root.end, Timestamp(T0 + 20 * MS));
}
