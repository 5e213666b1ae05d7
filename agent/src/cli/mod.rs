//! Command-line edge: parses arguments and dispatches to the subcommands.
//! Library code returns `thiserror` errors; here they become `anyhow`
//! errors with context for the user.

mod analysis_args;
mod analyze;
mod drop_lines;
mod rtp_summary;
mod run;
mod telemetry;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "sipscope",
    version,
    about = "SIP/RTP observability from the kernel up"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Capture live on one or more interfaces (needs root or CAP_BPF+CAP_NET_ADMIN).
    Run(run::RunArgs),
    /// Analyse pcap/pcapng capture files with the same pipeline as live capture.
    Analyze(analyze::AnalyzeArgs),
}

pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(args) => run::main(args),
        Command::Analyze(args) => analyze::main(args),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sipscope: {err:#}");
            ExitCode::FAILURE
        }
    }
}
