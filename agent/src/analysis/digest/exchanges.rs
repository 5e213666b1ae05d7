//! Digest authentication of every request other than REGISTER (INVITE,
//! BYE, SUBSCRIBE, MESSAGE, OPTIONS, ...): RFC 3261 §22.2/§22.3 apply to
//! any request a UAS or proxy challenges. The registration tracker owns
//! REGISTER (its bindings and attempts); this follows the rest.
//!
//! An exchange is one client retrying one request: the same Call-ID,
//! method and sending address (a UA answering a challenge keeps the
//! Call-ID and raises the CSeq, §8.1.3.5, §22.2). The sending address
//! keeps the legs apart where a proxy forwards the request under the same
//! Call-ID. On the way:
//! - credentials are paired with the exchange's last 401/407 and checked
//!   ([`diagnose_answer`]: realm, nonce, uri, algorithm/qop, and with
//!   `--credentials` the password);
//! - credentials that answered a challenge of this exchange and draw
//!   another (not stale) are `auth.rejected`; repeated, `auth.challenge_loop`;
//! - a 403 to credentials is `auth.forbidden_after_auth`.
//!
//! Each code is raised once per exchange. The table is bounded (oldest
//! exchange evicted and counted) and idle exchanges are forgotten.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{
    AuthenticatedRequest, Challenge, Credentials, challenge_loop, diagnose_answer,
    forbidden_after_auth, password_finding, rechallenged, select_challenge, verify,
};
use crate::analysis::credentials::CredentialStore;
use crate::analysis::finding::Finding;
use crate::analysis::registration::TrackerConfig;
use crate::analysis::registration::exchange as wire;
use crate::diagnosis::{Code, Diagnosis, MessageRef};
use crate::sip::{MessageRecord, Method};
use crate::time::Timestamp;

/// Exchanges followed at once; the oldest is evicted (counted).
pub(crate) const MAX_EXCHANGES: usize = 50_000;
/// An exchange with no message for this long is forgotten: longer than
/// Timer B/F, as a client retrying after a challenge does so within a
/// transaction's lifetime.
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(64);

/// Counters of the exchange table.
#[derive(Clone, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct ExchangeStats {
    /// Exchanges followed now.
    pub exchanges: u64,
    /// Challenges (401/407) to requests other than REGISTER.
    pub challenges: u64,
    /// Requests that carried credentials.
    pub authenticated: u64,
    pub diagnoses: u64,
    /// Pushed out of the full table.
    pub evicted: u64,
    pub idle_removed: u64,
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct Key {
    call_id: String,
    method: Method,
    client: SocketAddr,
}

struct Exchange {
    /// The last 401/407's challenges and where they were read.
    challenge: Option<(Vec<Challenge>, MessageRef)>,
    /// A challenge of this exchange was answered by the client: the
    /// credentials sent after it answer it.
    challenged: bool,
    /// CSeq and credentials of the last request.
    last_request: Option<(u32, Option<Credentials>)>,
    rejections: u32,
    raised: BTreeSet<Code>,
    last_seen: Timestamp,
}

/// See the module documentation.
pub(crate) struct Exchanges {
    /// `auth.challenge_loop` after this many consecutive rejections.
    challenge_loop_after: u32,
    /// Known secrets (`--credentials FILE`) for the password verdict.
    credentials: Option<Arc<CredentialStore>>,
    max_exchanges: usize,
    table: HashMap<Key, Exchange>,
    /// Keys in creation order (lazily cleaned) for eviction.
    order: VecDeque<Key>,
    stats: ExchangeStats,
}

impl Exchanges {
    /// The same credentials and loop threshold as REGISTER
    /// (`--credentials`, `--challenge-loop-after`).
    pub(crate) fn new(registration: &TrackerConfig) -> Self {
        Self {
            challenge_loop_after: registration.challenge_loop_after,
            credentials: registration.credentials.clone(),
            max_exchanges: MAX_EXCHANGES,
            table: HashMap::new(),
            order: VecDeque::new(),
            stats: ExchangeStats::default(),
        }
    }

    /// A reloaded configuration's credentials and loop threshold; open
    /// exchanges are judged by them from their next message on.
    pub(crate) fn retune(&mut self, registration: &TrackerConfig) {
        self.challenge_loop_after = registration.challenge_loop_after;
        self.credentials = registration.credentials.clone();
    }

    pub(crate) fn stats(&self) -> ExchangeStats {
        let mut s = self.stats.clone();
        s.exchanges = self.table.len() as u64;
        s
    }

    /// Every parsed message; findings go to `out`.
    pub(crate) fn on_message(&mut self, r: &Arc<MessageRecord>, out: &mut Vec<Finding>) {
        let m = &r.message;
        let Some(method) = m.cseq().map(|c| c.method.clone()) else {
            return;
        };
        if matches!(method, Method::Register | Method::Ack | Method::Cancel) || r.retransmission {
            return;
        }
        if m.is_request() {
            self.on_request(r, method, out);
        } else if m.status().is_some_and(|s| s >= 200) {
            self.on_final(r, method, out);
        }
    }

    /// Forgets exchanges idle for `idle_timeout`.
    pub(crate) fn tick(&mut self, now: Timestamp) {
        let idle = IDLE_TIMEOUT;
        while let Some(k) = self.order.front() {
            match self.table.get(k) {
                None => {
                    self.order.pop_front();
                }
                Some(e) if now.since(e.last_seen) >= idle => {
                    let k = self.order.pop_front().expect("front exists");
                    self.table.remove(&k);
                    self.stats.idle_removed += 1;
                }
                // Creation order is not activity order: a busy exchange
                // at the front holds the others until it goes idle.
                Some(_) => break,
            }
        }
    }

    fn key(r: &MessageRecord, method: Method, client: SocketAddr) -> Option<Key> {
        Some(Key {
            call_id: r.message.call_id()?.into_owned(),
            method,
            client,
        })
    }

    fn on_request(&mut self, r: &Arc<MessageRecord>, method: Method, out: &mut Vec<Finding>) {
        let m = &r.message;
        let creds = wire::credentials(m);
        // Only exchanges that involve authentication are followed: most
        // requests carry no credentials and belong to no exchange, and pay
        // for no key.
        if creds.is_none() && self.table.is_empty() {
            return;
        }
        let Some(key) = Self::key(r, method.clone(), r.meta.src) else {
            return;
        };
        if creds.is_none() && !self.table.contains_key(&key) {
            return;
        }
        let at = r.meta.ts;
        let cseq = m.cseq().map_or(0, |c| c.number);
        let e = self.entry(key.clone(), at);
        e.last_request = Some((cseq, creds.clone()));
        let Some(creds) = creds else { return };
        self.stats.authenticated += 1;
        let here = MessageRef::of(r);
        let uri = m.request_uri().unwrap_or_default();
        let name = method.to_string();
        let store = self.credentials.clone();
        let e = &self.table[&key];
        let found = match &e.challenge {
            Some((challenges, message)) => diagnose_answer(
                at,
                challenges,
                &creds,
                &AuthenticatedRequest {
                    method: &name,
                    request_uri: &uri,
                    message: Some(&here),
                    challenge_message: Some(message),
                },
                Some(m.body()),
                store.as_deref(),
            ),
            // Credentials sent before any challenge was captured: only the
            // password can be checked.
            None => store
                .as_deref()
                .and_then(|s| s.lookup(&creds.realm, &creds.username))
                .and_then(|secret| {
                    let v = verify(&creds, &name, Some(m.body()), secret);
                    password_finding(at, &creds, &v)
                })
                .into_iter()
                .collect(),
        };
        for d in found {
            self.raise(&key, r.meta.src, d, out);
        }
    }

    fn on_final(&mut self, r: &Arc<MessageRecord>, method: Method, out: &mut Vec<Finding>) {
        let Some(key) = Self::key(r, method, r.meta.dst) else {
            return;
        };
        let m = &r.message;
        let status = m.status().unwrap_or(0);
        let at = r.meta.ts;
        let cseq = m.cseq().map_or(0, |c| c.number);
        let challenged = matches!(status, 401 | 407);
        if !challenged && !self.table.contains_key(&key) {
            return;
        }
        let here = MessageRef::of(r);
        let e = self.entry(key.clone(), at);
        let creds = e
            .last_request
            .as_ref()
            .filter(|(c, _)| *c == cseq)
            .and_then(|(_, creds)| creds.clone());
        let answered = e.challenged;
        let mut found = Vec::new();
        match status {
            401 | 407 => {
                self.stats.challenges += 1;
                let challenges = wire::challenges(m);
                if let Some(c) = &creds
                    && answered
                    && let Some(next) = select_challenge(&challenges, c)
                    && !next.stale
                {
                    found.push(rechallenged(at, c, next));
                    let e = self.table.get_mut(&key).expect("entry exists");
                    e.rejections += 1;
                    if e.rejections >= self.challenge_loop_after.max(1) {
                        found.push(challenge_loop(at, c, e.rejections));
                    }
                }
                let e = self.table.get_mut(&key).expect("entry exists");
                e.challenged = true;
                if !challenges.is_empty() {
                    e.challenge = Some((challenges, here));
                }
            }
            403 => {
                if let Some(c) = &creds {
                    let reason = m.reason_phrase().unwrap_or_default();
                    let warning = m.header("Warning");
                    found.push(forbidden_after_auth(
                        at,
                        c,
                        status,
                        &reason,
                        warning.as_deref(),
                    ));
                }
            }
            200..=299 => {
                let e = self.table.get_mut(&key).expect("entry exists");
                e.rejections = 0;
            }
            _ => {}
        }
        for d in found {
            self.raise(&key, r.meta.dst, d, out);
        }
    }

    /// The exchange of `key`, created if new (evicting the oldest at the
    /// limit).
    fn entry(&mut self, key: Key, at: Timestamp) -> &mut Exchange {
        if !self.table.contains_key(&key) {
            while self.table.len() >= self.max_exchanges.max(1) {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                if self.table.remove(&old).is_some() {
                    self.stats.evicted += 1;
                }
            }
            self.order.push_back(key.clone());
        }
        let e = self.table.entry(key).or_insert_with(|| Exchange {
            challenge: None,
            challenged: false,
            last_request: None,
            rejections: 0,
            raised: BTreeSet::new(),
            last_seen: at,
        });
        e.last_seen = e.last_seen.max(at);
        e
    }

    fn raise(&mut self, key: &Key, client: SocketAddr, d: Diagnosis, out: &mut Vec<Finding>) {
        let Some(e) = self.table.get_mut(key) else {
            return;
        };
        if !e.raised.insert(d.code) {
            return;
        }
        self.stats.diagnoses += 1;
        let d = d.with_source(client.ip()).about(Some(&key.call_id), None);
        out.push(Finding::Diagnosis(d));
    }
}
