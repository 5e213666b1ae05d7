//! `WWW-Authenticate` / `Proxy-Authenticate` Digest challenges
//! (RFC 7616 §3.3, RFC 3261 §25.1 `digest-cln`).

use super::header::{AuthHeader, AuthParam, parse_auth_headers};
use super::{Algorithm, DigestError, ParseWarning, Qop, quoting_warnings, single_digest};

/// A Digest challenge as the server sent it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Challenge {
    pub realm: String,
    pub nonce: String,
    pub opaque: Option<String>,
    /// `None` when absent, which RFC 7616 §3.3 defines as MD5; see
    /// [`Challenge::algorithm`].
    pub algorithm: Option<Algorithm>,
    /// Offered qop values; empty means the RFC 2069 form (no qop).
    pub qop: Vec<Qop>,
    /// `stale=true`: the credentials were right but the nonce expired.
    pub stale: bool,
    pub domain: Option<String>,
    pub charset: Option<String>,
    pub userhash: bool,
    /// Params this parser does not know, kept in order.
    pub other: Vec<AuthParam>,
    pub warnings: Vec<ParseWarning>,
}

impl Challenge {
    /// Parses one Digest challenge from a header value. A value holding
    /// other schemes as well (`Basic realm=..., Digest ...`) yields its one
    /// Digest challenge; several Digest challenges are an error
    /// ([`DigestError::NotOne`]), use [`Challenge::parse_all`].
    pub(crate) fn parse(value: &str) -> Result<Challenge, DigestError> {
        Self::from_header(single_digest(parse_auth_headers(value)?)?)
    }

    /// Like [`Challenge::parse`] for raw header bytes.
    pub(crate) fn parse_bytes(value: &[u8]) -> Result<Challenge, DigestError> {
        Self::parse(std::str::from_utf8(value).map_err(|_| DigestError::NotUtf8)?)
    }

    /// All Digest challenges in one header value (RFC 8760 §2.4 servers may
    /// offer SHA-256 and MD5 side by side). Other schemes are skipped; a
    /// value with no Digest challenge is [`DigestError::UnsupportedScheme`].
    pub(crate) fn parse_all(value: &str) -> Result<Vec<Challenge>, DigestError> {
        let headers = parse_auth_headers(value)?;
        let first_scheme = headers[0].scheme.clone();
        let out: Vec<Challenge> = headers
            .into_iter()
            .filter(AuthHeader::is_digest)
            .map(Self::from_header)
            .collect::<Result<_, _>>()?;
        if out.is_empty() {
            return Err(DigestError::UnsupportedScheme(first_scheme));
        }
        Ok(out)
    }

    /// The effective algorithm: MD5 when the parameter is absent.
    pub(crate) fn algorithm(&self) -> Algorithm {
        self.algorithm.clone().unwrap_or(Algorithm::Md5)
    }

    fn from_header(h: AuthHeader) -> Result<Challenge, DigestError> {
        if !h.is_digest() {
            return Err(DigestError::UnsupportedScheme(h.scheme));
        }
        let mut warnings = h.warnings.clone();
        warnings.extend(quoting_warnings(
            &h,
            &["realm", "nonce", "opaque", "domain", "qop"],
            &["algorithm", "stale", "charset", "userhash"],
        ));
        let get = |name: &str| h.get(name).map(|p| p.value.clone());
        let missing = |param| DigestError::MissingParam {
            what: "challenge",
            param,
        };
        let realm = get("realm").ok_or(missing("realm"))?;
        let nonce = get("nonce").ok_or(missing("nonce"))?;
        let qop = get("qop")
            .map(|v| {
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(Qop::parse)
                    .collect()
            })
            .unwrap_or_default();
        let flag = |name: &str| {
            h.get(name)
                .is_some_and(|p| p.value.trim().eq_ignore_ascii_case("true"))
        };
        const KNOWN: &[&str] = &[
            "realm",
            "nonce",
            "opaque",
            "algorithm",
            "qop",
            "stale",
            "domain",
            "charset",
            "userhash",
        ];
        let mut other = Vec::new();
        for p in &h.params {
            if !KNOWN.contains(&p.name.as_str()) {
                other.push(p.clone());
            }
        }
        Ok(Challenge {
            realm,
            nonce,
            opaque: get("opaque"),
            algorithm: get("algorithm").map(|a| Algorithm::parse(&a)),
            qop,
            stale: flag("stale"),
            domain: get("domain"),
            charset: get("charset"),
            userhash: flag("userhash"),
            other,
            warnings,
        })
    }
}
