//! The analyses through the real pipeline: raw packets in, events out,
//! so each test exercises an analysis together with the wiring that
//! feeds it (as `analyze` and `run` do).

pub(crate) mod call_script;
mod calls;
mod inbound;
mod reachability;
mod registration;
mod wiring;
