//! `--write-pcap` and its rotation flags (modelled on `dumpcap -b
//! filesize:KB,duration:S,files:N`); see docs/service.md.

use std::{collections::HashMap, path::PathBuf};

use anyhow::Context as _;
use sipscope::{
    capture::live::Attachment,
    export::pcap_ring::{PcapRing, PcapRingStats, Rotation, parse_duration, parse_size},
};

#[derive(clap::Args, Debug)]
pub struct PcapArgs {
    /// Keep every captured frame: a file (`.pcap`: classic pcap; any other
    /// name: pcapng with interface names and direction) or a directory
    /// (`sipscope_NNNNN_YYYYmmddHHMMSS.pcapng` files in it).
    #[arg(long = "write-pcap", value_name = "FILE_OR_DIR")]
    write_pcap: Option<PathBuf>,
    /// Start a new file when the current one reaches SIZE (e.g. 100MB,
    /// 64KB, 1GiB).
    #[arg(long = "pcap-rotate-size", value_name = "SIZE", requires = "write_pcap",
          value_parser = parse_size)]
    rotate_size: Option<u64>,
    /// Start a new file when the current one is this old (e.g. 30s, 10m, 1h).
    #[arg(long = "pcap-rotate-every", value_name = "DURATION", requires = "write_pcap",
          value_parser = parse_duration)]
    rotate_every: Option<std::time::Duration>,
    /// Keep the newest FILES files of this run; older ones are deleted.
    #[arg(long = "pcap-keep", value_name = "FILES", requires = "write_pcap")]
    keep: Option<usize>,
}

impl PcapArgs {
    /// The writer for the attached interfaces, when `--write-pcap` is set.
    /// Its one-line reports (write failed, writing again) go to the log.
    pub fn start(&self, attachments: &[Attachment]) -> anyhow::Result<Option<PcapRing>> {
        let Some(path) = &self.write_pcap else {
            return Ok(None);
        };
        let rotation = Rotation {
            size: self.rotate_size,
            every: self.rotate_every,
            keep: self.keep,
        };
        let names: HashMap<u32, String> = attachments
            .iter()
            .map(|a| (a.ifindex, a.iface.clone()))
            .collect();
        let report = Box::new(|line: &str| log::warn!("{line}"));
        PcapRing::start(path, rotation, names, report)
            .map(Some)
            .context("cannot write the capture files")
    }
}

/// The exit line: `pcap: written=N not_written=N ...`.
pub fn line(s: &PcapRingStats) -> String {
    format!(
        "pcap: written={} not_written={} queue_full={} files={} files_deleted={} write_errors={}",
        s.written, s.not_written, s.queue_full, s.files, s.files_deleted, s.write_errors
    )
}
