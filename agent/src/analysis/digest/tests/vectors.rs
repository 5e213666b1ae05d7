//! The published digest vectors (tests/fixtures/digest, see ATTRIBUTION.md):
//! every one must verify with its password, fail with another, and, where
//! the HA1 is the plain H(user:realm:pass), verify from a stored HA1.

use serde_json::Value;

use crate::analysis::credentials::{Secret, SecretString};
use crate::analysis::digest::compute::Hash;
use crate::analysis::digest::{
    Algorithm, CannotVerify, Credentials, DigestParams, Verdict, compute_response, verify,
};

const VECTORS: &str = include_str!("../../../../../tests/fixtures/digest/digest_vectors.json");

fn vectors() -> Vec<Value> {
    let doc: Value = serde_json::from_str(VECTORS).expect("fixture is JSON");
    doc["vectors"].as_array().expect("vectors array").clone()
}

fn s<'a>(v: &'a Value, k: &str) -> Option<&'a str> {
    v.get(k).and_then(Value::as_str)
}

/// Builds the Authorization header a client would send for vector `v`, so
/// the vectors exercise the parser as well as the arithmetic.
fn authorization(v: &Value) -> String {
    let mut h = format!(
        "Digest username=\"{}\", realm=\"{}\", nonce=\"{}\", uri=\"{}\", response=\"{}\"",
        s(v, "username").unwrap(),
        s(v, "realm").unwrap(),
        s(v, "nonce").unwrap(),
        s(v, "uri").unwrap(),
        s(v, "expected_response").unwrap(),
    );
    if let Some(a) = s(v, "algorithm") {
        h += &format!(", algorithm={a}");
    }
    if let Some(q) = s(v, "qop") {
        h += &format!(
            ", qop={q}, nc={}, cnonce=\"{}\"",
            s(v, "nc").unwrap(),
            s(v, "cnonce").unwrap()
        );
    }
    if let Some(o) = s(v, "opaque") {
        h += &format!(", opaque=\"{o}\"");
    }
    h
}

/// One vector: verifies with its password, not with another, not for
/// another method; the computed response is the published one.
fn check_vector(v: &Value) {
    let id = s(v, "id").unwrap();
    let creds = Credentials::parse(&authorization(v)).unwrap_or_else(|e| panic!("{id}: {e}"));
    let body = s(v, "entity_body").map(str::as_bytes);
    let method = s(v, "method").unwrap();
    let password = Secret::Password(SecretString::new(s(v, "password").unwrap()));
    let params = DigestParams::from_credentials(&creds, method, body);
    assert_eq!(
        compute_response(&params, &password).unwrap(),
        s(v, "expected_response").unwrap(),
        "{id}"
    );
    assert_eq!(
        verify(&creds, method, body, &password),
        Verdict::Match,
        "{id}"
    );
    let wrong = Secret::Password(SecretString::new(format!("{}x", s(v, "password").unwrap())));
    assert_eq!(
        verify(&creds, method, body, &wrong),
        Verdict::Mismatch,
        "{id}"
    );
    // The method is part of HA2: answering with the wrong one must fail.
    assert_eq!(
        verify(&creds, "OPTIONS", body, &password),
        Verdict::Mismatch,
        "{id}"
    );
}

#[test]
fn every_published_vector_verifies_with_its_password_only() {
    let all = vectors();
    assert!(all.len() >= 19, "fixture lost vectors: {}", all.len());
    all.iter().for_each(check_vector);
}

/// The shared reference set also holds John the Ripper / SIPcrack vectors,
/// which are not copied into the project (licence); use them when
/// `<workspace>/../shared` is present, as CI lays it out.
#[test]
fn shared_vectors_including_jtr_verify_when_present() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../shared/testdata/external/digest/digest_vectors.json");
    let Ok(text) = std::fs::read_to_string(&path) else {
        eprintln!("skipped: {} not present", path.display());
        return;
    };
    let doc: Value = serde_json::from_str(&text).unwrap();
    let all = doc["vectors"].as_array().unwrap();
    let jtr = all
        .iter()
        .filter(|v| s(v, "id").is_some_and(|id| id.starts_with("jtr-")))
        .count();
    assert!(jtr >= 8, "expected the JtR vectors in {}", path.display());
    all.iter().for_each(check_vector);
}

#[test]
fn vectors_verify_from_a_stored_ha1() {
    let mut checked = 0;
    for v in vectors() {
        let id = s(&v, "id").unwrap();
        let creds = Credentials::parse(&authorization(&v)).unwrap();
        if creds.algorithm().is_session() {
            continue; // computed_ha1 is the session HA1 there
        }
        let ha1 = Secret::Ha1 {
            ha1: SecretString::new(s(&v, "computed_ha1").unwrap().to_ascii_uppercase()),
            algorithm: creds.algorithm(),
        };
        let body = s(&v, "entity_body").map(str::as_bytes);
        assert_eq!(
            verify(&creds, s(&v, "method").unwrap(), body, &ha1),
            Verdict::Match,
            "{id}"
        );
        checked += 1;
    }
    assert!(checked >= 15, "only {checked} HA1 vectors checked");
}

#[test]
fn sipsorcery_full_authorization_header_parses_and_verifies() {
    let v = vectors()
        .into_iter()
        .find(|v| s(v, "id") == Some("sipsorcery-invite-qop-auth-opaque"))
        .unwrap();
    let creds = Credentials::parse(s(&v, "authorization_header").unwrap()).unwrap();
    assert_eq!(creds.uri, "sip:01135312222222@sip.aol.com;transport=udp");
    assert_eq!(creds.nc.as_deref(), Some("00000001"));
    assert_eq!(creds.nonce_count(), Some(1));
    assert_eq!(creds.opaque.as_deref(), Some("004533235332435434ffac663e"));
    assert!(creds.warnings.is_empty(), "{:?}", creds.warnings);
    let password = Secret::Password(SecretString::new("password"));
    assert_eq!(verify(&creds, "INVITE", None, &password), Verdict::Match);
}

#[test]
fn session_algorithms_need_cnonce_and_auth_int_needs_the_body() {
    let v = vectors()
        .into_iter()
        .find(|v| s(v, "id") == Some("smith-3.6-authint-md5sess"))
        .unwrap();
    let creds = Credentials::parse(&authorization(&v)).unwrap();
    let password = Secret::Password(SecretString::new("zanzibar"));
    assert_eq!(
        verify(&creds, "INVITE", None, &password),
        Verdict::CannotVerify(CannotVerify::BodyUnavailable)
    );
    // A different body is a mismatch: auth-int protects it.
    assert_eq!(
        verify(&creds, "INVITE", Some(b"v=0\r\n"), &password),
        Verdict::Mismatch
    );
    let mut no_cnonce = creds.clone();
    no_cnonce.cnonce = None;
    assert_eq!(
        verify(
            &no_cnonce,
            "INVITE",
            Some(s(&v, "entity_body").unwrap().as_bytes()),
            &password
        ),
        Verdict::CannotVerify(CannotVerify::MissingParam("cnonce"))
    );
}

#[test]
fn cannot_verify_reasons() {
    let base = "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"n\", uri=\"sip:biloxi.com\", response=\"00\"";
    let pw = Secret::Password(SecretString::new("zanzibar"));
    let c = Credentials::parse(&format!("{base}, algorithm=AKAv1-MD5")).unwrap();
    assert_eq!(
        verify(&c, "REGISTER", None, &pw),
        Verdict::CannotVerify(CannotVerify::UnsupportedAlgorithm("AKAv1-MD5".into()))
    );
    let c =
        Credentials::parse(&format!("{base}, qop=auth-conf, nc=00000001, cnonce=\"x\"")).unwrap();
    assert_eq!(
        verify(&c, "REGISTER", None, &pw),
        Verdict::CannotVerify(CannotVerify::UnsupportedQop("auth-conf".into()))
    );
    let c = Credentials::parse(&format!("{base}, qop=auth, cnonce=\"x\"")).unwrap();
    assert_eq!(
        verify(&c, "REGISTER", None, &pw),
        Verdict::CannotVerify(CannotVerify::MissingParam("nc"))
    );
    let c = Credentials::parse(&format!("{base}, algorithm=SHA-256")).unwrap();
    let md5_ha1 = Secret::Ha1 {
        ha1: SecretString::new("12af60467a33e8518da5c68bbff12b11"),
        algorithm: Algorithm::Md5,
    };
    assert!(matches!(
        verify(&c, "REGISTER", None, &md5_ha1),
        Verdict::CannotVerify(CannotVerify::Ha1AlgorithmMismatch { .. })
    ));
    let c = Credentials::parse(&format!("{base}, userhash=true")).unwrap();
    assert_eq!(
        verify(&c, "REGISTER", None, &pw),
        Verdict::CannotVerify(CannotVerify::UserhashUnsupported)
    );
}

#[test]
fn sha512_256_is_the_fips_truncated_hash_not_a_truncated_sha512() {
    // FIPS 180-4 example "abc" for SHA-512/256 (distinct initial values).
    assert_eq!(
        Hash::Sha512_256.hex(&[b"abc"]),
        "53048e2681941ef99b2e29b76b4c7dabe4c2d0c634fc6d46e0e2f13107e7af23"
    );
    // Round trip through compute/verify for the SHA-512-256-sess path.
    let mut c = Credentials::parse(
        "Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"x\", \
         algorithm=SHA-512-256-sess, qop=auth, nc=0000000a, cnonce=\"c\"",
    )
    .unwrap();
    let pw = Secret::Password(SecretString::new("p"));
    let expected =
        compute_response(&DigestParams::from_credentials(&c, "REGISTER", None), &pw).unwrap();
    assert_eq!(expected.len(), 64);
    let ha1 = Hash::Sha512_256.hex(&[b"u", b"r", b"p"]);
    let sess = Hash::Sha512_256.hex(&[ha1.as_bytes(), b"n", b"c"]);
    let ha2 = Hash::Sha512_256.hex(&[b"REGISTER", b"sip:r"]);
    let by_hand = Hash::Sha512_256.hex(&[
        sess.as_bytes(),
        b"n",
        b"0000000a",
        b"c",
        b"auth",
        ha2.as_bytes(),
    ]);
    assert_eq!(expected, by_hand);
    c.response = SecretString::new(expected.to_ascii_uppercase());
    assert_eq!(verify(&c, "REGISTER", None, &pw), Verdict::Match);
}

/// Recorded from SIPp v3.6.1 (`[authentication username=1001
/// password=pw-sipp]` in a UAC scenario) answering our challenge
/// `Digest realm="sipscope.test", nonce="n0nce", qop="auth-int",
/// algorithm=MD5-sess` to an empty-bodied REGISTER. SIPp echoes MD5-sess
/// but hashes the plain HA1.
const SIPP_MD5_SESS: &str = "Digest username=\"1001\",realm=\"sipscope.test\",cnonce=\"6b8b4567\",\
    nc=00000001,qop=auth-int,uri=\"sip:127.0.0.1:5999\",nonce=\"n0nce\",\
    response=\"e78a6f87805723fcc84a45396de0dea3\",algorithm=MD5-sess";

#[test]
fn sipp_md5_sess_bug_is_a_right_password_with_a_deviation_not_a_mismatch() {
    use crate::analysis::digest::{Deviation, password_finding};
    use crate::diagnosis::{Code, Severity};
    let creds = Credentials::parse(SIPP_MD5_SESS).unwrap();
    let right = Secret::Password(SecretString::new("pw-sipp"));
    let v = verify(&creds, "REGISTER", Some(b""), &right);
    assert_eq!(v, Verdict::MatchWithDeviation(Deviation::SessionIgnored));
    let d = password_finding(crate::time::Timestamp::default(), &creds, &v).unwrap();
    assert_eq!(
        (d.code, d.severity),
        (Code::AuthPasswordCorrect, Severity::Warning)
    );
    assert!(d.summary.contains("non-session"), "{}", d.summary);
    assert!(d.remedy.general.contains("algorithm=MD5 (without -sess)"));
    let wrong = Secret::Password(SecretString::new("pw-sipP"));
    assert_eq!(
        verify(&creds, "REGISTER", Some(b""), &wrong),
        Verdict::Mismatch
    );
}

#[test]
fn qop_and_body_deviations_are_recognised_only_with_the_right_password() {
    use crate::analysis::digest::Deviation;
    let ha1 = Hash::Md5.hex(&[b"bob", b"biloxi.com", b"zanzibar"]);
    let plain_ha2 = Hash::Md5.hex(&[b"INVITE", b"sip:bob@biloxi.com"]);
    // qop=auth sent, RFC 2069 form computed.
    let rfc2069 = Hash::Md5.hex(&[ha1.as_bytes(), b"n", plain_ha2.as_bytes()]);
    // qop=auth-int sent, body left out of HA2 but qop token kept.
    let no_body = Hash::Md5.hex(&[
        ha1.as_bytes(),
        b"n",
        b"00000001",
        b"c",
        b"auth-int",
        plain_ha2.as_bytes(),
    ]);
    let header = |qop: &str, response: &str| {
        Credentials::parse(&format!(
            "Digest username=\"bob\", realm=\"biloxi.com\", nonce=\"n\", uri=\"sip:bob@biloxi.com\", \
             qop={qop}, nc=00000001, cnonce=\"c\", response=\"{response}\""
        ))
        .unwrap()
    };
    let right = Secret::Password(SecretString::new("zanzibar"));
    let wrong = Secret::Password(SecretString::new("zanzibaR"));
    let c = header("auth", &rfc2069);
    assert_eq!(
        verify(&c, "INVITE", None, &right),
        Verdict::MatchWithDeviation(Deviation::QopIgnored)
    );
    assert_eq!(verify(&c, "INVITE", None, &wrong), Verdict::Mismatch);
    let c = header("auth-int", &no_body);
    assert_eq!(
        verify(&c, "INVITE", Some(b"v=0\r\n"), &right),
        Verdict::MatchWithDeviation(Deviation::BodyIgnored)
    );
    assert_eq!(
        verify(&c, "INVITE", Some(b"v=0\r\n"), &wrong),
        Verdict::Mismatch
    );
}
