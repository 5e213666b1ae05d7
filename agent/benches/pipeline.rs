//! The offline path against tshark, in one run (issue 14, goals 1 and 5):
//! the commands a user runs on a capture — `sipscope analyze`, `analyze
//! --json` and `analyze --otlp-endpoint` to a local OTLP/gRPC receiver —
//! timed (wall clock, output discarded) and their peak RSS read, against
//! `tshark -r F -Y sip -T fields -e sip.Call-ID` on the same file; and the
//! same traffic mix at two sizes, 10x apart, to show that memory depends
//! on how much is in flight at once, not on the length of the capture.
//! The library alone (file read, decode, parse, transactions, analyses; no
//! output) is measured first, for reference.
//!
//! `cargo xtask bench pipeline` (or `cargo bench -p sipscope --bench
//! pipeline`). Environment:
//! - `SIPSCOPE_BENCH_MESSAGES`: messages of the large capture (default
//!   2,000,000); the small one has a tenth. 200,000 gives a quick run,
//!   whose ratios are smaller: tshark reads 20,000 messages in under 2 s,
//!   and sipscope's fixed costs (runtime, tables, buffers) weigh more.
//! - `SIPSCOPE_BENCH_TSHARK_FULL=1`: tshark on the large capture too. Its
//!   time grows faster than the file (its SIP state tables): tshark runs on
//!   the small capture only by default, and every ratio printed says which
//!   files it compares.
//! - `SIPSCOPE_BENCH_CASES=console,json,otlp,media`: the analyze commands
//!   to run; `media` is the RTP-heavy capture below.
//! - `SIPSCOPE_BENCH_MEDIA_CALLS` (default 100): calls of the RTP-heavy
//!   capture, 60 s of G.711 each way (100 calls: 600,300 packets), as a
//!   PBX's `tcpdump -w` holds it. `sipscope analyze` on it is compared with
//!   what a user runs for RTP, `tshark -q -z rtp,streams`.
//!
//! Each measurement runs in a child process so its peak RSS (getrusage
//! maxrss of the child) is its own. The captures are generated once per
//! size into the target directory and reused.

#[path = "pipeline/media_capture.rs"]
mod media_capture;
#[path = "../../tests/support/mod.rs"]
mod support;

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use sipscope::capture::file::CaptureFile;
use sipscope::pipeline::{Pipeline, PipelineConfig};
use support::{env_u64, otlp_counter::CountingReceiver};

const CHILD_ENV: &str = "SIPSCOPE_BENCH_CHILD";
/// Bump when the generated traffic changes, so old captures are not reused.
const GENERATOR_VERSION: u32 = 2;
/// Flatness target: peak RSS on the large capture over the small one.
const FLAT: f64 = 1.2;
/// Peak RSS target as a share of tshark's, and speed target.
const RSS_SHARE: f64 = 0.2;
const SPEEDUP: f64 = 10.0;

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(Path::new(&path));
        return;
    }
    let large_n = env_u64("SIPSCOPE_BENCH_MESSAGES", 2_000_000) as usize;
    let sizes = [large_n / 10, large_n];
    let dir = target_dir();
    std::fs::create_dir_all(&dir).expect("create target dir");
    let files = sizes.map(|n| capture(&dir, n));

    // The library alone.
    let lib = files.clone().map(|f| run_child(&f));
    for r in &lib {
        println!(
            "pipeline alone: {:>9} messages in {:>6.2} s = {:>9.0} msg/s, peak RSS {:>6.1} MB, transactions {} (completed {}, in flight at end {})",
            r.messages,
            r.secs,
            r.messages as f64 / r.secs,
            mb(r.maxrss_kb),
            r.created,
            r.completed,
            r.in_flight
        );
    }
    println!(
        "pipeline alone: peak RSS {:.2}x from {} to {} messages",
        lib[1].maxrss_kb as f64 / lib[0].maxrss_kb.max(1) as f64,
        lib[0].messages,
        lib[1].messages
    );

    // The baseline: tshark on the small capture (and the large one if asked).
    let full = std::env::var_os("SIPSCOPE_BENCH_TSHARK_FULL").is_some();
    let mut tshark_runs: [Option<Measured>; 2] = [None, None];
    for (i, f) in files.iter().enumerate() {
        if i == 1 && !full {
            break;
        }
        match tshark(f) {
            Some(m) => {
                println!(
                    "tshark -r {} -Y sip -T fields -e sip.Call-ID: {:.2} s, peak RSS {:.1} MB",
                    name(f),
                    m.secs,
                    mb(m.rss_kb)
                );
                tshark_runs[i] = Some(m);
            }
            None => println!("tshark not found: baseline skipped (apt-get install tshark)"),
        }
    }
    let Some(base) = tshark_runs[0] else { return };

    // What a user runs, on both sizes, against that tshark run.
    let receiver = CountingReceiver::default();
    let endpoint = receiver
        .serve(std::net::TcpListener::bind("127.0.0.1:0").expect("binding the OTLP receiver"));
    let cases =
        std::env::var("SIPSCOPE_BENCH_CASES").unwrap_or_else(|_| "console,json,otlp,media".into());
    for case in cases.split(',') {
        let (label, extra): (&str, Vec<&str>) = match case.trim() {
            "media" => {
                media(&dir);
                continue;
            }
            "console" => ("sipscope analyze F", vec![]),
            "json" => ("sipscope analyze --json F", vec!["--json"]),
            "otlp" => (
                "sipscope analyze --otlp-endpoint URL F",
                vec!["--otlp-endpoint", &endpoint],
            ),
            other => {
                panic!("SIPSCOPE_BENCH_CASES: unknown case `{other}` (console, json, otlp, media)")
            }
        };
        receiver.take();
        let runs = files.clone().map(|f| {
            let m = analyze(&f, &extra);
            (m, receiver.take())
        });
        for (i, ((m, spans), f)) in runs.iter().zip(&files).enumerate() {
            let vs = tshark_runs[i].unwrap_or(base);
            // Without tshark on this file: against its rate on the small one.
            let scale = if tshark_runs[i].is_some() {
                1.0
            } else {
                lib[i].messages as f64 / lib[0].messages as f64
            };
            let speedup = vs.secs / m.secs * scale;
            println!(
                "{label} > /dev/null on {}: {:.2} s, {:.1}x tshark{} (target >= {SPEEDUP}x{}), peak RSS {:.1} MB = {:.2} of tshark's on {} (target <= {RSS_SHARE}{}){}",
                name(f),
                m.secs,
                speedup,
                if tshark_runs[i].is_some() {
                    String::new()
                } else {
                    format!(" (its rate on {})", name(&files[0]))
                },
                if speedup >= SPEEDUP { "" } else { ", missed" },
                mb(m.rss_kb),
                m.rss_kb as f64 / vs.rss_kb.max(1) as f64,
                name(if tshark_runs[i].is_some() {
                    f
                } else {
                    &files[0]
                }),
                if m.rss_kb as f64 <= RSS_SHARE * vs.rss_kb as f64 {
                    ""
                } else {
                    ", missed"
                },
                if case.trim() == "otlp" {
                    format!(", {spans} spans received")
                } else {
                    String::new()
                },
            );
        }
        let flat = runs[1].0.rss_kb as f64 / runs[0].0.rss_kb.max(1) as f64;
        println!(
            "{label}: peak RSS {flat:.2}x from {} to {} messages (target <= {FLAT}{})",
            lib[0].messages,
            lib[1].messages,
            if flat <= FLAT { "" } else { ", missed" }
        );
    }
}

/// The RTP-heavy capture: `sipscope analyze F` against `tshark -q -z
/// rtp,streams F`, after checking that analyze accounted every RTP packet
/// (so the time is not that of a path that skipped them).
fn media(dir: &Path) {
    const SECS: u32 = 60;
    let calls = env_u64("SIPSCOPE_BENCH_MEDIA_CALLS", 100) as u32;
    let path = dir.join(format!(
        "bench-media-v{GENERATOR_VERSION}-{calls}x{SECS}.pcap"
    ));
    let rtp = u64::from(calls) * u64::from(SECS) * 50 * 2;
    if !path.exists() {
        let partial = path.with_extension("partial");
        let written = media_capture::generate(&partial, calls, SECS);
        assert_eq!(written.rtp, rtp);
        std::fs::rename(&partial, &path).expect("rename generated capture");
    }
    let out = Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .arg("analyze")
        .arg(&path)
        .output()
        .expect("sipscope analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let accounted = format!("in the capture {rtp} ");
    assert!(
        text.lines()
            .any(|l| l.trim_start().starts_with("RTP") && l.contains(&accounted)),
        "sipscope analyze {} did not account all {rtp} RTP packets",
        path.display()
    );
    let m = analyze(&path, &[]);
    let mut cmd = Command::new("tshark");
    cmd.args(["-q", "-z", "rtp,streams", "-r"]).arg(&path);
    let packets = rtp + 3 * u64::from(calls);
    println!(
        "capture {}: {calls} calls, {packets} packets ({rtp} RTP), {:.1} MB",
        name(&path),
        std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1e6)
    );
    let Some(t) = timed(cmd) else {
        println!("tshark not found: baseline skipped (apt-get install tshark)");
        return;
    };
    println!(
        "tshark -q -z rtp,streams -r {}: {:.2} s, peak RSS {:.1} MB",
        name(&path),
        t.secs,
        mb(t.rss_kb)
    );
    println!(
        "sipscope analyze F > /dev/null on {}: {:.2} s = {:.0} packets/s, {:.1}x tshark's RTP streams, peak RSS {:.1} MB = {:.2} of tshark's",
        name(&path),
        m.secs,
        packets as f64 / m.secs,
        t.secs / m.secs,
        mb(m.rss_kb),
        m.rss_kb as f64 / t.rss_kb.max(1) as f64
    );
}

fn mb(kb: i64) -> f64 {
    kb as f64 / 1024.0
}

fn name(path: &Path) -> String {
    path.file_name()
        .unwrap_or_default()
        .to_string_lossy()
        .into_owned()
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

/// The generated capture of `n` messages, written unless already there.
fn capture(dir: &Path, n: usize) -> PathBuf {
    let path = dir.join(format!("bench-pipeline-v{GENERATOR_VERSION}-{n}.pcap"));
    if !path.exists() {
        let t = Instant::now();
        let partial = path.with_extension("partial");
        let written = generate(&partial, n);
        std::fs::rename(&partial, &path).expect("rename generated capture");
        println!(
            "generated {} ({written} messages) in {:.1} s",
            path.display(),
            t.elapsed().as_secs_f64()
        );
    }
    println!(
        "capture {}: {:.1} MB",
        name(&path),
        std::fs::metadata(&path).map_or(0.0, |m| m.len() as f64 / 1e6)
    );
    path
}

struct RunResult {
    messages: u64,
    secs: f64,
    maxrss_kb: i64,
    created: u64,
    completed: u64,
    in_flight: u64,
}

fn run_child(path: &Path) -> RunResult {
    let out = Command::new(std::env::current_exe().expect("own path"))
        .env(CHILD_ENV, path)
        .output()
        .expect("run measurement child");
    assert!(
        out.status.success(),
        "child failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let v: Vec<&str> = text.split_whitespace().collect();
    RunResult {
        messages: v[0].parse().unwrap(),
        secs: v[1].parse().unwrap(),
        maxrss_kb: v[2].parse().unwrap(),
        created: v[3].parse().unwrap(),
        completed: v[4].parse().unwrap(),
        in_flight: v[5].parse().unwrap(),
    }
}

/// The measured work: read the file and run every packet through the
/// pipeline, dropping the events (what `analyze --json` does minus output).
fn child(path: &Path) {
    let t = Instant::now();
    let mut config = PipelineConfig::default();
    // As `analyze` has it: a file holds no kernel drops.
    config.reachability.sees_local_drops = false;
    let mut pipeline = Pipeline::new(config);
    let mut events = Vec::with_capacity(16);
    for pkt in CaptureFile::open(path).expect("open generated capture") {
        pipeline.ingest_into(&pkt.expect("generated capture is whole"), &mut events);
        events.clear();
    }
    let in_flight = pipeline.in_flight().0;
    pipeline.finish();
    let secs = t.elapsed().as_secs_f64();
    let stats = pipeline.stats();
    println!(
        "{} {} {} {} {} {}",
        stats.sip.messages,
        secs,
        maxrss_kb(),
        stats.transactions.created,
        stats.transactions.completed,
        in_flight
    );
}

fn maxrss_kb() -> i64 {
    // SAFETY: getrusage writes into the zeroed struct we pass.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss
}

/// Wall time and the child's own peak RSS of one command.
#[derive(Clone, Copy)]
struct Measured {
    secs: f64,
    rss_kb: i64,
}

fn tshark(path: &Path) -> Option<Measured> {
    Command::new("tshark").arg("-v").output().ok()?;
    let args = ["-Y", "sip", "-T", "fields", "-e", "sip.Call-ID"];
    let mut tshark = Command::new("tshark");
    tshark.arg("-r").arg(path).args(args);
    timed(tshark)
}

/// `sipscope analyze [extra] FILE > /dev/null`, the command a user runs.
fn analyze(path: &Path, extra: &[&str]) -> Measured {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_sipscope"));
    cmd.arg("analyze").args(extra).arg(path);
    timed(cmd).unwrap_or_else(|| panic!("sipscope analyze {extra:?} {} failed", path.display()))
}

/// Runs `cmd` with its output discarded; wall seconds and the child's own
/// peak RSS in KiB (wait4), or None if it failed.
fn timed(mut cmd: Command) -> Option<Measured> {
    let t = Instant::now();
    let child = cmd
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let mut status = 0;
    // SAFETY: getrusage-style struct, zeroed and written by wait4.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: reaps our own child; both out-pointers are valid.
    let rc = unsafe { libc::wait4(child.id() as i32, &mut status, 0, &mut ru) };
    let secs = t.elapsed().as_secs_f64();
    (rc > 0 && libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0).then_some(Measured {
        secs,
        rss_kb: ru.ru_maxrss,
    })
}

// ---- traffic generator ---------------------------------------------------

const UA: ([u8; 4], u16) = ([192, 168, 10, 20], 5060);
const PBX: ([u8; 4], u16) = ([10, 0, 0, 5], 5060);

struct Gen {
    w: PcapWriter<BufWriter<File>>,
    ts: Duration,
    n: usize,
    frame: Vec<u8>,
}

impl Gen {
    fn send(&mut self, from: ([u8; 4], u16), to: ([u8; 4], u16), msg: &str) {
        self.frame.clear();
        PacketBuilder::ethernet2([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2])
            .ipv4(from.0, to.0, 64)
            .udp(from.1, to.1)
            .write(&mut self.frame, msg.as_bytes())
            .expect("build frame");
        let len = self.frame.len() as u32;
        self.w
            .write_packet(&PcapPacket::new(self.ts, len, &self.frame))
            .expect("write packet");
        // 1000 messages per second of capture time: a busy PBX. The packet
        // clock drives expiry, so the live tables reach a steady state.
        self.ts += Duration::from_millis(1);
        self.n += 1;
    }
}

fn headers(
    method: &str,
    cseq: u32,
    call: &str,
    branch: &str,
    from_tag: &str,
    to_tag: Option<&str>,
) -> String {
    let to_tag = to_tag.map(|t| format!(";tag={t}")).unwrap_or_default();
    format!(
        "Via: SIP/2.0/UDP 192.168.10.20:5060;branch={branch};rport\r\n\
         From: \"Alice\" <sip:2001@pbx.example.com>;tag={from_tag}\r\n\
         To: <sip:2001@pbx.example.com>{to_tag}\r\n\
         Call-ID: {call}\r\n\
         CSeq: {cseq} {method}\r\n\
         Max-Forwards: 70\r\n\
         User-Agent: Yealink SIP-T46S 66.86.0.15\r\n\
         Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, NOTIFY, REFER, UPDATE\r\n\
         Supported: replaces, timer\r\n"
    )
}

const SDP: &str = "v=0\r\no=- 20518 0 IN IP4 192.168.10.20\r\ns=SDP data\r\nc=IN IP4 192.168.10.20\r\nt=0 0\r\n\
m=audio 11780 RTP/AVP 0 8 18 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:18 G729/8000\r\n\
a=fmtp:18 annexb=no\r\na=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";

fn request(method: &str, uri: &str, h: &str, body: &str) -> String {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "{method} {uri} SIP/2.0\r\n{h}Contact: <sip:2001@192.168.10.20:5060>\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

fn response(status: &str, h: &str, extra: &str, body: &str) -> String {
    let ct = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/sdp\r\n"
    };
    format!(
        "SIP/2.0 {status}\r\n{h}{extra}Server: Asterisk PBX 20.5.0\r\n{ct}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// Write a capture of at least `n` messages cycling through registration,
/// call and keep-alive exchanges; returns the number written.
fn generate(path: &Path, n: usize) -> usize {
    let file = BufWriter::with_capacity(1 << 20, File::create(path).expect("create capture"));
    let header = PcapHeader {
        ts_resolution: pcap_file::TsResolution::NanoSecond,
        ..PcapHeader::default()
    };
    let mut g = Gen {
        w: PcapWriter::with_header(file, header).expect("pcap header"),
        ts: Duration::from_secs(1_700_000_000),
        n: 0,
        frame: Vec::with_capacity(2048),
    };
    let mut i = 0u64;
    while g.n < n {
        i += 1;
        let call = format!("{i:016x}-4c1d@192.168.10.20");
        let tag = format!("ft{i}");
        let b = |k: u32| format!("z9hG4bK{i:x}.{k}");
        match i % 3 {
            0 => {
                // REGISTER → 401 → REGISTER with credentials → 200
                let reg = "sip:pbx.example.com";
                let h1 = headers("REGISTER", 1, &call, &b(1), &tag, None);
                g.send(
                    UA,
                    PBX,
                    &request("REGISTER", reg, &format!("{h1}Expires: 3600\r\n"), ""),
                );
                let h1r = headers("REGISTER", 1, &call, &b(1), &tag, Some("as1"));
                g.send(
                    PBX,
                    UA,
                    &response(
                        "401 Unauthorized",
                        &h1r,
                        "WWW-Authenticate: Digest realm=\"asterisk\",nonce=\"1732523400/7e1d\",opaque=\"4c1d\",algorithm=MD5,qop=\"auth\"\r\n",
                        "",
                    ),
                );
                let h2 = headers("REGISTER", 2, &call, &b(2), &tag, None);
                let auth = "Authorization: Digest username=\"2001\",realm=\"asterisk\",nonce=\"1732523400/7e1d\",uri=\"sip:pbx.example.com\",response=\"5f2a3b9c0d8e7f6a5b4c3d2e1f0a9b8c\",algorithm=MD5,cnonce=\"0a4f113b\",opaque=\"4c1d\",qop=auth,nc=00000001\r\n";
                g.send(
                    UA,
                    PBX,
                    &request("REGISTER", reg, &format!("{h2}{auth}Expires: 3600\r\n"), ""),
                );
                let h2r = headers("REGISTER", 2, &call, &b(2), &tag, Some("as2"));
                g.send(
                    PBX,
                    UA,
                    &response(
                        "200 OK",
                        &h2r,
                        "Expires: 3600\r\nDate: Mon, 25 Nov 2024 10:00:00 GMT\r\n",
                        "",
                    ),
                );
            }
            1 => {
                // INVITE (SDP) → 100 → 180 → 200 (SDP) → ACK → BYE → 200
                let uri = "sip:3002@pbx.example.com";
                let hi = headers("INVITE", 1, &call, &b(1), &tag, None);
                g.send(UA, PBX, &request("INVITE", uri, &hi, SDP));
                g.send(PBX, UA, &response("100 Trying", &hi, "", ""));
                let hr = headers("INVITE", 1, &call, &b(1), &tag, Some("callee"));
                g.send(
                    PBX,
                    UA,
                    &response("180 Ringing", &hr, "Contact: <sip:3002@10.0.0.5>\r\n", ""),
                );
                g.send(
                    PBX,
                    UA,
                    &response("200 OK", &hr, "Contact: <sip:3002@10.0.0.5>\r\n", SDP),
                );
                let ha = headers("ACK", 1, &call, &b(2), &tag, Some("callee"));
                g.send(UA, PBX, &request("ACK", "sip:3002@10.0.0.5", &ha, ""));
                let hb = headers("BYE", 2, &call, &b(3), &tag, Some("callee"));
                g.send(UA, PBX, &request("BYE", "sip:3002@10.0.0.5", &hb, ""));
                g.send(PBX, UA, &response("200 OK", &hb, "", ""));
            }
            _ => {
                // OPTIONS keep-alive → 200
                let h = headers("OPTIONS", 1, &call, &b(1), &tag, None);
                g.send(
                    PBX,
                    UA,
                    &request("OPTIONS", "sip:2001@192.168.10.20:5060", &h, ""),
                );
                let hr = headers("OPTIONS", 1, &call, &b(1), &tag, Some("ua"));
                g.send(
                    UA,
                    PBX,
                    &response("200 OK", &hr, "Accept: application/sdp\r\n", ""),
                );
            }
        }
    }
    g.n
}
