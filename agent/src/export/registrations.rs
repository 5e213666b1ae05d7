//! The registration table and findings for the console, in the spirit of
//! Asterisk's `pjsip show registrations`: one row per binding (AOR,
//! registrar, state, expiry left, last failure), then every finding with
//! its evidence and remedy.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::sync::Arc;

use crate::analysis::registration::{Outcome, RegistrationAttempt};
use crate::diagnosis::Diagnosis;
use crate::pipeline::Event;
use crate::time::Timestamp;

/// Bindings shown at most (the rest are counted in a closing line).
const MAX_ROWS: usize = 1000;
/// Findings shown at most (the rest are counted in a closing line).
const MAX_FINDINGS: usize = 10_000;

#[derive(Default)]
struct Row {
    last: Option<Arc<RegistrationAttempt>>,
    /// Registered until (packet clock), from the last success.
    until: Option<Timestamp>,
    last_failure: Option<String>,
    attempts: u32,
    expired: bool,
}

/// What a row stands for: one binding (RFC 3261 §10.2.1: AOR and Contact)
/// at one registrar, whatever Call-IDs its registrations used (some UAs
/// take a new one for every refresh). Without a Contact (only a response
/// was captured) the Call-ID stands in for it.
#[derive(Clone, PartialEq, Eq, Hash)]
struct RowKey {
    aor: String,
    registrar: SocketAddr,
    contact_or_call_id: String,
}

impl RowKey {
    fn of(a: &RegistrationAttempt) -> Self {
        Self {
            aor: a.binding.aor.clone(),
            registrar: a.registrar,
            contact_or_call_id: a
                .binding
                .contact
                .as_deref()
                .map_or_else(|| a.binding.call_id.clone(), str::to_ascii_lowercase),
        }
    }
}

/// Collects registration events and renders the table.
#[derive(Default)]
pub(crate) struct RegistrationReport {
    order: Vec<RowKey>,
    rows: HashMap<RowKey, Row>,
    rows_not_shown: u64,
    diagnoses: Vec<Arc<Diagnosis>>,
    diagnoses_not_shown: u64,
    last_packet: Timestamp,
}

fn failure(o: &Outcome) -> Option<String> {
    Some(match o {
        Outcome::Registered { .. } | Outcome::Deregistered => return None,
        Outcome::Rejected { status, reason } => format!("{status} {reason}").trim().to_owned(),
        Outcome::GaveUp { status } => format!("gave up after {status}"),
        Outcome::TimedOut => "no response".to_owned(),
    })
}

impl RegistrationReport {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn push(&mut self, event: &Event) {
        match event {
            Event::Message(m) => self.last_packet = self.last_packet.max(m.meta.ts),
            Event::Diagnosis(d) => {
                if d.code == crate::diagnosis::Code::RegExpired {
                    let aor = d.evidence.iter().find(|e| e.name == "AOR");
                    for (key, row) in self.rows.iter_mut() {
                        if aor.is_some_and(|e| e.value == key.aor)
                            && row.until.is_some_and(|u| u <= d.at)
                        {
                            row.expired = true;
                        }
                    }
                }
                if self.diagnoses.len() < MAX_FINDINGS {
                    self.diagnoses.push(d.clone());
                } else {
                    self.diagnoses_not_shown += 1;
                }
            }
            Event::RegistrationAttempt(a) => {
                let key = RowKey::of(a);
                if !self.rows.contains_key(&key) {
                    if self.rows.len() >= MAX_ROWS {
                        self.rows_not_shown += 1;
                        return;
                    }
                    self.order.push(key.clone());
                }
                let row = self.rows.entry(key).or_default();
                row.attempts += 1;
                match &a.outcome {
                    Outcome::Registered { expires } => {
                        row.until =
                            Some(a.ended + std::time::Duration::from_secs(u64::from(*expires)));
                        row.expired = false;
                    }
                    Outcome::Deregistered => row.until = None,
                    o => row.last_failure = failure(o),
                }
                row.last = Some(a.clone());
            }
            _ => {}
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.rows.is_empty() && self.diagnoses.is_empty()
    }

    /// The table and the findings as text ("" when there is nothing).
    pub(crate) fn render(&self) -> String {
        let mut s = String::new();
        if !self.order.is_empty() {
            let _ = writeln!(
                s,
                "Registrations (expiry relative to the last packet, {}):",
                self.last_packet
            );
            let _ = writeln!(
                s,
                "  {:<36} {:<22} {:<14} {:>10}  {:>8}  last failure",
                "binding (AOR / contact)", "registrar", "state", "expires in", "attempts"
            );
            for key in &self.order {
                let row = &self.rows[key];
                let Some(a) = &row.last else { continue };
                let state = if row.expired {
                    "expired"
                } else {
                    match a.outcome {
                        Outcome::Registered { .. } => "registered",
                        Outcome::Deregistered => "unregistered",
                        Outcome::Rejected { .. } => "rejected",
                        Outcome::GaveUp { .. } => "auth failed",
                        Outcome::TimedOut => "no response",
                    }
                };
                let expires = match row.until {
                    Some(u) if !row.expired && u > self.last_packet => {
                        format!("{} s", u.since(self.last_packet).as_secs())
                    }
                    Some(_) => "expired".to_owned(),
                    None => "-".to_owned(),
                };
                let _ = writeln!(
                    s,
                    "  {:<36} {:<22} {:<14} {:>10}  {:>8}  {}",
                    a.binding.aor,
                    a.registrar.to_string(),
                    state,
                    expires,
                    row.attempts,
                    row.last_failure.as_deref().unwrap_or("-")
                );
                if let Some(c) = &a.binding.contact {
                    let _ = writeln!(s, "    contact {c}  Call-ID {}", a.binding.call_id);
                }
            }
            if self.rows_not_shown > 0 {
                let _ = writeln!(s, "  ({} more bindings not shown)", self.rows_not_shown);
            }
            s.push('\n');
        }
        if !self.diagnoses.is_empty() {
            let _ = writeln!(s, "Findings:");
            for d in &self.diagnoses {
                let _ = writeln!(s, "{d}\n");
            }
            if self.diagnoses_not_shown > 0 {
                let _ = writeln!(
                    s,
                    "({} more findings not shown)\n",
                    self.diagnoses_not_shown
                );
            }
        }
        s
    }
}
