//! Command-line edge: parses arguments and dispatches to the subcommands.
//! Library code returns `thiserror` errors; here they become `anyhow`
//! errors with context for the user.

mod analysis_args;
mod analyze;
mod config;
mod console_choice;
mod drop_lines;
mod metrics_endpoint;
mod pcap_args;
mod readiness;
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

// Parsed once per process: the size of the `run` variant costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Capture live on one or more interfaces (needs root, or CAP_BPF CAP_NET_ADMIN
    /// CAP_PERFMON; all but those later steps need are dropped once attached).
    Run(run::RunArgs),
    /// Analyse pcap/pcapng capture files with the same pipeline as live capture.
    Analyze(analyze::AnalyzeArgs),
    /// The configuration of `run`: file, environment and flags (docs/config.md).
    #[command(subcommand)]
    Config(config::check::ConfigCommand),
    /// Write the manual pages (sipscope.1 and one per subcommand) into DIR;
    /// `cargo xtask package` puts them in the Debian package.
    #[command(hide = true)]
    Man {
        #[arg(value_name = "DIR")]
        dir: std::path::PathBuf,
    },
}

pub fn main() -> ExitCode {
    let argv: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let cli = Cli::parse_from(&argv);
    let result = match cli.command {
        Command::Run(_) => run_with_config(&argv),
        Command::Analyze(args) => {
            init_logger(None);
            analyze::main(args)
        }
        Command::Config(command) => {
            init_logger(None);
            config::check::main(command)
        }
        Command::Man { dir } => {
            init_logger(None);
            man_pages(&dir)
        }
    };
    match result {
        Ok(code) => code,
        Err(err) => {
            eprintln!("sipscope: {}", describe(&err));
            ExitCode::FAILURE
        }
    }
}

/// `sipscope.1` and `sipscope-SUB.1` for each visible subcommand, from
/// the same clap definitions as `--help` (so they never disagree).
fn man_pages(dir: &std::path::Path) -> anyhow::Result<ExitCode> {
    use anyhow::Context as _;
    use clap::CommandFactory as _;
    let top = Cli::command();
    let mut pages = vec![("sipscope".to_owned(), top.clone())];
    for sub in top.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = format!("sipscope-{}", sub.get_name());
        pages.push((name.clone(), sub.clone().bin_name(name)));
    }
    for (name, cmd) in pages {
        let path = dir.join(format!("{name}.1"));
        let mut out = Vec::new();
        clap_mangen::Man::new(cmd.version(env!("CARGO_PKG_VERSION")))
            .title(name.as_str())
            .render(&mut out)
            .with_context(|| format!("rendering {name}.1"))?;
        std::fs::write(&path, out).with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

/// `run` read again with the file and SIPSCOPE_* environment, from the
/// subcommand on (the top level has no options of its own); the logger
/// follows the resolved settings (the file may choose the log format).
fn run_with_config(argv: &[std::ffi::OsString]) -> anyhow::Result<ExitCode> {
    let at = argv.iter().position(|a| a == "run").unwrap_or(1);
    let run_argv = argv[at..].to_vec();
    let resolved = config::resolve(&run_argv, &|name| std::env::var(name).ok());
    init_logger(resolved.as_ref().ok().map(|r| &r.args));
    run::main(resolved?, run_argv)
}

/// The agent's own log lines; under a service manager (`run`) they take
/// the events' format, so one parser reads all.
fn init_logger(run: Option<&run::RunArgs>) {
    let mut logger =
        env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info"));
    if let Some(format) = run
        .and_then(|args| args.output().ok())
        .and_then(|output| output.log_format())
    {
        logger.format(move |buf, record| {
            use std::io::Write as _;
            let level = match record.level() {
                log::Level::Error => "error",
                log::Level::Warn => "warn",
                log::Level::Info => "info",
                log::Level::Debug | log::Level::Trace => "debug",
            };
            let line = sipscope::export::service_log::LogLine::now(level, "log")
                .field("target", record.target())
                .field("message", record.args().to_string());
            writeln!(buf, "{}", line.render(format))
        });
    }
    logger.init();
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
