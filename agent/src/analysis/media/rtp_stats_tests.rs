use super::*;
use sipscope_common::ticks_q4;

const NANOS_PER_SEC: u64 = 1_000_000_000;

const MS: u64 = 1_000_000;

fn header(seq: u16, ts: u32) -> RtpHeader {
    RtpHeader {
        version: 2,
        padding: false,
        extension: false,
        csrc_count: 0,
        marker: false,
        payload_type: 8,
        sequence: seq,
        timestamp: ts,
        ssrc: 0x1234,
        header_len: 12,
        payload_len: 160,
    }
}

/// Feeds `(seq)` at 20 ms spacing with matching timestamps.
fn feed_seqs(seqs: &[u16]) -> (RtpStreamStats, Vec<SeqVerdict>) {
    let mut s = RtpStreamStats::new();
    let verdicts = seqs
        .iter()
        .enumerate()
        .map(|(i, &seq)| {
            let ts = u32::from(seq).wrapping_mul(160);
            s.update(
                Timestamp(1_000 * MS + i as u64 * 20 * MS),
                &header(seq, ts),
                172,
                8000,
            )
        })
        .collect();
    (s, verdicts)
}

#[test]
fn in_order_stream_has_no_loss() {
    let seqs: Vec<u16> = (100..200).collect();
    let (s, _) = feed_seqs(&seqs);
    assert_eq!(
        (s.expected(), s.received(), s.cumulative_lost()),
        (100, 100, 0)
    );
    assert_eq!((s.packets(), s.bytes()), (100, 17_200));
    assert_eq!(s.jitter_q8(), 0, "perfectly paced stream has zero jitter");
}

#[test]
fn sequence_wraps_around_into_the_next_cycle() {
    let seqs: Vec<u16> = (65530..=65535).chain(0..=5).collect();
    let (s, v) = feed_seqs(&seqs);
    assert!(v.iter().all(|&v| v == SeqVerdict::InOrder));
    assert_eq!(s.extended_max_seq(), 65536 + 5);
    assert_eq!(s.expected(), 12);
    assert_eq!(s.cumulative_lost(), 0);
}

#[test]
fn gaps_count_as_lost_including_across_the_wrap() {
    let (s, _) = feed_seqs(&[65533, 65534, 1, 2]);
    // 65535 and 0 are missing.
    assert_eq!((s.expected(), s.cumulative_lost()), (6, 2));
    assert!((s.loss_percent() - 100.0 * 2.0 / 6.0).abs() < 1e-9);
}

#[test]
fn reordered_packet_is_not_lost_and_is_counted() {
    let (s, v) = feed_seqs(&[1, 2, 4, 3, 5]);
    assert_eq!(v[3], SeqVerdict::Reordered);
    assert_eq!(
        (s.reordered(), s.duplicates(), s.cumulative_lost()),
        (1, 0, 0)
    );
}

#[test]
fn duplicates_are_received_twice_so_loss_goes_negative_as_in_a3() {
    let (s, v) = feed_seqs(&[1, 2, 2, 3, 4, 3]);
    assert_eq!(v[2], SeqVerdict::Duplicate, "repeat of the highest");
    assert_eq!(v[5], SeqVerdict::Duplicate, "repeat of an older one");
    assert_eq!(s.duplicates(), 2);
    assert_eq!((s.expected(), s.received()), (4, 6));
    assert_eq!(s.cumulative_lost(), -2);
    assert_eq!(s.loss_percent(), 0.0);
}

#[test]
fn reordered_then_duplicated_is_seen_as_duplicate() {
    let (s, v) = feed_seqs(&[10, 11, 13, 12, 12]);
    assert_eq!(v[3], SeqVerdict::Reordered);
    assert_eq!(v[4], SeqVerdict::Duplicate);
    assert_eq!((s.reordered(), s.duplicates()), (1, 1));
}

#[test]
fn large_jump_is_rejected_once_then_restarts_the_sequence() {
    let (s, v) = feed_seqs(&[1, 2, 10_000, 10_001, 10_002]);
    assert_eq!(v[2], SeqVerdict::Rejected);
    assert_eq!(v[3], SeqVerdict::Restarted);
    assert_eq!((s.rejected(), s.restarts()), (1, 1));
    // A.1 re-sync: statistics start again from 10_001.
    assert_eq!((s.expected(), s.received(), s.cumulative_lost()), (2, 2, 0));
    assert_eq!(s.packets(), 5, "raw packet count keeps everything");
}

#[test]
fn late_packet_within_misorder_is_reordered_beyond_is_rejected() {
    let seqs: Vec<u16> = (0..=200).collect();
    let (mut s, _) = feed_seqs(&seqs);
    let late = s.update(Timestamp(10_000 * MS), &header(120, 120 * 160), 172, 8000);
    assert_eq!(
        late,
        SeqVerdict::Reordered,
        "80 behind: late, outside the dup window"
    );
    let stale = s.update(Timestamp(10_020 * MS), &header(50, 50 * 160), 172, 8000);
    assert_eq!(
        stale,
        SeqVerdict::Rejected,
        "150 behind is more than MAX_MISORDER"
    );
    assert_eq!(
        (s.packets(), s.received()),
        (203, 202),
        "the rejected packet is counted but not received"
    );
}

#[test]
fn ssrc_change_restarts_the_source() {
    let (mut s, _) = feed_seqs(&[1, 2, 3]);
    let mut h = header(5000, 0);
    h.ssrc = 0x9999;
    s.update(Timestamp(5_000 * MS), &h, 172, 8000);
    assert_eq!(s.ssrc(), 0x9999);
    assert_eq!((s.packets(), s.expected(), s.ssrc_changes()), (1, 1, 1));
}

#[test]
fn interval_fraction_lost_is_q8_as_in_a3() {
    let seqs: Vec<u16> = (0..10).filter(|&s| s != 4).collect();
    let (mut s, _) = feed_seqs(&seqs);
    assert_eq!(s.take_interval(), (10, 1, 25), "1/10 × 256 = 25");
    let (mut s2, _) = feed_seqs(&[0, 1, 2]);
    s2.take_interval();
    assert_eq!(s2.take_interval(), (0, 0, 0), "nothing new since");
}

#[test]
fn jitter_matches_hand_computed_rfc3550_values() {
    // 8 kHz, 20 ms packets; the third arrives 10 ms late, the fourth on time.
    let mut s = RtpStreamStats::new();
    let t0 = 7 * 1_000 * MS;
    s.update(Timestamp(t0), &header(0, 0), 172, 8000);
    s.update(Timestamp(t0 + 20 * MS), &header(1, 160), 172, 8000);
    assert_eq!(s.jitter_q8(), 0);
    s.update(Timestamp(t0 + 50 * MS), &header(2, 320), 172, 8000);
    // D = 10 ms = 80 ts units = 1280 in Q4; J = 0 + 1280 - ((0 + 8) >> 4).
    assert_eq!(s.jitter_q8(), 1280);
    assert_eq!(s.jitter_rtp_units(), 5, "80/16 timestamp units");
    assert!((s.jitter_ms() - 0.625).abs() < 1e-9);
    s.update(Timestamp(t0 + 60 * MS), &header(3, 480), 172, 8000);
    // J = 1280 + 1280 - ((1280 + 8) >> 4) = 2480; float RFC: 0.625 + (10 - 0.625)/16.
    assert_eq!(s.jitter_q8(), 2480);
    assert!((s.jitter_ms() - 1.2109375).abs() < 1e-9);
    assert!((s.max_jitter_ms() - 1.2109375).abs() < 1e-9);
    // Mean over the three updates: (0 + 0.625 + 1.2109375) / 3.
    assert!((s.mean_jitter_ms() - (0.625 + 1.2109375) / 3.0).abs() < 1e-9);
}

#[test]
fn fixed_point_jitter_tracks_the_floating_point_rfc_formula() {
    // Pseudo-random arrival noise (LCG, deterministic), 8 kHz and 48 kHz.
    for clock in [8000u32, 48_000] {
        let mut s = RtpStreamStats::new();
        let mut seed = 12345u64;
        let (mut j, mut prev_transit) = (0f64, None::<f64>);
        let step = u64::from(clock) / 50;
        for i in 0..2000u64 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let noise_us = (seed >> 33) % 15_000;
            let arrival_ns = 3_000_000_000 + i * 20 * MS + noise_us * 1000;
            let ts = (i * step) as u32;
            s.update(Timestamp(arrival_ns), &header(i as u16, ts), 172, clock);
            let arrival_units = (arrival_ns - 3_000_000_000) as f64 * f64::from(clock) / 1e9;
            let transit = arrival_units - f64::from(ts);
            if let Some(p) = prev_transit {
                j += ((transit - p).abs() - j) / 16.0;
            }
            prev_transit = Some(transit);
        }
        let float_ms = j * 1000.0 / f64::from(clock);
        // Q4 truncation of arrival is at most 1/16 unit per sample.
        let bound_ms = 1000.0 / (16.0 * f64::from(clock)) * 2.0;
        assert!(
            (s.jitter_ms() - float_ms).abs() < bound_ms,
            "clock {clock}: fixed {} vs float {float_ms}",
            s.jitter_ms()
        );
    }
}

#[test]
fn timestamp_jumps_cap_the_jitter_step_so_32_bits_hold_it() {
    // Every packet jumps half the timestamp space (|D| = 2^31 in Q4): far
    // beyond MAX_TRANSIT_STEP_Q4, so each step counts as the cap.
    let mut s = RtpStreamStats::new();
    for i in 0..1_000u32 {
        let ts = if i % 2 == 0 { 0 } else { 1 << 27 };
        s.update(
            Timestamp(u64::from(i) * 20 * MS),
            &header(i as u16, ts),
            172,
            8000,
        );
    }
    let cap = u64::from(sipscope_common::MAX_TRANSIT_STEP_Q4);
    // The estimate converges to 16 x the step and never passes 2^31.
    assert!(s.jitter_q8() <= 1 << 31, "{}", s.jitter_q8());
    assert!(
        s.jitter_q8() >= 15 * cap,
        "{} against the cap {cap}",
        s.jitter_q8()
    );
    assert_eq!(s.jitter_rtp_units(), (s.jitter_q8() >> 8) as u32);
}

#[test]
fn unknown_clock_counts_packets_but_leaves_jitter_alone() {
    let mut s = RtpStreamStats::new();
    for i in 0..10u16 {
        // Irregular arrival would produce jitter if a clock were known.
        s.update(Timestamp(u64::from(i) * 37 * MS), &header(i, 0), 20, 0);
    }
    assert_eq!((s.received(), s.jitter_q8(), s.clock_rate()), (10, 0, 0));
    assert_eq!(s.mean_jitter_ms(), 0.0);
}

#[test]
fn arrival_ticks_do_not_overflow_for_long_flows() {
    // One year into a flow at 90 kHz: the split seconds/remainder form keeps
    // intermediates small; the result is the wrapped Q4 tick count.
    let year_ns = 365 * 86_400 * NANOS_PER_SEC + 123_456_789;
    let expect = ((u128::from(year_ns) * 90_000 * 16 / 1_000_000_000) & 0xffff_ffff) as u32;
    assert_eq!(ticks_q4(year_ns, 90_000), expect);
    assert_eq!(ticks_q4(20 * MS, 8000), 160 * 16);
}

proptest::proptest! {
    /// The split seconds/remainder arrival equals the exact 128-bit
    /// computation for any delay and supported clock.
    #[test]
    fn arrival_ticks_are_exact(delta_ns: u64, clock_rate in 1u32..=(1 << 20)) {
        let exact = u128::from(delta_ns) * u128::from(clock_rate) * 16 / 1_000_000_000;
        proptest::prop_assert_eq!(ticks_q4(delta_ns, clock_rate), exact as u32);
    }

    /// Any packet order, timing and clock: no panic, and the counters stay
    /// consistent with each other.
    #[test]
    fn arbitrary_packet_sequences_keep_counters_consistent(
        packets in proptest::collection::vec(
            (proptest::num::u16::ANY, proptest::num::u32::ANY, 0u64..10_000_000_000, proptest::sample::select(vec![0u32, 8000, 48_000, 90_000, u32::MAX])),
            1..300,
        )
    ) {
        let mut s = RtpStreamStats::new();
        let mut t = 0u64;
        for (seq, ts, gap, clock) in packets {
            t = t.saturating_add(gap);
            s.update(Timestamp(t), &header(seq, ts), 172, clock);
        }
        proptest::prop_assert!(u64::from(s.received()) + s.rejected() <= s.packets());
        proptest::prop_assert!(s.duplicates() + s.reordered() + s.rejected() <= s.packets());
        proptest::prop_assert!(s.max_jitter_ms() >= s.mean_jitter_ms() - 1e-9);
        proptest::prop_assert!(s.jitter_ms().is_finite());
    }
}
