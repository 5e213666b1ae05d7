//! SIP transactions as a passive observer sees them (RFC 3261 §17).
//!
//! A request and its responses are matched by the top Via branch, sent-by
//! and method (RFC 3261 §17.1.3 for responses, §17.2.3 for requests), or
//! for RFC 2543 peers without the magic cookie by Call-ID, CSeq, From tag
//! and top Via sent-by. An ACK to a non-2xx final response carries the
//! INVITE's branch and belongs to the INVITE transaction (§17.1.1.3); an
//! ACK to a 2xx has its own branch and belongs to no transaction (§13.2.2.4).
//! CANCEL has the INVITE's branch but its own transaction (§9.1): the
//! method in the key keeps them apart.
//!
//! The table is bounded; entries expire on the packet clock: a transaction
//! without a final response times out after `timeout` (Timer B/F, 64*T1 =
//! 32 s by default), a completed one lingers as long to absorb
//! retransmissions (Timer D/J-like), then is retired.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::message::SipMessage;
use super::method::Method;
use super::via::MAGIC_COOKIE;
use crate::packet::Meta;
use crate::time::Timestamp;

pub type TransactionId = u64;

/// What identifies a transaction on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum TransactionKey {
    /// RFC 3261 §17.2.3: branch (with magic cookie) + sent-by + method.
    Branch {
        branch: Bytes,
        host: Bytes,
        port: Option<u16>,
        method: Method,
    },
    /// RFC 3261 §17.2.3 backwards compatibility with RFC 2543.
    Legacy {
        call_id: Bytes,
        cseq: u32,
        method: Method,
        from_tag: Bytes,
        host: Bytes,
        port: Option<u16>,
    },
}

impl TransactionKey {
    /// The key of the transaction `msg` belongs to, or `None` when the
    /// message lacks what matching needs (Via, CSeq, Call-ID).
    pub fn of(msg: &SipMessage) -> Option<TransactionKey> {
        let cseq = msg.cseq()?;
        // ACK shares the INVITE's transaction (non-2xx case, §17.1.1.3).
        let method = match &cseq.method {
            Method::Ack => Method::Invite,
            m => m.clone(),
        };
        let via = msg.top_via_ranges()?;
        let raw = msg.raw();
        let host = raw.slice(via.host.start as usize..via.host.end as usize);
        match via
            .branch
            .map(|b| raw.slice(b.start as usize..b.end as usize))
        {
            Some(branch) if branch.starts_with(MAGIC_COOKIE) => Some(TransactionKey::Branch {
                branch,
                host,
                port: via.port,
                method,
            }),
            _ => {
                let cid = msg.call_id_bytes()?;
                let call_id = slice_of(raw, cid);
                let from_tag = msg.from_tag().map(|t| slice_of(raw, t)).unwrap_or_default();
                Some(TransactionKey::Legacy {
                    call_id,
                    cseq: cseq.number,
                    method,
                    from_tag,
                    host,
                    port: via.port,
                })
            }
        }
    }
}

fn slice_of(raw: &Bytes, sub: &[u8]) -> Bytes {
    raw.slice_ref(sub)
}

impl TransactionKey {
    /// The same key with its own small copies of the bytes. Lookup keys
    /// borrow the message's buffer (no allocation per message); a stored
    /// key must not, or every lingering transaction would pin its whole
    /// message in memory.
    pub fn detached(&self) -> TransactionKey {
        let own = |b: &Bytes| Bytes::copy_from_slice(b);
        match self {
            TransactionKey::Branch {
                branch,
                host,
                port,
                method,
            } => TransactionKey::Branch {
                branch: own(branch),
                host: own(host),
                port: *port,
                method: method.clone(),
            },
            TransactionKey::Legacy {
                call_id,
                cseq,
                method,
                from_tag,
                host,
                port,
            } => TransactionKey::Legacy {
                call_id: own(call_id),
                cseq: *cseq,
                method: method.clone(),
                from_tag: own(from_tag),
                host: own(host),
                port: *port,
            },
        }
    }
}

/// A message as seen on the wire, with its place in a transaction.
#[derive(Clone, Debug)]
pub struct MessageRecord {
    pub meta: Meta,
    pub message: SipMessage,
    pub transaction: Option<TransactionId>,
    /// Same request (same transaction) or same response (same status and
    /// To tag) seen before.
    pub retransmission: bool,
    /// On the first final response of a transaction whose request was
    /// seen: first request to this response.
    pub response_time: Option<Duration>,
}

/// Where a transaction is (RFC 3261 §17 state machines, collapsed to what
/// an observer can tell).
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TransactionState {
    /// Request seen, no response yet.
    Trying,
    /// A provisional response seen.
    Proceeding,
    /// A final response seen.
    Completed,
}

/// Why a transaction ended without a final response.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TimeoutCause {
    /// No final response within the timeout on the packet clock.
    NoFinalResponse,
    /// The capture ended first (may have been answered later).
    EndOfCapture,
    /// Pushed out of the full transaction table.
    Evicted,
}

/// Provisional responses kept per transaction (further ones are counted).
pub(crate) const MAX_PROVISIONALS: usize = 16;

/// One request and its responses.
#[derive(Clone, Debug)]
pub struct Transaction {
    pub id: TransactionId,
    pub key: TransactionKey,
    /// INVITE for the ACK-to-non-2xx case; CANCEL has its own.
    pub method: Method,
    pub cseq: u32,
    /// First copy of the request (None: only responses were captured).
    /// Messages travel with the `TransactionCompleted` event; the table
    /// keeps only matching state after completion.
    pub request: Option<Arc<MessageRecord>>,
    pub request_retransmissions: u32,
    /// Distinct provisional responses (retransmissions not repeated).
    pub provisionals: Vec<Arc<MessageRecord>>,
    pub provisionals_dropped: u32,
    /// First final response.
    pub final_response: Option<Arc<MessageRecord>>,
    /// Further distinct final responses (forked 2xx).
    pub other_finals: u32,
    pub response_retransmissions: u32,
    /// ACK to a non-2xx final response (same branch).
    pub ack: Option<Arc<MessageRecord>>,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub state: TransactionState,
    /// First request to first final response (RFC 6076 §4.x-style latency).
    pub response_time: Option<Duration>,
    /// (status, To tag) of responses seen: what a retransmission repeats.
    seen_responses: Vec<(u16, Bytes)>,
    /// The request was seen (it stays true after the messages were handed
    /// over in the Completed event).
    request_seen: bool,
    deadline: Timestamp,
}

impl Transaction {
    /// Status of the final response, if any.
    pub fn final_status(&self) -> Option<u16> {
        self.final_response
            .as_ref()
            .and_then(|r| r.message.status())
    }

    /// Call-ID from whichever message of the transaction is known.
    pub fn call_id(&self) -> Option<String> {
        self.request
            .as_ref()
            .or(self.final_response.as_ref())
            .or(self.provisionals.first())
            .and_then(|r| r.message.call_id().map(|c| c.into_owned()))
    }
}

/// Limits and timers of the table.
#[derive(Clone, Copy, Debug)]
pub struct TransactionConfig {
    pub max_transactions: usize,
    /// 64*T1 = 32 s (RFC 3261 Timer B/F/H).
    pub timeout: Duration,
    /// An INVITE with a provisional response waits longer for its final
    /// response (RFC 3261 §16.6 item 11, Timer C: more than 3 minutes).
    pub invite_proceeding_timeout: Duration,
}

impl Default for TransactionConfig {
    fn default() -> Self {
        TransactionConfig {
            max_transactions: 200_000,
            timeout: Duration::from_secs(32),
            invite_proceeding_timeout: Duration::from_secs(180),
        }
    }
}

/// Counters of the transaction layer.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TransactionStats {
    pub created: u64,
    pub completed: u64,
    pub timed_out: u64,
    /// Removed because the table was full.
    pub evicted: u64,
    pub request_retransmissions: u64,
    pub response_retransmissions: u64,
    /// Responses whose request was never seen.
    pub responses_without_request: u64,
    /// ACKs matching no INVITE transaction (normally ACKs to 2xx).
    pub acks_without_transaction: u64,
    /// Messages that cannot be matched (no Via/CSeq/Call-ID).
    pub unmatchable_messages: u64,
    /// Without a final response when the input ended.
    pub open_at_end: u64,
    pub in_flight: u64,
}

/// What the table produced for one message or timer run.
#[derive(Debug)]
pub enum TransactionEvent {
    Completed(Arc<Transaction>),
    TimedOut(Arc<Transaction>, TimeoutCause),
}

/// The bounded table of live transactions.
///
/// Two indexes over boxed entries: a completed transaction lingers for
/// 32 s, so at a busy PBX's rates the table holds tens of thousands of
/// them, and a hash table's empty slots cost what one slot holds. Keyed
/// inline, a slot held a whole transaction (about 300 bytes, plus its key
/// again in the id index): 26 MB at 12,000 lingering transactions.
pub struct TransactionTable {
    config: TransactionConfig,
    by_key: HashMap<TransactionKey, TransactionId>,
    by_id: HashMap<TransactionId, Box<Transaction>>,
    deadlines: BinaryHeap<Reverse<(Timestamp, TransactionId)>>,
    /// Completed transactions in completion order (so deadline order),
    /// lingering for retransmissions: a full table evicts these first. An
    /// open transaction is still waiting for the answer whose absence is a
    /// finding; evicted by deadline alone, at a few thousand transactions
    /// a second it went after ten seconds, long before its Timer B/F.
    lingering: VecDeque<(Timestamp, TransactionId)>,
    next_id: TransactionId,
    pub stats: TransactionStats,
}

impl TransactionTable {
    pub fn new(config: TransactionConfig) -> Self {
        TransactionTable {
            config,
            by_key: HashMap::new(),
            by_id: HashMap::new(),
            deadlines: BinaryHeap::new(),
            lingering: VecDeque::new(),
            next_id: 1,
            stats: TransactionStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }

    /// Match one message; returns its record (shared with the transaction)
    /// and pushes completion/eviction events.
    pub fn on_message(
        &mut self,
        meta: Meta,
        message: SipMessage,
        out: &mut Vec<TransactionEvent>,
    ) -> Arc<MessageRecord> {
        let mut record = MessageRecord {
            meta,
            message,
            transaction: None,
            retransmission: false,
            response_time: None,
        };
        let Some(key) = TransactionKey::of(&record.message) else {
            self.stats.unmatchable_messages += 1;
            return Arc::new(record);
        };
        let is_ack = record.message.is_request() && record.message.method() == Some(&Method::Ack);
        if is_ack {
            let Some(tx) = self.by_key.get(&key).and_then(|id| self.by_id.get_mut(id)) else {
                self.stats.acks_without_transaction += 1;
                return Arc::new(record);
            };
            record.transaction = Some(tx.id);
            record.retransmission = tx.ack.is_some();
            tx.last_seen = meta.ts;
            let record = Arc::new(record);
            if tx.ack.is_none() {
                tx.ack = Some(record.clone());
            }
            return record;
        }
        let id = match self.by_key.get(&key) {
            Some(&id) => id,
            None => self.insert(key.detached(), &record, out),
        };
        let timeout = self.config.timeout;
        let tx = self.by_id.get_mut(&id).expect("indexes agree");
        record.transaction = Some(tx.id);
        tx.last_seen = meta.ts;
        let status = record.message.status();
        match status {
            None => {
                if tx.request_seen {
                    record.retransmission = true;
                    tx.request_retransmissions += 1;
                    self.stats.request_retransmissions += 1;
                    return Arc::new(record);
                }
                let record = Arc::new(record);
                tx.request = Some(record.clone());
                tx.request_seen = true;
                tx.first_seen = tx.first_seen.min(meta.ts);
                record
            }
            Some(code) => {
                let to_tag = record
                    .message
                    .to_tag()
                    .map(|t| record.message.raw().slice_ref(t))
                    .unwrap_or_default();
                if tx
                    .seen_responses
                    .iter()
                    .any(|(c, t)| *c == code && *t == to_tag)
                {
                    record.retransmission = true;
                    tx.response_retransmissions += 1;
                    self.stats.response_retransmissions += 1;
                    return Arc::new(record);
                }
                if tx.seen_responses.len() < MAX_PROVISIONALS * 2 {
                    tx.seen_responses
                        .push((code, Bytes::copy_from_slice(&to_tag)));
                }
                if !tx.request_seen && tx.seen_responses.len() == 1 {
                    self.stats.responses_without_request += 1;
                }
                if code < 200 {
                    let record = Arc::new(record);
                    if tx.provisionals.len() < MAX_PROVISIONALS {
                        tx.provisionals.push(record.clone());
                    } else {
                        tx.provisionals_dropped += 1;
                    }
                    if tx.state == TransactionState::Trying {
                        tx.state = TransactionState::Proceeding;
                    }
                    if tx.method == Method::Invite {
                        tx.deadline = meta.ts + self.config.invite_proceeding_timeout;
                        self.deadlines.push(Reverse((tx.deadline, tx.id)));
                    }
                    return record;
                }
                if tx.state == TransactionState::Completed {
                    tx.other_finals += 1;
                    return Arc::new(record);
                }
                if tx.request_seen {
                    record.response_time = Some(meta.ts.since(tx.first_seen));
                }
                let record = Arc::new(record);
                tx.final_response = Some(record.clone());
                tx.response_time = record.response_time;
                tx.state = TransactionState::Completed;
                // Linger to absorb retransmissions (Timer D/J-like).
                tx.deadline = meta.ts + timeout;
                self.deadlines.push(Reverse((tx.deadline, tx.id)));
                self.lingering.push_back((tx.deadline, tx.id));
                self.stats.completed += 1;
                // Hand the messages over with the event; the entry lingers
                // with only what retransmission matching needs, so the
                // table's memory does not hold every message for 32 s.
                let snapshot = Transaction {
                    id: tx.id,
                    key: tx.key.clone(),
                    method: tx.method.clone(),
                    cseq: tx.cseq,
                    request: tx.request.take(),
                    request_retransmissions: tx.request_retransmissions,
                    provisionals: std::mem::take(&mut tx.provisionals),
                    provisionals_dropped: tx.provisionals_dropped,
                    final_response: tx.final_response.take(),
                    other_finals: tx.other_finals,
                    response_retransmissions: tx.response_retransmissions,
                    ack: tx.ack.clone(),
                    first_seen: tx.first_seen,
                    last_seen: tx.last_seen,
                    state: tx.state,
                    response_time: tx.response_time,
                    seen_responses: Vec::new(),
                    request_seen: tx.request_seen,
                    deadline: tx.deadline,
                };
                out.push(TransactionEvent::Completed(Arc::new(snapshot)));
                record
            }
        }
    }

    fn insert(
        &mut self,
        key: TransactionKey,
        first: &MessageRecord,
        out: &mut Vec<TransactionEvent>,
    ) -> TransactionId {
        if self.lingering.len() > 2 * self.config.max_transactions.max(1) {
            // Entries of transactions already gone, kept behind a later
            // deadline (packet times out of order): dropped, so the queue
            // stays within the table's bound.
            let by_id = &self.by_id;
            self.lingering
                .retain(|(d, id)| by_id.get(id).is_some_and(|t| t.deadline == *d));
        }
        while self.by_key.len() >= self.config.max_transactions.max(1) {
            if !self.evict_oldest(out) {
                break;
            }
        }
        let id = self.next_id;
        self.next_id += 1;
        let ts = first.meta.ts;
        let deadline = ts + self.config.timeout;
        let tx = Transaction {
            id,
            key: key.clone(),
            method: match &key {
                TransactionKey::Branch { method, .. } | TransactionKey::Legacy { method, .. } => {
                    method.clone()
                }
            },
            cseq: first.message.cseq().map_or(0, |c| c.number),
            request: None,
            request_retransmissions: 0,
            provisionals: Vec::new(),
            provisionals_dropped: 0,
            final_response: None,
            other_finals: 0,
            response_retransmissions: 0,
            ack: None,
            first_seen: ts,
            last_seen: ts,
            state: TransactionState::Trying,
            response_time: None,
            seen_responses: Vec::new(),
            request_seen: false,
            deadline,
        };
        self.deadlines.push(Reverse((deadline, id)));
        self.by_key.insert(key, id);
        self.by_id.insert(id, Box::new(tx));
        self.stats.created += 1;
        self.stats.in_flight = self.by_key.len() as u64;
        id
    }

    /// Remove the completed transaction that completed first, else the
    /// open one with the earliest deadline; false if none.
    fn evict_oldest(&mut self, out: &mut Vec<TransactionEvent>) -> bool {
        while let Some((deadline, id)) = self.lingering.pop_front() {
            // Its heap entry goes stale (take_if_current skips it).
            if self.take_if_current(id, deadline).is_some() {
                self.stats.evicted += 1;
                return true;
            }
        }
        while let Some(Reverse((deadline, id))) = self.deadlines.pop() {
            if let Some(tx) = self.take_if_current(id, deadline) {
                self.stats.evicted += 1;
                if tx.state != TransactionState::Completed {
                    out.push(TransactionEvent::TimedOut(
                        Arc::new(tx),
                        TimeoutCause::Evicted,
                    ));
                }
                return true;
            }
        }
        false
    }

    fn take_if_current(&mut self, id: TransactionId, deadline: Timestamp) -> Option<Transaction> {
        if self.by_id.get(&id)?.deadline != deadline {
            return None; // superseded heap entry
        }
        let tx = self.by_id.remove(&id)?;
        self.by_key.remove(&tx.key);
        self.stats.in_flight = self.by_key.len() as u64;
        Some(*tx)
    }

    /// Run timers up to `now` (packet clock).
    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<TransactionEvent>) {
        while self.lingering.front().is_some_and(|(d, _)| *d <= now) {
            self.lingering.pop_front();
        }
        while let Some(&Reverse((deadline, id))) = self.deadlines.peek() {
            if deadline > now {
                break;
            }
            self.deadlines.pop();
            if let Some(tx) = self.take_if_current(id, deadline)
                && tx.state != TransactionState::Completed
            {
                self.stats.timed_out += 1;
                out.push(TransactionEvent::TimedOut(
                    Arc::new(tx),
                    TimeoutCause::NoFinalResponse,
                ));
            }
        }
    }

    /// End of input: every unanswered transaction is reported, in id order.
    pub fn finish(&mut self, out: &mut Vec<TransactionEvent>) {
        let mut rest: Vec<Box<Transaction>> = self.by_id.drain().map(|(_, tx)| tx).collect();
        self.by_key.clear();
        self.deadlines.clear();
        self.lingering.clear();
        self.stats.in_flight = 0;
        rest.sort_by_key(|tx| tx.id);
        for tx in rest {
            if tx.state != TransactionState::Completed {
                self.stats.open_at_end += 1;
                out.push(TransactionEvent::TimedOut(
                    Arc::new(*tx),
                    TimeoutCause::EndOfCapture,
                ));
            }
        }
    }
}
