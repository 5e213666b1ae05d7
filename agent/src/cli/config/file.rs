//! The TOML file: read (bounded), parsed with spans so every error names
//! file, line and column, keys matched against `run`'s long flags and
//! values checked by the flags' own parsers.

use std::io::Read as _;
use std::path::{Path, PathBuf};

use clap::{Arg, Command};
use toml::de::{DeTable, DeValue};

use super::{
    CONFIG_FLAG, Layered, Origin, Shape, check_values, parses_to_number, parses_to_text, shape,
    suggest,
};

/// A configuration file is a page of settings; anything this large is
/// certainly not one.
const MAX_FILE_LEN: u64 = 1024 * 1024;

/// Why the file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum FileError {
    #[error("cannot read the configuration file {}: {source}", path.display())]
    Unreadable {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the configuration file {} is larger than {MAX_FILE_LEN} bytes; it is not a sipscope configuration", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}:{line}:{column}: {message}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error(
        "{}:{line}:{column}: unknown key `{key}`{}; keys are the long flags of `sipscope run` (see `sipscope run --help` or the commented /etc/sipscope/sipscope.toml)",
        path.display(),
        suggestion.as_ref().map(|s| format!(", did you mean `{s}`?")).unwrap_or_default()
    )]
    UnknownKey {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        suggestion: Option<String>,
    },
    #[error(
        "{}:{line}:{column}: `{CONFIG_FLAG}` names the file itself and cannot be set in it; use --config FILE or SIPSCOPE_CONFIG",
        path.display()
    )]
    ConfigInFile {
        path: PathBuf,
        line: usize,
        column: usize,
    },
    #[error("{}:{line}:{column}: `{key}` must be {expected}, found {found}", path.display())]
    WrongType {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        expected: String,
        found: &'static str,
    },
    #[error("{}:{line}:{column}: `{key}`: {message}", path.display())]
    BadValue {
        path: PathBuf,
        line: usize,
        column: usize,
        key: String,
        message: String,
    },
}

/// A read configuration file.
pub(super) struct ConfigFile {
    pub(super) path: PathBuf,
    text: String,
}

/// A key of the file and where it is.
pub(super) struct Located<'a> {
    pub(super) path: &'a Path,
    pub(super) key: &'a str,
    pub(super) line: usize,
}

impl Located<'_> {
    /// This key's checked values, with where they were written.
    fn layered(self, values: Vec<String>) -> (String, Layered) {
        (
            self.key.to_owned(),
            Layered {
                values,
                origin: Origin::File {
                    path: self.path.to_owned(),
                    line: self.line,
                },
            },
        )
    }
}

impl ConfigFile {
    /// Reads `path`; a missing file is `None` unless it was asked for by
    /// name (`explicit`), when it is an error like any unreadable file.
    pub(super) fn load(path: &Path, explicit: bool) -> Result<Option<Self>, FileError> {
        let unreadable = |source| FileError::Unreadable {
            path: path.to_owned(),
            source,
        };
        let file = match std::fs::File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !explicit => return Ok(None),
            Err(e) => return Err(unreadable(e)),
        };
        let mut text = String::new();
        file.take(MAX_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(unreadable)?;
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(FileError::TooLarge {
                path: path.to_owned(),
            });
        }
        Ok(Some(Self {
            path: path.to_owned(),
            text,
        }))
    }

    /// Line and column (1-based, in characters) of a byte offset.
    fn position(&self, offset: usize) -> (usize, usize) {
        let before = &self.text[..offset.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.rsplit('\n').next().unwrap_or("").chars().count() + 1;
        (line, column)
    }

    /// Every key of the file as flag values, checked against `cmd`.
    pub(super) fn settings(&self, cmd: &Command) -> Result<Vec<(String, Layered)>, FileError> {
        let table = DeTable::parse(&self.text).map_err(|e| {
            let (line, column) = self.position(e.span().map(|s| s.start).unwrap_or(0));
            FileError::Syntax {
                path: self.path.clone(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let mut out = Vec::new();
        for (key, value) in table.get_ref().iter() {
            let (line, column) = self.position(key.span().start);
            let here = Located {
                path: &self.path,
                key: key.get_ref(),
                line,
            };
            if here.key == CONFIG_FLAG {
                return Err(FileError::ConfigInFile {
                    path: self.path.clone(),
                    line,
                    column,
                });
            }
            let Some(arg) = cmd
                .get_arguments()
                .find(|a| a.get_long() == Some(here.key) && shape(a).is_some())
            else {
                return Err(FileError::UnknownKey {
                    path: self.path.clone(),
                    line,
                    column,
                    key: here.key.to_owned(),
                    suggestion: suggest(cmd, here.key),
                });
            };
            let (vline, vcolumn) = self.position(value.span().start);
            let values = flag_values(arg, value.get_ref()).map_err(|(expected, found)| {
                FileError::WrongType {
                    path: self.path.clone(),
                    line: vline,
                    column: vcolumn,
                    key: here.key.to_owned(),
                    expected,
                    found,
                }
            })?;
            check_values(cmd, arg, &values).map_err(|message| FileError::BadValue {
                path: self.path.clone(),
                line: vline,
                column: vcolumn,
                key: here.key.to_owned(),
                message,
            })?;
            out.push(here.layered(values));
        }
        Ok(out)
    }
}

/// A TOML value as the flag's command-line values, or (what was
/// expected, what was found) when its type cannot be one.
fn flag_values(arg: &Arg, value: &DeValue<'_>) -> Result<Vec<String>, (String, &'static str)> {
    let key = arg.get_long().unwrap_or_default();
    match shape(arg) {
        Some(Shape::Switch) => match value {
            DeValue::Boolean(b) => Ok(vec![b.to_string()]),
            other => Err(("true or false".into(), other.type_str())),
        },
        Some(Shape::List) => match value {
            DeValue::Array(items) => items
                .iter()
                .map(|v| scalar(arg, v.get_ref()))
                .collect::<Result<_, _>>()
                .map_err(|(_, found)| {
                    (
                        format!(
                            "a list of {}, e.g. {key} = [{}]",
                            item_kind(arg),
                            example(arg)
                        ),
                        found,
                    )
                }),
            other => Err((
                format!("a list, e.g. {key} = [{}]", example(arg)),
                other.type_str(),
            )),
        },
        _ => scalar(arg, value).map(|v| vec![v]),
    }
}

/// One value: text flags take a quoted string; others a number or a
/// quoted word (enums, ranges like "10000-20000").
fn scalar(arg: &Arg, value: &DeValue<'_>) -> Result<String, (String, &'static str)> {
    let text = parses_to_text(arg);
    match value {
        DeValue::String(s) => Ok(s.to_string()),
        // Large integers beyond i128 are left to the flag's parser as text.
        DeValue::Integer(i) if !text => Ok(i128::from_str_radix(i.as_str(), i.radix())
            .map(|v| v.to_string())
            .unwrap_or_else(|_| i.as_str().to_owned())),
        DeValue::Float(f) if !text => Ok(f.as_str().to_owned()),
        other => Err((item_kind(arg).to_owned(), other.type_str())),
    }
}

fn item_kind(arg: &Arg) -> &'static str {
    if parses_to_text(arg) {
        "a quoted string"
    } else {
        "a number or a quoted value"
    }
}

/// An example element for a list key's message.
pub(super) fn example(arg: &Arg) -> String {
    let name = arg
        .get_value_names()
        .and_then(|n| n.first())
        .map(|n| n.to_string())
        .unwrap_or_else(|| "VALUE".into());
    if parses_to_number(arg) {
        name
    } else {
        format!("\"{name}\"")
    }
}
