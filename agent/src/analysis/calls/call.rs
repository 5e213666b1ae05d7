//! A call as the analysis reports it: the INVITE dialog (RFC 3261 §12-15),
//! what its offer/answer negotiated (RFC 3264) and what RTP really flowed,
//! per stream and direction.

use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::analysis::media::findings::DirectionObservation;
use crate::analysis::media::quality::{CodecImpairment, QualityAssumptions, estimate};
use crate::analysis::media::{NegotiatedStream, StreamDirection, codec::VoiceCodec};
use crate::diagnosis::Code;
use crate::time::Timestamp;

/// Where the dialog is (RFC 3261 §13 for the INVITE, §15 for BYE/CANCEL).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallState {
    /// INVITE sent, nothing or 100 Trying back.
    Calling,
    /// 180/183 without SDP.
    Ringing,
    /// A provisional response carried an SDP answer (RFC 3262/3264).
    EarlyMedia,
    /// 2xx to the INVITE.
    Answered,
    /// BYE after an answer.
    Ended,
    /// A final response >= 300 (other than 487 after CANCEL), or none.
    Failed,
    /// CANCEL, or 487 Request Terminated.
    Cancelled,
}

impl CallState {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Calling => "calling",
            Self::Ringing => "ringing",
            Self::EarlyMedia => "early_media",
            Self::Answered => "answered",
            Self::Ended => "ended",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
        }
    }

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Ended | Self::Failed | Self::Cancelled)
    }
}

/// Why the call tracker ended a call: the one decision the call report
/// and the call's trace (`sipscope.call.end`) both show.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CallEnd {
    /// A BYE (RFC 3261 §15.1), before or after the answer.
    Bye,
    /// A final response >= 300 to the initial INVITE other than a
    /// challenge (RFC 3261 §13.2.2.3), 487 after a CANCEL included.
    Rejected,
    /// The INVITE transaction got no final response (RFC 3261 §17.1.1.2,
    /// Timer B), or the capture ended or the table dropped it first.
    NoAnswer,
    /// 401/407 to the INVITE and no retry with credentials (RFC 3261
    /// §22.2) within the challenge timeout or before the input ended.
    ChallengeNotRetried,
    /// No SIP for the idle timeout.
    Idle,
    /// The call table was full and this was the oldest call.
    Evicted,
    /// Still up when the input ended.
    CaptureEnded,
}

impl CallEnd {
    /// The `sipscope.call.end` value of the call's root span
    /// (docs/tracing.md): a challenge never retried is a failure there.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Self::Bye => "bye",
            Self::Rejected | Self::ChallengeNotRetried => "failed",
            Self::NoAnswer => "no_answer",
            Self::Idle => "idle",
            Self::Evicted => "evicted",
            Self::CaptureEnded => "open_at_end",
        }
    }
}

/// Which end of the call a message or an offer came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Party {
    /// Sent the initial INVITE.
    Caller,
    Callee,
}

impl Party {
    pub fn other(self) -> Self {
        match self {
            Self::Caller => Self::Callee,
            Self::Callee => Self::Caller,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Caller => "caller",
            Self::Callee => "callee",
        }
    }
}

/// One direction of a negotiated stream and the RTP linked to it.
#[derive(Clone, Debug, PartialEq)]
pub struct DirectionReport {
    pub direction: StreamDirection,
    /// The sending side's SDP address (where it said it receives, and by
    /// symmetric RTP sends from).
    pub from: SocketAddr,
    /// The receiving side's SDP address.
    pub to: SocketAddr,
    /// Negotiated to carry RTP (not hold, not rejected).
    pub expected: bool,
    /// RTP seen in this direction, summed over the linked flows.
    pub observed: Option<DirectionObservation>,
    /// E-model MOS estimate (ITU-T G.107), when RTP was seen.
    pub mos: Option<f64>,
}

/// One m= line of the call: negotiated, and what flowed.
#[derive(Clone, Debug, PartialEq)]
pub struct StreamReport {
    pub negotiated: std::sync::Arc<NegotiatedStream>,
    /// Who made the offer.
    pub offerer: Party,
    pub directions: Vec<DirectionReport>,
}

impl StreamReport {
    pub fn new(negotiated: NegotiatedStream, offerer: Party) -> Self {
        let directions = [
            StreamDirection::OffererToAnswerer,
            StreamDirection::AnswererToOfferer,
        ]
        .into_iter()
        .map(|d| DirectionReport {
            direction: d,
            from: d.sender(&negotiated).rtp_address(),
            to: d.receiver(&negotiated).rtp_address(),
            expected: match d {
                StreamDirection::OffererToAnswerer => negotiated.offerer_sends(),
                StreamDirection::AnswererToOfferer => negotiated.answerer_sends(),
            },
            observed: None,
            mos: None,
        })
        .collect();
        Self {
            // Shared: every report of the call (a clone per state change)
            // carries the same negotiation.
            negotiated: std::sync::Arc::new(negotiated),
            offerer,
            directions,
        }
    }

    /// `PCMA/8000`-style name of the format in use.
    pub fn codec(&self) -> String {
        match self.negotiated.format() {
            Some(f) => match (f.encoding, f.clock_rate) {
                (Some(e), Some(r)) => format!("{e}/{r}"),
                (Some(e), None) => e,
                (None, _) => format!("PT {}", f.payload_type),
            },
            None => "none in common".to_owned(),
        }
    }

    /// Fills `observed` and the MOS of `d`.
    pub fn set_observed(
        &mut self,
        d: StreamDirection,
        observed: Option<DirectionObservation>,
        assumptions: QualityAssumptions,
    ) {
        let codec = self
            .negotiated
            .format()
            .and_then(|f| f.encoding)
            .map_or(VoiceCodec::Other, |e| VoiceCodec::from_encoding_name(&e));
        let mos = observed.as_ref().filter(|o| o.delivered() > 0).map(|o| {
            estimate(
                CodecImpairment::for_codec(codec),
                o.loss_percent(),
                o.jitter_ms,
                assumptions,
            )
            .mos
        });
        if let Some(r) = self.directions.iter_mut().find(|r| r.direction == d) {
            r.observed = observed;
            r.mos = mos;
        }
    }
}

/// A call: one INVITE dialog, keyed by Call-ID.
#[derive(Clone, Debug, PartialEq)]
pub struct Call {
    pub call_id: String,
    /// From and To URIs of the initial INVITE.
    pub from: String,
    pub to: String,
    /// Where the initial INVITE came from and went to (this hop).
    pub caller: SocketAddr,
    pub callee: SocketAddr,
    pub state: CallState,
    pub started: Timestamp,
    pub answered: Option<Timestamp>,
    pub ended: Option<Timestamp>,
    /// Final status of the initial INVITE.
    pub status: Option<u16>,
    /// Why the call ended: "BYE from the caller", "487 Request Terminated",
    /// "capture ended", ...
    pub end_reason: Option<String>,
    /// How the call ended, once it has (with `ended`).
    pub end: Option<CallEnd>,
    pub streams: Vec<StreamReport>,
    /// Codes raised on this call so far.
    pub diagnoses: Vec<Code>,
    /// The last report of this call: statistics are complete.
    pub closed: bool,
    /// Packet-clock time of this report.
    pub at: Timestamp,
}

impl Call {
    /// The final status that decided the call: a 401/407 is not one, the
    /// retry with credentials is the same call (RFC 3261 §22.2).
    pub(crate) fn decided_status(&self) -> Option<u16> {
        self.status.filter(|s| !matches!(s, 401 | 407))
    }

    /// Talk time: answer to end (or to `at` while still up).
    pub fn duration(&self) -> Option<Duration> {
        let answered = self.answered?;
        Some(self.ended.unwrap_or(self.at).since(answered))
    }
}
