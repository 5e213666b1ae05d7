//! The digest checks no real client we can drive gets wrong on purpose:
//! a small scripted client (SIPp, sipp/digest-tamper.xml) answers
//! kamailio's challenge with one field off. Each asserts the exact codes
//! on the agent's capture and on dumpcap's, and that both say the same.

use crate::lab::{Lab, Peer};
use crate::support::netns::VethPair;
use crate::{analyse, codes, comparable, set};

/// The registrar's Request-URI, which SIPp also puts in the digest uri.
fn request_uri() -> String {
    format!("sip:{}:5060", VethPair::HOST_V4)
}

fn tampered(nonce_prefix: &str, digest_uri: &str, algorithm: &str, expected: &[&'static str]) {
    let peer = Peer::sipp(
        "digest-tamper.xml",
        &[
            "-s",
            "1001",
            "-key",
            "nonce_prefix",
            nonce_prefix,
            "-key",
            "digest_uri",
            digest_uri,
            "-key",
            "algorithm",
            algorithm,
        ],
    );
    let run = Lab::new(false, &[]).run(&peer, true);
    let live = analyse(&run.agent_pcap, None);
    assert_eq!(codes(&live), set(expected), "{live:#?}");
    let offline = analyse(run.dumpcap_pcap.as_ref().unwrap(), None);
    assert_eq!(comparable(&live), comparable(&offline));
}

#[test]
fn answer_with_a_nonce_the_challenge_did_not_issue_is_nonce_mismatch() {
    // kamailio cannot verify a nonce it did not issue and calls it stale
    // (stale=true): the client never recovers before the capture ends.
    tampered(
        "old-",
        &request_uri(),
        "MD5",
        &["auth.nonce_mismatch", "auth.stale_nonce"],
    );
}

#[test]
fn digest_uri_other_than_the_request_uri_is_uri_mismatch() {
    tampered(
        "",
        "sip:other.example",
        "MD5",
        &["auth.uri_mismatch", "auth.rejected"],
    );
}

#[test]
fn algorithm_not_challenged_is_algorithm_mismatch() {
    tampered(
        "",
        &request_uri(),
        "SHA-256",
        &["auth.algorithm_mismatch", "auth.rejected"],
    );
}
