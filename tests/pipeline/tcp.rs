//! SIP over TCP: segments split, merged, reordered and repeated.

use sipscope::pipeline::PipelineConfig;

use crate::common::{CLIENT, Flags, SERVER, messages, request, run_packets, tcp};

const ISN: u32 = 1_000;

fn syn() -> sipscope::packet::Packet {
    tcp(
        0,
        CLIENT,
        SERVER,
        ISN,
        Flags {
            syn: true,
            fin: false,
        },
        &[],
    )
}

#[test]
fn one_message_in_three_segments_delivered_out_of_order() {
    let msg = request(
        "INVITE",
        "z9hG4bK1",
        1,
        "tcp-1@x",
        "v=0\r\no=- 1 1 IN IP4 192.168.1.2\r\n",
    );
    let (a, rest) = msg.split_at(40);
    let (b, c) = rest.split_at(60);
    let seq = ISN + 1;
    let (bs, cs) = (seq + a.len() as u32, seq + (a.len() + b.len()) as u32);
    let packets = [
        syn(),
        tcp(1, CLIENT, SERVER, cs, Flags::default(), c),
        tcp(2, CLIENT, SERVER, seq, Flags::default(), a),
        tcp(3, CLIENT, SERVER, bs, Flags::default(), b),
    ];
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 1);
    assert_eq!(&msgs[0].message.raw()[..], &msg[..]);
    // Completed by the last segment: its timestamp is the message's.
    assert_eq!(msgs[0].meta.ts, packets[3].ts);
    assert_eq!(stats.packets.tcp.out_of_order_segments, 1);
    assert_eq!(stats.packets.tcp.dropped_bytes, 0);
}

#[test]
fn out_of_order_without_handshake_waits_for_the_start() {
    // Capture started mid-connection: the first segment seen is the tail.
    let msg = request("REGISTER", "z9hG4bK2", 7, "tcp-2@x", "");
    let (a, rest) = msg.split_at(50);
    let (b, c) = rest.split_at(50);
    let seq = 77_000u32;
    let packets = [
        tcp(1, CLIENT, SERVER, seq + 100, Flags::default(), c),
        tcp(2, CLIENT, SERVER, seq, Flags::default(), a),
        tcp(3, CLIENT, SERVER, seq + 50, Flags::default(), b),
    ];
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 1, "{stats:?}");
    assert_eq!(&msgs[0].message.raw()[..], &msg[..]);
    assert_eq!(stats.packets.tcp.junk_bytes, 0);
}

#[test]
fn two_messages_in_one_segment() {
    let first = request("OPTIONS", "z9hG4bK3", 1, "tcp-3@x", "");
    let second = request("OPTIONS", "z9hG4bK4", 2, "tcp-3@x", "body");
    let both = [first.clone(), second.clone()].concat();
    let packets = [
        syn(),
        tcp(1, CLIENT, SERVER, ISN + 1, Flags::default(), &both),
    ];
    let (events, _) = run_packets(&packets, PipelineConfig::default());
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 2);
    assert_eq!(&msgs[0].message.raw()[..], &first[..]);
    assert_eq!(&msgs[1].message.raw()[..], &second[..]);
    assert_eq!(msgs[1].message.body(), b"body");
}

#[test]
fn retransmitted_segment_is_counted_not_repeated() {
    let msg = request("REGISTER", "z9hG4bK5", 1, "tcp-4@x", "");
    let (a, b) = msg.split_at(30);
    let seq = ISN + 1;
    let packets = [
        syn(),
        tcp(1, CLIENT, SERVER, seq, Flags::default(), a),
        tcp(2, CLIENT, SERVER, seq, Flags::default(), a), // retransmission
        tcp(3, CLIENT, SERVER, seq + a.len() as u32, Flags::default(), b),
        tcp(4, CLIENT, SERVER, seq + a.len() as u32, Flags::default(), b), // again, after completion
    ];
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    assert_eq!(messages(&events).len(), 1);
    assert_eq!(stats.packets.tcp.retransmitted_segments, 2);
    // A retransmitted segment is not a SIP retransmission.
    assert_eq!(stats.transactions.request_retransmissions, 0);
}

#[test]
fn partially_overlapping_segment_contributes_only_new_bytes() {
    let msg = request("OPTIONS", "z9hG4bK6", 1, "tcp-5@x", "");
    let seq = ISN + 1;
    let packets = [
        syn(),
        tcp(1, CLIENT, SERVER, seq, Flags::default(), &msg[..60]),
        tcp(2, CLIENT, SERVER, seq + 40, Flags::default(), &msg[40..]),
    ];
    let (events, _) = run_packets(&packets, PipelineConfig::default());
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 1);
    assert_eq!(&msgs[0].message.raw()[..], &msg[..]);
}

#[test]
fn stream_bound_drops_and_counts_then_resynchronises() {
    let mut config = PipelineConfig::default();
    config.decoder.tcp.max_stream_bytes = 1_000;
    config.decoder.tcp.max_message = 1_000;
    // Headers that never end: no message can be framed.
    let mut junk = b"INVITE sip:x@y SIP/2.0\r\n".to_vec();
    junk.extend(
        std::iter::repeat_n(b"X-Filler: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n", 40).flatten(),
    );
    let good = request("OPTIONS", "z9hG4bK7", 1, "tcp-6@x", "");
    let seq = ISN + 1;
    let packets = [
        syn(),
        tcp(1, CLIENT, SERVER, seq, Flags::default(), &junk[..900]),
        tcp(2, CLIENT, SERVER, seq + 900, Flags::default(), &junk[900..]),
        tcp(
            3,
            CLIENT,
            SERVER,
            seq + junk.len() as u32,
            Flags::default(),
            &good,
        ),
    ];
    let (events, stats) = run_packets(&packets, config);
    assert!(
        stats.packets.tcp.dropped_bytes > 0 || stats.packets.tcp.oversized_messages > 0,
        "{stats:?}"
    );
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 1);
    assert_eq!(&msgs[0].message.raw()[..], &good[..]);
}

#[test]
fn stream_table_is_bounded_with_evictions_counted() {
    let mut config = PipelineConfig::default();
    config.decoder.tcp.max_streams = 8;
    let partial = b"OPTIONS sip:x@y SIP/2.0\r\nCall-ID: a\r\n"; // never completed
    let packets: Vec<_> = (0..100u16)
        .map(|i| {
            tcp(
                u64::from(i),
                ([10, 0, 0, 1], 20_000 + i),
                SERVER,
                1,
                Flags::default(),
                partial,
            )
        })
        .collect();
    let (_, stats) = run_packets(&packets, config);
    assert_eq!(stats.packets.tcp.streams_opened, 100);
    assert_eq!(stats.packets.tcp.evicted_streams, 92);
    // Every buffered byte is accounted for: evicted or left at the end.
    assert_eq!(stats.packets.tcp.dropped_bytes, 100 * partial.len() as u64);
}

#[test]
fn fin_with_a_half_message_counts_the_loss() {
    let msg = request("OPTIONS", "z9hG4bK8", 1, "tcp-7@x", "");
    let packets = [
        syn(),
        tcp(
            1,
            CLIENT,
            SERVER,
            ISN + 1,
            Flags {
                syn: false,
                fin: true,
            },
            &msg[..50],
        ),
    ];
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    assert!(messages(&events).is_empty());
    assert_eq!(stats.packets.tcp.dropped_bytes, 50);
}

#[test]
fn non_sip_stream_on_a_sip_port_is_dropped_past_one_message_size() {
    // TLS on 5061 looks like junk to the framer: it must not be buffered
    // up to the stream bound and beyond one maximum message.
    let mut config = PipelineConfig::default();
    config.decoder.tcp.max_message = 4096;
    let tls = [0x16u8, 0x03, 0x01].repeat(1000);
    let server = (SERVER.0, 5061);
    let packets: Vec<_> = (0..4u32)
        .map(|i| {
            tcp(
                u64::from(i),
                CLIENT,
                server,
                1 + i * tls.len() as u32,
                Flags::default(),
                &tls,
            )
        })
        .collect();
    let (events, stats) = run_packets(&packets, config);
    assert!(messages(&events).is_empty());
    assert!(
        stats.packets.tcp.junk_bytes >= 3 * tls.len() as u64,
        "{stats:?}"
    );
    assert_eq!(
        stats.packets.tcp.junk_bytes + stats.packets.tcp.dropped_bytes,
        4 * tls.len() as u64
    );
}

#[test]
fn late_segments_before_the_start_are_put_in_front_at_most_eight_times() {
    // Capture started mid-connection and the earlier segments arrive in
    // reverse order. Each one put in front makes the framer look at the
    // front again, so after 8 the stream is anchored and earlier bytes
    // count as retransmissions: tiny reversed segments cannot make framing
    // quadratic.
    let msg = request("REGISTER", "z9hG4bK9", 1, "tcp-8@x", "");
    // Piece 0 is the start line (a front cut inside it could look like
    // one, "ER sip:... SIP/2.0", and be framed early), and no piece starts
    // with CR or LF (taken as a keep-alive at the front).
    let line = msg.iter().position(|&c| c == b'\n').unwrap() + 1;
    let cut = |i: usize| match i {
        0 => 0,
        20 => msg.len(),
        i => {
            let c = line + (i - 1) * (msg.len() - line) / 19;
            c + msg[c..]
                .iter()
                .take_while(|&&b| b == b'\r' || b == b'\n')
                .count()
        }
    };
    let seq = 55_000u32;
    let piece = |t: u64, from: usize, to: usize| {
        let off = cut(from);
        tcp(
            t,
            CLIENT,
            SERVER,
            seq + off as u32,
            Flags::default(),
            &msg[off..cut(to)],
        )
    };
    // Pieces 19, 18, ..., 0.
    let packets: Vec<_> = (0..20).map(|t| piece(t as u64, 19 - t, 20 - t)).collect();
    let (events, stats) = run_packets(&packets, PipelineConfig::default());
    assert!(messages(&events).is_empty());
    assert_eq!(stats.packets.tcp.out_of_order_segments, 8, "{stats:?}");
    assert_eq!(stats.packets.tcp.retransmitted_segments, 11, "{stats:?}");
    // With 8 late segments, the message is whole.
    let mut reordered = vec![piece(0, 8, 20)];
    reordered.extend((0..8).map(|t| piece(t as u64 + 1, 7 - t, 8 - t)));
    let (events, stats) = run_packets(&reordered, PipelineConfig::default());
    let msgs = messages(&events);
    assert_eq!(msgs.len(), 1, "{stats:?}");
    assert_eq!(&msgs[0].message.raw()[..], &msg[..]);
}
