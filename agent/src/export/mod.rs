//! Export stage: where results leave the agent. [`console`] renders a
//! call flow for people, [`json`] writes JSON lines for programs, [`otel`]
//! sends spans and metrics to an OTLP collector, [`hep`] mirrors SIP,
//! RTCP, RTP reports and findings to a HOMER collector, [`pcap_ring`]
//! keeps the captured frames in rotating pcapng files, [`pcap_writer`] the
//! kernel's dropped packets.

pub(crate) mod call_flow;
pub(crate) mod calls;
pub(crate) mod calls_json;
pub(crate) mod console;
pub mod hep;
pub mod json;
pub(crate) mod media_spans;
pub mod otel;
pub mod pcap_ring;
pub mod pcap_writer;
pub mod prometheus;
pub(crate) mod registrations;
pub mod service_log;
pub mod shared_stdout;
pub(crate) mod sip_spans;
pub mod spans;
#[cfg(test)]
mod test_sip;
pub mod trace_builder;
