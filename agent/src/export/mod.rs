//! export stage.

pub mod pcap_writer;
