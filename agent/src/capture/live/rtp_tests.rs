use sipscope_common::{Family, RtpFlowKeyV4, RtpFlowState, RtpPacketFields};

use super::*;

fn pkt(sequence: u16, timestamp: u32) -> RtpPacketFields {
    RtpPacketFields {
        sequence,
        timestamp,
        ssrc: 0x1234_5678,
        payload_type: 0,
    }
}

#[test]
fn a_call_with_loss_reordering_and_a_sequence_wrap_gives_the_true_figures() {
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
    let mut kernel = RtpFlowState::default();
    for (now, p, clock) in &packets {
        kernel.update(*now, p, 172, *clock);
    }
    assert_eq!(kernel.cumulative_lost(), 6);
    assert_eq!(kernel.reordered, 1);
    assert_eq!(kernel.cycles, 1 << 16, "one wrap");
}

/// A flow split over CPUs (the per-CPU store of kernels without BPF
/// atomics): the merged state tells the same loss as one state that saw
/// every packet, across a sequence wrap, whichever CPU saw what.
#[test]
fn per_cpu_states_merge_to_the_whole_flows_figures() {
    let mut whole = RtpFlowState::default();
    let mut cpus = [RtpFlowState::default(); 3];
    let mut now = 1_000_000_000u64;
    for i in 0..400u32 {
        let seq = 65_300u16.wrapping_add(i as u16);
        if i % 40 == 3 {
            continue; // lost on the wire
        }
        now += 20_000_000;
        let p = pkt(seq, i * 160);
        whole.update(now, &p, 172, 8_000);
        // Bursts migrate between CPUs; the first packets land on CPU 2,
        // the first after the sequence wrap on CPU 0.
        cpus[((i / 37) as usize + 2) % 3].update(now, &p, 172, 8_000);
    }
    cpus[1].local_drops = 4;
    let merged = RtpFlowState::merge_cpus(cpus.iter());
    assert_eq!(merged.cumulative_lost(), whole.cumulative_lost());
    assert_eq!(merged.cumulative_lost(), 10);
    assert_eq!(merged.expected(), whole.expected());
    assert_eq!(merged.extended_max_seq(), whole.extended_max_seq());
    assert_eq!(merged.packets, whole.packets);
    assert_eq!(merged.received(), whole.received());
    assert_eq!(merged.bytes, whole.bytes);
    assert_eq!(merged.first_seen_ns, whole.first_seen_ns);
    assert_eq!(merged.last_seen_ns, whole.last_seen_ns);
    assert_eq!(merged.local_drops, 4);

    // One CPU saw it all: unchanged.
    let alone = [RtpFlowState::default(), whole];
    assert_eq!(RtpFlowState::merge_cpus(alone.iter()), whole);
    // Nothing yet, but drops counted: kept.
    let mut empty = [RtpFlowState::default(); 2];
    empty[0].local_drops = 2;
    assert_eq!(RtpFlowState::merge_cpus(empty.iter()).local_drops, 2);
}

/// The value's bytes from `RTP_FLOW_HOT_LEN` on: what an ordinary packet
/// must leave alone so that it touches one cache line.
fn cold_bytes(state: &RtpFlowState) -> Vec<u8> {
    // SAFETY: RtpFlowState is plain #[repr(C)] integers without padding
    // (its size is the sum of its fields, asserted in common).
    let all = unsafe {
        std::slice::from_raw_parts(
            std::ptr::from_ref(state).cast::<u8>(),
            std::mem::size_of::<RtpFlowState>(),
        )
    };
    all[sipscope_common::RTP_FLOW_HOT_LEN..].to_vec()
}

/// With thousands of flows each update is a cache miss per line touched:
/// in-order packets with jitter, a payload type and clock change, a
/// sequence wrap's neighbours all stay in the value's first line.
#[test]
fn an_ordinary_packet_writes_only_the_hot_cache_line() {
    let mut state = RtpFlowState::default();
    let mut now = 5_000_000_000u64;
    state.update(now, &pkt(100, 0), 172, 8_000);
    let cold = cold_bytes(&state);
    for i in 1..500u32 {
        now += 20_000_000 + u64::from(i % 5) * 1_300_000;
        let mut p = pkt(100 + i as u16, i * 160);
        let clock = if i > 400 {
            p.payload_type = 9;
            16_000
        } else {
            8_000
        };
        state.update(now, &p, 172, clock);
    }
    assert!(state.jitter_q8 > 0 && state.received() == 500);
    assert_eq!(
        cold_bytes(&state),
        cold,
        "a per-packet field is past the hot line"
    );
    // A duplicate is a rare event: it may write the cold line.
    state.update(now, &pkt(599, 0), 172, 16_000);
    assert_eq!(state.duplicates, 1);
    assert_ne!(cold_bytes(&state), cold);
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
fn ipv4_flow_keys_round_trip_through_the_compact_kernel_key() {
    for (src, dst, ifindex, direction) in [
        ("10.77.0.2:12010", "10.77.0.1:12000", 4, Direction::Ingress),
        (
            "192.0.2.1:65535",
            "198.51.100.7:1",
            i32::MAX as u32,
            Direction::Egress,
        ),
    ] {
        let key = flow_key(
            src.parse().unwrap(),
            dst.parse().unwrap(),
            ifindex,
            direction,
        )
        .unwrap();
        let compact = RtpFlowKeyV4::of(&key).expect("an IPv4 key");
        assert_eq!(compact.widen(), key);
    }
    let v6 = flow_key(
        "[fd77::2]:12030".parse().unwrap(),
        "[fd77::1]:12000".parse().unwrap(),
        4,
        Direction::Ingress,
    )
    .unwrap();
    assert_eq!(RtpFlowKeyV4::of(&v6), None, "IPv6 keeps the long key");
}

/// The kernel looks a negotiated clock up once per stream and payload
/// type (RFC 3264 8.3.2: a dynamic type keeps its codec within a session):
/// the flow offers it back for the same SSRC and type only, never a clock
/// from the static table, and never to a clock-less type's packets.
#[test]
fn a_negotiated_clock_is_kept_for_its_stream_and_payload_type_only() {
    let opus = |seq: u16, payload_type: u8, ssrc: u32| RtpPacketFields {
        sequence: seq,
        timestamp: u32::from(seq) * 960,
        ssrc,
        payload_type,
    };
    let mut state = RtpFlowState::default();
    let mut now = 1_000_000_000u64;
    state.update_clocked(now, &opus(1, 111, 7), 80, 48_000, true);
    assert_eq!(state.negotiated_clock(&opus(2, 111, 7)), Some(48_000));
    assert_eq!(state.negotiated_clock(&opus(2, 112, 7)), None, "other type");
    assert_eq!(state.negotiated_clock(&opus(2, 111, 8)), None, "other SSRC");
    // A telephone-event packet (SDP: no clock) takes the type over: the
    // kept clock is not its own.
    now += 20_000_000;
    state.update_clocked(now, &opus(2, 101, 7), 4, 0, true);
    assert_eq!(state.negotiated_clock(&opus(3, 101, 7)), None);
    assert_eq!(state.negotiated_clock(&opus(3, 111, 7)), None);
    now += 20_000_000;
    state.update_clocked(now, &opus(3, 111, 7), 80, 48_000, true);
    assert_eq!(state.negotiated_clock(&opus(4, 111, 7)), Some(48_000));
    // A clock from the static table or the default is looked up again
    // (SDP may still arrive for this port).
    now += 20_000_000;
    state.update(now, &opus(4, 111, 7), 80, 8_000);
    assert_eq!(state.negotiated_clock(&opus(5, 111, 7)), None);
    // A new source starts over.
    let mut state = RtpFlowState::default();
    state.update_clocked(now, &opus(1, 111, 7), 80, 48_000, true);
    state.update_clocked(now + 20_000_000, &opus(9, 111, 8), 80, 16_000, false);
    assert_eq!(state.negotiated_clock(&opus(10, 111, 8)), None);
}
