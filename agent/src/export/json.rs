//! JSON lines: one object per message, transaction outcome and unreadable
//! payload, then one summary object. Field names follow the OpenTelemetry
//! `sip.*` attribute names of the trace model where one exists.

use std::io::Write;

use serde::Serialize;

use crate::packet::Meta;
use crate::pipeline::{Event, Stats};
use crate::sip::{MessageRecord, TimeoutCause, Transaction, TransactionState};

fn text(b: Option<&[u8]>) -> Option<String> {
    b.map(|b| String::from_utf8_lossy(b).into_owned())
}

#[derive(Serialize)]
struct MessageJson<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    meta: &'a Meta,
    start_line: String,
    method: Option<String>,
    status: Option<u16>,
    call_id: Option<String>,
    cseq: Option<u32>,
    cseq_method: Option<String>,
    from: Option<String>,
    from_tag: Option<String>,
    to: Option<String>,
    to_tag: Option<String>,
    via_branch: Option<String>,
    via_sent_by: Option<String>,
    via_received: Option<String>,
    via_rport: Option<Option<u16>>,
    contact: Option<String>,
    expires: Option<u32>,
    content_type: Option<String>,
    transaction: Option<u64>,
    retransmission: bool,
    response_time_ms: Option<f64>,
    defects: Vec<&'static str>,
}

fn message_json(r: &MessageRecord) -> MessageJson<'_> {
    let m = &r.message;
    MessageJson {
        r#type: "message",
        meta: &r.meta,
        start_line: m.start_line().into_owned(),
        method: m.method().map(|x| x.to_string()),
        status: m.status(),
        call_id: m.call_id().map(|c| c.into_owned()),
        cseq: m.cseq().map(|c| c.number),
        cseq_method: m.cseq().map(|c| c.method.to_string()),
        from: text(m.from_uri()),
        from_tag: text(m.from_tag()),
        to: text(m.to_uri()),
        to_tag: text(m.to_tag()),
        via_branch: text(m.branch()),
        via_sent_by: m.sent_by().map(|(h, p)| match p {
            Some(p) => format!("{}:{p}", String::from_utf8_lossy(h)),
            None => String::from_utf8_lossy(h).into_owned(),
        }),
        via_received: text(m.via_received()),
        via_rport: m.via_rport(),
        contact: text(m.contact_uri()),
        expires: m.expires(),
        content_type: text(m.content_type()),
        transaction: r.transaction,
        retransmission: r.retransmission,
        response_time_ms: r.response_time.map(|d| d.as_secs_f64() * 1000.0),
        defects: m.defects.iter().map(|d| d.as_str()).collect(),
    }
}

#[derive(Serialize)]
struct TransactionJson {
    r#type: &'static str,
    id: u64,
    method: String,
    cseq: u32,
    call_id: Option<String>,
    state: TransactionState,
    /// `completed`, or why it ended without a final response.
    outcome: &'static str,
    first_seen: crate::time::Timestamp,
    final_status: Option<u16>,
    provisional_statuses: Vec<u16>,
    response_time_ms: Option<f64>,
    request_seen: bool,
    request_retransmissions: u32,
    response_retransmissions: u32,
    acked: bool,
}

fn transaction_json(t: &Transaction, cause: Option<TimeoutCause>) -> TransactionJson {
    TransactionJson {
        r#type: "transaction",
        id: t.id,
        method: t.method.to_string(),
        cseq: t.cseq,
        call_id: t.call_id(),
        state: t.state,
        outcome: match cause {
            None => "completed",
            Some(TimeoutCause::NoFinalResponse) => "timed_out",
            Some(TimeoutCause::EndOfCapture) => "open_at_end_of_capture",
            Some(TimeoutCause::Evicted) => "evicted",
        },
        first_seen: t.first_seen,
        final_status: t.final_status(),
        provisional_statuses: t
            .provisionals
            .iter()
            .filter_map(|p| p.message.status())
            .collect(),
        response_time_ms: t.response_time.map(|d| d.as_secs_f64() * 1000.0),
        request_seen: t.request.is_some(),
        request_retransmissions: t.request_retransmissions,
        response_retransmissions: t.response_retransmissions,
        acked: t.ack.is_some(),
    }
}

#[derive(Serialize)]
struct MalformedJson<'a> {
    r#type: &'static str,
    #[serde(flatten)]
    meta: &'a Meta,
    reason: &'static str,
    first_line: String,
    length: usize,
}

/// Write one event as a JSON line. Completed transactions are written when
/// they complete (retransmissions seen later are in the message lines).
pub fn write_event(w: &mut impl Write, event: &Event) -> std::io::Result<()> {
    match event {
        // Its reports are in the call's line.
        Event::Rtcp(_) => return Ok(()),
        Event::Message(m) => serde_json::to_writer(&mut *w, &message_json(m))?,
        Event::TransactionCompleted(t) => {
            serde_json::to_writer(&mut *w, &transaction_json(t, None))?
        }
        Event::TransactionTimedOut { transaction, cause } => {
            serde_json::to_writer(&mut *w, &transaction_json(transaction, Some(*cause)))?
        }
        Event::Diagnosis(d) => serde_json::to_writer(
            &mut *w,
            &Typed {
                r#type: "diagnosis",
                value: d.as_ref(),
            },
        )?,
        Event::RegistrationAttempt(a) => serde_json::to_writer(&mut *w, &attempt_json(a))?,
        Event::Call(c) => serde_json::to_writer(&mut *w, &super::calls_json::call_json(c))?,
        Event::Malformed(m) => {
            let first = m.raw.split(|&c| c == b'\n').next().unwrap_or(&[]);
            serde_json::to_writer(
                &mut *w,
                &MalformedJson {
                    r#type: "malformed",
                    meta: &m.meta,
                    reason: m.reason.as_str(),
                    first_line: String::from_utf8_lossy(first).trim_end().to_string(),
                    length: m.raw.len(),
                },
            )?
        }
    }
    w.write_all(b"\n")
}

/// `{"type": TYPE, ...the fields of value}`: a finding is the
/// [`crate::diagnosis::Diagnosis`] fields (code, severity, at, summary,
/// evidence, remedy; diagnoses never hold secrets), the summary the
/// [`Stats`].
#[derive(Serialize)]
struct Typed<'a, T> {
    r#type: &'static str,
    #[serde(flatten)]
    value: &'a T,
}

/// [`Typed`] as bytes, without a line end (a HEP log record's payload).
pub fn typed(r#type: &'static str, value: &impl Serialize) -> Vec<u8> {
    serde_json::to_vec(&Typed { r#type, value }).unwrap_or_default()
}

/// A finished registration attempt. Transactions are listed by id, CSeq
/// and status only: the messages are in the message lines, and their
/// credentials never leave the host.
#[derive(Serialize)]
struct AttemptJson<'a> {
    r#type: &'static str,
    aor: &'a str,
    contact: Option<&'a str>,
    call_id: &'a str,
    client: std::net::SocketAddr,
    registrar: std::net::SocketAddr,
    first_cseq: u32,
    started: crate::time::Timestamp,
    ended: crate::time::Timestamp,
    outcome: &'a crate::analysis::registration::Outcome,
    auth_username: Option<&'a str>,
    realm: Option<&'a str>,
    transactions: Vec<AttemptTransactionJson>,
    diagnoses: Vec<crate::diagnosis::Code>,
}

#[derive(Serialize)]
struct AttemptTransactionJson {
    id: u64,
    cseq: u32,
    final_status: Option<u16>,
    request_retransmissions: u32,
}

fn attempt_json(a: &crate::analysis::registration::RegistrationAttempt) -> AttemptJson<'_> {
    AttemptJson {
        r#type: "registration",
        aor: &a.binding.aor,
        contact: a.binding.contact.as_deref(),
        call_id: &a.binding.call_id,
        client: a.client,
        registrar: a.registrar,
        first_cseq: a.first_cseq,
        started: a.started,
        ended: a.ended,
        outcome: &a.outcome,
        auth_username: a.auth_username.as_deref(),
        realm: a.realm.as_deref(),
        transactions: a
            .transactions
            .iter()
            .map(|t| AttemptTransactionJson {
                id: t.id,
                cseq: t.cseq,
                final_status: t.final_status(),
                request_retransmissions: t.request_retransmissions,
            })
            .collect(),
        diagnoses: a.diagnoses.iter().map(|d| d.code).collect(),
    }
}

/// One JSON line `{"type": TYPE, ...the fields of value}`.
pub fn write_typed(
    w: &mut impl Write,
    r#type: &'static str,
    value: &impl Serialize,
) -> std::io::Result<()> {
    #[derive(Serialize)]
    struct Typed<'a, T> {
        r#type: &'static str,
        #[serde(flatten)]
        value: &'a T,
    }
    serde_json::to_writer(&mut *w, &Typed { r#type, value })?;
    w.write_all(b"\n")
}

pub fn write_summary(w: &mut impl Write, stats: &Stats) -> std::io::Result<()> {
    write_typed(w, "summary", stats)
}
