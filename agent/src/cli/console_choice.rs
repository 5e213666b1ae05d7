//! `run --console` and `--log-format`: the call flow for people at a
//! terminal, or log lines for a service manager (docs/service.md).

use std::io::IsTerminal as _;

use sipscope::{export::service_log::LogFormat, session::Format};

/// `--console`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsoleChoice {
    /// `events` when stdout is not a terminal and a service manager started
    /// the agent (systemd sets INVOCATION_ID and JOURNAL_STREAM), else `flow`.
    #[default]
    Auto,
    /// A line per SIP message, the calls up every 10 s, tables at exit.
    Flow,
    /// One line per finding and per call or registration state change;
    /// nothing periodic.
    Events,
}

/// What `run` prints on stdout, and how the agent's own log lines
/// (stderr) are formatted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Output {
    /// `--json`: every record, one JSON object per line.
    Json,
    Flow,
    Events(LogFormat),
}

impl Output {
    pub fn format(self) -> Format {
        match self {
            Self::Json => Format::Json,
            Self::Flow => Format::Live,
            Self::Events(f) => Format::Events(f),
        }
    }

    /// How the agent's own log lines are written (stderr): as the events
    /// when the console is events, env_logger's default otherwise.
    pub fn log_format(self) -> Option<LogFormat> {
        match self {
            Self::Events(f) => Some(f),
            _ => None,
        }
    }
}

/// Where the agent runs, as far as the choice goes.
pub struct Surroundings {
    pub stdout_is_terminal: bool,
    pub service_manager: bool,
}

impl Surroundings {
    pub fn of_this_process() -> Self {
        Self {
            stdout_is_terminal: std::io::stdout().is_terminal(),
            service_manager: ["INVOCATION_ID", "JOURNAL_STREAM"]
                .iter()
                .any(|v| std::env::var_os(v).is_some_and(|s| !s.is_empty())),
        }
    }
}

/// The output for the flags given, in these surroundings.
pub fn choose(
    json: bool,
    console: ConsoleChoice,
    log_format: Option<LogFormat>,
    here: &Surroundings,
) -> Result<Output, String> {
    if json {
        // clap refuses --console/--log-format with --json.
        return Ok(Output::Json);
    }
    match (console, log_format) {
        (ConsoleChoice::Flow, Some(LogFormat::Json)) => Err(
            "--log-format json formats the events console; the call flow (--console flow) \
             is text. Use --console events, or --json for every record as JSON"
                .into(),
        ),
        (ConsoleChoice::Flow, _) => Ok(Output::Flow),
        (ConsoleChoice::Events, f) => Ok(Output::Events(f.unwrap_or_default())),
        (ConsoleChoice::Auto, Some(LogFormat::Json)) => Ok(Output::Events(LogFormat::Json)),
        (ConsoleChoice::Auto, f) => {
            if !here.stdout_is_terminal && here.service_manager {
                Ok(Output::Events(f.unwrap_or_default()))
            } else {
                Ok(Output::Flow)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TERMINAL: Surroundings = Surroundings {
        stdout_is_terminal: true,
        service_manager: false,
    };
    const SYSTEMD: Surroundings = Surroundings {
        stdout_is_terminal: false,
        service_manager: true,
    };
    const PIPE: Surroundings = Surroundings {
        stdout_is_terminal: false,
        service_manager: false,
    };

    #[test]
    fn auto_is_the_flow_at_a_terminal_or_in_a_pipe_and_events_under_systemd() {
        use ConsoleChoice::*;
        assert_eq!(choose(false, Auto, None, &TERMINAL), Ok(Output::Flow));
        assert_eq!(choose(false, Auto, None, &PIPE), Ok(Output::Flow));
        assert_eq!(
            choose(false, Auto, None, &SYSTEMD),
            Ok(Output::Events(LogFormat::Text))
        );
        // Asked for explicitly, whatever the surroundings.
        assert_eq!(choose(false, Flow, None, &SYSTEMD), Ok(Output::Flow));
        assert_eq!(
            choose(false, Events, None, &TERMINAL),
            Ok(Output::Events(LogFormat::Text))
        );
        // JSON log lines are events; the call flow has no JSON form.
        assert_eq!(
            choose(false, Auto, Some(LogFormat::Json), &TERMINAL),
            Ok(Output::Events(LogFormat::Json))
        );
        let err = choose(false, Flow, Some(LogFormat::Json), &PIPE).unwrap_err();
        assert!(err.contains("Use --console events"), "{err}");
        assert_eq!(choose(true, Auto, None, &SYSTEMD), Ok(Output::Json));
    }
}
