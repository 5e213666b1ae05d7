//! The diagnosis stage: what sipscope tells an operator.
//!
//! A [`Diagnosis`] is one finding: a stable [`Code`] from the catalogue
//! (`catalogue.rs`), a [`Severity`], the packet-clock time it was raised at,
//! a plain-language summary, the [`Evidence`] it rests on (which messages,
//! which values) and a [`Remedy`] phrased for the common PBXs.
//!
//! Analyses build findings with [`Diagnosis::new`], which fills severity and
//! remedy from the catalogue, and add evidence; nothing else invents codes.
//!
//! Secrets never go into a diagnosis: no passwords, no HA1, no digest
//! `response` values (DESIGN: "Secrets never leave the host").

mod catalogue;
mod remedy;

use std::borrow::Cow;
use std::fmt;
use std::net::IpAddr;

use serde::Serialize;

use crate::sip::MessageRecord;
use crate::time::Timestamp;

pub use catalogue::{Code, UnknownCode};

/// How bad a finding is. Ordered: `Info < Warning < Error`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// Worth knowing, nothing is broken (e.g. the password is correct).
    Info,
    /// Something is wrong or fragile but service may still work.
    Warning,
    /// Service is failing (registration refused, no audio, ...).
    Error,
}

impl Severity {
    pub const fn as_str(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Warning => "warning",
            Severity::Error => "error",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which SIP message a piece of evidence was read from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct MessageRef {
    /// Capture time of the message.
    pub at: Timestamp,
    /// Short human label, e.g. `401 Unauthorized (CSeq 1 REGISTER)`.
    pub label: String,
}

impl MessageRef {
    /// The reference to a captured message: its capture time and
    /// [`crate::sip::SipMessage::label`].
    pub(crate) fn of(r: &MessageRecord) -> MessageRef {
        MessageRef {
            at: r.meta.ts,
            label: r.message.label(),
        }
    }
}

/// One named value a finding rests on, optionally tied to the message it
/// was read from. Never holds a secret.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Evidence {
    pub name: Cow<'static, str>,
    pub value: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<MessageRef>,
}

impl Evidence {
    pub fn new(name: impl Into<Cow<'static, str>>, value: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            value: value.into(),
            message: None,
        }
    }

    /// Ties this value to the message it was read from.
    pub fn in_message(mut self, at: Timestamp, label: impl Into<String>) -> Self {
        self.message = Some(MessageRef {
            at,
            label: label.into(),
        });
        self
    }
}

/// What to do about a finding, for the operator of each common PBX.
///
/// `general` says what to check whatever the PBX; the other fields give
/// the concrete configuration for Asterisk (`res_pjsip`), FreeSWITCH
/// (Sofia SIP profiles/gateways) and Kamailio.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Remedy {
    pub general: Cow<'static, str>,
    pub pjsip: Cow<'static, str>,
    pub freeswitch: Cow<'static, str>,
    pub kamailio: Cow<'static, str>,
}

/// One finding. See the module documentation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Diagnosis {
    pub code: Code,
    pub severity: Severity,
    /// Packet-clock time of the message that completed the evidence.
    pub at: Timestamp,
    /// One or two plain-language sentences with the concrete values.
    pub summary: String,
    pub evidence: Vec<Evidence>,
    pub remedy: Remedy,
    /// The address the finding is about (the client of a registration,
    /// the caller of a call), when one is: repeats of a code about one
    /// source are suppressed under a flood
    /// ([`crate::analysis::flood_guard`]).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<IpAddr>,
    /// The dialog (Call-ID) the finding is about, when it is about one:
    /// log lines and queries follow one call or registration by it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call_id: Option<String>,
    /// The address-of-record (RFC 3261 §10.2: the REGISTER's To URI) the
    /// finding is about, when it is about an account.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub aor: Option<String>,
}

impl Diagnosis {
    /// A finding with the catalogue's default severity and remedy for `code`.
    pub fn new(code: Code, at: Timestamp, summary: impl Into<String>) -> Self {
        Self {
            code,
            severity: code.default_severity(),
            at,
            summary: summary.into(),
            evidence: Vec::new(),
            remedy: code.remedy(),
            source: None,
            call_id: None,
            aor: None,
        }
    }

    pub fn with_source(mut self, source: IpAddr) -> Self {
        self.source = Some(source);
        self
    }

    /// Names the Call-ID and AOR the finding is about, where not named yet.
    pub fn about(mut self, call_id: Option<&str>, aor: Option<&str>) -> Self {
        if self.call_id.is_none() {
            self.call_id = call_id.map(str::to_owned);
        }
        if self.aor.is_none() {
            self.aor = aor.map(str::to_owned);
        }
        self
    }

    pub fn with_evidence(mut self, evidence: Evidence) -> Self {
        self.evidence.push(evidence);
        self
    }

    pub fn with_severity(mut self, severity: Severity) -> Self {
        self.severity = severity;
        self
    }

    pub fn with_remedy(mut self, remedy: Remedy) -> Self {
        self.remedy = remedy;
        self
    }

    /// Ties every piece of evidence not yet tied to a message to `message`
    /// (for findings read off a single message, e.g. the NAT checks).
    pub fn in_message(mut self, message: &MessageRef) -> Self {
        for e in self.evidence.iter_mut().filter(|e| e.message.is_none()) {
            e.message = Some(message.clone());
        }
        self
    }
}

impl fmt::Display for Diagnosis {
    /// The console form: one headline, then evidence and remedy indented.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "[{}] {} at {}: {}",
            self.severity, self.code, self.at, self.summary
        )?;
        if !self.evidence.is_empty() {
            writeln!(f, "  evidence:")?;
            for e in &self.evidence {
                write!(f, "    {}: {}", e.name, e.value)?;
                match &e.message {
                    Some(m) => writeln!(f, "  ({} at {})", m.label, m.at)?,
                    None => writeln!(f)?,
                }
            }
        }
        writeln!(f, "  what to do: {}", self.remedy.general)?;
        writeln!(f, "    Asterisk/PJSIP: {}", self.remedy.pjsip)?;
        writeln!(f, "    FreeSWITCH:     {}", self.remedy.freeswitch)?;
        write!(f, "    Kamailio:       {}", self.remedy.kamailio)
    }
}

#[cfg(test)]
mod tests;
