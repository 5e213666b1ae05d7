//! Parser edge cases: what real user agents send, and what they must not
//! be able to do to us.

use crate::analysis::digest::{
    Algorithm, Challenge, Credentials, DigestError, MAX_HEADER_LEN, MAX_PARAMS, ParseWarning, Qop,
    parse_auth_headers,
};

#[test]
fn rfc2617_challenge() {
    let c = Challenge::parse(
        "Digest\r\n realm=\"testrealm@host.com\",\r\n qop=\"auth,auth-int\",\r\n \
         nonce=\"dcd98b7102dd2f0e8b11d0f600bfb0c093\",\r\n opaque=\"5ccc069c403ebaf9f0171e9517f40e41\"",
    )
    .unwrap();
    assert_eq!(c.realm, "testrealm@host.com");
    assert_eq!(c.qop, vec![Qop::Auth, Qop::AuthInt]);
    assert_eq!(c.nonce, "dcd98b7102dd2f0e8b11d0f600bfb0c093");
    assert_eq!(
        c.opaque.as_deref(),
        Some("5ccc069c403ebaf9f0171e9517f40e41")
    );
    assert_eq!(c.algorithm, None);
    assert_eq!(c.algorithm(), Algorithm::Md5);
    assert!(!c.stale);
    assert!(c.warnings.is_empty());
}

#[test]
fn names_and_scheme_are_case_insensitive_and_values_may_be_bare() {
    let c = Challenge::parse(
        "DIGEST REALM=asterisk,NONCE=5d8f1a2b,Algorithm=md5-SESS,STALE=TRUE,QoP=auth",
    )
    .unwrap();
    assert_eq!(c.realm, "asterisk");
    assert_eq!(c.nonce, "5d8f1a2b");
    assert_eq!(c.algorithm, Some(Algorithm::Md5Sess));
    assert!(c.stale);
    assert_eq!(c.qop, vec![Qop::Auth]);
    assert!(
        c.warnings
            .contains(&ParseWarning::UnquotedValue("realm".into()))
    );
    assert!(
        c.warnings
            .contains(&ParseWarning::UnquotedValue("nonce".into()))
    );
}

#[test]
fn nc_is_eight_hex_digits_not_decimal() {
    // rsip parses nc as a decimal u8 and fails on this; we must not.
    let c = Credentials::parse(
        "Digest username=\"1001\", realm=\"asterisk\", nonce=\"abc\", uri=\"sip:pbx\", \
         response=\"0123456789abcdef0123456789abcdef\", qop=auth, nc=0000000a, cnonce=\"x\"",
    )
    .unwrap();
    assert_eq!(c.nc.as_deref(), Some("0000000a"));
    assert_eq!(c.nonce_count(), Some(10));
    assert!(c.warnings.is_empty(), "{:?}", c.warnings);
    let c = Credentials::parse(
        "Digest username=\"a\",realm=\"r\",nonce=\"n\",uri=\"sip:r\",response=\"0\",nc=FFFFFFFF",
    )
    .unwrap();
    assert_eq!(c.nonce_count(), Some(u32::MAX));
}

#[test]
fn quoted_nc_and_qop_are_tolerated_but_reported() {
    // sngrep's aaa.pcap: nc="00000001" without qop (non-conformant).
    let c = Credentials::parse(
        "Digest username=\"voi18063\",realm=\"sip.cybercity.dk\",uri=\"sip:192.168.1.2\",\
         nonce=\"1701b22972b90f440c3e4eb250842bb\",opaque=\"1701a1351f70795\",nc=\"00000001\",\
         response=\"80fc6b54cbc6f2ef18d5d3dbd3a3e1e5\"",
    )
    .unwrap();
    assert_eq!(c.nonce_count(), Some(1));
    assert_eq!(c.qop, None);
    assert!(c.warnings.contains(&ParseWarning::QuotedToken("nc".into())));
}

#[test]
fn malformed_nc_is_kept_and_reported() {
    let c = Credentials::parse(
        "Digest username=\"a\",realm=\"r\",nonce=\"n\",uri=\"sip:r\",response=\"0\",qop=auth,nc=1,cnonce=\"c\"",
    )
    .unwrap();
    assert_eq!(c.nc.as_deref(), Some("1"));
    assert!(c.warnings.contains(&ParseWarning::MalformedNc("1".into())));
    let c = Credentials::parse(
        "Digest username=\"a\",realm=\"r\",nonce=\"n\",uri=\"sip:r\",response=\"0\",nc=zz",
    )
    .unwrap();
    assert_eq!(c.nonce_count(), None);
}

#[test]
fn duplicate_params_keep_the_first_and_are_reported() {
    let c = Challenge::parse("Digest realm=\"a\", nonce=\"1\", realm=\"b\"").unwrap();
    assert_eq!(c.realm, "a");
    assert!(
        c.warnings
            .contains(&ParseWarning::DuplicateParam("realm".into()))
    );
}

#[test]
fn missing_commas_whitespace_and_empty_elements_are_tolerated() {
    let c = Challenge::parse("  Digest  realm=\"a\"  nonce=\"1\" ,, ,\topaque=\"o\" , ").unwrap();
    assert_eq!((c.realm.as_str(), c.nonce.as_str()), ("a", "1"));
    assert_eq!(c.opaque.as_deref(), Some("o"));
    assert!(c.warnings.contains(&ParseWarning::MissingComma {
        before: "nonce".into()
    }));
}

#[test]
fn quoted_pairs_are_unescaped() {
    let c =
        Challenge::parse(r#"Digest realm="a \"quoted\" realm\\", nonce="n,with,commas""#).unwrap();
    assert_eq!(c.realm, r#"a "quoted" realm\"#);
    assert_eq!(c.nonce, "n,with,commas");
}

#[test]
fn unknown_algorithm_and_params_are_kept() {
    let c = Challenge::parse(
        "Digest realm=\"ims.example\", nonce=\"bm9uY2U=\", algorithm=AKAv1-MD5, ik=\"00ff\", x-vendor=7",
    )
    .unwrap();
    assert_eq!(c.algorithm, Some(Algorithm::Unknown("AKAv1-MD5".into())));
    let names: Vec<_> = c.other.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["ik", "x-vendor"]);
    assert_eq!(c.other[1].value, "7");
    assert!(!c.other[1].quoted);
}

#[test]
fn unquoted_base64_nonce_and_uri_keep_their_equals_and_colons() {
    let c = Credentials::parse(
        "Digest username=bob, realm=biloxi.com, nonce=YWJj+/==, uri=sip:bob@biloxi.com:5060, response=00",
    )
    .unwrap();
    assert_eq!(c.nonce, "YWJj+/==");
    assert_eq!(c.uri, "sip:bob@biloxi.com:5060");
}

#[test]
fn several_challenges_in_one_value() {
    let v = "Digest realm=\"r\", nonce=\"1\", algorithm=SHA-256, qop=\"auth\", \
             Digest realm=\"r\", nonce=\"2\", algorithm=MD5, qop=\"auth\"";
    let all = Challenge::parse_all(v).unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].algorithm(), Algorithm::Sha256);
    assert_eq!(all[1].nonce, "2");
    assert_eq!(Challenge::parse(v), Err(DigestError::NotOne(2)));
    // Other schemes next to Digest are skipped.
    let c = Challenge::parse("Basic realm=\"x\", Digest realm=\"y\", nonce=\"z\"").unwrap();
    assert_eq!(c.realm, "y");
    let c = Challenge::parse("Negotiate, Digest realm=\"y\", nonce=\"z\"").unwrap();
    assert_eq!(c.nonce, "z");
}

#[test]
fn unknown_scheme_is_a_clear_error() {
    // RFC 4475 3.3.7 (regaut01): REGISTER with an unknown Authorization scheme.
    let err = Credentials::parse("NoOneKnowsThisScheme opaque-data=here").unwrap_err();
    assert_eq!(
        err,
        DigestError::UnsupportedScheme("NoOneKnowsThisScheme".into())
    );
    assert!(err.to_string().contains("not Digest"));
    let h = parse_auth_headers("NoOneKnowsThisScheme opaque-data=here").unwrap();
    assert_eq!(h[0].get("opaque-data").unwrap().value, "here");
}

#[test]
fn missing_required_params_name_the_param() {
    assert_eq!(
        Challenge::parse("Digest realm=\"r\""),
        Err(DigestError::MissingParam {
            what: "challenge",
            param: "nonce"
        })
    );
    assert_eq!(
        Credentials::parse("Digest username=\"u\", realm=\"r\", nonce=\"n\", uri=\"sip:r\""),
        Err(DigestError::MissingParam {
            what: "credentials",
            param: "response"
        })
    );
    let e = Credentials::parse("Digest realm=\"r\"").unwrap_err();
    assert!(e.to_string().contains("`username`"), "{e}");
}

#[test]
fn malformed_input_is_an_error_not_a_panic() {
    assert_eq!(parse_auth_headers(""), Err(DigestError::Empty));
    assert_eq!(parse_auth_headers(" , "), Err(DigestError::Empty));
    assert!(matches!(
        Challenge::parse("Digest realm=\"never closed, nonce=1"),
        Err(DigestError::UnterminatedQuote { ref param, .. }) if param == "realm"
    ));
    assert!(matches!(
        Challenge::parse("\"Digest\" realm=a"),
        Err(DigestError::ExpectedScheme { at: 0, found: '"' })
    ));
    assert!(matches!(
        Challenge::parse("Digest realm=a, =b"),
        Err(DigestError::ExpectedParamName { found: '=', .. })
    ));
    assert!(matches!(
        Challenge::parse("Digest realm=a, \u{e9}t\u{e9}=b"),
        Err(DigestError::ExpectedParamName {
            found: '\u{e9}',
            ..
        })
    ));
    assert_eq!(
        Challenge::parse_bytes(b"Digest realm=\"\xff\", nonce=1"),
        Err(DigestError::NotUtf8)
    );
    assert_eq!(
        Credentials::parse("Digest"),
        Err(DigestError::MissingParam {
            what: "credentials",
            param: "username"
        })
    );
}

#[test]
fn huge_headers_are_refused_with_a_bound() {
    let nonce = "a".repeat(MAX_HEADER_LEN);
    let err = Challenge::parse(&format!("Digest realm=\"r\", nonce=\"{nonce}\"")).unwrap_err();
    assert!(matches!(
        err,
        DigestError::TooLong {
            max: MAX_HEADER_LEN,
            ..
        }
    ));
    // Just under the bound still parses.
    let nonce = "a".repeat(MAX_HEADER_LEN - 40);
    assert!(Challenge::parse(&format!("Digest realm=\"r\", nonce=\"{nonce}\"")).is_ok());
    let many: String = (0..=MAX_PARAMS).map(|i| format!("p{i}=1,")).collect();
    assert_eq!(
        Challenge::parse(&format!("Digest {many}")),
        Err(DigestError::TooManyParams { max: MAX_PARAMS })
    );
}

#[test]
fn challenge_qop_list_tolerates_spaces_and_unknown_values() {
    let c =
        Challenge::parse("Digest realm=\"r\", nonce=\"n\", qop=\" auth , auth-conf,,AUTH-INT \"")
            .unwrap();
    assert_eq!(
        c.qop,
        vec![Qop::Auth, Qop::Unknown("auth-conf".into()), Qop::AuthInt]
    );
}

#[test]
fn credentials_debug_never_shows_the_response() {
    let c = Credentials::parse(
        "Digest username=\"bob\", realm=\"r\", nonce=\"n\", uri=\"sip:r\", response=\"6629fae49393a05397450978507c4ef1\"",
    )
    .unwrap();
    let dbg = format!("{c:?}");
    assert!(!dbg.contains("6629fae4"), "{dbg}");
    assert!(dbg.contains("<redacted>"));
    assert_eq!(
        c.response.expose_secret(),
        "6629fae49393a05397450978507c4ef1"
    );
}
