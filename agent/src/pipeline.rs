//! The synchronous core of the userspace pipeline: captured packets in,
//! SIP events out. Packets → [`crate::packet::Decoder`] (link/IP/TCP,
//! reassembly) → [`SipMessage::parse`] → [`TransactionTable`].
//!
//! Deterministic and sans-IO: time is the packet clock only. A live source
//! calls [`Pipeline::tick`] periodically so timers fire when traffic
//! stops; a file source calls [`Pipeline::finish`] at the end.

use std::sync::Arc;

use bytes::Bytes;

use crate::analysis::registration::{
    RegistrationAttempt, RegistrationStats, RegistrationTracker, TrackerConfig,
};
use crate::capture::{Packet, Timestamp};
use crate::diagnosis::Diagnosis;
use crate::packet::{Datagram, Decoder, DecoderConfig, Meta, PacketStats};
use crate::sip::transaction::TransactionEvent;
use crate::sip::{
    Framing, MalformedCounts, MalformedReason, MessageRecord, SipMessage, TimeoutCause,
    Transaction, TransactionConfig, TransactionStats, TransactionTable,
};

#[derive(Clone, Debug, Default)]
pub struct PipelineConfig {
    pub decoder: DecoderConfig,
    pub transactions: TransactionConfig,
    /// Registration tracking: limits, thresholds and known credentials.
    pub registration: TrackerConfig,
}

/// A SIP-looking payload that could not be read as a message at all
/// (RFC 3261 §7 start line broken), kept as evidence.
#[derive(Clone, Debug)]
pub struct MalformedMessage {
    pub meta: Meta,
    pub reason: MalformedReason,
    pub raw: Bytes,
}

/// What the pipeline tells the analyses.
#[derive(Clone, Debug)]
pub enum Event {
    /// Every parsed message, in capture order, including retransmissions
    /// and messages with (non-fatal) defects (`message.defects`).
    Message(Arc<MessageRecord>),
    /// An unreadable message (fatal defect).
    Malformed(Arc<MalformedMessage>),
    /// The first final response of a transaction arrived. Later
    /// retransmissions and the ACK still arrive as `Message` events that
    /// carry the same transaction id.
    TransactionCompleted(Arc<Transaction>),
    /// No final response: timer expired on the packet clock, the capture
    /// ended, or the table was full.
    TransactionTimedOut {
        transaction: Arc<Transaction>,
        cause: TimeoutCause,
    },
    /// A finding of the analyses (registration, digest, NAT), in
    /// packet-clock order; also attached to its registration attempt.
    Diagnosis(Arc<Diagnosis>),
    /// A registration attempt reached its outcome (RFC 3261 §10).
    RegistrationAttempt(Arc<RegistrationAttempt>),
}

/// Counters of the SIP stage.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SipStats {
    /// Messages parsed (requests + responses, retransmissions included).
    pub messages: u64,
    pub requests: u64,
    pub responses: u64,
    pub retransmissions: u64,
    /// Messages that parsed but have at least one defect.
    pub messages_with_defects: u64,
    /// Payloads rejected as unreadable (fatal defect).
    pub unreadable: u64,
    /// Per reason, fatal and non-fatal together.
    pub malformed: MalformedCounts,
}

/// Every counter of the pipeline: nothing is dropped without a count.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct Stats {
    pub packets: PacketStats,
    pub sip: SipStats,
    pub transactions: TransactionStats,
    pub registrations: RegistrationStats,
}

pub struct Pipeline {
    decoder: Decoder,
    table: TransactionTable,
    sip: SipStats,
    datagrams: Vec<Datagram>,
    tx_events: Vec<TransactionEvent>,
    clock: Timestamp,
    registrations: RegistrationTracker,
    analysis_out: Vec<Event>,
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        Pipeline {
            decoder: Decoder::new(config.decoder),
            table: TransactionTable::new(config.transactions),
            sip: SipStats::default(),
            datagrams: Vec::new(),
            tx_events: Vec::new(),
            clock: Timestamp(0),
            registrations: RegistrationTracker::new(config.registration),
            analysis_out: Vec::new(),
        }
    }

    /// Feed one captured packet; returns the events it caused.
    pub fn ingest(&mut self, pkt: &Packet) -> Vec<Event> {
        let mut out = Vec::new();
        self.ingest_into(pkt, &mut out);
        out
    }

    /// Like [`Pipeline::ingest`], appending to a caller-owned buffer (no
    /// allocation per packet on the hot path).
    pub fn ingest_into(&mut self, pkt: &Packet, out: &mut Vec<Event>) {
        self.tick_into(pkt.ts, out);
        let from = out.len();
        let mut datagrams = std::mem::take(&mut self.datagrams);
        self.decoder.decode(pkt, &mut datagrams);
        for d in datagrams.drain(..) {
            self.on_datagram(d, out);
        }
        self.datagrams = datagrams;
        self.analyse(from, out);
    }

    /// Runs the analyses over the SIP events `out[from..]` and appends
    /// what they found.
    fn analyse(&mut self, from: usize, out: &mut Vec<Event>) {
        let mut found = std::mem::take(&mut self.analysis_out);
        for e in &out[from..] {
            self.registrations.on_event(e, &mut found);
        }
        out.append(&mut found);
        self.analysis_out = found;
    }

    fn on_datagram(&mut self, d: Datagram, out: &mut Vec<Event>) {
        let framing = match d.meta.transport {
            crate::packet::Transport::Udp => Framing::Datagram,
            crate::packet::Transport::Tcp => Framing::Stream,
        };
        match SipMessage::parse(d.payload.clone(), framing) {
            Ok(message) => {
                self.sip.messages += 1;
                if message.is_request() {
                    self.sip.requests += 1;
                } else {
                    self.sip.responses += 1;
                }
                if !message.defects.is_empty() {
                    self.sip.messages_with_defects += 1;
                    for r in message.defects.iter() {
                        self.sip.malformed.add(r);
                    }
                }
                let record = self.table.on_message(d.meta, message, &mut self.tx_events);
                if record.retransmission {
                    self.sip.retransmissions += 1;
                }
                self.flush_tx_events(out);
                out.push(Event::Message(record));
            }
            Err(reason) => {
                self.sip.unreadable += 1;
                self.sip.malformed.add(reason);
                out.push(Event::Malformed(Arc::new(MalformedMessage {
                    meta: d.meta,
                    reason,
                    raw: d.payload,
                })));
            }
        }
    }

    fn flush_tx_events(&mut self, out: &mut Vec<Event>) {
        for e in self.tx_events.drain(..) {
            out.push(match e {
                TransactionEvent::Completed(t) => Event::TransactionCompleted(t),
                TransactionEvent::TimedOut(transaction, cause) => {
                    Event::TransactionTimedOut { transaction, cause }
                }
            });
        }
    }

    /// Run timers up to `now` (packet clock; a live source passes its
    /// current capture time when traffic is idle).
    pub fn tick(&mut self, now: Timestamp) -> Vec<Event> {
        let mut out = Vec::new();
        self.tick_into(now, &mut out);
        out
    }

    fn tick_into(&mut self, now: Timestamp, out: &mut Vec<Event>) {
        if now <= self.clock {
            return;
        }
        self.clock = now;
        let from = out.len();
        self.table.tick(now, &mut self.tx_events);
        self.decoder.tick(now);
        self.flush_tx_events(out);
        self.analyse(from, out);
        self.registrations.tick(now, out);
    }

    /// End of input: report transactions still waiting for a final
    /// response (cause `EndOfCapture`) and count bytes left in buffers.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.decoder.finish();
        self.table.finish(&mut self.tx_events);
        self.flush_tx_events(&mut out);
        self.analyse(0, &mut out);
        self.registrations.finish(&mut out);
        out
    }

    pub fn stats(&self) -> Stats {
        Stats {
            packets: self.decoder.stats(),
            sip: self.sip.clone(),
            transactions: self.table.stats.clone(),
            registrations: self.registrations.stats(),
        }
    }

    /// Live table sizes: (transactions, TCP streams, TCP bytes, fragment
    /// datagrams).
    pub fn in_flight(&self) -> (usize, usize, usize, usize) {
        let (streams, bytes, frags) = self.decoder.in_flight();
        (self.table.len(), streams, bytes, frags)
    }
}
