//! `sipscope run`'s RTP side in the kernel: the options, and the flow map
//! read and payload clocks set when the session asks. The session decides
//! when to read and what to print ([`sipscope::session`]).

use std::{io::Write, ops::RangeInclusive, time::Duration};

use anyhow::Context as _;
use sipscope::capture::live::{
    LiveCapture, RtpMonitor, RtpPoll, RtpSettings, rtp::parse_port_range,
};
use sipscope::session::{Input, Request, Session};
use sipscope_common::DEFAULT_RTP_FLOWS;

#[derive(clap::Args, Debug)]
pub struct RtpArgs {
    /// UDP port range whose RTP is measured in the kernel (either end), as
    /// LO-HI, or `off`. RTP is never copied out, only counted per flow.
    #[arg(long = "rtp-ports", value_name = "LO-HI", value_parser = parse_port_range,
          default_value = "10000-20000")]
    ports: RangeInclusive<u16>,
    /// Most RTP flows tracked at once per address family (IPv4, IPv6);
    /// beyond, the least recently active flow is evicted (counted as
    /// rtp_flows_evicted).
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

/// The kernel side of the session's RTP statistics, on the analysis
/// thread: reads the flow map and sets payload clocks when the session
/// asks ([`Request`]).
pub struct RtpKernel {
    monitor: RtpMonitor,
    /// `--rtp-interval`, for the session's schedule.
    pub interval: Duration,
}

impl RtpKernel {
    /// `None` when RTP is off (`--rtp-ports off`).
    pub fn start(capture: &mut LiveCapture, args: &RtpArgs) -> anyhow::Result<Option<Self>> {
        if !args.enabled() {
            return Ok(None);
        }
        let interval = seconds("rtp-interval", args.interval)?;
        let idle = seconds("rtp-idle", args.idle)?;
        let monitor = capture
            .rtp_monitor(idle)
            .context("cannot read the kernel's RTP statistics")?;
        Ok(Some(Self { monitor, interval }))
    }

    /// Does what the session asked, answering with an input where it
    /// wants one, until it asks for nothing more.
    pub fn serve<W: Write>(&mut self, session: &mut Session<W>) -> anyhow::Result<()> {
        while let Some(request) = session.poll_request() {
            match request {
                Request::PollRtp => {
                    let poll = self.monitor.poll().context("polling RTP flows")?;
                    session.feed(Input::RtpFlows(&poll))?;
                }
                Request::SetPortClock {
                    call_id,
                    port,
                    payload_type,
                    clock_rate,
                } => {
                    let set = self.monitor.set_port_clock(port, payload_type, clock_rate);
                    if set.is_err() {
                        session.feed(Input::PortClockRefused {
                            call_id: &call_id,
                            port,
                            payload_type,
                        })?;
                    }
                }
                Request::RemovePortClock { port, payload_type } => {
                    let _ = self.monitor.remove_port_clock(port, payload_type);
                }
            }
        }
        Ok(())
    }

    /// The last read of the flow map, for the calls' last reports.
    pub fn last_poll(&mut self) -> anyhow::Result<RtpPoll> {
        self.monitor.poll().context("polling RTP flows")
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
