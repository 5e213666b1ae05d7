//! Interim registration attempts from REGISTER transactions, so that
//! registration traces exist before the pipeline's registration tracker
//! (analysis/registration) emits [`RegistrationAttempt`]s. Deliberately
//! minimal — no diagnoses, no NAT or digest checks: an attempt is the
//! REGISTERs of one Call-ID from the first one through its challenges
//! (RFC 3261 §22.2: the retry carries a higher CSeq) to the first final
//! response that is not a challenge, a timeout, or silence after a
//! challenge. Remove once the tracker is wired (TraceConfig flag).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use crate::analysis::digest::Credentials;
use crate::analysis::registration::{Binding, Outcome, RegistrationAttempt};
use crate::capture::Timestamp;
use crate::sip::{SipMessage, Transaction};

struct Pending {
    attempt: RegistrationAttempt,
    last_cseq: u32,
}

pub(super) struct Registrations {
    pending: HashMap<String, Pending>,
    max: usize,
    idle: Duration,
    pub evicted: u64,
}

fn is_challenge(status: Option<u16>) -> bool {
    matches!(status, Some(401 | 407))
}

/// Username and realm of the credentials in a REGISTER (never the response).
fn credentials(m: &SipMessage) -> Option<(String, String)> {
    let v = m
        .header("Authorization")
        .or_else(|| m.header("Proxy-Authorization"))?;
    let c = Credentials::parse(&v).ok()?;
    Some((c.username, c.realm))
}

impl Registrations {
    pub fn new(max: usize, idle: Duration) -> Self {
        Self {
            pending: HashMap::new(),
            max: max.max(1),
            idle,
            evicted: 0,
        }
    }

    pub fn on_transaction(
        &mut self,
        t: &Arc<Transaction>,
        call_id: &str,
        out: &mut Vec<RegistrationAttempt>,
    ) {
        let continues = self
            .pending
            .get(call_id)
            .is_some_and(|p| t.cseq > p.last_cseq);
        if !continues && let Some(p) = self.pending.remove(call_id) {
            out.push(gave_up(p));
        }
        let entry = match self.pending.remove(call_id) {
            Some(p) => p,
            None => {
                if self.pending.len() >= self.max {
                    // Oldest challenged attempt first.
                    if let Some(k) = self
                        .pending
                        .iter()
                        .min_by_key(|(_, p)| p.attempt.ended)
                        .map(|(k, _)| k.clone())
                    {
                        let p = self.pending.remove(&k).expect("present");
                        self.evicted += 1;
                        out.push(gave_up(p));
                    }
                }
                Pending {
                    attempt: new_attempt(t, call_id),
                    last_cseq: t.cseq,
                }
            }
        };
        let mut p = entry;
        p.last_cseq = t.cseq;
        let ended = t.final_response.as_ref().map_or(t.last_seen, |r| r.meta.ts);
        p.attempt.ended = p.attempt.ended.max(ended);
        if let Some(req) = &t.request
            && let Some((user, realm)) = credentials(&req.message)
        {
            p.attempt.auth_username = Some(user);
            p.attempt.realm = Some(realm);
        }
        p.attempt.transactions.push(t.clone());
        let status = t.final_status();
        if is_challenge(status) {
            self.pending.insert(call_id.to_owned(), p);
            return;
        }
        p.attempt.outcome = match status {
            Some(code) if (200..300).contains(&code) => {
                let fin = t.final_response.as_ref().map(|r| &r.message);
                let req = t.request.as_ref().map(|r| &r.message);
                match fin
                    .and_then(SipMessage::expires)
                    .or_else(|| req.and_then(SipMessage::expires))
                {
                    Some(0) => Outcome::Deregistered,
                    e => Outcome::Registered {
                        expires: e.unwrap_or(0),
                    },
                }
            }
            Some(code) => Outcome::Rejected {
                status: code,
                reason: t
                    .final_response
                    .as_ref()
                    .and_then(|r| r.message.reason_phrase().map(|s| s.into_owned()))
                    .unwrap_or_default(),
            },
            None => Outcome::TimedOut,
        };
        out.push(p.attempt);
    }

    pub fn tick(&mut self, now: Timestamp, out: &mut Vec<RegistrationAttempt>) {
        let idle = self.idle;
        let expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, p)| now > p.attempt.ended && now.since(p.attempt.ended) >= idle)
            .map(|(k, _)| k.clone())
            .collect();
        for k in expired {
            if let Some(p) = self.pending.remove(&k) {
                out.push(gave_up(p));
            }
        }
    }

    pub fn finish(&mut self, out: &mut Vec<RegistrationAttempt>) {
        let mut rest: Vec<Pending> = self.pending.drain().map(|(_, p)| p).collect();
        rest.sort_by_key(|p| p.attempt.started);
        out.extend(rest.into_iter().map(gave_up));
    }
}

fn gave_up(mut p: Pending) -> RegistrationAttempt {
    let status = p
        .attempt
        .transactions
        .last()
        .and_then(|t| t.final_status())
        .unwrap_or(401);
    p.attempt.outcome = Outcome::GaveUp { status };
    p.attempt
}

fn new_attempt(t: &Transaction, call_id: &str) -> RegistrationAttempt {
    let req = t.request.as_ref();
    let msg = req
        .map(|r| &r.message)
        .or(t.final_response.as_ref().map(|r| &r.message));
    let aor = msg
        .and_then(|m| m.to_uri())
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .unwrap_or_default();
    let contact = req
        .and_then(|r| r.message.contact_uri())
        .map(|b| String::from_utf8_lossy(b).into_owned());
    let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
    let (client, registrar) = match (req, t.final_response.as_ref()) {
        (Some(r), _) => (r.meta.src, r.meta.dst),
        (None, Some(f)) => (f.meta.dst, f.meta.src),
        (None, None) => (unspecified, unspecified),
    };
    let started = req.map_or(t.first_seen, |r| r.meta.ts);
    RegistrationAttempt {
        binding: Binding {
            aor,
            contact,
            call_id: call_id.to_owned(),
        },
        client,
        registrar,
        first_cseq: t.cseq,
        started,
        ended: started,
        transactions: Vec::new(),
        outcome: Outcome::TimedOut,
        auth_username: None,
        realm: None,
        diagnoses: Vec::new(),
    }
}
