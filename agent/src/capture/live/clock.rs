//! Converts the kernel's `bpf_ktime_get_ns()` (CLOCK_MONOTONIC) to Unix-epoch
//! time for [`Timestamp`](crate::time::Timestamp).

use crate::time::Timestamp;

fn clock_ns(clock: libc::clockid_t) -> i128 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid clock id and out-pointer; cannot fail for these clocks.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    i128::from(ts.tv_sec) * 1_000_000_000 + i128::from(ts.tv_nsec)
}

/// `realtime - monotonic`, taken once at start-up: later wall-clock steps
/// (NTP) do not make capture times jump inside one run.
#[derive(Clone, Copy, Debug)]
pub struct KtimeClock {
    offset_ns: i128,
}

impl KtimeClock {
    /// Samples both clocks a few times and keeps the tightest pair, so a
    /// preemption between the two reads does not skew every timestamp.
    pub fn new() -> Self {
        let mut best: Option<(i128, i128)> = None; // (window, offset)
        for _ in 0..5 {
            let m1 = clock_ns(libc::CLOCK_MONOTONIC);
            let r = clock_ns(libc::CLOCK_REALTIME);
            let m2 = clock_ns(libc::CLOCK_MONOTONIC);
            let window = m2 - m1;
            let offset = r - (m1 + window / 2);
            if best.is_none_or(|(w, _)| window < w) {
                best = Some((window, offset));
            }
        }
        Self {
            offset_ns: best.map_or(0, |(_, o)| o),
        }
    }

    /// The current time on the capture clock: what a packet captured now
    /// would be stamped with. Live mode ticks the pipeline with it so
    /// packet-clock timers fire when traffic stops.
    pub fn now(self) -> Timestamp {
        self.to_timestamp(clock_ns(libc::CLOCK_MONOTONIC).max(0) as u64)
    }

    pub fn to_timestamp(self, ktime_ns: u64) -> Timestamp {
        let ns = i128::from(ktime_ns) + self.offset_ns;
        Timestamp::from_nanos(ns.clamp(0, i128::from(u64::MAX)) as u64)
    }
}

impl Default for KtimeClock {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_in_ktime_maps_to_now_in_wall_clock() {
        let clock = KtimeClock::new();
        let mono = clock_ns(libc::CLOCK_MONOTONIC) as u64;
        let wall = clock_ns(libc::CLOCK_REALTIME) as u64;
        let ts = clock.to_timestamp(mono).as_nanos();
        // Both reads happen within milliseconds of each other.
        assert!(ts.abs_diff(wall) < 50_000_000, "ts {ts} wall {wall}");
    }
}
