//! sipscope: SIP/RTP observability from the kernel up.
//!
//! The modules follow the data flow (see DESIGN in README):
//! `capture` (where packets come from) → `packet` (decode, reassembly,
//! TCP framing) → `sip` (messages, transactions) → `analysis`
//! (registrations, digest, NAT, reachability, media) → `diagnosis` (the
//! catalogue of findings) → `export` (console, JSON, OTLP). `session`
//! drives that chain for both `run` and `analyze`: frames, drops and ticks
//! in, rendered output and spans out, kernel requests asked of the caller.
//!
//! The core is synchronous and runs on the packet clock; async lives only at
//! the edges (`capture::live`, `export`).
//!
//! Vocabulary every stage may use: `time` (the packet clock) and
//! `media_flow` (an RTP flow's key and its state at a moment).

// pub(crate) by default: an item is `pub` only when a caller outside the
// crate (the binary, tests, benches, fuzz targets) names it.
#![warn(unreachable_pub)]

pub mod analysis;
pub mod capture;
pub mod diagnosis;
pub mod export;
pub mod fuzzing;
pub mod media_flow;
pub mod memory_budget;
pub mod packet;
pub mod pipeline;
pub mod session;
pub mod sip;
pub mod time;
