//! Calls: INVITE dialogs, their negotiated media and the RTP that really
//! flowed (issue "Media"). The [`CallTracker`] is fed messages,
//! transaction timeouts and RTP, alone decides a call's lifecycle
//! ([`CallEnd`]), emits a `Finding::Call` report at the initial INVITE and
//! on every state change (the last one `closed`) and raises
//! `media.no_rtp`, `media.one_way`, `media.quality` and `nat.private_sdp`.
//!
//! - [`call`]: the reported [`Call`] and its streams;
//! - [`negotiation`]: RFC 3264 offer/answer over a dialog's messages;
//! - [`judge`]: linking flows to streams and turning media findings into
//!   diagnoses;
//! - [`tracker`]: the dialog state machine and the timers.

use std::time::Duration;

use serde::Serialize;

use crate::analysis::media::{MediaCheckConfig, ObservationConfig, ObservationStats};

pub(crate) mod call;
pub(crate) mod judge;
pub(crate) mod negotiation;
pub(crate) mod tracker;

pub(crate) use call::{Call, CallEnd, CallState, DirectionReport, Party, StreamReport};
pub(crate) use tracker::CallTracker;

/// Limits and timers of the call tracker.
#[derive(Clone, Debug)]
pub struct CallConfig {
    /// Calls tracked at once; the oldest is closed (and counted) first.
    /// Also bounds the open call traces: the trace builder keeps no table.
    pub max_calls: usize,
    /// A call without SIP for this long is closed, its trace with it (the
    /// only call idle timeout: the trace builder has none).
    pub idle_timeout: Duration,
    /// A call whose INVITE drew 401/407 and was not retried within this
    /// time is closed as failed (RFC 3261 Timer B, 64*T1).
    pub challenge_timeout: Duration,
    /// After a call ends, RTP still in flight is waited for this long
    /// (packet clock) before its statistics are final.
    pub settle: Duration,
    pub checks: MediaCheckConfig,
    pub observations: ObservationConfig,
}

impl Default for CallConfig {
    fn default() -> Self {
        Self {
            max_calls: 10_000,
            idle_timeout: Duration::from_secs(2 * 3600),
            challenge_timeout: Duration::from_secs(32),
            settle: Duration::from_millis(500),
            checks: MediaCheckConfig::default(),
            observations: ObservationConfig::default(),
        }
    }
}

/// Counters of the call tracker.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct CallStats {
    pub calls: u64,
    pub answered: u64,
    pub ended: u64,
    pub failed: u64,
    pub cancelled: u64,
    /// Open now.
    pub open: u64,
    /// Still open when the input ended.
    pub open_at_end: u64,
    /// Closed because the table was full.
    pub evicted: u64,
    /// Closed by the idle or challenge timeout.
    pub idle_closed: u64,
    /// SDP bodies that could not be read.
    pub sdp_unreadable: u64,
    /// Answered calls whose media could not be judged: nothing measured
    /// RTP (a SIP-only capture, or RTP statistics off).
    pub media_not_judged: u64,
    pub rtp: ObservationStats,
}
