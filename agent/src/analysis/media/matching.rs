//! Linking observed RTP flows to a negotiated stream when the network does
//! not honour the SDP: symmetric RTP (RFC 4961) senders latch onto the
//! address packets come from, NATs rewrite addresses, and a host behind a
//! DNAT receives on its local address while its SDP names the public one.
//!
//! For a direction X→Y (X sends, Y receives; X and Y are the offerer and
//! answerer) a flow matches, best first, when:
//! 1. [`MatchKind::Exact`]: it goes to Y's SDP address and port;
//! 2. [`MatchKind::SymmetricSource`]: it comes from X's SDP address and
//!    port (X sends from where it receives, RFC 4961) to wherever Y really
//!    is (latched);
//! 3. [`MatchKind::ReceiverPort`]: it goes to Y's SDP *port* on another
//!    address (Y's SDP names a public address, packets arrive at its local
//!    one), within the stream's time window;
//! 4. [`MatchKind::SameSsrc`]: it carries the SSRC of a flow already matched
//!    in this direction (the sender's NAT binding changed mid-call).
//!
//! Only flows active in the time window (from the offer on the packet clock,
//! until the dialog ended) are considered, so a later call reusing the same
//! ports does not get mixed in.

use std::net::SocketAddr;

use super::rtp_stats::RtpStreamStats;
use super::sdp::{MediaDescription, NegotiatedStream};
use crate::media_flow::FlowKey;
use crate::media_flow::FlowSnapshot;
use crate::time::Timestamp;

/// What is known of one observed flow, from a [`super::flow::FlowTable`]
/// or the kernel's flow map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ObservedFlow {
    pub key: FlowKey,
    pub ssrc: u32,
    pub first_seen: Timestamp,
    pub last_seen: Timestamp,
    pub packets: u64,
}

impl ObservedFlow {
    pub fn from_stats(key: FlowKey, stats: &RtpStreamStats) -> Self {
        Self::from_snapshot(&stats.snapshot(key))
    }

    pub fn from_snapshot(flow: &FlowSnapshot) -> Self {
        Self {
            key: flow.key,
            ssrc: flow.state.ssrc,
            first_seen: flow.first_seen,
            last_seen: flow.last_seen,
            packets: flow.packets(),
        }
    }
}

/// Which way RTP travels within a negotiated stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StreamDirection {
    OffererToAnswerer,
    AnswererToOfferer,
}

impl StreamDirection {
    pub fn sender(self, stream: &NegotiatedStream) -> &MediaDescription {
        match self {
            Self::OffererToAnswerer => &stream.offer,
            Self::AnswererToOfferer => &stream.answer,
        }
    }

    pub fn receiver(self, stream: &NegotiatedStream) -> &MediaDescription {
        match self {
            Self::OffererToAnswerer => &stream.answer,
            Self::AnswererToOfferer => &stream.offer,
        }
    }
}

/// How a flow was linked to a stream direction, best first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum MatchKind {
    Exact,
    SymmetricSource,
    ReceiverPort,
    SameSsrc,
}

impl MatchKind {
    /// Stable name for machine output (`exact`, `symmetric_source`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Self::Exact => "exact",
            Self::SymmetricSource => "symmetric_source",
            Self::ReceiverPort => "receiver_port",
            Self::SameSsrc => "same_ssrc",
        }
    }

    pub fn describe(self) -> &'static str {
        match self {
            Self::Exact => "to the SDP address",
            Self::SymmetricSource => "from the sender's SDP port (symmetric RTP)",
            Self::ReceiverPort => "to the SDP port on another address (NAT)",
            Self::SameSsrc => "same SSRC as a matched flow",
        }
    }
}

/// One flow linked to a direction of the stream.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlowMatch {
    /// Index into the `flows` slice given to [`link_flows`].
    pub flow: usize,
    pub direction: StreamDirection,
    pub kind: MatchKind,
}

/// The packet-clock interval in which the stream's RTP may flow.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TimeWindow {
    pub start: Timestamp,
    /// `None` while the dialog is still up.
    pub end: Option<Timestamp>,
}

impl TimeWindow {
    fn overlaps(&self, flow: &ObservedFlow) -> bool {
        flow.last_seen >= self.start && self.end.is_none_or(|end| flow.first_seen <= end)
    }
}

fn usable(m: &MediaDescription) -> bool {
    m.port != 0
}

fn classify(
    stream: &NegotiatedStream,
    direction: StreamDirection,
    key: &FlowKey,
) -> Option<MatchKind> {
    let sender = direction.sender(stream);
    let receiver = direction.receiver(stream);
    if usable(receiver) && key.dst == receiver.rtp_address() {
        return Some(MatchKind::Exact);
    }
    if usable(sender) && !sender.connection.is_unspecified() && key.src == sender.rtp_address() {
        return Some(MatchKind::SymmetricSource);
    }
    if usable(receiver) && key.dst.port() == receiver.port && !is_sender_port(sender, key.dst) {
        return Some(MatchKind::ReceiverPort);
    }
    None
}

/// Guards the port-only rule against the reverse flow of a stream whose
/// two sides happen to use the same port number.
fn is_sender_port(sender: &MediaDescription, addr: SocketAddr) -> bool {
    usable(sender) && addr == sender.rtp_address()
}

/// Links `flows` to the two directions of `stream` (see module docs).
/// Each flow is linked at most once, to its best match.
pub fn link_flows(
    stream: &NegotiatedStream,
    flows: &[ObservedFlow],
    window: TimeWindow,
) -> Vec<FlowMatch> {
    if stream.is_rejected() {
        return Vec::new();
    }
    let directions = [
        StreamDirection::OffererToAnswerer,
        StreamDirection::AnswererToOfferer,
    ];
    let mut matches: Vec<FlowMatch> = flows
        .iter()
        .enumerate()
        .filter(|(_, f)| window.overlaps(f))
        .filter_map(|(i, f)| {
            directions
                .iter()
                .filter_map(|&d| classify(stream, d, &f.key).map(|k| (k, d)))
                .min_by_key(|&(k, _)| k)
                .map(|(kind, direction)| FlowMatch {
                    flow: i,
                    direction,
                    kind,
                })
        })
        .collect();
    // SSRC pass: unmatched flows carrying a matched direction's SSRC.
    // A relaying B2BUA forwards the SSRC unchanged onto its other call leg;
    // requiring the same sending or receiving host keeps that leg out.
    let linked: Vec<(FlowKey, u32, StreamDirection)> = matches
        .iter()
        .map(|m| (flows[m.flow].key, flows[m.flow].ssrc, m.direction))
        .collect();
    for (i, f) in flows.iter().enumerate() {
        if !window.overlaps(f) || matches.iter().any(|m| m.flow == i) {
            continue;
        }
        let same_source = |(key, ssrc, _): &&(FlowKey, u32, StreamDirection)| {
            *ssrc == f.ssrc && (key.src.ip() == f.key.src.ip() || key.dst.ip() == f.key.dst.ip())
        };
        if let Some(&(_, _, direction)) = linked.iter().find(same_source) {
            matches.push(FlowMatch {
                flow: i,
                direction,
                kind: MatchKind::SameSsrc,
            });
        }
    }
    matches
}

#[cfg(test)]
#[path = "matching_tests.rs"]
mod tests;
