//! `sipscope run`'s configuration from four sources, highest first:
//! command-line flags, `SIPSCOPE_*` environment variables, the TOML file
//! (`--config FILE`, by default [`DEFAULT_PATH`]) and built-in defaults
//! (docs/config.md).
//!
//! Nothing here lists the settings: keys and environment names are
//! derived from clap's definition of `run` (key = long flag name, env =
//! `SIPSCOPE_` + the name in upper case with `_`), and every value from
//! the file or the environment goes through the flag's own clap value
//! parser. A flag added to `run` is therefore a file key and an
//! environment variable at once, with the same checks and messages.
//!
//! The file and environment values become the flags' defaults in a
//! second parse of the same command line, so clap still decides what the
//! command line set (`ArgMatches::value_source`) and builds `RunArgs`.

pub(super) mod check;
mod file;
pub(super) mod reload;
pub(super) mod template;
#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

use clap::parser::ValueSource;
use clap::{Arg, ArgAction, ArgMatches, Args as _, Command, FromArgMatches as _};

use super::run::RunArgs;
use file::ConfigFile;

pub(crate) use file::FileError;

/// Where `run` looks for its file when neither `--config` nor
/// `SIPSCOPE_CONFIG` names one; absent is fine there (defaults apply).
pub(crate) const DEFAULT_PATH: &str = "/etc/sipscope/sipscope.toml";

/// The long flag that names the file: an environment variable may name
/// it too, the file itself may not.
pub(crate) const CONFIG_FLAG: &str = "config";

/// Long flags of `run` that are not settings and so have no file key or
/// environment variable: the file's own name, and clap's help/version.
pub(crate) const NOT_SETTINGS: &[&str] = &[CONFIG_FLAG, "help", "version"];

/// Settings whose value is a secret: shown as `<redacted>` by
/// `config check` and reload lines (OTLP headers carry API keys).
const SECRETS: &[&str] = &["otlp-header", "hep-password"];

/// `run` needs at least one interface; clap cannot require the flag,
/// since the file or environment may give it.
const INTERFACE: &str = "iface";

/// The environment variable for a setting: `sip-port` → `SIPSCOPE_SIP_PORT`.
pub(crate) fn env_name(key: &str) -> String {
    format!("SIPSCOPE_{}", key.to_ascii_uppercase().replace('-', "_"))
}

/// Why a configuration was refused; each names the place and what to do.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("{0}")]
    File(#[from] FileError),
    #[error("environment {name}: {message}")]
    Env { name: String, message: String },
    #[error("{}", flags_text(.0))]
    Flags(clap::Error),
    #[error(
        "no interface to capture on: give --iface IFACE, {env}=IFACE or iface = [\"IFACE\"] in {file}",
        env = env_name(INTERFACE)
    )]
    NoInterface { file: String },
}

/// clap's message without its "error: " prefix and usage footer, on one line.
fn flags_text(e: &clap::Error) -> String {
    one_line(&e.to_string())
}

/// The first paragraph of a clap message, its lines joined: `invalid
/// value 'x' for '--ingress <INGRESS>' [possible values: auto, xdp, tc]`.
fn one_line(text: &str) -> String {
    let text = text.trim_start().trim_start_matches("error: ");
    let first = text.split("\n\n").next().unwrap_or(text);
    first
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Where an effective value came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Origin {
    Flag,
    Env(String),
    File { path: PathBuf, line: usize },
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::Flag => f.write_str("flag"),
            Origin::Env(name) => write!(f, "env {name}"),
            Origin::File { path, line } => write!(f, "file {}:{line}", path.display()),
            Origin::Default => f.write_str("default"),
        }
    }
}

/// How a flag takes its value, which decides the TOML type of its key.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Shape {
    /// `--json`: `json = true`.
    Switch,
    /// `--ring-size N`: `ring-size = N`.
    Single,
    /// `--sip-port P` repeated: `sip-port = [P, ...]`.
    List,
}

/// The file key, environment name and shape of one `run` flag; `None`
/// for flags that are not settings ([`NOT_SETTINGS`]) or take no value
/// in a way a file could express.
pub(crate) fn shape(arg: &Arg) -> Option<Shape> {
    let key = arg.get_long()?;
    if NOT_SETTINGS.contains(&key) {
        return None;
    }
    match arg.get_action() {
        ArgAction::SetTrue => Some(Shape::Switch),
        ArgAction::Set => Some(Shape::Single),
        ArgAction::Append => Some(Shape::List),
        _ => None,
    }
}

/// One effective setting of `run`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Setting {
    pub(crate) key: String,
    pub(crate) shape: Shape,
    /// As the flag's parser read them (after defaults); empty when unset.
    pub(crate) values: Vec<String>,
    pub(crate) origin: Origin,
    /// The flag parses to a string or path: quoted in TOML output.
    pub(crate) text: bool,
}

impl Setting {
    /// The value as it would be written in the file, secrets redacted.
    pub(crate) fn toml_value(&self) -> String {
        let secret = SECRETS.contains(&self.key.as_str());
        let one = |v: &String| {
            if secret {
                toml_string("<redacted>")
            } else {
                toml_scalar(v, self.text)
            }
        };
        match self.shape {
            Shape::List => format!(
                "[{}]",
                self.values.iter().map(one).collect::<Vec<_>>().join(", ")
            ),
            _ => match self.values.first() {
                Some(v) => one(v),
                None => "(not set)".to_owned(),
            },
        }
    }
}

/// A string in TOML's quoting.
pub(crate) fn toml_string(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// A number or boolean as is, anything else quoted.
fn toml_scalar(v: &str, text: bool) -> String {
    let plain = !text
        && (v == "true"
            || v == "false"
            || v.parse::<i64>().is_ok()
            || v.parse::<f64>().is_ok_and(f64::is_finite));
    if plain { v.to_owned() } else { toml_string(v) }
}

/// Whether a flag's parser yields text (string or path), not a number.
fn parses_to_text(arg: &Arg) -> bool {
    let t = arg.get_value_parser().type_id();
    t == std::any::TypeId::of::<String>() || t == std::any::TypeId::of::<PathBuf>()
}

/// Whether a flag's parser yields a number: its examples go unquoted.
fn parses_to_number(arg: &Arg) -> bool {
    use std::any::TypeId;
    let t = arg.get_value_parser().type_id();
    [
        TypeId::of::<u8>(),
        TypeId::of::<u16>(),
        TypeId::of::<u32>(),
        TypeId::of::<u64>(),
        TypeId::of::<usize>(),
        TypeId::of::<i64>(),
        TypeId::of::<f64>(),
    ]
    .into_iter()
    .any(|n| t == n)
}

/// The `run` command as clap defines it (no binary name: argv starts
/// with `run`).
pub(crate) fn run_command() -> Command {
    RunArgs::augment_args(Command::new("run")).color(clap::ColorChoice::Never)
}

/// `run`'s arguments with every source applied.
pub(crate) struct Resolved {
    pub(crate) args: RunArgs,
    /// Every setting of `run` in definition order.
    pub(crate) settings: Vec<Setting>,
    /// The file that was read (absent default path: `None`).
    pub(crate) file: Option<PathBuf>,
}

impl Resolved {
    pub(crate) fn setting(&self, key: &str) -> Option<&Setting> {
        self.settings.iter().find(|s| s.key == key)
    }
}

/// A value from the file or the environment, checked, with its origin.
struct Layered {
    values: Vec<String>,
    origin: Origin,
}

/// Resolves `run`'s configuration: `run_argv` starts with `run`, `env`
/// reads an environment variable (the process's, or a test's).
pub(crate) fn resolve(
    run_argv: &[OsString],
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Resolved, ConfigError> {
    let cmd = run_command();
    let first = cmd
        .clone()
        .try_get_matches_from(run_argv)
        .map_err(ConfigError::Flags)?;
    let (path, explicit) = match first.get_one::<PathBuf>(CONFIG_FLAG) {
        Some(p) => (p.clone(), true),
        None => match env(&env_name(CONFIG_FLAG)).filter(|v| !v.is_empty()) {
            Some(p) => (PathBuf::from(p), true),
            None => (PathBuf::from(DEFAULT_PATH), false),
        },
    };
    let file = ConfigFile::load(&path, explicit)?;
    let mut layered: BTreeMap<String, Layered> = BTreeMap::new();
    if let Some(f) = &file {
        for (key, found) in f.settings(&cmd)? {
            layered.insert(key, found);
        }
    }
    // The environment over the file.
    for arg in cmd.get_arguments() {
        let (Some(shape), Some(key)) = (shape(arg), arg.get_long()) else {
            continue;
        };
        let name = env_name(key);
        let Some(raw) = env(&name) else { continue };
        let values = env_values(&raw, shape)
            .and_then(|v| check_values(&cmd, arg, &v).map(|()| v))
            .map_err(|message| ConfigError::Env {
                name: name.clone(),
                message,
            })?;
        layered.insert(
            key.to_owned(),
            Layered {
                values,
                origin: Origin::Env(name),
            },
        );
    }
    let cmd = cmd.mut_args(|a| match a.get_long().and_then(|k| layered.get(k)) {
        Some(l) => a.default_values(l.values.clone()),
        None => a,
    });
    let matches = cmd
        .clone()
        .try_get_matches_from(run_argv)
        .map_err(ConfigError::Flags)?;
    let args = RunArgs::from_arg_matches(&matches).map_err(ConfigError::Flags)?;
    let settings = settings(&cmd, &matches, &layered);
    let file = file.map(|f| f.path);
    if settings
        .iter()
        .find(|s| s.key == INTERFACE)
        .is_some_and(|s| s.values.is_empty())
    {
        return Err(ConfigError::NoInterface {
            file: file.as_deref().unwrap_or(&path).display().to_string(),
        });
    }
    Ok(Resolved {
        args,
        settings,
        file,
    })
}

/// Every setting, its effective values and where they came from.
fn settings(
    cmd: &Command,
    matches: &ArgMatches,
    layered: &BTreeMap<String, Layered>,
) -> Vec<Setting> {
    let mut out = Vec::new();
    for arg in cmd.get_arguments() {
        let (Some(shape), Some(key)) = (shape(arg), arg.get_long()) else {
            continue;
        };
        let id = arg.get_id().as_str();
        let values: Vec<String> = matches
            .get_raw(id)
            .map(|vs| vs.map(|v| v.to_string_lossy().into_owned()).collect())
            .unwrap_or_default();
        let origin = match matches.value_source(id) {
            Some(ValueSource::CommandLine) => Origin::Flag,
            Some(ValueSource::EnvVariable) => Origin::Env(
                arg.get_env()
                    .map(|e| e.to_string_lossy().into_owned())
                    .unwrap_or_default(),
            ),
            _ => layered
                .get(key)
                .map(|l| l.origin.clone())
                .unwrap_or(Origin::Default),
        };
        out.push(Setting {
            key: key.to_owned(),
            shape,
            values,
            origin,
            text: parses_to_text(arg),
        });
    }
    out
}

/// An environment value as flag values: a switch takes a boolean word,
/// a list is comma-separated (as OTEL_EXPORTER_OTLP_HEADERS is).
fn env_values(raw: &str, shape: Shape) -> Result<Vec<String>, String> {
    match shape {
        Shape::Switch => match raw.trim().to_ascii_lowercase().as_str() {
            "1" | "true" | "yes" | "on" => Ok(vec!["true".into()]),
            "0" | "false" | "no" | "off" | "" => Ok(vec!["false".into()]),
            _ => Err(format!(
                "{raw:?} is not a switch value; use true or false (also 1/0, yes/no, on/off)"
            )),
        },
        Shape::Single => Ok(vec![raw.to_owned()]),
        Shape::List => Ok(raw
            .split(',')
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(str::to_owned)
            .collect()),
    }
}

/// Runs `values` through the flag's own clap parser: ranges, enums and
/// custom parsers give the same message as on the command line.
pub(crate) fn check_values(cmd: &Command, arg: &Arg, values: &[String]) -> Result<(), String> {
    let Some(long) = arg.get_long() else {
        return Ok(());
    };
    if shape(arg) == Some(Shape::Switch) {
        return Ok(());
    }
    let mut argv: Vec<String> = vec!["run".into()];
    argv.extend(values.iter().map(|v| format!("--{long}={v}")));
    match cmd.clone().try_get_matches_from(argv) {
        Ok(_) => Ok(()),
        Err(e) => {
            use clap::error::ErrorKind::*;
            match e.kind() {
                // Another flag's rule (requires, conflicts) is not about
                // this value: the full command line checks it.
                MissingRequiredArgument | ArgumentConflict => Ok(()),
                _ => Err(one_line(&e.to_string())),
            }
        }
    }
}

/// "Did you mean" for an unknown key: the closest setting name, if close.
fn suggest(cmd: &Command, unknown: &str) -> Option<String> {
    cmd.get_arguments()
        .filter(|a| shape(a).is_some())
        .filter_map(Arg::get_long)
        .map(|k| (strsim::jaro(unknown, k), k))
        .filter(|(score, _)| *score > 0.8)
        .max_by(|a, b| a.0.total_cmp(&b.0))
        .map(|(_, k)| k.to_owned())
}

/// The path a resolved configuration names for `--config`, or the default.
pub(crate) fn file_label(file: Option<&Path>) -> String {
    match file {
        Some(p) => p.display().to_string(),
        None => format!("{DEFAULT_PATH} (absent)"),
    }
}
