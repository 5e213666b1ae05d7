//! The domain span model: what the analysis core hands to the exporters.
//!
//! A [`SpanRecord`] is a finished span on the packet clock, with identifiers
//! derived from SIP identifiers (see [`TraceId`] and [`SpanId`]). It knows
//! nothing about OpenTelemetry's SDK types: `export::otel` converts it to
//! OTLP, `export::otel::jsonl` writes it as one JSON line. Keeping the model
//! ours means an OpenTelemetry version bump touches one module, and the core
//! stays testable without any exporter.
//!
//! Trace model (DESIGN "Trace model"): one trace per registration attempt
//! (root span from the first REGISTER to the outcome, one child span per
//! transaction, events for challenges, retransmissions and diagnoses) and
//! one trace per call. docs/tracing.md is the user-facing reference.

use std::borrow::Cow;
use std::fmt;

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::time::Timestamp;

/// Version tag mixed into every derived identifier. Changing the derivation
/// (fields, order, normalisation) must bump it, so that agents of different
/// versions never silently disagree while looking as if they agree.
pub const ID_DERIVATION_VERSION: &str = "sipscope-id-v1";

/// A 16-byte W3C/OpenTelemetry trace id.
///
/// Derived deterministically from SIP identifiers so that every agent that
/// observes the same exchange (a PBX and the SBC or proxy in front of it)
/// computes the same id and the backend joins their spans into one trace.
///
/// Derivation (version [`ID_DERIVATION_VERSION`]): SHA-256 over
///
/// ```text
/// field("sipscope-id-v1") || field(kind) || field(f1) || field(f2) ...
/// field(x) = u32 big-endian byte length of x || bytes of x
/// ```
///
/// truncated to the first 16 bytes. `kind` is `"registration"` or `"call"`.
/// Length prefixes make the encoding unambiguous (no separator can be forged
/// from inside a header value). An all-zero result, invalid in W3C Trace
/// Context, is replaced by `...01` (probability 2^-128; kept for totality).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TraceId(pub [u8; 16]);

/// An 8-byte OpenTelemetry span id, derived like [`TraceId`] (first 8 bytes
/// of the SHA-256, kind `"span.root"`, `"span.transaction"` or
/// `"span.media"`).
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SpanId(pub [u8; 8]);

fn derive(kind: &str, fields: &[&[u8]]) -> [u8; 32] {
    let mut h = Sha256::new();
    for f in [ID_DERIVATION_VERSION.as_bytes(), kind.as_bytes()]
        .into_iter()
        .chain(fields.iter().copied())
    {
        // SIP header values are far below 4 GiB; saturate rather than wrap.
        let len = u32::try_from(f.len()).unwrap_or(u32::MAX);
        h.update(len.to_be_bytes());
        h.update(f);
    }
    h.finalize().into()
}

impl TraceId {
    /// Trace of one registration attempt (RFC 3261 §10.2): the REGISTERs a
    /// UA sends for one binding, challenge and answer included, share the
    /// Call-ID (§10.2: "SHOULD use the same Call-ID for all registrations
    /// during a single boot cycle") and count CSeq up from the attempt's
    /// first request. `first_cseq` is the CSeq number of the attempt's
    /// first REGISTER; `aor` the address of record (the To URI) and is
    /// normalised by [`normalize_aor`].
    ///
    /// The Call-ID is compared byte for byte (§20.8: case-sensitive), so it
    /// is hashed exactly as seen on the wire, trimmed of surrounding
    /// whitespace. A later refresh of the same binding starts a new attempt
    /// with a higher first CSeq, hence a new trace.
    pub fn for_registration(call_id: &str, first_cseq: u32, aor: &str) -> Self {
        let cseq = first_cseq.to_string();
        let aor = normalize_aor(aor);
        let d = derive(
            "registration",
            &[call_id.trim().as_bytes(), cseq.as_bytes(), aor.as_bytes()],
        );
        Self::from_digest(&d)
    }

    /// Trace of one call (INVITE dialog, RFC 3261 §12): keyed by Call-ID
    /// only, because every agent on the same signalling leg sees the same
    /// Call-ID, while tags may not yet exist (no To tag before the first
    /// response). A B2BUA creates a new Call-ID per leg, so each leg is its
    /// own trace (see docs/tracing.md).
    pub fn for_call(call_id: &str) -> Self {
        let d = derive("call", &[call_id.trim().as_bytes()]);
        Self::from_digest(&d)
    }

    fn from_digest(d: &[u8; 32]) -> Self {
        let mut id = [0u8; 16];
        id.copy_from_slice(&d[..16]);
        if id == [0; 16] {
            id[15] = 1;
        }
        Self(id)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

impl SpanId {
    /// The root span of a trace as seen by one observer (an agent, named by
    /// its host name or configured agent id). The observer is part of the
    /// span id — not of the trace id — so two agents that see the same
    /// exchange add two distinct root spans to the same trace, and
    /// re-analysing the same capture on the same host reproduces the same
    /// ids (idempotent re-export).
    pub fn for_root(trace: TraceId, observer: &str) -> Self {
        Self::from_digest(&derive("span.root", &[&trace.0, observer.as_bytes()]))
    }

    /// One SIP transaction (RFC 3261 §17.1.3 matching key: top Via branch,
    /// CSeq method) as seen by one observer. `cseq` is included so that
    /// RFC 2543 peers without a magic-cookie branch still get distinct
    /// spans per transaction.
    pub fn for_transaction(
        trace: TraceId,
        observer: &str,
        branch: &str,
        method: &str,
        cseq: u32,
    ) -> Self {
        let cseq = cseq.to_string();
        Self::from_digest(&derive(
            "span.transaction",
            &[
                &trace.0,
                observer.as_bytes(),
                branch.as_bytes(),
                method.as_bytes(),
                cseq.as_bytes(),
            ],
        ))
    }

    /// One direction of one media stream of a call (RFC 3264 §5: the
    /// m-line index pairs offer and answer), as seen by one observer.
    /// `direction` is the sending party, `caller_to_callee` or
    /// `callee_to_caller` (the `rtp.direction` attribute): every agent on
    /// the leg agrees on who sent the initial INVITE.
    pub fn for_media(trace: TraceId, observer: &str, m_line: usize, direction: &str) -> Self {
        let m_line = m_line.to_string();
        Self::from_digest(&derive(
            "span.media",
            &[
                &trace.0,
                observer.as_bytes(),
                m_line.as_bytes(),
                direction.as_bytes(),
            ],
        ))
    }

    fn from_digest(d: &[u8; 32]) -> Self {
        let mut id = [0u8; 8];
        id.copy_from_slice(&d[..8]);
        if id == [0; 8] {
            id[7] = 1;
        }
        Self(id)
    }

    pub fn to_hex(&self) -> String {
        hex::encode(self.0)
    }
}

/// Canonical form of an address of record for id derivation, following the
/// URI comparison rules of RFC 3261 §19.1.4: scheme and host are
/// case-insensitive (lower-cased), the user part is case-sensitive (kept);
/// URI parameters and headers, a display name and angle brackets are not
/// part of the AOR (§10.2: the To header field "contains the address of
/// record"; its tag and parameters are dialog state) and are removed.
pub fn normalize_aor(aor: &str) -> String {
    // The URI as sip/ reads a name-addr (quoted display names may hold
    // `<`), so a trace and the registration table name the same AOR.
    let value = aor.trim().as_bytes();
    let uri = match crate::sip::name_addr::parse_or_recover(value, 0) {
        (Some(na), _) => na.uri.get(value),
        (None, _) => value,
    };
    let s = String::from_utf8_lossy(uri);
    let s = s.split([';', '?']).next().unwrap_or("").trim();
    let (scheme, rest) = match s.split_once(':') {
        Some((scheme, rest)) => (scheme.to_ascii_lowercase(), rest),
        None => (String::new(), s),
    };
    let rest = match rest.rsplit_once('@') {
        Some((user, host)) => format!("{user}@{}", host.to_ascii_lowercase()),
        None => rest.to_ascii_lowercase(),
    };
    if scheme.is_empty() {
        rest
    } else {
        format!("{scheme}:{rest}")
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TraceId({})", self.to_hex())
    }
}
impl fmt::Display for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}
impl fmt::Debug for SpanId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SpanId({})", self.to_hex())
    }
}
impl Serialize for TraceId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}
impl Serialize for SpanId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_hex())
    }
}

/// An attribute key. Use the constants in [`attr`] rather than literals.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Key(pub Cow<'static, str>);

impl Key {
    pub const fn from_static(s: &'static str) -> Self {
        Self(Cow::Borrowed(s))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl From<&'static str> for Key {
    fn from(s: &'static str) -> Self {
        Self(Cow::Borrowed(s))
    }
}
impl From<String> for Key {
    fn from(s: String) -> Self {
        Self(Cow::Owned(s))
    }
}

/// An attribute value (the OTLP scalar kinds we need).
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Str(String),
    I64(i64),
    F64(f64),
    Bool(bool),
}
impl From<&str> for Value {
    fn from(s: &str) -> Self {
        Self::Str(s.to_owned())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Self {
        Self::Str(s)
    }
}
impl From<i64> for Value {
    fn from(v: i64) -> Self {
        Self::I64(v)
    }
}
impl From<u32> for Value {
    fn from(v: u32) -> Self {
        Self::I64(i64::from(v))
    }
}
impl From<u16> for Value {
    fn from(v: u16) -> Self {
        Self::I64(i64::from(v))
    }
}
impl From<u64> for Value {
    /// OTLP integers are signed 64-bit; counters past `i64::MAX` saturate.
    fn from(v: u64) -> Self {
        Self::I64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<u8> for Value {
    fn from(v: u8) -> Self {
        Self::I64(i64::from(v))
    }
}
impl From<usize> for Value {
    fn from(v: usize) -> Self {
        Self::I64(i64::try_from(v).unwrap_or(i64::MAX))
    }
}
impl From<f64> for Value {
    fn from(v: f64) -> Self {
        Self::F64(v)
    }
}
impl From<bool> for Value {
    fn from(v: bool) -> Self {
        Self::Bool(v)
    }
}

/// Attribute keys. Standard OpenTelemetry semantic-convention keys where
/// they exist; `sip.*` for SIP fields; `sipscope.*` for our findings.
pub mod attr {
    // OpenTelemetry semantic conventions (network, server, resource).
    pub const NETWORK_PEER_ADDRESS: &str = "network.peer.address";
    pub const NETWORK_PEER_PORT: &str = "network.peer.port";
    pub const NETWORK_TRANSPORT: &str = "network.transport";
    pub const SERVER_ADDRESS: &str = "server.address";
    pub const SERVER_PORT: &str = "server.port";
    pub const HOST_NAME: &str = "host.name";
    pub const SERVICE_NAME: &str = "service.name";
    pub const SERVICE_VERSION: &str = "service.version";
    // SIP (RFC 3261 header fields).
    pub const SIP_METHOD: &str = "sip.method";
    pub const SIP_CALL_ID: &str = "sip.call_id";
    pub const SIP_CSEQ: &str = "sip.cseq";
    pub const SIP_STATUS_CODE: &str = "sip.status_code";
    pub const SIP_REASON: &str = "sip.reason";
    pub const SIP_FROM: &str = "sip.from";
    pub const SIP_TO: &str = "sip.to";
    pub const SIP_CONTACT: &str = "sip.contact";
    pub const SIP_VIA_BRANCH: &str = "sip.via.branch";
    pub const SIP_EXPIRES: &str = "sip.expires";
    pub const SIP_RETRANSMISSIONS: &str = "sip.retransmissions";
    pub const SIP_AUTH_REALM: &str = "sip.auth.realm";
    pub const SIP_AUTH_USERNAME: &str = "sip.auth.username";
    pub const SIP_AUTH_NONCE: &str = "sip.auth.nonce";
    pub const SIP_AUTH_ALGORITHM: &str = "sip.auth.algorithm";
    pub const SIP_AUTH_STALE: &str = "sip.auth.stale";
    /// Secret-bearing: dropped by the export filter unless explicitly allowed.
    pub const SIP_AUTH_RESPONSE: &str = "sip.auth.response";
    // sipscope findings.
    pub const DIAGNOSIS_CODE: &str = "sipscope.diagnosis.code";
    pub const DIAGNOSIS_SEVERITY: &str = "sipscope.diagnosis.severity";
    pub const DIAGNOSIS_SUMMARY: &str = "sipscope.diagnosis.summary";
    pub const DIAGNOSIS_REMEDY: &str = "sipscope.diagnosis.remedy";
    pub const REGISTRATION_OUTCOME: &str = "sipscope.registration.outcome";
    pub const OBSERVER: &str = "sipscope.observer";
    // RTP of one stream direction (RFC 3550 receiver statistics, RFC 3264
    // negotiation); on the media spans of a call.
    /// `caller_to_callee` or `callee_to_caller`.
    pub const RTP_DIRECTION: &str = "rtp.direction";
    /// Index of the m= line (0-based).
    pub const RTP_M_LINE: &str = "rtp.m_line";
    /// m= media type: `audio`, `video`, `image`, ...
    pub const RTP_MEDIA: &str = "rtp.media";
    /// Negotiated format, `PCMA/8000`.
    pub const RTP_CODEC: &str = "rtp.codec";
    /// Sender's and receiver's SDP addresses, `ip:port`.
    pub const RTP_SRC: &str = "rtp.src";
    pub const RTP_DST: &str = "rtp.dst";
    /// The SDP negotiated this direction to carry RTP (not hold, not
    /// rejected).
    pub const RTP_NEGOTIATED: &str = "rtp.negotiated";
    pub const RTP_PACKETS: &str = "rtp.packets";
    /// Packets expected from the sequence numbers (RFC 3550 §6.4.1).
    pub const RTP_EXPECTED: &str = "rtp.expected";
    /// Expected minus received; negative with duplicates (RFC 3550 A.3).
    pub const RTP_LOST: &str = "rtp.lost";
    pub const RTP_LOSS_PERCENT: &str = "rtp.loss_percent";
    /// Interarrival jitter at the end (RFC 3550 §6.4.1), and its maximum.
    pub const RTP_JITTER_MS: &str = "rtp.jitter_ms";
    pub const RTP_MAX_JITTER_MS: &str = "rtp.max_jitter_ms";
    /// E-model MOS estimate (ITU-T G.107).
    pub const RTP_MOS: &str = "rtp.mos";
    /// `0x1234ABCD`.
    pub const RTP_SSRC: &str = "rtp.ssrc";
    pub const RTP_PAYLOAD_TYPE: &str = "rtp.payload_type";
    /// Packets seen on the wire that this host's kernel then dropped.
    pub const RTP_DROPPED_LOCALLY: &str = "rtp.dropped_locally";
    /// The flows linked to this direction and how they matched the SDP.
    pub const RTP_FLOWS: &str = "rtp.flows";
    /// The receiver's own RTCP report (RFC 3550 §6.4): loss since its
    /// previous report, its jitter estimate, and the §6.4.1 round trip.
    pub const RTP_FAR_END_LOSS_PERCENT: &str = "rtp.far_end.loss_percent";
    pub const RTP_FAR_END_JITTER_MS: &str = "rtp.far_end.jitter_ms";
    pub const RTP_ROUND_TRIP_MS: &str = "rtp.round_trip_ms";
}

/// Event names used by the analyses (docs/tracing.md lists them).
pub mod event {
    pub const CHALLENGE: &str = "sip.challenge";
    pub const RETRANSMISSION: &str = "sip.retransmission";
    /// A provisional (1xx) response of the transaction (RFC 3261 §7.2).
    pub const PROVISIONAL: &str = "sip.provisional";
    pub const DIAGNOSIS: &str = "sipscope.diagnosis";
}

/// Span names: low-cardinality, as OpenTelemetry asks (identifiers go in
/// attributes, never in names).
pub mod names {
    /// Root span of a registration attempt.
    pub const REGISTRATION: &str = "SIP registration";
    /// Root span of a call (INVITE dialog).
    pub const CALL: &str = "SIP call";
    /// RTP of one stream direction of a call, named by who sends it.
    pub const RTP_CALLER_TO_CALLEE: &str = "RTP caller→callee";
    pub const RTP_CALLEE_TO_CALLER: &str = "RTP callee→caller";

    /// A transaction span: `REGISTER 401`, `INVITE 200`, or
    /// `REGISTER (no response)` when it timed out.
    pub fn transaction(method: &str, final_status: Option<u16>) -> String {
        match final_status {
            Some(code) => format!("{method} {code}"),
            None => format!("{method} (no response)"),
        }
    }
}

/// OpenTelemetry span kind, from the observed host's point of view: a
/// request the host sent is `Client`, one it received is `Server`; the
/// root span of an attempt or call is `Internal`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SpanKind {
    Internal,
    Client,
    Server,
}

/// Span status (OpenTelemetry semantics: `Unset` = no judgement).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(tag = "code", content = "message", rename_all = "lowercase")]
pub enum Status {
    Unset,
    Ok,
    Error(String),
}

/// A point-in-time occurrence inside a span (challenge, retransmission,
/// diagnosis), at its packet-clock time.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpanEvent {
    pub name: Cow<'static, str>,
    pub at: Timestamp,
    pub attributes: Vec<(Key, Value)>,
}

/// One finished span, on the packet clock.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SpanRecord {
    pub trace_id: TraceId,
    pub span_id: SpanId,
    pub parent: Option<SpanId>,
    pub name: Cow<'static, str>,
    pub kind: SpanKind,
    pub start: Timestamp,
    pub end: Timestamp,
    pub attributes: Vec<(Key, Value)>,
    pub events: Vec<SpanEvent>,
    pub status: Status,
}

impl SpanRecord {
    /// A span with no attributes, no events and status `Unset`.
    pub fn new(
        trace_id: TraceId,
        span_id: SpanId,
        parent: Option<SpanId>,
        name: impl Into<Cow<'static, str>>,
        kind: SpanKind,
        start: Timestamp,
        end: Timestamp,
    ) -> Self {
        Self {
            trace_id,
            span_id,
            parent,
            name: name.into(),
            kind,
            start,
            end,
            attributes: Vec::new(),
            events: Vec::new(),
            status: Status::Unset,
        }
    }

    /// Add an attribute (builder style).
    pub fn with(mut self, key: impl Into<Key>, value: impl Into<Value>) -> Self {
        self.attributes.push((key.into(), value.into()));
        self
    }

    /// Add an event at capture time `at`.
    pub fn event(
        &mut self,
        name: impl Into<Cow<'static, str>>,
        at: Timestamp,
        attributes: Vec<(Key, Value)>,
    ) {
        self.events.push(SpanEvent {
            name: name.into(),
            at,
            attributes,
        });
    }

    /// The value of attribute `key`, if present (first occurrence).
    pub fn attribute(&self, key: &str) -> Option<&Value> {
        self.attributes
            .iter()
            .find(|(k, _)| k.as_str() == key)
            .map(|(_, v)| v)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // Fixed expected values: a change here means agents of the new build
    // no longer join traces with agents of the old one. Bump
    // ID_DERIVATION_VERSION and update docs/tracing.md when that is meant.
    #[test]
    fn registration_trace_id_is_stable_across_runs_and_hosts() {
        let id = TraceId::for_registration(
            "a84b4c76e66710@pc33.example.com",
            1,
            "sip:alice@example.com",
        );
        assert_eq!(id.to_hex(), EXPECTED_REGISTRATION);
        // Same attempt, AOR written differently but equal by RFC 3261 19.1.4.
        let same = TraceId::for_registration(
            " a84b4c76e66710@pc33.example.com ",
            1,
            "\"Alice\" <SIP:alice@EXAMPLE.com;transport=udp>",
        );
        assert_eq!(same, id);
    }

    #[test]
    fn identifiers_that_differ_give_different_traces() {
        let base = TraceId::for_registration("c1", 1, "sip:alice@example.com");
        assert_ne!(
            base,
            TraceId::for_registration("c1", 2, "sip:alice@example.com")
        );
        assert_ne!(
            base,
            TraceId::for_registration("C1", 1, "sip:alice@example.com")
        );
        assert_ne!(
            base,
            TraceId::for_registration("c1", 1, "sip:Alice@example.com")
        );
        // Length prefixes: moving bytes between fields changes the id.
        assert_ne!(
            TraceId::for_registration("c11", 1, "sip:a@b"),
            TraceId::for_registration("c1", 11, "sip:a@b")
        );
        assert_ne!(TraceId::for_call("c1"), base);
    }

    #[test]
    fn call_and_span_ids_are_stable() {
        let call = TraceId::for_call("a84b4c76e66710@pc33.example.com");
        assert_eq!(call.to_hex(), EXPECTED_CALL);
        let root = SpanId::for_root(call, "pbx1");
        assert_eq!(root.to_hex(), EXPECTED_ROOT);
        let tx = SpanId::for_transaction(call, "pbx1", "z9hG4bK776asdhds", "INVITE", 314159);
        assert_eq!(tx.to_hex(), EXPECTED_TX);
        // Another observer: same trace, distinct spans.
        assert_ne!(SpanId::for_root(call, "sbc1"), root);
        assert_ne!(
            SpanId::for_transaction(call, "sbc1", "z9hG4bK776asdhds", "INVITE", 314159),
            tx
        );
        assert_ne!(
            SpanId::for_transaction(call, "pbx1", "z9hG4bK776asdhds", "CANCEL", 314159),
            tx
        );
    }

    #[test]
    fn media_span_ids_are_stable_and_distinct_per_direction_and_m_line() {
        let call = TraceId::for_call("a84b4c76e66710@pc33.example.com");
        let media = SpanId::for_media(call, "pbx1", 0, "caller_to_callee");
        assert_eq!(media.to_hex(), EXPECTED_MEDIA);
        assert_ne!(
            SpanId::for_media(call, "pbx1", 0, "callee_to_caller"),
            media
        );
        assert_ne!(
            SpanId::for_media(call, "pbx1", 1, "caller_to_callee"),
            media
        );
        assert_ne!(
            SpanId::for_media(call, "sbc1", 0, "caller_to_callee"),
            media
        );
        assert_ne!(SpanId::for_root(call, "pbx1"), media);
    }

    #[test]
    fn aor_normalisation_follows_uri_comparison_rules() {
        assert_eq!(
            normalize_aor("<sips:Bob@Biloxi.COM:5061>;tag=x"),
            "sips:Bob@biloxi.com:5061"
        );
        assert_eq!(
            normalize_aor("sip:+15551234@trunk.example?subject=x"),
            "sip:+15551234@trunk.example"
        );
        assert_eq!(normalize_aor("  "), "");
        assert_eq!(
            normalize_aor("\"Desk <left>\" <sip:1001@PBX.example>;expires=30"),
            "sip:1001@pbx.example",
            "a quoted display name is not the URI"
        );
    }

    #[test]
    fn span_record_serialises_ids_as_hex() {
        let trace = TraceId::for_call("x");
        let rec = SpanRecord {
            trace_id: trace,
            span_id: SpanId::for_root(trace, "h"),
            parent: None,
            name: "INVITE".into(),
            kind: SpanKind::Internal,
            start: Timestamp(1),
            end: Timestamp(2),
            attributes: vec![(attr::SIP_CSEQ.into(), 7u32.into())],
            events: vec![],
            status: Status::Error("no answer".into()),
        };
        let v = serde_json::to_value(&rec).unwrap();
        assert_eq!(v["trace_id"], trace.to_hex());
        assert_eq!(v["status"]["code"], "error");
        assert_eq!(v["attributes"][0][0], "sip.cseq");
        assert_eq!(v["attributes"][0][1], 7);
    }

    // Computed independently of this code, from the documented derivation
    // (Python hashlib: sha256 over the u32-BE-length-prefixed fields).
    const EXPECTED_REGISTRATION: &str = "4180e4151d21d299b83b3f7295e12160";
    const EXPECTED_CALL: &str = "3109601076e37d304f6addad0c8c013e";
    const EXPECTED_ROOT: &str = "966d5bbd1e2b71a1";
    const EXPECTED_TX: &str = "d121ab03d8fe6063";
    const EXPECTED_MEDIA: &str = "8d93aab01455d7d5";
}
