//! Sends encoded HEP3 packets to the collector from a thread of its own,
//! so export never blocks capture: the pipeline hands packets to a
//! bounded queue ([`HepSender::submit`]); when it is full (the collector
//! is slow or down) the packet is dropped and counted. Over TCP a broken
//! connection is re-established with a capped exponential backoff while
//! the queue holds what it can; over UDP a send error loses one packet.
//!
//! Memory is bounded twice: by the number of queued packets and by their
//! bytes ([`SenderOptions::max_queued_bytes`]), since one HEP3 packet can
//! be 64 KiB.

use std::io::Write as _;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::{Endpoint, HepTransport};

/// What a full queue does to the producer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Drop the packet (live capture: never wait).
    Drop,
    /// Wait for room while the collector is reachable, drop while it is
    /// not (`analyze`: a file is read faster than any link, and waiting
    /// costs nothing but time; a dead collector must not stall it).
    WaitWhileConnected,
}

#[derive(Clone, Copy, Debug)]
pub struct SenderOptions {
    /// Packets queued at most.
    pub queue: usize,
    /// Bytes queued at most.
    pub max_queued_bytes: usize,
    pub overflow: Overflow,
    /// TCP: first retry after this long, doubling up to `backoff_max`.
    pub backoff_min: Duration,
    pub backoff_max: Duration,
    /// TCP connect and write timeout.
    pub io_timeout: Duration,
    /// At [`HepSender::finish`], how long what is queued may take to go
    /// out before it is counted as dropped.
    pub drain_for: Duration,
}

impl Default for SenderOptions {
    fn default() -> Self {
        Self {
            queue: 8192,
            max_queued_bytes: 16 << 20,
            overflow: Overflow::Drop,
            backoff_min: Duration::from_millis(100),
            backoff_max: Duration::from_secs(5),
            io_timeout: Duration::from_secs(2),
            drain_for: Duration::from_secs(5),
        }
    }
}

/// Every packet submitted ends in exactly one of `sent` and the drops.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct SenderStats {
    pub submitted: u64,
    pub sent: u64,
    /// The queue (count or bytes) was full.
    pub dropped_queue_full: u64,
    /// Lost on a failed send (UDP), or still unsent when the agent
    /// stopped with the collector unreachable.
    pub dropped_send_failed: u64,
    /// Failed sends and connection attempts.
    pub send_errors: u64,
    /// TCP connections re-established after a failure.
    pub reconnects: u64,
    /// Most bytes ever queued at once (the bound at work).
    pub peak_queued_bytes: u64,
}

impl SenderStats {
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full + self.dropped_send_failed
    }
}

#[derive(Default)]
struct Counters {
    submitted: AtomicU64,
    sent: AtomicU64,
    dropped_queue_full: AtomicU64,
    dropped_send_failed: AtomicU64,
    send_errors: AtomicU64,
    reconnects: AtomicU64,
    queued_bytes: AtomicUsize,
    peak_queued_bytes: AtomicUsize,
    connected: AtomicBool,
    /// Set by `finish`: stop retrying once the drain time is up.
    give_up_at: Mutex<Option<Instant>>,
}

fn inc(c: &AtomicU64) {
    c.fetch_add(1, Ordering::Relaxed);
}

pub(crate) struct HepSender {
    tx: Option<SyncSender<Vec<u8>>>,
    counters: Arc<Counters>,
    thread: Option<JoinHandle<()>>,
    options: SenderOptions,
}

impl HepSender {
    /// Starts the sender thread. Nothing is connected yet: an absent
    /// collector is an outage to ride out, not a start-up error.
    pub(crate) fn start(endpoint: &Endpoint, options: SenderOptions) -> std::io::Result<Self> {
        let (tx, rx) = sync_channel(options.queue.max(1));
        let counters = Arc::new(Counters::default());
        let link = Link::new(endpoint.transport, endpoint.addr, options)?;
        // UDP has no connection: it is "up" until a send fails.
        counters
            .connected
            .store(endpoint.transport == HepTransport::Udp, Ordering::Relaxed);
        let c = counters.clone();
        let thread = std::thread::Builder::new()
            .name("hep-sender".into())
            .spawn(move || run(rx, link, &c))?;
        Ok(Self {
            tx: Some(tx),
            counters,
            thread: Some(thread),
            options,
        })
    }

    /// Queues one encoded packet; `false` when it was dropped (counted).
    pub(crate) fn submit(&self, packet: Vec<u8>) -> bool {
        let c = &self.counters;
        inc(&c.submitted);
        let Some(tx) = &self.tx else {
            inc(&c.dropped_queue_full);
            return false;
        };
        let len = packet.len();
        let mut packet = packet;
        loop {
            // Counted before it is queued: the thread may take it at once.
            let now = c.queued_bytes.fetch_add(len, Ordering::Relaxed) + len;
            if now <= self.options.max_queued_bytes {
                match tx.try_send(packet) {
                    Ok(()) => {
                        c.peak_queued_bytes.fetch_max(now, Ordering::Relaxed);
                        return true;
                    }
                    Err(TrySendError::Full(p)) => packet = p,
                    Err(TrySendError::Disconnected(_)) => {
                        c.queued_bytes.fetch_sub(len, Ordering::Relaxed);
                        inc(&c.dropped_queue_full);
                        return false;
                    }
                }
            }
            c.queued_bytes.fetch_sub(len, Ordering::Relaxed);
            let wait = self.options.overflow == Overflow::WaitWhileConnected
                && c.connected.load(Ordering::Relaxed);
            if !wait {
                inc(&c.dropped_queue_full);
                return false;
            }
            std::thread::sleep(Duration::from_micros(200));
        }
    }

    pub(crate) fn stats(&self) -> SenderStats {
        let c = &self.counters;
        SenderStats {
            submitted: c.submitted.load(Ordering::Relaxed),
            sent: c.sent.load(Ordering::Relaxed),
            dropped_queue_full: c.dropped_queue_full.load(Ordering::Relaxed),
            dropped_send_failed: c.dropped_send_failed.load(Ordering::Relaxed),
            send_errors: c.send_errors.load(Ordering::Relaxed),
            reconnects: c.reconnects.load(Ordering::Relaxed),
            peak_queued_bytes: c.peak_queued_bytes.load(Ordering::Relaxed) as u64,
        }
    }

    /// Bytes waiting in the queue now.
    #[cfg(test)]
    pub(crate) fn queued_bytes(&self) -> usize {
        self.counters.queued_bytes.load(Ordering::Relaxed)
    }

    /// Sends what is queued (for at most [`SenderOptions::drain_for`]),
    /// stops the thread and returns the final counters.
    pub(crate) fn finish(mut self) -> SenderStats {
        *self
            .counters
            .give_up_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + self.options.drain_for);
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.stats()
    }
}

impl Drop for HepSender {
    fn drop(&mut self) {
        // Dropped without finish (an error path): do not wait for a dead
        // collector; the thread ends at its next look at the queue.
        *self
            .counters
            .give_up_at
            .lock()
            .unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        self.tx = None;
    }
}

enum Link {
    Udp(UdpSocket),
    Tcp {
        addr: SocketAddr,
        stream: Option<TcpStream>,
        /// Connected at least once: the next connection is a reconnect.
        was_up: bool,
        /// Finishing, and the collector refused once more: what is left
        /// is dropped without waiting out the drain time.
        abandoned: bool,
        backoff: Duration,
        next_attempt: Instant,
        options: SenderOptions,
    },
}

impl Link {
    fn new(
        transport: HepTransport,
        addr: SocketAddr,
        options: SenderOptions,
    ) -> std::io::Result<Self> {
        Ok(match transport {
            HepTransport::Udp => {
                let local: SocketAddr = if addr.is_ipv4() {
                    "0.0.0.0:0".parse().expect("literal")
                } else {
                    "[::]:0".parse().expect("literal")
                };
                let socket = UdpSocket::bind(local)?;
                // Connected, so an ICMP port unreachable surfaces as an
                // error of a later send instead of vanishing.
                socket.connect(addr)?;
                Link::Udp(socket)
            }
            HepTransport::Tcp => Link::Tcp {
                addr,
                stream: None,
                was_up: false,
                abandoned: false,
                backoff: options.backoff_min,
                next_attempt: Instant::now(),
                options,
            },
        })
    }
}

fn give_up(c: &Counters) -> bool {
    c.give_up_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some_and(|t| Instant::now() >= t)
}

/// `finish` was called: the queue is being drained for the last time.
fn finishing(c: &Counters) -> bool {
    c.give_up_at
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .is_some()
}

fn run(rx: Receiver<Vec<u8>>, mut link: Link, c: &Counters) {
    while let Ok(packet) = rx.recv() {
        c.queued_bytes.fetch_sub(packet.len(), Ordering::Relaxed);
        if send(&mut link, &packet, c) {
            inc(&c.sent);
        } else {
            inc(&c.dropped_send_failed);
        }
    }
}

/// Sends one packet; `false` when it is lost.
fn send(link: &mut Link, packet: &[u8], c: &Counters) -> bool {
    match link {
        Link::Udp(socket) => match socket.send(packet) {
            Ok(_) => {
                c.connected.store(true, Ordering::Relaxed);
                true
            }
            Err(_) => {
                inc(&c.send_errors);
                false
            }
        },
        Link::Tcp {
            addr,
            stream,
            was_up,
            abandoned,
            backoff,
            next_attempt,
            options,
        } => loop {
            if stream.is_none() {
                if *abandoned || give_up(c) {
                    return false;
                }
                let now = Instant::now();
                // Finishing: one more attempt now, not after the backoff.
                if now < *next_attempt && !finishing(c) {
                    // Short naps, so finish() is noticed quickly.
                    std::thread::sleep((*next_attempt - now).min(Duration::from_millis(50)));
                    continue;
                }
                match TcpStream::connect_timeout(addr, options.io_timeout) {
                    Ok(s) => {
                        let _ = s.set_write_timeout(Some(options.io_timeout));
                        let _ = s.set_nodelay(true);
                        if *was_up {
                            inc(&c.reconnects);
                        }
                        *was_up = true;
                        *backoff = options.backoff_min;
                        *stream = Some(s);
                        c.connected.store(true, Ordering::Relaxed);
                    }
                    Err(_) => {
                        inc(&c.send_errors);
                        c.connected.store(false, Ordering::Relaxed);
                        if finishing(c) {
                            *abandoned = true;
                            return false;
                        }
                        *next_attempt = Instant::now() + *backoff;
                        *backoff = (*backoff * 2).min(options.backoff_max);
                        continue;
                    }
                }
            }
            let s = stream.as_mut().expect("connected above");
            match s.write_all(packet) {
                Ok(()) => return true,
                Err(_) => {
                    // A half-written packet is lost with the connection;
                    // this one is sent again on the next.
                    inc(&c.send_errors);
                    *stream = None;
                    c.connected.store(false, Ordering::Relaxed);
                    *next_attempt = Instant::now() + *backoff;
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoint(transport: HepTransport, addr: SocketAddr) -> Endpoint {
        Endpoint {
            transport,
            addr,
            url: format!("{addr}"),
        }
    }

    /// A port nothing listens on (bound, then closed).
    fn dead_port() -> SocketAddr {
        std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
    }

    #[test]
    fn udp_packets_arrive_in_order_and_are_counted() {
        let collector = UdpSocket::bind("127.0.0.1:0").unwrap();
        collector
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let ep = endpoint(HepTransport::Udp, collector.local_addr().unwrap());
        let sender = HepSender::start(&ep, SenderOptions::default()).unwrap();
        for i in 0..10u8 {
            assert!(sender.submit(vec![i; 100]));
        }
        let stats = sender.finish();
        assert_eq!((stats.submitted, stats.sent, stats.dropped()), (10, 10, 0));
        let mut buf = [0u8; 200];
        for i in 0..10u8 {
            assert_eq!(collector.recv(&mut buf).unwrap(), 100);
            assert_eq!(buf[0], i);
        }
    }

    /// A dead TCP collector: the queue's bytes stay within their bound,
    /// the overflow is counted, and finishing does not wait out the drain
    /// time once the collector has refused again.
    #[test]
    fn a_dead_tcp_collector_bounds_the_queue_and_does_not_hold_up_the_exit() {
        let options = SenderOptions {
            max_queued_bytes: 1000,
            backoff_min: Duration::from_secs(10),
            ..SenderOptions::default()
        };
        let sender = HepSender::start(&endpoint(HepTransport::Tcp, dead_port()), options).unwrap();
        for _ in 0..50 {
            sender.submit(vec![0; 100]);
            assert!(sender.queued_bytes() <= 1000);
        }
        // Refused once, now in its 10 s backoff.
        let deadline = Instant::now() + Duration::from_secs(5);
        while sender.stats().send_errors == 0 {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        let started = Instant::now();
        let stats = sender.finish();
        assert!(
            started.elapsed() < Duration::from_secs(2),
            "{:?}",
            started.elapsed()
        );
        assert_eq!(stats.sent, 0);
        assert!(stats.dropped_queue_full >= 39, "{stats:?}");
        assert_eq!(stats.submitted, stats.dropped(), "{stats:?}");
        assert!(stats.peak_queued_bytes <= 1000, "{stats:?}");
        assert!(stats.send_errors >= 1);
    }
}
