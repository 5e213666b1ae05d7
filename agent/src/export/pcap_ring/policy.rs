//! When a capture file is closed and the next one started, what the files
//! are called, and how many are kept: dumpcap's ring buffer
//! (`-b filesize:KB,duration:S,files:N`), on the packet clock.

use std::{
    path::{Path, PathBuf},
    time::Duration,
};

use super::encode::FileFormat;
use crate::time::Timestamp;

/// Rotation limits; all `None` writes one file.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Rotation {
    /// Start a new file once this many bytes are written to the current one.
    pub size: Option<u64>,
    /// Start a new file when the first frame of the current one is this old
    /// (capture clock).
    pub every: Option<Duration>,
    /// Keep at most this many files of this run; the oldest is deleted.
    pub keep: Option<usize>,
}

impl Rotation {
    pub fn rotates(&self) -> bool {
        self.size.is_some() || self.every.is_some()
    }

    /// Whether a file opened at `opened` holding `bytes` is complete
    /// before a frame at `now` is added.
    pub(crate) fn due(&self, bytes: u64, opened: Timestamp, now: Timestamp) -> bool {
        self.size.is_some_and(|s| bytes >= s) || self.every.is_some_and(|d| now.since(opened) >= d)
    }
}

/// Where the files go and what they are called.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Naming {
    dir: PathBuf,
    stem: String,
    extension: String,
    /// Exactly this path (no rotation asked for, a file name given).
    single: Option<PathBuf>,
    pub format: FileFormat,
}

impl Naming {
    /// `path` is a directory (files `sipscope_NNNNN_YYYYmmddHHMMSS.pcapng`
    /// in it) or a file name: that very file without rotation (the next
    /// ones numbered beside it only after a write error), else
    /// `STEM_NNNNN_YYYYmmddHHMMSS.EXT` beside it, as dumpcap names its ring.
    pub fn new(path: &Path, rotates: bool) -> Self {
        if path.is_dir() {
            return Self {
                dir: path.to_path_buf(),
                stem: "sipscope".into(),
                extension: "pcapng".into(),
                single: None,
                format: FileFormat::PcapNg,
            };
        }
        let format = FileFormat::for_path(path);
        let dir = match path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
            _ => PathBuf::from("."),
        };
        Self {
            dir,
            stem: path
                .file_stem()
                .map_or_else(|| "sipscope".into(), |s| s.to_string_lossy().into_owned()),
            extension: path.extension().map_or_else(
                || format.extension().into(),
                |e| e.to_string_lossy().into_owned(),
            ),
            single: (!rotates).then(|| path.to_path_buf()),
            format,
        }
    }

    /// The `seq`-th file (from 1), whose first frame is at `first`. A
    /// single named file is the first; should it fail, the next ones are
    /// numbered beside it rather than truncating what it holds.
    pub(crate) fn file(&self, seq: u64, first: Timestamp) -> PathBuf {
        if let Some(p) = &self.single
            && seq == 1
        {
            return p.clone();
        }
        self.dir.join(format!(
            "{}_{seq:05}_{}.{}",
            self.stem,
            compact_utc(first),
            self.extension
        ))
    }
}

/// `YYYYmmddHHMMSS` in UTC, as in dumpcap's ring file names.
fn compact_utc(t: Timestamp) -> String {
    match jiff::Timestamp::from_nanosecond(i128::from(t.as_nanos())) {
        Ok(ts) => ts.strftime("%Y%m%d%H%M%S").to_string(),
        Err(_) => "00000000000000".into(),
    }
}

/// `100MB`, `64KB`, `1GiB`, `500000` (bytes): decimal units as dumpcap's
/// `filesize` (kB = 1000 bytes), binary ones with `i`.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a size: write e.g. 100MB, 64KB or 1GiB"))?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "k" | "kb" => 1_000,
        "m" | "mb" => 1_000_000,
        "g" | "gb" => 1_000_000_000,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        other => {
            return Err(format!(
                "unknown size unit `{other}` in `{s}`: use B, KB, MB, GB, KiB, MiB or GiB"
            ));
        }
    };
    match n.checked_mul(mult) {
        Some(0) => Err("must be more than 0 bytes".into()),
        Some(v) => Ok(v),
        None => Err(format!("`{s}` is too large")),
    }
}

/// `30s`, `10m`, `1h`, `1d`, `90` (seconds).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num
        .parse()
        .map_err(|_| format!("`{s}` is not a duration: write e.g. 30s, 10m, 1h or 1d"))?;
    let secs = match unit.trim() {
        "" | "s" => 1,
        "m" | "min" => 60,
        "h" => 3_600,
        "d" => 86_400,
        other => {
            return Err(format!(
                "unknown duration unit `{other}` in `{s}`: use s, m, h or d"
            ));
        }
    };
    match n.checked_mul(secs) {
        Some(0) => Err("must be at least 1 second".into()),
        Some(v) => Ok(Duration::from_secs(v)),
        None => Err(format!("`{s}` is too long")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations_read_as_dumpcap_users_write_them() {
        assert_eq!(parse_size("100MB"), Ok(100_000_000));
        assert_eq!(parse_size("64KB"), Ok(64_000));
        assert_eq!(parse_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").unwrap_err().contains("more than 0"));
        assert!(
            parse_size("10XB")
                .unwrap_err()
                .contains("unknown size unit")
        );
        assert!(parse_size("MB").unwrap_err().contains("e.g. 100MB"));
        assert_eq!(parse_duration("1h"), Ok(Duration::from_secs(3600)));
        assert_eq!(parse_duration("90"), Ok(Duration::from_secs(90)));
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert!(
            parse_duration("1w")
                .unwrap_err()
                .contains("use s, m, h or d")
        );
    }

    #[test]
    fn ring_files_are_named_like_dumpcaps() {
        // 2026-12-05 06:30:15 UTC.
        let t = Timestamp::from_nanos(1_796_452_215_000_000_000);
        let n = Naming::new(Path::new("/var/lib/sipscope/sip.pcapng"), true);
        assert_eq!(
            n.file(7, t),
            PathBuf::from("/var/lib/sipscope/sip_00007_20261205063015.pcapng")
        );
        assert_eq!(n.format, FileFormat::PcapNg);
        let n = Naming::new(Path::new("out.pcap"), true);
        assert_eq!(
            n.file(1, t),
            PathBuf::from("./out_00001_20261205063015.pcap")
        );
        assert_eq!(n.format, FileFormat::Pcap);
        // Without rotation the named file itself; after a write error
        // the next file beside it.
        let n = Naming::new(Path::new("/tmp/x.pcapng"), false);
        assert_eq!(n.file(1, t), PathBuf::from("/tmp/x.pcapng"));
        assert_eq!(
            n.file(2, t),
            PathBuf::from("/tmp/x_00002_20261205063015.pcapng")
        );
        // A directory gets sipscope_ files.
        let dir = tempfile::tempdir().unwrap();
        let n = Naming::new(dir.path(), false);
        assert_eq!(
            n.file(2, t),
            dir.path().join("sipscope_00002_20261205063015.pcapng")
        );
    }

    #[test]
    fn a_file_is_due_by_size_or_age() {
        let r = Rotation {
            size: Some(1000),
            every: Some(Duration::from_secs(60)),
            keep: None,
        };
        let t0 = Timestamp::from_nanos(1_000_000_000_000);
        assert!(!r.due(999, t0, t0 + Duration::from_secs(59)));
        assert!(r.due(1000, t0, t0));
        assert!(r.due(0, t0, t0 + Duration::from_secs(60)));
        assert!(!Rotation::default().due(u64::MAX, t0, t0 + Duration::from_secs(1 << 30)));
    }
}
