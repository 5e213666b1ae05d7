//! SIP URIs (RFC 3261 §19.1.1, RFC 5118 for IPv6 references).
//!
//! Parsed here rather than with rsip 0.4: rsip rejects bracketed IPv6
//! references (`sip:[2001:db8::10]:5070`, RFC 5118 §4.4) and rewrites
//! parameter values (`transport=tcp` comes back as `TCP`), both wrong for
//! a capture tool that must report what was on the wire.

use std::fmt;

use super::transport::SipTransport;

/// A parsed SIP/SIPS (or other scheme) URI, in plain owned fields.
#[derive(Clone, Debug, PartialEq, Eq, serde::Serialize)]
pub struct SipUri {
    /// Scheme in lower case: `sip`, `sips`, `tel`, ...
    pub scheme: String,
    pub user: Option<String>,
    /// Domain or address; IPv6 without brackets.
    pub host: String,
    pub port: Option<u16>,
    /// URI parameters as written, e.g. `("transport", Some("tcp"))`,
    /// `("lr", None)`; names in lower case.
    pub params: Vec<(String, Option<String>)>,
}

impl SipUri {
    /// Parse a URI as found between `<>` or in a Request-URI. `None` when
    /// it has no scheme or host, or an unreadable port.
    pub fn parse(b: &[u8]) -> Option<SipUri> {
        let s = std::str::from_utf8(b).ok()?.trim();
        let (scheme, rest) = s.split_once(':')?;
        if scheme.is_empty()
            || !scheme
                .bytes()
                .all(|c| c.is_ascii_alphanumeric() || b"+-.".contains(&c))
        {
            return None;
        }
        // URI headers start at the first '?' after the host part.
        let (user, after_user) = {
            let no_headers = &rest[..rest.find('?').unwrap_or(rest.len())];
            match no_headers.rfind('@') {
                Some(at) => (Some(&rest[..at]), &rest[at + 1..]),
                None => (None, rest),
            }
        };
        let after_user = &after_user[..after_user.find('?').unwrap_or(after_user.len())];
        let (hostport, params) = match after_user.find(';') {
            Some(i) => (&after_user[..i], &after_user[i + 1..]),
            None => (after_user, ""),
        };
        let (host, port) = if let Some(v6) = hostport.strip_prefix('[') {
            let (h, tail) = v6.split_once(']')?;
            (h, tail.strip_prefix(':'))
        } else {
            match hostport.rsplit_once(':') {
                Some((h, p)) if !h.contains(':') => (h, Some(p)),
                _ => (hostport, None),
            }
        };
        if host.is_empty() {
            return None;
        }
        let port = match port {
            Some(p) => Some(p.parse().ok()?),
            None => None,
        };
        let params = params
            .split(';')
            .filter(|p| !p.trim().is_empty())
            .map(|p| match p.split_once('=') {
                Some((n, v)) => (n.trim().to_ascii_lowercase(), Some(v.trim().to_string())),
                None => (p.trim().to_ascii_lowercase(), None),
            })
            .collect();
        Some(SipUri {
            scheme: scheme.to_ascii_lowercase(),
            user: user.map(|u| u.split(':').next().unwrap_or(u).to_string()),
            host: host.to_string(),
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

    /// Port implied when the URI omits it (RFC 3261 §19.1.2): 5061 for
    /// `sips` and for `transport=tls`, else 5060.
    pub(crate) fn default_port(&self) -> u16 {
        let transport = self
            .param("transport")
            .flatten()
            .map(|t| SipTransport::from_token(t.as_bytes()));
        if self.scheme == "sips" || transport == Some(SipTransport::Tls) {
            5061
        } else {
            5060
        }
    }

    /// RFC 3261 §19.1.4 equality reduced to what finds a binding (a
    /// registrar's §10.3 step 7, routing to a registered contact): user,
    /// host (case-insensitive) and port (default filled in); two URIs name
    /// the same binding when their keys are equal.
    pub(crate) fn binding_key(&self) -> String {
        format!(
            "{}@{}:{}",
            self.user.as_deref().unwrap_or(""),
            self.host.to_ascii_lowercase(),
            self.port.unwrap_or_else(|| self.default_port())
        )
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
    fn userinfo_with_semicolons_and_headers() {
        let u = SipUri::parse(b"sip:user;par=u%40example.net@example.com?Route=x").unwrap();
        assert_eq!(u.user.as_deref(), Some("user;par=u%40example.net"));
        assert_eq!(u.host, "example.com");
        assert!(u.params.is_empty());
        assert!(SipUri::parse(b"no-scheme").is_none());
    }

    #[test]
    fn default_port_and_binding_key_follow_rfc3261_19_1_2() {
        let key = |s: &str| SipUri::parse(s.as_bytes()).unwrap().binding_key();
        assert_eq!(
            key("sip:Alice@PBX.example.com"),
            "Alice@pbx.example.com:5060"
        );
        assert_eq!(
            key("sips:alice@pbx.example.com"),
            "alice@pbx.example.com:5061"
        );
        assert_eq!(key("sip:alice@h;transport=TLS"), "alice@h:5061");
        assert_eq!(key("sip:alice@h;transport=tcp"), "alice@h:5060");
        assert_eq!(key("sip:[2001:db8::1]:5070;lr"), "@2001:db8::1:5070");
    }

    #[test]
    fn ipv6_reference() {
        let u = SipUri::parse(b"sip:[2001:db8::10]:5070").unwrap();
        assert_eq!(u.host, "2001:db8::10");
        assert_eq!(u.port, Some(5070));
    }
}
