//! `sipscope analyze FILE...`: offline analysis of capture files.

use std::process::ExitCode;

#[derive(clap::Args, Debug)]
pub struct AnalyzeArgs {}

pub fn main(_args: AnalyzeArgs) -> anyhow::Result<ExitCode> {
    anyhow::bail!("offline analysis is not implemented yet")
}
