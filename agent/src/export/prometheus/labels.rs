//! The closed label sets of the Prometheus view. Every label value comes
//! from a fixed list, so no traffic (a flood of invented methods, odd
//! status codes) can grow the number of time series; identifiers off the
//! wire (Call-ID, AOR, addresses, user agents) are never labels.

use prometheus_client::encoding::EncodeLabelSet;

use crate::packet::Direction;
use crate::sip::Method;

/// A SIP method as a label (RFC 3261 §7.1 and the extension RFCs that
/// [`Method`] knows); any other method is `other`.
pub(crate) fn method(m: Option<&Method>) -> &'static str {
    match m {
        Some(Method::Invite) => "INVITE",
        Some(Method::Ack) => "ACK",
        Some(Method::Bye) => "BYE",
        Some(Method::Cancel) => "CANCEL",
        Some(Method::Register) => "REGISTER",
        Some(Method::Options) => "OPTIONS",
        Some(Method::Prack) => "PRACK",
        Some(Method::Subscribe) => "SUBSCRIBE",
        Some(Method::Notify) => "NOTIFY",
        Some(Method::Publish) => "PUBLISH",
        Some(Method::Info) => "INFO",
        Some(Method::Refer) => "REFER",
        Some(Method::Message) => "MESSAGE",
        Some(Method::Update) => "UPDATE",
        Some(Method::Other(_)) | None => "other",
    }
}

/// A response code's class (RFC 3261 §7.2): `1xx` … `6xx`; a code
/// outside 100..=699 (malformed, yet parsed) is `other`.
pub(crate) fn status_class(code: u16) -> &'static str {
    match code {
        100..=199 => "1xx",
        200..=299 => "2xx",
        300..=399 => "3xx",
        400..=499 => "4xx",
        500..=599 => "5xx",
        600..=699 => "6xx",
        _ => "other",
    }
}

pub(crate) fn direction(d: Direction) -> &'static str {
    match d {
        Direction::Ingress => "in",
        Direction::Egress => "out",
        Direction::Unknown => "unknown",
    }
}

/// `sipscope_sip_messages_total`: `kind` is `request` or `response`;
/// `status_class` is `none` for requests.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MessageLabels {
    pub(crate) method: &'static str,
    pub(crate) kind: &'static str,
    pub(crate) status_class: &'static str,
    pub(crate) direction: &'static str,
}

/// `sipscope_sip_transactions_total`: `outcome` is the final response's
/// class, or `timeout` when none came (RFC 3261 §17.1.1.2 Timer B/F).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct TransactionLabels {
    pub(crate) method: &'static str,
    pub(crate) outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MethodLabel {
    pub(crate) method: &'static str,
}

/// Registration attempts by outcome (the analysis's fixed outcome names).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct OutcomeLabel {
    pub(crate) outcome: &'static str,
}

/// A diagnosis catalogue code (`diagnosis::Code`, a closed enum).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct CodeLabel {
    pub(crate) code: &'static str,
}

/// A media stream direction of a call: `caller_to_callee` or
/// `callee_to_caller` (who sent the RTP).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub(crate) struct MediaDirectionLabel {
    pub(crate) direction: &'static str,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_method_is_other_and_known_ones_keep_their_name() {
        assert_eq!(method(Some(&Method::from_bytes(b"REGISTER"))), "REGISTER");
        assert_eq!(method(Some(&Method::from_bytes(b"FLOOD-1234"))), "other");
        // Methods are case-sensitive (RFC 3261 §7.1): not INVITE.
        assert_eq!(method(Some(&Method::from_bytes(b"invite"))), "other");
        assert_eq!(method(None), "other");
    }

    #[test]
    fn status_codes_fall_into_six_classes_and_other() {
        assert_eq!(status_class(100), "1xx");
        assert_eq!(status_class(401), "4xx");
        assert_eq!(status_class(699), "6xx");
        assert_eq!(status_class(99), "other");
        assert_eq!(status_class(700), "other");
    }
}
