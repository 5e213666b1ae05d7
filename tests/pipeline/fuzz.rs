//! Property tests: arbitrary bytes and mutated SIP through the whole
//! pipeline never panic, counters stay consistent, and well-formed
//! messages survive any segmentation of a TCP stream.

use proptest::prelude::*;
use sipscope::pipeline::{Event, Pipeline, PipelineConfig};
use sipscope::{
    packet::{Direction, LinkType, Packet},
    time::Timestamp,
};

use crate::common::{CLIENT, Flags, SERVER, messages, request, response, run_packets, tcp, udp};

fn link() -> impl Strategy<Value = LinkType> {
    prop_oneof![
        Just(LinkType::Ethernet),
        Just(LinkType::RawIp),
        Just(LinkType::Ipv4),
        Just(LinkType::Ipv6),
        Just(LinkType::LinuxSll),
        Just(LinkType::LinuxSll2),
        Just(LinkType::Null),
    ]
}

/// Seeds for mutation: a REGISTER exchange and an INVITE with a body.
fn seeds() -> Vec<Vec<u8>> {
    vec![
        request("REGISTER", "z9hG4bKs1", 1, "seed-1@x", ""),
        response(401, "Unauthorized", "REGISTER", "z9hG4bKs1", 1, "seed-1@x", "t1"),
        request("INVITE", "z9hG4bKs2", 1, "seed-2@x", "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\nc=IN IP4 192.0.2.1\r\n"),
        response(200, "OK", "INVITE", "z9hG4bKs2", 1, "seed-2@x", "t2"),
        b"OPTIONS sip:a@b SIP/2.0\r\nv: SIP/2.0/UDP h;branch=z9hG4bKx\r\ni: c\r\nf: <sip:a@b>;tag=1\r\nt: sip:b@c\r\nCSeq: 1 OPTIONS\r\nl: 0\r\n\r\n".to_vec(),
    ]
}

#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Delete(usize, usize),
    Truncate(usize),
    Duplicate(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(i, b)| Mutation::Flip(i, b)),
        (
            any::<usize>(),
            prop::collection::vec(
                prop_oneof![
                    Just(b'\r'),
                    Just(b'\n'),
                    Just(b':'),
                    Just(b';'),
                    Just(b' '),
                    Just(b'<'),
                    Just(b'"'),
                    any::<u8>()
                ],
                1..8
            )
        )
            .prop_map(|(i, v)| Mutation::Insert(i, v)),
        (any::<usize>(), 1usize..40).prop_map(|(i, n)| Mutation::Delete(i, n)),
        any::<usize>().prop_map(Mutation::Truncate),
        (any::<usize>(), 1usize..60).prop_map(|(i, n)| Mutation::Duplicate(i, n)),
    ]
}

fn apply(mut m: Vec<u8>, muts: &[Mutation]) -> Vec<u8> {
    for mu in muts {
        let len = m.len().max(1);
        match mu {
            Mutation::Flip(i, b) => {
                if !m.is_empty() {
                    let i = i % m.len();
                    m[i] = *b;
                }
            }
            Mutation::Insert(i, v) => {
                let i = i % (m.len() + 1);
                m.splice(i..i, v.iter().copied());
            }
            Mutation::Delete(i, n) => {
                let i = i % len;
                let e = (i + n).min(m.len());
                if i < e {
                    m.drain(i..e);
                }
            }
            Mutation::Truncate(i) => m.truncate(i % len),
            Mutation::Duplicate(i, n) => {
                let i = i % len;
                let e = (i + n).min(m.len());
                if i < e {
                    let part = m[i..e].to_vec();
                    m.splice(e..e, part);
                }
            }
        }
    }
    m
}

/// Events and counters agree with each other.
fn check_consistency(events: &[Event], p: &Pipeline) {
    let s = p.stats();
    let msgs = events
        .iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .count() as u64;
    let bad = events
        .iter()
        .filter(|e| matches!(e, Event::Malformed(_)))
        .count() as u64;
    assert_eq!(msgs, s.sip.messages);
    assert_eq!(bad, s.sip.unreadable);
    assert_eq!(s.sip.messages, s.sip.requests + s.sip.responses);
    assert!(s.transactions.completed <= s.transactions.created);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_frames_never_panic(frames in prop::collection::vec((link(), prop::collection::vec(any::<u8>(), 0..200)), 1..20)) {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut events = Vec::new();
        for (i, (link, data)) in frames.into_iter().enumerate() {
            let pkt = Packet {
                ts: Timestamp(i as u64 * 1_000_000),
                ifindex: 0,
                direction: Direction::Unknown,
                link,
                orig_len: data.len() as u32,
                data,
            };
            p.ingest_into(&pkt, &mut events);
        }
        events.extend(p.finish());
        check_consistency(&events, &p);
    }

    #[test]
    fn arbitrary_udp_payloads_on_the_sip_port_never_panic(payloads in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..300), 1..10)) {
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut events = Vec::new();
        for (i, payload) in payloads.iter().enumerate() {
            p.ingest_into(&udp(i as u64, CLIENT, SERVER, payload), &mut events);
        }
        events.extend(p.finish());
        check_consistency(&events, &p);
    }

    #[test]
    fn mutated_sip_over_udp_and_tcp_never_panics(
        seed in 0usize..5,
        muts in prop::collection::vec(mutation(), 1..6),
        cuts in prop::collection::vec(any::<usize>(), 0..5),
        order in prop::collection::vec(any::<usize>(), 0..6),
    ) {
        let msg = apply(seeds()[seed].clone(), &muts);
        // Over UDP, as one datagram.
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut events = p.ingest(&udp(0, CLIENT, SERVER, &msg));
        events.extend(p.finish());
        check_consistency(&events, &p);
        // Over TCP, cut into segments delivered in a shuffled order with repeats.
        let segs = segments(&msg, &cuts);
        let mut packets = vec![tcp(0, CLIENT, SERVER, 99, Flags { syn: true, fin: false }, &[])];
        let mut idx: Vec<usize> = (0..segs.len()).collect();
        for (k, o) in order.iter().enumerate() {
            let n = idx.len();
            idx.swap(k % n, o % n);
        }
        if let Some(&again) = order.first() { idx.push(again % segs.len()); }
        for (t, i) in idx.into_iter().enumerate() {
            let (off, part) = &segs[i];
            packets.push(tcp(t as u64 + 1, CLIENT, SERVER, 100 + *off as u32, Flags::default(), part));
        }
        let mut p = Pipeline::new(PipelineConfig::default());
        let mut events = Vec::new();
        for pkt in &packets { p.ingest_into(pkt, &mut events); }
        events.extend(p.finish());
        check_consistency(&events, &p);
    }

    #[test]
    fn framer_accessors_never_panic_on_sip_shaped_garbage(
        start in prop_oneof![Just("INVITE sip:a@b SIP/2.0"), Just("SIP/2.0 200 OK"), Just("X  y  SIP/2.0 ")],
        lines in prop::collection::vec(
            (prop_oneof![Just("Via"), Just("v"), Just("CSeq"), Just("i"), Just("f"), Just("t"), Just("m"), Just("l"), Just("Expires"), Just("Date"), Just(" ")],
             prop::collection::vec(any::<u8>(), 0..40)),
            0..12),
        body in prop::collection::vec(any::<u8>(), 0..64),
        stream in any::<bool>(),
    ) {
        let mut raw = start.as_bytes().to_vec();
        raw.extend_from_slice(b"\r\n");
        for (name, value) in &lines {
            raw.extend_from_slice(name.as_bytes());
            raw.push(b':');
            raw.extend_from_slice(value);
            raw.extend_from_slice(b"\r\n");
        }
        raw.extend_from_slice(b"\r\n");
        raw.extend_from_slice(&body);
        let framing = if stream { sipscope::sip::Framing::Stream } else { sipscope::sip::Framing::Datagram };
        if let Ok(m) = sipscope::sip::SipMessage::parse(bytes::Bytes::from(raw), framing) {
            let _ = (m.call_id(), m.cseq(), m.branch(), m.sent_by(), m.via_received(), m.via_rport());
            let _ = (m.from_uri(), m.from_tag(), m.to_uri(), m.to_tag(), m.contact_uri(), m.expires());
            let _ = (m.content_type(), m.body(), m.start_line(), m.request_uri(), m.reason_phrase());
            let _ = m.header("Via");
            if let Some(u) = m.contact_uri() { let _ = sipscope::sip::SipUri::parse(u); }
            let _ = sipscope::sip::TransactionKey::of(&m);
        }
    }

    #[test]
    fn any_segmentation_of_a_valid_stream_yields_the_same_messages(
        cuts in prop::collection::vec(any::<usize>(), 0..8),
        swaps in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        let stream: Vec<u8> = seeds().concat();
        let segs = segments(&stream, &cuts);
        let mut idx: Vec<usize> = (0..segs.len()).collect();
        // Reorder only within a window of 3 segments (the pending list is
        // bounded; real reordering is local too).
        for (k, s) in swaps.iter().enumerate() {
            let n = idx.len();
            let a = k % n;
            let b = (a + s % 3).min(n - 1);
            idx.swap(a, b);
        }
        let mut packets = vec![tcp(0, CLIENT, SERVER, 99, Flags { syn: true, fin: false }, &[])];
        for (t, i) in idx.into_iter().enumerate() {
            let (off, part) = &segs[i];
            packets.push(tcp(t as u64 + 1, CLIENT, SERVER, 100 + *off as u32, Flags::default(), part));
        }
        let (events, stats) = run_packets(&packets, PipelineConfig::default());
        let got: Vec<Vec<u8>> = messages(&events).iter().map(|m| m.message.raw().to_vec()).collect();
        prop_assert_eq!(got, seeds());
        prop_assert_eq!(stats.packets.tcp.dropped_bytes, 0);
        prop_assert_eq!(stats.sip.messages_with_defects, 0);
    }
}

/// Cut `data` at the given points: (offset, bytes) per segment.
fn segments(data: &[u8], cuts: &[usize]) -> Vec<(usize, Vec<u8>)> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (data.len().max(1))).collect();
    points.push(0);
    points.push(data.len());
    points.sort_unstable();
    points.dedup();
    let segs: Vec<(usize, Vec<u8>)> = points
        .windows(2)
        .map(|w| (w[0], data[w[0]..w[1]].to_vec()))
        .collect();
    if segs.is_empty() {
        vec![(0, data.to_vec())]
    } else {
        segs
    }
}
