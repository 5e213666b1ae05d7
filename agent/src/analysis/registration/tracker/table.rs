//! The bounded binding table: lookup and creation with least-recently-used
//! eviction, per-binding timers (give-up, expiry, idle removal) and the
//! once-per-binding raising of findings.

use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;

use super::{BindingKey, BindingState, ContactKey, MAX_CALL_IDS, RegistrationTracker};
use crate::analysis::finding::Finding;
use crate::analysis::registration::{Binding, findings};
use crate::diagnosis::Diagnosis;
use crate::time::Timestamp;

impl RegistrationTracker {
    /// The binding of `key`, created if new (evicting the least recently
    /// used one when the table is full).
    pub(super) fn binding_id(
        &mut self,
        key: BindingKey,
        client: SocketAddr,
        registrar: SocketAddr,
        at: Timestamp,
    ) -> u64 {
        if let Some(&id) = self.by_key.get(&key) {
            self.touch(id, at);
            return id;
        }
        while self.bindings.len() >= self.config.max_bindings.max(1) {
            let Some((_, victim)) = self.lru.pop_first() else {
                break;
            };
            self.remove(victim);
            self.stats.bindings_evicted += 1;
        }
        let id = self.next_id;
        self.next_id += 1;
        self.by_key.insert(key.clone(), id);
        self.bindings.insert(
            id,
            BindingState {
                binding: Binding {
                    aor: key.aor,
                    contact: None,
                    call_id: key.call_id.clone(),
                },
                last_request: None,
                last_final_cseq: None,
                call_ids: VecDeque::from([key.call_id]),
                contact_key: None,
                client,
                registrar,
                request_uri: None,
                attempt: None,
                challenges: VecDeque::new(),
                registered: None,
                raised: BTreeSet::new(),
                rejections: 0,
                rejected_as: None,
                history: VecDeque::new(),
                last_seen: at,
                lru: 0,
                deadline: None,
            },
        );
        self.touch(id, at);
        id
    }

    /// The binding a REGISTER belongs to: the one its Call-ID was seen
    /// under, else the one of its AOR and Contact from this client (a new
    /// Call-ID for the same binding), else a new one. The Contact index
    /// follows the binding's latest Contact.
    pub(super) fn request_binding(
        &mut self,
        key: BindingKey,
        contact: Option<ContactKey>,
        client: SocketAddr,
        registrar: SocketAddr,
        at: Timestamp,
    ) -> u64 {
        let known = self.by_key.get(&key).copied().or_else(|| {
            contact
                .as_ref()
                .and_then(|c| self.by_contact.get(c).copied())
        });
        let id = match known {
            Some(id) if !self.by_key.contains_key(&key) => {
                // The same binding under a new Call-ID.
                self.touch(id, at);
                self.by_key.insert(key.clone(), id);
                let b = self.bindings.get_mut(&id).expect("binding exists");
                b.call_ids.push_back(key.call_id);
                while b.call_ids.len() > MAX_CALL_IDS {
                    if let Some(old) = b.call_ids.pop_front() {
                        self.by_key.remove(&BindingKey {
                            call_id: old,
                            aor: b.binding.aor.clone(),
                        });
                    }
                }
                id
            }
            _ => self.binding_id(key, client, registrar, at),
        };
        if let Some(c) = contact {
            let b = self.bindings.get_mut(&id).expect("binding exists");
            if b.contact_key.as_ref() != Some(&c) {
                if let Some(old) = b.contact_key.take()
                    && self.by_contact.get(&old) == Some(&id)
                {
                    self.by_contact.remove(&old);
                }
                b.contact_key = Some(c.clone());
                self.by_contact.insert(c, id);
            }
        }
        id
    }

    pub(super) fn touch(&mut self, id: u64, at: Timestamp) {
        let seq = self.next_lru;
        self.next_lru += 1;
        let b = self.bindings.get_mut(&id).expect("binding exists");
        self.lru.remove(&b.lru);
        b.lru = seq;
        b.last_seen = b.last_seen.max(at);
        self.lru.insert(seq, id);
    }

    pub(super) fn remove(&mut self, id: u64) {
        if let Some(b) = self.bindings.remove(&id) {
            self.lru.remove(&b.lru);
            if let Some(d) = b.deadline {
                self.deadlines.remove(&(d, id));
            }
            if b.attempt.is_some() {
                self.stats.attempts_evicted += 1;
            }
            for call_id in b.call_ids {
                self.by_key.remove(&BindingKey {
                    call_id,
                    aor: b.binding.aor.clone(),
                });
            }
            if let Some(k) = b.contact_key
                && self.by_contact.get(&k) == Some(&id)
            {
                self.by_contact.remove(&k);
            }
        }
    }

    pub(super) fn set_deadline(&mut self, id: u64, at: Option<Timestamp>) {
        let b = self.bindings.get_mut(&id).expect("binding exists");
        if let Some(old) = b.deadline.take() {
            self.deadlines.remove(&(old, id));
        }
        if let Some(at) = at {
            b.deadline = Some(at);
            self.deadlines.insert((at, id));
        }
    }

    /// The next timer of a binding: give-up of an attempt waiting for the
    /// client, expiry of a granted registration, or idle removal.
    pub(super) fn reschedule(&mut self, id: u64) {
        let b = &self.bindings[&id];
        let next = match &b.attempt {
            Some(a) if a.in_flight => None, // the transaction layer times it out
            Some(a) => Some(a.last_final.map_or(a.started, |(_, t)| t) + self.config.give_up_after),
            None => match b.registered {
                // A refresh a moment late is routine (clients refresh at the
                // expiry, registrars purge on a timer): only a lapse beyond the
                // grace is reported.
                Some((_, _, until)) => Some(until + self.config.expiry_grace),
                None => Some(b.last_seen + self.config.idle_binding_timeout),
            },
        };
        self.set_deadline(id, next);
    }

    pub(super) fn on_deadline(&mut self, id: u64, at: Timestamp, out: &mut Vec<Finding>) {
        let Some(b) = self.bindings.get_mut(&id) else {
            return;
        };
        if b.attempt.is_some() {
            self.end_open_attempt(id, at, true, out);
            return;
        }
        if let Some((since, granted, until)) = b.registered.take() {
            let d = findings::expired(&b.binding, granted, since, until);
            self.stats.expired += 1;
            self.raise(id, d, out);
            self.reschedule(id);
            return;
        }
        self.remove(id);
        self.stats.bindings_idle_removed += 1;
    }

    /// Adds `d` unless its code was already raised for the binding;
    /// attaches it to the open attempt and emits it.
    pub(super) fn raise(&mut self, id: u64, d: Diagnosis, out: &mut Vec<Finding>) {
        let b = self.bindings.get_mut(&id).expect("binding exists");
        if !b.raised.insert(d.code) {
            self.stats.diagnoses_suppressed += 1;
            return;
        }
        self.stats.diagnoses += 1;
        // Named after the attempt it is filed under, if one is open.
        let call_id = b
            .attempt
            .as_ref()
            .map_or(&b.binding.call_id, |a| &a.call_id);
        let d = d
            .with_source(b.client.ip())
            .about(Some(call_id), Some(&b.binding.aor));
        out.push(Finding::Diagnosis(d.clone()));
        if let Some(a) = b.attempt.as_mut() {
            a.diagnoses.push(d);
        }
    }
}
