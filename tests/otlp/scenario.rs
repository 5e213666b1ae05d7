//! A realistic registration exchange, as the spans the analysis builds for
//! it, seen from either end of the signalling path.
//!
//! PBX 192.0.2.10 registers 1001 at the provider's SBC 198.51.100.20
//! (RFC 3261 §10, digest per RFC 7616):
//!
//! ```text
//! +0 ms     REGISTER  CSeq 1  (no credentials)
//! +500 ms   REGISTER  CSeq 1  retransmission (timer E)
//! +520 ms   401 Unauthorized  WWW-Authenticate realm="sip.provider.example"
//! +530 ms   REGISTER  CSeq 2  Authorization username="1001"
//! +561 ms   200 OK    Expires 3600
//! ```
//!
//! and an hour later a refresh that the provider refuses:
//!
//! ```text
//! +3600 s      REGISTER CSeq 3 (credentials)  ->  +40 ms  403 Forbidden
//! ```

use std::borrow::Cow;

use sipscope::export::spans::{
    Key, SpanEvent, SpanId, SpanKind, SpanRecord, Status, TraceId, Value, attr, event, names,
};
use sipscope::time::Timestamp;

/// 2025-11-25T12:00:00Z in ns.
pub const T0: u64 = 1_764_072_000_000_000_000;
pub const MS: u64 = 1_000_000;

pub const CALL_ID: &str = "3848276298220188511@192.0.2.10";
pub const AOR: &str = "sip:1001@sip.provider.example";
pub const REALM: &str = "sip.provider.example";
pub const DIGEST_RESPONSE: &str = "6629fae49393a05397450978507c4ef1";

/// One end of the exchange.
pub struct Side {
    /// Agent identity (host name): part of span ids, not of trace ids.
    pub observer: &'static str,
    /// Kind of the transaction spans from this end: the PBX sent the
    /// requests (Client), the SBC received them (Server).
    pub kind: SpanKind,
    /// The other end.
    pub peer: &'static str,
    /// The AOR as this end's parser delivers it (the To header).
    pub aor_as_seen: &'static str,
    /// This end's view of time: network delay and clock offset.
    pub offset_ns: u64,
}

pub const PBX: Side = Side {
    observer: "pbx1",
    kind: SpanKind::Client,
    peer: "198.51.100.20",
    aor_as_seen: "<sip:1001@sip.provider.example>",
    offset_ns: 0,
};

pub const SBC: Side = Side {
    observer: "sbc1",
    kind: SpanKind::Server,
    peer: "192.0.2.10",
    aor_as_seen: "sip:1001@SIP.Provider.Example;transport=udp",
    offset_ns: 7 * MS + 123,
};

fn kv(k: &'static str, v: impl Into<Value>) -> (Key, Value) {
    (Key::from_static(k), v.into())
}

impl Side {
    fn ts(&self, rel_ns: u64) -> Timestamp {
        Timestamp::from_nanos(T0 + self.offset_ns + rel_ns)
    }

    fn common(&self) -> Vec<(Key, Value)> {
        vec![
            kv(attr::NETWORK_PEER_ADDRESS, self.peer),
            kv(attr::NETWORK_TRANSPORT, "udp"),
            kv(attr::SERVER_ADDRESS, "sip.provider.example"),
            kv(attr::SIP_CALL_ID, CALL_ID),
        ]
    }

    #[allow(clippy::too_many_arguments)]
    fn transaction(
        &self,
        trace: TraceId,
        root: SpanId,
        branch: &str,
        cseq: u32,
        start: u64,
        end: u64,
        status: u16,
        mut extra: Vec<(Key, Value)>,
        events: Vec<SpanEvent>,
    ) -> SpanRecord {
        let mut attributes = self.common();
        attributes.extend([
            kv(attr::SIP_METHOD, "REGISTER"),
            kv(attr::SIP_CSEQ, cseq),
            kv(attr::SIP_STATUS_CODE, status),
            kv(attr::SIP_VIA_BRANCH, branch.to_owned()),
        ]);
        attributes.append(&mut extra);
        SpanRecord {
            trace_id: trace,
            span_id: SpanId::for_transaction(trace, self.observer, branch, "REGISTER", cseq),
            parent: Some(root),
            name: Cow::Owned(names::transaction("REGISTER", Some(status))),
            kind: self.kind,
            start: self.ts(start),
            end: self.ts(end),
            attributes,
            events,
            status: if status >= 300 && status != 401 && status != 407 {
                Status::Error(format!("{status}"))
            } else {
                Status::Unset
            },
        }
    }

    /// Challenge, answer, 200 OK: root + two transactions, in the order
    /// the analysis finishes them (children first).
    pub fn successful_attempt(&self) -> Vec<SpanRecord> {
        let trace = TraceId::for_registration(CALL_ID, 1, self.aor_as_seen);
        let root = SpanId::for_root(trace, self.observer);
        let challenge = SpanEvent {
            name: event::CHALLENGE.into(),
            at: self.ts(520 * MS),
            attributes: vec![
                kv(attr::SIP_AUTH_REALM, REALM),
                kv(attr::SIP_AUTH_NONCE, "ea9c8e88df84f1cec4341ae6cbe5a359"),
                kv(attr::SIP_AUTH_ALGORITHM, "MD5"),
            ],
        };
        let retransmission = SpanEvent {
            name: event::RETRANSMISSION.into(),
            at: self.ts(500 * MS),
            attributes: vec![kv(attr::SIP_CSEQ, 1u32)],
        };
        let t401 = self.transaction(
            trace,
            root,
            "z9hG4bK-524287-1---a1",
            1,
            0,
            520 * MS,
            401,
            vec![kv(attr::SIP_RETRANSMISSIONS, 1u32)],
            vec![retransmission, challenge],
        );
        let t200 = self.transaction(
            trace,
            root,
            "z9hG4bK-524287-1---a2",
            2,
            530 * MS,
            561 * MS,
            200,
            vec![
                kv(attr::SIP_AUTH_REALM, REALM),
                kv(attr::SIP_AUTH_USERNAME, "1001"),
                // Must never reach a collector unless explicitly enabled.
                kv(attr::SIP_AUTH_RESPONSE, DIGEST_RESPONSE),
                kv("sip.auth.password", "hunter2"),
                kv(attr::SIP_EXPIRES, 3600u32),
            ],
            vec![],
        );
        let mut attributes = self.common();
        attributes.extend([
            kv(attr::SIP_FROM, "<sip:1001@sip.provider.example>;tag=b6d2f"),
            kv(attr::SIP_TO, "<sip:1001@sip.provider.example>"),
            kv(attr::SIP_CONTACT, "<sip:1001@192.0.2.10:5060>"),
            kv(attr::SIP_AUTH_REALM, REALM),
            kv(attr::SIP_AUTH_USERNAME, "1001"),
            kv(attr::REGISTRATION_OUTCOME, "registered"),
            kv(attr::OBSERVER, self.observer),
        ]);
        let root_span = SpanRecord {
            trace_id: trace,
            span_id: root,
            parent: None,
            name: names::REGISTRATION.into(),
            kind: SpanKind::Internal,
            start: self.ts(0),
            end: self.ts(561 * MS),
            attributes,
            events: vec![],
            status: Status::Ok,
        };
        vec![t401, t200, root_span]
    }

    /// The refresh an hour later: 403 to a request with credentials.
    pub fn forbidden_attempt(&self) -> Vec<SpanRecord> {
        let base = 3600 * 1_000 * MS;
        let trace = TraceId::for_registration(CALL_ID, 3, self.aor_as_seen);
        let root = SpanId::for_root(trace, self.observer);
        let diagnosis = SpanEvent {
            name: event::DIAGNOSIS.into(),
            at: self.ts(base + 40 * MS),
            attributes: vec![
                kv(attr::DIAGNOSIS_CODE, "auth.forbidden_after_auth"),
                kv(attr::DIAGNOSIS_SEVERITY, "error"),
                kv(
                    attr::DIAGNOSIS_SUMMARY,
                    "403 Forbidden to a REGISTER that carried credentials",
                ),
            ],
        };
        let t403 = self.transaction(
            trace,
            root,
            "z9hG4bK-524287-1---a3",
            3,
            base,
            base + 40 * MS,
            403,
            vec![kv(attr::SIP_AUTH_USERNAME, "1001")],
            vec![],
        );
        let mut attributes = self.common();
        attributes.push(kv(attr::REGISTRATION_OUTCOME, "rejected"));
        let root_span = SpanRecord {
            trace_id: trace,
            span_id: root,
            parent: None,
            name: names::REGISTRATION.into(),
            kind: SpanKind::Internal,
            start: self.ts(base),
            end: self.ts(base + 40 * MS),
            attributes,
            events: vec![diagnosis],
            status: Status::Error("403 Forbidden after authentication".into()),
        };
        vec![t403, root_span]
    }
}

/// A filler span for volume tests.
pub fn filler(i: u32) -> SpanRecord {
    let trace = TraceId::for_registration(&format!("load-{i}@192.0.2.10"), 1, AOR);
    SpanRecord {
        trace_id: trace,
        span_id: SpanId::for_root(trace, "pbx1"),
        parent: None,
        name: names::REGISTRATION.into(),
        kind: SpanKind::Internal,
        start: Timestamp::from_nanos(T0 + u64::from(i) * MS),
        end: Timestamp::from_nanos(T0 + u64::from(i) * MS + 30 * MS),
        attributes: vec![kv(attr::SIP_CSEQ, i)],
        events: vec![],
        status: Status::Ok,
    }
}
