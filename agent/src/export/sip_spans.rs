//! SIP facts to spans: one span per transaction (RFC 3261 §17) and the
//! spans of one registration attempt (RFC 3261 §10.2), following the trace
//! model of docs/tracing.md. Pure functions on the packet clock; grouping
//! of transactions into call traces is [`super::trace_builder`].
//!
//! Secrets: these spans carry no password and no Authorization value. A
//! request's digest `response` is put under `sip.auth.response` only for
//! the export queue's [`super::otel::AttributeFilter`] to remove it
//! (counted) unless `--otlp-include-digest-response` allowed it.

use std::net::SocketAddr;

use crate::analysis::digest::{Challenge, Credentials};
use crate::analysis::registration::{Outcome, RegistrationAttempt};
use crate::diagnosis::Diagnosis;
use crate::export::spans::{
    Key, SpanId, SpanKind, SpanRecord, Status, TraceId, Value, attr, event, names,
};
use crate::sip::{MessageRecord, SipUri, TimeoutCause, Transaction, TransactionId, TransactionKey};
use crate::{packet::Direction, time::Timestamp};

/// How a transaction ended, as far as its span is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum TransactionEnd {
    /// A final response arrived (`Event::TransactionCompleted`).
    Completed,
    /// No final response (`Event::TransactionTimedOut`).
    TimedOut(TimeoutCause),
}

/// The top Via branch of a transaction, the part of its span id that
/// tells transactions of one trace apart (RFC 3261 §17.1.3).
pub(crate) fn branch_of(t: &Transaction) -> String {
    match &t.key {
        TransactionKey::Branch { branch, .. } => String::from_utf8_lossy(branch).into_owned(),
        TransactionKey::Legacy { .. } => String::new(),
    }
}

fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
}

/// Span kind from the observed host's point of view: it sent the request
/// (`Client`) or received it (`Server`); a capture file does not say.
fn kind_of(req: Option<&MessageRecord>) -> SpanKind {
    match req.map(|r| r.meta.direction) {
        Some(Direction::Egress) => SpanKind::Client,
        Some(Direction::Ingress) => SpanKind::Server,
        _ => SpanKind::Internal,
    }
}

/// The remote peer: the request's destination unless the host received
/// the request (then its source). Without a request, the response's source.
fn peer_of(t: &Transaction) -> Option<SocketAddr> {
    if let Some(r) = &t.request {
        return Some(match r.meta.direction {
            Direction::Ingress => r.meta.src,
            _ => r.meta.dst,
        });
    }
    t.final_response
        .as_ref()
        .or(t.provisionals.first())
        .map(|r| r.meta.src)
}

/// One span for one transaction: from the first capture of the request to
/// its first final response (or, without one, to the last message seen),
/// named `<METHOD> <status>` / `<METHOD> (no response)`.
///
/// Events: `sip.retransmission` at each retransmitted request time given
/// in `retransmissions` (the pipeline reports them as messages),
/// `sip.provisional` per distinct provisional response, `sip.challenge`
/// for a 401/407 (RFC 3261 §22.1). Status `Error` for a final response
/// of 400 or more other than a challenge, and for a transaction that timed out;
/// a challenge is the normal first half of a digest exchange and stays
/// `Unset` (the registration or call root judges the outcome).
pub(crate) fn transaction_span(
    t: &Transaction,
    end: TransactionEnd,
    trace: TraceId,
    parent: Option<SpanId>,
    observer: &str,
    retransmissions: &[Timestamp],
) -> SpanRecord {
    let method = t.method.as_str().to_owned();
    let status = t.final_status();
    let req = t.request.as_deref();
    let fin = t.final_response.as_deref();
    let start = req.map_or(t.first_seen, |r| r.meta.ts);
    let end_ts = fin.map_or(t.last_seen, |r| r.meta.ts).max(start);
    let span_id = SpanId::for_transaction(trace, observer, &branch_of(t), &method, t.cseq);
    let mut span = SpanRecord::new(
        trace,
        span_id,
        parent,
        names::transaction(&method, status),
        kind_of(req),
        start,
        end_ts,
    )
    .with(attr::SIP_METHOD, method.as_str())
    .with(attr::SIP_CSEQ, t.cseq);
    if let Some(cid) = t.call_id() {
        span = span.with(attr::SIP_CALL_ID, cid);
    }
    // From/To as sent in the request (else the response: same values).
    if let Some(m) = req.or(fin).map(|r| &r.message) {
        if let Some(v) = m.header("From") {
            span = span.with(attr::SIP_FROM, v);
        }
        if let Some(v) = m.header("To") {
            span = span.with(attr::SIP_TO, v);
        }
    }
    if let Some(r) = req {
        if let Some(c) = text(r.message.contact_uri()) {
            span = span.with(attr::SIP_CONTACT, c);
        }
        // RFC 3261 §8.1.1.1: the Request-URI names the server (registrar,
        // proxy or UAS) the request is for.
        if let Some(uri) = r
            .message
            .request_uri()
            .and_then(|u| SipUri::parse(u.as_bytes()))
        {
            span = span.with(attr::SERVER_ADDRESS, uri.host.clone());
            if let Some(p) = uri.port {
                span = span.with(attr::SERVER_PORT, p);
            }
        }
        span = span.with(
            attr::NETWORK_TRANSPORT,
            r.meta.transport.network_transport(),
        );
        if let Some(c) = digest_answer(r) {
            span = span.with(attr::SIP_AUTH_RESPONSE, c.response.expose_secret());
        }
    } else if let Some(r) = fin {
        span = span.with(
            attr::NETWORK_TRANSPORT,
            r.meta.transport.network_transport(),
        );
    }
    if let Some(peer) = peer_of(t) {
        span = span
            .with(attr::NETWORK_PEER_ADDRESS, peer.ip().to_string())
            .with(attr::NETWORK_PEER_PORT, peer.port());
    }
    let branch = branch_of(t);
    if !branch.is_empty() {
        span = span.with(attr::SIP_VIA_BRANCH, branch);
    }
    if t.request_retransmissions > 0 {
        span = span.with(attr::SIP_RETRANSMISSIONS, t.request_retransmissions);
    }
    for at in retransmissions {
        span.event(
            event::RETRANSMISSION,
            *at,
            vec![(attr::SIP_CSEQ.into(), t.cseq.into())],
        );
    }
    for p in &t.provisionals {
        if let Some(code) = p.message.status() {
            let mut attrs: Vec<(Key, Value)> = vec![(attr::SIP_STATUS_CODE.into(), code.into())];
            if let Some(r) = p.message.reason_phrase() {
                attrs.push((attr::SIP_REASON.into(), r.into_owned().into()));
            }
            span.event(event::PROVISIONAL, p.meta.ts, attrs);
        }
    }
    match (fin, end) {
        (Some(f), _) => {
            let code = status.unwrap_or(0);
            let reason = f.message.reason_phrase().unwrap_or_default().into_owned();
            span = span.with(attr::SIP_STATUS_CODE, code);
            if !reason.is_empty() {
                span = span.with(attr::SIP_REASON, reason.clone());
            }
            if let Some(e) = f.message.expires() {
                span = span.with(attr::SIP_EXPIRES, e);
            }
            if code == 401 || code == 407 {
                span.event(event::CHALLENGE, f.meta.ts, challenge_attributes(f, code));
            } else if code >= 400 {
                span.status = Status::Error(format!("{code} {reason}").trim_end().to_owned());
            }
        }
        (None, TransactionEnd::TimedOut(TimeoutCause::NoFinalResponse)) => {
            span.status = Status::Error("no final response".into());
        }
        (None, TransactionEnd::TimedOut(TimeoutCause::Evicted)) => {
            span.status = Status::Error("no final response (evicted from a full table)".into());
        }
        // End of capture: it may have been answered later; no judgement.
        (None, _) => {}
    }
    span
}

/// The digest credentials a request answers a challenge with
/// (Authorization or Proxy-Authorization, RFC 3261 §22.2-22.3, RFC 7616
/// §3.4).
fn digest_answer(r: &MessageRecord) -> Option<Credentials> {
    ["Authorization", "Proxy-Authorization"]
        .iter()
        .filter_map(|h| r.message.header(h))
        .find_map(|v| Credentials::parse(&v).ok())
}

/// realm, nonce, algorithm, stale of the challenge in a 401/407
/// (RFC 7616 §3.3). Never the client's credentials.
fn challenge_attributes(f: &MessageRecord, code: u16) -> Vec<(Key, Value)> {
    let header = if code == 407 {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    let mut attrs: Vec<(Key, Value)> = vec![(attr::SIP_STATUS_CODE.into(), code.into())];
    if let Some(c) = f
        .message
        .header(header)
        .and_then(|v| Challenge::parse(&v).ok())
    {
        attrs.push((attr::SIP_AUTH_REALM.into(), c.realm.clone().into()));
        attrs.push((attr::SIP_AUTH_NONCE.into(), c.nonce.clone().into()));
        attrs.push((
            attr::SIP_AUTH_ALGORITHM.into(),
            c.algorithm().as_str().to_owned().into(),
        ));
        attrs.push((attr::SIP_AUTH_STALE.into(), c.stale.into()));
    }
    attrs
}

/// A diagnosis as a span event (`sipscope.diagnosis`) at the time it was
/// raised: code, severity, summary, the general remedy.
pub(crate) fn diagnosis_event(span: &mut SpanRecord, d: &Diagnosis) {
    span.event(
        event::DIAGNOSIS,
        d.at,
        vec![
            (attr::DIAGNOSIS_CODE.into(), d.code.as_str().into()),
            (attr::DIAGNOSIS_SEVERITY.into(), d.severity.as_str().into()),
            (attr::DIAGNOSIS_SUMMARY.into(), d.summary.clone().into()),
            (
                attr::DIAGNOSIS_REMEDY.into(),
                d.remedy.general.to_string().into(),
            ),
        ],
    );
}

/// The trace of one registration attempt (docs/tracing.md "Trace model"):
/// a root span `SIP registration` from the attempt's first REGISTER to its
/// outcome, with `sipscope.diagnosis` events, status `Ok` on success and
/// `Error` otherwise, followed by one child span per REGISTER transaction
/// (challenges and retransmissions as events on the children).
///
/// The trace id is [`TraceId::for_registration`] of the binding's Call-ID,
/// the attempt's first CSeq and the AOR, so every agent that sees the
/// attempt joins the same trace; `observer` (the agent's host name) makes
/// the span ids of each agent distinct. The first span is the root.
#[cfg(test)]
pub(crate) fn spans_for_registration(a: &RegistrationAttempt, observer: &str) -> Vec<SpanRecord> {
    spans_for_registration_with(a, observer, &|_| &[])
}

/// [`spans_for_registration`] with the capture times of each transaction's
/// retransmitted requests (the pipeline reports them as messages, the
/// [`Transaction`] only counts them), for `sip.retransmission` events.
pub(crate) fn spans_for_registration_with<'a>(
    a: &RegistrationAttempt,
    observer: &str,
    retransmissions: &dyn Fn(TransactionId) -> &'a [Timestamp],
) -> Vec<SpanRecord> {
    let trace = TraceId::for_registration(&a.binding.call_id, a.first_cseq, &a.binding.aor);
    let root_id = SpanId::for_root(trace, observer);
    let mut root = SpanRecord::new(
        trace,
        root_id,
        None,
        names::REGISTRATION,
        SpanKind::Internal,
        a.started,
        a.ended.max(a.started),
    )
    .with(attr::SIP_CALL_ID, a.binding.call_id.as_str())
    .with(attr::SIP_TO, a.binding.aor.as_str())
    .with(attr::SIP_CSEQ, a.first_cseq)
    .with(attr::NETWORK_PEER_ADDRESS, a.registrar.ip().to_string())
    .with(attr::NETWORK_PEER_PORT, a.registrar.port())
    .with(attr::REGISTRATION_OUTCOME, a.outcome.label())
    .with(attr::OBSERVER, observer);
    if let Some(c) = &a.binding.contact {
        root = root.with(attr::SIP_CONTACT, c.as_str());
    }
    if let Some(u) = &a.auth_username {
        root = root.with(attr::SIP_AUTH_USERNAME, u.as_str());
    }
    if let Some(r) = &a.realm {
        root = root.with(attr::SIP_AUTH_REALM, r.as_str());
    }
    if let Some(host) = SipUri::parse(a.binding.aor.as_bytes()).map(|u| u.host) {
        root = root.with(attr::SERVER_ADDRESS, host);
    }
    root.status = match &a.outcome {
        Outcome::Registered { expires } => {
            root = root.with(attr::SIP_EXPIRES, *expires);
            Status::Ok
        }
        Outcome::Deregistered => Status::Ok,
        Outcome::Rejected { status, reason } => {
            root = root.with(attr::SIP_STATUS_CODE, *status);
            Status::Error(format!("rejected: {status} {reason}").trim_end().to_owned())
        }
        Outcome::GaveUp { status } => {
            root = root.with(attr::SIP_STATUS_CODE, *status);
            Status::Error(format!("gave up after {status} challenge"))
        }
        Outcome::TimedOut => Status::Error("no final response".into()),
    };
    for d in &a.diagnoses {
        diagnosis_event(&mut root, d);
    }
    let mut out = Vec::with_capacity(1 + a.transactions.len());
    out.push(root);
    for t in &a.transactions {
        let end = if t.final_response.is_some() {
            TransactionEnd::Completed
        } else {
            TransactionEnd::TimedOut(TimeoutCause::NoFinalResponse)
        };
        out.push(transaction_span(
            t,
            end,
            trace,
            Some(root_id),
            observer,
            retransmissions(t.id),
        ));
    }
    out
}

#[cfg(test)]
#[path = "sip_spans_tests.rs"]
mod tests;
