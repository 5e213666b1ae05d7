//! Our [`SpanRecord`] to the SDK's `SpanData`, keeping our ids and the
//! packet-clock times exactly, and the attribute filter that keeps secrets
//! on the host.
//!
//! We build `SpanData` ourselves instead of going through a `Tracer`: the
//! SDK's tracer would draw ids from an `IdGenerator` and stamp times from
//! the wall clock, while our ids are derived from SIP identifiers (so
//! agents on different hosts agree) and our times are capture times.

use std::borrow::Cow;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use opentelemetry::trace::{self as ot, SpanContext, TraceFlags, TraceState};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanLinks};

use crate::export::spans::{Key, SpanKind, SpanRecord, Status, Value, attr};
use crate::time::Timestamp;

/// Drops secret-bearing attributes before anything leaves the host
/// (DESIGN: "Secrets never leave the host: no passwords, and no digest
/// `response` values in exports unless explicitly enabled").
///
/// A key is secret when any dot-separated segment names a secret
/// (`password`, `passwd`, `secret`, `ha1`, `authorization` — the raw
/// header carries the response) or when it is [`attr::SIP_AUTH_RESPONSE`]
/// and digest responses were not explicitly allowed. Passwords are never
/// allowed. Removed attributes are counted.
#[derive(Debug, Default)]
pub struct AttributeFilter {
    allow_digest_response: bool,
    redacted: AtomicU64,
}

const SECRET_SEGMENTS: &[&str] = &[
    "password",
    "passwd",
    "secret",
    "ha1",
    "authorization",
    "proxy_authorization",
];

impl AttributeFilter {
    pub fn new(allow_digest_response: bool) -> Self {
        Self {
            allow_digest_response,
            redacted: AtomicU64::new(0),
        }
    }

    /// Whether an attribute with this key may be exported.
    pub fn allows(&self, key: &str) -> bool {
        // Case-insensitive without a lower-cased copy: this runs for every
        // attribute of every exported span.
        if key
            .split(['.', '-'])
            .any(|seg| SECRET_SEGMENTS.iter().any(|s| s.eq_ignore_ascii_case(seg)))
        {
            return false;
        }
        self.allow_digest_response || !key.eq_ignore_ascii_case(attr::SIP_AUTH_RESPONSE)
    }

    /// Whether this attribute may be exported: its key (see [`Self::allows`])
    /// and, as a second line of defence, its value — a string that carries
    /// a whole digest credential (`Digest ... response="..."`, RFC 7616
    /// §3.4) is a secret whatever key a producer put it under.
    pub fn allows_attribute(&self, key: &str, value: &Value) -> bool {
        self.allows(key) && (self.allow_digest_response || !carries_digest_response(value))
    }

    /// Attributes removed so far.
    pub fn redacted(&self) -> u64 {
        self.redacted.load(Ordering::Relaxed)
    }

    fn filter(&self, attrs: &[(Key, Value)]) -> Vec<KeyValue> {
        let mut out = Vec::with_capacity(attrs.len());
        for (k, v) in attrs {
            if self.allows_attribute(k.as_str(), v) {
                out.push(KeyValue::new(k.0.clone(), to_otel_value(v)));
            } else {
                self.redacted.fetch_add(1, Ordering::Relaxed);
            }
        }
        out
    }

    /// Filter a record in place (used by the JSON-lines writer, which has
    /// the same obligation as OTLP).
    pub fn apply(&self, rec: &mut SpanRecord) {
        let before =
            rec.attributes.len() + rec.events.iter().map(|e| e.attributes.len()).sum::<usize>();
        rec.attributes
            .retain(|(k, v)| self.allows_attribute(k.as_str(), v));
        for e in &mut rec.events {
            e.attributes
                .retain(|(k, v)| self.allows_attribute(k.as_str(), v));
        }
        let after =
            rec.attributes.len() + rec.events.iter().map(|e| e.attributes.len()).sum::<usize>();
        self.redacted
            .fetch_add((before - after) as u64, Ordering::Relaxed);
    }
}

fn carries_digest_response(v: &Value) -> bool {
    let Value::Str(s) = v else { return false };
    let bytes = s.as_bytes();
    // The auth-param form `response = "..."`, not prose that mentions it.
    // ASCII case folding keeps byte offsets, so no lower-cased copy is made.
    find_ignore_case(bytes, b"digest").next().is_some()
        // A match ends on an ASCII byte, so `end` is a char boundary.
        && find_ignore_case(bytes, b"response")
            .any(|end| s[end..].trim_start().starts_with('='))
}

/// The end offsets of every ASCII-case-insensitive occurrence of `needle`
/// (not empty). Candidates are found by their first byte with memchr: this
/// runs over every string value of every exported span, and comparing a
/// window at every offset was a twentieth of the live agent's CPU under
/// load.
fn find_ignore_case<'a>(hay: &'a [u8], needle: &'a [u8]) -> impl Iterator<Item = usize> + 'a {
    let first = needle.first().copied().unwrap_or_default();
    memchr::memchr2_iter(first.to_ascii_lowercase(), first.to_ascii_uppercase(), hay)
        .filter(move |&i| {
            hay.get(i..i + needle.len())
                .is_some_and(|w| w.eq_ignore_ascii_case(needle))
        })
        .map(move |i| i + needle.len())
}

fn to_otel_value(v: &Value) -> opentelemetry::Value {
    match v {
        Value::Str(s) => opentelemetry::Value::String(s.clone().into()),
        Value::I64(i) => opentelemetry::Value::I64(*i),
        Value::F64(f) => opentelemetry::Value::F64(*f),
        Value::Bool(b) => opentelemetry::Value::Bool(*b),
    }
}

/// Packet-clock nanoseconds to `SystemTime`, exactly (the OTLP encoder
/// writes `time_unix_nano` from it without rounding).
pub(crate) fn to_system_time(ts: Timestamp) -> SystemTime {
    UNIX_EPOCH + Duration::from_nanos(ts.as_nanos())
}

/// The instrumentation scope every span is exported under.
pub(crate) fn scope() -> InstrumentationScope {
    InstrumentationScope::builder("sipscope")
        .with_version(env!("CARGO_PKG_VERSION"))
        .build()
}

/// Convert one record. Trace and span ids are carried over unchanged; the
/// span is marked sampled (we export everything we built).
pub(crate) fn to_span_data(
    rec: &SpanRecord,
    filter: &AttributeFilter,
    scope: &InstrumentationScope,
) -> SpanData {
    let span_context = SpanContext::new(
        ot::TraceId::from_bytes(rec.trace_id.0),
        ot::SpanId::from_bytes(rec.span_id.0),
        TraceFlags::SAMPLED,
        false,
        TraceState::default(),
    );
    let mut events = SpanEvents::default();
    events.events = rec
        .events
        .iter()
        .map(|e| {
            ot::Event::new(
                e.name.clone(),
                to_system_time(e.at),
                filter.filter(&e.attributes),
                0,
            )
        })
        .collect();
    SpanData {
        span_context,
        parent_span_id: rec
            .parent
            .map(|p| ot::SpanId::from_bytes(p.0))
            .unwrap_or(ot::SpanId::INVALID),
        parent_span_is_remote: false,
        span_kind: match rec.kind {
            SpanKind::Internal => ot::SpanKind::Internal,
            SpanKind::Client => ot::SpanKind::Client,
            SpanKind::Server => ot::SpanKind::Server,
        },
        name: rec.name.clone(),
        start_time: to_system_time(rec.start),
        end_time: to_system_time(rec.end.max(rec.start)),
        attributes: filter.filter(&rec.attributes),
        dropped_attributes_count: 0,
        events,
        links: SpanLinks::default(),
        status: match &rec.status {
            Status::Unset => ot::Status::Unset,
            Status::Ok => ot::Status::Ok,
            Status::Error(msg) => ot::Status::Error {
                description: Cow::Owned(msg.clone()),
            },
        },
        instrumentation_scope: scope.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::export::spans::{SpanEvent, SpanId, TraceId};

    #[test]
    fn secrets_are_never_allowed_and_the_response_only_on_request() {
        let f = AttributeFilter::new(false);
        for k in [
            "sip.auth.password",
            "sip.auth.response",
            "x.secret",
            "sip.authorization",
            "SIP.Auth.HA1",
        ] {
            assert!(!f.allows(k), "{k}");
        }
        for k in [
            "sip.auth.username",
            "sip.auth.realm",
            "sip.auth.nonce",
            "sip.method",
        ] {
            assert!(f.allows(k), "{k}");
        }
        let header: Value =
            r#"Digest username="1001", realm="x", response="6629fae49393a05397450978507c4ef1""#
                .into();
        assert!(!f.allows_attribute("sip.note", &header));
        let prose: Value = "the Digest response does not match the password".into();
        assert!(f.allows_attribute(attr::DIAGNOSIS_SUMMARY, &prose));
        let spaced: Value = "Digest username=\"a\", response = \"abc\"".into();
        assert!(!f.allows_attribute("sip.note", &spaced));
        let shouted: Value = "dIGEST username=\"a\",RESPONSE=\"abc\"".into();
        assert!(!f.allows_attribute("sip.note", &shouted));
        // A candidate byte too close to the end for a whole match.
        let cut: Value = "response=1 dige".into();
        assert!(f.allows_attribute("sip.note", &cut));
        let f = AttributeFilter::new(true);
        assert!(f.allows_attribute("sip.note", &header));
        assert!(f.allows("sip.auth.response"));
        assert!(!f.allows("sip.auth.password"));
    }

    #[test]
    fn conversion_keeps_ids_times_and_counts_redactions() {
        let trace = TraceId::for_call("c");
        let root = SpanId::for_root(trace, "h");
        let rec = SpanRecord {
            trace_id: trace,
            span_id: SpanId::for_transaction(trace, "h", "z9hG4bK1", "INVITE", 1),
            parent: Some(root),
            name: "INVITE".into(),
            kind: SpanKind::Client,
            start: Timestamp(1_700_000_000_123_456_789),
            end: Timestamp(1_700_000_000_223_456_789),
            attributes: vec![
                (attr::SIP_METHOD.into(), "INVITE".into()),
                (
                    attr::SIP_AUTH_RESPONSE.into(),
                    "6629fae49393a05397450978507c4ef1".into(),
                ),
            ],
            events: vec![SpanEvent {
                name: "sip.challenge".into(),
                at: Timestamp(1_700_000_000_200_000_000),
                attributes: vec![("sip.auth.password".into(), "hunter2".into())],
            }],
            status: Status::Ok,
        };
        let f = AttributeFilter::new(false);
        let d = to_span_data(&rec, &f, &scope());
        assert_eq!(d.span_context.trace_id().to_bytes(), trace.0);
        assert_eq!(d.span_context.span_id().to_bytes(), rec.span_id.0);
        assert_eq!(d.parent_span_id.to_bytes(), root.0);
        assert_eq!(
            d.start_time.duration_since(UNIX_EPOCH).unwrap().as_nanos(),
            1_700_000_000_123_456_789
        );
        assert_eq!(d.attributes.len(), 1);
        assert!(d.events.events[0].attributes.is_empty());
        assert_eq!(f.redacted(), 2);
    }
}
