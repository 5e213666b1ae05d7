//! A real RTP endpoint inside a namespace: one UDP socket bound to the SDP
//! address and port, sending G.711 RTP (RFC 3550 §5.1 header, v2) from
//! that socket and receiving on it (symmetric RTP, RFC 4961), as a phone
//! or PBX does. The test decides exactly how many packets go out, so the
//! agent's counts can be compared with the truth.
//!
//! A receiver thread drains the socket the whole time: unread datagrams
//! would fill the receive buffer and be dropped with `socket_rcvbuff`,
//! which the agent rightly reports as a local drop.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use super::netns::{Netns, in_netns};

/// G.711 µ-law (RFC 3551 §4.5.14: static payload type 0, 8000 Hz).
pub const PCMU: u8 = 0;
/// 20 ms of G.711 at 8000 Hz, one byte per sample.
pub const PCMU_PAYLOAD_LEN: usize = 160;
/// Opus on the dynamic payload type phones commonly use; its RTP clock is
/// always 48000 Hz (RFC 7587 §4.1), which only the SDP's rtpmap tells.
pub const OPUS: u8 = 111;

/// One talkspurt: `count` packets, `interval` apart, from a fixed SSRC.
#[derive(Clone, Copy, Debug)]
pub struct RtpSpec {
    pub ssrc: u32,
    pub count: u32,
    /// Packet spacing; the RTP timestamp advances by the same time at
    /// `clock_rate`, so a receiver sees no jitter beyond the scheduling noise
    /// whatever the spacing (a 5 ms spacing makes a fast loss test).
    pub interval: Duration,
    pub first_seq: u16,
    pub first_timestamp: u32,
    pub payload_type: u8,
    pub clock_rate: u32,
    pub payload_len: usize,
}

impl RtpSpec {
    /// `count` packets of 20 ms PCMU, the way a phone sends them.
    pub fn pcmu(ssrc: u32, count: u32) -> Self {
        Self {
            ssrc,
            count,
            interval: Duration::from_millis(20),
            // Away from 0 so a receiver's first-packet handling and a
            // wrap-around are not what is being tested here.
            first_seq: 1000,
            first_timestamp: 160_000,
            payload_type: PCMU,
            clock_rate: 8000,
            payload_len: PCMU_PAYLOAD_LEN,
        }
    }

    /// `count` packets of 20 ms Opus (48 kHz clock, 960 ticks a packet).
    pub fn opus(ssrc: u32, count: u32) -> Self {
        Self {
            payload_type: OPUS,
            clock_rate: 48_000,
            payload_len: 80,
            ..Self::pcmu(ssrc, count)
        }
    }

    pub fn with_interval(mut self, interval: Duration) -> Self {
        self.interval = interval;
        self
    }

    fn timestamp_step(&self) -> u32 {
        (self.interval.as_micros() as u64 * u64::from(self.clock_rate) / 1_000_000) as u32
    }

    /// Packet `i` of the talkspurt (marker bit on the first, RFC 3551 §4.1).
    pub fn packet(&self, i: u32) -> Vec<u8> {
        let seq = self.first_seq.wrapping_add(i as u16);
        let ts = self
            .first_timestamp
            .wrapping_add(i.wrapping_mul(self.timestamp_step()));
        let marker = if i == 0 { 0x80 } else { 0 };
        let mut p = Vec::with_capacity(12 + self.payload_len);
        p.push(0x80); // V=2, no padding, no extension, no CSRC
        p.push(marker | self.payload_type);
        p.extend_from_slice(&seq.to_be_bytes());
        p.extend_from_slice(&ts.to_be_bytes());
        p.extend_from_slice(&self.ssrc.to_be_bytes());
        p.resize(12 + self.payload_len, 0xff); // µ-law silence (any bytes for Opus)
        p
    }
}

/// What one talkspurt did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Sent {
    /// Packets handed to the kernel (the truth the agent is compared with).
    pub sent: u32,
    /// Of those, refused on the way out by this namespace's firewall
    /// (`sendto` returns EPERM when an nft output rule drops the packet).
    pub refused_locally: u32,
}

/// A bound RTP socket in a namespace, with a thread draining what arrives.
pub struct RtpEndpoint {
    pub local: SocketAddr,
    socket: Arc<UdpSocket>,
    received: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    receiver: Option<JoinHandle<()>>,
}

impl RtpEndpoint {
    /// Binds `local` inside `ns` (the socket is created on a thread that
    /// entered the namespace and stays there when used from elsewhere).
    pub fn bind(ns: &Netns, local: SocketAddr) -> Self {
        let socket = in_netns(ns, move || {
            UdpSocket::bind(local).unwrap_or_else(|e| panic!("binding RTP socket {local}: {e}"))
        });
        socket
            .set_read_timeout(Some(Duration::from_millis(50)))
            .expect("socket read timeout");
        let socket = Arc::new(socket);
        let received = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let receiver = {
            let (socket, received, stop) = (socket.clone(), received.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while !stop.load(Ordering::Relaxed) {
                    match socket.recv_from(&mut buf) {
                        Ok(_) => {
                            received.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e)
                            if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {}
                        Err(e) => panic!("receiving RTP on {local}: {e}"),
                    }
                }
            })
        };
        Self {
            local,
            socket,
            received,
            stop,
            receiver: Some(receiver),
        }
    }

    /// Datagrams received so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Sends the talkspurt to `to`, paced on an absolute schedule (no
    /// drift), and returns once the last packet is out.
    pub fn send(&self, to: SocketAddr, spec: RtpSpec) -> Sent {
        send_paced(&self.socket, to, spec)
    }

    /// One datagram as it is (an RTCP report on the RTP port, RFC 5761).
    pub fn send_raw(&self, to: SocketAddr, datagram: &[u8]) {
        self.socket
            .send_to(datagram, to)
            .unwrap_or_else(|e| panic!("sending to {to}: {e}"));
    }

    /// [`Self::send`] on its own thread, for both directions at once.
    pub fn send_in_background(&self, to: SocketAddr, spec: RtpSpec) -> JoinHandle<Sent> {
        let socket = self.socket.clone();
        std::thread::spawn(move || send_paced(&socket, to, spec))
    }
}

impl Drop for RtpEndpoint {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(r) = self.receiver.take() {
            let _ = r.join();
        }
    }
}

fn send_paced(socket: &UdpSocket, to: SocketAddr, spec: RtpSpec) -> Sent {
    let start = Instant::now();
    let mut out = Sent {
        sent: 0,
        refused_locally: 0,
    };
    for i in 0..spec.count {
        // Pacing, not waiting for a condition: packet i leaves at i × interval.
        let due = start + spec.interval * i;
        if let Some(wait) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        }
        match socket.send_to(&spec.packet(i), to) {
            Ok(_) => out.sent += 1,
            Err(e) if e.kind() == ErrorKind::PermissionDenied => {
                out.sent += 1;
                out.refused_locally += 1;
            }
            Err(e) => panic!("sending RTP {i} to {to}: {e}"),
        }
    }
    out
}
