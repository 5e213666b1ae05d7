//! The memory budget: one number of megabytes from which the cap of every
//! table that grows with traffic follows, so that an always-on agent keeps
//! to it under any flood (DESIGN: every table bounded, every eviction
//! counted). `--memory-budget MB` on `run` and `analyze`, default
//! [`MemoryBudget::DEFAULT_MB`].
//!
//! Each table gets a share of the budget and holds as many entries as fit
//! at the bytes one entry keeps alive, measured (release build, x86-64)
//! by feeding floods of random Call-IDs through the pipeline with every
//! other table kept tiny and reading the peak RSS: a transaction with its
//! request (an INVITE with SDP is the largest), a registration binding with
//! its open attempt and the transactions it holds, an open request awaiting
//! its answer, a call. A quarter of the budget is left for the process
//! itself, the export queue, the trace builder and output buffers.
//!
//! At 256 MB: 22,369 transactions in flight, 9,151 registration bindings,
//! 6,135 requests awaiting an answer, 3,355 calls, 15 MiB of TCP and 5 MiB
//! of IP fragments being reassembled.

use crate::pipeline::PipelineConfig;

/// Bytes one entry of each table keeps alive (measured, see above).
const TRANSACTION: usize = 3_600;
const BINDING: usize = 4_400;
const OPEN_REQUEST: usize = 3_500;
const INBOUND_BINDING: usize = 900;
const CALL: usize = 4_000;
const RTP_FLOW: usize = 400;
/// A TCP stream's own state, without its buffered bytes.
const TCP_STREAM: usize = 300;

/// Share of the budget per table, in percent.
const TRANSACTIONS: usize = 30;
const BINDINGS: usize = 15;
const OPEN_REQUESTS: usize = 8;
const INBOUND: usize = 5;
const CALLS: usize = 5;
const TCP_BYTES: usize = 6;
const FRAGMENT_BYTES: usize = 2;
const RTP_FLOWS: usize = 2;

/// See the module documentation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MemoryBudget {
    megabytes: usize,
}

impl MemoryBudget {
    /// What an agent on a PBX host may use by default.
    pub const DEFAULT_MB: usize = 256;
    /// Below this the tables would be too small to follow a real exchange.
    pub const MIN_MB: usize = 32;

    pub fn new(megabytes: usize) -> Self {
        MemoryBudget {
            megabytes: megabytes.max(Self::MIN_MB),
        }
    }

    pub fn megabytes(self) -> usize {
        self.megabytes
    }

    /// Entries of `entry` bytes that fit in `percent` of the budget.
    fn entries(self, percent: usize, entry: usize) -> usize {
        (self.bytes(percent) / entry).max(1)
    }

    fn bytes(self, percent: usize) -> usize {
        self.megabytes * (1 << 20) / 100 * percent
    }

    /// Sets the caps of every table of `config` from the budget.
    pub fn apply(self, config: &mut PipelineConfig) {
        config.transactions.max_transactions = self.entries(TRANSACTIONS, TRANSACTION);
        config.registration.max_bindings = self.entries(BINDINGS, BINDING);
        config.reachability.max_open = self.entries(OPEN_REQUESTS, OPEN_REQUEST);
        // The inbound analysis splits its share between the bindings it
        // learnt and the INVITEs to them it follows.
        config.inbound.max_bindings = self.entries(INBOUND * 3 / 5, INBOUND_BINDING);
        config.inbound.max_open = self.entries(INBOUND * 2 / 5, OPEN_REQUEST);
        config.calls.max_calls = self.entries(CALLS, CALL);
        config.calls.observations.max_flows = self.entries(RTP_FLOWS, RTP_FLOW);
        let tcp = &mut config.decoder.tcp;
        tcp.max_total_bytes = self.bytes(TCP_BYTES);
        tcp.max_streams = (tcp.max_total_bytes / 1024).min(self.entries(1, TCP_STREAM));
        tcp.max_stream_bytes = tcp.max_stream_bytes.min(tcp.max_total_bytes / 4);
        tcp.max_message = tcp.max_message.min(tcp.max_stream_bytes);
        config.decoder.frag.max_bytes = self.bytes(FRAGMENT_BYTES);
    }
}

impl Default for MemoryBudget {
    fn default() -> Self {
        MemoryBudget::new(Self::DEFAULT_MB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_budget_gives_the_documented_caps() {
        let mut c = PipelineConfig::default();
        MemoryBudget::default().apply(&mut c);
        assert_eq!(c.transactions.max_transactions, 22_369);
        assert_eq!(c.registration.max_bindings, 9_151);
        assert_eq!(c.reachability.max_open, 6_135);
        assert_eq!(c.calls.max_calls, 3_355);
        assert_eq!(c.decoder.tcp.max_total_bytes, 16_106_124);
        assert_eq!(c.decoder.frag.max_bytes, 5_368_708);
    }

    #[test]
    fn caps_scale_with_the_budget_and_never_reach_zero() {
        let caps = |mb| {
            let mut c = PipelineConfig::default();
            MemoryBudget::new(mb).apply(&mut c);
            c
        };
        let (small, big) = (caps(64), caps(1024));
        assert_eq!(
            big.transactions.max_transactions / small.transactions.max_transactions,
            16
        );
        assert!(big.registration.max_bindings > 15 * small.registration.max_bindings);
        let tiny = caps(0);
        assert_eq!(MemoryBudget::new(0).megabytes(), MemoryBudget::MIN_MB);
        assert!(tiny.transactions.max_transactions > 1_000);
        assert!(tiny.decoder.tcp.max_message >= 64 << 10);
    }
}
