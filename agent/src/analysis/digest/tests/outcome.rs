//! Server outcomes: re-challenge, loops, 403.

use crate::analysis::digest::{
    Challenge, Credentials, challenge_loop, forbidden_after_auth, rechallenged,
};
use crate::diagnosis::{Code, Severity};
use crate::time::Timestamp;

const T: Timestamp = Timestamp::from_nanos(7);

fn heplify_ipip_answer() -> Credentials {
    // heplify ipip0 capture: user 1154 answers realm 157.161.10.73 and is
    // challenged again, three times, with the same response.
    Credentials::parse(
        "Digest username=\"1154\",realm=\"157.161.10.73\",nonce=\"ab1XJmm9VfqJWXWUxRAskN6H0saIwGH/\",\
         uri=\"sip:157.161.10.73:5060\",response=\"60069c764334e8abda35a107ee81a267\",algorithm=MD5",
    )
    .unwrap()
}

#[test]
fn a_second_plain_challenge_means_wrong_credentials() {
    let next =
        Challenge::parse("Digest realm=\"157.161.10.73\", nonce=\"fresh\", algorithm=MD5").unwrap();
    let d = rechallenged(T, &heplify_ipip_answer(), &next);
    assert_eq!((d.code, d.severity), (Code::AuthRejected, Severity::Error));
    assert!(d.summary.contains("\"1154\""));
    let names: Vec<_> = d.evidence.iter().map(|e| e.name.as_ref()).collect();
    assert_eq!(names, ["auth username", "realm"]);
    assert!(!format!("{d}{d:?}").contains("60069c76"), "response leaked");
}

#[test]
fn a_second_challenge_for_another_realm_says_so() {
    let next = Challenge::parse("Digest realm=\"sip.provider.example\", nonce=\"x\"").unwrap();
    let d = rechallenged(T, &heplify_ipip_answer(), &next);
    assert_eq!(d.code, Code::AuthRejected);
    assert_eq!(d.evidence[2].value, "\"sip.provider.example\"");
}

#[test]
fn a_stale_rechallenge_is_not_a_rejection() {
    let next =
        Challenge::parse("Digest realm=\"157.161.10.73\", nonce=\"fresh\", stale=TRUE").unwrap();
    let d = rechallenged(T, &heplify_ipip_answer(), &next);
    assert_eq!((d.code, d.severity), (Code::AuthStaleNonce, Severity::Info));
}

#[test]
fn loops_and_forbidden_carry_their_counts_and_warning() {
    let d = challenge_loop(T, &heplify_ipip_answer(), 3);
    assert_eq!(d.code, Code::AuthChallengeLoop);
    assert!(d.summary.contains("3 times"));
    assert_eq!(d.evidence.last().unwrap().value, "3");
    let d = forbidden_after_auth(
        T,
        &heplify_ipip_answer(),
        403,
        "Forbidden",
        Some("399 sip.provider.example \"Source IP not allowed\""),
    );
    assert_eq!(
        (d.code, d.severity),
        (Code::AuthForbiddenAfterAuth, Severity::Error)
    );
    assert!(d.summary.starts_with("The server answered 403 Forbidden"));
    assert_eq!(d.evidence.last().unwrap().name, "Warning");
    assert!(
        forbidden_after_auth(T, &heplify_ipip_answer(), 403, "Forbidden", None)
            .evidence
            .iter()
            .all(|e| e.name != "Warning")
    );
}
