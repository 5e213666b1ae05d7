//! The offer/answer state of one dialog (RFC 3264 over SIP: RFC 3261
//! §13.2.1 INVITE offer or late offer in the 2xx answered in the ACK,
//! RFC 3262 answers in reliable provisionals, RFC 3311 UPDATE).
//!
//! Fed every SDP body of the dialog in capture order with who sent it and
//! in which transaction; returns a completed negotiation when a body
//! answers the open offer.

use std::net::SocketAddr;

use super::call::Party;
use crate::analysis::media::sdp::SessionDescription;

/// One SDP body the dialog carried.
#[derive(Clone, Debug)]
pub(crate) struct Sdp {
    pub session: SessionDescription,
    pub party: Party,
    /// Where the SIP message carrying it came from (this hop).
    pub source: SocketAddr,
}

/// The kind of message an SDP body rode on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// INVITE, UPDATE or PRACK request.
    Request,
    /// ACK: only ever an answer (to an offer in a 2xx).
    Ack,
    /// 18x or 2xx to the transaction with this CSeq.
    Response,
}

/// A completed offer/answer exchange.
#[derive(Clone, Debug)]
pub(crate) struct Exchange {
    pub offer: Sdp,
    pub answer: Sdp,
}

#[derive(Default)]
pub(crate) struct Negotiation {
    /// The offer awaiting its answer, with its transaction's CSeq.
    pending: Option<(Sdp, u32)>,
    /// The last completed exchange: a 200 repeating the SDP of a reliable
    /// 183 answers the same offer again.
    last: Option<(Exchange, u32)>,
}

impl Negotiation {
    /// One SDP body in CSeq `cseq`'s transaction. Returns the exchange it
    /// completes, if any.
    pub(crate) fn on_sdp(&mut self, sdp: Sdp, carrier: Carrier, cseq: u32) -> Option<Exchange> {
        match carrier {
            Carrier::Ack => {
                // Late offer: the 2xx offered, the ACK answers.
                let (offer, _) = self.pending.take()?;
                self.complete(offer, sdp, cseq)
            }
            Carrier::Request => match self.pending.take() {
                // PRACK/UPDATE answering an offer from the other side.
                Some((offer, _)) if offer.party != sdp.party => self.complete(offer, sdp, cseq),
                _ => {
                    self.pending = Some((sdp, cseq));
                    None
                }
            },
            Carrier::Response => match self.pending.take() {
                Some((offer, c)) if offer.party != sdp.party && c == cseq => {
                    self.complete(offer, sdp, cseq)
                }
                other => {
                    self.pending = other;
                    match &self.last {
                        // The same offer answered again (183 then 200).
                        Some((ex, c)) if *c == cseq && ex.answer.party == sdp.party => {
                            let offer = ex.offer.clone();
                            self.complete(offer, sdp, cseq)
                        }
                        // No offer in the request: this is the offer, the
                        // ACK will answer it.
                        _ if self.pending.is_none() => {
                            self.pending = Some((sdp, cseq));
                            None
                        }
                        _ => None,
                    }
                }
            },
        }
    }

    /// The transaction `cseq` failed (final response >= 300): its offer is
    /// withdrawn (RFC 3261 §14.1: the session stays as it was).
    pub(crate) fn on_failure(&mut self, cseq: u32) {
        if self.pending.as_ref().is_some_and(|(_, c)| *c == cseq) {
            self.pending = None;
        }
    }

    fn complete(&mut self, offer: Sdp, answer: Sdp, cseq: u32) -> Option<Exchange> {
        let ex = Exchange { offer, answer };
        self.last = Some((ex.clone(), cseq));
        Some(ex)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::media::parse_sdp;

    fn sdp(party: Party, port: u16) -> Sdp {
        let body = format!(
            "v=0\r\no=- 1 1 IN IP4 192.0.2.1\r\ns=-\r\nc=IN IP4 192.0.2.1\r\nt=0 0\r\n\
             m=audio {port} RTP/AVP 0\r\n"
        );
        Sdp {
            session: parse_sdp(body.as_bytes()).unwrap(),
            party,
            source: "192.0.2.1:5060".parse().unwrap(),
        }
    }

    fn ports(ex: &Exchange) -> (u16, u16) {
        (
            ex.offer.session.media[0].port,
            ex.answer.session.media[0].port,
        )
    }

    #[test]
    fn offer_in_invite_answered_in_183_and_again_in_200() {
        let mut n = Negotiation::default();
        assert!(
            n.on_sdp(sdp(Party::Caller, 10000), Carrier::Request, 1)
                .is_none()
        );
        let early = n
            .on_sdp(sdp(Party::Callee, 20000), Carrier::Response, 1)
            .unwrap();
        assert_eq!(ports(&early), (10000, 20000));
        let ok = n
            .on_sdp(sdp(Party::Callee, 20000), Carrier::Response, 1)
            .unwrap();
        assert_eq!(ports(&ok), (10000, 20000));
    }

    #[test]
    fn late_offer_in_200_answered_in_ack() {
        let mut n = Negotiation::default();
        assert!(
            n.on_sdp(sdp(Party::Callee, 20000), Carrier::Response, 1)
                .is_none()
        );
        let ex = n
            .on_sdp(sdp(Party::Caller, 10000), Carrier::Ack, 1)
            .unwrap();
        assert_eq!(ports(&ex), (20000, 10000));
        assert_eq!(ex.offer.party, Party::Callee);
    }

    #[test]
    fn re_invite_from_the_callee_renegotiates() {
        let mut n = Negotiation::default();
        n.on_sdp(sdp(Party::Caller, 10000), Carrier::Request, 1);
        n.on_sdp(sdp(Party::Callee, 20000), Carrier::Response, 1);
        assert!(
            n.on_sdp(sdp(Party::Callee, 20002), Carrier::Request, 7)
                .is_none()
        );
        let ex = n
            .on_sdp(sdp(Party::Caller, 10002), Carrier::Response, 7)
            .unwrap();
        assert_eq!(ports(&ex), (20002, 10002));
    }

    #[test]
    fn a_rejected_offer_is_withdrawn() {
        let mut n = Negotiation::default();
        n.on_sdp(sdp(Party::Caller, 10000), Carrier::Request, 1);
        n.on_failure(1);
        assert!(
            n.on_sdp(sdp(Party::Caller, 10000), Carrier::Ack, 1)
                .is_none()
        );
    }
}
