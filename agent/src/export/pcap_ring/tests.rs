//! The files as Wireshark's own reader (tshark) sees them.

use std::{
    collections::HashMap,
    path::Path,
    process::Command,
    sync::{Arc, Mutex},
};

use super::*;
use crate::packet::{Direction, LinkType};

const T0: u64 = 1_796_452_215_123_456_789;

fn frame(i: u64, ifindex: u32, direction: Direction) -> Packet {
    let mut data = Vec::new();
    etherparse::PacketBuilder::ethernet2([2; 6], [4; 6])
        .ipv4([10, 0, 0, 2], [10, 0, 0, 1], 64)
        .udp(5062, 5060)
        .write(
            &mut data,
            format!("OPTIONS sip:{i}@x SIP/2.0\r\n\r\n").as_bytes(),
        )
        .unwrap();
    Packet {
        ts: Timestamp::from_nanos(T0 + i * 1_000_000_000),
        ifindex,
        direction,
        link: LinkType::Ethernet,
        orig_len: data.len() as u32,
        data,
    }
}

fn names() -> HashMap<u32, String> {
    HashMap::from([(2, "veth-a".to_string()), (5, "veth-b".to_string())])
}

fn reports() -> (Report, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s = Arc::clone(&seen);
    (
        Box::new(move |l: &str| s.lock().unwrap().push(l.to_owned())),
        seen,
    )
}

/// `tshark -r FILE -T fields -e ...`, one Vec per frame.
fn tshark(file: &Path, fields: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new("tshark");
    cmd.arg("-r")
        .arg(file)
        .args(["-T", "fields", "-E", "separator=|"]);
    for f in fields {
        cmd.args(["-e", f]);
    }
    let out = cmd
        .output()
        .expect("tshark (installed by cargo xtask setup)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

fn sorted_files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    v.sort();
    v
}

#[test]
fn pcapng_names_each_interface_and_marks_direction_with_ns_times() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("one.pcapng");
    let (report, seen) = reports();
    let ring = PcapRing::start(&path, Rotation::default(), names(), report).unwrap();
    ring.submit(frame(0, 2, Direction::Ingress));
    ring.submit(frame(1, 5, Direction::Egress));
    // An interface not named at start still gets its own block.
    ring.submit(frame(2, 9, Direction::Ingress));
    let stats = ring.finish();
    assert_eq!((stats.written, stats.files, stats.not_written), (3, 1, 0));
    let rows = tshark(
        &path,
        &[
            "frame.interface_name",
            "frame.packet_flags_direction",
            "frame.time_epoch",
        ],
    );
    let names: Vec<&str> = rows.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(names, ["veth-a", "veth-b", "ifindex 9"]);
    let dirs: Vec<&str> = rows.iter().map(|r| r[1].as_str()).collect();
    // inbound 01, outbound 10 (epb_flags bits 0-1).
    assert_eq!(dirs, ["0x00000001", "0x00000002", "0x00000001"]);
    assert!(
        rows[0][2].starts_with("1796452215.123456789"),
        "{:?}",
        rows[0]
    );
    assert!(seen.lock().unwrap().is_empty());
    // SIP with digest responses: for its owner only.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(&path).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    // Our own reader takes it back too (the same file `analyze` reads).
    let back: Vec<Packet> = crate::capture::file::CaptureFile::open(&path)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(back.len(), 3);
    assert_eq!(back[1].ts.as_nanos(), T0 + 1_000_000_000);
}

#[test]
fn a_pcap_name_writes_classic_pcap() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.pcap");
    let (report, _) = reports();
    let ring = PcapRing::start(&path, Rotation::default(), names(), report).unwrap();
    ring.submit(frame(0, 2, Direction::Ingress));
    ring.submit(frame(1, 2, Direction::Egress));
    assert_eq!(ring.finish().written, 2);
    let rows = tshark(&path, &["frame.time_epoch", "sip.Method"]);
    assert_eq!(rows.len(), 2);
    assert!(
        rows[1][0].starts_with("1796452216.123456789"),
        "{:?}",
        rows[1]
    );
    assert_eq!(rows[1][1], "OPTIONS");
    let magic = std::fs::read(&path).unwrap()[..4].to_vec();
    assert_eq!(u32::from_ne_bytes(magic.try_into().unwrap()), 0xa1b2_3c4d);
}

#[test]
fn rotation_by_size_keeps_the_newest_files_and_every_frame_is_counted() {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        size: Some(1_000),
        every: None,
        keep: Some(3),
    };
    let (report, _) = reports();
    let ring = PcapRing::start(dir.path(), rotation, names(), report).unwrap();
    for i in 0..40 {
        ring.submit(frame(i, 2, Direction::Ingress));
    }
    let stats = ring.finish();
    assert_eq!(stats.written, 40);
    let files = sorted_files(dir.path());
    assert_eq!(files.len(), 3, "{files:?}");
    assert_eq!(stats.files_deleted, stats.files - 3);
    // The newest files, numbered in sequence, the last one last.
    let last = format!("sipscope_{:05}_", stats.files);
    assert!(files[2].to_string_lossy().contains(&last), "{files:?}");
    // Each file is whole and the frames in the kept files are the last ones.
    let kept: Vec<String> = files
        .iter()
        .flat_map(|f| tshark(f, &["sip.Request-Line"]))
        .map(|r| {
            r[0].trim_start_matches("OPTIONS sip:")
                .split('@')
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    let expect: Vec<String> = (40 - kept.len() as u64..40)
        .map(|i| i.to_string())
        .collect();
    assert_eq!(kept, expect);
}

/// A ring in a fresh directory that starts a file every 10 s of capture
/// time.
fn ring_every_10s() -> (tempfile::TempDir, PcapRing) {
    let dir = tempfile::tempdir().unwrap();
    let rotation = Rotation {
        size: None,
        every: Some(Duration::from_secs(10)),
        keep: None,
    };
    let (report, _) = reports();
    let ring = PcapRing::start(&dir.path().join("sip.pcapng"), rotation, names(), report).unwrap();
    (dir, ring)
}

#[test]
fn rotation_by_age_starts_a_file_per_period_of_capture_time() {
    let (dir, ring) = ring_every_10s();
    // One frame a second for 25 s: files at 0, 10 and 20 s.
    for i in 0..25 {
        ring.submit(frame(i, 2, Direction::Ingress));
    }
    assert_eq!(ring.finish().files, 3);
    let files = sorted_files(dir.path());
    let counts: Vec<usize> = files
        .iter()
        .map(|f| tshark(f, &["frame.number"]).len())
        .collect();
    assert_eq!(counts, [10, 10, 5]);
    assert!(
        files[1].file_name().unwrap().to_string_lossy() == "sip_00002_20261205063025.pcapng",
        "{files:?}"
    );
}

#[test]
fn bad_destinations_are_refused_before_capture() {
    let (report, _) = reports();
    let err = PcapRing::start(
        Path::new("/nonexistent-dir/x.pcapng"),
        Rotation::default(),
        names(),
        report,
    )
    .err()
    .unwrap();
    assert_eq!(
        err.to_string(),
        "--write-pcap /nonexistent-dir/x.pcapng: the directory does not exist; create it or name another"
    );
    let (report, _) = reports();
    let keep_none = Rotation {
        keep: Some(0),
        ..Rotation::default()
    };
    let err = PcapRing::start(Path::new("/tmp"), keep_none, names(), report)
        .err()
        .unwrap();
    assert!(err.to_string().contains("keep at least 1"), "{err}");
}

#[test]
fn a_stalled_disk_never_makes_the_capture_reader_wait_and_drops_are_counted() {
    // A FIFO whose reader does not read: the writer thread blocks in
    // write(2) once the pipe is full, as on a hung disk.
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("stalled.pcapng");
    let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path.
    assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o600) }, 0);
    let (opened, release) = (
        std::sync::mpsc::channel::<()>(),
        std::sync::mpsc::channel::<()>(),
    );
    let reader_path = fifo.clone();
    let reader = std::thread::spawn(move || {
        use std::io::Read as _;
        let mut f = std::fs::File::open(reader_path).unwrap();
        opened.0.send(()).unwrap();
        release.1.recv().unwrap();
        let mut sink = Vec::new();
        f.read_to_end(&mut sink).unwrap();
        sink.len()
    });
    let (report, _) = reports();
    let ring = PcapRing::start(&fifo, Rotation::default(), names(), report).unwrap();
    opened.1.recv().unwrap();
    const FRAMES: u64 = 50_000;
    for i in 0..FRAMES {
        // Returns at once whatever the writer is doing.
        ring.submit(frame(i, 2, Direction::Ingress));
    }
    let stalled = ring.stats();
    assert!(stalled.queue_full > 0, "{stalled:?}");
    release.0.send(()).unwrap();
    let stats = ring.finish();
    let bytes = reader.join().unwrap();
    assert_eq!(stats.written + stats.queue_full, FRAMES, "{stats:?}");
    assert_eq!(stats.not_written, 0);
    assert!(bytes > 0);
}

/// Polls `done` until it holds; fails the test after `limit`.
fn wait_until(limit: Duration, what: &str, done: impl Fn() -> bool) {
    let deadline = std::time::Instant::now() + limit;
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out: {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Whether this process holds `path` open (its /proc/self/fd links).
fn is_open(path: &Path) -> bool {
    let path = path.canonicalize().unwrap();
    std::fs::read_dir("/proc/self/fd")
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .any(|target| target == path)
}

#[test]
fn a_quiet_capture_closes_the_file_when_its_period_ends() {
    let (dir, ring) = ring_every_10s();
    ring.submit(frame(0, 2, Direction::Ingress));
    // Ticks within the period leave the file open.
    ring.tick(Timestamp::from_nanos(T0 + 9_000_000_000));
    wait_until(Duration::from_secs(10), "frame written", || {
        ring.stats().written == 1
    });
    let file = sorted_files(dir.path()).remove(0);
    assert!(is_open(&file), "the period is not over yet");
    // No frame comes; the tick at the period's end closes the file.
    ring.tick(Timestamp::from_nanos(T0 + 10_000_000_000));
    wait_until(Duration::from_secs(10), "file closed", || !is_open(&file));
    assert_eq!(tshark(&file, &["frame.number"]).len(), 1);
    // The next frame starts the next file; the quiet period left none.
    ring.submit(frame(30, 2, Direction::Ingress));
    let stats = ring.finish();
    assert_eq!((stats.files, stats.written), (2, 2));
    assert_eq!(sorted_files(dir.path()).len(), 2);
}
