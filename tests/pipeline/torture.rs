//! RFC 4475 (SIP torture) and RFC 5118 (IPv6 torture) messages: the valid
//! ones parse without defects, the invalid ones are reported with the
//! reason the RFC describes, none panics.

use bytes::Bytes;
use sipscope::sip::{Framing, MalformedReason as R, SipMessage};

use crate::common::fixtures;

/// What parsing a torture message must give.
#[derive(Debug)]
enum Expect {
    Valid,
    /// Parsed, with (at least) this defect.
    Defect(R),
    /// Not parseable at all, for this reason.
    Unreadable(R),
}

fn check(dir: &str, cases: &[(&str, Expect)]) {
    let mut failures = Vec::new();
    for (name, expect) in cases {
        let raw = std::fs::read(fixtures().join(dir).join(name)).unwrap();
        let got = SipMessage::parse(Bytes::from(raw), Framing::Datagram);
        let ok = match (&got, expect) {
            (Ok(m), Expect::Valid) => m.defects.is_empty(),
            (Ok(m), Expect::Defect(r)) => m.defects.contains(*r),
            (Err(e), Expect::Unreadable(r)) => e == r,
            _ => false,
        };
        if !ok {
            let got = got.map(|m| m.defects.iter().collect::<Vec<_>>());
            failures.push(format!("{name}: expected {expect:?}, got {got:?}"));
        }
    }
    assert!(failures.is_empty(), "\n{}", failures.join("\n"));
}

#[test]
fn rfc4475_valid_messages_parse_cleanly() {
    use Expect::*;
    check(
        "rfc4475",
        &[
            ("wsinv.dat", Valid),
            ("intmeth.dat", Valid),
            ("esc01.dat", Valid),
            ("escnull.dat", Valid),
            ("esc02.dat", Valid),
            ("lwsdisp.dat", Valid),
            ("longreq.dat", Valid),
            ("dblreq.dat", Valid),
            ("semiuri.dat", Valid),
            ("transports.dat", Valid),
            ("mpart01.dat", Valid),
            ("unreason.dat", Valid),
            ("noreason.dat", Valid),
            // §3.2 and §3.3: syntactically valid, semantics for the TU.
            ("badbranch.dat", Valid),
            ("unkscm.dat", Valid),
            ("novelsc.dat", Valid),
            ("unksm2.dat", Valid),
            ("bext01.dat", Valid),
            ("invut.dat", Valid),
            ("regaut01.dat", Valid),
            ("bcast.dat", Valid),
            ("zeromf.dat", Valid),
            ("cparam01.dat", Valid),
            ("cparam02.dat", Valid),
            ("regescrt.dat", Valid),
            ("sdp01.dat", Valid),
            ("inv2543.dat", Valid),
        ],
    );
}

#[test]
fn rfc4475_invalid_messages_are_malformed_with_a_reason() {
    use Expect::*;
    check(
        "rfc4475",
        &[
            ("badinv01.dat", Defect(R::BadVia)),
            ("clerr.dat", Defect(R::ContentLengthExceedsBody)),
            ("ncl.dat", Defect(R::BadContentLength)),
            ("scalar02.dat", Defect(R::BadCseq)),
            ("scalar02.dat", Defect(R::BadScalar)),
            ("scalarlg.dat", Defect(R::BadCseq)),
            ("quotbal.dat", Defect(R::BadNameAddr)),
            ("ltgtruri.dat", Defect(R::BadRequestUri)),
            ("lwsruri.dat", Defect(R::BadRequestUri)),
            ("lwsstart.dat", Defect(R::StartLineWhitespace)),
            ("trws.dat", Defect(R::StartLineWhitespace)),
            ("escruri.dat", Defect(R::BadRequestUri)),
            ("baddate.dat", Defect(R::BadDate)),
            ("regbadct.dat", Defect(R::BadNameAddr)),
            ("badaspec.dat", Defect(R::BadNameAddr)),
            ("baddn.dat", Defect(R::BadNameAddr)),
            ("badvers.dat", Unreadable(R::BadVersion)),
            ("mismatch01.dat", Defect(R::CseqMethodMismatch)),
            ("mismatch02.dat", Defect(R::CseqMethodMismatch)),
            ("bigcode.dat", Unreadable(R::BadStatusCode)),
            ("insuf.dat", Defect(R::MissingCallId)),
            ("insuf.dat", Defect(R::MissingFrom)),
            ("insuf.dat", Defect(R::MissingTo)),
            ("multi01.dat", Defect(R::DuplicateHeader)),
            ("mcl01.dat", Defect(R::MultipleContentLength)),
        ],
    );
}

#[test]
fn rfc4475_every_file_is_covered_and_none_panics() {
    // Every file of the archive is in one of the two tables above (test.dat
    // is in the archive but not described by the RFC: it must only parse).
    let mut n = 0;
    for entry in std::fs::read_dir(fixtures().join("rfc4475")).unwrap() {
        let raw = std::fs::read(entry.unwrap().path()).unwrap();
        let _ = SipMessage::parse(Bytes::from(raw), Framing::Datagram);
        n += 1;
    }
    assert_eq!(n, 50);
}

#[test]
fn rfc4475_key_fields_of_the_tortuous_invite() {
    let raw = std::fs::read(fixtures().join("rfc4475/wsinv.dat")).unwrap();
    let m = SipMessage::parse(Bytes::from(raw), Framing::Datagram).unwrap();
    assert_eq!(m.call_id().as_deref(), Some("wsinv.ndaksdj@192.0.2.1"));
    let cseq = m.cseq().unwrap();
    assert_eq!((cseq.number, cseq.method.as_str()), (9, "INVITE"));
    // The top Via is folded over three lines, with LWS around the slashes.
    assert_eq!(m.branch(), Some(&b"390skdjuw"[..]));
    assert_eq!(m.sent_by(), Some((&b"192.0.2.2"[..], None)));
    assert_eq!(m.via_transport(), Some(&b"UDP"[..]));
    assert_eq!(m.from_tag(), Some(&b"98asjd8"[..]));
    assert_eq!(m.to_uri(), Some(&b"sip:vivekg@chair-dnrc.example.com"[..]));
    assert_eq!(m.to_tag(), Some(&b"1918181833n"[..]));
    assert_eq!(m.content_type(), Some(&b"application/sdp"[..]));
    assert_eq!(m.body().len(), 150);
    // Compact forms: `s` is Subject, `m` is Contact; a folded value is unfolded.
    assert_eq!(m.header("Subject").as_deref(), Some(""));
    assert_eq!(m.contact_uri(), Some(&b"sip:jdrosen@example.com"[..]));
    assert_eq!(
        m.header("NewFangledHeader").as_deref(),
        Some("newfangled value  continued newfangled value")
    );
    assert_eq!(m.header_values("Via").count(), 2);
}

#[test]
fn rfc5118_ipv6_messages() {
    use Expect::*;
    check(
        "rfc5118",
        &[
            ("ipv6-good.dat", Valid),
            ("ipv6-bad.dat", Defect(R::BadRequestUri)),
            ("port-ambiguous.dat", Valid),
            ("port-unambiguous.dat", Valid),
            ("via-received-param-with-delim.dat", Valid),
            ("via-received-param-no-delim.dat", Valid),
            ("ipv6-in-sdp.dat", Valid),
            ("mult-ip-in-header.dat", Valid),
            ("mult-ip-in-sdp.dat", Valid),
            ("ipv4-mapped-ipv6.dat", Valid),
            ("ipv6-bug-abnf-3-colons.dat", Valid),
            ("ipv6-correct-abnf-2-colons.dat", Valid),
        ],
    );
    let raw = std::fs::read(fixtures().join("rfc5118/port-unambiguous.dat")).unwrap();
    let m = SipMessage::parse(Bytes::from(raw), Framing::Datagram).unwrap();
    let uri = sipscope::sip::SipUri::parse(m.request_uri().unwrap().as_bytes()).unwrap();
    assert_eq!((uri.host.as_str(), uri.port), ("2001:db8::10", Some(5070)));
}
