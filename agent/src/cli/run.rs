//! `sipscope run`: live capture. Prints one line per captured SIP frame and
//! one `DROP` line per SIP/RTP packet the kernel dropped on the watched
//! interfaces, prints a summary line per RTP flow
//! periodically and at exit (`rtp_summary`), optionally writes every captured frame to a pcap file, and
//! prints the kernel's capture and drop counters on exit. SIGINT/SIGTERM
//! detach cleanly.
//!
//! (The full SIP pipeline will consume these packets; the printing here is
//! deliberately simple and kept to this file.)

use std::{io::Write as _, net::SocketAddr, path::PathBuf, process::ExitCode};

use anyhow::Context as _;
use etherparse::{SlicedPacket, TransportSlice};
use sipscope::{
    capture::{
        Direction, LinkType,
        live::{DropTracing, LiveCapture, LiveConfig, LiveDrop, LiveFrame},
    },
    export::pcap_writer::PcapFileWriter,
};
use sipscope_common::{DEFAULT_RING_SIZE, Transport};
use tokio::signal::unix::{SignalKind, signal};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Interface to capture on (repeatable).
    #[arg(long = "iface", short = 'i', required = true, value_name = "IFACE")]
    ifaces: Vec<String>,
    /// Additional SIP port (repeatable); 5060 is always included.
    #[arg(long = "sip-port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    sip_ports: Vec<u16>,
    /// Kernel ring buffer size in bytes: a power of two, multiple of the page
    /// size. Each frame takes its length plus 72 bytes (up to ~8 KiB); when the
    /// ring is full frames are lost and counted as ringbuf_full.
    #[arg(long = "ring-size", value_name = "BYTES", default_value_t = DEFAULT_RING_SIZE)]
    ring_size: u32,
    /// Write every captured frame to this pcap file (Ethernet, ns timestamps).
    #[arg(long = "write-pcap", value_name = "FILE")]
    write_pcap: Option<PathBuf>,
    /// Write every dropped SIP/RTP packet the kernel reported to this pcap
    /// file (raw IP: the packet as it was when dropped).
    #[arg(long = "write-drops-pcap", value_name = "FILE")]
    write_drops_pcap: Option<PathBuf>,
    /// Do not trace packets the kernel drops (kfree_skb).
    #[arg(long = "no-drops")]
    no_drops: bool,
    #[command(flatten)]
    rtp: super::rtp_summary::RtpArgs,
}

pub fn main(args: RunArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(run(args))
}

async fn run(args: RunArgs) -> anyhow::Result<ExitCode> {
    let config = LiveConfig {
        interfaces: args.ifaces.clone(),
        sip_ports: args.sip_ports.clone(),
        ring_size: args.ring_size,
        trace_drops: !args.no_drops,
        rtp: args.rtp.settings(),
        ..LiveConfig::default()
    };
    let mut pcap = match &args.write_pcap {
        Some(path) => Some(PcapFileWriter::create(path)?),
        None => None,
    };
    let mut drops_pcap = match &args.write_drops_pcap {
        Some(path) => Some(PcapFileWriter::create_for(path, LinkType::RawIp)?),
        None => None,
    };
    let mut sigint = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    let mut sigterm = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut capture = LiveCapture::start(&config).context("cannot start live capture")?;
    let mut rtp = super::rtp_summary::RtpSummary::start(&mut capture, &args.rtp)?;
    let mut stdout = std::io::stdout().lock();
    match capture.drop_tracing() {
        DropTracing::On(reasons) => {
            let names: Vec<&str> = reasons.iter().map(|r| r.name.as_str()).collect();
            writeln!(stdout, "tracing drops: {}", names.join(","))?;
        }
        DropTracing::Off => {}
        DropTracing::Unavailable(e) => writeln!(stdout, "{e}; capturing SIP without it")?,
    }
    // Printed last: tests and scripts wait for it as "ready".
    for a in capture.attachments() {
        writeln!(stdout, "capturing on {a}")?;
    }
    stdout.flush()?;

    let (mut frames, mut drops) = (Vec::new(), Vec::new());
    loop {
        tokio::select! {
            r = capture.next_batch(&mut frames, &mut drops) => r?,
            _ = rtp.tick() => {
                rtp.print_active(&mut stdout)?;
                continue;
            }
            _ = sigint.recv() => break,
            _ = sigterm.recv() => break,
        }
        emit(
            &mut frames,
            &mut drops,
            &mut stdout,
            pcap.as_mut(),
            drops_pcap.as_mut(),
        )?;
    }
    // Everything the kernel handed over before the signal is still shown.
    capture.drain_now(&mut frames, &mut drops);
    emit(
        &mut frames,
        &mut drops,
        &mut stdout,
        pcap.as_mut(),
        drops_pcap.as_mut(),
    )?;
    let mut counters = capture.counters()?.to_string();
    if let Some(d) = capture.drop_counters()? {
        counters = format!("{counters} {d}");
    }
    rtp.print_final(&mut stdout)?;
    let malformed = capture.malformed_events();
    capture.stop();
    for p in [pcap, drops_pcap].into_iter().flatten() {
        p.finish()?;
    }
    writeln!(
        stdout,
        "capture counters: {counters} malformed_events={malformed}"
    )?;
    stdout.flush()?;
    Ok(ExitCode::SUCCESS)
}

fn emit(
    frames: &mut Vec<LiveFrame>,
    drops: &mut Vec<LiveDrop>,
    out: &mut impl std::io::Write,
    mut pcap: Option<&mut PcapFileWriter>,
    mut drops_pcap: Option<&mut PcapFileWriter>,
) -> anyhow::Result<()> {
    for frame in frames.drain(..) {
        if let Some(p) = pcap.as_deref_mut() {
            p.write(&frame.packet)?;
        }
        writeln!(out, "{}", describe(&frame))?;
    }
    // Drops go to their own file: an inbound one was captured by XDP
    // already, and they are IP packets, not Ethernet frames.
    for drop in drops.drain(..) {
        if let Some(p) = drops_pcap.as_deref_mut() {
            p.write(&drop.dropped.packet)?;
        }
        writeln!(out, "{}", describe_drop(&drop))?;
    }
    out.flush()?;
    Ok(())
}

/// `time DROP dir src -> dst proto reason first-line [rtp] [truncated]`.
fn describe_drop(d: &LiveDrop) -> String {
    let p = &d.dropped.packet;
    let dir = match p.direction {
        Direction::Ingress => "in ",
        Direction::Egress => "out",
        Direction::Unknown => "?  ",
    };
    let proto = match Transport::from_u8(d.header.transport) {
        Transport::Tcp => "tcp",
        _ => "udp",
    };
    let what = if d.is_rtp() {
        "[rtp]".to_owned()
    } else {
        ip_payload_first_line(&p.data).unwrap_or_else(|| "(no SIP start line)".into())
    };
    let mut line = format!(
        "{} DROP {dir} {} -> {} {proto} {} {what}",
        p.ts,
        d.src(),
        d.dst(),
        d.dropped.reason
    );
    if p.is_truncated() {
        line.push_str(&format!(
            " [truncated {} of {} bytes]",
            p.data.len(),
            p.orig_len
        ));
    }
    line
}

/// The first line of the SIP message in an IP packet (UDP or TCP).
fn ip_payload_first_line(ip: &[u8]) -> Option<String> {
    let sliced = SlicedPacket::from_ip(ip).ok()?;
    let payload = match &sliced.transport {
        Some(TransportSlice::Udp(u)) => u.payload(),
        Some(TransportSlice::Tcp(t)) => t.payload(),
        _ => return None,
    };
    start_line(payload)
}

fn start_line(payload: &[u8]) -> Option<String> {
    let end = payload
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(payload.len().min(120));
    let line = String::from_utf8_lossy(&payload[..end]).into_owned();
    (!line.is_empty()).then_some(line)
}

/// `time dir src -> dst proto first-line [flags]`.
fn describe(frame: &LiveFrame) -> String {
    let h = &frame.header;
    let dir = match frame.packet.direction {
        Direction::Ingress => "in ",
        Direction::Egress => "out",
        Direction::Unknown => "?  ",
    };
    let proto = match Transport::from_u8(h.transport) {
        Transport::Udp => "udp",
        Transport::Tcp => "tcp",
        Transport::Icmp | Transport::Icmpv6 => "icmp",
        Transport::Unknown => "ip",
    };
    let mut line = if proto == "icmp" {
        // The ports are those of the quoted datagram the error is about.
        format!(
            "{} {dir} {} -> {} icmp unreachable, about port {} -> {}",
            frame.packet.ts,
            frame.src_addr(),
            frame.dst_addr(),
            h.src_port,
            h.dst_port
        )
    } else {
        let src = SocketAddr::new(frame.src_addr(), h.src_port);
        let dst = SocketAddr::new(frame.dst_addr(), h.dst_port);
        let first = first_line(frame).unwrap_or_else(|| "(no SIP start line)".into());
        format!("{} {dir} {src} -> {dst} {proto} {first}", frame.packet.ts)
    };
    if frame.is_fragment() {
        line.push_str(" [fragment]");
    }
    if frame.is_truncated() {
        line.push_str(&format!(
            " [truncated {} of {} bytes]",
            h.cap_len, h.orig_len
        ));
    }
    if frame.is_vlan_tagged() {
        line.push_str(" [vlan]");
    }
    line
}

/// The first line of the SIP message in a captured frame, if the frame
/// carries the start of one. For IP fragments the kernel reports ports only
/// on the first fragment, which starts with the UDP header.
fn first_line(frame: &LiveFrame) -> Option<String> {
    let sliced = SlicedPacket::from_ethernet(&frame.packet.data).ok()?;
    let payload = match &sliced.transport {
        Some(TransportSlice::Udp(u)) => u.payload(),
        Some(TransportSlice::Tcp(t)) => t.payload(),
        _ if frame.is_fragment() && frame.header.src_port != 0 => {
            sliced.net.as_ref()?.ip_payload_ref()?.payload.get(8..)?
        }
        _ => return None,
    };
    start_line(payload)
}

#[cfg(test)]
mod tests {
    use sipscope::capture::{LinkType, Packet, Timestamp};
    use sipscope_common::{CaptureHeader, FLAG_FRAGMENT, FLAG_TRUNCATED, Family};

    use super::*;

    fn frame(data: Vec<u8>, flags: u32, transport: Transport, ports: (u16, u16)) -> LiveFrame {
        let orig_len = if flags & FLAG_TRUNCATED != 0 {
            20_000
        } else {
            data.len() as u32
        };
        LiveFrame {
            header: CaptureHeader {
                ktime_ns: 0,
                ifindex: 1,
                orig_len,
                cap_len: data.len() as u32,
                flags,
                src_addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                dst_addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                src_port: ports.0,
                dst_port: ports.1,
                direction: sipscope_common::Direction::Ingress as u8,
                family: Family::Ipv4 as u8,
                transport: transport as u8,
                _pad: 0,
            },
            packet: Packet {
                ts: Timestamp::from_nanos(3_600_000_000_000 + 1_500),
                ifindex: 1,
                direction: Direction::Ingress,
                link: LinkType::Ethernet,
                data,
                orig_len,
            },
        }
    }

    fn sip_udp(payload: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
            .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
            .udp(5062, 5060)
            .write(&mut out, payload)
            .unwrap();
        out
    }

    #[test]
    fn a_sip_frame_prints_its_start_line() {
        let f = frame(
            sip_udp(b"REGISTER sip:pbx SIP/2.0\r\nVia: x\r\n\r\n"),
            0,
            Transport::Udp,
            (5062, 5060),
        );
        assert_eq!(
            describe(&f),
            "01:00:00.000001 in  10.0.0.2:5062 -> 10.0.0.1:5060 udp REGISTER sip:pbx SIP/2.0"
        );
    }

    #[test]
    fn truncated_and_fragment_flags_are_shown() {
        let f = frame(
            sip_udp(b"SIP/2.0 200 OK\r\n"),
            FLAG_TRUNCATED | FLAG_FRAGMENT,
            Transport::Udp,
            (5062, 5060),
        );
        let line = describe(&f);
        assert!(
            line.ends_with("[fragment] [truncated 58 of 20000 bytes]"),
            "{line}"
        );
    }

    #[test]
    fn a_later_fragment_has_no_start_line() {
        let mut data = sip_udp(b"tail of a body");
        // Fragment offset 185 (1480 bytes), no more fragments: a tail.
        data[20..22].copy_from_slice(&185u16.to_be_bytes());
        let f = frame(data, FLAG_FRAGMENT, Transport::Unknown, (0, 0));
        assert!(describe(&f).contains("(no SIP start line) [fragment]"));
    }

    fn live_drop(ip: Vec<u8>, flags: u32, reason: &str) -> LiveDrop {
        use sipscope::capture::{DropReason, DroppedPacket};
        use sipscope_common::{DropHeader, Family};
        LiveDrop {
            header: DropHeader {
                ktime_ns: 0,
                ifindex: 2,
                reason: 12,
                skb_len: ip.len() as u32,
                l3_len: ip.len() as u32,
                cap_len: ip.len() as u32,
                flags,
                src_addr: [10, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                dst_addr: [10, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
                src_port: 5060,
                dst_port: 5060,
                direction: sipscope_common::Direction::Ingress as u8,
                family: Family::Ipv4 as u8,
                transport: Transport::Udp as u8,
                _pad: 0,
            },
            dropped: DroppedPacket {
                packet: Packet {
                    ts: Timestamp::from_nanos(14 * 3_600_000_000_000 + 123_000_000),
                    ifindex: 2,
                    direction: Direction::Ingress,
                    link: LinkType::RawIp,
                    orig_len: ip.len() as u32,
                    data: ip,
                },
                reason: DropReason {
                    code: 12,
                    name: reason.to_owned(),
                },
            },
        }
    }

    #[test]
    fn a_dropped_response_prints_as_a_drop_line_with_reason_and_start_line() {
        let mut ip = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5060, 5060)
            .write(&mut ip, b"SIP/2.0 401 Unauthorized\r\nVia: x\r\n\r\n")
            .unwrap();
        assert_eq!(
            describe_drop(&live_drop(ip, 0, "netfilter_drop")),
            "14:00:00.123000 DROP in  10.0.0.1:5060 -> 10.0.0.2:5060 udp netfilter_drop SIP/2.0 401 Unauthorized"
        );
    }

    #[test]
    fn a_dropped_rtp_packet_is_marked_rtp() {
        let mut ip = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5060, 5060)
            .write(&mut ip, &[0x80; 20])
            .unwrap();
        let line = describe_drop(&live_drop(ip, sipscope_common::DROP_FLAG_RTP, "no_socket"));
        assert!(line.ends_with("udp no_socket [rtp]"), "{line}");
    }
}
