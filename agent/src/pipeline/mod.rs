//! The synchronous core of the userspace pipeline: captured packets in,
//! SIP events and findings out. Packets → [`crate::packet::Decoder`]
//! (link/IP/TCP, reassembly) → [`SipMessage::parse`] →
//! [`TransactionTable`] → the analyses (`wiring.rs`: who learns from
//! whom) → [`Event`]s for the callers, thinned by the flood guard.
//!
//! Deterministic and sans-IO: time is the packet clock only. A live source
//! calls [`Pipeline::tick`] periodically so timers fire when traffic
//! stops; a file source calls [`Pipeline::finish`] at the end.

mod drops;
mod stats;
#[cfg(test)]
pub(crate) mod tests;
pub(crate) mod wiring;

use std::sync::Arc;

use bytes::Bytes;

use crate::analysis::calls::{Call, CallConfig};
use crate::analysis::finding::Finding;
use crate::analysis::flood_guard::{FloodConfig, FloodGuard};
use crate::analysis::inbound::InboundConfig;
use crate::analysis::media::{FlowSnapshot, RtpSource};
use crate::analysis::reachability::ReachabilityConfig;
use crate::analysis::registration::{RegistrationAttempt, TrackerConfig};
use crate::diagnosis::Diagnosis;
use crate::packet::{Datagram, Decoder, DecoderConfig, IcmpUnreachable, Meta};
use crate::sip::transaction::TransactionEvent;
use crate::sip::{
    Framing, MalformedReason, MessageRecord, SipMessage, TimeoutCause, Transaction,
    TransactionConfig, TransactionTable,
};
use crate::{
    packet::{DroppedPacket, Packet, Plaintext},
    time::Timestamp,
};

use drops::media_meta;
pub use stats::{SipStats, Stats};
use wiring::{Analyses, Input};

#[derive(Clone, Debug, Default)]
pub struct PipelineConfig {
    pub decoder: DecoderConfig,
    pub transactions: TransactionConfig,
    /// Registration tracking: limits, thresholds and known credentials.
    pub registration: TrackerConfig,
    /// `net.no_response`, `net.icmp_unreachable`, `fw.local_drop`.
    pub reachability: ReachabilityConfig,
    /// Calls and their media (`media.*`, `nat.private_sdp`); the RTP
    /// source is `calls.observations.source`.
    pub calls: CallConfig,
    /// `call.inbound_blocked`.
    pub inbound: InboundConfig,
    /// Repeats of a finding about one source under a flood.
    pub findings: FloodConfig,
}

/// A SIP-looking payload that could not be read as a message at all
/// (RFC 3261 §7 start line broken), kept as evidence.
#[derive(Clone, Debug)]
pub struct MalformedMessage {
    pub meta: Meta,
    pub reason: MalformedReason,
    pub raw: Bytes,
}

/// What the pipeline tells its callers (console, JSON, traces, metrics):
/// the SIP facts it saw and what the analyses found in them.
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
    /// A call changed state or negotiated media (RFC 3261 §13, RFC 3264);
    /// its last report is `closed` and has the final RTP statistics.
    Call(Arc<Call>),
    /// An RTCP packet (RFC 3550 §6, compound as captured; told from RTP
    /// by RFC 5761 §4) from a media port, for exporters that forward it
    /// (HEP). The calls read its reports themselves.
    Rtcp(Arc<Datagram>),
}

impl From<Finding> for Event {
    fn from(f: Finding) -> Self {
        match f {
            Finding::Diagnosis(d) => Event::Diagnosis(Arc::new(d)),
            Finding::RegistrationAttempt(a) => Event::RegistrationAttempt(Arc::new(a)),
            Finding::Call(c) => Event::Call(Arc::new(c)),
        }
    }
}

pub struct Pipeline {
    decoder: Decoder,
    table: TransactionTable,
    sip: SipStats,
    datagrams: Vec<Datagram>,
    tx_events: Vec<TransactionEvent>,
    clock: Timestamp,
    analyses: Analyses,
    /// The SIP facts of the current batch, for the analyses (the same
    /// facts go to the caller as events).
    sip_inputs: Vec<Input<'static>>,
    icmp: Vec<IcmpUnreachable>,
    media: Vec<Datagram>,
    /// Decodes packets the kernel dropped: its own TCP/fragment state and
    /// counters, so a dropped copy of a packet XDP also saw is not counted
    /// or reassembled twice.
    drop_decoder: Decoder,
    found: Vec<Finding>,
    flood: FloodGuard,
}

impl Pipeline {
    pub fn new(config: PipelineConfig) -> Self {
        // RTP/RTCP datagrams are handed to the call tracker unless nothing
        // measures RTP. Live, the kernel copies no RTP, only RTCP reports.
        let decoder_config = DecoderConfig {
            media: config.calls.observations.source != RtpSource::None,
            ..config.decoder.clone()
        };
        Pipeline {
            decoder: Decoder::new(decoder_config),
            table: TransactionTable::new(config.transactions),
            sip: SipStats::default(),
            datagrams: Vec::new(),
            tx_events: Vec::new(),
            clock: Timestamp(0),
            analyses: Analyses::new(&config),
            sip_inputs: Vec::new(),
            icmp: Vec::new(),
            media: Vec::new(),
            drop_decoder: Decoder::new(config.decoder.clone()),
            found: Vec::new(),
            flood: FloodGuard::new(config.findings),
        }
    }

    /// Applies what of a reloaded configuration can change while running:
    /// known credentials, the challenge-loop threshold, the media grace
    /// period and quality thresholds, and the SIP ports. Everything else
    /// in `config` (table limits, timeouts) is ignored: it needs a new
    /// pipeline.
    pub fn retune(&mut self, config: &PipelineConfig) {
        self.analyses.retune(config);
        self.decoder.set_sip_ports(&config.decoder.sip_ports);
        self.drop_decoder.set_sip_ports(&config.decoder.sip_ports);
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
        let start = out.len();
        self.decode_into(pkt.ts, |d, datagrams| d.decode(pkt, datagrams), out);
        self.decoder.take_media(&mut self.media);
        self.analyses
            .analyse(self.media.iter().map(Input::Rtp), &mut self.found);
        // RTCP also goes to the exporters that forward it (HEP), as captured.
        for d in self.media.drain(..) {
            if crate::analysis::media::rtcp::is_rtcp(&d.payload) {
                out.push(Event::Rtcp(Arc::new(d)));
            }
        }
        self.analyse_sip(out);
        self.decoder.take_icmp(&mut self.icmp);
        self.analyses
            .analyse(self.icmp.iter().map(Input::Icmp), &mut self.found);
        self.icmp.clear();
        self.emit_found(out);
        self.guard(out, start);
    }

    /// Feed the plaintext of one TLS library call (live capture's TLS
    /// tracer): framed like SIP over TCP, then the same path as a wire
    /// message, with transport TLS.
    pub fn ingest_plaintext_into(&mut self, p: &Plaintext, out: &mut Vec<Event>) {
        let start = out.len();
        self.decode_into(p.ts, |d, datagrams| d.decode_plaintext(p, datagrams), out);
        self.analyse_sip(out);
        self.emit_found(out);
        self.guard(out, start);
    }

    /// Timers up to `ts`, then the SIP candidates `decode` produces, each
    /// parsed and matched to its transaction.
    fn decode_into(
        &mut self,
        ts: Timestamp,
        decode: impl FnOnce(&mut Decoder, &mut Vec<Datagram>),
        out: &mut Vec<Event>,
    ) {
        self.tick_into(ts, out);
        let mut datagrams = std::mem::take(&mut self.datagrams);
        decode(&mut self.decoder, &mut datagrams);
        for d in datagrams.drain(..) {
            self.on_datagram(d, out);
        }
        self.datagrams = datagrams;
    }

    /// Removes the findings in `out[from..]` the flood guard holds back
    /// (counted there), keeping the order of the rest. The analyses have
    /// seen them all; only what is shown is thinned.
    fn guard(&mut self, out: &mut Vec<Event>, from: usize) {
        let mut keep = from;
        for i in from..out.len() {
            let shown = match &out[i] {
                Event::Diagnosis(d) => self.flood.admit(d),
                // A source that registers is a UA host, not a scanner.
                Event::RegistrationAttempt(a) => {
                    if a.outcome.is_success() {
                        self.flood.note_registered(a.client.ip(), a.ended);
                    }
                    true
                }
                _ => true,
            };
            if shown {
                out.swap(keep, i);
                keep += 1;
            }
        }
        out.truncate(keep);
    }

    /// Feed one packet this host's kernel dropped (live capture's drop
    /// monitor). A SIP message is matched to the open request of its flow
    /// and, when a netfilter rule dropped it, raises `fw.local_drop`; the
    /// request's later `net.no_response` then says the answer was dropped
    /// here. Dropped non-SIP UDP to an unprivileged port (RTP) raises
    /// `fw.local_drop` with the port. An initial INVITE to a registered
    /// contact raises `call.inbound_blocked` at once. Returns the findings.
    pub fn ingest_drop(&mut self, drop: &DroppedPacket) -> Vec<Event> {
        let mut out = Vec::new();
        let mut datagrams = Vec::new();
        self.drop_decoder.decode(&drop.packet, &mut datagrams);
        let mut icmp = Vec::new();
        self.drop_decoder.take_icmp(&mut icmp);
        let records: Vec<MessageRecord> = datagrams
            .into_iter()
            .filter_map(|d| {
                let message = SipMessage::parse(d.payload, framing(&d.meta)).ok()?;
                Some(MessageRecord {
                    meta: d.meta,
                    message,
                    transaction: None,
                    retransmission: false,
                    response_time: None,
                })
            })
            .collect();
        let media = if records.is_empty() {
            media_meta(&drop.packet, &self.drop_decoder)
        } else {
            None
        };
        let inputs = records
            .iter()
            .map(|r| Input::DroppedSip(r, &drop.reason))
            .chain(media.map(|meta| Input::DroppedMedia(meta, &drop.reason)));
        self.analyses.analyse(inputs, &mut self.found);
        self.emit_found(&mut out);
        self.guard(&mut out, 0);
        out
    }

    /// The analyses over this batch's SIP facts; their findings follow the
    /// facts in `out`.
    fn analyse_sip(&mut self, out: &mut Vec<Event>) {
        self.analyses
            .analyse(self.sip_inputs.drain(..), &mut self.found);
        self.emit_found(out);
    }

    /// Appends what the analyses found, as events.
    fn emit_found(&mut self, out: &mut Vec<Event>) {
        out.extend(self.found.drain(..).map(Event::from));
    }

    fn on_datagram(&mut self, d: Datagram, out: &mut Vec<Event>) {
        match SipMessage::parse(d.payload.clone(), framing(&d.meta)) {
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
                self.sip_inputs.push(Input::Message(record.clone()));
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

    /// The transaction layer's verdicts, to the caller and the analyses.
    fn flush_tx_events(&mut self, out: &mut Vec<Event>) {
        for e in self.tx_events.drain(..) {
            let (event, input) = transaction_fact(e);
            self.sip_inputs.push(input);
            out.push(event);
        }
    }

    /// Run timers up to `now` (packet clock; a live source passes its
    /// current capture time when traffic is idle).
    pub fn tick(&mut self, now: Timestamp) -> Vec<Event> {
        let mut out = Vec::new();
        self.tick_into(now, &mut out);
        self.guard(&mut out, 0);
        out
    }

    fn tick_into(&mut self, now: Timestamp, out: &mut Vec<Event>) {
        if now <= self.clock {
            return;
        }
        self.clock = now;
        self.table.tick(now, &mut self.tx_events);
        self.decoder.tick(now);
        self.drop_decoder.tick(now);
        self.flush_tx_events(out);
        // Transactions timed out by this tick first: the analyses' own
        // timers then see them closed.
        self.analyse_sip(out);
        self.analyses.analyse([Input::Tick(now)], &mut self.found);
        self.emit_found(out);
    }

    /// The kernel's RTP flow statistics as of `now` (live capture polls
    /// its flow map and hands the snapshots in); judges the calls whose
    /// media they now cover.
    pub fn ingest_rtp_flows(&mut self, now: Timestamp, flows: &[FlowSnapshot]) -> Vec<Event> {
        let mut out = Vec::new();
        self.analyses
            .analyse([Input::RtpFlows(now, flows)], &mut self.found);
        self.emit_found(&mut out);
        self.guard(&mut out, 0);
        out
    }

    /// End of input: report transactions still waiting for a final
    /// response (cause `EndOfCapture`) and count bytes left in buffers.
    pub fn finish(&mut self) -> Vec<Event> {
        let mut out = Vec::new();
        self.decoder.finish();
        self.table.finish(&mut self.tx_events);
        self.flush_tx_events(&mut out);
        self.analyse_sip(&mut out);
        self.analyses.analyse([Input::Finish], &mut self.found);
        self.emit_found(&mut out);
        self.guard(&mut out, 0);
        out
    }

    /// Call table sizes: (open calls, eviction-queue entries).
    pub fn calls_in_flight(&self) -> (usize, usize) {
        self.analyses.calls.in_flight()
    }

    /// The calls up now with their RTP so far, for a live view.
    pub fn calls_up(&self, now: Timestamp) -> Vec<Call> {
        self.analyses.calls.calls_up(now)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            packets: self.decoder.stats(),
            sip: self.sip.clone(),
            transactions: self.table.stats.clone(),
            registrations: self.analyses.registrations.stats(),
            reachability: self.analyses.reachability.stats(),
            calls: self.analyses.calls.stats(),
            inbound: self.analyses.inbound.stats(),
            auth: self.analyses.exchanges.stats(),
            findings: self.flood.stats(),
        }
    }

    /// Live table sizes: (transactions, TCP streams, TCP bytes, fragment
    /// datagrams).
    pub fn in_flight(&self) -> (usize, usize, usize, usize) {
        let (streams, bytes, frags) = self.decoder.in_flight();
        (self.table.len(), streams, bytes, frags)
    }
}

/// A transaction verdict as the callers' event and the analyses' input.
pub(crate) fn transaction_fact(e: TransactionEvent) -> (Event, Input<'static>) {
    match e {
        TransactionEvent::Completed(t) => {
            (Event::TransactionCompleted(t.clone()), Input::Completed(t))
        }
        TransactionEvent::TimedOut(transaction, cause) => (
            Event::TransactionTimedOut {
                transaction: transaction.clone(),
                cause,
            },
            Input::TimedOut(transaction, cause),
        ),
    }
}

/// SIP over UDP is one message per datagram; over TCP a stream framed by
/// Content-Length (RFC 3261 §18.3).
fn framing(meta: &Meta) -> Framing {
    match meta.transport {
        crate::packet::Transport::Udp => Framing::Datagram,
        crate::packet::Transport::Tcp | crate::packet::Transport::Tls => Framing::Stream,
    }
}
