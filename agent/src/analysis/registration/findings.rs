//! Wording and evidence of the registration findings the tracker raises
//! itself (`reg.rejected`, `reg.expired`, `reg.flapping`); the digest and
//! NAT findings come from [`crate::analysis::digest`] and
//! [`crate::analysis::nat`].

use std::time::Duration;

use crate::diagnosis::{Code, Diagnosis, Evidence, MessageRef};
use crate::time::Timestamp;

use super::Binding;

fn binding_evidence(d: Diagnosis, b: &Binding) -> Diagnosis {
    let d = d.with_evidence(Evidence::new("AOR", b.aor.clone()));
    match &b.contact {
        Some(c) => d.with_evidence(Evidence::new("Contact", c.clone())),
        None => d,
    }
}

/// `reg.rejected`: a final error to a REGISTER other than a challenge or
/// a 403 to credentials (RFC 3261 §10.3 steps 1-3: wrong domain, an
/// address not allowed, an unknown account; a 5xx: the registrar itself is
/// in trouble, RFC 3261 §21.5). The Warning header (§20.43) and reason
/// phrase often say which, so both are evidence. `authenticated`: the
/// refused REGISTER carried credentials.
pub(super) fn rejected(
    binding: &Binding,
    request_uri: Option<&str>,
    status: u16,
    reason: &str,
    warning: Option<&str>,
    response: &MessageRef,
    authenticated: bool,
) -> Diagnosis {
    let aor = &binding.aor;
    let text = if status >= 500 {
        format!(
            "The registrar answered the REGISTER for {aor} with {status} {reason}: the server \
             (or the service behind it) is in trouble or overloaded, not the account; the \
             client is not registered until it retries and succeeds."
        )
    } else if authenticated {
        format!(
            "The registrar refused the authenticated REGISTER for {aor} with {status} \
             {reason}: it does not serve this account, domain or source address here."
        )
    } else {
        format!(
            "The registrar refused the REGISTER for {aor} with {status} {reason} without \
             asking for credentials: it does not accept this account, domain or source \
             address here (or wants the provider's outbound proxy)."
        )
    };
    let mut d = Diagnosis::new(Code::RegRejected, response.at, text).with_evidence(
        Evidence::new("status", format!("{status} {reason}"))
            .in_message(response.at, response.label.clone()),
    );
    if let Some(w) = warning {
        d = d.with_evidence(
            Evidence::new("Warning", w.to_owned()).in_message(response.at, response.label.clone()),
        );
    }
    if let Some(u) = request_uri {
        d = d.with_evidence(Evidence::new("Request-URI", u.to_owned()));
    }
    binding_evidence(d, binding)
}

/// `reg.expired`: the registrar granted `granted` seconds at `since` and no
/// refresh reached it before `expired_at` (RFC 3261 §10.2.1: the binding is
/// gone, calls to the AOR no longer reach the contact).
pub(super) fn expired(
    binding: &Binding,
    granted: u32,
    since: Timestamp,
    expired_at: Timestamp,
) -> Diagnosis {
    let d = Diagnosis::new(
        Code::RegExpired,
        expired_at,
        format!(
            "The registration of {} expired at {expired_at}: the registrar granted {granted} s \
             at {since} and no refresh followed, so incoming calls no longer reach this \
             contact.",
            binding.aor
        ),
    )
    .with_evidence(Evidence::new("granted expiry", format!("{granted} s")))
    .with_evidence(Evidence::new("registered at", since.to_string()));
    binding_evidence(d, binding)
}

/// `reg.flapping`: `changes` alternations between success and failure
/// within `window`.
pub(super) fn flapping(
    binding: &Binding,
    at: Timestamp,
    changes: u32,
    window: Duration,
    history: &str,
) -> Diagnosis {
    let d = Diagnosis::new(
        Code::RegFlapping,
        at,
        format!(
            "The registration of {} changed between success and failure {changes} times \
             within {} s.",
            binding.aor,
            window.as_secs()
        ),
    )
    .with_evidence(Evidence::new("outcomes", history.to_owned()));
    binding_evidence(d, binding)
}
