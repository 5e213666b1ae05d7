//! SIP over TCP: per-direction stream reassembly and message framing by
//! Content-Length (RFC 3261 §18.3, RFC 793 sequence numbers).
//!
//! Each direction of a connection is a [`Stream`]: bytes in sequence order
//! are appended to a buffer, out-of-order segments wait in a small pending
//! list, retransmitted bytes are dropped. Whole messages are cut off the
//! front with a [`StreamFramer`], which remembers how far it has scanned,
//! so framing costs time linear in the bytes received whatever they are.
//! When the capture starts
//! mid-connection (no SYN), data from before the first segment seen may
//! still arrive late and is put in front, until the first message has been
//! framed. Everything is bounded (per stream, in total, number of streams)
//! and every byte dropped is counted.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use crate::sip::framing::{MessageBoundary, StreamFramer};
use crate::time::Timestamp;

#[derive(Clone, Copy, Debug)]
pub struct TcpConfig {
    /// Largest SIP message accepted (headers + body).
    pub max_message: usize,
    /// Buffered bytes per stream (contiguous + out of order).
    pub max_stream_bytes: usize,
    /// Buffered bytes over all streams.
    pub max_total_bytes: usize,
    pub max_streams: usize,
    /// Out-of-order segments kept per stream.
    pub max_pending_segments: usize,
    /// A stream with no segment for this long (packet clock) is dropped.
    pub idle_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        TcpConfig {
            max_message: 256 << 10,
            max_stream_bytes: 512 << 10,
            max_total_bytes: 64 << 20,
            max_streams: 16_384,
            max_pending_segments: 64,
            idle_timeout: Duration::from_secs(300),
        }
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct TcpStats {
    pub segments: u64,
    pub streams_opened: u64,
    pub messages: u64,
    pub keepalives: u64,
    /// Segments (or parts) whose bytes had been seen already.
    pub retransmitted_segments: u64,
    pub out_of_order_segments: u64,
    /// Bytes skipped because they were not at a SIP message start.
    pub junk_bytes: u64,
    /// Messages over `max_message`, skipped.
    pub oversized_messages: u64,
    /// Bytes dropped because a bound was hit or a stream ended mid-message.
    pub dropped_bytes: u64,
    /// Streams dropped to respect the bounds.
    pub evicted_streams: u64,
    pub timed_out_streams: u64,
}

/// One direction of a TCP connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) struct StreamKey {
    pub src: SocketAddr,
    pub dst: SocketAddr,
}

struct Stream {
    /// Sequence number of the byte after `buf`.
    next_seq: u32,
    /// Contiguous bytes not framed yet, ending at `next_seq`.
    buf: Vec<u8>,
    /// Segments not adjacent to `buf` yet: (seq, bytes).
    pending: Vec<(u32, Vec<u8>)>,
    pending_bytes: usize,
    /// The SYN was seen, or a message was framed: bytes before the
    /// buffer's start are retransmissions, not late arrivals.
    anchored: bool,
    /// Late segments put in front of the buffer so far (while not
    /// anchored); bounded, since each makes the front be scanned again.
    late_prepends: u8,
    framer: StreamFramer,
    last_seen: Timestamp,
}

/// Late segments put in front of an unanchored stream at most: real
/// reordering at a capture's start is a few segments; more would let a
/// sender make the front be rescanned once per tiny segment.
const MAX_LATE_PREPENDS: u8 = 8;

impl Stream {
    fn buffered(&self) -> usize {
        self.buf.len() + self.pending_bytes
    }

    fn start_seq(&self) -> u32 {
        self.next_seq.wrapping_sub(self.buf.len() as u32)
    }
}

/// Signed distance `a - b` in sequence space (RFC 793 modular arithmetic).
fn seq_diff(a: u32, b: u32) -> i64 {
    i64::from(a.wrapping_sub(b) as i32)
}

pub(crate) struct TcpReassembler {
    config: TcpConfig,
    streams: HashMap<StreamKey, Stream>,
    total_bytes: usize,
    last_sweep: Timestamp,
    pub stats: TcpStats,
}

/// A segment as the reassembler needs it.
pub(crate) struct SegmentInfo<'a> {
    pub seq: u32,
    pub syn: bool,
    pub fin: bool,
    pub rst: bool,
    pub payload: &'a [u8],
}

impl TcpReassembler {
    pub(crate) fn new(config: TcpConfig) -> Self {
        TcpReassembler {
            config,
            streams: HashMap::new(),
            total_bytes: 0,
            last_sweep: Timestamp(0),
            stats: TcpStats::default(),
        }
    }

    pub(crate) fn streams(&self) -> usize {
        self.streams.len()
    }

    pub(crate) fn buffered_bytes(&self) -> usize {
        self.total_bytes
    }

    /// Feed one segment. `track_new` says whether an unknown stream may be
    /// opened for it (SIP port, or the payload starts like SIP); framed
    /// messages are appended to `out`.
    pub(crate) fn segment(
        &mut self,
        ts: Timestamp,
        key: StreamKey,
        seg: SegmentInfo<'_>,
        track_new: bool,
        out: &mut Vec<Bytes>,
    ) {
        self.stats.segments += 1;
        let data_seq = if seg.syn {
            seg.seq.wrapping_add(1)
        } else {
            seg.seq
        };
        if !self.streams.contains_key(&key) {
            if !(track_new && (seg.syn || !seg.payload.is_empty())) || seg.rst {
                return;
            }
            if self.streams.len() >= self.config.max_streams {
                self.evict_batch();
            }
            self.stats.streams_opened += 1;
            self.streams.insert(
                key,
                Stream {
                    next_seq: data_seq,
                    buf: Vec::new(),
                    pending: Vec::new(),
                    pending_bytes: 0,
                    anchored: seg.syn,
                    late_prepends: 0,
                    framer: StreamFramer::default(),
                    last_seen: ts,
                },
            );
        }
        let config = self.config;
        let stream = self.streams.get_mut(&key).expect("inserted above");
        stream.last_seen = ts;
        let before = stream.buffered();
        if seg.syn && stream.buf.is_empty() && stream.pending.is_empty() {
            stream.next_seq = data_seq;
            stream.anchored = true;
        }
        if !seg.payload.is_empty() {
            place(stream, data_seq, seg.payload, &mut self.stats, &config);
        }
        drain_frames(stream, ts, &mut self.stats, &config, out);
        let after = stream.buffered();
        self.total_bytes = (self.total_bytes + after).saturating_sub(before);
        if seg.fin || seg.rst {
            self.close(&key);
        }
        while self.total_bytes > self.config.max_total_bytes && !self.streams.is_empty() {
            self.evict_oldest();
        }
        self.sweep(ts);
    }

    /// Feeds bytes that follow whatever the stream `key` received before
    /// (a TLS library call's plaintext: in order, no sequence numbers).
    /// `gap` says bytes after these were not delivered: the stream drops
    /// what it holds and resynchronises at the next message start.
    pub(crate) fn append(
        &mut self,
        ts: Timestamp,
        key: StreamKey,
        payload: &[u8],
        gap: bool,
        out: &mut Vec<Bytes>,
    ) {
        let seq = self.streams.get(&key).map_or(0, |s| s.next_seq);
        let seg = SegmentInfo {
            seq,
            syn: false,
            fin: false,
            rst: false,
            payload,
        };
        self.segment(ts, key, seg, true, out);
        if gap && let Some(stream) = self.streams.get_mut(&key) {
            let held = stream.buf.len();
            self.stats.dropped_bytes += held as u64;
            self.total_bytes = self.total_bytes.saturating_sub(held);
            stream.buf.clear();
            stream.framer.reset();
        }
    }

    fn close(&mut self, key: &StreamKey) {
        if let Some(s) = self.streams.remove(key) {
            let n = s.buffered();
            self.total_bytes -= n.min(self.total_bytes);
            self.stats.dropped_bytes += n as u64;
        }
    }

    /// Evict the least recently active sixteenth of the streams (at least
    /// one): one O(n) selection pays for many insertions, so a flood of new
    /// connections costs O(1) per packet, not a scan each.
    fn evict_batch(&mut self) {
        let n = (self.streams.len() / 16).max(1);
        let mut by_age: Vec<(Timestamp, StreamKey)> = self
            .streams
            .iter()
            .map(|(k, s)| (s.last_seen, *k))
            .collect();
        if n < by_age.len() {
            by_age.select_nth_unstable_by_key(n - 1, |(t, _)| *t);
        }
        for (_, key) in by_age.into_iter().take(n) {
            self.close(&key);
            self.stats.evicted_streams += 1;
        }
    }

    fn evict_oldest(&mut self) {
        if let Some(key) = self
            .streams
            .iter()
            .min_by_key(|(_, s)| s.last_seen)
            .map(|(k, _)| *k)
        {
            self.close(&key);
            self.stats.evicted_streams += 1;
        }
    }

    /// Drop idle streams; runs at most once per second of packet time.
    pub(crate) fn sweep(&mut self, now: Timestamp) {
        if now.since(self.last_sweep) < Duration::from_secs(1) {
            return;
        }
        self.last_sweep = now;
        let idle = self.config.idle_timeout;
        let stale: Vec<StreamKey> = self
            .streams
            .iter()
            .filter(|(_, s)| now.since(s.last_seen) >= idle)
            .map(|(k, _)| *k)
            .collect();
        for k in stale {
            self.close(&k);
            self.stats.timed_out_streams += 1;
        }
    }

    /// End of input: bytes still buffered never formed a message.
    pub(crate) fn finish(&mut self) {
        let keys: Vec<StreamKey> = self.streams.keys().copied().collect();
        for k in keys {
            self.close(&k);
        }
    }
}

/// Put a segment's bytes where they belong in the stream.
fn place(stream: &mut Stream, seq: u32, data: &[u8], stats: &mut TcpStats, config: &TcpConfig) {
    let d = seq_diff(seq, stream.next_seq);
    let end_d = d + data.len() as i64;
    if d > 0 {
        stats.out_of_order_segments += 1;
        stash(stream, seq, data, stats, config);
        return;
    }
    if end_d <= 0 {
        // Entirely before next_seq: a retransmission, or (not anchored yet)
        // data from before the first segment we saw, arriving late.
        let before_start = seq_diff(seq.wrapping_add(data.len() as u32), stream.start_seq()) <= 0;
        if !stream.anchored && before_start {
            stats.out_of_order_segments += 1;
            stash(stream, seq, data, stats, config);
            merge_pending(stream, stats, config);
        } else {
            stats.retransmitted_segments += 1;
        }
        return;
    }
    if d < 0 {
        stats.retransmitted_segments += 1; // partial overlap: keep the new tail
    }
    let new = &data[(-d) as usize..];
    append(stream, new, stats, config);
    merge_pending(stream, stats, config);
}

fn stash(stream: &mut Stream, seq: u32, data: &[u8], stats: &mut TcpStats, config: &TcpConfig) {
    if stream
        .pending
        .iter()
        .any(|(s, d)| *s == seq && d.len() == data.len())
    {
        stats.retransmitted_segments += 1;
        return;
    }
    if stream.pending.len() >= config.max_pending_segments
        || stream.buffered() + data.len() > config.max_stream_bytes
    {
        stats.dropped_bytes += data.len() as u64;
        return;
    }
    stream.pending_bytes += data.len();
    stream.pending.push((seq, data.to_vec()));
}

fn append(stream: &mut Stream, data: &[u8], stats: &mut TcpStats, config: &TcpConfig) {
    if stream.buffered() + data.len() > config.max_stream_bytes {
        // Cannot hold it: drop what is buffered and resynchronise at the
        // next message start after this segment.
        stats.dropped_bytes += (stream.buf.len() + data.len()) as u64;
        stream.buf.clear();
        stream.framer.reset();
        stream.next_seq = stream.next_seq.wrapping_add(data.len() as u32);
        return;
    }
    stream.buf.extend_from_slice(data);
    stream.next_seq = stream.next_seq.wrapping_add(data.len() as u32);
}

/// Move pending segments that became adjacent (after the end, or, while
/// not anchored, before the start) into the buffer.
fn merge_pending(stream: &mut Stream, stats: &mut TcpStats, config: &TcpConfig) {
    loop {
        let mut progressed = false;
        let mut i = 0;
        while i < stream.pending.len() {
            let (seq, len) = (stream.pending[i].0, stream.pending[i].1.len());
            let d = seq_diff(seq, stream.next_seq);
            let end_vs_start = seq_diff(seq.wrapping_add(len as u32), stream.start_seq());
            if d <= 0 && d + len as i64 > 0 {
                let (_, data) = stream.pending.swap_remove(i);
                stream.pending_bytes -= data.len();
                append(stream, &data[(-d) as usize..], stats, config);
                progressed = true;
            } else if d + len as i64 <= 0 && stream.anchored {
                let (_, data) = stream.pending.swap_remove(i);
                stream.pending_bytes -= data.len();
                stats.retransmitted_segments += 1;
            } else if !stream.anchored && end_vs_start >= 0 && seq_diff(seq, stream.start_seq()) < 0
            {
                // Late data from before the start: prepend the part before it.
                let (_, data) = stream.pending.swap_remove(i);
                stream.pending_bytes -= data.len();
                let keep = (-seq_diff(seq, stream.start_seq())) as usize;
                let mut joined = data[..keep].to_vec();
                joined.extend_from_slice(&stream.buf);
                stream.buf = joined;
                stream.framer.reset();
                stream.late_prepends += 1;
                if stream.late_prepends >= MAX_LATE_PREPENDS {
                    stream.anchored = true;
                }
                progressed = true;
            } else {
                i += 1;
            }
        }
        if !progressed {
            break;
        }
    }
}

fn drain_frames(
    stream: &mut Stream,
    _ts: Timestamp,
    stats: &mut TcpStats,
    config: &TcpConfig,
    out: &mut Vec<Bytes>,
) {
    let mut consumed = 0;
    loop {
        let rest = &stream.buf[consumed..];
        if rest.is_empty() {
            break;
        }
        let before = consumed;
        match stream.framer.next(rest, config.max_message) {
            MessageBoundary::Message(n) => {
                out.push(Bytes::copy_from_slice(&rest[..n]));
                stats.messages += 1;
                consumed += n;
                stream.anchored = true;
            }
            MessageBoundary::KeepAlive(n) => {
                stats.keepalives += 1;
                consumed += n;
            }
            MessageBoundary::Junk(n) => {
                // Before the first message of an unanchored stream, the
                // start of this message may still arrive out of order:
                // keep waiting while there is no later start line.
                // (Bounded: past one maximum message it is not SIP, e.g.
                // TLS on 5061, and is dropped.)
                if n >= rest.len() && !stream.anchored && rest.len() <= config.max_message {
                    break;
                }
                stats.junk_bytes += n as u64;
                consumed += n;
                if n < rest.len() {
                    stream.anchored = true;
                }
            }
            MessageBoundary::Oversized(n) => {
                stats.oversized_messages += 1;
                stats.dropped_bytes += n as u64;
                consumed += n;
            }
            MessageBoundary::NeedMore => break,
        }
        stream.framer.consumed(consumed - before);
    }
    if consumed > 0 {
        stream.buf.drain(..consumed);
    }
    if stream.anchored && !stream.pending.is_empty() {
        // Anything still pending before the start can never be placed now.
        let start = stream.start_seq();
        let before = stream.pending.len();
        stream
            .pending
            .retain(|(seq, d)| seq_diff(seq.wrapping_add(d.len() as u32), start) > 0);
        stats.retransmitted_segments += (before - stream.pending.len()) as u64;
        stream.pending_bytes = stream.pending.iter().map(|(_, d)| d.len()).sum();
    }
}
