//! `sipscope config check [--json] [RUN FLAGS...]`: the effective `run`
//! configuration and where each value came from, after every check
//! `run` makes before it attaches (credentials file mode included);
//! `sipscope config template`: the commented default file.

use std::ffi::OsString;
use std::io::Write as _;
use std::process::ExitCode;

use anyhow::Context as _;

use super::{Origin, Resolved, file_label, resolve};

#[derive(clap::Subcommand, Debug)]
pub(crate) enum ConfigCommand {
    /// Print the effective configuration of `sipscope run` and the source of
    /// each value (flag, env SIPSCOPE_*, file:line, default); exit non-zero
    /// with the reason if `run` would refuse it. Flags after the options are
    /// `run`'s, e.g. `sipscope config check --config /etc/sipscope/sipscope.toml -i eth0`.
    Check(CheckArgs),
    /// Print the commented default configuration file (every key, its help
    /// and default), as shipped in /etc/sipscope/sipscope.toml.
    Template,
}

#[derive(clap::Args, Debug)]
pub(crate) struct CheckArgs {
    /// One JSON object instead of TOML with comments, for tooling.
    #[arg(long = "json")]
    json: bool,
    /// `sipscope run` flags, `--config FILE` included, as `run` would get them.
    #[arg(
        value_name = "RUN FLAGS",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    run: Vec<OsString>,
}

pub(crate) fn main(command: ConfigCommand) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    match command {
        ConfigCommand::Template => out.write_all(super::template::render().as_bytes())?,
        ConfigCommand::Check(args) => {
            let mut argv = vec![OsString::from("run")];
            argv.extend(args.run);
            let resolved = resolve(&argv, &|name| std::env::var(name).ok())?;
            super::super::run::preflight(&resolved.args)
                .context("`sipscope run` would refuse this configuration")?;
            if args.json {
                serde_json::to_writer_pretty(&mut out, &json(&resolved))?;
                writeln!(out)?;
            } else {
                out.write_all(text(&resolved).as_bytes())?;
            }
        }
    }
    out.flush()?;
    Ok(ExitCode::SUCCESS)
}

/// TOML with the source of each value as a comment: a valid config file.
pub(crate) fn text(r: &Resolved) -> String {
    let mut s = format!(
        "# effective configuration of `sipscope run`; file {}\n\
         # precedence: flag > env SIPSCOPE_* > file > default\n",
        file_label(r.file.as_deref())
    );
    for setting in &r.settings {
        let line = if setting.values.is_empty() {
            format!("#{} =", setting.key)
        } else {
            format!("{} = {}", setting.key, setting.toml_value())
        };
        s.push_str(&format!("{line:<44} # {}\n", setting.origin));
    }
    s
}

/// `{"file": ..., "settings": [{"key", "value", "source", ...}]}`: the
/// value typed as in TOML (`null` when unset), the source as `flag`,
/// `env` (+ `env`), `file` (+ `path`, `line`) or `default`.
pub(crate) fn json(r: &Resolved) -> serde_json::Value {
    use serde_json::json;
    let settings: Vec<serde_json::Value> = r
        .settings
        .iter()
        .map(|s| {
            let value = if s.values.is_empty() {
                serde_json::Value::Null
            } else {
                // The TOML rendering read back: numbers, booleans, lists.
                toml::from_str::<toml::Table>(&format!("v = {}", s.toml_value()))
                    .ok()
                    .and_then(|mut t| t.remove("v"))
                    .and_then(|v| serde_json::to_value(v).ok())
                    .unwrap_or_else(|| s.values.join(",").into())
            };
            let mut o = json!({ "key": s.key, "value": value });
            match &s.origin {
                Origin::Flag => o["source"] = "flag".into(),
                Origin::Env(name) => {
                    o["source"] = "env".into();
                    o["env"] = name.as_str().into();
                }
                Origin::File { path, line } => {
                    o["source"] = "file".into();
                    o["path"] = path.display().to_string().into();
                    o["line"] = (*line).into();
                }
                Origin::Default => o["source"] = "default".into(),
            }
            o
        })
        .collect();
    json!({
        "file": r.file.as_ref().map(|p| p.display().to_string()),
        "settings": settings,
    })
}
