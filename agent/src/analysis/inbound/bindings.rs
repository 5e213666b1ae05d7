//! Registered contacts that can receive calls: a binding is live from the
//! 2xx to its REGISTER until the granted expiry (RFC 3261 §10.2.1, §10.3
//! step 7), and ends early on a de-registration (§10.2.2).
//!
//! A registrar (or the provider's proxy behind it) sends a call for the
//! AOR to the registered Contact (§10.3, §16.5: the Request-URI becomes
//! the Contact URI) or, when the UA is behind a NAT and the registrar
//! remembers where the REGISTER came from (RFC 5626 flows, Kamailio's
//! `fix_nated_register()`, Asterisk's `rewrite_contact=yes`), to that
//! source address. So an INVITE is "towards a binding" when its
//! destination is the Contact's address or the REGISTER's source, or its
//! Request-URI is the Contact URI.

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use crate::analysis::registration::{Outcome, RegistrationAttempt};
use crate::sip::{MessageRecord, SipUri};
use crate::time::Timestamp;

/// One live registration, as the INVITE findings quote it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RegisteredContact {
    /// Address of record (To URI of the REGISTER).
    pub aor: String,
    /// Contact URI as registered.
    pub contact: String,
    /// Contact host:port when the host is an IP literal (a name would
    /// need DNS, which an observer does not do).
    pub contact_addr: Option<SocketAddr>,
    /// Where the REGISTER came from (the UA, or its NAT's public side).
    pub client: SocketAddr,
    pub registrar: SocketAddr,
    pub registered_at: Timestamp,
    pub expires_at: Timestamp,
}

impl RegisteredContact {
    /// `aor contact`: the identity findings are suppressed by.
    pub(crate) fn key(&self) -> String {
        format!("{} {}", self.aor, self.contact)
    }
}

/// How an INVITE was tied to a binding (evidence: why we think the call
/// was meant for this registration).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MatchedBy {
    /// Sent to the Contact's host:port.
    ContactAddress,
    /// Sent to the address the REGISTER came from (NAT traversal).
    RegisteredFrom,
    /// Request-URI equals the Contact URI.
    RequestUri,
}

impl MatchedBy {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            MatchedBy::ContactAddress => "destination is the registered Contact address",
            MatchedBy::RegisteredFrom => "destination is the address the REGISTER came from",
            MatchedBy::RequestUri => "Request-URI is the registered Contact URI",
        }
    }
}

/// What happened to the table when a registration outcome was applied.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Applied {
    pub learned: bool,
    pub removed: u32,
    pub evicted: bool,
}

/// The live bindings, bounded; indexed by address and Contact URI.
pub(crate) struct BindingTable {
    max: usize,
    next_id: u64,
    entries: HashMap<u64, Arc<RegisteredContact>>,
    by_key: HashMap<String, u64>,
    by_addr: HashMap<SocketAddr, Vec<u64>>,
    by_uri: HashMap<String, Vec<u64>>,
    /// (expires at, id): expiry order, and the eviction order at the limit
    /// (the binding closest to its end goes first).
    expiries: BTreeSet<(Timestamp, u64)>,
}

impl BindingTable {
    pub(crate) fn new(max: usize) -> Self {
        Self {
            max: max.max(1),
            next_id: 1,
            entries: HashMap::new(),
            by_key: HashMap::new(),
            by_addr: HashMap::new(),
            by_uri: HashMap::new(),
            expiries: BTreeSet::new(),
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Applies a finished registration attempt: a 2xx with an expiry
    /// (re)starts the binding, a de-registration ends it; failures leave
    /// it alone (the registrar keeps the old binding until it expires).
    pub(crate) fn apply(&mut self, a: &RegistrationAttempt) -> Applied {
        let mut applied = Applied::default();
        let Some(contact) = a.binding.contact.as_deref() else {
            return applied;
        };
        match a.outcome {
            Outcome::Registered { expires } => {
                let key = format!("{} {}", a.binding.aor, contact);
                if let Some(id) = self.by_key.get(&key).copied() {
                    self.remove(id);
                } else if self.entries.len() >= self.max
                    && let Some(&(_, oldest)) = self.expiries.iter().next()
                {
                    self.remove(oldest);
                    applied.evicted = true;
                }
                let uri = SipUri::parse(contact.as_bytes());
                let b = RegisteredContact {
                    aor: a.binding.aor.clone(),
                    contact: contact.to_owned(),
                    contact_addr: uri.as_ref().and_then(uri_addr),
                    client: a.client,
                    registrar: a.registrar,
                    registered_at: a.ended,
                    expires_at: a.ended + std::time::Duration::from_secs(u64::from(expires)),
                };
                self.insert(key, uri.as_ref().map(SipUri::binding_key), b);
                applied.learned = true;
            }
            Outcome::Deregistered => {
                // `Contact: *` removes every binding of the AOR (§10.2.2).
                let ids: Vec<u64> = if contact == "*" {
                    self.entries
                        .iter()
                        .filter(|(_, b)| b.aor == a.binding.aor)
                        .map(|(id, _)| *id)
                        .collect()
                } else {
                    self.by_key
                        .get(&format!("{} {}", a.binding.aor, contact))
                        .copied()
                        .into_iter()
                        .collect()
                };
                for id in ids {
                    self.remove(id);
                    applied.removed += 1;
                }
            }
            _ => {}
        }
        applied
    }

    /// Removes bindings whose expiry is at or before `now`; returns how many.
    pub(crate) fn expire(&mut self, now: Timestamp) -> u64 {
        let mut n = 0;
        while let Some(&(at, id)) = self.expiries.iter().next() {
            if at > now {
                break;
            }
            self.remove(id);
            n += 1;
        }
        n
    }

    /// The live binding `invite` (an initial INVITE, or a dropped copy of
    /// one) is sent towards, if any. Several bindings can share an
    /// address (one PBX socket registering several trunks): the one whose
    /// registrar sent the INVITE wins, then one whose user is the
    /// Request-URI user, then the most recent.
    pub(crate) fn find(
        &self,
        invite: &MessageRecord,
        now: Timestamp,
    ) -> Option<(Arc<RegisteredContact>, MatchedBy)> {
        let dst = invite.meta.dst;
        let ruri = invite
            .message
            .request_uri()
            .and_then(|u| SipUri::parse(u.as_bytes()));
        let mut candidates: Vec<(u64, MatchedBy)> = Vec::new();
        for id in self.by_addr.get(&dst).into_iter().flatten() {
            let b = &self.entries[id];
            let by = if b.contact_addr == Some(dst) {
                MatchedBy::ContactAddress
            } else {
                MatchedBy::RegisteredFrom
            };
            candidates.push((*id, by));
        }
        if let Some(u) = &ruri {
            for id in self.by_uri.get(&u.binding_key()).into_iter().flatten() {
                if !candidates.iter().any(|(c, _)| c == id) {
                    candidates.push((*id, MatchedBy::RequestUri));
                }
            }
        }
        let ruri_user = ruri.as_ref().and_then(|u| u.user.as_deref());
        candidates
            .into_iter()
            .map(|(id, by)| (self.entries[&id].clone(), by))
            .filter(|(b, _)| b.expires_at > now && b.registered_at <= now)
            // An INVITE the registered UA itself sends from its socket is
            // outbound, never a call to it.
            .filter(|(b, _)| invite.meta.src != b.client && Some(invite.meta.src) != b.contact_addr)
            .max_by_key(|(b, _)| {
                (
                    b.registrar.ip() == invite.meta.src.ip(),
                    ruri_user.is_some() && ruri_user == contact_user(&b.contact).as_deref(),
                    b.registered_at,
                )
            })
    }

    fn insert(&mut self, key: String, uri: Option<String>, b: RegisteredContact) {
        let id = self.next_id;
        self.next_id += 1;
        let mut addrs = vec![b.client];
        if let Some(a) = b.contact_addr
            && a != b.client
        {
            addrs.push(a);
        }
        for a in addrs {
            self.by_addr.entry(a).or_default().push(id);
        }
        if let Some(u) = uri {
            self.by_uri.entry(u).or_default().push(id);
        }
        self.expiries.insert((b.expires_at, id));
        self.by_key.insert(key, id);
        self.entries.insert(id, Arc::new(b));
    }

    fn remove(&mut self, id: u64) {
        let Some(b) = self.entries.remove(&id) else {
            return;
        };
        self.expiries.remove(&(b.expires_at, id));
        self.by_key.remove(&b.key());
        for a in [Some(b.client), b.contact_addr].into_iter().flatten() {
            unindex(&mut self.by_addr, &a, id);
        }
        if let Some(u) = SipUri::parse(b.contact.as_bytes()) {
            unindex(&mut self.by_uri, &u.binding_key(), id);
        }
    }
}

fn unindex<K: std::hash::Hash + Eq>(map: &mut HashMap<K, Vec<u64>>, k: &K, id: u64) {
    if let Some(v) = map.get_mut(k) {
        v.retain(|x| *x != id);
        if v.is_empty() {
            map.remove(k);
        }
    }
}

/// The socket address of a URI whose host is an IP literal.
fn uri_addr(u: &SipUri) -> Option<SocketAddr> {
    let ip: IpAddr = u.host.parse().ok()?;
    Some(SocketAddr::new(
        ip,
        u.port.unwrap_or_else(|| u.default_port()),
    ))
}

fn contact_user(contact: &str) -> Option<String> {
    SipUri::parse(contact.as_bytes())?.user
}

#[cfg(test)]
#[path = "bindings_tests.rs"]
mod tests;
