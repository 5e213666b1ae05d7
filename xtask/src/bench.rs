//! `cargo xtask bench NAME`: each benchmark is a `harness = false` bench of
//! the agent crate that measures its own baseline in the same run and
//! prints ratios (these machines are noisy; absolute times mean little).

use anyhow::{Result, bail};

use crate::cmd;

/// Benchmarks in the order `all` runs them.
const BENCHES: &[&str] = &[
    "kernel",
    "drops",
    "pipeline",
    "export",
    "media",
    "live",
    "sipp",
    "framing",
    "prometheus",
    "tls",
];

pub fn run(which: &str) -> Result<()> {
    let selected: Vec<&str> = match which {
        "all" => BENCHES.to_vec(),
        name if BENCHES.contains(&name) => vec![name],
        other => bail!(
            "unknown benchmark `{other}`; choose one of: all, {}",
            BENCHES.join(", ")
        ),
    };
    for name in selected {
        cmd::cargo_privileged(&["bench", "--package", "sipscope", "--bench", name])?;
    }
    Ok(())
}
