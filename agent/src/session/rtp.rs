//! The kernel's RTP statistics as the session sees them: when to read the
//! flow map (a [`Request::PollRtp`] the driver answers with
//! [`super::Input::RtpFlows`]), which payload clocks SDP negotiated (set
//! and removed in the kernel by the driver on [`Request::SetPortClock`] /
//! [`Request::RemovePortClock`]), and the `rtp ...` console lines. No
//! syscalls here and no wall clock: the schedule runs on the tick time.

use std::collections::{HashMap, VecDeque};
use std::io::Write;
use std::time::Duration;

use sipscope_common::FIRST_DYNAMIC_PT;

use crate::analysis::media::FlowSnapshot;
use crate::capture::live::{RtpFlowStats, RtpPoll};
use crate::pipeline::Event;
use crate::time::Timestamp;

use super::Request;

/// While calls are up, the kernel map is read at least this often so
/// their findings are at most this late.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Active flows printed one line each at most; beyond, a summary line and
/// the flows that lose most (the calls view has the rest, per call).
const FLOW_LINES: usize = 20;

pub(crate) struct RtpSchedule {
    print_every: Duration,
    /// Both start at the first tick: the first summary comes one
    /// interval after capture starts, as with a timer started then.
    last_print: Option<Timestamp>,
    last_poll: Option<Timestamp>,
    /// A call ended since the last poll: poll at the next tick.
    poll_soon: bool,
    /// The poll asked for is also the periodic summary.
    print_pending: bool,
    /// Port clocks asked for per open call, removed when it closes.
    clocks: HashMap<String, Vec<(u16, u8)>>,
    clock_errors: u64,
}

impl RtpSchedule {
    pub(crate) fn new(print_every: Duration) -> Self {
        Self {
            print_every,
            last_print: None,
            last_poll: None,
            poll_soon: false,
            print_pending: false,
            clocks: HashMap::new(),
            clock_errors: 0,
        }
    }

    /// Follows the calls: negotiated dynamic clocks go to the kernel, a
    /// closed call's clocks leave it, and a call that ended gets its
    /// statistics read at the next tick.
    pub(crate) fn on_event(&mut self, event: &Event, requests: &mut VecDeque<Request>) {
        let Event::Call(call) = event else { return };
        if call.closed {
            for (port, payload_type) in self.clocks.remove(&call.call_id).unwrap_or_default() {
                requests.push_back(Request::RemovePortClock { port, payload_type });
            }
            return;
        }
        if call.state.is_terminal() {
            self.poll_soon = true;
        }
        for st in &call.streams {
            let n = &st.negotiated;
            let Some(f) = n.format() else { continue };
            // Static types already have their RFC 3551 clock in the kernel.
            let (Some(clock_rate), true) = (f.clock_rate, f.payload_type >= FIRST_DYNAMIC_PT)
            else {
                continue;
            };
            for port in [n.offer.port, n.answer.port] {
                let set = self.clocks.entry(call.call_id.clone()).or_default();
                if set.contains(&(port, f.payload_type)) {
                    continue;
                }
                set.push((port, f.payload_type));
                requests.push_back(Request::SetPortClock {
                    call_id: call.call_id.clone(),
                    port,
                    payload_type: f.payload_type,
                    clock_rate,
                });
            }
        }
    }

    /// The kernel refused a clock: counted, and asked for again at the
    /// call's next report.
    pub(crate) fn clock_refused(&mut self, call_id: &str, port: u16, payload_type: u8) {
        self.clock_errors += 1;
        if let Some(set) = self.clocks.get_mut(call_id) {
            set.retain(|&c| c != (port, payload_type));
        }
    }

    /// At a tick: whether to read the map now (every second while calls
    /// are up, at once after a call ended, and for each summary).
    pub(crate) fn poll_due(&mut self, now: Timestamp, calls_up: bool) -> bool {
        let last_print = *self.last_print.get_or_insert(now);
        let last_poll = *self.last_poll.get_or_insert(now);
        let print_due = now.since(last_print) >= self.print_every;
        if !(self.poll_soon || print_due || (calls_up && now.since(last_poll) >= POLL_EVERY)) {
            return false;
        }
        self.poll_soon = false;
        self.last_poll = Some(now);
        if print_due {
            self.last_print = Some(now);
        }
        self.print_pending = print_due;
        true
    }

    /// The answer to a poll. An ended flow is gone from the map after
    /// it, so it is always said; the active ones when the summary is due,
    /// or at the `last` poll as `rtp final ...` followed by `rtp counters:
    /// name=value ...`.
    pub(crate) fn on_poll(
        &mut self,
        poll: &RtpPoll,
        last: bool,
        out: &mut impl Write,
        print: bool,
    ) -> std::io::Result<Vec<FlowSnapshot>> {
        if print {
            print_ended(out, poll)?;
            if last {
                self.print_final(poll, out)?;
            } else if self.print_pending {
                print_active(out, &poll.active)?;
            }
        }
        self.print_pending = false;
        Ok(poll
            .expired
            .iter()
            .chain(&poll.active)
            .map(RtpFlowStats::snapshot)
            .collect())
    }

    fn print_final(&self, poll: &RtpPoll, out: &mut impl Write) -> std::io::Result<()> {
        for f in &poll.active {
            writeln!(out, "{} rtp final {f}", f.last_seen)?;
        }
        write!(out, "rtp counters: {}", poll.counters)?;
        if self.clock_errors > 0 {
            write!(out, " port_clocks_not_set={}", self.clock_errors)?;
        }
        writeln!(out)
    }
}

/// A flow the poll expired is gone from the map after it: said once.
fn print_ended(out: &mut impl Write, poll: &RtpPoll) -> std::io::Result<()> {
    for f in &poll.expired {
        writeln!(out, "{} rtp ended {f}", f.last_seen)?;
    }
    Ok(())
}

/// `rtp flow ...` per active flow, or, with many, `rtp: N flows ...` and
/// the [`FLOW_LINES`] flows with the most loss.
pub(crate) fn print_active(out: &mut impl Write, active: &[RtpFlowStats]) -> std::io::Result<()> {
    if active.len() <= FLOW_LINES {
        for f in active {
            writeln!(out, "{} rtp flow {f}", f.last_seen)?;
        }
        return Ok(());
    }
    let packets: u64 = active.iter().map(|f| f.state.packets).sum();
    let lost: i64 = active
        .iter()
        .map(|f| f.state.cumulative_lost().max(0))
        .sum();
    let newest = active.iter().map(|f| f.last_seen).max().unwrap_or_default();
    let mut worst: Vec<&RtpFlowStats> = active
        .iter()
        .filter(|f| f.state.cumulative_lost() > 0)
        .collect();
    worst.sort_by_key(|f| std::cmp::Reverse(f.state.cumulative_lost()));
    writeln!(
        out,
        "{newest} rtp: {} flows active, {packets} packets, {lost} lost{}",
        active.len(),
        match worst.len() {
            0 => String::new(),
            n => format!("; the {} losing most:", n.min(FLOW_LINES)),
        }
    )?;
    for f in worst.into_iter().take(FLOW_LINES) {
        writeln!(out, "{} rtp flow {f}", f.last_seen)?;
    }
    Ok(())
}
