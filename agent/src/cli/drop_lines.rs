//! `DROP` lines of `sipscope run`: one per SIP or RTP packet the kernel
//! dropped on a watched interface (`fw.local_drop` evidence), with the
//! kernel's drop reason and the SIP start line when there is one.

use etherparse::{SlicedPacket, TransportSlice};
use sipscope::{capture::live::LiveDrop, packet::Direction};
use sipscope_common::Transport;

use super::records::Sorted;

/// `time DROP dir src -> dst proto reason first-line [rtp] [truncated]`.
pub fn describe_drop(d: &LiveDrop) -> String {
    let p = &d.dropped.packet;
    let dir = match p.direction {
        Direction::Ingress => "in ",
        Direction::Egress => "out",
        Direction::Unknown => "?  ",
    };
    let proto = match d.header.endpoints.transport() {
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
        d.header.endpoints.src(),
        d.header.endpoints.dst(),
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

/// The first line of a SIP payload (at most 120 bytes when it has no line
/// end), for a one-line description.
pub(super) fn start_line(payload: &[u8]) -> Option<String> {
    let end = payload
        .iter()
        .position(|&b| b == b'\r' || b == b'\n')
        .unwrap_or(payload.len().min(120));
    let line = String::from_utf8_lossy(&payload[..end]).into_owned();
    (!line.is_empty()).then_some(line)
}

/// The same as a JSON record (`"type": "drop"`) for `--json`.
pub fn drop_record(d: &LiveDrop) -> Sorted<DropRecord> {
    let p = &d.dropped.packet;
    Sorted(DropRecord {
        r#type: "drop",
        ts: p.ts.as_nanos(),
        direction: p.direction,
        src: d.header.endpoints.src().to_string(),
        dst: d.header.endpoints.dst().to_string(),
        reason: d.dropped.reason.to_string(),
        rtp: d.is_rtp(),
        start_line: if d.is_rtp() {
            None
        } else {
            ip_payload_first_line(&p.data)
        },
        truncated: p.is_truncated(),
    })
}

#[derive(serde::Serialize)]
pub struct DropRecord {
    r#type: &'static str,
    ts: u64,
    direction: Direction,
    src: String,
    dst: String,
    reason: String,
    rtp: bool,
    start_line: Option<String>,
    truncated: bool,
}

#[cfg(test)]
mod tests {
    use sipscope::{
        packet::{LinkType, Packet},
        time::Timestamp,
    };

    use super::*;

    fn live_drop(ip: Vec<u8>, flags: u32, reason: &str) -> LiveDrop {
        use sipscope::packet::{DropReason, DroppedPacket};
        use sipscope_common::{DropHeader, Endpoints};
        LiveDrop {
            header: DropHeader {
                ktime_ns: 0,
                ifindex: 2,
                reason: 12,
                skb_len: ip.len() as u32,
                l3_len: ip.len() as u32,
                cap_len: ip.len() as u32,
                flags,
                endpoints: Endpoints::new(
                    ([10, 0, 0, 1], 5060).into(),
                    ([10, 0, 0, 2], 5060).into(),
                    sipscope_common::Direction::Ingress,
                    Transport::Udp,
                )
                .unwrap(),
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

    /// The console line, and with `--json` the record, its keys in sorted
    /// order as they have always been written.
    #[test]
    fn a_dropped_response_prints_as_a_drop_line_with_reason_and_start_line() {
        let mut ip = Vec::new();
        etherparse::PacketBuilder::ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
            .udp(5060, 5060)
            .write(&mut ip, b"SIP/2.0 401 Unauthorized\r\nVia: x\r\n\r\n")
            .unwrap();
        let drop = live_drop(ip, 0, "netfilter_drop");
        assert_eq!(
            describe_drop(&drop),
            "14:00:00.123000 DROP in  10.0.0.1:5060 -> 10.0.0.2:5060 udp netfilter_drop SIP/2.0 401 Unauthorized"
        );
        assert_eq!(
            serde_json::to_string(&drop_record(&drop)).unwrap(),
            r#"{"direction":"ingress","dst":"10.0.0.2:5060","reason":"netfilter_drop","rtp":false,"src":"10.0.0.1:5060","start_line":"SIP/2.0 401 Unauthorized","truncated":false,"ts":50400123000000,"type":"drop"}"#
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
