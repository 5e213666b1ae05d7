//! What a REGISTER exchange says beyond the SIP grammar (which sip/ owns):
//! the expiry the client asked for and the registrar granted (RFC 3261
//! §10.2.1.1, §10.2.4), and the digest challenges and credentials it
//! carries (§22).

use crate::analysis::digest::{Challenge, Credentials};
use crate::sip::SipMessage;
use crate::sip::contact::same_address;
use crate::sip::headers::unfold;

/// The expiry the registrar granted to `contact` in a 2xx (RFC 3261
/// §10.2.4): the matching Contact's `expires` parameter, else the Expires
/// header. `None`: the response lists no such binding and no Expires.
pub(super) fn granted_expiry(response: &SipMessage, contact: Option<&str>) -> Option<u32> {
    let listed = response.contacts();
    let ours = contact.and_then(|c| listed.iter().find(|v| same_address(&v.uri, c)));
    match ours {
        Some(v) => v.expires.or(response.expires()),
        // A 2xx that lists bindings but not ours: ours is gone.
        None if !listed.is_empty() && contact.is_some() => Some(0),
        None => response.expires(),
    }
}

/// The expiry a REGISTER asks for (RFC 3261 §10.2.1.1): the first
/// Contact's `expires` parameter, else the Expires header. `Some(0)` and a
/// wildcard Contact ask to remove the binding(s).
pub(super) fn requested_expiry(request: &SipMessage) -> Option<u32> {
    let first = request.contacts().into_iter().next();
    if first.as_ref().is_some_and(|c| c.is_wildcard()) {
        return Some(0);
    }
    first.and_then(|c| c.expires).or(request.expires())
}

/// The credentials a request carries (Authorization, else
/// Proxy-Authorization, RFC 3261 §22.2/§22.3); `None` when absent or
/// not readable Digest.
pub(crate) fn credentials(msg: &SipMessage) -> Option<Credentials> {
    ["Authorization", "Proxy-Authorization"]
        .into_iter()
        .filter_map(|h| msg.header(h))
        .find_map(|v| Credentials::parse(&v).ok())
}

/// Every Digest challenge a 401/407 offers (RFC 8760 allows one per
/// algorithm).
pub(crate) fn challenges(msg: &SipMessage) -> Vec<Challenge> {
    let name = if msg.status() == Some(407) {
        "Proxy-Authenticate"
    } else {
        "WWW-Authenticate"
    };
    msg.header_values(name)
        .filter_map(|v| std::str::from_utf8(&unfold(v)).ok().map(str::to_owned))
        .filter_map(|v| Challenge::parse_all(&v).ok())
        .flatten()
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(text: &str) -> SipMessage {
        SipMessage::from_lines(text)
    }

    #[test]
    fn granted_expiry_prefers_our_contact_param_over_the_header() {
        let ok = msg(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.2:5060;branch=z9hG4bK1\n\
             Call-ID: a\nCSeq: 2 REGISTER\nFrom: <sip:1@x>;tag=1\nTo: <sip:1@x>;tag=2\n\
             Contact: <sip:1@10.0.0.9:5060>;expires=30, <sip:1@10.0.0.2:5060>;expires=120\n\
             Expires: 600\nContent-Length: 0\n\n",
        );
        assert_eq!(granted_expiry(&ok, Some("sip:1@10.0.0.2")), Some(120));
        assert_eq!(granted_expiry(&ok, Some("sip:1@10.0.0.3")), Some(0));
        assert_eq!(granted_expiry(&ok, None), Some(600));
    }

    // A bug the refactor exposed: registration compared Contact URIs with
    // 5060 for an omitted port, inbound routing with the RFC 3261 §19.1.2
    // default (5061 for sips and transport=tls). A 2xx listing our
    // `sips:1@10.0.0.2` as `sips:1@10.0.0.2:5061` read as "our binding is
    // gone" (Some(0)); both now use SipUri::binding_key.
    #[test]
    fn granted_expiry_fills_in_the_sips_default_port() {
        let ok = msg(
            "SIP/2.0 200 OK\nVia: SIP/2.0/TLS 10.0.0.2:5061;branch=z9hG4bK1\n\
             Call-ID: a\nCSeq: 2 REGISTER\nFrom: <sips:1@x>;tag=1\nTo: <sips:1@x>;tag=2\n\
             Contact: <sips:1@10.0.0.2:5061>;expires=120\nContent-Length: 0\n\n",
        );
        assert_eq!(granted_expiry(&ok, Some("sips:1@10.0.0.2")), Some(120));
        assert_eq!(
            granted_expiry(&ok, Some("sip:1@10.0.0.2;transport=tls")),
            Some(120)
        );
        assert_eq!(granted_expiry(&ok, Some("sip:1@10.0.0.2")), Some(0));
    }

    #[test]
    fn requested_expiry_reads_contact_param_then_header_and_wildcard() {
        let base = "REGISTER sip:x SIP/2.0\nVia: SIP/2.0/TCP 10.0.0.2;branch=z9hG4bK1\n\
                    Call-ID: a\nCSeq: 2 REGISTER\nFrom: <sip:1@x>;tag=1\nTo: <sip:1@x>\n";
        let r = msg(&format!(
            "{base}Contact: sip:1@10.0.0.2;expires=0\nExpires: 60\n\n"
        ));
        assert_eq!(requested_expiry(&r), Some(0));
        let r = msg(&format!("{base}Contact: *\nExpires: 0\n\n"));
        assert_eq!(requested_expiry(&r), Some(0));
        let r = msg(&format!("{base}Contact: <sip:1@10.0.0.2>\nExpires: 60\n\n"));
        assert_eq!(requested_expiry(&r), Some(60));
    }
}
