//! The synchronous core of the userspace pipeline: captured packets in,
//! SIP events out. Packets → [`crate::packet::Decoder`] (link/IP/TCP,
//! reassembly) → [`SipMessage::parse`] → [`TransactionTable`].
//!
//! Deterministic and sans-IO: time is the packet clock only. A live source
//! calls [`Pipeline::tick`] periodically so timers fire when traffic
//! stops; a file source calls [`Pipeline::finish`] at the end.

use std::sync::Arc;

use bytes::Bytes;

use crate::analysis::calls::{Call, CallConfig, CallStats, CallTracker};
use crate::analysis::flood_guard::{FloodConfig, FloodGuard, FloodStats};
use crate::analysis::inbound::{Inbound, InboundConfig, InboundStats};
use crate::analysis::media::{FlowSnapshot, RtpSource};
use crate::analysis::reachability::{Reachability, ReachabilityConfig, ReachabilityStats};
use crate::analysis::registration::{
    RegistrationAttempt, RegistrationStats, RegistrationTracker, TrackerConfig,
};
use crate::diagnosis::Diagnosis;
use crate::packet::{Datagram, Decoder, DecoderConfig, IcmpUnreachable, Meta, PacketStats};
use crate::sip::transaction::TransactionEvent;
use crate::sip::{
    Framing, MalformedCounts, MalformedReason, MessageRecord, SipMessage, TimeoutCause,
    Transaction, TransactionConfig, TransactionStats, TransactionTable,
};
use crate::{
    packet::{DroppedPacket, Packet},
    time::Timestamp,
};

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
    /// A call changed state or negotiated media (RFC 3261 §13, RFC 3264);
    /// its last report is `closed` and has the final RTP statistics.
    Call(Arc<Call>),
    /// An RTCP packet (RFC 3550 §6, compound as captured; told from RTP
    /// by RFC 5761 §4) from a media port, for exporters that forward it
    /// (HEP). The calls read its reports themselves.
    Rtcp(Arc<Datagram>),
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
    pub reachability: ReachabilityStats,
    pub calls: CallStats,
    pub inbound: InboundStats,
    /// Findings shown and suppressed by the flood guard.
    pub findings: FloodStats,
}

pub struct Pipeline {
    decoder: Decoder,
    table: TransactionTable,
    sip: SipStats,
    datagrams: Vec<Datagram>,
    tx_events: Vec<TransactionEvent>,
    clock: Timestamp,
    registrations: RegistrationTracker,
    reachability: Reachability,
    calls: CallTracker,
    inbound: Inbound,
    icmp: Vec<IcmpUnreachable>,
    media: Vec<Datagram>,
    /// Decodes packets the kernel dropped: its own TCP/fragment state and
    /// counters, so a dropped copy of a packet XDP also saw is not counted
    /// or reassembled twice.
    drop_decoder: Decoder,
    analysis_out: Vec<Event>,
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
            registrations: RegistrationTracker::new(config.registration),
            reachability: Reachability::new(ReachabilityConfig {
                answer_timeout: config.transactions.timeout,
                ..config.reachability
            }),
            calls: CallTracker::new(config.calls),
            inbound: Inbound::new(config.inbound),
            icmp: Vec::new(),
            media: Vec::new(),
            drop_decoder: Decoder::new(config.decoder.clone()),
            analysis_out: Vec::new(),
            flood: FloodGuard::new(config.findings),
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
        let start = out.len();
        self.tick_into(pkt.ts, out);
        let from = out.len();
        let mut datagrams = std::mem::take(&mut self.datagrams);
        self.decoder.decode(pkt, &mut datagrams);
        for d in datagrams.drain(..) {
            self.on_datagram(d, out);
        }
        self.datagrams = datagrams;
        self.decoder.take_media(&mut self.media);
        for d in self.media.drain(..) {
            self.calls
                .observe_rtp(d.meta.ts, d.meta.src, d.meta.dst, &d.payload);
            if crate::analysis::media::rtcp::is_rtcp(&d.payload) {
                out.push(Event::Rtcp(Arc::new(d)));
            }
        }
        self.analyse(from, out);
        self.decoder.take_icmp(&mut self.icmp);
        let before_icmp = out.len();
        for icmp in self.icmp.drain(..) {
            self.reachability.on_icmp(&icmp, out);
            self.inbound.on_icmp(&icmp);
        }
        self.calls.note_findings(&out[before_icmp..]);
        self.guard(out, start);
    }

    /// Removes the findings in `out[from..]` the flood guard holds back
    /// (counted there), keeping the order of the rest. The analyses have
    /// seen them all; only what is shown is thinned.
    fn guard(&mut self, out: &mut Vec<Event>, from: usize) {
        let mut keep = from;
        for i in from..out.len() {
            let shown = match &out[i] {
                Event::Diagnosis(d) => self.flood.admit(d),
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
        let mut sip = false;
        for d in datagrams {
            let framing = match d.meta.transport {
                crate::packet::Transport::Udp => Framing::Datagram,
                crate::packet::Transport::Tcp => Framing::Stream,
            };
            if let Ok(message) = SipMessage::parse(d.payload, framing) {
                sip = true;
                let record = MessageRecord {
                    meta: d.meta,
                    message,
                    transaction: None,
                    retransmission: false,
                    response_time: None,
                };
                self.reachability
                    .on_dropped_sip(&record, &drop.reason, &mut out);
                self.inbound.on_dropped_sip(&record, &drop.reason, &mut out);
            }
        }
        if !sip && let Some(meta) = media_meta(&drop.packet, &self.drop_decoder) {
            self.reachability
                .on_dropped_media(meta, &drop.reason, &mut out);
        }
        self.calls.note_findings(&out);
        self.guard(&mut out, 0);
        out
    }

    /// Runs the analyses over the SIP events `out[from..]` and appends
    /// what they found.
    fn analyse(&mut self, from: usize, out: &mut Vec<Event>) {
        let mut found = std::mem::take(&mut self.analysis_out);
        for e in &out[from..] {
            let learned = found.len();
            self.registrations.on_event(e, &mut found);
            self.reachability.on_event(e, &mut found);
            self.calls.on_event(e, &mut found);
            // Registration outcomes teach the inbound analysis its
            // bindings before it looks at the next message.
            self.inbound.learn(&found[learned..]);
            self.inbound.on_event(e, &mut found);
        }
        self.calls.note_findings(&found);
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
        self.guard(&mut out, 0);
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
        self.drop_decoder.tick(now);
        self.flush_tx_events(out);
        self.analyse(from, out);
        self.registrations.tick(now, out);
        self.reachability.tick(now, out);
        self.calls.tick(now, out);
        self.inbound.tick(now, out);
    }

    /// The kernel's RTP flow statistics as of `now` (live capture polls
    /// its flow map and hands the snapshots in); judges the calls whose
    /// media they now cover.
    pub fn ingest_rtp_flows(&mut self, now: Timestamp, flows: &[FlowSnapshot]) -> Vec<Event> {
        let mut out = Vec::new();
        self.calls.update_flows(now, flows, &mut out);
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
        self.analyse(0, &mut out);
        self.registrations.finish(&mut out);
        self.reachability.finish(&mut out);
        self.calls.finish(&mut out);
        self.inbound.finish(&mut out);
        self.guard(&mut out, 0);
        out
    }

    /// Call table sizes: (open calls, eviction-queue entries).
    pub fn calls_in_flight(&self) -> (usize, usize) {
        self.calls.in_flight()
    }

    /// The calls up now with their RTP so far, for a live view.
    pub fn calls_up(&self, now: Timestamp) -> Vec<Call> {
        self.calls.calls_up(now)
    }

    pub fn stats(&self) -> Stats {
        Stats {
            packets: self.decoder.stats(),
            sip: self.sip.clone(),
            transactions: self.table.stats.clone(),
            registrations: self.registrations.stats(),
            reachability: self.reachability.stats(),
            calls: self.calls.stats(),
            inbound: self.inbound.stats(),
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

/// Addresses of a dropped UDP packet between unprivileged, non-SIP ports
/// (the RTP/RTCP ranges PBXs use), for `fw.local_drop` on media.
fn media_meta(pkt: &Packet, decoder: &Decoder) -> Option<Meta> {
    let sliced = etherparse::LaxSlicedPacket::from_ip(&pkt.data).ok()?;
    let (src, dst) = match sliced.net.as_ref()? {
        etherparse::LaxNetSlice::Ipv4(v4) => (
            std::net::IpAddr::V4(v4.header().source_addr()),
            std::net::IpAddr::V4(v4.header().destination_addr()),
        ),
        etherparse::LaxNetSlice::Ipv6(v6) => (
            std::net::IpAddr::V6(v6.header().source_addr()),
            std::net::IpAddr::V6(v6.header().destination_addr()),
        ),
        etherparse::LaxNetSlice::Arp(_) => return None,
    };
    let Some(etherparse::TransportSlice::Udp(udp)) = sliced.transport else {
        return None;
    };
    let (sport, dport) = (udp.source_port(), udp.destination_port());
    if sport < 1024 || dport < 1024 || decoder.is_sip_port(sport, dport) {
        return None;
    }
    Some(Meta {
        ts: pkt.ts,
        src: std::net::SocketAddr::new(src, sport),
        dst: std::net::SocketAddr::new(dst, dport),
        transport: crate::packet::Transport::Udp,
        direction: pkt.direction,
        ifindex: pkt.ifindex,
    })
}
