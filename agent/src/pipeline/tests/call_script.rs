//! Test helper: a call (SIP with SDP, and RTP) scripted as raw IP packets
//! through the real [`Pipeline`], so the call tracker and the exporters see
//! the events (transactions, diagnoses, call reports) exactly as `analyze`
//! does.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::analysis::calls::Call;
use crate::pipeline::{Event, Pipeline, PipelineConfig};
use crate::{
    packet::{Direction, LinkType, Packet},
    time::Timestamp,
};

/// 2025-11-25T12:00:00Z.
pub(crate) const T0: u64 = 1_764_072_000_000_000_000;
pub(crate) const MS: u64 = 1_000_000;

/// The caller (a phone) and the callee (the PBX).
pub(crate) const PHONE: &str = "192.0.2.10";
pub(crate) const PBX: &str = "198.51.100.20";
pub(crate) const PHONE_RTP: &str = "192.0.2.10:10000";
pub(crate) const PBX_RTP: &str = "198.51.100.20:20000";
pub(crate) const CALL_ID: &str = "media-call-1@phone";

/// An SDP offering or answering PCMA (and telephone-event) at `ip:port`.
pub(crate) fn sdp(ip: &str, port: u16) -> String {
    format!(
        "v=0\r\no=- 1 1 IN IP4 {ip}\r\ns=-\r\nc=IN IP4 {ip}\r\nt=0 0\r\n\
         m=audio {port} RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n\
         a=rtpmap:101 telephone-event/8000\r\n"
    )
}

/// An RTP packet (RFC 3550 §5.1) of 20 ms PCMA.
pub(crate) fn rtp(seq: u16, ssrc: u32) -> Vec<u8> {
    let mut p = vec![0x80, 8];
    p.extend_from_slice(&seq.to_be_bytes());
    p.extend_from_slice(&(u32::from(seq) * 160).to_be_bytes());
    p.extend_from_slice(&ssrc.to_be_bytes());
    p.extend_from_slice(&[0xd5; 160]);
    p
}

pub(crate) const CALLER_SSRC: u32 = 0x1234;
pub(crate) const CALLEE_SSRC: u32 = 0x5678;

/// A call scripted message by message, times in ms after [`T0`].
pub(crate) struct CallScript {
    pub pipeline: Pipeline,
    pub events: Vec<Event>,
    /// The caller's signalling address (its SIP comes from here).
    pub phone: SocketAddr,
    pbx: SocketAddr,
}

impl CallScript {
    pub(crate) fn new() -> Self {
        Self::with_config(PipelineConfig::default())
    }

    pub(crate) fn with_config(config: PipelineConfig) -> Self {
        Self {
            pipeline: Pipeline::new(config),
            events: Vec::new(),
            phone: format!("{PHONE}:5060").parse().unwrap(),
            pbx: format!("{PBX}:5060").parse().unwrap(),
        }
    }

    /// A UDP datagram as a raw IPv4 packet at `ms` after [`T0`].
    pub(crate) fn packet(ms: u64, src: SocketAddr, dst: SocketAddr, payload: &[u8]) -> Packet {
        let (IpAddr::V4(s), IpAddr::V4(d)) = (src.ip(), dst.ip()) else {
            unreachable!("IPv4 test addresses")
        };
        let mut data = Vec::new();
        etherparse::PacketBuilder::ipv4(s.octets(), d.octets(), 64)
            .udp(src.port(), dst.port())
            .write(&mut data, payload)
            .unwrap();
        Self::raw_ip(ms, data)
    }

    /// A raw IP packet (any protocol) captured at `ms` after [`T0`].
    pub(crate) fn raw_ip(ms: u64, data: Vec<u8>) -> Packet {
        Packet {
            ts: Timestamp(T0 + ms * MS),
            ifindex: 1,
            direction: Direction::Unknown,
            link: LinkType::RawIp,
            orig_len: data.len() as u32,
            data,
        }
    }

    pub(crate) fn send(&mut self, ms: u64, src: SocketAddr, dst: SocketAddr, payload: &[u8]) {
        let packet = Self::packet(ms, src, dst, payload);
        self.pipeline.ingest_into(&packet, &mut self.events);
    }

    /// One SIP message; `from_caller` picks the direction. The branch is
    /// per CSeq number, as a UA's new transaction would have it.
    pub(crate) fn sip(
        &mut self,
        ms: u64,
        from_caller: bool,
        start: &str,
        cseq: &str,
        to_tag: bool,
    ) {
        self.sip_with(ms, from_caller, start, cseq, to_tag, "");
    }

    pub(crate) fn sip_with(
        &mut self,
        ms: u64,
        from_caller: bool,
        start: &str,
        cseq: &str,
        to_tag: bool,
        body: &str,
    ) {
        let (src, dst) = if from_caller {
            (self.phone, self.pbx)
        } else {
            (self.pbx, self.phone)
        };
        let ct = if body.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let text = format!(
            "{start}\r\nVia: SIP/2.0/UDP {PHONE}:5060;branch=z9hG4bK-{}\r\n\
             From: <sip:100@{PHONE}>;tag=caller\r\nTo: <sip:200@{PBX}>{}\r\n\
             Call-ID: {CALL_ID}\r\nCSeq: {cseq}\r\n{ct}Content-Length: {}\r\n\r\n{body}",
            cseq.split(' ').next().unwrap_or("1"),
            if to_tag { ";tag=callee" } else { "" },
            body.len()
        );
        self.send(ms, src, dst, text.as_bytes());
    }

    /// An initial INVITE (CSeq `cseq`, no SDP) at `ms`, challenged with
    /// `status` (a 401 or 407 status line) 10 ms later.
    pub(crate) fn challenged(&mut self, ms: u64, cseq: u32, status: &str) {
        let invite = format!("INVITE sip:200@{PBX} SIP/2.0");
        let c = format!("{cseq} INVITE");
        self.sip(ms, true, &invite, &c, false);
        self.sip(ms + 10, false, status, &c, true);
    }

    /// INVITE (CSeq `cseq`) with an offer at `ms`, 180 10 ms later, 200
    /// with the answer at +1000 ms, ACK at +1010 ms.
    pub(crate) fn answered_at(&mut self, ms: u64, cseq: u32) {
        self.answered_with(ms, cseq, &sdp(PHONE, 10000), &sdp(PBX, 20000));
    }

    /// [`Self::answered_at`] with the given offer and answer.
    pub(crate) fn answered_with(&mut self, ms: u64, cseq: u32, offer: &str, answer: &str) {
        let invite = format!("INVITE sip:200@{PBX} SIP/2.0");
        self.sip_with(ms, true, &invite, &format!("{cseq} INVITE"), false, offer);
        let c = format!("{cseq} INVITE");
        self.sip(ms + 10, false, "SIP/2.0 180 Ringing", &c, true);
        self.sip_with(ms + 1000, false, "SIP/2.0 200 OK", &c, true, answer);
        let ack = format!("ACK sip:200@{PBX} SIP/2.0");
        self.sip(ms + 1010, true, &ack, &format!("{cseq} ACK"), true);
    }

    /// `n` packets each way every 20 ms from `start_ms`; a direction that
    /// is `None` stays silent, else packet `i` is lost when it says so.
    pub(crate) fn media(
        &mut self,
        start_ms: u64,
        n: u16,
        caller_lost: Option<&dyn Fn(u16) -> bool>,
        callee_lost: Option<&dyn Fn(u16) -> bool>,
    ) {
        self.media_between(start_ms, n, (PHONE_RTP, PBX_RTP), caller_lost, callee_lost);
    }

    /// [`Self::media`] between other addresses (caller's, callee's).
    pub(crate) fn media_between(
        &mut self,
        start_ms: u64,
        n: u16,
        (phone, pbx): (&str, &str),
        caller_lost: Option<&dyn Fn(u16) -> bool>,
        callee_lost: Option<&dyn Fn(u16) -> bool>,
    ) {
        let (phone, pbx): (SocketAddr, SocketAddr) = (phone.parse().unwrap(), pbx.parse().unwrap());
        for i in 0..n {
            let ms = start_ms + u64::from(i) * 20;
            if caller_lost.is_some_and(|lost| !lost(i)) {
                self.send(ms, phone, pbx, &rtp(i, CALLER_SSRC));
            }
            if callee_lost.is_some_and(|lost| !lost(i)) {
                self.send(ms, pbx, phone, &rtp(i, CALLEE_SSRC));
            }
        }
    }

    /// BYE from the caller (CSeq `cseq`) at `ms`, its 200 5 ms later.
    pub(crate) fn bye(&mut self, ms: u64, cseq: u32) {
        let bye = format!("BYE sip:200@{PBX} SIP/2.0");
        let c = format!("{cseq} BYE");
        self.sip(ms, true, &bye, &c, true);
        self.sip(ms + 5, false, "SIP/2.0 200 OK", &c, true);
    }

    pub(crate) fn finish(&mut self) {
        let mut rest = self.pipeline.finish();
        self.events.append(&mut rest);
    }

    /// The codes of every diagnosis so far, sorted.
    pub(crate) fn codes(&self) -> Vec<crate::diagnosis::Code> {
        let mut c: Vec<_> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Diagnosis(d) => Some(d.code),
                _ => None,
            })
            .collect();
        c.sort();
        c
    }

    /// The call tracker's last report.
    pub(crate) fn closed(&self) -> Arc<Call> {
        let closed: Vec<&Arc<Call>> = self
            .events
            .iter()
            .filter_map(|e| match e {
                Event::Call(c) if c.closed => Some(c),
                _ => None,
            })
            .collect();
        assert_eq!(closed.len(), 1, "exactly one closed report");
        closed[0].clone()
    }
}
