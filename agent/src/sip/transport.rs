//! The SIP transport a message says it uses (RFC 3261 §18, §20.42 Via
//! `sent-protocol`, §19.1.1 `transport=` URI parameter; RFC 7118 WS/WSS).
//!
//! Not the same as [`crate::packet::Transport`], the L4 protocol the bytes
//! were captured on: a Via may say TLS or WSS while the capture sees TCP.

/// A SIP transport token (RFC 3261 §25.1 `transport`): decides default
/// ports (§19.1.2) and whether a source port is meaningful (UDP) or
/// ephemeral (connection-oriented).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SipTransport {
    Udp,
    Tcp,
    Tls,
    Sctp,
    Ws,
    Wss,
    /// An extension token (`other-transport`); compared as unknown.
    Other,
}

impl SipTransport {
    /// From a transport token as written (`UDP`, `tcp`, `TLS`, ...);
    /// tokens are case-insensitive (RFC 3261 §7.3.1).
    pub fn from_token(token: &[u8]) -> SipTransport {
        let t = super::headers::trim(token);
        let is = |s: &str| t.eq_ignore_ascii_case(s.as_bytes());
        if is("UDP") {
            SipTransport::Udp
        } else if is("TCP") {
            SipTransport::Tcp
        } else if is("TLS") {
            SipTransport::Tls
        } else if is("SCTP") {
            SipTransport::Sctp
        } else if is("WS") {
            SipTransport::Ws
        } else if is("WSS") {
            SipTransport::Wss
        } else {
            SipTransport::Other
        }
    }

    /// Port implied when a Via sent-by or a URI omits it (RFC 3261 §19.1.2:
    /// 5061 for TLS-based transports, 5060 otherwise).
    pub fn default_port(self) -> u16 {
        match self {
            SipTransport::Tls | SipTransport::Wss => 5061,
            _ => 5060,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_case_insensitive_and_unknown_is_other() {
        assert_eq!(SipTransport::from_token(b"udp"), SipTransport::Udp);
        assert_eq!(SipTransport::from_token(b" TLS "), SipTransport::Tls);
        assert_eq!(SipTransport::from_token(b"Wss"), SipTransport::Wss);
        assert_eq!(SipTransport::from_token(b"DCCP"), SipTransport::Other);
        assert_eq!(SipTransport::Tls.default_port(), 5061);
        assert_eq!(SipTransport::Sctp.default_port(), 5060);
    }
}
