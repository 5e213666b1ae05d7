//! The collector goes away and comes back: capture and findings go on
//! unaffected (feeding the exporter never blocks), the queue and its
//! memory stay within their bounds, drops are counted, and after the
//! collector is back a new TCP connection carries fresh packets.
//!
//! The outage lasts 3 s in the default run; `collector_down_for_a_minute`
//! (ignored by default, `cargo test --test hep -- --ignored`) is the 60 s
//! case of the issue, same code, same assertions.

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use sipscope::export::hep::encode::Agent;
use sipscope::export::hep::{Endpoint, HepConfig, HepSink, Overflow, SenderOptions};
use sipscope::packet::Packet;
use sipscope::pipeline::{Event, Pipeline, PipelineConfig};

use crate::common::udp;
use crate::decode::Hep;

/// A TCP collector that can be switched off: the listener closes and the
/// connection it holds is shut down, as when HOMER restarts.
struct Switchable {
    stop: Arc<AtomicBool>,
    received: Arc<Mutex<Vec<Hep>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Switchable {
    fn on(addr: SocketAddr) -> Self {
        let listener = TcpListener::bind(addr).expect("collector port free again");
        listener.set_nonblocking(true).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let received = Arc::new(Mutex::new(Vec::new()));
        let (s, r) = (stop.clone(), received.clone());
        let thread = std::thread::spawn(move || {
            use std::io::Read as _;
            let mut conns = Vec::new();
            let mut pending: Vec<Vec<u8>> = Vec::new();
            let mut buf = vec![0u8; 65536];
            while !s.load(Ordering::Relaxed) {
                if let Ok((c, _)) = listener.accept() {
                    c.set_nonblocking(true).unwrap();
                    conns.push(c);
                    pending.push(Vec::new());
                }
                for (c, p) in conns.iter_mut().zip(pending.iter_mut()) {
                    while let Ok(n) = c.read(&mut buf) {
                        if n == 0 {
                            break;
                        }
                        p.extend_from_slice(&buf[..n]);
                    }
                    while p.len() >= 6 {
                        let total = usize::from(u16::from_be_bytes([p[4], p[5]]));
                        if p.len() < total {
                            break;
                        }
                        let (h, used) = crate::decode::decode(p).expect("a HEP3 packet");
                        r.lock().unwrap().push(h);
                        p.drain(..used);
                    }
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            for c in conns {
                let _ = c.shutdown(std::net::Shutdown::Both);
            }
        });
        Self {
            stop,
            received,
            thread: Some(thread),
        }
    }

    fn count(&self) -> usize {
        self.received.lock().unwrap().len()
    }

    fn off(mut self) -> usize {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().unwrap();
        }
        self.count()
    }
}

const PHONE: ([u8; 4], u16) = ([10, 0, 0, 2], 5062);
const PBX: ([u8; 4], u16) = ([10, 0, 0, 1], 5060);

/// REGISTER n refused with 403: two SIP messages and a finding.
fn refused_register(n: u64, ms: u64) -> [Packet; 2] {
    let head = |first: &str, to_tag: &str| {
        format!(
            "{first}\r\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK-{n}\r\n\
             From: <sip:10{n}@pbx>;tag=f{n}\r\nTo: <sip:10{n}@pbx>{to_tag}\r\n\
             Call-ID: outage-{n}\r\nCSeq: 1 REGISTER\r\nContent-Length: 0\r\n\r\n"
        )
    };
    [
        udp(
            ms,
            PHONE,
            PBX,
            head("REGISTER sip:pbx SIP/2.0", "").as_bytes(),
        ),
        udp(
            ms + 1,
            PBX,
            PHONE,
            head("SIP/2.0 403 Forbidden", ";tag=t").as_bytes(),
        ),
    ]
}

/// The agent with HEP export and, beside it, the same pipeline without:
/// what capture and analysis produce must not depend on the collector.
struct Agents {
    with_hep: Pipeline,
    hep: HepSink,
    without: Pipeline,
    n: u64,
}

impl Agents {
    /// Feeds refused registrations for `d`, one every 2 ms of wall time
    /// (two minutes apart on the packet clock, so the flood guard shows
    /// each); returns the findings raised and the longest the exporter
    /// took with one batch of events.
    fn feed(&mut self, d: Duration) -> (u64, Duration) {
        let (mut findings, mut longest) = (0, Duration::ZERO);
        let until = Instant::now() + d;
        let (mut events, mut baseline) = (Vec::new(), Vec::new());
        while Instant::now() < until {
            for pkt in refused_register(self.n, self.n * 120_000) {
                self.with_hep.ingest_into(&pkt, &mut events);
                self.without.ingest_into(&pkt, &mut baseline);
            }
            let count = |ev: &[Event]| {
                ev.iter()
                    .filter(|e| matches!(e, Event::Diagnosis(_)))
                    .count()
            };
            assert_eq!(
                count(&events),
                count(&baseline),
                "the same findings with HEP as without"
            );
            assert_eq!(events.len(), baseline.len());
            findings += count(&events) as u64;
            let t = Instant::now();
            self.hep.on_events(&events);
            longest = longest.max(t.elapsed());
            events.clear();
            baseline.clear();
            self.n += 1;
            std::thread::sleep(Duration::from_millis(2));
        }
        (findings, longest)
    }
}

const MAX_QUEUED_BYTES: usize = 64 << 10;

fn outage(down_for: Duration) {
    let addr = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let config = HepConfig {
        endpoint: Endpoint::parse(&format!("tcp://{addr}")).unwrap(),
        agent: Agent {
            capture_id: 7,
            ..Agent::default()
        },
        sender: SenderOptions {
            queue: 256,
            max_queued_bytes: MAX_QUEUED_BYTES,
            overflow: Overflow::Drop,
            backoff_min: Duration::from_millis(50),
            backoff_max: Duration::from_secs(1),
            ..SenderOptions::default()
        },
        include_digest_response: false,
    };
    let mut a = Agents {
        with_hep: Pipeline::new(PipelineConfig::default()),
        hep: HepSink::start(&config).unwrap(),
        without: Pipeline::new(PipelineConfig::default()),
        n: 0,
    };

    // Up: packets flow.
    let first = Switchable::on(addr);
    let (found_up, _) = a.feed(Duration::from_millis(500));
    let deadline = Instant::now() + Duration::from_secs(5);
    while first.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing arrived: {:?}",
            a.hep.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let before = first.off();

    // Down: the pipeline goes on at full speed, every finding raised.
    let sent_before = a.hep.stats().sender.sent;
    let (found_down, longest) = a.feed(down_for);
    let during = a.hep.stats();
    assert!(
        longest < Duration::from_millis(50),
        "feeding the exporter took {longest:?}: it must never wait for the collector"
    );
    assert!(
        found_down > 0 && found_up > 0,
        "findings go on: {found_up} then {found_down}"
    );
    assert!(
        during.sender.dropped_queue_full > 0,
        "drops are counted: {during:?}"
    );
    assert!(during.sender.send_errors > 0, "{during:?}");
    assert!(
        during.sender.peak_queued_bytes as usize <= MAX_QUEUED_BYTES,
        "memory bounded: {during:?}"
    );
    // At most what was in flight when the connection broke got out.
    assert!(during.sender.sent - sent_before < 300, "{during:?}");

    // Back: a new connection carries new packets.
    let second = Switchable::on(addr);
    a.feed(Duration::from_millis(1500));
    let deadline = Instant::now() + Duration::from_secs(10);
    while second.count() == 0 {
        assert!(
            Instant::now() < deadline,
            "nothing after the outage: {:?}",
            a.hep.stats()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    let stats = a.hep.finish();
    let after = second.off();
    eprintln!(
        "outage of {down_for:?}: {stats:?}; collector got {before} before, {after} after; \
         longest feed {longest:?}; findings {found_up} up, {found_down} down"
    );
    assert!(stats.sender.reconnects >= 1, "{stats:?}");
    assert_eq!(
        stats.sender.submitted,
        stats.sender.sent + stats.sender.dropped(),
        "every packet sent or counted as dropped: {stats:?}"
    );
    // Everything the agent counts as sent was received, but what the
    // kernel had accepted on the connection the collector shut.
    assert!(before + after <= stats.sender.sent as usize, "{stats:?}");
    assert!(after > 0);
}

#[test]
fn collector_down_for_three_seconds() {
    outage(Duration::from_secs(3));
}

#[test]
#[ignore = "the issue's 60 s outage; run with --ignored"]
fn collector_down_for_a_minute() {
    outage(Duration::from_secs(60));
}
