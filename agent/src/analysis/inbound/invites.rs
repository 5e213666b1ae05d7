//! INVITEs on their way to a registered contact, followed until their
//! transaction ends (RFC 3261 §17.1.1: final response or Timer B), with
//! what happened to them on the way: retransmissions, a local drop, an
//! ICMP error.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;

use crate::sip::{MessageRecord, TransactionId};
use crate::time::Timestamp;

use super::bindings::{MatchedBy, RegisteredContact};
use super::findings::{DropNote, IcmpNote};

/// One initial INVITE towards a binding.
#[derive(Debug)]
pub(crate) struct TrackedInvite {
    pub binding: Arc<RegisteredContact>,
    pub matched: MatchedBy,
    pub request: Arc<MessageRecord>,
    pub sends: Vec<Timestamp>,
    pub sends_dropped: u32,
    pub local_drop: Option<DropNote>,
    pub icmp: Option<IcmpNote>,
}

/// Why an INVITE could not be followed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Untracked {
    /// The table was full.
    Full,
}

/// Whether a dropped INVITE is news.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum NotedDrop {
    /// The first drop of this INVITE; `evicted` early drops were
    /// forgotten to keep it.
    First { evicted: u64 },
    /// A retransmission dropped again: counted on the first note.
    Repeat,
}

/// The open INVITEs, bounded, and drops seen before their INVITE.
pub(crate) struct InviteTable {
    max_open: usize,
    max_sends: usize,
    max_early_drops: usize,
    open: HashMap<TransactionId, TrackedInvite>,
    by_flow: HashMap<(SocketAddr, SocketAddr), TransactionId>,
    /// Live capture delivers kernel drops and captured frames on separate
    /// paths: a drop can arrive before the INVITE it belongs to. Kept by
    /// Call-ID (oldest forgotten first) until the INVITE shows up.
    early_drops: HashMap<String, DropNote>,
    early_order: VecDeque<String>,
}

impl InviteTable {
    pub(crate) fn new(max_open: usize, max_sends: usize, max_early_drops: usize) -> Self {
        Self {
            max_open,
            max_sends: max_sends.max(1),
            max_early_drops: max_early_drops.max(1),
            open: HashMap::new(),
            by_flow: HashMap::new(),
            early_drops: HashMap::new(),
            early_order: VecDeque::new(),
        }
    }

    pub(crate) fn contains(&self, id: TransactionId) -> bool {
        self.open.contains_key(&id)
    }

    /// Starts following `request` (the first copy of an initial INVITE).
    pub(crate) fn track(
        &mut self,
        id: TransactionId,
        request: Arc<MessageRecord>,
        binding: Arc<RegisteredContact>,
        matched: MatchedBy,
    ) -> Result<(), Untracked> {
        if self.open.len() >= self.max_open {
            return Err(Untracked::Full);
        }
        let local_drop = request.message.call_id().and_then(|c| {
            let d = self.early_drops.remove(c.as_ref())?;
            self.early_order.retain(|o| o != c.as_ref());
            Some(d)
        });
        self.by_flow
            .insert((request.meta.src, request.meta.dst), id);
        self.open.insert(
            id,
            TrackedInvite {
                binding,
                matched,
                sends: vec![request.meta.ts],
                sends_dropped: 0,
                local_drop,
                icmp: None,
                request,
            },
        );
        Ok(())
    }

    /// A retransmission of a tracked INVITE.
    pub(crate) fn resent(&mut self, id: TransactionId, at: Timestamp) {
        if let Some(t) = self.open.get_mut(&id) {
            if t.sends.len() < self.max_sends {
                t.sends.push(at);
            } else {
                t.sends_dropped += 1;
            }
        }
    }

    pub(crate) fn close(&mut self, id: TransactionId) -> Option<TrackedInvite> {
        let t = self.open.remove(&id)?;
        let flow = (t.request.meta.src, t.request.meta.dst);
        if self.by_flow.get(&flow) == Some(&id) {
            self.by_flow.remove(&flow);
        }
        Some(t)
    }

    /// Notes a dropped copy of an INVITE on its tracked transaction (same
    /// flow and Call-ID), or keeps it until the INVITE arrives.
    pub(crate) fn note_drop(&mut self, record: &MessageRecord, note: DropNote) -> NotedDrop {
        let call_id = record.message.call_id().map(|c| c.into_owned());
        let tracked = self
            .by_flow
            .get(&(record.meta.src, record.meta.dst))
            .and_then(|id| self.open.get_mut(id))
            .filter(|t| t.request.message.call_id().map(|c| c.into_owned()) == call_id);
        if let Some(t) = tracked {
            return match &mut t.local_drop {
                Some(l) => {
                    l.count += 1;
                    NotedDrop::Repeat
                }
                None => {
                    t.local_drop = Some(note);
                    NotedDrop::First { evicted: 0 }
                }
            };
        }
        let Some(call_id) = call_id else {
            return NotedDrop::First { evicted: 0 };
        };
        if let Some(l) = self.early_drops.get_mut(&call_id) {
            l.count += 1;
            return NotedDrop::Repeat;
        }
        let mut evicted = 0;
        while self.early_drops.len() >= self.max_early_drops {
            let Some(old) = self.early_order.pop_front() else {
                break;
            };
            self.early_drops.remove(&old);
            evicted += 1;
        }
        self.early_order.push_back(call_id.clone());
        self.early_drops.insert(call_id, note);
        NotedDrop::First { evicted }
    }

    /// Notes an ICMP unreachable quoting a tracked INVITE's flow; false if
    /// none matched.
    pub(crate) fn note_icmp(&mut self, flow: (SocketAddr, SocketAddr), note: IcmpNote) -> bool {
        match self.by_flow.get(&flow).and_then(|id| self.open.get_mut(id)) {
            Some(t) => {
                t.icmp.get_or_insert(note);
                true
            }
            None => false,
        }
    }

    /// Forgets everything (end of input); returns how many were open.
    pub(crate) fn clear(&mut self) -> u64 {
        let n = self.open.len() as u64;
        self.open.clear();
        self.by_flow.clear();
        self.early_drops.clear();
        self.early_order.clear();
        n
    }
}
