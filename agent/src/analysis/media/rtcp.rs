//! RTCP reception report blocks (RFC 3550 section 6.4): what the far end
//! says it received of a source (fraction lost, cumulative lost, jitter)
//! and, with LSR/DLSR, the round-trip time (section 6.4.1).
//!
//! Only SR (200) and RR (201) carry report blocks; a compound packet
//! (section 6.1) is walked packet by packet, every length checked. Written
//! here rather than taken from webrtc-rs' `rtcp`, which brings
//! `webrtc-util` and its own runtime stack for twenty lines of parsing.

use crate::time::Timestamp;

/// One report block: the reporter's view of source `ssrc`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReceptionReport {
    /// SSRC of the packet's sender (who received and reports).
    pub reporter: u32,
    /// The source reported on.
    pub ssrc: u32,
    /// Fraction lost since the previous report, /256.
    pub fraction_lost: u8,
    /// Cumulative lost (24-bit signed).
    pub cumulative_lost: i32,
    pub highest_seq: u32,
    /// Interarrival jitter in RTP timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the NTP time of the last SR received (0: none).
    pub lsr: u32,
    /// Delay since that SR, 1/65536 s.
    pub dlsr: u32,
}

impl ReceptionReport {
    pub fn fraction_lost_percent(&self) -> f64 {
        f64::from(self.fraction_lost) * 100.0 / 256.0
    }

    /// RFC 3550 6.4.1 round trip: arrival − LSR − DLSR, when this report
    /// was seen at `arrival` and the reporter had an SR (LSR non-zero).
    /// `None` when absent or implausible (negative, or over a minute: the
    /// capture point is not on the SR sender's path).
    pub fn round_trip(&self, arrival: Timestamp) -> Option<std::time::Duration> {
        if self.lsr == 0 {
            return None;
        }
        let rtt = ntp_middle32(arrival)
            .wrapping_sub(self.lsr)
            .wrapping_sub(self.dlsr);
        let secs = f64::from(rtt) / 65536.0;
        (secs < 60.0).then(|| std::time::Duration::from_secs_f64(secs))
    }
}

/// Seconds from 1900 (NTP era 0) to 1970 (Unix).
const NTP_UNIX_OFFSET: u64 = 2_208_988_800;

/// The middle 32 bits of the NTP timestamp of `t` (RFC 3550 section 4).
fn ntp_middle32(t: Timestamp) -> u32 {
    let ns = t.as_nanos();
    let secs = ns / 1_000_000_000 + NTP_UNIX_OFFSET;
    let frac = ((ns % 1_000_000_000) << 32) / 1_000_000_000;
    (((secs & 0xffff) << 16) | (frac >> 16)) as u32
}

const SR: u8 = 200;
const RR: u8 = 201;

fn be32(b: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_be_bytes(b.get(at..at + 4)?.try_into().ok()?))
}

/// Every report block of a (compound) RTCP packet; empty when it is not
/// RTCP v2 or holds no SR/RR. A truncated packet yields the blocks before
/// the cut.
pub(crate) fn reception_reports(packet: &[u8]) -> Vec<ReceptionReport> {
    let mut out = Vec::new();
    let mut at = 0;
    while let Some(&first) = packet.get(at) {
        let (Some(&pt), Some(words)) = (
            packet.get(at + 1),
            packet
                .get(at + 2..at + 4)
                .map(|w| u16::from_be_bytes([w[0], w[1]])),
        ) else {
            break;
        };
        if first >> 6 != 2 {
            break;
        }
        let len = (usize::from(words) + 1) * 4;
        let Some(body) = packet.get(at..at + len) else {
            break;
        };
        let count = usize::from(first & 0x1f);
        let blocks_at = match pt {
            SR => Some(28),
            RR => Some(8),
            _ => None,
        };
        if let (Some(start), Some(reporter)) = (blocks_at, be32(body, 4)) {
            for i in 0..count {
                let b = start + 24 * i;
                let (Some(ssrc), Some(lost), Some(highest_seq), Some(jitter)) = (
                    be32(body, b),
                    be32(body, b + 4),
                    be32(body, b + 8),
                    be32(body, b + 12),
                ) else {
                    break;
                };
                let (Some(lsr), Some(dlsr)) = (be32(body, b + 16), be32(body, b + 20)) else {
                    break;
                };
                // 24-bit two's complement cumulative lost.
                let cumulative = ((lost & 0x00ff_ffff) << 8) as i32 >> 8;
                out.push(ReceptionReport {
                    reporter,
                    ssrc,
                    fraction_lost: (lost >> 24) as u8,
                    cumulative_lost: cumulative,
                    highest_seq,
                    jitter,
                    lsr,
                    dlsr,
                });
            }
        }
        at += len;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RR from 0xAAAA about 0x1234: 5 % (13/256) lost, 42 cumulative,
    /// jitter 80, LSR/DLSR set; then an SDES that is skipped.
    fn compound(cumulative: i32) -> Vec<u8> {
        let mut p = vec![0x81, RR, 0, 7];
        p.extend_from_slice(&0xAAAAu32.to_be_bytes());
        p.extend_from_slice(&0x1234u32.to_be_bytes());
        p.extend_from_slice(&((13u32 << 24) | (cumulative as u32 & 0xff_ffff)).to_be_bytes());
        p.extend_from_slice(&1000u32.to_be_bytes());
        p.extend_from_slice(&80u32.to_be_bytes());
        p.extend_from_slice(&0x0001_8000u32.to_be_bytes());
        p.extend_from_slice(&0x0000_8000u32.to_be_bytes());
        p.extend_from_slice(&[0x81, 202, 0, 1, 0, 0, 0xaa, 0xaa]);
        p
    }

    #[test]
    fn a_receiver_report_in_a_compound_packet_is_read() {
        let r = reception_reports(&compound(42));
        assert_eq!(r.len(), 1);
        assert_eq!((r[0].reporter, r[0].ssrc), (0xAAAA, 0x1234));
        assert_eq!((r[0].fraction_lost, r[0].cumulative_lost), (13, 42));
        assert!((r[0].fraction_lost_percent() - 5.078).abs() < 0.01);
        assert_eq!((r[0].highest_seq, r[0].jitter), (1000, 80));
        assert_eq!(reception_reports(&compound(-3))[0].cumulative_lost, -3);
    }

    #[test]
    fn round_trip_is_arrival_minus_lsr_minus_dlsr() {
        let mut r = reception_reports(&compound(0))[0];
        // The SR left 0.75 s before this RR arrived, and the reporter held
        // it 0.5 s before answering: the network took 0.25 s both ways.
        let arrival = Timestamp::from_nanos(1_700_000_000_750_000_000);
        let a = ntp_middle32(arrival);
        r.lsr = a.wrapping_sub(3 << 14); // 0.75 s
        r.dlsr = 1 << 15; // 0.5 s
        let rtt = r.round_trip(arrival).unwrap().as_secs_f64();
        assert!((rtt - 0.25).abs() < 1e-4, "{rtt}");
        r.lsr = 0;
        assert_eq!(r.round_trip(arrival), None);
    }

    #[test]
    fn truncated_or_foreign_packets_never_panic() {
        let full = compound(1);
        for cut in 0..full.len() {
            let _ = reception_reports(&full[..cut]);
        }
        assert!(reception_reports(&[0x80, 0, 0, 1, 0, 0, 0, 0]).is_empty());
        assert!(reception_reports(&[0x41, RR, 0, 7]).is_empty(), "version 1");
        assert_eq!(reception_reports(&full[..20]).len(), 0, "block cut short");
    }
}
