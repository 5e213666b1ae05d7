//! The session driven in-process on the packet clock: frames, drops,
//! ticks and RTP polls in; console lines, JSON records and kernel
//! requests out. What `run` and `analyze` print is decided here, so these
//! tests need neither a kernel nor a subprocess.

use std::time::Duration;

use super::rtp::print_active;
use super::*;
use crate::capture::live::RtpFlowStats;
use crate::export::otel::{OtlpArgs, Telemetry};
use crate::packet::{Direction, DropReason, LinkType};

/// 01:00:00.000001 on the packet clock.
const T0: Timestamp = Timestamp(3_600_000_000_000 + 1_500);

fn session(format: Format, rtp_interval: Option<Duration>) -> Session<Vec<u8>> {
    let telemetry = Telemetry::start_with(None, &OtlpArgs::default(), None).unwrap();
    let mut pipeline = PipelineConfig::default();
    if rtp_interval.is_some() {
        // As `run` configures it: calls judged on the kernel's statistics.
        pipeline.calls.observations.source = crate::analysis::media::RtpSource::Kernel;
    }
    let config = SessionConfig {
        pipeline,
        format,
        rtp_interval,
    };
    Session::new(config, Vec::new(), Spans::new(&telemetry))
}

fn finish(s: Session<Vec<u8>>, last_rtp: Option<&RtpPoll>) -> (Stats, String) {
    let done = s.finish(last_rtp).unwrap();
    (done.stats, String::from_utf8(done.out).unwrap())
}

fn frame(ts: Timestamp, src: ([u8; 4], u16), dst: ([u8; 4], u16), sip: &str) -> Packet {
    let mut data = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4(src.0, dst.0, 64)
        .udp(src.1, dst.1)
        .write(&mut data, sip.as_bytes())
        .unwrap();
    Packet {
        ts,
        ifindex: 1,
        direction: Direction::Ingress,
        link: LinkType::Ethernet,
        orig_len: data.len() as u32,
        data,
    }
}

fn feed_frame(s: &mut Session<Vec<u8>>, packet: &Packet) {
    s.feed(Input::Frame { packet, note: None }).unwrap();
}

const PHONE: ([u8; 4], u16) = ([10, 0, 0, 2], 5062);
const PBX: ([u8; 4], u16) = ([10, 0, 0, 1], 5060);

const UNANSWERED: &str = "REGISTER sip:pbx SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-1\r\n\
    From: <sip:a@pbx>;tag=1\r\nTo: <sip:a@pbx>\r\nCall-ID: tick-1\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";

const UNAUTHORIZED: &str = "SIP/2.0 401 Unauthorized\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-1\r\n\
    From: <sip:a@pbx>;tag=1\r\nTo: <sip:a@pbx>;tag=2\r\nCall-ID: tick-1\r\n\
    CSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n";

/// The live clock's tick, not the end of input, fires the transaction
/// timer when traffic stops (RFC 3261 timer F on the packet clock).
#[test]
fn a_tick_after_silence_times_out_an_unanswered_request() {
    for (silence, timed_out) in [(10, false), (40, true)] {
        let mut s = session(Format::Live, None);
        feed_frame(&mut s, &frame(T0, PHONE, PBX, UNANSWERED));
        s.feed(Input::Tick(T0 + Duration::from_secs(silence)))
            .unwrap();
        let (stats, text) = finish(s, None);
        assert!(
            text.contains(
                "01:00:00.000001 in  10.0.0.2:5062 → 10.0.0.1:5060  UDP  REGISTER sip:pbx SIP/2.0  Call-ID tick-1"
            ),
            "{text}"
        );
        let line = "!   REGISTER CSeq 1  no final response (timed out), request sent 1 times  Call-ID tick-1";
        assert_eq!(text.contains(line), timed_out, "after {silence} s: {text}");
        assert_eq!(stats.transactions.timed_out, u64::from(timed_out));
        // Within timer F the request is still open when the input ends.
        assert_eq!(stats.transactions.open_at_end, u64::from(!timed_out));
        assert!(text.contains("Summary\n  packets            1 "), "{text}");
    }
}

/// A dropped response fed as `Input::Drop` raises fw.local_drop, and the
/// request's timeout then says it was dropped here (JSON records).
#[test]
fn a_locally_dropped_response_explains_the_timeout() {
    let mut s = session(Format::Json, None);
    feed_frame(&mut s, &frame(T0, PHONE, PBX, UNANSWERED));
    let mut ip = Vec::new();
    etherparse::PacketBuilder::ipv4(PBX.0, PHONE.0, 64)
        .udp(PBX.1, PHONE.1)
        .write(&mut ip, UNAUTHORIZED.as_bytes())
        .unwrap();
    let dropped = DroppedPacket {
        packet: Packet {
            ts: T0 + Duration::from_millis(5),
            ifindex: 1,
            direction: Direction::Ingress,
            link: LinkType::RawIp,
            orig_len: ip.len() as u32,
            data: ip,
        },
        reason: DropReason {
            code: 0,
            name: "netfilter_drop".into(),
        },
    };
    s.feed(Input::Drop(&dropped)).unwrap();
    s.feed(Input::Tick(T0 + Duration::from_secs(40))).unwrap();
    let (stats, text) = finish(s, None);
    let records: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let codes: Vec<&str> = records
        .iter()
        .filter(|v| v["type"] == "diagnosis")
        .filter_map(|v| v["code"].as_str())
        .collect();
    assert_eq!(codes, ["fw.local_drop", "net.no_response"], "{text}");
    assert!(text.contains("dropped_locally"), "{text}");
    assert_eq!(stats.reachability.local_drops, 1);
    // JSON's summary is the driver's (after the spans): not written here.
    assert!(!records.iter().any(|v| v["type"] == "summary"), "{text}");
}

/// `analyze`'s view: the messages of a Call-ID together, then the
/// summary; a frame's note is a live-console line only.
#[test]
fn the_call_flow_groups_a_call_ids_messages_and_ends_with_the_summary() {
    let mut s = session(Format::CallFlow { max_bytes: 1 << 20 }, None);
    let request = frame(T0, PHONE, PBX, UNANSWERED);
    let answer = frame(T0 + Duration::from_millis(20), PBX, PHONE, UNAUTHORIZED);
    for (p, note) in [(&request, Some("a note")), (&answer, None)] {
        s.feed(Input::Frame { packet: p, note }).unwrap();
    }
    let (stats, text) = finish(s, None);
    assert_eq!(stats.sip.messages, 2);
    let expected = "Call-ID: tick-1  (2 messages)\n\
        \x20 01:00:00.000001  10.0.0.2:5062 → 10.0.0.1:5060  UDP  REGISTER sip:pbx SIP/2.0\n\
        \x20 01:00:00.020001  10.0.0.1:5060 → 10.0.0.2:5062  UDP  SIP/2.0 401 Unauthorized  (CSeq 1 REGISTER)  [20.0 ms]\n\n";
    assert!(text.starts_with(expected), "{text}");
    assert!(!text.contains("a note"), "{text}");
    assert!(text.contains("\nSummary\n"), "{text}");
}

fn flow(port: u16, lost_every: u16) -> RtpFlowStats {
    use crate::analysis::media::{RtpStreamStats, parse_rtp};
    let mut stats = RtpStreamStats::new();
    for seq in 0..100u16 {
        if lost_every > 0 && seq % lost_every == 1 {
            continue;
        }
        let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
        p[2..4].copy_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&[0; 160]);
        let ts = Timestamp(T0.0 + u64::from(seq) * 20_000_000);
        stats.update(ts, &parse_rtp(&p).unwrap(), p.len(), 8000);
    }
    RtpFlowStats {
        src: "10.0.0.1:10000".parse().unwrap(),
        dst: std::net::SocketAddr::new("10.0.0.2".parse().unwrap(), port),
        ifindex: 1,
        direction: Direction::Ingress,
        first_seen: stats.first_seen(),
        last_seen: stats.last_seen(),
        state: *stats.state(),
    }
}

/// A busy host gets a summary and the flows that lose, not a line per
/// flow every interval.
#[test]
fn many_flows_print_as_a_summary_and_the_losing_ones() {
    let mut few = Vec::new();
    print_active(&mut few, &[flow(20000, 0), flow(20002, 10)]).unwrap();
    assert_eq!(String::from_utf8(few).unwrap().lines().count(), 2);

    let mut flows: Vec<RtpFlowStats> = (0..30).map(|i| flow(20000 + 2 * i, 0)).collect();
    flows.push(flow(30000, 10));
    flows.push(flow(30002, 5));
    let mut out = Vec::new();
    print_active(&mut out, &flows).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 3, "{text}");
    assert!(
        lines[0].ends_with("rtp: 32 flows active, 3170 packets, 30 lost; the 2 losing most:"),
        "{text}"
    );
    assert!(lines[1].contains(":30002 in "), "most loss first: {text}");
    assert!(lines[2].contains(":30000 in "), "{text}");
}

/// Without calls up, the flow map is read once per `--rtp-interval` of
/// tick time (the first tick starts the interval), and that poll prints
/// the active flows; an expired flow is said whenever a poll finds it.
/// At the end, every flow is `rtp final` and the counters follow.
#[test]
fn rtp_polls_are_asked_for_on_the_tick_clock_and_their_flows_printed() {
    let mut s = session(Format::Live, Some(Duration::from_secs(10)));
    let requests = |s: &mut Session<Vec<u8>>| std::iter::from_fn(|| s.poll_request()).count();
    s.feed(Input::Tick(T0)).unwrap();
    s.feed(Input::Tick(T0 + Duration::from_secs(9))).unwrap();
    assert_eq!(requests(&mut s), 0, "no calls, interval not yet over");
    s.feed(Input::Tick(T0 + Duration::from_secs(10))).unwrap();
    assert_eq!(s.poll_request(), Some(Request::PollRtp));
    let poll = RtpPoll {
        active: vec![flow(20000, 10)],
        expired: vec![flow(20002, 0)],
        ..RtpPoll::default()
    };
    s.feed(Input::RtpFlows(&poll)).unwrap();
    s.feed(Input::Tick(T0 + Duration::from_secs(11))).unwrap();
    assert_eq!(requests(&mut s), 0, "the interval starts again");
    let last = RtpPoll {
        active: vec![flow(20000, 10)],
        ..RtpPoll::default()
    };
    let (stats, text) = finish(s, Some(&last));
    let rtp: Vec<&str> = text.lines().filter(|l| l.contains(" rtp ")).collect();
    assert_eq!(rtp.len(), 3, "{text}");
    assert!(
        rtp[0].contains(" rtp ended 10.0.0.1:10000 -> 10.0.0.2:20002 in "),
        "{text}"
    );
    assert!(
        rtp[1].contains(" rtp flow 10.0.0.1:10000 -> 10.0.0.2:20000 in "),
        "{text}"
    );
    assert!(
        rtp[2].contains(" rtp final 10.0.0.1:10000 -> 10.0.0.2:20000 in "),
        "{text}"
    );
    assert!(text.contains("\nrtp counters: "), "{text}");
    assert_eq!(
        stats.calls.rtp.kernel_snapshots,
        2 + 1,
        "{:?}",
        stats.calls.rtp
    );
}

/// HEP is one more sink of the session: each message goes out as a HEP3
/// SIP packet carrying it byte for byte, correlated by its Call-ID, and
/// the counters come back with the session's.
#[test]
fn hep_export_gets_every_message() {
    use crate::export::hep::{Endpoint, HepConfig, HepSink, SenderOptions, encode::Agent};
    let collector = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    collector
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let config = HepConfig {
        endpoint: Endpoint::parse(&format!("udp://{}", collector.local_addr().unwrap())).unwrap(),
        agent: Agent::default(),
        sender: SenderOptions::default(),
        include_digest_response: false,
    };
    let mut s = session(Format::Json, None).with_hep(HepSink::start(&config).unwrap());
    for packet in [
        frame(T0, PHONE, PBX, UNANSWERED),
        frame(T0 + Duration::from_millis(5), PBX, PHONE, UNAUTHORIZED),
    ] {
        s.feed(Input::Frame {
            packet: &packet,
            note: None,
        })
        .unwrap();
    }
    let done = s.finish(None).unwrap();
    let hep = done.hep.expect("HEP was on");
    assert_eq!(hep.sink.sip, 2);
    assert_eq!(hep.sender.sent, hep.sender.submitted, "{hep:?}");
    let mut buf = [0u8; 4096];
    for sip in [UNANSWERED, UNAUTHORIZED] {
        let n = collector.recv(&mut buf).unwrap();
        let packet = &buf[..n];
        assert!(packet.starts_with(b"HEP3"));
        assert!(
            packet.ends_with(sip.as_bytes()),
            "the message, as captured, last"
        );
        assert!(
            packet.windows(6).any(|w| w == b"tick-1"),
            "Call-ID as correlation id"
        );
    }
}

const PING: &str = "OPTIONS sip:pbx SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-p\r\n\
    From: <sip:a@pbx>;tag=1\r\nTo: <sip:pbx>\r\nCall-ID: ping-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

const PONG: &str = "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-p\r\n\
    From: <sip:a@pbx>;tag=1\r\nTo: <sip:pbx>;tag=9\r\nCall-ID: ping-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

/// Offline `--json`: the session writes each span right after the records
/// of the input that finished it, and the spans of what the input left
/// open at the end, so the same file gives the same lines in the same
/// order on every run.
#[test]
fn json_spans_follow_the_records_of_the_input_that_finished_them() {
    let telemetry = Telemetry::start_with(None, &OtlpArgs::default(), None).unwrap();
    let config = SessionConfig {
        pipeline: PipelineConfig::default(),
        format: Format::Json,
        rtp_interval: None,
    };
    let spans = Spans::json_lines(&telemetry, false);
    let mut s = Session::new(config, Vec::new(), spans);
    feed_frame(&mut s, &frame(T0, PHONE, PBX, PING));
    let pong_at = T0 + Duration::from_millis(3);
    feed_frame(&mut s, &frame(pong_at, PBX, PHONE, PONG));
    feed_frame(&mut s, &frame(pong_at, PHONE, PBX, UNANSWERED));
    let done = s.finish(None).unwrap();
    let text = String::from_utf8(done.out).unwrap();
    let kinds: Vec<String> = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .map(|v| match v["name"].as_str() {
            Some(name) if v.get("trace_id").is_some() => format!("span {name}"),
            _ => v["type"].as_str().unwrap().to_owned(),
        })
        .collect();
    let at = |k: &str| kinds.iter().position(|x| x == k).unwrap_or(usize::MAX);
    assert_eq!(
        kinds[..4],
        ["message", "transaction", "message", "span OPTIONS 200"],
        "{text}"
    );
    // The REGISTER was still unanswered when the input ended: its spans
    // come last, after its message.
    assert!(
        at("span OPTIONS 200") < at("span SIP registration"),
        "{text}"
    );
    assert!(kinds.last().unwrap().starts_with("span "), "{text}");
    let written = kinds.iter().filter(|k| k.starts_with("span ")).count() as u64;
    let export = done.spans_written.expect("the session wrote the spans");
    assert_eq!((export.exported, export.dropped), (written, 0));
    assert_eq!(done.traces.spans, written);
}

const FLOODED: &str = "FLOOD-1234 sip:pbx SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-f\r\n\
    From: <sip:a@pbx>;tag=1\r\nTo: <sip:pbx>\r\nCall-ID: flood-1\r\nCSeq: 1 FLOOD-1234\r\nContent-Length: 0\r\n\r\n";

/// The Prometheus view is one more sink of the session: messages by
/// method, kind and status class, transactions by outcome, the pipeline's
/// counters published on the tick; an invented method is `other`, and
/// nothing off the wire (Call-ID, addresses) becomes a label.
#[test]
fn prometheus_view_counts_by_closed_labels() {
    use crate::export::prometheus::PrometheusMetrics;
    let metrics = PrometheusMetrics::new();
    let mut s = session(Format::Json, None).with_prometheus(metrics.clone());
    for (i, sip) in [UNANSWERED, UNAUTHORIZED, FLOODED].into_iter().enumerate() {
        let (src, dst) = if sip.starts_with("SIP/2.0") {
            (PBX, PHONE)
        } else {
            (PHONE, PBX)
        };
        feed_frame(
            &mut s,
            &frame(T0 + Duration::from_millis(5 * i as u64), src, dst, sip),
        );
    }
    s.feed(Input::Tick(T0 + Duration::from_secs(1))).unwrap();
    let text = metrics.encode();
    for line in [
        r#"sipscope_sip_messages_total{method="REGISTER",kind="request",status_class="none",direction="in"} 1"#,
        r#"sipscope_sip_messages_total{method="REGISTER",kind="response",status_class="4xx",direction="in"} 1"#,
        r#"sipscope_sip_messages_total{method="other",kind="request",status_class="none",direction="in"} 1"#,
        r#"sipscope_sip_transactions_total{method="REGISTER",outcome="4xx"} 1"#,
        r#"sipscope_pipeline_events_total{counter="sip.messages"} 3"#,
        "# TYPE sipscope_build info",
    ] {
        assert!(text.contains(line), "{line} not in\n{text}");
    }
    assert!(!text.contains("FLOOD"), "a method off the wire is no label");
    assert!(!text.contains("tick-1") && !text.contains("10.0.0.2"));
    assert!(text.ends_with("# EOF\n"), "OpenMetrics ends with # EOF");
    // At the end, timed-out transactions are counted too.
    drop(s.finish(None).unwrap());
    let text = metrics.encode();
    assert!(
        text.contains(r#"sipscope_sip_transactions_total{method="other",outcome="timeout"} 1"#),
        "{text}"
    );
}

/// The live line of each direction: `in`, `out` and `?` keep the columns
/// of the addresses (the line is formatted in place, once).
#[test]
fn live_lines_name_the_direction_after_the_time() {
    let mut s = session(Format::Live, None);
    let mut request = frame(T0, PHONE, PBX, UNANSWERED);
    request.direction = Direction::Unknown;
    feed_frame(&mut s, &request);
    let mut answer = frame(T0 + Duration::from_millis(3), PBX, PHONE, UNAUTHORIZED);
    answer.direction = Direction::Egress;
    feed_frame(&mut s, &answer);
    let (_, text) = finish(s, None);
    for line in [
        "01:00:00.000001 ?   10.0.0.2:5062 → 10.0.0.1:5060  UDP  REGISTER sip:pbx SIP/2.0  Call-ID tick-1\n",
        "01:00:00.003001 out 10.0.0.1:5060 → 10.0.0.2:5062  UDP  SIP/2.0 401 Unauthorized  (CSeq 1 REGISTER)  [3.0 ms]  Call-ID tick-1\n",
    ] {
        assert!(text.contains(line), "{line}\nnot in\n{text}");
    }
}
