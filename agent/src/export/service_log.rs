//! Log lines for an agent under a service manager (`run --console
//! events`): one line per finding and per call or registration state
//! change, nothing periodic, as logfmt-style text or one JSON object per
//! line (`--log-format json`, for journald and Loki).
//!
//! A registration is logged when its binding's outcome changes (the first
//! `registered`, then a `rejected`, ...), not on every refresh; a call on
//! each state change and once when it closes. What was last logged per
//! binding and call is held in bounded tables; evictions are counted
//! ([`ServiceLog::evicted`]) and only cost a repeated line.

use std::collections::HashMap;

use serde::Serialize;
use serde_json::{Map, Value};

use crate::{
    analysis::{calls::Call, registration::RegistrationAttempt},
    diagnosis::{Diagnosis, Severity},
    pipeline::Event,
    time::Timestamp,
};

/// Bindings and calls remembered at most (each).
const TRACKED: usize = 65_536;

/// How lines are written: `--log-format`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// `TIME LEVEL EVENT key=value ...` (logfmt values, quoted when needed).
    #[default]
    Text,
    /// One JSON object per line: `ts`, `level`, `event` and the fields.
    Json,
}

/// One log line: its time, level, kind and fields in order.
pub struct LogLine {
    ts: String,
    level: &'static str,
    event: &'static str,
    fields: Vec<(String, Value)>,
}

impl LogLine {
    /// A line at packet-clock time `at`.
    pub fn at(at: Timestamp, level: &'static str, event: &'static str) -> Self {
        Self::new(rfc3339(at.as_nanos() as i128), level, event)
    }

    /// A line about the agent itself, at the wall clock.
    pub fn now(level: &'static str, event: &'static str) -> Self {
        Self::new(
            jiff::Timestamp::now()
                .strftime("%Y-%m-%dT%H:%M:%S%.6fZ")
                .to_string(),
            level,
            event,
        )
    }

    fn new(ts: String, level: &'static str, event: &'static str) -> Self {
        Self {
            ts,
            level,
            event,
            fields: Vec::new(),
        }
    }

    pub fn field(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.fields.push((key.into(), value.into()));
        self
    }

    /// Every field of a record that serializes as an object (its `type`
    /// is the line's event), in the record's order.
    pub fn fields_of(mut self, record: &impl Serialize) -> Self {
        if let Ok(Value::Object(m)) = serde_json::to_value(record) {
            self.fields
                .extend(m.into_iter().filter(|(k, _)| k != "type"));
        }
        self
    }

    pub fn field_opt(self, key: &'static str, value: Option<impl Into<Value>>) -> Self {
        match value {
            Some(v) => self.field(key, v),
            None => self,
        }
    }

    /// The line without its newline.
    pub fn render(&self, format: LogFormat) -> String {
        match format {
            LogFormat::Json => {
                let mut m = Map::new();
                m.insert("ts".into(), self.ts.clone().into());
                m.insert("level".into(), self.level.into());
                m.insert("event".into(), self.event.into());
                for (k, v) in &self.fields {
                    m.insert(k.clone(), v.clone());
                }
                Value::Object(m).to_string()
            }
            LogFormat::Text => {
                let mut s = format!("{} {} {}", self.ts, self.level, self.event);
                for (k, v) in &self.fields {
                    s.push(' ');
                    s.push_str(k);
                    s.push('=');
                    s.push_str(&logfmt_value(v));
                }
                s
            }
        }
    }
}

/// A logfmt value: bare when it has no space, quote or `=`, else quoted.
fn logfmt_value(v: &Value) -> String {
    let text = match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if !text.is_empty() && !text.contains([' ', '"', '=', '\n', '\\']) {
        text
    } else {
        Value::String(text).to_string()
    }
}

/// RFC 3339 UTC with microseconds, as journald and Loki parse it.
fn rfc3339(ns: i128) -> String {
    jiff::Timestamp::from_nanosecond(ns)
        .map(|t| t.strftime("%Y-%m-%dT%H:%M:%S%.6fZ").to_string())
        .unwrap_or_else(|_| ns.to_string())
}

fn severity_level(s: Severity) -> &'static str {
    match s {
        Severity::Info => "info",
        Severity::Warning => "warn",
        Severity::Error => "error",
    }
}

/// Turns pipeline events into service log lines.
#[derive(Default)]
pub struct ServiceLog {
    /// (AOR, client) → the outcome last logged.
    bindings: HashMap<(String, String), &'static str>,
    /// Call-ID → the state last logged.
    calls: HashMap<String, &'static str>,
    evicted: u64,
}

impl ServiceLog {
    pub fn new() -> Self {
        Self::default()
    }

    /// Entries dropped from the full tables (each may repeat one line).
    pub fn evicted(&self) -> u64 {
        self.evicted
    }

    /// The line for `event`, if it is a finding or a state change.
    pub fn line(&mut self, event: &Event) -> Option<LogLine> {
        match event {
            Event::Diagnosis(d) => Some(finding(d)),
            Event::RegistrationAttempt(a) => self.registration(a),
            Event::Call(c) => self.call(c),
            _ => None,
        }
    }

    fn registration(&mut self, a: &RegistrationAttempt) -> Option<LogLine> {
        use crate::analysis::registration::Outcome;
        let label = a.outcome.label();
        let key = (a.binding.aor.clone(), a.client.to_string());
        if self.bindings.get(&key) == Some(&label) {
            return None;
        }
        if !self.bindings.contains_key(&key) && self.bindings.len() >= TRACKED {
            self.bindings.clear();
            self.evicted += TRACKED as u64;
        }
        self.bindings.insert(key, label);
        let level = match a.outcome {
            Outcome::Registered { .. } | Outcome::Deregistered => "info",
            _ => "warn",
        };
        let (status, expires) = match &a.outcome {
            Outcome::Registered { expires } => (None, Some(*expires)),
            Outcome::Rejected { status, .. } => (Some(*status), None),
            _ => (None, None),
        };
        Some(
            LogLine::at(a.ended, level, "registration")
                .field("state", label)
                .field("aor", a.binding.aor.as_str())
                .field("client", a.client.to_string())
                .field("registrar", a.registrar.to_string())
                .field("call_id", a.binding.call_id.as_str())
                .field_opt("status", status)
                .field_opt("expires", expires),
        )
    }

    fn call(&mut self, c: &Call) -> Option<LogLine> {
        let state = c.state.as_str();
        if c.closed {
            self.calls.remove(&c.call_id);
            let talk = c
                .duration()
                .map(|d| (d.as_secs_f64() * 10.0).round() / 10.0);
            return Some(
                call_line(c, "call_closed")
                    .field("state", state)
                    .field_opt("talk_s", talk)
                    .field_opt("reason", c.end_reason.as_deref()),
            );
        }
        if self.calls.get(&c.call_id) == Some(&state) {
            return None;
        }
        if !self.calls.contains_key(&c.call_id) && self.calls.len() >= TRACKED {
            self.calls.clear();
            self.evicted += TRACKED as u64;
        }
        self.calls.insert(c.call_id.clone(), state);
        Some(
            call_line(c, "call")
                .field("state", state)
                .field_opt("status", c.status)
                .field_opt(
                    "reason",
                    c.end_reason.as_deref().filter(|_| c.state.is_terminal()),
                ),
        )
    }
}

fn call_line(c: &Call, event: &'static str) -> LogLine {
    let level = match c.state.as_str() {
        "failed" => "warn",
        _ => "info",
    };
    LogLine::at(c.at, level, event)
        .field("call_id", c.call_id.as_str())
        .field("from", c.from.as_str())
        .field("to", c.to.as_str())
}

fn finding(d: &Diagnosis) -> LogLine {
    LogLine::at(d.at, severity_level(d.severity), "finding")
        .field("code", d.code.to_string())
        .field_opt("source", d.source.map(|s| s.to_string()))
        .field_opt("call_id", d.call_id.as_deref())
        .field_opt("aor", d.aor.as_deref())
        .field("summary", d.summary.as_str())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_lines_are_logfmt_and_json_lines_are_objects() {
        let line = LogLine::at(
            Timestamp::from_nanos(1_796_452_215_123_456_789),
            "warn",
            "finding",
        )
        .field("code", "auth.rejected")
        .field("summary", "wrong \"password\" for 1001")
        .field_opt("status", Some(403))
        .field_opt("none", None::<u16>);
        assert_eq!(
            line.render(LogFormat::Text),
            r#"2026-12-05T06:30:15.123456Z warn finding code=auth.rejected summary="wrong \"password\" for 1001" status=403"#
        );
        let v: Value = serde_json::from_str(&line.render(LogFormat::Json)).unwrap();
        assert_eq!(v["ts"], "2026-12-05T06:30:15.123456Z");
        assert_eq!(v["level"], "warn");
        assert_eq!(v["event"], "finding");
        assert_eq!(v["status"], 403);
        assert!(v.get("none").is_none());
    }

    #[test]
    fn a_finding_names_the_call_and_account_it_is_about() {
        let at = Timestamp::from_nanos(1_796_452_215_123_456_789);
        let d = Diagnosis::new(crate::diagnosis::Code::AuthRejected, at, "wrong password")
            .about(Some("a84b4c76e66710"), Some("sip:1001@pbx.example"));
        assert_eq!(
            finding(&d).render(LogFormat::Text),
            "2026-12-05T06:30:15.123456Z error finding code=auth.rejected \
             call_id=a84b4c76e66710 aor=sip:1001@pbx.example summary=\"wrong password\""
        );
        let plain = Diagnosis::new(crate::diagnosis::Code::AuthRejected, at, "x");
        let line = finding(&plain).render(LogFormat::Json);
        assert!(!line.contains("call_id") && !line.contains("aor"), "{line}");
    }
}
