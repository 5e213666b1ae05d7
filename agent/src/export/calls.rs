//! The calls view for the console: one line per call state change as it
//! happens, and a table of calls (from, to, state, duration, and per
//! direction packets, loss, jitter and MOS) at exit and, in `run`,
//! periodically for the calls still up.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::sync::Arc;

use crate::analysis::calls::{Call, DirectionReport, StreamReport};
use crate::analysis::media::StreamDirection;
use crate::pipeline::Event;

/// Calls shown at most (the rest are counted in a closing line).
const MAX_ROWS: usize = 1000;

/// `12:00:01.000000 CALL answered sip:alice@a → sip:bob@b  200  Call-ID x`,
/// then, for a closed call, one indented line per stream direction.
pub(crate) fn call_line(call: &Call) -> String {
    let mut s = format!(
        "{} CALL {} {} → {}{}{}  Call-ID {}",
        call.at,
        if call.closed {
            "closed"
        } else {
            call.state.as_str()
        },
        call.from,
        call.to,
        call.status.map(|s| format!("  {s}")).unwrap_or_default(),
        call.end_reason
            .as_deref()
            .filter(|_| call.state.is_terminal() || call.closed)
            .map(|r| format!("  ({r})"))
            .unwrap_or_default(),
        call.call_id
    );
    if call.closed {
        let _ = write!(
            s,
            "\n    {} {}",
            call.state.as_str(),
            call.duration()
                .map(|d| format!("after {:.1} s of talk", d.as_secs_f64()))
                .unwrap_or_else(|| "without answer".into())
        );
        for st in &call.streams {
            for d in &st.directions {
                let _ = write!(s, "\n    {} {}", st.codec(), direction_cells(st, d));
            }
        }
    }
    s
}

/// `caller→callee 10.0.0.1:10000 → 10.0.0.2:20000  250 pkts  loss 0.0 %
/// jitter 0.4 ms  MOS 4.41`.
fn direction_cells(st: &StreamReport, d: &DirectionReport) -> String {
    let sender = match d.direction {
        StreamDirection::OffererToAnswerer => st.offerer,
        StreamDirection::AnswererToOfferer => st.offerer.other(),
    };
    let who = format!("{}→{}", sender.as_str(), sender.other().as_str());
    let stats = match &d.observed {
        Some(o) => format!(
            "{} pkts{}  loss {:.1} %  jitter {:.1} ms  MOS {}{}",
            o.packets,
            if o.dropped_locally > 0 {
                format!(" ({} dropped here)", o.dropped_locally)
            } else {
                String::new()
            },
            o.loss_percent(),
            o.jitter_ms,
            d.mos.map_or("-".into(), |m| format!("{m:.2}")),
            o.far_end
                .map(|f| format!(
                    "  (receiver's RTCP: loss {:.1} %{}{})",
                    f.fraction_lost_percent,
                    f.jitter_ms
                        .map(|j| format!(", jitter {j:.1} ms"))
                        .unwrap_or_default(),
                    f.round_trip_ms
                        .map(|r| format!(", RTT {r:.0} ms"))
                        .unwrap_or_default()
                ))
                .unwrap_or_default()
        ),
        None if d.expected => "no RTP".into(),
        None => "not negotiated to send".into(),
    };
    format!("{who:<14} {} → {}  {stats}", d.from, d.to)
}

/// Collects call reports and renders the table.
#[derive(Default)]
pub(crate) struct CallsReport {
    order: VecDeque<String>,
    calls: HashMap<String, Arc<Call>>,
    not_shown: u64,
}

impl CallsReport {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    /// Keeps the latest report of the last [`MAX_ROWS`] calls; older ones
    /// leave the table (counted in a closing line).
    pub(crate) fn push(&mut self, event: &Event) {
        let Event::Call(c) = event else { return };
        if !self.calls.contains_key(&c.call_id) {
            if self.calls.len() >= MAX_ROWS
                && let Some(oldest) = self.order.pop_front()
            {
                self.calls.remove(&oldest);
                self.not_shown += 1;
            }
            self.order.push_back(c.call_id.clone());
        }
        self.calls.insert(c.call_id.clone(), c.clone());
    }

    /// The table of every call.
    pub(crate) fn render(&self) -> String {
        let rows: Vec<&Call> = self.order.iter().map(|id| &*self.calls[id]).collect();
        let mut s = table("Calls", &rows);
        if self.not_shown > 0 {
            let _ = writeln!(s, "  ({} earlier calls not shown)\n", self.not_shown);
        }
        s
    }
}

/// `title:` and one row per call (from, to, state, talk time, findings),
/// each stream direction under it; empty without calls.
pub(crate) fn table(title: &str, calls: &[&Call]) -> String {
    let mut s = String::new();
    if calls.is_empty() {
        return s;
    }
    let _ = writeln!(
        s,
        "{title}:\n  {:<28} {:<28} {:<12} {:>8}  media (per direction)",
        "From", "To", "State", "Talk"
    );
    for c in calls {
        let _ = writeln!(
            s,
            "  {:<28} {:<28} {:<12} {:>8}  {}",
            clip(&c.from, 28),
            clip(&c.to, 28),
            c.state.as_str(),
            c.duration()
                .map_or("-".into(), |d| format!("{:.1}s", d.as_secs_f64())),
            if c.diagnoses.is_empty() {
                String::new()
            } else {
                let codes: Vec<&str> = c.diagnoses.iter().map(|d| d.as_str()).collect();
                format!("findings: {}", codes.join(", "))
            }
        );
        for st in &c.streams {
            for d in &st.directions {
                let _ = writeln!(s, "      {} {}", st.codec(), direction_cells(st, d));
            }
        }
    }
    s.push('\n');
    s
}

fn clip(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_owned()
    } else {
        let mut t: String = s.chars().take(n - 1).collect();
        t.push('…');
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analysis::calls::CallState;
    use crate::time::Timestamp;

    fn call(i: usize) -> Event {
        Event::Call(Arc::new(Call {
            call_id: format!("call-{i}"),
            from: format!("sip:{i}@phone"),
            to: "sip:200@pbx".into(),
            caller: "192.0.2.10:5060".parse().unwrap(),
            callee: "198.51.100.20:5060".parse().unwrap(),
            state: CallState::Failed,
            started: Timestamp(i as u64),
            answered: None,
            ended: Some(Timestamp(i as u64)),
            status: Some(486),
            end: Some(crate::analysis::calls::CallEnd::Rejected),
            end_reason: Some("486 Busy Here".into()),
            streams: Vec::new(),
            diagnoses: Vec::new(),
            closed: true,
            at: Timestamp(i as u64),
        }))
    }

    /// A long-running agent keeps the latest calls, not the first ones.
    #[test]
    fn the_table_keeps_the_latest_calls_and_counts_the_rest() {
        let mut r = CallsReport::new();
        for i in 0..MAX_ROWS + 5 {
            r.push(&call(i));
        }
        let text = r.render();
        assert!(!text.contains("sip:4@phone "), "oldest left the table");
        assert!(text.contains("sip:5@phone "));
        assert!(text.contains(&format!("sip:{}@phone ", MAX_ROWS + 4)));
        assert!(
            text.contains("(5 earlier calls not shown)"),
            "{}",
            &text[text.len() - 200..]
        );
    }
}
