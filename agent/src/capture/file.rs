//! pcap and pcapng capture files as a packet source.
