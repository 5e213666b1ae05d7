//! The bodies of the fuzz targets (`agent/fuzz`, libFuzzer through
//! cargo-fuzz: `cargo xtask fuzz [target] [seconds]`), here so that a
//! plain test on stable (tests/pipeline/fuzz_corpus.rs) replays the seed
//! corpus and every crash once found through exactly the same code.
//!
//! Each takes any bytes, must never panic, hang or grow without bound,
//! and asserts the invariants of its stage. Inputs are what the stage
//! reads in real life (a capture file, SIP text, an SDP body, a header
//! value, an RTCP packet), so the fixtures are the seed corpus as they are.

use std::io::Cursor;
use std::path::PathBuf;
use std::sync::Arc;

use bytes::Bytes;

use crate::analysis::credentials::{Secret, SecretString};
use crate::analysis::digest::{
    AuthenticatedRequest, Challenge, Credentials, check_credentials, parse_auth_headers, verify,
};
use crate::analysis::media::rtcp::reception_reports;
use crate::analysis::media::{negotiated_streams, parse_sdp};
use crate::capture::file::CaptureFile;
use crate::packet::{Decoder, DecoderConfig};
use crate::pipeline::{Event, Pipeline, PipelineConfig};
use crate::sip::framing::{MessageBoundary, StreamFramer};
use crate::sip::{Framing, SipMessage, SipUri, TransactionKey};
use crate::time::Timestamp;

/// A target's body: any bytes in, a panic on a broken invariant.
pub type Target = fn(&[u8]);

/// The fuzz targets, by name (`cargo xtask fuzz NAME`).
pub const TARGETS: &[(&str, Target)] = &[
    ("pcap_reader", pcap_reader),
    ("decoder", decoder),
    ("sip", sip),
    ("sdp", sdp),
    ("rtcp", rtcp),
    ("digest", digest),
    ("pipeline", pipeline),
];

/// A capture file: every record read until the end or the first fatal
/// error, which ends the file.
pub fn pcap_reader(data: &[u8]) {
    let Ok(file) = CaptureFile::from_reader(PathBuf::from("fuzz"), Cursor::new(data)) else {
        return;
    };
    let mut fatal = false;
    for item in file {
        assert!(!fatal, "a record after a fatal error");
        if let Err(e) = item {
            fatal = e.is_fatal();
        }
    }
}

/// A capture file's frames through the packet stage only (link, IP,
/// fragment and TCP reassembly, framing): every byte of a SIP candidate
/// comes from the input.
pub fn decoder(data: &[u8]) {
    let Ok(file) = CaptureFile::from_reader(PathBuf::from("fuzz"), Cursor::new(data)) else {
        return;
    };
    let mut decoder = Decoder::new(DecoderConfig {
        media: true,
        ..DecoderConfig::default()
    });
    let (mut out, mut media, mut icmp) = (Vec::new(), Vec::new(), Vec::new());
    let mut bytes_in = 0usize;
    for pkt in file.flatten() {
        bytes_in += pkt.data.len();
        decoder.decode(&pkt, &mut out);
        decoder.take_media(&mut media);
        decoder.take_icmp(&mut icmp);
        decoder.tick(pkt.ts);
        media.clear();
        icmp.clear();
    }
    decoder.finish();
    let s = decoder.stats();
    assert_eq!(decoder.in_flight().0, 0, "streams left after finish");
    // Reassembly only ever joins bytes it was given: what comes out of
    // TCP framing is at most what went in.
    let framed: usize = out
        .iter()
        .filter(|d| d.meta.transport == crate::packet::Transport::Tcp)
        .map(|d| d.payload.len())
        .sum();
    assert!(framed <= bytes_in, "{framed} framed bytes from {bytes_in}");
    let tcp_out = out
        .iter()
        .filter(|d| d.meta.transport == crate::packet::Transport::Tcp)
        .count() as u64;
    assert_eq!(tcp_out, s.tcp.messages);
}

/// SIP text: parsed as a datagram, and framed as a stream cut into
/// pieces (size from the input's length). Every message framed out of the
/// stream frames to itself alone, and the frames account for every byte
/// consumed.
pub fn sip(data: &[u8]) {
    parse_and_read(Bytes::copy_from_slice(data), Framing::Datagram);
    const MAX: usize = 64 << 10;
    let chunk = 1 + data.len() % 97;
    let mut framer = StreamFramer::default();
    let mut buf: Vec<u8> = Vec::new();
    let mut consumed = 0usize;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            let f = framer.next(&buf, MAX);
            let n = match f {
                MessageBoundary::NeedMore => break,
                MessageBoundary::Message(n)
                | MessageBoundary::KeepAlive(n)
                | MessageBoundary::Junk(n)
                | MessageBoundary::Oversized(n) => n,
            };
            assert!(n > 0 && n <= buf.len(), "{f:?} of {} bytes", buf.len());
            if let MessageBoundary::Message(n) = f {
                let msg = &buf[..n];
                assert_eq!(
                    StreamFramer::default().next(msg, MAX),
                    MessageBoundary::Message(n)
                );
                parse_and_read(Bytes::copy_from_slice(msg), Framing::Stream);
            }
            buf.drain(..n);
            framer.consumed(n);
            consumed += n;
        }
    }
    assert_eq!(consumed + buf.len(), data.len());
}

/// Parse a message and read every accessor the analyses use.
fn parse_and_read(raw: Bytes, framing: Framing) {
    let Ok(m) = SipMessage::parse(raw, framing) else {
        return;
    };
    let _ = (
        m.call_id(),
        m.cseq(),
        m.branch(),
        m.sent_by(),
        m.via_received(),
    );
    let _ = (
        m.via_rport(),
        m.from_uri(),
        m.from_tag(),
        m.to_uri(),
        m.to_tag(),
    );
    let _ = (m.contact_uri(), m.expires(), m.content_type(), m.body());
    let _ = (m.start_line(), m.request_uri(), m.reason_phrase());
    for uri in [m.contact_uri(), m.from_uri(), m.to_uri()]
        .into_iter()
        .flatten()
    {
        let _ = SipUri::parse(uri);
    }
    let _ = TransactionKey::of(&m);
    // The owned views the analyses read (NAT, registration, calls).
    let _ = (m.top_via(), m.vias(), m.label());
    for c in m.contacts() {
        let _ = c.host_port().and_then(|h| h.ip());
    }
}

/// An SDP body, or a SIP message carrying one (its body is used): parsed,
/// and negotiated against itself.
pub fn sdp(data: &[u8]) {
    let sip_body = data.windows(4).position(|w| w == b"\r\n\r\n");
    let body = match sip_body {
        Some(i) if !data.starts_with(b"v=") => &data[i + 4..],
        _ => data,
    };
    if let Ok(s) = parse_sdp(body) {
        let _ = negotiated_streams(&s, &s);
    }
}

/// An RTCP (compound) packet: its reception reports.
pub fn rtcp(data: &[u8]) {
    for r in reception_reports(data) {
        let _ = r.fraction_lost_percent();
        let _ = r.round_trip(Timestamp(u64::MAX / 2));
        let _ = r.round_trip(Timestamp(0));
    }
}

/// Authentication header values: the whole input as one value, and the
/// WWW-/Proxy-Authenticate and (Proxy-)Authorization headers of the input
/// as a SIP message. Credentials are checked against every challenge and
/// verified against a password and an HA1.
pub fn digest(data: &[u8]) {
    let mut values: Vec<String> = vec![String::from_utf8_lossy(data).into_owned()];
    if let Ok(m) = SipMessage::parse(Bytes::copy_from_slice(data), Framing::Datagram) {
        for h in [
            "WWW-Authenticate",
            "Proxy-Authenticate",
            "Authorization",
            "Proxy-Authorization",
        ] {
            values.extend(m.header(h));
        }
    }
    let challenges: Vec<Challenge> = values
        .iter()
        .filter_map(|v| Challenge::parse_all(v).ok())
        .flatten()
        .collect();
    let _ = Challenge::parse_bytes(data);
    let secrets = [
        Secret::Password(SecretString::new("secret")),
        Secret::Ha1 {
            ha1: SecretString::new("0123456789abcdef0123456789abcdef"),
            algorithm: crate::analysis::digest::Algorithm::Md5,
        },
    ];
    for v in &values {
        let _ = parse_auth_headers(v);
        let Ok(creds) = Credentials::parse(v) else {
            continue;
        };
        let _ = (creds.algorithm(), creds.nonce_count());
        for secret in &secrets {
            let _ = verify(&creds, "REGISTER", Some(data), secret);
        }
        let request = AuthenticatedRequest {
            method: "REGISTER",
            request_uri: "sip:example.com",
            message: None,
            challenge_message: None,
        };
        for ch in &challenges {
            let _ = check_credentials(Timestamp(0), ch, &creds, &request);
        }
    }
}

/// A capture file through the whole pipeline; the events and counters
/// agree with each other.
pub fn pipeline(data: &[u8]) {
    let Ok(file) = CaptureFile::from_reader(PathBuf::from("fuzz"), Cursor::new(data)) else {
        return;
    };
    // The default: RTP is read from the capture, as `analyze` does.
    let mut p = Pipeline::new(PipelineConfig::default());
    let mut events = Vec::new();
    for pkt in file.flatten() {
        p.ingest_into(&pkt, &mut events);
    }
    events.extend(p.finish());
    let s = p.stats();
    let count = |f: fn(&Event) -> bool| events.iter().filter(|e| f(e)).count() as u64;
    assert_eq!(count(|e| matches!(e, Event::Message(_))), s.sip.messages);
    assert_eq!(
        count(|e| matches!(e, Event::Malformed(_))),
        s.sip.unreadable
    );
    assert_eq!(s.sip.messages, s.sip.requests + s.sip.responses);
    assert!(s.transactions.completed <= s.transactions.created);
    let diagnoses = events
        .iter()
        .filter_map(|e| match e {
            Event::Diagnosis(d) => Some(Arc::clone(d)),
            _ => None,
        })
        .filter(|d| d.source.is_some())
        .count() as u64;
    assert_eq!(diagnoses, s.findings.shown);
}
