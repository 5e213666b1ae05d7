//! What is not captured, and what is lost, is counted: non-SIP traffic is
//! seen but not copied; a full ring buffer is counted exactly.

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use crate::{
    agent::Agent,
    require_root,
    support::{
        TempDir,
        netns::{VethPair, in_netns},
        pcap::{datagrams, read_frames},
        wait_for,
    },
};

const OPTIONS: &str = "OPTIONS sip:probe@10.77.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 10.77.0.2:5062;branch=z9hG4bK-loss\r\nMax-Forwards: 70\r\nFrom: <sip:probe@10.77.0.2>;tag=1\r\nTo: <sip:probe@10.77.0.1>\r\nCall-ID: loss-test\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";

/// A UDP socket in the host namespace that counts what it receives, so the
/// test knows every datagram went through XDP before it stops the agent.
fn counting_receiver(pair: &VethPair, port: u16) -> Arc<AtomicUsize> {
    let sock = in_netns(&pair.host, move || {
        UdpSocket::bind(SocketAddr::from((VethPair::HOST_V4, port))).unwrap()
    });
    let count = Arc::new(AtomicUsize::new(0));
    let c = count.clone();
    std::thread::spawn(move || {
        let mut buf = [0u8; 2048];
        while sock.recv(&mut buf).is_ok() {
            c.fetch_add(1, Ordering::SeqCst);
        }
    });
    count
}

fn peer_udp(pair: &VethPair) -> UdpSocket {
    in_netns(&pair.peer, || {
        UdpSocket::bind(SocketAddr::from((VethPair::PEER_V4, 0))).unwrap()
    })
}

#[test]
fn non_sip_udp_and_tcp_are_seen_but_not_captured() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("nonsip");
    let mut agent = Agent::start(&pair, &dir, &[]);

    // UDP to a non-SIP port, and to an RTP-range port.
    let rtp_rx = counting_receiver(&pair, 4000);
    let rtp_rx2 = counting_receiver(&pair, 16384);
    let sip_rx = counting_receiver(&pair, 5060);
    let udp = peer_udp(&pair);
    for i in 0..20 {
        udp.send_to(format!("not sip {i}").as_bytes(), (VethPair::HOST_V4, 4000))
            .unwrap();
        udp.send_to(&[0x80u8; 172], (VethPair::HOST_V4, 16384))
            .unwrap();
    }
    // TCP to a non-SIP port: handshake, data, and teardown.
    let listener = in_netns(&pair.host, || {
        TcpListener::bind((VethPair::HOST_V4, 8080)).unwrap()
    });
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        got.len()
    });
    let mut client = in_netns(&pair.peer, || {
        TcpStream::connect((VethPair::HOST_V4, 8080)).unwrap()
    });
    client.write_all(&[b'x'; 5000]).unwrap();
    drop(client);
    assert_eq!(server.join().unwrap(), 5000);
    wait_for(
        Duration::from_secs(10),
        "non-SIP datagrams to arrive",
        || {
            (rtp_rx.load(Ordering::SeqCst) == 20 && rtp_rx2.load(Ordering::SeqCst) == 20)
                .then_some(())
        },
    );
    // And one SIP message, so the test proves capture was working.
    udp.send_to(OPTIONS.as_bytes(), (VethPair::HOST_V4, 5060))
        .unwrap();
    wait_for(
        Duration::from_secs(10),
        "the SIP datagram to arrive",
        || (sip_rx.load(Ordering::SeqCst) == 1).then_some(()),
    );

    let (stdout, counters) = agent.stop();
    let frames = read_frames(&agent.pcap);
    assert_eq!(
        frames.len(),
        1,
        "only the SIP datagram is captured:\n{stdout}"
    );
    let dgs = datagrams(&frames, &[5060]);
    assert_eq!(dgs[0].payload, OPTIONS.as_bytes());
    assert_eq!(counters["sip_captured"], 1);
    // 40 UDP + >= 5 TCP segments in, ACKs out, the OPTIONS.
    assert!(counters["packets_seen"] >= 46, "{counters:?}");
    assert_eq!(counters["unparsed"], 0);
}

#[test]
fn full_ring_buffer_losses_are_counted_exactly() {
    require_root();
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) }.to_string();
    let pair = VethPair::new();
    let dir = TempDir::new("ringloss");
    let mut agent = Agent::start(&pair, &dir, &["--ring-size", &page]);
    let received = counting_receiver(&pair, 5060);
    let udp = peer_udp(&pair);

    // Freeze the reader so the one-page ring fills after a few messages.
    agent.proc.signal(libc::SIGSTOP);
    const SENT: usize = 200;
    const CHUNK: usize = 20;
    // In chunks the receiving socket's buffer always holds, so every
    // message is known to have passed XDP and none is lost elsewhere.
    for chunk in 1..=SENT / CHUNK {
        for _ in 0..CHUNK {
            udp.send_to(OPTIONS.as_bytes(), (VethPair::HOST_V4, 5060))
                .unwrap();
        }
        let what = format!("chunk {chunk} of the burst to arrive");
        wait_for(Duration::from_secs(10), &what, || {
            (received.load(Ordering::SeqCst) == chunk * CHUNK).then_some(())
        });
    }
    agent.proc.signal(libc::SIGCONT);
    let (stdout, counters) = agent.stop();

    let delivered = read_frames(&agent.pcap).len() as u64;
    let printed = stdout
        .lines()
        .filter(|l| l.contains("OPTIONS sip:probe"))
        .count() as u64;
    assert_eq!(printed, delivered);
    assert_eq!(counters["sip_captured"], delivered);
    assert!(
        counters["ringbuf_full"] > 0,
        "a one-page ring cannot hold {SENT} messages: {counters:?}"
    );
    assert!(delivered > 0, "the first messages fit: {counters:?}");
    assert_eq!(
        counters["ringbuf_full"],
        SENT as u64 - delivered,
        "lost == sent - received"
    );
}

#[test]
fn oversized_tcp_sip_on_egress_is_truncated_flagged_and_counted() {
    require_root();
    let pair = VethPair::new();
    let dir = TempDir::new("truncate");
    let mut agent = Agent::start(&pair, &dir, &[]);
    // A SIP response with a 60 KB body over TCP from the host: TSO hands
    // TC egress segments far larger than the copy limit before the
    // device splits them.
    let body = vec![b'v'; 60_000];
    let mut message = format!(
        "SIP/2.0 200 OK\r\nCall-ID: big\r\nCSeq: 1 OPTIONS\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    message.extend_from_slice(&body);
    let expected = message.len();
    let listener = in_netns(&pair.host, || {
        TcpListener::bind((VethPair::HOST_V4, 5060)).unwrap()
    });
    let server = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        s.write_all(&message).unwrap();
    });
    let mut client = in_netns(&pair.peer, || {
        TcpStream::connect((VethPair::HOST_V4, 5060)).unwrap()
    });
    server.join().unwrap();
    let mut got = Vec::new();
    client.read_to_end(&mut got).unwrap();
    assert_eq!(got.len(), expected);

    let (stdout, counters) = agent.stop();
    let frames = read_frames(&agent.pcap);
    let truncated: Vec<_> = frames
        .iter()
        .filter(|f| (f.orig_len as usize) > f.data.len())
        .collect();
    assert!(
        !truncated.is_empty(),
        "TSO segments over 8 KiB expected:\n{stdout}"
    );
    for f in &truncated {
        assert_eq!(f.data.len(), sipscope_common::MAX_CAPTURE_LEN);
    }
    assert_eq!(counters["truncated"], truncated.len() as u64);
    assert_eq!(
        stdout.matches("[truncated").count(),
        truncated.len(),
        "each truncated frame is flagged in the output"
    );
    assert_eq!(counters["sip_captured"], frames.len() as u64);
    // Everything on the SIP connection (handshake, data, ACKs) is captured,
    // the start of the message included.
    assert!(
        frames
            .iter()
            .any(|f| f.data.windows(14).any(|w| w == b"SIP/2.0 200 OK")),
        "{stdout}"
    );
    // The pipeline cannot rebuild a message from truncated copies: it says
    // so in its counters (truncated frames, TCP bytes dropped) instead of
    // printing a damaged message.
    assert!(
        stdout.contains(&format!("(truncated {},", truncated.len())),
        "{stdout}"
    );
    assert!(!stdout.contains("dropped bytes 0,"), "{stdout}");
}
