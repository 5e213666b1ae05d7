//! `--write-pcap` for an always-on agent: captured frames go to pcapng
//! (or classic pcap) files on a thread of their own, rotated by size
//! and/or age and keeping the newest N, as `dumpcap -b` does
//! ([`policy`]).
//!
//! The capture reader never waits for the disk: it hands each frame over
//! a bounded queue and a full queue is a counted loss (`queue_full`). A
//! write error (a full disk, ENOSPC) closes the file, is reported once,
//! and the frames not written are counted (`not_written`); capture and
//! analysis go on, and a new file is tried a second later on the capture
//! clock (or at the next rotation), reported once more when writing works
//! again.
//!
//! The file of a period closes when its period ends even if the capture is
//! quiet then: the run loop's tick carries the capture clock here
//! ([`PcapRing::tick`]), so an hourly file can be shipped at the hour and
//! not only once the next frame arrives. The next file starts with the
//! next frame (a quiet period leaves no empty files behind).

mod encode;
mod policy;

use std::{
    collections::{HashMap, VecDeque},
    fs::File,
    io::Write as _,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
        mpsc::{Receiver, SyncSender, TrySendError},
    },
    thread::JoinHandle,
    time::Duration,
};

use encode::Encoder;
pub use encode::FileFormat;
pub use policy::{Naming, Rotation, parse_duration, parse_size};

use crate::{packet::Packet, time::Timestamp};

/// Frames queued between the capture reader and the writer thread.
const QUEUE_FRAMES: usize = 4096;

/// Encoded bytes held before a write (one `write` per batch or per this).
const WRITE_CHUNK: usize = 1 << 20;

/// After a write error, how long (capture clock) until a new file is tried
/// when no rotation comes sooner.
const RETRY: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PcapRingError {
    #[error("--write-pcap {path}: the directory does not exist; create it or name another")]
    NoDirectory { path: String },
    #[error(
        "--write-pcap {path}: cannot create the file ({source}); check the directory is writable"
    )]
    Create {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("--pcap-keep 0 would delete every file; keep at least 1")]
    KeepNone,
    #[error("starting the pcap writer thread: {0}")]
    Thread(#[source] std::io::Error),
}

/// What was written and what was not, for the exit counters and metrics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
pub struct PcapRingStats {
    /// Frames in the files.
    pub written: u64,
    /// Frames lost to write errors (full disk, I/O error).
    pub not_written: u64,
    /// Frames dropped because the writer fell behind the capture.
    pub queue_full: u64,
    /// Files started, and of those deleted to keep `--pcap-keep`.
    pub files: u64,
    pub files_deleted: u64,
    /// Write errors (each also closes its file).
    pub write_errors: u64,
}

#[derive(Default)]
struct Counters {
    written: AtomicU64,
    not_written: AtomicU64,
    queue_full: AtomicU64,
    files: AtomicU64,
    files_deleted: AtomicU64,
    write_errors: AtomicU64,
}

impl Counters {
    fn snapshot(&self) -> PcapRingStats {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        PcapRingStats {
            written: g(&self.written),
            not_written: g(&self.not_written),
            queue_full: g(&self.queue_full),
            files: g(&self.files),
            files_deleted: g(&self.files_deleted),
            write_errors: g(&self.write_errors),
        }
    }

    fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }
}

/// A shared view of a [`PcapRing`]'s counters.
#[derive(Clone)]
pub struct PcapRingCounters(Arc<Counters>);

impl PcapRingCounters {
    pub fn snapshot(&self) -> PcapRingStats {
        self.0.snapshot()
    }
}

/// Receives the one-line reports (write failed, writing again).
pub type Report = Box<dyn FnMut(&str) + Send>;

/// What the writer thread is handed.
enum Queued {
    Frame(Packet),
    /// The capture clock now: closes a file whose period is over.
    Tick(Timestamp),
}

/// The writer: [`PcapRing::submit`] from the capture reader, never blocking.
pub struct PcapRing {
    tx: SyncSender<Queued>,
    /// Files rotate by age: only then do ticks concern the writer.
    ages: bool,
    counters: Arc<Counters>,
    thread: JoinHandle<()>,
}

impl PcapRing {
    /// Checks the destination and starts the writer thread. `interfaces`
    /// maps ifindex → name for the pcapng interface blocks.
    pub fn start(
        path: &Path,
        rotation: Rotation,
        interfaces: HashMap<u32, String>,
        report: Report,
    ) -> Result<Self, PcapRingError> {
        if rotation.keep == Some(0) {
            return Err(PcapRingError::KeepNone);
        }
        let naming = Naming::new(path, rotation.rotates());
        let shown = path.display().to_string();
        let dir = if path.is_dir() {
            path
        } else {
            path.parent()
                .filter(|p| !p.as_os_str().is_empty())
                .unwrap_or(Path::new("."))
        };
        if !dir.is_dir() {
            return Err(PcapRingError::NoDirectory { path: shown });
        }
        // One named file: created now, so a bad path fails before capture.
        let first = match rotation.rotates() || path.is_dir() {
            true => None,
            false => Some(create(path).map_err(|source| PcapRingError::Create {
                path: shown,
                source,
            })?),
        };
        let counters = Arc::new(Counters::default());
        let ages = rotation.every.is_some();
        let (tx, rx) = std::sync::mpsc::sync_channel(QUEUE_FRAMES);
        let mut ring = Ring {
            naming,
            rotation,
            interfaces,
            current: None,
            precreated: first,
            seq: 0,
            files: VecDeque::new(),
            failing: None,
            counters: Arc::clone(&counters),
            report,
        };
        let thread = std::thread::Builder::new()
            .name("sipscope-pcap".into())
            .spawn(move || ring.run(rx))
            .map_err(PcapRingError::Thread)?;
        Ok(Self {
            tx,
            ages,
            counters,
            thread,
        })
    }

    /// Queues a frame for the file; a full queue drops it (counted).
    pub fn submit(&self, packet: Packet) {
        match self.tx.try_send(Queued::Frame(packet)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => Counters::add(&self.counters.queue_full, 1),
            Err(TrySendError::Disconnected(_)) => Counters::add(&self.counters.not_written, 1),
        }
    }

    /// The capture clock reads `now`: a file whose `--pcap-rotate-every`
    /// period is over is closed. Skipped when the queue is full (the
    /// frames queued then rotate it anyway). Without age rotation the
    /// writer thread is not woken.
    pub fn tick(&self, now: Timestamp) {
        if self.ages {
            let _ = self.tx.try_send(Queued::Tick(now));
        }
    }

    pub fn stats(&self) -> PcapRingStats {
        self.counters.snapshot()
    }

    /// The counters, readable from elsewhere (a metrics scrape) while the
    /// writer runs.
    pub fn counters(&self) -> PcapRingCounters {
        PcapRingCounters(Arc::clone(&self.counters))
    }

    /// Writes what is queued, closes the file and returns the counters.
    pub fn finish(self) -> PcapRingStats {
        drop(self.tx);
        let _ = self.thread.join();
        self.counters.snapshot()
    }
}

/// A capture file readable by its owner only: it holds SIP as captured,
/// digest responses included.
fn create(path: &Path) -> std::io::Result<File> {
    use std::os::unix::fs::OpenOptionsExt as _;
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

struct Current {
    path: PathBuf,
    file: File,
    enc: Encoder,
    opened: Timestamp,
    /// Bytes written to the file (excluding what is encoded, pending).
    bytes: u64,
    /// Frames encoded and not yet written.
    frames: u64,
    /// Capture time of the last frame encoded.
    last: Timestamp,
}

struct Failing {
    /// Frames not written since the error was reported.
    lost: u64,
    retry_at: Timestamp,
}

struct Ring {
    naming: Naming,
    rotation: Rotation,
    interfaces: HashMap<u32, String>,
    current: Option<Current>,
    /// The single named file, created before capture started.
    precreated: Option<File>,
    seq: u64,
    /// Files of this run, oldest first (for `keep`).
    files: VecDeque<PathBuf>,
    failing: Option<Failing>,
    counters: Arc<Counters>,
    report: Report,
}

impl Ring {
    fn run(&mut self, rx: Receiver<Queued>) {
        while let Ok(first) = rx.recv() {
            for queued in std::iter::once(first).chain(rx.try_iter()) {
                match queued {
                    Queued::Frame(packet) => self.push(&packet),
                    Queued::Tick(now) => self.close_if_over(now),
                }
            }
            self.write_pending();
        }
        self.write_pending();
    }

    /// Closes the current file if its period ended by `now` (age only:
    /// size grows only with frames, which check it themselves).
    fn close_if_over(&mut self, now: Timestamp) {
        let over = self.current.as_ref().is_some_and(|c| {
            self.rotation
                .every
                .is_some_and(|every| now.since(c.opened) >= every)
        });
        if over {
            self.write_pending();
            self.current = None;
        }
    }

    fn push(&mut self, packet: &Packet) {
        let due = self.current.as_mut().is_some_and(|c| {
            let bytes = c.bytes + c.enc.pending() as u64;
            self.rotation.due(bytes, c.opened, packet.ts)
        });
        if due {
            self.write_pending();
            self.current = None;
        }
        if self.current.is_none() && !self.open(packet.ts) {
            self.lose(1);
            return;
        }
        let Some(c) = self.current.as_mut() else {
            return;
        };
        c.enc.push(packet);
        c.frames += 1;
        c.last = packet.ts;
        if c.enc.pending() >= WRITE_CHUNK {
            self.write_pending();
        }
    }

    /// Starts the next file; false while failing and not yet time to retry,
    /// or when it cannot be created.
    fn open(&mut self, now: Timestamp) -> bool {
        if self.failing.as_ref().is_some_and(|f| now < f.retry_at) {
            return false;
        }
        self.seq += 1;
        let path = self.naming.file(self.seq, now);
        let file = match self.precreated.take() {
            Some(f) => Ok(f),
            None => create(&path),
        };
        let file = match file {
            Ok(f) => f,
            Err(e) => {
                self.failed(&path, &e, now);
                return false;
            }
        };
        Counters::add(&self.counters.files, 1);
        self.files.push_back(path.clone());
        if let Some(keep) = self.rotation.keep {
            while self.files.len() > keep {
                if let Some(old) = self.files.pop_front()
                    && std::fs::remove_file(&old).is_ok()
                {
                    Counters::add(&self.counters.files_deleted, 1);
                }
            }
        }
        self.current = Some(Current {
            path,
            file,
            enc: Encoder::new(self.naming.format, &self.interfaces),
            opened: now,
            bytes: 0,
            frames: 0,
            last: now,
        });
        true
    }

    fn write_pending(&mut self) {
        let Some(c) = self.current.as_mut() else {
            return;
        };
        let bytes = c.enc.take();
        if bytes.is_empty() {
            return;
        }
        let frames = std::mem::take(&mut c.frames);
        match c.file.write_all(&bytes) {
            Ok(()) => {
                c.bytes += bytes.len() as u64;
                Counters::add(&self.counters.written, frames);
                if let Some(f) = self.failing.take() {
                    (self.report)(&format!(
                        "pcap: writing again to {} ({} frames were not written)",
                        c.path.display(),
                        f.lost
                    ));
                }
            }
            Err(e) => {
                let Some(c) = self.current.take() else {
                    return;
                };
                // A file that never got a whole write holds no frame: gone,
                // so a long outage does not leave a trail of empty files.
                if c.bytes == 0 && std::fs::remove_file(&c.path).is_ok() {
                    self.files.retain(|p| p != &c.path);
                }
                self.failed(&c.path, &e, c.last);
                self.lose(frames);
            }
        }
    }

    /// Reports the first error of an outage; later ones are counted.
    fn failed(&mut self, path: &Path, err: &std::io::Error, now: Timestamp) {
        Counters::add(&self.counters.write_errors, 1);
        let retry = self.rotation.every.map_or(RETRY, |e| e.min(RETRY));
        match self.failing.as_mut() {
            Some(f) => f.retry_at = now + retry,
            None => {
                self.failing = Some(Failing {
                    lost: 0,
                    retry_at: now + retry,
                });
                (self.report)(&format!(
                    "pcap: cannot write {}: {err}; frames not written are counted \
                     (pcap not_written), capture and analysis go on, a new file is tried in {} s",
                    path.display(),
                    retry.as_secs()
                ));
            }
        }
    }

    fn lose(&mut self, frames: u64) {
        Counters::add(&self.counters.not_written, frames);
        if let Some(f) = self.failing.as_mut() {
            f.lost += frames;
        }
    }
}

#[cfg(test)]
mod tests;
