//! Reading what the registration tracker needs off a REGISTER or its
//! response: all Contact values with their `expires` parameters (RFC 3261
//! §10.2.4, §20.10), every Via (§20.42), digest challenges and credentials
//! (§22), and short labels tying evidence to a message.

use std::borrow::Cow;

use crate::analysis::digest::{Challenge, Credentials};
use crate::analysis::nat::{HostPort, Rport, Transport, ViaParams};
use crate::diagnosis::MessageRef;
use crate::sip::headers::{params, split_outside_quotes, trim, unfold};
use crate::sip::{MessageRecord, SipMessage, SipUri};

/// One Contact value (RFC 3261 §20.10): the URI as written and its
/// `expires` header parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContactValue {
    /// `*` for the wildcard Contact of a remove-all (§10.2.2).
    pub uri: String,
    pub expires: Option<u32>,
}

impl ContactValue {
    pub fn is_wildcard(&self) -> bool {
        self.uri == "*"
    }
}

/// Splits one Contact element into its URI and header parameters.
fn contact_value(elem: &[u8]) -> Option<ContactValue> {
    let elem = trim(elem);
    if elem.is_empty() {
        return None;
    }
    if elem == b"*" {
        return Some(ContactValue {
            uri: "*".into(),
            expires: None,
        });
    }
    // name-addr: URI between < >, parameters after '>'; addr-spec: the URI
    // ends at the first ';' (its parameters are header parameters, §20.10).
    let (uri, tail) = match elem.iter().position(|&c| c == b'<') {
        Some(lt) => {
            let gt = elem[lt..].iter().position(|&c| c == b'>')? + lt;
            (&elem[lt + 1..gt], &elem[gt + 1..])
        }
        None => match elem.iter().position(|&c| c == b';') {
            Some(sc) => (&elem[..sc], &elem[sc..]),
            None => (elem, &[][..]),
        },
    };
    let expires = params(tail)
        .find(|(n, _)| n.eq_ignore_ascii_case(b"expires"))
        .and_then(|(_, v)| std::str::from_utf8(trim(v)).ok()?.parse().ok());
    Some(ContactValue {
        uri: String::from_utf8_lossy(trim(uri)).into_owned(),
        expires,
    })
}

/// Every Contact value of the message, in order (several headers and
/// comma-separated lists alike).
pub fn contacts(msg: &SipMessage) -> Vec<ContactValue> {
    msg.header_values("Contact")
        .flat_map(|v| {
            let v = unfold(v).into_owned();
            split_outside_quotes(&v, b',')
                .filter_map(contact_value)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// RFC 3261 §19.1.4 in the form that matters for finding our own binding
/// in a 200 OK: same user, host (case-insensitive) and port.
pub fn same_contact(a: &str, b: &str) -> bool {
    match (SipUri::parse(a.as_bytes()), SipUri::parse(b.as_bytes())) {
        (Some(x), Some(y)) => {
            x.user == y.user
                && x.host.eq_ignore_ascii_case(&y.host)
                && x.port.unwrap_or(5060) == y.port.unwrap_or(5060)
        }
        _ => a == b,
    }
}

/// The expiry the registrar granted to `contact` in a 2xx (RFC 3261
/// §10.2.4): the matching Contact's `expires` parameter, else the Expires
/// header. `None`: the response lists no such binding and no Expires.
pub fn granted_expiry(response: &SipMessage, contact: Option<&str>) -> Option<u32> {
    let listed = contacts(response);
    let ours = contact.and_then(|c| listed.iter().find(|v| same_contact(&v.uri, c)));
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
pub fn requested_expiry(request: &SipMessage) -> Option<u32> {
    let first = contacts(request).into_iter().next();
    if first.as_ref().is_some_and(ContactValue::is_wildcard) {
        return Some(0);
    }
    first.and_then(|c| c.expires).or(request.expires())
}

/// One Via header value (`SIP/2.0/UDP host:port;params`) for the NAT checks.
fn via_value(v: &[u8]) -> Option<ViaParams> {
    let v = std::str::from_utf8(trim(v)).ok()?;
    let (proto, rest) = v.split_once(|c: char| c.is_ascii_whitespace())?;
    let transport = Transport::from_via(proto.rsplit('/').next()?);
    let rest = rest.trim_start();
    let (sent_by, tail) = rest.split_once(';').unwrap_or((rest, ""));
    let sent_by = sent_by.trim();
    let (host, port) = if let Some(v6) = sent_by.strip_prefix('[') {
        let (h, t) = v6.split_once(']')?;
        (
            format!("[{h}]"),
            t.strip_prefix(':').and_then(|p| p.parse().ok()),
        )
    } else {
        match sent_by.rsplit_once(':') {
            Some((h, p)) if !h.contains(':') => (h.to_owned(), p.trim().parse().ok()),
            _ => (sent_by.to_owned(), None),
        }
    };
    let mut received = None;
    let mut rport = Rport::Absent;
    for (name, value) in params(tail.as_bytes()) {
        if name.eq_ignore_ascii_case(b"received") {
            received = Some(String::from_utf8_lossy(trim(value)).into_owned());
        } else if name.eq_ignore_ascii_case(b"rport") {
            rport = std::str::from_utf8(trim(value))
                .ok()
                .and_then(|p| p.parse().ok())
                .map_or(Rport::Requested, Rport::Value);
        }
    }
    Some(ViaParams {
        transport,
        sent_by: HostPort::new(host, port),
        received,
        rport,
    })
}

/// Every Via value, top first.
pub fn vias(msg: &SipMessage) -> Vec<ViaParams> {
    msg.header_values("Via")
        .flat_map(|v| {
            let v = unfold(v).into_owned();
            split_outside_quotes(&v, b',')
                .filter_map(via_value)
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Contact addresses as `host[:port]` for the NAT checks (wildcards and
/// unparsable URIs skipped).
pub fn contact_hostports(list: &[ContactValue]) -> Vec<HostPort> {
    list.iter()
        .filter(|c| !c.is_wildcard())
        .filter_map(|c| SipUri::parse(c.uri.as_bytes()))
        .map(|u| HostPort::new(u.host, u.port))
        .collect()
}

/// The credentials a request carries (Authorization, else
/// Proxy-Authorization, RFC 3261 §22.2/§22.3); `None` when absent or
/// not readable Digest.
pub fn credentials(msg: &SipMessage) -> Option<Credentials> {
    ["Authorization", "Proxy-Authorization"]
        .into_iter()
        .filter_map(|h| msg.header(h))
        .find_map(|v| Credentials::parse(&v).ok())
}

/// Every Digest challenge a 401/407 offers (RFC 8760 allows one per
/// algorithm).
pub fn challenges(msg: &SipMessage) -> Vec<Challenge> {
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

/// The user part of an AOR URI (`sip:15551230007@example.com` →
/// `15551230007`).
pub fn aor_user(aor: &str) -> Option<String> {
    SipUri::parse(aor.as_bytes()).and_then(|u| u.user)
}

/// A message label for evidence: `REGISTER (CSeq 2)` or
/// `401 Unauthorized (CSeq 1 REGISTER)`.
pub fn message_ref(r: &MessageRecord) -> MessageRef {
    let m = &r.message;
    let cseq = m.cseq();
    let label = match (m.status(), cseq) {
        (Some(code), Some(c)) => format!(
            "{code} {} (CSeq {} {})",
            m.reason_phrase().unwrap_or(Cow::Borrowed("")),
            c.number,
            c.method
        ),
        (Some(code), None) => format!("{code} {}", m.reason_phrase().unwrap_or_default()),
        (None, Some(c)) => format!("{} (CSeq {})", c.method, c.number),
        (None, None) => m.method().map_or_else(String::new, |x| x.to_string()),
    };
    MessageRef {
        at: r.meta.ts,
        label,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sip::Framing;
    use bytes::Bytes;

    fn msg(text: &str) -> SipMessage {
        SipMessage::parse(Bytes::from(text.replace('\n', "\r\n")), Framing::Datagram).unwrap()
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

    #[test]
    fn contacts_across_headers_compact_form_and_quoted_commas() {
        let r = msg(
            "REGISTER sip:x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\n\
             Call-ID: a\nCSeq: 2 REGISTER\nFrom: <sip:1@x>;tag=1\nTo: <sip:1@x>\n\
             Contact: \"Desk, left\" <sip:1@10.0.0.2:5062;transport=tcp>;expires=30;q=0.5\n\
             m: sip:1@10.0.0.3;expires=10, <sip:1@[2001:db8::1]:5070>\n\n",
        );
        let c = contacts(&r);
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0].uri, "sip:1@10.0.0.2:5062;transport=tcp");
        assert_eq!(c[0].expires, Some(30));
        assert_eq!(c[1].uri, "sip:1@10.0.0.3");
        assert_eq!(c[1].expires, Some(10));
        assert_eq!(c[2].expires, None);
        let hp = contact_hostports(&c);
        assert_eq!(hp[2], HostPort::new("2001:db8::1", Some(5070)));
        assert!(same_contact(
            "sip:1@10.0.0.2:5062;transport=tcp",
            "sip:1@10.0.0.2:5062"
        ));
        assert!(!same_contact("sip:1@10.0.0.2:5062", "sip:1@10.0.0.2"));
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

    #[test]
    fn vias_read_transport_sent_by_received_and_rport() {
        let r = msg(
            "SIP/2.0 200 OK\nVia: SIP/2.0/UDP 10.0.0.2:5062;branch=z9hG4bK1;rport=40000;received=198.51.100.1\n\
             v: SIP/2.0/TCP [2001:db8::1]:5070;branch=z9hG4bK2;rport\n\
             Call-ID: a\nCSeq: 2 REGISTER\nFrom: <sip:1@x>;tag=1\nTo: <sip:1@x>\n\n",
        );
        let v = vias(&r);
        assert_eq!(v.len(), 2);
        assert_eq!(v[0].transport, Transport::Udp);
        assert_eq!(v[0].sent_by, HostPort::new("10.0.0.2", Some(5062)));
        assert_eq!(v[0].received.as_deref(), Some("198.51.100.1"));
        assert_eq!(v[0].rport, Rport::Value(40000));
        assert_eq!(v[1].transport, Transport::Tcp);
        assert_eq!(v[1].sent_by, HostPort::new("[2001:db8::1]", Some(5070)));
        assert_eq!(v[1].rport, Rport::Requested);
    }
}
