//! Pure checks of a digest exchange, producing catalogue findings.
//!
//! The registration tracker pairs a challenge (401/407) with the request
//! that answers it and calls [`check_credentials`]; with a credentials file
//! it also calls [`super::verify`] and [`password_finding`].

use super::uri::{UriComparison, compare};
use super::{Challenge, Credentials, Verdict, verify};
use crate::analysis::credentials::CredentialStore;
use crate::diagnosis::{Code, Diagnosis, Evidence, MessageRef, Remedy, Severity};
use crate::time::Timestamp;

/// The request that carried the credentials, and where its parts were seen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AuthenticatedRequest<'a> {
    /// Request method (`REGISTER`, `INVITE`, ...).
    pub method: &'a str,
    /// The Request-URI from the start line.
    pub request_uri: &'a str,
    /// The request itself; evidence read from it is tied to it.
    pub message: Option<&'a MessageRef>,
    /// The 401/407 whose challenge is answered; evidence read from the
    /// challenge is tied to it.
    pub challenge_message: Option<&'a MessageRef>,
}

impl AuthenticatedRequest<'_> {
    fn seen_in_request(&self, name: &'static str, value: impl Into<String>) -> Evidence {
        tie(Evidence::new(name, value), self.message)
    }

    fn seen_in_challenge(&self, name: &'static str, value: impl Into<String>) -> Evidence {
        tie(Evidence::new(name, value), self.challenge_message)
    }
}

fn tie(mut e: Evidence, m: Option<&MessageRef>) -> Evidence {
    e.message = m.cloned();
    e
}

/// The challenge `creds` answer among those a 401/407 offered (RFC 8760
/// lets a server offer one per algorithm): same realm and algorithm, else
/// same realm, else the first.
pub(crate) fn select_challenge<'c>(
    challenges: &'c [Challenge],
    creds: &Credentials,
) -> Option<&'c Challenge> {
    challenges
        .iter()
        .find(|c| c.realm == creds.realm && c.algorithm() == creds.algorithm())
        .or_else(|| challenges.iter().find(|c| c.realm == creds.realm))
        .or_else(|| challenges.first())
}

fn quoted(s: &str) -> String {
    format!("\"{s}\"")
}

/// Checks `creds` against the `challenge` they answer and the `request`
/// carrying them: realm, nonce, digest uri vs Request-URI, algorithm and
/// qop (RFC 7616 §3.4, RFC 3261 §22.4). Returns one finding per problem,
/// none when the answer is consistent.
pub(crate) fn check_credentials(
    at: Timestamp,
    challenge: &Challenge,
    creds: &Credentials,
    request: &AuthenticatedRequest<'_>,
) -> Vec<Diagnosis> {
    let mut out = Vec::new();
    if creds.realm != challenge.realm {
        out.push(
            Diagnosis::new(
                Code::AuthRealmMismatch,
                at,
                format!(
                    "The {} answers realm {} but the server challenged for realm {}; the server \
                     cannot match these credentials.",
                    request.method,
                    quoted(&creds.realm),
                    quoted(&challenge.realm)
                ),
            )
            .with_evidence(request.seen_in_challenge("challenge realm", quoted(&challenge.realm)))
            .with_evidence(request.seen_in_request("credentials realm", quoted(&creds.realm))),
        );
    }
    if creds.nonce != challenge.nonce {
        out.push(
            Diagnosis::new(
                Code::AuthNonceMismatch,
                at,
                format!(
                    "The {} carries a nonce the preceding challenge did not issue: the client \
                     reused an older nonce or answered another server's challenge.",
                    request.method
                ),
            )
            .with_evidence(request.seen_in_challenge("challenge nonce", quoted(&challenge.nonce)))
            .with_evidence(request.seen_in_request("credentials nonce", quoted(&creds.nonce))),
        );
    }
    if let UriComparison::Different(reason) = compare(&creds.uri, request.request_uri) {
        out.push(
            Diagnosis::new(
                Code::AuthUriMismatch,
                at,
                format!(
                    "The digest uri is not the Request-URI ({reason}); servers that check it \
                     reject the credentials even with the right password."
                ),
            )
            .with_evidence(request.seen_in_request("digest uri", creds.uri.clone()))
            .with_evidence(request.seen_in_request("Request-URI", request.request_uri.to_owned())),
        );
    }
    if let Some(d) = algorithm_or_qop_mismatch(at, challenge, creds, request) {
        out.push(d);
    }
    out
}

fn algorithm_or_qop_mismatch(
    at: Timestamp,
    ch: &Challenge,
    creds: &Credentials,
    request: &AuthenticatedRequest<'_>,
) -> Option<Diagnosis> {
    let offered_qop = if ch.qop.is_empty() {
        "none (RFC 2069 form)".to_owned()
    } else {
        ch.qop
            .iter()
            .map(|q| q.as_str())
            .collect::<Vec<_>>()
            .join(",")
    };
    let used_qop = creds.qop.as_ref().map_or("none", |q| q.as_str());
    let problem = if ch.algorithm() != creds.algorithm() {
        format!(
            "The client answered with algorithm {} but the challenge asked for {}.",
            creds.algorithm(),
            ch.algorithm()
        )
    } else {
        match &creds.qop {
            None if !ch.qop.is_empty() => format!(
                "The challenge offered qop={offered_qop} but the client answered without qop \
                 (the old RFC 2069 form), which RFC 3261 22.4 forbids when qop is offered."
            ),
            Some(q) if !ch.qop.contains(q) => {
                format!("The client used qop={q} but the challenge offered {offered_qop}.")
            }
            _ => return None,
        }
    };
    Some(
        Diagnosis::new(Code::AuthAlgorithmMismatch, at, problem)
            .with_evidence(
                request.seen_in_challenge(
                    "challenge algorithm",
                    ch.algorithm
                        .as_ref()
                        .map_or_else(|| "absent (MD5)".to_owned(), |a| a.to_string()),
                ),
            )
            .with_evidence(
                request.seen_in_request(
                    "credentials algorithm",
                    creds
                        .algorithm
                        .as_ref()
                        .map_or_else(|| "absent (MD5)".to_owned(), |a| a.to_string()),
                ),
            )
            .with_evidence(request.seen_in_challenge("challenge qop", offered_qop))
            .with_evidence(request.seen_in_request("credentials qop", used_qop)),
    )
}

/// Everything the digest analysis can say about one answered challenge:
/// [`select_challenge`] among those offered, [`check_credentials`], and,
/// when `store` knows the account, the password verdict
/// ([`password_finding`]). `body` is the request body (only auth-int needs
/// it). Returns no finding for a consistent answer without a store entry.
pub(crate) fn diagnose_answer(
    at: Timestamp,
    challenges: &[Challenge],
    creds: &Credentials,
    request: &AuthenticatedRequest<'_>,
    body: Option<&[u8]>,
    store: Option<&CredentialStore>,
) -> Vec<Diagnosis> {
    let mut out = match select_challenge(challenges, creds) {
        Some(ch) => check_credentials(at, ch, creds, request),
        None => Vec::new(),
    };
    if let Some(secret) = store.and_then(|s| s.lookup(&creds.realm, &creds.username)) {
        let verdict = verify(creds, request.method, body, secret);
        if let Some(mut d) = password_finding(at, creds, &verdict) {
            for e in &mut d.evidence {
                e.message = request.message.cloned();
            }
            out.push(d);
        }
    }
    out
}

/// `auth.stale_nonce` for a challenge with `stale=true` (RFC 7616 §3.3):
/// the password was right, the nonce had expired. `client_recovered` says
/// whether the next attempt succeeded (`None` = not yet known).
pub(crate) fn stale_nonce(
    at: Timestamp,
    challenge: &Challenge,
    client_recovered: Option<bool>,
) -> Option<Diagnosis> {
    if !challenge.stale {
        return None;
    }
    let (tail, severity) = match client_recovered {
        Some(true) => (
            "The client retried with the new nonce and succeeded.",
            Severity::Info,
        ),
        Some(false) => (
            "The client did not recover with the new nonce.",
            Severity::Warning,
        ),
        None => (
            "Whether the client recovered is not yet known.",
            Severity::Info,
        ),
    };
    Some(
        Diagnosis::new(
            Code::AuthStaleNonce,
            at,
            format!(
                "The server said the nonce was stale (credentials right, nonce expired). {tail}"
            ),
        )
        .with_severity(severity)
        .with_evidence(Evidence::new("realm", quoted(&challenge.realm)))
        .with_evidence(Evidence::new("new nonce", quoted(&challenge.nonce)))
        .with_evidence(Evidence::new(
            "client recovered",
            client_recovered.map_or("unknown", |r| if r { "yes" } else { "no" }),
        )),
    )
}

/// The finding for a password [`Verdict`]: `auth.password_mismatch`
/// (definitive) or the informational `auth.password_correct`; `None` when
/// the response could not be checked (the reason is in the verdict).
pub(crate) fn password_finding(
    at: Timestamp,
    creds: &Credentials,
    verdict: &Verdict,
) -> Option<Diagnosis> {
    let who = [
        Evidence::new("username", quoted(&creds.username)),
        Evidence::new("realm", quoted(&creds.realm)),
        Evidence::new("algorithm", creds.algorithm().to_string()),
    ];
    let d = match verdict {
        Verdict::Match => Diagnosis::new(
            Code::AuthPasswordCorrect,
            at,
            format!(
                "The password in the credentials file for {} produces the client's response: \
                 the password is correct (should this request still be refused, the cause \
                 is not the password).",
                quoted(&creds.username)
            ),
        ),
        Verdict::MatchWithDeviation(dev) => Diagnosis::new(
            Code::AuthPasswordCorrect,
            at,
            format!(
                "The password in the credentials file for {} is correct, but the client {}; \
                 a server following RFC 7616 computes a different response and rejects it.",
                quoted(&creds.username),
                dev.describe()
            ),
        )
        .with_severity(Severity::Warning)
        .with_remedy(Remedy::for_client_deviation(dev.workaround())),
        Verdict::Mismatch => Diagnosis::new(
            Code::AuthPasswordMismatch,
            at,
            format!(
                "The client's response for {} in realm {} does not match the password in the \
                 credentials file: the client is configured with a different password.",
                quoted(&creds.username),
                quoted(&creds.realm)
            ),
        ),
        Verdict::CannotVerify(_) => return None,
    };
    Some(who.into_iter().fold(d, Diagnosis::with_evidence))
}

/// `auth.username_is_did`: the auth username equals the AOR user and looks
/// like a phone number (DID). Call only for a failing registration; many
/// providers issue a separate auth id.
pub(crate) fn username_is_did(
    at: Timestamp,
    auth_username: &str,
    aor_user: &str,
) -> Option<Diagnosis> {
    let digits = aor_user.strip_prefix('+').unwrap_or(aor_user);
    let looks_like_did = digits.len() >= 6 && digits.bytes().all(|b| b.is_ascii_digit());
    if auth_username != aor_user || !looks_like_did {
        return None;
    }
    Some(
        Diagnosis::new(
            Code::AuthUsernameIsDid,
            at,
            format!(
                "The registration authenticates as {}, which is also the phone number in the \
                 AOR; many providers expect a separate auth username.",
                quoted(auth_username)
            ),
        )
        .with_evidence(Evidence::new("auth username", quoted(auth_username)))
        .with_evidence(Evidence::new("AOR user", quoted(aor_user))),
    )
}
