//! Digest response computation (RFC 7616 §3.4.1–§3.4.3, RFC 2617 §3.2.2,
//! RFC 2069 for the qop-less form, RFC 8760 for SHA-256 in SIP) and
//! password verification.

use md5::Md5;
use sha2::{Digest, Sha256, Sha512_256};

use super::{Algorithm, Credentials, Qop};
use crate::analysis::credentials::Secret;

/// Everything a digest `response` is computed from, borrowed from the
/// credentials and the request they authenticate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct DigestParams<'a> {
    /// The effective algorithm (absent in the header = MD5).
    pub algorithm: Algorithm,
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    /// The digest `uri` exactly as sent (it is hashed verbatim).
    pub uri: &'a str,
    /// The request method (`REGISTER`, `INVITE`, ...); for SIP this is the
    /// CSeq method, which for ACK/CANCEL differs from nothing else.
    pub method: &'a str,
    pub qop: Option<&'a Qop>,
    /// nonce-count exactly as sent.
    pub nc: Option<&'a str>,
    pub cnonce: Option<&'a str>,
    /// Message body, needed only for `qop=auth-int`; `None` = not captured.
    pub body: Option<&'a [u8]>,
}

impl<'a> DigestParams<'a> {
    /// The inputs the server hashes for `creds` on a `method` request.
    pub(crate) fn from_credentials(
        creds: &'a Credentials,
        method: &'a str,
        body: Option<&'a [u8]>,
    ) -> DigestParams<'a> {
        DigestParams {
            algorithm: creds.algorithm(),
            username: &creds.username,
            realm: &creds.realm,
            nonce: &creds.nonce,
            uri: &creds.uri,
            method,
            qop: creds.qop.as_ref(),
            nc: creds.nc.as_deref(),
            cnonce: creds.cnonce.as_deref(),
            body,
        }
    }
}

/// Why a response could not be checked (not a verdict on the password).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub(crate) enum CannotVerify {
    #[error("digest algorithm `{0}` is not supported")]
    UnsupportedAlgorithm(String),
    #[error("qop `{0}` is not supported")]
    UnsupportedQop(String),
    #[error("credentials lack `{0}`, which qop/algorithm require")]
    MissingParam(&'static str),
    #[error("qop=auth-int needs the message body, which was not captured")]
    BodyUnavailable,
    #[error(
        "the stored HA1 is for {stored} but the client used {used}; store the password instead"
    )]
    Ha1AlgorithmMismatch { stored: Algorithm, used: Algorithm },
    #[error("the client hashed its username (userhash=true), so the account cannot be matched")]
    UserhashUnsupported,
}

/// Result of checking a response against a known secret.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// The secret produces the client's response: the password is right.
    Match,
    /// The secret produces the response only under a known client
    /// deviation from RFC 7616: the password is right, but a conformant
    /// server rejects the response.
    MatchWithDeviation(Deviation),
    /// It does not, even allowing for known client deviations: the client
    /// uses another password (or username).
    Mismatch,
    CannotVerify(CannotVerify),
}

/// A known way clients get the digest arithmetic wrong. Checked only after
/// the conformant computation failed, so a wrong password is never
/// explained away by one of these.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[allow(clippy::enum_variant_names)] // each says what the client ignored
pub(crate) enum Deviation {
    /// A `-sess` algorithm answered with the plain HA1 (SIPp 3.6 does this
    /// for MD5-sess).
    SessionIgnored,
    /// qop sent, but the response computed in the RFC 2069 form without
    /// nc/cnonce/qop.
    QopIgnored,
    /// qop=auth-int sent, but the body hash left out of HA2.
    BodyIgnored,
}

impl Deviation {
    /// Plain-language description for summaries.
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Deviation::SessionIgnored => {
                "answers a -sess algorithm with the plain (non-session) HA1"
            }
            Deviation::QopIgnored => "sends qop but computes the response in the old RFC 2069 form",
            Deviation::BodyIgnored => "sends qop=auth-int but leaves the body out of the hash",
        }
    }

    /// What the operator can change on the server side to interoperate.
    pub(crate) fn workaround(self) -> &'static str {
        match self {
            Deviation::SessionIgnored => "challenge with algorithm=MD5 (without -sess)",
            Deviation::QopIgnored => "challenge without qop",
            Deviation::BodyIgnored => "offer qop=\"auth\" only",
        }
    }
}

#[derive(Clone, Copy)]
pub(super) enum Hash {
    Md5,
    Sha256,
    Sha512_256,
}

impl Hash {
    fn of(algorithm: &Algorithm) -> Result<Hash, CannotVerify> {
        match algorithm.base() {
            Algorithm::Md5 => Ok(Hash::Md5),
            Algorithm::Sha256 => Ok(Hash::Sha256),
            Algorithm::Sha512_256 => Ok(Hash::Sha512_256),
            other => Err(CannotVerify::UnsupportedAlgorithm(
                other.as_str().to_owned(),
            )),
        }
    }

    /// Lower-case hex of H(parts joined by ':').
    pub(super) fn hex(self, parts: &[&[u8]]) -> String {
        fn run<D: Digest>(parts: &[&[u8]]) -> String {
            let mut d = D::new();
            for (i, p) in parts.iter().enumerate() {
                if i > 0 {
                    d.update(b":");
                }
                d.update(p);
            }
            hex::encode(d.finalize())
        }
        match self {
            Hash::Md5 => run::<Md5>(parts),
            Hash::Sha256 => run::<Sha256>(parts),
            Hash::Sha512_256 => run::<Sha512_256>(parts),
        }
    }
}

/// Computes the `response` (lower-case hex) for `params` with `secret`.
///
/// HA1 = H(username:realm:password), for `-sess` H(HA1:nonce:cnonce);
/// HA2 = H(method:uri), for auth-int H(method:uri:H(body));
/// response = H(HA1:nonce:nc:cnonce:qop:HA2), or H(HA1:nonce:HA2) without
/// qop (RFC 2069 compatibility, still common in SIP).
#[cfg(test)]
pub(crate) fn compute_response(
    params: &DigestParams<'_>,
    secret: &Secret,
) -> Result<String, CannotVerify> {
    compute(params, secret, None)
}

/// [`compute_response`], optionally reproducing a client `deviation`.
fn compute(
    params: &DigestParams<'_>,
    secret: &Secret,
    deviation: Option<Deviation>,
) -> Result<String, CannotVerify> {
    let hash = Hash::of(&params.algorithm)?;
    let mut ha1 = match secret {
        Secret::Password(p) => hash.hex(&[
            params.username.as_bytes(),
            params.realm.as_bytes(),
            p.expose_secret().as_bytes(),
        ]),
        Secret::Ha1 { ha1, algorithm } => {
            if *algorithm != params.algorithm.base() {
                return Err(CannotVerify::Ha1AlgorithmMismatch {
                    stored: algorithm.clone(),
                    used: params.algorithm.clone(),
                });
            }
            ha1.expose_secret().to_ascii_lowercase()
        }
    };
    let cnonce = || params.cnonce.ok_or(CannotVerify::MissingParam("cnonce"));
    if params.algorithm.is_session() && deviation != Some(Deviation::SessionIgnored) {
        ha1 = hash.hex(&[
            ha1.as_bytes(),
            params.nonce.as_bytes(),
            cnonce()?.as_bytes(),
        ]);
    }
    let ha2 = match params.qop {
        Some(Qop::AuthInt) if deviation != Some(Deviation::BodyIgnored) => {
            let body = params.body.ok_or(CannotVerify::BodyUnavailable)?;
            let body_hash = hash.hex(&[body]);
            hash.hex(&[
                params.method.as_bytes(),
                params.uri.as_bytes(),
                body_hash.as_bytes(),
            ])
        }
        Some(Qop::Unknown(q)) => return Err(CannotVerify::UnsupportedQop(q.clone())),
        _ => hash.hex(&[params.method.as_bytes(), params.uri.as_bytes()]),
    };
    Ok(match params.qop {
        Some(qop) if deviation != Some(Deviation::QopIgnored) => {
            let nc = params.nc.ok_or(CannotVerify::MissingParam("nc"))?;
            hash.hex(&[
                ha1.as_bytes(),
                params.nonce.as_bytes(),
                nc.as_bytes(),
                cnonce()?.as_bytes(),
                qop.as_str().as_bytes(),
                ha2.as_bytes(),
            ])
        }
        _ => hash.hex(&[ha1.as_bytes(), params.nonce.as_bytes(), ha2.as_bytes()]),
    })
}

/// Checks the client's response in `creds` against `secret`, as the server
/// would: from the values the client sent, for a `method` request with
/// `body` (needed only for auth-int). When the conformant computation does
/// not match, known client [`Deviation`]s are tried before calling it a
/// [`Verdict::Mismatch`], so a right password is never reported as wrong
/// because of a client bug.
///
/// The qop token is hashed in its canonical lower-case form; a client
/// sending `qop=AUTH` hashes its own spelling, which this does not model.
pub(crate) fn verify(
    creds: &Credentials,
    method: &str,
    body: Option<&[u8]>,
    secret: &Secret,
) -> Verdict {
    if creds.userhash {
        return Verdict::CannotVerify(CannotVerify::UserhashUnsupported);
    }
    let params = DigestParams::from_credentials(creds, method, body);
    let got = creds.response.expose_secret().trim();
    match compute(&params, secret, None) {
        Ok(expected) if got.eq_ignore_ascii_case(&expected) => Verdict::Match,
        Ok(_) => {
            let applicable = [
                (Deviation::SessionIgnored, params.algorithm.is_session()),
                (Deviation::QopIgnored, params.qop.is_some()),
                (Deviation::BodyIgnored, params.qop == Some(&Qop::AuthInt)),
            ];
            applicable
                .into_iter()
                .filter(|(_, applies)| *applies)
                .find(|(d, _)| {
                    compute(&params, secret, Some(*d)).is_ok_and(|r| got.eq_ignore_ascii_case(&r))
                })
                .map_or(Verdict::Mismatch, |(d, _)| Verdict::MatchWithDeviation(d))
        }
        Err(e) => Verdict::CannotVerify(e),
    }
}
