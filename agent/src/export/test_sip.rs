//! Test helper: SIP exchanges as the pipeline reports them, built by the
//! real parser and transaction table from message text.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::analysis::calls::{CallConfig, CallStats};
use crate::packet::{Meta, Transport};
use crate::pipeline::wiring::{Analyses, Input};
use crate::pipeline::{Event, PipelineConfig, transaction_fact};
use crate::sip::{Framing, SipMessage, Transaction, TransactionConfig, TransactionTable};
use crate::{packet::Direction, time::Timestamp};

pub(super) const PBX: &str = "192.0.2.10:5060";
pub(super) const REGISTRAR: &str = "198.51.100.20:5060";
/// 2025-11-25T12:00:00Z.
pub(super) const T0: u64 = 1_764_072_000_000_000_000;
pub(super) const MS: u64 = 1_000_000;

/// Messages through the real transaction table and the pipeline's
/// analyses and wiring, as the pipeline would feed them (without the
/// packet stage), on the packet clock of the messages.
pub(super) struct Exchange {
    table: TransactionTable,
    analyses: Analyses,
    pub events: Vec<Event>,
    finished: bool,
}

impl Exchange {
    pub(super) fn new() -> Self {
        Self::with_calls(CallConfig::default())
    }

    /// With the call tracker's limits and timers.
    pub(super) fn with_calls(calls: CallConfig) -> Self {
        Self {
            table: TransactionTable::new(TransactionConfig::default()),
            analyses: Analyses::new(&PipelineConfig {
                calls,
                ..PipelineConfig::default()
            }),
            events: Vec::new(),
            finished: false,
        }
    }

    /// The call tracker's counters.
    pub(super) fn call_stats(&self) -> CallStats {
        self.analyses.calls.stats()
    }

    /// The packet clock reaches T0 + `ms` without a message: the
    /// analyses' timers run (the pipeline's `tick`).
    pub(super) fn tick(&mut self, ms: u64) -> &mut Self {
        self.analyse(Vec::new(), vec![Input::Tick(Timestamp(T0 + ms * MS))]);
        self
    }

    /// One message from `src` to `dst` at T0 + `ms`, sent by the observed
    /// host when `src` is the PBX.
    pub(super) fn msg(&mut self, ms: u64, src: &str, dst: &str, text: &str) -> &mut Self {
        let src: SocketAddr = src.parse().unwrap();
        let dst: SocketAddr = dst.parse().unwrap();
        let meta = Meta {
            ts: Timestamp(T0 + ms * MS),
            src,
            dst,
            transport: Transport::Udp,
            direction: if src.to_string() == PBX {
                Direction::Egress
            } else {
                Direction::Ingress
            },
            ifindex: 1,
        };
        let raw = Bytes::from(text.replace('\n', "\r\n"));
        let message = SipMessage::parse(raw, Framing::Datagram).expect("test message parses");
        self.tick(ms);
        let mut tx = Vec::new();
        let record = self.table.on_message(meta, message, &mut tx);
        let (mut events, mut inputs): (Vec<_>, Vec<_>) =
            tx.into_iter().map(transaction_fact).unzip();
        events.push(Event::Message(record.clone()));
        inputs.push(Input::Message(record));
        self.analyse(events, inputs);
        self
    }

    /// End of input, once (the pipeline's `finish`).
    pub(super) fn finish(&mut self) -> &mut Self {
        if std::mem::replace(&mut self.finished, true) {
            return self;
        }
        let mut tx = Vec::new();
        self.table.finish(&mut tx);
        let (events, inputs) = tx.into_iter().map(transaction_fact).unzip();
        self.analyse(events, inputs);
        self.analyse(Vec::new(), vec![Input::Finish]);
        self
    }

    /// One batch, as the pipeline runs it: the SIP facts, then what the
    /// analyses found in them.
    fn analyse(&mut self, events: Vec<Event>, inputs: Vec<Input<'static>>) {
        let mut found = Vec::new();
        self.analyses.analyse(inputs, &mut found);
        self.events.extend(events);
        self.events.extend(found.into_iter().map(Event::from));
    }

    /// The completed transactions, in completion order.
    pub(super) fn transactions(&self) -> Vec<Arc<Transaction>> {
        self.events
            .iter()
            .filter_map(|e| match e {
                Event::TransactionCompleted(t) => Some(t.clone()),
                Event::TransactionTimedOut { transaction, .. } => Some(transaction.clone()),
                _ => None,
            })
            .collect()
    }
}

/// A phone the PBX calls.
pub(super) const PHONE: &str = "203.0.113.5:5060";

/// A request from the PBX to [`PHONE`], in the dialog when `to_tag`.
pub(super) fn request(method: &str, cseq: u32, branch: &str, cid: &str, to_tag: bool) -> String {
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

pub(super) fn register(cseq: u32, branch: &str, auth: bool) -> String {
    let auth = if auth {
        "Authorization: Digest username=\"1001\", realm=\"sip.provider.example\", nonce=\"abc\", uri=\"sip:sip.provider.example\", response=\"0123456789abcdef0123456789abcdef\", algorithm=MD5\n"
    } else {
        ""
    };
    format!(
        "REGISTER sip:sip.provider.example SIP/2.0\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\n\
From: <sip:1001@sip.provider.example>;tag=f1\n\
To: <sip:1001@sip.provider.example>\n\
Call-ID: reg-1@192.0.2.10\n\
CSeq: {cseq} REGISTER\n\
Contact: <sip:1001@192.0.2.10:5060>\n\
{auth}Expires: 3600\n\
Content-Length: 0\n\n"
    )
}

pub(super) fn response(
    status: &str,
    cseq: u32,
    method: &str,
    branch: &str,
    cid: &str,
    extra: &str,
) -> String {
    format!(
        "SIP/2.0 {status}\n\
Via: SIP/2.0/UDP 192.0.2.10:5060;branch={branch}\n\
From: <sip:1001@sip.provider.example>;tag=f1\n\
To: <sip:1001@sip.provider.example>;tag=t1\n\
Call-ID: {cid}\n\
CSeq: {cseq} {method}\n\
{extra}Content-Length: 0\n\n"
    )
}

pub(super) const CHALLENGE: &str =
    "WWW-Authenticate: Digest realm=\"sip.provider.example\", nonce=\"abc\", algorithm=MD5\n";

/// REGISTER (retransmitted once) → 401 → REGISTER with credentials → 200.
pub(super) fn challenged_registration() -> Exchange {
    let mut x = Exchange::new();
    x.msg(0, PBX, REGISTRAR, &register(1, "z9hG4bK-r1", false))
        .msg(500, PBX, REGISTRAR, &register(1, "z9hG4bK-r1", false))
        .msg(
            520,
            REGISTRAR,
            PBX,
            &response(
                "401 Unauthorized",
                1,
                "REGISTER",
                "z9hG4bK-r1",
                "reg-1@192.0.2.10",
                CHALLENGE,
            ),
        )
        .msg(530, PBX, REGISTRAR, &register(2, "z9hG4bK-r2", true))
        .msg(
            561,
            REGISTRAR,
            PBX,
            &response(
                "200 OK",
                2,
                "REGISTER",
                "z9hG4bK-r2",
                "reg-1@192.0.2.10",
                "Expires: 3600\n",
            ),
        );
    x
}
