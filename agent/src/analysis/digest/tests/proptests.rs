//! The parsers never panic, whatever the bytes, and read back what a
//! well-formed header says.

use proptest::prelude::*;

use crate::analysis::digest::{Challenge, Credentials, parse_auth_headers};

proptest! {
    #[test]
    fn arbitrary_text_never_panics(s in "\\PC{0,300}") {
        let _ = parse_auth_headers(&s);
        let _ = Challenge::parse(&s);
        let _ = Challenge::parse_all(&s);
        let _ = Credentials::parse(&s);
    }

    #[test]
    fn header_like_noise_never_panics(
        s in "(Digest|Basic|,| |\"|\\\\|=|realm|nonce|qop|nc|uri|a|0|\t|\r\n|é){0,60}"
    ) {
        let _ = Challenge::parse_all(&s);
        let _ = Credentials::parse(&s);
    }

    #[test]
    fn arbitrary_bytes_never_panic(b in proptest::collection::vec(any::<u8>(), 0..300)) {
        let _ = Challenge::parse_bytes(&b);
        let _ = Credentials::parse_bytes(&b);
    }

    #[test]
    fn quoted_values_round_trip(
        realm in "[ -~]{0,40}",
        nonce in "[A-Za-z0-9+/=]{1,40}",
        quote_nonce in any::<bool>(),
    ) {
        let escaped = realm.replace('\\', "\\\\").replace('"', "\\\"");
        let nonce_v = if quote_nonce { format!("\"{nonce}\"") } else { nonce.clone() };
        let c = Challenge::parse(&format!("Digest realm=\"{escaped}\", nonce={nonce_v}")).unwrap();
        prop_assert_eq!(c.realm, realm);
        prop_assert_eq!(c.nonce, nonce);
    }
}

proptest! {
    #[test]
    fn uri_comparison_is_total_reflexive_and_symmetric(
        a in "(sips?:|tel:|/)?[a-zA-Z0-9@:;=?&%.\\[\\]<> -]{0,40}",
        b in "(sips?:|tel:|/)?[a-zA-Z0-9@:;=?&%.\\[\\]<> -]{0,40}",
    ) {
        use crate::analysis::digest::uri::compare;
        prop_assert!(compare(&a, &a).matches());
        prop_assert_eq!(compare(&a, &b).matches(), compare(&b, &a).matches());
    }

    #[test]
    fn sip_uri_case_of_scheme_and_host_never_matters(
        user in "[a-z0-9]{1,8}",
        host in "[a-z]{1,10}\\.(com|net)",
        port in proptest::option::of(1u16..),
    ) {
        use crate::analysis::digest::uri::compare;
        let port = port.map(|p| format!(":{p}")).unwrap_or_default();
        let lower = format!("sip:{user}@{host}{port};transport=udp");
        let upper = format!("SIP:{user}@{}{port};TRANSPORT=UDP", host.to_uppercase());
        prop_assert!(compare(&lower, &upper).matches());
    }
}
