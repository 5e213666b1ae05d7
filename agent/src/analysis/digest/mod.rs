//! HTTP Digest authentication as SIP uses it (RFC 3261 §22.4 and §25,
//! RFC 7616, RFC 8760 for SHA-256 in SIP).
//!
//! - [`Challenge`] (`WWW-Authenticate` / `Proxy-Authenticate`) and
//!   [`Credentials`] (`Authorization` / `Proxy-Authorization`) are parsed by
//!   our own tolerant, bounded tokenizer ([`parse_auth_headers`]); rsip cannot be used
//!   here because it reads `nc` as a decimal `u8`.
//! - [`compute_response`] / [`verify`] compute the digest `response` for
//!   MD5, MD5-sess, SHA-256, SHA-256-sess, SHA-512-256(-sess), with qop
//!   absent (RFC 2069 form), `auth` and `auth-int`.
//! - [`check_credentials`] / [`diagnose_answer`] turn a challenge and the
//!   credentials answering it into catalogue findings (realm/nonce/uri/
//!   algorithm mismatch, password verdict); [`rechallenged`],
//!   [`challenge_loop`], [`forbidden_after_auth`], [`stale_nonce`] and
//!   [`username_is_did`] word the server-outcome findings the tracker
//!   detects. [`uri::compare`] implements RFC 3261 §19.1.4 URI equality.
//!
//! - [`exchanges::Exchanges`] applies these checks to every challenged
//!   request other than REGISTER (INVITE, BYE, SUBSCRIBE, MESSAGE,
//!   OPTIONS...); REGISTER belongs to the registration tracker.
//!
//! Nothing here is Serialize and `Credentials` redacts its `response` in
//! Debug: digest responses are offline-crackable and never leave the host.

mod authorization;
mod challenge;
mod checks;
mod compute;
pub(crate) mod exchanges;
mod header;
mod outcome;
pub(crate) mod uri;

use std::fmt;

pub(crate) use authorization::Credentials;
pub(crate) use challenge::Challenge;
pub(crate) use checks::{
    AuthenticatedRequest, check_credentials, diagnose_answer, password_finding, select_challenge,
    stale_nonce, username_is_did,
};
#[cfg(test)]
pub(crate) use compute::{CannotVerify, Deviation, DigestParams, compute_response};
pub(crate) use compute::{Verdict, verify};
pub(crate) use header::{AuthHeader, parse_auth_headers};
#[cfg(test)]
pub(crate) use header::{MAX_HEADER_LEN, MAX_PARAMS};
pub(crate) use outcome::{challenge_loop, forbidden_after_auth, rechallenged};

/// Digest algorithm (RFC 7616 §3.3 `algorithm`, IANA "HTTP Digest Hash
/// Algorithms"; RFC 8760 for SIP). Absent in a header means MD5.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Md5,
    Md5Sess,
    Sha256,
    Sha256Sess,
    Sha512_256,
    Sha512_256Sess,
    /// Anything else (e.g. `AKAv1-MD5` from IMS), kept verbatim.
    Unknown(String),
}

impl Algorithm {
    /// Case-insensitive, as RFC 7616 §3.3 compares algorithm tokens.
    pub fn parse(s: &str) -> Algorithm {
        let known = [
            ("MD5", Algorithm::Md5),
            ("MD5-sess", Algorithm::Md5Sess),
            ("SHA-256", Algorithm::Sha256),
            ("SHA-256-sess", Algorithm::Sha256Sess),
            ("SHA-512-256", Algorithm::Sha512_256),
            ("SHA-512-256-sess", Algorithm::Sha512_256Sess),
        ];
        known
            .into_iter()
            .find(|(name, _)| name.eq_ignore_ascii_case(s.trim()))
            .map_or_else(|| Algorithm::Unknown(s.trim().to_owned()), |(_, a)| a)
    }

    /// The canonical token as RFC 7616 spells it.
    pub fn as_str(&self) -> &str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Md5Sess => "MD5-sess",
            Algorithm::Sha256 => "SHA-256",
            Algorithm::Sha256Sess => "SHA-256-sess",
            Algorithm::Sha512_256 => "SHA-512-256",
            Algorithm::Sha512_256Sess => "SHA-512-256-sess",
            Algorithm::Unknown(s) => s,
        }
    }

    /// `-sess` variants hash the nonce and cnonce into HA1 (RFC 7616 §3.4.2).
    pub fn is_session(&self) -> bool {
        matches!(
            self,
            Algorithm::Md5Sess | Algorithm::Sha256Sess | Algorithm::Sha512_256Sess
        )
    }

    /// The same hash without `-sess` (what a stored HA1 was made with).
    pub fn base(&self) -> Algorithm {
        match self {
            Algorithm::Md5Sess => Algorithm::Md5,
            Algorithm::Sha256Sess => Algorithm::Sha256,
            Algorithm::Sha512_256Sess => Algorithm::Sha512_256,
            other => other.clone(),
        }
    }

    /// Hex digits of this algorithm's output (an HA1 or `response`), if known.
    pub fn hex_len(&self) -> Option<usize> {
        match self.base() {
            Algorithm::Md5 => Some(32),
            Algorithm::Sha256 | Algorithm::Sha512_256 => Some(64),
            _ => None,
        }
    }
}

impl fmt::Display for Algorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Quality of protection (RFC 7616 §3.3 `qop`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub(crate) enum Qop {
    Auth,
    /// Also protects the message body (`H(entity-body)` in HA2).
    AuthInt,
    Unknown(String),
}

impl Qop {
    pub(crate) fn parse(s: &str) -> Qop {
        let s = s.trim();
        if s.eq_ignore_ascii_case("auth") {
            Qop::Auth
        } else if s.eq_ignore_ascii_case("auth-int") {
            Qop::AuthInt
        } else {
            Qop::Unknown(s.to_owned())
        }
    }

    pub(crate) fn as_str(&self) -> &str {
        match self {
            Qop::Auth => "auth",
            Qop::AuthInt => "auth-int",
            Qop::Unknown(s) => s,
        }
    }
}

impl fmt::Display for Qop {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a header value could not be read as a digest challenge/credentials.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum DigestError {
    #[error(
        "authentication header is {len} bytes, more than the {max} accepted; it is not a real digest header"
    )]
    TooLong { len: usize, max: usize },
    #[error("authentication header has more than {max} parameters")]
    TooManyParams { max: usize },
    #[error("authentication header is empty")]
    Empty,
    #[error("authentication header is not valid UTF-8")]
    NotUtf8,
    #[error("expected an auth scheme such as `Digest` at byte {at}, found {found:?}")]
    ExpectedScheme { at: usize, found: char },
    #[error("expected a parameter name at byte {at}, found {found:?}")]
    ExpectedParamName { at: usize, found: char },
    #[error("quoted value of `{param}` opened at byte {at} is never closed")]
    UnterminatedQuote { param: String, at: usize },
    #[error("auth scheme `{0}` is not Digest; sipscope only checks Digest authentication")]
    UnsupportedScheme(String),
    #[error("{what} lacks the required `{param}` parameter (RFC 7616 §3.3/§3.4)")]
    MissingParam {
        what: &'static str,
        param: &'static str,
    },
    #[error("header value holds {0} Digest challenges/credentials where one was expected")]
    NotOne(usize),
}

/// A deviation from the grammar that was tolerated while parsing. The
/// tracker may surface these; they often explain interop failures.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub(crate) enum ParseWarning {
    /// The parameter appears more than once; the first value is used.
    DuplicateParam(String),
    /// No comma before this parameter.
    MissingComma { before: String },
    /// RFC 7616 requires a quoted-string here but the value was bare.
    UnquotedValue(String),
    /// RFC 7616 requires a bare token here but the value was quoted
    /// (e.g. `nc="00000001"`, `qop="auth"` in credentials).
    QuotedToken(String),
    /// `nc` is not 8 hexadecimal digits (RFC 7616 §3.4 `nc-value`).
    MalformedNc(String),
}

impl fmt::Display for ParseWarning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ParseWarning::DuplicateParam(p) => write!(f, "parameter `{p}` appears twice"),
            ParseWarning::MissingComma { before } => write!(f, "no comma before `{before}`"),
            ParseWarning::UnquotedValue(p) => write!(f, "`{p}` should be a quoted string"),
            ParseWarning::QuotedToken(p) => write!(f, "`{p}` should not be quoted"),
            ParseWarning::MalformedNc(v) => write!(f, "nc `{v}` is not 8 hex digits"),
        }
    }
}

/// Picks the one Digest header out of a parsed value, skipping other schemes.
fn single_digest(headers: Vec<AuthHeader>) -> Result<AuthHeader, DigestError> {
    let mut first_scheme = None;
    let mut digests: Vec<AuthHeader> = Vec::new();
    for h in headers {
        if h.is_digest() {
            digests.push(h);
        } else if first_scheme.is_none() {
            first_scheme = Some(h.scheme);
        }
    }
    match digests.len() {
        1 => Ok(digests.remove(0)),
        0 => Err(DigestError::UnsupportedScheme(
            first_scheme.unwrap_or_default(),
        )),
        n => Err(DigestError::NotOne(n)),
    }
}

/// Collects the quoting warnings for the params of `h`.
fn quoting_warnings(h: &AuthHeader, must_quote: &[&str], must_not: &[&str]) -> Vec<ParseWarning> {
    let mut w = Vec::new();
    for p in &h.params {
        if !p.quoted && must_quote.contains(&p.name.as_str()) {
            w.push(ParseWarning::UnquotedValue(p.name.clone()));
        } else if p.quoted && must_not.contains(&p.name.as_str()) {
            w.push(ParseWarning::QuotedToken(p.name.clone()));
        }
    }
    w
}

#[cfg(test)]
mod tests;
