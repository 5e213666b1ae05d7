//! `hostport` (RFC 3261 §25.1: `host [ ":" port ]`, host a hostname, an
//! IPv4 address or a bracketed IPv6 reference, RFC 5118 §4) as read from a
//! Via sent-by or a Contact URI.

use std::fmt;
use std::net::IpAddr;

/// A `hostport` (RFC 3261 §25.1) as text. The host keeps the form it was
/// read in (a Via sent-by keeps IPv6 brackets, a URI host has none);
/// [`HostPort::ip`] reads both.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostPort {
    pub host: String,
    pub port: Option<u16>,
}

impl HostPort {
    pub fn new(host: impl Into<String>, port: Option<u16>) -> Self {
        Self {
            host: host.into(),
            port,
        }
    }

    /// The host as an IP address, `None` for a hostname.
    pub fn ip(&self) -> Option<IpAddr> {
        ip_literal(&self.host)
    }
}

impl fmt::Display for HostPort {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // An IPv6 host read from a URI has no brackets; with a port it
        // needs them back (RFC 5118 §4.1), or `2001:db8::1:5070` reads as
        // another address.
        let bare_v6 = self.host.contains(':') && !self.host.starts_with('[');
        match self.port {
            Some(p) if bare_v6 => write!(f, "[{}]:{p}", self.host),
            Some(p) => write!(f, "{}:{p}", self.host),
            None => f.write_str(&self.host),
        }
    }
}

/// An IP literal in a SIP host (`192.0.2.1`, `[2001:db8::1]`, and the
/// unbracketed `2001:db8::1` old devices send against RFC 5118 §4.2);
/// `None` for hostnames. IPv4-mapped IPv6 comes back as IPv4.
pub(crate) fn ip_literal(host: &str) -> Option<IpAddr> {
    let h = host.trim();
    let h = h
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(h);
    h.parse::<IpAddr>().ok().map(|ip| ip.to_canonical())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ip_literals_in_every_host_form() {
        assert_eq!(ip_literal("[::ffff:10.0.0.1]"), Some(ip("10.0.0.1")));
        assert_eq!(ip_literal("192.0.2.1"), Some(ip("192.0.2.1")));
        assert_eq!(ip_literal("[2001:db8::1]"), Some(ip("2001:db8::1")));
        assert_eq!(ip_literal("2001:db8::1"), Some(ip("2001:db8::1")));
        assert_eq!(ip_literal("pbx.example.com"), None);
        assert_eq!(ip_literal("10.0.0.1.nip.io"), None);
        assert_eq!(ip_literal(""), None);
    }

    #[test]
    fn shows_as_written() {
        assert_eq!(
            HostPort::new("[2001:db8::1]", Some(5070)).to_string(),
            "[2001:db8::1]:5070"
        );
        assert_eq!(
            HostPort::new("2001:db8::1", Some(5070)).to_string(),
            "[2001:db8::1]:5070",
            "an IPv6 URI host gets its brackets back before a port"
        );
        assert_eq!(
            HostPort::new("2001:db8::1", None).to_string(),
            "2001:db8::1"
        );
        assert_eq!(
            HostPort::new("pbx.example.com", None).to_string(),
            "pbx.example.com"
        );
    }
}
