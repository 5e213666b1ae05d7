//! SIP URIs (RFC 3261 §19.1), parsed by rsip behind this module so the
//! library can be replaced without touching the analyses.

use std::fmt;

/// A parsed SIP/SIPS/TEL URI, in plain owned fields.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SipUri {
    /// `sip`, `sips`, or another scheme as written.
    pub scheme: String,
    pub user: Option<String>,
    /// Domain or address; IPv6 without brackets.
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters, e.g. `("transport", Some("tcp"))`, `("lr", None)`.
    pub params: Vec<(String, Option<String>)>,
}

impl SipUri {
    /// Parse a URI as found between `<>` or in a Request-URI. `None` when
    /// it is not valid UTF-8 or rsip rejects it.
    pub fn parse(b: &[u8]) -> Option<SipUri> {
        let s = std::str::from_utf8(b).ok()?;
        let uri = rsip::Uri::try_from(s).ok()?;
        let scheme = match &uri.scheme {
            Some(rsip::Scheme::Sip) => "sip".to_string(),
            Some(rsip::Scheme::Sips) => "sips".to_string(),
            Some(rsip::Scheme::Other(o)) => o.to_ascii_lowercase(),
            None => String::new(),
        };
        let host = match &uri.host_with_port.host {
            rsip::Host::Domain(d) => d.to_string(),
            rsip::Host::IpAddr(ip) => ip.to_string(),
        };
        let port = uri.host_with_port.port.as_ref().map(|p| *p.value());
        let params = uri
            .params
            .iter()
            .map(|p| {
                let text = p.to_string();
                let text = text.trim_start_matches(';');
                match text.split_once('=') {
                    Some((n, v)) => (n.to_ascii_lowercase(), Some(v.to_string())),
                    None => (text.to_ascii_lowercase(), None),
                }
            })
            .collect();
        Some(SipUri {
            scheme,
            user: uri.user().map(str::to_string),
            host,
            port,
            params,
        })
    }

    pub fn param(&self, name: &str) -> Option<Option<&str>> {
        self.params
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_deref())
    }
}

impl fmt::Display for SipUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:", self.scheme)?;
        if let Some(u) = &self.user {
            write!(f, "{u}@")?;
        }
        if self.host.contains(':') {
            write!(f, "[{}]", self.host)?;
        } else {
            f.write_str(&self.host)?;
        }
        if let Some(p) = self.port {
            write!(f, ":{p}")?;
        }
        for (n, v) in &self.params {
            match v {
                Some(v) => write!(f, ";{n}={v}")?,
                None => write!(f, ";{n}")?,
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_user_host_port_params() {
        let u = SipUri::parse(b"sip:alice@192.168.1.2:5062;transport=tcp;lr").unwrap();
        assert_eq!(u.scheme, "sip");
        assert_eq!(u.user.as_deref(), Some("alice"));
        assert_eq!(u.host, "192.168.1.2");
        assert_eq!(u.port, Some(5062));
        assert_eq!(u.param("transport"), Some(Some("tcp")));
        assert_eq!(u.param("lr"), Some(None));
    }

    #[test]
    fn ipv6_reference() {
        let u = SipUri::parse(b"sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host, "2001:db8::10");
        assert_eq!(u.port, Some(5070));
    }
}
