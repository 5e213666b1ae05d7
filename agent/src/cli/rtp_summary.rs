//! `sipscope run`'s RTP side: the kernel's per-flow statistics are read
//! into the pipeline, where the call tracker links them to negotiated
//! streams; one line per flow every `--rtp-interval` seconds and at exit,
//! and the RTP counters at exit.

use std::collections::HashMap;
use std::{io::Write, ops::RangeInclusive, time::Duration, time::Instant};

use anyhow::Context as _;
use sipscope::analysis::media::FlowSnapshot;
use sipscope::capture::live::{
    LiveCapture, RtpFlowStats, RtpMonitor, RtpSettings, rtp::parse_port_range,
};
use sipscope::pipeline::Event;
use sipscope_common::DEFAULT_RTP_FLOWS;

#[derive(clap::Args, Debug)]
pub struct RtpArgs {
    /// UDP port range whose RTP is measured in the kernel (either end), as
    /// LO-HI, or `off`. RTP is never copied out, only counted per flow.
    #[arg(long = "rtp-ports", value_name = "LO-HI", value_parser = parse_port_range,
          default_value = "10000-20000")]
    ports: RangeInclusive<u16>,
    /// Most RTP flows tracked at once; beyond, the least recently active
    /// flow is evicted (counted as rtp_flows_evicted).
    #[arg(long = "rtp-flows", value_name = "N", default_value_t = DEFAULT_RTP_FLOWS,
          value_parser = clap::value_parser!(u32).range(1..))]
    max_flows: u32,
    /// Seconds between RTP summaries.
    #[arg(long = "rtp-interval", value_name = "SECS", default_value_t = 10.0)]
    interval: f64,
    /// Seconds without a packet after which a flow is reported as ended
    /// and removed from the kernel map.
    #[arg(long = "rtp-idle", value_name = "SECS", default_value_t = 30.0)]
    idle: f64,
}

fn seconds(what: &str, v: f64) -> anyhow::Result<Duration> {
    Duration::try_from_secs_f64(v)
        .ok()
        .filter(|d| !d.is_zero())
        .with_context(|| format!("--{what} must be a positive number of seconds, got {v}"))
}

impl RtpArgs {
    /// RTP statistics are on (not `--rtp-ports off`).
    pub fn enabled(&self) -> bool {
        !self.ports.is_empty()
    }

    pub fn settings(&self) -> RtpSettings {
        RtpSettings {
            ports: self.ports.clone(),
            max_flows: self.max_flows,
            ..RtpSettings::default()
        }
    }
}

/// The kernel's RTP statistics on the analysis thread: polled into the
/// pipeline (so calls are judged on them), printed per flow every
/// `--rtp-interval`, and told the clocks SDP negotiated.
pub struct RtpSummary {
    monitor: RtpMonitor,
    print_every: Duration,
    last_print: Instant,
    last_poll: Instant,
    /// A call ended or started since the last poll: poll at the next tick.
    poll_soon: bool,
    /// Port clocks set per open call, removed when it closes.
    clocks: HashMap<String, Vec<(u16, u8)>>,
    clock_errors: u64,
}

/// Active flows printed one line each at most; beyond, a summary line and
/// the flows that lose most (the calls view has the rest, per call).
const FLOW_LINES: usize = 20;

/// `rtp flow ...` per active flow, or, with many, `rtp: N flows ...` and
/// the [`FLOW_LINES`] flows with the most loss.
fn print_active(out: &mut impl Write, active: &[RtpFlowStats]) -> std::io::Result<()> {
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

/// While calls are up, the kernel map is read at least this often so
/// their findings are at most this late.
const POLL_EVERY: Duration = Duration::from_secs(1);

impl RtpSummary {
    /// `None` when RTP is off (`--rtp-ports off`).
    pub fn start(capture: &mut LiveCapture, args: &RtpArgs) -> anyhow::Result<Option<Self>> {
        if !args.enabled() {
            return Ok(None);
        }
        let every = seconds("rtp-interval", args.interval)?;
        let idle = seconds("rtp-idle", args.idle)?;
        let monitor = capture
            .rtp_monitor(idle)
            .context("cannot read the kernel's RTP statistics")?;
        Ok(Some(Self {
            monitor,
            print_every: every,
            last_print: Instant::now(),
            last_poll: Instant::now(),
            poll_soon: false,
            clocks: HashMap::new(),
            clock_errors: 0,
        }))
    }

    /// Follows the calls: negotiated clocks go to the kernel; a call that
    /// ended gets its statistics read at the next tick.
    pub fn on_event(&mut self, event: &Event) {
        let Event::Call(call) = event else { return };
        if call.closed {
            for (port, pt) in self.clocks.remove(&call.call_id).unwrap_or_default() {
                let _ = self.monitor.remove_port_clock(port, pt);
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
            let (Some(rate), true) = (f.clock_rate, f.payload_type >= 96) else {
                continue;
            };
            for port in [n.offer.port, n.answer.port] {
                let set = self.clocks.entry(call.call_id.clone()).or_default();
                if set.contains(&(port, f.payload_type)) {
                    continue;
                }
                match self.monitor.set_port_clock(port, f.payload_type, rate) {
                    Ok(()) => set.push((port, f.payload_type)),
                    Err(_) => self.clock_errors += 1,
                }
            }
        }
    }

    /// On the analysis thread's tick: reads the kernel map when due (every
    /// second while calls are up, at once after a call ended) and prints
    /// the flows every `--rtp-interval`. Returns the flows read, if any.
    pub fn tick(
        &mut self,
        calls_up: bool,
        out: &mut impl Write,
        print: bool,
    ) -> anyhow::Result<Option<Vec<FlowSnapshot>>> {
        let print_due = self.last_print.elapsed() >= self.print_every;
        let poll_due =
            self.poll_soon || print_due || (calls_up && self.last_poll.elapsed() >= POLL_EVERY);
        if !poll_due {
            return Ok(None);
        }
        self.poll_soon = false;
        self.last_poll = Instant::now();
        let poll = self.monitor.poll().context("polling RTP flows")?;
        // An ended flow is gone from the map after this poll: always say so.
        if print {
            for f in &poll.expired {
                writeln!(out, "{} rtp ended {f}", f.last_seen)?;
            }
        }
        if print_due {
            self.last_print = Instant::now();
            if print {
                print_active(out, &poll.active)?;
            }
        }
        Ok(Some(
            poll.expired
                .iter()
                .chain(&poll.active)
                .map(RtpFlowStats::snapshot)
                .collect(),
        ))
    }

    /// At exit: `rtp final ...` for every flow still tracked (expired ones
    /// as `rtp ended`), then `rtp counters: name=value ...`. Returns the
    /// flows for the calls' last reports.
    pub fn finish(
        &mut self,
        out: &mut impl Write,
        print: bool,
    ) -> anyhow::Result<Vec<FlowSnapshot>> {
        let poll = self.monitor.poll().context("polling RTP flows")?;
        if print {
            for f in poll.expired.iter() {
                writeln!(out, "{} rtp ended {f}", f.last_seen)?;
            }
            for f in poll.active.iter() {
                writeln!(out, "{} rtp final {f}", f.last_seen)?;
            }
            writeln!(
                out,
                "rtp counters: {}{}",
                poll.counters,
                if self.clock_errors > 0 {
                    format!(" port_clocks_not_set={}", self.clock_errors)
                } else {
                    String::new()
                }
            )?;
        }
        Ok(poll
            .expired
            .iter()
            .chain(&poll.active)
            .map(RtpFlowStats::snapshot)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        rtp: RtpArgs,
    }

    fn flow(port: u16, lost_every: u16) -> RtpFlowStats {
        use sipscope::analysis::media::{RtpStreamStats, parse_rtp};
        let mut stats = RtpStreamStats::new();
        for seq in 0..100u16 {
            if lost_every > 0 && seq % lost_every == 1 {
                continue;
            }
            let mut p = vec![0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 7];
            p[2..4].copy_from_slice(&seq.to_be_bytes());
            p.extend_from_slice(&[0; 160]);
            let ts = sipscope::time::Timestamp(u64::from(seq) * 20_000_000);
            stats.update(ts, &parse_rtp(&p).unwrap(), p.len(), 8000);
        }
        RtpFlowStats {
            src: "10.0.0.1:10000".parse().unwrap(),
            dst: std::net::SocketAddr::new("10.0.0.2".parse().unwrap(), port),
            ifindex: 1,
            direction: sipscope::packet::Direction::Ingress,
            first_seen: stats.first_seen(),
            last_seen: stats.last_seen(),
            state: *stats.state(),
        }
    }

    /// A busy host gets a summary and the flows that lose, not a line per
    /// flow every interval.
    #[test]
    fn many_flows_print_as_a_summary_and_the_losing_ones() {
        let mut few = Vec::new();
        print_active(&mut few, &[flow(20000, 0), flow(20002, 10)]).unwrap();
        assert_eq!(String::from_utf8(few).unwrap().lines().count(), 2);

        let mut flows: Vec<RtpFlowStats> = (0..30).map(|i| flow(20000 + 2 * i, 0)).collect();
        flows.push(flow(30000, 10));
        flows.push(flow(30002, 5));
        let mut out = Vec::new();
        print_active(&mut out, &flows).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(
            lines[0].ends_with("rtp: 32 flows active, 3170 packets, 30 lost; the 2 losing most:"),
            "{text}"
        );
        assert!(lines[1].contains(":30002 in "), "most loss first: {text}");
        assert!(lines[2].contains(":30000 in "), "{text}");
    }

    #[test]
    fn defaults_are_the_library_defaults() {
        let cli = Cli::try_parse_from(["x"]).unwrap();
        assert_eq!(cli.rtp.settings(), RtpSettings::default());
        let cli = Cli::try_parse_from(["x", "--rtp-ports", "16000-16100"]).unwrap();
        assert_eq!(cli.rtp.settings().ports, 16_000..=16_100);
        assert!(Cli::try_parse_from(["x", "--rtp-ports", "9-1"]).is_err());
        assert!(seconds("rtp-idle", 0.0).is_err() && seconds("rtp-idle", -1.0).is_err());
    }
}
