//! Findings about what the server did with the credentials: challenged
//! again, kept challenging, or answered 403. The registration tracker
//! decides when these apply (it sees the sequence of transactions); the
//! wording and evidence live here so every path says the same thing.

use super::{Challenge, Credentials};
use crate::diagnosis::{Code, Diagnosis, Evidence, Severity};
use crate::time::Timestamp;

fn who(creds: &Credentials) -> [Evidence; 2] {
    [
        Evidence::new("auth username", format!("\"{}\"", creds.username)),
        Evidence::new("realm", format!("\"{}\"", creds.realm)),
    ]
}

/// The request carrying `creds` was answered by another challenge `next`
/// (RFC 3261 §22.2/§22.3). With `stale=true` the password was right and
/// only the nonce expired (`auth.stale_nonce`, the client should simply
/// retry); otherwise the credentials were refused (`auth.rejected`).
pub(crate) fn rechallenged(at: Timestamp, creds: &Credentials, next: &Challenge) -> Diagnosis {
    if next.stale {
        return Diagnosis::new(
            Code::AuthStaleNonce,
            at,
            "The server answered the credentials with a new challenge marked stale=true: the \
             password was accepted but the nonce had expired; the client should retry at once \
             with the new nonce.",
        )
        .with_severity(Severity::Info)
        .with_evidence(Evidence::new("new nonce", format!("\"{}\"", next.nonce)));
    }
    let mut d = Diagnosis::new(
        Code::AuthRejected,
        at,
        format!(
            "The server challenged again after the client answered as \"{}\" in realm \"{}\": \
             the username or password is wrong.",
            creds.username, creds.realm
        ),
    );
    for e in who(creds) {
        d = d.with_evidence(e);
    }
    if next.realm != creds.realm {
        d = d.with_evidence(Evidence::new(
            "realm of the new challenge",
            format!("\"{}\"", next.realm),
        ));
    }
    d
}

/// The same rejection repeated `rejections` times: the client keeps
/// sending credentials that cannot work (an infinite 401 loop, which
/// providers often punish by blocking the source IP).
pub(crate) fn challenge_loop(at: Timestamp, creds: &Credentials, rejections: u32) -> Diagnosis {
    let mut d = Diagnosis::new(
        Code::AuthChallengeLoop,
        at,
        format!(
            "The credentials of \"{}\" in realm \"{}\" were refused {rejections} times in a row \
             and the client keeps retrying; fix them before the provider blocks this address.",
            creds.username, creds.realm
        ),
    );
    for e in who(creds) {
        d = d.with_evidence(e);
    }
    d.with_evidence(Evidence::new("rejections", rejections.to_string()))
}

/// A 403 (or other final refusal, `status`) to a request that carried
/// `creds`. The reason phrase and any Warning header (RFC 3261 §20.43)
/// often name the cause, so both go into the evidence.
pub(crate) fn forbidden_after_auth(
    at: Timestamp,
    creds: &Credentials,
    status: u16,
    reason: &str,
    warning: Option<&str>,
) -> Diagnosis {
    let mut d = Diagnosis::new(
        Code::AuthForbiddenAfterAuth,
        at,
        format!(
            "The server answered {status} {reason} to a request authenticated as \"{}\": it \
             understood the credentials but refuses this account or source.",
            creds.username
        ),
    );
    for e in who(creds) {
        d = d.with_evidence(e);
    }
    d = d.with_evidence(Evidence::new("status", format!("{status} {reason}")));
    if let Some(w) = warning {
        d = d.with_evidence(Evidence::new("Warning", w.to_owned()));
    }
    d
}
