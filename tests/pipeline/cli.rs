//! `sipscope analyze` as a user runs it.

use std::process::Command;

use crate::common::fixtures;

fn analyze(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .arg("analyze")
        .args(args)
        .env("RUST_LOG", "off")
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn fixture(name: &str) -> String {
    fixtures()
        .join("pcap")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

#[test]
fn call_flow_groups_by_call_id_and_ends_with_counters() {
    let (ok, out, _) = analyze(&[&fixture("suricata-verify_public-cloudshark-sip-s0.pcap")]);
    assert!(ok);
    assert!(out.contains("Call-ID: 12013223@200.57.7.195"), "{out}");
    assert!(
        out.contains("200.57.7.195:5060 → 200.57.7.204:5061  UDP  INVITE sip:francisco@bestel.com:55060 SIP/2.0"),
        "{out}"
    );
    // INVITE at 17:58:02.965944, 200 at 17:58:11.443869.
    assert!(
        out.contains("SIP/2.0 200 Ok  (CSeq 1 INVITE)  [8477.9 ms]"),
        "{out}"
    );
    assert!(
        out.contains("Summary") && out.contains("SIP messages       10"),
        "{out}"
    );
    assert!(
        out.contains("Transactions without a final response"),
        "{out}"
    );
}

#[test]
fn json_lines_are_one_object_each() {
    let (ok, out, _) = analyze(&["--json", &fixture("suricata-verify_sip-tcp.pcap")]);
    assert!(ok);
    let mut types = Vec::new();
    let mut spans = Vec::new();
    for line in out.lines() {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
        // Without an OTLP endpoint the spans share the stream (they carry
        // a trace id instead of a type; the export task writes them).
        if v.get("trace_id").is_some() {
            spans.push(v["name"].as_str().unwrap().to_string());
            continue;
        }
        types.push(v["type"].as_str().unwrap().to_string());
        if v["type"] == "transaction" {
            assert_eq!(v["method"], "REGISTER");
            assert_eq!(v["final_status"], 200);
            assert_eq!(v["outcome"], "completed");
        }
        if v["type"] == "registration" {
            assert_eq!(v["outcome"]["kind"], "registered");
            assert_eq!(v["outcome"]["expires"], 600);
        }
        if v["type"] == "message" {
            assert_eq!(v["transport"], "tcp");
            assert!(v["call_id"].is_string());
        }
    }
    // The capture is a loopback replay of a phone whose Contact is a LAN
    // address: the registration tracker reports it and the attempt.
    assert_eq!(
        types,
        vec![
            "message",
            "diagnosis",
            "transaction",
            "message",
            "registration",
            "summary",
            "export"
        ]
    );
    spans.sort();
    assert_eq!(spans, vec!["REGISTER 200", "SIP registration"]);
}

#[test]
fn unreadable_and_non_capture_files_fail_with_a_clear_message() {
    let (ok, _, err) = analyze(&["/nonexistent/x.pcap"]);
    assert!(!ok);
    assert!(err.contains("cannot open /nonexistent/x.pcap"), "{err}");
    let text = fixtures().join("rfc4475/wsinv.dat");
    let (ok, _, err) = analyze(&[&text.to_string_lossy()]);
    assert!(!ok);
    assert!(err.contains("not a pcap or pcapng capture file"), "{err}");
}

#[test]
fn truncated_capture_is_analysed_up_to_the_damage() {
    let full = std::fs::read(fixture("suricata-verify_public-cloudshark-sip-s0.pcap")).unwrap();
    let path = std::env::temp_dir().join(format!("sipscope-truncated-{}.pcap", std::process::id()));
    std::fs::write(&path, &full[..full.len() - 100]).unwrap();
    let (ok, out, err) = analyze(&[&path.to_string_lossy()]);
    let _ = std::fs::remove_file(&path);
    assert!(ok);
    assert!(err.contains("truncated"), "{err}");
    assert!(out.contains("SIP messages       9"), "{out}");
    assert!(out.contains("damaged capture files 1"), "{out}");
}

/// A pcapng file declaring `n` interfaces of link type 147 (USER0), which
/// sipscope does not read, and nothing else.
fn pcapng_with_unsupported_interfaces(n: usize) -> Vec<u8> {
    // Section Header Block (byte-order magic, version 1.0, length unknown).
    let mut f = Vec::new();
    for w in [0x0A0D_0D0Au32, 28, 0x1A2B_3C4D, 1] {
        f.extend_from_slice(&w.to_le_bytes());
    }
    f.extend_from_slice(&u64::MAX.to_le_bytes());
    f.extend_from_slice(&28u32.to_le_bytes());
    // Interface Description Blocks: type 1, length 20, link type, snaplen.
    for _ in 0..n {
        f.extend_from_slice(&1u32.to_le_bytes());
        f.extend_from_slice(&20u32.to_le_bytes());
        f.extend_from_slice(&147u16.to_le_bytes());
        f.extend_from_slice(&0u16.to_le_bytes());
        f.extend_from_slice(&65535u32.to_le_bytes());
        f.extend_from_slice(&20u32.to_le_bytes());
    }
    f
}

#[test]
fn thousands_of_unsupported_interfaces_give_one_warning_and_a_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("user0.pcapng");
    std::fs::write(&path, pcapng_with_unsupported_interfaces(10_000)).unwrap();
    let (ok, out, err) = analyze(&[&path.to_string_lossy()]);
    assert!(ok, "{err}");
    assert_eq!(err.matches("unsupported link type 147").count(), 1, "{err}");
    assert!(
        err.contains("9999 more interfaces of unsupported link types"),
        "{err}"
    );
    assert_eq!(err.lines().count(), 2, "{err}");
    assert!(out.contains("Summary"), "{out}");
}

#[test]
fn an_os_error_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, _, err) = analyze(&[&dir.path().to_string_lossy()]);
    assert!(!ok);
    assert_eq!(err.matches("(os error 21)").count(), 1, "{err}");
}

#[test]
fn a_fifo_as_credentials_is_refused_without_waiting_for_a_writer() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("creds.toml");
    // As a user would make it (coreutils).
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    let mut child = Command::new(env!("CARGO_BIN_EXE_sipscope"))
        .args(["analyze", "--credentials"])
        .arg(&fifo)
        .arg(fixture("suricata-verify_sip-tcp.pcap"))
        .env("RUST_LOG", "off")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Poll with a deadline: the old code blocked in open() forever.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            panic!("sipscope blocked opening a FIFO as its credentials file");
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().unwrap(), &mut err).unwrap();
    assert!(!status.success());
    assert!(err.contains("is not a regular file"), "{err}");
}

/// 20,000 unanswered REGISTERs with random Call-IDs and AORs in 2 s.
fn register_flood(path: &std::path::Path) {
    use pcap_file::pcap::{PcapPacket, PcapWriter};
    let mut w = PcapWriter::new(std::fs::File::create(path).unwrap()).unwrap();
    for i in 0..20_000u64 {
        let msg = format!(
            "REGISTER sip:pbx.example.com SIP/2.0\r\nVia: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK{i}\r\n\
             From: <sip:u{i}@pbx.example.com>;tag={i}\r\nTo: <sip:u{i}@pbx.example.com>\r\n\
             Call-ID: {:016x}@flood\r\nCSeq: 1 REGISTER\r\nContact: <sip:u{i}@198.51.100.7:5060>\r\n\
             Content-Length: 0\r\n\r\n",
            i.wrapping_mul(0x9e37_79b9_7f4a_7c15)
        );
        let pkt = crate::common::udp(
            i / 10,
            ([198, 51, 100, 7], 5060),
            crate::common::SERVER,
            msg.as_bytes(),
        );
        let ts = std::time::Duration::from_nanos(pkt.ts.0);
        w.write_packet(&PcapPacket::new(ts, pkt.data.len() as u32, &pkt.data))
            .unwrap();
    }
}

/// The number after `label` on the summary line that starts with `line`.
fn counter(out: &str, line: &str, label: &str) -> u64 {
    let l = out
        .lines()
        .find(|l| l.trim_start().starts_with(line))
        .unwrap_or_else(|| panic!("no {line} line in {out}"));
    let rest = &l[l.find(label).unwrap_or_else(|| panic!("no {label} in {l}")) + label.len()..];
    rest.trim_start()
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

#[test]
fn the_memory_budget_sets_the_table_caps_and_evictions_are_counted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("flood.pcap");
    register_flood(&path);
    let p = path.to_string_lossy();
    // 32 MB: about 2,800 transactions and 1,100 bindings fit.
    let (ok, small, err) = analyze(&["--memory-budget", "32", &p]);
    assert!(ok, "{err}");
    assert!(
        counter(&small, "transactions", "evicted") > 15_000,
        "{small}"
    );
    assert!(
        counter(&small, "registrations", "bindings evicted") > 15_000,
        "{small}"
    );
    // 1 GB: everything fits.
    let (ok, big, err) = analyze(&["--memory-budget", "1024", &p]);
    assert!(ok, "{err}");
    assert_eq!(counter(&big, "transactions", "evicted"), 0, "{big}");
    assert_eq!(counter(&big, "SIP messages", "SIP messages"), 20_000);
    // Below the minimum: refused with the reason.
    let (ok, _, err) = analyze(&["--memory-budget", "8", &p]);
    assert!(!ok);
    assert!(err.contains("--memory-budget"), "{err}");
}

/// Spins until dropped: the machine is busy while `analyze` runs.
struct Load(
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    Vec<std::thread::JoinHandle<()>>,
);

impl Load {
    fn start(threads: usize) -> Self {
        use std::sync::atomic::{AtomicBool, Ordering};
        let stop = std::sync::Arc::new(AtomicBool::new(false));
        let spinners = (0..threads)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    let mut x = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        x = std::hint::black_box(
                            x.wrapping_mul(6364136223846793005).wrapping_add(1),
                        );
                    }
                })
            })
            .collect();
        Self(stop, spinners)
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.0.store(true, std::sync::atomic::Ordering::Relaxed);
        for t in self.1.drain(..) {
            let _ = t.join();
        }
    }
}

/// The same file gives the same bytes on every run, however busy the
/// machine: span lines sit at fixed points among the records (after the
/// input that finished them; spans of what was still open at the end
/// before the summary), and none is lost.
#[test]
fn analyze_output_is_byte_identical_across_runs_under_load() {
    let mut files: Vec<String> = [
        "suricata-verify_public-cloudshark-sip-s0.pcap",
        "pcapplusplus_sip_resp.pcap",
        "suricata-verify_sip-tcp.pcap",
    ]
    .iter()
    .map(|f| fixture(f))
    .collect();
    if let Some(ext) = crate::common::shared_external() {
        for f in ["heplify_sip_ipv4_tcp_fragmented.pcap", "sngrep_aaa.pcap"] {
            let p = ext.join("pcap").join(f);
            if p.is_file() {
                files.push(p.to_string_lossy().into_owned());
            }
        }
    }
    let _load = Load::start(2);
    for file in &files {
        for mode in [&["--json"][..], &[][..]] {
            let args: Vec<&str> = mode.iter().copied().chain([file.as_str()]).collect();
            let (ok1, first, _) = analyze(&args);
            let (ok2, second, _) = analyze(&args);
            assert!(ok1 && ok2, "{file}");
            assert!(first == second, "{file} {mode:?} differs between runs");
        }
        let (_, out, _) = analyze(&["--json", file]);
        let spans = out.lines().filter(|l| l.contains("\"trace_id\"")).count() as u64;
        let export: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
        assert_eq!(export["type"], "export", "{file}");
        assert_eq!(export["spans"]["exported"], spans, "{file}");
        assert_eq!(export["spans"]["dropped"], 0, "{file}");
        assert_eq!(
            export["traces"]["spans"], spans,
            "{file}: every span built is written"
        );
    }
}
