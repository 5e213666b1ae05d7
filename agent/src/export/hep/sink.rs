//! Pipeline events → HEP3 packets, the export sink beside the console and
//! the spans:
//!
//! | event                  | HEP protocol type     | correlation id |
//! |------------------------|-----------------------|----------------|
//! | SIP message, malformed | 0x01 SIP, as captured | its Call-ID    |
//! | RTCP packet            | 0x05 RTCP as JSON     | the call whose media ports it uses |
//! | closed call            | 0x23 QoS report JSON, one per stream direction | Call-ID |
//! | finding                | 100 log (JSON)        | the Call-ID of its evidence |
//!
//! RTCP is matched to its call by address: the RTP address of a stream
//! direction (RTCP multiplexed, RFC 5761) or the port above it (RFC 3550
//! §11). The tables doing it follow the call reports and are bounded.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use serde::Serialize;

use super::encode::{self, Agent, ProtocolType, Record};
use super::{HepConfig, HepSender, SenderStats, redact};
use crate::analysis::calls::Call;
use crate::analysis::media::rtcp::reception_reports;
use crate::diagnosis::Diagnosis;
use crate::export::calls_json::{DirectionJson, direction_json};
use crate::packet::{Datagram, Meta, Transport};
use crate::pipeline::Event;
use crate::sip::MessageRecord;

/// Calls and media addresses followed at most (RTCP correlation).
const MAX_CALLS: usize = 32_768;
const MAX_MEDIA: usize = 4 * MAX_CALLS;

/// What the sink made of the events (the sender counts the rest).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SinkStats {
    pub sip: u64,
    pub rtcp: u64,
    /// RTCP whose call is not known (sent without a correlation id).
    pub rtcp_uncorrelated: u64,
    pub qos_reports: u64,
    pub logs: u64,
    /// Too long for one HEP3 packet (64 KiB), not sent.
    pub too_long: u64,
    /// Calls or media addresses not followed: the tables were full.
    pub untracked: u64,
    /// SIP messages sent with their digest `response` values redacted.
    pub redacted: u64,
}

/// The HEP exporter: encodes on the pipeline's thread (cheap), sends on
/// the sender's.
pub struct HepSink {
    agent: Agent,
    sender: HepSender,
    include_digest_response: bool,
    stats: SinkStats,
    /// Call-ID → (caller, callee) of the initial INVITE.
    calls: HashMap<String, (SocketAddr, SocketAddr)>,
    /// RTP address of a stream direction → Call-ID.
    media: HashMap<SocketAddr, String>,
}

/// Final counters, for the summary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct HepStats {
    #[serde(flatten)]
    pub sink: SinkStats,
    #[serde(flatten)]
    pub sender: SenderStats,
}

impl HepStats {
    /// The summary line: `HEP udp://h:9060: packets 14 (SIP 10, ...): sent 14, dropped 0 ...`.
    pub fn line(&self, url: &str) -> String {
        let (k, s) = (&self.sink, &self.sender);
        format!(
            "  HEP                {url}: packets {} (SIP {}, RTCP {}, QoS reports {}, logs {}; digest responses redacted in {}): sent {}, dropped {} (queue full {}, send failed {}, too long {}), send errors {}, reconnects {}",
            k.sip + k.rtcp + k.qos_reports + k.logs,
            k.sip,
            k.rtcp,
            k.qos_reports,
            k.logs,
            k.redacted,
            s.sent,
            s.dropped() + k.too_long,
            s.dropped_queue_full,
            s.dropped_send_failed,
            k.too_long,
            s.send_errors,
            s.reconnects,
        )
    }
}

/// The final counters as a JSON line (`"type":"hep"`).
pub fn write_json(w: &mut impl std::io::Write, stats: &HepStats) -> std::io::Result<()> {
    crate::export::json::write_typed(w, "hep", stats)
}

impl HepSink {
    pub fn start(config: &HepConfig) -> std::io::Result<Self> {
        Ok(Self {
            agent: config.agent.clone(),
            sender: HepSender::start(&config.endpoint, config.sender)?,
            include_digest_response: config.include_digest_response,
            stats: SinkStats::default(),
            calls: HashMap::new(),
            media: HashMap::new(),
        })
    }

    /// One batch of events: what one packet (or tick) caused. A finding
    /// whose evidence names no Call-ID (a refused REGISTER) belongs to the
    /// message before it in the batch that completed its evidence (the
    /// one at the finding's time); a packet's batch holds a message or a
    /// few, a tick's none, so the look-back stays short.
    pub fn on_events(&mut self, events: &[Event]) {
        let mut messages: Vec<&MessageRecord> = Vec::new();
        for e in events {
            match e {
                Event::Diagnosis(d) => {
                    let raised_by = messages.iter().rev().find(|r| r.meta.ts == d.at);
                    self.on_diagnosis(d, raised_by.copied());
                }
                Event::Message(r) => {
                    messages.push(r);
                    self.on_event(e);
                }
                _ => self.on_event(e),
            }
        }
    }

    pub(crate) fn on_event(&mut self, event: &Event) {
        match event {
            Event::Message(r) => {
                let m = &r.message;
                self.send_sip(&r.meta, m.call_id_bytes(), m.raw());
            }
            Event::Malformed(m) => self.send_sip(&m.meta, None, &m.raw),
            Event::Rtcp(d) => self.on_rtcp(d),
            Event::Call(c) => self.on_call(c),
            Event::Diagnosis(d) => self.on_diagnosis(d, None),
            Event::TransactionCompleted(_)
            | Event::TransactionTimedOut { .. }
            | Event::RegistrationAttempt(_) => {}
        }
    }

    /// A finding as a log record, correlated by the Call-ID in its
    /// evidence or else that of the message that raised it; addressed
    /// like the call (caller → callee) or that message.
    fn on_diagnosis(&mut self, d: &Diagnosis, raised_by: Option<&MessageRecord>) {
        self.stats.logs += 1;
        let call_id: Option<&[u8]> = d
            .evidence
            .iter()
            .find(|e| e.name == "call_id")
            .map(|e| e.value.as_bytes())
            .or_else(|| raised_by.and_then(|r| r.message.call_id_bytes()));
        let known_call = call_id
            .and_then(|id| std::str::from_utf8(id).ok())
            .and_then(|id| self.calls.get(id).copied());
        let (src, dst) = known_call
            .or_else(|| raised_by.map(|r| (r.meta.src, r.meta.dst)))
            .unwrap_or_else(|| {
                let ip = d.source.unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
                let none = match ip {
                    IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
                    IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
                };
                (SocketAddr::new(ip, 0), SocketAddr::new(none, 0))
            });
        let payload = crate::export::json::typed("sipscope.finding", d);
        self.send(Record {
            ts: d.at,
            src,
            dst,
            transport: Transport::Udp,
            protocol: ProtocolType::Log,
            correlation_id: call_id,
            payload: &payload,
        });
    }

    fn on_rtcp(&mut self, d: &Datagram) {
        self.stats.rtcp += 1;
        let below = |a: SocketAddr| SocketAddr::new(a.ip(), a.port().wrapping_sub(1));
        let call_id = [d.meta.src, d.meta.dst, below(d.meta.src), below(d.meta.dst)]
            .iter()
            .find_map(|a| self.media.get(a))
            .cloned();
        if call_id.is_none() {
            self.stats.rtcp_uncorrelated += 1;
        }
        let payload = serde_json::to_vec(&rtcp_json(&d.payload)).unwrap_or_default();
        self.send(Record {
            ts: d.meta.ts,
            src: d.meta.src,
            dst: d.meta.dst,
            transport: Transport::Udp,
            protocol: ProtocolType::RtcpJson,
            correlation_id: call_id.as_deref().map(str::as_bytes),
            payload: &payload,
        });
    }

    /// Follows the call's addresses; at its last report, one QoS report
    /// per stream direction with the final RTP statistics.
    fn on_call(&mut self, c: &Call) {
        let addresses = c
            .streams
            .iter()
            .flat_map(|s| s.directions.iter().map(|d| d.to));
        if c.closed {
            self.calls.remove(&c.call_id);
            for a in addresses {
                if self.media.get(&a) == Some(&c.call_id) {
                    self.media.remove(&a);
                }
            }
            for s in &c.streams {
                for d in &s.directions {
                    self.stats.qos_reports += 1;
                    let payload = serde_json::to_vec(&QosJson {
                        r#type: "sipscope.rtp_stats",
                        call_id: &c.call_id,
                        m_line: s.negotiated.index,
                        codec: s.codec(),
                        direction: direction_json(d),
                    })
                    .unwrap_or_default();
                    let ts = d
                        .observed
                        .as_ref()
                        .map_or(c.at, |o| o.last_seen.max(c.ended.unwrap_or(c.at)));
                    self.send(Record {
                        ts,
                        src: d.from,
                        dst: d.to,
                        transport: Transport::Udp,
                        protocol: ProtocolType::QosReport,
                        correlation_id: Some(c.call_id.as_bytes()),
                        payload: &payload,
                    });
                }
            }
            return;
        }
        if self.calls.len() < MAX_CALLS || self.calls.contains_key(&c.call_id) {
            self.calls.insert(c.call_id.clone(), (c.caller, c.callee));
        } else {
            self.stats.untracked += 1;
        }
        for a in addresses {
            if self.media.len() < MAX_MEDIA || self.media.contains_key(&a) {
                self.media.insert(a, c.call_id.clone());
            } else {
                self.stats.untracked += 1;
            }
        }
    }

    /// A SIP message as captured, digest responses redacted unless allowed.
    fn send_sip(&mut self, meta: &Meta, correlation_id: Option<&[u8]>, raw: &[u8]) {
        self.stats.sip += 1;
        let redacted = if self.include_digest_response {
            None
        } else {
            redact::digest_responses(raw)
        };
        if redacted.is_some() {
            self.stats.redacted += 1;
        }
        self.send(Record {
            ts: meta.ts,
            src: meta.src,
            dst: meta.dst,
            transport: meta.transport,
            protocol: ProtocolType::Sip,
            correlation_id,
            payload: redacted.as_deref().unwrap_or(raw),
        });
    }

    fn send(&mut self, record: Record<'_>) {
        let mut out = Vec::with_capacity(record.payload.len() + 160);
        match encode::encode(&self.agent, &record, &mut out) {
            Ok(()) => {
                self.sender.submit(out);
            }
            Err(_) => self.stats.too_long += 1,
        }
    }

    pub fn stats(&self) -> HepStats {
        HepStats {
            sink: self.stats,
            sender: self.sender.stats(),
        }
    }

    /// Sends what is queued (bounded wait) and returns the counters.
    pub fn finish(self) -> HepStats {
        HepStats {
            sink: self.stats,
            sender: self.sender.finish(),
        }
    }
}

#[derive(Serialize)]
struct QosJson<'a> {
    r#type: &'static str,
    call_id: &'a str,
    m_line: usize,
    codec: String,
    #[serde(flatten)]
    direction: DirectionJson,
}

/// An RTCP packet in the JSON shape HOMER's QoS view reads (the field
/// names of RFC 3550 §6.4: sender information of an SR, report blocks).
#[derive(Serialize, Debug, PartialEq)]
pub(crate) struct RtcpJson {
    /// Packet type of the first packet of the compound (200 SR, 201 RR).
    r#type: u8,
    /// SSRC of the sender of the report.
    ssrc: u32,
    report_count: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    sender_information: Option<SenderInformation>,
    report_blocks: Vec<ReportBlock>,
}

#[derive(Serialize, Debug, PartialEq)]
struct SenderInformation {
    ntp_timestamp_sec: u32,
    ntp_timestamp_usec: u32,
    rtp_timestamp: u32,
    packets: u32,
    octets: u32,
}

#[derive(Serialize, Debug, PartialEq)]
struct ReportBlock {
    source_ssrc: u32,
    fraction_lost: u8,
    packets_lost: i32,
    highest_seq_no: u32,
    ia_jitter: u32,
    lsr: u32,
    dlsr: u32,
}

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |w| u32::from_be_bytes([w[0], w[1], w[2], w[3]]))
}

/// RFC 3550 §6.4.1: an SR's sender info follows the SSRC at octet 8.
pub(crate) fn rtcp_json(packet: &[u8]) -> RtcpJson {
    let pt = packet.get(1).copied().unwrap_or(0);
    let sender_information = (pt == 200 && packet.len() >= 28).then(|| SenderInformation {
        ntp_timestamp_sec: be32(packet, 8),
        // The NTP fraction (1/2^32 s) as microseconds.
        ntp_timestamp_usec: ((u64::from(be32(packet, 12)) * 1_000_000) >> 32) as u32,
        rtp_timestamp: be32(packet, 16),
        packets: be32(packet, 20),
        octets: be32(packet, 24),
    });
    let report_blocks: Vec<ReportBlock> = reception_reports(packet)
        .into_iter()
        .map(|r| ReportBlock {
            source_ssrc: r.ssrc,
            fraction_lost: r.fraction_lost,
            packets_lost: r.cumulative_lost,
            highest_seq_no: r.highest_seq,
            ia_jitter: r.jitter,
            lsr: r.lsr,
            dlsr: r.dlsr,
        })
        .collect();
    RtcpJson {
        r#type: pt,
        ssrc: be32(packet, 4),
        report_count: report_blocks.len(),
        sender_information,
        report_blocks,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An SR (RFC 3550 §6.4.1) from 0x01020304 with one report block about
    /// 0x0A0B0C0D: 25 % lost this interval, 7 cumulative, jitter 80.
    #[test]
    fn a_sender_report_as_json() {
        let mut p = vec![0x81, 200, 0, 12];
        p.extend_from_slice(&0x0102_0304u32.to_be_bytes());
        p.extend_from_slice(&3_900_000_000u32.to_be_bytes()); // NTP seconds
        p.extend_from_slice(&0x8000_0000u32.to_be_bytes()); // .5 s
        p.extend_from_slice(&160u32.to_be_bytes());
        p.extend_from_slice(&50u32.to_be_bytes());
        p.extend_from_slice(&8000u32.to_be_bytes());
        p.extend_from_slice(&0x0A0B_0C0Du32.to_be_bytes());
        p.extend_from_slice(&[64, 0, 0, 7]);
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&80u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        p.extend_from_slice(&0u32.to_be_bytes());
        let json = serde_json::to_value(rtcp_json(&p)).unwrap();
        assert_eq!(
            json,
            serde_json::json!({
                "type": 200, "ssrc": 0x0102_0304u32, "report_count": 1,
                "sender_information": {"ntp_timestamp_sec": 3_900_000_000u32,
                    "ntp_timestamp_usec": 500_000, "rtp_timestamp": 160,
                    "packets": 50, "octets": 8000},
                "report_blocks": [{"source_ssrc": 0x0A0B_0C0Du32, "fraction_lost": 64,
                    "packets_lost": 7, "highest_seq_no": 1000, "ia_jitter": 80,
                    "lsr": 0, "dlsr": 0}]
            })
        );
    }
}
