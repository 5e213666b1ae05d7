//! `Authorization` / `Proxy-Authorization` Digest credentials
//! (RFC 7616 §3.4, RFC 3261 §25.1 `digest-response`).

use super::header::{AuthHeader, AuthParam, parse_auth_headers};
use super::{Algorithm, DigestError, ParseWarning, Qop, quoting_warnings, single_digest};
use crate::analysis::credentials::SecretString;

/// Digest credentials as the client sent them.
///
/// `response` is a [`SecretString`]: Debug, Display and Serialize never
/// show it (a digest response can be brute-forced offline).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Credentials {
    /// The auth username (or its hash when `userhash` is true).
    pub username: String,
    pub realm: String,
    pub nonce: String,
    /// The `digest-uri`; should equal the Request-URI (RFC 3261 §22.4).
    pub uri: String,
    pub response: SecretString,
    /// `None` when absent, which means MD5; see [`Credentials::algorithm`].
    pub algorithm: Option<Algorithm>,
    pub cnonce: Option<String>,
    /// The nonce-count exactly as sent (it is hashed verbatim); see
    /// [`Credentials::nonce_count`].
    pub nc: Option<String>,
    pub qop: Option<Qop>,
    pub opaque: Option<String>,
    pub userhash: bool,
    /// Params this parser does not know, kept in order.
    pub other: Vec<AuthParam>,
    pub warnings: Vec<ParseWarning>,
}

impl Credentials {
    /// Parses the Digest credentials of one header value.
    pub(crate) fn parse(value: &str) -> Result<Credentials, DigestError> {
        Self::from_header(single_digest(parse_auth_headers(value)?)?)
    }

    /// Like [`Credentials::parse`] for raw header bytes.
    #[cfg(test)]
    pub(crate) fn parse_bytes(value: &[u8]) -> Result<Credentials, DigestError> {
        Self::parse(std::str::from_utf8(value).map_err(|_| DigestError::NotUtf8)?)
    }

    /// The effective algorithm: MD5 when the parameter is absent.
    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm.clone().unwrap_or(Algorithm::Md5)
    }

    /// `nc` as a number: 8 hex digits (`0000000a` is 10), RFC 7616 §3.4.
    pub(crate) fn nonce_count(&self) -> Option<u32> {
        let nc = self.nc.as_deref()?;
        if nc.is_empty() || nc.len() > 8 {
            return None;
        }
        u32::from_str_radix(nc, 16).ok()
    }

    fn from_header(h: AuthHeader) -> Result<Credentials, DigestError> {
        if !h.is_digest() {
            return Err(DigestError::UnsupportedScheme(h.scheme));
        }
        let mut warnings = h.warnings.clone();
        warnings.extend(quoting_warnings(
            &h,
            &[
                "username", "realm", "nonce", "uri", "response", "cnonce", "opaque",
            ],
            &["algorithm", "qop", "nc", "userhash"],
        ));
        let get = |name: &str| h.get(name).map(|p| p.value.clone());
        let missing = |param| DigestError::MissingParam {
            what: "credentials",
            param,
        };
        let nc = get("nc");
        if let Some(v) = &nc
            && (v.len() != 8 || !v.bytes().all(|b| b.is_ascii_hexdigit()))
        {
            warnings.push(ParseWarning::MalformedNc(v.clone()));
        }
        const KNOWN: &[&str] = &[
            "username",
            "realm",
            "nonce",
            "uri",
            "response",
            "algorithm",
            "cnonce",
            "nc",
            "qop",
            "opaque",
            "userhash",
        ];
        let other = h
            .params
            .iter()
            .filter(|p| !KNOWN.contains(&p.name.as_str()))
            .cloned()
            .collect();
        Ok(Credentials {
            username: get("username").ok_or(missing("username"))?,
            realm: get("realm").ok_or(missing("realm"))?,
            nonce: get("nonce").ok_or(missing("nonce"))?,
            uri: get("uri").ok_or(missing("uri"))?,
            response: SecretString::new(get("response").ok_or(missing("response"))?),
            algorithm: get("algorithm").map(|a| Algorithm::parse(&a)),
            cnonce: get("cnonce"),
            nc,
            qop: get("qop").map(|q| Qop::parse(&q)),
            opaque: get("opaque"),
            userhash: h
                .get("userhash")
                .is_some_and(|p| p.value.trim().eq_ignore_ascii_case("true")),
            other,
            warnings,
        })
    }
}
