//! The kernel's per-CPU counter arrays (capture, drops, RTP), each summed
//! over CPUs by the one [`KernelCounters::read`].

use std::{fmt, marker::PhantomData};

use aya::maps::{MapData, PerCpuArray};
use sipscope_common::{CaptureCounter, CounterSlot, DropCounter, RtpCounter};

use super::LiveError;

/// One per-CPU counter array summed over all CPUs: slot `C` holds
/// `sums[C.index()]`; `N` is the array's size (`C::COUNT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelCounters<C, const N: usize> {
    sums: [u64; N],
    slots: PhantomData<C>,
}

/// The capture programs' counters ([`CaptureCounter`]).
pub type CaptureCounters = KernelCounters<CaptureCounter, { CaptureCounter::COUNT as usize }>;
/// The drop tracer's counters ([`DropCounter`]).
pub type DropCounters = KernelCounters<DropCounter, { DropCounter::COUNT as usize }>;
/// The RTP programs' counters ([`RtpCounter`]; see also `RtpCounters`).
pub(crate) type RtpKernelCounters = KernelCounters<RtpCounter, { RtpCounter::COUNT as usize }>;

impl<C: CounterSlot, const N: usize> Default for KernelCounters<C, N> {
    fn default() -> Self {
        const { assert!(N == C::ALL.len(), "N is the number of slots") };
        Self {
            sums: [0; N],
            slots: PhantomData,
        }
    }
}

impl<C: CounterSlot, const N: usize> KernelCounters<C, N> {
    /// The value of one counter.
    pub fn get(&self, counter: C) -> u64 {
        self.sums[counter.index() as usize]
    }

    /// Sums each slot of `map` over all CPUs (wrapping, as the kernel's
    /// per-CPU counters do).
    pub fn read(map: &PerCpuArray<MapData, u64>) -> Result<Self, LiveError> {
        let mut out = Self::default();
        for &c in C::ALL {
            let per_cpu = map
                .get(&c.index(), 0)
                .map_err(|e| LiveError::kernel(format!("reading counter {}", c.name()), e))?;
            out.sums[c.index() as usize] = per_cpu.iter().copied().fold(0u64, u64::wrapping_add);
        }
        Ok(out)
    }

    #[cfg(test)]
    pub(crate) fn set(&mut self, counter: C, value: u64) {
        self.sums[counter.index() as usize] = value;
    }
}

impl<C: CounterSlot, const N: usize> fmt::Display for KernelCounters<C, N> {
    /// `name=value` pairs separated by spaces (stable, parsed by tests).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, &c) in C::ALL.iter().enumerate() {
            if i > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{}={}", c.name(), self.get(c))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capture_counters_print_as_stable_name_value_pairs() {
        let mut c = CaptureCounters::default();
        c.set(CaptureCounter::SipCaptured, 3);
        c.set(CaptureCounter::RingbufFull, 2);
        assert_eq!(
            c.to_string(),
            "packets_seen=0 sip_captured=3 fragments_forwarded=0 truncated=0 ringbuf_full=2 unparsed=0"
        );
    }

    #[test]
    fn drop_counters_print_as_stable_name_value_pairs() {
        let mut c = DropCounters::default();
        c.set(DropCounter::DropsReported, 2);
        assert_eq!(
            c.to_string(),
            "drops_seen=0 drops_filtered_reason=0 drops_filtered_netns=0 \
             drops_filtered_not_voip=0 drops_reported=2 drop_ringbuf_full=0 drop_unreadable=0 rtp_drops_suppressed=0"
        );
    }
}
