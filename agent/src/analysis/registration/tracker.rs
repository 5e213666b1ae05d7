//! The registration tracker: per binding, the attempts (REGISTER →
//! challenge → authenticated REGISTER → final), their outcomes, granted
//! expiries and the findings on the way (RFC 3261 §10, §22).
//!
//! Driven through its entry points on the packet clock:
//! - a REGISTER request (not a retransmission) starts an attempt or
//!   continues the open one, and its credentials are checked against the
//!   last challenge of the binding (same Call-ID and AOR);
//! - a completed REGISTER transaction ends the attempt on a final
//!   response other than 401/407/423, or records the challenge;
//! - timers (give-up after a challenge nobody answers, expiry of a granted
//!   registration) fire from [`RegistrationTracker::tick`].
//!
//! It does not care which side is the PBX: a trunk registering out and
//! phones registering to it are the same exchange seen from either end.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::analysis::digest::{
    self, AuthenticatedRequest, Challenge, Credentials, diagnose_answer, forbidden_after_auth,
};
use crate::analysis::finding::Finding;
use crate::analysis::nat::{self, RequestAddresses};
use crate::diagnosis::{Code, Diagnosis, MessageRef};
use crate::sip::{Contact, MessageRecord, Method, TimeoutCause, Transaction, contact};
use crate::time::Timestamp;

mod auth;
mod outcome;
mod table;

use super::{Binding, Outcome, RegistrationStats, TrackerConfig, exchange, findings};

/// The Call-ID and AOR (To URI) of a REGISTER exchange: RFC 3261 §10.2.4
/// has a UA keep its Call-ID across refreshes, and a Contact change under
/// the same Call-ID (a NAT rebinding) is the same registration moving.
/// Responses carry no usable Contact of their own, so every exchange is
/// found through this key.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct BindingKey {
    call_id: String,
    aor: String,
}

/// What a binding is (RFC 3261 §10.2, §10.3 step 7: the registrar binds
/// the AOR to the Contact): the same AOR and Contact from the same client
/// under a new Call-ID is the same binding. PJSIP takes a new Call-ID when
/// it retries after a failure; the refresh under it keeps the binding
/// alive and its outcomes belong to the same history (flapping).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ContactKey {
    aor: String,
    /// Contact URI without parameters, lower-cased.
    contact: String,
    client: IpAddr,
}

impl ContactKey {
    fn new(aor: &str, contact: &str, client: IpAddr) -> Self {
        let bare = contact.split(';').next().unwrap_or(contact);
        Self {
            aor: aor.to_owned(),
            contact: bare.trim().to_ascii_lowercase(),
            client,
        }
    }
}

/// Call-IDs remembered per binding to find its responses (the newest are
/// kept; a client does not go back to an old Call-ID).
const MAX_CALL_IDS: usize = 4;

/// The last challenge a Call-ID of the binding drew, kept to pair the
/// next Authorization with it.
struct LastChallenge {
    call_id: String,
    challenges: Vec<Challenge>,
    message: MessageRef,
}

struct OpenAttempt {
    /// The Call-ID of the REGISTER that opened it (RFC 3261 §10.2: its
    /// retries keep it), which with `first_cseq` names the attempt.
    call_id: String,
    first_cseq: u32,
    started: Timestamp,
    transactions: Vec<Arc<Transaction>>,
    diagnoses: Vec<Diagnosis>,
    auth_username: Option<String>,
    realm: Option<String>,
    /// Status of the last final response (401/407/423 keep it open).
    last_final: Option<(u16, Timestamp)>,
    /// A REGISTER of this attempt is still waiting for its final response.
    in_flight: bool,
    /// This attempt drew a challenge: credentials sent after it answer
    /// it. Credentials sent before (a refresh reusing the last nonce) that
    /// draw a fresh challenge were merely out of date, not wrong.
    challenged: bool,
    /// A stale=true challenge, waiting for the next final to say whether
    /// the client recovered.
    pending_stale: Option<(Timestamp, Challenge)>,
}

impl OpenAttempt {
    fn new(call_id: &str, first_cseq: u32, started: Timestamp) -> Self {
        Self {
            call_id: call_id.to_owned(),
            first_cseq,
            started,
            transactions: Vec::new(),
            diagnoses: Vec::new(),
            auth_username: None,
            realm: None,
            last_final: None,
            in_flight: true,
            challenged: false,
            pending_stale: None,
        }
    }
}

/// What the tracker keeps of the binding's last REGISTER until its final
/// response arrives.
struct LastRequest {
    call_id: String,
    cseq: u32,
    creds: Option<Credentials>,
    contacts: Vec<Contact>,
    requested_expiry: Option<u32>,
}

struct BindingState {
    binding: Binding,
    last_request: Option<LastRequest>,
    /// Call-ID and CSeq of the last final response handled.
    last_final_cseq: Option<(String, u32)>,
    /// The Call-IDs this binding was seen under, oldest first.
    call_ids: VecDeque<String>,
    /// Its entry in the Contact index, if its REGISTER named a Contact.
    contact_key: Option<ContactKey>,
    client: SocketAddr,
    registrar: SocketAddr,
    request_uri: Option<String>,
    attempt: Option<OpenAttempt>,
    /// The last challenge of each recent Call-ID, newest last (at most
    /// [`MAX_CALL_IDS`]): credentials answer the challenge their own
    /// Call-ID drew (RFC 3261 §22.2), so clients registering one binding
    /// under several Call-IDs at once are not paired with each other's
    /// nonces. Another Call-ID's challenge is paired only when it issued
    /// the nonce the credentials carry.
    challenges: VecDeque<LastChallenge>,
    /// Granted registration: (registered at, seconds, expires at).
    registered: Option<(Timestamp, u32, Timestamp)>,
    /// Codes already raised. Sticky codes stay; the others are cleared on
    /// a successful registration, so a later failure is reported again.
    raised: BTreeSet<Code>,
    /// Consecutive rejections of the same (username, realm).
    rejections: u32,
    rejected_as: Option<(String, String)>,
    /// Recent outcomes (time, success) for flapping.
    history: VecDeque<(Timestamp, bool)>,
    last_seen: Timestamp,
    lru: u64,
    deadline: Option<Timestamp>,
}

impl BindingState {
    /// The challenge `creds` sent under `call_id` answer: their own
    /// Call-ID's (RFC 3261 §22.2), else the kept one that issued their
    /// nonce. Nothing else is a safe guess: a Call-ID without a kept
    /// challenge may answer one this binding never saw (its 401 was not
    /// captured, or arrived after the index had forgotten the Call-ID and
    /// went to another binding), and pairing it with the binding's newest
    /// challenge would report another Call-ID's nonce as a mismatch.
    fn challenge_answered_by(&self, call_id: &str, creds: &Credentials) -> Option<&LastChallenge> {
        let kept = &self.challenges;
        kept.iter().rfind(|c| c.call_id == call_id).or_else(|| {
            kept.iter()
                .rfind(|c| c.challenges.iter().any(|ch| ch.nonce == creds.nonce))
        })
    }
}

/// Codes raised at most once per binding, whatever happens later: facts
/// about the path or the peer that every refresh would repeat.
fn sticky(code: Code) -> bool {
    matches!(
        code,
        Code::NatPrivateContact
            | Code::NatContactPortMismatch
            | Code::NatRewrittenByPeer
            | Code::AuthStaleNonce
            | Code::AuthPasswordCorrect
            | Code::RegFlapping
    )
}

/// History entries kept per binding for flapping.
const MAX_HISTORY: usize = 16;

/// See the module documentation.
pub struct RegistrationTracker {
    config: TrackerConfig,
    bindings: HashMap<u64, BindingState>,
    by_key: HashMap<BindingKey, u64>,
    by_contact: HashMap<ContactKey, u64>,
    /// Least recently used first: lru sequence → binding id.
    lru: BTreeMap<u64, u64>,
    deadlines: BTreeSet<(Timestamp, u64)>,
    next_id: u64,
    next_lru: u64,
    stats: RegistrationStats,
}

impl RegistrationTracker {
    /// Takes the thresholds and credentials of a reloaded configuration
    /// (`sipscope run` on SIGHUP); tables and their limits stay.
    pub fn retune(&mut self, config: &TrackerConfig) {
        self.config.challenge_loop_after = config.challenge_loop_after;
        self.config.credentials = config.credentials.clone();
    }

    pub fn new(config: TrackerConfig) -> Self {
        Self {
            config,
            bindings: HashMap::new(),
            by_key: HashMap::new(),
            by_contact: HashMap::new(),
            lru: BTreeMap::new(),
            deadlines: BTreeSet::new(),
            next_id: 1,
            next_lru: 1,
            stats: RegistrationStats::default(),
        }
    }

    pub fn stats(&self) -> RegistrationStats {
        let mut s = self.stats.clone();
        s.bindings = self.bindings.len() as u64;
        s
    }

    /// Every parsed message; REGISTER requests and final responses
    /// (RFC 3261 §10.2, §10.3) are tracked, others ignored. Findings and
    /// finished attempts are appended to `out`.
    pub(crate) fn on_message(&mut self, r: &Arc<MessageRecord>, out: &mut Vec<Finding>) {
        let m = &r.message;
        if m.method() != Some(&Method::Register) {
            return;
        }
        let is_final = m.status().is_some_and(|s| s >= 200);
        if (m.is_request() || is_final) && (!r.retransmission || self.new_cseq(r)) {
            if m.is_request() {
                self.on_request(r, out);
            } else {
                self.on_final(r, out);
            }
        }
    }

    /// A transaction got its first final response: a REGISTER one is kept
    /// with its attempt (the response itself arrives just after, as a
    /// message).
    pub(crate) fn on_completed(&mut self, t: &Arc<Transaction>) {
        if t.method == Method::Register {
            self.attach(t);
        }
    }

    /// A transaction ended without a final response: a REGISTER one ends
    /// its attempt as timed out (RFC 3261 §17.1.2.2 Timer F).
    pub(crate) fn on_timed_out(
        &mut self,
        t: &Arc<Transaction>,
        cause: TimeoutCause,
        out: &mut Vec<Finding>,
    ) {
        if t.method == Method::Register {
            self.end_timed_out(t, cause, out);
        }
    }

    /// A message the transaction layer calls a retransmission but whose
    /// CSeq is new for its binding: a client reusing one Via branch for
    /// every REGISTER (SIPp scenarios do) sends new requests that match the
    /// old transaction (RFC 3261 §17.2.3 matches on the branch only).
    fn new_cseq(&self, r: &MessageRecord) -> bool {
        let (Some(key), Some(cseq)) = (Self::key_of(r), r.message.cseq()) else {
            return false;
        };
        let Some(b) = self.by_key.get(&key).and_then(|id| self.bindings.get(id)) else {
            return false;
        };
        if r.message.is_request() {
            b.last_request
                .as_ref()
                .is_some_and(|l| l.cseq != cseq.number || l.call_id != key.call_id)
        } else {
            b.last_final_cseq
                .as_ref()
                .is_some_and(|(id, c)| *c != cseq.number || *id != key.call_id)
        }
    }

    /// Keeps a completed REGISTER transaction with its attempt (the final
    /// response itself is handled as its message arrives, just after).
    fn attach(&mut self, t: &Arc<Transaction>) {
        let Some(id) = self.transaction_binding(t, true) else {
            self.stats.unmatchable += 1;
            return;
        };
        let b = self.bindings.get_mut(&id).expect("binding exists");
        // No attempt open: its REGISTER joined the attempt of another
        // Call-ID of the binding, which that one's final response ended
        // (parallel registrations of one binding). Its own attempt starts
        // at its request, and its final response, just after, ends it.
        let a = b.attempt.get_or_insert_with(|| {
            self.stats.attempts += 1;
            OpenAttempt::new(
                t.call_id().as_deref().unwrap_or_default(),
                t.cseq,
                t.first_seen,
            )
        });
        if a.transactions.len() < self.config.max_transactions_per_attempt {
            a.transactions.push(t.clone());
        } else {
            self.stats.transactions_dropped += 1;
        }
    }

    /// Run timers up to `now` (packet clock): attempts whose challenge
    /// went unanswered end as given up; granted registrations that were
    /// not refreshed raise `reg.expired`; idle bindings are dropped.
    pub(crate) fn tick(&mut self, now: Timestamp, out: &mut Vec<Finding>) {
        while let Some(&(at, id)) = self.deadlines.first() {
            if at > now {
                break;
            }
            self.deadlines.pop_first();
            if let Some(b) = self.bindings.get_mut(&id) {
                b.deadline = None;
            }
            self.on_deadline(id, at, out);
        }
    }

    /// End of input: every open attempt ends (no final response: timed
    /// out; last final a challenge: gave up). Expiry does not fire: the
    /// packet clock never passed it.
    pub(crate) fn finish(&mut self, out: &mut Vec<Finding>) {
        let ids: Vec<u64> = self.lru.values().copied().collect();
        for id in ids {
            let at = self.bindings[&id].last_seen;
            self.end_open_attempt(id, at, false, out);
        }
    }

    fn key_of(msg: &MessageRecord) -> Option<BindingKey> {
        let m = &msg.message;
        Some(BindingKey {
            call_id: m.call_id()?.into_owned(),
            aor: String::from_utf8_lossy(m.to_uri()?).into_owned(),
        })
    }

    fn on_request(&mut self, r: &Arc<MessageRecord>, out: &mut Vec<Finding>) {
        let Some(key) = Self::key_of(r) else {
            self.stats.unmatchable += 1;
            return;
        };
        let m = &r.message;
        let at = r.meta.ts;
        let contacts = m.contacts();
        let contact_key = contacts
            .iter()
            .find(|c| !c.is_wildcard())
            .map(|c| ContactKey::new(&key.aor, &c.uri, r.meta.src.ip()));
        let call_id = key.call_id.clone();
        let id = self.request_binding(key, contact_key, r.meta.src, r.meta.dst, at);
        let cseq = m.cseq().map_or(0, |c| c.number);
        let creds = exchange::credentials(m);
        {
            let b = self.bindings.get_mut(&id).expect("binding exists");
            b.binding.call_id.clone_from(&call_id);
            b.client = r.meta.src;
            b.registrar = r.meta.dst;
            b.request_uri = m.request_uri().map(|u| u.into_owned());
            if let Some(c) = contacts.iter().find(|c| !c.is_wildcard()) {
                b.binding.contact = Some(c.uri.clone());
            }
            if b.attempt.is_none() {
                self.stats.attempts += 1;
            }
            b.last_request = Some(LastRequest {
                call_id: call_id.clone(),
                cseq,
                creds: creds.clone(),
                contacts: contacts.clone(),
                requested_expiry: exchange::requested_expiry(m),
            });
            let a = b
                .attempt
                .get_or_insert_with(|| OpenAttempt::new(&call_id, cseq, at));
            a.in_flight = true;
            if let Some(c) = &creds {
                a.auth_username = Some(c.username.clone());
                a.realm = Some(c.realm.clone());
            }
        }
        self.set_deadline(id, None);

        // NAT: what the REGISTER advertises against where it came from.
        let vias = m.vias();
        let hostports = contact::host_ports(&contacts);
        let nat = nat::check_request(
            at,
            &RequestAddresses {
                method: "REGISTER",
                source: r.meta.src,
                vias: &vias,
                contacts: &hostports,
            },
        );
        let here = MessageRef::of(r);
        for d in nat {
            self.raise(id, d.in_message(&here), out);
        }

        // Digest: pair the credentials with the binding's last challenge.
        if let Some(creds) = creds {
            let b = &self.bindings[&id];
            let call_id = m.call_id().unwrap_or_default();
            let found = match b.challenge_answered_by(&call_id, &creds) {
                Some(ch) => {
                    let uri = m.request_uri().unwrap_or_default();
                    diagnose_answer(
                        at,
                        &ch.challenges,
                        &creds,
                        &AuthenticatedRequest {
                            method: "REGISTER",
                            request_uri: &uri,
                            message: Some(&here),
                            challenge_message: Some(&ch.message),
                        },
                        Some(m.body()),
                        self.config.credentials.as_deref(),
                    )
                }
                // Credentials answering a challenge this binding does not
                // hold (not captured, evicted, or seen under another
                // binding): only the password can be checked.
                None => self
                    .config
                    .credentials
                    .as_deref()
                    .and_then(|s| s.lookup(&creds.realm, &creds.username))
                    .and_then(|secret| {
                        let v = digest::verify(&creds, "REGISTER", Some(m.body()), secret);
                        digest::password_finding(at, &creds, &v)
                    })
                    .into_iter()
                    .collect(),
            };
            for d in found {
                self.raise(id, d, out);
            }
        }
    }

    /// The binding a completed/timed-out REGISTER transaction belongs to.
    /// `create`: a binding seen first through this transaction is created
    /// (a completed one carries a result worth reporting); a timed-out one
    /// of an unknown (e.g. evicted) binding is not.
    fn transaction_binding(&mut self, t: &Transaction, create: bool) -> Option<u64> {
        let (r, from_request) = match (&t.request, &t.final_response) {
            (Some(r), _) => (r, true),
            (None, Some(r)) => (r, false),
            (None, None) => return None,
        };
        let key = Self::key_of(r)?;
        let (client, registrar) = if from_request {
            (r.meta.src, r.meta.dst)
        } else {
            (r.meta.dst, r.meta.src)
        };
        let at = r.meta.ts;
        let known = self.by_key.contains_key(&key);
        if !known && !create {
            return None;
        }
        let call_id = key.call_id.clone();
        let id = self.binding_id(key, client, registrar, at);
        if !known {
            // Only the response was captured: the attempt starts here.
            let b = self.bindings.get_mut(&id).expect("binding exists");
            if b.attempt.is_none() {
                b.attempt = Some(OpenAttempt::new(&call_id, t.cseq, t.first_seen));
                self.stats.attempts += 1;
            }
        }
        Some(id)
    }

    fn on_final(&mut self, resp: &Arc<MessageRecord>, out: &mut Vec<Finding>) {
        let Some(key) = Self::key_of(resp) else {
            self.stats.unmatchable += 1;
            return;
        };
        let at = resp.meta.ts;
        let key_call_id = key.call_id.clone();
        let id = self.binding_id(key, resp.meta.dst, resp.meta.src, at);
        let m = &resp.message;
        let status = m.status().unwrap_or(0);
        let cseq = m.cseq().map_or(0, |c| c.number);
        let here = MessageRef::of(resp);
        let (creds, request_contacts, requested) = {
            let b = self.bindings.get_mut(&id).expect("binding exists");
            let request = b
                .last_request
                .as_ref()
                .filter(|l| l.cseq == cseq && l.call_id == key_call_id);
            b.last_final_cseq = Some((key_call_id.clone(), cseq));
            let found = (
                request.and_then(|l| l.creds.clone()),
                request.map(|l| l.contacts.clone()).unwrap_or_default(),
                request.and_then(|l| l.requested_expiry),
            );
            if b.attempt.is_none() {
                // Only the response was captured: the attempt starts here.
                self.stats.attempts += 1;
            }
            let a = b
                .attempt
                .get_or_insert_with(|| OpenAttempt::new(&key_call_id, cseq, at));
            a.in_flight = false;
            a.last_final = Some((status, at));
            found
        };

        // NAT: the peer echoing our Via with received=/rport.
        if let Some(via) = m.top_via() {
            let hostports = contact::host_ports(&request_contacts);
            if let Some(d) = nat::check_response_via(at, &via, &hostports) {
                self.raise(id, d.in_message(&here), out);
            }
        }

        match status {
            401 | 407 => self.on_challenge(id, resp, creds.as_ref(), here, out),
            // 423 Interval Too Brief: the client retries with Min-Expires
            // (RFC 3261 §10.2.8); part of the negotiation, not a failure.
            423 => self.reschedule(id),
            200..=299 => {
                self.resolve_stale(id, true, out);
                let b = &self.bindings[&id];
                let granted = exchange::granted_expiry(m, b.binding.contact.as_deref())
                    .or(requested)
                    .unwrap_or(3600);
                let outcome = if requested == Some(0) || granted == 0 {
                    Outcome::Deregistered
                } else {
                    Outcome::Registered { expires: granted }
                };
                self.end_attempt(id, at, outcome, out);
            }
            300.. => {
                self.resolve_stale(id, false, out);
                let reason = m.reason_phrase().unwrap_or_default().into_owned();
                let warning = m.header("Warning");
                // 403 to credentials: the account is refused
                // (`auth.forbidden_after_auth`). Any other final error,
                // with or without credentials, is the registrar's answer to
                // the registration (a 5xx is the server's trouble, not the
                // account's): `reg.rejected` with its status.
                let d = match &creds {
                    Some(c) if status == 403 => {
                        forbidden_after_auth(at, c, status, &reason, warning.as_deref())
                    }
                    _ => {
                        let b = &self.bindings[&id];
                        findings::rejected(
                            &b.binding,
                            b.request_uri.as_deref(),
                            status,
                            &reason,
                            warning.as_deref(),
                            &here,
                            creds.is_some(),
                        )
                    }
                };
                self.raise(id, d, out);
                if status < 500 {
                    self.maybe_username_is_did(id, at, creds.as_ref(), out);
                }
                self.end_attempt(id, at, Outcome::Rejected { status, reason }, out);
            }
            _ => {}
        }
    }

    fn end_timed_out(&mut self, t: &Arc<Transaction>, cause: TimeoutCause, out: &mut Vec<Finding>) {
        let Some(id) = self.transaction_binding(t, false) else {
            self.stats.timeouts_unknown_binding += 1;
            return;
        };
        let at = t.last_seen;
        {
            let b = self.bindings.get_mut(&id).expect("binding exists");
            let Some(a) = b.attempt.as_mut() else { return };
            if a.transactions.len() < self.config.max_transactions_per_attempt {
                a.transactions.push(t.clone());
            } else {
                self.stats.transactions_dropped += 1;
            }
        }
        match cause {
            // Finish ends the attempt with everything else still open.
            TimeoutCause::EndOfCapture => {}
            TimeoutCause::NoFinalResponse | TimeoutCause::Evicted => {
                self.resolve_stale(id, false, out);
                self.end_attempt(id, at, Outcome::TimedOut, out);
            }
        }
    }
}
