//! Checks read like the scenarios they prove.

use crate::analysis::credentials::{Secret, SecretString};
use crate::analysis::digest::uri::{UriComparison, compare};
use crate::analysis::digest::{
    AuthenticatedRequest, Challenge, Credentials, Verdict, check_credentials, password_finding,
    select_challenge, stale_nonce, username_is_did, verify,
};
use crate::diagnosis::{Code, Severity};
use crate::time::Timestamp;

const T: Timestamp = Timestamp::from_nanos(1_000_000_000);

fn kamailio_challenge() -> Challenge {
    Challenge::parse("Digest realm=\"biloxi.com\", nonce=\"Zk9x1mYPcTp\", qop=\"auth\"").unwrap()
}

const REGISTER: AuthenticatedRequest<'static> = AuthenticatedRequest {
    method: "REGISTER",
    request_uri: "sip:biloxi.com",
    message: None,
    challenge_message: None,
};

fn answer(extra: &str) -> Credentials {
    let mut fields = vec![
        ("username", "\"bob\""),
        ("realm", "\"biloxi.com\""),
        ("nonce", "\"Zk9x1mYPcTp\""),
        ("uri", "\"sip:biloxi.com\""),
        ("response", "\"0123456789abcdef0123456789abcdef\""),
        ("qop", "auth"),
        ("nc", "00000001"),
        ("cnonce", "\"c1\""),
    ];
    for kv in extra.split('|').filter(|s| !s.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap();
        match fields.iter_mut().find(|(fk, _)| *fk == k) {
            Some(f) if v == "-" => f.1 = "",
            Some(f) => f.1 = v,
            None => fields.push((k, v)),
        }
    }
    let h: Vec<String> = fields
        .iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    Credentials::parse(&format!("Digest {}", h.join(", "))).unwrap()
}

fn codes(found: &[crate::diagnosis::Diagnosis]) -> Vec<Code> {
    found.iter().map(|d| d.code).collect()
}

#[test]
fn a_consistent_answer_raises_nothing() {
    assert!(check_credentials(T, &kamailio_challenge(), &answer(""), &REGISTER).is_empty());
}

#[test]
fn kamailio_challenges_client_answers_realm_asterisk_realm_mismatch_only() {
    let found = check_credentials(
        T,
        &kamailio_challenge(),
        &answer("realm=\"asterisk\""),
        &REGISTER,
    );
    assert_eq!(codes(&found), [Code::AuthRealmMismatch]);
    let d = &found[0];
    assert_eq!(d.severity, Severity::Error);
    assert!(d.summary.contains("\"asterisk\"") && d.summary.contains("\"biloxi.com\""));
    assert_eq!(d.evidence[0].value, "\"biloxi.com\"");
    assert_eq!(d.evidence[1].value, "\"asterisk\"");
    assert!(d.remedy.pjsip.contains("realm="));
}

#[test]
fn reused_old_nonce_is_a_nonce_mismatch() {
    let found = check_credentials(
        T,
        &kamailio_challenge(),
        &answer("nonce=\"old\""),
        &REGISTER,
    );
    assert_eq!(codes(&found), [Code::AuthNonceMismatch]);
    assert_eq!(found[0].evidence[1].value, "\"old\"");
}

#[test]
fn digest_uri_with_port_differs_from_request_uri_without() {
    let found = check_credentials(
        T,
        &kamailio_challenge(),
        &answer("uri=\"sip:biloxi.com:5060\""),
        &REGISTER,
    );
    assert_eq!(codes(&found), [Code::AuthUriMismatch]);
    assert!(
        found[0].summary.contains("port 5060 vs absent"),
        "{}",
        found[0].summary
    );
}

#[test]
fn digest_uri_differing_only_in_case_is_equivalent() {
    let req = AuthenticatedRequest {
        method: "REGISTER",
        request_uri: "sip:Bob@biloxi.com;transport=udp",
        ..REGISTER
    };
    let found = check_credentials(
        T,
        &kamailio_challenge(),
        &answer("uri=\"SIP:Bob@BILOXI.COM;Transport=UDP\""),
        &req,
    );
    assert!(found.is_empty(), "{found:?}");
}

#[test]
fn md5_answer_to_a_sha256_challenge_is_an_algorithm_mismatch() {
    let ch = Challenge::parse(
        "Digest realm=\"biloxi.com\", nonce=\"Zk9x1mYPcTp\", qop=\"auth\", algorithm=SHA-256",
    )
    .unwrap();
    let found = check_credentials(T, &ch, &answer("algorithm=MD5"), &REGISTER);
    assert_eq!(codes(&found), [Code::AuthAlgorithmMismatch]);
    assert!(found[0].summary.contains("MD5") && found[0].summary.contains("SHA-256"));
}

#[test]
fn qop_problems_are_algorithm_mismatches() {
    let ch = kamailio_challenge();
    let no_qop = answer("qop=-|nc=-|cnonce=-");
    assert_eq!(
        codes(&check_credentials(T, &ch, &no_qop, &REGISTER)),
        [Code::AuthAlgorithmMismatch]
    );
    let auth_int = answer("qop=auth-int");
    assert_eq!(
        codes(&check_credentials(T, &ch, &auth_int, &REGISTER)),
        [Code::AuthAlgorithmMismatch]
    );
    // qop offered as none, client sends qop=auth.
    let rfc2069 = Challenge::parse("Digest realm=\"biloxi.com\", nonce=\"Zk9x1mYPcTp\"").unwrap();
    assert_eq!(
        codes(&check_credentials(T, &rfc2069, &answer(""), &REGISTER)),
        [Code::AuthAlgorithmMismatch]
    );
    assert!(check_credentials(T, &rfc2069, &no_qop, &REGISTER).is_empty());
}

#[test]
fn everything_wrong_raises_each_finding_once() {
    let found = check_credentials(
        T,
        &kamailio_challenge(),
        &answer("realm=\"x\"|nonce=\"y\"|uri=\"sip:other\"|algorithm=SHA-256"),
        &REGISTER,
    );
    assert_eq!(
        codes(&found),
        [
            Code::AuthRealmMismatch,
            Code::AuthNonceMismatch,
            Code::AuthUriMismatch,
            Code::AuthAlgorithmMismatch
        ]
    );
}

#[test]
fn select_challenge_prefers_realm_and_algorithm() {
    let all = Challenge::parse_all(
        "Digest realm=\"biloxi.com\", nonce=\"1\", algorithm=SHA-256, \
         Digest realm=\"biloxi.com\", nonce=\"2\", algorithm=MD5, \
         Digest realm=\"other\", nonce=\"3\"",
    )
    .unwrap();
    assert_eq!(select_challenge(&all, &answer("")).unwrap().nonce, "2");
    assert_eq!(
        select_challenge(&all, &answer("algorithm=SHA-256"))
            .unwrap()
            .nonce,
        "1"
    );
    assert_eq!(
        select_challenge(&all, &answer("realm=\"other\""))
            .unwrap()
            .nonce,
        "3"
    );
    assert_eq!(
        select_challenge(&all, &answer("realm=\"nope\""))
            .unwrap()
            .nonce,
        "1"
    );
    assert!(select_challenge(&[], &answer("")).is_none());
}

#[test]
fn stale_nonce_reports_recovery() {
    let stale = Challenge::parse("Digest realm=\"r\", nonce=\"new\", stale=true").unwrap();
    assert!(stale_nonce(T, &kamailio_challenge(), Some(false)).is_none());
    let ok = stale_nonce(T, &stale, Some(true)).unwrap();
    assert_eq!(
        (ok.code, ok.severity),
        (Code::AuthStaleNonce, Severity::Info)
    );
    assert!(ok.summary.contains("succeeded"));
    let bad = stale_nonce(T, &stale, Some(false)).unwrap();
    assert_eq!(bad.severity, Severity::Warning);
    assert!(bad.summary.contains("did not recover"));
}

#[test]
fn password_verdicts_become_findings_without_revealing_secrets() {
    // RFC 2617 3.5 credentials, verified against the right and a wrong password.
    let creds = Credentials::parse(
        "Digest username=\"Mufasa\", realm=\"testrealm@host.com\", \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", uri=\"/dir/index.html\", qop=auth, \
         nc=00000001, cnonce=\"0a4f113b\", response=\"6629fae49393a05397450978507c4ef1\", \
         opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    let right = Secret::Password(SecretString::new("Circle Of Life"));
    let wrong = Secret::Password(SecretString::new("Circle of Life"));
    let v = verify(&creds, "GET", None, &right);
    let ok = password_finding(T, &creds, &v).unwrap();
    assert_eq!(
        (ok.code, ok.severity),
        (Code::AuthPasswordCorrect, Severity::Info)
    );
    let v = verify(&creds, "GET", None, &wrong);
    let bad = password_finding(T, &creds, &v).unwrap();
    assert_eq!(
        (bad.code, bad.severity),
        (Code::AuthPasswordMismatch, Severity::Error)
    );
    for d in [ok, bad] {
        let shown = format!("{d}\n{d:?}\n{}", serde_json::to_string(&d).unwrap());
        assert!(!shown.contains("6629fae4"), "response leaked: {shown}");
        assert!(!shown.contains("Circle"), "password leaked: {shown}");
    }
    let cannot = Verdict::CannotVerify(crate::analysis::digest::CannotVerify::BodyUnavailable);
    assert!(password_finding(T, &creds, &cannot).is_none());
}

#[test]
fn username_equal_to_the_did_is_flagged_only_for_numbers() {
    let d = username_is_did(T, "+442071234567", "+442071234567").unwrap();
    assert_eq!(d.code, Code::AuthUsernameIsDid);
    assert!(username_is_did(T, "442071234567", "442071234567").is_some());
    assert!(username_is_did(T, "alice", "alice").is_none());
    assert!(
        username_is_did(T, "1001", "1001").is_none(),
        "extensions are not DIDs"
    );
    assert!(username_is_did(T, "auth8812", "442071234567").is_none());
}

#[test]
fn uri_comparison_follows_rfc3261_19_1_4() {
    use UriComparison::*;
    assert_eq!(compare("sip:a@b.com", "sip:a@b.com"), Identical);
    assert_eq!(
        compare(
            "sip:%61lice@atlanta.com;transport=TCP",
            "sip:alice@AtLanTa.CoM;Transport=tcp"
        ),
        Equivalent
    );
    assert!(matches!(
        compare("sip:ALICE@atlanta.com", "sip:alice@atlanta.com"),
        Different(_)
    ));
    assert!(matches!(
        compare("sip:bob@biloxi.com", "sip:bob@biloxi.com:5060"),
        Different(_)
    ));
    assert!(matches!(
        compare("sip:bob@biloxi.com", "sips:bob@biloxi.com"),
        Different(_)
    ));
    assert!(matches!(
        compare("sip:bob@phone21.boxesbybob.com", "sip:bob@192.0.2.4"),
        Different(_)
    ));
    assert!(matches!(
        compare(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com?Subject=next%20meeting"
        ),
        Different(_)
    ));
    // Params only in one URI are ignored, except user/ttl/method/maddr.
    assert_eq!(
        compare("sip:carol@chicago.com", "sip:carol@chicago.com;newparam=5"),
        Equivalent
    );
    assert!(matches!(
        compare(
            "sip:carol@chicago.com",
            "sip:carol@chicago.com;maddr=239.255.255.1"
        ),
        Different(_)
    ));
    assert!(matches!(
        compare("sip:+1234@gw.com;user=phone", "sip:+1234@gw.com"),
        Different(_)
    ));
    assert_eq!(
        compare(
            "sip:biloxi.com;transport=tcp;method=REGISTER?to=sip:bob%40biloxi.com",
            "sip:biloxi.com;method=REGISTER;transport=tcp?to=sip:bob%40biloxi.com"
        ),
        Equivalent
    );
    assert_eq!(
        compare("sip:[2001:DB8::10]:5070", "sip:[2001:db8::10]:5070"),
        Equivalent
    );
    assert!(matches!(
        compare("sip:[2001:db8::10]", "sip:[2001:db8::10]:5060"),
        Different(_)
    ));
    assert_eq!(compare(" <sip:a@b> ", "sip:a@b"), Identical);
    assert!(matches!(compare("tel:+1234", "tel:+1235"), Different(_)));
    assert!(matches!(
        compare("/dir/index.html", "/dir/other.html"),
        Different(_)
    ));
    assert!(compare("/dir/index.html", "/dir/index.html").matches());
}

#[test]
fn diagnose_answer_ties_evidence_and_adds_the_password_verdict() {
    use crate::analysis::credentials::CredentialStore;
    use crate::analysis::digest::diagnose_answer;
    use crate::diagnosis::MessageRef;

    // draft-smith 3.3: bob answers biloxi.com's challenge with qop=auth.
    let challenges = Challenge::parse_all(
        "Digest realm=\"biloxi.com\", qop=\"auth,auth-int\", \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    let creds = Credentials::parse(
        "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\", \
         uri=\"sip:bob@biloxi.com\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
         response=\"89eb0059246c02b2f6ee02c7961d5ea3\", opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    let challenge_msg = MessageRef {
        at: Timestamp::from_nanos(1),
        label: "407 Proxy Authentication Required".into(),
    };
    let request_msg = MessageRef {
        at: Timestamp::from_nanos(2),
        label: "INVITE (CSeq 2)".into(),
    };
    let req = AuthenticatedRequest {
        method: "INVITE",
        request_uri: "sip:bob@biloxi.com:5060",
        message: Some(&request_msg),
        challenge_message: Some(&challenge_msg),
    };
    let right = CredentialStore::from_toml_str(
        "[[credential]]\nrealm = \"biloxi.com\"\nusername = \"bob\"\npassword = \"zanzibar\"\n",
    )
    .unwrap();
    let found = diagnose_answer(T, &challenges, &creds, &req, None, Some(&right));
    assert_eq!(
        codes(&found),
        [Code::AuthUriMismatch, Code::AuthPasswordCorrect]
    );
    assert!(
        found[0]
            .evidence
            .iter()
            .all(|e| e.message.as_ref() == Some(&request_msg))
    );
    assert!(
        found[1]
            .evidence
            .iter()
            .all(|e| e.message.as_ref() == Some(&request_msg))
    );

    let wrong = CredentialStore::from_toml_str(
        "[[credential]]\nusername = \"bob\"\npassword = \"zanzibaR\"\n",
    )
    .unwrap();
    let req = AuthenticatedRequest {
        request_uri: "sip:bob@biloxi.com",
        ..req
    };
    let found = diagnose_answer(T, &challenges, &creds, &req, None, Some(&wrong));
    assert_eq!(codes(&found), [Code::AuthPasswordMismatch]);
    // Without a store entry, a consistent answer raises nothing.
    assert!(diagnose_answer(T, &challenges, &creds, &req, None, None).is_empty());
    let other =
        CredentialStore::from_toml_str("[[credential]]\nusername = \"alice\"\npassword = \"x\"\n")
            .unwrap();
    assert!(diagnose_answer(T, &challenges, &creds, &req, None, Some(&other)).is_empty());

    // A realm mismatch ties the challenge side to the 407.
    let found = check_credentials(
        T,
        &challenges[0],
        &answer("realm=\"asterisk\""),
        &AuthenticatedRequest {
            request_uri: "sip:biloxi.com",
            ..req
        },
    );
    let realm = &found[0];
    assert_eq!(realm.evidence[0].message.as_ref(), Some(&challenge_msg));
    assert_eq!(realm.evidence[1].message.as_ref(), Some(&request_msg));
}
