//! Throughput and memory of the offline pipeline (file read + decode +
//! parse + transactions) on a generated capture of realistic SIP traffic,
//! against tshark on the same file in the same run.
//!
//! `cargo bench -p sipscope --bench pipeline` (or `cargo xtask bench
//! pipeline`). Environment: SIPSCOPE_BENCH_MESSAGES (default 1000000),
//! SIPSCOPE_BENCH_TSHARK_FULL=1 to run tshark on the full file too (slow).
//!
//! Each measurement runs in a child process so its peak RSS (getrusage
//! maxrss) is its own: a 250k-message and a full-size run show whether
//! memory stays flat as the capture grows.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use etherparse::PacketBuilder;
use pcap_file::pcap::{PcapHeader, PcapPacket, PcapWriter};
use sipscope::capture::file::CaptureFile;
use sipscope::pipeline::{Pipeline, PipelineConfig};

const CHILD_ENV: &str = "SIPSCOPE_BENCH_CHILD";

fn main() {
    if let Ok(path) = std::env::var(CHILD_ENV) {
        child(Path::new(&path));
        return;
    }
    let total: usize = std::env::var("SIPSCOPE_BENCH_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let dir = target_dir();
    std::fs::create_dir_all(&dir).expect("create target dir");
    let small_n = total / 4;
    let small = dir.join(format!("bench-pipeline-{small_n}.pcap"));
    let big = dir.join(format!("bench-pipeline-{total}.pcap"));
    for (path, n) in [(&small, small_n), (&big, total)] {
        let t = Instant::now();
        let written = generate(path, n);
        println!(
            "generated {} ({} messages, {:.1} MB) in {:.1} s",
            path.display(),
            written,
            std::fs::metadata(path)
                .map(|m| m.len() as f64 / 1e6)
                .unwrap_or(0.0),
            t.elapsed().as_secs_f64()
        );
    }
    let small_run = run_child(&small);
    let big_run = run_child(&big);
    for (label, r) in [("small", &small_run), ("full", &big_run)] {
        println!(
            "sipscope {label:>5}: {:>9} messages in {:>6.2} s = {:>10.0} msg/s, peak RSS {:>7.1} MB, transactions {} (completed {}, in flight at end {})",
            r.messages,
            r.secs,
            r.messages as f64 / r.secs,
            r.maxrss_kb as f64 / 1024.0,
            r.created,
            r.completed,
            r.in_flight
        );
    }
    println!(
        "memory: peak RSS {:.1} MB at {} messages vs {:.1} MB at {} messages (ratio {:.2})",
        small_run.maxrss_kb as f64 / 1024.0,
        small_run.messages,
        big_run.maxrss_kb as f64 / 1024.0,
        big_run.messages,
        big_run.maxrss_kb as f64 / small_run.maxrss_kb.max(1) as f64
    );
    // tshark's cost grows faster than linearly with the number of calls in
    // a file (its SIP state tables): on this machine 100k messages take
    // 20 s but 1M take about an hour. The baseline therefore runs on the
    // quarter-size file by default, against our rate on that same file;
    // SIPSCOPE_BENCH_TSHARK_FULL=1 also runs it on the full file.
    let mut baselines = vec![(&small, &small_run)];
    if std::env::var_os("SIPSCOPE_BENCH_TSHARK_FULL").is_some() {
        baselines.push((&big, &big_run));
    }
    for (path, run) in baselines {
        let ours = run.messages as f64 / run.secs;
        match tshark(path) {
            Some(secs) => {
                let theirs = run.messages as f64 / secs;
                println!(
                    "tshark -r {} -Y sip -T fields -e sip.Call-ID: {:.2} s = {:.0} msg/s",
                    path.file_name().unwrap_or_default().to_string_lossy(),
                    secs,
                    theirs
                );
                println!(
                    "ratio sipscope/tshark on {} messages: {:.1}x (target >= 10x)",
                    run.messages,
                    ours / theirs
                );
            }
            None => println!("tshark not found: baseline skipped (apt-get install tshark)"),
        }
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target"))
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
    let mut pipeline = Pipeline::new(PipelineConfig::default());
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

fn tshark(path: &Path) -> Option<f64> {
    Command::new("tshark").arg("-v").output().ok()?;
    let t = Instant::now();
    let out = Command::new("tshark")
        .arg("-r")
        .arg(path)
        .args(["-Y", "sip", "-T", "fields", "-e", "sip.Call-ID"])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .ok()?;
    out.success().then(|| t.elapsed().as_secs_f64())
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
