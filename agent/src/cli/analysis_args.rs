//! Analysis options shared by `run` and `analyze`: the same findings live
//! and offline need the same knobs.

use std::{path::PathBuf, sync::Arc, time::Duration};

use anyhow::Context as _;
use sipscope::{
    analysis::credentials::CredentialStore, memory_budget::MemoryBudget, pipeline::PipelineConfig,
};

#[derive(clap::Args, Debug)]
pub struct AnalysisArgs {
    /// Known passwords (TOML, chmod 600) to say definitively whether a
    /// client's digest response was made with the right password. The
    /// secrets never appear in any output.
    #[arg(long, value_name = "FILE")]
    credentials: Option<PathBuf>,
    /// Raise auth.challenge_loop after this many consecutive rejections
    /// of the same credentials.
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..))]
    challenge_loop_after: u32,
    /// Seconds after a call is answered by which RTP must flow both ways,
    /// else media.no_rtp / media.one_way.
    #[arg(long = "media-grace", value_name = "SECS", default_value_t = 5.0)]
    media_grace: f64,
    /// media.quality when a direction loses more than this many percent.
    #[arg(long = "max-loss", value_name = "PERCENT", default_value_t = 1.0)]
    max_loss: f64,
    /// media.quality when the RFC 3550 jitter exceeds this many ms.
    #[arg(long = "max-jitter", value_name = "MS", default_value_t = 30.0)]
    max_jitter: f64,
    /// media.quality when the E-model MOS estimate (ITU-T G.107) is lower.
    #[arg(long = "min-mos", value_name = "MOS", default_value_t = 3.6)]
    min_mos: f64,
    /// Memory for the tables that grow with traffic (transactions,
    /// registrations, calls, TCP streams, ...), in MB: their caps follow
    /// from it, and what does not fit is evicted and counted.
    #[arg(long = "memory-budget", value_name = "MB", default_value_t = MemoryBudget::DEFAULT_MB as u32,
          value_parser = clap::value_parser!(u32).range(MemoryBudget::MIN_MB as i64..))]
    memory_budget: u32,
}

impl AnalysisArgs {
    pub fn memory_budget(&self) -> MemoryBudget {
        MemoryBudget::new(self.memory_budget as usize)
    }

    /// Applies the options to `config`; refuses an unreadable or
    /// group/other-readable credentials file with what to do about it.
    pub fn apply(&self, config: &mut PipelineConfig) -> anyhow::Result<()> {
        self.memory_budget().apply(config);
        config.registration.challenge_loop_after = self.challenge_loop_after;
        let checks = &mut config.calls.checks;
        checks.grace = Duration::try_from_secs_f64(self.media_grace)
            .ok()
            .with_context(|| {
                format!(
                    "--media-grace must be a number of seconds >= 0, got {}",
                    self.media_grace
                )
            })?;
        for (name, v) in [
            ("max-loss", self.max_loss),
            ("max-jitter", self.max_jitter),
            ("min-mos", self.min_mos),
        ] {
            anyhow::ensure!(
                v.is_finite() && v >= 0.0,
                "--{name} must be a number >= 0, got {v}"
            );
        }
        checks.thresholds.max_loss_percent = self.max_loss;
        checks.thresholds.max_jitter_ms = self.max_jitter;
        checks.thresholds.min_mos = self.min_mos;
        if let Some(path) = &self.credentials {
            let store = CredentialStore::load(path)
                .with_context(|| format!("cannot use the credentials file {}", path.display()))?;
            config.registration.credentials = Some(Arc::new(store));
        }
        Ok(())
    }
}
