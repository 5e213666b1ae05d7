//! `/healthz`: is the agent doing its job? Healthy when every capture
//! program is attached and the analysis core has made progress recently
//! (its tick, every 500 ms, advanced a heartbeat). Export trouble (an
//! unreachable collector) does not make the agent unhealthy: capture and
//! analysis go on, and the export counters in `/metrics` show the loss.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long the core may go without a heartbeat before the agent reports
/// itself stalled: many ticks, so a busy core is not flapping.
pub const CORE_STALL: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Health {
    started: Instant,
    attached: AtomicBool,
    /// Milliseconds since `started` of the core's last heartbeat, plus one
    /// (0: none yet).
    last_beat_ms: AtomicU64,
    stall: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self::with_stall(CORE_STALL)
    }
}

impl Health {
    pub fn with_stall(stall: Duration) -> Self {
        Self {
            started: Instant::now(),
            attached: AtomicBool::new(false),
            last_beat_ms: AtomicU64::new(0),
            stall,
        }
    }

    /// Every capture program is attached.
    pub fn set_attached(&self, attached: bool) {
        self.attached.store(attached, Ordering::Relaxed);
    }

    /// The core is alive (call on each of its ticks).
    pub fn beat(&self) {
        let ms = self.started.elapsed().as_millis() as u64 + 1;
        self.last_beat_ms.store(ms, Ordering::Relaxed);
    }

    /// `Ok` when healthy, else the reason (served with 503).
    pub fn check(&self) -> Result<(), String> {
        if !self.attached.load(Ordering::Relaxed) {
            return Err("capture programs not attached".into());
        }
        let beat = self.last_beat_ms.load(Ordering::Relaxed);
        let now = self.started.elapsed().as_millis() as u64 + 1;
        let since = Duration::from_millis(now.saturating_sub(beat.max(1)));
        if beat == 0 && since > self.stall {
            return Err(format!(
                "analysis core has not ticked since start ({} s ago)",
                since.as_secs()
            ));
        }
        if beat != 0 && since > self.stall {
            return Err(format!(
                "analysis core stalled: no tick for {} s",
                since.as_secs()
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unhealthy_until_attached_then_healthy_while_the_core_beats() {
        let h = Health::default();
        assert_eq!(h.check(), Err("capture programs not attached".into()));
        h.set_attached(true);
        h.beat();
        assert_eq!(h.check(), Ok(()));
    }

    #[test]
    fn a_core_without_a_beat_past_the_stall_limit_is_reported() {
        let h = Health::with_stall(Duration::ZERO);
        h.set_attached(true);
        h.beat();
        // Any time at all has passed beyond a zero limit once a
        // millisecond ticks over; wait for that without sleeping blind.
        let t = Instant::now();
        while h.check().is_ok() {
            assert!(t.elapsed() < Duration::from_secs(5), "never stalled");
            std::thread::yield_now();
        }
        assert!(
            h.check().unwrap_err().contains("stalled"),
            "{:?}",
            h.check()
        );
    }
}
