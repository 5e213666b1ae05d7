//! Cost of the TLS plaintext probes per `SSL_write`, as the calling
//! process pays it (a uprobe traps into the kernel in the caller's
//! thread): CPU time per `SSL_write_ex` of a 548-byte SIP REGISTER in a
//! Python `ssl` loop over memory BIOs (benches/tls_driver.py, linked to
//! the system's OpenSSL), in the same run:
//!
//! - `no probes`: nothing attached;
//! - `not probed`: the probes are on the library (another process is
//!   probed) but this process is filtered out in the kernel;
//! - `probed`: this process is probed, every call is copied to the ring,
//!   which the bench drains meanwhile as the agent does.
//!
//! Run as root: `cargo xtask bench tls` (= `cargo bench -p sipscope --bench tls`).

use std::io::{BufRead as _, BufReader, Write as _};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Duration;

use sipscope::capture::live::{LiveCapture, LiveConfig, TlsMode};
use sipscope_common::names;

const ROUNDS: usize = 5;
const CALLS: u64 = 20_000;

struct Driver {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Driver {
    fn start(cert: &str, key: &str) -> Self {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/tls_driver.py");
        let mut child = Command::new("python3")
            .args([script, cert, key])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("python3 (cargo xtask setup installs it)");
        let stdin = child.stdin.take().unwrap();
        let mut stdout = BufReader::new(child.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert!(line.starts_with("ready"), "driver: {line}");
        Self {
            child,
            stdin,
            stdout,
        }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// CPU ns per call of one run of `CALLS` writes.
    fn run(&mut self) -> u64 {
        writeln!(self.stdin, "run {CALLS}").unwrap();
        let mut line = String::new();
        self.stdout.read_line(&mut line).unwrap();
        line.strip_prefix("ns_per_call ")
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("driver: {line}"))
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    // SAFETY: geteuid has no preconditions.
    let euid = unsafe { libc::geteuid() };
    assert_eq!(euid, 0, "run as root: cargo xtask bench tls");
    let dir = std::env::temp_dir().join(format!("sipscope-bench-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (cert, key) = (dir.join("cert.pem"), dir.join("key.pem"));
    let ok = Command::new("openssl")
        .args([
            "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
        ])
        .args(["-subj", "/CN=bench", "-keyout"])
        .arg(&key)
        .arg("-out")
        .arg(&cert)
        .stderr(Stdio::null())
        .status()
        .expect("openssl")
        .success();
    assert!(ok, "openssl req failed");
    let (cert, key) = (cert.to_str().unwrap(), key.to_str().unwrap());
    let mut probed = Driver::start(cert, key);
    let mut other = Driver::start(cert, key);
    // Keep the fd: the kernel accounts program run time while it is open.
    let _stats = aya::sys::enable_stats(aya::sys::Stats::RunTime).expect("BPF_ENABLE_STATS");
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let _enter = runtime.enter();

    let (mut none, mut filtered, mut copied) = (Vec::new(), Vec::new(), Vec::new());
    let mut messages = 0usize;
    // The probes' own run time per SSL_write (entry + return programs).
    let mut programs = Vec::new();
    // The host-wide sys_enter program: (run time, runs) over the rounds.
    let mut sys_enter = (0u128, 0u64);
    for _ in 0..ROUNDS {
        none.push(probed.run());
        none.push(other.run());
        let config = LiveConfig {
            trace_drops: false,
            tls: TlsMode::Pids(vec![probed.pid()]),
            ..LiveConfig::default()
        };
        let mut capture = LiveCapture::start(&config).expect("live capture");
        let lines = capture.tls_rescan();
        assert!(
            lines.iter().any(|l| l.contains("tls: probing")),
            "the driver was not probed: {lines:?}"
        );
        filtered.push(other.run());
        // The agent drains the ring while the PBX writes.
        let (mut frames, mut drops, mut plaintext) = (Vec::new(), Vec::new(), Vec::new());
        std::thread::scope(|s| {
            let run = s.spawn(|| probed.run());
            while !run.is_finished() {
                capture.drain_now(&mut frames, &mut drops);
                capture.take_plaintext(&mut plaintext);
                std::thread::sleep(Duration::from_millis(1));
            }
            copied.push(run.join().unwrap());
        });
        let stats = capture.program_stats().unwrap();
        for p in stats.iter().filter(|p| p.name == names::TLS_SYS_ENTER) {
            sys_enter.0 += p.run_time.as_nanos();
            sys_enter.1 += p.run_count;
        }
        let ran: u128 = stats
            .iter()
            .filter(|p| p.name == names::TLS_ENTRY_EX || p.name == names::TLS_WRITE_RET)
            .map(|p| p.run_time.as_nanos())
            .sum();
        programs.push((ran / u128::from(CALLS)) as u64);
        let counters = capture.tls().unwrap().counters().unwrap();
        messages += counters.get(sipscope_common::TlsCounter::Copied) as usize;
        assert!(
            counters.get(sipscope_common::TlsCounter::Copied) >= CALLS / 2,
            "the probe copied too little: {counters}"
        );
        capture.stop();
    }
    let (none, filtered, copied) = (median(none), median(filtered), median(copied));
    println!(
        "SSL_write_ex of a SIP REGISTER, CPU time of the caller (median of {ROUNDS} rounds x {CALLS} calls)"
    );
    println!("  no probes:   {none:>6} ns/call");
    println!(
        "  not probed:  {filtered:>6} ns/call  ({:.2}x, +{} ns: another process of the same libssl is probed)",
        filtered as f64 / none as f64,
        filtered.saturating_sub(none)
    );
    println!(
        "  probed:      {copied:>6} ns/call  ({:.2}x, +{} ns: entry+return probes, copy to the ring)",
        copied as f64 / none as f64,
        copied.saturating_sub(none)
    );
    println!(
        "  of which the probes' programs: {} ns/call (kernel run time; the rest is the traps)",
        median(programs)
    );
    println!("  records copied in all probed runs: {messages}");
    println!(
        "sys_enter tracepoint (every syscall on the host while a process is probed): \
         {} ns per run over {} runs (program run time)",
        sys_enter.0 / u128::from(sys_enter.1.max(1)),
        sys_enter.1
    );
    let _ = std::fs::remove_dir_all(&dir);
}
