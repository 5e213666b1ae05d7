//! Contact values as owned text (RFC 3261 §20.10, grammar in §25.1): every
//! element of every Contact header field, read with the one name-addr
//! grammar ([`super::name_addr`]) the message parser uses.

use super::headers::{params, split_outside_quotes, trim};
use super::host_port::HostPort;
use super::message::SipMessage;
use super::name_addr;
use super::uri::SipUri;

/// One Contact value: the URI as written and its `expires` header
/// parameter (RFC 3261 §10.2.1.1, §20.10).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Contact {
    /// `*` for the wildcard Contact of a remove-all (§10.2.2).
    pub uri: String,
    pub expires: Option<u32>,
}

impl Contact {
    pub(crate) fn is_wildcard(&self) -> bool {
        self.uri == "*"
    }

    /// The URI's host and port; `None` for the wildcard and for URIs that
    /// do not parse. The host is the URI's (IPv6 without brackets).
    pub(crate) fn host_port(&self) -> Option<HostPort> {
        if self.is_wildcard() {
            return None;
        }
        SipUri::parse(self.uri.as_bytes()).map(|u| HostPort::new(u.host, u.port))
    }

    /// One element of a Contact value; `None` when no URI can be read.
    fn parse(elem: &[u8]) -> Option<Contact> {
        let (na, _) = name_addr::parse_or_recover(elem, 0);
        let na = na?;
        let expires = params(na.params.get(elem))
            .find(|(n, _)| n.eq_ignore_ascii_case(b"expires"))
            .and_then(|(_, v)| std::str::from_utf8(trim(v)).ok()?.parse().ok());
        Some(Contact {
            uri: String::from_utf8_lossy(na.uri.get(elem)).into_owned(),
            expires,
        })
    }
}

impl SipMessage {
    /// Every Contact value, in order, across header fields (full or compact
    /// form) and comma-separated lists (RFC 3261 §7.3.1, §20.10). Elements
    /// with no readable URI are skipped.
    pub(crate) fn contacts(&self) -> Vec<Contact> {
        self.header_values("Contact")
            .flat_map(|v| split_outside_quotes(v, b',').filter_map(Contact::parse))
            .collect()
    }
}

/// Whether two Contact URIs name the same binding ([`SipUri::binding_key`]);
/// text that does not parse compares exactly.
pub(crate) fn same_address(a: &str, b: &str) -> bool {
    match (SipUri::parse(a.as_bytes()), SipUri::parse(b.as_bytes())) {
        (Some(x), Some(y)) => x.binding_key() == y.binding_key(),
        _ => a == b,
    }
}

/// The host-ports of `contacts` (wildcards and unparsable URIs skipped),
/// as the NAT checks compare them with where a message came from.
pub(crate) fn host_ports(contacts: &[Contact]) -> Vec<HostPort> {
    contacts.iter().filter_map(Contact::host_port).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A REGISTER with these Contact (and other) header lines, and its
    /// Contacts.
    fn register(lines: &str) -> (SipMessage, Vec<Contact>) {
        let text = format!(
            "REGISTER sip:x SIP/2.0\nVia: SIP/2.0/UDP 10.0.0.2;branch=z9hG4bK1\n\
             Call-ID: a\nCSeq: 2 REGISTER\nFrom: <sip:1@x>;tag=1\nTo: <sip:1@x>\n{lines}\n"
        );
        let r = SipMessage::from_lines(&text);
        let c = r.contacts();
        (r, c)
    }

    #[test]
    fn contacts_across_headers_compact_form_and_quoted_commas() {
        let (_, c) = register(
            "Contact: \"Desk, left\" <sip:1@10.0.0.2:5062;transport=tcp>;expires=30;q=0.5\n\
             m: sip:1@10.0.0.3;expires=10, <sip:1@[2001:db8::1]:5070>\n",
        );
        assert_eq!(c.len(), 3, "{c:?}");
        assert_eq!(c[0].uri, "sip:1@10.0.0.2:5062;transport=tcp");
        assert_eq!(c[0].expires, Some(30));
        assert_eq!(c[1].uri, "sip:1@10.0.0.3");
        assert_eq!(c[1].expires, Some(10));
        assert_eq!(c[2].expires, None);
        let hp = host_ports(&c);
        assert_eq!(hp[2], HostPort::new("2001:db8::1", Some(5070)));
        assert!(same_address(
            "sip:1@10.0.0.2:5062;transport=tcp",
            "sip:1@10.0.0.2:5062"
        ));
        assert!(!same_address("sip:1@10.0.0.2:5062", "sip:1@10.0.0.2"));
    }

    #[test]
    fn wildcard_has_no_host_port() {
        let (_, c) = register("Contact: *\nExpires: 0\n");
        assert!(c[0].is_wildcard());
        assert!(host_ports(&c).is_empty());
    }

    /// Bugs the refactor exposed, where registration's own Contact reader
    /// (the first `<` of the value) and the message parser disagreed. Each
    /// case: the Contact value, the (URI, expires) now read, and the old
    /// reading.
    #[test]
    fn contact_values_the_old_reader_got_wrong() {
        type Read<'a> = &'a [(&'a str, Option<u32>)];
        let cases: [(&str, Read); 4] = [
            // Quoted display name holding `<`: old read `left` as the URI
            // and lost `expires` inside the quote.
            (
                "\"Desk <left>\" <sip:1@192.168.1.5:5062>;expires=30",
                &[("sip:1@192.168.1.5:5062", Some(30))],
            ),
            // Unquoted display name holding `<` (RFC 4475 §3.1.2.15): old
            // read `B <sip:1@10.0.0.7`; the parser's recovery takes the last.
            (
                "A<B <sip:1@10.0.0.7>;expires=60",
                &[("sip:1@10.0.0.7", Some(60))],
            ),
            // A broken first element: contact_uri() (spans, JSON) recovered
            // across the whole list and read sip:2, registration sip:1.
            (
                "\"A, B\" <sip:1@10.0.0.7> junk, <sip:2@10.0.0.9>",
                &[("sip:1@10.0.0.7", None), ("sip:2@10.0.0.9", None)],
            ),
            // `<>`: old made a binding named ""; no URI, so skipped.
            ("<>, <sip:1@10.0.0.8>", &[("sip:1@10.0.0.8", None)]),
        ];
        for (value, want) in cases {
            let (r, c) = register(&format!("Contact: {value}\n"));
            let got: Vec<_> = c.iter().map(|c| (c.uri.as_str(), c.expires)).collect();
            assert_eq!(got, want, "{value}");
            // contact_uri() reads the first element, as contacts() does;
            // `<>` has no URI to read.
            let first = (!value.starts_with("<>")).then(|| c[0].uri.as_bytes());
            assert_eq!(r.contact_uri(), first, "{value}");
        }
        let (_, c) = register("Contact: \"Desk <left>\" <sip:1@192.168.1.5:5062>\n");
        assert_eq!(
            c[0].host_port(),
            Some(HostPort::new("192.168.1.5", Some(5062)))
        );
    }
}
