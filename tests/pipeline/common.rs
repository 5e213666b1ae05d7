//! Helpers shared by the pipeline tests.

use std::path::{Path, PathBuf};

use sipscope::capture::file::CaptureFile;
use sipscope::pipeline::{Event, Pipeline, PipelineConfig, Stats};

/// The workspace root (the parent of the agent crate).
pub fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn fixtures() -> PathBuf {
    workspace().join("tests/fixtures")
}

/// `<workspace>/../shared/testdata/external`, when present beside the clone.
pub fn shared_external() -> Option<PathBuf> {
    let p = workspace().join("../shared/testdata/external");
    p.is_dir().then_some(p)
}

/// Run a capture file through a fresh pipeline; all events plus counters.
pub fn run_file(path: &Path, config: PipelineConfig) -> (Vec<Event>, Stats) {
    let mut pipeline = Pipeline::new(config);
    let mut events = Vec::new();
    for pkt in CaptureFile::open(path).unwrap_or_else(|e| panic!("{e}")) {
        let pkt = pkt.unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        pipeline.ingest_into(&pkt, &mut events);
    }
    events.extend(pipeline.finish());
    (events, pipeline.stats())
}

use etherparse::PacketBuilder;
use sipscope::{
    packet::{Direction, LinkType, Packet},
    time::Timestamp,
};

pub const CLIENT: ([u8; 4], u16) = ([192, 168, 1, 2], 5062);
pub const SERVER: ([u8; 4], u16) = ([203, 0, 113, 5], 5060);

fn packet(ts_ms: u64, data: Vec<u8>) -> Packet {
    Packet {
        ts: Timestamp(1_700_000_000_000_000_000 + ts_ms * 1_000_000),
        ifindex: 0,
        direction: Direction::Unknown,
        link: LinkType::Ethernet,
        orig_len: data.len() as u32,
        data,
    }
}

/// An Ethernet/IPv4/UDP frame.
pub fn udp(ts_ms: u64, from: ([u8; 4], u16), to: ([u8; 4], u16), payload: &[u8]) -> Packet {
    let b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(from.0, to.0, 64)
        .udp(from.1, to.1);
    let mut data = Vec::new();
    b.write(&mut data, payload).unwrap();
    packet(ts_ms, data)
}

/// TCP flags for [`tcp`].
#[derive(Clone, Copy, Default)]
pub struct Flags {
    pub syn: bool,
    pub fin: bool,
}

/// An Ethernet/IPv4/TCP frame.
pub fn tcp(
    ts_ms: u64,
    from: ([u8; 4], u16),
    to: ([u8; 4], u16),
    seq: u32,
    flags: Flags,
    payload: &[u8],
) -> Packet {
    let mut b = PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
        .ipv4(from.0, to.0, 64)
        .tcp(from.1, to.1, seq, 65535);
    if flags.syn {
        b = b.syn();
    }
    if flags.fin {
        b = b.fin();
    }
    let mut data = Vec::new();
    b.write(&mut data, payload).unwrap();
    packet(ts_ms, data)
}

/// Feed packets to a fresh default pipeline, then finish it.
pub fn run_packets(packets: &[Packet], config: PipelineConfig) -> (Vec<Event>, Stats) {
    let mut p = Pipeline::new(config);
    let mut events = Vec::new();
    for pkt in packets {
        p.ingest_into(pkt, &mut events);
    }
    events.extend(p.finish());
    (events, p.stats())
}

/// The parsed messages among the events.
pub fn messages(events: &[Event]) -> Vec<std::sync::Arc<sipscope::sip::MessageRecord>> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Message(m) => Some(m.clone()),
            _ => None,
        })
        .collect()
}

/// A minimal but complete request.
pub fn request(method: &str, branch: &str, cseq: u32, call_id: &str, body: &str) -> Vec<u8> {
    format!(
        "{method} sip:bob@example.com SIP/2.0\r\n\
         Via: SIP/2.0/UDP 192.168.1.2:5062;branch={branch};rport\r\n\
         Max-Forwards: 70\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {cseq_method}\r\n\
         Contact: <sip:alice@192.168.1.2:5062>\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len(),
        cseq_method = method,
    )
    .into_bytes()
}

/// A response to [`request`] (same Via, From, Call-ID, CSeq).
pub fn response(
    code: u16,
    reason: &str,
    method: &str,
    branch: &str,
    cseq: u32,
    call_id: &str,
    to_tag: &str,
) -> Vec<u8> {
    format!(
        "SIP/2.0 {code} {reason}\r\n\
         Via: SIP/2.0/UDP 192.168.1.2:5062;branch={branch};rport=5062;received=198.51.100.7\r\n\
         From: <sip:alice@example.com>;tag=a1\r\n\
         To: <sip:bob@example.com>;tag={to_tag}\r\n\
         Call-ID: {call_id}\r\n\
         CSeq: {cseq} {method}\r\n\
         Content-Length: 0\r\n\r\n"
    )
    .into_bytes()
}
