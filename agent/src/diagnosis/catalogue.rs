//! The diagnosis catalogue: every code sipscope can raise, its stable
//! dotted name, title and default severity. Codes are stable API (DESIGN,
//! "Diagnosis catalogue"): extend, never rename.

use std::fmt;
use std::str::FromStr;

use serde::{Serialize, Serializer};

use super::{Remedy, Severity};

/// A diagnosis code. [`Code::as_str`] is the dotted name used in every
/// export (console, JSON, `sipscope.diagnosis.code` in OTLP).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Code {
    AuthRealmMismatch,
    AuthNonceMismatch,
    AuthStaleNonce,
    AuthUriMismatch,
    AuthAlgorithmMismatch,
    AuthRejected,
    AuthChallengeLoop,
    AuthPasswordMismatch,
    /// Informational: the configured password produces the client's
    /// response, so a failure lies elsewhere.
    AuthPasswordCorrect,
    AuthUsernameIsDid,
    AuthForbiddenAfterAuth,
    NatPrivateContact,
    /// Extension of the DESIGN table: the Contact port differs from the
    /// UDP source port the request came from (a port-translating NAT).
    NatContactPortMismatch,
    NatRewrittenByPeer,
    NatPrivateSdp,
    NetNoResponse,
    NetIcmpUnreachable,
    FwLocalDrop,
    RegRejected,
    RegExpired,
    RegFlapping,
    MediaNoRtp,
    MediaOneWay,
    MediaQuality,
    CallInboundBlocked,
}

/// `Code::from_str` was given a name that is not in the catalogue.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown diagnosis code `{0}` (see the catalogue in README)")]
pub struct UnknownCode(pub String);

impl Code {
    /// Every code, in catalogue order.
    pub const ALL: &'static [Code] = &[
        Code::AuthRealmMismatch,
        Code::AuthNonceMismatch,
        Code::AuthStaleNonce,
        Code::AuthUriMismatch,
        Code::AuthAlgorithmMismatch,
        Code::AuthRejected,
        Code::AuthChallengeLoop,
        Code::AuthPasswordMismatch,
        Code::AuthPasswordCorrect,
        Code::AuthUsernameIsDid,
        Code::AuthForbiddenAfterAuth,
        Code::NatPrivateContact,
        Code::NatContactPortMismatch,
        Code::NatRewrittenByPeer,
        Code::NatPrivateSdp,
        Code::NetNoResponse,
        Code::NetIcmpUnreachable,
        Code::FwLocalDrop,
        Code::RegRejected,
        Code::RegExpired,
        Code::RegFlapping,
        Code::MediaNoRtp,
        Code::MediaOneWay,
        Code::MediaQuality,
        Code::CallInboundBlocked,
    ];

    /// The stable dotted name, e.g. `auth.realm_mismatch`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Code::AuthRealmMismatch => "auth.realm_mismatch",
            Code::AuthNonceMismatch => "auth.nonce_mismatch",
            Code::AuthStaleNonce => "auth.stale_nonce",
            Code::AuthUriMismatch => "auth.uri_mismatch",
            Code::AuthAlgorithmMismatch => "auth.algorithm_mismatch",
            Code::AuthRejected => "auth.rejected",
            Code::AuthChallengeLoop => "auth.challenge_loop",
            Code::AuthPasswordMismatch => "auth.password_mismatch",
            Code::AuthPasswordCorrect => "auth.password_correct",
            Code::AuthUsernameIsDid => "auth.username_is_did",
            Code::AuthForbiddenAfterAuth => "auth.forbidden_after_auth",
            Code::NatPrivateContact => "nat.private_contact",
            Code::NatContactPortMismatch => "nat.contact_port_mismatch",
            Code::NatRewrittenByPeer => "nat.rewritten_by_peer",
            Code::NatPrivateSdp => "nat.private_sdp",
            Code::NetNoResponse => "net.no_response",
            Code::NetIcmpUnreachable => "net.icmp_unreachable",
            Code::FwLocalDrop => "fw.local_drop",
            Code::RegRejected => "reg.rejected",
            Code::RegExpired => "reg.expired",
            Code::RegFlapping => "reg.flapping",
            Code::MediaNoRtp => "media.no_rtp",
            Code::MediaOneWay => "media.one_way",
            Code::MediaQuality => "media.quality",
            Code::CallInboundBlocked => "call.inbound_blocked",
        }
    }

    /// A short title for listings and span event names.
    pub const fn title(self) -> &'static str {
        match self {
            Code::AuthRealmMismatch => "credentials answer a different realm",
            Code::AuthNonceMismatch => "credentials carry a nonce the challenge did not issue",
            Code::AuthStaleNonce => "server reported a stale nonce",
            Code::AuthUriMismatch => "digest uri differs from the Request-URI",
            Code::AuthAlgorithmMismatch => "digest algorithm or qop not among those challenged",
            Code::AuthRejected => "credentials rejected (challenged again)",
            Code::AuthChallengeLoop => "the same authentication failure repeats",
            Code::AuthPasswordMismatch => "the response does not match the configured password",
            Code::AuthPasswordCorrect => "the configured password is correct",
            Code::AuthUsernameIsDid => "auth username is the phone number (DID)",
            Code::AuthForbiddenAfterAuth => "403 Forbidden to a request with credentials",
            Code::NatPrivateContact => "private address advertised in Contact/Via",
            Code::NatContactPortMismatch => "Contact port differs from the source port",
            Code::NatRewrittenByPeer => "the peer sees this host through a NAT",
            Code::NatPrivateSdp => "private media address in SDP",
            Code::NetNoResponse => "no response to a request",
            Code::NetIcmpUnreachable => "ICMP unreachable for SIP/RTP",
            Code::FwLocalDrop => "the local firewall dropped SIP/RTP",
            Code::RegRejected => "registration refused without a challenge",
            Code::RegExpired => "registration expired without refresh",
            Code::RegFlapping => "registration keeps flapping",
            Code::MediaNoRtp => "no RTP after the call was answered",
            Code::MediaOneWay => "RTP flows in one direction only",
            Code::MediaQuality => "poor media quality",
            Code::CallInboundBlocked => "registered, but inbound calls fail",
        }
    }

    /// Severity used by [`super::Diagnosis::new`]; analyses may raise or
    /// lower it with evidence (e.g. a stale nonce the client recovered from).
    pub const fn default_severity(self) -> Severity {
        match self {
            Code::AuthPasswordCorrect | Code::AuthStaleNonce | Code::NatRewrittenByPeer => {
                Severity::Info
            }
            Code::AuthNonceMismatch
            | Code::AuthUriMismatch
            | Code::AuthUsernameIsDid
            | Code::NatPrivateContact
            | Code::NatContactPortMismatch
            | Code::NatPrivateSdp
            | Code::RegFlapping
            | Code::MediaQuality => Severity::Warning,
            Code::AuthRealmMismatch
            | Code::AuthAlgorithmMismatch
            | Code::AuthRejected
            | Code::AuthChallengeLoop
            | Code::AuthPasswordMismatch
            | Code::AuthForbiddenAfterAuth
            | Code::NetNoResponse
            | Code::NetIcmpUnreachable
            | Code::FwLocalDrop
            | Code::RegRejected
            | Code::RegExpired
            | Code::MediaNoRtp
            | Code::MediaOneWay
            | Code::CallInboundBlocked => Severity::Error,
        }
    }

    /// The catalogue's remedy for this code, for every PBX.
    pub fn remedy(self) -> Remedy {
        super::remedy::for_code(self)
    }
}

impl fmt::Display for Code {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Code {
    type Err = UnknownCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Code::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| UnknownCode(s.to_owned()))
    }
}

impl Serialize for Code {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}
