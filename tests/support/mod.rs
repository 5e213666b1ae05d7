//! Reusable harness for kernel and scenario tests: network namespaces
//! joined by a veth pair, processes spawned inside them, deadline-bounded
//! waits, and pcap reading for comparisons against dumpcap.
//!
//! Everything cleans up in `Drop` (also when an assertion fails), and every
//! name includes the pid and a counter so tests can run in parallel.
#![allow(dead_code)] // each test binary uses a different subset

pub mod flood;
pub mod http;
pub mod netns;
pub mod nft;
pub mod otlp_counter;
pub mod pcap;
pub mod process;
pub mod rtp;
pub mod sipp;

use std::time::{Duration, Instant};

/// The number in environment variable `name`, or `default` when it is
/// unset or not a number (benchmark and load-test sizes).
pub fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Polls `cond` until it returns `Some`, or panics with `what` after
/// `timeout` (times [`time_scale`]). Polling (not sleeping a fixed time)
/// keeps tests fast and deterministic.
pub fn wait_for<T>(timeout: Duration, what: &str, mut cond: impl FnMut() -> Option<T>) -> T {
    let timeout = timeout * time_scale();
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How much longer every deadline is: `SIPSCOPE_TEST_TIME_SCALE` (a
/// whole number, default 1). The kernel matrix sets it: its guests run
/// under software emulation, many times slower than the host.
pub fn time_scale() -> u32 {
    std::env::var("SIPSCOPE_TEST_TIME_SCALE")
        .ok()
        .and_then(|v| v.parse().ok())
        .filter(|&n| n >= 1)
        .unwrap_or(1)
}

/// A unique name fragment: pid and a per-process counter, short enough for
/// interface names (15 bytes) with a 3-byte prefix.
pub fn unique_suffix() -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("{}x{n}", std::process::id() % 10_000_000)
}

/// A scratch directory removed on drop unless the test is failing (then it
/// is kept and its path printed, for the logs and captures inside).
pub struct TempDir {
    pub path: std::path::PathBuf,
}

impl TempDir {
    pub fn new(label: &str) -> Self {
        let path = std::env::temp_dir().join(format!("sipscope-{label}-{}", unique_suffix()));
        std::fs::create_dir_all(&path).expect("creating temp dir");
        Self { path }
    }

    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.path.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("keeping {} for inspection", self.path.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

/// `<workspace>/tests/fixtures/<rel>`.
pub fn fixture(rel: &str) -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../tests/fixtures")
        .join(rel)
}
