//! Command-line edge: parses arguments and dispatches to the subcommands.
//! Library code returns `thiserror` errors; here they become `anyhow`
//! errors with context for the user.

mod analysis_args;
mod analyze;
mod config;
mod drop_lines;
mod metrics_endpoint;
mod records;
mod reloader;
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
    /// The configuration of `run`: file, environment and flags (docs/config.md).
    #[command(subcommand)]
    Config(config::check::ConfigCommand),
}

pub fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Cli::parse_from(&argv);
    let result = match cli.command {
        // Read again with the file and SIPSCOPE_* environment, from the
        // subcommand on (the top level has no options of its own).
        Command::Run(_) => {
            let at = argv.iter().position(|a| a == "run").unwrap_or(1);
            let run_argv = argv[at..].to_vec();
            config::resolve(&run_argv, &|name| std::env::var(name).ok())
                .map_err(anyhow::Error::new)
                .and_then(|resolved| run::main(resolved, run_argv))
        }
        Command::Analyze(args) => analyze::main(args),
        Command::Config(command) => config::check::main(command),
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sipscope: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// An error and its causes on one line, each said once: library errors
/// put their source in their own message (`cannot open X: <os error>`),
/// so a cause whose text is already there is not repeated.
fn describe(err: &anyhow::Error) -> String {
    let mut line = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if line.contains(&text) {
            continue;
        }
        if !line.is_empty() {
            line.push_str(": ");
        }
        line.push_str(&text);
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cause_already_in_the_message_is_said_once() {
        let io = std::io::Error::from_raw_os_error(21);
        let lib = sipscope::capture::file::FileError::Io {
            path: "/tmp".into(),
            packets: 0,
            source: io,
        };
        let err = anyhow::Error::new(lib).context("cannot analyse /tmp");
        assert_eq!(
            describe(&err),
            "cannot analyse /tmp: /tmp: read error after 0 packets: Is a directory (os error 21)"
        );
        // A cause not in the message is still shown.
        let err = anyhow::anyhow!("disk full").context("writing output");
        assert_eq!(describe(&err), "writing output: disk full");
    }

    /// clap's own checks (unique argument ids across the flattened OTLP,
    /// HEP and analysis flags), which otherwise fail only at run time.
    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory as _;
        Cli::command().debug_assert();
    }

    #[test]
    fn core_queue_of_zero_and_a_repeated_interface_are_refused_before_capture() {
        let err = Cli::try_parse_from(["sipscope", "run", "-i", "lo", "--core-queue", "0"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("must be at least 1"), "{err}");
        assert!(Cli::try_parse_from(["sipscope", "run", "-i", "lo", "--core-queue", "1"]).is_ok());
        let argv: Vec<std::ffi::OsString> = ["run", "-i", "lo", "-i", "eth0", "-i", "lo"]
            .map(Into::into)
            .to_vec();
        let resolved = config::resolve(&argv, &|_| None).unwrap();
        let err = run::preflight(&resolved.args).unwrap_err().to_string();
        assert_eq!(err, "--iface lo is given twice; name each interface once");
    }
}
