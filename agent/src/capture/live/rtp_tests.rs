use proptest::prelude::*;
use sipscope_common::{Family, RtpPacketFields};

use super::*;
use crate::{
    analysis::media::{RtpHeader, RtpStreamStats},
    capture::Timestamp,
};

fn header(p: &RtpPacketFields) -> RtpHeader {
    RtpHeader {
        version: 2,
        padding: false,
        extension: false,
        csrc_count: 0,
        marker: false,
        payload_type: p.payload_type,
        sequence: p.sequence,
        timestamp: p.timestamp,
        ssrc: p.ssrc,
        header_len: 12,
        payload_len: 160,
    }
}

/// Feeds the kernel's update (the code the eBPF program runs) and the
/// media core the same packets; every RFC 3550 figure must be identical.
fn assert_same(packets: &[(u64, RtpPacketFields, u32)]) {
    let mut kernel = RtpFlowState::default();
    let mut core = RtpStreamStats::new();
    for (now, p, clock) in packets {
        kernel.update(*now, p, 172, *clock);
        core.update(Timestamp::from_nanos(*now), &header(p), 172, *clock);
        assert_eq!(kernel.packets, core.packets());
        assert_eq!(kernel.bytes, core.bytes());
        assert_eq!(kernel.ssrc, core.ssrc());
        assert_eq!(kernel.payload_type, core.payload_type());
        assert_eq!(kernel.received, core.received());
        assert_eq!(kernel.expected(), core.expected());
        assert_eq!(kernel.cumulative_lost(), core.cumulative_lost());
        assert_eq!(kernel.extended_max_seq(), core.extended_max_seq());
        assert_eq!(kernel.jitter_q8, core.jitter_q8());
        assert_eq!(kernel.duplicates, core.duplicates());
        assert_eq!(kernel.reordered, core.reordered());
        assert_eq!(kernel.rejected, core.rejected());
        assert_eq!(kernel.restarts, core.restarts());
        assert_eq!(kernel.ssrc_changes, core.ssrc_changes());
        assert_eq!(kernel.transit_clock, core.clock_rate());
    }
    let key = RtpFlowKey::default();
    let stats = RtpFlowStats::from_kernel(&key, kernel, KtimeClock::new());
    assert!((stats.max_jitter_ms() - core.max_jitter_ms()).abs() < 1e-9);
    assert!((stats.jitter_ms() - core.jitter_ms()).abs() < 1e-9);
}

fn pkt(sequence: u16, timestamp: u32) -> RtpPacketFields {
    RtpPacketFields {
        sequence,
        timestamp,
        ssrc: 0x1234_5678,
        payload_type: 0,
    }
}

#[test]
fn a_call_with_loss_reordering_and_a_sequence_wrap_matches_the_media_core() {
    let mut packets = Vec::new();
    let mut now = 1_000_000_000u64;
    for i in 0..300u32 {
        let seq = 65_400u16.wrapping_add(i as u16);
        if i % 50 == 7 {
            continue; // lost
        }
        now += 20_000_000 + u64::from(i % 7) * 350_000;
        packets.push((now, pkt(seq, 1_000 + i * 160), 8_000));
    }
    packets.swap(100, 101);
    assert_same(&packets);
    let mut kernel = RtpFlowState::default();
    for (now, p, clock) in &packets {
        kernel.update(*now, p, 172, *clock);
    }
    assert_eq!(kernel.cumulative_lost(), 6);
    assert_eq!(kernel.reordered, 1);
    assert_eq!(kernel.cycles, 1 << 16, "one wrap");
}

proptest! {
    #[test]
    fn any_packet_sequence_gives_the_media_core_numbers(
        steps in proptest::collection::vec(
            (0u64..80_000_000, any::<u16>(), 0u32..2_000, 0u8..3, 0u8..4), 1..120)
    ) {
        let mut now = 5_000_000_000u64;
        let mut seq = 1000u16;
        let mut ts = 0u32;
        let mut packets = Vec::new();
        for (gap, jump, ts_step, ssrc, pt) in steps {
            now += gap;
            // Mostly small steps, sometimes a big jump (restart/reject path).
            seq = seq.wrapping_add(if jump % 8 == 0 { jump } else { jump % 5 });
            ts = ts.wrapping_add(ts_step);
            let clock = [8_000, 16_000, 0, 48_000][usize::from(pt)];
            packets.push((now, RtpPacketFields {
                sequence: seq,
                timestamp: ts,
                ssrc: u32::from(ssrc % 2) + 7,
                payload_type: pt,
            }, clock));
        }
        assert_same(&packets);
    }
}

#[test]
fn port_ranges_parse_or_say_what_to_write() {
    assert_eq!(parse_port_range("10000-20000"), Ok(10_000..=20_000));
    assert!(parse_port_range("off").unwrap().is_empty());
    assert!(
        parse_port_range("20000-10000")
            .unwrap_err()
            .contains("reversed")
    );
    assert!(parse_port_range("10000").unwrap_err().contains("LO-HI"));
    assert!(parse_port_range("0-5").unwrap_err().contains("port number"));
    assert!(
        parse_port_range("1-70000")
            .unwrap_err()
            .contains("port number")
    );
}

#[test]
fn settings_become_the_kernel_config() {
    let c = RtpSettings::default().kernel_config(3);
    assert_eq!((c.port_min, c.port_max), (10_000, 20_000));
    assert_eq!((c.default_clock_rate, c.port_clocks), (8_000, 3));
    let off = RtpSettings {
        ports: parse_port_range("off").unwrap(),
        ..RtpSettings::default()
    }
    .kernel_config(0);
    assert!(!off.in_range(1) && !off.in_range(15_000) && !off.in_range(0));
}

#[test]
fn a_kernel_entry_prints_as_a_summary_line() {
    let key = RtpFlowKey {
        src_addr: [10, 77, 0, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        dst_addr: [10, 77, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
        src_port: 12_000,
        dst_port: 14_000,
        ifindex: 3,
        family: Family::Ipv4 as u8,
        direction: sipscope_common::Direction::Egress as u8,
        _pad: [0; 2],
    };
    let mut state = RtpFlowState::default();
    for seq in [1u16, 2, 4, 5] {
        state.update(
            1_000 + u64::from(seq) * 20_000_000,
            &pkt(seq, u32::from(seq) * 160),
            172,
            8_000,
        );
    }
    let stats = RtpFlowStats::from_kernel(&key, state, KtimeClock::new());
    assert_eq!(stats.direction, Direction::Egress);
    assert_eq!(
        stats.to_string(),
        "10.77.0.2:12000 -> 10.77.0.1:14000 out ssrc=0x12345678 pt=0 packets=4 lost=1 \
         reordered=0 jitter=0.000ms max_jitter=0.000ms"
    );
}

#[test]
fn flow_keys_round_trip_through_the_kernel_form() {
    let clock = KtimeClock::new();
    for (src, dst) in [
        ("10.77.0.2:12010", "10.77.0.1:12000"),
        ("[fd77::2]:12030", "[fd77::1]:12000"),
    ] {
        let (src, dst): (SocketAddr, SocketAddr) = (src.parse().unwrap(), dst.parse().unwrap());
        let key = flow_key(src, dst, 4, Direction::Ingress).unwrap();
        let stats = RtpFlowStats::from_kernel(&key, RtpFlowState::default(), clock);
        assert_eq!((stats.src, stats.dst, stats.ifindex), (src, dst, 4));
        assert_eq!(stats.direction, Direction::Ingress);
    }
    let v4: SocketAddr = "10.0.0.1:1".parse().unwrap();
    let v6: SocketAddr = "[::1]:1".parse().unwrap();
    assert!(flow_key(v4, v6, 1, Direction::Egress).is_none());
    assert!(flow_key(v4, v4, 1, Direction::Unknown).is_none());
}

#[test]
fn port_ranges_parse_and_bad_ones_say_how_to_write_them() {
    assert_eq!(super::parse_port_range("10000-20000"), Ok(10000..=20000));
    assert_eq!(super::parse_port_range("off"), Ok(super::RTP_OFF));
    assert!(
        super::parse_port_range("20000")
            .unwrap_err()
            .contains("LO-HI")
    );
    assert!(
        super::parse_port_range("2-1")
            .unwrap_err()
            .contains("reversed")
    );
    assert!(super::parse_port_range("0-5").is_err());
}
