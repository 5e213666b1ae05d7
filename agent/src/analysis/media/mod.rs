//! Media analysis: what was negotiated (SDP offer/answer), what RTP really
//! flowed (RFC 3550 statistics per flow, the same arithmetic the kernel
//! map keeps), how good it sounds (G.107 E-model), and the findings
//! `media.no_rtp`, `media.one_way`, `media.quality` and `nat.private_sdp`.
//!
//! Pure and synchronous: SDP bodies come in as bytes, RTP as
//! `(Timestamp, src, dst, payload)`, time is the packet clock.

pub(crate) mod codec;
pub mod findings;
pub(crate) mod findings_remedy;
pub(crate) mod flow;
pub(crate) mod matching;
pub(crate) mod observations;
pub(crate) mod quality;
pub(crate) mod rtcp;
pub(crate) mod rtp;
pub(crate) mod rtp_stats;
pub(crate) mod sdp;

pub use findings::{DirectionObservation, MediaCheckConfig, MediaFinding, StreamCheck};
pub use flow::{ClockTable, FlowTable};
pub use matching::{FlowMatch, MatchKind, ObservedFlow, StreamDirection, TimeWindow, link_flows};
pub use observations::{ObservationConfig, ObservationStats, RtpObservations, RtpSource};
pub use rtp::{RtpError, RtpHeader, parse_rtp};
pub use rtp_stats::{RtpStreamStats, SeqVerdict};
pub use sdp::{MediaDescription, NegotiatedStream, SdpError, negotiated_streams, parse_sdp};
// Flow vocabulary shared with capture (see `crate::media_flow`).
pub use crate::media_flow::{FlowKey, FlowSnapshot};
