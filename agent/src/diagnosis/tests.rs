use std::collections::HashSet;
use std::path::PathBuf;

use super::*;

/// The codes of DESIGN.md's catalogue table, copied here so the test runs
/// for a clone without `../shared`; `catalogue_matches_design_md` re-reads
/// the table itself when it is present.
const DESIGN_CODES: &[&str] = &[
    "auth.realm_mismatch",
    "auth.nonce_mismatch",
    "auth.stale_nonce",
    "auth.uri_mismatch",
    "auth.algorithm_mismatch",
    "auth.rejected",
    "auth.challenge_loop",
    "auth.password_mismatch",
    "auth.username_is_did",
    "auth.forbidden_after_auth",
    "nat.private_contact",
    "nat.rewritten_by_peer",
    "nat.private_sdp",
    "net.no_response",
    "net.icmp_unreachable",
    "fw.local_drop",
    "reg.rejected",
    "reg.expired",
    "reg.flapping",
    "media.no_rtp",
    "media.one_way",
    "media.quality",
    "call.inbound_blocked",
];

/// Codes added beyond the DESIGN table (extensions, never renames).
const EXTENSION_CODES: &[&str] = &["auth.password_correct", "nat.contact_port_mismatch"];

#[test]
fn codes_are_unique_and_round_trip() {
    let names: HashSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    assert_eq!(names.len(), Code::ALL.len(), "duplicate code string");
    for &c in Code::ALL {
        assert_eq!(c.as_str().parse::<Code>(), Ok(c));
        assert_eq!(c.to_string(), c.as_str());
        let (family, rest) = c.as_str().split_once('.').expect("dotted");
        assert!(["auth", "nat", "net", "fw", "reg", "media", "call"].contains(&family));
        assert!(rest.chars().all(|ch| ch.is_ascii_lowercase() || ch == '_'));
    }
    assert!("auth.nope".parse::<Code>().is_err());
}

#[test]
fn catalogue_is_design_table_plus_declared_extensions() {
    let ours: HashSet<&str> = Code::ALL.iter().map(|c| c.as_str()).collect();
    let expected: HashSet<&str> = DESIGN_CODES
        .iter()
        .chain(EXTENSION_CODES)
        .copied()
        .collect();
    assert_eq!(ours, expected);
}

#[test]
fn catalogue_matches_design_md() {
    // <workspace>/../shared/DESIGN.md, as CI lays it out.
    let design = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../shared/DESIGN.md");
    let Ok(text) = std::fs::read_to_string(&design) else {
        eprintln!("skipped: {} not present", design.display());
        return;
    };
    let table: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("| "))
        .filter_map(|l| l.split(" |").next())
        .filter(|c| c.contains('.') && !c.contains(' '))
        .collect();
    assert_eq!(
        table, DESIGN_CODES,
        "DESIGN.md table changed: update the catalogue"
    );
}

#[test]
fn every_code_has_title_and_complete_remedy() {
    for &c in Code::ALL {
        assert!(!c.title().is_empty());
        let r = c.remedy();
        for (pbx, text) in [
            ("general", &r.general),
            ("pjsip", &r.pjsip),
            ("freeswitch", &r.freeswitch),
            ("kamailio", &r.kamailio),
        ] {
            assert!(text.len() > 20, "{c}: {pbx} remedy too short");
        }
    }
}

#[test]
fn severity_defaults_are_sensible() {
    assert_eq!(Code::AuthPasswordCorrect.default_severity(), Severity::Info);
    assert_eq!(
        Code::AuthPasswordMismatch.default_severity(),
        Severity::Error
    );
    assert!(Severity::Info < Severity::Warning && Severity::Warning < Severity::Error);
}

#[test]
fn nat_remedy_names_the_public_address_and_lan() {
    let r = Remedy::for_nat(
        Code::NatPrivateContact,
        Some("198.51.100.7".parse().unwrap()),
        Some("192.168.0.0/16"),
    );
    assert!(r.pjsip.contains("external_signaling_address=198.51.100.7"));
    assert!(r.pjsip.contains("local_net=192.168.0.0/16"));
    assert!(r.pjsip.contains("rewrite_contact=yes"));
    assert!(r.freeswitch.contains("ext-sip-ip"));
    assert!(r.kamailio.contains("fix_nated_contact"));
    let sdp = Remedy::for_nat(Code::NatPrivateSdp, None, None);
    assert!(sdp.pjsip.contains("external_media_address=<public IP>"));
    assert!(!sdp.pjsip.contains("external_signaling_address"));
}

fn sample() -> Diagnosis {
    Diagnosis::new(
        Code::AuthRealmMismatch,
        Timestamp::from_nanos(3_723_500_000_000),
        "The REGISTER answered realm \"asterisk\" but the challenge was for \"biloxi.com\".",
    )
    .with_evidence(
        Evidence::new("challenge realm", "\"biloxi.com\"").in_message(
            Timestamp::from_nanos(3_723_400_000_000),
            "401 Unauthorized (CSeq 1 REGISTER)",
        ),
    )
    .with_evidence(Evidence::new("credentials realm", "\"asterisk\""))
}

#[test]
fn display_prints_finding_evidence_and_remedy() {
    let text = sample().to_string();
    let mut lines = text.lines();
    assert_eq!(
        lines.next().unwrap(),
        "[error] auth.realm_mismatch at 01:02:03.500000: The REGISTER answered realm \
         \"asterisk\" but the challenge was for \"biloxi.com\"."
    );
    assert_eq!(lines.next().unwrap(), "  evidence:");
    assert_eq!(
        lines.next().unwrap(),
        "    challenge realm: \"biloxi.com\"  (401 Unauthorized (CSeq 1 REGISTER) at 01:02:03.400000)"
    );
    assert_eq!(lines.next().unwrap(), "    credentials realm: \"asterisk\"");
    assert!(lines.next().unwrap().starts_with("  what to do: "));
    assert!(text.contains("Asterisk/PJSIP: in the type=auth section"));
    assert!(text.contains("FreeSWITCH:"));
    assert!(text.contains("Kamailio:"));
}

#[test]
fn serializes_with_dotted_code_and_lowercase_severity() {
    let v = serde_json::to_value(sample()).unwrap();
    assert_eq!(v["code"], "auth.realm_mismatch");
    assert_eq!(v["severity"], "error");
    assert_eq!(v["at"], 3_723_500_000_000u64);
    assert_eq!(v["evidence"][0]["name"], "challenge realm");
    assert_eq!(
        v["evidence"][0]["message"]["label"],
        "401 Unauthorized (CSeq 1 REGISTER)"
    );
    assert!(v["evidence"][1].get("message").is_none());
    assert!(v["remedy"]["pjsip"].as_str().unwrap().contains("realm="));
}

#[test]
fn in_message_ties_only_untied_evidence() {
    let m = MessageRef {
        at: Timestamp::from_nanos(9),
        label: "REGISTER (CSeq 3)".into(),
    };
    let d = sample().in_message(&m);
    assert_eq!(
        d.evidence[0].message.as_ref().unwrap().label,
        "401 Unauthorized (CSeq 1 REGISTER)"
    );
    assert_eq!(d.evidence[1].message.as_ref(), Some(&m));
}
