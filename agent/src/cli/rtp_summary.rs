//! `sipscope run`'s RTP output: one line per flow the kernel tracks, every
//! `--rtp-interval` seconds and at exit, and the RTP counters at exit.
//! Deliberately simple and kept apart; flows will join dialogs later.

use std::{io::Write, ops::RangeInclusive, time::Duration};

use anyhow::Context as _;
use sipscope::capture::live::{LiveCapture, RtpMonitor, RtpSettings, rtp::parse_port_range};
use sipscope_common::DEFAULT_RTP_FLOWS;
use tokio::time::{Interval, MissedTickBehavior, interval};

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
    pub fn settings(&self) -> RtpSettings {
        RtpSettings {
            ports: self.ports.clone(),
            max_flows: self.max_flows,
            ..RtpSettings::default()
        }
    }
}

pub struct RtpSummary {
    monitor: RtpMonitor,
    interval: Interval,
}

impl RtpSummary {
    pub fn start(capture: &mut LiveCapture, args: &RtpArgs) -> anyhow::Result<Self> {
        let every = seconds("rtp-interval", args.interval)?;
        let idle = seconds("rtp-idle", args.idle)?;
        let monitor = capture
            .rtp_monitor(idle)
            .context("cannot read the kernel's RTP statistics")?;
        let mut interval = interval(every);
        interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
        interval.reset(); // the first tick is one interval from now
        Ok(Self { monitor, interval })
    }

    /// Completes at the next summary time (cancel-safe).
    pub async fn tick(&mut self) {
        self.interval.tick().await;
    }

    /// `rtp flow ...` per active flow, `rtp ended ...` per expired one.
    pub fn print_active(&mut self, out: &mut impl Write) -> anyhow::Result<()> {
        let poll = self.monitor.poll().context("polling RTP flows")?;
        for f in &poll.expired {
            writeln!(out, "{} rtp ended {f}", f.last_seen)?;
        }
        for f in &poll.active {
            writeln!(out, "{} rtp flow {f}", f.last_seen)?;
        }
        out.flush()?;
        Ok(())
    }

    /// At exit: `rtp final ...` for every flow still tracked (expired ones
    /// as `rtp ended`), then `rtp counters: name=value ...`.
    pub fn print_final(&mut self, out: &mut impl Write) -> anyhow::Result<()> {
        let poll = self.monitor.poll().context("polling RTP flows")?;
        for f in poll.expired.iter() {
            writeln!(out, "{} rtp ended {f}", f.last_seen)?;
        }
        for f in poll.active.iter() {
            writeln!(out, "{} rtp final {f}", f.last_seen)?;
        }
        writeln!(out, "rtp counters: {}", poll.counters)?;
        out.flush()?;
        Ok(())
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
