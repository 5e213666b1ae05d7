//! The packet clock: the only time the analysis core knows (DESIGN: "a
//! pure core with async edges"). Live capture converts the kernel's ktime
//! to it; files carry it.

use std::fmt;

/// Capture time on the packet clock, in nanoseconds since the Unix epoch.
///
/// Live capture converts the kernel's monotonic `ktime` to wall-clock time
/// with an offset taken at start-up; files carry it directly. The analysis
/// core never reads the system clock.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct Timestamp(pub u64);

impl Timestamp {
    pub const fn from_nanos(ns: u64) -> Self {
        Self(ns)
    }

    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// `self - earlier`, saturating at zero.
    pub const fn since(self, earlier: Timestamp) -> std::time::Duration {
        std::time::Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl std::ops::Add<std::time::Duration> for Timestamp {
    type Output = Timestamp;

    /// Saturating: the packet clock never wraps.
    fn add(self, d: std::time::Duration) -> Timestamp {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Timestamp(self.0.saturating_add(ns))
    }
}

impl fmt::Display for Timestamp {
    /// UTC, `HH:MM:SS.mmmmmm`: the format of a call-flow line.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let secs = self.0 / 1_000_000_000;
        let micros = (self.0 % 1_000_000_000) / 1_000;
        let day = secs % 86_400;
        write!(
            f,
            "{:02}:{:02}:{:02}.{:06}",
            day / 3600,
            (day / 60) % 60,
            day % 60,
            micros
        )
    }
}
