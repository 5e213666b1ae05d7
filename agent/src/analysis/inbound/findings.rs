//! Why an inbound call to a registered contact failed, in words an
//! operator can act on, and the `call.inbound_blocked` finding built from
//! it.

use std::net::IpAddr;
use std::sync::Arc;

use crate::analysis::unanswered;
use crate::diagnosis::{Code, Diagnosis, Evidence, MessageRef};
use crate::sip::MessageRecord;
use crate::{packet::DropReason, time::Timestamp};

use super::bindings::{MatchedBy, RegisteredContact};

/// What the final status of an INVITE to a registered contact means when
/// it says "this host will not take the call" (RFC 3261 §21), phrased for
/// a PBX. `None` for statuses that are a normal end of a call attempt:
/// 2xx, 3xx (the caller follows the redirect), 401/407 (judged by
/// whether the caller authenticates: [`super::challenges`]), 486 busy, 487 cancelled, 600 busy everywhere, 603
/// decline, and the rest.
pub(crate) fn blocking_status(status: u16) -> Option<&'static str> {
    Some(match status {
        403 => {
            "the PBX refuses calls from this peer: usually an ACL (`permit=`/`deny=`, `acl=`) \
             that does not allow the provider's IP, or no `identify` match so the INVITE is \
             taken as from an unknown peer"
        }
        404 => {
            "the number (DID) is not routed: the endpoint's inbound context (`context=` in the \
             pjsip endpoint, the FreeSWITCH public dialplan) has no extension for the \
             Request-URI/To user"
        }
        480 => {
            "no device is available for the number: the extension the DID routes to has no \
             registered endpoint or is set unavailable"
        }
        484 => {
            "the number format does not match the dialplan (e.g. +E.164 versus national \
             digits): the PBX waits for more digits"
        }
        488 => {
            "codec mismatch: none of the offered codecs is allowed on the endpoint (`allow=`), \
             or the SDP offer is not acceptable (SRTP/crypto required on one side only)"
        }
        500 => "the PBX failed while handling the INVITE (dialplan error, module failure)",
        502 => "a gateway behind the PBX gave an invalid answer",
        503 => {
            "the PBX is not taking calls: overloaded, shutting down, a call limit reached or \
             the module that handles the call not loaded"
        }
        _ => return None,
    })
}

/// A packet of the call this host's kernel dropped.
#[derive(Clone, Debug)]
pub(crate) struct DropNote {
    pub at: Timestamp,
    pub reason: DropReason,
    /// `INVITE (CSeq 1) from 10.0.0.1:5060`.
    pub what: String,
    pub from: std::net::SocketAddr,
    pub port: u16,
    pub count: u32,
}

impl DropNote {
    /// The reason as a clause: what the drop means for the call.
    pub(crate) fn clause(&self) -> String {
        match self.reason.name.as_str() {
            "netfilter_drop" => format!(
                "the INVITE from {} reached this host and was dropped by the local firewall \
                 ({})",
                self.from, self.reason
            ),
            "no_socket" => format!(
                "the INVITE from {} reached this host but nothing listens on port {} \
                 ({}): the PBX does not listen where it registered",
                self.from, self.port, self.reason
            ),
            _ => format!(
                "the INVITE from {} reached this host and its kernel dropped it ({})",
                self.from, self.reason
            ),
        }
    }
}

/// An ICMP destination-unreachable returned for the INVITE.
#[derive(Clone, Debug)]
pub(crate) struct IcmpNote {
    pub at: Timestamp,
    pub from: IpAddr,
    /// `type 3 code 3 (port unreachable)`.
    pub describe: String,
    /// `port unreachable`.
    pub kind: String,
}

/// Why the call failed.
#[derive(Clone, Debug)]
pub(crate) enum Failure {
    /// No response at all before the transaction timed out.
    Unanswered {
        sends: Vec<Timestamp>,
        retransmissions: u32,
        local_drop: Option<DropNote>,
        icmp: Option<IcmpNote>,
        /// Judged when the capture ended before Timer B
        /// ([`crate::analysis::unanswered`]).
        capture_ended: bool,
    },
    /// The contact answered with a status from [`blocking_status`].
    Rejected {
        response: Arc<MessageRecord>,
        status: u16,
        meaning: &'static str,
    },
    /// The INVITE was dropped by this host (raised at once, before any
    /// timeout).
    DroppedLocally(DropNote),
    /// The contact challenged the INVITE and the caller did not retry
    /// within `waited`.
    ChallengeUnanswered {
        response: Arc<MessageRecord>,
        status: u16,
        waited: std::time::Duration,
    },
}

impl Failure {
    /// Findings for one binding are raised once per reason key per window.
    pub(crate) fn key(&self) -> String {
        match self {
            // A timeout explained by a drop is the drop already raised.
            Failure::Unanswered {
                local_drop: Some(d),
                ..
            }
            | Failure::DroppedLocally(d) => format!("drop {}", d.reason),
            Failure::Unanswered { icmp: Some(_), .. } => "icmp".into(),
            Failure::Unanswered { .. } => "unanswered".into(),
            Failure::Rejected { status, .. } => format!("status {status}"),
            Failure::ChallengeUnanswered { .. } => "challenge".into(),
        }
    }
}

/// The `call.inbound_blocked` finding for `invite` to `binding`.
pub(crate) fn diagnosis(
    binding: &RegisteredContact,
    matched: MatchedBy,
    invite: &MessageRecord,
    failure: &Failure,
    at: Timestamp,
) -> Diagnosis {
    let m = &invite.message;
    let call_id = m.call_id().map(|c| c.into_owned()).unwrap_or_default();
    let registered = format!(
        "{} is registered at {} with Contact {}",
        binding.aor, binding.registrar, binding.contact
    );
    let src = invite.meta.src;
    let summary = match failure {
        Failure::Unanswered {
            sends,
            local_drop,
            icmp,
            capture_ended,
            ..
        } => {
            let why = match (local_drop, icmp) {
                (None, None) if *capture_ended => format!(
                    "it was {}: inbound INVITEs do not reach the PBX (NAT binding closed, \
                     firewall, or the Contact is not reachable from the provider)",
                    unanswered::capture_ended_clause(sends, 0)
                ),
                (Some(d), _) => d.clause(),
                (None, Some(i)) => format!(
                    "ICMP {} from the contact ({}): nothing receives SIP at {}",
                    i.kind, i.from, invite.meta.dst
                ),
                (None, None) => format!(
                    "it was sent {} time(s) and nothing answered: inbound INVITEs do not reach \
                     the PBX (NAT binding closed, firewall, or the Contact is not reachable \
                     from the provider)",
                    sends.len().max(1)
                ),
            };
            format!("{registered}, but the INVITE from {src} was never answered: {why}.")
        }
        Failure::Rejected {
            response,
            status,
            meaning,
        } => format!(
            "{registered}, but the INVITE from {src} was answered {} {}: {meaning}.",
            status,
            response.message.reason_phrase().unwrap_or_default()
        ),
        Failure::DroppedLocally(d) => format!(
            "{registered}, but {}: inbound calls cannot reach the PBX.",
            d.clause()
        ),
        Failure::ChallengeUnanswered {
            response,
            status,
            waited,
        } => format!(
            "{registered}, but the PBX challenged the INVITE from {src} ({status} {}) and the \
             caller did not retry with credentials within {} s: a provider does not \
             authenticate towards its customer, so the PBX did not recognise the INVITE as \
             coming from its trunk (Asterisk challenges INVITEs from an address no \
             `type=identify` section matches: add `match={}`).",
            response.message.reason_phrase().unwrap_or_default(),
            waited.as_secs(),
            src.ip()
        ),
    };
    let reference = MessageRef::of(invite);
    let mut d = Diagnosis::new(Code::CallInboundBlocked, at, summary)
        .with_evidence(Evidence::new("aor", binding.aor.clone()))
        .with_evidence(Evidence::new("contact", binding.contact.clone()))
        .with_evidence(Evidence::new("registrar", binding.registrar.to_string()))
        .with_evidence(Evidence::new("registered_from", binding.client.to_string()))
        .with_evidence(Evidence::new(
            "registered",
            format!("{} until {}", binding.registered_at, binding.expires_at),
        ))
        .with_evidence(
            Evidence::new("invite", format!("{} -> {}", src, invite.meta.dst))
                .in_message(reference.at, reference.label),
        )
        .with_evidence(Evidence::new("matched", matched.as_str()))
        .about(Some(&call_id), Some(&binding.aor))
        .with_evidence(Evidence::new("call_id", call_id));
    let text = |b: Option<&[u8]>| String::from_utf8_lossy(b.unwrap_or_default()).into_owned();
    d = d
        .with_evidence(Evidence::new("from", text(m.from_uri())))
        .with_evidence(Evidence::new("to", text(m.to_uri())));
    if let Some(u) = m.request_uri() {
        d = d.with_evidence(Evidence::new("request_uri", u.into_owned()));
    }
    match failure {
        Failure::Unanswered {
            sends,
            retransmissions,
            local_drop,
            icmp,
            capture_ended,
        } => {
            let first = sends.first().copied().unwrap_or(invite.meta.ts);
            let schedule = sends
                .iter()
                .map(|s| format!("+{:.3}s", s.since(first).as_secs_f64()))
                .collect::<Vec<_>>()
                .join(" ");
            d = d
                .with_evidence(Evidence::new("send_schedule", schedule))
                .with_evidence(Evidence::new(
                    "retransmissions",
                    retransmissions.to_string(),
                ));
            if let Some(l) = local_drop {
                d = d.with_evidence(drop_evidence(l));
            }
            if *capture_ended {
                d = d.with_evidence(Evidence::new(
                    "capture_ended",
                    format!(
                        "before the caller gave up (Timer B, {} s)",
                        unanswered::CLIENT_TIMEOUT.as_secs()
                    ),
                ));
            }
            if let Some(i) = icmp {
                d = d.with_evidence(
                    Evidence::new("icmp", format!("{} from {}", i.describe, i.from))
                        .in_message(i.at, "ICMP destination unreachable"),
                );
            }
        }
        Failure::Rejected {
            response, status, ..
        } => {
            let r = MessageRef::of(response);
            d = d.with_evidence(
                Evidence::new("status", status.to_string()).in_message(r.at, r.label),
            );
        }
        Failure::DroppedLocally(l) => d = d.with_evidence(drop_evidence(l)),
        Failure::ChallengeUnanswered {
            response,
            status,
            waited,
        } => {
            let r = MessageRef::of(response);
            d = d
                .with_evidence(
                    Evidence::new("status", status.to_string()).in_message(r.at, r.label),
                )
                .with_evidence(Evidence::new(
                    "retried_with_credentials",
                    format!("no (waited {} s)", waited.as_secs()),
                ));
        }
    }
    d
}

fn drop_evidence(l: &DropNote) -> Evidence {
    Evidence::new(
        "dropped_locally",
        format!("{} ({}, {} time(s))", l.what, l.reason, l.count),
    )
    .in_message(l.at, l.what.clone())
}
