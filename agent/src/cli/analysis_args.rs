//! Analysis options shared by `run` and `analyze`: the same findings live
//! and offline need the same knobs.

use std::{path::PathBuf, sync::Arc};

use anyhow::Context as _;
use sipscope::{analysis::credentials::CredentialStore, pipeline::PipelineConfig};

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
}

impl AnalysisArgs {
    /// Applies the options to `config`; refuses an unreadable or
    /// group/other-readable credentials file with what to do about it.
    pub fn apply(&self, config: &mut PipelineConfig) -> anyhow::Result<()> {
        config.registration.challenge_loop_after = self.challenge_loop_after;
        if let Some(path) = &self.credentials {
            let store = CredentialStore::load(path)
                .with_context(|| format!("cannot use the credentials file {}", path.display()))?;
            config.registration.credentials = Some(Arc::new(store));
        }
        Ok(())
    }
}
