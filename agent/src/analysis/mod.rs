//! The analysis stage: pure, synchronous checks on the packet clock that
//! turn SIP facts into catalogue findings ([`crate::diagnosis`]).
//!
//! - [`digest`]: Digest challenge/credentials parsing, response
//!   computation, password verification and consistency checks.
//! - [`credentials`]: the `--credentials FILE` store of known secrets.
//! - [`nat`]: address classification and NAT findings for Contact, Via
//!   and SDP.
//! - [`media`]: SDP offer/answer, RFC 3550 RTP statistics, flow matching,
//!   E-model quality and the media findings.
//!
//! - [`calls`]: INVITE dialogs, their negotiated streams and the RTP
//!   linked to them; the media findings.
//! - [`inbound`]: registered, but calls to the registered contact fail
//!   (`call.inbound_blocked`).
//! - [`reachability`]: unanswered requests, ICMP unreachable and local
//!   firewall drops.
//! - [`unanswered`]: when a request still unanswered at the end of a
//!   capture is judged (shared by reachability and inbound).
//! - [`flood_guard`]: repeats of a finding about one source suppressed,
//!   and counted, under a flood.
//!
//! Each analysis takes typed input (a [`crate::sip::MessageRecord`], a
//! completed or timed-out [`crate::sip::Transaction`], an ICMP error, a
//! kernel drop, a tick) through its own entry points and appends what it
//! concludes to a caller-given `Vec<finding::Finding>`. None of them
//! knows the pipeline or the other analyses: [`crate::pipeline`] is the one
//! place that decides who learns from whom.
//!
//! These modules take header values as `&str` and small domain structs of
//! their own, not `sip` types, so they stay independent of the parser.

pub(crate) mod calls;
pub mod credentials;
pub(crate) mod digest;
pub(crate) mod finding;
pub(crate) mod flood_guard;
pub(crate) mod inbound;
pub mod media;
pub(crate) mod nat;
pub(crate) mod once_per_window;
pub(crate) mod reachability;
pub mod registration;
pub mod unanswered;
