//! Who learns from whom: the one place that hands the analyses their
//! input and passes what one analysis found to the others.
//!
//! Every input goes to the analyses in one fixed order — registrations,
//! digest exchanges (requests other than REGISTER), reachability, calls,
//! inbound — skipping those that do not take it
//! (the `match` in [`Analyses::dispatch`] lists, per input, exactly who
//! does). Their findings come out in that order too, which is the order
//! callers (console, JSON, traces) see them in.
//!
//! Two dependencies between analyses, both one way:
//!
//! 1. **Inbound learns registrations.** `call.inbound_blocked` needs the
//!    live bindings (RFC 3261 §10.3), which are the registration tracker's
//!    outcomes. Inbound learns each outcome right after the tracker
//!    concludes it, before inbound itself sees the same input: a 200 OK
//!    to a REGISTER and the provider's INVITE in the same batch must find
//!    the binding already there.
//! 2. **Calls note the others' findings.** A finding whose `call_id`
//!    evidence names an open call (`net.no_response`,
//!    `net.icmp_unreachable`, `fw.local_drop`, `call.inbound_blocked`)
//!    joins that call's list of codes. The call notes them once the batch
//!    (one packet's SIP facts, its ICMP errors, one kernel drop, one timer
//!    run) is through, so a finding raised by reachability or inbound for
//!    a packet is on the call's next report, whichever analysis ran first.
//!    A call that closes within the same batch (a timer, the end of input)
//!    has already sent its last report without it.

use std::sync::Arc;

use crate::analysis::calls::CallTracker;
use crate::analysis::digest::exchanges::Exchanges;
use crate::analysis::finding::Finding;
use crate::analysis::inbound::Inbound;
use crate::analysis::media::FlowSnapshot;
use crate::analysis::reachability::{Reachability, ReachabilityConfig};
use crate::analysis::registration::RegistrationTracker;
use crate::packet::{Datagram, DropReason, IcmpUnreachable, Meta};
use crate::sip::{MessageRecord, TimeoutCause, Transaction};
use crate::time::Timestamp;

use super::PipelineConfig;

/// One thing the analyses are told, on the packet clock.
pub(crate) enum Input<'a> {
    /// Every parsed message in capture order, retransmissions included.
    Message(Arc<MessageRecord>),
    /// A transaction's first final response arrived (RFC 3261 §17.1).
    Completed(Arc<Transaction>),
    /// No final response: timer B/F ran out (RFC 3261 §17.1.1.2,
    /// §17.1.2.2), the capture ended, or the table evicted it.
    TimedOut(Arc<Transaction>, TimeoutCause),
    /// An ICMP destination-unreachable quoting a SIP datagram (RFC 792
    /// type 3, RFC 4443 type 1).
    Icmp(&'a IcmpUnreachable),
    /// A SIP message this host's kernel dropped.
    DroppedSip(&'a MessageRecord, &'a DropReason),
    /// A UDP datagram between unprivileged ports (RTP/RTCP) the kernel
    /// dropped.
    DroppedMedia(Meta, &'a DropReason),
    /// A datagram of a capture that may be RTP or RTCP (RFC 3550).
    Rtp(&'a Datagram),
    /// The kernel's RTP flow statistics as of a time.
    RtpFlows(Timestamp, &'a [FlowSnapshot]),
    /// The packet clock reached a time: timers fire.
    Tick(Timestamp),
    /// End of input.
    Finish,
}

/// The analyses the pipeline runs, and their wiring.
pub(crate) struct Analyses {
    pub(crate) registrations: RegistrationTracker,
    pub(crate) exchanges: Exchanges,
    pub(crate) reachability: Reachability,
    pub(crate) calls: CallTracker,
    pub(crate) inbound: Inbound,
}

impl Analyses {
    pub(crate) fn new(config: &PipelineConfig) -> Self {
        Self {
            registrations: RegistrationTracker::new(config.registration.clone()),
            // Every challenged request is checked with the same
            // credentials and loop threshold as REGISTER.
            exchanges: Exchanges::new(&config.registration),
            reachability: Reachability::new(ReachabilityConfig {
                // The UA gives up when the transaction layer does.
                answer_timeout: config.transactions.timeout,
                ..config.reachability.clone()
            }),
            calls: CallTracker::new(config.calls.clone()),
            inbound: Inbound::new(config.inbound.clone()),
        }
    }

    /// The settings of a reloaded configuration that change without a
    /// restart ([`crate::pipeline::Pipeline::retune`]).
    pub(crate) fn retune(&mut self, config: &PipelineConfig) {
        self.registrations.retune(&config.registration);
        self.exchanges.retune(&config.registration);
        self.calls.retune(&config.calls);
    }

    /// Hands a batch of inputs to the analyses in order, then lets the
    /// calls note what the batch raised (see the module documentation).
    /// Findings are appended to `found`.
    pub(crate) fn analyse<'a>(
        &mut self,
        inputs: impl IntoIterator<Item = Input<'a>>,
        found: &mut Vec<Finding>,
    ) {
        let from = found.len();
        for input in inputs {
            self.dispatch(input, found);
        }
        for f in &found[from..] {
            if let Finding::Diagnosis(d) = f {
                self.calls.note_finding(d);
            }
        }
    }

    /// One input to every analysis that takes it, in the fixed order.
    fn dispatch(&mut self, input: Input<'_>, found: &mut Vec<Finding>) {
        let Analyses {
            registrations,
            exchanges,
            reachability,
            calls,
            inbound,
        } = self;
        let learned = found.len();
        match input {
            Input::Message(r) => {
                registrations.on_message(&r, found);
                learn(inbound, &found[learned..]);
                exchanges.on_message(&r, found);
                reachability.on_message(&r);
                calls.on_message(&r, found);
                inbound.on_message(&r);
            }
            Input::Completed(t) => {
                registrations.on_completed(&t);
                reachability.on_completed(&t);
                inbound.on_completed(&t, found);
            }
            Input::TimedOut(t, cause) => {
                registrations.on_timed_out(&t, cause, found);
                learn(inbound, &found[learned..]);
                reachability.on_timed_out(&t, cause, found);
                calls.on_timed_out(&t, found);
                inbound.on_timed_out(&t, cause, found);
            }
            Input::Icmp(icmp) => {
                reachability.on_icmp(icmp, found);
                inbound.on_icmp(icmp);
            }
            Input::DroppedSip(record, reason) => {
                reachability.on_dropped_sip(record, reason, found);
                inbound.on_dropped_sip(record, reason, found);
            }
            Input::DroppedMedia(meta, reason) => {
                reachability.on_dropped_media(meta, reason, found);
            }
            Input::Rtp(d) => {
                calls.observe_rtp(d.meta.ts, d.meta.src, d.meta.dst, &d.payload);
            }
            Input::RtpFlows(now, flows) => calls.update_flows(now, flows, found),
            Input::Tick(now) => {
                registrations.tick(now, found);
                learn(inbound, &found[learned..]);
                exchanges.tick(now);
                reachability.tick(now, found);
                calls.tick(now, found);
                inbound.tick(now, found);
            }
            Input::Finish => {
                registrations.finish(found);
                learn(inbound, &found[learned..]);
                reachability.finish(found);
                calls.finish(found);
                inbound.finish();
            }
        }
    }
}

/// Inbound learns the bindings of the registration outcomes in `found`.
fn learn(inbound: &mut Inbound, found: &[Finding]) {
    for f in found {
        if let Finding::RegistrationAttempt(a) = f {
            inbound.learn(a);
        }
    }
}
