//! A request still unanswered when the capture ends: when is that a
//! finding?
//!
//! An operator runs `tcpdump` for ten seconds; the UA gives up only at
//! Timer B/F (64*T1 = 32 s, RFC 3261 §17.1.1.2, §17.1.2.2). What the
//! capture shows is enough when the sender retransmitted on Timer A/E
//! (0.5, 1, 2, 4 s...) at least [`MIN_SENDS`] times over at least
//! [`MIN_SPAN`] with no response at all: a reachable peer answers a
//! retransmitted request long before (even a 100 Trying stops Timer A).
//! A request sent once or twice just before the end may still be
//! answered, so it is not judged. The reachability and inbound analyses
//! share this rule so the transaction table and the findings agree.

use std::time::Duration;

use crate::time::Timestamp;

/// First send plus three retransmissions (+0, +0.5, +1.5, +3.5 s).
pub const MIN_SENDS: usize = 4;
/// The fourth send of Timer A/E comes 3.5 s after the first.
pub const MIN_SPAN: Duration = Duration::from_millis(3_000);

/// The client's own give-up time, quoted in the finding.
pub const CLIENT_TIMEOUT: Duration = Duration::from_secs(32);

/// True when a request sent at `sends` (and `dropped` more not kept) and
/// never answered is clear evidence of a dead path, though the capture
/// ended before the client gave up.
pub fn judged_at_end_of_capture(sends: &[Timestamp], dropped: u32) -> bool {
    let (Some(first), Some(last)) = (sends.first(), sends.last()) else {
        return false;
    };
    sends.len() + dropped as usize >= MIN_SENDS && last.since(*first) >= MIN_SPAN
}

/// The clause the findings add: `k` sends over `t` seconds, and that the
/// capture ended before the client's Timer B/F.
pub fn capture_ended_clause(sends: &[Timestamp], dropped: u32) -> String {
    let span = match (sends.first(), sends.last()) {
        (Some(f), Some(l)) => l.since(*f).as_secs_f64(),
        _ => 0.0,
    };
    format!(
        "sent {} time(s) over {span:.1} s with no response at all; the capture ended before \
         the client gave up (Timer B/F, {} s)",
        sends.len() + dropped as usize,
        CLIENT_TIMEOUT.as_secs()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(ms: &[u64]) -> Vec<Timestamp> {
        ms.iter().map(|m| Timestamp(m * 1_000_000)).collect()
    }

    #[test]
    fn retransmitted_on_timer_e_for_seconds_is_judged_a_late_single_send_is_not() {
        assert!(judged_at_end_of_capture(&at(&[0, 500, 1500, 3500]), 0));
        assert!(judged_at_end_of_capture(
            &at(&[0, 500, 1500, 3500, 7500]),
            0
        ));
        assert!(!judged_at_end_of_capture(&at(&[0]), 0));
        assert!(!judged_at_end_of_capture(&at(&[0, 500, 1500]), 0));
        // Four copies in a burst are not a retransmission schedule.
        assert!(!judged_at_end_of_capture(&at(&[0, 10, 20, 30]), 0));
        let clause = capture_ended_clause(&at(&[0, 500, 1500, 3500, 7500]), 0);
        assert!(clause.contains("sent 5 time(s) over 7.5 s"), "{clause}");
        assert!(clause.contains("capture ended before the client gave up"));
    }
}
