//! Where results go: console, JSON lines, OTLP, pcap files.

pub mod otel;
pub mod pcap_writer;
pub mod spans;
