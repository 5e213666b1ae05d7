//! Registration traces from hand-built attempts (the shape the registration
//! tracker produces), transactions built by the real parser and table.

use std::sync::Arc;

use super::*;
use crate::analysis::registration::Binding;
use crate::diagnosis::Code;
use crate::export::test_sip::{
    Exchange, MS, PBX, REGISTRAR, T0, challenged_registration, register, response,
};

fn attempt(x: &Exchange, outcome: Outcome, diagnoses: Vec<Diagnosis>) -> RegistrationAttempt {
    let transactions = x.transactions();
    RegistrationAttempt {
        binding: Binding {
            aor: "sip:1001@sip.provider.example".into(),
            contact: Some("sip:1001@192.0.2.10:5060".into()),
            call_id: "reg-1@192.0.2.10".into(),
        },
        client: PBX.parse().unwrap(),
        registrar: REGISTRAR.parse().unwrap(),
        first_cseq: 1,
        started: transactions[0].first_seen,
        ended: transactions
            .last()
            .unwrap()
            .final_response
            .as_ref()
            .map_or(Timestamp(0), |r| r.meta.ts),
        transactions,
        outcome,
        auth_username: Some("1001".into()),
        realm: Some("sip.provider.example".into()),
        diagnoses,
    }
}

fn str_attr<'a>(s: &'a SpanRecord, k: &str) -> Option<&'a str> {
    match s.attribute(k) {
        Some(Value::Str(v)) => Some(v),
        _ => None,
    }
}

fn int_attr(s: &SpanRecord, k: &str) -> Option<i64> {
    match s.attribute(k) {
        Some(Value::I64(v)) => Some(*v),
        _ => None,
    }
}

#[test]
fn a_challenged_registration_is_one_trace_with_a_root_and_two_transactions() {
    let x = challenged_registration();
    let a = attempt(&x, Outcome::Registered { expires: 3600 }, vec![]);
    let spans = spans_for_registration(&a, "pbx1");
    assert_eq!(spans.len(), 3);
    let (root, first, second) = (&spans[0], &spans[1], &spans[2]);
    let trace = TraceId::for_registration("reg-1@192.0.2.10", 1, "sip:1001@sip.provider.example");
    assert!(spans.iter().all(|s| s.trace_id == trace));
    assert_eq!(root.span_id, SpanId::for_root(trace, "pbx1"));
    assert_eq!(root.parent, None);
    assert_eq!(root.name, names::REGISTRATION);
    assert_eq!(root.status, Status::Ok);
    assert_eq!(
        (root.start, root.end),
        (Timestamp(T0), Timestamp(T0 + 561 * MS))
    );
    assert_eq!(
        str_attr(root, attr::REGISTRATION_OUTCOME),
        Some("registered")
    );
    assert_eq!(int_attr(root, attr::SIP_EXPIRES), Some(3600));
    assert_eq!(str_attr(root, attr::SIP_AUTH_USERNAME), Some("1001"));

    assert_eq!(first.parent, Some(root.span_id));
    assert_eq!(first.name, "REGISTER 401");
    assert_eq!(first.kind, SpanKind::Client);
    assert_eq!(
        first.span_id,
        SpanId::for_transaction(trace, "pbx1", "z9hG4bK-r1", "REGISTER", 1)
    );
    assert_eq!(
        (first.start, first.end),
        (Timestamp(T0), Timestamp(T0 + 520 * MS))
    );
    assert_eq!(first.status, Status::Unset, "a challenge is not a failure");
    assert_eq!(int_attr(first, attr::SIP_RETRANSMISSIONS), Some(1));
    assert_eq!(
        str_attr(first, attr::NETWORK_PEER_ADDRESS),
        Some("198.51.100.20")
    );
    assert_eq!(
        str_attr(first, attr::SERVER_ADDRESS),
        Some("sip.provider.example")
    );
    assert_eq!(str_attr(first, attr::NETWORK_TRANSPORT), Some("udp"));
    let challenge = first
        .events
        .iter()
        .find(|e| e.name == event::CHALLENGE)
        .expect("challenge event");
    assert_eq!(challenge.at, Timestamp(T0 + 520 * MS));
    assert!(
        challenge
            .attributes
            .contains(&(attr::SIP_AUTH_REALM.into(), "sip.provider.example".into()))
    );

    assert_eq!(second.parent, Some(root.span_id));
    assert_eq!(second.name, "REGISTER 200");
    assert_eq!(int_attr(second, attr::SIP_CSEQ), Some(2));
    assert_eq!(int_attr(second, attr::SIP_STATUS_CODE), Some(200));
    assert_eq!(
        (second.start, second.end),
        (Timestamp(T0 + 530 * MS), Timestamp(T0 + 561 * MS))
    );
    // The digest response in the REGISTER's Authorization is only ever
    // `sip.auth.response`, on the span of the request that carried it, and
    // the export filter removes it unless it was explicitly allowed.
    let holders: Vec<(&str, &str)> = spans
        .iter()
        .flat_map(|s| s.attributes.iter().map(move |(k, v)| (s, k, v)))
        .filter(|(_, _, v)| matches!(v, Value::Str(v) if v.contains("0123456789abcdef")))
        .map(|(s, k, _)| (&*s.name, k.as_str()))
        .collect();
    assert_eq!(holders, vec![("REGISTER 200", attr::SIP_AUTH_RESPONSE)]);
    let mut exported = second.clone();
    crate::export::otel::AttributeFilter::new(false).apply(&mut exported);
    assert!(
        exported
            .attributes
            .iter()
            .all(|(k, _)| k.as_str() != attr::SIP_AUTH_RESPONSE)
    );
    let mut allowed = second.clone();
    crate::export::otel::AttributeFilter::new(true).apply(&mut allowed);
    assert_eq!(allowed.attributes, second.attributes);
}

#[test]
fn a_rejected_attempt_has_an_error_root_with_its_diagnoses_as_events() {
    let mut x = Exchange::new();
    x.msg(0, PBX, REGISTRAR, &register(7, "z9hG4bK-f1", true))
        .msg(
            40,
            REGISTRAR,
            PBX,
            &response(
                "403 Forbidden",
                7,
                "REGISTER",
                "z9hG4bK-f1",
                "reg-1@192.0.2.10",
                "",
            ),
        );
    let d = Diagnosis::new(
        Code::AuthForbiddenAfterAuth,
        Timestamp(T0 + 40 * MS),
        "403 to a REGISTER that carried credentials",
    );
    let mut a = attempt(
        &x,
        Outcome::Rejected {
            status: 403,
            reason: "Forbidden".into(),
        },
        vec![d],
    );
    a.first_cseq = 7;
    let spans = spans_for_registration(&a, "sbc1");
    let root = &spans[0];
    assert_eq!(
        root.trace_id,
        TraceId::for_registration("reg-1@192.0.2.10", 7, "sip:1001@sip.provider.example")
    );
    assert_eq!(root.status, Status::Error("rejected: 403 Forbidden".into()));
    assert_eq!(str_attr(root, attr::REGISTRATION_OUTCOME), Some("rejected"));
    let ev = &root.events[0];
    assert_eq!(ev.name, event::DIAGNOSIS);
    assert_eq!(ev.at, Timestamp(T0 + 40 * MS));
    assert!(ev.attributes.contains(&(
        attr::DIAGNOSIS_CODE.into(),
        "auth.forbidden_after_auth".into()
    )));
    assert!(
        ev.attributes
            .iter()
            .any(|(k, _)| k.as_str() == attr::DIAGNOSIS_SUMMARY)
    );
    assert_eq!(spans[1].name, "REGISTER 403");
    assert_eq!(spans[1].status, Status::Error("403 Forbidden".into()));
}

#[test]
fn two_observers_share_the_trace_but_not_the_spans() {
    let x = challenged_registration();
    let a = attempt(&x, Outcome::Registered { expires: 3600 }, vec![]);
    let p = spans_for_registration(&a, "pbx1");
    let s = spans_for_registration(&a, "sbc1");
    assert_eq!(p[0].trace_id, s[0].trace_id);
    for (a, b) in p.iter().zip(&s) {
        assert_ne!(a.span_id, b.span_id);
    }
    // And the same observer reproduces its ids (idempotent re-export).
    assert_eq!(p, spans_for_registration(&a, "pbx1"));
}

#[test]
fn a_timed_out_attempt_and_a_silent_transaction_are_errors() {
    let mut x = Exchange::new();
    x.msg(0, PBX, REGISTRAR, &register(1, "z9hG4bK-t1", false));
    x.finish();
    let t: Vec<Arc<Transaction>> = x.transactions();
    assert_eq!(t.len(), 1);
    let span = transaction_span(
        &t[0],
        TransactionEnd::TimedOut(TimeoutCause::NoFinalResponse),
        TraceId::for_call("reg-1@192.0.2.10"),
        None,
        "pbx1",
        &[],
    );
    assert_eq!(span.name, "REGISTER (no response)");
    assert_eq!(span.status, Status::Error("no final response".into()));
    let mut a = attempt(&x, Outcome::TimedOut, vec![]);
    a.ended = a.started;
    let spans = spans_for_registration(&a, "pbx1");
    assert_eq!(spans[0].status, Status::Error("no final response".into()));
    assert_eq!(
        str_attr(&spans[0], attr::REGISTRATION_OUTCOME),
        Some("timed_out")
    );
    // End of capture is no verdict on the transaction itself.
    let open = transaction_span(
        &t[0],
        TransactionEnd::TimedOut(TimeoutCause::EndOfCapture),
        TraceId::for_call("x"),
        None,
        "pbx1",
        &[],
    );
    assert_eq!(open.status, Status::Unset);
}
