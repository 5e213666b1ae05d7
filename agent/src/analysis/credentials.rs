//! The `--credentials FILE` store: known passwords (or HA1 hashes) per
//! realm and username, so sipscope can say definitively whether a client's
//! digest response was made with the right password.
//!
//! ```toml
//! [[credential]]
//! realm = "asterisk"          # optional: an entry without realm matches any realm
//! username = "1001"
//! password = "s3cret"
//!
//! [[credential]]
//! realm = "sip.provider.example"
//! username = "4420xxxxxxx"
//! ha1 = "0123456789abcdef0123456789abcdef"   # H(username:realm:password)
//! algorithm = "MD5"                          # hash the ha1 was made with (default MD5)
//! ```
//!
//! The file must not be accessible by group or others (`chmod 600`), the
//! same rule ssh applies to private keys. Secrets are held in
//! [`SecretString`], whose Debug, Display and Serialize never reveal them,
//! and parse errors never quote the file's text.

use std::fmt;
use std::fs::OpenOptions;
use std::io::Read;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use super::digest::Algorithm;

/// Largest credentials file read; a bigger file is certainly not one.
const MAX_FILE_LEN: u64 = 1024 * 1024;

/// A secret string (password, HA1, digest response). Never printed,
/// logged or serialized: all three show `<redacted>`.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretString(String);

impl SecretString {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }

    /// The secret itself. Call only where it is hashed or compared.
    pub fn expose_secret(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SecretString(<redacted>)")
    }
}

impl fmt::Display for SecretString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl Serialize for SecretString {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str("<redacted>")
    }
}

impl<'de> Deserialize<'de> for SecretString {
    /// Accepts only strings. Every other type is refused with a message
    /// that does not echo the value (serde's default would print it).
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = SecretString;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a quoted string")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<SecretString, E> {
                Ok(SecretString::new(v))
            }
            fn visit_string<E: serde::de::Error>(self, v: String) -> Result<SecretString, E> {
                Ok(SecretString(v))
            }
            fn visit_i64<E: serde::de::Error>(self, _: i64) -> Result<SecretString, E> {
                Err(E::custom("secret must be a quoted string"))
            }
            fn visit_u64<E: serde::de::Error>(self, _: u64) -> Result<SecretString, E> {
                Err(E::custom("secret must be a quoted string"))
            }
            fn visit_f64<E: serde::de::Error>(self, _: f64) -> Result<SecretString, E> {
                Err(E::custom("secret must be a quoted string"))
            }
            fn visit_bool<E: serde::de::Error>(self, _: bool) -> Result<SecretString, E> {
                Err(E::custom("secret must be a quoted string"))
            }
        }
        d.deserialize_any(V)
    }
}

/// What is known about one account's secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Secret {
    Password(SecretString),
    /// A precomputed `H(username:realm:password)` in lower-case hex, made
    /// with `algorithm` (never a `-sess` variant; sessions derive from it).
    Ha1 {
        ha1: SecretString,
        algorithm: Algorithm,
    },
}

/// One account in the store.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CredentialEntry {
    /// `None` matches any realm.
    pub realm: Option<String>,
    pub username: String,
    pub secret: Secret,
}

/// Known credentials, looked up by realm and username.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CredentialStore {
    entries: Vec<CredentialEntry>,
}

/// Why a credentials file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CredentialsError {
    #[error("cannot read credentials file {path}: {source}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("credentials file {path} is not a regular file")]
    NotAFile { path: PathBuf },
    #[error("credentials file {path} is larger than {max} bytes")]
    TooLarge { path: PathBuf, max: u64 },
    #[error(
        "credentials file {path} is accessible by group or others (mode {mode:04o}); \
         it holds passwords, so run `chmod 600 {path}` and try again"
    )]
    InsecurePermissions { path: PathBuf, mode: u32 },
    #[error("credentials file, line {line}, column {column}: {message}")]
    Syntax {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("credentials entry {index} (username `{username}`): {reason}")]
    Entry {
        index: usize,
        username: String,
        reason: String,
    },
    #[error("credentials for username `{username}` in realm `{realm}` are given twice")]
    Duplicate { realm: String, username: String },
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    credential: Vec<RawEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEntry {
    username: String,
    realm: Option<String>,
    password: Option<SecretString>,
    ha1: Option<SecretString>,
    algorithm: Option<String>,
}

impl CredentialStore {
    /// Reads and validates `path`, refusing a file that group or others
    /// can access.
    pub fn load(path: &Path) -> Result<CredentialStore, CredentialsError> {
        let read_err = |source| CredentialsError::Read {
            path: path.to_owned(),
            source,
        };
        // Non-blocking, so that a FIFO (or a device) given by mistake is
        // refused below instead of blocking the open until a writer comes.
        // Regular files ignore the flag.
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK)
            .open(path)
            .map_err(read_err)?;
        // Check the opened file, not the path, so a swap between check and
        // read cannot slip an unchecked file in.
        let meta = file.metadata().map_err(read_err)?;
        if !meta.is_file() {
            return Err(CredentialsError::NotAFile {
                path: path.to_owned(),
            });
        }
        let mode = meta.permissions().mode() & 0o7777;
        if mode & 0o077 != 0 {
            return Err(CredentialsError::InsecurePermissions {
                path: path.to_owned(),
                mode,
            });
        }
        let mut text = String::new();
        file.take(MAX_FILE_LEN + 1)
            .read_to_string(&mut text)
            .map_err(read_err)?;
        if text.len() as u64 > MAX_FILE_LEN {
            return Err(CredentialsError::TooLarge {
                path: path.to_owned(),
                max: MAX_FILE_LEN,
            });
        }
        Self::from_toml_str(&text)
    }

    /// Parses the TOML text of a credentials file (no permission check).
    pub fn from_toml_str(text: &str) -> Result<CredentialStore, CredentialsError> {
        let raw: RawFile = toml::from_str(text).map_err(|e| {
            // Only the message and position: toml's Display quotes the
            // offending line, which may be a password.
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
            CredentialsError::Syntax {
                line,
                column,
                message: redact_quoted(e.message().trim()).replace('\n', "; "),
            }
        })?;
        let mut entries: Vec<CredentialEntry> = Vec::with_capacity(raw.credential.len());
        for (i, e) in raw.credential.into_iter().enumerate() {
            let index = i + 1;
            let bad = |reason: &str| CredentialsError::Entry {
                index,
                username: e.username.clone(),
                reason: reason.to_owned(),
            };
            let secret = match (e.password, e.ha1) {
                (Some(p), None) => {
                    if e.algorithm.is_some() {
                        return Err(bad(
                            "`algorithm` only applies to `ha1`; a password works with every algorithm",
                        ));
                    }
                    Secret::Password(p)
                }
                (None, Some(h)) => {
                    let algorithm =
                        Algorithm::parse(e.algorithm.as_deref().unwrap_or("MD5")).base();
                    let Some(len) = algorithm.hex_len() else {
                        return Err(bad("unknown `algorithm`; use MD5, SHA-256 or SHA-512-256"));
                    };
                    let hex = h.expose_secret().trim().to_ascii_lowercase();
                    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                        return Err(bad(&format!(
                            "`ha1` must be {len} hex digits for {algorithm} (H(username:realm:password))"
                        )));
                    }
                    Secret::Ha1 {
                        ha1: SecretString(hex),
                        algorithm,
                    }
                }
                (Some(_), Some(_)) => return Err(bad("give either `password` or `ha1`, not both")),
                (None, None) => return Err(bad("needs `password` or `ha1`")),
            };
            if entries
                .iter()
                .any(|x| x.realm == e.realm && x.username == e.username)
            {
                return Err(CredentialsError::Duplicate {
                    realm: e.realm.unwrap_or_else(|| "(any)".to_owned()),
                    username: e.username,
                });
            }
            entries.push(CredentialEntry {
                realm: e.realm,
                username: e.username,
                secret,
            });
        }
        Ok(CredentialStore { entries })
    }

    /// The secret for `username` in `realm`: an entry for exactly that realm
    /// wins over one without a realm. Username and realm compare exactly,
    /// as the digest hashes them.
    pub fn lookup(&self, realm: &str, username: &str) -> Option<&Secret> {
        let by_user = || self.entries.iter().filter(|e| e.username == username);
        by_user()
            .find(|e| e.realm.as_deref() == Some(realm))
            .or_else(|| by_user().find(|e| e.realm.is_none()))
            .map(|e| &e.secret)
    }

    pub fn entries(&self) -> &[CredentialEntry] {
        &self.entries
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Names a parse message may quote: the file's own keys.
const KEYS: &[&str] = &[
    "credential",
    "username",
    "realm",
    "password",
    "ha1",
    "algorithm",
];

/// A toml/serde message with every quoted piece of the file replaced by
/// `<redacted>`: serde quotes the value it did not expect (`invalid type:
/// string "hunter2", expected a sequence`, ``integer `1234` ``) and the key
/// it did not know. Kept: the file's own key names and the punctuation
/// tokens toml says it expected.
fn redact_quoted(message: &str) -> String {
    let mut out = String::with_capacity(message.len());
    let mut chars = message.chars();
    while let Some(c) = chars.next() {
        // serde quotes a char as `character 'x'`; elsewhere ' is prose.
        let quote = matches!(c, '"' | '`') || (c == '\'' && out.ends_with("character "));
        if !quote {
            out.push(c);
            continue;
        }
        let mut quoted = String::new();
        let mut closed = false;
        while let Some(q) = chars.next() {
            if q == c {
                closed = true;
                break;
            }
            if q == '\\' && c == '"' {
                // Debug escapes inside a quoted string (`\"`).
                chars.next();
                quoted.push('?');
                continue;
            }
            quoted.push(q);
        }
        out.push(c);
        // Keys, and the tokens toml says it expected (`=`, `"`, `]]`).
        let token = quoted.len() <= 3 && quoted.chars().all(|q| q.is_ascii_punctuation());
        if c == '`' && (KEYS.contains(&quoted.as_str()) || token) {
            out.push_str(&quoted);
        } else {
            out.push_str("<redacted>");
        }
        if closed {
            out.push(c);
        }
    }
    out
}

/// 1-based line and column of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[cfg(test)]
mod tests;
